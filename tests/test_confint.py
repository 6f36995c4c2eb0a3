"""Intervals for every parameter (issue 23): Wald and the parametric bootstrap of exact fits
against lme4's ``confint`` (tests/data/r/confint_references.R, provenance in
tests/data/PROVENANCE.md), and posterior intervals of a sampled model, in lme4's row order."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix.after.confint import bootstrap

ROOT = Path(__file__).parent.parent
CASES = json.loads((ROOT / "tests" / "data" / "confint_references.json").read_text())["cases"]
NAMES = ["sd[Subject:Intercept]", "corr[Subject:Intercept,Days]", "sd[Subject:Days]", "sigma", "Intercept", "Days"]


@pytest.fixture(scope="module")
def sleep_fit():
    data = pd.read_csv(ROOT / "bayesmix" / "datasets" / "sleepstudy.csv")
    return bayesmix.Model("Reaction ~ Days + (Days | Subject)", data).fit()


def test_wald_intervals_are_lme4s(sleep_fit):
    table = sleep_fit.confint()
    assert list(table.index) == NAMES  # lme4's .sig01, .sig02, .sig03, .sigma, then the fixed effects
    ref = CASES["sleep"]["wald"]
    np.testing.assert_allclose(table["lower"].iloc[4:], ref["lower"][4:], rtol=1e-6)
    np.testing.assert_allclose(table["upper"].iloc[4:], ref["upper"][4:], rtol=1e-6)
    assert table.iloc[:4].isna().all().all()
    cbpp = pd.read_csv(ROOT / "bayesmix" / "datasets" / "cbpp.csv")
    glmm = bayesmix.Model(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial", categorical=["period"]
    ).fit()
    wald = bayesmix.confint(glmm, parm=["period[2]", "period[4]"])
    # glmer's Wald bounds at its default optimum are 0.5 % off; at a tight refit (tests/data/
    # verbs_references.json) its Hessian-based SEs are ours within 1e-5
    tight = json.loads((ROOT / "tests" / "data" / "verbs_references.json").read_text())["cases"]["cbpp"]
    se = np.sqrt(np.diag(tight["vcov"]["values"]))[[1, 3]]
    estimate = np.asarray(tight["fixef"]["values"])[[1, 3]]
    np.testing.assert_allclose(wald["lower"], estimate - 1.959963984540054 * se, rtol=1e-5)
    np.testing.assert_allclose(wald["upper"], estimate + 1.959963984540054 * se, rtol=1e-5)
    ref = CASES["cbpp"]["wald"]
    np.testing.assert_allclose(wald["lower"], [ref["lower"][2], ref["lower"][4]], rtol=1e-2)
    with pytest.raises(bayesmix.BayesmixError, match="not a parameter"):
        bayesmix.confint(glmm, parm="period2")


def test_the_bootstrap_draws_lme4s_distribution(sleep_fit):
    """Means and SDs of 300 refits against lme4's 1000 (bootMer, seed 1), within 4 Monte-Carlo
    standard errors; the intervals are these draws' percentiles, and the same seed gives the same
    draws in one process or two."""
    draws = bootstrap(sleep_fit, nsim=300, seed=5, n_jobs=2)
    ref = CASES["sleep"]["boot"]["distribution"]
    order = [0, 2, 1, 3, 4, 5]  # bootMer's columns: sd, sd, cor, sigma, fixed effects
    mean, sd = np.asarray(ref["mean"])[order], np.asarray(ref["sd"])[order]
    error = sd * np.sqrt(1 / 300 + 1 / 1000)
    assert np.all(np.abs(draws.mean().to_numpy() - mean) < 4 * error), (draws.mean().to_numpy(), mean)
    assert np.all(np.abs(draws.std().to_numpy() / sd - 1) < 0.2)
    table = sleep_fit.confint("boot", nsim=300, seed=5, n_jobs=1)
    np.testing.assert_allclose(table["lower"], draws.quantile(0.025).to_numpy(), rtol=1e-10)
    assert table.attrs["nsim"] == 300 and table.attrs["failed"] == 0


def test_posterior_intervals_of_a_sampled_model():
    data = pd.read_csv(ROOT / "bayesmix" / "datasets" / "sleepstudy.csv")
    model = bayesmix.Model("Reaction ~ Days + (Days | Subject)", data)
    model.sample(draws=300, tune=300, chains=2, random_seed=2, progressbar=False)
    table = bayesmix.confint(model, level=0.9)
    assert list(table.index) == NAMES
    assert list(table.columns) == ["lower", "upper", "hdi_lower", "hdi_upper"]
    days = model.idata.posterior["beta"].sel(coef="Days").values.ravel()
    np.testing.assert_allclose(table.loc["Days", ["lower", "upper"]], np.quantile(days, [0.05, 0.95]))
    assert (table["lower"] < table["upper"]).all() and (table["hdi_lower"] < table["hdi_upper"]).all()


def test_the_cli_adds_intervals_to_the_json(tmp_path):
    from bayesmix.cli import main

    out = tmp_path / "fit.json"
    data = ROOT / "bayesmix" / "datasets" / "sleepstudy.csv"
    argv = ["fit", "--data", str(data), "--formula", "Reaction ~ Days + (Days | Subject)", "--method", "reml"]
    assert main([*argv, "--confint", "wald", "--json", str(out), "--quiet"]) == 0
    intervals = json.loads(out.read_text())["confint"]
    assert list(intervals) == NAMES and intervals["sigma"] == [None, None]
    np.testing.assert_allclose(
        intervals["Days"], [CASES["sleep"]["wald"]["lower"][5], CASES["sleep"]["wald"]["upper"][5]], rtol=1e-6
    )


@pytest.mark.parametrize("case", ["sleep", "sleep_ml", "dyestuff2", "cbpp"])
def test_profile_intervals_are_lme4s(case):
    """Every bound within 1e-3 relative of lme4's confint(method = "profile") (ours are roots of the
    profile deviance; lme4's interpolate a spline through it), on the ML deviance for a REML fit too,
    a singular fit's SD bounded below by 0, as lme4's, and a binomial GLMM on its Laplace deviance."""
    data, formula, method = {
        "sleep": ("sleepstudy", "Reaction ~ Days + (Days | Subject)", "reml"),
        "sleep_ml": ("sleepstudy", "Reaction ~ Days + (Days | Subject)", "ml"),
        "dyestuff2": ("Dyestuff2", "Yield ~ 1 + (1 | Batch)", "ml"),
        "cbpp": ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "laplace"),
    }[case]
    arguments = {"family": "binomial", "categorical": ["period"]} if case == "cbpp" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmix.SingularFitWarning)
        fit = bayesmix.Model(formula, bayesmix.load_dataset(data), **arguments).fit(method)
    table = fit.confint("profile")
    ref = CASES[case]["profile"]
    assert len(table) == len(ref["rows"])
    np.testing.assert_allclose(table["lower"], ref["lower"], rtol=1e-3, atol=1e-9)
    np.testing.assert_allclose(table["upper"], ref["upper"], rtol=1e-3)
    if case == "dyestuff2":
        assert table["lower"].iloc[0] == 0.0


def test_bootstrap_refits_swap_only_the_response():
    """The bootstrap refits an ML/REML fit on its cross-products with the response's swapped in
    (bayesmix.exact.refit): the same fit as a new design around each response, here with two
    blocks, precision weights and an offset (whose cross-products must all follow y)."""
    from dataclasses import replace

    from bayesmix.after.predict import simulate_exact
    from bayesmix.exact import refit
    from bayesmix.exact.lmm import fit_lmm

    sleep = bayesmix.load_dataset("sleepstudy")
    data = sleep.assign(w=np.linspace(0.5, 2.0, len(sleep)), o=np.linspace(0.0, 5.0, len(sleep)))
    model = bayesmix.Model("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", data, weights="w", offset="o")
    fit = model.fit("ml")
    Y = simulate_exact(fit, 3, "unconditional", np.random.default_rng(2))
    result = fit_lmm(model.design, reml=False)
    products = refit.response_products(model.design, [0, 1], Y)
    for i, y in enumerate(Y):
        fast = refit.refit(result, products, i)
        slow = fit_lmm(replace(model.design, y=y), reml=False, start=result.optimizer.x)
        np.testing.assert_allclose(fast.optimizer.x, slow.optimizer.x, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(fast.solution.beta, slow.solution.beta, rtol=1e-10)
        assert fast.criterion == pytest.approx(slow.criterion, rel=1e-12)


GLMM_PROFILES = json.loads((ROOT / "tests" / "data" / "glmm_profile_references.json").read_text())["cases"]


@pytest.mark.parametrize("case", ["poisson_slope", "cbpp_agq", "salamanders_nb2"])
def test_glmm_profile_intervals_are_the_profiles_roots(case):
    """lme4's (glmmTMB's for the negative binomial) profile deviance with its roots found exactly
    (uniroot at tight tolerances, ``profile_exact``: lme4's own confint interpolates a spline, within
    ~1e-4 of these): a random slope with its correlation, nAGQ = 9 quadrature, and a family's own
    dispersion (glmmTMB's phi, our alpha), every bound within 1e-5."""
    ref = GLMM_PROFILES[case]["profile_exact"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case == "poisson_slope":
            data = pd.read_csv(ROOT / "tests" / "data" / "poisson_slope.csv", dtype={"g": str})
            fit = bayesmix.Model("y ~ x + (x | g)", data, family="poisson").fit()
            lower, upper = ref["lower"], ref["upper"]
        elif case == "cbpp_agq":
            model = bayesmix.Model(
                "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                bayesmix.load_dataset("cbpp"),
                family="binomial",
                categorical=["period"],
            )
            fit = model.fit("agq", nAGQ=9)
            lower, upper = ref["lower"], ref["upper"]
        else:  # glmmTMB's rows: (Intercept), minedno, log phi, log sd; ours: sd, alpha, Intercept, mined[no]
            data = pd.read_csv(ROOT / "tests" / "data" / "salamanders_mined.csv", dtype={"site": str})
            model = bayesmix.Model(
                "count ~ mined + (1 | site)", data, family="negativebinomial", categorical={"mined": ["yes", "no"]}
            )
            fit = model.fit()
            natural = GLMM_PROFILES[case]["natural_scale_exact"]
            order = [0, 1]  # (Intercept), minedno
            lower = [natural["sd_site"][0], natural["phi"][0], *[ref["lower"][i] for i in order]]
            upper = [natural["sd_site"][1], natural["phi"][1], *[ref["upper"][i] for i in order]]
        table = fit.confint("profile")
    np.testing.assert_allclose(table["lower"], lower, rtol=1e-5)
    np.testing.assert_allclose(table["upper"], upper, rtol=1e-5)
