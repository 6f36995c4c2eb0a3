"""Parse lme4 formula syntax into a :class:`FormulaSpec` (pure: no data involved).

Grammar (lme4's, with formulae's operators in every expression)::

    response ~ fixed + (expr | group) + (expr || group) + ...

- ``(expr | g)``: one block, one covariance matrix over the columns of ``expr``.
- ``(expr || g)``: uncorrelated; becomes one block per column of ``expr`` once the columns are
  known (in :mod:`bayesmix.design.encode`), factors included.
- ``(expr | a/b)``: nested, ``(expr | a) + (expr | a:b)``; ``a/b/c`` adds ``a:b:c``.
- ``(expr | a:b)``: one grouping factor whose levels are the observed combinations of a and b.
- response ``cbind(successes, failures)`` (lme4) or ``p(successes, trials)`` (formulae) for
  binomial data.

formulae parses every expression (the fixed part, each block's left-hand side); this module only
splits the formula into those pieces, which formulae cannot do because it has no ``||`` and
splits ``(1 + x | g)`` into independent terms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import formulae

from bayesmix.design.expressions import column_names, r_syntax
from bayesmix.design.membership import MM_SUFFIX, Membership, check_term, membership_call
from bayesmix.design.smooth import SmoothSpec, expand_by_smooths
from bayesmix.errors import BayesmixError, caret

_NAME = r"(?:[^\W\d][\w.]*|`[^`]+`)"  # a name (R-style dots allowed), or any text in backticks
_GROUP_PART = re.compile(rf"^\s*{_NAME}(?:\s*:\s*{_NAME})*\s*$")
_DOT = re.compile(r"(?<![\w.`])\.(?![\w.`])")  # R's '.' (all other columns), outside names and numbers
_OFFSET = re.compile(r"offset\s*\(", flags=re.S)


def _quoted(name: str) -> str:
    return name if re.fullmatch(r"[^\W\d]\w*", name) else f"`{name}`"


@dataclass(frozen=True)
class RandomTerm:
    """One parenthesised random-effect term after ``/`` expansion.

    expr: the left-hand side (formulae syntax), e.g. ``"1 + Days"``.
    group: the grouping factor's name as it appears in results, e.g. ``"Subject"`` or ``"a:b"``.
    factors: the data columns whose level combinations form the group, e.g. ``("a", "b")``.
    correlated: False for ``||`` (one independent block per column of ``expr``).
    shared: brms's ID of ``(expr | ID | group)``: the effects of every linear predictor written with
        this ID are correlated with one another (a categorical response's categories), else None.
    structure: the block's covariance (``us``, ``cs``, ``ar1``, ``exp``, ``gau``, ``ou``: glmmTMB's
        ``cs(x | g)`` syntax; ``diag(x | g)`` is lme4's ``(x || g)``).
    """

    expr: str
    group: str
    factors: tuple[str, ...]
    correlated: bool
    shared: str | None = None
    structure: str = "us"  # glmmTMB's covariance structure: us(...), cs(...), ar1(...), exp(...), ...
    rank: int | None = None  # rr(x | g, d)'s d (glmmTMB's default 2 where not given)
    known: object = field(default=None, compare=False, repr=False)  # cov=: the levels' known covariance
    membership: Membership | None = None  # brms's mm(a, b): the membership columns and their weights
    cov_key: str | None = None  # brms's gr(g, cov = A): the name cov= gives A under (else the group's)

    @property
    def columns(self) -> frozenset[str]:
        """The data columns the grouping side reads (a multi-membership group's, not its one-level label)."""
        return self.membership.variables if self.membership is not None else frozenset(self.factors)


@dataclass(frozen=True)
class Response:
    """The left-hand side of ``~``.

    expr: the response expression (a column name or an expression of columns); for binomial
        data the successes.
    trials: for ``p(s, n)``, the trials expression; for ``cbind(s, f)``, ``None`` and
        ``failures`` is set instead (trials = s + f).
    """

    expr: str
    trials: str | None = None
    failures: str | None = None

    @property
    def is_binomial(self) -> bool:
        return self.trials is not None or self.failures is not None

    @property
    def expressions(self) -> tuple[str, ...]:
        return tuple(e for e in (self.expr, self.trials, self.failures) if e is not None)


@dataclass(frozen=True)
class SubmodelSpec:
    """A one-sided formula for a distributional parameter (glmmTMB's ziformula / dispformula, brms's
    ``zi ~ x``): ``role`` ("zi" or "dispersion"), the user's text, its fixed part (formulae syntax)
    and the columns it reads."""

    role: str
    text: str
    fixed: str
    variables: frozenset[str]
    random: tuple[RandomTerm, ...] = ()  # its random-effect terms (glmmTMB's ziformula = ~ x + (1 | g))


@dataclass(frozen=True)
class FormulaSpec:
    """A parsed formula: response, fixed-effects formula (formulae syntax), random terms."""

    text: str
    response: Response
    fixed: str
    random: tuple[RandomTerm, ...]
    variables: frozenset[str]
    offsets: tuple[str, ...] = ()
    has_dot: bool = False
    weights: str | None = None  # lme4's weights= argument: an expression of columns, one weight per row
    submodels: tuple[SubmodelSpec, ...] = ()  # zi= and dispersion= formulas
    censoring: tuple[str, str | None] | None = None  # (codes column, interval upper bound column): brms's cens()
    smooths: tuple[SmoothSpec, ...] = ()  # s(x) terms: fixed columns and a homdiag block each (gamm4's form)

    @property
    def all_random(self) -> tuple[RandomTerm, ...]:
        """Every random-effect term: the mean's, then those of the zi= and dispersion= formulas."""
        return (*self.random, *(term for sub in self.submodels for term in sub.random))

    def random_terms(self, predictor: str) -> tuple[RandomTerm, ...]:
        """The random-effect terms of one linear predictor: ``"mu"`` (the mean's) or a submodel's role;
        a categorical response's categories (roles that are no submodel's) repeat the mean's."""
        return next((sub.random for sub in self.submodels if sub.role == predictor), self.random)

    def with_censoring(self, codes: str, upper: str | None) -> FormulaSpec:
        """The spec with censored responses: a column of codes ("left", "right", "none", "interval")
        and, for interval censoring, the column of upper bounds (both join the used columns)."""
        columns = {codes} | ({upper} if upper is not None else set())
        return replace(self, censoring=(codes, upper), variables=self.variables | columns)

    def with_submodel(self, submodel: SubmodelSpec) -> FormulaSpec:
        """The spec with a distributional parameter's formula (its columns join the used ones)."""
        return replace(self, submodels=(*self.submodels, submodel), variables=self.variables | submodel.variables)

    def with_weights(self, expr: str) -> FormulaSpec:
        """The spec with lme4's ``weights=`` argument (one positive number per row)."""
        names = _validate_expression(self.text, f"I({expr})", 0, "weights")
        return replace(self, weights=expr, variables=self.variables | names)

    def with_offset(self, expr: str) -> FormulaSpec:
        """The spec with one more offset expression (lme4's ``offset=`` argument): offsets add up."""
        names = _validate_expression(self.text, f"I({expr})", 0, "offset")
        return replace(self, offsets=(*self.offsets, expr), variables=self.variables | names)

    def with_columns(self, columns, response_columns) -> FormulaSpec:
        """R's ``.`` in the fixed part: every column of the data but the response's."""
        if not self.has_dot:
            return self
        dot = " + ".join(_quoted(str(c)) for c in columns if str(c) not in response_columns)
        fixed = _DOT.sub(lambda match: f"({dot})" if dot else "1", self.fixed)
        names = _validate_expression(self.text, fixed, 0, "fixed-effects part")
        return replace(self, fixed=fixed, variables=self.variables | names, has_dot=False)

    def with_smooth_levels(self, levels: dict[str, tuple]) -> FormulaSpec:
        """The spec with each factor-by smooth ``s(x, by = f)`` expanded into one smooth per level of
        f (``levels``: f's level names), each with its fixed column and its block, as gamm4's."""
        smooths, added = expand_by_smooths(self.smooths, levels)
        if not added:
            return self
        fixed = self.fixed + "".join(f" + {smooth.fixed_terms()}" for smooth in added)
        random = (*self.random, *(smooth_term(smooth) for smooth in added))
        return replace(self, smooths=tuple(smooths), fixed=fixed, random=random)

    @property
    def groups(self) -> tuple[str, ...]:
        """Grouping factor names in order of first appearance, e.g. ``("batch", "batch:cask")``."""
        return tuple(dict.fromkeys(term.group for term in self.random))


def _syntax_error(text: str, position: int, problem: str, fix: str) -> BayesmixError:
    return BayesmixError(f"Formula syntax error: {problem}\n{caret(text, position)}\n{fix}")


def _outside_backticks(text: str):
    """Yield (index, char) of the characters of ``text`` that are not inside `backtick quotes`."""
    quoted = False
    for i, ch in enumerate(text):
        if ch == "`":
            quoted = not quoted
        elif not quoted:
            yield i, ch


def _split_outside_backticks(text: str, separator: str) -> list[str]:
    cuts = [i for i, ch in _outside_backticks(text) if ch == separator]
    bounds = [-1, *cuts, len(text)]
    return [text[a + 1 : b] for a, b in zip(bounds, bounds[1:])]


def _check_parentheses(text: str) -> None:
    stack = []
    for i, ch in _outside_backticks(text):
        if ch == "(":
            stack.append(i)
        elif ch == ")":
            if not stack:
                raise _syntax_error(text, i, "a ')' without a matching '('.", "Remove it or add the '('.")
            stack.pop()
    if stack:
        raise _syntax_error(text, stack[-1], "a '(' that is never closed.", "Add the missing ')'.")


def _top_level(text: str, start: int = 0):
    """Yield (index, char) of characters of ``text`` outside any parentheses or backticks."""
    depth = 0
    quoted = False
    for i, ch in enumerate(text):
        if ch == "`":
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0:
            yield i + start, ch


def _split_terms(text: str, offset: int) -> list[tuple[str, str, int]]:
    """Split at top-level ``+``/``-``: a list of (sign, piece, position of piece in formula)."""
    pieces, sign, begin = [], "+", 0
    for i, ch in _top_level(text):
        if ch in "+-":
            pieces.append((sign, text[begin:i], offset + begin))
            sign, begin = ch, i + 1
    pieces.append((sign, text[begin:], offset + begin))
    return pieces


def _validate_expression(formula: str, expr: str, position: int, what: str) -> frozenset[str]:
    """Parse ``expr`` with formulae; return its variable names or raise BayesmixError."""
    try:
        names = formulae.model_description(expr).var_names
    except Exception as exc:  # formulae raises several private error types
        raise _syntax_error(
            formula,
            position,
            f"formulae cannot parse the {what} '{expr.strip()}' ({exc}).",
            "Check the operators and function calls in that part. Column names that are not plain names "
            "(spaces, punctuation, a leading digit or underscore) go in backticks: `my column`.",
        ) from None
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise _syntax_error(
            formula,
            position,
            f"the {what} '{expr.strip()}' contains {bad[0]!r}, which is not a column.",
            "Write column names, or wrap arithmetic in I(...). A column named like a number or None goes in "
            f"backticks: `{bad[0]}`.",
        )
    _check_literals(formula, expr, position, what)
    return frozenset(column_names(names, expr))


LITERALS = ("True", "False", "None")


def _check_literals(formula: str, expr: str, position: int, what: str) -> None:
    """A bare True/False (formulae reads them as the intercept 1) or None used as a term is almost
    surely a column of that name, which would be silently ignored: refuse it, pointing to backticks."""
    masked = re.sub(r"`[^`]*`", lambda match: " " * len(match.group()), expr)
    for match in re.finditer(r"(?<![\w.])(True|False|None)(?![\w.])", masked):
        if _outside_calls(masked, match.start()):
            raise _syntax_error(
                formula,
                position + match.start(),
                f"'{match.group()}' in the {what} is a Python literal, not a column "
                "(formulae would read True or False as the intercept).",
                f"A column named {match.group()} goes in backticks: `{match.group()}`.",
            )


def _outside_calls(text: str, index: int) -> bool:
    """Whether ``text[index]`` is outside every function call's parentheses (inside I(...) or C(...)
    a literal is an argument, not a term); plain grouping parentheses do not count."""
    calls = []
    for i, ch in enumerate(text[:index]):
        if ch == "(":
            calls.append(i > 0 and (text[i - 1].isalnum() or text[i - 1] in "._"))
        elif ch == ")" and calls:
            calls.pop()
    return not any(calls)


def _expand_group(formula: str, group: str, position: int) -> list[tuple[str, tuple[str, ...]]]:
    """``a/b/c`` -> [("a", (a,)), ("a:b", (a, b)), ("a:b:c", (a, b, c))]; ``a:b`` -> one group."""
    parts = _split_outside_backticks(group, "/")
    out, factors = [], []
    for part in parts:
        if not _GROUP_PART.match(part):
            raise _syntax_error(
                formula,
                position,
                f"the grouping side '{group.strip()}' is not a factor name, a:b or a/b.",
                "Put one or more column names after '|', joined by ':' (interaction) or '/' (nesting); "
                "names that are not plain names go in backticks: (1 | `my group`).",
            )
        factors.extend(name.strip().strip("`") for name in _split_outside_backticks(part, ":"))
        out.append((":".join(factors), tuple(factors)))
    return out


def _parse_random(formula: str, piece: str, position: int) -> tuple[list[RandomTerm], frozenset[str]]:
    """Parse ``(expr | group)`` or ``(expr || group)`` (parentheses included in ``piece``).

    Returns the terms (several for ``a/b``) and the variables of the left-hand side.
    """
    inner = piece.strip()[1:-1]
    inner_pos = position + (len(piece) - len(piece.lstrip())) + 1
    bars = [i for i, ch in _top_level(inner) if ch == "|"]
    shared = None
    if len(bars) == 2 and bars[1] > bars[0] + 1:  # brms's (expr | ID | group)
        shared = _shared_id(formula, inner[bars[0] + 1 : bars[1]], inner_pos + bars[0] + 1)
        inner = inner[: bars[0] + 1] + " " * (bars[1] - bars[0]) + inner[bars[1] + 1 :]  # positions kept
        bars = bars[:1]
    if len(bars) == 2 and bars[1] == bars[0] + 1:
        correlated, left, right = False, inner[: bars[0]], inner[bars[0] + 2 :]
        right_pos = inner_pos + bars[0] + 2
    elif len(bars) == 1:
        correlated, left, right = True, inner[: bars[0]], inner[bars[0] + 1 :]
        right_pos = inner_pos + bars[0] + 1
    else:
        raise _syntax_error(
            formula,
            inner_pos + bars[-1],
            "more than one '|' in one random-effect term.",
            "Write each grouping factor as its own term: (x | g1) + (x | g2).",
        )
    if not left.strip():
        raise _syntax_error(
            formula,
            inner_pos,
            "nothing before '|' in a random-effect term.",
            "Say which effects vary by group, e.g. (1 | g) for an intercept.",
        )
    if not right.strip():
        raise _syntax_error(
            formula,
            right_pos,
            "no grouping factor after '|'.",
            "Name the grouping column, e.g. (1 | Subject).",
        )
    left = _r_terms(left)
    names = _validate_expression(formula, left, inner_pos, "random-effect expression")
    right, cov_key = _grouping_call(formula, right, right_pos)
    membership = membership_call(right)
    if membership is not None:  # one block of one level, its terms the levels (bayesmix.design.membership)
        check_term(left, membership)
        label = membership.label
        term = RandomTerm(left.strip(), label, (label + MM_SUFFIX,), correlated, shared, "mm", membership=membership)
        return [term], names
    terms = [
        RandomTerm(
            expr=left.strip(), group=name, factors=factors, correlated=correlated, shared=shared, cov_key=cov_key
        )
        for name, factors in _expand_group(formula, right, right_pos)
    ]
    return terms, names


_GR = re.compile(r"^\s*gr\s*\((.*)\)\s*$", flags=re.S)


def _grouping_call(formula: str, right: str, position: int) -> tuple[str, str | None]:
    """brms's ``gr(g)`` and ``gr(g, cov = A)``: (the grouping side ``g``, the name of A or None); any
    other grouping side as it is."""
    match = _GR.match(right)
    if match is None:
        return right, None
    parts = [part.strip() for part in _split_top_level(match.group(1), ",")]
    options = dict(part.partition("=")[::2] for part in parts[1:])
    options = {key.strip(): value.strip() for key, value in options.items()}
    if not parts[0] or "=" in parts[0] or set(options) - {"cov"} or not all(options.values()):
        raise _syntax_error(
            formula,
            position,
            f"'{right.strip()}': this version takes gr(g) and gr(g, cov = A).",
            "Write (1 | gr(species, cov = A)) and pass the matrix as cov={'A': A}.",
        )
    return parts[0], options.get("cov", "").strip("`") or None


def _shared_id(formula: str, text: str, position: int) -> str:
    """The ID of brms's ``(expr | ID | group)``: a plain name."""
    if not re.fullmatch(r"\s*[A-Za-z_.][A-Za-z0-9_.]*\s*", text):
        raise _syntax_error(
            formula,
            position,
            f"'{text.strip()}' between two '|' is not an ID.",
            "Write brms's (1 | p | g): a name between the bars correlates the effects of every category (a "
            "categorical response); or one '|' for one term, (x | g).",
        )
    return text.strip()


def _parse_response(formula: str, lhs: str) -> Response:
    text = lhs.strip()
    match = re.fullmatch(r"(cbind|p)\s*\((.*)\)", text, flags=re.S)
    if match:
        commas = [i for i, ch in _top_level(match.group(2)) if ch == ","]
        if len(commas) != 1:
            raise _syntax_error(
                formula,
                0,
                f"{match.group(1)}(...) takes two arguments.",
                "Write cbind(successes, failures) or p(successes, trials).",
            )
        first, second = match.group(2)[: commas[0]].strip(), match.group(2)[commas[0] + 1 :].strip()
        if match.group(1) == "cbind":
            return Response(expr=first, failures=second)
        return Response(expr=first, trials=second)
    return Response(expr=text)


def _response_variables(formula: str, response: Response) -> frozenset[str]:
    names: set[str] = set()
    for expr in response.expressions:
        if not expr:
            raise _syntax_error(formula, 0, "an empty response argument.", "Name the response column(s).")
        names |= _validate_expression(formula, f"I({expr})", 0, "response")
    return frozenset(names)


SUBMODEL_ROLES = ("zi", "dispersion")


def parse_submodel(text, role: str) -> SubmodelSpec:
    """Parse the one-sided formula of a distributional parameter (``zi="~ x"``, ``dispersion="~ z"``)."""
    argument = f"{role}="
    if not isinstance(text, str):
        raise BayesmixError(f"{argument} takes a one-sided formula such as '~ x', not {type(text).__name__}.")
    _check_parentheses(text)
    tildes = [i for i, ch in _top_level(text) if ch == "~"]
    if len(tildes) != 1:
        raise _syntax_error(text, 0, f"{argument} needs exactly one '~'.", "Write a one-sided formula: '~ x'.")
    if text[: tildes[0]].strip():
        raise _syntax_error(
            text,
            0,
            f"a response left of '~' in {argument}: the {role} formula predicts a parameter of the response's "
            "distribution, not a column.",
            f"Drop the response: {argument}'~{text[tildes[0] + 1 :]}'.",
        )
    rhs, position = text[tildes[0] + 1 :], tildes[0] + 1
    if not rhs.strip():
        raise _syntax_error(text, len(text), "nothing right of '~'.", "Write '~ 1' for a constant.")
    if any(ch == "|" for _, ch in _top_level(rhs)):
        rhs, position = f"({rhs})", position - 1  # a bare bar, as in the mean's formula
    fixed_parts, offsets, random, variables, smooths = _parse_terms(text, rhs, position)
    if smooths:
        raise _syntax_error(
            text,
            position,
            f"a smooth in {argument}: not available there yet.",
            f"Give {argument} fixed and random effects; s() belongs to the mean's formula.",
        )
    if offsets:
        raise _syntax_error(
            text,
            position,
            f"an offset in {argument}: not supported there.",
            f"Give {argument} fixed and random effects only; an offset belongs to the mean's formula.",
        )
    _check_duplicate_terms(text, random)
    fixed = " ".join(fixed_parts) if fixed_parts else "1"
    variables |= _validate_expression(text, fixed, position, f"{role} formula")
    return SubmodelSpec(role=role, text=text.strip(), fixed=fixed, variables=frozenset(variables), random=tuple(random))


def parse_formula(text: str) -> FormulaSpec:
    """Parse an lme4-style formula into a :class:`FormulaSpec`; raise BayesmixError if invalid."""
    if not isinstance(text, str):
        raise BayesmixError(f"The formula must be a string such as 'y ~ x + (1 | g)', not {type(text).__name__}.")
    _check_parentheses(text)
    tildes = [i for i, ch in _top_level(text) if ch == "~"]
    if not tildes:
        raise _syntax_error(text, len(text), "no '~'.", "Write the response left of '~': 'y ~ x + (1 | g)'.")
    if len(tildes) > 1:
        raise _syntax_error(text, tildes[1], "more than one '~'.", "A formula has exactly one '~'.")
    lhs, rhs = text[: tildes[0]], text[tildes[0] + 1 :]
    if not lhs.strip():
        raise _syntax_error(text, 0, "no response left of '~'.", "Write the response column first: 'y ~ ...'.")
    if not rhs.strip():
        raise _syntax_error(text, len(text), "nothing right of '~'.", "Write '1' for an intercept-only model.")
    rhs_position = tildes[0] + 1
    lhs, additions = _split_additions(text, lhs)
    if any(ch == "|" for _, ch in _top_level(rhs)):
        # lme4 reads a bare bar as the loosest operator: 'y ~ 1 | g' is 'y ~ (1 | g)'
        rhs, rhs_position = f"({rhs})", rhs_position - 1

    fixed_parts, offsets, random, variables, smooths = _parse_terms(text, rhs, rhs_position)
    fixed = " ".join(fixed_parts) if fixed_parts else "1"
    has_dot = bool(_DOT.search(re.sub(r"`[^`]*`", "", fixed)))
    if not has_dot:
        fixed_position = tildes[0] + 1 + (len(rhs) - len(rhs.lstrip()))
        variables |= _validate_expression(text, fixed, fixed_position, "fixed-effects part")
    response = _parse_response(text, lhs)
    variables |= _response_variables(text, response)
    for expr in offsets:
        variables |= _validate_expression(text, f"I({expr})", rhs_position, "offset")
    _check_duplicate_terms(text, random)
    synthetic = {name for smooth in smooths for name in smooth.column_names()}
    spec = FormulaSpec(
        text=text,
        response=response,
        fixed=fixed,
        random=tuple(random),
        variables=frozenset(variables - synthetic),
        offsets=tuple(offsets),
        has_dot=has_dot,
        smooths=tuple(smooths),
    )
    return _with_additions(spec, additions)


ADDITIONS = ("cens", "weights", "trials")  # brms's addition terms: y | cens(c, upper) + weights(w) ~ ...


def _split_additions(text: str, lhs: str) -> tuple[str, dict[str, list[str]]]:
    """brms's ``y | cens(c) + weights(w) ~ ...``: (the response, {addition: its arguments})."""
    bars = [i for i, ch in _top_level(lhs) if ch == "|"]
    if not bars:
        return lhs, {}
    additions: dict[str, list[str]] = {}
    for _, piece, _ in _split_terms(lhs[bars[0] + 1 :], 0):
        match = re.fullmatch(r"\s*(\w+)\s*\((.*)\)\s*", piece, flags=re.S)
        if not match or match.group(1) not in ADDITIONS:
            raise _syntax_error(
                text,
                bars[0],
                f"'{piece.strip()}' after '|' in the response: bayesmix reads brms's {', '.join(ADDITIONS)}().",
                "Write e.g. 'y | cens(censored) ~ x', or pass censored=, weights= to Model.",
            )
        arguments = [a.strip() for a in _split_top_level(match.group(2), ",")]
        additions[match.group(1)] = arguments
    return lhs[: bars[0]], additions


def _with_additions(spec: FormulaSpec, additions: dict[str, list[str]]) -> FormulaSpec:
    """The spec with brms's addition terms applied: cens(codes[, upper]) as censored=/upper=,
    weights(w) as weights=, trials(n) as p(y, n)."""
    if "trials" in additions:
        (trials,) = additions["trials"]
        response = replace(spec.response, trials=trials)
        spec = replace(spec, response=response, variables=spec.variables | _response_variables(spec.text, response))
    if "weights" in additions:
        (weights,) = additions["weights"]
        spec = spec.with_weights(weights)
    if "cens" in additions:
        codes, *upper = additions["cens"]
        spec = spec.with_censoring(codes.strip("`"), upper[0].strip("`") if upper else None)
    return spec


def _check_duplicate_terms(text: str, random) -> None:
    seen = set()
    for term in random:
        key = (term.expr, term.group, term.correlated)
        if key in seen:
            raise BayesmixError(
                f"The random-effect term ({term.expr} | {term.group}) appears twice in '{text}'. Remove the duplicate."
            )
        seen.add(key)


def _parse_terms(text: str, rhs: str, rhs_position: int):
    """The right-hand side's top-level terms: (fixed parts with their signs, offset expressions,
    random terms, the random terms' variables)."""
    fixed_parts: list[str] = []
    offsets: list[str] = []
    random: list[RandomTerm] = []
    variables: set[str] = set()
    smooths: list[SmoothSpec] = []
    pieces = _split_terms(rhs, rhs_position)
    if not pieces[0][1].strip() and len(pieces) > 1 and pieces[1][0] == "-":
        pieces = pieces[1:]  # a leading '-1'
    for sign, piece, position in pieces:
        stripped = piece.strip()
        position += len(piece) - len(piece.lstrip())
        if not stripped:
            raise _syntax_error(text, position, "an empty term.", "Remove the extra '+' or '-'.")
        bars = [i for i, ch in _top_level(stripped) if ch == "|"]
        closing = _matching_paren(stripped)
        if bars:
            raise _syntax_error(
                text,
                position + bars[0],
                "a '|' outside parentheses.",
                "Random-effect terms are written in parentheses: (x | g).",
            )
        structured = _structure_call(stripped)
        if structured is not None:
            name, inner = structured
            if sign == "-":
                raise _syntax_error(text, position, "a random-effect term cannot be subtracted.", "Use '+'.")
            terms, names = _parse_random(text, inner, position)
            if name != "us" and any(term.membership is not None for term in terms):
                raise _syntax_error(
                    text, position, f"{name}() around a multi-membership group.", "Write (1 | mm(a, b)) alone."
                )
            if name == "diag":  # glmmTMB's diag is lme4's ||: independent terms, a block each
                terms = [replace(term, correlated=False) for term in terms]
            elif name.startswith("rr"):
                terms = [replace(term, structure="rr", rank=int(name[2:])) for term in terms]
            elif name != "us":
                terms = [replace(term, structure=name) for term in terms]
            random.extend(terms)
            variables |= names.union(*(term.columns for term in terms))
        elif closing == len(stripped) - 1 and any(ch == "|" for _, ch in _top_level(stripped[1:-1])):
            if sign == "-":
                raise _syntax_error(text, position, "a random-effect term cannot be subtracted.", "Use '+'.")
            terms, names = _parse_random(text, piece, position - (len(piece) - len(piece.lstrip())))
            random.extend(terms)
            variables |= names.union(*(term.columns for term in terms))
        elif "|" in stripped:
            raise _syntax_error(
                text,
                position + stripped.index("|"),
                "a random-effect term inside another expression.",
                "Write each (x | g) as a term of its own, joined to the rest with '+'.",
            )
        elif _offset_argument(stripped) is not None:
            if sign == "-":
                raise _syntax_error(text, position, "an offset cannot be subtracted.", "Write offset(-x) instead.")
            offsets.append(_offset_argument(stripped))
        elif (
            re.match(r"s\s*\(", stripped)
            and _matching_paren(stripped[stripped.index("(") :]) == len(stripped[stripped.index("(") :]) - 1
        ):
            if sign == "-":
                raise _syntax_error(text, position, "a smooth cannot be subtracted.", "Use '+'.")
            smooth = smooth_call(text, stripped, position)
            smooths.append(smooth)
            variables |= {smooth.variable} | ({smooth.by} if smooth.by else set())
            if smooth.unexpanded:  # its columns and blocks once the data give the factor's levels
                continue
            fixed_parts.append(f"+ {smooth.fixed_terms()}" if fixed_parts else smooth.fixed_terms())
            random.append(smooth_term(smooth))
        else:
            stripped = expand_nesting(r_syntax(stripped))
            fixed_parts.append(f"{sign} {stripped}" if fixed_parts or sign == "-" else stripped)
    return fixed_parts, offsets, random, variables, smooths


SMOOTH_ARGUMENTS = ("k", "bs", "by")


def smooth_term(smooth: SmoothSpec) -> RandomTerm:
    """A smooth's penalised part: a homdiag block of one level (gamm4's form)."""
    return RandomTerm(smooth.random_expr(), smooth.label, (smooth.label,), True, structure="homdiag")


def smooth_call(text: str, term: str, position: int) -> SmoothSpec:
    """mgcv's ``s(x)``, ``s(x, k = 8)``, ``s(x, bs = "cr")``, ``s(x, by = f)``: one covariate, a basis
    dimension and type, a factor to smooth by; what mgcv's other arguments (``m``, ``id``, several
    covariates) would do is refused."""
    inner = term[term.index("(") + 1 : -1]
    parts = [part.strip() for part in _split_top_level(inner, ",")]
    if not parts or not parts[0] or "=" in parts[0]:
        raise _syntax_error(text, position, "s() without a covariate.", "Write s(x), the covariate first.")
    variable = parts[0].strip("`")
    if not re.fullmatch(r"[^\W\d][\w.]*", variable) and parts[0] == variable:
        raise _syntax_error(
            text, position, f"s({parts[0]}): a smooth of an expression.", "Give s() one column (a new column for x^2)."
        )
    options = {}
    for part in parts[1:]:
        name, _, value = (piece.strip() for piece in part.partition("="))
        if name not in SMOOTH_ARGUMENTS or not value:
            raise _syntax_error(
                text,
                position,
                f"s(): '{part}' is not an argument this version takes.",
                "This version takes s(x), s(x, k = 10), s(x, bs = 'tp' or 'cr'), s(x, by = f): one covariate.",
            )
        options[name] = value.strip("'\"")
    k = options.get("k", "10")
    if not k.isdigit() or int(k) < 3:
        raise _syntax_error(text, position, f"s(k = {k}).", "k is a whole number of basis functions, 3 or more.")
    bs = options.get("bs", "tp")
    if bs not in ("tp", "cr"):
        raise _syntax_error(text, position, f"s(bs = '{bs}').", "bs = 'tp' (mgcv's default) or 'cr' are available.")
    by = options.get("by")
    if by is not None:
        by = by.strip("`")
        if not re.fullmatch(r"[^\W\d][\w.]*", by) and f"`{by}`" != options["by"]:
            raise _syntax_error(text, position, f"s(by = {by}).", "by = names one factor column: s(x, by = f).")
    return SmoothSpec(variable, int(k), bs, by)


# glmmTMB's covariance structures, written around (x | g)
STRUCTURE_CALLS = ("us", "diag", "homdiag", "cs", "ar1", "toep", "exp", "gau", "ou", "mat", "rr")


def _structure_call(term: str) -> tuple[str, str] | None:
    """(the structure, ``(expr | group)``) of a term ``ar1(expr | group)``, else None."""
    match = re.match(r"(us|diag|homdiag|cs|ar1|toep|ou|exp|gau|mat|rr)\s*\(", term)
    if not match:
        return None
    opening = match.end() - 1
    if _matching_paren(term[opening:]) != len(term) - 1 - opening:
        return None
    inner = term[opening:]
    if not any(ch == "|" for _, ch in _top_level(inner[1:-1])):
        return None
    if match.group(1) == "rr":  # rr(x | g, d): the rank after the group
        return _reduced_rank(term, opening, inner)
    if match.group(1) not in STRUCTURE_CALLS:
        raise BayesmixError(
            f"The covariance structure {match.group(1)}() is not available yet; this version has "
            f"{', '.join(STRUCTURE_CALLS)} (glmmTMB's syntax, e.g. ar1(0 + times | subject))."
        )
    return match.group(1), " " * opening + inner  # padded: positions in the formula stay right


def _reduced_rank(term: str, opening: int, inner: str) -> tuple[str, str]:
    """("rr<d>", ``(expr | group)``) of ``rr(expr | group, d)`` (d 2 where not given, glmmTMB's default)."""
    commas = [i for i, ch in _top_level(inner[1:-1], 1) if ch == ","]
    rank = "2"
    if commas:
        rank = inner[commas[-1] + 1 : -1].strip()
        if not rank.isdigit() or int(rank) < 1:
            raise BayesmixError(f"rr(x | g, d) takes a whole number d >= 1 of latent dimensions, not '{rank}'.")
        inner = inner[: commas[-1]] + " " * (len(inner) - 1 - commas[-1]) + ")"
    return f"rr{rank}", " " * opening + inner


def _offset_argument(term: str) -> str | None:
    """The argument of a term ``offset(expr)``, else None."""
    match = _OFFSET.match(term)
    if not match:
        return None
    opening = match.end() - 1
    if _matching_paren(term[opening:]) != len(term) - 1 - opening:
        return None
    return term[opening + 1 : -1].strip()


def expand_nesting(expr: str) -> str:
    """R's nesting operator in a term: ``a/b`` is ``a + a:b``, ``a/b/c`` adds ``a:b:c`` and
    ``(a + b)/c`` is ``a + b + a:b:c`` (formulae's own ``/`` fails to name a factor's columns)."""
    parts = [part.strip() for part in _split_top_level(expr, "/")]
    if len(parts) == 1:
        return expr
    first = parts[0]
    if _matching_paren(first) == len(first) - 1:
        first = first[1:-1]
    out = [term.strip() for _, term, _ in _split_terms(first, 0) if term.strip()]
    prefix = ":".join(f"({term})" if "+" in term else term for term in out)
    for part in parts[1:]:
        prefix = f"{prefix}:{part}"
        out.append(prefix)
    return " + ".join(out)


def _r_terms(expr: str) -> str:
    """A term expression in formulae's syntax: R's ``^``, ``%in%`` and ``/`` rewritten."""
    out = []
    for sign, term, _ in _split_terms(expr, 0):
        if term.strip():
            piece = expand_nesting(r_syntax(term.strip()))
            out.append(f"{sign} {piece}" if out or sign == "-" else piece)
    return " ".join(out)


def _split_top_level(text: str, separator: str) -> list[str]:
    cuts = [i for i, ch in _top_level(text) if ch == separator]
    bounds = [-1, *cuts, len(text)]
    return [text[a + 1 : b] for a, b in zip(bounds, bounds[1:])]


def _matching_paren(text: str) -> int:
    """Index of the ')' closing a leading '(' in ``text``, or -1 when it does not start with '('."""
    if not text.startswith("("):
        return -1
    depth = 0
    for i, ch in _outside_backticks(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            return i
    return -1


def update_formula(old: str, new: str) -> str:
    """R's ``update.formula``: ``new`` with each ``.`` standing for ``old``'s side, e.g.
    ``update_formula("y ~ x + (1 | g)", ". ~ . + z - (1 | g) + (z | g)")`` is
    ``"y ~ x + z + (z | g)"``. A ``- term`` drops that term of the old side (written alike, spaces
    aside); one the old side lacks (``- 1``) is kept, as R keeps it."""
    if not isinstance(new, str):
        raise BayesmixError(f"The new formula must be a string such as '. ~ . + x', not {type(new).__name__}.")
    old_lhs, old_rhs = _sides(old)
    tilde = [i for i, ch in _top_level(new) if ch == "~"]
    if len(tilde) != 1:
        raise BayesmixError(f"The new formula '{new}' needs exactly one '~', e.g. '. ~ . + x'.")
    new_lhs, new_rhs = new[: tilde[0]].strip(), new[tilde[0] + 1 :]
    lhs = _DOT.sub(lambda _: old_lhs.strip(), new_lhs) if new_lhs else old_lhs.strip()
    terms: list[tuple[str, str]] = []
    for sign, piece, _ in _split_terms(new_rhs, 0):
        piece = piece.strip()
        if not piece:
            continue
        if piece == ".":
            terms += [(s, p.strip()) for s, p, _ in _split_terms(old_rhs, 0) if p.strip()]
        elif sign == "-" and any(_same_term(piece, p) for s, p in terms if s == "+"):
            terms = [(s, p) for s, p in terms if not (s == "+" and _same_term(piece, p))]
        elif not any(s == sign and _same_term(piece, p) for s, p in terms):
            terms.append((sign, piece))
    if not terms:
        raise BayesmixError(f"Updating '{old}' by '{new}' leaves no terms; write '1' for an intercept.")
    text = " ".join(f"{s} {p}" for s, p in terms)
    return f"{lhs} ~ {text[2:] if text.startswith('+ ') else text}"


def _sides(formula: str) -> tuple[str, str]:
    tilde = [i for i, ch in _top_level(formula) if ch == "~"]
    return formula[: tilde[0]], formula[tilde[0] + 1 :]


def _same_term(a: str, b: str) -> bool:
    return re.sub(r"\s+", "", a) == re.sub(r"\s+", "", b)
