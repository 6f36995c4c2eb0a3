"""anova: likelihood-ratio tests and AIC/BIC tables of exact fits, checked against lme4."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chi2

import bayesmix
from bayesmix import BayesmixError

DATA = Path(__file__).parent / "data"


def reference(case):
    return json.loads((DATA / f"{case}.json").read_text())["results"]


@pytest.fixture(scope="module")
def sleep():
    return bayesmix.load_dataset("sleepstudy")


def fit(formula, data, method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayesmix.Model(formula, data).fit(method)


def test_ml_likelihood_ratio_test_matches_lme4(sleep):
    slope = fit("Reaction ~ Days + (Days | Subject)", sleep, "ml")
    intercept = fit("Reaction ~ Days + (1 | Subject)", sleep, "ml")
    table = bayesmix.anova(slope=slope, intercept=intercept)  # sorted by npar, whatever the order given
    assert list(table.index) == ["intercept", "slope"]
    assert list(table.columns) == ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]
    small, big = reference("sleep_intercept_ml"), reference("sleep_ml")
    assert table["npar"].tolist() == [4, 6]
    np.testing.assert_allclose(table["logLik"], [small["logLik"], big["logLik"]], rtol=1e-9)
    np.testing.assert_allclose(table["AIC"], [small["AIC"], big["AIC"]], rtol=1e-9)
    np.testing.assert_allclose(table["BIC"], [small["BIC"], big["BIC"]], rtol=1e-9)
    np.testing.assert_allclose(table["deviance"], [small["deviance"], big["deviance"]], rtol=1e-9)
    chisq = 2 * (big["logLik"] - small["logLik"])  # 42.14 on 2 df
    assert table["Chisq"].iloc[1] == pytest.approx(chisq, rel=1e-7)
    assert table["Df"].iloc[1] == 2
    assert table["Pr(>Chisq)"].iloc[1] == pytest.approx(chi2.sf(chisq, 2), rel=1e-6)
    assert np.isnan(table["Chisq"].iloc[0]) and np.isnan(table["Pr(>Chisq)"].iloc[0])
    assert table.attrs["method"] == "ML"


def test_reml_fits_with_the_same_fixed_effects_compare_random_structures(sleep):
    corr = fit("Reaction ~ Days + (Days | Subject)", sleep, "reml")
    uncorr = fit("Reaction ~ Days + (Days || Subject)", sleep, "reml")
    table = bayesmix.anova(corr, uncorr)
    assert list(table.index) == ["model2", "model1"]
    a, b = reference("sleep_uncorr_reml"), reference("sleep_reml")
    np.testing.assert_allclose(table["logLik"], [a["logLik"], b["logLik"]], rtol=1e-9)
    assert table["Chisq"].iloc[1] == pytest.approx(2 * (b["logLik"] - a["logLik"]), rel=1e-4)
    assert table.attrs["method"] == "REML"


def test_reml_fits_with_different_fixed_effects_are_refused_or_refitted(sleep):
    full = fit("Reaction ~ Days + (Days | Subject)", sleep, "reml")
    null = fit("Reaction ~ 1 + (Days | Subject)", sleep, "reml")
    with pytest.raises(BayesmixError, match="REML likelihoods are not comparable.*method='ml'.*refit=True"):
        bayesmix.anova(full, null)
    table = bayesmix.anova(full, null, refit=True)
    assert table.attrs["method"] == "ML"
    assert table["logLik"].iloc[1] == pytest.approx(reference("sleep_ml")["logLik"], rel=1e-9)
    assert table["Df"].iloc[1] == 1 and table["Pr(>Chisq)"].iloc[1] < 1e-5  # Days matters (chi-square 23.5)


def test_what_anova_refuses(sleep):
    reml = fit("Reaction ~ Days + (Days | Subject)", sleep, "reml")
    ml = fit("Reaction ~ Days + (1 | Subject)", sleep, "ml")
    with pytest.raises(BayesmixError, match="cannot compare REML and ML"):
        bayesmix.anova(reml, ml)
    fewer = fit("Reaction ~ Days + (1 | Subject)", sleep.iloc[:-1], "ml")
    with pytest.raises(BayesmixError, match="different data"):
        bayesmix.anova(ml, fewer)
    with pytest.raises(BayesmixError, match="one fit .its type III table. or several"):
        bayesmix.anova()
    assert list(bayesmix.anova(ml).index) == ["Days"]  # one fit: its type III table (tests/test_satterthwaite.py)
    with pytest.raises(BayesmixError, match="az.compare"):
        bayesmix.anova(ml, bayesmix.Model("Reaction ~ Days + (1 | Subject)", sleep))
    cbpp = bayesmix.load_dataset("cbpp")
    glmm = bayesmix.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")
    gauss = fit("incidence ~ period + (1 | herd)", cbpp, "ml")
    with pytest.raises(BayesmixError, match="different data|different families"):
        bayesmix.anova(glmm.fit("laplace"), gauss)
