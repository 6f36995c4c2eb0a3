"""The outer optimiser over theta (and, for Laplace, beta), with an optimiser summary.

BOBYQA (Powell's derivative-free bound-constrained quadratic-model method, from NLopt), as lme4
uses by default, with tolerances tight enough that the optimum is reached to the objective's
rounding level. (Profiled criteria are flat near the optimum: on Pastes, theta moves of 1e-5
change the REML criterion by ~1e-10, its rounding noise, so comparing values places theta only to
~1e-5; finite differences cannot do better. Linear mixed models then polish with Newton's method on
the exact gradient, bayesmix.exact.lmm.polish.) Diagonal elements of
the relative covariance factors are bounded below at 0 so singular fits land on the boundary.
Convergence is judged afterwards from a central-difference gradient, projected onto the feasible
set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import nlopt
import numpy as np

# Not converged when the projected gradient exceeds 1e-3 deviance units or, for large criteria,
# 1e-6 |f| (central differences of step 1e-5 carry rounding noise of ~1e-8 |f|).
GRADIENT_TOLERANCE = 1e-3
RELATIVE_GRADIENT_TOLERANCE = 1e-6
MAX_EVALUATIONS = 100_000


@dataclass(frozen=True)
class OptimizerSummary:
    """What the optimiser did: the optimum, the objective there, evaluations, the final projected
    gradient and NLopt's return code."""

    x: np.ndarray
    objective: float
    evaluations: int
    gradient: np.ndarray
    converged: bool
    message: str


def central_gradient(fun: Callable, x: np.ndarray, step: float = 1e-5) -> np.ndarray:
    grad = np.empty_like(x)
    for i in range(len(x)):
        h = step * max(1.0, abs(x[i]))
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (fun(up) - fun(down)) / (2 * h)
    return grad


