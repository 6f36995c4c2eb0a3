"""Exact ML / REML for linear mixed models: lme4's profiled deviance (Bates et al. 2015).

Pipeline (MixedModels.jl's): blocks -> cross-products of [Z X y], once -> for each theta:
Lambda_theta -> blocked Cholesky -> profiled objective -> optimiser.

Model: y = X beta + Z b + e, b = Lambda_theta u, u ~ N(0, sigma^2 I), e ~ N(0, sigma^2 I).
With L the lower Cholesky factor of the augmented cross-product matrix

    [Lambda'Z'Z Lambda + I   Lambda'Z'X   Lambda'Z'y]
    [X'Z Lambda              X'X          X'y       ]
    [y'Z Lambda              y'X          y'y       ]

ldL2 = log|L_Z|^2, ldRX2 = log|L_X|^2 and pwrss = L[y, y]^2 (the penalised residual sum of
squares), the profiled objectives are

    ML:   ldL2 + n (1 + log(2 pi pwrss / n))
    REML: ldL2 + ldRX2 + (n - p) (1 + log(2 pi pwrss / (n - p)))

Blocking: random-effect blocks are ordered as lme4 orders them (decreasing number of levels). The
first block's Z1'Z1 is block-diagonal (each row belongs to one level), so its part of L is M1 small
k1 x k1 Choleskys; everything else ("the rest": the other blocks, X and y, r columns) is a dense
r x r Schur complement. The data enter only through cross-products computed once, so an objective
evaluation costs the same for any number of rows. For InstEval-shaped crossed designs the r x q1
coupling matrix is sparse and stays sparse.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.linalg import cholesky, solve_triangular
from scipy.linalg.lapack import dpotri

from bayesmix import memory
from bayesmix.design.covariance import ThetaLayout
from bayesmix.design.crossprod import RawCrossProducts, lme4_order
from bayesmix.design.encode import Design
from bayesmix.errors import BayesmixError, SingularFitWarning, warn
from bayesmix.exact.optimize import (
    GRADIENT_TOLERANCE,
    RELATIVE_GRADIENT_TOLERANCE,
    OptimizerSummary,
    minimize_bounded,
    projected,
)
from bayesmix.families import LOG_2PI

BYTES_PER_PAIR = 40  # index and value arrays per entry of CrossProducts.pairs while it is built


POLISH_STEP = 1e-6  # forward-difference step of the Hessian of the exact gradient (relative)
POLISH_ITERATIONS = 20
POLISH_TOLERANCE = 1e-14  # Newton steps below this (relative to |theta|) end the polish
SCALE_EXPONENT = 10  # columns with root mean square beyond 2^+-10 are rescaled (column_scales)
POLISH_RISE = 1e-10  # the objective may not rise more than its rounding (relative) from BOBYQA's point


def _block_diagonal(blocks: np.ndarray) -> sp.bsr_matrix:
    """A sparse block-diagonal matrix from (M, k, k) blocks."""
    m, k, _ = blocks.shape
    return sp.bsr_matrix((blocks, np.arange(m), np.arange(m + 1)), shape=(m * k, m * k))


@dataclass(frozen=True)
class CrossProducts:
    """Everything the objective needs from the data, computed once.

    D: (M1, k1, k1) per-level Z1'Z1 of the first block.
    RZ1: sparse (r, q1) R'Z1 with R = [Z_2 ... Z_B, X, y] (r = q2 + p + 1 columns).
    RR: dense (r, r) R'R.
    pairs: sparse (r*r, M1*k1*k1) with entry ((i, j), (m, a, b)) = RZ1[i, (m, a)] RZ1[j, (m, b)]
        for i <= j, so that the upper triangle of RZ1 blockdiag(W_m) RZ1' is one sparse
        matrix-vector product per theta.
    rest_blocks: (M, k) of blocks 2..B in lme4 order.
    """

    order: tuple[int, ...]
    layout: ThetaLayout
    D: np.ndarray
    RZ1: sp.csr_matrix
    RR: np.ndarray
    pairs: sp.csr_matrix
    rest_blocks: tuple[tuple[int, int], ...]
    n: int
    p: int
    log_weights: float = 0.0  # sum of log w: lme4's ldW, which precision weights take off the deviance

    @property
    def q1(self) -> int:
        return self.D.shape[0] * self.D.shape[1]

    @property
    def q2(self) -> int:
        return sum(m * k for m, k in self.rest_blocks)


def assemble_cross_products(raw: RawCrossProducts, order, covariances, rest_levels, p: int) -> CrossProducts:
    """The :class:`CrossProducts` of the total ``raw`` (order: the design's block indices in lme4
    order; covariances: each block's structure and rest_levels: levels of blocks 2..B, both in that
    order)."""
    layout = ThetaLayout(tuple(covariances))
    sizes = layout.sizes
    k1 = sizes[0]
    RZ1 = sp.csc_matrix(raw.RZ1)  # canonical: the same numbers give the same matrix, whatever their history
    RZ1.eliminate_zeros()
    RZ1.sort_indices()
    return CrossProducts(
        order=tuple(order),
        layout=layout,
        D=raw.D,
        RZ1=RZ1.tocsr(),
        RR=raw.RR,
        pairs=_level_pairs(RZ1, k1),
        rest_blocks=tuple(zip(rest_levels, sizes[1:])),
        n=raw.n,
        p=p,
        log_weights=raw.log_weights,
    )


def cross_products(design: Design, columns: list[int] | None = None) -> CrossProducts:
    """The exact engine's cross-products of [Z X y] (``columns``: the X columns to use, e.g. without
    aliased ones; every column when None)."""
    order = lme4_order(design.blocks)
    blocks = [design.blocks[i] for i in order]
    p = len(design.fixed_names) if columns is None else len(columns)
    return assemble_cross_products(
        design.cross_products(columns), order, [b.covariance for b in blocks], [b.n_levels for b in blocks[1:]], p
    )


def _level_pairs(RZ1: sp.csc_matrix, k1: int):
    """All products of two nonzeros of RZ1 in the same level's k1 columns (see CrossProducts.pairs)."""
    r = RZ1.shape[0]
    coo = RZ1.tocoo()
    level, term = np.divmod(coo.col, k1)
    order = np.lexsort((coo.row, term, level))  # by level, then term and row: one order for the same entries
    rows, level, term, values = coo.row[order], level[order], term[order], coo.data[order]
    counts = np.bincount(level, minlength=RZ1.shape[1] // k1)
    memory.check(
        "The exact fit's table of per-level products (CrossProducts.pairs)",
        (int(np.sum(counts.astype(np.int64) ** 2)),),
        "Each level of the grouping factor with the most levels meets many fixed-effect columns and levels of "
        "the other factors; use fewer fixed-effect columns, or sample() (NUTS) for this model.",
        bytes_per_value=BYTES_PER_PAIR,
        unit="entries",
    )
    starts = np.concatenate([[0], np.cumsum(counts)])
    # for each level with c nonzeros, the c x c index pairs, offset to that level's entries
    first = np.repeat(np.arange(len(rows)), np.repeat(counts, counts))
    within = np.concatenate([np.arange(c * c) % c for c in counts])
    second = np.repeat(starts[:-1], counts * counts) + within
    upper = rows[first] <= rows[second]
    first, second = first[upper], second[upper]
    n_levels = RZ1.shape[1] // k1
    return sp.csr_matrix(
        (
            values[first] * values[second],
            (rows[first] * r + rows[second], (level[first] * k1 + term[first]) * k1 + term[second]),
        ),
        shape=(r * r, n_levels * k1 * k1),
    )


@dataclass(frozen=True)
class Factorization:
    """L at one theta: L11 (M1, k1, k1) block-diagonal and L_RR (r, r) dense lower; the (r, q1)
    block between them is formed only when needed (:func:`coupling_block`)."""

    factors: list[np.ndarray]
    L11: np.ndarray
    L11_inverse: np.ndarray
    L_RR: np.ndarray
    ldL2: float
    ldRX2: float
    pwrss: float


def _lambda_rest(cp: CrossProducts, factors: list[np.ndarray], fixed: float = 1.0) -> sp.csr_matrix:
    """Lambda_R (r, r): blocks 2..B's I_M kron T, then ``fixed`` times the identity for X and y.
    Its CSR arrays are written directly (row (level, i) of a block holds T's row i): scipy's
    kron and block_diag cost more than a whole factorisation of a small model, once per theta."""
    if not cp.rest_blocks:  # one block: Lambda_R is a constant multiple of the identity
        return _scaled_identity(cp.p + 1, float(fixed))
    data, indices, lengths, offset = [], [], [], 0
    for (m, k), T in zip(cp.rest_blocks, factors[1:]):
        data.append(np.tile(np.asarray(T, dtype=float).ravel(), m))
        starts = offset + k * np.arange(m)
        indices.append(np.repeat(starts, k * k) + np.tile(np.arange(k), m * k))
        lengths.append(np.full(m * k, k))
        offset += m * k
    r = offset + cp.p + 1
    data.append(np.full(cp.p + 1, float(fixed)))
    indices.append(np.arange(offset, r))
    lengths.append(np.ones(cp.p + 1, dtype=int))
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(lengths))])
    return sp.csr_matrix((np.concatenate(data), np.concatenate(indices), indptr), shape=(r, r))


