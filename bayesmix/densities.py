"""Families written as one density for both engines: lognormal, exponential, weibull, hurdle gamma
and lognormal, beta-binomial and zero-inflated binomial.

Each :class:`Density` gives, for ``mu`` the inverse link of the linear predictor:

- ``terms(eta, y, trials, params)``: (log p(y | eta), d/d eta, d2/d eta2) per row, every
  normalising constant included (the Laplace engine);
- ``logp(value, mu, params, trials)``: the same log density as a PyTensor expression (the PyMC
  likelihood, so the sampler and the Laplace fit read one definition);
- ``moments(mu, params, trials)``: the response's (mean, variance); ``draw(...)``: random responses;
- ``logcdf(value, mu, params)`` where a censored response may use the family.

Parameterisations are brms's: ``lognormal`` has mu the mean of log y (identity link) and sigma the
SD of log y (glmmTMB's lognormal, whose sigma is the SD of y, is another model); ``weibull`` has
the mean exp(eta) and shape k, scale mu / Gamma(1 + 1/k); ``beta_binomial`` has the success
probability Beta(mu phi, (1 - mu) phi), as glmmTMB's betabinomial. A hurdle family is a zero with
probability hu, else the positive density; the zero-inflated binomial adds structural zeros with
probability zi to a binomial.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import betaln, digamma, expit, gammaln, log_expit, polygamma

LOG_2PI = float(np.log(2 * np.pi))


def _pt():
    import pytensor.tensor as pt

    return pt


def _pm():
    import pymc as pm

    return pm


def normal_logcdf(z):
    """log Phi(z) for a PyTensor z, exact in the far left tail (where erfc underflows) through the
    asymptotic series; JAX has no erfcx, which PyMC's own normal log CDF uses."""
    pt = _pt()
    tail = pt.minimum(z, -20.0)
    inverse = 1.0 / tail**2
    correction = inverse * (-1.0 + inverse * (3.0 + inverse * (-15.0 + 105.0 * inverse)))
    series = -0.5 * tail**2 - 0.5 * LOG_2PI - pt.log(-tail) + pt.log1p(correction)
    body = pt.log(0.5 * pt.erfc(-pt.maximum(z, -20.0) / np.sqrt(2.0)))
    return pt.switch(pt.lt(z, -20.0), series, body)


class Density:
    """One family's density (see the module docstring); subclasses fill in each piece."""

    params: tuple[str, ...] = ()
    link = "log"  # the one link its Laplace terms are written for

    def terms(self, eta, y, trials, params):
        raise NotImplementedError

    def logp(self, value, mu, params, trials):
        raise NotImplementedError

    def moments(self, mu, params, trials):
        raise NotImplementedError

    def draw(self, mu, params, trials, rng):
        raise NotImplementedError

    def logcdf(self, value, mu, params):
        return None  # no censoring

    def logsf(self, value, mu, params):
        """log P(Y > value) where it has a form of its own; None: log(1 - CDF), which loses the far
        right tail (the CDF rounds to 1 and the log survival to -inf)."""
        return None

    def static_arguments(self, y: np.ndarray, groups: np.ndarray | None = None) -> dict:
        """Constants of the sampler's graph that the data fix (none but the tweedie's window);
        ``groups``: the level codes of the model's first grouping factor, where it has one."""
        return {}


class LogNormal(Density):
    params = ("sigma",)
    link = "identity"

    def terms(self, eta, y, trials, params):
        sigma = params["sigma"]
        log_y = np.log(y)
        residual = log_y - eta
        ll = -log_y - 0.5 * LOG_2PI - np.log(sigma) - 0.5 * (residual / sigma) ** 2
        return ll, residual / sigma**2, np.broadcast_to(-1.0 / sigma**2, np.shape(ll))

    def logp(self, value, mu, params, trials):
        pm = _pm()
        return pm.logp(pm.LogNormal.dist(mu=mu, sigma=params["sigma"]), value)

    def moments(self, mu, params, trials):
        s2 = np.asarray(params["sigma"]) ** 2
        return np.exp(mu + s2 / 2), np.expm1(s2) * np.exp(2 * mu + s2)

    def draw(self, mu, params, trials, rng):
        return rng.lognormal(mu, np.broadcast_to(params["sigma"], np.shape(mu)))

    def logcdf(self, value, mu, params):
        return normal_logcdf((_pt().log(value) - mu) / params["sigma"])

    def logsf(self, value, mu, params):
        return normal_logcdf((mu - _pt().log(value)) / params["sigma"])


