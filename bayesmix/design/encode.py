"""FormulaSpec + DataFrame -> :class:`Design`: the response, X and one :class:`Block` per covariance.

The design never builds a dense n x (levels * k) Z: each block keeps the group code of every row
(taken from pandas Categorical codes) and its n x k term matrix, so the random-effect part of the
linear predictor is ``sum_j Zt[:, j] * b[codes, j]``. formulae builds X and each block's term
matrix; the frozen :class:`Codings` (level orders, formulae's fitted matrices) encode new data
exactly as the training data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import formulae
import numpy as np
import pandas as pd

from bayesmix import memory
from bayesmix.design.covariance import (
    DISTANCE_STRUCTURES,
    LEVEL_TERM,
    ONE_SD_STRUCTURES,
    Covariance,
    Unstructured,
    positions,
    structure,
)
from bayesmix.design.crossprod import RawCrossProducts, lme4_order, raw_cross_products
from bayesmix.design.expressions import (
    column_names,
    contrast_name,
    display_names,
    evaluate,
    formulae_matrix,
    with_contrasts,
)
from bayesmix.design.fixed import NO_RESIDUAL, identified_columns, no_residual_message
from bayesmix.design.formula import FormulaSpec, RandomTerm
from bayesmix.design.known import known_column, known_root, with_one_level_columns
from bayesmix.design.linpred import Predictor
from bayesmix.design.membership import membership_levels, membership_matrix, unseen_members
from bayesmix.design.plain import level_match, plain_matrix
from bayesmix.design.smooth import learn_smooths, with_smooth_columns
from bayesmix.errors import BayesmixError, BayesmixWarning, MissingDataWarning, did_you_mean, warn
from bayesmix.families import Family

LARGE_FACTOR = 100  # a fixed factor with more levels than this is named in the memory guard's advice


@dataclass(frozen=True)
class Block:
    """The random effects of one parenthesised term (or one column of a ``||`` term).

    label: unique name used for model variables, e.g. ``"Subject"`` or ``"Subject__Days"``.
    group: the grouping factor, e.g. ``"Subject"`` or ``"batch:cask"``.
    terms: names of the k columns, formulae's (``"Intercept"``, ``"Days"``, ``"f[b]"``).
    levels: the M level names of the group, in coding order.
    codes: (n,) int, the level index of every row.
    Zt: (n, k) float, the term matrix: row i's random effect is ``Zt[i] @ b[codes[i]]``.
    correlated: whether the k effects share one covariance matrix with correlations.
    term: index of the random term this block comes from, among its linear predictor's.
    covariance: the structure of the k effects' covariance (:mod:`bayesmix.design.covariance`),
        which both engines parameterise through.
    predictor: the linear predictor the effects enter: ``"mu"`` (the mean's) or a submodel's role
        (``"zi"``, ``"dispersion"``), whose block labels start with the role; :data:`SHARED` for a
        block whose terms enter several predictors (``outputs``).
    outputs: for a block shared by several linear predictors (brms's ``(1 | p | g)`` in a
        categorical model), the predictor each term enters (its terms are then named
        ``<predictor>_<term>``); None otherwise.
    """

    label: str
    group: str
    terms: tuple[str, ...]
    levels: tuple[str, ...]
    codes: np.ndarray
    Zt: np.ndarray
    correlated: bool
    term: int
    covariance: Covariance
    predictor: str = "mu"
    outputs: tuple[str, ...] | None = None

    @property
    def n_terms(self) -> int:
        return len(self.terms)

    def feeds(self, predictor: str) -> bool:
        """Whether the block's effects enter the linear predictor ``predictor``."""
        return predictor in self.outputs if self.outputs is not None else predictor == self.predictor

    def mask(self, predictor: str) -> np.ndarray:
        """(k,) 1 for the terms that enter ``predictor``, 0 for the others (a shared block's)."""
        if self.outputs is None:
            return np.full(self.n_terms, float(self.feeds(predictor)))
        return np.array([float(output == predictor) for output in self.outputs])

    @property
    def source_terms(self) -> tuple[str, ...]:
        """The terms as the formula's matrix names them (a shared block's without the predictor)."""
        if self.outputs is None:
            return self.terms
        return tuple(term[len(output) + 1 :] for term, output in zip(self.terms, self.outputs))

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def members(self) -> tuple[str, ...] | None:
        """The levels a one-level block's terms stand for (a known covariance's, a multi-membership
        group's: what ranef and ngrps report as the group's levels), else None."""
        return getattr(self.covariance, "members", None) or None

    @property
    def report_terms(self) -> tuple[str, ...]:
        """The terms as ranef and the plots name them: one ``Intercept`` for a block whose terms are levels."""
        return (LEVEL_TERM,) if self.members else self.terms


@dataclass(frozen=True)
class Codings:
    """Learned state needed to encode new data as the training data was encoded.

    levels: the level order of every categorical column (predictors and grouping factors).
    fixed_matrix: formulae's fitted matrix for X (``None`` when X has no columns).
    block_matrices: formulae's fitted term matrix for each random term, by ``(expr, group)``.
    contrasts: the factors coded by another contrast than treatment, ``{column: "Poly"}`` (R's
        default for ordered factors, or the ``contrasts=`` argument).
    response_levels: a two-level factor response's levels (failure, success), else None.
    """

    levels: dict[str, tuple]
    fixed_matrix: object | None
    block_matrices: dict[tuple[str, str], object] = field(default_factory=dict)
    contrasts: dict[str, str] = field(default_factory=dict)
    response_levels: tuple | None = None
    submodel_matrices: dict[str, object] = field(default_factory=dict)  # role -> formulae's fitted X
    # formulae's columns of X that the model keeps (an ordinal model's thresholds replace the intercept)
    fixed_columns: tuple[int, ...] | None = None
    smooths: dict = field(default_factory=dict)  # label -> the s() term's SmoothBasis, learned from the data


@dataclass(frozen=True)
class Design:
    """Arrays for one model; data enter the model only through this object.

    y: (n,) float response (successes for binomial).
    trials: (n,) float binomial trials, else None.
    X: (n, p) float fixed-effects matrix with column names ``fixed_names``.
    blocks: the random-effect blocks, in formula order.
    rows: (n,) int positions of the rows used, in the user's DataFrame.
    n_dropped: rows dropped for missing values.
    offset: (n,) known part of the linear predictor (coefficient 1: ``offset(...)`` terms and the
        ``offset=`` argument, added up), else None.
    weights: (n,) positive prior weights (lme4's ``weights=``), else None: a gaussian row's
        residual variance is sigma^2 / w, another family's log-likelihood counts w times.
    data: the used rows and columns as encoded (factors as ordered Categoricals in their coding
        order); a copy, never the user's frame. Rebuilding the design from it gives this design.
    """

    spec: FormulaSpec
    y: np.ndarray
    trials: np.ndarray | None
    X: np.ndarray
    fixed_names: tuple[str, ...]
    blocks: tuple[Block, ...]
    rows: np.ndarray
    n_dropped: int
    codings: Codings
    data: pd.DataFrame
    offset: np.ndarray | None = None
    weights: np.ndarray | None = None
    submodels: dict[str, Predictor] = field(default_factory=dict)  # role ("zi", "dispersion") -> its X
    censoring: np.ndarray | None = None  # per row CENSORING code (0 none, 1 left, 2 right, 3 interval)
    upper: np.ndarray | None = None  # interval censoring's upper bound (NaN elsewhere)

    in_memory = True  # the rows are here (a design from a Dask DataFrame has statistics only)

    @property
    def nobs(self) -> int:
        return len(self.y)

    @property
    def ngrps(self) -> dict[str, int]:
        """Levels per grouping factor (a known covariance's block holds its levels as terms)."""
        return {b.group: len(b.members) if b.members else b.n_levels for b in self.all_blocks}

    @property
    def all_blocks(self) -> tuple[Block, ...]:
        """Every random-effect block: the mean's (:attr:`blocks`), then those of the zi= and
        dispersion= formulas."""
        blocks = (*self.blocks, *(block for sub in self.submodels.values() for block in sub.blocks))
        return tuple({block.label: block for block in blocks}.values())  # a shared block once

    @property
    def predictors(self) -> dict[str, Predictor]:
        """Each linear predictor's data: the mean's (``"mu"``), then those of the zi= and
        dispersion= formulas (by role)."""
        return {"mu": Predictor("mu", self.X, self.fixed_names, self.blocks, self.offset), **self.submodels}

    @property
    def category_predictors(self) -> bool:
        """Whether the submodels are a categorical response's per-category copies of the formula
        (rather than zi= or dispersion= formulas)."""
        return bool(self.submodels) and not self.spec.submodels

    @property
    def y_less_offset(self) -> np.ndarray:
        """The response less the offset: what the fixed and random effects of a gaussian model
        (identity link) explain, and all that its exact fit and collapsed sampler need."""
        return self.y if self.offset is None else self.y - self.offset

    # The design protocol, shared with the Dask design (design/statistics.py): what the exact
    # gaussian fit reads, whether the rows are here or were reduced to their sums.

    def fixed_columns(self) -> tuple[list[int], tuple[str, ...], tuple[str, ...]]:
        """The fixed-effect columns the data identify (lme4's rank check, on X itself)."""
        return identified_columns(self.X, self.fixed_names)

    def check_residual(self, columns: list[int]) -> None:
        """Refuse a response that the fixed effects reproduce exactly: no residual is left for sigma."""
        y, X = self.y_less_offset, self.X[:, columns]
        if self.weights is not None:  # the weighted least-squares residual, as the fit sees the rows
            root = np.sqrt(self.weights)
            y, X = y * root, X * root[:, None]
        if np.all(y == y[0]):
            raise BayesmixError(
                f"The response '{self.spec.response.expr}' is constant ({y[0]:g} in all {len(y)} rows): there is "
                "no variation to attribute to the random effects or the residual. Check the data."
            )
        if X.shape[1] >= len(y):
            residual = 0.0
        else:
            beta = np.linalg.lstsq(X, y, rcond=None)[0] if X.shape[1] else np.zeros(0)
            residual = float(np.linalg.norm(y - X @ beta))
        if residual <= NO_RESIDUAL * float(np.linalg.norm(y)):
            raise BayesmixError(no_residual_message(X.shape[1], len(y)))

    def cross_products(self, columns: list[int] | None = None, dense: bool = True) -> RawCrossProducts:
        """The cross-products of [Z X y] (blocks in lme4 order, the ``columns`` of X, y less the
        offset): all that the exact gaussian fit and the collapsed sampler read of the rows.
        ``dense=False`` keeps R'Z1 and R'R sparse (:func:`raw_cross_products`)."""
        X = self.X if columns is None else self.X[:, columns]
        blocks = [self.blocks[i] for i in lme4_order(self.blocks)]
        return raw_cross_products(
            [(b.codes, b.Zt, b.n_levels) for b in blocks], X, self.y_less_offset, dense=dense, weights=self.weights
        )


def as_pandas(data):
    """A pandas DataFrame from any data frame that can give one: polars (``to_pandas()``), anything
    with the Arrow PyCapsule interface or the dataframe interchange protocol. A Dask DataFrame
    (reduced where it lives) and anything else pass through unchanged."""
    if isinstance(data, pd.DataFrame) or type(data).__module__.split(".")[0] == "dask":
        return data
    if hasattr(data, "to_pandas"):
        return data.to_pandas()
    if hasattr(data, "__arrow_c_stream__"):
        import pyarrow

        return pyarrow.table(data).to_pandas()
    if hasattr(data, "__dataframe__"):
        return pd.api.interchange.from_dataframe(data)
    return data


def with_default_index(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the index 0..n-1 (a copy only where its index is another: rows are matched by position)."""
    index = frame.index
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
        return frame
    return frame.reset_index(drop=True)


def _as_frame(data) -> pd.DataFrame:
    if not isinstance(data, pd.DataFrame):
        raise BayesmixError(
            f"data must be a pandas DataFrame, not {type(data).__name__}. "
            "Convert it first, e.g. pandas.DataFrame(data) or pandas.read_csv(path)."
        )
    if len(data) == 0:
        raise BayesmixError("data has no rows. Pass the DataFrame that holds your observations.")
    return data


def check_columns(spec: FormulaSpec, data: pd.DataFrame) -> list[str]:
    columns = [str(c) for c in data.columns]
    grouping = {f for term in spec.all_random for f in term.factors}
    for name in sorted(spec.variables):
        if name not in data.columns:
            kind = "grouping column" if name in grouping else "column"
            raise BayesmixError(
                f"Unknown {kind} '{name}' in formula '{spec.text}'.{did_you_mean(name, columns)} "
                f"The data has columns: {', '.join(columns[:20])}{' ...' if len(columns) > 20 else ''}."
            )
        copies = int((data.columns == name).sum())
        if copies > 1:
            raise BayesmixError(
                f"The data has {copies} columns named '{name}'; the formula cannot tell them apart. "
                "Rename or drop the duplicates."
            )
    if "Intercept" in value_columns(spec):
        raise BayesmixError(
            "The formula uses a column named 'Intercept' as a predictor; formulae gives that name to the intercept "
            "and would take one for the other. Rename the column, e.g. data.rename(columns={'Intercept': "
            "'intercept_value'})."
        )
    return sorted(spec.variables, key=list(data.columns).index)


def _variables(expr: str) -> set[str]:
    """The column names a formulae expression uses (backticks removed)."""
    return column_names(formulae.model_description(expr).var_names, expr)


def offset_columns(spec: FormulaSpec) -> set[str]:
    """Columns the offsets read (``offset(log(expo))``: expo)."""
    return set().union(*(_expression_names(expr) for expr in spec.offsets))


def value_columns(spec: FormulaSpec) -> set[str]:
    """Columns used as predictors: in the fixed part, left of '|' in a random term, or in a
    distributional parameter's formula (zi=, dispersion=)."""
    parts = (spec.fixed, *(term.expr for term in spec.all_random), *(sub.fixed for sub in spec.submodels))
    return set().union(*(_variables(part) for part in parts))


def _check_dtypes(frame: pd.DataFrame, spec: FormulaSpec, categorical: dict) -> None:
    """Refuse columns bayesmix cannot encode without guessing, with the conversion to make.

    Complex numbers and cells that are not single values (lists, dicts) anywhere; dates and
    times (datetime64, timedelta64, period) as predictors or response, unless named in
    ``categorical`` (as a grouping factor a date is a label like any other).
    """
    as_values = value_columns(spec)
    as_values |= {v for expr in spec.response.expressions for v in _expression_names(expr)}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_complex_dtype(column):
            raise BayesmixError(
                f"Column '{name}' holds complex numbers ({column.dtype}). "
                "Pass the real part, the modulus or both as separate real columns."
            )
        temporal = isinstance(column.dtype, pd.PeriodDtype) or pd.api.types.is_datetime64_any_dtype(column)
        temporal = temporal or pd.api.types.is_timedelta64_dtype(column)
        if temporal and name in as_values and name not in categorical:
            raise BayesmixError(
                f"Column '{name}' holds dates or times ({column.dtype}); bayesmix does not guess whether you "
                f"mean a trend or a factor. Convert it to a number (e.g. days since the start: "
                f"(data['{name}'] - data['{name}'].min()).dt.days), or treat it as a factor with "
                f"categorical=['{name}']. As a grouping factor (1 | {name}) a date needs no conversion."
            )
        if column.dtype == object:
            try:
                pd.unique(column)
            except TypeError:
                kinds = sorted({type(v).__name__ for v in column if not pd.api.types.is_hashable(v)})
                raise BayesmixError(
                    f"Column '{name}' holds values that are not single numbers or labels ({', '.join(kinds)}). "
                    "Put one number or one label in each cell."
                ) from None


def normalise_categorical(categorical, data: pd.DataFrame) -> dict[str, tuple | None]:
    """``None`` | list of columns | {column: level order or None} -> {column: order or None}."""
    if categorical is None:
        return {}
    if isinstance(categorical, str):
        categorical = [categorical]
    if not isinstance(categorical, dict):
        categorical = {name: None for name in categorical}
    out = {}
    for name, order in categorical.items():
        if name not in data.columns:
            raise BayesmixError(
                f"categorical names column '{name}', which is not in the data.{did_you_mean(name, data.columns)}"
            )
        out[name] = None if order is None else tuple(order)
    return out


def level_order(name: str, column: pd.Series, order: tuple | None) -> tuple:
    """The levels of ``column`` present in the rows used, in the given order, the Categorical's
    order or sorted order. Levels with no rows are dropped, as lme4 does (``drop.unused.levels``)."""
    present = pd.unique(column)
    present_text = {str(v) for v in present}
    if order is not None:
        as_text = {str(level): level for level in order}
        missing = [v for v in present if v not in order and str(v) not in as_text]
        if missing:
            raise BayesmixError(
                f"Column '{name}' has values {missing[:5]} that are not in the level order given for it "
                f"({list(order)}). Add them to the order."
            )
        if len(set(order)) != len(order):
            raise BayesmixError(f"The level order given for '{name}' repeats a level: {list(order)}.")
        return tuple(level for level in order if str(level) in present_text)
    if isinstance(column.dtype, pd.CategoricalDtype):
        return tuple(level for level in column.cat.categories if str(level) in present_text)
    try:
        return tuple(sorted(present))
    except TypeError:  # mixed types: sort by their text
        return tuple(sorted(present, key=str))


def _encode_categoricals(
    frame: pd.DataFrame, spec: FormulaSpec, categorical: dict[str, tuple | None]
) -> tuple[dict[str, tuple], dict[str, pd.Categorical]]:
    """Turn categorical predictors and grouping factors into ordered Categoricals (in place).

    formulae follows a Categorical's order only when it is ordered; unordered columns get sorted
    order. A numeric column that is both a predictor and a grouping factor (``y ~ year + (1 | year)``)
    stays a number in ``frame``, as in lme4, where grouping makes a factor for the grouping only:
    its factor is returned apart. Returns (each factor column's level order, those grouping factors).
    """
    response_columns = {v for expr in spec.response.expressions for v in _expression_names(expr)}
    grouping = {f for term in spec.all_random for f in term.factors}
    predictors = value_columns(spec) | {v for expr in spec.offsets for v in _expression_names(expr)}
    levels, group_columns = {}, {}
    for name in frame.columns:
        column = frame[name]
        is_text = not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)
        if name in response_columns and name not in grouping | predictors:
            continue
        as_factor = name in categorical or is_text
        if not (as_factor or name in grouping):
            continue
        order = level_order(name, column, categorical.get(name))
        if as_factor and name in predictors and len(order) < 2:
            raise BayesmixError(
                f"The factor '{name}' has only one level ('{order[0]}') in the rows used: a factor needs at "
                "least two levels to have an effect (R: 'contrasts can be applied only to factors with 2 or "
                "more levels'). Remove it from the formula."
            )
        encoded = pd.Categorical(_as_levels(column, order), categories=list(order), ordered=True)
        if as_factor or name not in predictors:
            levels[name] = order
            frame[name] = encoded
        else:
            group_columns[name] = pd.Series(encoded)
    return levels, group_columns


def _as_levels(column: pd.Series, order: tuple) -> pd.Series:
    """The column with each value replaced by the level it matches (a value matches by its text
    when the level order was given as text, e.g. "1" for the number 1)."""
    if isinstance(column.dtype, pd.CategoricalDtype):  # recode by value, not by the old categories
        column = column.astype(object)
    exact = set(order)
    if all(value in exact for value in pd.unique(column)):
        return column
    as_text = {str(level): level for level in order}
    return column.map(lambda value: as_text.get(str(value), value))


def _drop_missing(frame: pd.DataFrame, missing: str, optional=()) -> tuple[pd.DataFrame, np.ndarray, int]:
    """Drop (or refuse) the rows with a missing value in a used column but the ``optional`` ones
    (interval censoring's upper bounds, empty where a row is not interval-censored)."""
    if missing not in ("drop", "raise"):
        raise BayesmixError(f"missing must be 'drop' or 'raise', not {missing!r}.")
    na = frame.drop(columns=[c for c in optional if c in frame.columns]).isna()
    bad = na.any(axis=1).to_numpy()
    n_bad = int(bad.sum())
    report_missing(n_bad, len(frame), {c: int(n) for c, n in na.sum().items()}, missing)
    rows = np.flatnonzero(~bad)
    return frame.iloc[rows].reset_index(drop=True), rows, n_bad


def report_missing(n_bad: int, n_rows: int, per_column: dict[str, int], missing: str) -> None:
    """Raise (``missing="raise"``, or nothing left) or warn about ``n_bad`` of ``n_rows`` rows with
    missing values in used columns, with the count per column."""
    if not n_bad:
        return
    detail = ", ".join(f"{c}: {n}" for c, n in per_column.items() if n)
    if missing == "raise":
        raise BayesmixError(
            f"{n_bad} of {n_rows} rows have missing values in used columns ({detail}). "
            "Remove or impute them, or pass missing='drop' to drop them."
        )
    if n_bad == n_rows:
        raise BayesmixError(f"Every row has a missing value in a used column ({detail}); nothing is left to fit.")
    warn(
        f"Dropped {n_bad} of {n_rows} rows with missing values ({detail}); {n_rows - n_bad} rows are used.",
        MissingDataWarning,
    )


MAX_MAGNITUDE = 1e100  # beyond this, sums of squares of a column overflow double precision


def _check_finite(frame: pd.DataFrame) -> None:
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            values = column.to_numpy(dtype=float)
            n_inf = int(np.isinf(values).sum())
            if n_inf:
                raise BayesmixError(
                    f"Column '{name}' has {n_inf} infinite values. "
                    "Replace them (or set them to NaN to drop those rows)."
                )
            largest = float(np.max(np.abs(values), initial=0.0))
            if largest > MAX_MAGNITUDE:
                raise BayesmixError(
                    f"Column '{name}' has values as large as {largest:.3g}; their squares overflow double "
                    "precision. Rescale it (e.g. divide by a power of 10) before fitting."
                )


def evaluate_expression(frame: pd.DataFrame, expr: str, what: str) -> np.ndarray:
    """The values of a column or an expression of columns (:func:`bayesmix.design.expressions.evaluate`)."""
    if expr in frame.columns and pd.api.types.is_numeric_dtype(frame[expr]):
        values = frame[expr].to_numpy(dtype=float)
        if not np.all(np.isfinite(values)):
            raise BayesmixError(f"The {what} '{expr}' has non-finite values. Remove those rows.")
        return values
    return evaluate(frame, expr, what)


def _component_columns(component, frame: pd.DataFrame, levels: dict[str, tuple]) -> tuple[int, str | None]:
    """An upper bound on the columns one component of a formulae term gives, and its factor (if any)."""
    call = getattr(component, "call", None)
    if call is None:
        name = component.name.strip("`")
        return (len(levels[name]), name) if name in levels else (1, None)
    if call.callee == "C":
        names = [n.strip("`") for n in component.var_names if isinstance(n, str) and n.strip("`") in frame.columns]
        if names:
            name = names[0]
            return (len(levels[name]) if name in levels else int(frame[name].nunique())), name
    return 1, None


def estimate_columns(expr: str, frame: pd.DataFrame, levels: dict[str, tuple]) -> tuple[int, str | None, int]:
    """(upper bound on the columns formulae will build for ``expr``, the factor with most levels, its levels).

    Counted from the level counts of the categorical columns, before formulae allocates anything: a
    term's columns are the product of its components' (a factor: its levels; C(x): x's distinct
    values; anything else: 1).
    """
    try:
        terms = formulae.model_description(expr).terms
    except Exception:  # formulae reports it when it builds the matrix
        return 0, None, 0
    total, factor, most = 0, None, 0
    for term in terms:
        count = 1
        for component in getattr(term, "components", ()):
            n, name = _component_columns(component, frame, levels)
            count *= n
            if name is not None and n > most:
                factor, most = name, n
        total += count
    return total, factor, most


def _formulae_matrix(expr: str, frame: pd.DataFrame, what: str):
    try:
        return formulae_matrix(expr, frame)
    except Exception as exc:
        raise BayesmixError(
            f"formulae could not build the {what} '{expr}': {type(exc).__name__}: {exc}. Check the terms and "
            "function calls of that part (docs/formula.md lists what a formula may contain)."
        ) from None


def _group_codes(frame: pd.DataFrame, term: RandomTerm, group_columns: dict) -> tuple[np.ndarray, tuple[str, ...]]:
    """Level index per row and level names; for ``a:b`` the observed combinations, in order."""
    parts = [group_columns.get(f, frame[f]) for f in term.factors]
    if len(parts) == 1:
        column = parts[0]
        used = np.unique(column.cat.codes.to_numpy())
        remap = np.full(len(column.cat.categories), -1)
        remap[used] = np.arange(len(used))
        codes = remap[column.cat.codes.to_numpy()]
        levels = tuple(str(column.cat.categories[i]) for i in used)
        return codes.astype(np.int64), levels
    stacked = np.column_stack([p.cat.codes.to_numpy() for p in parts])
    combos, codes = np.unique(stacked, axis=0, return_inverse=True)
    levels = tuple(":".join(str(p.cat.categories[c]) for p, c in zip(parts, combo)) for combo in combos)
    return codes.reshape(-1).astype(np.int64), levels


def _check_term_matrix(term: RandomTerm, frame: pd.DataFrame, levels: dict[str, tuple]) -> None:
    k, factor, n_levels = estimate_columns(term.expr, frame, levels)
    if factor is not None:
        fix = (
            f"The slope of the factor '{factor}' has {n_levels:,} levels: use (1 | {term.group}:{factor}) "
            f"(one intercept per {term.group} and {factor} combination) instead."
        )
    else:
        fix = "Use fewer terms left of '|'."
    memory.check(f"The term matrix of ({term.expr} | {term.group})", (len(frame), k), fix)


def _blocks(frame: pd.DataFrame, terms, levels: dict, group_columns: dict, contrasts: dict):
    """The raw blocks of some random-effect terms (:func:`_make_blocks` names them), and formulae's
    fitted matrix of each term's left-hand side."""
    raw, matrices = [], {}
    for index, term in enumerate(terms):
        if term.membership is not None:  # read with pandas: formulae's indicators are dense n x levels
            members = membership_levels(frame, term.membership)
            fix = "Use (1 | school1) per membership column, or fit on fewer rows."
            memory.check(f"The membership matrix of (1 | {term.group})", (len(frame), len(members)), fix)
            Zt = membership_matrix(frame, term.membership, members)
            codes = np.zeros(len(frame), np.int64)
            raw.append((term.group, members, (term.group,), codes, Zt, True, index, ("mm", None)))
            continue
        _check_term_matrix(term, frame, levels)
        matrix = _formulae_matrix(term.expr, frame, "random-effect expression")
        if matrix is None:
            raise BayesmixError(
                f"The random-effect term ({term.expr} | {term.group}) has no columns. "
                "Use (1 | g) for a random intercept."
            )
        matrices[(term.expr, term.group)] = matrix
        Zt = np.asarray(matrix.design_matrix, dtype=float)
        names = display_names(matrix.as_dataframe().columns, contrasts)
        codes, levels = _group_codes(frame, term, group_columns)
        # one group of many positions is spatial, one of many penalised columns a smooth (homdiag)
        spread = term.structure in DISTANCE_STRUCTURES or (term.structure in ONE_SD_STRUCTURES and Zt.shape[1] > 1)
        if len(levels) < 2 and not spread:
            raise BayesmixError(
                f"The grouping factor '{term.group}' has {len(levels)} level in the data used; "
                "random effects need at least two. Remove the term, or use the factor as a fixed effect."
            )
        _check_structure(term, Zt, names)
        if term.structure == "known":  # the root of A over the indicators' levels, in their order
            column = frame[known_column(term)]
            root = known_root(term, column.cat.categories)
            members = tuple(str(level) for level in column.cat.categories)
            raw.append((term.group, names, levels, codes, Zt, True, index, ("known", (root, members))))
        elif term.correlated:
            raw.append((term.group, names, levels, codes, Zt, True, index, (term.structure, term.rank)))
        else:
            raw.extend(
                (term.group, (n,), levels, codes, Zt[:, [j]], False, index, ("us", None)) for j, n in enumerate(names)
            )
    return raw, matrices


def _check_positions(term, names, indicators: bool, call: str) -> None:
    """A distance structure's terms are the indicators of a factor of positions whose labels are
    coordinates (glmmTMB's ``numFactor``: ``bayesmix.num_factor(x, y)``), each position once."""
    fix = (
        f"Write {term.structure}(0 + pos | {term.group}) with pos = bayesmix.num_factor(x[, y]) (glmmTMB's numFactor): "
        "a factor whose levels are the coordinates, such as '(1.5,2)'."
    )
    if not indicators:
        raise BayesmixError(
            f"{call}: {term.structure} correlates the levels of a factor of positions, one column each. {fix}"
        )
    try:
        xy = positions(names, term.structure)
    except ValueError as error:
        raise BayesmixError(f"{call}: {error}. {fix}") from None
    if len(np.unique(xy, axis=0)) < len(xy):
        raise BayesmixError(
            f"{call}: two levels sit at the same position, so their effects cannot be told apart. {fix}"
        )


def _check_time_order(term, names, call: str) -> None:
    """ar1 and toep take the factor's level order for time order. Labels that all carry a number
    (t1, t2, ..., t10) but are not in its order (text sorts t10 before t2) are almost surely times
    out of order: warn, naming the fix."""
    numbers = [re.findall(r"-?\d+(?:\.\d+)?", str(name).rsplit("[", 1)[-1]) for name in names]
    if not all(numbers):
        return
    values = [float(found[-1]) for found in numbers]
    if any(later <= earlier for earlier, later in zip(values, values[1:])):
        shown = ", ".join(str(name) for name in list(names)[:6])
        warn(
            f"{call}: {term.structure} takes the factor's level order for time order, and its levels ({shown}, ...) "
            "are not in the order of their numbers. Give the levels in time order: "
            "categorical={'times': [...]} with the levels listed as they follow in time.",
            BayesmixWarning,
        )


def _check_structure(term, Zt: np.ndarray, names=()) -> None:
    """A structured covariance fits the term's columns: cs and ar1 relate two or more terms, and
    ar1's are the indicators of one factor of times (glmmTMB's ``ar1(0 + times | g)``)."""
    if term.structure in ("us", "known"):
        return
    call = f"{term.structure}({term.expr} | {term.group})"
    indicators = np.all((Zt == 0.0) | (Zt == 1.0)) and np.all(Zt.sum(axis=1) == 1.0)
    if term.structure in DISTANCE_STRUCTURES:
        _check_positions(term, names, indicators and Zt.shape[1] > 1, call)
        return
    if term.structure in ("ar1", "toep") and not (indicators and Zt.shape[1] > 1):
        raise BayesmixError(
            f"{call}: {term.structure} correlates the levels of a factor of equally spaced times, one column "
            f"each. Write {term.structure}(0 + times | {term.group}) with times a factor (categorical=['times']) "
            "whose levels are in time order, and no intercept."
        )
    if term.structure in ("ar1", "toep"):
        _check_time_order(term, names, call)
    if term.structure == "rr" and not 1 <= (term.rank or 2) < Zt.shape[1]:
        raise BayesmixError(
            f"{call.replace('rr(', 'rr(', 1)}: rr's rank d must be at least 1 and below the term's {Zt.shape[1]} "
            f"columns (d = {Zt.shape[1]} is the unstructured covariance: write ({term.expr} | {term.group}))."
        )
    if Zt.shape[1] < 2:
        raise BayesmixError(
            f"{call} has one column; a {term.structure} covariance relates two or more. Use (1 | {term.group}) "
            "for a single variance."
        )


def name_part(name: str) -> str:
    """``name`` as part of a PyMC variable's or a netCDF file's name, which cannot hold ``/`` nor end in
    ``:``: those (and ``%``) percent-encoded, one to one (``a/b`` -> ``a%2Fb``); other text as it is.
    A final ``_`` after another (or alone) is encoded too: PyMC takes a variable whose name ends in
    ``__`` (``sd_`` + ``__``) for an internal, transformed one and leaves it out of the draws."""
    out = str(name).replace("%", "%25").replace("/", "%2F")
    if out.endswith(":"):
        return out[:-1] + "%3A"
    if out == "_" or out.endswith("__"):
        return out[:-1] + "%5F"
    return out


def _labels(raw: list[tuple]) -> list[str]:
    """Variable labels: the group name, or ``group__term_term`` when a group has several blocks
    (:func:`name_part` of it)."""
    counts = {}
    for group, *_ in raw:
        counts[group] = counts.get(group, 0) + 1
    labels = []
    for group, names, *_ in raw:
        label = name_part(group if counts[group] == 1 else f"{group}__{'_'.join(names)}")
        base, copy = label, 1
        while label in labels:  # a numbered copy: never a name ending in "__"
            copy += 1
            label = f"{base}_{copy}"
        labels.append(label)
    return labels


def _check_fixed_matrix(spec: FormulaSpec, frame: pd.DataFrame, levels: dict[str, tuple]) -> None:
    p, factor, n_levels = estimate_columns(spec.fixed, frame, levels)
    if factor is not None and n_levels > LARGE_FACTOR:
        fix = (
            f"Use a random effect (1 | {factor}) instead of a fixed factor '{factor}' with {n_levels:,} levels "
            "(it estimates one effect per level too, shrunk towards their mean)."
        )
    else:
        fix = "Use fewer fixed-effect columns (fewer factor levels or interactions), or fewer rows."
    memory.check("The fixed-effects matrix X", (len(frame), p), fix)


OFFSET_COLUMN = "(offset)"  # an offset given as an array, a column of the model's frame (lme4's name)
WEIGHTS_COLUMN = "(weights)"  # weights given as an array, likewise


def formula_for_data(spec: FormulaSpec, data, offset=None, weights=None):
    """The spec and data as the formula needs them: R's ``.`` expanded to the data's other columns,
    and lme4's ``offset=`` argument (a column name, an expression of columns, or one value per row)
    added to the offsets, its ``weights=`` argument (the same forms) set. Returns (spec, data); the
    user's frame is not modified."""
    columns = list(data.columns)
    response = {v for expr in spec.response.expressions for v in _expression_names(expr)}
    spec = spec.with_columns(columns, response)
    if offset is not None:
        expr, data = _argument_column(data, offset, "offset", OFFSET_COLUMN)
        spec = spec.with_offset(expr)
    if weights is not None:
        if spec.weights is not None:
            raise BayesmixError("The formula's weights() and weights= both give weights: keep one.")
        expr, data = _argument_column(data, weights, "weights", WEIGHTS_COLUMN)
        spec = spec.with_weights(expr)
    return spec, data


def _argument_column(data, value, argument: str, column: str):
    """(expression, data) for an ``offset=``/``weights=`` argument: a column name (quoted), an
    expression of columns, or one number per row (added to a copy of the data as ``column``)."""
    columns = list(data.columns)
    if isinstance(value, str):
        return (f"`{value}`" if value in columns else value), data
    values = np.asarray(value)
    if values.ndim != 1 or len(values) != len(data) or not np.issubdtype(values.dtype, np.number):
        raise BayesmixError(
            f"{argument} must be a column name, an expression of columns, or {len(data)} numbers (one per row of "
            f"the data), not {type(value).__name__} of shape {values.shape}."
        )
    if column in columns:
        raise BayesmixError(f"The data already have a column named '{column}'; pass {argument}='{column}'.")
    if not isinstance(data, pd.DataFrame):
        raise BayesmixError(f"{argument} given as numbers needs a pandas DataFrame; name a column of the Dask frame.")
    return f"`{column}`", data.assign(**{column: values})


def resolve_contrasts(spec: FormulaSpec, data: pd.DataFrame, contrasts) -> dict[str, str]:
    """{factor column: contrast} for the factors not coded by treatment contrasts: R's defaults
    (polynomial contrasts for an ordered factor, a pandas Categorical with ``ordered=True``) and lme4's
    ``contrasts=`` argument (``{"recipe": "contr.sum"}``), which overrides them."""
    predictors = value_columns(spec)
    out = {}
    for name in predictors:
        dtype = data[name].dtype if name in data.columns else None
        if isinstance(dtype, pd.CategoricalDtype) and dtype.ordered:
            out[name] = "Poly"
    for name, value in dict(contrasts or {}).items():
        if name not in predictors:
            raise BayesmixError(
                f"contrasts names '{name}', which is not a predictor of the formula.{did_you_mean(name, predictors)}"
            )
        out[name] = contrast_name(value)
    return {name: kind for name, kind in out.items() if kind != "Treatment"}


def _with_contrasts(spec: FormulaSpec, contrasts: dict[str, str]) -> FormulaSpec:
    if not contrasts:
        return spec

    def terms(random):
        return tuple(replace(term, expr=with_contrasts(term.expr, contrasts)) for term in random)

    submodels = tuple(
        replace(sub, fixed=with_contrasts(sub.fixed, contrasts), random=terms(sub.random)) for sub in spec.submodels
    )
    return replace(spec, fixed=with_contrasts(spec.fixed, contrasts), random=terms(spec.random), submodels=submodels)


def _response(frame: pd.DataFrame, expr: str) -> tuple[np.ndarray, tuple | None]:
    """The response's values, and for a two-level factor response its levels (failure, success):
    as lme4, the first level is a failure (0) and the other a success (1)."""
    column = frame[expr] if expr in frame.columns else None
    if column is None or pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return evaluate_expression(frame, expr, "response"), None
    order = level_order(expr, column, None)
    if len(order) != 2:
        raise BayesmixError(
            f"The response '{expr}' is a factor with {len(order)} levels ({list(order)[:6]}); a factor response "
            "needs two levels (a bernoulli model: the first level is a failure, the second a success). Give a "
            "numeric response, or recode it."
        )
    return (_as_levels(column, order) == order[1]).to_numpy(dtype=float), order


def ordinal_response_column(expr: str) -> str:
    """The data column an ordinal response names: the expression itself, or the text inside
    backticks (`wine rating`)."""
    expr = expr.strip()
    return expr[1:-1] if len(expr) > 1 and expr[0] == expr[-1] == "`" else expr


def _ordinal_response(frame: pd.DataFrame, expr: str, order, ordered: bool = True) -> tuple[np.ndarray, tuple]:
    """A category response's index 1..K and its K levels in order: from ``categorical=``'s order, a
    pandas Categorical's, or sorted numbers; unordered strings have none for an ordinal response
    (``ordered``) and sort for a categorical one, whose first level is the reference (brms's)."""
    what = "ordinal" if ordered else "categorical"
    if expr not in frame.columns:
        raise BayesmixError(f"An {what} response must be a column of the data, not the expression '{expr}'.")
    column = frame[expr]
    if order is None:
        order = _response_order(column, expr, ordered)
    order = list(order)
    codes = pd.Index([str(v) for v in order]).get_indexer(column.astype(str))
    if np.any(codes < 0):
        unknown = sorted({str(v) for v in column[codes < 0]})[:5]
        raise BayesmixError(f"The {what} response '{expr}' has values {unknown} outside its level order {order}.")
    empty = [str(level) for k, level in enumerate(order) if not np.any(codes == k)]
    if empty:
        why = "each threshold needs both neighbours observed" if ordered else "its probability would have no data"
        fix = "(or merge them with a neighbour)" if ordered else "(or merge them with another)"
        raise BayesmixError(
            f"The {what} response '{expr}' has no observations in the category(ies) {empty}; {why}. Drop those "
            f"levels from the order {fix}."
        )
    if len(order) < 3:
        raise BayesmixError(
            f"The {what} response '{expr}' has {len(order)} categories; an {what} model needs at least 3. "
            "With two, use family='bernoulli'."
        )
    return codes.astype(float) + 1.0, tuple(v.item() if isinstance(v, np.generic) else v for v in order)


def _response_order(column: pd.Series, expr: str, ordered: bool) -> list:
    """The level order a category response carries itself: an ordered Categorical's, sorted numbers,
    and for an unordered (categorical) model any Categorical's categories or the sorted values."""
    if isinstance(column.dtype, pd.CategoricalDtype) and (column.cat.ordered or not ordered):
        return list(column.cat.categories)
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return sorted(pd.unique(column))
    if not ordered:
        return sorted(pd.unique(column.astype(str)))
    raise BayesmixError(
        f"The ordinal response '{expr}' has no level order (unordered values such as "
        f"{[str(v) for v in pd.unique(column)[:4]]}). Pass categorical={{'{expr}': [levels in order]}} or "
        "make it an ordered pandas Categorical."
    )


def build_design(
    spec: FormulaSpec,
    data,
    categorical=None,
    missing: str = "drop",
    contrasts=None,
    ordinal: bool = False,
    unordered: bool = False,
) -> Design:
    """Encode ``data`` for ``spec``. The user's DataFrame is only read, never modified. ``ordinal``:
    the response is ordered categories; ``unordered``: unordered ones (:func:`_ordinal_response`)."""
    data = _as_frame(data)
    used = check_columns(spec, data)
    categorical = normalise_categorical(categorical, data)
    for term in spec.random:  # a known covariance's indicators: its grouping column's levels
        if term.structure == "known":
            categorical.setdefault(known_column(term), None)
    contrasts = resolve_contrasts(spec, data, contrasts)
    spec = _with_contrasts(spec, contrasts)
    frame = data.loc[:, used].copy(deep=True)
    _check_dtypes(frame, spec, categorical)
    check_weights(frame, spec, data.index)
    optional = [spec.censoring[1]] if spec.censoring is not None and spec.censoring[1] is not None else []
    frame, rows, n_dropped = _drop_missing(frame, missing, optional)
    _check_finite(frame)
    by = {s.by for s in spec.smooths if s.unexpanded}  # a factor-by smooth: one smooth per level of the rows used
    spec = spec.with_smooth_levels({f: level_order(f, frame[f], categorical.get(f)) for f in by})
    smooths = learn_smooths(spec.smooths, frame)
    frame = with_one_level_columns(with_smooth_columns(frame, smooths), spec)
    levels, group_columns = _encode_categoricals(frame, spec, categorical)

    response = spec.response
    if ordinal or unordered:
        name = ordinal_response_column(response.expr)
        order = categorical.get(name, categorical.get(response.expr))
        y, response_levels = _ordinal_response(frame, name, order, ordered=not unordered)
    else:
        y, response_levels = _response(frame, response.expr)
    trials = None
    if response.trials is not None:
        trials = evaluate_expression(frame, response.trials, "number of trials")
    elif response.failures is not None:
        trials = y + evaluate_expression(frame, response.failures, "number of failures")
    offset = _offset(frame, spec)
    weights = None if spec.weights is None else evaluate_expression(frame, spec.weights, "weights")
    codes, upper = censoring_codes(frame, spec, y)

    _check_fixed_matrix(spec, frame, levels)
    fixed_matrix = _formulae_matrix(spec.fixed, frame, "fixed-effects part")
    if fixed_matrix is None:
        X, fixed_names = np.zeros((len(frame), 0)), ()
    else:
        X = np.asarray(fixed_matrix.design_matrix, dtype=float)
        fixed_names = display_names(fixed_matrix.as_dataframe().columns, contrasts)

    raw, block_matrices = _blocks(frame, spec.random, levels, group_columns, contrasts)
    blocks = _make_blocks(raw, "mu")
    submodels, submodel_matrices = _submodels(frame, spec, contrasts, (levels, group_columns, block_matrices))
    _check_labels(blocks, submodels)
    codings = Codings(
        levels, fixed_matrix, block_matrices, contrasts, response_levels, submodel_matrices, smooths=smooths
    )
    return Design(
        spec,
        y,
        trials,
        X,
        fixed_names,
        blocks,
        rows,
        n_dropped,
        codings,
        frame,
        offset,
        weights,
        submodels,
        codes,
        upper,
    )


def _make_blocks(raw: list[tuple], predictor: str) -> tuple[Block, ...]:
    """Blocks from :func:`_blocks`'s raw tuples; a submodel's labels start with its role (``zi_site``)."""
    prefix = "" if predictor == "mu" else f"{predictor}_"
    return tuple(
        Block(
            label=prefix + label,
            group=group,
            terms=names,
            levels=lv,
            codes=codes,
            Zt=Zt,
            correlated=corr,
            term=index,
            covariance=structure(kind[0], len(names), names, kind[1]),
            predictor=predictor,
        )
        for label, (group, names, lv, codes, Zt, corr, index, kind) in zip(_labels(raw), raw)
    )


def _check_labels(blocks, submodels: dict) -> None:
    """Block labels name model variables: one shared by the mean's and a submodel's block (a group
    column named like ``zi_site`` beside ``(1 | site)`` in zi=) would merge two sets of effects."""
    labels = [b.label for b in (*blocks, *(b for sub in submodels.values() for b in sub.blocks))]
    clash = sorted({label for label in labels if labels.count(label) > 1})
    if clash:
        raise BayesmixError(
            f"Two random-effect blocks would share the name '{clash[0]}' (a submodel's block is named by its role and "
            "group). Rename the grouping column."
        )


def _submodels(frame: pd.DataFrame, spec: FormulaSpec, contrasts: dict, groups: tuple) -> tuple[dict, dict]:
    """Each distributional parameter's formula (zi=, dispersion=) as a :class:`Predictor` (fixed
    effects and random-effect blocks), and formulae's fitted matrices of its fixed part (new data
    are encoded with them; its blocks' matrices join ``groups``' block matrices)."""
    levels, group_columns, block_matrices = groups
    predictors, matrices = {}, {}
    for sub in spec.submodels:
        matrix = _formulae_matrix(sub.fixed, frame, f"{sub.role} formula")
        if matrix is None:
            raise BayesmixError(f"The {sub.role} formula '{sub.text}' has no columns. Write '~ 1' for a constant.")
        X = np.asarray(matrix.design_matrix, dtype=float)
        names = display_names(matrix.as_dataframe().columns, contrasts)
        raw, sub_matrices = _blocks(frame, sub.random, levels, group_columns, contrasts)
        block_matrices.update(sub_matrices)
        predictors[sub.role] = Predictor(sub.role, X, names, _make_blocks(raw, sub.role))
        matrices[sub.role] = matrix
    return predictors, matrices


def weights_as_trials(design: Design) -> Design:
    """lme4's binomial idiom: a proportion response with ``weights=`` the trials becomes successes
    out of trials (a cbind() response already has trials: its weights stay log-likelihood weights)."""
    if design.weights is None or design.trials is not None:
        return design
    y, trials = design.y, design.weights
    if np.any((y < 0) | (y > 1)):
        raise BayesmixError(
            f"family='binomial' with weights= reads the response '{design.spec.response.expr}' as a proportion of "
            f"the weights (trials), as lme4 does; {int(np.sum((y < 0) | (y > 1)))} values lie outside [0, 1]. Give "
            "proportions, or counts as cbind(successes, failures) without weights."
        )
    successes = y * trials
    whole = np.round(successes)
    if np.any(np.abs(successes - whole) > 1e-6 * np.maximum(trials, 1.0)) or np.any(trials != np.round(trials)):
        raise BayesmixError(
            "family='binomial' with weights= needs whole numbers of trials (the weights) and of successes "
            "(proportion x weight); some rows give fractions. Check the weights, or use cbind(successes, failures)."
        )
    return replace(design, y=whole, trials=trials, weights=None)


CENSORING = {"none": 0, "left": 1, "right": 2, "interval": 3}  # brms's cens() codes
_BRMS_CENSORING = {0: 0, -1: 1, 1: 2, 2: 3}  # brms's numeric codes


def censoring_codes(frame: pd.DataFrame, spec: FormulaSpec, y: np.ndarray):
    """(codes, upper) of a censored response (:data:`CENSORING`; upper: interval censoring's upper
    bound, NaN elsewhere), or (None, None). Unknown codes and interval rows without an upper bound
    above the response raise BayesmixError naming the fix."""
    if spec.censoring is None:
        return None, None
    column, upper_column = spec.censoring
    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw):
        codes = raw.map(_BRMS_CENSORING)
    else:
        codes = raw.astype(str).str.strip().str.lower().map(CENSORING)
    if codes.isna().any():
        bad = sorted({str(v) for v in raw[codes.isna()]})[:5]
        raise BayesmixError(
            f"censored='{column}' has codes {bad} that are not censoring codes. Use 'none', 'left', 'right' or "
            "'interval' (or brms's 0, -1, 1, 2)."
        )
    codes = codes.to_numpy(dtype=np.int8)
    upper = np.full(len(y), np.nan)
    if (codes == 3).any():
        if upper_column is None:
            raise BayesmixError(
                f"censored='{column}' has interval-censored rows, which need their upper bounds: pass upper='column'."
            )
        upper = np.where(codes == 3, frame[upper_column].to_numpy(dtype=float), np.nan)
        wrong = (codes == 3) & ~(upper > y)
        if wrong.any():
            raise BayesmixError(
                f"{int(wrong.sum())} interval-censored rows have an upper bound ('{upper_column}') not above the "
                "response (the lower bound). Check the bounds."
            )
    return codes, upper