@functools.lru_cache(maxsize=32)
def _scaled_identity(r: int, value: float) -> sp.csr_matrix:
    """A shared, never modified, sparse value * I_r."""
    return sp.csr_matrix((np.full(r, value), np.arange(r), np.arange(r + 1)), shape=(r, r))


def _first_block(cp: CrossProducts, T1: np.ndarray):
    """A11 = T1' D_m T1 + I per level (M1, k1, k1), its lower Cholesky factors and their inverses."""
    k1 = cp.D.shape[1]
    A11 = T1.T[None] @ cp.D @ T1[None] + np.eye(k1)[None]
    L11 = np.linalg.cholesky(A11)
    return L11, np.linalg.inv(L11)


def _schur_inner(cp: CrossProducts, T1: np.ndarray, L11_inverse: np.ndarray) -> np.ndarray:
    """RR - RZ1 blockdiag(T1 A11_m^{-1} T1') RZ1' (r, r), the rest's cross-products after the first
    block, by its upper triangle (diagonal included; below it RR's entries remain, not meaningful):
    CrossProducts.pairs holds the products for i <= j, and the Cholesky reads no more."""
    TL = T1[None] @ L11_inverse.transpose(0, 2, 1)
    r = cp.RR.shape[0]
    return cp.RR - (cp.pairs @ (TL @ TL.transpose(0, 2, 1)).ravel()).reshape(r, r)


