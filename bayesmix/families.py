"""Response families and link functions: the only place that knows each distribution.

A :class:`Family` checks that a response lies in its support, names its auxiliary parameters
(``sigma``, ``nu``, ``alpha``, ``shape``, ``phi``) and builds its PyMC likelihood. Links are
written once against an array namespace (numpy or pytensor.tensor), so the model graph and any
numpy-side computation share one definition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from bayesmix import categorical, ordinal
from bayesmix.counts import ZERO_FAMILIES, zero_draws, zero_moments, zero_probability, zero_terms
from bayesmix.densities import DENSITIES, GAMMA
from bayesmix.errors import BayesmixError, did_you_mean

LOG_2PI = float(np.log(2 * np.pi))  # the gaussian log-density's constant, for every engine that writes it out


@dataclass(frozen=True)
class Link:
    """A link g with its inverse; ``inverse(eta, xp)`` works for xp = numpy or pytensor.tensor."""

    name: str
    inverse: Callable
    forward: Callable  # g(mu) on numpy arrays: used to centre default priors on the link scale


def _normal_cdf(eta, xp):
    return 0.5 * (1.0 + xp.erf(eta / np.sqrt(2.0)))


def _sigmoid(eta, xp):
    return 1.0 / (1.0 + xp.exp(-eta))


LINKS = {
    "identity": Link("identity", lambda eta, xp: eta, lambda mu: mu),
    "log": Link("log", lambda eta, xp: xp.exp(eta), np.log),
    "logit": Link("logit", _sigmoid, lambda mu: np.log(mu / (1 - mu))),
    "probit": Link("probit", _normal_cdf, lambda mu: np.sqrt(2) * _erfinv(2 * mu - 1)),
    "cloglog": Link("cloglog", lambda eta, xp: 1.0 - xp.exp(-xp.exp(eta)), lambda mu: np.log(-np.log1p(-mu))),
    "inverse": Link("inverse", lambda eta, xp: 1.0 / eta, lambda mu: 1.0 / mu),
    "sqrt": Link("sqrt", lambda eta, xp: eta**2, np.sqrt),
    "cauchit": Link("cauchit", lambda eta, xp: 0.5 + xp.arctan(eta) / np.pi, lambda mu: np.tan(np.pi * (mu - 0.5))),
}


def _erfinv(x):
    from scipy.special import erfinv

    return erfinv(x)


def _check_binary(y, trials, name):
    if not np.all((y == 0) | (y == 1)):
        bad = y[(y != 0) & (y != 1)][:5]
        raise BayesmixError(
            f"family='{name}' needs a 0/1 response; found values such as {bad.tolist()}. "
            "Recode the outcome as 0/1, or use cbind(successes, failures) with family='binomial'."
        )


def _check_binomial(y, trials, name):
    if trials is None:
        _check_binary(y, trials, name)
        return
    if np.any(y < 0) or np.any(y != np.round(y)):
        raise BayesmixError("family='binomial' needs whole, non-negative numbers of successes.")
    if np.any(trials != np.round(trials)) or np.any(trials < 1):
        raise BayesmixError("family='binomial' needs whole numbers of trials of at least 1 in every row.")
    if np.any(y > trials):
        n = int(np.sum(y > trials))
        raise BayesmixError(
            f"family='binomial': successes exceed trials in {n} rows. "
            "Check the response: cbind(successes, failures) or p(successes, trials)."
        )


def _check_count(y, trials, name):
    if np.any(y < 0) or np.any(y != np.round(y)):
        bad = y[(y < 0) | (y != np.round(y))][:5]
        raise BayesmixError(
            f"family='{name}' needs non-negative whole counts; found values such as {bad.tolist()}. "
            "Use family='gaussian' or 'gamma' for continuous data."
        )


def _check_positive_count(y, trials, name):
    _check_count(y, trials, name)
    if np.any(y == 0):
        raise BayesmixError(
            f"family='{name}' is zero-truncated: it has no zeros, but {int(np.sum(y == 0))} responses are 0. Use a "
            f"hurdle family (hurdle_{name.removeprefix('truncated_')}) for counts with zeros, or drop the zero rows "
            "if they cannot occur."
        )


def _check_positive(y, trials, name):
    if np.any(y <= 0):
        raise BayesmixError(
            f"family='{name}' needs a strictly positive response; {int(np.sum(y <= 0))} values are <= 0."
        )


def _check_nonnegative(y, trials, name):
    if np.any(y < 0):
        raise BayesmixError(
            f"family='{name}' needs a response >= 0 (zeros go to its hurdle); {int(np.sum(y < 0))} values are < 0."
        )


def _check_trials(y, trials, name):
    if trials is None:
        raise BayesmixError(
            f"family='{name}' counts successes out of trials: write the response as cbind(successes, failures) or "
            "p(successes, trials), or give a proportion with weights= the trials."
        )
    _check_binomial(y, trials, "binomial")


def _check_unit_interval(y, trials, name):
    if np.any((y <= 0) | (y >= 1)):
        raise BayesmixError(
            f"family='{name}' needs a response strictly between 0 and 1; "
            f"{int(np.sum((y <= 0) | (y >= 1)))} values are outside. "
            "Squeeze exact 0s and 1s, e.g. (y * (n - 1) + 0.5) / n."
        )


def _check_real(y, trials, name):
    return None


# --- conditional log-likelihood and its eta-derivatives, for the Laplace approximation ------------
# Each returns (log p(y_i | eta_i), d/deta, d2/deta2), elementwise, normalising constants included.


def _binomial_terms(eta, y, trials, params, link):
    from scipy.special import expit, gammaln, log_expit

    n = np.ones_like(y) if trials is None else trials
    constant = gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1)
    if link.name == "logit":
        mu = expit(eta)
        ll = constant + y * log_expit(eta) + (n - y) * log_expit(-eta)
        return ll, y - n * mu, -n * mu * (1 - mu)
    mu = np.clip(link.inverse(eta, _NUMPY), 1e-300, 1 - 1e-16)
    dmu, d2mu = _link_derivatives(link, eta, mu)
    ll = constant + y * np.log(mu) + (n - y) * np.log1p(-mu)
    dll = y / mu - (n - y) / (1 - mu)
    d2ll = -y / mu**2 - (n - y) / (1 - mu) ** 2
    return ll, dll * dmu, d2ll * dmu**2 + dll * d2mu


def _link_derivatives(link, eta, mu):
    if link.name == "probit":
        from scipy.stats import norm

        density = norm.pdf(eta)
        return density, -eta * density
    if link.name == "cloglog":
        first = np.exp(eta - np.exp(eta))
        return first, first * (1 - np.exp(eta))
    raise BayesmixError(f"Laplace fits do not support the {link.name} link here.")


def _poisson_terms(eta, y, trials, params, link):
    from scipy.special import gammaln

    mu = np.exp(eta)
    return y * eta - mu - gammaln(y + 1), y - mu, -mu


def _negative_binomial_terms(eta, y, trials, params, link):
    from scipy.special import gammaln

    alpha = params["alpha"]
    mu = np.exp(eta)
    ll = (
        gammaln(y + alpha)
        - gammaln(alpha)
        - gammaln(y + 1)
        + alpha * (np.log(alpha) - np.logaddexp(np.log(alpha), eta))
        + y * (eta - np.logaddexp(np.log(alpha), eta))
    )
    return ll, alpha * (y - mu) / (alpha + mu), -alpha * mu * (y + alpha) / (alpha + mu) ** 2


def _negative_binomial1_terms(eta, y, trials, params, link):
    """glmmTMB's nbinom1: a negative binomial of size r = mu / phi, so Var = mu (1 + phi)."""
    from scipy.special import digamma, gammaln, polygamma

    phi = params["phi"]
    r = np.exp(eta) / phi
    log_keep = np.log1p(phi)
    ll = gammaln(y + r) - gammaln(r) - gammaln(y + 1) - r * log_keep + y * (np.log(phi) - log_keep)
    d1 = r * (digamma(y + r) - digamma(r) - log_keep)
    return ll, d1, d1 + r**2 * (polygamma(1, y + r) - polygamma(1, r))


