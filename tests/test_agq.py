"""Adaptive Gauss-Hermite quadrature (glmer's nAGQ) against lme4 (tests/data/cbpp_agq.json, made by
tests/data/r/agq_references.R) and against the integral itself, computed by scipy's quad."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats

import bayesmix
from bayesmix import BayesmixError
from bayesmix.exact.glmm import agq_loglik, conditional_mode, fit_glmm
from tests.helpers import fit_via_cli

REFERENCE = json.loads((Path(__file__).parent / "data" / "cbpp_agq.json").read_text())
FORMULA = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


@pytest.fixture(scope="module")
def cbpp():
    return bayesmix.Model(FORMULA, bayesmix.load_dataset("cbpp"), family="binomial")


@pytest.mark.parametrize("reference", REFERENCE["fits"], ids=lambda r: f"nAGQ={r['nAGQ']}")
def test_estimates_match_glmer(cbpp, reference):
    """lme4 stops where the deviance is flat to ~1e-8: our optimum is not worse at lme4's point, and the
    estimates agree to 2e-4 of an SE."""
    fit = cbpp.fit("laplace", nAGQ=reference["nAGQ"])
    ref = reference["fixef"]
    assert np.all(np.abs(fit.fixef["estimate"] - ref["estimate"]) <= 2e-4 * np.asarray(ref["se"]))
    assert np.allclose(fit.fixef["se"], ref["se"], rtol=5e-5)
    assert fit.varcorr[0]["sd"][0] == pytest.approx(reference["sd"], rel=5e-5)
    result = fit_glmm(cbpp.design, cbpp.family, reference["nAGQ"])
    at_lme4 = np.r_[reference["theta"], ref["estimate"]]
    conditional = conditional_mode(result.problem, at_lme4[:1], at_lme4[1:], {}, None)
    assert fit.loglik >= agq_loglik(result.problem, conditional, at_lme4, reference["nAGQ"]) - 1e-9


def test_quadrature_converges_to_the_integral(cbpp):
    """With 25 points each herd's integral equals scipy's adaptive quadrature of it to 1e-9."""
    fit = cbpp.fit("agq", nAGQ=25)
    theta, beta = fit.optimizer.x[:1], fit.optimizer.x[1:]
    design = cbpp.design
    eta = design.X @ beta
    block = design.blocks[0]
    total = 0.0
    for level in range(block.n_levels):
        rows = block.codes == level

        def integrand(u, rows=rows):
            p = 1.0 / (1.0 + np.exp(-(eta[rows] + theta[0] * u)))
            return np.exp(stats.binom.logpmf(design.y[rows], design.trials[rows], p).sum()) * stats.norm.pdf(u)

        total += np.log(integrate.quad(integrand, -12, 12, epsabs=0, epsrel=1e-12, limit=200)[0])
    assert fit.loglik == pytest.approx(total, rel=1e-9)
    assert fit.method == "AGQ" and fit.nagq == 25
    assert "nAGQ = 25" in fit.summary()


def test_one_point_is_laplace(cbpp):
    laplace = cbpp.fit("laplace")
    one = cbpp.fit("agq", nAGQ=1)
    assert one.loglik == laplace.loglik and one.method == "Laplace" and one.nagq == 1


def test_where_quadrature_does_not_apply(cbpp):
    sleep = bayesmix.load_dataset("sleepstudy").assign(slow=lambda d: (d.Reaction > 300).astype(int))
    slopes = bayesmix.Model("slow ~ Days + (Days | Subject)", sleep, family="bernoulli")
    with pytest.raises(BayesmixError, match="single scalar random-effect term"):
        slopes.fit("agq", nAGQ=5)
    with pytest.raises(BayesmixError, match="whole number"):
        cbpp.fit("agq", nAGQ=0)
    with pytest.raises(BayesmixError, match="nAGQ is for GLMM fits"):
        bayesmix.Model("Reaction ~ Days + (1 | Subject)", sleep).fit("reml", nAGQ=5)


def test_cli_and_json(tmp_path):
    code, payload = fit_via_cli(tmp_path, "cbpp", FORMULA, "--family", "binomial", "--method", "laplace", "--nagq", "5")
    assert code == 0 and payload["method"] == "agq" and payload["nAGQ"] == 5
    code, payload = fit_via_cli(tmp_path, "cbpp", FORMULA, "--family", "binomial", "--method", "laplace")
    assert code == 0 and payload["method"] == "laplace" and payload["nAGQ"] == 1


def test_save_and_load_keep_the_quadrature(tmp_path, cbpp):
    fit = cbpp.fit("agq", nAGQ=5)
    loaded = bayesmix.load(fit.save(tmp_path / "agq.nc"))
    assert loaded.nagq == 5 and loaded.method == "AGQ" and loaded.loglik == fit.loglik
