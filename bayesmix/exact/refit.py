"""Refits of a linear mixed model to new responses on the same rows (the parametric bootstrap's).

Of the cross-products of [Z X y] only the response's (Z'y, X'y, y'y) move with y. The rows are
read once for every response (one sparse product with the n x nsim response matrix); each refit is
then the optimiser alone on the swapped cross-products, started at the fit's theta, with no design,
data frame or fit object built around it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from bayesmix.design.crossprod import block_z, lme4_order
from bayesmix.exact.lmm import CrossProducts, LmmResult, _level_pairs, optimise


@dataclass(frozen=True)
class ResponseProducts:
    """Per response (rows of each array): Z1'Wy (nsim, q1), R'Wy without its last entry
    (nsim, r - 1; R = [Z_2 ... Z_B, X, y]) and y'Wy (nsim,)."""

    first: np.ndarray
    rest: np.ndarray
    square: np.ndarray


def response_products(design, columns: list[int], Y: np.ndarray) -> ResponseProducts:
    """The response cross-products of the (nsim, n) responses ``Y`` on ``design``'s rows (blocks in
    lme4 order, the ``columns`` of X; offset and precision weights as the design's own)."""
    Y = np.atleast_2d(np.asarray(Y, dtype=float))
    if design.offset is not None:
        Y = Y - design.offset[None, :]
    weights = design.weights if design.weights is not None else None
    WY = Y * weights[None, :] if weights is not None else Y
    blocks = [design.blocks[i] for i in lme4_order(design.blocks)]
    Z = [block_z(b) for b in blocks]
    R = sp.hstack(Z[1:] + [sp.csc_matrix(design.X[:, columns])]).tocsc()
    return ResponseProducts(
        first=np.asarray((Z[0].T @ WY.T).T),
        rest=np.asarray((R.T @ WY.T).T),
        square=np.einsum("ij,ij->i", Y, WY),
    )


def with_response(cp: CrossProducts, products: ResponseProducts, i: int) -> CrossProducts:
    """``cp`` with response ``i``'s cross-products in place of the fit's."""
    RZ1 = sp.csc_matrix(sp.vstack([cp.RZ1[:-1], sp.csr_matrix(products.first[i][None, :])]))
    RZ1.eliminate_zeros()
    RZ1.sort_indices()
    RR = np.array(cp.RR, dtype=float, copy=True)
    RR[-1, :-1] = RR[:-1, -1] = products.rest[i]
    RR[-1, -1] = products.square[i]
    return replace(cp, RZ1=RZ1.tocsr(), RR=RR, pairs=_level_pairs(RZ1, cp.D.shape[1]))


def refit(result: LmmResult, products: ResponseProducts, i: int) -> LmmResult:
    """Response ``i``'s ML/REML fit, by the fit's method, from the fit's theta."""
    cp = with_response(result.cross, products, i)
    return optimise(cp, result.reml, result.fixed_names, result.dropped, start=result.optimizer.x)
