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

    def selected_inverse(self) -> SelectedInverse:
        """H^{-1} on H's own pattern (pairs of effects that share a row of the data, and each level's
        block): all that the exact gradient's leverages and traces and the conditional SDs read.

        With D = H11^{-1} (per level) and B = H21 D (sparse, H21's pattern): H^{-1}_22 = S^{-1}
        (dense, the small blocks), H^{-1}_21 = -S^{-1} B and the first block's diagonal blocks
        D + B' S^{-1} B, formed from the dense q2 x q1 product S^{-1} B alone, never the q x q inverse.
        """
        m1, k1, _ = self.first_inverse.shape
        if self.schur is None:
            return SelectedInverse(self.first_inverse, None, None)
        q2 = self.coupling.shape[0]
        schur_inverse = cho_solve(self.schur, np.eye(q2))
        B = (self.coupling @ _block_diagonal(self.first_inverse)).tocsc()
        SB = np.asarray((B.T @ schur_inverse).T)  # S^{-1} B, (q2, q1)
        first = self.first_inverse.copy()
        for a in range(k1):
            for b in range(k1):
                first[:, a, b] += np.asarray(B[:, a::k1].multiply(SB[:, b::k1]).sum(axis=0)).ravel()
        return SelectedInverse(first, -SB, schur_inverse)


@dataclass(frozen=True)
class SelectedInverse:
    """Entries of H^{-1} on H's pattern: the first block's diagonal blocks (M1, k1, k1), the dense
    coupling block H^{-1}_21 (q2, q1) and H^{-1}_22 (q2, q2) (both None for one block)."""

    first: np.ndarray
    coupling: np.ndarray | None
    rest: np.ndarray | None

    def at(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """H^{-1}[rows, columns] for index pairs on H's pattern (two effects of the first block
        must belong to one level, as every such pair in H does)."""
        m1, k1, _ = self.first.shape
        q1 = m1 * k1
        rows, columns = np.asarray(rows), np.asarray(columns)
        out = np.empty(len(rows))
        both = (rows < q1) & (columns < q1)
        out[both] = self.first[rows[both] // k1, rows[both] % k1, columns[both] % k1]
        if self.rest is None:
            return out
        lower, upper = (rows >= q1) & (columns < q1), (rows < q1) & (columns >= q1)
        out[lower] = self.coupling[rows[lower] - q1, columns[lower]]
        out[upper] = self.coupling[columns[upper] - q1, rows[upper]]
        rest = (rows >= q1) & (columns >= q1)
        out[rest] = self.rest[rows[rest] - q1, columns[rest] - q1]
        return out


def _block_diagonal(blocks: np.ndarray) -> sp.bsr_matrix:
    m, k, _ = blocks.shape
    return sp.bsr_matrix((blocks, np.arange(m), np.arange(m + 1)), shape=(m * k, m * k))


def factor(M: sp.csr_matrix, weights: np.ndarray, q1: int, k1: int) -> BlockedFactor:
    """Factor H = M' diag(weights) M + I with the first ``q1`` columns (levels of k1 terms each,
    level-major) block diagonal in H. Raises numpy.linalg.LinAlgError when H is not positive definite."""
    return factor_cross_product((M.T @ sp.diags(weights) @ M).tocsr(), q1, k1)


def factor_cross_product(A: sp.csr_matrix, q1: int, k1: int) -> BlockedFactor:
    """Factor H = A + I, A sparse (q x q) with its first ``q1`` rows and columns block diagonal
    (one k1 x k1 block per level): the M' W M of :func:`factor`, or a sum of such cross-products
    over several linear predictors. Raises numpy.linalg.LinAlgError when H is not positive definite."""
    blocks = _diagonal_blocks(A[:q1, :q1], q1 // k1, k1) + np.eye(k1)[None]
    first_cholesky = np.linalg.cholesky(blocks)
    first_inverse = np.linalg.inv(blocks)
    logdet = 2.0 * float(np.log(np.diagonal(first_cholesky, axis1=1, axis2=2)).sum())
    coupling = A[q1:, :q1].tocsr()
    if A.shape[0] == q1:
        return BlockedFactor(first_inverse, coupling, None, logdet)
    S = (A[q1:, q1:] - coupling @ _block_diagonal(first_inverse) @ coupling.T).toarray()
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


@dataclass(frozen=True)
class PermutedFactor:
    """H factored with its columns reordered, used in H's own order: ``order[i]`` is the column of
    H at position i of the factored matrix. Blocks of one grouping factor in several linear
    predictors (a site's effect on the mean and on the zero process) then form one k x k block
    per level of the first part, where they would otherwise fill the dense Schur complement."""

    inner: BlockedFactor
    order: np.ndarray
    position: np.ndarray  # the inverse permutation: column j of H sits at position[j]

    @classmethod
    def of(cls, A: sp.csr_matrix, order: np.ndarray, q1: int, k1: int) -> PermutedFactor:
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        permuted = A[order][:, order].tocsr()
        return cls(factor_cross_product(permuted, q1, k1), order, position)

    @property
    def logdet(self) -> float:
        return self.inner.logdet

    def solve(self, b: np.ndarray) -> np.ndarray:
        return np.asarray(self.inner.solve(np.asarray(b, dtype=float)[self.order]))[self.position]

    def selected_inverse(self) -> PermutedInverse:
        return PermutedInverse(self.inner.selected_inverse(), self.position)


@dataclass(frozen=True)
class PermutedInverse:
    """:class:`SelectedInverse` of a :class:`PermutedFactor`, indexed in H's own order."""

    inner: SelectedInverse
    position: np.ndarray

    def at(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        return self.inner.at(self.position[np.asarray(rows)], self.position[np.asarray(columns)])