def family_design(design: Design, family: Family) -> Design:
    """The design as ``family`` reads it: binomial proportions with weights as successes out of
    trials (:func:`weights_as_trials`), then the response checked against the family's support."""
    if family.name == "binomial":
        design = weights_as_trials(design)
    if family.ordinal:
        design = _without_intercept(design)
    if family.categorical:
        design = _per_category(design, family)
    elif any(term.shared is not None for term in design.spec.all_random):
        raise BayesmixError(
            "An ID between two bars, (1 | p | g), correlates the effects of a categorical response's categories; "
            f"family='{family.name}' has one linear predictor with random effects. Write (1 | g)."
        )
    family.check_response(design.y, design.trials)
    if design.censoring is not None:
        family.check_censoring()
        if design.weights is not None:
            raise BayesmixError("Censored responses with weights= are not supported together yet; drop one of them.")
    return design


def _without_intercept(design: Design) -> Design:
    """An ordinal model's X: the thresholds are its intercepts (clmm's and brms's), so the formula's
    intercept column goes; new data are encoded the same way (:attr:`Codings.fixed_columns`)."""
    if design.codings.response_levels is None:
        raise BayesmixError("An ordinal family needs its response coded as ordered categories (Model does this).")
    kept = tuple(j for j, name in enumerate(design.fixed_names) if name != "Intercept")
    return replace(
        design,
        X=design.X[:, list(kept)],
        fixed_names=tuple(design.fixed_names[j] for j in kept),
        codings=replace(design.codings, fixed_columns=kept),
    )


