"""Profile-likelihood intervals of a GLMM's parameters (lme4's ``confint(glmer fit)``).

As for a linear mixed model (:mod:`bayesmix.exact.profile`), each parameter psi is held at a value
and the deviance (-2 log L: Laplace, or adaptive Gauss-Hermite quadrature with the fit's nAGQ) is
minimised over all the others; the bounds are where it rises z^2 above the fit's minimum. The
parameters are lme4's: per block each term's SD and the correlations (a GLMM's covariance has no
residual scale: theta is the SDs' factor itself), the fixed effects, and here also a family's own
constant parameters (glmmTMB's dispersion, profiled on its unbounded scale; the bounds mapped back).

Held and free parameters share one vector phi = (SDs and correlations per block, beta, the family
parameters' unbounded entries). The Laplace deviance's exact gradient in the outer vector
(theta, beta, ...) is carried to phi through the Jacobian of theta(SDs, correlations), so each
profile point is an L-BFGS-B minimisation warm-started from the last; with quadrature the
gradient is by differences.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from bayesmix.exact.glmm import GlmmResult, deviance_function, laplace_objective
from bayesmix.exact.profile import CORRELATION_EDGE, to_theta

JACOBIAN_STEP = 1e-7


def variance_size(layout) -> int:
    """Entries of phi holding the blocks' SDs and correlations."""
    return sum(k + k * (k - 1) // 2 for k in layout.sizes)


def to_phi(result: GlmmResult) -> np.ndarray:
    """(per block its SDs, then its correlations (upper triangle, row by row); beta; the family
    parameters' entries of the outer vector), at the fit's estimate."""
    problem, x = result.problem, result.optimizer.x
    n_theta = problem.layout.n_theta
    parts = []
    for T in problem.layout.factors(x[:n_theta]):
        cov = T @ T.T
        sd = np.sqrt(np.diag(cov))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.where(np.outer(sd, sd) > 0, cov / np.outer(sd, sd), 0.0)
        parts += [sd, corr[np.triu_indices(len(sd), 1)]]
    return np.concatenate([*parts, x[n_theta:]])


def bounds(result: GlmmResult) -> list[tuple[float | None, float | None]]:
    out = []
    for k in result.problem.layout.sizes:
        out += [(0.0, None)] * k + [(-CORRELATION_EDGE, CORRELATION_EDGE)] * (k * (k - 1) // 2)
    return out + [(None, None)] * (len(result.optimizer.x) - result.problem.layout.n_theta)


class _Outer:
    """phi -> the outer vector x, and the Jacobian of that map (identity past the variance part)."""

    def __init__(self, result: GlmmResult):
        self.layout, self.m = result.problem.layout, variance_size(result.problem.layout)

    def theta(self, variance: np.ndarray) -> np.ndarray | None:
        return to_theta(self.layout, np.append(variance, 1.0))

    def x(self, phi: np.ndarray) -> np.ndarray | None:
        theta = self.theta(phi[: self.m])
        return None if theta is None else np.concatenate([theta, phi[self.m :]])

    def pull_back(self, phi: np.ndarray, gradient_x: np.ndarray) -> np.ndarray:
        """The gradient in phi from the gradient in x (central differences of theta(SDs, corr))."""
        n_theta, variance = self.layout.n_theta, phi[: self.m]
        J = np.zeros((n_theta, self.m))
        centre = self.theta(variance)
        for j in range(self.m):
            h = JACOBIAN_STEP * max(1.0, abs(variance[j]))
            up, down = variance.copy(), variance.copy()
            up[j] += h
            down[j] -= h
            top, bottom = self.theta(up), self.theta(down)
            if top is None:  # a correlation at its edge: the one-sided difference
                top, h = centre, h / 2
            if bottom is None:
                bottom, h = centre, h / 2
            J[:, j] = (top - bottom) / (2 * h)
        return np.concatenate([J.T @ gradient_x[:n_theta], gradient_x[n_theta:]])


def profile(result: GlmmResult, index: int):
    """D(value) of phi's entry ``index``, the others minimised (warm-started from the last point)."""
    outer, limits = _Outer(result), bounds(result)
    laplace = result.nagq == 1
    evaluator = result.evaluate() if laplace else None
    objective = laplace_objective(result.problem, evaluator) if laplace else None
    deviance = deviance_function(result.problem, result.nagq, evaluator)
    warm = {"phi": to_phi(result)}

    def value_and_gradient(phi):
        x = outer.x(phi)
        if x is None:
            return np.inf, np.zeros(len(phi))
        value, gradient = objective(x)
        if not np.isfinite(value) or not np.all(np.isfinite(gradient)):
            return np.inf, np.zeros(len(phi))
        return value, outer.pull_back(phi, gradient)

    def value_only(phi):
        x = outer.x(phi)
        return np.inf if x is None else deviance(x)

    def at(value: float) -> float:
        free = np.array([j for j in range(len(warm["phi"])) if j != index])

        def restricted(rest):
            phi = warm["phi"].copy()
            phi[free], phi[index] = rest, value
            if laplace:
                total, gradient = value_and_gradient(phi)
                return total, gradient[free]
            return value_only(phi)

        found = minimize(
            restricted, warm["phi"][free], jac=laplace, method="L-BFGS-B", bounds=[limits[j] for j in free]
        )
        if np.isfinite(found.fun):
            warm["phi"][free], warm["phi"][index] = found.x, value
        return float(found.fun)

    return at
