"""Penalised smooths s(x) against gamm4 (tests/data/smooth_references.json, written by
tests/data/r/smooth_references.R: mgcv's bases, and gamm4's REML and Laplace fits with tight
tolerances): the bases equal mgcv's, the fits gamm4's, the band mgcv's se.fit; NUTS agrees with
the exact fit; bad input is refused with the fix."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix.after.smooth_band import smooth_prediction_se
from bayesmix.design.encode import encode_new_data
from bayesmix.design.smooth import SmoothSpec, smooth_basis

DATA = Path(__file__).parent / "data"
REFERENCES = json.loads((DATA / "smooth_references.json").read_text())
GRID = np.asarray(REFERENCES["grid"]["x"])
CASES = {
    "tp_gaussian": ("y ~ s(x) + z + (1 | g)", "gaussian", SmoothSpec("x")),
    "cr_gaussian": ("y ~ s(x, bs = 'cr', k = 8) + z + (1 | g)", "gaussian", SmoothSpec("x", 8, "cr")),
    "tp_poisson": ("count ~ s(x) + (1 | g)", "poisson", SmoothSpec("x")),
}


@pytest.fixture(scope="module")
def data():
    return pd.read_csv(DATA / "smooth_sim.csv")


@pytest.fixture(scope="module")
def fits(data):
    return {case: bayesmix.Model(formula, data, family=family).fit() for case, (formula, family, _) in CASES.items()}


@pytest.mark.parametrize("case", ["tp_gaussian", "cr_gaussian"])
def test_basis_is_mgcvs(data, case):
    """The constrained model matrix, the scaled penalty, the prediction matrix and gamm4's fixed and
    random columns equal mgcv's (thin-plate columns are defined up to sign: aligned first)."""
    reference = REFERENCES["cases"][case]["basis"]
    basis = smooth_basis(CASES[case][2], data["x"].to_numpy())
    X, X_mgcv = basis.model_matrix(data["x"]), np.asarray(reference["X"])
    signs = np.sign(np.sum(X * X_mgcv, axis=0))
    np.testing.assert_allclose(X * signs, X_mgcv, atol=1e-10)
    np.testing.assert_allclose(basis.penalty * np.outer(signs, signs), reference["S"], atol=1e-9)
    np.testing.assert_allclose(basis.model_matrix(GRID) * signs, reference["PredictMat_grid"], atol=1e-10)
    fixed, random = basis.columns(data["x"])
    np.testing.assert_allclose(np.abs(fixed), np.abs(np.asarray(reference["smooth2random"]["Xf"])), atol=1e-10)
    np.testing.assert_allclose(np.abs(random), np.abs(np.asarray(reference["smooth2random"]["Xr"])), atol=1e-10)


@pytest.mark.parametrize("case", list(CASES))
def test_fit_is_gamm4s(fits, case):
    """REML (gaussian) and Laplace (poisson) fits: criterion, variances, fixed effects (the smooth's
    unpenalised column up to its sign), the fitted smooth on a grid and its standard error (mgcv's
    se.fit from its Bayesian covariance) as gamm4's."""
    fit, reference = fits[case], REFERENCES["cases"][case]["tight"]["results"]
    result = fit.to_dict()
    assert result["logLik"] == pytest.approx(reference["logLik"], rel=1e-9)
    if reference["REML"]:
        assert result["REMLcrit"] == pytest.approx(reference["REMLcrit"], rel=1e-9)
        assert result["sigma"] == pytest.approx(reference["sigma"], rel=1e-6)
    sds = {v["group"]: v["sd"][0] for v in result["varcorr"]}
    assert sds["g"] == pytest.approx(reference["varcorr"]["sd"]["g"], rel=1e-5)
    assert sds["s(x)"] == pytest.approx(reference["varcorr"]["sd"]["Xr"], rel=1e-5)
    gamm4 = dict(zip(reference["fixef"]["names"], reference["fixef"]["values"]))
    fixef = fit.fixef["estimate"]
    assert fixef["Intercept"] == pytest.approx(gamm4["X(Intercept)"], abs=1e-6)
    assert abs(fixef["s(x)Fx1"]) == pytest.approx(abs(gamm4["Xs(x)Fx1"]), rel=1e-6)
    if "z" in fixef:
        assert fixef["z"] == pytest.approx(gamm4["Xz"], abs=1e-6)
    grid = pd.DataFrame({"x": GRID, "z": 0.0})
    curve = fit.predict(grid, re_form="population", kind="link") - fixef["Intercept"]
    np.testing.assert_allclose(curve, reference["smooth_grid"]["fit"], atol=1e-6)
    new = encode_new_data(fit.design, grid, random_effects=False)
    se = smooth_prediction_se(fit, new, fixed_columns=["s(x)Fx1"])  # the s(x) term's, as predict(type="terms")
    np.testing.assert_allclose(se, reference["smooth_grid"]["se_fit"], atol=1e-6)