def _per_category(design: Design, family: Family) -> Design:
    """A categorical model's predictors: the formula once per non-reference category (brms's
    ``categorical``), each a submodel named by the category's parameter (``mu<level>``) with the
    formula's X and its own blocks (labelled ``mu<level>_<group>``); the mean's predictor is the
    reference's, 0. New data are encoded with the formula's fitted matrix for each category."""
    if design.codings.response_levels is None:
        raise BayesmixError("A categorical family needs its response coded as categories (Model does this).")
    if design.spec.submodels:
        raise BayesmixError("A categorical response takes no zi= or dispersion= formula: it has neither parameter.")
    if tuple(design.submodels) == family.params:  # made already (family_design runs once per engine too)
        return design
    if design.offset is not None:
        raise BayesmixError(
            "A categorical response takes no offset: an offset shared by every category's log odds cancels out."
        )
    terms = design.spec.random
    shared = tuple(_shared_block(b, family.params) for b in design.blocks if terms[b.term].shared is not None)
    own = [b for b in design.blocks if terms[b.term].shared is None]
    submodels = {
        role: Predictor(
            role,
            design.X,
            design.fixed_names,
            (*(replace(b, label=f"{role}_{b.label}", predictor=role) for b in own), *shared),
        )
        for role in family.params
    }
    _check_labels((), {role: replace(sub, blocks=sub.blocks[: len(own)]) for role, sub in submodels.items()})
    matrices = {role: design.codings.fixed_matrix for role in family.params}
    return replace(
        design,
        X=np.zeros((design.nobs, 0)),
        fixed_names=(),
        blocks=(),
        offset=None,
        submodels=submodels,
        codings=replace(design.codings, fixed_matrix=None, submodel_matrices=matrices),
    )


