"""The fixed-effects matrix: drop aliased (linearly dependent) columns as lme4 does."""

from __future__ import annotations

import warnings

import numpy as np

from bayesmix.errors import RankDeficientWarning

RANK_TOLERANCE = 1e-7


def drop_aliased(X: np.ndarray, names: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """Keep columns left to right, dropping each one that lies in the span of those kept before it.

    Returns (X without aliased columns, kept names, dropped names); warns RankDeficientWarning
    naming the dropped columns. Later columns are the ones dropped, as in lme4.
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
    dropped = tuple(names[j] for j in range(X.shape[1]) if j not in kept)
    if dropped:
        warnings.warn(
            f"The fixed-effects matrix is rank deficient: dropped {len(dropped)} aliased column(s): "
            f"{', '.join(dropped)}.",
            RankDeficientWarning,
            stacklevel=4,
        )
    return X[:, kept], tuple(names[j] for j in kept), dropped