def _gaussian_terms(eta, y, trials, params, link):
    """Normal(eta, sigma) (identity link): the Laplace engine's form of a gaussian model whose sigma a
    dispersion= formula predicts, where lme4's profiled criterion no longer applies."""
    sigma = params["sigma"]
    residual = y - eta
    ll = -0.5 * np.log(2 * np.pi) - np.log(sigma) - 0.5 * (residual / sigma) ** 2
    return ll, residual / sigma**2, np.broadcast_to(-1.0 / sigma**2, np.shape(ll))


def _gamma_terms(eta, y, trials, params, link):
    """Gamma with shape k and mean mu = exp(eta): Var = mu^2 / k (the hurdle_gamma's positive part)."""
    return GAMMA.terms(eta, y, trials, params)


def _beta_terms(eta, y, trials, params, link):
    """Beta(mu phi, (1 - mu) phi) with mu = expit(eta)."""
    from scipy.special import digamma, expit, gammaln, polygamma

    phi = params["phi"]
    mu = expit(eta)
    a, b = mu * phi, (1 - mu) * phi
    ll = gammaln(phi) - gammaln(a) - gammaln(b) + (a - 1) * np.log(y) + (b - 1) * np.log1p(-y)
    dmu = phi * (digamma(b) - digamma(a) + np.log(y) - np.log1p(-y))
    d2mu = -(phi**2) * (polygamma(1, a) + polygamma(1, b))
    slope = mu * (1 - mu)  # dmu/deta
    return ll, dmu * slope, d2mu * slope**2 + dmu * slope * (1 - 2 * mu)


# --- the third eta-derivative of log p(y | eta): how the weights W = -d2 move with eta, which the
# exact gradient of the Laplace approximation's log|H| needs


def _binomial_third(eta, y, trials, params, link):
    from scipy.special import expit

    n = np.ones_like(y) if trials is None else trials
    if link.name == "logit":
        mu = expit(eta)
        return -n * mu * (1 - mu) * (1 - 2 * mu)
    mu = np.clip(link.inverse(eta, _NUMPY), 1e-300, 1 - 1e-16)
    dmu, d2mu = _link_derivatives(link, eta, mu)
    d3mu = _link_third(link, eta)
    dll = y / mu - (n - y) / (1 - mu)
    d2ll = -y / mu**2 - (n - y) / (1 - mu) ** 2
    d3ll = 2 * y / mu**3 - 2 * (n - y) / (1 - mu) ** 3
    return d3ll * dmu**3 + 3 * d2ll * dmu * d2mu + dll * d3mu


def _link_third(link, eta):
    if link.name == "probit":
        from scipy.stats import norm

        return (eta**2 - 1) * norm.pdf(eta)
    first = np.exp(eta - np.exp(eta))  # cloglog
    return first * ((1 - np.exp(eta)) ** 2 - np.exp(eta))


def _poisson_third(eta, y, trials, params, link):
    return -np.exp(eta)


def _negative_binomial_third(eta, y, trials, params, link):
    alpha = params["alpha"]
    mu = np.exp(eta)
    return -alpha * (y + alpha) * mu * (alpha - mu) / (alpha + mu) ** 3


def _zero_family_terms(name):
    def terms(eta, y, trials, params, link):
        return zero_terms(name, eta, y, params)

    return terms


def _gamma_third(eta, y, trials, params, link):
    return params["shape"] * y * np.exp(-eta)


def _negative_binomial1_third(eta, y, trials, params, link):
    from scipy.special import polygamma

    r = np.exp(eta) / params["phi"]
    _, _, d2 = _negative_binomial1_terms(eta, y, trials, params, link)
    first, second = polygamma(1, y + r) - polygamma(1, r), polygamma(2, y + r) - polygamma(2, r)
    return d2 + 2 * r**2 * first + r**3 * second


LAPLACE_THIRD = {
    "gaussian": lambda eta, y, trials, params, link: np.zeros(np.shape(eta)),
    "gamma": _gamma_third,
    "negativebinomial1": _negative_binomial1_third,
    "bernoulli": _binomial_third,
    "binomial": _binomial_third,
    "poisson": _poisson_third,
    "negativebinomial": _negative_binomial_third,
}


# family -> (links with a Laplace implementation, terms function)
def _density_terms(name):
    def terms(eta, y, trials, params, link):
        return DENSITIES[name].terms(eta, y, trials, params)

    return terms


def _cumulative_terms(eta, y, trials, params, link):
    return ordinal.cumulative_terms(eta, np.asarray(y) - 1, trials, params, link)


def _sequential_terms(family: str):
    def terms(eta, y, trials, params, link):
        return ordinal.sequential_terms(family, eta, np.asarray(y) - 1, params, link)

    return terms