SHARED = "shared"  # the predictor of a block whose terms enter several linear predictors


def _shared_block(block: Block, roles: tuple[str, ...]) -> Block:
    """One block for a term with brms's ID, ``(1 | p | g)``: its terms repeated for every category's
    predictor (named ``<role>_<term>``), one covariance over them all, so that the categories'
    effects of a level are correlated; each predictor reads its own terms (:meth:`Block.mask`)."""
    if not block.correlated:
        raise BayesmixError(
            f"({' + '.join(block.terms)} || ... | {block.group}): an ID correlates the categories' effects, which "
            "'||' keeps apart. Write (1 | p | g) with a single bar on each side."
        )
    return replace(
        block,
        terms=tuple(f"{role}_{term}" for role in roles for term in block.terms),
        Zt=np.tile(block.Zt, (1, len(roles))),
        covariance=Unstructured(block.n_terms * len(roles)),
        predictor=SHARED,
        outputs=tuple(role for role in roles for _ in block.terms),
    )


def weight_columns(spec: FormulaSpec) -> set[str]:
    """Columns the weights read."""
    return set() if spec.weights is None else _expression_names(spec.weights)


def check_weights(frame: pd.DataFrame, spec: FormulaSpec, labels: pd.Index) -> None:
    """Refuse weights that are missing, zero, negative or infinite in rows the fit would use (rows
    with a missing value elsewhere are dropped as usual), naming those rows by the data's index."""
    if spec.weights is None:
        return
    own = weight_columns(spec)
    others = [c for c in frame.columns if c not in own]
    kept = ~frame[others].isna().any(axis=1).to_numpy() if others else np.ones(len(frame), dtype=bool)
    column = spec.weights.strip("`")
    if column in frame.columns:  # read as it is: evaluate() refuses the non-finite values named below
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    else:  # an expression: evaluated on the rows kept (it names non-finite results itself)
        values = np.ones(len(frame))
        values[kept] = evaluate(frame.loc[kept], spec.weights, "weights")
    bad = kept & ~(np.isfinite(values) & (values > 0))
    if bad.any():
        where = np.flatnonzero(bad)
        shown = ", ".join(f"{labels[i]!r} ({values[i]:g})" for i in where[:5]) + (" ..." if len(where) > 5 else "")
        raise BayesmixError(
            f"weights '{spec.weights.strip('`')}' must be positive and finite in every row; {len(where)} rows are not "
            f"(index: value) {shown}. Drop those rows, or give them a positive weight."
        )


