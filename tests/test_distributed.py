"""Dask DataFrames: sufficient statistics summed over partitions give the in-memory fit."""

import warnings

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix import BayesmixError
from bayesmix.design.crossprod import lme4_order, raw_cross_products
from tests.helpers import on_local_cluster

CASES = [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),  # crossed
    ("Pastes", "strength ~ 1 + (1 | batch/cask)"),  # nested: batch and batch:cask
    ("Orthodont", "distance ~ age + Sex + (age | Subject)"),  # a factor predictor
]


def plain(data: pd.DataFrame) -> pd.DataFrame:
    """Factors as text, as read from files (both paths then order levels the same way)."""
    return data.astype({c: str for c in data.columns if isinstance(data[c].dtype, pd.CategoricalDtype)})


def as_dask(data: pd.DataFrame, partitions: int):
    return dd.from_pandas(plain(data), npartitions=partitions, sort=False)


def in_memory_raw(model):
    design = model.design
    blocks = [design.blocks[i] for i in lme4_order(design.blocks)]
    return raw_cross_products([(b.codes, b.Zt, b.n_levels) for b in blocks], design.X, design.y)


def levels(name):
    return {"Sex": ["Male", "Female"]} if name == "Orthodont" else None


@pytest.mark.parametrize("name, formula", CASES, ids=[c[0] for c in CASES])
def test_cross_products_and_fits_equal_the_in_memory_path(name, formula):
    data = bayesmix.load_dataset(name)
    memory = bayesmix.Model(formula, plain(data), categorical=levels(name))
    distributed = bayesmix.Model(formula, as_dask(data, 3), categorical=levels(name))
    assert distributed.from_statistics and distributed.nobs == memory.nobs
    assert distributed.design.ngrps == memory.design.ngrps
    assert [b.levels for b in distributed.design.blocks] == [b.levels for b in memory.design.blocks]
    assert distributed.design.fixed_names == memory.design.fixed_names
    ours, theirs = distributed.design.raw, in_memory_raw(memory)
    scale = np.abs(theirs.RR).max()
    np.testing.assert_allclose(ours.RR, theirs.RR, rtol=1e-12, atol=1e-13 * scale)
    np.testing.assert_allclose(ours.RZ1.toarray(), theirs.RZ1.toarray(), rtol=1e-12, atol=1e-13 * scale)
    np.testing.assert_allclose(ours.D, theirs.D, rtol=1e-12)
    for method in ("reml", "ml"):
        a, b = distributed.fit(method), memory.fit(method)
        # sums taken in another order differ by ~1e-13; the exact-gradient polish locates the optimum
        # far below that, so every estimate agrees to 1e-10 (measured: theta within 3.4e-12)
        assert a.loglik == pytest.approx(b.loglik, rel=1e-11)
        np.testing.assert_allclose(a.theta, b.theta, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(a.fixef.estimate, b.fixef.estimate, rtol=1e-10)
        np.testing.assert_allclose(a.fixef.se, b.fixef.se, rtol=1e-10)
        assert a.sigma == pytest.approx(b.sigma, rel=1e-10)
        for x, y in zip(a.varcorr, b.varcorr, strict=True):
            assert x["group"] == y["group"] and x["terms"] == y["terms"]
            np.testing.assert_allclose(x["sd"], y["sd"], rtol=1e-10)
            np.testing.assert_allclose(x["corr"], y["corr"], rtol=1e-10, atol=1e-12)
        for group in b.ranef:
            scale = np.abs(b.ranef[group].to_numpy()).max()
            np.testing.assert_allclose(
                a.ranef[group].to_numpy(), b.ranef[group].to_numpy(), rtol=1e-9, atol=1e-10 * scale
            )


def test_one_partition_gives_the_in_memory_fit_exactly():
    data = bayesmix.load_dataset("Orthodont")
    formula = "distance ~ age + Sex + (age | Subject)"
    a = bayesmix.Model(formula, as_dask(data, 1), categorical=levels("Orthodont")).fit("reml")
    b = bayesmix.Model(formula, plain(data), categorical=levels("Orthodont")).fit("reml")
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-10)
    np.testing.assert_allclose(a.fixef.estimate, b.fixef.estimate, rtol=1e-10)
    np.testing.assert_allclose(a.fixef.se, b.fixef.se, rtol=1e-10)
    for group in b.ranef:
        np.testing.assert_allclose(a.ranef[group].to_numpy(), b.ranef[group].to_numpy(), rtol=1e-10, atol=1e-12)
    assert a.summary() == b.summary()


