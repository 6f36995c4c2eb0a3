"""Tidy tables (fixef, ranef, varcorr): the same columns for an exact fit and a posterior."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

import bayesmix
from bayesmix import BayesmixError

DATA = Path(__file__).parent / "data"
Z95 = norm.ppf(0.975)


@pytest.fixture(scope="module")
def sleep(sleep_nuts):
    _, model = sleep_nuts
    return model, model.fit("reml"), json.loads((DATA / "sleep_reml.json").read_text())["results"]


def test_exact_tables_match_lme4(sleep):
    _, fit, ref = sleep
    fixef = bayesmix.fixef(fit)
    assert list(fixef.columns) == ["estimate", "se", "lower", "upper", "statistic"]
    np.testing.assert_allclose(fixef["estimate"], ref["fixef"]["estimate"], rtol=1e-5)
    np.testing.assert_allclose(fixef["se"], ref["fixef"]["se"], rtol=1e-4)
    np.testing.assert_allclose(fixef["upper"] - fixef["estimate"], Z95 * fixef["se"], rtol=1e-12)

    varcorr = bayesmix.varcorr(fit)
    assert list(varcorr.columns) == ["group", "var1", "var2", "vcov", "sdcor"]
    assert varcorr["group"].tolist() == ["Subject", "Subject", "Subject", "Residual"]
    assert varcorr["var1"].tolist()[:3] == ["Intercept", "Days", "Intercept"]
    assert varcorr["var2"].isna().tolist() == [True, True, False, True] and varcorr["var2"][2] == "Days"
    block = ref["varcorr"][0]
    expected_vcov = [*block["var"], block["cov"][0][1], ref["sigma"] ** 2]
    expected_sdcor = [*block["sd"], block["corr"][0][1], ref["sigma"]]
    np.testing.assert_allclose(varcorr["vcov"], expected_vcov, rtol=1e-4)
    np.testing.assert_allclose(varcorr["sdcor"], expected_sdcor, rtol=1e-4)

    ranef = bayesmix.ranef(fit)
    assert list(ranef.columns) == ["group", "level", "term", "condval", "condsd", "lower", "upper"]
    assert len(ranef) == 18 * 2
    blups = ref["ranef"]["Subject"]
    intercepts = ranef[ranef.term == "Intercept"].set_index("level").loc[blups["levels"]]
    spread = np.std(blups["condval"]["(Intercept)"])
    np.testing.assert_allclose(intercepts["condval"], blups["condval"]["(Intercept)"], atol=1e-5 * spread)
    np.testing.assert_allclose(intercepts["condsd"], blups["condsd"]["(Intercept)"], rtol=1e-4)
    np.testing.assert_allclose(intercepts["lower"], intercepts["condval"] - Z95 * intercepts["condsd"], rtol=1e-12)


def test_posterior_tables_by_hand(sleep):
    model, _, _ = sleep
    post = model.idata.posterior
    fixef = bayesmix.fixef(model)
    beta = post["beta"].values.reshape(-1, 2)
    np.testing.assert_allclose(fixef["estimate"], beta.mean(0), rtol=1e-12)
    np.testing.assert_allclose(fixef["lower"], np.quantile(beta, 0.025, axis=0), rtol=1e-12)
    assert {"rhat", "ess_bulk", "ess_tail"} <= set(fixef.columns)

    varcorr = bayesmix.varcorr(model)
    sd = post["sd_Subject"].values.reshape(-1, 2)
    corr = post["cor_Subject"].values.ravel()
    sigma = post["sigma"].values.ravel()
    np.testing.assert_allclose(
        varcorr["vcov"], [*(sd**2).mean(0), (sd[:, 0] * sd[:, 1] * corr).mean(), (sigma**2).mean()]
    )
    np.testing.assert_allclose(varcorr["sdcor"], [*sd.mean(0), corr.mean(), sigma.mean()])
    np.testing.assert_allclose(varcorr["sdcor_se"], [*sd.std(0, ddof=1), corr.std(ddof=1), sigma.std(ddof=1)])

    ranef = bayesmix.ranef(model)
    effects = post["re_Subject"].sel(Subject__level="309", Subject__term="Days").values.ravel()
    row = ranef[(ranef.level == "309") & (ranef.term == "Days")].iloc[0]
    assert row.condval == pytest.approx(effects.mean(), rel=1e-12)
    assert row.condsd == pytest.approx(effects.std(ddof=1), rel=1e-12)
    assert (row.lower, row.upper) == pytest.approx(tuple(np.quantile(effects, [0.025, 0.975])), rel=1e-12)


def test_glmm_has_no_residual_row_and_bad_input_is_named():
    cbpp = bayesmix.load_dataset("cbpp")
    fit = bayesmix.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial").fit(
        "laplace"
    )
    assert bayesmix.varcorr(fit)["group"].tolist() == ["herd"]
    with pytest.raises(BayesmixError, match="not been sampled"):
        bayesmix.fixef(bayesmix.Model("incidence ~ period + (1 | herd)", cbpp))
    with pytest.raises(BayesmixError, match="Expected a fit"):
        bayesmix.ranef("a fit")


def test_inference_data_without_sample_stats(sleep_nuts):
    """Issue 18 item 9: draws from variational inference (pm.fit on the model's PyMC model) have no
    sample_stats; the tables and the summary are made from what is there and say what is missing."""
    import pymc as pm

    _, model = sleep_nuts
    with model.pymc_model():
        approx = pm.fit(n=200, progressbar=False, random_seed=1)
    idata = approx.sample(100, random_seed=1)
    assert "sample_stats" not in idata.groups()
    fixef = bayesmix.fixef(model, idata)
    np.testing.assert_allclose(fixef["estimate"], idata.posterior["beta"].mean(("chain", "draw")))
    assert len(bayesmix.varcorr(model, idata)) == 4 and len(bayesmix.ranef(model, idata)) == 36
    text = model.summary(idata=idata)
    assert "no sample_stats" in text and "divergences unknown" in text and "fit by NUTS" not in text
    out = model.to_dict(idata)
    assert out["diagnostics"]["divergences"] is None
    assert any("no sample_stats" in message for message in out["messages"])
