"""The families of bayesmix.densities (issue 21): lognormal, exponential, weibull, hurdle gamma and
lognormal, beta-binomial and zero-inflated binomial, in both engines.

Each density's Laplace terms are checked against scipy and finite differences, its PyMC log
density against the same terms (one definition for both engines), its draws against its moments,
and its Laplace fit against glmmTMB 1.1.5 or, where glmmTMB lacks the family, a TMB template
(tests/data/r/more_family_references.R), and the lognormal families (brms's log-scale form) against
lme4's ML fit of log y (tests/data/r/lognormal_censored_references.R); provenance in
tests/data/PROVENANCE.md.
"""

import functools
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit, gamma

import bayesmix
from bayesmix.densities import DENSITIES
from bayesmix.families import get_family

DATA = Path(__file__).parent / "data"
PARAMS = {"sigma": 0.7, "shape": 1.8, "hu": 0.3, "phi": 6.0, "zi": 0.25, "power": 1.45}


def sample(family: str, n: int = 80, seed: int = 0):
    """(eta, y, trials) on the family's support."""
    rng = np.random.default_rng(seed)
    density = DENSITIES[family]
    eta = rng.normal(0.2, 0.6, n)
    trials = rng.integers(1, 12, n).astype(float) if family in ("betabinomial", "zero_inflated_binomial") else None
    mu = get_family(family).link.inverse(eta, np)
    y = density.draw(mu, PARAMS, trials, rng)
    return eta, y, trials


def scipy_logpdf(family: str, eta, y, trials):
    """Each density written from scipy's distributions, apart from bayesmix's code."""
    sigma, k, hu, phi, zi = (PARAMS[name] for name in ("sigma", "shape", "hu", "phi", "zi"))
    if family == "lognormal":
        return stats.lognorm(sigma, scale=np.exp(eta)).logpdf(y)
    if family == "exponential":
        return stats.expon(scale=np.exp(eta)).logpdf(y)
    if family == "weibull":
        return stats.weibull_min(k, scale=np.exp(eta) / gamma(1 + 1 / k)).logpdf(y)
    if family.startswith("hurdle"):
        safe = np.where(y == 0, 1.0, y)
        if family == "hurdle_gamma":
            positive = stats.gamma(k, scale=np.exp(eta) / k).logpdf(safe)
        else:
            positive = stats.lognorm(sigma, scale=np.exp(eta)).logpdf(safe)
        return np.where(y == 0, np.log(hu), np.log1p(-hu) + positive)
    if family == "tweedie":
        return tweedie_by_its_terms(y, np.exp(eta), phi, PARAMS["power"])
    mu = expit(eta)
    if family == "betabinomial":
        return stats.betabinom(trials, mu * phi, (1 - mu) * phi).logpmf(y)
    binomial = stats.binom(trials, mu)
    return np.where(y == 0, np.log(zi + (1 - zi) * binomial.pmf(0)), np.log1p(-zi) + binomial.logpmf(y))


def tweedie_by_its_terms(y, mu, phi, p):
    """The compound Poisson-gamma density summed over the number of gamma terms N (apart from the
    series in W that bayesmix sums): P(0) = e^-lambda, f(y) = sum_N Poisson(N) Gamma(y; N a, gamma)."""
    lam, a, scale = mu ** (2 - p) / (phi * (2 - p)), (2 - p) / (p - 1), phi * (p - 1) * mu ** (p - 1)
    n = np.arange(1, 400)[:, None]
    terms = stats.poisson.logpmf(n, lam) + stats.gamma.logpdf(np.where(y > 0, y, 1.0), n * a, scale=scale)
    return np.where(y > 0, np.logaddexp.reduce(terms, axis=0), -lam)


