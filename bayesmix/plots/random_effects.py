"""The random effects level by level: their estimates with intervals (caterpillar) and their
normal Q-Q plot (qq_ranef), one panel per (group, term)."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from bayesmix.after.fit_view import view
from bayesmix.plots._common import _NO_POOL_COLOR, _level_ticks, _panel_axes, _panels, _ranef


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