def projected(gradient: np.ndarray, x: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """The gradient with components that push against an active lower bound set to 0."""
    at_bound = (x <= lower + 1e-10) & (gradient > 0)
    return np.where(at_bound, 0.0, gradient)


_RESULTS = {
    nlopt.SUCCESS: "success",
    nlopt.STOPVAL_REACHED: "stopval reached",
    nlopt.FTOL_REACHED: "ftol reached",
    nlopt.XTOL_REACHED: "xtol reached",
    nlopt.MAXEVAL_REACHED: "maximum evaluations reached",
    nlopt.MAXTIME_REACHED: "maximum time reached",
    nlopt.ROUNDOFF_LIMITED: "roundoff limited",
    nlopt.FAILURE: "failure",
}


def _optimiser(algorithm, objective: Callable, lower: np.ndarray, ftol_rel: float = 1e-15):
    """An NLopt optimiser over x >= lower, by default with tolerances tight enough to reach the
    objective's rounding level (the gradient then judges convergence)."""
    opt = nlopt.opt(algorithm, len(lower))
    opt.set_lower_bounds(np.asarray(lower, dtype=float))
    opt.set_min_objective(objective)
    opt.set_ftol_rel(ftol_rel)
    opt.set_xtol_abs(1e-10)
    opt.set_maxeval(MAX_EVALUATIONS)
    return opt


def minimize_bounded(
    fun: Callable, start: np.ndarray, lower: np.ndarray, ftol_rel: float = 1e-15, judge: bool = True
) -> OptimizerSummary:
    """Minimise ``fun`` over x >= lower (entries of -inf are free) from ``start``; ``ftol_rel``
    looser than the default where the caller finishes with an exact gradient. ``judge=False`` skips
    the central-difference gradient for a caller that judges convergence on an exact one (the
    summary's gradient is then NaN and ``converged`` only says that BOBYQA stopped well)."""
    evaluations = 0
    best = {"x": np.asarray(start, dtype=float).copy(), "value": np.inf}

    def objective(x, gradient=None):
        nonlocal evaluations
        evaluations += 1
        value = fun(np.asarray(x, dtype=float))
        value = float(value) if np.isfinite(value) else 1e300
        if value < best["value"]:
            best["x"], best["value"] = np.array(x, dtype=float), value
        return value

    opt = _optimiser(nlopt.LN_BOBYQA, objective, lower, ftol_rel)
    opt.set_initial_step(np.full(len(start), 0.2))
    try:
        x = opt.optimize(np.asarray(start, dtype=float))
        code = opt.last_optimize_result()
    except nlopt.RoundoffLimited:  # raised, not returned: keep the best point seen; judged by its gradient below
        x, code = best["x"], nlopt.ROUNDOFF_LIMITED
    x = np.maximum(x, lower)
    value = float(fun(x))
    # roundoff-limited typically still ends at the optimum (NLopt's documentation): the gradient decides
    stopped_well = (code > 0 and code != nlopt.MAXEVAL_REACHED) or code == nlopt.ROUNDOFF_LIMITED
    if judge:
        gradient = projected(central_gradient(fun, x), x, lower)
        tolerance = max(GRADIENT_TOLERANCE, RELATIVE_GRADIENT_TOLERANCE * abs(value))
        converged = stopped_well and bool(np.max(np.abs(gradient), initial=0.0) < tolerance)
    else:
        gradient, converged = np.full(len(x), np.nan), stopped_well
    return OptimizerSummary(
        x=x,
        objective=value,
        evaluations=evaluations,
        gradient=gradient,
        converged=converged,
        message=_RESULTS.get(code, f"nlopt code {code}"),
    )


def minimize_with_gradient(fun_and_gradient: Callable, start: np.ndarray, lower: np.ndarray) -> OptimizerSummary:
    """Minimise over x >= lower with the exact gradient: ``fun_and_gradient(x)`` gives (value,
    gradient). L-BFGS with bounds (NLopt's LD_LBFGS) needs far fewer evaluations than BOBYQA over
    many parameters; convergence is judged on the projected exact gradient, as for BOBYQA."""
    evaluations = 0
    best = {"x": np.asarray(start, dtype=float).copy(), "value": np.inf}

    def objective(x, gradient):
        nonlocal evaluations
        evaluations += 1
        value, exact = fun_and_gradient(np.asarray(x, dtype=float))
        finite = np.isfinite(value) and np.all(np.isfinite(exact))
        if gradient.size:
            gradient[:] = exact if finite else 0.0
        if finite and value < best["value"]:
            best["x"], best["value"] = np.array(x, dtype=float), float(value)
        return float(value) if finite else 1e300

    opt = _optimiser(nlopt.LD_LBFGS, objective, lower)
    try:
        x = opt.optimize(np.asarray(start, dtype=float))
        code = opt.last_optimize_result()
    except nlopt.RoundoffLimited:  # keep the best point seen; judged by its gradient below
        x, code = best["x"], nlopt.ROUNDOFF_LIMITED
    except Exception:  # NLopt's own failure types (not Python's): not converged, and the caller falls back
        x, code = best["x"], nlopt.FAILURE
    x = np.maximum(x, lower)
    value, exact = fun_and_gradient(x)
    if best["value"] < value:  # a failed line search can end above the best point it passed
        x = best["x"]
        value, exact = fun_and_gradient(x)
    gradient = projected(np.asarray(exact, dtype=float), x, lower)
    tolerance = max(GRADIENT_TOLERANCE, RELATIVE_GRADIENT_TOLERANCE * abs(value))
    small = bool(np.all(np.isfinite(gradient)) and np.max(np.abs(gradient), initial=0.0) < tolerance)
    stopped_well = (code > 0 and code != nlopt.MAXEVAL_REACHED) or code == nlopt.ROUNDOFF_LIMITED
    return OptimizerSummary(
        x=x,
        objective=float(value),
        evaluations=evaluations,
        gradient=gradient,
        converged=stopped_well and small,
        message=_RESULTS.get(code, f"nlopt code {code}"),
    )
