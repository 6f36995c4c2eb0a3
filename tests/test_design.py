"""The design stage: blocks (codes, levels, terms, term matrices) against hand-built arrays."""

import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix import BayesmixError, MissingDataWarning, load_dataset
from bayesmix.design.encode import build_design
from bayesmix.design.formula import parse_formula


def design(formula, data, **kwargs):
    return build_design(parse_formula(formula), data, **kwargs)


@pytest.fixture
def toy():
    rng = np.random.default_rng(0)
    n = 24
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": np.arange(n, dtype=float),
            "f": np.array(["c", "a", "b"])[np.arange(n) % 3],
            "g": np.repeat(["g2", "g1", "g3", "g4"], 6),
            "h": np.tile(["u", "v"], n // 2),
        }
    )


def test_sleepstudy_correlated_block():
    data = load_dataset("sleepstudy")
    d = design("Reaction ~ Days + (Days | Subject)", data)
    np.testing.assert_array_equal(d.X, np.column_stack([np.ones(180), data.Days]))
    assert d.fixed_names == ("Intercept", "Days")
    (block,) = d.blocks
    assert (block.label, block.group, block.terms, block.correlated) == (
        "Subject",
        "Subject",
        ("Intercept", "Days"),
        True,
    )
    assert block.levels == tuple(data.Subject.cat.categories)
    np.testing.assert_array_equal(block.codes, data.Subject.cat.codes)
    np.testing.assert_array_equal(block.Zt, np.column_stack([np.ones(180), data.Days]))
    np.testing.assert_array_equal(d.y, data.Reaction)
    assert d.ngrps == {"Subject": 18} and d.nobs == 180


def test_double_bar_gives_one_block_per_column(toy):
    d = design("y ~ x + (1 + x || g)", toy)
    assert [(b.label, b.terms, b.correlated) for b in d.blocks] == [
        ("g__Intercept", ("Intercept",), False),
        ("g__x", ("x",), False),
    ]
    np.testing.assert_array_equal(d.blocks[1].Zt[:, 0], toy.x)
    assert d.ngrps == {"g": 4}


def test_double_bar_splits_factor_columns(toy):
    d = design("y ~ 1 + (f || g)", toy)
    assert [b.terms for b in d.blocks] == [("Intercept",), ("f[b]",), ("f[c]",)]
    np.testing.assert_array_equal(d.blocks[2].Zt[:, 0], (toy.f == "c").astype(float))


def test_factor_slopes_follow_lme4_coding(toy):
    with_intercept = design("y ~ 1 + (f | g)", toy).blocks[0]
    assert with_intercept.terms == ("Intercept", "f[b]", "f[c]")
    np.testing.assert_array_equal(
        with_intercept.Zt, np.column_stack([np.ones(24), toy.f == "b", toy.f == "c"]).astype(float)
    )
    full = design("y ~ 1 + (0 + f | g)", toy).blocks[0]
    assert full.terms == ("f[a]", "f[b]", "f[c]")
    np.testing.assert_array_equal(full.Zt, np.column_stack([toy.f == lv for lv in "abc"]).astype(float))


def test_group_levels_sorted_and_codes_match(toy):
    block = design("y ~ 1 + (1 | g)", toy).blocks[0]
    assert block.levels == ("g1", "g2", "g3", "g4")
    np.testing.assert_array_equal(block.codes, pd.Categorical(toy.g, categories=block.levels).codes)


def test_nested_groups_pastes():
    data = load_dataset("Pastes")
    d = design("strength ~ 1 + (1 | batch/cask)", data)
    outer, inner = d.blocks
    assert (outer.group, inner.group) == ("batch", "batch:cask")
    assert outer.n_levels == 10 and inner.n_levels == 30
    expected = [f"{b}:{c}" for b, c in zip(data.batch, data.cask)]
    assert [inner.levels[c] for c in inner.codes] == expected
    assert list(inner.levels) == sorted(set(expected))
    assert d.ngrps == {"batch": 10, "batch:cask": 30}


def test_interaction_group_keeps_only_observed_combinations(toy):
    sub = toy[toy.g != "g4"].reset_index(drop=True)
    block = design("y ~ 1 + (1 | g:h)", sub).blocks[0]
    assert block.levels == ("g1:u", "g1:v", "g2:u", "g2:v", "g3:u", "g3:v")


def test_crossed_penicillin():
    data = load_dataset("Penicillin")
    plate, sample = design("diameter ~ 1 + (1 | plate) + (1 | sample)", data).blocks
    assert (plate.n_levels, sample.n_levels) == (24, 6)
    np.testing.assert_array_equal(sample.codes, data["sample"].cat.codes)


def test_two_blocks_on_one_group_get_distinct_labels(toy):
    d = design("y ~ x + (1 | g) + (0 + x | g)", toy)
    assert [b.label for b in d.blocks] == ["g__Intercept", "g__x"]


