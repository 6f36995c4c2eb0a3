"""The collapsed ("marginal") gaussian models: random effects, and beta under Normal priors,
integrated out exactly (the algebra: :mod:`bayesmix.bayes.collapsed.model`).

- :mod:`~bayesmix.bayes.collapsed.statistics`: the cross-products the likelihoods read, computed
  once from the rows or a Dask design's sums;
- :mod:`~bayesmix.bayes.collapsed.start`: rough posterior scales, for NUTS's start and each sampled
  block's parameterisation;
- :mod:`~bayesmix.bayes.collapsed.model`: the PyMC graphs, one block and several;
- :mod:`~bayesmix.bayes.collapsed.draws`: after sampling, the exact conditional draws of what was
  integrated out, and the pointwise log-likelihood.
"""

from bayesmix.bayes.collapsed.draws import _lower_solve, _upper_solve, draw_effects
from bayesmix.bayes.collapsed.model import (
    CrossedPlan,
    build_collapsed_model,
    build_crossed_model,
    build_marginal,
    collapsible,
    crossed_plan,
)
from bayesmix.bayes.collapsed.start import crossed_choices, initial_scales, rough_variances
from bayesmix.bayes.collapsed.statistics import (
    JOIN_MAX,
    CrossedArrays,
    CrossedStats,
    LevelStats,
    confounded_directions,
    crossed_arrays,
    crossed_stats,
    joins_beta,
    level_stats,
    normal_fixed_priors,
)

__all__ = [
    "JOIN_MAX",
    "CrossedArrays",
    "CrossedPlan",
    "CrossedStats",
    "LevelStats",
    "_lower_solve",
    "_upper_solve",
    "build_collapsed_model",
    "build_crossed_model",
    "build_marginal",
    "collapsible",
    "confounded_directions",
    "crossed_arrays",
    "crossed_choices",
    "crossed_plan",
    "crossed_stats",
    "draw_effects",
    "initial_scales",
    "joins_beta",
    "level_stats",
    "normal_fixed_priors",
    "rough_variances",
]
