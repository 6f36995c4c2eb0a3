"""Scaled (DHARMa) residuals and predictive checks: uniform under the model, alarms when it is wrong."""

import warnings

import arviz as az
import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesmix
from bayesmix import BayesmixError
from bayesmix.after.checks import _randomised_pit, scaled_residuals

matplotlib.use("Agg")


def counts(overdispersed: bool, seed=11, groups=30, per_group=20):
    """Poisson (or negative binomial, alpha = 1) counts with a random intercept per group."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per_group)
    x = rng.normal(size=g.size)
    mu = np.exp(0.5 + 0.4 * x + rng.normal(0, 0.5, groups)[g])
    y = rng.poisson(rng.gamma(1.0, mu) if overdispersed else mu)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


def test_randomised_pit_by_hand_and_exactly_uniform_for_ties():
    observed = np.array([2.0, 0.0, 5.0])
    simulated = np.array([[1, 0, 1], [2, 0, 1], [2, 0, 1], [3, 0, 1]], dtype=float)
    r = _randomised_pit(observed, simulated, np.random.default_rng(0))
    assert 1 / 5 <= r[0] <= 4 / 5  # 1 below, 2 ties: (1 + U(0, 3)) / 5
    assert 0 <= r[1] <= 1  # all tied: (0 + U(0, 5)) / 5
    assert r[2] >= 4 / 5  # above every simulation
    rng = np.random.default_rng(1)
    observed, simulated = rng.poisson(0.7, 5000), rng.poisson(0.7, (99, 5000))  # heavy ties
    r = _randomised_pit(observed.astype(float), simulated.astype(float), rng)
    assert stats.kstest(r, "uniform").pvalue > 0.01


def test_residuals_of_a_right_model_are_uniform():
    data = counts(overdispersed=False)
    fit = bayesmix.Model("y ~ x + (1 | g)", data, family="poisson").fit("laplace")
    check = scaled_residuals(fit, n_sim=250, random_seed=3)
    assert check.residuals.shape == (len(data),) and np.all((check.residuals > 0) & (check.residuals < 1))
    assert check.ks_pvalue > 0.05
    assert 0.8 < check.dispersion_ratio < 1.25 and check.dispersion_pvalue > 0.05
    assert check.outlier_pvalue > 0.05
    np.testing.assert_allclose(check.fitted, fit.predict())
    again = scaled_residuals(fit, n_sim=250, random_seed=3)
    np.testing.assert_array_equal(check.residuals, again.residuals)  # same seed, same residuals
    assert "uniformity (KS)" in check.summary()


def test_residuals_flag_overdispersion_that_a_poisson_model_misses():
    data = counts(overdispersed=True)
    fit = bayesmix.Model("y ~ x + (1 | g)", data, family="poisson").fit("laplace")
    check = scaled_residuals(fit, n_sim=250, random_seed=3)
    assert check.ks_pvalue < 1e-6 and check.dispersion_ratio > 1.5
    assert check.n_outliers > 3 * 2.0 / 251 * len(data) and check.outlier_pvalue < 1e-6  # beyond the envelope
    # new random effects in every simulation make the dispersion test weak (DHARMa's caveat);
    # conditional on the fitted effects it is sharp
    conditional = scaled_residuals(fit, n_sim=500, re_form="conditional", random_seed=3)
    assert conditional.dispersion_ratio > 3 and conditional.dispersion_pvalue < 0.01
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the dispersion estimate may sit near its bound
        nb = bayesmix.Model("y ~ x + (1 | g)", data, family="negativebinomial").fit("laplace")
    fixed = scaled_residuals(nb, n_sim=250, random_seed=3)
    assert fixed.dispersion_pvalue > 0.05 and fixed.ks_pvalue > 0.05 and fixed.outlier_pvalue > 0.05


def test_conditional_simulation_and_the_lmm():
    data = bayesmix.load_dataset("sleepstudy")
    fit = bayesmix.Model("Reaction ~ Days + (Days | Subject)", data).fit("reml")
    unconditional = scaled_residuals(fit, n_sim=200, random_seed=1)
    conditional = scaled_residuals(fit, n_sim=200, re_form="conditional", random_seed=1)
    assert unconditional.ks_pvalue > 0.01 and conditional.ks_pvalue > 0.01
    # conditional on the subjects' effects the spread is the residual SD alone: the observed
    # deviations from the simulation mean are then about as large as the simulated ones
    assert 0.7 < conditional.dispersion_ratio < 1.3


def lmm_data(seed, groups=40, per_group=5):
    """y ~ x + (1 | g) (issue 18's case): intercept 1, slope 0.5, group SD 2, residual SD 1, the
    gaussian case of benchmarks/dispersion_calibration.py."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per_group)
    x = rng.normal(size=g.size)
    y = 1.0 + 0.5 * x + rng.normal(0, 2.0, groups)[g] + rng.normal(0, 1.0, g.size)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


def test_dispersion_test_is_calibrated_on_data_from_the_model():
    # a small version of benchmarks/dispersion_calibration.py (docs/calibration.md): on data
    # simulated from the fitted model's form a calibrated test rejects at 5 % in 5 % of the data
    # sets, and in at most `bound` of 60 with probability > 0.999. The conditional test of
    # d049277 compared the spread around effects shrunk towards the data with the simulated
    # spread and failed this (docs/calibration.md has its count).
    reps = 60
    bound = int(np.argmax(stats.binom.cdf(np.arange(reps), reps, 0.05) > 0.999))
    rejected = {"unconditional": 0, "conditional": 0}
    for rep in range(reps):
        fit = bayesmix.Model("y ~ x + (1 | g)", lmm_data(1000 + rep)).fit("reml")
        for re_form in rejected:
            check = scaled_residuals(fit, n_sim=250, re_form=re_form, random_seed=rep)
            rejected[re_form] += check.dispersion_pvalue < 0.05
    assert max(rejected.values()) <= bound, rejected


def test_conditional_pearson_refits_the_observed_data_to_the_fits_own_modes():
    from bayesmix.after.checks import _conditional_pearson

    fit = bayesmix.Model("y ~ x + (1 | g)", lmm_data(3)).fit("reml")
    observed = _conditional_pearson(fit, fit.design.y[None, :])[0]
    np.testing.assert_allclose(observed, np.sum((fit.design.y - fit.predict()) ** 2) / fit.sigma**2, rtol=1e-6)
    poisson = bayesmix.Model("y ~ x + (1 | g)", counts(False), family="poisson").fit("laplace")
    mu = poisson.predict()
    np.testing.assert_allclose(
        _conditional_pearson(poisson, poisson.design.y[None, :])[0],
        np.sum((poisson.design.y - mu) ** 2 / mu),
        rtol=1e-3,  # the Laplace fit's beta maximises the approximate marginal likelihood, not the joint mode
    )


def test_nuts_simulates_new_random_effects_by_default():
    # issue 18: the posterior predictive (each draw's own group effects) flagged this correct model as
    # underdispersed at every seed tried (docs/calibration.md)
    model = bayesmix.Model("y ~ x + (1 | g)", lmm_data(5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.sample(chains=2, draws=250, tune=250, random_seed=5, progressbar=False)
    default = scaled_residuals(model, random_seed=1)
    assert default.re_form == "unconditional" and "unconditional simulations" in default.summary()
    conditional = scaled_residuals(model, re_form="conditional", random_seed=1)
    for check in (default, conditional):
        assert check.dispersion_pvalue > 0.05 and 0.8 < check.dispersion_ratio < 1.25
        assert check.ks_pvalue > 0.01


def test_plot_shows_the_sorted_residuals(tmp_path):
    fit = bayesmix.Model("y ~ x + (1 | g)", counts(False), family="poisson").fit("laplace")
    check = scaled_residuals(fit, n_sim=100, random_seed=2)
    fig = check.plot()
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), np.sort(check.residuals))
    assert "KS p" in fig.axes[0].get_title()
    fig.savefig(tmp_path / "dharma.png")


def test_argument_errors():
    fit = bayesmix.Model("y ~ x + (1 | g)", counts(False), family="poisson").fit("laplace")
    with pytest.raises(BayesmixError, match="n_sim must be"):
        scaled_residuals(fit, n_sim=3)
    with pytest.raises(BayesmixError, match="re_form must be"):
        scaled_residuals(fit, re_form="population")
    with pytest.raises(BayesmixError, match="takes a fit"):
        scaled_residuals("fit")


@pytest.fixture(scope="module")
def cbpp_nuts():
    data = bayesmix.load_dataset("cbpp")
    model = bayesmix.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", data, family="binomial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.sample(draws=150, tune=150, chains=2, random_seed=4, progressbar=False)
    return model


def test_default_sample_is_ready_for_ppc_loo_and_residuals(cbpp_nuts):
    model = cbpp_nuts
    idata = model.idata
    assert idata.posterior_predictive["incidence"].shape == (2, 150, model.nobs)
    draws = idata.posterior_predictive["incidence"].values
    assert np.all(draws <= model.design.trials) and np.all(draws == np.round(draws))
    assert az.plot_ppc(idata) is not None
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo)
    check = scaled_residuals(model, n_sim=100, random_seed=5)
    assert check.n_sim == 100 and check.residuals.shape == (model.nobs,)
    assert check.ks_pvalue > 0.01  # cbpp's binomial GLMM is a fair description of the data
    with pytest.raises(BayesmixError, match="more than the 300 posterior draws"):
        scaled_residuals(model, n_sim=500)


