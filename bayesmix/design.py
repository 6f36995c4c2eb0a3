"""FormulaSpec + DataFrame -> :class:`Design`: the response, X and one :class:`Block` per covariance.

The design never builds a dense n x (levels * k) Z: each block keeps the group code of every row
(taken from pandas Categorical codes) and its n x k term matrix, so the random-effect part of the
linear predictor is ``sum_j Zt[:, j] * b[codes, j]``. formulae builds X and each block's term
matrix; the frozen :class:`Codings` (level orders, formulae's fitted matrices) encode new data
exactly as the training data.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import formulae
import numpy as np
import pandas as pd

from bayesmix.errors import BayesmixError, MissingDataWarning, did_you_mean
from bayesmix.formula import FormulaSpec, RandomTerm


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
    term: index of the random term of the formula this block comes from.
    """

    label: str
    group: str
    terms: tuple[str, ...]
    levels: tuple[str, ...]
    codes: np.ndarray
    Zt: np.ndarray
    correlated: bool
    term: int

    @property
    def n_terms(self) -> int:
        return len(self.terms)

    @property
    def n_levels(self) -> int:
        return len(self.levels)


@dataclass(frozen=True)
class Codings:
    """Learned state needed to encode new data as the training data was encoded.

    levels: the level order of every categorical column (predictors and grouping factors).
    fixed_matrix: formulae's fitted matrix for X (``None`` when X has no columns).
    block_matrices: formulae's fitted term matrix for each random term, by ``(expr, group)``.
    """

    levels: dict[str, tuple]
    fixed_matrix: object | None
    block_matrices: dict[tuple[str, str], object] = field(default_factory=dict)


