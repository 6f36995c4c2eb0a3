"""Multi-membership groups (brms's ``(1 | mm(s1, s2))``) against lme4 fits whose term's Zt is
replaced by the weighted membership matrix (tests/data/mm_references.json,
tests/data/r/mm_references.R): REML, ML, a second ordinary term and Poisson Laplace; the
parsing, the reports, new data, NUTS against the exact fit, and the refusals."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix.design.membership import Membership, membership_call

DATA = Path(__file__).parent / "data"
REFERENCES = json.loads((DATA / "mm_references.json").read_text())
MM = "mm(s1, s2)"
CASES = {
    "gaussian_reml": ("y ~ x + (1 | mm(s1, s2))", "gaussian", "reml"),
    "gaussian_ml_weights": ("y ~ x + (1 | mm(s1, s2, weights = cbind(w1, w2)))", "gaussian", "ml"),
    "gaussian_reml_unscaled_region": (
        "y ~ x + (1 | mm(s1, s2, weights = cbind(w1, w2), scale = FALSE)) + (1 | region)",
        "gaussian",
        "reml",
    ),
    "poisson_laplace": ("count ~ x + (1 | mm(s1, s2))", "poisson", "laplace"),
}


@pytest.fixture(scope="module")
def data():
    return pd.read_csv(DATA / "mm_sim.csv")


@pytest.mark.parametrize("case", list(CASES))
def test_exact_fits_are_lme4s_with_the_membership_matrix(data, case):
    formula, family, method = CASES[case]
    reference = REFERENCES["cases"][case]["results"]
    fit = bayesmix.Model(formula, data, family=family).fit(method)
    result = fit.to_dict()
    assert result["logLik"] == pytest.approx(reference["logLik"], rel=1e-10)
    mm = next(v for v in result["varcorr"] if v["group"].startswith("mm("))
    assert mm["structure"] == "mm"
    assert mm["sd"][0] == pytest.approx(reference["sigma_b"], rel=1e-6)
    assert result["ngrps"][mm["group"]] == 40
    np.testing.assert_allclose(result["fixef"]["estimate"], reference["fixef"]["values"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result["fixef"]["se"], reference["fixef_se"], rtol=1e-5)
    if family == "gaussian":
        assert result["sigma"] == pytest.approx(reference["sigma"], rel=1e-6)
    if reference.get("sigma_region") is not None:
        region = next(v for v in result["varcorr"] if v["group"] == "region")
        assert region["sd"][0] == pytest.approx(reference["sigma_region"], rel=1e-5)
    ranef = fit.ranef[mm["group"]].xs("Intercept", level="term")
    assert list(ranef.index) == reference["blups"]["levels"]
    np.testing.assert_allclose(ranef["condval"], reference["blups"]["values"], atol=1e-6)
    np.testing.assert_allclose(fit.predict(), reference["fitted"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fit.predict(data), reference["fitted"], rtol=1e-6, atol=1e-7)  # new data: the same rows


def test_the_call_is_parsed_as_brms_writes_it():
    assert membership_call("mm(a, b)") == Membership(("a", "b"))
    assert membership_call(" mm(`a 1`, b, c) ") == Membership(("a 1", "b", "c"))
    parsed = membership_call("mm(a, b, weights = cbind(wa, wb), scale = FALSE)")
    assert parsed == Membership(("a", "b"), ("wa", "wb"), False)
    assert membership_call("school") is None
    for bad, message in [
        ("mm(a)", "two or more"),
        ("mm(a, b, weights = wa)", "cbind"),
        ("mm(a, b, weights = cbind(wa))", "cbind"),
        ("mm(a, b, by = f)", "not an argument"),
        ("mm(a, b, scale = maybe)", "scale"),
        ("mm(a + 1, b)", "column names"),
    ]:
        with pytest.raises(bayesmix.BayesmixError, match=message):
            membership_call(bad)


def test_one_school_twice_is_the_ordinary_random_intercept(data):
    """Every row's two memberships one school: the effect is that school's, lme4's (1 | s1)."""
    same = data.assign(s2=data["s1"])
    twice = bayesmix.Model("y ~ x + (1 | mm(s1, s2))", same).fit("reml").to_dict()
    plain = bayesmix.Model("y ~ x + (1 | s1)", same).fit("reml").to_dict()
    assert twice["logLik"] == pytest.approx(plain["logLik"], rel=1e-10)
    assert twice["varcorr"][0]["sd"][0] == pytest.approx(plain["varcorr"][0]["sd"][0], rel=1e-6)


