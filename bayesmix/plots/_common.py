"""What every plot shares: the fit's estimates whichever kind of fit, the checks of ``group=``,
``term=`` and ``interval=``, the Axes (new ones, or the ``ax=`` given), and the colours that name
no, partial and complete pooling alike in every figure."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayesmix.after.fit_view import FitView
from bayesmix.after.tidy import fixef as tidy_fixef
from bayesmix.after.tidy import ranef as tidy_ranef
from bayesmix.errors import BayesmixError, did_you_mean

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
    return [t for block in design.blocks if block.group == group for t in block.report_terms]


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
