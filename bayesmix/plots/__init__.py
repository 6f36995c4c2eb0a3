"""Plots after the fit, for both kinds of fit: a sampled :class:`bayesmix.Model` (NUTS) and a
:class:`~bayesmix.mixedfit.MixedFit` from ``Model.fit("reml" | "ml" | "laplace")``.

Every function takes that object first (``model=``: the MixedFit or the sampled Model, as
:func:`bayesmix.ranef` does), ``idata=`` to plot another posterior than the model's last
``sample()`` result, and ``ax=`` to draw into existing Axes; it returns the Axes it drew on, or the
Figure when the plot has several panels::

    from bayesmix import plots

    fit = model.fit("reml")                      # or: model.sample(); then pass model
    plots.caterpillar(fit)                       # Figure: one panel per (group, term)
    plots.shrinkage(fit)                         # Axes: no / partial / complete pooling
    plots.qq_ranef(fit)                          # Figure: normal Q-Q per (group, term)
    plots.residuals(fit)                         # Axes; by_group=True: Figure, a panel per level
    plots.conditional_effects(fit, "Days")       # Axes: population-level prediction over Days

Nothing here calls ``pyplot.show`` or picks a backend, so the functions work under Agg. Bad
arguments raise :class:`~bayesmix.errors.BayesmixError` (checked before any estimate is read, so
a typo is reported even for a model that has not been sampled yet). See docs/plots.md.
"""

from __future__ import annotations

import formulae
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator
from scipy.stats import norm

from bayesmix.after.checks import scaled_residuals as compute_scaled_residuals
from bayesmix.after.fit_view import FitView, view
from bayesmix.after.tidy import fixef as tidy_fixef
from bayesmix.after.tidy import ranef as tidy_ranef
from bayesmix.design.encode import offset_columns
from bayesmix.errors import BayesmixError, did_you_mean
from bayesmix.exact.glm import fit_glm

INTERVAL = 0.95
_NO_POOL_COLOR = "C0"
_PARTIAL_COLOR = "C3"
_POOLED_COLOR = "C2"


# --- the fit, whichever kind -----------------------------------------------------------------------


def _fixef(source: FitView) -> pd.Series:
    """Estimates (posterior means) for every column of X; aliased columns count as 0."""
    names = list(source.design.fixed_names)
    if not names:
        return pd.Series(dtype=float)
    return tidy_fixef(source.obj, source.idata)["estimate"].reindex(names).fillna(0.0)


def _ranef(source: FitView) -> pd.DataFrame:
    return tidy_ranef(source.obj, source.idata)


# --- argument checks ---------------------------------------------------------------------------------


def _groups(design) -> list[str]:
    groups = list(dict.fromkeys(block.group for block in design.blocks))
    if not groups:
        raise BayesmixError(
            f"The formula '{design.spec.text}' has no random-effect term such as (1 | g), so there are no "
            "random effects to plot."
        )
    return groups


def _check_group(design, group) -> str:
    groups = _groups(design)
    if group not in groups:
        raise BayesmixError(
            f"Unknown group '{group}'.{did_you_mean(group, groups)} The model's grouping factors: {', '.join(groups)}."
        )
    return group


def _one_group(design, group) -> str:
    groups = _groups(design)
    if group is None:
        if len(groups) > 1:
            raise BayesmixError(
                f"The model has several grouping factors ({', '.join(groups)}); name one with group=, "
                f"e.g. group='{groups[0]}'."
            )
        return groups[0]
    return _check_group(design, group)


def _group_terms(design, group) -> list[str]:
    return [t for block in design.blocks if block.group == group for t in block.terms]


def _panels(design, group, term) -> list[tuple[str, str]]:
    """(group, term) pairs: every group when ``group`` is None, every term when ``term`` is None."""
    groups = _groups(design) if group is None else [_check_group(design, group)]
    wanted = None if term is None else ([term] if isinstance(term, str) else list(term))
    panels = []
    for g in groups:
        terms = _group_terms(design, g)
        if wanted is None:
            panels += [(g, t) for t in terms]
            continue
        for t in wanted:
            if t in terms:
                panels.append((g, t))
            elif group is not None:
                raise BayesmixError(
                    f"Group '{g}' has no random-effect term '{t}'.{did_you_mean(t, terms)} "
                    f"Its terms: {', '.join(terms)}."
                )
    if not panels:
        every = sorted({t for g in groups for t in _group_terms(design, g)})
        raise BayesmixError(
            f"No grouping factor has a random-effect term {', '.join(map(repr, wanted))}."
            f"{did_you_mean(wanted[0], every)} The terms: {', '.join(every)}."
        )
    return panels


