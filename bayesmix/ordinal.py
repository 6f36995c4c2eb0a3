"""Ordinal responses: the cumulative link model (ordinal::clmm's, brms's and bambi's ``cumulative``).

A response with K ordered categories, coded 0..K-1, and K - 1 increasing thresholds c_1 < ... <
c_{K-1}: P(y <= k) = F(c_{k+1} - eta) with F the inverse link (logit, probit, cloglog, cauchit),
so a row in category k has probability F(a) - F(b), a = c_{k+1} - eta (+inf for the top category)
and b = c_k - eta (-inf for the bottom one). The linear predictor has no intercept: the thresholds
take its place, as clmm's and brms's. Here: each link's log CDF, log survival and log density
(numpy and PyTensor), each row's log-probability written so that neither tail cancels, its
eta-derivatives for the Laplace engine, draws and the category probabilities for prediction, and the
thresholds' unconstrained form for the optimiser (c_1, then the logs of the gaps).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log_expit, log_ndtr, ndtr

ORDINAL_FAMILIES = ("cumulative",)
ORDINAL_LINKS = ("logit", "probit", "cloglog", "cauchit")
LOG_SQRT_2PI = 0.5 * np.log(2 * np.pi)


def threshold_names(levels) -> list[str]:
    """clmm's and brms's names of the thresholds between consecutive levels: ``1|2``, ``2|3``..."""
    return [f"{low}|{high}" for low, high in zip(levels[:-1], levels[1:])]


def _log1mexp(x):
    """log(1 - exp(x)) for x <= 0, accurate at both ends (Maechler's switch at -log 2)."""
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(x > -np.log(2.0), np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


def log_cdf(link: str, x):
    if link == "logit":
        return log_expit(x)
    if link == "probit":
        return log_ndtr(x)
    if link == "cloglog":
        return _log1mexp(-np.exp(x))
    return np.log(0.5 + np.arctan(x) / np.pi)


def log_sf(link: str, x):
    if link == "logit":
        return log_expit(-x)
    if link == "probit":
        return log_ndtr(-x)
    if link == "cloglog":
        return -np.exp(x)
    return np.log(0.5 - np.arctan(x) / np.pi)


def cdf(link: str, x):
    if link == "logit":
        return expit(x)
    if link == "probit":
        return ndtr(x)
    if link == "cloglog":
        return -np.expm1(-np.exp(x))
    return 0.5 + np.arctan(x) / np.pi


def _log_density(link: str, x):
    """log f and d log f / dx of the link's distribution (0 density at +-inf)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if link == "logit":
            return log_expit(x) + log_expit(-x), 1.0 - 2.0 * expit(x)
        if link == "probit":
            return -0.5 * x**2 - LOG_SQRT_2PI, -x
        if link == "cloglog":
            return x - np.exp(x), 1.0 - np.exp(x)
        return -np.log(np.pi) - np.log1p(x**2), -2.0 * x / (1.0 + x**2)


def bounds(y, eta, thresholds):
    """(a, b) per row: the upper and lower cut points less eta (+inf / -inf at the ends)."""
    cuts = np.concatenate([[-np.inf], np.asarray(thresholds, dtype=float), [np.inf]])
    k = np.asarray(y, dtype=int)
    return cuts[k + 1] - eta, cuts[k] - eta


def log_interval(link: str, a, b):
    """log(F(a) - F(b)) for b < a, from whichever tail keeps the difference from cancelling: the
    CDF's where the interval lies left of 0 (a + b < 0), the survival function's otherwise."""
    with np.errstate(divide="ignore", invalid="ignore"):
        left = log_cdf(link, a) + _log1mexp(np.minimum(log_cdf(link, b) - log_cdf(link, a), 0.0))
        right = log_sf(link, b) + _log1mexp(np.minimum(log_sf(link, a) - log_sf(link, b), 0.0))
    centre = np.where(np.isfinite(a) & np.isfinite(b), a + b, np.where(np.isfinite(a), -1.0, 1.0))
    return np.where(centre < 0, left, right)


def cumulative_terms(eta, y, trials, params, link):
    """(log p, d/deta, d2/deta2) per row. With p = F(a) - F(b), a and b falling as eta rises:
    d log p = -(f(a) - f(b)) / p and d2 log p = (f'(a) - f'(b)) / p - (d log p)^2, each ratio formed
    in logs (f / p = exp(log f - log p)) so that a row far in a tail stays finite."""
    name = link.name if hasattr(link, "name") else link
    eta = np.asarray(eta, dtype=float)
    a, b = bounds(y, eta, params["thresholds"])
    ll = log_interval(name, a, b)
    ratios = []
    for x in (a, b):
        finite = np.isfinite(x)
        log_f, slope = _log_density(name, np.where(finite, x, 0.0))
        ratio = np.where(finite, np.exp(log_f - ll), 0.0)
        ratios.append((ratio, np.where(finite, ratio * slope, 0.0)))
    (fa, dfa), (fb, dfb) = ratios
    d1 = -(fa - fb)
    return ll, d1, (dfa - dfb) - d1**2


def probabilities(link: str, eta, thresholds) -> np.ndarray:
    """(..., K) category probabilities for linear predictors ``eta`` (any shape)."""
    eta = np.asarray(eta, dtype=float)
    cuts = np.asarray(thresholds, dtype=float)
    cumulative = cdf(link, cuts[..., None, :] - eta[..., None]) if cuts.ndim > 1 else cdf(link, cuts - eta[..., None])
    upper = np.concatenate([cumulative, np.ones(cumulative.shape[:-1] + (1,))], axis=-1)
    lower = np.concatenate([np.zeros(cumulative.shape[:-1] + (1,)), cumulative], axis=-1)
    return np.clip(upper - lower, 0.0, 1.0)


def draw(link: str, eta, thresholds, rng: np.random.Generator) -> np.ndarray:
    """Category codes 0..K-1: a uniform draw placed among the cumulative probabilities."""
    eta = np.asarray(eta, dtype=float)
    cuts = np.asarray(thresholds, dtype=float)
    cumulative = cdf(link, (cuts[..., None, :] if cuts.ndim > 1 else cuts) - eta[..., None])
    return np.sum(rng.random(eta.shape)[..., None] > cumulative, axis=-1).astype(float)


def to_thresholds(free) -> np.ndarray:
    """The unconstrained vector (c_1, log gaps) -> increasing thresholds."""
    free = np.asarray(free, dtype=float)
    with np.errstate(over="ignore"):
        return np.cumsum(np.concatenate([free[:1], np.exp(free[1:])]))


def from_thresholds(thresholds) -> np.ndarray:
    c = np.asarray(thresholds, dtype=float)
    return np.concatenate([c[:1], np.log(np.diff(c))])


def threshold_jacobian(free) -> np.ndarray:
    """d thresholds / d free (lower triangular): c_k = free_1 + sum_{j=2..k} exp(free_j)."""
    free = np.asarray(free, dtype=float)
    scales = np.concatenate([[1.0], np.exp(free[1:])])
    return np.tril(np.ones((len(free), len(free)))) * scales[None, :]


def start_thresholds(y, link: str) -> np.ndarray:
    """Thresholds at the link's quantiles of the cumulative proportions (eta = 0), the start."""
    from scipy.special import logit, ndtri

    codes = np.asarray(y, dtype=int)
    K = int(codes.max()) + 1
    proportions = np.clip(np.cumsum(np.bincount(codes, minlength=K))[:-1] / len(codes), 1e-4, 1 - 1e-4)
    if link == "probit":
        return ndtri(proportions)
    if link == "cloglog":
        return np.log(-np.log1p(-proportions))
    if link == "cauchit":
        return np.tan(np.pi * (proportions - 0.5))
    return logit(proportions)


# ---------------------------------------------------------------- PyTensor (the sampler's graph)


def _pt_log_cdf(link: str, x):
    import pytensor.tensor as pt

    if link == "logit":
        return -pt.softplus(-x)
    if link == "probit":
        return pt.log(0.5 * pt.erfc(-x / np.sqrt(2.0)))
    if link == "cloglog":
        return pt.log1mexp(-pt.exp(x))
    return pt.log(0.5 + pt.arctan(x) / np.pi)


def _pt_log_sf(link: str, x):
    import pytensor.tensor as pt

    if link == "logit":
        return -pt.softplus(x)
    if link == "probit":
        return pt.log(0.5 * pt.erfc(x / np.sqrt(2.0)))
    if link == "cloglog":
        return -pt.exp(x)
    return pt.log(0.5 - pt.arctan(x) / np.pi)


def pt_log_probability(link: str, y, eta, thresholds):
    """log P(y | eta, thresholds) per row in PyTensor, as :func:`log_interval`: the bottom and top
    categories from one tail alone, the middle ones from the tail the interval lies in. Every branch
    is finite (the missing cut point of an end category is a stand-in one unit beyond its
    neighbour): JAX differentiates the branches ``switch`` does not take too, and an infinite one
    would turn the gradient into NaN."""
    import pytensor.tensor as pt

    K = thresholds.type.shape[-1] + 1  # static: the sampler's graph keeps no symbolic shapes
    k = pt.cast(y, "int64")
    upper = pt.concatenate([thresholds, thresholds[-1:] + 1.0])[k]
    lower = pt.concatenate([thresholds[:1] - 1.0, thresholds])[k]
    a, b = upper - eta, lower - eta
    left = _pt_log_cdf(link, a) + pt.log1mexp(pt.minimum(_pt_log_cdf(link, b) - _pt_log_cdf(link, a), -1e-300))
    right = _pt_log_sf(link, b) + pt.log1mexp(pt.minimum(_pt_log_sf(link, a) - _pt_log_sf(link, b), -1e-300))
    middle = pt.switch(pt.lt(a + b, 0.0), left, right)
    return pt.switch(pt.eq(k, 0), _pt_log_cdf(link, a), pt.switch(pt.eq(k, K - 1), _pt_log_sf(link, b), middle))