class Exponential(Density):
    def terms(self, eta, y, trials, params):
        ratio = y * np.exp(-eta)
        return -eta - ratio, ratio - 1.0, -ratio

    def logp(self, value, mu, params, trials):
        pm = _pm()
        return pm.logp(pm.Exponential.dist(lam=1.0 / mu), value)

    def moments(self, mu, params, trials):
        return mu, mu**2

    def draw(self, mu, params, trials, rng):
        return rng.exponential(mu)

    def logcdf(self, value, mu, params):
        return _pt().log1mexp(-value / mu)

    def logsf(self, value, mu, params):
        return -value / mu


class Weibull(Density):
    """Mean mu = exp(eta), shape k: scale lambda = mu / Gamma(1 + 1/k) (brms's weibull)."""

    params = ("shape",)

    def terms(self, eta, y, trials, params):
        k = params["shape"]
        log_scale = eta - gammaln(1.0 + 1.0 / k)
        z = np.exp(k * (np.log(y) - log_scale))
        ll = np.log(k) - k * log_scale + (k - 1.0) * np.log(y) - z
        return ll, k * (z - 1.0), -(k**2) * z

    def _scale(self, mu, k):
        return mu / _pt().exp(_pt().gammaln(1.0 + 1.0 / k))

    def logp(self, value, mu, params, trials):
        pm = _pm()
        k = params["shape"]
        return pm.logp(pm.Weibull.dist(alpha=k, beta=self._scale(mu, k)), value)

    def moments(self, mu, params, trials):
        k = np.asarray(params["shape"])
        ratio = np.exp(gammaln(1.0 + 2.0 / k) - 2.0 * gammaln(1.0 + 1.0 / k))
        return mu, mu**2 * (ratio - 1.0)

    def draw(self, mu, params, trials, rng):
        k = np.broadcast_to(params["shape"], np.shape(mu))
        return mu / np.exp(gammaln(1.0 + 1.0 / k)) * rng.weibull(k)

    def logcdf(self, value, mu, params):
        k = params["shape"]
        return _pt().log1mexp(-((value / self._scale(mu, k)) ** k))

    def logsf(self, value, mu, params):
        k = params["shape"]
        return -((value / self._scale(mu, k)) ** k)


class Gamma(Density):
    """Shape k and mean mu (the positive part of hurdle_gamma)."""

    params = ("shape",)

    def terms(self, eta, y, trials, params):
        k = params["shape"]
        ratio = y * np.exp(-eta)
        ll = k * np.log(k) - gammaln(k) + (k - 1) * np.log(y) - k * eta - k * ratio
        return ll, k * (ratio - 1), -k * ratio

    def logp(self, value, mu, params, trials):
        pm = _pm()
        k = params["shape"]
        return pm.logp(pm.Gamma.dist(alpha=k, beta=k / mu), value)

    def moments(self, mu, params, trials):
        return mu, mu**2 / np.asarray(params["shape"])

    def draw(self, mu, params, trials, rng):
        k = np.broadcast_to(params["shape"], np.shape(mu))
        return rng.gamma(k, mu / k)


