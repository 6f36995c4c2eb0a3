"""bayesmix: lme4-style mixed-effects models on PyMC.

m = bayesmix.Model("Reaction ~ Days + (Days | Subject)", bayesmix.load_dataset("sleepstudy"))
idata = m.sample()
print(m.summary())
"""

import gc

from bayesmix._jax import configure_jax

configure_jax()  # before anything imports jax

# ruff: noqa: E402
from bayesmix import plots
from bayesmix.checks import scaled_residuals
from bayesmix.compare import anova
from bayesmix.datasets import DATASETS, load_dataset
from bayesmix.errors import (
    BayesmixError,
    BayesmixWarning,
    ConvergenceWarning,
    DivergenceWarning,
    LowESSWarning,
    MissingDataWarning,
    RankDeficientWarning,
    RhatWarning,
    SamplingInterruptedWarning,
    SingularFitWarning,
    TreeDepthWarning,
)
from bayesmix.families import FAMILY_NAMES
from bayesmix.loading import load
from bayesmix.memory import memory_budget, set_memory_budget
from bayesmix.model import Model
from bayesmix.priors import Prior
from bayesmix.tidy import fixef, ranef, varcorr

__version__ = "0.1.0"

# What the imports above created (pymc, pytensor, arviz, jax, scipy: ~1e6 objects) lives as long as
# the process. Moved out of the cyclic garbage collector's sight, it is no longer traversed by every
# full collection, nor at interpreter exit, which took 0.55 s of each `python script.py` here.
gc.freeze()

__all__ = [
    "Model",
    "Prior",
    "load_dataset",
    "load",
    "anova",
    "plots",
    "scaled_residuals",
    "fixef",
    "ranef",
    "varcorr",
    "DATASETS",
    "FAMILY_NAMES",
    "BayesmixError",
    "BayesmixWarning",
    "DivergenceWarning",
    "SingularFitWarning",
    "ConvergenceWarning",
    "RankDeficientWarning",
    "RhatWarning",
    "LowESSWarning",
    "TreeDepthWarning",
    "MissingDataWarning",
    "SamplingInterruptedWarning",
    "set_memory_budget",
    "memory_budget",
]
