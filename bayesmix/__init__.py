"""bayesmix: lme4-style mixed-effects models on PyMC.

m = bayesmix.Model("Reaction ~ Days + (Days | Subject)", bayesmix.load_dataset("sleepstudy"))
idata = m.sample()
print(m.summary())

Importing the package is light and changes nothing in the process: the modelling API (``Model``,
``load``, the tables and plots) is imported on first use (PEP 562), and JAX is configured when a
JAX sampler first runs; a program that imports JAX itself before that calls
``bayesmix.configure_jax()`` first (XLA's CPU devices for parallel chains, the compilation cache).
"""

import importlib

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
from bayesmix.memory import memory_budget, set_memory_budget
from bayesmix.nuts.jax_config import configure_jax

__version__ = "0.1.0"

# name -> the module that defines it, imported when the name is first read
_LAZY = {
    "Model": "bayesmix.model",
    "Prior": "bayesmix.bayes.priors",
    "load": "bayesmix.loading",
    "anova": "bayesmix.compare",
    "scaled_residuals": "bayesmix.after.checks",
    "fixef": "bayesmix.after.tidy",
    "ranef": "bayesmix.after.tidy",
    "varcorr": "bayesmix.after.tidy",
    "r2": "bayesmix.after.r2",
    "icc": "bayesmix.after.r2",
    "coef": "bayesmix.after.verbs",
    "fitted": "bayesmix.after.verbs",
    "residuals": "bayesmix.after.verbs",
    "simulate": "bayesmix.after.verbs",
    "confint": "bayesmix.after.confint",
    "emmeans": "bayesmix.after.emmeans",
    "contrast": "bayesmix.after.emmeans",
    "pairs": "bayesmix.after.emmeans",
    "hypothesis": "bayesmix.after.hypothesis",
    "num_factor": "bayesmix.design.covariance",
}
_LAZY_MODULES = {"plots", "modular"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _LAZY_MODULES:
        value = importlib.import_module(f"bayesmix.{name}")
    else:
        raise AttributeError(f"module 'bayesmix' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_LAZY, *_LAZY_MODULES})


__all__ = [
    "num_factor",
    "configure_jax",
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
    "r2",
    "icc",
    "coef",
    "fitted",
    "residuals",
    "simulate",
    "confint",
    "emmeans",
    "contrast",
    "pairs",
    "hypothesis",
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
