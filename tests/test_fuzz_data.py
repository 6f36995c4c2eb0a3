"""Fuzzing the DATA: any DataFrame gives a fit or a BayesmixError, never another exception.

Random column types (int, float, bool, text, categorical, datetime, mixed objects, nullable
types), missing values, single-row groups, one-level factors, constant columns, tiny data, unicode
and quoted column names, for REML, ML and Laplace (bernoulli, poisson) fits. The only warnings
allowed are the documented ones (docs/errors.md). NUTS is not run here (too slow per example).
About 10,000 random frames were run while this was written (BAYESMIX_FUZZ_EXAMPLES raises the count).
"""

import os
import unicodedata
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bayesmix
from bayesmix import BayesmixError

ALLOWED_WARNINGS = (
    bayesmix.MissingDataWarning,
    bayesmix.SingularFitWarning,
    bayesmix.ConvergenceWarning,
    bayesmix.RankDeficientWarning,
)
# 60 examples keep this file near 10 s on 2 cores; BAYESMIX_FUZZ_EXAMPLES=5000 for a deep (random) run.
# The default run draws the same examples every time (derandomize): a random draw once took minutes
# (a poisson Laplace fit with an uncorrelated factor slope), a suite time that varies by chance.
FUZZ = settings(
    max_examples=int(os.environ.get("BAYESMIX_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize="BAYESMIX_FUZZ_EXAMPLES" not in os.environ,
)

# unicode, a Python keyword, R-style dots, a name formulae needs in backticks (leading '_', leading
# digit, spaces, punctuation, a decomposed 'é' whose accent is a combining character)
NAMES = ["x", "Größe", "反应", "naïve", "Ω", "class", "x.1", "_x", "1x", "my var", "a-b", "e\u0301", "x:z"]


def quote(name: str, force: bool = False) -> str:
    """The name as a formula term: plain when formulae reads it so, else in backticks."""
    plain = name[:1].isalpha() and all(ch.isalnum() or ch in "._" for ch in name)
    plain = plain and unicodedata.normalize("NFC", name) == name and ":" not in name
    plain = plain and name not in ("True", "False", "None")  # Python literals to formulae
    return name if plain and not force else f"`{name}`"


def column(kind: str, n: int, rng: np.random.Generator) -> pd.Series:
    """A column of one of the kinds a user's DataFrame may hold."""
    pick = rng.integers(0, 3, n)
    if kind == "float":
        return pd.Series(rng.normal(size=n))
    if kind == "int":
        return pd.Series(pick.astype(np.int64))
    if kind == "bool":
        return pd.Series(pick == 0)
    if kind == "text":
        return pd.Series(np.array(["a", "b", "ç"])[pick])
    if kind == "categorical":  # an unused category, and categories out of sorted order
        return pd.Series(pd.Categorical(np.array(["lo", "mid", "hi"])[pick], categories=["mid", "hi", "lo", "unused"]))
    if kind == "datetime":
        return pd.Series(pd.Timestamp("2024-01-01") + pd.to_timedelta(pick, unit="D"))
    if kind == "timedelta":
        return pd.Series(pd.to_timedelta(pick, unit="h"))
    if kind == "mixed":
        return pd.Series(np.array([1, "a", 2.5], dtype=object)[pick], dtype=object)
    if kind == "constant":
        return pd.Series(np.full(n, 1.0))
    if kind == "nullable":
        return pd.Series(pd.array(pick, dtype="Int64"))
    if kind == "string":
        return pd.Series(pd.array(np.array(["u", "v", "w"])[pick], dtype="string"))
    if kind == "unique":  # one level per row
        return pd.Series([f"r{i}" for i in range(n)])
    if kind == "one":  # a single level
        return pd.Series(["only"] * n)
    if kind == "float_big":
        return pd.Series(rng.normal(size=n) * 1e8)
    raise AssertionError(kind)


PREDICTORS = ["float", "int", "bool", "text", "categorical", "datetime", "timedelta", "mixed", "constant"]
PREDICTORS += ["nullable", "string", "unique", "one", "float_big"]
GROUPS = ["text", "int", "bool", "categorical", "datetime", "mixed", "nullable", "string", "unique", "one"]
FORMULAS = [
    "{y} ~ {x} + (1 | {g})",
    "{y} ~ {x} + ({x} | {g})",
    "{y} ~ 1 + (1 | {g}) + (1 | {h})",
    "{y} ~ {x} + (1 | {g}/{h})",
    "{y} ~ 0 + {x} + (1 + {x} || {g})",
    "{y} ~ {x} * {h} + (1 | {g})",
]
FITS = [("gaussian", "reml"), ("gaussian", "ml"), ("bernoulli", "laplace"), ("poisson", "laplace")]


def response(family: str, kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "constant":
        base = np.ones(n)
    elif kind == "big":  # counts of 10^5 (Laplace fits of counts near 10^9 take seconds each)
        base = rng.normal(size=n) * (1e9 if family == "gaussian" else 1e5)
    else:
        base = rng.normal(size=n)
    if family == "bernoulli":
        return (base > 0).astype(float)
    if family == "poisson":
        return np.floor(np.abs(base) * 3)
    return base


@st.composite
def problems(draw):
    n = draw(st.sampled_from([1, 2, 3, 8, 12, 20, 30, 40, 40, 40]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    names = draw(st.lists(st.sampled_from(NAMES), min_size=4, max_size=4, unique=True))
    family, method = draw(st.sampled_from(FITS))
    x_kind = draw(st.sampled_from(PREDICTORS))
    g_kind = draw(st.sampled_from(GROUPS + ["text", "int", "categorical", "nullable"]))  # mostly usable groups
    h_kind = draw(st.sampled_from(GROUPS + ["text", "text", "int"]))
    y_kind = draw(st.sampled_from(["normal", "normal", "normal", "constant", "big"]))
    y, x, g, h = names
    data = pd.DataFrame(
        {
            y: response(family, y_kind, n, rng),
            x: column(x_kind, n, rng),
            g: column(g_kind, n, rng),
            h: column(h_kind, n, rng),
        }
    )
    for name in draw(st.lists(st.sampled_from(names), max_size=2)):  # missing values
        if data[name].dtype == bool:  # as a user's frame would hold them: bool with NaN is object
            data[name] = data[name].astype(object)
        elif data[name].dtype == np.int64:
            data[name] = data[name].astype(float)
        data.loc[rng.random(n) < 0.2, name] = None
    force = draw(st.booleans())
    template = draw(st.sampled_from(FORMULAS))
    formula = template.format(**{k: quote(v, force) for k, v in zip("yxgh", names)})
    return data, formula, family, method


def fingerprint(frame: pd.DataFrame):
    return list(frame.columns), [str(t) for t in frame.dtypes], pd.util.hash_pandas_object(frame).to_numpy().tobytes()


def fit_or_error(data: pd.DataFrame, formula: str, family: str, method: str):
    """Fit; return the fit or the BayesmixError. Fails on any other exception or an undocumented warning."""
    before = fingerprint(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = bayesmix.Model(formula, data, family=family)
            result = model, model.fit(method)
        except BayesmixError as error:
            result = error
    stray = [f"{w.category.__name__}: {w.message}" for w in caught if not issubclass(w.category, ALLOWED_WARNINGS)]
    assert not stray, (formula, stray)
    assert fingerprint(data) == before, "the user's DataFrame was modified"
    return result


def check_fit(model, fit, data: pd.DataFrame) -> None:
    """What any fit must satisfy: finite estimates, the rows and levels actually used."""
    used = [c for c in data.columns if c in model.spec.variables]
    complete = data[used].notna().all(axis=1).to_numpy()
    assert fit.nobs == int(complete.sum())
    assert np.all(np.isfinite(fit.fixef["estimate"]))
    assert np.isfinite(fit.loglik)
    assert fit.sigma is None or fit.sigma > 0
    for vc in fit.varcorr:
        assert np.all(np.isfinite(vc["sd"])) and np.all(np.asarray(vc["sd"]) >= 0)
    for block in model.design.blocks:
        assert block.n_levels == len(set(block.levels))
    for term in model.spec.random:
        if len(term.factors) == 1:
            (factor,) = term.factors
            assert model.design.ngrps[term.group] == data.loc[complete, factor].nunique()


@FUZZ
@given(problems())
def test_random_data_fits_or_raises_bayesmix_error(problem):
    data, formula, family, method = problem
    result = fit_or_error(data, formula, family, method)
    if not isinstance(result, BayesmixError):
        check_fit(*result, data)


def plain_problem(seed: int, n_groups: int = 6, per_group: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat([f"g{i}" for i in range(n_groups)], per_group)
    x = rng.normal(size=len(g))
    effects = rng.normal(size=n_groups)[np.arange(len(g)) // per_group]
    f = np.array(["a", "b", "c"])[rng.integers(0, 3, len(g))]
    return pd.DataFrame({"y": 1 + 0.5 * x + effects + rng.normal(size=len(g)) * 0.5, "x": x, "f": f, "g": g})


@settings(max_examples=15, deadline=None)
@given(
    st.lists(
        st.text(
            alphabet=st.characters(categories=["Lu", "Ll", "Lo", "Nd", "Zs", "Pd", "Po"], exclude_characters="`"),
            min_size=1,
            max_size=6,
        ),
        min_size=4,
        max_size=4,
        unique=True,
    ),
    st.integers(0, 1000),
)
def test_column_names_do_not_change_the_fit(names, seed):
    """Renaming the columns (unicode, spaces, punctuation, digits; in backticks where needed) gives
    the same estimates, or a BayesmixError naming the formula problem, never another exception."""
    data = plain_problem(seed)
    reference = bayesmix.Model("y ~ x + f + (1 | g)", data).fit("reml")
    renamed = data.rename(columns=dict(zip(["y", "x", "f", "g"], names)))
    y, x, f, g = (quote(n) for n in names)
    result = fit_or_error(renamed, f"{y} ~ {x} + {f} + (1 | {g})", "gaussian", "reml")
    if isinstance(result, BayesmixError):  # only names that formulae cannot read even in backticks
        assert "formulae cannot parse" in str(result) or "not a factor name" in str(result), str(result)
        return
    _, fit = result
    np.testing.assert_allclose(fit.fixef["estimate"].to_numpy(), reference.fixef["estimate"].to_numpy(), rtol=1e-6)
    assert fit.theta.to_numpy() == pytest.approx(reference.theta.to_numpy(), rel=1e-5, abs=1e-8)


def test_unicode_names_work_unquoted_and_quoted():
    data = plain_problem(3).rename(columns={"y": "反应", "x": "Größe", "g": "Gruppe_ü"})
    plain = bayesmix.Model("反应 ~ Größe + (1 | Gruppe_ü)", data).fit("reml")
    quoted = bayesmix.Model("`反应` ~ `Größe` + (1 | `Gruppe_ü`)", data).fit("reml")
    assert list(plain.fixef.index) == ["Intercept", "Größe"] and plain.ngrps == {"Gruppe_ü": 6}
    np.testing.assert_allclose(plain.fixef["estimate"], quoted.fixef["estimate"])
    spaced = data.rename(columns={"Größe": "Größe in cm"})
    fit = bayesmix.Model("反应 ~ `Größe in cm` + (1 | Gruppe_ü)", spaced).fit("reml")
    np.testing.assert_allclose(fit.fixef["estimate"], plain.fixef["estimate"])


def test_dotted_and_punctuated_grouping_names():
    data = plain_problem(3)
    reference = bayesmix.Model("y ~ x + (1 | g)", data).fit("reml")
    for name, written in [("Subject.ID", "Subject.ID"), ("site:id", "`site:id`"), ("a/b", "`a/b`")]:
        fit = bayesmix.Model(f"y ~ x + (1 | {written})", data.rename(columns={"g": name})).fit("reml")
        assert fit.ngrps == {name: 6}
        np.testing.assert_allclose(fit.fixef["estimate"], reference.fixef["estimate"], rtol=1e-6)


def test_names_formulae_cannot_read_bare_point_to_backticks():
    data = plain_problem(4).rename(columns={"x": "_x"})
    with pytest.raises(BayesmixError, match="go in backticks"):
        bayesmix.Model("y ~ _x + (1 | g)", data)
    assert bayesmix.Model("y ~ `_x` + (1 | g)", data).fit("reml").fixef.index[1] == "_x"
    for literal in ("True", "False", "None"):  # formulae reads True and False as the intercept: silently lost
        named = plain_problem(4).rename(columns={"x": literal})
        with pytest.raises(BayesmixError, match=f"goes in backticks: `{literal}`"):
            bayesmix.Model(f"y ~ {literal} + (1 | g)", named)
        assert bayesmix.Model(f"y ~ `{literal}` + (1 | g)", named).fit("reml").fixef.index[1] == literal


def test_a_grouping_factor_with_5000_levels():
    rng = np.random.default_rng(5)
    n_levels, per = 5000, 3
    g = np.repeat(np.arange(n_levels), per)
    data = pd.DataFrame({"y": rng.normal(size=n_levels)[g] + rng.normal(size=g.size), "g": g.astype(str)})
    fit = bayesmix.Model("y ~ 1 + (1 | g)", data).fit("reml")
    assert fit.ngrps == {"g": n_levels}
    assert fit.varcorr[0]["sd"][0] == pytest.approx(1.0, abs=0.1) and fit.sigma == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize(
    "change, formula, fragment",
    [
        (
            lambda d: d.assign(t=pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(len(d)), unit="D")),
            "y ~ t + (1 | g)",
            "holds dates or times",
        ),
        (lambda d: d.assign(x=d.x.astype(complex)), "y ~ x + (1 | g)", "complex numbers"),
        (lambda d: d.assign(x=[[1.0]] * len(d)), "y ~ x + (1 | g)", "not single numbers or labels"),
        (lambda d: pd.concat([d, d[["x"]]], axis=1), "y ~ x + (1 | g)", "2 columns named 'x'"),
        (lambda d: d.assign(x=d.x * 1e200), "y ~ x + (1 | g)", "squares overflow"),
        (lambda d: d.assign(y=3.0), "y ~ x + (1 | g)", "is constant"),
        (lambda d: d.assign(f=[f"r{i}" for i in range(len(d))]), "y ~ f + (1 | g)", "reproduce the response exactly"),
        (lambda d: d.assign(g=[f"r{i}" for i in range(len(d))]), "y ~ x + (1 | g)", "fewer levels than observations"),
        (lambda d: d.assign(g=[f"r{i // 2}" for i in range(len(d))]), "y ~ x + (x | g)", "random effects"),
        (lambda d: d.assign(**{"True": d.y}), "True ~ x + (1 | g)", "does not give one value per row"),
        (lambda d: d.assign(f="a"), "y ~ x * f + (1 | g)", "factor 'f' has only one level"),
    ],
)
def test_bad_data_is_named(change, formula, fragment):
    with pytest.raises(BayesmixError, match=fragment):
        bayesmix.Model(formula, change(plain_problem(0))).fit("reml")


def test_datetime_is_fine_as_a_grouping_factor_or_a_declared_factor():
    data = plain_problem(1)
    data["day"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(len(data)) // 5, unit="D")
    by_day = bayesmix.Model("y ~ x + (1 | day)", data).fit("reml")
    by_g = bayesmix.Model("y ~ x + (1 | g)", data).fit("reml")  # day and g are the same grouping
    np.testing.assert_allclose(by_day.fixef["estimate"], by_g.fixef["estimate"], rtol=1e-6)
    as_factor = bayesmix.Model("y ~ day + (1 | f)", data, categorical=["day"]).fit("reml")
    assert len(as_factor.fixef) == 6


@pytest.mark.parametrize(
    "family, y, fragment",
    [
        ("bernoulli", lambda d: np.ones(len(d)), "is a success"),
        ("poisson", lambda d: np.zeros(len(d)), "is 0"),
        ("bernoulli", lambda d: (d.x > 0).astype(float), "separate the 0s from the 1s"),
    ],
)
def test_laplace_without_a_finite_optimum_is_named(family, y, fragment):
    data = plain_problem(2)
    data["y"] = y(data)
    with pytest.raises(BayesmixError, match=fragment):
        bayesmix.Model("y ~ x + (1 | g)", data, family=family).fit("laplace")


def test_large_counts_fit_by_laplace():
    """Counts in the thousands: the GLM start overflowed exp() before it halved its steps."""
    data = plain_problem(6)
    data["y"] = np.round(np.exp(8 + 0.3 * data.x + 0.2 * data.y))
    fit = bayesmix.Model("y ~ x + (1 | g)", data, family="poisson").fit("laplace")
    assert fit.fixef.loc["x", "estimate"] == pytest.approx(0.3, abs=0.1)