def _offset(frame: pd.DataFrame, spec: FormulaSpec) -> np.ndarray | None:
    """The offsets' sum on ``frame``'s rows (None without offsets)."""
    if not spec.offsets:
        return None
    return sum(evaluate_expression(frame, expr, "offset") for expr in spec.offsets)


@dataclass(frozen=True)
class NewData:
    """New rows encoded as the training data were.

    X: (n, p) fixed-effects matrix; blocks: per design block (``all_blocks``: the mean's first, then the
    submodels'), (codes (n,), Zt (n, k)), where a level
    the training data did not have is coded -1 - i for the i-th name in new_levels (per block).
    offset: (n,) the offsets evaluated on the new rows, else None.
    """

    X: np.ndarray
    blocks: tuple[tuple[np.ndarray, np.ndarray], ...]
    new_levels: tuple[tuple[str, ...], ...]
    trials: np.ndarray | None
    offset: np.ndarray | None = None
    submodels: dict[str, np.ndarray] = field(default_factory=dict)  # role -> its X on the new rows

    @property
    def nobs(self) -> int:
        return self.X.shape[0]


def _as_text(column: pd.Series) -> pd.Series:
    """Each value's text, as ``str(value)`` gives it (vectorised: no Python loop over rows)."""
    return column.astype(object).astype(str)


