"""The collapsed Gaussian model is the non-centred model with b integrated out exactly."""

import warnings

import arviz as az
import numpy as np
import pytest
from scipy import stats

import bayesmix
from bayesmix import BayesmixError


def sleep_model():
    return bayesmix.Model("Reaction ~ Days + (Days | Subject)", bayesmix.load_dataset("sleepstudy"))


@pytest.mark.parametrize("terms", ["1", "Days", "Days + I(Days**2)"])  # k = 1, 2 (closed forms), 3 (LAPACK)
def test_marginal_likelihood_equals_the_dense_gaussian(terms):
    model = bayesmix.Model(f"Reaction ~ Days + ({terms} | Subject)", bayesmix.load_dataset("sleepstudy"))
    pm_model = model.pymc_model("marginal")
    rng = np.random.default_rng(0)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in pm_model.initial_point().items()}
    design = model.design
    (block,) = design.blocks
    k = block.n_terms
    names = ["beta", "sigma", "sd_Subject"] + (["corr_Subject"] if k > 1 else [])
    outputs = pm_model.replace_rvs_by_values([pm_model.potentials[0], *[pm_model[n] for n in names]])
    fn = pm_model.compile_fn(outputs, inputs=pm_model.value_vars, mode="JAX", point_fn=False, on_unused_input="ignore")
    potential, beta, sigma, sd, *corr = fn(*[point[v.name] for v in pm_model.value_vars])
    corr = corr[0] if corr else np.ones((1, 1))
    cov_b = np.diag(sd) @ corr @ np.diag(sd)
    Z = np.zeros((design.nobs, block.n_levels * k))
    for j in range(k):
        Z[np.arange(design.nobs), block.codes * k + j] = block.Zt[:, j]
    cov_y = sigma**2 * np.eye(design.nobs) + Z @ np.kron(np.eye(block.n_levels), cov_b) @ Z.T
    expected = stats.multivariate_normal.logpdf(design.y, design.X @ beta, cov_y)
    assert potential == pytest.approx(expected, rel=1e-9)


@pytest.fixture(scope="module")
def both():
    fits = {}
    for parameterization in ("marginal", "noncentered"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits[parameterization] = sleep_model().sample(
                draws=1000, tune=1000, chains=4, random_seed=11, progressbar=False, parameterization=parameterization
            )
    return fits


def test_same_posterior_as_the_noncentred_model(both):
    marginal, noncentred = both["marginal"], both["noncentered"]
    assert marginal.posterior.attrs["bayesmix_parameterization"] == "marginal"
    assert "z_Subject" not in marginal.posterior and "z_Subject" in noncentred.posterior
    for name in ["beta", "sigma", "sd_Subject", "corr_Subject", "re_Subject"]:
        for q in (0.05, 0.5, 0.95):
            a = marginal.posterior[name].quantile(q, dim=("chain", "draw"))
            b = noncentred.posterior[name].quantile(q, dim=("chain", "draw"))
            se_a = az.mcse(marginal.posterior[[name]], method="quantile", prob=q)[name]
            se_b = az.mcse(noncentred.posterior[[name]], method="quantile", prob=q)[name]
            z = np.abs(a - b) / np.sqrt(se_a**2 + se_b**2 + 1e-12)
            finite = np.isfinite(z.values) & (np.abs((a - b).values) > 1e-9)
            assert np.all(z.values[finite] < 4.5), (name, q, float(z.max()))


def test_collapsed_mixes_better_and_keeps_the_contract(both):
    marginal = both["marginal"]
    ess = {k: float(az.ess(v.posterior[["beta", "sd_Subject"]]).to_array().min()) for k, v in both.items()}
    assert ess["marginal"] > ess["noncentered"]
    assert marginal.log_likelihood["Reaction"].shape == (4, 1000, 180)
    assert np.isfinite(az.loo(marginal).elpd_loo)
    assert int(marginal.sample_stats.diverging.sum()) == 0


def test_marginal_is_refused_where_it_does_not_apply():
    crossed = bayesmix.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmix.load_dataset("Penicillin"))
    with pytest.raises(BayesmixError, match="exactly one"):
        crossed.sample(parameterization="marginal")
    assert crossed.resolve_parameterization("auto") == {"plate": "noncentered", "sample": "centered"}
    assert sleep_model().resolve_parameterization("auto") == "marginal"
