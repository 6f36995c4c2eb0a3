"""Exact ML/REML against lme4 (tests/data/*.json, computed in R; provenance in tests/data/PROVENANCE.md).

Two layers:
- the algebra, at lme4's own theta: the criterion, beta, SEs, sigma, SDs, correlations, BLUPs and
  their conditional SDs are deterministic functions of theta and must match lme4 to ~1e-9;
- the optimiser: our optimum's criterion is never worse than lme4's (to 1e-10 relative), the exact
  gradient vanishes there (to 1e-8), and the estimates agree with glmmTMB to 5e-6 relative, which
  is glmmTMB's own resolution. lme4's estimates stop 1e-5 to 1e-4 short of the optimum (BOBYQA on a
  criterion flat to its rounding noise over theta moves of ~1e-5; its criterion at its theta is
  higher than ours), so they are compared at 2e-4.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import bayesmix
from bayesmix import BayesmixError
from bayesmix.exact.lmm import cross_products, factorize, gradient, objective, solve
from bayesmix.mixedfit import from_lmm

DATA = Path(__file__).parent / "data"
CASES = {
    "sleep_reml": "sleepstudy",
    "sleep_ml": "sleepstudy",
    "sleep_uncorr_reml": "sleepstudy",
    "sleep_intercept_ml": "sleepstudy",
    "penicillin_reml": "Penicillin",
    "pastes_reml": "Pastes",
    "dyestuff_reml": "Dyestuff",
    "dyestuff2_ml": "Dyestuff2",
    "orthodont_reml": "Orthodont",
}


def reference(case):
    return json.loads((DATA / f"{case}.json").read_text())


def lme4_name(name: str) -> str:
    return "(Intercept)" if name == "Intercept" else name.replace("[", "").replace("]", "")


def lme4_group(group: str) -> str:
    return ":".join(reversed(group.split(":")))  # lme4 prints the nested group batch:cask as cask:batch


def model_for(case):
    ref = reference(case)
    return bayesmix.Model(ref["formula"], bayesmix.load_dataset(CASES[case])), ref


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12), initial=0.0)


def varcorr_by_lme4_order(fit, ref_varcorr):
    """Our varcorr entries matched to lme4's (by group and terms)."""
    ours = {(lme4_group(v["group"]), tuple(map(lme4_name, v["terms"]))): v for v in fit.varcorr}
    out = []
    for v in ref_varcorr:
        group = v["group"].split(".")[0]  # lme4 writes Subject.1 for a second block of Subject
        out.append(ours[(group, tuple(v["terms"]))])
    return out


def check_ranef(fit, ref_ranef, tolerance):
    for group, ref in ref_ranef.items():
        ours = fit.ranef[next(g for g in fit.ranef if lme4_group(g) == group)]
        for term in ref["terms"]:
            name = "Intercept" if term == "(Intercept)" else term
            part = ours.xs(name, level="term").reindex([lme4_group(level) for level in ref["levels"]])
            spread = np.std(ref["condval"][term]) or 1.0
            assert np.max(np.abs(part.condval - ref["condval"][term])) <= tolerance * spread
            assert np.max(np.abs(part.condsd - ref["condsd"][term])) <= tolerance * np.mean(ref["condsd"][term])


@pytest.mark.parametrize("case", CASES)
def test_algebra_at_lme4_theta(case):
    model, ref = model_for(case)
    r = ref["results"]
    reml = ref["method"] == "REML"
    cp = cross_products(model.design)
    theta = np.array(r["theta"]["values"], float)
    f = factorize(cp, theta)
    assert objective(cp, theta, reml) == pytest.approx(r["REMLcrit"] if reml else r["deviance"], rel=1e-10)
    dc = r["devcomp_cmp"]
    assert f.ldL2 == pytest.approx(dc["ldL2"], rel=1e-9, abs=1e-9)
    assert f.pwrss == pytest.approx(dc["pwrss"], rel=1e-9)
    assert f.ldRX2 == pytest.approx(dc["ldRX2"], rel=1e-9, abs=1e-9)
    sol = solve(cp, f, reml)
    assert rel(sol.beta, r["fixef"]["estimate"]) < 1e-9
    assert rel(np.sqrt(np.diag(sol.vcov)), r["fixef"]["se"]) < 1e-9
    assert sol.sigma == pytest.approx(r["sigma"], rel=1e-9)
    # BLUPs and conditional SDs: build a MixedFit at lme4's theta
    from bayesmix.exact.lmm import LmmResult
    from bayesmix.exact.optimize import OptimizerSummary

    summary = OptimizerSummary(theta, 0.0, 0, np.zeros_like(theta), True, "fixed theta")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = from_lmm(model.design, model.family, LmmResult(reml, cp, f, sol, summary, model.design.fixed_names, ()))
    for ours, theirs in zip(varcorr_by_lme4_order(fit, r["varcorr"]), r["varcorr"]):
        assert rel(ours["sd"], theirs["sd"]) < 1e-9
        assert np.max(np.abs(np.asarray(ours["corr"]) - theirs["corr"])) < 1e-9
    check_ranef(fit, r["ranef"], 1e-8)
    assert fit.loglik == pytest.approx(r["logLik"], rel=1e-10)
    assert fit.deviance == pytest.approx(r["deviance"], rel=1e-10)
    assert fit.aic == pytest.approx(r["AIC"], rel=1e-10) and fit.bic == pytest.approx(r["BIC"], rel=1e-10)


