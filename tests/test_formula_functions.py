"""Functions, contrasts and R's formula operators the same way everywhere (issue 18, items 6, 7, 11, 13).

The values against lme4 are in test_r_formulas.py; here the same function must mean the same thing
in the response, the fixed part, the random part, offset() and new data for predict, spelt R's way
or numpy's.
"""

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix import BayesmixError


@pytest.fixture(scope="module")
def sleep():
    return bayesmix.load_dataset("sleepstudy")


def estimates(formula, data, **kwargs):
    return bayesmix.Model(formula, data, **kwargs).fit("reml").fixef["estimate"].to_numpy()


def test_r_and_numpy_functions_agree_in_every_part(sleep):
    r = estimates("log(Reaction) ~ log(Days + 1) + offset(sqrt(Days)) + (exp(Days / 10) | Subject)", sleep)
    numpy = estimates(
        "np.log(Reaction) ~ np.log(Days + 1) + offset(np.sqrt(Days)) + (np.exp(Days / 10) | Subject)", sleep
    )
    columns = sleep.assign(
        ly=np.log(sleep.Reaction), lx=np.log(sleep.Days + 1), sx=np.sqrt(sleep.Days), ex=np.exp(sleep.Days / 10)
    )
    by_hand = estimates("ly ~ lx + offset(sx) + (ex | Subject)", columns)
    assert np.allclose(r, numpy, rtol=1e-9) and np.allclose(r, by_hand, rtol=1e-9)


def test_new_data_are_transformed_by_the_same_functions(sleep):
    model = bayesmix.Model("Reaction ~ log1p(Days) + abs(Days - 4) + scale(Days) + (sqrt(Days) | Subject)", sleep)
    fit = model.fit("reml")
    new = sleep.iloc[[3, 50, 170]]
    assert np.allclose(fit.predict(new), fit.predict()[[3, 50, 170]], rtol=1e-12)


def test_contrasts_by_name_in_the_formula_or_as_an_argument():
    cake = pd.read_csv(__import__("pathlib").Path(__file__).parent / "data" / "cake.csv")
    in_formula = estimates("angle ~ C(recipe, Sum) + temp + (1 | replicate)", cake)
    argument = estimates("angle ~ recipe + temp + (1 | replicate)", cake, contrasts={"recipe": "contr.sum"})
    r_name = estimates("angle ~ C(recipe, contr.sum) + temp + (1 | replicate)", cake)
    assert np.allclose(in_formula, argument) and np.allclose(in_formula, r_name)
    with pytest.raises(BayesmixError, match="Unknown contrast"):
        bayesmix.Model("angle ~ recipe + (1 | replicate)", cake, contrasts={"recipe": "contr.nope"})


def test_dot_means_the_other_columns(sleep):
    assert np.allclose(
        estimates("Reaction ~ . - Subject + (1 | Subject)", sleep), estimates("Reaction ~ Days + (1 | Subject)", sleep)
    )


def test_a_numeric_grouping_column_stays_numeric_in_the_fixed_part(sleep):
    model = bayesmix.Model("Reaction ~ Days + (1 | Days)", sleep)
    assert model.design.fixed_names == ("Intercept", "Days")
    assert model.design.blocks[0].n_levels == 10
    assert pd.api.types.is_numeric_dtype(model.design.data["Days"])


def test_other_data_frames_are_read(sleep):
    import pyarrow as pa  # installed with the dask extra, which the test command installs

    class PolarsLike:  # polars' interface, without polars
        def __init__(self, frame):
            self.frame = frame

        def to_pandas(self):
            return self.frame

    reference = estimates("Reaction ~ Days + (1 | Subject)", sleep)
    assert np.allclose(estimates("Reaction ~ Days + (1 | Subject)", PolarsLike(sleep)), reference)
    table = pa.Table.from_pandas(sleep.assign(Subject=sleep.Subject.astype(str)))
    assert np.allclose(estimates("Reaction ~ Days + (1 | Subject)", table), reference)