def test_missing_rows_counted_and_predictions_on_new_rows():
    data = bayesmix.load_dataset("sleepstudy")
    holes = data.astype({"Subject": str})
    holes.loc[[3, 50, 51], "Days"] = np.nan
    with pytest.warns(bayesmix.MissingDataWarning, match="Dropped 3 of 180 rows .*Days: 3"):
        model = bayesmix.Model("Reaction ~ Days + (Days | Subject)", dd.from_pandas(holes, npartitions=4))
    assert model.nobs == 177 and model.design.n_dropped == 3
    fit = model.fit("reml")
    reference = bayesmix.Model("Reaction ~ Days + (Days | Subject)", holes).fit("reml")
    np.testing.assert_allclose(fit.predict(data), reference.predict(data), rtol=1e-5)
    with pytest.raises(BayesmixError, match="built from a Dask DataFrame"):
        fit.predict()
    with pytest.raises(BayesmixError, match="missing values in used columns"):
        bayesmix.Model("Reaction ~ Days + (Days | Subject)", dd.from_pandas(holes, npartitions=2), missing="raise")


def test_a_level_whose_rows_are_all_incomplete_is_dropped_as_in_memory():
    """The factor-only survey sees every level; the statistics pass finds the incomplete rows and
    the design is surveyed again over the complete rows, so the level with none is gone (lme4's
    drop.unused.levels) as in memory."""
    holes = bayesmix.load_dataset("sleepstudy").astype({"Subject": str})
    holes.loc[holes.Subject == "308", "Reaction"] = np.nan
    holes.loc[15, "Subject"] = None  # a missing grouping value too (subject 309)
    formula = "Reaction ~ Days + (Days | Subject)"
    with pytest.warns(bayesmix.MissingDataWarning, match="Dropped 11 of 180 rows"):
        model = bayesmix.Model(formula, dd.from_pandas(holes, npartitions=3))
    with pytest.warns(bayesmix.MissingDataWarning):
        reference = bayesmix.Model(formula, holes)
    assert [b.levels for b in model.design.blocks] == [b.levels for b in reference.design.blocks]
    assert "308" not in model.design.blocks[0].levels and model.nobs == reference.nobs == 169
    assert model.fit("reml").loglik == pytest.approx(reference.fit("reml").loglik, rel=1e-12)
    only_values = holes.assign(Subject=holes.Subject.fillna("309"))  # missing values outside the factors only
    with pytest.warns(bayesmix.MissingDataWarning, match="Dropped 10 of 180 rows .*Reaction: 10"):
        model = bayesmix.Model(formula, dd.from_pandas(only_values, npartitions=3))
    assert "308" not in model.design.blocks[0].levels


def test_a_partition_without_complete_rows_adds_nothing():
    """The first of three partitions has no complete row (it used to stop the pass: 'data has no rows')."""
    holes = bayesmix.load_dataset("sleepstudy").astype({"Subject": str})
    holes.loc[:59, "Reaction"] = np.nan
    holes["high"] = (holes.Reaction > 300).astype(float).where(holes.Reaction.notna())
    for formula, family, method in (
        ("Reaction ~ Days + (Days | Subject)", "gaussian", "reml"),
        ("high ~ Days + (1 | Subject)", "bernoulli", "laplace"),
    ):
        with pytest.warns(bayesmix.MissingDataWarning, match="Dropped 60 of 180 rows"):
            model = bayesmix.Model(formula, dd.from_pandas(holes, npartitions=3, sort=False), family=family)
        with pytest.warns(bayesmix.MissingDataWarning):
            reference = bayesmix.Model(formula, holes, family=family)
        assert [b.levels for b in model.design.blocks] == [b.levels for b in reference.design.blocks]
        assert model.fit(method).loglik == pytest.approx(reference.fit(method).loglik, rel=1e-12)


def test_levels_learnt_in_the_one_pass_keep_the_in_memory_order():
    """A one-block design's pass learns the levels as it sums (numeric levels in numeric order,
    not by their text: 2 before 10), merged over partitions that see different levels."""
    rng = np.random.default_rng(0)
    g = rng.integers(1, 13, 600)
    x = rng.normal(size=600)
    frame = pd.DataFrame({"y": 1 + x + rng.normal(size=13)[g] + rng.normal(size=600), "x": x, "g": g})
    frame = frame.sort_values("g", kind="stable", ignore_index=True)  # each partition its own levels
    frame.loc[5, "x"] = np.nan
    formula = "y ~ x + (x | g)"
    with pytest.warns(bayesmix.MissingDataWarning, match="Dropped 1 of 600 rows"):
        model = bayesmix.Model(formula, dd.from_pandas(frame, npartitions=4, sort=False))
    with pytest.warns(bayesmix.MissingDataWarning):
        reference = bayesmix.Model(formula, frame)
    assert model.design.blocks[0].levels == reference.design.blocks[0].levels == tuple(str(v) for v in range(1, 13))
    fit, memory = model.fit("reml"), reference.fit("reml")
    assert fit.loglik == pytest.approx(memory.loglik, rel=1e-12)
    np.testing.assert_allclose(fit.ranef["g"], memory.ranef["g"], atol=1e-10)


