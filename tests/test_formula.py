"""The formula layer: every lme4 syntax yields the right terms; invalid formulas raise BayesmixError."""

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesmix import BayesmixError
from bayesmix.design.formula import RandomTerm, parse_formula


def test_correlated_slope_is_one_term():
    spec = parse_formula("Reaction ~ Days + (Days | Subject)")
    assert spec.response.expr == "Reaction"
    assert spec.fixed == "Days"
    assert spec.random == (RandomTerm("Days", "Subject", ("Subject",), True),)
    assert spec.variables == {"Reaction", "Days", "Subject"}


def test_double_bar_is_uncorrelated():
    (term,) = parse_formula("y ~ x + (1 + x || g)").random
    assert term == RandomTerm("1 + x", "g", ("g",), False)


def test_nesting_expands_to_outer_and_interaction():
    spec = parse_formula("strength ~ 1 + (1 | batch/cask)")
    assert [(t.group, t.factors) for t in spec.random] == [("batch", ("batch",)), ("batch:cask", ("batch", "cask"))]
    deep = parse_formula("y ~ (1 | a/b/c)")
    assert [t.group for t in deep.random] == ["a", "a:b", "a:b:c"]


def test_interaction_group_and_crossed_terms():
    spec = parse_formula("y ~ x + (1 | a:b) + (0 + x | c)")
    assert [(t.expr, t.group, t.factors) for t in spec.random] == [("1", "a:b", ("a", "b")), ("0 + x", "c", ("c",))]
    assert spec.groups == ("a:b", "c")


def test_no_intercept_forms_are_kept_for_formulae():
    assert parse_formula("y ~ 0 + x + (1 | g)").fixed == "0 + x"
    assert parse_formula("y ~ -1 + x + (1 | g)").fixed == "- 1 + x"
    assert parse_formula("y ~ x - 1 + (1 | g)").fixed == "x - 1"
    assert parse_formula("y ~ (1 | g)").fixed == "1"


def test_formulae_operators_in_fixed_part():
    spec = parse_formula("y ~ x*z + x:w + scale(x) + C(f) + I(x**2) + (1 | g)")
    assert spec.fixed == "x*z + x:w + scale(x) + C(f) + I(x**2)"
    assert spec.variables == {"y", "x", "z", "w", "f", "g"}


def test_parenthesised_fixed_expression_is_not_random():
    spec = parse_formula("y ~ (x + z):w + (1 | g)")
    assert spec.fixed == "(x + z):w"
    assert len(spec.random) == 1


def test_binomial_responses():
    cb = parse_formula("cbind(incidence, size - incidence) ~ period + (1 | herd)").response
    assert (cb.expr, cb.failures, cb.trials, cb.is_binomial) == ("incidence", "size - incidence", None, True)
    p = parse_formula("p(s, n) ~ 1 + (1 | g)").response
    assert (p.expr, p.trials, p.failures) == ("s", "n", None)
    assert not parse_formula("y ~ 1 + (1|g)").response.is_binomial


@pytest.mark.parametrize(
    "formula, fragment, position",
    [
        ("y x", "no '~'", 3),
        ("~ x", "no response", 0),
        ("y ~ ", "nothing right of '~'", 4),
        ("y ~ x ~ z", "more than one '~'", 6),
        ("y ~ x + (1|g", "never closed", 8),
        ("y ~ x)", "without a matching '('", 5),
        ("y ~ x + (1 | )", "no grouping factor", 12),
        ("y ~ (| g)", "nothing before '|'", 5),
        ("y ~ (1|g):x", "inside another expression", 6),
        ("y ~ (1|g|h|k)", "more than one '|'", 10),
        ("y ~ (1|a b|h)", "is not an ID", 7),
        ("y ~ x + + z", "empty term", 8),
        ("y ~ (1 | g + h)", "not a factor name", 8),
        ("y ~ x $ z", "cannot parse", 4),
        ("y ~ x - (1 | g)", "cannot be subtracted", 8),
    ],
)
def test_syntax_errors_point_at_the_problem(formula, fragment, position):
    with pytest.raises(BayesmixError) as info:
        parse_formula(formula)
    message = str(info.value)
    assert fragment in message
    text_line, caret_line = message.splitlines()[1:3]
    assert text_line.strip() == formula.strip()
    assert caret_line.index("^") - text_line.index(formula[0]) == position


def test_non_string_and_duplicate_terms():
    with pytest.raises(BayesmixError, match="must be a string"):
        parse_formula(None)
    with pytest.raises(BayesmixError, match="appears twice"):
        parse_formula("y ~ (1 | g) + (1 | g)")


# --- property tests -----------------------------------------------------------------------------

names = st.sampled_from(["x", "z", "w", "Days", "age"])
groups = st.sampled_from(["g", "h", "Subject", "a/b", "a:b"])


@st.composite
def valid_formulas(draw):
    fixed = draw(st.lists(names, min_size=0, max_size=3, unique=True))
    intercept = draw(st.sampled_from(["", "1 + ", "0 + ", "-1 + "])) if fixed else "1"
    terms = []
    for _ in range(draw(st.integers(1, 3))):
        lhs = draw(st.sampled_from(["1", "x", "1 + x", "0 + x", "x + z", "0 + z"]))
        bar = draw(st.sampled_from(["|", "||"]))
        terms.append(f"({lhs} {bar} {draw(groups)})")
    rhs = intercept + " + ".join(fixed + terms) if fixed else " + ".join([intercept] + terms)
    return f"y ~ {rhs}", len(terms)


@settings(max_examples=200, deadline=None)
@given(valid_formulas())
def test_generated_valid_formulas_parse(case):
    formula, n_terms = case
    try:
        spec = parse_formula(formula)
    except BayesmixError as exc:  # duplicated random terms are the only rejection
        assert "appears twice" in str(exc)
        return
    expected = sum(1 + term.count("/") for term in formula.split("+") if "|" in term)
    assert len(spec.random) == expected >= n_terms
    assert all(t.group for t in spec.random)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=string.ascii_letters[:6] + " ~|()+-*:/01,.^$", max_size=30))
def test_arbitrary_text_raises_only_bayesmix_error(text):
    try:
        parse_formula(text)
    except BayesmixError:
        pass


@settings(max_examples=200, deadline=None)
@given(valid_formulas(), st.integers(0, 40), st.sampled_from(list("()|~+") + ["", "||"]))
def test_corrupted_formulas_raise_only_bayesmix_error(case, position, insert):
    formula, _ = case
    position = min(position, len(formula))
    corrupted = formula[:position] + insert + formula[position + 1 :]
    try:
        parse_formula(corrupted)
    except BayesmixError:
        pass
