"""Predictions: population level, conditional on the random effects, new levels, simulated responses."""

import json
from pathlib import Path

import arviz as az
import matplotlib
import numpy as np
import pytest

import bayesmix
from bayesmix import BayesmixError

matplotlib.use("Agg")
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def sleep(sleep_nuts):
    data, model = sleep_nuts
    return data, model, model.idata


def test_exact_fit_predictions_use_the_blups():
    data = bayesmix.load_dataset("sleepstudy")
    fit = bayesmix.Model("Reaction ~ Days + (Days | Subject)", data).fit("reml")
    ref = json.loads((DATA / "sleep_reml.json").read_text())["results"]
    beta = np.array(ref["fixef"]["estimate"])
    blups = ref["ranef"]["Subject"]
    index = {level: i for i, level in enumerate(blups["levels"])}
    rows = np.array([index[str(s)] for s in data.Subject])
    expected = (
        beta[0]
        + np.array(blups["condval"]["(Intercept)"])[rows]
        + (beta[1] + np.array(blups["condval"]["Days"])[rows]) * data.Days
    )
    np.testing.assert_allclose(fit.predict(), expected, rtol=1e-5)
    np.testing.assert_allclose(fit.predict(re_form="population"), beta[0] + beta[1] * data.Days, rtol=1e-6)
    new = data.head(2).assign(Subject=["new", "308"])
    with pytest.raises(BayesmixError, match="has not seen: \\['new'\\]"):
        fit.predict(new)
    pred = fit.predict(new, allow_new_levels=True)
    assert pred[0] == pytest.approx(fit.fixef.estimate["Intercept"])  # new level: population level
    assert pred[1] == pytest.approx(fit.predict()[1])  # row 1 of subject 308


def test_population_level_equals_x_beta(sleep):
    data, model, idata = sleep
    new = data.head(5).assign(Subject="unseen")
    pred = model.predict(idata, data=new, allow_new_levels=True, new_levels="population", inplace=False)
    beta = idata.posterior["beta"].values
    expected = beta[..., 0, None] + beta[..., 1, None] * data.Days.to_numpy()[:5]
    np.testing.assert_allclose(pred.values, expected, rtol=1e-12)


def test_training_predictions_by_hand(sleep):
    data, model, idata = sleep
    pred = model.predict(idata, inplace=False)
    post = idata.posterior
    codes = data.Subject.cat.codes.to_numpy()
    re = post["re_Subject"].values  # (chain, draw, M, 2)
    beta = post["beta"].values
    expected = (beta[..., 0, None] + re[:, :, codes, 0]) + (beta[..., 1, None] + re[:, :, codes, 1]) * data.Days.values
    np.testing.assert_allclose(pred.values, expected, rtol=1e-12)


def test_new_levels_draw_fresh_effects_reproducibly(sleep):
    data, model, idata = sleep
    new = data.head(2).assign(Subject=["unseen", "308"])
    first = model.predict(idata, data=new, allow_new_levels=True, random_seed=3, inplace=False)
    second = model.predict(idata, data=new, allow_new_levels=True, random_seed=3, inplace=False)
    np.testing.assert_array_equal(first.values, second.values)
    spread = first.std(("chain", "draw")).values
    assert spread[0] > 2 * spread[1]  # the new subject's uncertainty includes the between-subject SD
    with pytest.raises(BayesmixError, match="allow_new_levels=True"):
        model.predict(idata, data=new)


def test_unseen_factor_level_in_the_fixed_part():
    data = bayesmix.load_dataset("Orthodont")
    model = bayesmix.Model("distance ~ age + Sex + (1 | Subject)", data)
    fit = model.fit("reml")
    with pytest.raises(BayesmixError, match="Column 'Sex' has level\\(s\\) \\['Other'\\]"):
        fit.predict(data.head(1).assign(Sex="Other"))
    with pytest.raises(BayesmixError, match="lacks the column"):
        fit.predict(data.drop(columns="age"))


def test_response_draws_fill_posterior_predictive(sleep):
    data, model, idata = sleep
    draws = model.predict(idata, kind="response", random_seed=2)
    assert "posterior_predictive" in idata.groups()
    assert idata.posterior_predictive["Reaction"].shape == (2, 200, 180)
    sd_sigma = float(idata.posterior["sigma"].mean())
    residual = draws - model.predict(idata, inplace=False)
    assert residual.std() == pytest.approx(sd_sigma, rel=0.05)
    axes = az.plot_ppc(idata)
    assert axes is not None


def test_bad_prediction_options_are_named(sleep):
    data, model, idata = sleep
    for option in ({"re_form": "marginal"}, {"kind": "median"}, {"new_levels": "zero"}):
        with pytest.raises(BayesmixError, match=f"{next(iter(option))} must be one of"):
            model.predict(idata, inplace=False, **option)
    with pytest.raises(BayesmixError, match="re_form must be one of"):
        model.fit("reml").predict(re_form="marginal")
