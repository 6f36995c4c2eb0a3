"""The fixed-effects matrix: drop aliased (linearly dependent) columns as lme4 does."""

from __future__ import annotations

import numpy as np

from bayesmix.errors import RankDeficientWarning, warn

RANK_TOLERANCE = 1e-7
NO_RESIDUAL = 1e-10  # |y - X beta_ols| below this share of |y|: the fixed effects reproduce y
NO_RESIDUAL_GRAM = 1e-12  # the same on squares, from X'X, X'y, y'y (whose rounding is far coarser)


def no_residual_message(p: int, n: int) -> str:
    return (
        f"The {p} fixed-effect columns reproduce the response exactly ({n} rows): no residual variation is left "
        "to estimate the variances from. Use fewer fixed-effect terms (a factor with one level per row, or as "
        "many columns as rows, fits every value)."
    )


def drop_aliased(X: np.ndarray, names: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """(X without aliased columns, kept names, dropped names): see :func:`identified_columns`."""
    kept, kept_names, dropped = identified_columns(X, names)
    return X[:, kept], kept_names, dropped


def identified_columns(X: np.ndarray, names: tuple[str, ...]) -> tuple[list[int], tuple[str, ...], tuple[str, ...]]:
    """Keep columns left to right, dropping each one that lies in the span of those kept before it.

    Returns (indices kept, kept names, dropped names); warns RankDeficientWarning naming the
    dropped columns. Later columns are the ones dropped, as in lme4 (its ``lFormula`` does this
    when it builds the design).
    """
    kept: list[int] = []
    basis = np.zeros((X.shape[0], 0))
    for j in range(X.shape[1]):
        column = X[:, j]
        norm = np.linalg.norm(column)
        residual = column - basis @ (basis.T @ column) if basis.shape[1] else column
        if norm > 0 and np.linalg.norm(residual) > RANK_TOLERANCE * norm:
            kept.append(j)
            basis = np.column_stack([basis, residual / np.linalg.norm(residual)])
    return kept, *_kept_and_dropped(names, kept)


def aliased_from_gram(XX: np.ndarray, names: tuple[str, ...]) -> tuple[list[int], tuple[str, ...], tuple[str, ...]]:
    """:func:`identified_columns` when only X'X is known (data reduced to cross-products): the same left
    to right rule, on squared norms (a column is kept when its squared residual on the kept ones
    exceeds (RANK_TOLERANCE * 10)^2 of its squared norm: the Gram matrix squares the rounding error).

    Returns (indices kept, kept names, dropped names), warning as drop_aliased does.
    """
    kept: list[int] = []
    for j in range(XX.shape[0]):
        norm2 = XX[j, j]
        if kept:
            K = np.ix_(kept, kept)
            coef = np.linalg.solve(XX[K], XX[kept, j])
            residual2 = norm2 - XX[j, kept] @ coef
        else:
            residual2 = norm2
        if norm2 > 0 and residual2 > (10 * RANK_TOLERANCE) ** 2 * norm2:
            kept.append(j)
    return kept, *_kept_and_dropped(names, kept)


def _kept_and_dropped(names: tuple[str, ...], kept: list[int]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    dropped = tuple(name for j, name in enumerate(names) if j not in kept)
    if dropped:
        warn(
            f"The fixed-effects matrix is rank deficient: dropped {len(dropped)} aliased column(s): "
            f"{', '.join(dropped)}.",
            RankDeficientWarning,
        )
    return tuple(names[j] for j in kept), dropped