def test_messages_that_point_the_right_way(sleep):
    with pytest.raises(BayesmixError, match=r"Use sample\(\) \(NUTS\)"):
        bayesmix.Model("Reaction ~ Days + (1 | Subject)", sleep, family="t").fit("reml")
    cbpp = bayesmix.load_dataset("cbpp")
    model = bayesmix.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")
    idata = model.sample(chains=1, draws=20, tune=20, progressbar=False, random_seed=1, posterior_predictive=False)
    drawn = model.predict(idata, data=cbpp.iloc[:4], kind="response", inplace=False, random_seed=1)
    assert np.all(drawn.values <= cbpp["size"].to_numpy()[:4])
    fit = bayesmix.Model("Reaction ~ Days + (1 | Subject)", sleep).fit("reml")
    with pytest.raises(BayesmixError, match="population level"):
        fit.predict(sleep.assign(Subject="new"))


def test_a_two_level_factor_response_is_bernoulli(sleep):
    data = sleep.assign(slow=np.where(sleep.Reaction > 300, "yes", "no"))
    model = bayesmix.Model("slow ~ Days + (1 | Subject)", data, family="bernoulli")
    assert np.array_equal(model.design.y, (sleep.Reaction > 300).to_numpy(dtype=float))
    assert model.design.codings.response_levels == ("no", "yes")
    assert "Response slow: 'no' = 0 (failure), 'yes' = 1 (success)" in str(model.fit("laplace").summary())
    with pytest.raises(BayesmixError, match="factor with 3 levels"):
        bayesmix.Model("f ~ Days + (1 | Subject)", sleep.assign(f=np.array(["a", "b", "c"] * 60)), family="bernoulli")


def test_a_column_named_intercept_is_refused_not_merged():
    """formulae names the intercept 'Intercept': a predictor of that name replaced it silently."""
    rng = np.random.default_rng(1)
    data = pd.DataFrame(
        {"y": rng.normal(size=60), "Intercept": rng.normal(size=60), "g": np.repeat(list("abcdef"), 10)}
    )
    with pytest.raises(BayesmixError, match="column named 'Intercept'"):
        bayesmix.Model("y ~ Intercept + (1 | g)", data)
    with pytest.raises(BayesmixError, match="column named 'Intercept'"):
        bayesmix.Model("y ~ 1 + (Intercept | g)", data)


def test_new_data_give_a_numeric_grouping_column_as_floats(sleep):
    """Days (integers) as a grouping factor, new data with Days as 3.0: the level 3, not a new level
    at the population level (which allow_new_levels=True made silent)."""
    fit = bayesmix.Model("Reaction ~ Days + (1 | Days) + (1 | Subject)", sleep).fit("reml")
    new = sleep.iloc[[3, 40, 100]].assign(Days=lambda d: d.Days.astype(float))
    assert np.allclose(fit.predict(new, allow_new_levels=True), fit.predict()[[3, 40, 100]], rtol=1e-12)
    assert np.allclose(fit.predict(new), fit.predict()[[3, 40, 100]], rtol=1e-12)


def test_a_factor_named_like_a_function_prefix_keeps_the_function():
    """Writing C(name, Contrast) for a factor must not touch a longer name that begins the same way."""
    from bayesmix.design.expressions import with_contrasts

    assert with_contrasts("lo + log(x) + lo:x", {"lo": "Poly"}) == "C(lo, Poly) + log(x) + C(lo, Poly):x"


def test_r_as_is_in_the_response_and_the_predictors():
    """R's I(): ``I(Reaction > 300) ~ Days + I(Days^2)`` as glmer takes it (the response was refused:
    'name I is not defined')."""
    data = bayesmix.load_dataset("sleepstudy")
    model = bayesmix.Model("I(Reaction > 300) ~ Days + I(Days^2) + (1 | Subject)", data, family="bernoulli")
    np.testing.assert_array_equal(model.design.y, (data.Reaction > 300).to_numpy(dtype=float))
    np.testing.assert_array_equal(model.design.X[:, 2], data.Days.to_numpy(dtype=float) ** 2)