def _level_names(frame: pd.DataFrame, factors: tuple[str, ...]) -> pd.Series:
    """Each row's group level name: the factor's text, or the factors' texts joined by ':'."""
    names = _as_text(frame[factors[0]])
    for factor in factors[1:]:
        names = names.str.cat(_as_text(frame[factor]), sep=":")
    return names


def encode_new_data(design: Design, data, allow_new_levels: bool = False, random_effects: bool = True) -> NewData:
    """Encode ``data`` with the training data's codings (level orders, formulae's fitted matrices).

    A level of a fixed-effect factor the training data did not have raises BayesmixError; an unseen
    group level raises too unless ``allow_new_levels``. With ``random_effects=False`` only the
    fixed part is encoded (``blocks`` is empty), so the grouping columns need not be present.
    """
    spec, codings = design.spec, design.codings
    data = _as_frame(as_pandas(data))
    grouping = {f for term in spec.all_random for f in (*term.factors, *term.columns)}
    grouping |= {known_column(term) for term in spec.all_random if term.structure == "known"}
    needed = _new_data_columns(spec, random_effects)
    missing = [c for c in needed if c not in data.columns]
    if OFFSET_COLUMN in missing:
        raise BayesmixError(
            f"The model's offset was given as numbers (offset=array), so new data must carry it as a column named "
            f"'{OFFSET_COLUMN}'; or fit with offset='column' and give that column in the new data."
        )
    if missing:
        hint = did_you_mean(missing[0], data.columns)
        raise BayesmixError(f"New data lacks the column(s) {', '.join(missing)} that the model uses.{hint}")
    data = with_default_index(data)
    # a column selection is a new frame (the user's is never changed: columns are replaced, not written into)
    frame = (data if set(data.columns) == set(needed) else data.loc[:, needed]).copy(deep=False)
    if frame.isna().any().any():
        raise BayesmixError("New data has missing values in used columns; drop or fill those rows before predicting.")
    frame = with_one_level_columns(with_smooth_columns(frame, codings.smooths), spec)
    raw_groups = {f: frame[f] for f in grouping if f in frame.columns}  # columns are replaced below, not changed
    for name, levels in codings.levels.items():
        if name not in frame.columns:
            continue
        codes, unseen = level_match(frame[name], levels)  # -1: unseen
        unseen = sorted({str(v) for v in unseen})
        if unseen and name not in grouping:
            raise BayesmixError(
                f"Column '{name}' has level(s) {unseen[:5]} that the training data did not have; "
                f"the model knows {list(levels)[:10]}."
            )
        frame[name] = pd.Categorical.from_codes(codes, categories=list(levels), ordered=True)
    try:
        X = _evaluate(codings.fixed_matrix, frame) if codings.fixed_matrix is not None else np.zeros((len(frame), 0))
    except Exception as exc:
        raise BayesmixError(f"formulae could not encode the new data's fixed part: {exc}") from None
    if codings.fixed_columns is not None:
        X = X[:, list(codings.fixed_columns)]
    blocks, new_levels = _new_blocks(design, frame, raw_groups, allow_new_levels, random_effects)
    trials = _new_trials(data, spec.response)
    offset = _offset(data, spec) if spec.offsets else None
    submodels = _new_submodels(codings, frame)
    return NewData(
        X=X, blocks=tuple(blocks), new_levels=tuple(new_levels), trials=trials, offset=offset, submodels=submodels
    )


