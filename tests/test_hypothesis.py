"""brms's hypothesis() on a sampled model (issue 23): each column against a direct computation
from the same posterior draws, and the Savage-Dickey ratio against known densities."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesmix
from bayesmix.after import hypothesis as module


@pytest.fixture(scope="module")
def sampled():
    model = bayesmix.Model("Reaction ~ Days + (Days | Subject)", bayesmix.load_dataset("sleepstudy"))
    model.sample(draws=400, tune=400, chains=2, random_seed=3, progressbar=False)
    return model


def test_one_sided_and_point_hypotheses_from_the_draws(sampled):
    table = bayesmix.hypothesis(sampled, ["Days > 8", "Intercept - 25 * Days = 0", "`sd[Subject:Days]` < 5"])
    days = sampled.idata.posterior["beta"].sel(coef="Days").values.ravel()
    row = table.loc["(Days) - (8) > 0"]
    assert row["Estimate"] == pytest.approx(days.mean() - 8) and row["Est.Error"] == pytest.approx(days.std(ddof=1))
    assert [row["CI.Lower"], row["CI.Upper"]] == pytest.approx(list(np.quantile(days - 8, [0.05, 0.95])))
    holds = np.mean(days > 8)
    assert row["Post.Prob"] == pytest.approx(holds) and row["Evid.Ratio"] == pytest.approx(holds / (1 - holds))
    intercept = sampled.idata.posterior["beta"].sel(coef="Intercept").values.ravel()
    point = table.loc["(Intercept - 25 * Days) - (0) = 0"]
    expected = np.quantile(intercept - 25 * days, [0.025, 0.975])
    assert [point["CI.Lower"], point["CI.Upper"]] == pytest.approx(list(expected))
    assert np.isnan(point["Evid.Ratio"])  # no prior draws: no Savage-Dickey ratio
    slope_sd = sampled.idata.posterior["sd_Subject"].values[..., 1].ravel()
    assert table.loc["(`sd[Subject:Days]`) - (5) < 0", "Post.Prob"] == pytest.approx(np.mean(slope_sd < 5))


def test_savage_dickey_against_known_densities():
    rng = np.random.default_rng(1)
    posterior = pd.DataFrame({"b": rng.normal(0.5, 1.0, 40_000)})
    prior = pd.DataFrame({"b": rng.normal(0.0, 10.0, 40_000)})
    ratio = module._savage_dickey(posterior["b"].to_numpy(), "b", prior, "b = 0")
    assert ratio == pytest.approx(stats.norm.pdf(0, 0.5, 1) / stats.norm.pdf(0, 0, 10), rel=0.05)


def test_prior_draws_from_the_model_and_mistakes(sampled):
    prior = sampled.prior_predictive(draws=1000, random_seed=4)
    table = bayesmix.hypothesis(sampled, "Days = 10", prior_draws=prior)
    assert np.isfinite(table["Evid.Ratio"].iloc[0]) and 0 < table["Post.Prob"].iloc[0] < 1
    with pytest.raises(bayesmix.BayesmixError, match="Did you mean 'Days'"):
        bayesmix.hypothesis(sampled, "Dayz > 0")
    with pytest.raises(bayesmix.BayesmixError, match="one comparison"):
        bayesmix.hypothesis(sampled, "Days")
    with pytest.raises(bayesmix.BayesmixError, match="sampled Model"):
        bayesmix.hypothesis(
            bayesmix.Model("Reaction ~ Days + (1 | Subject)", bayesmix.load_dataset("sleepstudy")).fit(), "Days > 0"
        )


def test_log_prior_group_for_prior_sensitivity(sampled):
    """model.log_prior() adds each parameter's prior log density per draw (checked against scipy for
    the fixed effects' normal priors and sigma's exponential), so az.psens runs on the result."""
    import arviz as az

    from bayesmix.bayes.priors import resolve_priors

    model = sampled
    idata = model.log_prior()
    priors = resolve_priors(model.design, model.family, None)
    beta = idata.posterior["beta"].values
    for j, name in enumerate(model.design.fixed_names):
        prior = priors[name].params
        expected = stats.norm.logpdf(beta[..., j], prior["mu"], prior["sigma"])
        np.testing.assert_allclose(idata.log_prior["beta"].values[..., j], expected, rtol=1e-10)
    sigma = idata.posterior["sigma"].values
    lam = priors["sigma"].params["lam"]
    np.testing.assert_allclose(idata.log_prior["sigma"].values, stats.expon.logpdf(sigma, scale=1 / lam), rtol=1e-10)
    sensitivity = az.psens(idata)
    assert np.all(np.isfinite(sensitivity["beta"].values)) and np.all(sensitivity["beta"].values >= 0)