@pytest.mark.parametrize("case", CASES)
def test_optimum_matches_lme4_and_glmmtmb(case):
    model, ref = model_for(case)
    r, tmb = ref["results"], ref["glmmTMB"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = model.fit(method=ref["method"].lower())
    target = r["REMLcrit"] if ref["method"] == "REML" else r["deviance"]
    ours = fit.reml_criterion if ref["method"] == "REML" else fit.deviance
    assert ours <= target * (1 + 1e-10)  # never a worse optimum than lme4's
    assert ours == pytest.approx(target, rel=1e-9)
    assert fit.loglik == pytest.approx(r["logLik"], rel=1e-9)
    assert fit.converged and fit.nobs == r["nobs"]
    assert {lme4_group(g): n for g, n in fit.ngrps.items()} == r["ngrps"]
    assert list(map(lme4_name, fit.fixef.index)) == r["fixef"]["names"]
    # our optimum is a zero of the exact gradient (projected: at a singular fit the bound holds);
    # glmmTMB stops within ~3e-6 of it. At a singular fit glmmTMB stops off the boundary, where lme4
    # lands exactly (and so do we).
    assert np.max(np.abs(fit.optimizer.gradient)) < 1e-8
    best = r if r["isSingular"] else tmb
    tolerance = 1e-9 if r["isSingular"] else 5e-6
    assert rel(fit.fixef.estimate, best["fixef"]["estimate"]) < tolerance
    if ref["method"] == "ML":  # glmmTMB's REML SEs are computed differently (Orthodont: 1% apart from lme4's)
        assert rel(fit.fixef.se, best["fixef"]["se"]) < tolerance
    assert rel(fit.fixef.se, r["fixef"]["se"]) < 2e-4
    assert fit.sigma == pytest.approx(best["sigma"], rel=tolerance)
    our_sds = np.concatenate([v["sd"] for v in fit.varcorr])
    assert rel(np.sort(our_sds), np.sort(np.concatenate([v["sd"] for v in best["varcorr"]]))) < tolerance
    for ours_vc, lme4_vc in zip(varcorr_by_lme4_order(fit, r["varcorr"]), r["varcorr"]):
        assert np.allclose(ours_vc["sd"], lme4_vc["sd"], rtol=2e-4, atol=1e-6)
        assert np.max(np.abs(np.asarray(ours_vc["corr"]) - lme4_vc["corr"])) < 2e-4
    assert rel(fit.fixef.estimate, r["fixef"]["estimate"]) < 2e-4
    check_ranef(fit, r["ranef"], 5e-4)  # lme4 stops short: Orthodont slope BLUPs move 2e-4 of their spread
    assert fit.is_singular == r["isSingular"]
    assert any(issubclass(w.category, bayesmix.SingularFitWarning) for w in caught) == r["isSingular"]
    assert fit.theta.index.tolist() == [lme4_theta_name(n) for n in r["theta"]["names"]] or len(fit.theta) == len(
        r["theta"]["names"]
    )
    assert np.allclose(fit.theta.values, r["theta"]["values"], atol=2e-4)


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize(
    "dataset, formula",
    [
        ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
        ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
        ("Pastes", "strength ~ 1 + (1 | batch/cask)"),
        ("Orthodont", "distance ~ age + (age | Subject) + (age | Sex)"),
    ],
)
def test_exact_gradient_matches_differences(dataset, formula, reml):
    """The forward-mode gradient against central differences of the criterion, away from the optimum."""
    cp = cross_products(bayesmix.Model(formula, bayesmix.load_dataset(dataset)).design)
    theta = cp.layout.start() + 0.3 * np.random.default_rng(0).random(cp.layout.n_theta)
    exact = gradient(cp, theta, reml)
    differences = np.empty_like(exact)
    for i in range(len(theta)):
        up, down = theta.copy(), theta.copy()
        up[i] += 1e-5
        down[i] -= 1e-5
        differences[i] = (objective(cp, up, reml) - objective(cp, down, reml)) / 2e-5
    # the differences carry ~1e-9 / 1e-5 of rounding and 1e-10 of truncation error (measured: <= 2.6e-6)
    np.testing.assert_allclose(exact, differences, rtol=2e-5, atol=2e-5)
    assert np.max(np.abs(exact)) > 0.1  # a point where the gradient is not small


def test_optimum_does_not_depend_on_row_order():
    """Rows in another order change the cross-products' rounding (~1e-13); BOBYQA alone then stopped
    up to ~1e-5 away, the gradient polish lands on the same optimum to ~1e-12."""
    data = bayesmix.load_dataset("Pastes")
    shuffled = data.sample(frac=1.0, random_state=3)
    a = bayesmix.Model("strength ~ 1 + (1 | batch/cask)", data).fit("reml")
    b = bayesmix.Model("strength ~ 1 + (1 | batch/cask)", shuffled).fit("reml")
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-10)
    assert a.sigma == pytest.approx(b.sigma, rel=1e-10)