def test_reports_new_data_and_missing_values(data):
    original = data.copy()
    fit = bayesmix.Model("y ~ x + (1 | mm(s1, s2))", data).fit()
    pd.testing.assert_frame_equal(data, original)
    text = str(fit)
    assert "mm(s1, s2)  Intercept" in text and "(mm)" in text
    assert fit.ranef[MM].index.get_level_values("level")[0] == "S01"
    new = data.head(4).assign(s2=["S99", "S01", "S02", "S03"])
    with pytest.raises(bayesmix.BayesmixError, match="S99"):
        fit.predict(new)
    # the unseen school's half is the population's: zero
    effects = fit.ranef[MM].xs("Intercept", level="term")["condval"]
    beta = fit.fixef["estimate"]
    expected = beta["Intercept"] + beta["x"] * new["x"].iloc[0] + 0.5 * effects[new["s1"].iloc[0]]
    assert fit.predict(new, allow_new_levels=True)[0] == pytest.approx(expected, rel=1e-10)
    assert fit.predict(new.iloc[1:]) == pytest.approx(fit.predict(new, allow_new_levels=True)[1:], rel=1e-12)
    holes = data.copy()
    holes.loc[[3, 7], "s2"] = np.nan
    with pytest.warns(bayesmix.MissingDataWarning, match="2"):
        refit = bayesmix.Model("y ~ x + (1 | mm(s1, s2))", holes).fit()
    assert refit.to_dict()["nobs"] == len(data) - 2


@pytest.fixture(scope="module")
def sampled(data):
    """The months-weighted model and its NUTS draws (one compilation for the sampling tests)."""
    model = bayesmix.Model("y ~ x + (1 | mm(s1, s2, weights = cbind(w1, w2)))", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = model.sample(draws=400, tune=400, chains=2, random_seed=1, progressbar=False)
    return model, idata


def test_nuts_agrees_with_the_exact_fit(data, sampled):
    model, idata = sampled
    fit = model.fit("reml")
    post = idata.posterior
    sd = post[f"sd_{MM}"].isel({f"{MM}__term": 0})
    for draws, estimate in [
        (post["sigma"], fit.sigma),
        (post["beta"].sel(coef="x"), fit.fixef.loc["x", "estimate"]),
        (post["beta"].sel(coef="Intercept"), fit.fixef.loc["Intercept", "estimate"]),
        (sd, fit.varcorr[0]["sd"][0]),
    ]:
        assert abs(float(draws.mean()) - estimate) < 2 * float(draws.std())
    sampled = bayesmix.ranef(model, idata).set_index("level")
    exact = bayesmix.ranef(fit).set_index("level")
    assert list(sampled.index) == list(exact.index) == sorted(data["s1"].unique())  # one row a school
    assert np.all(np.abs(sampled["condval"] - exact["condval"]) < 2 * sampled["condsd"])
    table = bayesmix.varcorr(fit)
    assert table["var1"].tolist()[:1] == ["Intercept"] and len(table) == 2  # the block's SD, the residual


def test_bad_input_is_refused(data):
    def model(formula, frame=data):
        return bayesmix.Model(formula, frame)

    with pytest.raises(bayesmix.BayesmixError, match=r"write \(1 \| mm\(s1, s2\)\)"):
        model("y ~ x + (x | mm(s1, s2))")
    with pytest.raises(bayesmix.BayesmixError, match="Unknown"):
        model("y ~ x + (1 | mm(s1, s3))")
    with pytest.raises(bayesmix.BayesmixError, match="0 or more"):
        model("y ~ x + (1 | mm(s1, s2, weights = cbind(w1, w2)))", data.assign(w1=-data["w1"]))
    with pytest.raises(bayesmix.BayesmixError, match="summing to 0"):
        model("y ~ x + (1 | mm(s1, s2, weights = cbind(w1, w2)))", data.assign(w1=0, w2=0))
    with pytest.raises(bayesmix.BayesmixError, match="around a multi-membership"):
        model("y ~ x + diag(1 | mm(s1, s2))")
    import dask.dataframe as dd  # a test dependency

    with pytest.raises(bayesmix.BayesmixError, match="pandas DataFrame"):
        model("y ~ x + (1 | mm(s1, s2))", dd.from_pandas(data, npartitions=2))


def test_new_levels_of_a_sampled_model_are_drawn(data, sampled):
    """With allow_new_levels=True a sampled model draws an unseen school's effect from each draw's
    SD (brms's rule; new_levels="population": zero), so a pupil of an unseen school is less
    certain than one of two seen schools."""
    model, idata = sampled
    rows = data.head(2).assign(s1=["S99", "S01"], s2=["S99", "S02"], x=0.0)
    with pytest.raises(bayesmix.BayesmixError, match="S99"):
        model.predict(idata, data=rows, inplace=False)
    drawn = model.predict(idata, data=rows, kind="link", allow_new_levels=True, random_seed=1, inplace=False)
    drawn = drawn.to_numpy().reshape(-1, 2)
    population = model.predict(
        idata, data=rows, kind="link", allow_new_levels=True, new_levels="population", inplace=False
    ).to_numpy()
    population = population.reshape(-1, 2)
    assert drawn[:, 0].std() > 2 * population[:, 0].std()
    sd = idata.posterior[f"sd_{MM}"].isel({f"{MM}__term": 0}).to_numpy().ravel()
    spread = np.sqrt(population[:, 0].var() + np.mean(sd**2))  # the intercept's and a new school's
    assert drawn[:, 0].std() == pytest.approx(spread, rel=0.15)