def _symmetric(upper: np.ndarray) -> np.ndarray:
    """The symmetric matrix whose upper triangle ``upper`` holds."""
    return np.triu(upper) + np.triu(upper, 1).T


def _symmetric_columns(upper: np.ndarray, columns: slice) -> np.ndarray:
    """Columns ``columns`` of the symmetric matrix whose upper triangle ``upper`` holds."""
    start, stop = columns.start, columns.stop
    return np.vstack([upper[:start, columns], _symmetric(upper[columns, columns]), upper[columns, stop:].T])


def _congruence(lam: sp.csr_matrix, inner: np.ndarray) -> np.ndarray:
    """Dense lam' inner lam for sparse lam and dense symmetric inner."""
    return (lam.T @ (lam.T @ inner).T).T


def _congruence_upper(cp: CrossProducts, lam: sp.csr_matrix, inner_upper: np.ndarray) -> np.ndarray:
    """Lambda_R' inner Lambda_R, correct at least in its upper triangle, from inner's upper triangle.
    When every block but the first is scalar, Lambda_R is diagonal and the congruence a scaling of
    rows and columns, which keeps the triangles apart (InstEval's case: no symmetrising pass)."""
    if all(k == 1 for _, k in cp.rest_blocks):
        d = lam.diagonal()
        S = inner_upper * d[:, None]
        S *= d[None, :]
        return S
    return _congruence(lam, _symmetric(inner_upper))


@dataclass(frozen=True)
class _Parts:
    """What :func:`factorize` forms on its way to L, kept for the gradient."""

    factorization: Factorization
    lam: sp.csr_matrix
    inner: np.ndarray  # by its upper triangle (see _schur_inner)


def _factorize_parts(cp: CrossProducts, theta: np.ndarray) -> _Parts:
    factors = cp.layout.factors(np.asarray(theta, dtype=float))
    L11, L11_inverse = _first_block(cp, factors[0])
    # L_R1 L_R1' = Lambda_R' RZ1 blockdiag(T1 A11_m^{-1} T1') RZ1' Lambda_R
    lam, inner = _lambda_rest(cp, factors), _schur_inner(cp, factors[0], L11_inverse)
    S = _congruence_upper(cp, lam, inner)
    S[np.diag_indices(cp.q2)] += 1.0
    # S = U'U from S's upper triangle; L_RR = U' (a transposed view, column-major for LAPACK)
    L_RR = cholesky(S, lower=False, overwrite_a=True, check_finite=False).T
    diag = np.log(np.diagonal(L_RR))
    f = Factorization(
        factors=factors,
        L11=L11,
        L11_inverse=L11_inverse,
        L_RR=L_RR,
        ldL2=2.0 * (np.log(np.diagonal(L11, axis1=1, axis2=2)).sum() + diag[: cp.q2].sum()),
        ldRX2=2.0 * diag[cp.q2 : cp.q2 + cp.p].sum(),
        pwrss=float(L_RR[-1, -1] ** 2),
    )
    return _Parts(f, lam, inner)


def factorize(cp: CrossProducts, theta: np.ndarray) -> Factorization:
    """The blocked Cholesky factor of the augmented matrix at ``theta``.

    Raises numpy.linalg.LinAlgError when X is rank deficient (the caller drops aliased columns first).
    """
    return _factorize_parts(cp, theta).factorization


class WeightedInverse(NamedTuple):
    """Q = L^{-T} diag(w) L^{-1} = dense + rows diag(excess) rows' (see :func:`_weighted_inverse`);
    ``upper`` holds the dense part's upper triangle (below it: not meaningful)."""

    upper: np.ndarray
    rows: np.ndarray
    excess: np.ndarray

    def trace_with(self, Y: np.ndarray, columns: slice) -> float:
        """sum(Q[:, columns] * Y) for Y (r, len(columns))."""
        low_rank = (self.rows.T @ Y) * self.rows[columns].T
        return float(np.sum(_symmetric_columns(self.upper, columns) * Y) + self.excess @ low_rank.sum(axis=1))


def _weighted_inverse(cp: CrossProducts, L_RR: np.ndarray, reml: bool) -> WeightedInverse:
    """Q = L^{-T} diag(w) L^{-1} (r, r), w the criterion's weight on each log L_RR[i, i]^2.

    Most weights are 1, so Q is (L L')^{-1} (LAPACK's potri, a third of forming L^{-1} and
    multiplying) plus a rank-(p + 1) correction for the X and y rows, kept as its factors: the
    gradient only takes traces with Q, and the correction's traces cost O(r) each.
    """
    r, q2, p = L_RR.shape[0], cp.q2, cp.p
    Q, info = dpotri(L_RR.T, lower=0)  # (U'U)^{-1} by its upper triangle, U = L_RR'
    if info != 0:
        raise np.linalg.LinAlgError("the Schur complement's Cholesky factor is singular")
    unit = np.zeros((r, r - q2))
    unit[np.arange(q2, r), np.arange(r - q2)] = 1.0
    excess = np.concatenate([np.full(p, 0.0 if reml else -1.0), [(cp.n - p if reml else cp.n) - 1.0]])
    rows = solve_triangular(L_RR, unit, lower=True, trans="T", check_finite=False)  # (row q2 + j of L^{-1})'
    return WeightedInverse(Q, rows, excess)


