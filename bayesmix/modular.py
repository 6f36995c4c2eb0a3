"""lme4's modular steps, each callable alone: parse and encode (``lFormula``), the deviance as a
function of the covariance parameters (``mkLmerDevfun`` / ``mkGlmerDevfun``), the optimiser
(``optimizeLmer`` / ``optimizeGlmer``) and the fit object (``mkMerMod``).

    from bayesmix import modular
    design = modular.l_formula("Reaction ~ Days + (Days | Subject)", data)
    devfun = modular.mk_lmer_devfun(design, reml=True)      # theta -> REML criterion
    devfun(devfun.start)                                   # at lme4's start (identity factors)
    result = modular.optimize_lmer(design, reml=True)      # BOBYQA, then Newton on the exact gradient
    fit = modular.mk_mer_mod(design, result)               # the MixedFit Model.fit("reml") returns

Each step is the one ``Model.fit`` runs, so the pieces give the same numbers: a user can evaluate
the criterion anywhere (a profile, a grid, another optimiser) or change one stage.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from bayesmix.design.encode import Design, build_design, formula_for_data
from bayesmix.design.formula import parse_formula
from bayesmix.exact.glmm import GlmmResult, deviance_function, fit_glmm, glmm_problem
from bayesmix.exact.lmm import LmmResult, cross_products, fit_lmm, objective
from bayesmix.families import Family, get_family
from bayesmix.mixedfit import MixedFit, from_glmm, from_lmm


def l_formula(
    formula: str, data, categorical=None, missing="drop", offset=None, contrasts=None, weights=None
) -> Design:
    """lme4's ``lFormula``: the formula parsed and the data encoded (X, the random-effect blocks,
    offsets, weights), with the same arguments as :class:`bayesmix.Model`. (A binomial proportion's
    weights become its trials when a GLMM stage reads the design with its family.)"""
    spec, data = formula_for_data(parse_formula(formula), data, offset, weights)
    return build_design(spec, data, categorical, missing, contrasts)


@dataclass(frozen=True)
class Devfun:
    """A deviance function of the covariance parameters theta (lme4's order and scale), with the
    start lme4 uses (each block's relative covariance factor the identity) and theta's lower bounds
    (0 on the diagonals of the factors)."""

    function: object
    start: np.ndarray
    lower: np.ndarray

    def __call__(self, theta) -> float:
        return float(self.function(np.asarray(theta, dtype=float)))


def mk_lmer_devfun(design: Design, reml: bool = True) -> Devfun:
    """lme4's ``mkLmerDevfun``: theta -> the profiled ML deviance or REML criterion (beta and sigma
    profiled out), from the data's cross-products computed once."""
    columns, _, _ = design.fixed_columns()
    cp = cross_products(design, columns)
    lower = cp.layout.lower()
    return Devfun(lambda theta: objective(cp, theta, reml), cp.layout.start(), lower)


def mk_glmer_devfun(design: Design, family="binomial", nagq: int = 1) -> Devfun:
    """lme4's ``mkGlmerDevfun`` (its second stage): (theta, beta[, log dispersion]) -> -2 log L by
    the Laplace approximation (``nagq=1``) or adaptive Gauss-Hermite quadrature."""
    family = family if isinstance(family, Family) else get_family(family)
    problem, X, _, _, _ = glmm_problem(design, family)
    problem = replace(problem, X=X)  # beta in the user's columns, as the fit reports it
    extra = X.shape[1] + sum(problem.auxiliary_sizes)
    start = np.concatenate([problem.layout.start(), np.zeros(extra)])
    lower = np.concatenate([problem.layout.lower(), np.full(extra, -np.inf)])
    return Devfun(deviance_function(problem, nagq), start, lower)


def optimize_lmer(design: Design, reml: bool = True) -> LmmResult:
    """lme4's ``optimizeLmer``: BOBYQA over theta, then Newton's method on the exact gradient."""
    return fit_lmm(design, reml)


def optimize_glmer(design: Design, family="binomial", nagq: int = 1) -> GlmmResult:
    """lme4's ``optimizeGlmer``: the Laplace (or quadrature) fit over (theta, beta[, dispersion])."""
    family = family if isinstance(family, Family) else get_family(family)
    return fit_glmm(design, family, nagq)


def mk_mer_mod(design: Design, result: LmmResult | GlmmResult, family="gaussian") -> MixedFit:
    """lme4's ``mkMerMod``: the fit object (tables, summary, predict, JSON) of an optimiser's result."""
    family = family if isinstance(family, Family) else get_family(family)
    if isinstance(result, GlmmResult):
        return from_glmm(design, result.problem.family, result)
    return from_lmm(design, family, result)