LAPLACE_TERMS = {
    "cumulative": (ordinal.ORDINAL_LINKS, _cumulative_terms),
    "sratio": (ordinal.ORDINAL_LINKS, _sequential_terms("sratio")),
    "acat": (ordinal.ORDINAL_LINKS, _sequential_terms("acat")),
    "categorical": (("logit",), None),  # Family.laplace_terms: it reads the categories' predictors by name
    **{name: ((density.link,), _density_terms(name)) for name, density in DENSITIES.items()},
    "gaussian": (("identity",), _gaussian_terms),
    "bernoulli": (("logit", "probit", "cloglog"), _binomial_terms),
    "binomial": (("logit", "probit", "cloglog"), _binomial_terms),
    "poisson": (("log",), _poisson_terms),
    "negativebinomial": (("log",), _negative_binomial_terms),
    "negativebinomial1": (("log",), _negative_binomial1_terms),
    "gamma": (("log",), _gamma_terms),
    "beta": (("logit",), _beta_terms),
    **{name: (("log",), _zero_family_terms(name)) for name in ZERO_FAMILIES},
}
THIRD_STEP = 1e-4  # step (relative to max(1, |eta|)) of the third derivative's central difference


class _NumpyNamespace:
    """numpy plus erf, for link inverses written against an array namespace."""

    exp = staticmethod(np.exp)

    @staticmethod
    def erf(x):
        from scipy.special import erf

        return erf(x)


_NUMPY = _NumpyNamespace()


def _pm():
    import pymc  # imported lazily: building a Design must not pay for PyMC's import

    return pymc


# Each family's PyMC distribution: (distribution class, its parameters) for mean mu.


def _gaussian(mu, params, trials):
    return _pm().Normal, {"mu": mu, "sigma": params["sigma"]}


def _student_t(mu, params, trials):
    return _pm().StudentT, {"nu": params["nu"], "mu": mu, "sigma": params["sigma"]}


def _bernoulli(mu, params, trials):
    return _pm().Bernoulli, {"p": mu}


def _binomial(mu, params, trials):
    return _pm().Binomial, {"n": trials, "p": mu}


def _poisson(mu, params, trials):
    return _pm().Poisson, {"mu": mu}


def _negative_binomial(mu, params, trials):
    return _pm().NegativeBinomial, {"mu": mu, "alpha": params["alpha"]}


def _negative_binomial1(mu, params, trials):
    return _pm().NegativeBinomial, {"mu": mu, "alpha": mu / params["phi"]}


def _gamma(mu, params, trials):
    shape = params["shape"]
    return _pm().Gamma, {"alpha": shape, "beta": shape / mu}


def _beta(mu, params, trials):
    phi = params["phi"]
    return _pm().Beta, {"alpha": mu * phi, "beta": (1.0 - mu) * phi}


class _ZeroCount:
    """A zero-inflated, hurdle or zero-truncated count distribution, called like a PyMC
    distribution class. Its log density is written out from the count's zero probability (see
    bayesmix.counts): PyMC's hurdle and truncated distributions go through the negative binomial's
    CDF, whose gradient in alpha JAX does not have."""

    def __init__(self, family: str):
        self.family = family
        self.count, self.zero = ZERO_FAMILIES[family]

    def logp(self, value, parameters: dict):
        import pytensor.tensor as pt

        pm = _pm()
        mu, alpha = parameters["mu"], parameters.get("alpha")
        if self.count == "poisson":
            count, log_p0 = pm.logp(pm.Poisson.dist(mu=mu), value), -mu
        else:
            count = pm.logp(pm.NegativeBinomial.dist(mu=mu, alpha=alpha), value)
            log_p0 = -alpha * pt.log1p(mu / alpha)  # log(alpha / (alpha + mu)) without cancellation
        if self.zero == "zi":
            zi = parameters["zi"]
            return pt.switch(pt.eq(value, 0), pt.logaddexp(pt.log(zi), pt.log1p(-zi) + log_p0), pt.log1p(-zi) + count)
        positive = count - pt.log1mexp(log_p0)
        if self.zero == "truncated":
            return positive
        hu = parameters["hu"]
        return pt.switch(pt.eq(value, 0), pt.log(hu), pt.log1p(-hu) + positive)

    def _arguments(self, parameters: dict):
        """(the parameters' values, logp, random) for PyMC's CustomDist."""
        keys = list(parameters)

        def logp(value, *values):
            return self.logp(value, dict(zip(keys, values)))

        def random(*values, rng=None, size=None):  # prior and posterior predictive draws (numpy)
            named = dict(zip(keys, values))
            shape = size if size is not None else np.broadcast_shapes(*(np.shape(v) for v in values))
            mu = np.broadcast_to(named.pop("mu"), shape)
            return zero_draws(self.family, mu, named, rng).astype(np.int64)

        return list(parameters.values()), logp, random

    def dist(self, **parameters):
        values, logp, random = self._arguments(parameters)
        return _pm().CustomDist.dist(*values, logp=logp, random=random, dtype="int64")

    def __call__(self, name, observed=None, dims=None, **parameters):
        values, logp, random = self._arguments(parameters)
        return _pm().CustomDist(name, *values, logp=logp, random=random, observed=observed, dims=dims, dtype="int64")


class _DensityDist:
    """A family of :mod:`bayesmix.densities` called like a PyMC distribution class: a CustomDist
    whose log density is that module's (the Laplace engine's too) and whose draws are its numpy ones."""

    def __init__(self, family: str):
        self.family = family
        self.density = DENSITIES[family]
        self.static: dict = {}  # graph constants the data fix (Density.static_arguments)

    def _arguments(self, parameters: dict):
        keys = list(parameters)

        def logp(value, *values):
            named = {**dict(zip(keys, values)), **self.static}
            return self.density.logp(value, named.pop("mu"), named, named.pop("trials", None))

        def random(*values, rng=None, size=None):
            named = dict(zip(keys, values))
            shape = size if size is not None else np.broadcast_shapes(*(np.shape(v) for v in values))
            mu = np.broadcast_to(named.pop("mu"), shape)
            return self.density.draw(mu, named, named.pop("trials", None), rng)

        return list(parameters.values()), logp, random

    def dist(self, **parameters):
        values, logp, random = self._arguments(parameters)
        return _pm().CustomDist.dist(*values, logp=logp, random=random)

    def __call__(self, name, observed=None, dims=None, **parameters):
        values, logp, random = self._arguments(parameters)
        return _pm().CustomDist(name, *values, logp=logp, random=random, observed=observed, dims=dims)


def _check_ordinal(y, trials, name):
    """The category index 1..K of an ordinal response (the design layer codes the levels)."""
    if not np.all((y >= 1) & (y == np.round(y))):
        raise BayesmixError(
            f"family='{name}' reads the response as ordered categories; give an ordered pandas Categorical, "
            "integers, or strings with categorical={'y': [levels in order]}."
        )