def _paired(cp: CrossProducts, lam: sp.csr_matrix, Q: WeightedInverse) -> np.ndarray:
    """(M1 k1 k1,) c with c . vec(W) = sum(P * C(W)), P = Lambda_R Q Lambda_R' and C(W) = RZ1
    blockdiag(W_m) RZ1' (see :func:`gradient`)."""
    r = lam.shape[0]
    if all(k == 1 for _, k in cp.rest_blocks):  # a diagonal Lambda_R keeps the triangles apart
        d = lam.diagonal()
        P = Q.upper * d[:, None]
        P *= d[None, :]
    else:
        P = _congruence(lam.T.tocsr(), _symmetric(Q.upper))
    # pairs holds C's upper triangle (i <= j), so only P's is read: its entries above the diagonal count twice
    P *= 2.0
    P.flat[:: r + 1] *= 0.5
    paired = cp.pairs.T @ P.ravel()
    # each rank-one part u u' (u = Lambda_R rows_s) adds u' C(W) u = sum_m v_m' W_m v_m, v = RZ1' u
    m1, k1 = cp.D.shape[:2]
    v = (cp.RZ1.T @ (lam @ Q.rows)).reshape(m1, k1, -1)
    return paired + np.einsum("mas,mbs,s->mab", v, v, Q.excess).ravel()


def _first_block_gradient(cp: CrossProducts, f: Factorization, dT1: np.ndarray, paired: np.ndarray) -> float:
    """One block-0 tangent's derivative: d(log|A11|) + sum(Q * dS) with dS = -Lambda_R' RZ1 blockdiag(dW_sym)
    RZ1' Lambda_R, the trace taken as paired . dW_sym (paired = pairs' P, see :func:`gradient`)."""
    T1, L11_inverse = f.factors[0], f.L11_inverse
    half = dT1.T[None] @ cp.D @ T1[None]
    X11 = L11_inverse @ (half + half.transpose(0, 2, 1)) @ L11_inverse.transpose(0, 2, 1)
    first = float(np.einsum("mii->", X11))
    phi = np.tril(X11)
    phi[:, np.arange(len(T1)), np.arange(len(T1))] *= 0.5
    dL11_inverse = -phi @ L11_inverse  # -L^{-1} dL L^{-1} with dL = L phi
    TL = T1[None] @ L11_inverse.transpose(0, 2, 1)
    dTL = dT1[None] @ L11_inverse.transpose(0, 2, 1) + T1[None] @ dL11_inverse.transpose(0, 2, 1)
    dW = dTL @ TL.transpose(0, 2, 1)
    return first - float(paired @ (dW + dW.transpose(0, 2, 1)).ravel())


def gradient(cp: CrossProducts, theta: np.ndarray, reml: bool) -> np.ndarray:
    """The exact gradient of :func:`objective` with respect to theta, (n_theta,).

    Forward-mode differentiation of :func:`factorize`, one tangent per theta entry: for a Cholesky
    factor L of A, d log L_ii = (L^{-1} dA L^{-T})_ii / 2 and dL = L Phi(L^{-1} dA L^{-T}) (Phi: the
    lower triangle, diagonal halved). The weighted sum of the Schur complement's diagonal terms is
    one trace, sum(Q * dS), with Q formed once. For the first block, dS = -Lambda_R' C Lambda_R with
    C = RZ1 blockdiag(dW) RZ1' linear in dW through CrossProducts.pairs, so the trace is (pairs' P) . dW with
    P = Lambda_R Q Lambda_R' formed once: each tangent then costs a per-level product, and the whole
    gradient about two factorisations, whatever the number of theta entries. Unlike central
    differences of the objective, whose rounding noise (~1e-12 relative) over steps of ~1e-5 swamps
    the gradient near the optimum, this is exact to rounding, so the optimum is located to ~1e-12
    (:func:`polish`).
    """
    return _gradient(cp, _factorize_parts(cp, theta), theta, reml)


def value_and_gradient(cp: CrossProducts, theta: np.ndarray, reml: bool) -> tuple[float, np.ndarray]:
    """(:func:`objective`, :func:`gradient`) at theta from one factorisation."""
    parts = _factorize_parts(cp, theta)
    value = profiled_deviance(parts.factorization, cp.n, cp.p, reml, cp.log_weights)
    return value, _gradient(cp, parts, theta, reml)


def _gradient(cp: CrossProducts, parts: _Parts, theta: np.ndarray, reml: bool) -> np.ndarray:
    f, lam = parts.factorization, parts.lam
    Q = _weighted_inverse(cp, f.L_RR, reml)
    paired = _paired(cp, lam, Q)
    starts = np.cumsum([0] + [m * k for m, k in cp.rest_blocks])
    grad = np.empty(cp.layout.n_theta)
    for index, (block, dT) in enumerate(cp.layout.tangents(theta)):
        if block == 0:
            grad[index] = _first_block_gradient(cp, f, dT, paired)
            continue
        # dS = half + half' with half = Lambda_R' inner dLambda_R, nonzero only in this block's columns
        m, _ = cp.rest_blocks[block - 1]
        columns = slice(starts[block - 1], starts[block])
        dlam = sp.kron(sp.identity(m), dT, format="csr")
        inner_dlam = (dlam.T @ _symmetric_columns(parts.inner, columns).T).T  # inner[:, columns] dLambda
        grad[index] = 2.0 * Q.trace_with(lam.T @ inner_dlam, columns)
    return grad


