"""Residual diagnostics: observed - fitted against fitted (residuals) and DHARMa's simulated,
scaled residuals (scaled_residuals)."""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import MaxNLocator

from bayesmix.after.checks import scaled_residuals as compute_scaled_residuals
from bayesmix.after.fit_view import view
from bayesmix.errors import BayesmixError
from bayesmix.plots._common import (
    _NO_POOL_COLOR,
    _PARTIAL_COLOR,
    _observed,
    _one_group,
    _panel_axes,
    _response_label,
    _single_axes,
)


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
