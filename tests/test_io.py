"""Save and load: one netCDF file holds the posterior and the model; predictions survive the trip."""

import json
import warnings

import arviz as az
import numpy as np
import pytest

import bayesmix
from bayesmix import BayesmixError
from bayesmix.after.io import GROUP


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    data = bayesmix.load_dataset("Orthodont")
    data.loc[3, "distance"] = np.nan  # a dropped row: nobs and the row map must survive
    priors = {"b": bayesmix.Prior("Normal", mu=0, sigma=3)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bayesmix.Model("distance ~ age + Sex + (age | Subject)", data, priors=priors)
        model.sample(draws=100, tune=100, chains=2, random_seed=1, progressbar=False)
    path = model.save(tmp_path_factory.mktemp("io") / "orthodont.nc")
    return data, model, path


def test_load_gives_the_same_model_and_posterior(saved):
    data, model, path = saved
    loaded = bayesmix.load(path)
    assert loaded.formula == model.formula
    assert loaded.nobs == model.nobs == len(data) - 1
    assert loaded.design.n_dropped == 1
    np.testing.assert_array_equal(loaded.design.rows, model.design.rows)
    assert repr(loaded.priors) == repr(model.priors)
    assert loaded.design.codings.levels == model.design.codings.levels
    np.testing.assert_array_equal(loaded.design.X, model.design.X)
    for name in model.idata.posterior.data_vars:
        np.testing.assert_array_equal(loaded.idata.posterior[name].values, model.idata.posterior[name].values)
    assert GROUP not in loaded.idata.groups()
    assert loaded.summary() == model.summary()
    assert loaded.to_dict() == model.to_dict()


def test_predictions_on_new_data_are_identical_after_loading(saved):
    data, model, path = saved
    loaded = bayesmix.load(path)
    new = data.iloc[[0, 1, 40, 60]].assign(Subject=["M01", "new kid", "F02", "M03"], age=[8.5, 9.0, 13.0, 14.5])
    for kind in ("mean", "response"):
        before = model.predict(data=new, kind=kind, allow_new_levels=True, random_seed=4, inplace=False)
        after = loaded.predict(data=new, kind=kind, allow_new_levels=True, random_seed=4, inplace=False)
        np.testing.assert_array_equal(before.values, after.values)
    population = loaded.predict(data=new.drop(columns="Subject"), re_form="population", inplace=False)
    beta = loaded.idata.posterior["beta"].values
    sex = (new.Sex == "Female").to_numpy(dtype=float)
    expected = beta[..., 0, None] + beta[..., 1, None] * new.age.to_numpy() + beta[..., 2, None] * sex
    np.testing.assert_allclose(population.values, expected, rtol=1e-12)


def test_loaded_model_still_fits_and_samples_like_the_original(saved):
    data, model, path = saved
    loaded = bayesmix.load(path)
    assert loaded.fit("reml").loglik == pytest.approx(model.fit("reml").loglik, rel=1e-12)


def test_unusual_column_names_and_level_types_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    import pandas as pd

    data = pd.DataFrame(
        {
            "y": rng.normal(size=60),
            "x": rng.normal(size=60),
            "flag": np.tile([True, False], 30),
            "g": np.repeat([10, 20, 30, 40, 50, 60], 10),  # a numeric grouping column
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bayesmix.Model("y ~ x + flag + (1 | g)", data)
        model.sample(draws=50, tune=50, chains=1, random_seed=2, progressbar=False)
    loaded = bayesmix.load(model.save(tmp_path / "m.nc"))
    np.testing.assert_array_equal(loaded.design.X, model.design.X)
    assert loaded.design.blocks[0].levels == model.design.blocks[0].levels
    new = data.head(3)
    np.testing.assert_array_equal(
        loaded.predict(data=new, inplace=False).values, model.predict(data=new, inplace=False).values
    )


def test_bad_files_get_clear_errors(saved, tmp_path):
    data, model, path = saved
    with pytest.raises(BayesmixError, match="no such file"):
        bayesmix.load(tmp_path / "missing.nc")
    garbage = tmp_path / "garbage.nc"
    garbage.write_bytes(b"not a netCDF file" * 100)
    with pytest.raises(BayesmixError, match="damaged or not a file written by model.save"):
        bayesmix.load(garbage)
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BayesmixError, match="damaged"):
        bayesmix.load(truncated)
    plain = tmp_path / "plain.nc"
    az.from_dict(posterior={"a": np.zeros((1, 5))}).to_netcdf(str(plain))
    with pytest.raises(BayesmixError, match="not written by bayesmix"):
        bayesmix.load(plain)
    idata = az.from_netcdf(str(path))
    spec = json.loads(idata[GROUP].attrs["bayesmix_spec"])
    idata[GROUP].attrs["bayesmix_spec"] = json.dumps({**spec, "format": 99, "bayesmix_version": "9.0"})
    future = tmp_path / "future.nc"
    idata.to_netcdf(str(future))
    with pytest.raises(BayesmixError, match="file format 99 \\(bayesmix 9.0\\).*reads format 1"):
        bayesmix.load(future)


def test_saving_needs_a_posterior(tmp_path):
    model = bayesmix.Model("distance ~ age + (1 | Subject)", bayesmix.load_dataset("Orthodont"))
    with pytest.raises(BayesmixError, match="not been sampled"):
        model.save(tmp_path / "x.nc")


@pytest.mark.parametrize(
    "dataset, formula, family, method",
    [
        ("sleepstudy", "Reaction ~ Days + (Days | Subject)", "gaussian", "reml"),
        ("Pastes", "strength ~ 1 + (1 | batch/cask)", "gaussian", "ml"),
        ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial", "laplace"),
    ],
)
def test_exact_fits_round_trip(tmp_path, dataset, formula, family, method):
    data = bayesmix.load_dataset(dataset)
    fit = bayesmix.Model(formula, data, family=family).fit(method)
    loaded = bayesmix.load(fit.save(tmp_path / "fit.nc"))
    assert type(loaded) is type(fit)
    assert loaded.to_dict() == fit.to_dict()
    assert loaded.summary() == fit.summary()
    np.testing.assert_array_equal(loaded.predict(data), fit.predict(data))
    np.testing.assert_array_equal(loaded.optimizer.x, fit.optimizer.x)
    for table in (bayesmix.fixef, bayesmix.ranef, bayesmix.varcorr):
        assert table(loaded).equals(table(fit))