def test_prior_predictive_draws_from_the_priors():
    data = bayesmix.load_dataset("sleepstudy")
    model = bayesmix.Model(
        "Reaction ~ Days + (Days | Subject)", data, priors={"sigma": bayesmix.Prior("Exponential", lam=0.1)}
    )
    idata = model.prior_predictive(draws=400, random_seed=7)
    assert {"prior", "prior_predictive", "observed_data"} <= set(idata.groups())
    assert len(idata.groups()) == len(set(idata.groups()))  # issue 18 item 10: prior was listed twice
    assert set(idata.prior.data_vars) == {"beta", "sigma", "sd_Subject", "cor_Subject", "re_Subject"}
    sigma = idata.prior["sigma"].values.ravel()
    assert abs(sigma.mean() - 10.0) < 3 * 10.0 / np.sqrt(sigma.size)  # Exponential(0.1): mean 10
    beta = idata.prior["beta"].values.reshape(-1, 2)
    re = idata.prior["re_Subject"].values.reshape(400, 18, 2)
    sim = idata.prior_predictive["Reaction"].values.reshape(400, -1)
    codes = data.Subject.cat.codes.to_numpy()
    mean = beta[:, [0]] + re[:, codes, 0] + (beta[:, [1]] + re[:, codes, 1]) * data.Days.to_numpy()
    z = (sim - mean) / sigma[:, None]  # the simulated responses are Normal(mean, sigma) given the draws
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    again = model.prior_predictive(draws=400, random_seed=7)
    np.testing.assert_array_equal(again.prior_predictive["Reaction"].values, idata.prior_predictive["Reaction"].values)
    assert az.plot_ppc(idata, group="prior") is not None
    with pytest.raises(BayesmixError, match="draws must be"):
        model.prior_predictive(draws=0)


def test_az_compare_ranks_default_sample_results(cbpp_nuts):
    data = bayesmix.load_dataset("cbpp")
    null = bayesmix.Model("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", data, family="binomial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        null.sample(draws=150, tune=150, chains=2, random_seed=4, progressbar=False)
        table = az.compare({"period": cbpp_nuts.idata, "null": null.idata})
    assert list(table.index) == ["period", "null"]  # period matters in cbpp (lme4: LRT p < 1e-4)
    assert table.loc["null", "elpd_diff"] > 0


def test_plots_module_draws_the_same_residuals():
    fit = bayesmix.Model("y ~ x + (1 | g)", counts(False), family="poisson").fit("laplace")
    fig = bayesmix.plots.scaled_residuals(fit, n_sim=100, random_seed=2)
    expected = scaled_residuals(fit, n_sim=100, random_seed=2).residuals
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), np.sort(expected))
    with pytest.raises(BayesmixError, match="2 panel"):
        bayesmix.plots.scaled_residuals(fit, ax=fig.axes[0])