def profiled_deviance(f: Factorization, n: int, p: int, reml: bool, log_weights: float = 0.0) -> float:
    """-2 log-likelihood (ML) or the REML criterion, with beta and sigma profiled out; with precision
    weights less sum(log w) (a row of weight w has residual variance sigma^2 / w)."""
    if reml:
        dof = n - p
        return f.ldL2 + f.ldRX2 + dof * (1.0 + LOG_2PI + np.log(f.pwrss / dof)) - log_weights
    return f.ldL2 + n * (1.0 + LOG_2PI + np.log(f.pwrss / n)) - log_weights


def objective(cp: CrossProducts, theta: np.ndarray, reml: bool) -> float:
    return profiled_deviance(factorize(cp, theta), cp.n, cp.p, reml, cp.log_weights)


@dataclass(frozen=True)
class Solution:
    """Estimates at theta: beta (p,), sigma, vcov (p, p), and per block in lme4 order the
    conditional modes b (M, k) and their conditional SDs (M, k)."""

    beta: np.ndarray
    sigma: float
    vcov: np.ndarray
    modes: list[np.ndarray]
    mode_sds: list[np.ndarray]


def coupling_block(cp: CrossProducts, f: Factorization) -> np.ndarray:
    """Dense (r, q1) L_R1 = Lambda_R' RZ1 Lambda_1 L11^{-T}."""
    T1 = f.factors[0]
    right = _block_diagonal((T1[None] @ f.L11_inverse.transpose(0, 2, 1)).copy())
    return (_lambda_rest(cp, f.factors).T @ (cp.RZ1 @ right)).toarray()


def solve(cp: CrossProducts, f: Factorization, reml: bool) -> Solution:
    q2, p = cp.q2, cp.p
    m1, k1 = cp.D.shape[:2]
    L_RR = f.L_RR
    L_X = L_RR[q2 : q2 + p, q2 : q2 + p]
    beta = solve_triangular(L_X.T, L_RR[-1, q2 : q2 + p], lower=False) if p else np.zeros(0)
    dense_R1 = coupling_block(cp, f)
    c1 = dense_R1[-1] - beta @ dense_R1[q2 : q2 + p]
    c2 = L_RR[-1, :q2] - beta @ L_RR[q2 : q2 + p, :q2]
    L22 = L_RR[:q2, :q2]
    u2 = solve_triangular(L22.T, c2, lower=False) if q2 else np.zeros(0)
    v = (c1 - dense_R1[:q2].T @ u2).reshape(m1, k1)
    u1 = np.einsum("mji,mj->mi", f.L11_inverse, v)  # L11^{-T} v, level by level
    sigma2 = f.pwrss / (cp.n - p if reml else cp.n)
    vcov = sigma2 * np.linalg.inv(L_X @ L_X.T) if p else np.zeros((0, 0))

    # Conditional covariance of u: sigma^2 (L_Z L_Z')^{-1}; its diagonal blocks level by level.
    # W = L22^{-1} dense_R1[:q2] blockdiag(L11^{-1}), the block diagonal applied level by level
    W = np.einsum("qmi,mij->qmj", dense_R1[:q2].reshape(q2, m1, k1), f.L11_inverse).reshape(q2, m1 * k1)
    W = solve_triangular(L22, W, lower=True) if q2 else W
    Wm = W.reshape(q2, m1, k1)
    cov_u1 = np.einsum("mji,mjl->mil", f.L11_inverse, f.L11_inverse) + np.einsum("qmi,qml->mil", Wm, Wm)
    blocks_u, blocks_cov = [u1], [cov_u1]
    if q2:
        L22_inverse = solve_triangular(L22, np.eye(q2), lower=True)
        start = 0
        for m, k in cp.rest_blocks:
            cols = L22_inverse[:, start : start + m * k].reshape(q2, m, k)
            blocks_u.append(u2[start : start + m * k].reshape(m, k))
            blocks_cov.append(np.einsum("qmi,qml->mil", cols, cols))
            start += m * k
    modes, sds = [], []
    for T, u, cov in zip(f.factors, blocks_u, blocks_cov):
        modes.append(u @ T.T)
        sds.append(np.sqrt(sigma2 * np.einsum("ij,mjl,il->mi", T, cov, T)))
    return Solution(beta=beta, sigma=float(np.sqrt(sigma2)), vcov=vcov, modes=modes, mode_sds=sds)


@dataclass(frozen=True)
class LmmResult:
    """A finished ML/REML fit: the data's cross-products, the factor and estimates at the optimum."""

    reml: bool
    cross: CrossProducts
    factorization: Factorization
    solution: Solution
    optimizer: OptimizerSummary
    fixed_names: tuple[str, ...]
    dropped: tuple[str, ...]
    # theta in the units it was optimised in (columns rescaled by column_scales): singularity is judged
    # there, since a slope on a predictor in the 1e-7s has a theta of that size without being singular
    scaled_theta: np.ndarray | None = None

    @property
    def criterion(self) -> float:
        return profiled_deviance(self.factorization, self.cross.n, self.cross.p, self.reml, self.cross.log_weights)

    @property
    def ml_deviance(self) -> float:
        """The ML deviance at this theta (lme4's ``deviance(fit, REML = FALSE)`` for a REML fit)."""
        return profiled_deviance(self.factorization, self.cross.n, self.cross.p, False, self.cross.log_weights)


