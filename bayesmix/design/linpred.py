"""The linear predictor, written once for the PyMC graph (pytensor) and for predictions (numpy).

    eta = offset + beta @ X.T + sum over blocks of sum_j Zt[:, j] * b[codes, j]

beta is (p,) or (S, p) for S posterior draws; each block's b is (M, k) or (S, M, k); eta is (n,)
or (S, n). Random effects are gathered by group codes: no dense Z.
"""

from __future__ import annotations


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
