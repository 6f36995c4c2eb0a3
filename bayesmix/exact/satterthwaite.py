"""Satterthwaite's degrees of freedom for tests of a linear mixed model's fixed effects (lmerTest's).

For a contrast L'beta the variance is L' C L with C = Var(beta_hat) a function of the variance
parameters phi = (theta, sigma) (lmerTest's "varpar"). With A the Hessian of the deviance in phi at
the estimate (-2 log-likelihood for ML, the REML criterion for REML), Var(phi_hat) = 2 A^{-1}, and
g the gradient of L' C L in phi, the approximate denominator df is

    nu = 2 (L' C L)^2 / (g' Var(phi_hat) g)

(Satterthwaite 1946; Kuznetsova, Brockhoff and Christensen 2017). For a q-row L (an F test) L C L'
is diagonalised, each direction gets its nu_m, and the F statistic's df is 2 E / (E - q) with E the
sum of nu_m / (nu_m - 2) (lmerTest's ``contestMD``).

The deviance at (theta, sigma) has beta profiled out (REML: integrated out):
ML: log|L_theta|^2 + n log(2 pi sigma^2) + r^2(theta) / sigma^2; REML adds log|R_X|^2 and has n - p
in place of n (lme4's equations 34 and 41, Bates et al. 2015). Both it and C are functions of the
exact engine's factorisation, differentiated here by Richardson-extrapolated central differences
(numDeriv's method, which lmerTest uses).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import fdtrc

from bayesmix.exact.lmm import LmmResult, factorize

LOG_2PI = float(np.log(2.0 * np.pi))
STEP = 1e-2  # relative step of the coarsest differences, halved for each level of the extrapolation
LEVELS = 4


@dataclass(frozen=True)
class VarianceDerivatives:
    """At the estimate: C = Var(beta_hat) (p, p), its derivatives in phi = (theta, sigma) (m, p, p),
    and Var(phi_hat) = 2 A^{-1} (m, m)."""

    vcov: np.ndarray
    jacobian: np.ndarray
    phi_vcov: np.ndarray

    @property
    def adjusted(self) -> np.ndarray:
        """The covariance the tests' standard errors use: Var(beta_hat) itself (Kenward-Roger's
        pieces, :class:`bayesmix.exact.kenward_roger.KenwardRoger`, adjust it; the two share this face)."""
        return self.vcov

    def contrast_df(self, L: np.ndarray) -> float:
        return contrast_df(L, self)

    def f_test(self, L: np.ndarray, beta: np.ndarray) -> FTest:
        return f_test(L, beta, self)


class _Pieces:
    """What the derivatives read at one theta, each factorisation made once: log|L|^2 (+ log|R_X|^2
    for REML), r^2 and (L_X L_X')^{-1}."""

    def __init__(self, result: LmmResult):
        self.result, self.cache = result, {}

    def __call__(self, theta: np.ndarray) -> tuple[float, float, np.ndarray]:
        key = tuple(np.round(theta, 15))
        if key not in self.cache:
            cp, f = self.result.cross, factorize(self.result.cross, theta)
            L_X = f.L_RR[cp.q2 : cp.q2 + cp.p, cp.q2 : cp.q2 + cp.p]
            log_det = f.ldL2 + (f.ldRX2 if self.result.reml else 0.0)
            self.cache[key] = (log_det, f.pwrss, np.linalg.inv(L_X @ L_X.T))
        return self.cache[key]


def _deviance(result: LmmResult, pieces: _Pieces, phi: np.ndarray) -> float:
    cp = result.cross
    log_det, pwrss, _ = pieces(phi[:-1])
    dof = cp.n - cp.p if result.reml else cp.n
    sigma2 = phi[-1] ** 2
    return log_det + dof * (LOG_2PI + np.log(sigma2)) + pwrss / sigma2 - cp.log_weights


def _vcov(pieces: _Pieces, phi: np.ndarray) -> np.ndarray:
    return phi[-1] ** 2 * pieces(phi[:-1])[2]


def _steps(phi: np.ndarray) -> np.ndarray:
    return STEP * np.maximum(np.abs(phi), 0.1)


def _richardson(difference, h: float, levels: int = LEVELS):
    """Central differences at h, h / 2, h / 4, ... extrapolated (Richardson's table): each level
    removes the next even power of h from the error."""
    table = [difference(h / 2.0**k) for k in range(levels)]
    for order in range(1, levels):
        factor = 4.0**order
        table = [(factor * fine - coarse) / (factor - 1.0) for coarse, fine in zip(table[:-1], table[1:])]
    return table[0]


def _hessian(fun, x: np.ndarray) -> np.ndarray:
    m, steps = len(x), _steps(x)
    H = np.empty((m, m))
    f0 = fun(x)
    for i in range(m):
        e_i = np.eye(m)[i]
        H[i, i] = _richardson(lambda h, e=e_i: (fun(x + h * e) - 2.0 * f0 + fun(x - h * e)) / h**2, steps[i])
        for j in range(i):
            e_j = np.eye(m)[j] * steps[j] / steps[i]  # both coordinates stepped in proportion

            def mixed(h, e=e_i, d=e_j, hj=steps[j] / steps[i]):
                corners = fun(x + h * (e + d)) - fun(x + h * (e - d)) - fun(x - h * (e - d)) + fun(x - h * (e + d))
                return corners / (4.0 * h * h * hj)

            H[i, j] = H[j, i] = _richardson(mixed, steps[i])
    return H


def _jacobian(fun, x: np.ndarray) -> np.ndarray:
    steps = _steps(x)
    parts = []
    for i, e in enumerate(np.eye(len(x))):
        parts.append(_richardson(lambda h, e=e: (fun(x + h * e) - fun(x - h * e)) / (2.0 * h), steps[i]))
    return np.stack(parts)


def variance_derivatives(result: LmmResult) -> VarianceDerivatives:
    """C, dC/dphi and Var(phi_hat) at an ML/REML fit's estimate (phi = lme4's theta, then sigma).
    Every evaluation at one theta shares its factorisation (sigma moves no factor), so the cost is
    the theta differences': 2 m + 4 m (m - 1) / 2 factorisations per level of the extrapolation."""
    phi = np.append(result.optimizer.x, result.solution.sigma)
    pieces = _Pieces(result)
    hessian = _hessian(lambda v: _deviance(result, pieces, v), phi)
    jacobian = _jacobian(lambda v: _vcov(pieces, v), phi)
    return VarianceDerivatives(result.solution.vcov, jacobian, 2.0 * np.linalg.pinv(hessian))


def contrast_df(L: np.ndarray, d: VarianceDerivatives) -> float:
    """Satterthwaite's df of the contrast L'beta (one row L, (p,))."""
    variance = float(L @ d.vcov @ L)
    g = np.einsum("i,mij,j->m", L, d.jacobian, L)
    return _moment_match(variance, float(g @ d.phi_vcov @ g))


def _moment_match(variance: float, spread: float) -> float:
    """2 v^2 / Var(v): NaN where the variance's estimated spread is not positive (a fit on the
    boundary whose variance parameters leave L'CL unmoved), where no df can be matched."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 2.0 * variance**2 / spread if spread > 0 and np.isfinite(spread) else float("nan")


@dataclass(frozen=True)
class FTest:
    """One F test of L beta = 0: statistic, numerator and denominator df, p-value, and the statistic
    before Kenward-Roger's scaling (the same F for Satterthwaite's test)."""

    F: float
    numerator_df: int
    denominator_df: float
    p_value: float
    unscaled: float | None = None


def f_test(L: np.ndarray, beta: np.ndarray, d: VarianceDerivatives, tolerance: float = 1e-8) -> FTest:
    """The F test of the q-row contrast L beta = 0 with Satterthwaite's denominator df (lmerTest's
    ``contestMD``): L C L' = P diag(v) P' over its positive eigenvalues, F the mean of the squared
    t statistics of the directions P' L, their df combined as 2 E / (E - q)."""
    values, vectors = np.linalg.eigh(L @ d.vcov @ L.T)
    keep = values > tolerance * max(values.max(initial=0.0), 1e-300)
    values, PL = values[keep], vectors[:, keep].T @ L
    q = len(values)
    F = float(np.sum((PL @ beta) ** 2 / values)) / q
    nu = np.array([_moment_match(v, _quadratic(row, d)) for row, v in zip(PL, values)])
    if q == 1 or np.all(np.abs(np.diff(nu)) < tolerance):
        df = float(np.mean(nu))
    elif np.any(nu <= 2.0):
        df = 2.0  # lmerTest's value where a direction has too few df for the moment match
    else:
        E = float(np.sum(nu / (nu - 2.0)))
        df = 2.0 * E / (E - q)
    return FTest(F, q, df, float(fdtrc(q, df, F)), unscaled=F)


def _quadratic(row: np.ndarray, d: VarianceDerivatives) -> float:
    g = np.einsum("i,mij,j->m", row, d.jacobian, row)
    return float(g @ d.phi_vcov @ g)
