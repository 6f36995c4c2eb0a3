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
    plots.correlation(fit, "subject")            # Axes: a block's correlation matrix (ar1, cs, us)

Nothing here calls ``pyplot.show`` or picks a backend, so the functions work under Agg. Bad
arguments raise :class:`~bayesmix.errors.BayesmixError` (checked before any estimate is read, so
a typo is reported even for a model that has not been sampled yet). See docs/plots.md.
"""

from bayesmix.plots.conditional import conditional_effects
from bayesmix.plots.correlation import correlation
from bayesmix.plots.diagnostics import residuals, scaled_residuals
from bayesmix.plots.pooling import shrinkage
from bayesmix.plots.random_effects import caterpillar, qq_ranef
from bayesmix.report import INTERVAL

__all__ = [
    "INTERVAL",
    "caterpillar",
    "conditional_effects",
    "correlation",
    "qq_ranef",
    "residuals",
    "scaled_residuals",
    "shrinkage",
]
