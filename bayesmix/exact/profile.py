"""Profile-likelihood intervals of a linear mixed model's parameters (lme4's ``confint`` default).

As lme4's ``profile.merMod``, on the ML deviance (a REML fit is profiled by ML, as lme4 refits it):
for each parameter psi, the profile deviance D(psi) is the deviance minimised over all the other
parameters with psi held, and the interval's bounds are where D(psi) - D(psi_hat) = z^2 (lme4's
signed root zeta = +-z, z the normal quantile of the level), found by root search on each side.

- The variance parameters are profiled on lme4's scale: per block each term's SD and the
  correlations, then sigma (``.sig01``, ... ``.sigma``). D(phi) = log|L_theta|^2 + n log(2 pi
  sigma^2) + r^2(theta) / sigma^2 with beta profiled out, theta = the relative factor
  diag(sd) chol(C) / sigma, minimised over the other entries of phi (bounded: SDs >= 0,
  correlations in (-1, 1), sigma > 0). An SD whose profile stays below the cut-off down to 0 has the
  lower bound 0 (a singular fit), as lme4; a correlation's bound is +-1 where the cut-off is not
  reached before.
- A fixed effect beta_k is profiled by refitting the model with x_k beta_k as an offset.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.optimize import brentq, minimize
from scipy.special import ndtri

from bayesmix.exact.lmm import LmmResult, factorize, fit_lmm

LOG_2PI = float(np.log(2.0 * np.pi))
CORRELATION_EDGE = 1.0 - 1e-8  # the largest |correlation| a profile visits (a factor stays finite)


def to_phi(result: LmmResult) -> np.ndarray:
    """(per block the SDs of its terms, then its correlations (upper triangle, row by row), then sigma)."""
    sigma = result.solution.sigma
    parts = []
    for T in result.cross.layout.factors(result.optimizer.x):
        cov = sigma**2 * T @ T.T
        sd = np.sqrt(np.diag(cov))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.where(np.outer(sd, sd) > 0, cov / np.outer(sd, sd), 0.0)
        parts += [sd, corr[np.triu_indices(len(sd), 1)]]
    return np.concatenate([*parts, [sigma]])


def to_theta(layout, phi: np.ndarray) -> np.ndarray | None:
    """theta of (SDs, correlations, sigma); None where a correlation matrix is not positive definite."""
    sigma, start, factors = phi[-1], 0, []
    for k in layout.sizes:
        sd = phi[start : start + k]
        pairs = k * (k - 1) // 2
        C = np.eye(k)
        C[np.triu_indices(k, 1)] = phi[start + k : start + k + pairs]
        C = C + np.triu(C, 1).T
        try:
            L = np.linalg.cholesky(C)
        except np.linalg.LinAlgError:
            return None
        factors.append(np.diag(sd) @ L / sigma)
        start += k + pairs
    return layout.theta(factors)


def _bounds(layout) -> list[tuple[float, float]]:
    out = []
    for k in layout.sizes:
        out += [(0.0, None)] * k + [(-CORRELATION_EDGE, CORRELATION_EDGE)] * (k * (k - 1) // 2)
    return [*out, (1e-10, None)]


def ml_deviance(cp, layout, phi: np.ndarray) -> float:
    """The ML deviance at (SDs, correlations, sigma), beta profiled out."""
    theta = to_theta(layout, phi)
    if theta is None or phi[-1] <= 0:
        return np.inf
    try:
        f = factorize(cp, theta)
    except np.linalg.LinAlgError:
        return np.inf
    sigma2 = phi[-1] ** 2
    return f.ldL2 + cp.n * (LOG_2PI + np.log(sigma2)) + f.pwrss / sigma2 - cp.log_weights


def variance_profile(result: LmmResult, index: int):
    """D(value) of the variance parameter ``index`` of phi, the others minimised (warm-started)."""
    cp, layout = result.cross, result.cross.layout
    bounds = _bounds(layout)
    warm = {"phi": to_phi(result)}

    def profile(value: float) -> float:
        free = [j for j in range(len(warm["phi"])) if j != index]

        def deviance(rest):
            phi = warm["phi"].copy()
            phi[free], phi[index] = rest, value
            return ml_deviance(cp, layout, phi)

        if not free:
            return deviance(np.zeros(0))
        found = minimize(deviance, warm["phi"][free], method="L-BFGS-B", bounds=[bounds[j] for j in free])
        warm["phi"][free], warm["phi"][index] = found.x, value
        return float(found.fun)

    return profile


def fixed_profile(design, result: LmmResult, k: int):
    """D(value) of the fixed effect ``k``: the ML fit with x_k value as an offset (theta warm-started)."""
    X, y = design.X, design.y
    rest = [j for j in range(X.shape[1]) if j != k]
    names = tuple(design.fixed_names[j] for j in rest)

    def profile(value: float) -> float:
        moved = replace(design, X=X[:, rest], fixed_names=names, y=y - X[:, k] * value)
        return fit_lmm(moved, reml=False, start=result.optimizer.x).criterion

    return profile


def interval(profile, estimate: float, minimum: float, level: float, scale: float, low=None, high=None):
    """(lower, upper): where the profile deviance rises z^2 above its minimum on each side of the
    estimate; a side that stays below the cut-off up to its edge (``low``, ``high``) ends there."""
    cutoff = ndtri(0.5 + level / 2.0) ** 2

    def excess(value):
        return profile(value) - minimum - cutoff

    bounds = []
    for direction, edge in ((-1.0, low), (1.0, high)):
        step, inner = max(scale, 1e-8), estimate
        for _ in range(60):
            outer = estimate + direction * step
            if edge is not None and direction * (outer - edge) >= 0:
                outer = edge
            if excess(outer) > 0:
                bounds.append(
                    brentq(excess, min(inner, outer), max(inner, outer), xtol=1e-10 * max(1.0, abs(estimate)))
                )
                break
            if edge is not None and outer == edge:
                bounds.append(edge)
                break
            inner, step = outer, step * 2.0
        else:
            bounds.append(np.nan)
    return bounds[0], bounds[1]
