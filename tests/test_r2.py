"""Nakagawa's R² and the ICC (issue 23, item 5) against performance::r2_nakagawa and performance::icc
(tests/data/r/r2_references.R, provenance in tests/data/PROVENANCE.md): a random slope (Johnson's
extension), a random intercept, binomial logit and probit; the sampler's per-draw values; errors."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix.errors import BayesmixError

REFERENCES = json.loads((Path(__file__).parent / "data" / "r2_references.json").read_text())
CASES = {
    "sleepstudy_slope": ("Reaction ~ Days + (Days | Subject)", "sleepstudy", "gaussian", None),
    "sleepstudy_intercept": ("Reaction ~ Days + (1 | Subject)", "sleepstudy", "gaussian", None),
    "cbpp_logit": ("cbind(incidence, size - incidence) ~ period + (1 | herd)", "cbpp", "binomial", "logit"),
    "cbpp_probit": ("cbind(incidence, size - incidence) ~ period + (1 | herd)", "cbpp", "binomial", "probit"),
}


@pytest.mark.parametrize("case", CASES)
def test_matches_performance(case):
    formula, dataset, family, link = CASES[case]
    fit = bayesmix.Model(formula, bayesmix.load_dataset(dataset), family=family, link=link).fit()
    ref = REFERENCES[case]
    r2, icc = bayesmix.r2(fit), bayesmix.icc(fit)
    assert r2["marginal"] == pytest.approx(ref["marginal"], rel=1e-4)
    assert r2["conditional"] == pytest.approx(ref["conditional"], rel=1e-4)
    assert icc["adjusted"] == pytest.approx(ref["icc_adjusted"], rel=1e-4)
    assert icc["unadjusted"] == pytest.approx(ref["icc_unadjusted"], rel=1e-4)


def test_sampled_model_gives_draws_and_their_summary():
    model = bayesmix.Model("Reaction ~ Days + (1 | Subject)", bayesmix.load_dataset("sleepstudy"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.sample(draws=300, tune=300, chains=2, random_seed=1, progressbar=False)
    r2 = bayesmix.r2(model)
    draws = r2["draws"]["conditional"]
    assert draws.shape == (600,) and np.all((draws > 0) & (draws < 1))
    summary = r2["summary"]
    assert list(summary.columns) == ["estimate", "se", "lower", "upper"]
    exact = REFERENCES["sleepstudy_intercept"]
    for name, key in (("marginal", "marginal"), ("conditional", "conditional")):
        row = summary.loc[name]
        assert abs(row.estimate - exact[key]) < 2 * row.se, name  # the posterior near the REML estimate
    icc = bayesmix.icc(model)["summary"].loc["adjusted"]
    assert icc.lower < exact["icc_adjusted"] < icc.upper


def test_refuses_what_it_does_not_cover():
    counts = pd.DataFrame({"y": np.arange(20) % 4, "g": np.repeat(list("abcde"), 4)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a singular fit: beside the point here
        fit = bayesmix.Model("y ~ 1 + (1 | g)", counts, family="negativebinomial1").fit()
    with pytest.raises(BayesmixError, match="not for family='negativebinomial1'"):
        bayesmix.r2(fit)
    with pytest.raises(BayesmixError, match="not been sampled"):
        bayesmix.r2(bayesmix.Model("y ~ 1 + (1 | g)", counts.assign(y=counts.y * 1.5)))


COUNTS = json.loads((Path(__file__).parent / "data" / "r2_count_references.json").read_text())


def _count_fit(case: str):
    data_dir = Path(__file__).parent / "data"
    if case == "grouseticks_poisson":
        data = pd.read_csv(data_dir / "grouseticks.csv", dtype={"BROOD": str, "YEAR": str, "LOCATION": str})
        model = bayesmix.Model("TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | LOCATION)", data, family="poisson")
    elif case == "salamanders_nbinom2":
        data = pd.read_csv(data_dir / "salamanders_mined.csv", dtype={"site": str})
        model = bayesmix.Model("count ~ mined + (1 | site)", data, family="negativebinomial")
    else:
        data = pd.read_csv(data_dir / "gamma_log.csv", dtype={"g": str})
        model = bayesmix.Model("y ~ x + (1 | g)", data, family="gamma")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit()


@pytest.mark.parametrize("case", ["grouseticks_poisson", "salamanders_nbinom2", "gamma_log"])
def test_count_and_gamma_r2_are_performances(case):
    """performance 0.10.2 / insight 0.19.0 (tests/data/r/r2_count_references.R): poisson (crossed,
    glmer at tight tolerances), nbinom2 (glmmTMB, polished to its optimum by Newton steps) and gamma
    (glmmTMB, whose ML shape our Laplace fit shares; glmer's gamma is a quasi fit with another sigma)."""
    ref = COUNTS[case]
    if case == "salamanders_nbinom2":
        ref = ref["newton_polish"]
    elif case == "gamma_log":
        check = ref["glmmTMB_check"]
        ref = {
            "marginal": check["r2_nakagawa"]["R2_marginal"],
            "conditional": check["r2_nakagawa"]["R2_conditional"],
            "icc_adjusted": check["icc"]["ICC_adjusted"],
            "icc_unadjusted": check["icc"]["ICC_unadjusted"],
        }
    fit = _count_fit(case)
    r2, icc = bayesmix.r2(fit), bayesmix.icc(fit)
    expected = [float(ref[k]) for k in ("marginal", "conditional", "icc_adjusted", "icc_unadjusted")]
    rtol = 1e-6 if case == "salamanders_nbinom2" else 1e-5  # glmer's and glmmTMB's stopping points
    np.testing.assert_allclose(
        [r2["marginal"], r2["conditional"], icc["adjusted"], icc["unadjusted"]], expected, rtol=rtol
    )