@dataclass(frozen=True)
class Hurdle(Density):
    """A zero with probability hu, else the positive density ``positive`` (brms's hurdle_gamma and
    hurdle_lognormal; glmmTMB's ziGamma with ziformula)."""

    positive: Density

    @property
    def params(self):
        return (*self.positive.params, "hu")

    @property
    def link(self):
        return self.positive.link

    def terms(self, eta, y, trials, params):
        zeros = y == 0
        safe = np.where(zeros, 1.0, y)  # the positive density is not evaluated at 0
        ll, d1, d2 = self.positive.terms(eta, safe, trials, params)
        hu = np.broadcast_to(params["hu"], np.shape(ll))
        ll = np.where(zeros, np.log(hu), np.log1p(-hu) + ll)
        return ll, np.where(zeros, 0.0, d1), np.where(zeros, 0.0, d2)

    def logp(self, value, mu, params, trials):
        pt = _pt()
        hu = params["hu"]
        zero = pt.eq(value, 0)
        positive = self.positive.logp(pt.switch(zero, 1.0, value), mu, params, trials)
        return pt.switch(zero, pt.log(hu), pt.log1p(-hu) + positive)

    def moments(self, mu, params, trials):
        mean, variance = self.positive.moments(mu, params, trials)
        keep = 1.0 - np.asarray(params["hu"])
        return keep * mean, keep * (variance + mean**2) - (keep * mean) ** 2

    def draw(self, mu, params, trials, rng):
        positive = self.positive.draw(mu, params, trials, rng)
        return np.where(rng.random(np.shape(mu)) < np.broadcast_to(params["hu"], np.shape(mu)), 0.0, positive)


def _logit_chain(dmu, d2mu, mu):
    """d/deta and d2/deta2 of a function of mu = expit(eta) from its mu-derivatives."""
    slope = mu * (1 - mu)
    return dmu * slope, d2mu * slope**2 + dmu * slope * (1 - 2 * mu)


class BetaBinomial(Density):
    """Successes out of n with a Beta(mu phi, (1 - mu) phi) success probability, logit link."""

    params = ("phi",)
    link = "logit"

    def terms(self, eta, y, trials, params):
        phi = params["phi"]
        n = np.ones_like(y) if trials is None else trials
        mu = expit(eta)
        a, b = mu * phi, (1 - mu) * phi
        constant = gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1)
        ll = constant + betaln(y + a, n - y + b) - betaln(a, b)
        dmu = phi * (digamma(y + a) - digamma(n - y + b) - digamma(a) + digamma(b))
        d2mu = phi**2 * (polygamma(1, y + a) + polygamma(1, n - y + b) - polygamma(1, a) - polygamma(1, b))
        return (ll, *_logit_chain(dmu, d2mu, mu))

    def logp(self, value, mu, params, trials):
        pm = _pm()
        phi = params["phi"]
        return pm.logp(pm.BetaBinomial.dist(alpha=mu * phi, beta=(1 - mu) * phi, n=trials), value)

    def moments(self, mu, params, trials):
        n = 1.0 if trials is None else trials
        phi = np.asarray(params["phi"])
        return n * mu, n * mu * (1 - mu) * (1 + (n - 1) / (phi + 1))

    def draw(self, mu, params, trials, rng):
        phi = np.broadcast_to(params["phi"], np.shape(mu))
        n = np.broadcast_to(1 if trials is None else trials, np.shape(mu)).astype(np.int64)
        return rng.binomial(n, rng.beta(mu * phi, (1 - mu) * phi)).astype(float)


