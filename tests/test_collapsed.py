"""The collapsed Gaussian model is the non-centred model with b integrated out exactly."""

import warnings

import arviz as az
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesmix
from bayesmix import BayesmixError
from bayesmix.bayes.collapsed import _lower_solve, _upper_solve, build_marginal, crossed_arrays
from bayesmix.bayes.names import correlation_matrices
from bayesmix.design.crossprod import block_z, lme4_order


def sleep_model():
    return bayesmix.Model("Reaction ~ Days + (Days | Subject)", bayesmix.load_dataset("sleepstudy"))


def assert_same_quantiles(first, second, names):
    """The 5 %, 50 % and 95 % posterior quantiles agree within 4.5 Monte Carlo SEs (entries equal by
    construction, such as a correlation matrix's diagonal, aside)."""
    for name in names:
        for q in (0.05, 0.5, 0.95):
            a = first.posterior[name].quantile(q, dim=("chain", "draw"))
            b = second.posterior[name].quantile(q, dim=("chain", "draw"))
            se_a = az.mcse(first.posterior[[name]], method="quantile", prob=q)[name]
            se_b = az.mcse(second.posterior[[name]], method="quantile", prob=q)[name]
            z = np.abs(a - b) / np.sqrt(se_a**2 + se_b**2 + 1e-12)
            finite = np.isfinite(z.values) & (np.abs((a - b).values) > 1e-9)
            assert np.all(z.values[finite] < 4.5), (name, q, float(z.max()))


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
    assert "z_Subject" not in marginal.sampler_internals and "z_Subject" in noncentred.sampler_internals
    # NUTS starts from the Laplace approximation where it samples few values (4 here), not 42
    assert marginal.posterior.attrs["bayesmix_start"] == "laplace"
    assert noncentred.posterior.attrs["bayesmix_start"] == "jitter"
    assert_same_quantiles(marginal, noncentred, ["beta", "sigma", "sd_Subject", "cor_Subject", "re_Subject"])


def test_collapsed_mixes_better_and_keeps_the_contract(both):
    marginal = both["marginal"]
    ess = {k: float(az.ess(v.posterior[["beta", "sd_Subject"]]).to_array().min()) for k, v in both.items()}
    assert ess["marginal"] > ess["noncentered"]
    assert marginal.log_likelihood["Reaction"].shape == (4, 1000, 180)
    assert np.isfinite(az.loo(marginal).elpd_loo)
    assert int(marginal.sample_stats.diverging.sum()) == 0


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_batched_triangular_solves_match_lapack(k):
    """The conditional draws solve draws x levels tiny triangular systems by substitution."""
    rng = np.random.default_rng(k)
    A = rng.normal(size=(6, 4, k, k))
    L = np.linalg.cholesky(A @ np.swapaxes(A, -1, -2) + np.eye(k))
    B = rng.normal(size=(6, 4, k, 3))
    np.testing.assert_allclose(_lower_solve(L, B), np.linalg.solve(L, B), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_upper_solve(L, B), np.linalg.solve(np.swapaxes(L, -1, -2), B), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_lower_solve(L[0, 0], B), np.linalg.solve(L[0, 0], B), rtol=1e-12, atol=1e-12)


def test_marginal_is_refused_where_it_does_not_apply():
    verbagg = bayesmix.Model(
        "r ~ 1 + (1 | plate) + (1 | sample)",
        bayesmix.load_dataset("Penicillin").assign(r=lambda d: (d.diameter > 23).astype(int)),
        family="bernoulli",
    )
    with pytest.raises(BayesmixError, match="gaussian model"):
        verbagg.sample(parameterization="marginal")
    crossed = bayesmix.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmix.load_dataset("Penicillin"))
    assert crossed.resolve_parameterization("auto") == "marginal"
    assert sleep_model().resolve_parameterization("auto") == "marginal"


# Several blocks: the partially collapsed model (the block with the most levels and beta integrated out)