def _check_interval(interval) -> float | None:
    if interval is None:
        return None
    try:
        value = float(interval)
    except (TypeError, ValueError):
        value = np.nan
    if not 0 < value < 1:
        raise BayesmixError(f"interval must be a probability between 0 and 1 such as 0.95, not {interval!r}.")
    return value


# --- figure helpers ------------------------------------------------------------------------------------


def _is_axes(ax) -> bool:
    from matplotlib.axes import Axes

    return isinstance(ax, Axes)


def _single_axes(ax, figsize):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=figsize, layout="constrained")
        return ax
    if not _is_axes(ax):
        raise BayesmixError(f"ax must be a matplotlib Axes, not {type(ax).__name__}.")
    return ax


def _panel_axes(n: int, ax, figsize, ncols: int | None = None, sharey: bool = False):
    """(figure, n Axes): new ones in a grid, or the ``ax`` given (one Axes, or a sequence of n)."""
    if ax is None:
        import matplotlib.pyplot as plt

        ncols = n if ncols is None else ncols
        nrows = -(-n // ncols)
        fig, grid = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, layout="constrained", sharey=sharey)
        axes = list(grid.ravel())
        for extra in axes[n:]:
            extra.remove()
        return fig, axes[:n]
    axes = [ax] if _is_axes(ax) else list(ax) if isinstance(ax, list | tuple | np.ndarray) else None
    if axes is None or len(axes) != n or not all(_is_axes(a) for a in axes):
        wanted = "one Axes" if n == 1 else f"a list of {n} Axes"
        raise BayesmixError(f"This plot has {n} panel(s): pass ax= {wanted}, or leave ax out to get a new figure.")
    return axes[0].figure, axes


def _level_ticks(ax, positions, labels, show: bool = True) -> None:
    """Level names on the y axis, smaller for many levels and left out beyond 100."""
    m = len(labels)
    if m > 100 or not show:
        ax.set_yticks([])
        if show:
            ax.set_ylabel(f"{m} levels, sorted")
        return
    ax.set_yticks(positions)
    ax.set_yticklabels(labels, fontsize=9 if m <= 30 else 7 if m <= 60 else 5)


def _term_label(term: str) -> str:
    return term if term == "Intercept" else f"{term} slope" if "[" not in term else f"effect of {term}"


def _observed(design) -> np.ndarray:
    """The response on the scale of the mean: successes / trials for binomial data."""
    return design.y / design.trials if design.trials is not None else design.y


def _response_label(design) -> str:
    response = design.spec.response
    return f"{response.expr} (proportion of trials)" if response.is_binomial else response.expr


# --- caterpillar ----------------------------------------------------------------------------------------


def caterpillar(model, group=None, term=None, *, idata=None, ax=None):
    """Random effects with 95 % intervals, one panel per (group, term), levels sorted.

    Exact fits show the conditional modes with condval -+ 1.96 condsd; NUTS fits the posterior
    means with the central 95 % posterior interval (:func:`bayesmix.ranef`'s columns). Within a
    group the levels are sorted by the effect of the group's first shown term, and every panel of
    the group keeps that order (as lme4's ``dotplot``), so a level is one row across its panels.

    group: one grouping factor (default: all); term: a term name or a list of them (default: all).
    Returns the Figure (its panels are ``fig.axes``); ``ax`` may be one Axes (one panel) or a
    list with one Axes per panel.
    """
    source = view(model, idata)
    panels = _panels(source.design, group, term)
    source.require()
    table = _ranef(source)
    sizes = {g: source.design.ngrps[g] for g, _ in panels}
    height = float(np.clip(0.2 * max(sizes.values()) + 1.3, 3.0, 16.0))
    width = min(2.9 * len(panels) + 1.0, 16.0)
    fig, axes = _panel_axes(len(panels), ax, (width, height))
    what = "posterior mean, 95 % interval" if source.bayes else "conditional mode, 95 % interval"
    first_of_group = {}
    for axis, (g, t) in zip(axes, panels):
        part = table[table["group"] == g]
        wide = part.pivot(index="level", columns="term", values="condval")
        sort_term = next(term_ for gg, term_ in panels if gg == g)
        order = wide[sort_term].sort_values(kind="stable").index
        rows = part[part["term"] == t].set_index("level").loc[order]
        pos = np.arange(len(order))
        axis.axvline(0.0, color="0.6", lw=0.8, ls=":", zorder=0)
        axis.hlines(pos, rows["lower"], rows["upper"], color="0.35", lw=1.2, gid="intervals")
        axis.plot(rows["condval"].to_numpy(), pos, "o", color=_NO_POOL_COLOR, ms=4, gid="estimates")
        axis.set_title(f"{g}: {t}", fontsize=10)
        axis.set_xlabel(what, fontsize=9)
        axis.set_ylim(-0.7, len(order) - 0.3)
        shared = g in first_of_group and ax is None
        _level_ticks(axis, pos, list(order), show=not shared)
        if shared:
            axis.tick_params(labelleft=False)
        first_of_group.setdefault(g, axis)
    return fig