def test_no_dense_random_effects_matrix():
    rng = np.random.default_rng(1)
    n, groups = 20_000, 5_000
    data = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n), "g": rng.integers(0, groups, n)})
    tracemalloc.start()
    (block,) = design("y ~ x + (x | g)", data).blocks
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert block.Zt.shape == (n, 2) and block.codes.shape == (n,)
    assert block.n_levels == data.g.nunique()
    assert peak < 0.05 * n * groups * 8  # a dense n x levels indicator would be 800 MB


def test_fixed_part_names_and_categorical_order():
    data = load_dataset("Orthodont")
    assert design("distance ~ age + Sex + (1 | Subject)", data).fixed_names == ("Intercept", "age", "Sex[Female]")
    plain = data.assign(Sex=data.Sex.astype(str))
    assert design("distance ~ age + Sex + (1 | Subject)", plain).fixed_names == ("Intercept", "age", "Sex[Male]")
    ordered = design("distance ~ age + Sex + (1 | Subject)", plain, categorical={"Sex": ["Male", "Female"]})
    assert ordered.fixed_names == ("Intercept", "age", "Sex[Female]")
    np.testing.assert_array_equal(ordered.X[:, 2], (plain.Sex == "Female").astype(float))


def test_numeric_column_as_categorical(toy):
    d = design("y ~ x + (1 | g)", toy.assign(x=toy.x % 3), categorical=["x"])
    assert d.fixed_names == ("Intercept", "x[1.0]", "x[2.0]")


def test_no_intercept_and_interactions(toy):
    assert design("y ~ 0 + x + (1 | g)", toy).fixed_names == ("x",)
    d = design("y ~ x*h + I(x**2) + (1 | g)", toy)
    assert d.fixed_names == ("Intercept", "x", "h[v]", "x:h[v]", "I(x ** 2)")
    np.testing.assert_allclose(d.X[:, 4], toy.x**2)


def test_binomial_trials_from_cbind_and_p():
    data = load_dataset("cbpp")
    d = design("cbind(incidence, size - incidence) ~ period + (1 | herd)", data)
    np.testing.assert_array_equal(d.y, data.incidence)
    np.testing.assert_array_equal(d.trials, data["size"])
    assert d.fixed_names == ("Intercept", "period[2]", "period[3]", "period[4]")
    np.testing.assert_array_equal(design("p(incidence, size) ~ 1 + (1 | herd)", data).trials, data["size"])


def test_missing_rows_dropped_with_count_and_data_untouched(toy):
    dirty = toy.copy()
    dirty.loc[[1, 5], "x"] = np.nan
    dirty.loc[7, "g"] = None
    before = dirty.copy(deep=True)
    with pytest.warns(MissingDataWarning, match=r"Dropped 3 of 24 rows .*x: 2, g: 1"):
        d = design("y ~ x + (1 | g)", dirty)
    assert d.nobs == 21 and d.n_dropped == 3
    np.testing.assert_array_equal(d.rows, np.setdiff1d(np.arange(24), [1, 5, 7]))
    pd.testing.assert_frame_equal(dirty, before)
    with pytest.raises(BayesmixError, match="3 of 24 rows have missing values"):
        design("y ~ x + (1 | g)", dirty, missing="raise")


def test_unused_columns_with_missing_values_are_ignored(toy):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert design("y ~ x + (1 | g)", toy.assign(other=np.nan)).nobs == 24


@pytest.mark.parametrize(
    "formula, data_change, fragment",
    [
        ("y ~ xx + (1 | g)", None, "Unknown column 'xx'.* Did you mean 'x'"),
        ("y ~ x + (1 | gg)", None, "Unknown grouping column 'gg'"),
        ("y ~ x + (1 | g)", {"g": "same"}, "has 1 level"),
        ("y ~ x + (1 | g)", {"x": np.inf}, "infinite"),
        ("f ~ x + (1 | g)", None, "a factor with 3 levels"),
    ],
)
def test_bad_data_raises(toy, formula, data_change, fragment):
    data = toy.assign(**data_change) if data_change else toy
    with pytest.raises(BayesmixError, match=fragment):
        design(formula, data)


def test_not_a_frame_and_empty(toy):
    with pytest.raises(BayesmixError, match="must be a pandas DataFrame"):
        design("y ~ x + (1 | g)", toy.to_dict())
    with pytest.raises(BayesmixError, match="no rows"):
        design("y ~ x + (1 | g)", toy.iloc[:0])


def test_level_order_must_cover_values(toy):
    with pytest.raises(BayesmixError, match="not in the level order"):
        design("y ~ f + (1 | g)", toy, categorical={"f": ["a", "b"]})


def test_a_column_named_like_a_contrast_is_a_column():
    """formulae's C(x, Sum) names a contrast; elsewhere `Sum` is the data's column (hypothesis found
    a fit refused for a factor column named Sum)."""
    rng = np.random.default_rng(0)
    data = pd.DataFrame(
        {"y": rng.normal(size=60), "Sum": rng.choice(["a", "b", "c"], 60), "g": np.repeat(np.arange(10), 6)}
    )
    fit = bayesmix.Model("y ~ Sum + (1 | g)", data).fit()
    assert list(fit.fixef.index) == ["Intercept", "Sum[b]", "Sum[c]"]