def _new_blocks(design: Design, frame: pd.DataFrame, raw_groups: dict, allow_new_levels: bool, random_effects: bool):
    """Each block's (codes, Zt) on new rows, and its unseen levels; without ``random_effects`` only
    the smooths' blocks have columns (the others' are zero: the population level keeps a smooth)."""
    spec, codings = design.spec, design.codings
    blocks, new_levels = [], []
    for block in design.all_blocks if random_effects or codings.smooths else ():
        if not random_effects and block.group not in codings.smooths:  # a smooth stays at the population level
            blocks.append((np.zeros(len(frame), dtype=np.int64), np.zeros((len(frame), block.n_terms))))
            new_levels.append(())
            continue
        term = spec.random_terms(block.predictor)[block.term]
        if block.members:  # terms that are levels (mm(), cov=): a column per level, unseen ones after
            Zt, unseen = _member_columns(term, block, pd.DataFrame(raw_groups), allow_new_levels)
            blocks.append((np.zeros(len(frame), dtype=np.int64), Zt))
            new_levels.append(unseen)
            continue
        matrix = codings.block_matrices[(term.expr, term.group)]
        names = [label for part in matrix.terms.values() for label in part.labels]  # the matrix's columns
        try:
            full = _evaluate(matrix, frame)
        except Exception as exc:
            raise BayesmixError(
                f"formulae could not encode the new data for ({term.expr} | {term.group}): {exc}"
            ) from None
        Zt = full[:, [names.index(t) for t in block.source_terms]]
        codes, unseen = _row_level_codes(block.levels, pd.DataFrame(raw_groups)[list(term.factors)])
        if unseen and not allow_new_levels:
            raise BayesmixError(
                f"New data has level(s) of '{block.group}' the model has not seen: {list(unseen[:5])}. "
                "Pass allow_new_levels=True to predict for them (a sampled model draws their effects from each "
                "draw's covariance; an exact fit gives them the population level, as lme4)."
            )
        blocks.append((codes, Zt))
        new_levels.append(unseen)
    return blocks, new_levels