# --- shrinkage -----------------------------------------------------------------------------------------


_ESTIMABLE = ("gaussian (identity link)", "bernoulli", "binomial", "poisson", "negative binomial")


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


# --- normal Q-Q of the random effects -----------------------------------------------------------------------


def _ppoints(n: int) -> np.ndarray:
    """R's ppoints: plotting positions for a normal Q-Q plot."""
    a = 3 / 8 if n <= 10 else 0.5
    return (np.arange(1, n + 1) - a) / (n + 1 - 2 * a)


def qq_ranef(model, group=None, *, idata=None, ax=None, label_extremes: int = 2):
    """Normal Q-Q plot of each term's random effects, one panel per (group, term).

    The effects (conditional modes, or posterior means) are standardised by their own mean and SD,
    so normally distributed effects lie on the reference line y = x. The ``label_extremes`` levels
    furthest from 0 are labelled. Returns the Figure.
    """
    source = view(model, idata)
    panels = _panels(source.design, group, None)
    source.require()
    table = _ranef(source)
    ncols = min(len(panels), 3)
    nrows = -(-len(panels) // ncols)
    fig, axes = _panel_axes(len(panels), ax, (3.6 * ncols + 0.4, 3.4 * nrows + 0.3), ncols=ncols)
    for axis, (g, t) in zip(axes, panels):
        rows = table[(table["group"] == g) & (table["term"] == t)]
        values = rows["condval"].to_numpy()
        sd = values.std(ddof=1) if len(values) > 1 else 0.0
        z = (values - values.mean()) / sd if sd > 0 else np.zeros_like(values)
        order = np.argsort(z, kind="stable")
        quantiles = norm.ppf(_ppoints(len(z)))
        axis.axline((0.0, 0.0), slope=1.0, color="0.5", lw=1.0, ls="--", gid="reference")
        axis.plot(quantiles, z[order], "o", color=_NO_POOL_COLOR, ms=4.5, gid="effects")
        axis.margins(x=0.08, y=0.12)  # room for the labels of the extreme points
        for rank in np.argsort(-np.abs(z[order]), kind="stable")[: max(label_extremes, 0)]:
            low = quantiles[rank] < 0  # label away from the line: below-right of low points, above-left of high
            axis.annotate(
                str(rows["level"].iloc[order[rank]]),
                (quantiles[rank], z[order][rank]),
                xytext=(6, -5) if low else (-6, 5),
                textcoords="offset points",
                ha="left" if low else "right",
                va="top" if low else "bottom",
                fontsize=8,
                color="0.25",
            )
        if sd == 0:
            axis.text(0.03, 0.92, "all effects are 0 (singular fit)", transform=axis.transAxes, fontsize=8)
        axis.set_title(f"{g}: {t}", fontsize=10)
        axis.set_xlabel("standard normal quantile", fontsize=9)
        axis.set_ylabel("standardised effect", fontsize=9)
    return fig


# --- residuals -------------------------------------------------------------------------------------------------


def _smooth(x: np.ndarray, y: np.ndarray, frac: float = 0.6, points: int = 60):
    """A local-linear smoother (tricube weights over the nearest ``frac`` of the points), as lowess
    without its robustness steps; None when there are too few distinct x values."""
    if len(x) < 10 or len(np.unique(x)) < 5:
        return None
    grid = np.linspace(x.min(), x.max(), points)
    span = max(int(np.ceil(frac * len(x))), 5)
    fitted = np.empty(points)
    for i, g in enumerate(grid):
        distance = np.abs(x - g)
        h = max(np.partition(distance, span - 1)[span - 1], 1e-12)
        w = np.clip(1 - (distance / h) ** 3, 0, None) ** 3
        sw, sx, sy = w.sum(), (w * x).sum(), (w * y).sum()
        sxx, sxy = (w * x * x).sum(), (w * x * y).sum()
        det = sw * sxx - sx * sx
        fitted[i] = (
            sy / sw
            if abs(det) < 1e-12 * max(sw * sxx, 1e-300)
            else (sy * sxx - sx * sxy + g * (sw * sxy - sx * sy)) / det
        )
    return grid, fitted


def residuals(model, by_group=False, group=None, *, idata=None, ax=None, page: int = 1, per_page: int = 30):
    """Residuals (observed - fitted) against fitted values; fitted values include the random effects.

    Exact fits: ``fit.predict()`` (lme4's fitted values); NUTS: the posterior mean of
    ``model.predict(kind="mean")``. Binomial responses are proportions (successes / trials), so
    residuals are on that scale. One panel with a zero line and a local-linear smoother (returns
    the Axes), or with ``by_group=True`` a small panel per level of ``group`` (default: the only
    grouping factor), ``per_page`` levels per figure: ``page=2`` shows the next ones. Returns the
    Figure then.
    """
    source = view(model, idata)
    design = source.design
    if by_group:
        group = _one_group(design, group)
        block = next(b for b in design.blocks if b.group == group)
        if not isinstance(per_page, int | np.integer) or per_page < 1:
            raise BayesmixError(f"per_page must be a whole number of at least 1, not {per_page!r}.")
        pages = -(-block.n_levels // per_page)
        if not isinstance(page, int | np.integer) or not 1 <= page <= pages:
            raise BayesmixError(
                f"page must be between 1 and {pages} ({block.n_levels} levels of '{group}', {per_page} per page), "
                f"not {page!r}."
            )
    elif group is not None:
        raise BayesmixError("group= chooses the panels of residuals(by_group=True); pass by_group=True with it.")
    source.require()
    fitted = source.fitted()
    resid = _observed(design) - fitted
    what = f"{source.label}; fitted values include the random effects"
    if not by_group:
        ax = _single_axes(ax, (6.4, 4.6))
        ax.axhline(0.0, color="0.5", lw=1.0, ls="--", gid="zero", zorder=1)
        ax.plot(fitted, resid, "o", color=_NO_POOL_COLOR, ms=3.5, alpha=0.55, mew=0, gid="residuals", zorder=2)
        curve = _smooth(fitted, resid)
        if curve is not None:
            ax.plot(*curve, color=_PARTIAL_COLOR, lw=1.8, gid="smoother", label="local-linear smoother", zorder=3)
            ax.legend(loc="best", fontsize=8, frameon=False)
        ax.set_xlabel(f"fitted {_response_label(design)}")
        ax.set_ylabel("residual (observed - fitted)")
        ax.set_title(f"Residuals vs fitted ({what})", fontsize=10)
        return ax
    start = (page - 1) * per_page
    shown = list(range(start, min(start + per_page, block.n_levels)))
    ncols = min(len(shown), 6)
    nrows = -(-len(shown) // ncols)
    fig, axes = _panel_axes(len(shown), ax, (2.2 * ncols + 0.6, 1.9 * nrows + 0.9), ncols=ncols, sharey=True)
    for axis, j in zip(axes, shown):
        axis.xaxis.set_major_locator(MaxNLocator(3))
        rows = block.codes == j
        axis.axhline(0.0, color="0.5", lw=0.8, ls="--", gid="zero")
        axis.plot(fitted[rows], resid[rows], "o", color=_NO_POOL_COLOR, ms=3, gid="residuals")
        axis.set_title(block.levels[j], fontsize=9, pad=2)
        axis.tick_params(labelsize=7)
    span = f"levels {start + 1}-{start + len(shown)} of {block.n_levels}, page {page} of {pages}" if pages > 1 else ""
    fig.suptitle(f"Residuals vs fitted by {group} ({what}){'; ' + span if span else ''}", fontsize=10)
    if ax is None:
        fig.supxlabel(f"fitted {_response_label(design)}", fontsize=9)
        fig.supylabel("residual (observed - fitted)", fontsize=9)
    return fig


# --- conditional effects -----------------------------------------------------------------------------------------


def _fixed_predictors(design) -> list[str]:
    """The data columns the fixed part and the offsets use, in the data's column order (an offset's
    columns are held at reference values too: a rate at the mean exposure, say)."""
    if not design.fixed_names:
        return []
    names = set(formulae.model_description(design.spec.fixed).var_names) | offset_columns(design.spec)
    return [c for c in design.data.columns if c in names]


def _reference_values(design, predictors, effect, at) -> dict[str, tuple[object, str]]:
    """{predictor: (value, how it was chosen)} for every predictor but ``effect``."""
    at = {} if at is None else at
    if not isinstance(at, dict):
        raise BayesmixError(f"at must be a dict such as {{'x': 1.0}}, not {type(at).__name__}.")
    for name in at:
        if name == effect:
            raise BayesmixError(f"at= fixes the other predictors; '{effect}' is the effect plotted, so leave it out.")
        if name not in predictors:
            others = [p for p in predictors if p != effect]
            raise BayesmixError(
                f"at= names '{name}', which is not a population-level predictor of this model."
                f"{did_you_mean(name, others)} The others are: {', '.join(others) or 'none'}."
            )
    levels = design.codings.levels
    out = {}
    for name in predictors:
        if name == effect:
            continue
        if name in levels:
            if name in at:
                as_text = {str(level): level for level in levels[name]}
                if str(at[name]) not in as_text:
                    raise BayesmixError(
                        f"at['{name}'] = {at[name]!r} is not a level of '{name}'; its levels: "
                        f"{', '.join(map(str, levels[name][:10]))}."
                    )
                out[name] = (as_text[str(at[name])], "set")
            else:
                out[name] = (levels[name][0], "reference level")
        elif name in at:
            try:
                out[name] = (float(at[name]), "set")
            except (TypeError, ValueError):
                raise BayesmixError(f"at['{name}'] must be a number ('{name}' is numeric), not {at[name]!r}.") from None
        else:
            out[name] = (float(pd.to_numeric(design.data[name]).mean()), "mean")
    return out


def _format_value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _effects_title(effect, label, reference, width: int = 80) -> str:
    """Says what is plotted and where every other predictor is held; lines break between values."""
    lines = [f"Population-level prediction over {effect} ({label} fit)"]
    if not reference:
        return "\n".join(lines + ["random effects excluded; no other predictors"])
    line = "random effects excluded; other predictors at"
    items = [f"{name} = {_format_value(v)} ({how})" for name, (v, how) in reference.items()]
    for i, item in enumerate(items):
        item += "," if i < len(items) - 1 else ""
        if len(line) + 1 + len(item) > width:
            lines.append(line)
            line = item
        else:
            line += " " + item
    return "\n".join(lines + [line])


def conditional_effects(
    model,
    effect,
    at=None,
    interval=INTERVAL,
    data_points=True,
    *,
    idata=None,
    ax=None,
    resolution: int = 100,
):
    """The population-level prediction (random effects excluded) over one predictor, with its interval.

    The other predictors are held at reference values: numeric ones at their mean in the data,
    factors at their reference (first) level; ``at={"name": value}`` overrides them. The values
    used are written in the title. A numeric ``effect`` gives a line over its observed range
    (``resolution`` points) with a band; a factor gives a point with an error bar per level.

    Predictions are means on the response scale (probabilities for binomial data). NUTS: the
    posterior mean and central ``interval`` quantiles of ``model.predict(data=grid,
    re_form="population")``. Exact fits: ``fit.predict(grid, re_form="population")`` with a Wald
    interval eta -+ z se(eta), se from ``fit.vcov``, computed on the link scale and transformed by
    the inverse link (the delta method's interval, which stays inside the response's range).
    ``interval=None`` draws no interval. ``data_points`` adds the observed responses (proportions
    for binomial data). Returns the Axes.
    """
    source = view(model, idata)
    design = source.design
    predictors = _fixed_predictors(design)
    if not predictors:
        raise BayesmixError(
            f"The fixed part of '{design.spec.text}' has no predictors, so there is no effect to plot. "
            "Add one (e.g. y ~ x + (1 | g))."
        )
    if effect not in predictors:
        raise BayesmixError(
            f"'{effect}' is not a population-level predictor of this model.{did_you_mean(effect, predictors)} "
            f"The fixed part uses: {', '.join(predictors)}."
        )
    reference = _reference_values(design, predictors, effect, at)
    interval = _check_interval(interval)
    if not isinstance(resolution, int | np.integer) or resolution < 2:
        raise BayesmixError(f"resolution must be a whole number of grid points of at least 2, not {resolution!r}.")
    source.require()

    factor = effect in design.codings.levels
    column = design.data[effect]
    values = list(design.codings.levels[effect]) if factor else np.linspace(column.min(), column.max(), resolution)
    grid = pd.DataFrame({effect: values})
    for name, (value, _) in reference.items():
        grid[name] = [value] * len(grid)
    mean, lower, upper = source.population(grid, interval)

    ax = _single_axes(ax, (6.4, 4.6))
    observed = _observed(design)
    kind = "posterior interval" if source.bayes else "Wald interval (delta method)"
    band = None if interval is None else f"{100 * interval:g} % {kind}"
    draw = _factor_effect if factor else _numeric_effect
    draw(ax, values, column, observed if data_points else None, (mean, lower, upper), band)
    ax.set_xlabel(effect)
    ax.set_ylabel(_response_label(design))
    ax.set_title(_effects_title(effect, source.label, reference), fontsize=10)
    ax.legend(loc="best", fontsize=8, frameon=False)
    return ax


def _factor_effect(ax, values, column, observed, prediction, band) -> None:
    """A point with an error bar per level of a factor ``effect`` (and the jittered data)."""
    mean, lower, upper = prediction
    pos = np.arange(len(values))
    if observed is not None:
        codes = column.cat.codes.to_numpy()
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(codes))
        ax.plot(codes + jitter, observed, "o", color="0.6", ms=3, alpha=0.45, mew=0, gid="data", label="observed data")
    yerr = None if lower is None else np.vstack([mean - lower, upper - mean])
    label = "population-level mean" + ("" if band is None else f" with {band}")
    bars = ax.errorbar(pos, mean, yerr=yerr, fmt="o", color=_PARTIAL_COLOR, ms=7, capsize=5, lw=1.6, label=label)
    bars.lines[0].set_gid("prediction")
    if band is not None:
        bars.lines[2][0].set_gid("interval")
    ax.set_xticks(pos)
    ax.set_xticklabels([str(v) for v in values])
    ax.set_xlim(-0.5, len(values) - 0.5)


def _numeric_effect(ax, values, column, observed, prediction, band) -> None:
    """A line with its band over a numeric ``effect`` (and the data)."""
    mean, lower, upper = prediction
    if observed is not None:
        ax.plot(column.to_numpy(dtype=float), observed, "o", color="0.6", ms=3, alpha=0.45, mew=0, gid="data")
        ax.lines[-1].set_label("observed data")
    if lower is not None:
        ax.fill_between(values, lower, upper, color=_PARTIAL_COLOR, alpha=0.2, lw=0, gid="interval", label=band)
    ax.plot(values, mean, color=_PARTIAL_COLOR, lw=2, gid="prediction", label="population-level mean")


# --- scaled (DHARMa) residuals ---------------------------------------------------------------------------


def scaled_residuals(model, n_sim: int = 250, re_form: str = "unconditional", random_seed=None, *, idata=None, ax=None):
    """DHARMa's two panels for :func:`bayesmix.after.checks.scaled_residuals`: a uniform Q-Q plot with the
    uniformity, dispersion and outlier tests, and residuals against the rank of the fitted values.

    Returns the Figure; ``ax`` takes two Axes. For the numbers, call ``bayesmix.scaled_residuals``.
    """
    source = view(model, idata)
    source.require()
    fig, axes = _panel_axes(2, ax, (10, 4.5))
    compute_scaled_residuals(model, n_sim=n_sim, re_form=re_form, random_seed=random_seed, idata=idata).plot(axes)
    return fig
