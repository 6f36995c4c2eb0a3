"""Tests of fixed effects (issue 23): Satterthwaite's df, t tests and p-values of an ML/REML fit,
and the type III F table, against lmerTest (tests/data/r/satterthwaite_references.R, provenance in
tests/data/PROVENANCE.md); glmer's Wald z tests; ddf choices, the summary, the JSON contract.

lmerTest differentiates numerically (numDeriv) at lme4's optimum; the reference used here is its
refit with tight optimiser tolerances (``tight``), where the remaining differences are numDeriv's
and ours (a few 1e-6 relative in df; lme4's default optimum moves df by up to 1e-4)."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import stdtr

import bayesmix
from bayesmix.design.hypotheses import type3_contrasts
from bayesmix.exact.lmm import fit_lmm

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
    with pytest.raises(bayesmix.BayesmixError, match="Choices: satterthwaite, kenward-roger, residual, none"):
        _model("sleep_reml").fit(ddf="kenwood")
    with pytest.raises(bayesmix.BayesmixError, match="REML"):
        _model("sleep_reml").fit("ml", ddf="kenward-roger")
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


# balanced designs (above) leave KR's adjusted covariance equal to Phi; these unbalanced ones
# (tests/data/r/kr_references.R) move the standard errors by 2e-4 to 2e-3
UNBALANCED = json.loads((ROOT / "tests" / "data" / "kr_references.json").read_text())["cases"]
KR_REFERENCES = {case: ref for case, ref in REFERENCES.items() if ref["kenward_roger"]} | UNBALANCED
KR_CASES = list(KR_REFERENCES)


@pytest.fixture(scope="module")
def kr_fits() -> dict:
    out = {}
    for case, ref in KR_REFERENCES.items():
        data = pd.read_csv(ROOT / ref["data_file_root"] / ref["data_file"])
        model = bayesmix.Model(ref["formula"], data, categorical=ref["factor_levels"] or None)
        out[case] = model.fit("reml", ddf="kenward-roger")
    return out


@pytest.mark.parametrize("case", KR_CASES)
def test_kenward_roger_matches_pbkrtest(kr_fits, case):
    """lmerTest's summary(ddf = "Kenward-Roger") and pbkrtest's vcovAdj, at lme4's default optimum
    (which moves them by up to ~1e-5 relative from ours)."""
    fit, ref = kr_fits[case], KR_REFERENCES[case]["kenward_roger"]
    coefficients = ref["coefficients"]
    np.testing.assert_allclose(fit.fixef["df"], coefficients["df"], rtol=1e-4)
    np.testing.assert_allclose(fit.fixef["se"], coefficients["se"], rtol=1e-4)
    # a tail p-value on few df (penicillin: 5.5) moves ~40 times the df's relative change
    np.testing.assert_allclose(fit.fixef["p_value"], coefficients["p"], rtol=1e-3)
    np.testing.assert_allclose(fit.ddf_pieces.adjusted, ref["vcov_adjusted"], rtol=1e-4, atol=1e-12)
    assert "Kenward-Roger" in fit.summary()
    if ref["anova_type3"]["terms"]:
        table = bayesmix.anova(fit)
        assert "Kenward-Roger" in table.attrs["method"]
        for column, key in (("DenDF", "den_df"), ("F value", "F"), ("Pr(>F)", "p"), ("Mean Sq", "mean_sq")):
            np.testing.assert_allclose(table[column], ref["anova_type3"][key], rtol=1e-4, err_msg=column)
        # the same table from a Satterthwaite fit, asked for Kenward-Roger's
        pd.testing.assert_frame_equal(bayesmix.anova(fit.source.fit(), ddf="kr"), table, rtol=1e-9)


@pytest.mark.parametrize("case", KR_CASES)
def test_kenward_roger_at_lme4s_estimate(kr_fits, case):
    """At lme4's own theta the method alone is compared: pbkrtest's vcovAdj and lmerTest's KR df and
    p-values to rounding (pbkrtest's pieces are closed-form, no numerical derivatives)."""
    from bayesmix.exact.kenward_roger import kenward_roger
    from bayesmix.exact.lmm import factorize, solve

    fit, ref = kr_fits[case], KR_REFERENCES[case]
    result = fit_lmm(fit.design, reml=True)
    theta = np.asarray(ref["fit"]["theta"]["values"], dtype=float)
    f = factorize(result.cross, theta)
    kr = kenward_roger(replace(result, factorization=f, solution=solve(result.cross, f, reml=True)))
    np.testing.assert_allclose(kr.adjusted, ref["kenward_roger"]["vcov_adjusted"], rtol=1e-7, atol=1e-14)
    coefficients = ref["kenward_roger"]["coefficients"]
    df = np.array([kr.contrast_df(e) for e in np.eye(len(coefficients["df"]))])
    np.testing.assert_allclose(df, coefficients["df"], rtol=1e-7)
    t = np.asarray(coefficients["estimate"]) / np.sqrt(np.diag(kr.adjusted))
    np.testing.assert_allclose(2 * stdtr(df, -np.abs(t)), coefficients["p"], rtol=1e-6)


def _dense_kenward_roger(design, result, weights):
    """pbkrtest's vcovAdj_internal written out on the n x n V (G_res = W^-1), for comparison."""
    from bayesmix.design.crossprod import block_z, lme4_order

    sigma2, X = result.solution.sigma**2, np.asarray(design.X, dtype=float)
    G, gamma = [], []
    for index, T in zip(lme4_order(design.blocks), result.factorization.factors):
        block = design.blocks[index]
        Z, k = block_z(block).toarray(), T.shape[0]
        for j in range(k):
            for i in range(j, k):
                E = np.zeros((k, k))
                E[i, j] = E[j, i] = 1.0
                G.append(Z @ np.kron(np.eye(block.n_levels), E) @ Z.T)
                gamma.append(sigma2 * (T @ T.T)[i, j])
    G.append(np.diag(1.0 / weights))
    gamma.append(sigma2)
    Vinv = np.linalg.inv(sum(g * Gr for g, Gr in zip(gamma, G)))
    Phi = np.linalg.inv(X.T @ Vinv @ X)
    P = [-X.T @ Vinv @ Gr @ Vinv @ X for Gr in G]
    Q = [[X.T @ Vinv @ Gr @ Vinv @ Gs @ Vinv @ X for Gs in G] for Gr in G]
    IE2 = np.array(
        [
            [
                np.trace(Vinv @ Gr @ Vinv @ Gs) - 2 * np.trace(Phi @ Q[r][s]) + np.trace(Phi @ P[r] @ Phi @ P[s])
                for s, Gs in enumerate(G)
            ]
            for r, Gr in enumerate(G)
        ]
    )
    W = 2 * np.linalg.inv(IE2)
    U = sum(W[r, s] * (Q[r][s] - P[r] @ Phi @ P[s]) for r in range(len(G)) for s in range(len(G)))
    return Phi + 2 * Phi @ U @ Phi, W


def test_kenward_roger_with_precision_weights(kr_fits):
    """pbkrtest ignores weights; here the residual's G is W^-1. Equal weights w only rescale sigma^2
    by 1/w, so df, t and the adjusted standard errors are unchanged; unequal weights are checked
    against pbkrtest's algorithm written out on the dense n x n V."""
    ref = KR_REFERENCES["sleep_unbal"]
    data = pd.read_csv(ROOT / ref["data_file_root"] / ref["data_file"])
    fit = kr_fits["sleep_unbal"]
    doubled = bayesmix.Model(ref["formula"], data.assign(w=2.0), weights="w").fit("reml", ddf="kr")
    np.testing.assert_allclose(
        doubled.fixef[["se", "df", "statistic"]], fit.fixef[["se", "df", "statistic"]], rtol=1e-6
    )
    varied = data.assign(w=np.where(data["Days"] < 5, 0.5, 2.0))
    model = bayesmix.Model(ref["formula"], varied, weights="w")
    weighted = model.fit("reml", ddf="kr")
    adjusted, W = _dense_kenward_roger(model.design, fit_lmm(model.design, reml=True), varied["w"].to_numpy())
    np.testing.assert_allclose(weighted.ddf_pieces.adjusted, adjusted, rtol=1e-8)
    np.testing.assert_allclose(weighted.ddf_pieces.W, W, rtol=1e-7)
    assert not np.allclose(weighted.fixef["se"], fit.fixef["se"], rtol=1e-3)


def test_glmer_z_tests_and_where_they_differ():
    """glmer's summary z tests of cbpp (its tight refit, tests/data/verbs_references.json): our
    p-values within 5e-5 relative of glmer's. The remaining difference is lme4's: its standard
    errors come from a finite-difference Hessian of the deviance (step 1e-4, error ~1e-6 in the SEs,
    which a tail p at z = 6 multiplies by z^2), where ours difference the exact gradient and move
    by less than 1e-7 between steps of 1e-3 and 1e-4."""
    from scipy.stats import norm

    from bayesmix.exact.glmm import _hessian_of_gradient, fit_glmm, laplace_objective

    ref = json.loads((ROOT / "tests" / "data" / "verbs_references.json").read_text())["cases"]["cbpp"]
    V = np.asarray(ref["vcov"]["values"], dtype=float)
    estimate = np.asarray(ref["fixef"]["values"], dtype=float)
    glmer_p = 2 * norm.sf(np.abs(estimate / np.sqrt(np.diag(V))))
    model = bayesmix.Model(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        bayesmix.load_dataset("cbpp"),
        family="binomial",
        categorical=["period"],
    )
    fit = model.fit()
    np.testing.assert_allclose(fit.fixef["p_value"], glmer_p, rtol=5e-5)
    result = fit_glmm(model.design, model.family, 1)
    objective = laplace_objective(result.problem)
    coarse, fine = (
        np.sqrt(np.diag(2 * np.linalg.inv(_hessian_of_gradient(objective, result.optimizer.x, step=h))))[1:]
        for h in (1e-3, 1e-4)
    )
    np.testing.assert_allclose(coarse, fine, rtol=1e-7)