class ZeroInflatedBinomial(Density):
    """A structural zero with probability zi, else binomial(n, mu), logit link. At y = 0, with
    log p0 = n log(1 - mu), q = n mu, q' = n mu (1 - mu) and r the share of the zero the binomial
    explains: d1 = -q r, d2 = -r (q' - q^2 + q^2 r) (as bayesmix.counts for the counts)."""

    params = ("zi",)
    link = "logit"

    def terms(self, eta, y, trials, params):
        n = np.ones_like(y) if trials is None else trials
        mu = expit(eta)
        zi = np.broadcast_to(params["zi"], np.shape(eta))
        constant = gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1)
        ll = constant + y * log_expit(eta) + (n - y) * log_expit(-eta)
        d1, d2 = y - n * mu, -n * mu * (1 - mu)
        counted = np.log1p(-zi) + n * log_expit(-eta)
        at_zero = np.logaddexp(np.log(zi), counted)
        r, q, dq = np.exp(counted - at_zero), n * mu, n * mu * (1 - mu)
        zeros = y == 0
        return (
            np.where(zeros, at_zero, np.log1p(-zi) + ll),
            np.where(zeros, -q * r, d1),
            np.where(zeros, -r * (dq - q**2 + q**2 * r), d2),
        )

    def logp(self, value, mu, params, trials):
        pm, pt = _pm(), _pt()
        zi = params["zi"]
        n = 1 if trials is None else trials
        binomial = pm.logp(pm.Binomial.dist(n=n, p=mu), value)
        at_zero = pt.logaddexp(pt.log(zi), pt.log1p(-zi) + n * pt.log1p(-mu))
        return pt.switch(pt.eq(value, 0), at_zero, pt.log1p(-zi) + binomial)

    def moments(self, mu, params, trials):
        n = 1.0 if trials is None else trials
        keep = 1.0 - np.asarray(params["zi"])
        mean = keep * n * mu
        return mean, keep * (n * mu * (1 - mu) + (n * mu) ** 2) - mean**2

    def draw(self, mu, params, trials, rng):
        n = np.broadcast_to(1 if trials is None else trials, np.shape(mu)).astype(np.int64)
        counts = rng.binomial(n, mu).astype(float)
        return np.where(rng.random(np.shape(mu)) < np.broadcast_to(params["zi"], np.shape(mu)), 0.0, counts)


class Tweedie(Density):
    """Tweedie with mean mu = exp(eta), dispersion phi and power 1 < p < 2 (glmmTMB's tweedie): a
    Poisson(lambda) number of Gamma(a, gamma) terms, lambda = mu^(2-p) / (phi (2-p)),
    a = (2-p) / (p-1), gamma = phi (p-1) mu^(p-1); Var = phi mu^p, P(y = 0) = exp(-lambda).

    log f(y) = -y mu^(1-p) / (phi (p-1)) - mu^(2-p) / (phi (2-p)) + log W(y) - log y for y > 0,
    W = sum_j exp(j z - lgamma(j + 1) - lgamma(j a)), z = a log(y / (p-1)) - (1 + a) log phi -
    log(2-p) (Dunn and Smyth 2005). W does not involve mu, so the eta-derivatives are written out;
    its terms peak near j* = y^(2-p) / (phi (2-p)) and the sum runs over a window around j* until
    both ends are below e^-40 of the peak. The sampler's graph needs a fixed number of terms: it
    sums a window of them centred on each row's j*, its width from the data
    (:class:`TweedieSeries`), and refuses (log density -inf) a (phi, power) whose series the
    window would cut, never computing a truncated sum."""

    params = ("phi", "power")

    def terms(self, eta, y, trials, params):
        phi, p = params["phi"], params["power"]
        mu1 = np.exp((1.0 - p) * eta)  # mu^(1-p)
        mu2 = np.exp((2.0 - p) * eta)  # mu^(2-p)
        ll = np.array(-y * mu1 / (phi * (p - 1.0)) - mu2 / (phi * (2.0 - p)), dtype=float)
        positive = y > 0
        if positive.any():
            at = {k: (v[positive] if np.ndim(v) else v) for k, v in params.items()}
            ll[positive] += tweedie_log_w(y[positive], at["phi"], at["power"]) - np.log(y[positive])
        d1 = (y * mu1 - mu2) / phi
        d2 = ((1.0 - p) * y * mu1 - (2.0 - p) * mu2) / phi
        return ll, d1, d2

    def logp(self, value, mu, params, trials):
        pt = _pt()
        phi, p = params["phi"], params["power"]
        base = -value * mu ** (1.0 - p) / (phi * (p - 1.0)) - mu ** (2.0 - p) / (phi * (2.0 - p))
        safe = pt.switch(pt.gt(value, 0), value, 1.0)
        log_w, covered = params["series"].log_w(safe, phi, p)
        positive = base + log_w - pt.log(safe)
        density = pt.switch(pt.gt(value, 0), positive, base)
        # a zero response sums no series (its window ran on a placeholder y of 1)
        return pt.switch(pt.or_(covered, pt.le(value, 0)), density, -np.inf)

    def moments(self, mu, params, trials):
        return mu, np.asarray(params["phi"]) * mu ** np.asarray(params["power"])

    def static_arguments(self, y: np.ndarray, groups: np.ndarray | None = None) -> dict:
        """The windows of the series: they cover phi down to a fifth of the moment estimate
        Var(y) / mean(y)^1.5 and powers up to 1.9. Between-level spread inflates that estimate
        (a group SD of 2.5 on the log scale, by orders of magnitude: the window then refused the
        true phi and the sampler stalled against it), so within the levels of ``groups`` it is taken
        too, and the smaller of the two (the median over levels with 3 or more rows) is used."""
        y = np.asarray(y, dtype=float)
        moment = float(np.var(y) / max(np.mean(y), 1e-12) ** 1.5) if y.size > 1 else 1.0
        if groups is not None:
            codes = np.asarray(groups, dtype=np.int64)
            rows = np.bincount(codes)
            means = np.bincount(codes, weights=y) / np.maximum(rows, 1)
            variances = np.bincount(codes, weights=y * y) / np.maximum(rows, 1) - means**2
            usable = (rows >= 3) & (means > 0)
            if usable.any():
                within = np.maximum(variances[usable], 0.0) / means[usable] ** 1.5
                moment = min(moment, float(np.median(within)))
        return {"series": TweedieSeries.for_data(y, max(moment, 1e-6) / TWEEDIE_PHI_FLOOR)}

    def draw(self, mu, params, trials, rng):
        phi = np.broadcast_to(params["phi"], np.shape(mu))
        p = np.broadcast_to(params["power"], np.shape(mu))
        count = rng.poisson(mu ** (2 - p) / (phi * (2 - p)))
        shape = count * (2 - p) / (p - 1)
        return np.where(count > 0, rng.gamma(np.maximum(shape, 1e-300), phi * (p - 1) * mu ** (p - 1)), 0.0)


