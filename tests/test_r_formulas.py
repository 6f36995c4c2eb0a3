"""Formulas as lme4 reads them, against lme4/glmmTMB fits of the same data (tests/data/*.json,
computed by tests/data/r/issue18_references.R; provenance in tests/data/PROVENANCE.md).

Each case is a formula an lme4 user writes that bayesmix once refused or fitted differently (issue
18): offsets, a numeric column used as a grouping factor, nested and power terms in the fixed part,
R's functions, scale() over n - 1, polynomial contrasts of ordered factors, sum and Helmert
contrasts, R's bs()/ns() bases, a bare bar, a two-level factor response, a predictor on the 1e4
scale in a GLMM. Targets: ML/REML 1e-6 relative (logLik and fixed effects), Laplace 1e-5 against
glmmTMB (or lme4 refitted with a tight inner tolerance).
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix

DATA = Path(__file__).parent / "data"
BUNDLED = {"sleepstudy.csv": "sleepstudy", "cbpp.csv": "cbpp", "Orthodont.csv": "Orthodont", "Dyestuff.csv": "Dyestuff"}

# how each case's derived columns are made (the reference's data_note says the same in R)
PREPARE = {
    "sleep_offset": lambda d: d.assign(off=np.log(d.Days + 1)),
    "sleep_binfactor": lambda d: d.assign(slow=np.where(d.Reaction > 300, "yes", "no")),
    "cbpp_bigx": lambda d: d.assign(big=d["size"] * 1000),
}
# the formula in bayesmix where R's spelling differs (a package prefix)
FORMULA = {
    "sleep_ns_ml": "Reaction ~ ns(Days, df = 3) + (1 | Subject)",
    "sleep_bs_ml": "Reaction ~ bs(Days, df = 4) + (1 | Subject)",
}
# lme4's contrasts set on the data, passed as Model(contrasts=...)
CONTRASTS = {
    "cake_sum_reml": {"recipe": "contr.sum"},
    "cake_helmert_reml": {"recipe": "contr.helmert"},
    "cake_sumslope_reml": {"recipe": "contr.sum"},
}
LMM = [
    "sleep_offset_reml",
    "sleep_offset_ml",
    "sleep_offset_slope_reml",
    "sleep_numgroup_reml",
    "sleep_numgroup_ml",
    "sleep_numgroup_crossed_reml",
    "orthodont_nested_fixed_reml",
    "orthodont_in_reml",
    "orthodont_power_reml",
    "sleep_scale_reml",
    "cake_reml",
    "cake_sum_reml",
    "cake_helmert_reml",
    "cake_sumslope_reml",
    "sleep_power_reml",
    "sleep_round_reml",
    "sleep_functions_reml",
    "sleep_log_reml",
    "sleep_poly_reml",
    "sleep_ns_ml",
    "sleep_bs_ml",
    "dyestuff_barebar_reml",
]
GLMM = ["cbpp_offset_poisson", "sleep_binfactor_laplace", "cbpp_bigx_laplace", "cbpp_var1_laplace"]


def reference(case):
    return json.loads((DATA / f"{case}.json").read_text())


def case_data(ref) -> pd.DataFrame:
    name = ref["data_file"].split("/")[-1]
    if ref.get("data_file_root") == "tests/data":
        data = pd.read_csv(DATA / name)
    else:
        data = bayesmix.load_dataset(BUNDLED[name]).copy()
    for column, levels in ref.get("factor_levels", {}).items():
        if column in data.columns:
            ordered = ref.get("ordered_factors", {}).get(column, False)
            data[column] = pd.Categorical(data[column].astype(str), categories=levels, ordered=ordered)
    for prefix, prepare in PREPARE.items():
        if ref["case_id"].startswith(prefix):
            data = prepare(data)
    return data


def fit_case(case):
    ref = reference(case)
    model = bayesmix.Model(
        FORMULA.get(case, ref["formula"]), case_data(ref), family=ref["family"], contrasts=CONTRASTS.get(case)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmix.SingularFitWarning)
        return model.fit(ref["method"].lower()), ref


def r_name(name: str, case: str) -> str:
    """Our coefficient name as lme4 writes it (formulae's ``f[level]`` is R's ``flevel``)."""
    if name == "Intercept":
        return "(Intercept)"
    name = name.replace("[", "").replace("]", "").replace(" ** ", "^").replace(", df=", ", df = ")
    name = name.replace("exp(Days / 10)", "exp(Days/10)")
    for ours, theirs in [
        ("ns(Days, df = 3)", "splines::ns(Days, df = 3)"),
        ("bs(Days, df = 4)", "splines::bs(Days, df = 4)"),
    ]:
        if name.startswith(ours):
            name = theirs + str(int(name[len(ours) :]) + 1)  # R counts basis columns from 1
    if name.startswith("poly(Days, 2)"):
        name = f"poly(Days, 2){int(name[len('poly(Days, 2)') :]) + 1}"
    if case in CONTRASTS:  # R names a sum/Helmert contrast's columns 1, 2, ...
        name = {"recipeA": "recipe1", "recipeB": "recipe2", "recipe1": "recipe1", "recipe2": "recipe2"}.get(name, name)
    return name


def assert_fixef(fit, case, reference, ses, rel, share):
    """Every fixed effect of ``reference`` ({names, estimate}) within ``rel`` or ``share`` of its SE."""
    ours = {r_name(name, case): value for name, value in fit.fixef["estimate"].items()}
    assert set(ours) == set(reference["names"])
    for name, estimate, se in zip(reference["names"], reference["estimate"], ses):
        assert ours[name] == pytest.approx(estimate, rel=rel, abs=share * se)


@pytest.mark.parametrize("case", LMM)
def test_lmm_matches_lme4(case):
    fit, ref = fit_case(case)
    target = ref["results"]
    assert fit.loglik == pytest.approx(target["logLik"], rel=1e-6)
    share = 1e-4 if target["isSingular"] else 1e-6
    assert_fixef(fit, case, target["fixef"], target["fixef"]["se"], rel=1e-6, share=share)
    # a singular fit's criterion is flat along the boundary: lme4 stops 1e-5 short there (ours is not worse)
    singular = target["isSingular"]
    assert fit.sigma == pytest.approx(target["sigma"], rel=1e-4 if singular else 1e-5)
    assert fit.loglik >= target["logLik"] - 1e-9 * abs(target["logLik"])


@pytest.mark.parametrize("case", GLMM)
def test_glmm_matches_glmmtmb(case):
    fit, ref = fit_case(case)
    target = ref["glmmTMB"]
    assert fit.loglik == pytest.approx(target["logLik"], rel=1e-5)
    assert_fixef(fit, case, target["fixef"], ref["lme4_tight"]["fixef"]["se"], rel=None, share=2e-3)


def test_contrast_matrices_are_r_s():
    """The codings themselves: contr.poly for an ordered factor, contr.helmert, contr.sum."""
    from bayesmix.design.expressions import Helmert, Poly

    cake = reference("cake_reml")["contrast_matrices"]["temperature"]
    assert np.allclose(Poly.matrix(6), cake["matrix"], atol=1e-14)
    helmert = reference("cake_helmert_reml")["contrast_matrices"]["recipe"]
    assert np.allclose(Helmert.matrix(3), helmert["matrix"])


def test_spline_bases_are_r_s():
    """bs() and ns() give R's basis columns, not only R's column space."""
    for case in ("sleep_bs_ml", "sleep_ns_ml"):
        ref = reference(case)
        model = bayesmix.Model(FORMULA[case], case_data(ref))
        assert np.allclose(model.design.X[:10], ref["results"]["X_head"]["rows"], atol=1e-12)


def test_offset_predictions_read_the_new_data():
    """predict() adds the offset from the new rows, at the population level too (lme4's predict)."""
    fit, ref = fit_case("sleep_offset_reml")
    data = case_data(ref)
    assert np.allclose(fit.predict(), ref["results"]["fitted"], rtol=1e-6)
    assert np.allclose(fit.predict(data, re_form="population"), ref["results"]["predict_population"], rtol=1e-6)
    new = pd.DataFrame({"Days": [0, 3.5, 12], "off": [0.1, 0.2, 0.3], "Subject": ["308", "309", "NEW"]})
    assert np.allclose(fit.predict(new, allow_new_levels=True), ref["results"]["predict_new"], rtol=1e-6)
    poisson, ref = fit_case("cbpp_offset_poisson")  # lme4's default fit: its inner tolerance leaves ~1e-4
    assert np.allclose(poisson.predict(), ref["results"]["fitted"], rtol=1e-3)