@pytest.mark.parametrize("family", list(DENSITIES))
def test_terms_are_the_density_and_its_derivatives(family):
    eta, y, trials = sample(family)
    ll, d1, d2 = DENSITIES[family].terms(eta, y, trials, PARAMS)
    np.testing.assert_allclose(ll, scipy_logpdf(family, eta, y, trials), rtol=1e-10, atol=1e-10)
    h = 1e-5
    up, down = (DENSITIES[family].terms(eta + s, y, trials, PARAMS) for s in (h, -h))
    np.testing.assert_allclose(d1, (up[0] - down[0]) / (2 * h), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(d2, (up[1] - down[1]) / (2 * h), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("family", list(DENSITIES))
def test_pymc_likelihood_is_the_laplace_engines(family):
    eta, y, trials = sample(family, n=40, seed=2)
    data = pd.DataFrame({"y": y, "x": eta, "g": np.repeat(["a", "b", "c", "d"], 10)})
    formula = "y ~ 0 + x + (1 | g)"
    if trials is not None:
        data["n"] = trials
        formula = "p(y, n) ~ 0 + x + (1 | g)"
    model = bayesmix.Model(formula, data, family=family)
    pm_model = model.pymc_model("noncentered")
    point = pm_model.initial_point()
    point["beta"] = np.array([1.0])
    point["z_g"] = np.zeros_like(point["z_g"])
    for name in model.family.params:
        rv = pm_model[name]
        value = pm_model.rvs_to_values[rv].name
        point[value] = pm_model.rvs_to_transforms[rv].forward(PARAMS[name], *rv.owner.inputs).eval()
    observed = pm_model.observed_RVs[0]
    pointwise = pm_model.compile_logp(vars=[observed], sum=False)(point)[0]
    # rtol 1e-7: the parameters pass through their transforms (interval for the power) and back
    np.testing.assert_allclose(pointwise, DENSITIES[family].terms(eta, y, trials, PARAMS)[0], rtol=1e-7)


@pytest.mark.parametrize("family", list(DENSITIES))
def test_draws_have_the_stated_moments(family):
    rng = np.random.default_rng(1)
    n = 200_000
    mu = np.full(n, get_family(family).link.inverse(np.asarray(0.4), np))
    trials = np.full(n, 8.0) if family in ("betabinomial", "zero_inflated_binomial") else None
    draws = DENSITIES[family].draw(mu, PARAMS, trials, rng)
    mean, variance = DENSITIES[family].moments(mu[:1], PARAMS, None if trials is None else trials[:1])
    assert abs(draws.mean() - mean[0]) < 4 * np.sqrt(variance[0] / n)
    assert draws.var() == pytest.approx(variance[0], rel=0.04)


# reference case -> family
CASES = {
    "exponential_sim": "exponential",
    "weibull_sim": "weibull",
    "betabinomial_sim": "betabinomial",
    "zib_sim": "zero_inflated_binomial",
    "hurdle_gamma_sim": "hurdle_gamma",
    "lognormal_brms_sim": "lognormal",
    "hurdle_lognormal_brms_sim": "hurdle_lognormal",
    "tweedie_sim": "tweedie",
}
FAMILY_PARAMS = ("shape", "phi", "zi", "hu", "sigma", "power")  # named as the references name them


@functools.cache
def fitted(case: str):
    ref = json.loads((DATA / f"{case}.json").read_text())
    data = pd.read_csv(DATA / ref["data_file"])
    model = bayesmix.Model(ref["formula"], data, family=CASES[case])
    return model, model.fit("laplace"), ref["newton_polish"]


@pytest.mark.parametrize("case", list(CASES))
def test_laplace_matches_the_reference(case):
    _, fit, target = fitted(case)
    assert fit.loglik == pytest.approx(target["logLik"], rel=1e-9)
    cond = target["fixef"]["cond"]
    np.testing.assert_allclose(fit.fixef.estimate, cond["estimate"], rtol=1e-5)
    np.testing.assert_allclose(fit.fixef.se, cond["se"], rtol=1e-4)
    assert fit.varcorr[0]["sd"][0] == pytest.approx(target["re_sd"]["cond"], rel=1e-5)
    for name in FAMILY_PARAMS:
        if name in fit.family_params:
            assert fit.family_params[name] == pytest.approx(target["family_params"][name], rel=1e-5)


@pytest.mark.parametrize("case", ["weibull_sim", "betabinomial_sim"])
def test_nuts_agrees_with_laplace(case):
    model, fit, _ = fitted(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = model.sample(draws=300, tune=300, chains=2, random_seed=4, progressbar=False)
    post = idata.posterior
    for name in fit.fixef.index:
        draws = post["beta"].sel(coef=name)
        assert abs(float(draws.mean()) - fit.fixef.estimate[name]) < 2 * float(draws.std()), name
    for name, value in fit.family_params.items():
        assert abs(float(post[name].mean()) - value) < 2 * float(post[name].std()), name
    mean = model.predict(inplace=False).mean(("chain", "draw")).to_numpy()
    np.testing.assert_allclose(mean, fit.predict(), rtol=0.1)
    assert set(idata.log_likelihood.data_vars) and set(idata.posterior_predictive.data_vars)


def test_spellings_and_support():
    assert get_family("beta_binomial").name == "betabinomial"
    assert get_family("ziGamma").name == "hurdle_gamma"
    assert get_family("zib").name == "zero_inflated_binomial"
    assert get_family("tweedie").params == ("phi", "power")
    data = pd.DataFrame({"y": [0.0, 1.2, 3.4, 0.5] * 5, "g": list("abcde") * 4})
    with pytest.raises(bayesmix.BayesmixError, match="strictly positive"):
        bayesmix.Model("y ~ 1 + (1 | g)", data, family="weibull")
    with pytest.raises(bayesmix.BayesmixError, match="cbind"):
        bayesmix.Model("y ~ 1 + (1 | g)", data.assign(y=[0, 1, 1, 0] * 5), family="betabinomial")
    bayesmix.Model("y ~ 1 + (1 | g)", data, family="hurdle_lognormal")  # zeros go to the hurdle


def _series_at(series, y):
    """log W, coverage and the (phi, power)-gradient of the sampler's series, as a function."""
    import pytensor
    import pytensor.tensor as pt

    phi, power = pt.dscalar("phi"), pt.dscalar("power")
    log_w, covered = series.log_w(pt.as_tensor(np.where(y > 0, y, 1.0)), phi, power)
    total = pt.sum(log_w * (y > 0))
    return pytensor.function([phi, power], [log_w, covered, *pytensor.grad(total, [phi, power])])


def test_tweedie_window_reads_the_spread_within_levels():
    """The sampler's series windows cover phi down to a fifth of a moment estimate; between-level
    spread (a group SD of 2.5 on the log scale) inflates the overall estimate past the true phi,
    whose series the windows then refused (the sampler stalled against it: R-hat 2.3 in a
    simulation-based calibration replication). Within the levels the estimate stays near phi."""
    rng = np.random.default_rng(8)
    g = np.repeat(np.arange(30), 8)
    mu = np.exp(0.3 + rng.normal(0, 2.5, 30))[g]
    tweedie = DENSITIES["tweedie"]
    y = tweedie.draw(mu, {"phi": 0.5, "power": 1.2}, None, rng)
    overall = _series_at(tweedie.static_arguments(y)["series"], y)(0.5, 1.2)[1]
    within = _series_at(tweedie.static_arguments(y, groups=g)["series"], y)(0.5, 1.2)[1]
    assert not overall[y > 0].all() and within[y > 0].all()


def test_tweedie_sampler_series_is_the_full_series_at_large_y():
    """The sampler's series: rows sorted by response, the small ones sharing one window (their
    log-gammas computed once), the largest each a window centred on its own peak; so responses in
    the thousands with a power near 1 (peaks near j = 5000) cost a few thousand terms in all, not
    thousands a row. Its value and its phi- and power-derivatives are the full series' (summed over
    the number of gamma terms, apart from bayesmix's code), and a phi below the windows' floor is
    refused, never summed short."""
    from bayesmix.densities import TweedieSeries, tweedie_log_w

    rng = np.random.default_rng(3)
    mu = np.exp(rng.normal(3.0, 1.5, 200))
    y = DENSITIES["tweedie"].draw(mu, {"phi": 0.5, "power": 1.2}, None, rng)
    assert y.max() > 1000 and (y == 0).any()
    series = TweedieSeries.for_data(y, 0.1)  # phi down to 0.1, powers up to 1.9
    assert {kind for kind, _ in series.plans} == {"shared", "rows"}
    plans = zip(np.diff(series.bounds), series.plans)
    terms = sum(rows * (size if kind == "shared" else 2 * size + 1) for rows, (kind, size) in plans)
    assert terms < 200 * y.max() ** 0.99 / (0.1 * 0.99) / 50  # j = 1 .. the largest peak, every row
    f = _series_at(series, y)
    value, covered, d_phi, d_power = f(0.5, 1.2)
    positive = y > 0
    assert covered[positive].all()
    np.testing.assert_allclose(value[positive], tweedie_log_w(y[positive], 0.5, 1.2), rtol=1e-12)
    lam, a, scale = 30.0**0.8 / (0.5 * 0.8), 0.8 / 0.2, 0.5 * 0.2 * 30.0**0.2  # at mu = 30
    n, yp = np.arange(1, 20000)[:, None], y[positive]
    full = np.logaddexp.reduce(stats.poisson.logpmf(n, lam) + stats.gamma.logpdf(yp, n * a, scale=scale), axis=0)
    base = -yp * 30.0**-0.2 / (0.5 * 0.2) - lam - np.log(yp)
    np.testing.assert_allclose(value[positive], full - base, rtol=1e-9)
    h = 1e-6
    total = lambda phi, power: np.sum(f(phi, power)[0][positive])  # noqa: E731
    np.testing.assert_allclose(d_phi, (total(0.5 + h, 1.2) - total(0.5 - h, 1.2)) / (2 * h), rtol=1e-5)
    np.testing.assert_allclose(d_power, (total(0.5, 1.2 + h) - total(0.5, 1.2 - h)) / (2 * h), rtol=1e-5)
    assert not f(0.1 / 40, 1.2)[1][positive].all()  # far below the floor the windows cannot hold the series


def test_tweedie_sampler_density_with_a_dispersion_formula():
    """With a dispersion formula each row has its own phi, which follows the row through the
    sampler's sort of the rows by window width: the pointwise log likelihood is the Laplace
    engine's at that row's phi."""
    rng = np.random.default_rng(2)
    x, z = rng.normal(size=60), rng.normal(size=60)
    y = DENSITIES["tweedie"].draw(np.exp(1 + 0.5 * x), {"phi": np.exp(0.3 * z), "power": 1.4}, None, rng)
    data = pd.DataFrame({"y": y, "x": x, "z": z, "g": np.repeat(list("abcdef"), 10)})
    pm_model = bayesmix.Model("y ~ x + (1 | g)", data, family="tweedie", dispersion="~ z").pymc_model("noncentered")
    point = pm_model.initial_point()
    point.update(beta=np.array([1.0, 0.5]), phi_beta=np.array([0.2, 0.3]), power_interval__=np.array(0.0))
    pointwise = pm_model.compile_logp(vars=[pm_model.observed_RVs[0]], sum=False)(point)[0]
    expected = DENSITIES["tweedie"].terms(1 + 0.5 * x, y, None, {"phi": np.exp(0.2 + 0.3 * z), "power": 1.5})[0]
    np.testing.assert_allclose(pointwise, expected, rtol=1e-12)