class _Ordinal:
    """The sampler's likelihood of an ordinal response: log P(y | eta, thresholds) per row
    (:func:`bayesmix.ordinal.pt_family_log_probability`), categories drawn for predictive checks."""

    def __init__(self, family: str, link: str):
        self.family, self.link = family, link

    def __call__(self, name, observed=None, dims=None, eta=None, thresholds=None):
        family, link = self.family, self.link

        def logp(value, eta, thresholds):
            return ordinal.pt_family_log_probability(family, link, value - 1.0, eta, thresholds)

        def random(eta, thresholds, rng=None, size=None):
            rng = np.random.default_rng(rng)
            eta = np.broadcast_to(eta, size) if size is not None else eta
            return ordinal.family_draw(family, link, eta, thresholds, rng) + 1.0

        return _pm().CustomDist(name, eta, thresholds, logp=logp, random=random, observed=observed, dims=dims)


def _check_categories(y, trials, name):
    """The category index 1..K of a categorical response (the design layer codes the levels)."""
    if not np.all((y >= 1) & (y == np.round(y))):
        raise BayesmixError(
            f"family='{name}' reads the response as categories; give a column of strings, a pandas Categorical "
            "or integers (the first level is the reference)."
        )


def _categorical_likelihood(name, observed, dims, etas, weights=None):
    """The sampler's likelihood of a categorical response: log P(y | mu_2..mu_K) per row, counted
    w times where prior ``weights`` are given (glmmTMB's meaning, as the Laplace fit's)."""
    names = tuple(f"mu{k}" for k in range(len(etas)))
    weighted = weights is not None

    def logp(value, *inputs):
        etas = inputs[:-1] if weighted else inputs
        log_p = categorical.pt_log_probability(value - 1.0, etas)
        return inputs[-1] * log_p if weighted else log_p

    def random(*inputs, rng=None, size=None):  # prior and posterior predictive draws (SBC draws y from the prior)
        etas = inputs[:-1] if weighted else inputs
        etas = [np.broadcast_to(eta, size) if size is not None else eta for eta in etas]
        return categorical.draw(dict(zip(names, etas)), names, np.random.default_rng(rng)) + 1.0

    inputs = [*etas, weights] if weighted else etas
    return _pm().CustomDist(name, *inputs, logp=logp, random=random, observed=observed, dims=dims)


def _ordinal_family(eta, params, trials):
    raise AssertionError("a category family's likelihood reads eta (Family.likelihood), not the mean")


def _density_family(name):
    """The PyMC likelihood of a family of :mod:`bayesmix.densities`."""

    def likelihood(mu, params, trials):
        parameters = {"mu": mu, **{p: params[p] for p in DENSITIES[name].params}}
        if trials is not None:
            parameters["trials"] = trials
        return _DensityDist(name), parameters

    return likelihood


def _zero_family(name):
    """The PyMC likelihood of a zero-inflated, hurdle or zero-truncated family."""
    count, zero = ZERO_FAMILIES[name]

    def likelihood(mu, params, trials):
        parameters = {"mu": mu} if count == "poisson" else {"mu": mu, "alpha": params["alpha"]}
        if zero != "truncated":
            parameters[zero] = params[zero]
        return _ZeroCount(name), parameters

    return likelihood


# families whose CDF the sampler differentiates (JAX)
CENSORABLE = ("gaussian", "poisson", "negativebinomial", "gamma", "lognormal", "weibull", "exponential")
NORMAL_TAIL = -20.0  # below this z, log Phi(z) from its asymptotic series (erfc underflows near -38)


def _normal_logcdf(z):
    """log Phi(z) for a pytensor z: through erfc, and in the far left tail the asymptotic series
    log phi(z) - log(-z) + log(1 - 1/z^2 + 3/z^4 - 15/z^6 + 105/z^8), exact to double precision
    below -20."""
    import pytensor.tensor as pt

    tail = pt.minimum(z, NORMAL_TAIL)
    inverse = 1.0 / tail**2
    correction = inverse * (-1.0 + inverse * (3.0 + inverse * (-15.0 + 105.0 * inverse)))
    series = -0.5 * tail**2 - 0.5 * LOG_2PI - pt.log(-tail) + pt.log1p(correction)
    body = pt.log(0.5 * pt.erfc(-pt.maximum(z, NORMAL_TAIL) / np.sqrt(2.0)))
    return pt.switch(pt.lt(z, NORMAL_TAIL), series, body)


def _negative_binomial_logcdf(at, mu, alpha, limit: int):
    """log P(Y <= at) of NB(mu, alpha) as the sum of the probabilities of 0..at, for at <= limit
    (a static bound from the data): PyMC's form goes through the regularised incomplete beta
    function, whose derivative in alpha JAX does not have."""
    import pytensor.tensor as pt

    k = pt.arange(limit + 1, dtype="float64")[None, :]
    mu, alpha, at = (pt.as_tensor(v)[..., None] if pt.as_tensor(v).ndim else pt.as_tensor(v) for v in (mu, alpha, at))
    log_total = pt.log(alpha + mu)
    logpmf = (
        pt.gammaln(k + alpha)
        - pt.gammaln(alpha)
        - pt.gammaln(k + 1.0)
        + alpha * (pt.log(alpha) - log_total)
        + k * (pt.log(mu) - log_total)
    )
    return pt.logsumexp(pt.switch(k <= at, logpmf, -np.inf), axis=-1)


def censored_count_limit(y, codes, upper) -> int:
    """The largest count a censored row's CDF is read at (its y; an interval's upper bound)."""
    points = np.concatenate([np.asarray(y)[codes > 0], np.asarray(upper)[codes == 3]])
    limit = int(np.ceil(points.max())) + 1 if points.size else 1
    if limit > MAX_CENSORED_COUNT:
        raise BayesmixError(
            f"A censored negative binomial row is censored at {limit - 1}; its CDF is summed term by term, which "
            f"is limited to counts of {MAX_CENSORED_COUNT}. Rescale the counts or use family='poisson'."
        )
    return limit


MAX_CENSORED_COUNT = 5000