@pytest.mark.parametrize("method", ["reml", "ml"])
@pytest.mark.parametrize("factor", [1e8, 1e-7])
def test_extreme_column_scales_fit_as_in_natural_units(method, factor):
    """Days in units of 1e8 or 1e-7 days: columns are rescaled by powers of two inside the fit (it
    failed at 1e8 before) and the estimates come back in the user's units, equal to the Days fit's;
    a tiny slope SD is not mistaken for a singular fit."""
    data = bayesmix.load_dataset("sleepstudy").assign(Scaled=lambda d: d.Days * factor)
    natural = bayesmix.Model("Reaction ~ Days + (Days | Subject)", data).fit(method)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scaled = bayesmix.Model("Reaction ~ Scaled + (Scaled | Subject)", data).fit(method)
    units = np.array([1.0, 1.0 / factor])
    np.testing.assert_allclose(scaled.fixef.estimate.to_numpy(), natural.fixef.estimate.to_numpy() * units, rtol=1e-10)
    np.testing.assert_allclose(scaled.fixef.se.to_numpy(), natural.fixef.se.to_numpy() * units, rtol=1e-9)
    np.testing.assert_allclose(scaled.varcorr[0]["sd"], natural.varcorr[0]["sd"] * units, rtol=1e-9)
    np.testing.assert_allclose(scaled.varcorr[0]["corr"], natural.varcorr[0]["corr"], rtol=1e-9)
    np.testing.assert_allclose(
        scaled.ranef["Subject"].condval.to_numpy().reshape(-1, 2),
        natural.ranef["Subject"].condval.to_numpy().reshape(-1, 2) * units,
        rtol=1e-8,
    )
    assert scaled.sigma == pytest.approx(natural.sigma, rel=1e-10)
    assert scaled.deviance == pytest.approx(natural.deviance, rel=1e-12)
    if method == "reml":  # the REML criterion depends on X's units: log|X'V^-1 X| shifts by 2 log(factor)
        assert scaled.reml_criterion == pytest.approx(natural.reml_criterion + 2 * np.log(factor), rel=1e-12)
    assert not scaled.is_singular and scaled.converged


def test_columns_at_ordinary_scales_are_not_rescaled():
    from bayesmix.exact.lmm import column_scales

    cp = cross_products(
        bayesmix.Model("Reaction ~ Days + (Days | Subject)", bayesmix.load_dataset("sleepstudy")).design
    )
    assert column_scales(cp).trivial()


def lme4_theta_name(name):
    return name.replace("(Intercept)", "Intercept")


def test_json_contract_from_fit():
    model, ref = model_for("sleep_reml")
    out = model.fit("reml").to_dict()
    assert list(out)[:7] == ["formula", "family", "link", "method", "nAGQ", "nobs", "ngrps"]
    assert out["method"] == "reml" and out["REMLcrit"] == pytest.approx(ref["results"]["REMLcrit"], rel=1e-9)
    assert out["isSingular"] is False and out["diagnostics"] is None
    assert out["varcorr"][0]["terms"] == ["Intercept", "Days"]
    json.dumps(out, allow_nan=False)
    assert "Random effects" in model.fit("ml").summary()


def test_fit_errors():
    model, _ = model_for("sleep_reml")
    with pytest.raises(BayesmixError, match="Unknown method 'rmel'.*Did you mean 'reml'"):
        model.fit("rmel")
    data = bayesmix.load_dataset("cbpp")
    glmm = bayesmix.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", data, family="binomial")
    with pytest.raises(BayesmixError, match="needs a gaussian family"):
        glmm.fit("reml")


def test_rank_deficient_columns_are_dropped_and_named():
    data = bayesmix.load_dataset("sleepstudy").assign(Days2=lambda d: 2 * d.Days)
    model = bayesmix.Model("Reaction ~ Days + Days2 + (Days | Subject)", data)
    with pytest.warns(bayesmix.RankDeficientWarning, match="Days2"):
        fit = model.fit("reml")
    assert list(fit.fixef.index) == ["Intercept", "Days"]
    assert fit.reml_criterion == pytest.approx(reference("sleep_reml")["results"]["REMLcrit"], rel=1e-9)