def test_predictions_carry_the_smooth(fits, data):
    """Predictions on the training rows and on the same rows as new data agree; the population
    level keeps the smooth (only group effects leave); a cubic regression spline continues as its
    end tangent beyond the data, a thin-plate one as its radial basis does."""
    fit = fits["cr_gaussian"]
    np.testing.assert_allclose(fit.predict(), fit.predict(data), atol=1e-12)
    population = fit.predict(data, re_form="population")
    np.testing.assert_allclose(population, fit.predict(re_form="population"), atol=1e-12)
    assert np.ptp(population - data["z"] * fit.fixef.loc["z", "estimate"]) > 1.5  # the sine, not a line
    beyond = fit.predict(pd.DataFrame({"x": [1.2, 1.4, 1.6], "z": 0.0}), re_form="population")
    assert beyond[2] - 2 * beyond[1] + beyond[0] == pytest.approx(0.0, abs=1e-9)
    rows = data.copy()
    rows.loc[[3, 7], "x"] = np.nan
    with pytest.warns(bayesmix.MissingDataWarning):
        model = bayesmix.Model("y ~ s(x) + z + (1 | g)", rows)
    assert model.design.nobs == len(data) - 2


def test_conditional_effects_draws_the_smooth_with_its_band(fits):
    """The exact fit's band is the smooth's (beta and its penalised effects), wider where data are
    fewer: at the ends of x, as mgcv's."""
    import matplotlib

    matplotlib.use("Agg")
    ax = bayesmix.plots.conditional_effects(fits["tp_gaussian"], "x")
    band = ax.collections[-1].get_paths()[0].vertices
    assert "smooths included" in ax.get_title()
    assert len(band) > 100
    lines = [line for line in ax.get_lines() if len(line.get_xdata()) == 100]
    assert np.ptp(lines[0].get_ydata()) > 1.5


