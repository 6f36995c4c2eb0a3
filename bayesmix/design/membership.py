"""Multi-membership groups: brms's ``(1 | mm(school1, school2))``.

A pupil who attended two schools carries part of each school's effect: row i's effect is
sum_k w_ik b[s_ik], with the weights equal (1/K each) unless ``weights = cbind(w1, w2)`` gives
them, and scaled to sum to one per row unless ``scale = FALSE`` (brms's defaults). The levels are
every value any membership column takes. The term becomes one block of one level whose terms are
the levels, with Z's row i holding the weights at its schools' columns and the covariance s^2 I
(:class:`bayesmix.design.covariance.MultiMembership`): both engines then take it as any one-level
block (the known-covariance form, :mod:`bayesmix.design.known`), and the membership columns are
read with pandas, never through formulae's indicators.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayesmix.errors import BayesmixError

_NAME = r"(?:`[^`]+`|[^\W\d][\w.]*)"
_CALL = re.compile(r"^\s*mm\s*\((.*)\)\s*$", flags=re.S)
_WEIGHTS = re.compile(r"^\s*cbind\s*\((.*)\)\s*$", flags=re.S)
MM_SUFFIX = " (members)"  # not used as a column name by any data: the one-level grouping column


@dataclass(frozen=True)
class Membership:
    """One ``mm()`` grouping: the membership columns, the weight columns (None: equal weights) and
    whether each row's weights are scaled to sum to one."""

    columns: tuple[str, ...]
    weights: tuple[str, ...] | None = None
    scale: bool = True

    @property
    def label(self) -> str:
        return f"mm({', '.join(self.columns)})"

    @property
    def variables(self) -> frozenset[str]:
        return frozenset(self.columns) | frozenset(self.weights or ())


def _names(text: str) -> list[str]:
    parts = [part.strip() for part in _split(text)]
    if not all(re.fullmatch(_NAME, part) for part in parts):
        raise ValueError(text)
    return [part.strip("`") for part in parts]


def _split(text: str) -> list[str]:
    """``text`` split at the commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def membership_call(group: str) -> Membership | None:
    """The :class:`Membership` of a grouping side ``mm(a, b, weights = cbind(wa, wb), scale = TRUE)``,
    None for a grouping side that is not ``mm(...)``; BayesmixError for a malformed one."""
    match = _CALL.match(group)
    if match is None:
        return None
    usage = "Write (1 | mm(school1, school2)) or (1 | mm(school1, school2, weights = cbind(w1, w2)))."
    columns, options = [], {}
    for part in _split(match.group(1)):
        name, equals, value = (piece.strip() for piece in part.partition("="))
        if not equals:
            if options:
                raise BayesmixError(f"mm(): the membership columns come before the named arguments. {usage}")
            columns.append(part.strip())
        elif name in ("weights", "scale") and value:
            options[name] = value
        else:
            raise BayesmixError(f"mm(): '{part.strip()}' is not an argument mm() takes (weights=, scale=). {usage}")
    try:
        columns = _names(",".join(columns))
    except ValueError:
        raise BayesmixError(f"mm() takes column names (backticks around other names). {usage}") from None
    if len(columns) < 2:
        raise BayesmixError(f"mm() needs two or more membership columns; one column is (1 | {columns[0]}). {usage}")
    weights = None
    if "weights" in options:
        inner = _WEIGHTS.match(options["weights"])
        try:
            weights = tuple(_names(inner.group(1))) if inner else None
        except ValueError:
            weights = None
        if weights is None or len(weights) != len(columns):
            raise BayesmixError(
                f"mm(weights = ...) takes cbind() of one weight column per membership column ({len(columns)} here). "
                f"{usage}"
            )
    scale = options.get("scale", "TRUE")
    if scale not in ("TRUE", "FALSE", "True", "False", "T", "F"):
        raise BayesmixError(f"mm(scale = {scale}): scale is TRUE (weights sum to one in each row) or FALSE.")
    return Membership(tuple(columns), weights, scale.startswith("T"))


def check_term(expr: str, membership: Membership) -> None:
    if expr.strip() != "1":
        raise BayesmixError(
            f"({expr} | {membership.label}): this version takes an intercept over a multi-membership group; "
            f"write (1 | {membership.label})."
        )


def _text(column: pd.Series) -> pd.Series:
    return column.astype(object).astype(str)


def membership_levels(frame: pd.DataFrame, membership: Membership) -> tuple[str, ...]:
    """Every level any membership column takes in the rows used (as text): numbers in numeric
    order, other labels sorted (a Categorical's categories in their order)."""
    values = pd.concat([frame[c].astype(object) for c in membership.columns], ignore_index=True)
    present = pd.unique(values)
    first = frame[membership.columns[0]]
    if isinstance(first.dtype, pd.CategoricalDtype):
        order = [v for v in first.cat.categories if v in set(present)]
        order += sorted((v for v in present if v not in set(order)), key=str)
    else:
        try:
            order = sorted(present)
        except TypeError:  # mixed types: by their text
            order = sorted(present, key=str)
    return tuple(dict.fromkeys(str(v) for v in order))


def membership_weights(frame: pd.DataFrame, membership: Membership) -> np.ndarray:
    """(n, K) each row's weight on each of its memberships."""
    n, K = len(frame), len(membership.columns)
    if membership.weights is None:
        weights = np.ones((n, K))
    else:
        weights = np.column_stack([np.asarray(frame[c], dtype=float) for c in membership.weights])
        if np.any(weights < 0) or not np.all(np.isfinite(weights)):
            raise BayesmixError(f"The weights of {membership.label} must be finite and 0 or more.")
    if membership.scale:
        total = weights.sum(axis=1, keepdims=True)
        if np.any(total <= 0):
            raise BayesmixError(
                f"{int(np.sum(total <= 0))} row(s) of {membership.label} have weights summing to 0, which cannot "
                "be scaled to sum to one: give each row a positive weight, or drop those rows."
            )
        weights = weights / total
    return weights


def unseen_members(frame: pd.DataFrame, membership: Membership, levels: tuple[str, ...]) -> tuple[str, ...]:
    """The levels the membership columns of ``frame`` name that ``levels`` lack, sorted."""
    named = set().union(*(set(_text(frame[column])) for column in membership.columns))
    return tuple(sorted(named - set(levels)))


def membership_matrix(
    frame: pd.DataFrame, membership: Membership, levels: tuple[str, ...], allow_new_levels: bool = False
) -> np.ndarray:
    """(n, L) Z of the block: row i holds its weight at each of its levels' columns (two
    memberships of one level add up). A level outside ``levels`` (new data) is refused unless
    ``allow_new_levels``, when it contributes nothing."""
    weights = membership_weights(frame, membership)
    index = pd.Index(levels)
    Z = np.zeros((len(frame), len(levels)))
    rows = np.arange(len(frame))
    for k, column in enumerate(membership.columns):
        codes = index.get_indexer(_text(frame[column]))
        unseen = sorted(set(_text(frame[column])[codes < 0]))
        if unseen and not allow_new_levels:
            raise BayesmixError(
                f"New data has level(s) of '{column}' in {membership.label} the model has not seen: {unseen[:5]}. "
                "Pass allow_new_levels=True to predict them (a sampled model draws their effects from the block's SD; "
                "an exact fit gives them the population level, as lme4)."
            )
        known = codes >= 0
        np.add.at(Z, (rows[known], codes[known]), weights[known, k])
    return Z
