"""conditional_effects(): the population-level prediction over one predictor, the others held at
reference values that the title states."""

from __future__ import annotations

import formulae
import numpy as np
import pandas as pd

from bayesmix.after.fit_view import view
from bayesmix.design.encode import offset_columns
from bayesmix.errors import BayesmixError, did_you_mean
from bayesmix.plots._common import (
    _PARTIAL_COLOR,
    _check_interval,
    _observed,
    _response_label,
    _single_axes,
)
from bayesmix.report import INTERVAL


def _fixed_predictors(design) -> list[str]:
    """The data columns the fixed part and the offsets use, in the data's column order (an offset's
    columns are held at reference values too: a rate at the mean exposure, say)."""
    categories = getattr(design, "category_predictors", False)  # a categorical model's: its categories'
    if not design.fixed_names and not (categories and next(iter(design.submodels.values())).fixed_names):
        return []
    names = set(formulae.model_description(design.spec.fixed).var_names) | offset_columns(design.spec)
    smooths = design.spec.smooths  # a smooth's covariate, not the columns that stand for it
    names = (names - {n for smooth in smooths for n in smooth.column_names()}) | {s.variable for s in smooths}
    names |= {s.by for s in smooths if s.by is not None}
    return [c for c in design.data.columns if c in names]


def _reference_values(design, predictors, effects, at) -> dict[str, tuple[object, str]]:
    """{predictor: (value, how it was chosen)} for every predictor but the ``effects`` plotted."""
    at = {} if at is None else at
    if not isinstance(at, dict):
        raise BayesmixError(f"at must be a dict such as {{'x': 1.0}}, not {type(at).__name__}.")
    for name in at:
        if name in effects:
            raise BayesmixError(f"at= fixes the other predictors; '{name}' is an effect plotted, so leave it out.")
        if name not in predictors:
            others = [p for p in predictors if p not in effects]
            raise BayesmixError(
                f"at= names '{name}', which is not a population-level predictor of this model."
                f"{did_you_mean(name, others)} The others are: {', '.join(others) or 'none'}."
            )
    levels = design.codings.levels
    out = {}
    for name in predictors:
        if name in effects:
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


def _effects_title(effect, label, reference, width: int = 80, scale: str = "response", smooths=()) -> str:
    """Says what is plotted and where every other predictor is held; lines break between values."""
    what = "linear predictor" if scale == "link" else "prediction"
    lines = [f"Population-level {what} over {effect} ({label} fit)"]
    excluded = "group-level effects excluded (smooths included)" if smooths else "random effects excluded"
    if not reference:
        return "\n".join(lines + [f"{excluded}; no other predictors"])
    line = f"{excluded}; other predictors at"
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
    scale: str = "response",
):
    """The population-level prediction (random effects excluded) over one predictor, with its interval.

    ``effect``: a predictor, or a list of two or three as brms's ``effects = "x:z"``: the first on
    the x axis, one line per value of the second, one panel per value of the third. A factor's
    values are its levels; a numeric second or third predictor takes its mean and the mean -+ one
    SD (brms's choice). The other predictors are held at reference values: numeric ones at their
    mean in the data, factors at their reference (first) level; ``at={"name": value}`` overrides
    them. The values used are written in the title. A numeric ``effect`` gives a line over its
    observed range (``resolution`` points) with a band; a factor gives a point with an error bar
    per level.

    An ordinal or categorical model draws each category's probability (a line and band per category over a
    numeric ``effect``, a point and error bar per category beside each level of a factor), as
    brms's ``categorical = TRUE``; exact fits' intervals come from the delta method over the fixed
    effects and the cut points (a categorical model's: every category's coefficients).

    ``scale="response"``: means on the response scale (probabilities for binomial data);
    ``"link"``: the linear predictor (brms's ``method = "posterior_linpred"``). NUTS: the
    posterior mean and central ``interval`` quantiles of ``model.predict(data=grid,
    re_form="population")``. Exact fits: ``fit.predict(grid, re_form="population")`` with a Wald
    interval eta -+ z se(eta), se from ``fit.vcov``, computed on the link scale and transformed by
    the inverse link (the delta method's interval, which stays inside the response's range).
    ``interval=None`` draws no interval. ``data_points`` adds the observed responses (proportions
    for binomial data; on the response scale only). Returns the Axes (an array of them with panels).
    """
    source = view(model, idata)
    design = source.design
    effects = _effects(design, effect)
    reference = _reference_values(design, _fixed_predictors(design), effects, at)
    interval = _check_interval(interval)
    _check_grid(resolution, scale)
    source.require()
    if len(effects) > 1 or scale == "link":
        if source.family.category_response:
            raise BayesmixError(
                "An ordinal or categorical model plots its category probabilities over one predictor, on the "
                "response scale; pass one effect."
            )
        return _several_effects(source, effects, reference, interval, data_points, ax, resolution, scale)
    effect = effects[0]
    factor = effect in design.codings.levels
    column = design.data[effect]
    values = _axis_values(design, effect, resolution)
    grid = pd.DataFrame({effect: values})
    for name, (value, _) in reference.items():
        grid[name] = [value] * len(grid)
    if source.family.category_response:
        ax = _single_axes(ax, (7.8, 4.6))
        prediction = source.population_probabilities(grid, interval)
        _category_effects(ax, values, factor, prediction, design.codings.response_levels, interval, source)
        ax.set_xlabel(effect)
        ax.set_title(_effects_title(effect, source.label, reference, smooths=design.spec.smooths), fontsize=10)
        return ax
    mean, lower, upper = source.population(grid, interval)

    ax = _single_axes(ax, (6.4, 4.6))
    observed = _observed(design)
    kind = _interval_kind(source)
    band = None if interval is None else f"{100 * interval:g} % {kind}"
    draw = _factor_effect if factor else _numeric_effect
    draw(ax, values, column, observed if data_points else None, (mean, lower, upper), band)
    ax.set_xlabel(effect)
    ax.set_ylabel(_response_label(design))
    ax.set_title(_effects_title(effect, source.label, reference, smooths=design.spec.smooths), fontsize=10)
    ax.legend(loc="best", fontsize=8, frameon=False)
    return ax