def test_nuts_agrees_with_the_exact_fit(fits, data):
    """The sampler's population-level curve lies within two posterior SDs of the REML fit's at every
    grid point, and the smooth's SD has one value for all its terms."""
    model = bayesmix.Model("y ~ s(x) + z + (1 | g)", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = model.sample(draws=400, tune=400, chains=2, random_seed=3, progressbar=False)
    grid = pd.DataFrame({"x": GRID, "z": 0.0})
    draws = model.predict(idata, data=grid, kind="link", re_form="population", inplace=False).to_numpy()
    draws = draws.reshape(-1, len(GRID))
    exact = fits["tp_gaussian"].predict(grid, re_form="population", kind="link")
    assert np.all(np.abs(draws.mean(axis=0) - exact) < 2 * draws.std(axis=0))
    sd = idata.posterior["sd_s(x)"].to_numpy()
    assert np.ptp(sd, axis=-1).max() == 0.0


@pytest.mark.parametrize(
    ("formula", "kwargs", "message"),
    [
        ("y ~ s(g) + z", {}, "numeric covariate"),
        ("y ~ s(log(x)) + z", {}, "smooth of an expression"),
        ("y ~ s(x, m = 2) + z", {}, "not an argument"),
        ("y ~ s(x, by = log(z)) + z", {}, "one factor column"),
        ("y ~ s(x, k = 2) + z", {}, "3 or more"),
        ("y ~ s(x, bs = 'ps') + z", {}, "bs = 'tp'"),
        ("count ~ s(x)", {"family": "zero_inflated_poisson", "zi": "~ s(z)"}, "smooth in zi="),
    ],
)
def test_bad_smooths_are_refused(data, formula, kwargs, message):
    with pytest.raises(bayesmix.BayesmixError, match=message):
        bayesmix.Model(formula, data, **kwargs)


def test_too_few_distinct_values_and_dask_are_refused(data):
    with pytest.raises(bayesmix.BayesmixError, match="smaller k"):
        bayesmix.Model("y ~ s(x) + z", data.assign(x=np.round(data["x"] * 4)))
    import dask.dataframe as dd  # a test dependency

    with pytest.raises(bayesmix.BayesmixError, match="pandas DataFrame"):
        bayesmix.Model("y ~ s(x) + z + (1 | g)", dd.from_pandas(data, npartitions=2))


BY = json.loads((DATA / "smooth_by_references.json").read_text())
BY_CASES = {
    "by_tp_gaussian": ("y ~ f + s(x, by = f) + (1 | g)", "gaussian"),
    "by_cr_gaussian": ("y ~ f + s(x, by = f, bs = 'cr', k = 6) + (1 | g)", "gaussian"),
    "by_tp_poisson": ("count ~ f + s(x, by = f) + (1 | g)", "poisson"),
}


@pytest.fixture(scope="module")
def by_data():
    return pd.read_csv(DATA / "smooth_by_sim.csv")


@pytest.mark.parametrize("case", list(BY_CASES))
def test_factor_by_smooths_are_gamm4s(by_data, case):
    """s(x, by = f) (tests/data/smooth_by_references.json): one smooth per level of f, each with its
    own SD, their basis and constraint learned from every row (mgcv's): criterion, SDs, fixed
    effects and the curve of each level on a grid with its standard error as gamm4's (the Poisson
    case against the references' polished optimum: gamm4's stops short where two SDs go to 0)."""
    formula, family = BY_CASES[case]
    with pytest.warns(bayesmix.SingularFitWarning):  # level c's smooth is a line (gaussian), b's and c's flat
        fit = bayesmix.Model(formula, by_data, family=family).fit()
    entry = BY["cases"][case]
    reference = entry["polish"] if family == "poisson" else entry["tight"]["results"]
    result = fit.to_dict()
    assert result["logLik"] == pytest.approx(reference["logLik"], rel=1e-9)
    sds = {v["group"]: v["sd"][0] for v in result["varcorr"]}
    for level, sd in reference["smooth_sd_by_level"].items():
        assert sds[f"s(x):f{level}"] == pytest.approx(sd, rel=1e-4, abs=1e-4)
    names = {"X(Intercept)": "Intercept", "Xfb": "f[b]", "Xfc": "f[c]"}
    fixef = fit.fixef["estimate"]
    for name, value in zip(reference["fixef"]["names"], reference["fixef"]["values"]):
        ours = fixef[names.get(name, name[1:])]
        assert abs(ours) == pytest.approx(abs(value), rel=1e-5, abs=1e-5)  # a null-space column's sign is free
    if family == "gaussian":
        assert result["sigma"] == pytest.approx(reference["sigma"], rel=1e-6)
        grid = BY["grid"]
        new = pd.DataFrame({"x": grid["newdata_x"], "f": grid["newdata_f"]})
        link = fit.predict(new, re_form="population", kind="link")
        np.testing.assert_allclose(link, reference["grid_link"]["fit"], atol=1e-6)
        se = smooth_prediction_se(fit, encode_new_data(fit.design, new, random_effects=False))
        np.testing.assert_allclose(se, reference["grid_link"]["se_fit"], atol=1e-6)


def test_factor_by_smooth_reports_and_new_data(by_data):
    model = bayesmix.Model("y ~ f + s(x, by = f) + (1 | g)", by_data)
    assert model.formula == "y ~ f + s(x, by = f) + (1 | g)"
    with pytest.warns(bayesmix.SingularFitWarning):
        fit = model.fit()
    groups = [v["group"] for v in fit.to_dict()["varcorr"]]
    assert groups == ["g", "s(x):fa", "s(x):fb", "s(x):fc"]
    np.testing.assert_allclose(fit.predict(), fit.predict(by_data), atol=1e-12)
    with pytest.raises(bayesmix.BayesmixError, match="'d'"):
        fit.predict(by_data.head(3).assign(f="d"), re_form="population")
    only_ab = by_data[by_data["f"] != "c"]
    groups = [v["group"] for v in bayesmix.Model("y ~ f + s(x, by = f)", only_ab).fit().to_dict()["varcorr"]]
    assert groups == ["s(x):fa", "s(x):fb"]  # the levels of the rows used
