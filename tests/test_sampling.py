"""NUTS end to end: sleepstudy against lme4, ArviZ on the result, samplers and seeds."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import arviz as az
import matplotlib
import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix import BayesmixError
from bayesmix.bayes.names import correlation_matrices
from tests.helpers import CONTRACT

matplotlib.use("Agg")
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def sleep_fit():
    model = bayesmix.Model("Reaction ~ Days + (Days | Subject)", bayesmix.load_dataset("sleepstudy"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        idata = model.sample(draws=1000, tune=1000, chains=4, random_seed=20261124, progressbar=False)
    return model, idata, caught


def test_sleepstudy_converges_and_agrees_with_lme4_reml(sleep_fit):
    model, idata, caught = sleep_fit
    assert not [w for w in caught if issubclass(w.category, bayesmix.BayesmixWarning)]
    assert int(idata.sample_stats.diverging.sum()) == 0
    summary = az.summary(idata, kind="diagnostics")
    assert summary.r_hat.max() <= 1.01
    reference = json.loads((DATA / "sleep_reml.json").read_text())["results"]
    post = idata.posterior

    def check(draws, target):
        draws = np.asarray(draws).reshape(4000, -1)
        assert np.all(np.abs(draws.mean(0) - np.asarray(target)) <= draws.std(0)), (draws.mean(0), target)

    check(post["beta"], reference["fixef"]["estimate"])
    check(post["sigma"], [reference["sigma"]])
    check(post["sd_Subject"], reference["varcorr"][0]["sd"])
    check(
        post["cor_Subject"].sel(Subject__pair="Intercept__Days"),
        [reference["varcorr"][0]["corr"][0][1]],
    )
    blups = reference["ranef"]["Subject"]["condval"]
    check(post["re_Subject"].sel(Subject__term="Intercept"), blups["(Intercept)"])
    check(post["re_Subject"].sel(Subject__term="Days"), blups["Days"])


def test_correlation_is_a_model_parameter(sleep_fit):
    model, idata, _ = sleep_fit
    corr = idata.posterior["cor_Subject"]  # the strict lower triangle, named by the pair (brms's cor_Subject__...)
    assert corr.dims == ("chain", "draw", "Subject__pair")
    assert list(corr["Subject__pair"].values) == ["Intercept__Days"]
    off = corr.sel(Subject__pair="Intercept__Days")
    assert float(off.std()) > 0.05  # estimated, not fixed
    assert "chol_Subject" in model.pymc_model().named_vars  # sampled through the LKJ Cholesky factor


def test_arviz_works_on_the_result(sleep_fit, tmp_path):
    _, idata, _ = sleep_fit
    assert {"posterior", "sample_stats", "observed_data", "log_likelihood"} <= set(idata.groups())
    assert idata.log_likelihood["Reaction"].shape == (4, 1000, 180)
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo) and loo.elpd_loo < 0
    simulated = idata.posterior_predictive["Reaction"]  # filled by default: az.plot_ppc needs nothing more
    assert simulated.shape == (4, 1000, 180)
    assert float(simulated.std()) == pytest.approx(float(idata.observed_data["Reaction"].std()), rel=0.15)
    az.plot_ppc(idata, num_pp_samples=50).figure.savefig(tmp_path / "ppc.png")
    summary = az.summary(idata, var_names=["beta", "sigma", "sd_Subject", "cor_Subject"])
    assert "Intercept" in " ".join(summary.index)
    axes = az.plot_trace(idata, var_names=["beta", "sd_Subject"])
    axes.ravel()[0].figure.savefig(tmp_path / "trace.png")
    assert (tmp_path / "trace.png").stat().st_size > 10_000


def test_posterior_holds_each_quantity_once(sleep_fit):
    """Issue 18 item 5: the correlation matrix's diagonal and mirrored triangle (constants and
    duplicates) broke az.plot_trace's KDE and gave NaN R-hats; chol_* duplicated sd_*. ArviZ's
    default calls run on the default output without a warning."""
    import matplotlib.pyplot as plt

    model, idata, _ = sleep_fit
    post = idata.posterior
    assert list(post.data_vars) == ["beta", "sigma", "sd_Subject", "cor_Subject", "re_Subject"]
    for name, values in post.data_vars.items():
        assert float(values.std(("chain", "draw")).min()) > 0, name  # nothing constant
    assert set(idata.sampler_internals.data_vars) == {"chol_Subject"}  # technical, out of the default view
    assert not [d for d in post.dims if d.endswith("_dim_0")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        summary = az.summary(idata)
        assert not summary["r_hat"].isna().any() and len(summary) == 2 + 1 + 2 + 1 + 36
        assert "cor_Subject[Intercept__Days]" in summary.index
        az.plot_trace(idata)
        plt.close("all")
        az.plot_forest(idata)
        plt.close("all")
        az.plot_pair(idata, var_names=["~re_Subject"])
        plt.close("all")
        az.extract(idata)


def test_technical_variables_leave_the_posterior_for_every_parameterization():
    """Non-centred offsets, centred effects, Cholesky factors and per-coefficient beta[...] (priors
    that differ by coefficient) are in sampler_internals; correlations of three terms are the three
    pairs in brms's order."""
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(8), 6)
    data = {"x": rng.normal(size=g.size), "z": rng.normal(size=g.size), "g": [f"g{i}" for i in g]}
    data["y"] = 1 + data["x"] + rng.normal(size=8)[g] + rng.normal(size=g.size)
    priors = {"x": bayesmix.Prior("StudentT", nu=3, mu=0, sigma=5)}  # beta: one variable per coefficient
    model = bayesmix.Model("y ~ x + z + (x + z | g)", pd.DataFrame(data), priors=priors)
    expected = {"noncentered": {"z_g", "chol_g"}, "centered": {"u_g", "chol_g"}}
    for parameterization, technical in expected.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = model.sample(chains=1, draws=20, tune=20, progressbar=False, parameterization=parameterization)
        post = idata.posterior
        assert list(post.data_vars) == ["beta", "sigma", "sd_g", "cor_g", "re_g"]
        assert list(post["cor_g"]["g__pair"].values) == ["Intercept__x", "Intercept__z", "x__z"]
        internals = set(idata.sampler_internals.data_vars)
        assert technical <= internals and {"beta[Intercept]", "beta[x]", "beta[z]"} <= internals
        assert not internals & set(post.data_vars)
    corr = correlation_matrices(post["cor_g"].values, 3)
    assert corr.shape == (1, 20, 3, 3) and np.allclose(np.diagonal(corr, axis1=-2, axis2=-1), 1.0)
    assert np.array_equal(corr[..., 2, 1], post["cor_g"].sel(g__pair="x__z").values)


