"""The outer optimiser over theta (and, for Laplace, beta), with an optimiser summary.

L-BFGS-B with central-difference gradients, diagonal elements of the relative covariance factors
bounded below at 0 (so singular fits land on the boundary, as in lme4). The objective functions
are smooth extensions across the bound (they depend on T T'), so the central differences there
are well defined.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

GRADIENT_TOLERANCE = 1e-3  # projected gradient above this (in deviance units) -> not converged


@dataclass(frozen=True)
class OptimizerSummary:
    """What the optimiser did: the optimum, the objective there, evaluations, the final projected
    gradient and scipy's message."""

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


def central_hessian(fun: Callable, x: np.ndarray, step: float = 1e-4) -> np.ndarray:
    n = len(x)
    h = step * np.maximum(1.0, np.abs(x))
    f0 = fun(x)
    H = np.empty((n, n))
    for i in range(n):
        ei = np.zeros(n)
        ei[i] = h[i]
        H[i, i] = (fun(x + ei) - 2 * f0 + fun(x - ei)) / h[i] ** 2
        for j in range(i):
            ej = np.zeros(n)
            ej[j] = h[j]
            H[i, j] = H[j, i] = (fun(x + ei + ej) - fun(x + ei - ej) - fun(x - ei + ej) + fun(x - ei - ej)) / (
                4 * h[i] * h[j]
            )
    return H


def newton_polish(fun: Callable, x: np.ndarray, lower: np.ndarray, iterations: int = 10) -> np.ndarray:
    """Newton steps on the free coordinates (those not held at a bound) from a near-optimal x.

    L-BFGS-B stops where the objective is flat to machine precision, which can leave theta ~1e-5
    off; a few Newton steps with a finite-difference Hessian reach ~1e-8.
    """
    value = fun(x)
    for _ in range(iterations):
        gradient = central_gradient(fun, x)
        free = ~((x <= lower + 1e-10) & (gradient > 0))
        if not free.any():
            break
        H = central_hessian(fun, x)[np.ix_(free, free)]
        try:
            np.linalg.cholesky(H)
        except np.linalg.LinAlgError:
            break  # not locally convex: keep the quasi-Newton answer
        step = np.zeros_like(x)
        step[free] = -np.linalg.solve(H, gradient[free])
        for _ in range(20):
            candidate = np.maximum(x + step, lower)
            candidate_value = fun(candidate)
            if candidate_value <= value + 1e-12 * max(1.0, abs(value)):
                break
            step /= 2
        else:
            break
        moved = np.max(np.abs(candidate - x))
        x, value = candidate, candidate_value
        if moved < 1e-10:
            break
    return x


def minimize_bounded(fun: Callable, start: np.ndarray, lower: np.ndarray) -> OptimizerSummary:
    evaluations = 0

    def counted(x):
        nonlocal evaluations
        evaluations += 1
        return fun(x)

    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
    result = minimize(
        counted,
        start,
        jac=lambda x: central_gradient(counted, x),
        method="L-BFGS-B",
        bounds=bounds,
        options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 2000, "maxcor": 20},
    )
    x = newton_polish(counted, np.maximum(result.x, lower), lower)
    gradient = projected(central_gradient(fun, x), x, lower)
    converged = bool(np.max(np.abs(gradient), initial=0.0) < GRADIENT_TOLERANCE)
    return OptimizerSummary(
        x=x,
        objective=float(fun(x)),
        evaluations=evaluations,
        gradient=gradient,
        converged=converged,
        message=str(result.message),
    )
