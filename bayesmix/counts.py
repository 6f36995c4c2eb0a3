"""Counts with a zero process: zero-inflated, hurdle and zero-truncated poisson and negative binomial.

For the Laplace engine: each row's log-likelihood and its first two derivatives in the mean's
linear predictor eta (log link), given the zero process's probability (``zi``: a structural zero,
glmmTMB's ziformula and brms's ``zi``; ``hu``: any zero, brms's ``hu``). For simulation and
prediction: the response's mean, variance and random draws. Written from the count
distribution's zero probability p0 = P(y = 0) and q = -d log p0 / d eta:

    poisson:            log p0 = -mu,                              q = mu,                   q' = mu
    negative binomial:  log p0 = alpha log(alpha / (alpha + mu)),   q = alpha mu / (alpha + mu),
                                                                   q' = alpha^2 mu / (alpha + mu)^2

Zero-inflated, y = 0: log(zi + (1 - zi) p0), with r = (1 - zi) p0 / (zi + (1 - zi) p0) the share of
the zero the count process explains: d1 = -q r, d2 = -r (q' - q^2 + q^2 r). Zero-truncated, y > 0:
the count's terms less log(1 - p0), with t = p0 / (1 - p0): d1 -= q t, d2 -= t (q' - q^2) - q^2 t^2.
A hurdle model is a zero with probability hu, else the zero-truncated count.
"""

from __future__ import annotations

import numpy as np

# family name -> (the count distribution, the zero process)
ZERO_FAMILIES = {
    "zero_inflated_poisson": ("poisson", "zi"),
    "zero_inflated_negativebinomial": ("negativebinomial", "zi"),
    "hurdle_poisson": ("poisson", "hu"),
    "hurdle_negativebinomial": ("negativebinomial", "hu"),
    "truncated_poisson": ("poisson", "truncated"),
    "truncated_negativebinomial": ("negativebinomial", "truncated"),
}


def _count_terms(count: str, eta, y, alpha):
    """(ll, d1, d2) of the untruncated count, log link."""
    from scipy.special import gammaln

    mu = np.exp(eta)
    if count == "poisson":
        return y * eta - mu - gammaln(y + 1), y - mu, -mu
    log_total = np.logaddexp(np.log(alpha), eta)
    ll = gammaln(y + alpha) - gammaln(alpha) - gammaln(y + 1) + alpha * (np.log(alpha) - log_total)
    ll = ll + y * (eta - log_total)
    return ll, alpha * (y - mu) / (alpha + mu), -alpha * mu * (y + alpha) / (alpha + mu) ** 2


def zero_probability(count: str, eta, alpha):
    """(log p0, q, q') of the count distribution at eta (see the module docstring)."""
    mu = np.exp(eta)
    if count == "poisson":
        return -mu, mu, mu
    log_p0 = alpha * (np.log(alpha) - np.logaddexp(np.log(alpha), eta))
    return log_p0, alpha * mu / (alpha + mu), alpha**2 * mu / (alpha + mu) ** 2


def _truncation(count: str, eta, alpha):
    """(log(1 - p0), the change to d1, the change to d2) of truncating the count at zero."""
    log_p0, q, dq = zero_probability(count, eta, alpha)
    log_positive = np.log(-np.expm1(log_p0))
    t = np.exp(log_p0 - log_positive)  # p0 / (1 - p0)
    return log_positive, -q * t, -(t * (dq - q**2) - q**2 * t**2)


def zero_terms(family: str, eta, y, params):
    """(ll, d1, d2) per row for the zero-inflated, hurdle and zero-truncated families."""
    count, zero = ZERO_FAMILIES[family]
    eta, y = np.broadcast_arrays(np.asarray(eta, dtype=float), np.asarray(y, dtype=float))
    alpha = params.get("alpha")
    ll, d1, d2 = (np.array(a, dtype=float) for a in _count_terms(count, eta, y, alpha))
    zeros = y == 0
    if zero == "zi":
        zi = np.broadcast_to(params["zi"], eta.shape)
        log_p0, q, dq = zero_probability(count, eta, alpha)
        counted = np.log1p(-zi) + log_p0
        at_zero = np.logaddexp(np.log(zi), counted)
        r = np.exp(counted - at_zero)
        ll = np.where(zeros, at_zero, np.log1p(-zi) + ll)
        d1 = np.where(zeros, -q * r, d1)
        d2 = np.where(zeros, -r * (dq - q**2 + q**2 * r), d2)
        return ll, d1, d2
    log_positive, change1, change2 = _truncation(count, eta, alpha)
    ll, d1, d2 = ll - log_positive, d1 + change1, d2 + change2
    if zero == "truncated":
        return ll, d1, d2
    hu = np.broadcast_to(params["hu"], eta.shape)
    ll = np.where(zeros, np.log(hu), np.log1p(-hu) + ll)
    return ll, np.where(zeros, 0.0, d1), np.where(zeros, 0.0, d2)


def _positive_moments(count: str, mu, alpha):
    """(E[y | y > 0], E[y^2 | y > 0]) of the count."""
    log_p0, _, _ = zero_probability(count, np.log(mu), alpha)
    positive = -np.expm1(log_p0)
    variance = mu if count == "poisson" else mu + mu**2 / alpha
    return mu / positive, (variance + mu**2) / positive


def zero_moments(family: str, mu, params):
    """The response's (mean, variance) given the count's mean ``mu``."""
    count, zero = ZERO_FAMILIES[family]
    alpha = params.get("alpha")
    if zero == "zi":
        keep = 1.0 - np.asarray(params["zi"])
        variance = mu if count == "poisson" else mu + mu**2 / alpha
        mean = keep * mu
        return mean, keep * (variance + mu**2) - mean**2
    first, second = _positive_moments(count, mu, alpha)
    keep = 1.0 if zero == "truncated" else 1.0 - np.asarray(params["hu"])
    mean = keep * first
    return mean, keep * second - mean**2


def _positive_draws(count: str, mu, alpha, rng: np.random.Generator):
    """Zero-truncated counts by inversion: a uniform draw above P(y = 0), through the quantile function."""
    from scipy import stats

    if count == "poisson":
        base = stats.poisson(mu)
    else:
        base = stats.nbinom(alpha, alpha / (alpha + mu))
    p0 = base.pmf(0)
    u = p0 + (1.0 - p0) * rng.random(np.shape(mu))
    return np.maximum(base.ppf(np.minimum(u, 1.0 - 1e-16)), 1.0)


def zero_draws(family: str, mu, params, rng: np.random.Generator) -> np.ndarray:
    """Random responses with count mean ``mu`` (params broadcast against mu)."""
    count, zero = ZERO_FAMILIES[family]
    mu = np.asarray(mu, dtype=float)
    alpha = None if count == "poisson" else np.broadcast_to(params["alpha"], mu.shape)
    if zero == "zi":
        counts = rng.poisson(mu if alpha is None else rng.gamma(alpha, mu / alpha)).astype(float)
        return np.where(rng.random(mu.shape) < np.broadcast_to(params["zi"], mu.shape), 0.0, counts)
    positive = _positive_draws(count, mu, alpha, rng)
    if zero == "truncated":
        return positive
    return np.where(rng.random(mu.shape) < np.broadcast_to(params["hu"], mu.shape), 0.0, positive)
