"""Estimated marginal means and contrasts (issue 23) against the emmeans package 1.8.4-1 on lmerTest
and lme4 fits (tests/data/r/emmeans_references.R, provenance in tests/data/PROVENANCE.md): ham (two
factors with an interaction, crossed consumers and products), cake (a factor by a covariate) and
cbpp (a binomial GLMM, link and response scales)."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix

ROOT = Path(__file__).parent.parent
CASES = json.loads((ROOT / "tests" / "data" / "emmeans_references.json").read_text())["cases"]
FORMULAS = {
    "ham": ("Informed.liking ~ Product * Information + (1 | Consumer) + (1 | Consumer:Product)", "gaussian"),
    "cake": ("angle ~ recipe * temp + (1 | recipe:replicate)", "gaussian"),
    "cbpp": ("cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial"),
}


@pytest.fixture(scope="module")
def fits() -> dict:
    out = {}
    for case, (formula, family) in FORMULAS.items():
        ref = CASES[case]
        data = pd.read_csv(ROOT / ref["data_file"])
        levels = {name: [str(v) for v in order] for name, order in ref["factor_levels"].items() if name in formula}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[case] = bayesmix.Model(
                formula, data.astype({n: str for n in levels}), family=family, categorical=levels
            ).fit()
    return out


def _columns(table: dict) -> dict:
    return {
        k: np.array([np.inf if v == "Inf" else v for v in values]) if k not in ("contrast",) else values
        for k, values in table["columns"].items()
    }


def _check_means(ours: pd.DataFrame, ref: dict, estimate="emmean", lower="lower.CL", upper="upper.CL", rtol=1e-6):
    columns = _columns(ref)
    np.testing.assert_allclose(ours["emmean"], columns[estimate], rtol=rtol)
    np.testing.assert_allclose(ours["SE"], columns["SE"], rtol=1e-5)
    np.testing.assert_allclose(ours["df"], columns["df"], rtol=1e-4)
    np.testing.assert_allclose(ours["lower"], columns[lower], rtol=1e-5)
    np.testing.assert_allclose(ours["upper"], columns[upper], rtol=1e-5)


def test_kenward_roger_means_are_emmeans(fits):
    """emmeans' own default for lmer fits: Kenward-Roger df, SEs from pbkrtest's adjusted covariance."""
    ref = CASES["ham"]["tables"]["emmeans_product_kenward_roger"]
    _check_means(bayesmix.emmeans(fits["ham"], "Product", ddf="kenward-roger").table, ref)
    # without ddf=, the fit's own (here a KR fit)
    kr_fit = fits["ham"].source.fit(ddf="kenward-roger")
    _check_means(bayesmix.emmeans(kr_fit, "Product").table, ref)


def test_marginal_means_are_emmeans(fits):
    tables = CASES["ham"]["tables"]
    _check_means(bayesmix.emmeans(fits["ham"], "Product").table, tables["emmeans_product"])
    by = bayesmix.emmeans(fits["ham"], "Product", by="Information").table
    ref = tables["emmeans_product_by_information"]
    order = np.lexsort(
        (np.asarray(ref["columns"]["Product"], dtype=int), np.asarray(ref["columns"]["Information"], dtype=int))
    )
    by = by.sort_values(["Information", "Product"], key=lambda c: c.astype(int)).reset_index(drop=True)
    ref = {"columns": {k: list(np.asarray(v)[order]) for k, v in ref["columns"].items()}}
    _check_means(by, ref)
    cake = CASES["cake"]["tables"]
    _check_means(bayesmix.emmeans(fits["cake"], "recipe").table, cake["emmeans_recipe"])
    _check_means(bayesmix.emmeans(fits["cake"], "recipe", at={"temp": 175}).table, cake["emmeans_recipe_temp175"])


@pytest.mark.parametrize("adjust", ["tukey", "holm", "bonferroni", "none"])
def test_pairwise_contrasts_are_emmeans(fits, adjust):
    ours = bayesmix.pairs(bayesmix.emmeans(fits["ham"], "Product"), adjust=adjust)
    ref = _columns(CASES["ham"]["tables"][f"pairs_{adjust}"])
    assert list(ours["contrast"]) == list(ref["contrast"])
    np.testing.assert_allclose(ours["estimate"], ref["estimate"], rtol=1e-6)
    np.testing.assert_allclose(ours["statistic"], ref["t.ratio"], rtol=1e-5)
    np.testing.assert_allclose(ours["p_value"], ref["p.value"], rtol=1e-4)


def test_polynomial_contrasts_and_a_covariate(fits):
    poly = bayesmix.contrast(bayesmix.emmeans(fits["ham"], "Product"), "poly")
    ref = _columns(CASES["ham"]["tables"]["poly"])
    np.testing.assert_allclose(poly["estimate"], ref["estimate"], rtol=1e-6)
    np.testing.assert_allclose(poly["p_value"], ref["p.value"], rtol=1e-4)
    cake = bayesmix.pairs(bayesmix.emmeans(fits["cake"], "recipe", at={"temp": 175}))
    ref = _columns(CASES["cake"]["tables"]["pairs_tukey_temp175"])
    assert list(cake["contrast"]) == list(ref["contrast"])
    np.testing.assert_allclose(cake["p_value"], ref["p.value"], rtol=1e-4)
    control = bayesmix.contrast(bayesmix.emmeans(fits["ham"], "Product"), "trt.vs.ctrl")  # dunnettx by default
    ref = _columns(CASES["ham"]["tables"]["trt_vs_ctrl"])
    assert control.attrs["adjust"] == "dunnettx"
    np.testing.assert_allclose(control["estimate"], ref["estimate"], rtol=1e-6)
    np.testing.assert_allclose(control["p_value"], ref["p.value"], rtol=1e-4)


def test_a_glmm_on_both_scales(fits):
    """Asymptotic (z) means and Tukey pairs; on the response scale probabilities (delta-method SE,
    the link-scale interval transformed) and odds ratios."""
    tables = CASES["cbpp"]["tables"]
    link = bayesmix.emmeans(fits["cbpp"], "period")
    _check_means(link.table, tables["emmeans_period"], lower="asymp.LCL", upper="asymp.UCL", rtol=1e-5)
    response = bayesmix.emmeans(fits["cbpp"], "period", type="response")
    _check_means(response.table, tables["emmeans_period_response"], "prob", "asymp.LCL", "asymp.UCL", rtol=1e-5)
    pairs = bayesmix.pairs(link)
    ref = _columns(tables["pairs_tukey"])
    np.testing.assert_allclose(pairs["p_value"], ref["p.value"], rtol=1e-4)
    ratios = bayesmix.pairs(response)
    ref = _columns(tables["pairs_tukey_response"])
    assert list(ratios["contrast"]) == list(ref["contrast"])
    np.testing.assert_allclose(ratios["estimate"], ref["odds.ratio"], rtol=1e-5)
    np.testing.assert_allclose(ratios["SE"], ref["SE"], rtol=1e-5)


def test_a_model_without_factors_is_told_so():
    fit = bayesmix.Model("Reaction ~ Days + (1 | Subject)", bayesmix.load_dataset("sleepstudy")).fit()
    with pytest.raises(bayesmix.BayesmixError, match="has none"):
        bayesmix.emmeans(fit, "Days")


def test_marginal_means_of_posterior_draws():
    """A sampled model's means and contrasts, draw by draw (emmeans on a brms fit: the median and
    the HPD interval), checked against the same quantities computed here from the posterior's beta;
    and the posterior medians near the Laplace fit's means (within 2 posterior SDs)."""
    import arviz as az
    from scipy.special import expit

    cbpp = bayesmix.load_dataset("cbpp")
    model = bayesmix.Model(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial", categorical=["period"]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = model.sample(draws=500, tune=500, chains=2, random_seed=3, progressbar=False)
    beta = idata.posterior["beta"].values.reshape(-1, 4)
    L = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1]], dtype=float)
    eta = beta @ L.T
    emm = bayesmix.emmeans(model, "period", type="response")
    np.testing.assert_allclose(emm.table["emmean"], np.median(expit(eta), axis=0), rtol=1e-12)
    hdi = np.array([az.hdi(expit(eta[:, j]), hdi_prob=0.95) for j in range(4)])
    np.testing.assert_allclose(emm.table[["lower", "upper"]].to_numpy(), hdi, rtol=1e-12)
    odds = bayesmix.pairs(emm)  # odds ratios, draw by draw
    assert odds["contrast"].iloc[0] == "period1 / period2" and "p_value" not in odds
    np.testing.assert_allclose(odds["estimate"].iloc[0], np.median(np.exp(eta[:, 0] - eta[:, 1])), rtol=1e-12)
    exact = bayesmix.emmeans(model.fit(), "period").table["emmean"].to_numpy()
    link = bayesmix.emmeans(model, "period").table["emmean"].to_numpy()
    assert np.all(np.abs(link - exact) < 2 * eta.std(axis=0))


def test_formula_specs_as_emmeans_writes_them(fits):
    """emmeans(fit, ~ Product | Information) is emmeans(fit, "Product", by="Information");
    "pairwise ~ Product" names the two calls that give means and contrasts."""
    formula = bayesmix.emmeans(fits["ham"], "~ Product | Information").table
    pd.testing.assert_frame_equal(formula, bayesmix.emmeans(fits["ham"], "Product", by="Information").table)
    with pytest.raises(bayesmix.BayesmixError, match="contrast\\(emm, 'pairwise'\\)"):
        bayesmix.emmeans(fits["ham"], "pairwise ~ Product")