def crossed_data(seed=3, n=400):
    """Three crossed factors: g (40 levels, random intercept and slope), h (12), f (10)."""
    rng = np.random.default_rng(seed)
    g, h, f = rng.integers(0, 40, n), rng.integers(0, 12, n), rng.integers(0, 10, n)
    x = rng.normal(size=n)
    y = (
        1
        + 0.5 * x
        + rng.normal(0, 0.7, 40)[g]
        + rng.normal(0, 0.3, 40)[g] * x
        + rng.normal(0, 0.5, 12)[h]
        + rng.normal(0, 0.4, 10)[f]
        + rng.normal(size=n)
    )
    return pd.DataFrame(
        {"y": y, "x": x, "g": [f"g{i}" for i in g], "h": [f"h{i}" for i in h], "f": [f"f{i}" for i in f]}
    )


STUDENT_INTERCEPT = {"Intercept": bayesmix.Prior("StudentT", nu=4, mu=0, sigma=5)}  # beta is then sampled
ONE_BLOCK_CASES = [  # b and beta integrated out (Normal priors), or b alone (beta sampled)
    ("Reaction ~ Days + (1 | Subject)", "sleepstudy", None),  # k = 1 (closed forms)
    ("Reaction ~ Days + (Days | Subject)", "sleepstudy", None),  # k = 2 (closed forms)
    ("Reaction ~ Days + (Days + I(Days**2) | Subject)", "sleepstudy", None),  # k = 3 (LAPACK)
    ("Reaction ~ Days + (Days | Subject)", "sleepstudy", STUDENT_INTERCEPT),  # build_collapsed_model
    ("Reaction ~ Days + (Days + I(Days**2) | Subject)", "sleepstudy", STUDENT_INTERCEPT),
]
CROSSED_CASES = [
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin", None),  # k1 = 1, beta integrated out
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin", STUDENT_INTERCEPT),  # beta sampled
    ("y ~ x + (x | g) + (1 | h)", "crossed", None),  # k1 = 2
    ("y ~ x + (1 | g) + (x | h) + (1 | f)", "crossed", STUDENT_INTERCEPT),  # a sampled block with k = 2
    ("y ~ x + (1 + x + I(x**2) | g) + (x | h)", "crossed", None),  # k1 = 3 (LAPACK)
    ("y ~ 0 + x + (1 | g) + (1 | h)", "crossed", None),  # no intercept
]


def crossed_model(formula, data, priors):
    frame = {
        "penicillin": lambda: bayesmix.load_dataset("Penicillin"),
        "sleepstudy": lambda: bayesmix.load_dataset("sleepstudy"),
    }.get(data, crossed_data)()
    return bayesmix.Model(formula, frame, priors=priors)


def dense_gaussian(model, values):
    """Mean and covariance of y given the sampled variables in ``values`` (dense Z, every other block and
    beta, when absent from ``values``, integrated out under their priors)."""
    design = model.design
    mean, cov = np.zeros(design.nobs), values["sigma"] ** 2 * np.eye(design.nobs)
    if "beta" in values:
        mean += design.X @ values["beta"]
    else:
        mu = np.array([model.priors[n].params["mu"] for n in design.fixed_names], dtype=float)
        sd = np.array([model.priors[n].params["sigma"] for n in design.fixed_names], dtype=float)
        mean += design.X @ mu
        cov += design.X @ np.diag(sd**2) @ design.X.T
    for block in design.blocks:
        Z = block_z(block).toarray()
        if f"re_{block.label}" in values:
            mean += Z @ values[f"re_{block.label}"].ravel()
        else:
            sd = values[f"sd_{block.label}"]
            corr = correlation_matrices(values.get(f"cor_{block.label}", []), len(sd))
            cov += Z @ np.kron(np.eye(block.n_levels), np.diag(sd) @ corr @ np.diag(sd)) @ Z.T
    return mean, cov


