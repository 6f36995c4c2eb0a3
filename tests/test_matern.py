"""glmmTMB's Matérn structure ``mat(pos + 0 | group)``, its range and smoothness estimated: the
correlation (an integral for the Bessel function, differentiable in the smoothness) against
SciPy's ``kv`` and its derivatives against finite differences; the exact fits against glmmTMB
(tests/data/matern_references.json, tests/data/r/matern_references.R); the sampler's graph
evaluates the same correlation."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import gammaln, kv

import bayesmix
from bayesmix.design.matern import log_matern, matern_correlation, matern_derivatives

DATA = Path(__file__).parent / "data"
REFERENCES = json.loads((DATA / "matern_references.json").read_text())
CASES = {
    "mat_gaussian_reml": ("y ~ x + mat(0 + pos | group)", "gaussian", "reml"),
    "mat_gaussian_ml": ("y ~ x + mat(0 + pos | group)", "gaussian", "ml"),
    "mat_poisson": ("count ~ x + mat(0 + pos | group)", "poisson", "laplace"),
}


@pytest.fixture(scope="module")
def data():
    frame = pd.read_csv(DATA / "matern_sim.csv").assign(group="field")
    return frame.assign(pos=bayesmix.num_factor(frame["x1"], frame["x2"]))


@pytest.fixture(scope="module")
def distances():
    points = np.random.default_rng(0).uniform(0.0, 10.0, (12, 2))
    return np.sqrt(((points[:, None] - points[None]) ** 2).sum(axis=-1))


def test_correlation_is_the_bessel_functions(distances):
    """The quadrature (the sampler's) and the exact engine's values agree with 2^(1-k)/Gamma(k)
    x^k K_k(x) from SciPy over ranges and smoothnesses far apart; kappa = 1/2 is exp(-d / r)."""
    upper = np.triu_indices(len(distances), 1)
    for r in (1e-3, 0.3, 2.0, 50.0, 1e4):
        for kappa in (0.05, 0.5, 1.0, 3.0, 20.0):
            x = distances[upper] / r
            with np.errstate(over="ignore", invalid="ignore"):
                scipy = np.exp((1 - kappa) * np.log(2) - gammaln(kappa) + kappa * np.log(x)) * kv(kappa, x)
            finite = np.isfinite(scipy)
            quadrature = np.exp(log_matern(x, kappa, gammaln)[0])
            np.testing.assert_allclose(quadrature[finite], scipy[finite], atol=1e-13)
            np.testing.assert_allclose(matern_correlation(distances, r, kappa)[upper], quadrature, atol=1e-13)
    np.testing.assert_allclose(matern_correlation(distances, 2.0, 0.5), np.exp(-distances / 2.0), atol=1e-15)


@pytest.mark.parametrize(("r", "kappa"), [(2.0, 1.0), (0.5, 0.3), (8.0, 3.0)])
def test_derivatives_are_the_correlations(distances, r, kappa):
    by_range, by_smoothness = matern_derivatives(distances, r, kappa)
    h = 1e-6
    numeric_range = (
        matern_correlation(distances, r * np.exp(h), kappa) - matern_correlation(distances, r * np.exp(-h), kappa)
    ) / (2 * h)
    numeric_smoothness = (
        matern_correlation(distances, r, kappa * np.exp(h)) - matern_correlation(distances, r, kappa * np.exp(-h))
    ) / (2 * h)
    np.testing.assert_allclose(by_range, numeric_range, atol=1e-8)
    np.testing.assert_allclose(by_smoothness, numeric_smoothness, atol=1e-8)


@pytest.mark.parametrize("case", list(CASES))
def test_exact_fits_are_glmmtmbs(data, case):
    formula, family, method = CASES[case]
    reference = REFERENCES["cases"][case]
    fit = bayesmix.Model(formula, data, family=family).fit(method)
    result = fit.to_dict()
    assert result["logLik"] == pytest.approx(reference["results"]["logLik"], rel=1e-10)
    block = result["varcorr"][0]
    assert block["structure"] == "mat"
    assert block["sd"][0] == pytest.approx(reference["sd"], rel=1e-4)
    assert block["range"] == pytest.approx(reference["range"], rel=1e-4)
    assert block["smoothness"] == pytest.approx(reference["smoothness"], rel=1e-4)
    fixef = reference["results"]["fixef"]
    np.testing.assert_allclose(result["fixef"]["estimate"], fixef["estimate"], rtol=1e-5, atol=1e-6)
    # a gaussian fit's se given the covariance parameters, as lme4's (glmmTMB's own sdreport se
    # also carries their uncertainty: the references' GLS se is lme4's); a Laplace fit's glmmTMB's
    se = reference["results"]["gls"]["se"] if family == "gaussian" else fixef["se"]
    np.testing.assert_allclose(result["fixef"]["se"], se, rtol=1e-4)
    if family == "gaussian":
        assert result["sigma"] == pytest.approx(reference["sigma"], rel=1e-6)
    modes = fit.ranef["group"].xs("field", level="level")["condval"]
    expected = dict(zip(reference["field_modes"]["column_names"], reference["field_modes"]["mode"]))
    ours = {name.replace("[", "").replace("]", ""): value for name, value in modes.items()}
    np.testing.assert_allclose([ours[name] for name in expected], list(expected.values()), atol=1e-4)
    assert "range 4.41, smoothness 0.679 (mat)" in str(fit) or case != "mat_gaussian_reml"


def test_the_sampler_evaluates_the_same_correlation(data):
    """The PyMC graph's correlation at the exact fit's range and smoothness is the exact engine's."""
    import pytensor.tensor as pt

    model = bayesmix.Model("y ~ x + mat(0 + pos | group)", data)
    fit = model.fit()
    distances = model.design.blocks[0].covariance.distances
    r, kappa = fit.varcorr[0]["range"], fit.varcorr[0]["smoothness"]
    upper = np.triu_indices(len(distances), 1)
    graph = pt.exp(log_matern(pt.as_tensor(distances[upper]) / r, pt.as_tensor(kappa), pt.gammaln, xp=pt)[0])
    np.testing.assert_allclose(graph.eval(), matern_correlation(distances, r, kappa)[upper], atol=1e-13)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = model.pymc_model().named_vars
    assert {"range_group", "smoothness_group", "chol_group"} <= set(names)


def test_bad_input_is_refused(data):
    with pytest.raises(bayesmix.BayesmixError, match="position"):
        bayesmix.Model("y ~ x + mat(0 + site | group)", data)