def test_json_contract_keys_and_values(sleep_fit):
    model, idata, _ = sleep_fit
    out = model.to_dict()
    assert list(out) == CONTRACT
    assert out["ngrps"] == {"Subject": 18} and out["nobs"] == 180 and out["method"] == "nuts"
    assert out["fixef"]["names"] == ["Intercept", "Days"]
    np.testing.assert_allclose(out["fixef"]["estimate"], idata.posterior["beta"].mean(("chain", "draw")))
    np.testing.assert_allclose(out["fixef"]["se"], idata.posterior["beta"].std(("chain", "draw"), ddof=1))
    (vc,) = out["varcorr"]
    assert vc["group"] == "Subject" and vc["terms"] == ["Intercept", "Days"] and np.shape(vc["corr"]) == (2, 2)
    ranef = out["ranef"]["Subject"]
    assert ranef["levels"][0] == "308" and set(ranef["condsd"]) == {"Intercept", "Days"}
    assert set(out["diagnostics"]) == {"max_rhat", "min_ess_bulk", "min_ess_tail", "divergences"}
    assert out["logLik"] is None and out["converged"] is True and out["time_s"] > 0
    json.dumps(out, allow_nan=False)
    assert "Random effects" in model.summary() and "Fixed effects" in model.summary()


def small_model():
    data = bayesmix.load_dataset("Dyestuff")
    return bayesmix.Model("Yield ~ 1 + (1 | Batch)", data)