TWEEDIE_PHI_FLOOR = 5.0  # the sampler's series covers phi down to the moment estimate / this
TWEEDIE_POWER_CEILING = 1.9  # and powers up to this
TWEEDIE_TAIL = 40.0  # log of the ratio of the series' peak term to the last terms it sums (e^-40 ~ 4e-18)


def _tweedie_z(y, phi, p):
    a = (2.0 - p) / (p - 1.0)
    return a, a * np.log(y / (p - 1.0)) - (1.0 + a) * np.log(phi) - np.log(2.0 - p)


def tweedie_log_w(y, phi, p) -> np.ndarray:
    """log W(y, phi, p) of :class:`Tweedie` for y > 0 (numpy), summed over a window around the
    peak j* widened until its end terms are below e^-40 of the peak."""
    y = np.asarray(y, dtype=float)
    phi, p = np.broadcast_to(phi, y.shape), np.broadcast_to(p, y.shape)
    a, z = _tweedie_z(y, phi, p)
    peak = np.maximum(1.0, np.round(y ** (2.0 - p) / (phi * (2.0 - p))))
    half = _half_width(peak, p)
    while True:
        span = int(2 * half.max() + 1)
        j = np.maximum(peak[:, None] - half[:, None], 1.0) + np.arange(span)[None, :]
        inside = j <= peak[:, None] + half[:, None]
        terms = j * z[:, None] - gammaln(j + 1.0) - gammaln(j * a[:, None])
        terms = np.where(inside, terms, -np.inf)
        top = terms.max(axis=1)
        first, last = terms[:, 0], np.where(inside, terms, -np.inf)[np.arange(len(y)), inside.sum(axis=1) - 1]
        low_open = (j[:, 0] > 1.0) & (first > top - TWEEDIE_TAIL)
        if not np.any(low_open | (last > top - TWEEDIE_TAIL)):
            return top + np.log(np.exp(terms - top[:, None]).sum(axis=1))
        half = half * 2.0


def _half_width(peak, p):
    """Terms either side of the peak to e^-40 of it: log W_j has curvature about -(1 + a) / j =
    -1 / (j (p - 1)) at the peak, so the terms fall by e^-40 within 9 sqrt(j* (p - 1))."""
    return np.ceil(9.5 * np.sqrt(peak * (p - 1.0)) + 6.0)