@dataclass(frozen=True)
class Design:
    """Arrays for one model; data enter the model only through this object.

    y: (n,) float response (successes for binomial).
    trials: (n,) float binomial trials, else None.
    X: (n, p) float fixed-effects matrix with column names ``fixed_names``.
    blocks: the random-effect blocks, in formula order.
    rows: (n,) int positions of the rows used, in the user's DataFrame.
    n_dropped: rows dropped for missing values.
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

    @property
    def nobs(self) -> int:
        return len(self.y)

    @property
    def ngrps(self) -> dict[str, int]:
        return {block.group: block.n_levels for block in self.blocks}


def _as_frame(data) -> pd.DataFrame:
    if not isinstance(data, pd.DataFrame):
        raise BayesmixError(
            f"data must be a pandas DataFrame, not {type(data).__name__}. "
            "Convert it first, e.g. pandas.DataFrame(data) or pandas.read_csv(path)."
        )
    if len(data) == 0:
        raise BayesmixError("data has no rows. Pass the DataFrame that holds your observations.")
    return data


def _check_columns(spec: FormulaSpec, data: pd.DataFrame) -> list[str]:
    columns = [str(c) for c in data.columns]
    grouping = {f for term in spec.random for f in term.factors}
    for name in sorted(spec.variables):
        if name not in data.columns:
            kind = "grouping column" if name in grouping else "column"
            raise BayesmixError(
                f"Unknown {kind} '{name}' in formula '{spec.text}'.{did_you_mean(name, columns)} "
                f"The data has columns: {', '.join(columns[:20])}{' ...' if len(columns) > 20 else ''}."
            )
    return sorted(spec.variables, key=list(data.columns).index)


def _normalise_categorical(categorical, data: pd.DataFrame) -> dict[str, tuple | None]:
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


def _level_order(name: str, column: pd.Series, order: tuple | None) -> tuple:
    present = pd.unique(column)
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
        return order
    if isinstance(column.dtype, pd.CategoricalDtype):
        return tuple(column.cat.categories)
    try:
        return tuple(sorted(present))
    except TypeError:  # mixed types: sort by their text
        return tuple(sorted(present, key=str))


def _encode_categoricals(
    frame: pd.DataFrame, spec: FormulaSpec, categorical: dict[str, tuple | None]
) -> dict[str, tuple]:
    """Turn categorical predictors and grouping factors into ordered Categoricals (in place).

    formulae follows a Categorical's order only when it is ordered; unordered columns get sorted
    order. Returns each column's level order.
    """
    response_columns = set()
    for expr in spec.response.expressions:
        if expr in frame.columns:
            response_columns.add(expr)
    grouping = {f for term in spec.random for f in term.factors}
    levels = {}
    for name in frame.columns:
        column = frame[name]
        is_text = not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)
        if name in response_columns and name not in grouping:
            continue
        if name in categorical or name in grouping or is_text:
            order = _level_order(name, column, categorical.get(name))
            levels[name] = order
            frame[name] = pd.Categorical(column, categories=list(order), ordered=True)
    return levels


def _drop_missing(frame: pd.DataFrame, missing: str) -> tuple[pd.DataFrame, np.ndarray, int]:
    if missing not in ("drop", "raise"):
        raise BayesmixError(f"missing must be 'drop' or 'raise', not {missing!r}.")
    na = frame.isna()
    bad = na.any(axis=1).to_numpy()
    n_bad = int(bad.sum())
    if n_bad:
        per_column = {c: int(n) for c, n in na.sum().items() if n}
        detail = ", ".join(f"{c}: {n}" for c, n in per_column.items())
        if missing == "raise":
            raise BayesmixError(
                f"{n_bad} of {len(frame)} rows have missing values in used columns ({detail}). "
                "Remove or impute them, or pass missing='drop' to drop them."
            )
        if n_bad == len(frame):
            raise BayesmixError(f"Every row has a missing value in a used column ({detail}); nothing is left to fit.")
        warnings.warn(
            f"Dropped {n_bad} of {len(frame)} rows with missing values ({detail}); {len(frame) - n_bad} rows are used.",
            MissingDataWarning,
            stacklevel=4,
        )
    rows = np.flatnonzero(~bad)
    return frame.iloc[rows].reset_index(drop=True), rows, n_bad


def _check_finite(frame: pd.DataFrame) -> None:
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            n_inf = int(np.isinf(column.to_numpy(dtype=float)).sum())
            if n_inf:
                raise BayesmixError(
                    f"Column '{name}' has {n_inf} infinite values. "
                    "Replace them (or set them to NaN to drop those rows)."
                )


def _evaluate(frame: pd.DataFrame, expr: str, what: str) -> np.ndarray:
    if expr in frame.columns:
        values = frame[expr]
    else:
        try:
            values = frame.eval(expr, engine="python")
        except Exception as exc:
            raise BayesmixError(f"Cannot evaluate the {what} '{expr}': {exc}. Use columns and arithmetic.") from None
    values = pd.Series(values)
    if pd.api.types.is_bool_dtype(values):
        values = values.astype(float)
    if not pd.api.types.is_numeric_dtype(values):
        raise BayesmixError(
            f"The {what} '{expr}' is not numeric (dtype {values.dtype}). "
            "Convert it to numbers, e.g. 0/1 for a yes/no outcome."
        )
    out = values.to_numpy(dtype=float)
    if not np.all(np.isfinite(out)):
        raise BayesmixError(f"The {what} '{expr}' has non-finite values. Remove those rows.")
    return out


def _formulae_matrix(expr: str, frame: pd.DataFrame, what: str):
    try:
        return formulae.design_matrices(expr, frame).common
    except Exception as exc:
        raise BayesmixError(f"formulae could not build the {what} '{expr}': {exc}") from None


def _group_codes(frame: pd.DataFrame, term: RandomTerm) -> tuple[np.ndarray, tuple[str, ...]]:
    """Level index per row and level names; for ``a:b`` the observed combinations, in order."""
    parts = [frame[f] for f in term.factors]
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


def _blocks(frame: pd.DataFrame, spec: FormulaSpec) -> tuple[list[tuple], dict]:
    raw, matrices = [], {}
    for index, term in enumerate(spec.random):
        matrix = _formulae_matrix(term.expr, frame, "random-effect expression")
        if matrix is None:
            raise BayesmixError(
                f"The random-effect term ({term.expr} | {term.group}) has no columns. "
                "Use (1 | g) for a random intercept."
            )
        matrices[(term.expr, term.group)] = matrix
        Zt = np.asarray(matrix.design_matrix, dtype=float)
        names = tuple(matrix.as_dataframe().columns)
        codes, levels = _group_codes(frame, term)
        if len(levels) < 2:
            raise BayesmixError(
                f"The grouping factor '{term.group}' has {len(levels)} level in the data used; "
                "random effects need at least two. Remove the term, or use the factor as a fixed effect."
            )
        if term.correlated:
            raw.append((term.group, names, levels, codes, Zt, True, index))
        else:
            raw.extend((term.group, (n,), levels, codes, Zt[:, [j]], False, index) for j, n in enumerate(names))
    return raw, matrices


def _labels(raw: list[tuple]) -> list[str]:
    """Variable labels: the group name, or ``group__term_term`` when a group has several blocks."""
    counts = {}
    for group, *_ in raw:
        counts[group] = counts.get(group, 0) + 1
    labels = []
    for group, names, *_ in raw:
        label = group if counts[group] == 1 else f"{group}__{'_'.join(names)}"
        while label in labels:
            label += "_"
        labels.append(label)
    return labels


def build_design(spec: FormulaSpec, data, categorical=None, missing: str = "drop") -> Design:
    """Encode ``data`` for ``spec``. The user's DataFrame is only read, never modified."""
    data = _as_frame(data)
    used = _check_columns(spec, data)
    categorical = _normalise_categorical(categorical, data)
    frame = data.loc[:, used].copy(deep=True)
    frame, rows, n_dropped = _drop_missing(frame, missing)
    _check_finite(frame)
    levels = _encode_categoricals(frame, spec, categorical)

    response = spec.response
    y = _evaluate(frame, response.expr, "response")
    trials = None
    if response.trials is not None:
        trials = _evaluate(frame, response.trials, "number of trials")
    elif response.failures is not None:
        trials = y + _evaluate(frame, response.failures, "number of failures")

    fixed_matrix = _formulae_matrix(spec.fixed, frame, "fixed-effects part")
    if fixed_matrix is None:
        X, fixed_names = np.zeros((len(frame), 0)), ()
    else:
        X = np.asarray(fixed_matrix.design_matrix, dtype=float)
        fixed_names = tuple(fixed_matrix.as_dataframe().columns)

    raw, block_matrices = _blocks(frame, spec)
    blocks = tuple(
        Block(label=label, group=group, terms=names, levels=lv, codes=codes, Zt=Zt, correlated=corr, term=index)
        for label, (group, names, lv, codes, Zt, corr, index) in zip(_labels(raw), raw)
    )
    return Design(
        spec=spec,
        y=y,
        trials=trials,
        X=X,
        fixed_names=fixed_names,
        blocks=blocks,
        rows=rows,
        n_dropped=n_dropped,
        codings=Codings(levels=levels, fixed_matrix=fixed_matrix, block_matrices=block_matrices),
        data=frame,
    )


