"""Laplace fits of GLMMs: cbpp against lme4 (tolPwrss = 1e-12) and glmmTMB; the Laplace
approximation against an independent computation for the other families."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

import bayesmix
from bayesmix.exact.glmm import conditional_mode, deviance_function, fit_glmm, glmm_problem, laplace_gradient
from tests.helpers import fit_via_cli

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def cbpp():
    ref = json.loads((DATA / "cbpp_laplace.json").read_text())
    model = bayesmix.Model(ref["formula"], bayesmix.load_dataset("cbpp"), family="binomial")
    return model, model.fit("laplace"), ref


def test_cbpp_loglik_and_estimates(cbpp):
    _, fit, ref = cbpp
    tight, tmb = ref["lme4_tight"], ref["glmmTMB"]
    assert fit.loglik == pytest.approx(tight["logLik"], rel=1e-9)  # includes the binomial coefficients
    assert fit.loglik >= tight["logLik"] - 1e-9 and fit.loglik >= tmb["logLik"] - 1e-9
    assert fit.aic == pytest.approx(tight["AIC"], rel=1e-9) and fit.bic == pytest.approx(tight["BIC"], rel=1e-9)
    assert list(fit.fixef.index) == ["Intercept", "period[2]", "period[3]", "period[4]"]
    np.testing.assert_allclose(fit.fixef.estimate, tmb["fixef"]["estimate"], rtol=1e-5)
    np.testing.assert_allclose(fit.fixef.estimate, tight["fixef"]["estimate"], rtol=5e-5)
    np.testing.assert_allclose(fit.fixef.se, tight["fixef"]["se"], rtol=1e-4)  # finite-difference Hessians
    np.testing.assert_allclose(fit.varcorr[0]["sd"], tmb["varcorr"][0]["sd"], rtol=1e-5)
    assert fit.sigma is None and fit.method == "Laplace" and fit.converged and not fit.is_singular


def test_cbpp_conditional_modes(cbpp):
    _, fit, ref = cbpp
    blups = ref["lme4_tight"]["ranef"]["herd"]
    ours = fit.ranef["herd"].xs("Intercept", level="term").reindex(blups["levels"])
    spread = np.std(blups["condval"]["(Intercept)"])
    assert np.max(np.abs(ours.condval - blups["condval"]["(Intercept)"])) < 1e-4 * spread
    np.testing.assert_allclose(ours.condsd, blups["condsd"]["(Intercept)"], rtol=1e-4)


def test_cbpp_json_and_cli(cbpp, tmp_path):
    _, fit, _ = cbpp
    out = fit.to_dict()
    assert out["method"] == "laplace" and out["sigma"] is None and out["REMLcrit"] is None
    json.dumps(out, allow_nan=False)
    code, result = fit_via_cli(
        tmp_path,
        "cbpp",
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        "--family",
        "binomial",
        "--categorical",
        "period",
        "--method",
        "laplace",
    )
    assert code == 0 and result["logLik"] == pytest.approx(fit.loglik, rel=1e-9)


def simulate_counts(family, seed=3, groups=20, per_group=15):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per_group)
    x = rng.normal(size=g.size)
    mu = np.exp(0.5 + 0.3 * x + rng.normal(0, 0.6, groups)[g])
    y = rng.poisson(rng.gamma(2.0, mu / 2.0)) if family == "negativebinomial" else rng.poisson(mu)
    return pd.DataFrame({"y": y.astype(float), "x": x, "g": g})


def independent_laplace(model, theta, beta, alpha):
    """log L by a generic optimiser on u and scipy's log pmf, with a finite-difference Hessian in eta."""
    design = model.design
    (block,) = design.blocks
    eta_fixed = design.X @ beta

    def logpmf(eta):
        mu = np.exp(eta)
        if alpha is None:
            return stats.poisson.logpmf(design.y, mu)
        return stats.nbinom.logpmf(design.y, alpha, alpha / (alpha + mu))

    def negative(u):
        return -(logpmf(eta_fixed + theta * u[block.codes]).sum() - 0.5 * u @ u)

    u = optimize.minimize(negative, np.zeros(block.n_levels), method="BFGS", options={"gtol": 1e-10}).x
    eta = eta_fixed + theta * u[block.codes]
    h = 1e-4
    w = -(logpmf(eta + h) - 2 * logpmf(eta) + logpmf(eta - h)) / h**2
    H = np.diag(np.bincount(block.codes, weights=w) * theta**2) + np.eye(block.n_levels)
    return -negative(u) - 0.5 * np.linalg.slogdet(H)[1]