def _member_columns(term, block: Block, raw: pd.DataFrame, allow_new_levels: bool):
    """(Zt over the block's levels and then the unseen ones, the unseen levels) of a block whose
    terms are levels, on new rows: a multi-membership group's weights, a known covariance's
    indicators (an unseen level must be one of A's: its effect is predicted through A)."""
    if term.membership is not None:
        unseen = unseen_members(raw, term.membership, block.members)
        columns = (*block.members, *unseen) if allow_new_levels else block.members
        return membership_matrix(raw, term.membership, columns), unseen if allow_new_levels else ()
    names = _as_text(raw[known_column(term)])
    unseen = tuple(sorted(set(names) - set(block.members)))
    outside = [level for level in unseen if level not in term.known.index]
    if outside:
        raise BayesmixError(
            f"New data has level(s) {outside[:5]} of '{term.group}' that cov['{term.group}'] does not cover; a level's "
            "effect is predicted through A, so A must have it."
        )
    if unseen and not allow_new_levels:
        raise BayesmixError(
            f"New data has level(s) of '{term.group}' the model has not seen: {list(unseen[:5])}. Pass "
            "allow_new_levels=True to predict them through A (their effect given the others')."
        )
    columns = pd.Index([*block.members, *unseen])
    return (columns.get_indexer(names)[:, None] == np.arange(len(columns))[None, :]).astype(float), unseen


def _new_data_columns(spec: FormulaSpec, random_effects: bool) -> list[str]:
    """The columns new rows need: not the response, the weights nor the censoring columns (as
    lme4's predict), nor the grouping columns without ``random_effects``."""
    response_vars = {v for expr in spec.response.expressions for v in _expression_names(expr)}
    grouping = {f for term in spec.all_random for f in term.factors}
    offset_vars = {v for expr in spec.offsets for v in _expression_names(expr)}
    weight_only = weight_columns(spec) - value_columns(spec) - grouping - offset_vars
    censoring = set() if spec.censoring is None else {c for c in spec.censoring if c is not None}
    weight_only |= censoring - value_columns(spec) - grouping - offset_vars
    if random_effects:
        return sorted(spec.variables - response_vars - weight_only | (spec.variables & grouping) | offset_vars)
    submodel_vars = set().union(*(_variables(sub.fixed) for sub in spec.submodels))
    smooth_vars = {v for smooth in spec.smooths for v in (smooth.variable, smooth.by) if v is not None}
    return sorted((_variables(spec.fixed) | offset_vars | submodel_vars | smooth_vars) & spec.variables)


def _new_submodels(codings: Codings, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """{role: X} of the zi= and dispersion= formulas on new rows, with their fitted codings."""
    out = {}
    for role, matrix in codings.submodel_matrices.items():
        if matrix is None:  # a categorical model's formula without fixed effects
            out[role] = np.zeros((len(frame), 0))
            continue
        try:
            out[role] = _evaluate(matrix, frame)
        except Exception as exc:
            raise BayesmixError(f"formulae could not encode the new data for the {role} formula: {exc}") from None
    return out


def coding_notes(design) -> list[str]:
    """Lines for a summary on what the coefficients are measured against: a factor response's
    coding and the factors coded by other contrasts than treatment."""
    notes = []
    levels = getattr(design.codings, "response_levels", None)
    if levels is not None and len(levels) == 2:  # more levels: an ordinal response (its thresholds name them)
        name = design.spec.response.expr
        notes.append(f" Response {name}: '{levels[0]}' = 0 (failure), '{levels[1]}' = 1 (success)")
    contrasts = getattr(design.codings, "contrasts", {})
    if contrasts:
        coded = ", ".join(f"{name}: contr.{kind.lower()}" for name, kind in contrasts.items())
        notes.append(f" Contrasts: {coded}")
    weights = getattr(design.spec, "weights", None)
    if weights is not None:  # as lme4's summary: the weights are part of the model
        as_trials = getattr(design, "weights", None) is None and getattr(design, "trials", None) is not None
        notes.append(f"Weights: {weights.strip('`')}" + (" (the binomial trials)" if as_trials else ""))
    return notes


def _evaluate(matrix, frame: pd.DataFrame) -> np.ndarray:
    """A formulae matrix on new rows: stacked by numpy where its terms allow (plain numeric
    columns, :func:`bayesmix.design.plain.plain_matrix`), else formulae's ``evaluate_new_data``."""
    plain = plain_matrix(matrix, frame)
    return plain if plain is not None else np.asarray(matrix.evaluate_new_data(frame)).astype(float)


def _row_level_codes(levels: tuple[str, ...], raw: pd.DataFrame) -> tuple[np.ndarray, tuple[str, ...]]:
    """Each row's level index for the grouping column(s) ``raw`` (the i-th unseen level, in sorted
    order, coded -1 - i) and the unseen levels' names. The distinct values (or combinations) are
    named and matched once (:func:`_level_names`, :func:`_level_codes`); the rows take theirs."""
    if raw.shape[1] == 1:
        rows, uniques = pd.factorize(raw.iloc[:, 0])
        distinct = pd.DataFrame({raw.columns[0]: uniques})
    else:
        rows, uniques = pd.MultiIndex.from_frame(raw).factorize()
        distinct = uniques.to_frame(index=False)
        distinct.columns = list(raw.columns)  # factorize drops the levels' names
    names = _level_names(distinct, tuple(raw.columns)).reset_index(drop=True)
    matched = _level_codes(levels, names, distinct)
    unseen = tuple(sorted(pd.unique(names[matched < 0])))
    if unseen:
        matched[matched < 0] = -1 - pd.Index(unseen).get_indexer(names[matched < 0])
    return matched[rows], unseen


def _level_codes(levels: tuple[str, ...], names: pd.Series, raw: pd.DataFrame) -> np.ndarray:
    """Each new row's level index (-1: unseen). Levels match by their text; where the new data give a
    grouping column as numbers, a number matches the level of the same value however it is written
    (3.0 in new data is the level 3 of an integer column), unless two levels have the same value."""
    codes = pd.Index(levels).get_indexer(names).astype(np.int64)
    unmatched = codes < 0
    if not unmatched.any() or not all(pd.api.types.is_numeric_dtype(raw[c]) for c in raw.columns):
        return codes
    by_value = {_numeric_text(level): i for i, level in enumerate(levels)}
    if len(by_value) < len(levels):
        return codes
    lookup = {text: by_value.get(_numeric_text(text), -1) for text in pd.unique(names[unmatched])}
    codes[unmatched] = names[unmatched].map(lookup).to_numpy(dtype=np.int64)
    return codes


def _numeric_text(text: str) -> str:
    """A level's text with each ':'-separated number written one way ("3", "3.0" and "3.00" alike)."""
    parts = []
    for part in str(text).split(":"):
        try:
            value = float(part)
        except ValueError:
            parts.append(part)
            continue
        parts.append(repr(value) if np.isfinite(value) else part)
    return ":".join(parts)


def _new_trials(data: pd.DataFrame, response) -> np.ndarray | None:
    """The binomial trials of new rows (``p(s, n)``: n; ``cbind(s, f)``: s + f), where the data
    carry the columns; None otherwise (needed only to simulate responses)."""
    if not response.is_binomial:
        return None
    parts = [response.trials] if response.trials is not None else [response.expr, response.failures]
    if not all(_expression_names(expr) <= set(data.columns) for expr in parts):
        return None
    return sum(evaluate_expression(data, expr, "number of trials") for expr in parts)


def _expression_names(expr: str) -> set[str]:
    return column_names(formulae.model_description(f"I({expr})").var_names, expr)