def check_identifiable(design: Design, allow_n: bool) -> None:
    """lme4's checks of the random-effect dimensions (``check.nobs.vs.nlev``, ``check.nobs.vs.nRE``).

    Each grouping factor needs fewer levels than observations, and each term fewer random effects
    (levels x terms) than observations (``allow_n``: at most as many, as glmer allows for
    observation-level effects); otherwise the random effects and the residual variance cannot be told apart.
    A structured block (ar1, cs) is exempt from the second, as in glmmTMB: its few parameters are
    identified through its correlations, an effect per observation included.
    """
    n = design.nobs
    for block in design.blocks:
        q = block.n_levels * block.n_terms
        if block.n_levels > n or (not allow_n and block.n_levels >= n):
            raise BayesmixError(
                f"The grouping factor '{block.group}' has {block.n_levels} levels for {n} observations; an exact "
                f"fit needs fewer levels than observations (lme4's rule): the random effects of '{block.group}' and "
                "the residual variance cannot be told apart. Remove the term, group more coarsely, or use "
                "sample(), whose priors make the model estimable."
            )
        structured = block.covariance.kind != "us"  # a few parameters: told apart from sigma by their structure
        if not structured and (q > n or (not allow_n and q >= n)):
            raise BayesmixError(
                f"The term ({' + '.join(block.terms)} | {block.group}) has {q} random effects "
                f"({block.n_levels} levels x {block.n_terms} terms) for {n} observations; an exact fit needs fewer "
                "(lme4's rule): the random-effects parameters and the residual variance are unidentifiable. "
                "Use fewer terms left of '|' (e.g. (1 | g)), or sample()."
            )


def _check_dense_parts(design: Design, p: int) -> None:
    """The dense parts of the exact engine: the r x r Schur complement of the non-first blocks, the
    fixed effects and y (r = q2 + p + 1), and in :func:`solve` the dense r x q1 coupling block."""
    order = lme4_order(design.blocks)
    first = design.blocks[order[0]]
    q1 = first.n_levels * first.n_terms
    q2 = sum(design.blocks[i].n_levels * design.blocks[i].n_terms for i in order[1:])
    r = q2 + p + 1
    fix = (
        f"Its size grows with the random effects of all blocks but the largest ({q2:,}) and the {p} fixed-effect "
        "columns; use sample() (NUTS) for this model, or fewer levels in the crossed grouping factors."
    )
    memory.check("The exact fit's dense Schur complement (r x r, r = other blocks' effects + p + 1)", (r, r), fix)
    memory.check(f"The exact fit's coupling block (r x q1, q1 = {first.group}'s effects)", (r, q1), fix)


def fit_lmm(design: Design, reml: bool, start: np.ndarray | None = None) -> LmmResult:
    """Optimise the profiled deviance (ML) or REML criterion over theta (from ``start``, lme4's
    start where None: a refit of similar data, the bootstrap's, starts at the fit's theta).

    ``design``: any design of the protocol (its rows in memory, or only their summed cross-products
    from a Dask DataFrame): the identified fixed-effect columns, the residual check and the
    cross-products come from it. Raises BayesmixError for models lme4 refuses (see
    :func:`check_identifiable`), for a response the fixed effects reproduce exactly, and for dense
    parts above the memory budget.
    """
    check_identifiable(design, allow_n=False)
    columns, kept, dropped = design.fixed_columns()
    design.check_residual(columns)
    _check_dense_parts(design, len(columns))
    order = lme4_order(design.blocks)
    blocks = [design.blocks[i] for i in order]
    covariances = [b.covariance for b in blocks]
    raw = design.cross_products(columns)
    cp = assemble_cross_products(raw, order, covariances, [b.n_levels for b in blocks[1:]], len(columns))
    result = optimise(cp, reml, kept, dropped, start)
    return _residual_boundary(result)


RESIDUAL_PROBE = 100.0  # theta's scale entries times this: a start with the residual SD a hundredth of the fit's


def _residual_boundary(result: LmmResult) -> LmmResult:
    """A structured block with a variance per term (cs) over one effect per observation can absorb
    the residual variance: the criterion may keep falling as sigma -> 0, which profiled theta (T
    relative to sigma) reaches only at infinity, so the optimiser can stop at a worse interior point
    (glmmTMB's fit ends at sigma ~ 0 there). For a model with a structured block the fit is
    restarted with sigma a hundredth of its estimate; a better end point there is kept, with a warning."""
    layout = result.cross.layout
    if all(c.kind == "us" for c in layout.covariances):
        return result
    # T's scale entries grow (every entry of an unstructured factor; a structure's SDs, not its rho)
    scaled = np.concatenate(
        [np.ones(c.n_theta, dtype=bool) if c.kind == "us" else c.is_diagonal() for c in layout.covariances]
    )
    probe = np.where(scaled, result.optimizer.x * RESIDUAL_PROBE, result.optimizer.x)
    try:
        again = optimise(result.cross, result.reml, result.fixed_names, result.dropped, start=probe)
    except (BayesmixError, np.linalg.LinAlgError):
        return result
    if again.criterion >= result.criterion - 1e-6 * max(1.0, abs(result.criterion)):
        return result
    warn(
        "The residual SD and the structured block's variances are not told apart here: the "
        f"{'REML criterion' if result.reml else 'deviance'} keeps falling as sigma goes to 0 (the block absorbs "
        f"the residual variance; glmmTMB's fit ends at sigma ~ 0); reported: the better end point, sigma = "
        f"{again.solution.sigma:.3g}. Use a structure with one variance (ar1), fewer terms per block, or "
        "sample() with its priors.",
        SingularFitWarning,
    )
    return again