def _check_grid(resolution, scale: str) -> None:
    if not isinstance(resolution, int | np.integer) or resolution < 2:
        raise BayesmixError(f"resolution must be a whole number of grid points of at least 2, not {resolution!r}.")
    if scale not in ("response", "link"):
        raise BayesmixError(f"scale='{scale}': choose 'response' (means) or 'link' (the linear predictor).")


def _effects(design, effect) -> list[str]:
    """The predictors plotted: one, or two or three distinct population-level predictors."""
    predictors = _fixed_predictors(design)
    if not predictors:
        raise BayesmixError(
            f"The fixed part of '{design.spec.text}' has no predictors, so there is no effect to plot. "
            "Add one (e.g. y ~ x + (1 | g))."
        )
    effects = [effect] if isinstance(effect, str) else list(effect)
    if not 1 <= len(effects) <= 3 or len(set(effects)) != len(effects):
        raise BayesmixError(
            "effect takes one predictor or a list of two or three different ones (x axis, lines, panels), "
            f"not {effect!r}."
        )
    for name in effects:
        if name not in predictors:
            raise BayesmixError(
                f"'{name}' is not a population-level predictor of this model.{did_you_mean(name, predictors)} "
                f"The fixed part uses: {', '.join(predictors)}."
            )
    return effects


def _axis_values(design, effect, resolution: int) -> list:
    """The x axis's values: a factor's levels, or a numeric predictor's observed range."""
    if effect in design.codings.levels:
        return list(design.codings.levels[effect])
    column = design.data[effect]
    return list(np.linspace(column.min(), column.max(), resolution))


def _condition_values(design, name) -> tuple[list, list[str]]:
    """A line's or panel's values and their labels: a factor's levels, or a numeric predictor's
    mean and mean -+ SD (brms's conditions for a numeric predictor)."""
    if name in design.codings.levels:
        levels = list(design.codings.levels[name])
        return levels, [f"{name} = {level}" for level in levels]
    column = pd.to_numeric(design.data[name]).astype(float)
    mean, sd = float(column.mean()), float(column.std())
    return [mean - sd, mean, mean + sd], [
        f"{name} = {v:.4g} ({how})" for v, how in zip([mean - sd, mean, mean + sd], ["mean - SD", "mean", "mean + SD"])
    ]


def _several_effects(source, effects, reference, interval, data_points, ax, resolution, scale):
    """Lines by the second effect (and panels by the third): each panel a grid over the first."""
    import matplotlib.pyplot as plt

    design = source.design
    main, by = effects[0], effects[1] if len(effects) > 1 else None
    panel_values, panel_labels = _condition_values(design, effects[2]) if len(effects) == 3 else ([None], [""])
    line_values, line_labels = _condition_values(design, by) if by is not None else ([None], [""])
    if ax is None:
        columns = min(3, len(panel_values))
        rows = -(-len(panel_values) // columns)
        figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.2 * rows), squeeze=False, sharey=True)
        axes = axes.ravel()
        for extra in axes[len(panel_values) :]:
            extra.set_visible(False)
    else:
        axes = np.atleast_1d(np.asarray(ax, dtype=object)).ravel()
        if len(axes) != len(panel_values):
            raise BayesmixError(f"ax= needs {len(panel_values)} Axes, one per panel ({effects[-1]}).")
    values = _axis_values(design, main, resolution)
    for panel, (panel_value, panel_label) in enumerate(zip(panel_values, panel_labels)):
        frame = {effects[2]: panel_value} if len(effects) == 3 else {}
        lines = []
        for line_value in line_values:
            grid = pd.DataFrame({main: values, **({by: line_value} if by is not None else {}), **frame})
            for name, (value, _) in reference.items():
                grid[name] = [value] * len(grid)
            lines.append(source.population(grid, interval, scale))
        shown = data_points and scale == "response"
        _draw_lines(axes[panel], source, main, values, lines, line_labels, frame if shown else None, interval)
        if scale == "link":
            axes[panel].set_ylabel(f"linear predictor ({source.family.link.name} link)")
        title = _effects_title(main, source.label, reference, scale=scale, smooths=source.design.spec.smooths)
        axes[panel].set_title(f"{panel_label}\n{title}" if panel_label else title, fontsize=9)
    return axes if len(effects) == 3 else axes[0]


