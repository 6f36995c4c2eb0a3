"""Cross-products of the random-effect blocks, X and y: what both engines read of the rows.

The exact engine (REML/ML, Laplace), the collapsed sampler and the Dask statistics all start from
these sums, so they live below the engines: lme4's block order, each block's sparse Z (never a dense
n x levels matrix), the per-level Z_m'Z_m and the cross-products of [Z X y] of a chunk of rows,
which add up over chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:  # blocks are read by their attributes; the design module builds on this one
    from bayesmix.design.encode import Block


def lme4_order(blocks: tuple[Block, ...]) -> list[int]:
    """Block indices in lme4's order: decreasing number of levels, ties in formula order."""
    return sorted(range(len(blocks)), key=lambda i: -blocks[i].n_levels)


def block_z(block: Block) -> sp.csc_matrix:
    """The sparse n x (M k) model matrix of one block, level-major (level m's k columns together)."""
    return z_matrix(block.codes, block.Zt, block.n_levels)


def z_matrix(codes: np.ndarray, Zt: np.ndarray, levels: int) -> sp.csc_matrix:
    """The sparse n x (levels k) model matrix of term matrix ``Zt`` gathered by ``codes``."""
    return z_rows(codes, Zt, levels).tocsc()


def z_rows(codes: np.ndarray, Zt: np.ndarray, levels: int) -> sp.csr_matrix:
    """:func:`z_matrix` by rows, built directly: row i holds its k entries in columns
    codes[i] k + 0..k-1, already in order, so no sort of (row, column) pairs is needed."""
    n, k = Zt.shape
    columns = (np.asarray(codes, dtype=np.int64)[:, None] * k + np.arange(k)[None, :]).ravel()
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    return sp.csr_matrix((np.asarray(Zt, dtype=float).ravel(), columns, indptr), shape=(n, levels * k))


def level_gram(codes: np.ndarray, Zt: np.ndarray, levels: int) -> np.ndarray:
    """(levels, k, k) per-level Z_m'Z_m of one block: each row belongs to one level, so Z'Z is
    block diagonal and these are its blocks."""
    k = Zt.shape[1]
    D = np.zeros((levels, k, k))
    for j in range(k):
        for i in range(j, k):
            D[:, i, j] = D[:, j, i] = np.bincount(codes, weights=Zt[:, i] * Zt[:, j], minlength=levels)
    return D


@dataclass(frozen=True)
class RawCrossProducts:
    """Sums over rows of [Z X y]'s cross-products, blocks in lme4 order; two chunks of rows add up.

    D: (M1, k1, k1) per-level Z1'Z1; RZ1: sparse (r, q1) R'Z1 with R = [Z_2 ... Z_B, X, y];
    RR: (r, r) R'R, dense (or sparse, see :func:`raw_cross_products`); n: rows. The exact engine's
    per-level pair table (``bayesmix.exact.lmm.CrossProducts``) is not a sum over rows, so it is
    built once, from the total (``assemble_cross_products``).
    """

    D: np.ndarray
    RZ1: sp.csr_matrix
    RR: np.ndarray
    n: int
    log_weights: float = 0.0  # sum of log w over the rows: a weighted gaussian likelihood's constant

    def __add__(self, other: RawCrossProducts) -> RawCrossProducts:
        return RawCrossProducts(
            self.D + other.D,
            (self.RZ1 + other.RZ1).tocsr(),
            self.RR + other.RR,
            self.n + other.n,
            self.log_weights + other.log_weights,
        )


def raw_cross_products(
    blocks, X: np.ndarray, y: np.ndarray, dense: bool = True, weights: np.ndarray | None = None
) -> RawCrossProducts:
    """The cross-products of one chunk of rows. ``blocks``: (codes (n,), Zt (n, k), levels M) per
    random-effect block, in lme4 order (:func:`lme4_order`); ``dense=False`` keeps R'R sparse (the
    crossed collapsed sampler's, whose other blocks have many levels). ``weights``: gaussian
    precision weights, the rows scaled by sqrt(w) as lme4 does (every sum becomes Z'WZ, X'Wy, ...)."""
    log_weights = 0.0
    if weights is not None:
        root = np.sqrt(weights)
        blocks = [(codes, Zt * root[:, None], m) for codes, Zt, m in blocks]
        X, y, log_weights = X * root[:, None], y * root, float(np.sum(np.log(weights)))
    Z = [z_rows(codes, Zt, m) for codes, Zt, m in blocks]
    # R = [Z_2 ... Z_B | X y]: its dense part's products by BLAS and sparse-times-dense products,
    # never a sparse copy of the dense columns (that conversion cost more than the sums). F'F in one
    # product, not X'X, X'y and y'y apart: those round differently, and a fit whose criterion is flat
    # to its last bits (a block absorbing the residual) then stops elsewhere
    F = np.column_stack([X, y]) if X.shape[1] else y[:, None]
    RZ1 = sp.csr_matrix((Z[0].T @ F).T)
    RR = F.T @ F
    if len(Z) > 1:
        S = sp.hstack(Z[1:], format="csr")
        SF = np.asarray(S.T @ F)  # (q, p + 1)
        RZ1 = sp.vstack([(S.T @ Z[0]).tocsr(), RZ1], format="csr")
        RR = sp.bmat([[S.T @ S, sp.csr_matrix(SF)], [sp.csr_matrix(SF.T), sp.csr_matrix(RR)]], format="csr")
        RR = RR.toarray() if dense else RR
    elif not dense:
        RR = sp.csr_matrix(RR)
    D = level_gram(*blocks[0])
    return RawCrossProducts(D=D, RZ1=RZ1, RR=RR, n=len(y), log_weights=log_weights)
