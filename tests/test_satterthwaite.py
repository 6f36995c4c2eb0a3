"""Tests of fixed effects (issue 23): Satterthwaite's df, t tests and p-values of an ML/REML fit,
and the type III F table, against lmerTest (tests/data/r/satterthwaite_references.R, provenance in
tests/data/PROVENANCE.md); glmer's Wald z tests; ddf choices, the summary, the JSON contract.

lmerTest differentiates numerically (numDeriv) at lme4's optimum; the reference used here is its
refit with tight optimiser tolerances (``tight``), where the remaining differences are numDeriv's
and ours (a few 1e-6 relative in df; lme4's default optimum moves df by up to 1e-4)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix.design.hypotheses import type3_contrasts

ROOT = Path(__file__).parent.parent
REFERENCES = json.loads((ROOT / "tests" / "data" / "satterthwaite_references.json").read_text())["cases"]


def _model(case: str, **kwargs) -> bayesmix.Model:
    ref = REFERENCES[case]
    data = pd.read_csv(ROOT / ref["data_file_root"] / ref["data_file"])
    return bayesmix.Model(ref["formula"], data, categorical=ref["factor_levels"] or None, **kwargs)


@pytest.fixture(scope="module")
def fits() -> dict:
    return {case: _model(case).fit("reml" if ref["REML"] else "ml") for case, ref in REFERENCES.items()}


@pytest.mark.parametrize("case", list(REFERENCES))
def test_coefficient_tests_match_lmertest(fits, case):
    fit, ref = fits[case], REFERENCES[case]["tight"]["satterthwaite"]["coefficients"]
    np.testing.assert_allclose(fit.fixef["estimate"], ref["estimate"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(fit.fixef["df"], ref["df"], rtol=1e-4)
    np.testing.assert_allclose(fit.fixef["statistic"], ref["t"], rtol=1e-5)
    np.testing.assert_allclose(fit.fixef["p_value"], ref["p"], rtol=1e-4)
    default = REFERENCES[case]["satterthwaite"]["coefficients"]  # lmerTest at lme4's default optimum
    np.testing.assert_allclose(fit.fixef["df"], default["df"], rtol=2e-4)


@pytest.mark.parametrize(
    "case", [case for case in REFERENCES if REFERENCES[case]["tight"]["satterthwaite"]["anova_type3"]["terms"]]
)
def test_type3_table_matches_lmertest(fits, case):
    ref = REFERENCES[case]["tight"]["satterthwaite"]["anova_type3"]
    table = bayesmix.anova(fits[case])
    assert [name.replace("[", "").replace("]", "") for name in table.index] == ref["terms"]
    assert list(table["NumDF"]) == ref["num_df"]
    for column, key in (
        ("DenDF", "den_df"),
        ("F value", "F"),
        ("Pr(>F)", "p"),
        ("Sum Sq", "sum_sq"),
        ("Mean Sq", "mean_sq"),
    ):
        np.testing.assert_allclose(table[column], ref[key], rtol=1e-4, err_msg=column)


@pytest.mark.parametrize("case", ["cake", "ham"])
def test_type3_hypotheses_are_lmertests(case):
    """The contrast matrices themselves (lmerTest's show_tests, printed to 7 digits)."""
    contrasts = type3_contrasts(_model(case).design)
    for term, L in contrasts.items():
        ref = REFERENCES[case]["type3_contrasts"][term]
        np.testing.assert_allclose(L, ref["matrix"], atol=1e-6, err_msg=term)


def test_type3_does_not_depend_on_the_coding(fits):
    """Sum-to-zero coding of a factor changes the coefficients, not the type III hypotheses."""
    summed = _model("ham", contrasts={"Product": "contr.sum", "Information": "contr.sum"}).fit()
    pd.testing.assert_frame_equal(bayesmix.anova(summed), bayesmix.anova(fits["ham"]), rtol=1e-6)


def test_ddf_choices_and_the_summary(fits):
    fit = fits["sleep_reml"]
    text = fit.summary()
    assert "Pr(>|t|)" in text and "t tests use Satterthwaite's method" in text and "< 2e-16" in text
    residual = _model("sleep_reml").fit(ddf="residual")
    assert list(residual.fixef["df"]) == [178.0, 178.0]
    none = _model("sleep_reml").fit(ddf="none")
    assert none.fixef["p_value"].isna().all() and "Pr(>" not in none.summary()
    with pytest.raises(bayesmix.BayesmixError, match="Choices: satterthwaite, residual, none"):
        _model("sleep_reml").fit(ddf="kenward")
    contract = fit.to_dict()["fixef"]
    assert (
        contract["df"] == pytest.approx(list(fit.fixef["df"]))
        and contract["p_value"][1] == fit.fixef["p_value"].iloc[1]
    )


def test_a_glmm_gets_wald_z_tests():
    cbpp = pd.read_csv(ROOT / "bayesmix" / "datasets" / "cbpp.csv")
    fit = bayesmix.Model(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial", categorical=["period"]
    ).fit()
    from scipy import stats

    z = fit.fixef["estimate"] / fit.fixef["se"]
    np.testing.assert_allclose(fit.fixef["p_value"], 2 * stats.norm.sf(np.abs(z)), rtol=1e-12)
    assert fit.fixef["df"].isna().all() and fit.to_dict()["fixef"]["df"] == [None] * 4
    assert "Pr(>|z|)" in fit.summary()
    table = bayesmix.anova(fit)  # Wald chi-square on the period term's three coefficients
    L = np.eye(4)[1:]
    beta, V = fit.fixef["estimate"].to_numpy(), fit.vcov.to_numpy()
    expected = L @ beta @ np.linalg.solve(L @ V @ L.T, L @ beta)
    assert table.loc["period", "Chisq"] == pytest.approx(expected) and table.loc["period", "Df"] == 3


def test_a_fit_read_from_a_file_still_has_its_f_tests(fits, tmp_path):
    fits["cake"].save(tmp_path / "cake.nc")
    back = bayesmix.load(tmp_path / "cake.nc")
    pd.testing.assert_frame_equal(back.fixef, fits["cake"].fixef)
    pd.testing.assert_frame_equal(bayesmix.anova(back), bayesmix.anova(fits["cake"]), rtol=1e-9)