def _interval_kind(source) -> str:
    """What a band is: a posterior interval, or an exact fit's Wald interval (with a smooth, over
    beta and the smooths' effects: mgcv's se.fit)."""
    if source.bayes:
        return "posterior interval"
    return "interval (mgcv's se.fit)" if source.design.spec.smooths else "Wald interval (delta method)"


def _draw_lines(ax, source, main, values, lines, labels, frame, interval) -> None:
    """One colour per line value: a line and band over a numeric ``main``, dodged points with
    error bars over a factor's levels; the observed data in grey (of this panel's rows)."""
    import matplotlib.pyplot as plt

    design = source.design
    factor = main in design.codings.levels
    if frame is not None:
        rows = np.ones(design.nobs, dtype=bool)
        for name, value in frame.items():
            if name in design.codings.levels:
                rows &= design.data[name].astype(str).to_numpy() == str(value)
        x = design.data[main]
        x = x.cat.codes.to_numpy() if factor else x.to_numpy(dtype=float)
        ax.plot(x[rows], _observed(design)[rows], "o", color="0.6", ms=3, alpha=0.4, mew=0, gid="data")
    colours = plt.get_cmap("tab10")(np.arange(len(lines)) % 10)
    offsets = np.linspace(-0.2, 0.2, len(lines)) if factor and len(lines) > 1 else np.zeros(len(lines))
    for (mean, lower, upper), label, colour, offset in zip(lines, labels, colours, offsets):
        if factor:
            yerr = None if lower is None else np.vstack([mean - lower, upper - mean])
            bars = ax.errorbar(np.arange(len(values)) + offset, mean, yerr=yerr, fmt="o", color=colour, capsize=4)
            bars.lines[0].set_gid(f"prediction {label}".strip())
            bars.set_label(label or "population level")
            continue
        if lower is not None:
            ax.fill_between(values, lower, upper, color=colour, alpha=0.15, lw=0, gid=f"interval {label}".strip())
        ax.plot(values, mean, color=colour, lw=2, gid=f"prediction {label}".strip(), label=label or "population level")
    if factor:
        ax.set_xticks(np.arange(len(values)))
        ax.set_xticklabels([str(v) for v in values])
    ax.set_xlabel(main)
    ax.set_ylabel(_response_label(design))
    title = None if interval is None else f"{100 * interval:g} % {_interval_kind(source)}"
    ax.legend(loc="best", fontsize=8, frameon=False, title=title, title_fontsize=8)


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


def _category_effects(ax, values, factor, prediction, levels, interval, source) -> None:
    """An ordinal or categorical model's category probabilities over ``values``: one colour per category."""
    import matplotlib.pyplot as plt

    mean, lower, upper = prediction
    if source.family.categorical:  # unordered: distinct hues, no ramp that suggests an order
        colours = plt.get_cmap("tab10")(np.arange(mean.shape[1]) % 10)
    else:
        colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, mean.shape[1]))
    kind = _interval_kind(source)
    offsets = np.linspace(-0.25, 0.25, mean.shape[1]) if factor else None
    for k, (level, colour) in enumerate(zip(levels, colours)):
        if factor:
            pos = np.arange(len(values)) + offsets[k]
            yerr = None if lower is None else np.vstack([mean[:, k] - lower[:, k], upper[:, k] - mean[:, k]])
            bars = ax.errorbar(pos, mean[:, k], yerr=yerr, fmt="o", color=colour, ms=5, capsize=3, label=str(level))
            bars.lines[0].set_gid(f"prediction {level}")
            continue
        if lower is not None:
            ax.fill_between(values, lower[:, k], upper[:, k], color=colour, alpha=0.15, lw=0, gid=f"interval {level}")
        ax.plot(values, mean[:, k], color=colour, lw=2, gid=f"prediction {level}", label=str(level))
    if factor:
        ax.set_xticks(np.arange(len(values)))
        ax.set_xticklabels([str(v) for v in values])
        ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("probability of the category")
    band = "" if interval is None or lower is None else f"; intervals: {100 * interval:g} % {kind}"
    title = f"category{band}".replace("; ", "\n")
    # beside the axes: inside, it covers the points of some level
    ax.legend(title=title, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title_fontsize=8, frameon=False)