@pytest.mark.parametrize("formula, data, priors", ONE_BLOCK_CASES + CROSSED_CASES)
def test_marginal_likelihood_equals_the_dense_gaussian(formula, data, priors):
    model = crossed_model(formula, data, priors)
    pm_model = model.pymc_model("marginal")
    rng = np.random.default_rng(0)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in pm_model.initial_point().items()}
    names = [n for n in pm_model.named_vars if n in ("beta", "sigma") or n.startswith(("sd_", "cor_", "re_"))]
    outputs = pm_model.replace_rvs_by_values([pm_model["marginal_loglik"], *[pm_model[n] for n in names]])
    fn = pm_model.compile_fn(outputs, inputs=pm_model.value_vars, mode="JAX", point_fn=False, on_unused_input="ignore")
    potential, *values = fn(*[point[v.name] for v in pm_model.value_vars])
    values = dict(zip(names, values))
    collapsed = model.design.blocks[lme4_order(model.design.blocks)[0]]
    assert f"re_{collapsed.label}" not in values and ("beta" in values) == (priors is not None)
    mean, cov = dense_gaussian(model, values)
    assert potential == pytest.approx(stats.multivariate_normal.logpdf(model.design.y, mean, cov), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("formula, data, priors", [ONE_BLOCK_CASES[1], *(CROSSED_CASES[i] for i in (0, 1, 2))])
def test_effects_are_drawn_from_their_exact_conditional(formula, data, priors):
    """Every draw at the same point: the drawn effects of the collapsed block (and beta and the small
    blocks joined to it, when beta is integrated out) have the mean and covariance of the dense
    Gaussian conditional."""
    model = crossed_model(formula, data, priors)
    built = build_marginal(model.design, model.family, model.priors)
    design, pm_model = model.design, built.model
    rng = np.random.default_rng(1)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in pm_model.initial_point().items()}
    names = [n for n in pm_model.named_vars if n in ("beta", "sigma") or n.startswith(("sd_", "cor_", "re_"))]
    outputs = pm_model.replace_rvs_by_values([pm_model[n] for n in names])
    fn = pm_model.compile_fn(outputs, inputs=pm_model.value_vars, point_fn=False, on_unused_input="ignore")
    values = dict(zip(names, fn(*[point[v.name] for v in pm_model.value_vars])))
    chains, draws = 2, 3000
    posterior = {
        name: np.broadcast_to(value, (chains, draws, *np.shape(value))).copy() for name, value in values.items()
    }
    idata = az.from_dict(posterior={k: v for k, v in posterior.items()})
    bayesmix.bayes.collapsed.draw_effects(design, idata, seed=3, model=built)
    collapsed = design.blocks[lme4_order(design.blocks)[0]]
    drawn = [idata.posterior[f"re_{collapsed.label}"].values.reshape(chains * draws, -1)]
    Zw = [block_z(collapsed).toarray()]
    sd = values[f"sd_{collapsed.label}"]
    corr = correlation_matrices(values.get(f"cor_{collapsed.label}", []), len(sd))
    prior_cov = [np.kron(np.eye(collapsed.n_levels), np.diag(sd) @ corr @ np.diag(sd))]
    prior_mean = [np.zeros(collapsed.n_levels * collapsed.n_terms)]
    if priors is None:
        drawn.append(idata.posterior["beta"].values.reshape(chains * draws, -1))
        Zw.append(design.X)
        prior_cov.append(np.diag([model.priors[n].params["sigma"] ** 2 for n in design.fixed_names]))
        prior_mean.append(np.array([model.priors[n].params["mu"] for n in design.fixed_names], dtype=float))
    joined = [b for b in design.blocks if b is not collapsed and f"re_{b.label}" not in values]
    assert (len(joined) > 0) == (priors is None and formula != ONE_BLOCK_CASES[1][0])  # small blocks join beta
    for block in joined:
        drawn.append(idata.posterior[f"re_{block.label}"].values.reshape(chains * draws, -1))
        Zw.append(block_z(block).toarray())
        prior_cov.append(values[f"sd_{block.label}"][0] ** 2 * np.eye(block.n_levels))
        prior_mean.append(np.zeros(block.n_levels))
    drawn, H = np.concatenate(drawn, axis=1), np.hstack(Zw)
    omega = np.zeros((H.shape[1], H.shape[1]))
    start = 0
    for block in prior_cov:
        omega[start : start + len(block), start : start + len(block)] = block
        start += len(block)
    m = np.concatenate(prior_mean)
    y_star = design.y - (design.X @ values["beta"] if priors is not None else 0.0)
    for block in design.blocks:
        if block is not collapsed and block not in joined:
            y_star = y_star - block_z(block) @ values[f"re_{block.label}"].ravel()
    precision = np.linalg.inv(omega) + H.T @ H / values["sigma"] ** 2
    cov = np.linalg.inv(precision)
    mean = cov @ (np.linalg.solve(omega, m) + H.T @ y_star / values["sigma"] ** 2)
    se = np.sqrt(np.diag(cov) / (chains * draws))
    assert np.all(np.abs(drawn.mean(axis=0) - mean) < 4.5 * se)
    empirical = np.cov(drawn, rowvar=False)
    variance = np.diag(cov)
    se_cov = np.sqrt((np.outer(variance, variance) + cov**2) / (chains * draws))  # of a Gaussian sample covariance
    assert np.all(np.abs(empirical - cov) < 5 * se_cov)


