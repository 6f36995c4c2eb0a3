"""The linear predictor, written once for the PyMC graph (pytensor) and for predictions (numpy).

    eta = offset + beta @ X.T + sum over blocks of sum_j Zt[:, j] * b[codes, j]

beta is (p,) or (S, p) for S posterior draws; each block's b is (M, k) or (S, M, k); eta is (n,)
or (S, n). Random effects are gathered by group codes: no dense Z.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

COMPACT_TERMS = 8  # a block of at least this many terms, one of them per row, is read row by row


@dataclass(frozen=True)
class OneTermRows:
    """A block's Z whose every row has at most one nonzero entry (its terms a factor's indicator
    columns: the positions of a spatial block, the levels of a known covariance, the times of an
    ar1): each row's value and the index of its term. eta then gathers one effect per row instead
    of multiplying the dense (n, k) Z, whose size grows with the positions."""

    values: Any
    terms: Any

    def masked(self, mask) -> OneTermRows:
        """Only the terms ``mask`` (k,) keeps (a block shared by several predictors)."""
        return OneTermRows(self.values * mask[self.terms], self.terms)


def one_term_rows(Zt: np.ndarray) -> OneTermRows | None:
    """``Zt`` as :class:`OneTermRows` when it has at least :data:`COMPACT_TERMS` columns and no
    row with two nonzero entries, else None."""
    Zt = np.asarray(Zt)
    if Zt.ndim != 2 or Zt.shape[1] < COMPACT_TERMS:
        return None
    nonzero = Zt != 0
    if nonzero.sum(axis=1).max(initial=0) > 1:
        return None
    terms = np.argmax(nonzero, axis=1)
    return OneTermRows(Zt[np.arange(len(Zt)), terms], terms)


def linear_predictor(X, beta, blocks, offset=None):
    """``blocks``: iterable of (Zt (n, k) or :class:`OneTermRows`, codes (n,), b (M, k) or
    (S, M, k)); ``offset``: (n,) or None, the known part of eta (coefficient 1). A numpy Zt of one
    term per row is read as :class:`OneTermRows` (with S draws the dense product would be S x n x k)."""
    eta = beta @ X.T
    if offset is not None:
        eta = eta + offset
    for Zt, codes, b in blocks:
        if isinstance(Zt, np.ndarray):
            Zt = one_term_rows(Zt) or Zt
        if isinstance(Zt, OneTermRows):
            eta = eta + Zt.values * (b[codes, Zt.terms] if b.ndim == 2 else b[:, codes, Zt.terms])
            continue
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
