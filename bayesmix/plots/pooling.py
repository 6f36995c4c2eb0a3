"""shrinkage(): no pooling (a separate fit per level) against partial pooling (the mixed model)
against complete pooling (one fit ignoring the grouping), with the separate fits it needs."""

from __future__ import annotations

import numpy as np

from bayesmix.after.fit_view import FitView, view
from bayesmix.errors import BayesmixError, did_you_mean
from bayesmix.exact.glm import fit_glm
from bayesmix.plots._common import (
    _NO_POOL_COLOR,
    _PARTIAL_COLOR,
    _POOLED_COLOR,
    _fixef,
    _level_ticks,
    _one_group,
    _ranef,
    _single_axes,
    _term_label,
)

_ESTIMABLE = ("gaussian (identity link)", "the families with a Laplace fit (docs/exact_fits.md)")


def _glm_fit(family, Z, y, trials, offset, params, eta_limit: float = 25.0) -> np.ndarray:
    """Maximum-likelihood coefficients of ``y ~ Z`` with ``offset`` (NaN where no finite estimate
    exists: too few rows, collinear columns, or separation such as a group without successes)."""
    k = Z.shape[1]
    if Z.shape[0] < k or np.linalg.matrix_rank(Z) < k:
        return np.full(k, np.nan)
    if family.name == "gaussian":
        return np.linalg.lstsq(Z, y - offset, rcond=None)[0]
    fit = fit_glm(family, Z, y, trials, offset, params)
    if not fit.converged or np.max(np.abs(offset + Z @ fit.beta)) > eta_limit:
        return np.full(k, np.nan)
    return fit.beta


def _no_pooling(source, terms, Z, codes, n_levels, offset) -> tuple[np.ndarray, np.ndarray]:
    """Per level, and over all rows ignoring the grouping: the block's coefficients fitted alone."""
    design, family = source.design, source.family
    params = {} if family.name == "gaussian" else source.family_params()
    y, trials = design.y, design.trials
    out = np.full((n_levels, len(terms)), np.nan)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(n_levels + 1))
    for j in range(n_levels):
        rows = order[bounds[j] : bounds[j + 1]]
        t = None if trials is None else trials[rows]
        out[j] = _glm_fit(family, Z[rows], y[rows], t, offset[rows], params)
    pooled = _glm_fit(family, Z, y, trials, offset, params)
    return out, pooled


def shrinkage(model, x=None, group=None, *, idata=None, ax=None):
    """No pooling vs partial pooling vs complete pooling for one group's random-effect terms.

    For each level of ``group``: the block's coefficients fitted on that level's rows alone (no
    pooling; e.g. a separate Reaction ~ Days regression per Subject), the mixed model's estimate
    (partial pooling: fixed effect + random effect, posterior means for NUTS), and an arrow from
    the first to the second; plus one fit of the same terms to all rows ignoring the grouping
    (complete pooling) and the fixed effects (the mixed model's average). Fixed effects outside
    the block are held at the fit's estimates (an offset) in the separate fits.

    A group with two terms (intercept and slope) gives the 2-D figure, ``x`` naming the term on
    the horizontal axis (default: the first, usually Intercept); one term gives a 1-D version,
    a row per level. Separate fits are least squares for gaussian models and maximum likelihood
    (on the link scale) for bernoulli, binomial, poisson and negative binomial models; a level
    whose separate fit has no finite estimate (too few rows, or no successes) has no circle and no
    arrow; the legend says how many. Returns the Axes.
    """
    source = view(model, idata)
    group, blocks, terms = _shrinkage_terms(source, group, x)
    source.require()
    separate, partial, pooled, centre = _shrinkage_estimates(source, group, blocks, terms)
    family, levels = source.family, list(blocks[0].levels)
    scale = "" if family.link.name == "identity" else f" ({family.link.name} scale)"
    labels = {
        "no": f"No pooling: a separate fit per {group}",
        "partial": f"Partial pooling: the mixed model, per {group}",
        "pooled": f"Complete pooling: one fit ignoring {group}",
        "average": "Mixed-model average (fixed effects)",
    }
    finite = np.all(np.isfinite(separate), axis=1)
    if len(terms) == 2:
        ax = _single_axes(ax, (6.4, 7.0))
        _shrinkage_2d(ax, separate, partial, pooled, centre, finite, labels)
        ax.set_xlabel(_term_label(terms[0]) + scale)
        ax.set_ylabel(_term_label(terms[1]) + scale)
    else:
        ax = _single_axes(ax, (6.4, float(np.clip(0.22 * len(levels) + 2.8, 4.0, 16.0))))
        _shrinkage_1d(ax, separate[:, 0], partial[:, 0], pooled[0], centre[0], finite, levels, labels)
        ax.set_xlabel(_term_label(terms[0]) + scale)
    ax.set_title(f"Shrinkage of the per-{group} estimates ({source.label} fit)", fontsize=11)
    missing = int((~finite).sum())
    note = f"{missing} {group} level(s) without a finite separate fit: no circle, no arrow" if missing else None
    handles = {line.get_gid(): line for line in ax.get_lines()}
    ax.legend(
        [handles[gid] for gid in ("no_pooling", "partial_pooling", "complete_pooling", "average")],
        [labels[key] for key in ("no", "partial", "pooled", "average")],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.1),
        ncol=1,
        frameon=False,
        fontsize=8.5,
        title=note,
        title_fontsize=8,
    )
    return ax