@pytest.fixture(scope="module")
def crossed_both():
    formula = "y ~ x + (1 | g) + (1 | h) + (1 | f)"
    models, fits = {}, {}
    for parameterization in ("marginal", "noncentered"):
        models[parameterization] = bayesmix.Model(formula, crossed_data())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits[parameterization] = models[parameterization].sample(
                draws=500, tune=500, chains=4, random_seed=2, progressbar=False, parameterization=parameterization
            )
    return models, fits


def test_crossed_same_posterior_as_the_noncentred_model(crossed_both):
    _, fits = crossed_both
    marginal, noncentred = fits["marginal"], fits["noncentered"]
    assert marginal.posterior.attrs["bayesmix_parameterization"] == "marginal"
    names = ["beta", "sigma", "sd_g", "sd_h", "sd_f", "re_g", "re_h", "re_f"]
    for name in names:
        assert marginal.posterior[name].dims == noncentred.posterior[name].dims
    assert_same_quantiles(marginal, noncentred, names)


def test_crossed_marginal_keeps_the_contract(crossed_both):
    models, fits = crossed_both
    model, idata = models["marginal"], fits["marginal"]
    assert idata.log_likelihood["y"].shape == (4, 500, 400)
    post = idata.posterior.isel(chain=1, draw=[0, 250, 499])
    mu = post["beta"].values @ model.design.X.T
    for block in model.design.blocks:
        mu += np.einsum("snk,nk->sn", post[f"re_{block.label}"].values[:, block.codes], block.Zt)
    expected = stats.norm.logpdf(model.design.y, mu, post["sigma"].values[:, None])
    np.testing.assert_allclose(idata.log_likelihood["y"].isel(chain=1, draw=[0, 250, 499]).values, expected, rtol=1e-10)
    assert np.isfinite(az.loo(idata).elpd_loo)
    assert int(idata.sample_stats.diverging.sum()) == 0
    assert "y" in idata.posterior_predictive
    mean = model.predict(idata, kind="mean", inplace=False)
    assert mean.shape == (4, 500, 400) and np.all(np.isfinite(mean.values))
    text = model.summary()
    assert all(group in text for group in ("g ", "h ", "f ", "Residual"))
    assert set(bayesmix.ranef(model).group) == {"g", "h", "f"}
    assert list(bayesmix.fixef(model).index) == ["Intercept", "x"]


def test_crossed_model_from_a_dask_frame_reads_the_same_cross_products():
    data = crossed_data()
    formula = "y ~ x + (x | g) + (1 | h) + (1 | f)"
    memory = bayesmix.Model(formula, data)
    dask = bayesmix.Model(formula, dd.from_pandas(data, npartitions=3, sort=False))
    assert dask.resolve_parameterization("auto") == "marginal"
    a = crossed_arrays(memory.design, memory.priors)
    b = crossed_arrays(dask.design, dask.priors)
    assert a.order == b.order and a.sizes == b.sizes
    for name in ("D", "Z1y", "Q", "Gy", "GK", "GG", "Ky"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-10, atol=1e-9)
    for name in ("A", "KK"):
        np.testing.assert_allclose(getattr(b, name).toarray(), getattr(a, name).toarray(), rtol=1e-10, atol=1e-9)
    assert b.yy == pytest.approx(a.yy, rel=1e-12)
    assert "marginal_loglik" in {p.name for p in dask.pymc_model("marginal").potentials}