def _secant_update(H: np.ndarray, chol: np.ndarray, s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BFGS's update of the Hessian H (and its Cholesky factor) from a step s and the gradient's change
    y: Newton with it converges superlinearly, where a fixed Hessian (the chord method) gains a
    constant factor per step. Kept as it was when the update would lose positive definiteness."""
    curvature, Hs = float(y @ s), H @ s
    if curvature <= 0.0 or float(s @ Hs) <= 0.0:
        return H, chol
    updated = H + np.outer(y, y) / curvature - np.outer(Hs, Hs) / float(s @ Hs)
    try:
        return updated, cholesky(updated, lower=True)
    except np.linalg.LinAlgError:
        return H, chol


class Polished(NamedTuple):
    """:func:`polish`'s point, whether Newton converged, and the objective and full exact gradient there."""

    theta: np.ndarray
    converged: bool
    value: float
    gradient: np.ndarray


def polish(cp: CrossProducts, theta: np.ndarray, reml: bool, lower: np.ndarray) -> Polished:
    """Newton's method on the exact :func:`gradient` from the optimiser's ``theta``.

    BOBYQA compares objective values, which are flat to their rounding noise over theta moves of
    ~1e-5, so it stops anywhere in that region (sums of the same data in another order stop it
    elsewhere). The gradient has no such floor: its zero is located to ~1e-12. Entries at their
    lower bound (singular fits) stay there. The Hessian comes once from central differences of the
    gradient (chord method: its error only slows convergence), forward differences (one gradient per
    free entry). The Newton point is kept only if it
    stays feasible, has a smaller gradient, and does not raise the objective beyond its rounding.
    """
    start = Polished(theta, False, *value_and_gradient(cp, theta, reml))
    free = theta > lower
    if not free.any():
        return start
    g = start.gradient[free]
    steps = POLISH_STEP * np.maximum(1.0, np.abs(theta[free]))
    H = np.empty((len(g), len(g)))
    for i, (position, h) in enumerate(zip(np.flatnonzero(free), steps)):
        moved = theta.copy()
        moved[position] += h
        H[:, i] = (gradient(cp, moved, reml)[free] - g) / h
    H = 0.5 * (H + H.T)
    try:
        chol = cholesky(H, lower=True)
    except np.linalg.LinAlgError:  # not a minimum of the smooth criterion here: keep BOBYQA's point
        return start
    best = start
    for _ in range(POLISH_ITERATIONS):
        step = solve_triangular(chol.T, solve_triangular(chol, g, lower=True), lower=False)
        candidate = best.theta.copy()
        candidate[free] -= step
        if np.any(candidate[free] <= lower[free]):
            break
        value, full = value_and_gradient(cp, candidate, reml)
        g = full[free]
        if np.max(np.abs(g)) >= np.max(np.abs(best.gradient[free])):
            best = best._replace(converged=True)  # at the gradient's rounding floor
            break
        done = np.max(np.abs(step)) <= POLISH_TOLERANCE * max(1.0, np.max(np.abs(candidate)))
        H, chol = _secant_update(H, chol, -step, g - best.gradient[free])
        best = Polished(candidate, bool(done), value, full)
        if done:
            break
    if best.value > start.value + POLISH_RISE * max(1.0, abs(start.value)):
        return start
    return best


@dataclass(frozen=True)
class ColumnScales:
    """Powers of two the columns of Z (per block, per term: (k,) in lme4 order) and X (p,) are divided by."""

    terms: tuple[np.ndarray, ...]
    fixed: np.ndarray

    def trivial(self) -> bool:
        return all(np.all(s == 1.0) for s in self.terms) and bool(np.all(self.fixed == 1.0))

    def rest_columns(self, cp: CrossProducts) -> np.ndarray:
        """The (r,) scales of R = [Z_2 ... Z_B, X, y], level-major within each block."""
        parts = [np.tile(s, m) for (m, _), s in zip(cp.rest_blocks, self.terms[1:])]
        return np.concatenate(parts + [self.fixed, [1.0]])


def column_scales(cp: CrossProducts) -> ColumnScales:
    """Columns whose root mean square lies outside [2^-SCALE_EXPONENT, 2^SCALE_EXPONENT] are divided by
    the nearest power of two (exact in floating point, so every other column is left bit for bit).

    A predictor in the 1e8s beside an intercept makes the augmented matrix's Cholesky factor lose
    every digit; lme4 warns and often fails there. Rescaling Z's columns rescales theta, X's the
    fixed effects, and the fit is transformed back exactly (:func:`optimise`).
    """
    n = cp.n

    def power_of_two(mean_square):
        rms = np.sqrt(np.asarray(mean_square, dtype=float) / n)
        exponent = np.where(rms > 0, np.round(np.log2(np.where(rms > 0, rms, 1.0))), 0.0)
        return np.where(np.abs(exponent) > SCALE_EXPONENT, 2.0**exponent, 1.0)

    terms = [power_of_two(np.einsum("mtt->t", cp.D))]
    diagonal, start = np.diagonal(cp.RR), 0
    for m, k in cp.rest_blocks:
        terms.append(power_of_two(diagonal[start : start + m * k].reshape(m, k).sum(axis=0)))
        start += m * k
    # a structured block's factor keeps its form only under one scale for all its terms: left as it is
    terms = [t if c.kind == "us" else np.ones_like(t) for t, c in zip(terms, cp.layout.covariances)]
    return ColumnScales(tuple(terms), power_of_two(diagonal[cp.q2 : cp.q2 + cp.p]))


def _rescaled(cp: CrossProducts, scales: ColumnScales) -> CrossProducts:
    """The cross-products of [Z S_Z^{-1}, X S_X^{-1}, y]."""
    s1 = scales.terms[0]
    r = scales.rest_columns(cp)
    m1, k1 = cp.D.shape[:2]
    RZ1 = sp.diags(1.0 / r) @ cp.RZ1 @ sp.diags(np.tile(1.0 / s1, m1))
    RZ1 = sp.csc_matrix(RZ1)
    RZ1.sort_indices()
    return replace(
        cp,
        D=cp.D / np.outer(s1, s1)[None],
        RZ1=RZ1.tocsr(),
        RR=cp.RR / np.outer(r, r),
        pairs=_level_pairs(RZ1, k1),
    )


def _unscaled(result: LmmResult, cp: CrossProducts, scales: ColumnScales) -> LmmResult:
    """``result`` of the rescaled problem in the original units: T = S^{-1} T' per block, beta =
    beta' / s_X, b = b' / s per term; REML's log|R_X|^2 gains 2 sum(log s_X)."""
    f, sol, opt = result.factorization, result.solution, result.optimizer
    factors = [T / s[:, None] for T, s in zip(f.factors, scales.terms)]
    shift = 2.0 * float(np.sum(np.log(scales.fixed)))
    # each theta entry of an unstructured T's row i scales with s_i: read the scales off a factor
    # holding s_i in row i; a structured block is left unscaled (column_scales), its entries by 1
    theta_scales = np.concatenate(
        [
            c.theta(np.repeat(s[:, None], len(s), axis=1)) if c.kind == "us" else np.ones(c.n_theta)
            for c, s in zip(cp.layout.covariances, scales.terms)
        ]
    )
    factorization = replace(f, factors=factors, ldRX2=f.ldRX2 + shift)
    solution = replace(
        sol,
        beta=sol.beta / scales.fixed,
        vcov=sol.vcov / np.outer(scales.fixed, scales.fixed),
        modes=[b / s[None] for b, s in zip(sol.modes, scales.terms)],
        mode_sds=[sd / s[None] for sd, s in zip(sol.mode_sds, scales.terms)],
    )
    optimizer = replace(
        opt,
        x=cp.layout.theta(factors),
        objective=opt.objective + (shift if result.reml else 0.0),
        gradient=opt.gradient * theta_scales,  # theta' = s_i theta entrywise (row i of T)
    )
    return replace(
        result, cross=cp, factorization=factorization, solution=solution, optimizer=optimizer, scaled_theta=opt.x
    )


def optimise(
    cp: CrossProducts, reml: bool, kept: tuple[str, ...], dropped: tuple[str, ...], start: np.ndarray | None = None
) -> LmmResult:
    """The ML/REML fit from the data's cross-products (fixed-effect columns ``kept``), in columns
    rescaled where their scale is extreme (:func:`column_scales`; a ``start`` is then not used)."""
    scales = column_scales(cp)
    if scales.trivial():
        return _optimise(cp, reml, kept, dropped, start)
    return _unscaled(_optimise(_rescaled(cp, scales), reml, kept, dropped), cp, scales)


# BOBYQA's last digits cost a third of its evaluations; Newton on the exact gradient (polish) takes
# the optimum from this tolerance to the gradient's zero in a few steps
BOBYQA_FTOL = 1e-8


def _optimise(
    cp: CrossProducts, reml: bool, kept: tuple[str, ...], dropped: tuple[str, ...], start: np.ndarray | None = None
) -> LmmResult:
    """BOBYQA, as lme4, then Newton on the exact gradient (:func:`polish`)."""
    lower = cp.layout.lower()
    start = cp.layout.start() if start is None else np.maximum(np.asarray(start, dtype=float), lower)

    def safe_objective(theta):
        try:
            return objective(cp, theta, reml)
        except np.linalg.LinAlgError:  # not positive definite at an extreme theta: the optimiser steps back
            return np.inf

    # judged on the exact gradient after the polish, not on BOBYQA's central differences
    summary = minimize_bounded(safe_objective, start, lower, ftol_rel=BOBYQA_FTOL, judge=False)
    try:
        polished = polish(cp, summary.x, reml, lower)
        f = factorize(cp, polished.theta)
    except np.linalg.LinAlgError:
        raise BayesmixError(
            "The exact fit failed numerically: the cross-product matrix is not positive definite at the optimum "
            f"(theta = {np.round(summary.x, 4).tolist()}). Rescale the predictors and the response (e.g. to unit "
            "SD), or use sample()."
        ) from None
    exact = projected(polished.gradient, polished.theta, lower)
    small = np.max(np.abs(exact), initial=0.0) < max(
        GRADIENT_TOLERANCE, RELATIVE_GRADIENT_TOLERANCE * abs(polished.value)
    )
    summary = replace(
        summary,
        x=polished.theta,
        objective=polished.value,
        gradient=exact,
        converged=bool(small and (summary.converged or polished.converged)),
    )
    return LmmResult(reml, cp, f, solve(cp, f, reml), summary, tuple(kept), tuple(dropped))