def _shrinkage_terms(source: FitView, group, x):
    """The group, its blocks and their terms (``x`` first) that shrinkage() draws, after the checks."""
    design, family = source.design, source.family
    group = _one_group(design, group)
    blocks = [block for block in design.blocks if block.group == group]
    if any(block.members for block in blocks):
        raise BayesmixError(
            f"shrinkage() fits each level of '{group}' on its own rows, which a group whose rows carry several "
            f"levels (mm()) or whose levels are related (cov=) does not have. Use caterpillar(fit, group='{group}')."
        )
    terms = [t for block in blocks for t in block.terms]
    if len(terms) > 2:
        raise BayesmixError(
            f"shrinkage() draws a group with one or two random-effect terms; '{group}' has {len(terms)} "
            f"({', '.join(terms)}). Use caterpillar(fit, group='{group}') to see them all."
        )
    if x is not None:
        if x not in terms:
            raise BayesmixError(
                f"x must be one of {group}'s random-effect terms ({', '.join(terms)}), not {x!r}."
                f"{did_you_mean(x, terms)}"
            )
        terms = [x] + [t for t in terms if t != x]
    gaussian = family.name == "gaussian" and family.link.name == "identity"
    if not (gaussian or family.has_laplace):
        raise BayesmixError(
            f"shrinkage() fits each {group} separately, which it does for {', '.join(_ESTIMABLE)} models; "
            f"this one is {family.name} ({family.link.name} link). Use caterpillar() to see its random effects."
        )
    return group, blocks, terms


def _shrinkage_estimates(source: FitView, group: str, blocks, terms):
    """(separate fits per level, the mixed model's per-level estimates, the pooled fit, the fixed
    effects) of ``terms``; fixed effects outside the block (and the offsets) held as an offset."""
    design = source.design
    columns = {t: (block, j) for block in blocks for j, t in enumerate(block.terms)}
    Z = np.column_stack([columns[t][0].Zt[:, columns[t][1]] for t in terms])
    codes, levels = blocks[0].codes, list(blocks[0].levels)
    beta = _fixef(source)
    centre = np.array([beta.get(t, 0.0) for t in terms])
    others = [i for i, name in enumerate(design.fixed_names) if name not in terms]
    offset = design.X[:, others] @ beta.iloc[others].to_numpy() if others else np.zeros(design.nobs)
    if design.offset is not None:
        offset = offset + design.offset
    table = _ranef(source)
    wide = table[table["group"] == group].pivot(index="level", columns="term", values="condval")
    partial = centre + wide.reindex(levels)[terms].to_numpy()
    separate, pooled = _no_pooling(source, terms, Z, codes, len(levels), offset)
    return separate, partial, pooled, centre


def _arrow(ax, start, end) -> None:
    ax.annotate(
        "",
        xy=end,
        xytext=start,
        arrowprops={"arrowstyle": "->", "color": "0.45", "lw": 0.8, "shrinkA": 3, "shrinkB": 3},
        zorder=1,
    )


def _shrinkage_2d(ax, separate, partial, pooled, centre, finite, labels) -> None:
    for start, end in zip(separate[finite], partial[finite]):
        _arrow(ax, start, end)
    ax.plot(*separate.T, "o", mfc="white", mec=_NO_POOL_COLOR, mew=1.4, ms=7, gid="no_pooling", label=labels["no"])
    ax.plot(*partial.T, "o", color=_PARTIAL_COLOR, ms=5, gid="partial_pooling", label=labels["partial"])
    ax.plot(*pooled, "X", color=_POOLED_COLOR, ms=15, gid="complete_pooling", label=labels["pooled"])
    ax.plot(*centre, "D", color="black", mec="white", ms=7, gid="average", label=labels["average"], zorder=4)


def _shrinkage_1d(ax, separate, partial, pooled, centre, finite, levels, labels) -> None:
    key = np.where(np.isfinite(separate), separate, partial)
    order = np.argsort(key, kind="stable")
    pos = np.empty(len(order))
    pos[order] = np.arange(len(order))
    for p, start, end in zip(pos[finite], separate[finite], partial[finite]):
        _arrow(ax, (start, p), (end, p))
    ax.axvline(centre, color="black", lw=1.2, gid="average", label=labels["average"])
    ax.axvline(pooled, color=_POOLED_COLOR, lw=1.8, ls="--", gid="complete_pooling", label=labels["pooled"])
    ax.plot(separate, pos, "o", mfc="white", mec=_NO_POOL_COLOR, mew=1.4, ms=7, gid="no_pooling", label=labels["no"])
    ax.plot(partial, pos, "o", color=_PARTIAL_COLOR, ms=5, gid="partial_pooling", label=labels["partial"])
    ax.set_ylim(-0.7, len(order) - 0.3)
    _level_ticks(ax, np.arange(len(order)), [levels[i] for i in order])
