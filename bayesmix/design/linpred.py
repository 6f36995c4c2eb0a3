"""The linear predictor, written once for the PyMC graph (pytensor) and for predictions (numpy).

    eta = offset + beta @ X.T + sum over blocks of sum_j Zt[:, j] * b[codes, j]

beta is (p,) or (S, p) for S posterior draws; each block's b is (M, k) or (S, M, k); eta is (n,)
or (S, n). Random effects are gathered by group codes: no dense Z.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def linear_predictor(X, beta, blocks, offset=None):
    """``blocks``: iterable of (Zt (n, k), codes (n,), b (M, k) or (S, M, k)); ``offset``: (n,) or
    None, the known part of eta (coefficient 1)."""
    eta = beta @ X.T
    if offset is not None:
        eta = eta + offset
    for Zt, codes, b in blocks:
        at_rows = b[codes] if b.ndim == 2 else b[:, codes]
        eta = eta + (Zt * at_rows).sum(axis=-1)
    return eta


@dataclass(frozen=True)
class Predictor:
    """The data of one linear predictor: the mean's today; a distributional parameter's
    (zero-inflation, dispersion) next, each with its own X, random-effect blocks and offset.

    name: the parameter it predicts (``"mu"`` for the mean). X: (n, p) with column names
    ``fixed_names``; blocks: the design's :class:`~bayesmix.design.encode.Block` objects (each owns
    its covariance structure); offset: (n,) or None.
    """

    name: str
    X: Any
    fixed_names: tuple[str, ...]
    blocks: tuple
    offset: Any = None
