"""Encoding new rows without formulae's per-call parsing, where nothing needs it.

formulae's ``evaluate_new_data`` re-evaluates each term's expression on the new rows; for a matrix
whose terms are the intercept and numeric columns used as they are (``x``, ``x:z``), the result is
those columns (and their products), which numpy stacks directly, many times faster on the rows of
a Dask partition. Anything else (a factor's contrasts, a function of a column, a boolean column)
returns None and the caller asks formulae. Group codes likewise: each distinct value of a column is
matched to the training levels once (by its text, as the level names are), then the rows take
their value's code, instead of turning every row into text.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from formulae.terms.terms import Intercept, Term
from formulae.terms.variable import Variable


def _numeric_columns(term) -> list[str] | None:
    """The columns of a term that is a product of numeric variables used as they are, else None."""
    if not isinstance(term, Term) or not term.components:
        return None
    names = []
    for component in term.components:
        if not isinstance(component, Variable) or component.kind != "numeric":
            return None
        names.append(component.name)
    return names if term.labels == [":".join(names)] else None


def plain_matrix(matrix, frame: pd.DataFrame) -> np.ndarray | None:
    """formulae ``matrix`` evaluated on ``frame``, built with numpy where every term is the
    intercept or numeric columns (not booleans) multiplied, else None."""
    columns = []
    for term in matrix.terms.values():
        if isinstance(term, Intercept):
            columns.append(np.ones(len(frame)))
            continue
        names = _numeric_columns(term)
        if names is None or any(not _plain_numeric(frame, name) for name in names):
            return None
        value = frame[names[0]].to_numpy(dtype=float)
        for name in names[1:]:
            value = value * frame[name].to_numpy(dtype=float)
        columns.append(value)
    return stack_columns(columns, len(frame))


STACK_BLOCK = 8192  # rows per block of stack_columns (the block's part of the output stays in cache)


def stack_columns(columns: list[np.ndarray], n: int) -> np.ndarray:
    """``np.column_stack(columns)`` (row-major, as the sparse products want it), written in blocks
    of rows: each column's strided writes then land in cache, where over all rows each column
    walks the whole output (several times slower on a Dask partition's 10^6 rows)."""
    out = np.empty((n, len(columns)))
    for start in range(0, n, STACK_BLOCK):
        for j, column in enumerate(columns):
            out[start : start + STACK_BLOCK, j] = column[start : start + STACK_BLOCK]
    return out


def _plain_numeric(frame: pd.DataFrame, name: str) -> bool:
    if name not in frame.columns:
        return False
    dtype = frame[name].dtype
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def level_codes(column: pd.Series, levels) -> np.ndarray:
    """Each row's position among ``levels`` by its text (``str(value)``), -1 where it is none of
    them: the distinct values matched once, the rows by hashing."""
    return level_match(column, levels)[0]


def level_match(column: pd.Series, levels) -> tuple[np.ndarray, list]:
    """(:func:`level_codes`, the distinct values that are none of ``levels``), from one hashing pass."""
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    index = pd.Index([str(level) for level in levels])
    matched = index.get_indexer([str(value) for value in uniques])
    out = np.full(len(codes), -1, dtype=np.int64)
    present = codes >= 0
    out[present] = matched[codes[present]]
    return out, [value for value, code in zip(uniques, matched) if code < 0]
