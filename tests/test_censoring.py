"""Censored responses (issue 21; brms's cens()): the sampled likelihood's rows are the density, the
CDF, the survival function or an interval's probability, checked against scipy at a point; so are
the Laplace engine's rows and their eta-derivatives; the Laplace fits of a censored gaussian (a
Tobit mixed model) and a right-censored weibull (a frailty model) equal a TMB template's
(tests/data/r/lognormal_censored_references.R, provenance in tests/data/PROVENANCE.md); and a
censored gaussian model recovers what a fit of the clipped values cannot."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import gamma as gamma_function

import bayesmix
from bayesmix.censored import censored_terms
from bayesmix.families import get_family

DATA = Path(__file__).parent / "data"

CODES = np.array(["none", "left", "right", "interval"])


def censored_frame(family: str, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 48
    x = rng.normal(size=n)
    y = np.abs(np.round(1 + 0.5 * x + rng.normal(0, 1, n), 3)) + 0.1
    if family in ("poisson", "negativebinomial"):
        y = np.floor(y * 2)
    codes = CODES[np.arange(n) % 4]
    width = 2.0 if family in ("poisson", "negativebinomial") else 0.7
    return pd.DataFrame(
        {
            "y": y,
            "x": x,
            "g": np.repeat(list("abcd"), n // 4),
            "c": codes,
            "u": np.where(codes == "interval", y + width, np.nan),
        }
    )


def scipy_distribution(family: str, eta, params):
    if family == "gaussian":
        return stats.norm(eta, params["sigma"])
    if family == "poisson":
        return stats.poisson(np.exp(eta))
    if family == "negativebinomial":
        alpha = params["alpha"]
        return stats.nbinom(alpha, alpha / (alpha + np.exp(eta)))
    if family == "gamma":
        return stats.gamma(params["shape"], scale=np.exp(eta) / params["shape"])
    if family == "lognormal":
        return stats.lognorm(params["sigma"], scale=np.exp(eta))
    if family == "weibull":
        k = params["shape"]
        return stats.weibull_min(k, scale=np.exp(eta) / gamma_function(1 + 1 / k))
    return stats.expon(scale=np.exp(eta))


def expected_rows(family, data, eta, params):
    dist = scipy_distribution(family, eta, params)
    y, upper, codes = data.y.to_numpy(), data.u.fillna(0).to_numpy(), data.c.to_numpy()
    density = dist.logpmf(y) if family in ("poisson", "negativebinomial") else dist.logpdf(y)
    with np.errstate(all="ignore"):
        return np.select(
            [codes == "none", codes == "left", codes == "right"],
            [density, dist.logcdf(y), dist.logsf(y)],
            np.log(dist.cdf(upper) - dist.cdf(y)),
        )


@pytest.mark.parametrize(
    "family", ["gaussian", "poisson", "negativebinomial", "gamma", "lognormal", "weibull", "exponential"]
)
def test_each_row_is_its_censoring_probability(family):
    data = censored_frame(family)
    model = bayesmix.Model("y ~ 0 + x + (1 | g)", data, family=family, censored="c", upper="u")
    pm_model = model.pymc_model("noncentered")
    point = pm_model.initial_point()
    point["beta"] = np.array([0.3])
    point["z_g"] = np.zeros_like(point["z_g"])
    ours = pm_model.compile_logp(vars=[pm_model["y"]], sum=False)(point)[0]
    eta = 0.3 * data.x.to_numpy()
    params = {name: float(np.exp(point[f"{name}_log__"])) for name in model.family.params}
    expected = expected_rows(family, data, eta, params)
    # scipy's log(cdf(u) - cdf(y)) loses its digits where both are within 1e-13 of 1: compare the rest
    finite = np.isfinite(expected) & (expected > -25)
    assert finite.sum() >= 40
    np.testing.assert_allclose(ours[finite], expected[finite], rtol=1e-6, atol=1e-6)


def test_normal_log_cdf_holds_in_the_far_tail():
    import pytensor.tensor as pt

    from bayesmix.families import _normal_logcdf

    z = np.array([-45.0, -38.0, -25.0, -20.5, -19.5, -5.0, 0.0, 3.0])
    ours = _normal_logcdf(pt.as_tensor(z)).eval()
    np.testing.assert_allclose(ours, stats.norm.logcdf(z), rtol=1e-10)


def test_censored_gaussian_recovers_what_clipping_hides():
    rng = np.random.default_rng(2)
    groups, per = 30, 10
    g = np.repeat(np.arange(groups), per)
    x = rng.normal(size=g.size)
    latent = 1 + 0.5 * x + rng.normal(0, 0.5, groups)[g] + rng.normal(0, 0.8, g.size)
    data = pd.DataFrame(
        {"y": np.minimum(latent, 1.5), "x": x, "g": g.astype(str), "c": np.where(latent > 1.5, "right", "none")}
    )
    model = bayesmix.Model("y ~ x + (1 | g)", data, censored="c")
    assert model.resolve_parameterization("auto") != "marginal"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = model.sample(draws=400, tune=400, chains=2, random_seed=1, progressbar=False)
    post = idata.posterior
    truth = {"Intercept": 1.0, "x": 0.5}
    for name, value in truth.items():
        draws = post["beta"].sel(coef=name)
        assert abs(float(draws.mean()) - value) < 2.5 * float(draws.std()), name
    sigma = post["sigma"]
    assert abs(float(sigma.mean()) - 0.8) < 2.5 * float(sigma.std())
    clipped = bayesmix.Model("y ~ x + (1 | g)", data).fit("reml")  # ignoring the censoring: biased
    assert clipped.fixef.estimate["x"] < 0.4 and clipped.sigma < 0.65


@pytest.mark.parametrize("family", ["gaussian", "lognormal", "weibull", "exponential"])
def test_laplace_rows_and_their_derivatives(family):
    data = censored_frame(family)
    codes = data.c.map({"none": 0, "left": 1, "right": 2, "interval": 3}).to_numpy()
    eta = 0.3 * data.x.to_numpy() + (0.4 if family in ("weibull", "exponential") else 0.0)
    params = {"sigma": 0.8, "shape": 1.7}
    y, upper = data.y.to_numpy(), data.u.to_numpy()

    def terms(at):
        return censored_terms(
            family, at, y, upper, codes, params, *get_family(family).laplace_terms(at, y, None, params)
        )

    ll, d1, d2 = terms(eta)
    np.testing.assert_allclose(ll, expected_rows(family, data, eta, params), rtol=1e-9, atol=1e-12)
    h = 1e-5
    up, down = terms(eta + h), terms(eta - h)
    np.testing.assert_allclose(d1, (up[0] - down[0]) / (2 * h), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(d2, (up[1] - down[1]) / (2 * h), rtol=1e-6, atol=1e-8)
    far = censored_terms("gaussian", np.array([40.0]), np.array([0.0]), None, np.array([1]), {"sigma": 1.0}, 0, 0, 0)
    assert np.isfinite(far[0]).all() and far[0][0] < -800 and far[2][0] == pytest.approx(-1.0, rel=1e-3)


@pytest.mark.parametrize("case, family", [("censored_gaussian_sim", "gaussian"), ("censored_weibull_sim", "weibull")])
def test_laplace_matches_the_tmb_template(case, family):
    ref = json.loads((DATA / f"{case}.json").read_text())
    target = ref["newton_polish"]
    data = pd.read_csv(DATA / ref["data_file"])
    bounds = {"upper": "upper"} if "upper" in data.columns else {}
    fit = bayesmix.Model("y ~ x + (1 | g)", data, family=family, censored="cens", **bounds).fit("laplace")
    assert fit.method == "Laplace" and fit.converged
    new = data.drop(columns=["cens", *bounds]).iloc[
        :5
    ]  # predictions need no censoring codes, as lme4's need no weights
    np.testing.assert_allclose(fit.predict(new), fit.predict()[:5], rtol=1e-12)
    assert fit.loglik == pytest.approx(target["logLik"], rel=1e-9)
    np.testing.assert_allclose(fit.fixef.estimate, target["fixef"]["cond"]["estimate"], rtol=1e-6)
    np.testing.assert_allclose(fit.fixef.se, target["fixef"]["cond"]["se"], rtol=1e-4)
    assert fit.varcorr[0]["sd"][0] == pytest.approx(target["re_sd"]["cond"], rel=1e-6)
    name = model_param = "sigma" if family == "gaussian" else "shape"
    assert fit.family_params[model_param] == pytest.approx(target["family_params"][name], rel=1e-6)


def test_censoring_errors():
    data = censored_frame("gaussian")
    with pytest.raises(bayesmix.BayesmixError, match="not censoring codes.*'none', 'left'"):
        bayesmix.Model("y ~ x + (1 | g)", data.assign(c="above"), censored="c")
    with pytest.raises(bayesmix.BayesmixError, match="pass upper='column'"):
        bayesmix.Model("y ~ x + (1 | g)", data, censored="c")
    with pytest.raises(bayesmix.BayesmixError, match="not above"):
        bayesmix.Model("y ~ x + (1 | g)", data.assign(u=data.u - 5), censored="c", upper="u")
    with pytest.raises(bayesmix.BayesmixError, match="not for family='beta'"):
        bayesmix.Model("y ~ x + (1 | g)", data.assign(y=data.y / 10), family="beta", censored="c", upper="u")
    with pytest.raises(bayesmix.BayesmixError, match="censored response is fitted by maximum likelihood"):
        bayesmix.Model("y ~ x + (1 | g)", data, censored="c", upper="u").fit("reml")
    counts = data.assign(y=np.floor(data.y * 2), u=np.floor(data.u * 2) + 2)
    with pytest.raises(bayesmix.BayesmixError, match="Laplace fit for gaussian.*not for family='poisson'"):
        bayesmix.Model("y ~ x + (1 | g)", counts, family="poisson", censored="c", upper="u").fit("laplace")
    brms_codes = data.assign(c=data.c.map({"none": 0, "left": -1, "right": 1, "interval": 2}))
    model = bayesmix.Model("y ~ x + (1 | g)", brms_codes, censored="c", upper="u")
    assert list(model.design.censoring[:4]) == [0, 1, 2, 3]


def test_brms_addition_terms_in_the_response():
    """brms's y | cens(codes, upper) ~ ... is censored= and upper=; y | weights(w) is weights=;
    y | trials(n) is p(y, n); an unknown addition, or the same thing twice, is an error."""
    data = censored_frame("gaussian").assign(w=lambda d: 1.0 + (d.x > 0))
    brms = bayesmix.Model("y | cens(c, u) ~ x + (1 | g)", data)
    keywords = bayesmix.Model("y ~ x + (1 | g)", data, censored="c", upper="u")
    np.testing.assert_array_equal(brms.design.censoring, keywords.design.censoring)
    np.testing.assert_array_equal(brms.design.upper, keywords.design.upper)
    weighted = bayesmix.Model("y | weights(w) ~ x + (1 | g)", data)
    np.testing.assert_array_equal(weighted.design.weights, data.w)
    counts = pd.DataFrame({"s": [1, 2, 0, 3] * 5, "n": [4, 5, 3, 6] * 5, "g": list("abcde") * 4})
    trials = bayesmix.Model("s | trials(n) ~ 1 + (1 | g)", counts, family="binomial")
    np.testing.assert_array_equal(trials.design.trials, counts.n)
    with pytest.raises(bayesmix.BayesmixError, match="brms's cens, weights, trials"):
        bayesmix.Model("y | se(x) ~ x + (1 | g)", data)
    with pytest.raises(bayesmix.BayesmixError, match="cens\\(\\) and censored= both"):
        bayesmix.Model("y | cens(c, u) ~ x + (1 | g)", data, censored="c", upper="u")


@pytest.mark.parametrize("family", ["gaussian", "lognormal", "weibull", "exponential"])
def test_right_censoring_far_in_the_tail_stays_finite(family):
    """P(Y > y) from the survival's own form: log(1 - CDF) rounded to -inf once the CDF was 1 to
    double precision, and NUTS on a censored weibull then stalled (R-hat 9, 3000 divergences)."""
    data = censored_frame(family).assign(c="right")
    data.loc[0, "y"] = {"gaussian": 12.0, "lognormal": 1e6}.get(family, 60.0)  # far beyond the mean
    model = bayesmix.Model("y ~ 0 + x + (1 | g)", data, family=family, censored="c")
    pm_model = model.pymc_model("noncentered")
    point = pm_model.initial_point()
    point["beta"] = np.array([0.3])
    point["z_g"] = np.zeros_like(point["z_g"])
    if "sigma_log__" in point:  # its start scales with sd(y), which the far value inflates
        point["sigma_log__"] = np.array(0.0)
    ours = pm_model.compile_logp(vars=[pm_model["y"]], sum=False)(point)[0]
    params = {name: float(np.exp(point[f"{name}_log__"])) for name in model.family.params}
    eta = 0.3 * data.x.to_numpy()
    expected = scipy_distribution(family, eta, params).logsf(data.y.to_numpy())
    assert np.isfinite(ours[0]) and expected[0] < -40  # 1 - CDF is 0 in double precision there
    np.testing.assert_allclose(ours, expected, rtol=1e-6)