def _tweedie_log_w_graph(y, phi, p, half: int):
    """log W in PyTensor over 2 ``half`` + 1 terms centred on each row's peak j*; and whether they
    cover the series. The window moves with (phi, power), so a row costs a fixed number of terms
    however large y is; but each term is two log-gamma functions of its own (and a digamma in the
    gradient). The window's start is a step function of the parameters and carries no gradient;
    the sum it selects is smooth to e^-40."""
    pt = _pt()
    a, z, peak = _tweedie_graph_parts(y, phi, p)
    start = pt.maximum(1.0, pt.round(peak) - half)
    j = start[..., None] + pt.arange(0, 2 * half + 1, dtype="float64")
    terms = z[..., None] * j - pt.gammaln(j + 1.0) - pt.gammaln(pt.shape_padright(a) * j)
    return _tweedie_sum(terms, start)


def _tweedie_shared_graph(y, phi, p, span: int):
    """log W over one window of ``span`` terms for all the rows given (rows of similar y: their
    peaks lie close together), starting where the earliest row's series needs it to: the
    log-gamma functions of j are then one vector, and each row costs a product and an exp a term."""
    pt = _pt()
    a, z, peak = _tweedie_graph_parts(y, phi, p)
    needed = pt.round(peak) - pt.ceil(9.5 * pt.sqrt(peak * (p - 1.0)) + 6.0)  # as _half_width
    start = pt.maximum(1.0, pt.min(needed))
    j = start + pt.arange(0, span, dtype="float64")
    terms = z[..., None] * j - pt.gammaln(j + 1.0) - pt.gammaln(pt.shape_padright(a) * j)
    return _tweedie_sum(terms, pt.shape_padright(start))


def _tweedie_graph_parts(y, phi, p):
    """a, z of :func:`_tweedie_z` and the peak j* (no gradient: it only places the window)."""
    pt = _pt()
    from pytensor.gradient import disconnected_grad

    a = (2.0 - p) / (p - 1.0)
    z = a * pt.log(y / (p - 1.0)) - (1.0 + a) * pt.log(phi) - pt.log(2.0 - p)
    return a, z, disconnected_grad(y ** (2.0 - p) / (phi * (2.0 - p)))


def _tweedie_sum(terms, start):
    """log-sum-exp of each row's terms, and whether they cover its series: the last term below
    e^-40 of the peak, and the first too unless the window starts at j = 1."""
    pt = _pt()
    top = pt.max(terms, axis=-1)
    log_w = top + pt.log(pt.sum(pt.exp(terms - top[..., None]), axis=-1))
    low = pt.or_(pt.le(start, 1.0), pt.lt(terms[..., 0], top - TWEEDIE_TAIL))
    return log_w, pt.and_(low, pt.lt(terms[..., -1], top - TWEEDIE_TAIL))


def _rounded_width(width: float) -> int:
    """Up to the next of 4, 6, 8, 12, 16, 24 ... (a window is a constant of the compiled program:
    datasets whose windows round alike share one compilation, at most a third of the terms wasted)."""
    size = 4
    while size < width:
        size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3
    return size


TWEEDIE_CHUNKS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2)  # row shares cut from the top of the sorted y
TWEEDIE_GAMMA_COST = 8.0  # a term's two log-gammas and digamma, in terms of its product and exp
TWEEDIE_POWERS = np.linspace(1.01, TWEEDIE_POWER_CEILING, 40)  # the powers a window is sized for