def test_aliased_columns_are_dropped_from_the_gram_matrix():
    data = bayesmix.load_dataset("sleepstudy").astype({"Subject": str})
    data["Days2"] = 2 * data["Days"]
    with pytest.warns(bayesmix.RankDeficientWarning, match="Days2"):
        fit = bayesmix.Model("Reaction ~ Days + Days2 + (1 | Subject)", dd.from_pandas(data, npartitions=3)).fit("ml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = bayesmix.Model("Reaction ~ Days + Days2 + (1 | Subject)", data).fit("ml")
    assert list(fit.fixef.index) == list(reference.fixef.index) == ["Intercept", "Days"]
    assert fit.loglik == pytest.approx(reference.loglik, rel=1e-12)


def test_what_the_dask_path_refuses():
    data = as_dask(bayesmix.load_dataset("sleepstudy"), 2)
    with pytest.raises(BayesmixError, match="learns from the data"):
        bayesmix.Model("Reaction ~ scale(Days) + (1 | Subject)", data)
    with pytest.raises(BayesmixError, match="family='gamma' is not one"):
        bayesmix.Model("Reaction ~ Days + (1 | Subject)", data, family="gamma")
    with pytest.raises(BayesmixError, match="Unknown column 'Dayz'.*Did you mean 'Days'"):
        bayesmix.Model("Reaction ~ Dayz + (1 | Subject)", data)
    crossed = bayesmix.Model(
        "diameter ~ 1 + (1 | plate) + (1 | sample)", as_dask(bayesmix.load_dataset("Penicillin"), 2)
    )
    assert crossed.resolve_parameterization("auto") == "marginal"  # the partially collapsed model
    with pytest.raises(BayesmixError, match="collapsed model.*Use fit\\('reml'\\)"):
        crossed.sample(parameterization="noncentered")
    frame = pd.concat([plain(bayesmix.load_dataset("sleepstudy"))] * 8, ignore_index=True).astype({"Days": float})
    frame.loc[len(frame) - 1, "Days"] = np.inf  # past the first rows: found in the summed moments
    with pytest.raises(BayesmixError, match="infinite values in Days"):
        bayesmix.Model("Reaction ~ Days + (1 | Subject)", dd.from_pandas(frame, npartitions=2))


def test_local_cluster_with_worker_processes(tmp_path):
    rng = np.random.default_rng(3)
    n, groups = 20_000, 200
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    effects = rng.normal(0, [1.0, 0.3], size=(groups, 2))
    y = 2 + 0.5 * x + effects[g, 0] + effects[g, 1] * x + rng.normal(size=n)
    frame = pd.DataFrame({"y": y, "x": x, "g": [f"g{i:03d}" for i in g]})
    formula = "y ~ x + (x | g)"
    fit = on_local_cluster(tmp_path, frame, 2_500, lambda ddf: bayesmix.Model(formula, ddf).fit("reml"))
    reference = bayesmix.Model(formula, frame).fit("reml")
    assert fit.loglik == pytest.approx(reference.loglik, rel=1e-12)
    np.testing.assert_allclose(fit.fixef.estimate, reference.fixef.estimate, rtol=1e-5)
    assert fit.nobs == n and fit.ngrps == {"g": groups}


def test_collapsed_sampler_from_statistics():
    data = plain(bayesmix.load_dataset("sleepstudy"))
    formula = "Reaction ~ Days + (Days | Subject)"
    memory = bayesmix.Model(formula, data)
    kwargs = dict(draws=300, tune=300, chains=2, random_seed=3, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = memory.sample(**kwargs)
        one = bayesmix.Model(formula, as_dask(data, 1))
        assert repr(one.priors) == repr(memory.priors)  # the default priors read moments that add up
        same = one.sample(**kwargs)
        several = bayesmix.Model(formula, as_dask(data, 4))
        draws = several.sample(**kwargs)
    for name in ("beta", "sigma", "sd_Subject", "cor_Subject", "re_Subject"):
        np.testing.assert_array_equal(same.posterior[name].values, reference.posterior[name].values)
    # four partitions: sums in another order, so another Markov chain; the same posterior
    for name in ("beta", "sigma", "sd_Subject"):
        a, b = draws.posterior[name], reference.posterior[name]
        spread = b.std(("chain", "draw")).values
        assert np.all(np.abs(a.mean(("chain", "draw")).values - b.mean(("chain", "draw")).values) < 0.25 * spread)
    assert "log_likelihood" not in draws.groups() and "posterior_predictive" not in draws.groups()  # need rows
    assert several.to_dict()["nobs"] == 180
    with pytest.raises(BayesmixError, match="parameterization='marginal'"):
        several.sample(parameterization="noncentered")


def test_progress_of_the_statistics_pass(capsys):
    data = as_dask(bayesmix.load_dataset("sleepstudy"), 3)
    calls = []
    quiet = bayesmix.Model("Reaction ~ Days + (Days | Subject)", data)
    model = bayesmix.Model("Reaction ~ Days + (Days | Subject)", data, progress=lambda *c: calls.append(c))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert model.fit("reml").loglik == quiet.fit("reml").loglik
    bayesmix.Model("Reaction ~ Days + (Days | Subject)", data, progress=True)
    assert "3/3 partitions read" in capsys.readouterr().err
    with pytest.raises(BayesmixError, match="progress must be True, False or a function"):
        bayesmix.Model("Reaction ~ Days + (Days | Subject)", data, progress="yes")
