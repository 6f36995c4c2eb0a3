"""Ordinal responses: the cumulative link model (ordinal::clmm's, brms's and bambi's ``cumulative``).

A response with K ordered categories, coded 0..K-1, and K - 1 increasing thresholds c_1 < ... <
c_{K-1}: P(y <= k) = F(c_{k+1} - eta) with F the inverse link (logit, probit, cloglog, cauchit),
so a row in category k has probability F(a) - F(b), a = c_{k+1} - eta (+inf for the top category)
and b = c_k - eta (-inf for the bottom one). The linear predictor has no intercept: the thresholds
take its place, as clmm's and brms's. Here: each link's log CDF, log survival and log density
(numpy and PyTensor), each row's log-probability written so that neither tail cancels, its
eta-derivatives for the Laplace engine, draws and the category probabilities for prediction, and the
thresholds' unconstrained form for the optimiser (c_1, then the logs of the gaps).

Two sequential models (brms's ``sratio`` and ``acat``) share the response, the thresholds and the
intercept-free predictor, but not the ordering: their thresholds are free, as brms's.

- ``sratio`` (stopping ratio): P(y = k | y >= k) = F(c_k - eta), k < K; so
  log P(y = k) = log F(c_k - eta) + sum_{j<k} log S(c_j - eta) (S = 1 - F, no first term for k = K).
- ``acat`` (adjacent category): with q_j = F(eta - c_j), P(y = k) is proportional to
  prod_{j<k} q_j prod_{j>=k} (1 - q_j); for the logit link log P(y = k + 1) / P(y = k) = eta - c_k.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log_expit, log_ndtr, ndtr

ORDINAL_FAMILIES = ("cumulative", "sratio", "acat")
ORDERED_THRESHOLDS = ("cumulative",)  # the families whose thresholds increase (brms: the others are free)
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


def _sequential_parts(family: str, link: str, eta, thresholds):
    """(s, ds, d2s) of the sequential models, each (..., K): log P(y = k) = s_k - log sum_j exp(s_j)
    (acat; sratio's s is normalised already), and s_k's first two eta-derivatives."""
    eta = np.asarray(eta, dtype=float)[..., None]
    cuts = np.asarray(thresholds, dtype=float)
    if cuts.ndim > 1:  # a draw's thresholds per leading index: (..., K - 1) against eta (..., n)
        cuts = cuts[..., None, :]
    x = cuts - eta if family == "sratio" else eta - cuts  # (..., K - 1)
    log_f, slope = _log_density(link, x)
    log_F, log_S = log_cdf(link, x), log_sf(link, x)
    rF, rS = np.exp(log_f - log_F), np.exp(log_f - log_S)  # f / F and f / S
    # d/dx and d2/dx2 of log F and log S
    g1, g2 = rF, rF * slope - rF**2
    h1, h2 = -rS, -rS * slope - rS**2
    zero = np.zeros(x.shape[:-1] + (1,))
    if family == "sratio":  # s_k = log F(x_k) + sum_{j<k} log S(x_j); dx/deta = -1

        def tail(v):  # sum over j < k
            return np.concatenate([zero, np.cumsum(v, axis=-1)], axis=-1)

        def head(v):  # the k-th term, none for the top category
            return np.concatenate([v, zero], axis=-1)

        return head(log_F) + tail(log_S), -(head(g1) + tail(h1)), head(g2) + tail(h2)

    def split(first, second):  # sum_{j<k} first_j + sum_{j>=k} second_j; dx/deta = +1
        before = np.concatenate([zero, np.cumsum(first, axis=-1)], axis=-1)
        after = np.sum(second, axis=-1, keepdims=True) - np.concatenate([zero, np.cumsum(second, axis=-1)], axis=-1)
        return before + after

    return split(log_F, log_S), split(g1, h1), split(g2, h2)


def log_probabilities(family: str, link: str, eta, thresholds) -> np.ndarray:
    """(..., K) log category probabilities of an ordinal family."""
    if family == "cumulative":
        with np.errstate(divide="ignore"):
            return np.log(probabilities(link, eta, thresholds))
    s = _sequential_parts(family, link, eta, thresholds)[0]
    if family == "acat":
        top = np.max(s, axis=-1, keepdims=True)
        s = s - top - np.log(np.sum(np.exp(s - top), axis=-1, keepdims=True))
    return s


def sequential_terms(family: str, eta, y, params, link):
    """(log p, d/deta, d2/deta2) per row of ``sratio`` or ``acat`` (y the codes 0..K-1): sratio's
    log p is s_y itself; acat's is s_y less the log normaliser, whose derivatives are the mean and
    variance of ds over the categories."""
    name = link.name if hasattr(link, "name") else link
    s, ds, d2s = _sequential_parts(family, name, eta, params["thresholds"])
    k = np.asarray(y, dtype=int)[..., None]
    pick = lambda v: np.take_along_axis(v, k, axis=-1)[..., 0]  # noqa: E731
    if family == "sratio":
        return pick(s), pick(ds), pick(d2s)
    top = np.max(s, axis=-1, keepdims=True)
    p = np.exp(s - top)
    p /= np.sum(p, axis=-1, keepdims=True)
    mean_ds = np.sum(p * ds, axis=-1)
    var_ds = np.sum(p * ds**2, axis=-1) - mean_ds**2
    log_normaliser = top[..., 0] + np.log(np.sum(np.exp(s - top), axis=-1))
    return pick(s) - log_normaliser, pick(ds) - mean_ds, pick(d2s) - np.sum(p * d2s, axis=-1) - var_ds


def family_probabilities(family: str, link: str, eta, thresholds) -> np.ndarray:
    """(..., K) category probabilities of any ordinal family."""
    if family == "cumulative":
        return probabilities(link, eta, thresholds)
    return np.exp(log_probabilities(family, link, eta, thresholds))


DRAW_CHUNK = 2**24  # entries of a (draws, rows, categories) array formed at once when drawing


def family_draw(family: str, link: str, eta, thresholds, rng: np.random.Generator) -> np.ndarray:
    """Category codes 0..K-1 of any ordinal family: a uniform draw placed among the cumulative
    probabilities. Posterior draws (eta (S, n), thresholds (S, K - 1)) go in chunks of draws, so
    memory holds (chunk, n, K) at a time; the uniforms come from ``rng`` in the same order as in
    one piece, so the codes do not depend on the chunking."""
    eta = np.asarray(eta, dtype=float)
    cuts = np.asarray(thresholds, dtype=float)
    if eta.ndim == 2 and cuts.ndim == 2 and eta.size * cuts.shape[-1] > DRAW_CHUNK:
        step = max(1, DRAW_CHUNK // (eta.shape[1] * cuts.shape[-1]))
        parts = [_one_draw(family, link, eta[i : i + step], cuts[i : i + step], rng) for i in range(0, len(eta), step)]
        return np.concatenate(parts)
    return _one_draw(family, link, eta, cuts, rng)


def _one_draw(family: str, link: str, eta, thresholds, rng: np.random.Generator) -> np.ndarray:
    if family == "cumulative":
        return draw(link, eta, thresholds, rng)
    cumulative = np.cumsum(family_probabilities(family, link, eta, thresholds), axis=-1)[..., :-1]
    return np.sum(rng.random(np.shape(eta))[..., None] > cumulative, axis=-1).astype(float)


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


def start_thresholds(y, link: str, family: str = "cumulative") -> np.ndarray:
    """The thresholds that give the observed proportions at eta = 0, the start: the link's quantiles
    of the cumulative proportions (cumulative), of P(y = k | y >= k) (sratio), of the minus
    P(y = k + 1 | y in {k, k + 1}) (acat: q_k = F(-c_k))."""
    codes = np.asarray(y, dtype=int)
    K = int(codes.max()) + 1
    counts = np.bincount(codes, minlength=K).astype(float) + 0.5  # + 1/2: no empty category at the start
    if family == "sratio":
        at_least = np.cumsum(counts[::-1])[::-1]
        return _quantile(link, np.clip(counts[:-1] / at_least[:-1], 1e-4, 1 - 1e-4))
    if family == "acat":
        return -_quantile(link, np.clip(counts[1:] / (counts[:-1] + counts[1:]), 1e-4, 1 - 1e-4))
    proportions = np.clip(np.cumsum(np.bincount(codes, minlength=K))[:-1] / len(codes), 1e-4, 1 - 1e-4)
    return _quantile(link, proportions)


def _quantile(link: str, proportions):
    """F^{-1} of the link's distribution."""
    from scipy.special import logit, ndtri

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


def pt_sequential_log_probability(family: str, link: str, y, eta, thresholds):
    """log P(y | eta, thresholds) per row of ``sratio`` or ``acat`` in PyTensor, from the same
    parts as :func:`_sequential_parts`: every entry is a log CDF or log survival of a finite
    argument, so no branch is infinite."""
    import pytensor.tensor as pt

    K = thresholds.type.shape[-1] + 1  # static: JAX traces no symbolic shape (so no arange over rows)
    chosen = pt.eq(pt.cast(y, "int64")[:, None], np.arange(K)[None, :])  # (n, K): each row's category
    x = thresholds[None, :] - eta[:, None] if family == "sratio" else eta[:, None] - thresholds[None, :]
    log_F, log_S = _pt_log_cdf(link, x), _pt_log_sf(link, x)
    zero = pt.zeros_like(x[:, :1])
    if family == "sratio":
        s = pt.concatenate([log_F, zero], axis=1) + pt.concatenate([zero, pt.cumsum(log_S, axis=1)], axis=1)
        return pt.sum(pt.switch(chosen, s, 0.0), axis=1)
    before = pt.concatenate([zero, pt.cumsum(log_F, axis=1)], axis=1)
    after = pt.sum(log_S, axis=1, keepdims=True) - pt.concatenate([zero, pt.cumsum(log_S, axis=1)], axis=1)
    s = before + after
    return pt.sum(pt.switch(chosen, s, 0.0), axis=1) - pt.logsumexp(s, axis=1)


def pt_family_log_probability(family: str, link: str, y, eta, thresholds):
    if family == "cumulative":
        return pt_log_probability(link, y, eta, thresholds)
    return pt_sequential_log_probability(family, link, y, eta, thresholds)


def _identity(values) -> np.ndarray:
    return np.asarray(values, dtype=float)


THRESHOLD_STRUCTURES = ("flexible", "equidistant")  # clmm's threshold= and brms's threshold= options


def threshold_transform(family: str, structure: str = "flexible", count: int | None = None):
    """(to thresholds, from thresholds, d thresholds / d free) of the optimiser's unconstrained
    coordinates. Flexible: (c_1, log gaps) where the thresholds increase, the thresholds themselves
    else. Equidistant (``count`` thresholds c_k = c_1 + (k - 1) d, clmm's threshold.1 and spacing):
    (c_1, log d) where they increase, (c_1, d) else."""
    ordered = family in ORDERED_THRESHOLDS
    if structure == "equidistant":
        steps = np.arange(count, dtype=float)

        def to(free):
            spacing = np.exp(free[1]) if ordered else free[1]
            return free[0] + spacing * steps

        def back(thresholds):
            c = np.asarray(thresholds, dtype=float)
            spacing = (c[-1] - c[0]) / (count - 1)  # the mean gap: a start from flexible thresholds too
            return np.array([c[0], np.log(spacing) if ordered else spacing])

        def jacobian(free):
            return np.column_stack([np.ones(count), steps * (np.exp(free[1]) if ordered else 1.0)])

        return to, back, jacobian
    if ordered:
        return to_thresholds, from_thresholds, threshold_jacobian
    return _identity, _identity, lambda free: np.eye(len(free))
