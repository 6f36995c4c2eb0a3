"""Prior weights (``weights=``) as lme4 and glmmTMB read them (issue 21), against fits in R of the
same data (tests/data/*weights*.json, computed by tests/data/r/weights_references.R; provenance in
tests/data/PROVENANCE.md).

Gaussian: precision weights (residual variance sigma^2 / w) in REML/ML, the collapsed sampler and
the Dask statistics. Binomial with a proportion response: the weights are the trials. Other
families: each row's log-likelihood counts w times. Targets: ML/REML 1e-6 relative against lme4
refitted with tight optimiser tolerances (its defaults stop ~1e-6 short in sigma), Laplace 1e-5
against glmmTMB / glmer with a tight inner tolerance.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix
import bayesmix.cli

DATA = Path(__file__).parent / "data"


def reference(case: str) -> dict:
    return json.loads((DATA / f"{case}.json").read_text())


def sleepstudy() -> pd.DataFrame:
    data = bayesmix.load_dataset("sleepstudy")
    return data.assign(w=(1 + data.Days % 3) / 2)  # the references' w <- (1 + Days %% 3) / 2


def grouseticks() -> pd.DataFrame:
    data = pd.read_csv(DATA / "grouseticks.csv", dtype={"YEAR": str, "BROOD": str})
    return data.assign(
        HEIGHT_cs=(data.HEIGHT - data.HEIGHT.mean()) / data.HEIGHT.std(),  # R's scale()
        w=1 + (np.arange(1, len(data) + 1) % 3),  # w <- 1 + (seq_len(nrow(gt)) %% 3)
    )


def named(fit) -> dict:
    return {
        ("(Intercept)" if n == "Intercept" else n.replace("[", "").replace("]", "")): v
        for n, v in fit.fixef.estimate.items()
    }


def assert_matches(fit, target: dict, rel: float) -> None:
    ours = named(fit)
    for name, value in zip(target["fixef"]["names"], target["fixef"]["estimate"]):
        assert ours[name] == pytest.approx(value, rel=rel)
    ses = dict(zip(fit.fixef.index, fit.fixef.se))
    assert sorted(ses.values()) == pytest.approx(sorted(target["fixef"]["se"]), rel=10 * rel)
    assert fit.loglik == pytest.approx(target["logLik"], rel=1e-8)
    assert fit.loglik >= target["logLik"] - 1e-10 * abs(target["logLik"])  # never a worse optimum
    for ours_block, theirs in zip(fit.varcorr, target["varcorr"], strict=True):
        assert np.asarray(ours_block["sd"]) == pytest.approx(theirs["sd"], rel=rel)


@pytest.mark.parametrize(
    ("case", "formula"),
    [
        ("sleep_weights_reml", "Reaction ~ Days + (Days | Subject)"),
        ("sleep_weights_ml", "Reaction ~ Days + (Days | Subject)"),
        ("sleep_weights_intercept_reml", "Reaction ~ Days + (1 | Subject)"),
    ],
)
def test_gaussian_precision_weights_match_lme4(case, formula):
    ref = reference(case)
    fit = bayesmix.Model(formula, sleepstudy(), weights="w").fit(ref["method"].lower())
    tight = ref["lme4_tight"]
    assert_matches(fit, tight, rel=1e-6)
    assert fit.sigma == pytest.approx(tight["sigma"], rel=1e-6)
    assert fit.loglik == pytest.approx(ref["results"]["logLik"], rel=1e-9)  # lme4's defaults reach it too
    np.testing.assert_allclose(fit.theta.to_numpy(), tight["theta"]["values"], rtol=1e-6, atol=1e-7)


def test_weights_given_as_numbers_or_an_expression_fit_alike():
    data = sleepstudy()
    by_name = bayesmix.Model("Reaction ~ Days + (1 | Subject)", data, weights="w").fit("reml")
    by_array = bayesmix.Model("Reaction ~ Days + (1 | Subject)", data, weights=data.w.to_numpy()).fit("reml")
    by_expression = bayesmix.Model("Reaction ~ Days + (1 | Subject)", data, weights="sqrt(w ** 2)").fit("reml")
    for other in (by_array, by_expression):
        assert other.loglik == pytest.approx(by_name.loglik, rel=1e-12)
        np.testing.assert_allclose(other.fixef.estimate, by_name.fixef.estimate, rtol=1e-10)
    assert list(data.columns) == ["Reaction", "Days", "Subject", "w"]  # the user's frame is not modified


def test_unit_weights_change_nothing():
    data = sleepstudy().assign(one=1.0)
    plain = bayesmix.Model("Reaction ~ Days + (Days | Subject)", data).fit("reml")
    weighted = bayesmix.Model("Reaction ~ Days + (Days | Subject)", data, weights="one").fit("reml")
    assert weighted.loglik == pytest.approx(plain.loglik, rel=1e-12)
    assert weighted.sigma == pytest.approx(plain.sigma, rel=1e-10)


def test_binomial_proportion_with_weights_is_successes_of_trials():
    ref = reference("cbpp_proportion_weights_laplace")
    data = bayesmix.load_dataset("cbpp")
    data = data.assign(prop=data.incidence / data["size"])
    fit = bayesmix.Model("prop ~ period + (1 | herd)", data, family="binomial", weights="size").fit("laplace")
    assert_matches(fit, ref["glmmTMB"], rel=1e-5)
    assert fit.loglik == pytest.approx(ref["lme4_tight"]["logLik"], rel=1e-8)
    counts = bayesmix.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", data, family="binomial")
    same = counts.fit("laplace")
    assert fit.loglik == pytest.approx(same.loglik, rel=1e-12)
    np.testing.assert_allclose(fit.fixef.estimate, same.fixef.estimate, rtol=1e-8)


def test_binomial_weights_need_proportions_of_whole_trials():
    data = bayesmix.load_dataset("cbpp")
    with pytest.raises(bayesmix.BayesmixError, match="proportion"):
        bayesmix.Model("incidence ~ period + (1 | herd)", data, family="binomial", weights="size")
    data = data.assign(prop=data.incidence / data["size"], half=data["size"] + 0.5)
    with pytest.raises(bayesmix.BayesmixError, match="whole numbers of trials"):
        bayesmix.Model("prop ~ period + (1 | herd)", data, family="binomial", weights="half")


@pytest.mark.parametrize(
    ("case", "family"),
    [("grouseticks_weights_poisson", "poisson"), ("grouseticks_weights_nbinom2", "negativebinomial")],
)
def test_count_weights_multiply_the_loglik_as_in_glmmtmb(case, family):
    ref = reference(case)
    target = ref["glmmTMB"] if "glmmTMB" in ref and "fixef" in ref["glmmTMB"] else ref["results"]
    fit = bayesmix.Model("TICKS ~ YEAR + HEIGHT_cs + (1 | BROOD)", grouseticks(), family=family, weights="w").fit(
        "laplace"
    )
    # glmmTMB's optimiser stops ~1e-5 short in the estimates (our logLik is higher by ~1e-8 relative)
    assert_matches(fit, target, rel=1e-4)
    if family == "negativebinomial":
        assert fit.family_params["alpha"] == pytest.approx(ref["family_params"]["theta"], rel=1e-4)


def test_integer_weights_equal_repeated_rows():
    """A row of weight w counts as w copies of itself: the Laplace fit equals the fit of the
    repeated rows (exactly, up to the optimiser's tolerance)."""
    data = grouseticks()
    weighted = bayesmix.Model("TICKS ~ YEAR + HEIGHT_cs + (1 | BROOD)", data, family="poisson", weights="w")
    repeated = data.loc[data.index.repeat(data.w)].reset_index(drop=True)
    copies = bayesmix.Model("TICKS ~ YEAR + HEIGHT_cs + (1 | BROOD)", repeated, family="poisson")
    a, b = weighted.fit("laplace"), copies.fit("laplace")
    np.testing.assert_allclose(a.fixef.estimate, b.fixef.estimate, rtol=1e-6)
    assert a.varcorr[0]["sd"] == pytest.approx(b.varcorr[0]["sd"], rel=1e-6)
    # the repeated rows' likelihood differs by the constants of the duplicated rows only through
    # nothing: the poisson log density has no row-count term, so the two agree
    assert a.loglik == pytest.approx(b.loglik, rel=1e-9)


@pytest.mark.parametrize(
    ("value", "label"), [(0.0, "zero"), (-1.0, "negative"), (np.nan, "missing"), (np.inf, "infinite")]
)
def test_bad_weights_name_the_rows(value, label):
    data = sleepstudy()
    data.loc[[5, 17], "w"] = value
    before = data.copy()
    with pytest.raises(bayesmix.BayesmixError, match=r"2 rows are not .*5 .*17"):
        bayesmix.Model("Reaction ~ Days + (1 | Subject)", data, weights="w")
    pd.testing.assert_frame_equal(data, before)


def test_rows_dropped_for_other_columns_need_no_weight():
    data = sleepstudy()
    data.loc[3, ["Reaction", "w"]] = np.nan
    with pytest.warns(bayesmix.MissingDataWarning, match="Dropped 1 of 180"):
        model = bayesmix.Model("Reaction ~ Days + (1 | Subject)", data, weights="w")
    assert model.nobs == 179


def test_weights_argument_errors():
    data = sleepstudy()
    with pytest.raises(bayesmix.BayesmixError, match="180 numbers"):
        bayesmix.Model("Reaction ~ Days + (1 | Subject)", data, weights=[1.0, 2.0])
    with pytest.raises(bayesmix.BayesmixError, match="(weights)"):
        bayesmix.Model("Reaction ~ Days + (1 | Subject)", data.assign(**{"(weights)": 1.0}), weights=np.ones(180))
    with pytest.raises(bayesmix.BayesmixError, match="Unknown column 'wt'"):
        bayesmix.Model("Reaction ~ Days + (1 | Subject)", data, weights="wt")


def test_predict_on_new_rows_needs_no_weights_and_save_load_keeps_them(tmp_path):
    data = sleepstudy()
    fit = bayesmix.Model("Reaction ~ Days + (Days | Subject)", data, weights="w").fit("reml")
    new = data.drop(columns="w").head(5)
    assert np.all(np.isfinite(fit.predict(new)))
    path = tmp_path / "weighted.nc"
    fit.save(path)
    again = bayesmix.load(path)
    assert again.loglik == pytest.approx(fit.loglik, rel=1e-12)
    refit = bayesmix.Model("Reaction ~ Days + (Days | Subject)", again.design.data, weights=again.design.spec.weights)
    assert refit.fit("reml").loglik == pytest.approx(fit.loglik, rel=1e-12)


def test_dask_statistics_carry_the_weights():
    # dask is an optional extra (bayesmix[dask]); the README's test command installs it
    dd = pytest.importorskip("dask.dataframe")
    data = sleepstudy()
    memory = bayesmix.Model("Reaction ~ Days + (Days | Subject)", data, weights="w").fit("reml")
    distributed = bayesmix.Model(
        "Reaction ~ Days + (Days | Subject)", dd.from_pandas(data, npartitions=3), weights="w"
    ).fit("reml")
    assert distributed.loglik == pytest.approx(memory.loglik, rel=1e-11)
    np.testing.assert_allclose(distributed.fixef.estimate, memory.fixef.estimate, rtol=1e-10)
    bad = data.assign(w=data.w.where(data.index != 7))
    with pytest.raises(bayesmix.BayesmixError, match="1 missing"):
        bayesmix.Model("Reaction ~ Days + (1 | Subject)", dd.from_pandas(bad, npartitions=2), weights="w")


def test_cli_weights(tmp_path, capsys):
    path = tmp_path / "sleep.csv"
    sleepstudy().to_csv(path, index=False)
    out = tmp_path / "fit.json"
    bayesmix.cli.main(
        [
            "fit",
            "--data",
            str(path),
            "--formula",
            "Reaction ~ Days + (Days | Subject)",
            "--method",
            "reml",
            "--weights",
            "w",
            "--json",
            str(out),
            "--quiet",
        ]
    )
    result = json.loads(out.read_text())
    assert result["logLik"] == pytest.approx(reference("sleep_weights_reml")["results"]["logLik"], rel=1e-9)


def pointwise_by_hand(model, idata) -> np.ndarray:
    """The pointwise gaussian log-likelihood with sd sigma / sqrt(w), from the posterior's draws."""
    post = idata.posterior.stack(sample=("chain", "draw"))
    design = model.design
    beta = post["beta"].transpose("sample", ...).to_numpy()
    effects = post["re_Subject"].transpose("sample", ...).to_numpy()
    mu = beta @ design.X.T + np.einsum("snk,nk->sn", effects[:, design.blocks[0].codes], design.blocks[0].Zt)
    sd = post["sigma"].to_numpy()[:, None] / np.sqrt(design.weights)
    return -0.5 * np.log(2 * np.pi) - np.log(sd) - 0.5 * ((design.y - mu) / sd) ** 2


@pytest.mark.parametrize("parameterization", ["marginal", "noncentered"])
def test_sampled_weighted_gaussian_log_likelihood_and_estimates(parameterization):
    """Both gaussian paths (the collapsed sampler's cross-products, the sampled likelihood with sd
    sigma / sqrt(w)) give the weighted pointwise log-likelihood, and a posterior centred on the REML fit."""
    model = bayesmix.Model("Reaction ~ Days + (1 | Subject)", sleepstudy(), weights="w")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = model.sample(
            draws=300, tune=300, chains=2, random_seed=3, progressbar=False, parameterization=parameterization
        )
    name = list(idata.log_likelihood.data_vars)[0]
    ours = idata.log_likelihood[name].stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy()
    np.testing.assert_allclose(ours, pointwise_by_hand(model, idata), rtol=1e-8, atol=1e-8)
    fit = model.fit("reml")
    post = idata.posterior
    assert abs(float(post["sigma"].mean()) - fit.sigma) < 2 * float(post["sigma"].std())
    for i, name in enumerate(fit.fixef.index):
        draws = post["beta"].isel(coef=i) if "coef" in post["beta"].dims else post["beta"][..., i]
        assert abs(float(draws.mean()) - fit.fixef.estimate[name]) < 2 * float(draws.std())


def test_sampled_count_likelihood_counts_each_row_w_times():
    """The PyMC model of a weighted poisson GLMM: its pointwise log-likelihood is w times the
    unweighted model's at the same parameters, row by row (brms's and glmmTMB's meaning)."""
    data = grouseticks()
    formula = "TICKS ~ YEAR + HEIGHT_cs + (1 | BROOD)"
    models = [
        bayesmix.Model(formula, data, family="poisson", **extra).pymc_model("noncentered")
        for extra in ({"weights": "w"}, {})
    ]
    point = {name: value + 0.1 for name, value in models[1].initial_point().items()}
    weighted, plain = (m.compile_logp(vars=[m["TICKS"]], sum=False)(point)[0] for m in models)
    np.testing.assert_allclose(weighted, data.w.to_numpy() * plain, rtol=1e-12)
    assert np.all(plain < 0)
