"""Offsets: a known term with coefficient 1 in the linear predictor, in every path (issue 18, item 1).

The exact fits are checked against lme4 in test_r_formulas.py; here every other path is held to
them: NUTS in each parameterisation (posterior means within 2 posterior SDs of the REML or
Laplace estimates), lme4's ``offset=`` argument (a column, an expression, numbers), several
offsets adding up, the Dask statistics, save/load, predictions and the JSON contract.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix import BayesmixError

QUICK = dict(chains=2, draws=400, tune=400, progressbar=False, posterior_predictive=False)


@pytest.fixture(scope="module")
def sleep():
    data = bayesmix.load_dataset("sleepstudy")
    return data.assign(off=30 * np.log(data.Days + 1))


@pytest.fixture(scope="module")
def reml(sleep):
    return bayesmix.Model("Reaction ~ Days + offset(off) + (1 | Subject)", sleep).fit("reml")


def counts():
    rng = np.random.default_rng(3)
    groups, per = 30, 8
    g = np.repeat(np.arange(groups), per)
    exposure = rng.uniform(0.5, 20.0, groups * per)
    x = rng.normal(size=groups * per)
    eta = -1.0 + 0.5 * x + np.log(exposure) + rng.normal(0, 0.5, groups)[g]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "expo": exposure, "g": [f"g{i}" for i in g]})


def within_two_sds(idata, fit):
    beta = idata.posterior["beta"]
    mean, sd = beta.mean(("chain", "draw")).values, beta.std(("chain", "draw")).values
    estimate = fit.fixef["estimate"].to_numpy()
    assert np.all(np.abs(mean - estimate) < 2 * sd), (mean, estimate, sd)


def test_the_offset_is_not_a_coefficient(reml, sleep):
    assert list(reml.fixef.index) == ["Intercept", "Days"]
    without = bayesmix.Model("Reaction ~ Days + (1 | Subject)", sleep.assign(Reaction=sleep.Reaction - sleep.off))
    assert np.allclose(reml.fixef["estimate"], without.fit("reml").fixef["estimate"], rtol=1e-9)


@pytest.mark.parametrize("parameterization", ["marginal", "noncentered", "centered"])
def test_nuts_holds_the_offset_at_one(sleep, reml, parameterization):
    model = bayesmix.Model("Reaction ~ Days + offset(off) + (1 | Subject)", sleep)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = model.sample(random_seed=2, parameterization=parameterization, **QUICK)
    assert list(idata.posterior["beta"].coords["coef"].values) == ["Intercept", "Days"]
    within_two_sds(idata, reml)


def test_crossed_collapsed_model_with_an_offset(sleep):
    data = sleep.assign(week=(sleep.Days // 3).astype(str))
    formula = "Reaction ~ Days + offset(off) + (1 | Subject) + (1 | week)"
    model = bayesmix.Model(formula, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = model.sample(random_seed=3, **QUICK)
        within_two_sds(idata, model.fit("reml"))


def test_poisson_offset_by_laplace_and_nuts():
    data = counts()
    model = bayesmix.Model("y ~ x + offset(log(expo)) + (1 | g)", data, family="poisson")
    fit = model.fit("laplace")
    assert list(fit.fixef.index) == ["Intercept", "x"]
    assert fit.fixef.loc["x", "estimate"] == pytest.approx(0.5, abs=0.15)
    keyword = bayesmix.Model("y ~ x + (1 | g)", data, family="poisson", offset="log(expo)").fit("laplace")
    assert np.allclose(keyword.fixef["estimate"], fit.fixef["estimate"], rtol=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        within_two_sds(model.sample(random_seed=4, **QUICK), fit)


def test_the_offset_argument_as_column_expression_or_numbers(sleep, reml):
    for offset in ("off", "30 * log(Days + 1)", sleep.off.to_numpy()):
        fit = bayesmix.Model("Reaction ~ Days + (1 | Subject)", sleep, offset=offset).fit("reml")
        assert np.allclose(fit.fixef["estimate"], reml.fixef["estimate"], rtol=1e-9)
    assert "(offset)" not in sleep.columns  # the user's frame is not modified
    with pytest.raises(BayesmixError, match="one per row"):
        bayesmix.Model("Reaction ~ Days + (1 | Subject)", sleep, offset=np.ones(3))


def test_offsets_add_up(sleep):
    two = bayesmix.Model("Reaction ~ Days + offset(off) + offset(Days) + (1 | Subject)", sleep, offset="off")
    one = bayesmix.Model(
        "Reaction ~ Days + (1 | Subject)", sleep.assign(total=2 * sleep.off + sleep.Days), offset="total"
    )
    assert np.allclose(two.design.offset, one.design.offset)
    assert np.allclose(two.fit("ml").fixef["estimate"], one.fit("ml").fixef["estimate"], rtol=1e-9)


def test_new_data_need_the_offset_and_an_array_offset_says_how(sleep):
    fit = bayesmix.Model("Reaction ~ Days + (1 | Subject)", sleep, offset=sleep.off.to_numpy()).fit("reml")
    with pytest.raises(BayesmixError, match=r"column named '\(offset\)'"):
        fit.predict(sleep[["Days", "Subject"]])
    assert np.allclose(fit.predict(sleep.assign(**{"(offset)": sleep.off})), fit.predict())
    named = bayesmix.Model("Reaction ~ Days + offset(off) + (1 | Subject)", sleep).fit("reml")
    with pytest.raises(BayesmixError, match="off"):
        named.predict(sleep[["Days", "Subject"]])


def test_save_load_and_json_keep_the_offset(tmp_path, sleep, reml):
    model = bayesmix.Model("Reaction ~ Days + (1 | Subject)", sleep, offset="off")
    fit = model.fit("reml")
    loaded = bayesmix.load(fit.save(tmp_path / "fit.nc"))
    assert np.allclose(loaded.predict(sleep), fit.predict(sleep))
    assert np.allclose(loaded.predict(sleep), reml.predict(sleep))
    assert fit.to_dict()["fixef"]["names"] == ["Intercept", "Days"]


def test_the_dask_statistics_take_the_offset_out(sleep, reml):
    import dask.dataframe as dd  # the dask extra, which the test command installs

    model = bayesmix.Model("Reaction ~ Days + offset(off) + (1 | Subject)", dd.from_pandas(sleep, npartitions=3))
    fit = model.fit("reml")
    assert np.allclose(fit.fixef["estimate"], reml.fixef["estimate"], rtol=1e-8)
    assert np.allclose(fit.predict(sleep), reml.predict(sleep), rtol=1e-8)


def test_conditional_effects_hold_the_offset_at_its_mean():
    """The grid of a conditional-effects plot needs the offset's columns: held at their mean (a rate
    at the mean exposure), as the other predictors are; it raised for lack of them."""
    import matplotlib

    matplotlib.use("Agg")
    from bayesmix import plots

    data = counts()
    fit = bayesmix.Model("y ~ x + offset(log(expo)) + (1 | g)", data, family="poisson").fit("laplace")
    ax = plots.conditional_effects(fit, "x", interval=None, data_points=False)
    assert f"expo = {data.expo.mean():.4g} (mean)" in ax.get_title()
    line = ax.get_lines()[0].get_ydata()
    beta = fit.fixef["estimate"]
    xs = np.linspace(data.x.min(), data.x.max(), 100)
    assert np.allclose(line, np.exp(beta["Intercept"] + beta["x"] * xs + np.log(data.expo.mean())))