@pytest.mark.parametrize("sampler", ["numpyro", "nutpie", "pymc", "blackjax"])
def test_same_seed_same_draws(sampler):
    model = small_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = model.sample(draws=50, tune=50, chains=2, random_seed=7, sampler=sampler, progressbar=False)
        second = model.sample(draws=50, tune=50, chains=2, random_seed=7, sampler=sampler, progressbar=False)
    assert first.posterior.attrs["bayesmix_sampler"] == sampler
    assert first.posterior.attrs["bayesmix_seed"] == 7
    np.testing.assert_array_equal(first.posterior["beta"], second.posterior["beta"])
    np.testing.assert_array_equal(first.posterior["re_Batch"], second.posterior["re_Batch"])
    beta = first.posterior["beta"].values
    assert not np.array_equal(beta[0], beta[1])  # chains are seeded apart
    assert first.log_likelihood["Yield"].shape == (2, 50, 30)
    if sampler == "nutpie":  # its low-rank mass matrix adaptation (sampling.nutpie_options) reports its rank
        assert "num_eigenvalues" in first.sample_stats


SAME_SEED_SCRIPT = """
import hashlib, sys, warnings
import numpy as np
import bayesmix
warnings.simplefilter("ignore")
model = bayesmix.Model("Yield ~ 1 + (1 | Batch)", bayesmix.load_dataset("Dyestuff"))
for sampler in sys.argv[1:]:
    idata = model.sample(draws=50, tune=30, chains=2, random_seed=7, sampler=sampler, progressbar=False)
    digest = hashlib.sha256()
    for group in ("posterior", "posterior_predictive", "log_likelihood", "sample_stats"):
        for name in sorted(n for n in idata[group].data_vars if "time" not in n and "perf_counter" not in n):
            digest.update(np.ascontiguousarray(idata[group][name].values, dtype=float).tobytes())
    print("DIGEST", sampler, idata.posterior.sizes["draw"], digest.hexdigest())
"""


def test_same_seed_same_draws_in_another_process(tmp_path):
    """Two fresh interpreters with different hash seeds give bit-identical draws, predictions and
    sampler statistics (timings aside): nothing depends on process state (set order, object ids, a
    global RNG)."""
    script = tmp_path / "same_seed.py"
    script.write_text(SAME_SEED_SCRIPT)
    runs = [
        subprocess.Popen(
            [sys.executable, str(script), "numpyro", "pymc"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        )
        for hash_seed in ("1", "2")
    ]
    digests = []
    for run in runs:
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, err[-3000:]
        digests.append([line for line in out.splitlines() if line.startswith("DIGEST")])
    assert [line.split()[1:3] for line in digests[0]] == [["numpyro", "50"], ["pymc", "50"]]
    assert digests[0] == digests[1]


def test_other_seed_other_draws(sleep_fit):
    model, idata, _ = sleep_fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = bayesmix.Model(model.formula, bayesmix.load_dataset("sleepstudy")).sample(
            draws=50, tune=50, chains=4, random_seed=1, progressbar=False
        )
    assert not np.array_equal(other.posterior["beta"].values[:, :50], idata.posterior["beta"].values[:, :50])


def test_sampler_and_argument_errors():
    model = small_model()
    with pytest.raises(BayesmixError, match="Unknown sampler 'numpyr'.*Did you mean 'numpyro'"):
        model.sample(sampler="numpyr")
    with pytest.raises(BayesmixError, match="draws must be an integer"):
        model.sample(draws=0)
    with pytest.raises(BayesmixError, match="random_seed"):
        model.sample(random_seed="x")
    with pytest.raises(BayesmixError, match="not been sampled"):
        model.summary()


def test_diagnostic_warnings_are_raised():
    model = small_model()
    with pytest.warns(bayesmix.LowESSWarning) as record:
        model.sample(draws=20, tune=20, chains=2, random_seed=1, progressbar=False)
    # every warning points at the user's own line, not at a frame inside bayesmix
    assert {w.filename for w in record if issubclass(w.category, bayesmix.BayesmixWarning)} == {__file__}