def _censored_likelihood(
    name, distribution, parameters: dict, mean, censoring, observed, dims, discrete: bool, limit: int | None = None
):
    """An observed variable with censored rows (brms's cens()): by row, the density (code 0), the
    CDF P(Y <= y) (1, left), the survival P(Y > y) (2, right) or P(y < Y <= upper) (3, interval).
    Every branch is evaluated on every row, so a row that does not use one gets a value where it is
    finite (near the mean): a switch's gradient multiplies the unused branch by 0, and 0 x inf is NaN.
    ``limit``: a negative binomial's largest censoring point (:func:`censored_count_limit`)."""
    import pytensor.tensor as pt

    pm = _pm()
    keys = list(parameters)
    codes, upper = censoring

    def logp(value, *values):
        *values, centre, codes_, upper_ = values
        named = dict(zip(keys, values))
        dist = distribution.dist(**named)
        own = getattr(distribution, "density", None)  # a family of bayesmix.densities

        def logcdf(at):  # PyMC's normal log CDF goes through erfcx, which JAX lacks
            if distribution is pm.Normal:
                return _normal_logcdf((at - named["mu"]) / named["sigma"])
            if own is not None:
                return own.logcdf(at, named["mu"], named)
            if limit is not None:
                return _negative_binomial_logcdf(at, named["mu"], named["alpha"], limit)
            return pm.logcdf(dist, at)

        def logsf(at):  # the survival's own form where there is one: log(1 - CDF) loses the far tail
            if distribution is pm.Normal:
                return _normal_logcdf((named["mu"] - at) / named["sigma"])
            if own is not None and own.logsf(at, named["mu"], named) is not None:
                return own.logsf(at, named["mu"], named)
            return pt.log1mexp(logcdf(at))

        safe = pt.floor(centre) if discrete else centre
        if limit is not None:  # below the summed range, so that safe and safe + 1 differ
            safe = pt.minimum(safe, limit - 1.0)
        left = logcdf(pt.switch(pt.eq(codes_, 1), value, safe))
        right = logsf(pt.switch(pt.eq(codes_, 2), value, safe))
        low = pt.switch(pt.eq(codes_, 3), value, safe)
        high = logcdf(pt.switch(pt.eq(codes_, 3), upper_, safe + 1.0))
        interval = high + pt.log1mexp(logcdf(low) - high)
        density = pm.logp(dist, value)
        return pt.switch(
            pt.eq(codes_, 0), density, pt.switch(pt.eq(codes_, 1), left, pt.switch(pt.eq(codes_, 2), right, interval))
        )

    return pm.CustomDist(name, *parameters.values(), mean, codes, upper, logp=logp, observed=observed, dims=dims)


def _weighted_likelihood(name, distribution, parameters: dict, weights, observed, dims):
    """An observed variable whose log-density is w times the distribution's, row by row (glmmTMB's
    and brms's prior weights); its pointwise log-likelihood (for LOO) is the weighted one too."""
    pm = _pm()
    keys = list(parameters)

    def logp(value, *arguments):
        *values, w = arguments
        return w * pm.logp(distribution.dist(**dict(zip(keys, values))), value)

    return pm.CustomDist(name, *parameters.values(), weights, logp=logp, observed=observed, dims=dims)


