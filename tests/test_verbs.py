"""lme4's verbs on exact fits (issue 23): coef, fitted, residuals and simulate, against lme4
(tests/data/r/verbs_references.R, provenance in tests/data/PROVENANCE.md) on sleepstudy (lmer),
cbpp (binomial glmer) and grouseticks (Poisson glmer, crossed broods and locations)."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix

ROOT = Path(__file__).parent.parent
CASES = json.loads((ROOT / "tests" / "data" / "verbs_references.json").read_text())["cases"]
MODELS = {
    "sleep": ("bayesmix/datasets/sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", "gaussian"),
    "cbpp": ("bayesmix/datasets/cbpp.csv", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial"),
    "grouse": ("tests/data/grouseticks.csv", "TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | LOCATION)", "poisson"),
}


# lmer's default optimum (sleepstudy) sits ~1e-5 from the REML optimum in theta; the glmer fits are tight
TOLERANCE = {"sleep": 1e-4, "cbpp": 1e-5, "grouse": 1e-5}


@pytest.fixture(scope="module")
def fits() -> dict:
    out = {}
    for case, (path, formula, family) in MODELS.items():
        data = pd.read_csv(ROOT / path)
        levels = {name: [str(v) for v in values] for name, values in CASES[case]["factor_levels"].items()}
        used = {name: order for name, order in levels.items() if name in formula}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bayesmix.MissingDataWarning)
            out[case] = bayesmix.Model(
                formula, data.astype({n: str for n in used}), family=family, categorical=used
            ).fit()
    return out


@pytest.mark.parametrize("case", list(MODELS))
def test_coef_and_fitted_are_lme4s(fits, case):
    fit, ref = fits[case], CASES[case]
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-7)
    for group, table in ref["coef"].items():
        ours = fit.coef()[group]
        assert list(ours.index) == table["levels"] and ours.shape == np.shape(table["values"])
        np.testing.assert_allclose(ours.to_numpy(), table["values"], rtol=TOLERANCE[case], atol=1e-4)
    np.testing.assert_allclose(fit.fitted(), ref["fitted"], rtol=TOLERANCE[case], atol=1e-8)


@pytest.mark.parametrize("case", list(MODELS))
def test_residuals_are_lme4s(fits, case):
    fit, ref = fits[case], CASES[case]["residuals"]
    for kind in ("response", "pearson", "deviance"):
        np.testing.assert_allclose(fit.residuals(kind), ref[kind], rtol=TOLERANCE[case], atol=1e-4, err_msg=kind)
    if "scaled" in ref:  # an lmer's residuals over sigma
        np.testing.assert_allclose(fit.residuals(scaled=True), ref["scaled"], rtol=TOLERANCE[case], atol=1e-5)
    else:
        with pytest.raises(bayesmix.BayesmixError, match="has none"):
            fit.residuals(scaled=True)


def test_simulate_draws_the_fitted_model(fits):
    """Means and variances of many simulated responses against lme4's Monte-Carlo summary (the
    draws differ; 4000 here and 2000 there, so within 5 of their combined standard errors)."""
    fit, ref = fits["grouse"], CASES["grouse"]["simulate"]
    rows = np.asarray(ref["rows"]) - 1
    for form, key in (("population", "new_re"), ("conditional", "conditional")):
        sims = fit.simulate(4000, seed=2, re_form=form).to_numpy()[rows]
        expected, variance = np.asarray(ref[key]["mean"]), np.asarray(ref[key]["var"])
        error = np.sqrt(variance / 2000 + sims.var(axis=1) / 4000)
        assert np.all(np.abs(sims.mean(axis=1) - expected) < 5 * error), form
    table = fits["sleep"].simulate(3, seed=1)
    assert list(table.columns) == ["sim_1", "sim_2", "sim_3"] and len(table) == 180
    pd.testing.assert_frame_equal(table, fits["sleep"].simulate(3, seed=1))
    assert bayesmix.simulate is not None and bayesmix.coef(fits["sleep"])["Subject"].shape == (18, 2)


def test_the_verbs_say_what_they_read(fits):
    with pytest.raises(bayesmix.BayesmixError, match="not a residual type"):
        fits["cbpp"].residuals("working")
    with pytest.raises(bayesmix.BayesmixError, match="re_form"):
        fits["cbpp"].simulate(2, re_form="marginal")
    model = bayesmix.Model("Reaction ~ Days + (1 | Subject)", pd.read_csv(ROOT / MODELS["sleep"][0]))
    with pytest.raises(bayesmix.BayesmixError, match="reads an exact fit"):
        bayesmix.coef(model)


def test_update_formula_is_rs():
    from bayesmix.design.formula import update_formula

    assert update_formula("y ~ x + (1 | g)", ". ~ . + z - (1|g) + (z | g)") == "y ~ x + z + (z | g)"
    assert update_formula("y ~ x + (1 | g)", "log(.) ~ .") == "log(y) ~ x + (1 | g)"
    assert update_formula("y ~ x + (1 | g)", ". ~ . - 1") == "y ~ x + (1 | g) - 1"
    with pytest.raises(bayesmix.BayesmixError, match="leaves no terms"):
        update_formula("y ~ x", ". ~ . - x")


def test_update_refits_with_the_same_arguments(fits, tmp_path):
    """lme4's update: the LRT of Days (lme4: Chisq 23.537 on 1 df), from one fit and its updates."""
    fit = fits["sleep"]
    ml = fit.update(method="ml")
    smaller = ml.update(". ~ . - Days")
    assert smaller.design.spec.text == "Reaction ~ (Days | Subject)" and smaller.method == "ML"
    table = bayesmix.anova(smaller, ml)
    assert table["Chisq"].iloc[1] == pytest.approx(23.5365, abs=1e-3)
    binomial = fits["cbpp"].update(". ~ . - period")
    assert binomial.family.name == "binomial" and list(binomial.fixef.index) == ["Intercept"]
    fit.save(tmp_path / "sleep.nc")
    assert bayesmix.load(tmp_path / "sleep.nc").update(". ~ . - Days").fixef.index.tolist() == ["Intercept"]
    with pytest.raises(bayesmix.BayesmixError, match="does not take"):
        fit.update(familly="poisson")
