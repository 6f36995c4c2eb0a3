"""The Matérn correlation of glmmTMB's ``mat(pos + 0 | g)``, its smoothness estimated.

C(d) = 2^(1 - kappa) / Gamma(kappa) (d / r)^kappa K_kappa(d / r), range r and smoothness kappa (TMB's
``matern``; kappa = 1/2 is the exponential exp(-d / r)). Both engines need it differentiable in
kappa, which no Bessel function of SciPy, PyTensor or JAX is. So K comes from its integral
K_kappa(x) = int_0^inf exp(-x cosh t) cosh(kappa t) dt by the trapezoid rule on fixed nodes
(exponentially accurate: the integrand is analytic in a strip about the real axis), in the log
domain; its derivatives in x and kappa are integrals over the same nodes. The sums are written
once over an array namespace (numpy for the exact engine's derivatives, pytensor.tensor for the
sampler); the exact engine's values come from SciPy's ``kv`` where it is finite (tests check the
two agree to ~1e-14).
"""

from __future__ import annotations

import numpy as np

STEP = 0.1  # the nodes' spacing: the trapezoid's error ~ exp(-pi^2 / STEP), below double precision
NODES = np.arange(0.0, 25.0 + STEP / 2, STEP)  # cosh(25) ~ 4e10: d / r down to 1e-8 is integrated to its tail
_LOG_WEIGHTS = np.log(np.where(NODES == 0.0, STEP / 2, STEP))


def _log_cosh(z, xp):
    """log cosh z for z >= 0 without overflow: z + log((1 + e^-2z) / 2)."""
    return z + xp.log1p(xp.exp(-2.0 * z)) - np.log(2.0)


def log_bessel_terms(x, kappa, xp=np):
    """The trapezoid's log terms of K_kappa(x), the nodes on a last axis: log w_i - x cosh t_i +
    log cosh(kappa t_i)."""
    t = NODES
    return _LOG_WEIGHTS - x[..., None] * np.cosh(t) + _log_cosh(kappa * t, xp)


def log_matern(x, kappa, gammaln, xp=np, constant=lambda value: value):
    """log C at x = d / r > 0 (and the log terms of K, for the derivatives). ``constant`` marks the
    log-sum-exp's shift as carrying no gradient (PyTensor's ``disconnected_grad``): the sum does
    not depend on it, and differentiating the maximum costs a mask over every term."""
    terms = log_bessel_terms(x, kappa, xp)
    top = constant(xp.max(terms, axis=-1))
    log_k = top + xp.log(xp.sum(xp.exp(terms - top[..., None]), axis=-1))
    return (1.0 - kappa) * np.log(2.0) - gammaln(kappa) + kappa * xp.log(x) + log_k, terms, log_k


def matern_correlation(distances: np.ndarray, r: float, kappa: float) -> np.ndarray:
    """The (k, k) correlation at the positions' distances (1 on the diagonal; distinct positions
    have d > 0)."""
    from scipy.special import gammaln, kv

    rows, columns = np.triu_indices(len(distances), 1)  # symmetric: each pair once
    x = distances[rows, columns] / r
    # SciPy's Bessel function where it is finite (fast, and the quadrature's equal to ~1e-14);
    # the quadrature, in the log domain, where x^kappa K overflows or underflows in parts
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        upper = np.exp((1.0 - kappa) * np.log(2.0) - gammaln(kappa) + kappa * np.log(x)) * kv(kappa, x)
    bad = ~np.isfinite(upper)
    if bad.any():
        upper[bad] = np.exp(log_matern(x[bad], kappa, gammaln)[0])
    C = np.eye(len(distances))
    C[rows, columns] = C[columns, rows] = upper
    return C


def matern_derivatives(distances: np.ndarray, r: float, kappa: float) -> tuple[np.ndarray, np.ndarray]:
    """(dC / dlog r, dC / dlog kappa), each (k, k): d log K / dx = -E[cosh t] and
    d log K / dkappa = E[t tanh(kappa t)] under the trapezoid terms' weights; x = d / r moves as -x."""
    from scipy.special import gammaln, psi

    rows, columns = np.triu_indices(len(distances), 1)
    x = distances[rows, columns] / r
    log_c, terms, log_k = log_matern(x, kappa, gammaln)
    weights = np.exp(terms - log_k[:, None])
    mean_cosh = weights @ np.cosh(NODES)
    mean_t_tanh = weights @ (NODES * np.tanh(kappa * NODES))
    C = np.exp(log_c)
    by_range, by_smoothness = np.zeros_like(distances), np.zeros_like(distances)
    by_range[rows, columns] = by_range[columns, rows] = C * (x * mean_cosh - kappa)
    pieces = -np.log(2.0) - psi(kappa) + np.log(x) + mean_t_tanh
    by_smoothness[rows, columns] = by_smoothness[columns, rows] = C * kappa * pieces
    return by_range, by_smoothness