@dataclass(frozen=True)
class Family:
    """A response distribution.

    name: as users write it (``"gaussian"``, ``"negativebinomial"``, ...).
    link: the link in use; links: the links this family accepts.
    params: auxiliary parameters, e.g. ``("sigma",)``; each gets a prior of that name.
    identity_scale: True when the linear predictor is on the response's scale (priors then scale
        with the response's SD).
    """

    name: str
    link: Link
    links: tuple[str, ...]
    params: tuple[str, ...]
    check: Callable
    _likelihood: Callable
    identity_scale: bool
    threshold_structure: str = "flexible"  # an ordinal family's: flexible or equidistant (clmm's threshold=)

    def with_thresholds(self, structure: str) -> Family:
        """The family with its thresholds ``"flexible"`` (one free cut point each, the default) or
        ``"equidistant"`` (c_k = c_1 + (k - 1) spacing: clmm's and brms's threshold= option)."""
        if not self.ordinal:
            raise BayesmixError(
                f"thresholds= structures an ordinal family's cut points; family='{self.name}' has none. "
                f"Ordinal families: {', '.join(ordinal.ORDINAL_FAMILIES)}."
            )
        known = ordinal.THRESHOLD_STRUCTURES
        if structure not in known:
            raise BayesmixError(
                f"thresholds='{structure}' is not a threshold structure.{did_you_mean(str(structure), known)} "
                f"Structures: {', '.join(known)}."
            )
        return replace(self, threshold_structure=structure)

    def with_categories(self, levels) -> Family:
        """A categorical family for a response with these levels (the first the reference): one
        parameter ``mu<level>``, a linear predictor, per other level."""
        return replace(self, params=categorical.parameter_names(levels))

    @property
    def categorical(self) -> bool:
        """Whether the response is unordered categories, one linear predictor per non-reference one."""
        return self.name == "categorical"

    @property
    def category_response(self) -> bool:
        """Whether the response is categories (ordered or not), modelled as their probabilities."""
        return self.ordinal or self.categorical

    def parameter_link(self, name: str) -> Link:
        """The link of a parameter that a formula predicts: a category's linear predictor is its log
        odds against the reference; the others' are in :data:`PARAMETER_LINKS`."""
        return LINKS["identity"] if self.categorical else PARAMETER_LINKS[name]

    def submodel_parameter(self, role: str) -> str:
        """The parameter a zi= or dispersion= formula predicts (``zi``/``hu``; ``sigma``, ``alpha``,
        ``shape`` or ``phi``; a categorical response's category), or BayesmixError naming the
        families that have one."""
        if self.categorical and role in self.params:
            return role
        owner = SUBMODEL_PARAMETERS[role]
        for name in self.params:
            if name in owner:
                return name
        takers = [family for family, entry in _FAMILIES.items() if set(entry[2]) & set(owner)]
        what = "zero process (zero-inflation or hurdle)" if role == "zi" else "dispersion parameter"
        raise BayesmixError(
            f"family='{self.name}' has no {what}, so {role}= does not apply. Families that take {role}=: "
            f"{', '.join(takers)}."
        )

    def with_zero_process(self) -> Family:
        """glmmTMB's reading of a ziformula beside a family without a zero process: poisson,
        nbinom2 and binomial become zero-inflated, the truncated counts (and gamma, lognormal)
        become hurdle models; other families are returned as they are (zi= then refuses them)."""
        if self.name not in WITH_ZERO_PROCESS:
            return self
        return get_family(WITH_ZERO_PROCESS[self.name], self.link.name)

    def check_response(self, y: np.ndarray, trials: np.ndarray | None) -> None:
        """Raise BayesmixError when ``y`` (and binomial ``trials``) lie outside the support."""
        if trials is not None and not self.takes_trials:
            raise BayesmixError(
                f"A cbind()/p() response is binomial data; family='{self.name}' cannot use it. Pass family='binomial'."
            )
        self.check(y, trials, self.name)

    def mean(self, eta, params=None):
        """The response mean for linear predictor ``eta`` (numpy arrays): g^{-1}(eta), and for the
        zero-inflated, hurdle and truncated families that count mean with the zero process applied
        (their ``params`` are then required)."""
        self._refuse_categorical("mean")
        if self.ordinal:  # the expected category index 1..K (brms's fitted mean)
            if params is None:
                raise BayesmixError(f"The mean of family='{self.name}' needs its thresholds.")
            probabilities = self.probabilities(eta, params)
            return probabilities @ np.arange(1.0, probabilities.shape[-1] + 1.0)
        mu = self.link.inverse(eta, _NUMPY)
        if self.name in DENSITIES:  # e.g. the lognormal's mean exp(mu + sigma^2 / 2), a hurdle's zeros
            if params is None:
                raise BayesmixError(f"The mean of family='{self.name}' needs its parameters.")
            return DENSITIES[self.name].moments(mu, params, None)[0]
        if self.name not in ZERO_FAMILIES:
            return mu
        if params is None:
            raise BayesmixError(f"The mean of family='{self.name}' needs its parameters ({', '.join(self.params)}).")
        return zero_moments(self.name, mu, params)[0]

    def moments(self, eta, params, trials=None, weights=None):
        """The response's (mean, variance) for linear predictor ``eta`` (numpy; params broadcast):
        binomial families count successes out of ``trials``; gaussian precision ``weights`` divide
        the variance."""
        self._refuse_categorical("moments")
        if self.ordinal:  # of the category index 1..K
            probabilities = self.probabilities(eta, params)
            index = np.arange(1.0, probabilities.shape[-1] + 1.0)
            mean = probabilities @ index
            return mean, probabilities @ index**2 - mean**2
        mu = self.link.inverse(eta, _NUMPY)
        name = self.name
        if name in ZERO_FAMILIES:
            return zero_moments(name, mu, params)
        if name in DENSITIES:
            return DENSITIES[name].moments(mu, params, trials)
        if name in ("bernoulli", "binomial"):
            n = 1.0 if trials is None else trials
            return n * mu, n * mu * (1.0 - mu)
        variance = {
            "poisson": lambda: mu,
            "negativebinomial": lambda: mu + mu**2 / params["alpha"],
            "negativebinomial1": lambda: mu * (1 + params["phi"]),
            "gamma": lambda: mu**2 / params["shape"],
            "beta": lambda: mu * (1.0 - mu) / (1.0 + params["phi"]),
        }.get(name, lambda: np.broadcast_to(np.asarray(params["sigma"]) ** 2, np.shape(mu)))()
        if weights is not None and name == "gaussian":
            variance = variance / weights
        return mu, variance

    def draw(self, eta, params, trials, rng: np.random.Generator, weights=None):
        """Random responses for linear predictor ``eta`` (numpy; params broadcast against it), as the
        likelihood. ``weights``: a gaussian row's precision weight (sd sigma / sqrt(w)); prior weights
        of other families scale the log-likelihood, not the distribution a response is drawn from."""
        if self.categorical:
            return categorical.draw(params, self.params, rng) + 1.0
        if self.ordinal:
            eta = np.asarray(eta, dtype=float)
            return ordinal.family_draw(self.name, self.link.name, eta, params["thresholds"], rng) + 1.0
        mu = self.link.inverse(eta, _NUMPY)
        if self.name in ZERO_FAMILIES:
            return zero_draws(self.name, mu, params, rng)
        if self.name in DENSITIES:
            return DENSITIES[self.name].draw(mu, params, trials, rng)
        if self.name == "gaussian":
            return rng.normal(mu, params["sigma"] if weights is None else params["sigma"] / np.sqrt(weights))
        if self.name == "t":
            return mu + params["sigma"] * rng.standard_t(params["nu"], size=np.shape(mu))
        if self.name in ("bernoulli", "binomial"):
            n = 1 if trials is None else trials
            return rng.binomial(np.broadcast_to(n, np.shape(mu)).astype(np.int64), mu).astype(float)
        if self.name == "poisson":
            return rng.poisson(mu).astype(float)
        if self.name == "negativebinomial":
            alpha = params["alpha"]
            return rng.poisson(rng.gamma(alpha, mu / alpha)).astype(float)
        if self.name == "negativebinomial1":  # size mu / phi: the gamma's scale is phi
            return rng.poisson(rng.gamma(mu / params["phi"], np.broadcast_to(params["phi"], np.shape(mu)))).astype(
                float
            )
        if self.name == "gamma":
            shape = params["shape"]
            return rng.gamma(shape, mu / shape)
        phi = params["phi"]
        return rng.beta(mu * phi, (1.0 - mu) * phi)

    def laplace_terms(self, eta, y, trials, params, weights=None):
        """(log p(y | eta), first and second eta-derivatives), elementwise, for Laplace fits;
        ``weights`` (prior weights, glmmTMB's meaning) multiply each row's terms."""
        links, terms = LAPLACE_TERMS[self.name]
        if self.link.name not in links:
            raise BayesmixError(f"Laplace fits of family='{self.name}' support the links {', '.join(links)}.")
        if self.categorical:  # log P(y) from the categories' predictors; the reference's eta does not enter
            ll = categorical.joint_terms(np.asarray(y) - 1, [params[name] for name in self.params])[0]
            d1 = d2 = np.zeros(np.shape(eta))
        else:
            ll, d1, d2 = terms(eta, y, trials, params, self.link)
        if weights is None:
            return ll, d1, d2
        return weights * ll, weights * d1, weights * d2

    def parameter_terms(self, name, eta, y, trials, params, weights=None):
        """(d/dzeta, d2/dzeta2, d2/deta dzeta) of log p per row along zeta = logit of the zero
        process's probability (``zi`` or ``hu``), where a zi= formula with random effects makes
        zeta a linear predictor of its own; None for other parameters (the Laplace engine then
        differences the density). With s = zi / (zi + (1 - zi) p0) the structural share of a zero
        and q = -d log p0 / d eta: at y = 0, s - zi, s (1 - s) - zi (1 - zi) and s (1 - s) q; at
        y > 0, -zi, -zi (1 - zi) and 0. A hurdle's hu: 1 - hu (y = 0) or -hu, -hu (1 - hu), 0."""
        if name not in ("zi", "hu"):
            return None
        p = np.broadcast_to(np.asarray(params[name], dtype=float), np.shape(eta))
        zeros = y == 0
        if name == "hu":
            terms = (np.where(zeros, 1.0 - p, -p), -p * (1.0 - p), np.zeros(np.shape(eta)))
        else:
            log_p0, q, _ = self._zero_probability(eta, trials, params)
            share = np.exp(np.log(p) - np.logaddexp(np.log(p), np.log1p(-p) + log_p0))
            spread = np.where(zeros, share * (1.0 - share), 0.0)
            terms = (np.where(zeros, share - p, -p), spread - p * (1.0 - p), spread * q)
        return terms if weights is None else tuple(weights * t for t in terms)

    def parameter_third(self, name, eta, y, trials, params, weights=None):
        """The third derivatives of log p per row that mix zeta (the zero process's logit, as
        :meth:`parameter_terms`) with eta: (d3/dzeta3, d3/dzeta2 deta, d3/dzeta deta2), or None
        where :meth:`parameter_terms` is None. A zero-inflated zero is log(zi + (1 - zi) p0) =
        log(e^zeta + p0) - log(1 + e^zeta), whose derivatives in (zeta, log p0) are powers of the
        structural share s: with q = -d log p0 / d eta and q' its eta-derivative, s (1 - s) (1 - 2 s)
        - zi (1 - zi) (1 - 2 zi), s (1 - s) (1 - 2 s) q and s (1 - s) ((1 - 2 s) q^2 + q'); a
        positive count, and a hurdle's every row, has only -zi (1 - zi) (1 - 2 zi) (zeta and eta
        apart)."""
        if name not in ("zi", "hu"):
            return None
        p = np.broadcast_to(np.asarray(params[name], dtype=float), np.shape(eta))
        alone = -p * (1.0 - p) * (1.0 - 2.0 * p)
        if name == "hu":
            terms = (alone, np.zeros(np.shape(eta)), np.zeros(np.shape(eta)))
        else:
            log_p0, q, dq = self._zero_probability(eta, trials, params)
            share = np.exp(np.log(p) - np.logaddexp(np.log(p), np.log1p(-p) + log_p0))
            skew = np.where(y == 0, share * (1.0 - share) * (1.0 - 2.0 * share), 0.0)
            spread = np.where(y == 0, share * (1.0 - share), 0.0)
            terms = (skew + alone, skew * q, skew * q**2 + spread * dq)
        return terms if weights is None else tuple(weights * t for t in terms)

    def _zero_probability(self, eta, trials, params):
        """(log P(y = 0), q = -its eta-derivative, dq/deta) of the count (or binomial) beneath the
        zero inflation."""
        if self.name == "zero_inflated_binomial":
            from scipy.special import expit, log_expit

            n = 1.0 if trials is None else trials
            success = expit(eta)
            return n * log_expit(-eta), n * success, n * success * (1.0 - success)
        return zero_probability(ZERO_FAMILIES[self.name][0], eta, params.get("alpha"))

    def laplace_third(self, eta, y, trials, params, weights=None):
        """d3 log p(y | eta) / d eta3, elementwise (the exact gradient of a Laplace fit reads it):
        analytic where written out, else a central difference of the analytic second derivative
        (error ~1e-8 relative, far below what the outer optimiser's gradient needs)."""
        if self.name in LAPLACE_THIRD:
            third = LAPLACE_THIRD[self.name](eta, y, trials, params, self.link)
        else:
            step = THIRD_STEP * np.maximum(1.0, np.abs(eta))
            upper = self.laplace_terms(eta + step, y, trials, params)[2]
            third = (upper - self.laplace_terms(eta - step, y, trials, params)[2]) / (2 * step)
        return third if weights is None else weights * third

    @property
    def ordinal(self) -> bool:
        """Whether the response is ordered categories with thresholds (:mod:`bayesmix.ordinal`)."""
        return self.name in ordinal.ORDINAL_FAMILIES

    def _refuse_categorical(self, what: str) -> None:
        if self.categorical:
            raise BayesmixError(
                f"An unordered categorical response has no {what} (its category codes have no order); use the "
                "category probabilities (predict(kind='probs')) or drawn categories (kind='response')."
            )

    def probabilities(self, eta, params) -> np.ndarray:
        """(..., K) category probabilities of an ordinal family for linear predictors ``eta``, or of
        a categorical one from its categories' predictors in ``params``."""
        if self.categorical:
            return categorical.probabilities(params, self.params)
        return ordinal.family_probabilities(self.name, self.link.name, eta, params["thresholds"])

    @property
    def takes_trials(self) -> bool:
        """Whether the response counts successes out of trials (a cbind() or p() response)."""
        return self.name in TRIAL_FAMILIES

    @property
    def has_laplace(self) -> bool:
        return self.name in LAPLACE_TERMS and self.link.name in LAPLACE_TERMS[self.name][0]

    def check_censoring(self) -> None:
        if self.name not in CENSORABLE:
            raise BayesmixError(
                f"Censored responses are supported for {', '.join(CENSORABLE)}; not for family='{self.name}' yet."
            )

    def likelihood(
        self, name, eta, params, observed, trials=None, dims=None, weights=None, censoring=None, groups=None
    ):
        """Add the observed PyMC variable for linear predictor ``eta`` (shape (n,)). ``weights``:
        gaussian precision weights (sd sigma / sqrt(w), lme4's meaning); for the other families each
        row's log-density counts w times (glmmTMB's). ``censoring``: (codes, upper) of a censored
        response (:func:`_censored_likelihood`)."""
        import pytensor.tensor as pt

        if self.categorical:
            if censoring is not None:
                raise BayesmixError("family='categorical' takes no censored responses: categories are observed.")
            return _categorical_likelihood(name, observed, dims, [params[p] for p in self.params], weights)
        if self.ordinal:
            if censoring is not None or weights is not None:
                raise BayesmixError(f"family='{self.name}' takes neither weights= nor censored responses yet.")
            return _Ordinal(self.name, self.link.name)(name, observed, dims, eta=eta, thresholds=params["thresholds"])
        mean = self.link.inverse(eta, pt)
        distribution, parameters = self._likelihood(mean, params, trials)
        if isinstance(distribution, _DensityDist):
            distribution.static = distribution.density.static_arguments(observed.get_value(), groups)
        if censoring is not None:
            discrete = self.name in ("poisson", "negativebinomial")
            limit = None
            if self.name == "negativebinomial":
                codes, upper = (c.get_value() for c in censoring)
                limit = censored_count_limit(observed.get_value(), codes, upper)
            return _censored_likelihood(
                name, distribution, parameters, mean, censoring, observed, dims, discrete, limit
            )
        if weights is not None and self.name == "gaussian":
            parameters["sigma"] = parameters["sigma"] / pt.sqrt(weights)
        elif weights is not None:
            return _weighted_likelihood(name, distribution, parameters, weights, observed, dims)
        return distribution(name, **parameters, observed=observed, dims=dims)