@pytest.mark.parametrize("family", ["poisson", "negativebinomial"])
def test_laplace_matches_an_independent_computation(family):
    model = bayesmix.Model("y ~ x + (1 | g)", simulate_counts(family), family=family)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_glmm(model.design, model.family)
    theta, beta, params = result.estimates()
    expected = independent_laplace(model, theta[0], beta, params.get("alpha"))
    assert result.loglik == pytest.approx(expected, rel=1e-7)
    # the optimum: nudging any parameter lowers log L
    for i in range(len(result.optimizer.x)):
        for delta in (-1e-3, 1e-3):
            x = result.optimizer.x.copy()
            x[i] += delta
            t, b, p = result.problem.split(x)
            assert conditional_mode(result.problem, t, b, p).laplace_loglik() < result.loglik


def test_negative_binomial_dispersion_is_estimated():
    fit = bayesmix.Model("y ~ x + (1 | g)", simulate_counts("negativebinomial"), family="negativebinomial").fit(
        "laplace"
    )
    assert 0.8 < fit.family_params["alpha"] < 5  # simulated with gamma shape 2
    alpha = fit.family_params["alpha"]
    assert fit.to_dict()["family_params"] == {"alpha": alpha, "theta": alpha}  # theta: glmmTMB's name
    with warnings.catch_warnings():  # alpha -> infinity is a flat direction: a ConvergenceWarning is expected
        warnings.simplefilter("ignore")
        poisson = bayesmix.Model("y ~ x + (1 | g)", simulate_counts("poisson"), family="negativebinomial")
        poisson = poisson.fit("laplace")
    assert poisson.family_params["alpha"] > 20  # no overdispersion: alpha runs large


def test_laplace_refuses_what_it_cannot_do():
    data = simulate_counts("poisson")
    with pytest.raises(bayesmix.BayesmixError, match="likelihood is exact: use method='ml'"):
        bayesmix.Model("y ~ x + (1 | g)", data).fit("laplace")
    with pytest.raises(bayesmix.BayesmixError, match="Laplace fits are available for"):
        bayesmix.Model("y ~ x + (1 | g)", data.assign(y=data.y + 1), family="gamma", link="inverse").fit("laplace")
    with pytest.raises(bayesmix.BayesmixError, match="Laplace fits are available for"):
        bayesmix.Model("y ~ x + (1 | g)", data.assign(y=data.y + 0.5), family="t").fit("laplace")


GRADIENT_CASES = [
    ("cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial", None),
    ("cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial", "probit"),
    ("cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial", "cloglog"),
    ("incidence ~ period + offset(log(size)) + (1 | herd)", "poisson", None),
    ("incidence ~ period + (1 | herd)", "negativebinomial", None),
    ("incidence ~ period + (1 | herd)", "negativebinomial1", None),
    ("size ~ period + (1 | herd)", "gamma", None),
    ("hi ~ Days + (Days | Subject)", "bernoulli", None),
    ("hi ~ Days + (1 | Subject) + (1 | day_factor)", "bernoulli", None),
    ("hi ~ Days + (Days | Subject) + (1 | day_factor)", "bernoulli", None),
]


@pytest.mark.parametrize("formula, family, link", GRADIENT_CASES)
def test_laplace_gradient_is_the_deviance_derivative(formula, family, link):
    """The exact gradient (implicit function theorem through the mode, third derivatives in log|H|)
    equals central differences of the deviance, away from the optimum, for every family and link,
    a correlated block and crossed blocks, the family's own parameter (alpha, phi, shape) included."""
    sleep = bayesmix.load_dataset("sleepstudy")
    sleep = sleep.assign(hi=(sleep.Reaction > 300).astype(int), day_factor=sleep.Days.astype(str))
    data = bayesmix.load_dataset("cbpp") if "herd" in formula else sleep
    model = bayesmix.Model(formula, data, family=family, link=link)
    problem, *_ = glmm_problem(model.design, model.family)
    rng = np.random.default_rng(0)
    n_theta, p = problem.layout.n_theta, problem.X.shape[1]
    x = np.concatenate(
        [0.7 * problem.layout.start() + 0.1 * rng.random(n_theta), 0.1 * rng.normal(size=p)]
        + [[0.3 * (i + 1)] for i in range(len(problem.auxiliary))]
    )
    theta, beta, params = problem.split(x)
    exact = laplace_gradient(problem, x, conditional_mode(problem, theta, beta, params))
    deviance, step = deviance_function(problem), 1e-4  # smaller steps meet the inner tolerance's noise
    numeric = np.array([(deviance(x + e) - deviance(x - e)) / (2 * step) for e in np.eye(len(x)) * step])
    assert not np.any(np.isnan(exact))  # a family parameter's entry too (differences of its row terms)
    np.testing.assert_allclose(exact, numeric, rtol=1e-6, atol=1e-6)
