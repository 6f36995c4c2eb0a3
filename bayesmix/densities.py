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


LOG_SCALE = ("lognormal", "hurdle_lognormal")  # families whose mu and sigma are those of log y

DENSITIES: dict[str, Density] = {
    "lognormal": LogNormal(),
    "exponential": Exponential(),
    "weibull": Weibull(),
    "hurdle_gamma": Hurdle(Gamma()),
    "hurdle_lognormal": Hurdle(LogNormal()),
    "betabinomial": BetaBinomial(),
    "zero_inflated_binomial": ZeroInflatedBinomial(),
}