# role of a one-sided formula -> the parameters it can predict, each with its link (glmmTMB's and
# brms's: logit for a probability, log for a scale)
SUBMODEL_PARAMETERS = {
    "zi": {"zi": "logit", "hu": "logit"},
    "dispersion": {"sigma": "log", "alpha": "log", "shape": "log", "phi": "log"},
}
PARAMETER_LINKS = {name: LINKS[link] for roles in SUBMODEL_PARAMETERS.values() for name, link in roles.items()}

_FAMILIES = {
    # name: (default link, accepted links, auxiliary params, support check, likelihood, identity scale)
    "gaussian": ("identity", ("identity", "log", "inverse"), ("sigma",), _check_real, _gaussian, True),
    "t": ("identity", ("identity", "log", "inverse"), ("sigma", "nu"), _check_real, _student_t, True),
    "bernoulli": ("logit", ("logit", "probit", "cloglog"), (), _check_binary, _bernoulli, False),
    "binomial": ("logit", ("logit", "probit", "cloglog"), (), _check_binomial, _binomial, False),
    "poisson": ("log", ("log", "identity", "sqrt"), (), _check_count, _poisson, False),
    "negativebinomial": ("log", ("log", "identity", "sqrt"), ("alpha",), _check_count, _negative_binomial, False),
    "gamma": ("log", ("log", "inverse", "identity"), ("shape",), _check_positive, _gamma, False),
    "beta": ("logit", ("logit", "probit", "cloglog"), ("phi",), _check_unit_interval, _beta, False),
    "negativebinomial1": ("log", ("log",), ("phi",), _check_count, _negative_binomial1, False),
    "zero_inflated_poisson": ("log", ("log",), ("zi",), _check_count, _zero_family("zero_inflated_poisson"), False),
    "zero_inflated_negativebinomial": (
        "log",
        ("log",),
        ("alpha", "zi"),
        _check_count,
        _zero_family("zero_inflated_negativebinomial"),
        False,
    ),
    "hurdle_poisson": ("log", ("log",), ("hu",), _check_count, _zero_family("hurdle_poisson"), False),
    "hurdle_negativebinomial": (
        "log",
        ("log",),
        ("alpha", "hu"),
        _check_count,
        _zero_family("hurdle_negativebinomial"),
        False,
    ),
    "truncated_poisson": ("log", ("log",), (), _check_positive_count, _zero_family("truncated_poisson"), False),
    "lognormal": ("identity", ("identity",), ("sigma",), _check_positive, _density_family("lognormal"), False),
    "exponential": ("log", ("log",), (), _check_positive, _density_family("exponential"), False),
    "weibull": ("log", ("log",), ("shape",), _check_positive, _density_family("weibull"), False),
    "hurdle_gamma": ("log", ("log",), ("shape", "hu"), _check_nonnegative, _density_family("hurdle_gamma"), False),
    "hurdle_lognormal": (
        "identity",
        ("identity",),
        ("sigma", "hu"),
        _check_nonnegative,
        _density_family("hurdle_lognormal"),
        False,
    ),
    "betabinomial": ("logit", ("logit",), ("phi",), _check_trials, _density_family("betabinomial"), False),
    "tweedie": ("log", ("log",), ("phi", "power"), _check_nonnegative, _density_family("tweedie"), False),
    "zero_inflated_binomial": (
        "logit",
        ("logit",),
        ("zi",),
        _check_binomial,
        _density_family("zero_inflated_binomial"),
        False,
    ),
    "truncated_negativebinomial": (
        "log",
        ("log",),
        ("alpha",),
        _check_positive_count,
        _zero_family("truncated_negativebinomial"),
        False,
    ),
    "cumulative": ("logit", ordinal.ORDINAL_LINKS, ("thresholds",), _check_ordinal, _ordinal_family, False),
    "sratio": ("logit", ordinal.ORDINAL_LINKS, ("thresholds",), _check_ordinal, _ordinal_family, False),
    "acat": ("logit", ordinal.ORDINAL_LINKS, ("thresholds",), _check_ordinal, _ordinal_family, False),
    # its parameters, one linear predictor per non-reference category, are named once the levels are
    # known (Family.with_categories)
    "categorical": ("logit", ("logit",), (), _check_categories, _ordinal_family, False),
}
_ALIASES = {
    "normal": "gaussian",
    "student_t": "t",
    "studentt": "t",
    "negbinomial": "negativebinomial",
    "negative_binomial": "negativebinomial",
    "nbinom": "negativebinomial",
    "logistic": "bernoulli",
    # glmmTMB's and brms's spellings
    "nbinom2": "negativebinomial",
    "nbinom1": "negativebinomial1",
    "negbinomial1": "negativebinomial1",
    "negbinomial2": "negativebinomial",
    "zero_inflated_negbinomial": "zero_inflated_negativebinomial",
    "hurdle_negbinomial": "hurdle_negativebinomial",
    "truncated_nbinom2": "truncated_negativebinomial",
    "truncated_negbinomial": "truncated_negativebinomial",
    "zip": "zero_inflated_poisson",
    "zinb": "zero_inflated_negativebinomial",
    "zip_poisson": "zero_inflated_poisson",
    "zeroinflatedpoisson": "zero_inflated_poisson",
    "beta_binomial": "betabinomial",
    "zib": "zero_inflated_binomial",
    "zigamma": "hurdle_gamma",  # glmmTMB's ziGamma: with a ziformula, zeros are a hurdle
    "log_normal": "lognormal",
}
TRIAL_FAMILIES = ("binomial", "betabinomial", "zero_inflated_binomial")
# glmmTMB: family + ziformula -> the family with that zero process
WITH_ZERO_PROCESS = {
    "poisson": "zero_inflated_poisson",
    "negativebinomial": "zero_inflated_negativebinomial",
    "binomial": "zero_inflated_binomial",
    "truncated_poisson": "hurdle_poisson",
    "truncated_negativebinomial": "hurdle_negativebinomial",
    "gamma": "hurdle_gamma",
    "lognormal": "hurdle_lognormal",
}

FAMILY_NAMES = tuple(_FAMILIES)


def get_family(name, link: str | None = None) -> Family:
    """The family called ``name`` with ``link`` (its default link when None)."""
    if isinstance(name, Family):
        return name
    if not isinstance(name, str):
        raise BayesmixError(f"family must be a name such as 'gaussian', not {type(name).__name__}.")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _FAMILIES:
        raise BayesmixError(
            f"Unknown family '{name}'.{did_you_mean(name.lower(), FAMILY_NAMES)} Families: {', '.join(FAMILY_NAMES)}."
        )
    default_link, links, params, check, likelihood, identity_scale = _FAMILIES[key]
    link = default_link if link is None else str(link).lower()
    if link not in links:
        raise BayesmixError(
            f"family='{key}' does not take link='{link}'.{did_you_mean(link, links)} Its links: {', '.join(links)}."
        )
    return Family(key, LINKS[link], links, params, check, likelihood, identity_scale)