def tweedie_window_plan(y_low: float, y_high: float, rows: int, phi_floor: float) -> tuple[str, int]:
    """The cheaper window for ``rows`` rows whose responses (zeros as 1) run from ``y_low`` to
    ``y_high``, wide enough for phi down to ``phi_floor`` and powers up to
    :data:`TWEEDIE_POWER_CEILING` (towards 2 the series grows without bound; where a window falls
    short the log density is -inf, never a truncated sum): ``("shared", span)``, one window from
    the earliest row's start to the latest row's end, or ``("rows", half)``, each row's own."""
    spans, halves = [], []
    for p in TWEEDIE_POWERS:
        low, high = (y ** (2 - p) / (phi_floor * (2 - p)) for y in (y_low, y_high))
        start = max(1.0, np.round(low) - _half_width(low, p))
        spans.append(np.round(high) + _half_width(high, p) - start + 3.0)  # + rounding's margin
        halves.append(_half_width(high, p))
    span, half = _rounded_width(max(spans)), _rounded_width(max(halves))
    shared_cost = rows * span + TWEEDIE_GAMMA_COST * span
    if shared_cost <= rows * (2 * half + 1) * (1.0 + TWEEDIE_GAMMA_COST):
        return "shared", span
    return "rows", half


@dataclass(frozen=True)
class TweedieSeries:
    """The sampler's windows over the series W. The rows sorted by response, cut at fixed shares of
    n from the top (:data:`TWEEDIE_CHUNKS`); each chunk's window the cheaper of one shared by its
    rows (its log-gammas computed once) or one per row centred on the row's peak (a fixed number
    of terms however large y is: the largest responses, whose peaks spread far apart), sized by
    :func:`tweedie_window_plan`. The order is a shared variable, so the JAX program takes it as an
    argument and the chunks' sizes depend on n alone: a new dataset of that size whose windows
    round alike reuses the compiled program. Should the response change under it, a window too
    narrow for a row's series gives -inf, never a truncated sum."""

    order: object  # shared int64 (n,): rows by response, smallest first
    inverse: object  # shared int64 (n,): where each row went
    bounds: tuple[int, ...]
    plans: tuple[tuple[str, int], ...]

    @classmethod
    def for_data(cls, y: np.ndarray, phi_floor: float) -> TweedieSeries:
        import pytensor

        safe = np.where(np.asarray(y, dtype=float) > 0, np.asarray(y, dtype=float), 1.0)  # as logp's
        order = np.argsort(safe, kind="stable")
        ordered, n = safe[order], len(order)
        bounds = tuple(sorted({0, n, *(n - int(np.ceil(share * n)) for share in TWEEDIE_CHUNKS)}))
        plans = tuple(
            tweedie_window_plan(ordered[lo], ordered[hi - 1], hi - lo, phi_floor)
            for lo, hi in zip(bounds[:-1], bounds[1:])
        )
        order_data = pytensor.shared(order.astype(np.int64), name="tweedie_order")
        inverse_data = pytensor.shared(np.argsort(order).astype(np.int64), name="tweedie_inverse")
        return cls(order_data, inverse_data, bounds, plans)

    def log_w(self, y, phi, p):
        """log W of every row and whether its window covers its series (PyTensor)."""
        pt = _pt()
        # a dispersion formula's phi has a value per row; PyMC hands a single phi as shape (1,)
        per_row = getattr(phi, "ndim", 0) > 0 and not all(phi.type.broadcastable)
        y_sorted, phi_sorted = y[self.order], phi[self.order] if per_row else phi
        pieces = []
        for lo, hi, (kind, size) in zip(self.bounds[:-1], self.bounds[1:], self.plans):
            graph = _tweedie_shared_graph if kind == "shared" else _tweedie_log_w_graph
            pieces.append(graph(y_sorted[lo:hi], phi_sorted[lo:hi] if per_row else phi, p, size))
        log_w = pt.concatenate([piece[0] for piece in pieces])[self.inverse]
        return log_w, pt.concatenate([piece[1] for piece in pieces])[self.inverse]


GAMMA = Gamma()  # the gamma family's Laplace terms too (bayesmix.families)
LOG_SCALE = ("lognormal", "hurdle_lognormal")  # families whose mu and sigma are those of log y

DENSITIES: dict[str, Density] = {
    "lognormal": LogNormal(),
    "exponential": Exponential(),
    "weibull": Weibull(),
    "hurdle_gamma": Hurdle(GAMMA),
    "hurdle_lognormal": Hurdle(LogNormal()),
    "betabinomial": BetaBinomial(),
    "zero_inflated_binomial": ZeroInflatedBinomial(),
    "tweedie": Tweedie(),
}