@dataclass(frozen=True)
class NewData:
    """New rows encoded as the training data were.

    X: (n, p) fixed-effects matrix; blocks: per design block, (codes (n,), Zt (n, k)), where a level
    the training data did not have is coded -1 - i for the i-th name in new_levels (per block).
    """

    X: np.ndarray
    blocks: tuple[tuple[np.ndarray, np.ndarray], ...]
    new_levels: tuple[tuple[str, ...], ...]
    trials: np.ndarray | None

    @property
    def nobs(self) -> int:
        return self.X.shape[0]


def _level_names(frame: pd.DataFrame, factors: tuple[str, ...]) -> np.ndarray:
    return np.array([":".join(str(v) for v in row) for row in zip(*(frame[f] for f in factors))], dtype=object)


def encode_new_data(design: Design, data, allow_new_levels: bool = False, random_effects: bool = True) -> NewData:
    """Encode ``data`` with the training data's codings (level orders, formulae's fitted matrices).

    A level of a fixed-effect factor the training data did not have raises BayesmixError; an unseen
    group level raises too unless ``allow_new_levels``. With ``random_effects=False`` only the
    fixed part is encoded (``blocks`` is empty), so the grouping columns need not be present.
    """
    spec, codings = design.spec, design.codings
    data = _as_frame(data)
    response_vars = {v for expr in spec.response.expressions for v in _expression_names(expr)}
    grouping = {f for term in spec.random for f in term.factors}
    if random_effects:
        needed = sorted(spec.variables - response_vars | (spec.variables & grouping))
    else:
        needed = sorted(set(formulae.model_description(spec.fixed).var_names) & spec.variables)
    missing = [c for c in needed if c not in data.columns]
    if missing:
        hint = did_you_mean(missing[0], data.columns)
        raise BayesmixError(f"New data lacks the column(s) {', '.join(missing)} that the model uses.{hint}")
    frame = data.loc[:, needed].copy(deep=True).reset_index(drop=True)
    if frame.isna().any().any():
        raise BayesmixError("New data has missing values in used columns; drop or fill those rows before predicting.")
    raw_groups = {f: frame[f].copy() for f in grouping if f in frame.columns}
    for name, levels in codings.levels.items():
        if name not in frame.columns:
            continue
        unseen = sorted({str(v) for v in pd.unique(frame[name])} - {str(v) for v in levels})
        if unseen and name not in grouping:
            raise BayesmixError(
                f"Column '{name}' has level(s) {unseen[:5]} that the training data did not have; "
                f"the model knows {list(levels)[:10]}."
            )
        as_text = {str(level): level for level in levels}
        frame[name] = pd.Categorical(
            [as_text.get(str(v), np.nan) for v in frame[name]], categories=list(levels), ordered=True
        )
    try:
        X = (
            np.asarray(codings.fixed_matrix.evaluate_new_data(frame)).astype(float)
            if codings.fixed_matrix is not None
            else np.zeros((len(frame), 0))
        )
    except Exception as exc:
        raise BayesmixError(f"formulae could not encode the new data's fixed part: {exc}") from None
    blocks, new_levels = [], []
    for block in design.blocks if random_effects else ():
        term = spec.random[block.term]
        matrix = codings.block_matrices[(term.expr, term.group)]
        names = list(matrix.as_dataframe().columns)
        full = np.asarray(matrix.evaluate_new_data(frame)).astype(float)
        Zt = full[:, [names.index(t) for t in block.terms]]
        index = {level: i for i, level in enumerate(block.levels)}
        names_new = _level_names(pd.DataFrame(raw_groups), term.factors)
        unseen = tuple(sorted({level for level in names_new if level not in index}))
        index.update({level: -1 - i for i, level in enumerate(unseen)})
        codes = np.array([index[level] for level in names_new], dtype=np.int64)
        if unseen and not allow_new_levels:
            raise BayesmixError(
                f"New data has level(s) of '{block.group}' the model has not seen: {list(unseen[:5])}. "
                "Pass allow_new_levels=True to predict for them from the fitted covariance."
            )
        blocks.append((codes, Zt))
        new_levels.append(unseen)
    trials = None
    response = spec.response
    if response.trials is not None and response.trials in data.columns:
        trials = data[response.trials].to_numpy(dtype=float)
    return NewData(X=X, blocks=tuple(blocks), new_levels=tuple(new_levels), trials=trials)


def _expression_names(expr: str) -> set[str]:
    return set(formulae.model_description(f"I({expr})").var_names) - {""}
