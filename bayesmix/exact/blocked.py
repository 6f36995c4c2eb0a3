"""H = M' W M + I for a Laplace fit (M = Z Lambda, sparse), factored in blocks as the REML engine does.

The columns of M are in lme4's block order, the block with the most levels first. Every row of
the data touches one level of that block, so H's leading part is block diagonal (one k1 x k1
matrix per level): it is factored level by level, and only the Schur complement of the remaining
blocks, S = H22 - H21 H11^{-1} H12 (q2 x q2), is dense. A model with one block has no S at all;
crossed designs pay a dense Cholesky of the smaller blocks only, never of all q effects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.linalg import cho_factor, cho_solve


@dataclass(frozen=True)
class BlockedFactor:
    """The factored H: per level of the first block its inverse (M1, k1, k1); the coupling H21
    (sparse q2 x q1) and the Cholesky factor of S (or None when there is one block)."""

    first_inverse: np.ndarray
    coupling: sp.csr_matrix
    schur: tuple | None
    logdet: float

    @property
    def q1(self) -> int:
        return self.first_inverse.shape[0] * self.first_inverse.shape[1]

    def _first_solve(self, b: np.ndarray) -> np.ndarray:
        m, k, _ = self.first_inverse.shape
        shaped = b.reshape(m, k, -1)
        return np.einsum("mab,mbc->mac", self.first_inverse, shaped).reshape(b.shape)

    def solve(self, b: np.ndarray) -> np.ndarray:
        """H^{-1} b for a vector or a (q, r) matrix, by block forward and back substitution."""
        b = np.asarray(b, dtype=float)
        column = b.ndim == 1
        b = b[:, None] if column else b
        b1, b2 = b[: self.q1], b[self.q1 :]
        y1 = self._first_solve(b1)
        if self.schur is None:
            out = y1
        else:
            x2 = cho_solve(self.schur, b2 - self.coupling @ y1)
            out = np.vstack([self._first_solve(b1 - self.coupling.T @ x2), x2])
        return out[:, 0] if column else out

    def inverse(self) -> np.ndarray:
        """H^{-1}, dense (q x q): what the exact gradient's traces and the conditional SDs read."""
        return self.solve(np.eye(self.q1 + self.coupling.shape[0]))


def factor(M: sp.csr_matrix, weights: np.ndarray, q1: int, k1: int) -> BlockedFactor:
    """Factor H = M' diag(weights) M + I with the first ``q1`` columns (levels of k1 terms each,
    level-major) block diagonal in H. Raises numpy.linalg.LinAlgError when H is not positive definite."""
    A = (M.T @ sp.diags(weights) @ M).tocsr()
    blocks = _diagonal_blocks(A[:q1, :q1], q1 // k1, k1) + np.eye(k1)[None]
    first_cholesky = np.linalg.cholesky(blocks)
    first_inverse = np.linalg.inv(blocks)
    logdet = 2.0 * float(np.log(np.diagonal(first_cholesky, axis1=1, axis2=2)).sum())
    coupling = A[q1:, :q1].tocsr()
    if A.shape[0] == q1:
        return BlockedFactor(first_inverse, coupling, None, logdet)
    m1 = q1 // k1
    inverse_blocks = sp.bsr_matrix((first_inverse, np.arange(m1), np.arange(m1 + 1)), shape=(q1, q1))
    S = (A[q1:, q1:] - coupling @ inverse_blocks @ coupling.T).toarray()
    S[np.diag_indices_from(S)] += 1.0
    schur = cho_factor(S, lower=True)
    logdet += 2.0 * float(np.log(np.diagonal(schur[0])).sum())
    return BlockedFactor(first_inverse, coupling, schur, logdet)


def _diagonal_blocks(first: sp.spmatrix, m1: int, k1: int) -> np.ndarray:
    """The (m1, k1, k1) diagonal blocks of a block-diagonal sparse matrix, without densifying it."""
    coo = first.tocoo()
    out = np.zeros((m1, k1, k1))
    np.add.at(out, (coo.row // k1, coo.row % k1, coo.col % k1), coo.data)
    return out
