"""Kenward and Roger's (1997) adjusted covariance and denominator df for a REML fit (pbkrtest's).

The marginal covariance of y is linear in the variance parameters gamma (each block's covariance
entries sigma^2 (T T')_ij, i >= j, then sigma^2): V = sum_r gamma_r G_r with G_r = Z D_r Z' and
D_r = I_levels kron E_ij (E_ij the symmetric unit matrix), the residual's G = I. With
Phi = (X' V^-1 X)^-1, P_r = -X' V^-1 G_r V^-1 X, Q_rs = X' V^-1 G_r V^-1 G_s V^-1 X and the
expected information of gamma (times 2) IE2_rs = tr(V^-1 G_r V^-1 G_s) - 2 tr(Phi Q_rs)
+ tr(Phi P_r Phi P_s), W = 2 IE2^-1 estimates Var(gamma_hat), and the adjusted covariance of
beta_hat is Phi + 2 Phi (sum_rs W_rs (Q_rs - P_r Phi P_s)) Phi (G is linear in gamma, so the
second-derivative term vanishes). A contrast's df and an F test's scaling follow from the same
P and W (pbkrtest's ``Lb_ddf`` and ``KRmodcomp``).

pbkrtest forms the n x n V^-1. Here every piece lives in the random effects' space: with
V = sigma^2 (I + Z Lambda Lambda' Z'), V^-k = sigma^-2k (I + Z c_k Z') where c_1 = -K,
K = Lambda (I + Lambda' Z'Z Lambda)^-1 Lambda', and c_{k+1} = c_k - K - c_k Z'Z K (Woodbury,
multiplied out), so the cross-products Z'Z, Z'X and X'X the exact engine already holds give every
trace and product. Precision weights enter as the engine's do (rows scaled by sqrt(w)): the
residual's G is then W^-1, a case pbkrtest, which ignores weights, does not cover.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.special import fdtrc

from bayesmix.errors import BayesmixError
from bayesmix.exact.lmm import CrossProducts, LmmResult
from bayesmix.exact.satterthwaite import FTest

MAX_LEVELS_COLUMNS = 6000  # the random-effect columns up to which its several dense q x q pieces stay affordable


@dataclass(frozen=True)
class KenwardRoger:
    """At a REML estimate: Phi = Var(beta_hat) unadjusted (p, p), the adjusted covariance (p, p),
    P_r (g, p, p) and W = 2 IE2^-1 (g, g), gamma ordered block by block (lme4's order, each
    block's lower triangle column-major), sigma^2 last."""

    vcov: np.ndarray
    adjusted: np.ndarray
    P: np.ndarray
    W: np.ndarray

    def contrast_df(self, L: np.ndarray) -> float:
        """KR's df of one contrast L'beta (pbkrtest's ``Lb_ddf``)."""
        return _ddf(self, np.atleast_2d(L))[0]

    def f_test(self, L: np.ndarray, beta: np.ndarray) -> FTest:
        """KR's F test of L beta = 0 (pbkrtest's ``KRmodcomp``): F from the adjusted covariance,
        scaled by KR's factor; the rank of L its numerator df."""
        L = _row_basis(np.atleast_2d(L))
        df, scaling = _ddf(self, L)
        Lb = L @ beta
        F = float(Lb @ np.linalg.solve(L @ self.adjusted @ L.T, Lb)) / L.shape[0]
        return FTest(scaling * F, L.shape[0], df, float(fdtrc(L.shape[0], df, scaling * F)), unscaled=F)


def _row_basis(L: np.ndarray, tolerance: float = 1e-10) -> np.ndarray:
    """Rows spanning L's row space, as many as its rank: KR's statistics depend on the space alone."""
    _, s, Vt = np.linalg.svd(L, full_matrices=False)
    rank = int(np.sum(s > tolerance * max(s.max(initial=0.0), 1e-300)))
    return L if rank == L.shape[0] else Vt[:rank]


def _ddf(kr: KenwardRoger, L: np.ndarray) -> tuple[float, float]:
    """(df, F scaling) of the q-row contrast L, pbkrtest's moment matching term for term."""
    Phi, q = kr.vcov, L.shape[0]
    Theta = L.T @ np.linalg.solve(L @ Phi @ L.T, L)
    U = np.einsum("ij,rjk,kl->ril", Theta @ Phi, kr.P, Phi)  # Theta Phi P_r Phi per parameter
    traces = np.einsum("rii->r", U)
    A1 = float(traces @ kr.W @ traces)
    A2 = float(np.einsum("rs,rij,sji->", kr.W, U, U))
    B = (A1 + 6.0 * A2) / (2.0 * q)
    g = ((q + 1.0) * A1 - (q + 4.0) * A2) / ((q + 2.0) * A2)
    denominator = 3.0 * q + 2.0 * (1.0 - g)
    c1, c2, c3 = g / denominator, (q - g) / denominator, (q + 2.0 - g) / denominator
    V0, V1, V2 = 1.0 + c1 * B, 1.0 - c2 * B, 1.0 - c3 * B
    V0 = 0.0 if abs(V0) < 1e-10 else V0
    ratio = (1.0 - A2 / q) / V1 if V1 != 0 else 0.0  # pbkrtest's .divZero
    rho = ratio**2 * V0 / V2 / q
    df = 4.0 + (q + 2.0) / (q * rho - 1.0)
    scaling = 1.0 if abs(df - 2.0) < 0.01 else df * (1.0 - A2 / q) / (df - 2.0)
    return float(df), float(scaling)


def kenward_roger(result: LmmResult) -> KenwardRoger:
    """The KR pieces at a REML fit's estimate."""
    if not result.reml:
        raise BayesmixError(
            "Kenward-Roger's adjustment is defined for REML fits (as in pbkrtest and lmerTest); fit with "
            "method='reml', or use ddf='satterthwaite' for an ML fit."
        )
    cp = result.cross
    S, ZX, XX = _gram(cp)
    if S.shape[0] > MAX_LEVELS_COLUMNS:
        raise BayesmixError(
            f"Kenward-Roger's adjustment needs dense matrices over the {S.shape[0]} random-effect columns "
            f"(at most {MAX_LEVELS_COLUMNS} here); use ddf='satterthwaite', which needs no such matrix."
        )
    powers = _powers(S, _lambda(cp, result.factorization.factors), 3)
    sigma2 = result.solution.sigma**2

    def zz(k):  # Z' V^-k Z
        return (S + S @ powers[k] @ S) / sigma2**k

    def zx(k):  # Z' V^-k X
        return (ZX + S @ powers[k] @ ZX) / sigma2**k

    def xx(k):  # X' V^-k X
        return (XX + ZX.T @ powers[k] @ ZX) / sigma2**k

    M, A, N, C = zz(1), zx(1), zz(2), zx(2)
    supports = _supports(cp)
    P = np.stack([-(A[a].T @ A[b]) for a, b in supports] + [-xx(2)])
    g = len(supports) + 1
    Q, trace = np.empty((g, g, cp.p, cp.p)), np.empty((g, g))
    for r, (a, b) in enumerate(supports):
        for s, (c, d) in enumerate(supports):
            Q[r, s] = A[a].T @ M[np.ix_(b, c)] @ A[d]
            trace[r, s] = np.sum(M[np.ix_(b, c)] * M[np.ix_(d, a)].T)
        Q[r, -1], Q[-1, r] = A[a].T @ C[b], C[b].T @ A[a]
        trace[r, -1] = trace[-1, r] = np.sum(N[b, a])
    Q[-1, -1] = xx(3)
    trace[-1, -1] = (cp.n + np.sum(powers[2] * S)) / sigma2**2
    return _assemble(result.solution.vcov, P, Q, trace)


def _assemble(Phi: np.ndarray, P: np.ndarray, Q: np.ndarray, trace: np.ndarray) -> KenwardRoger:
    """W and the adjusted covariance from the pieces (pbkrtest's ``vcovAdj_internal``)."""
    PhiP = np.einsum("ij,rjk->rik", Phi, P)
    IE2 = trace - 2.0 * np.einsum("ij,rsji->rs", Phi, Q) + np.einsum("rij,sji->rs", PhiP, PhiP)
    IE2 = (IE2 + IE2.T) / 2.0
    condition = np.min(np.abs(np.linalg.eigvalsh(IE2)))
    W = 2.0 * (np.linalg.inv(IE2) if condition > 1e-10 else np.linalg.pinv(IE2))
    W = (W + W.T) / 2.0
    # sum_rs W_rs (Q_rs - P_r Phi P_s): Q_rs' = Q_sr, so the double sum is symmetric as pbkrtest's
    U = np.einsum("rs,rsij->ij", W, Q) - np.einsum("rs,rij,jk,skl->il", W, P, Phi, P)
    U = (U + U.T) / 2.0
    return KenwardRoger(vcov=Phi, adjusted=Phi + 2.0 * Phi @ U @ Phi, P=P, W=W)


def _gram(cp: CrossProducts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense Z'Z (q, q), Z'X (q, p), X'X (p, p) from the engine's cross-products (columns: the
    first block's, then blocks 2..B, each level-major)."""
    q1, q2, p = cp.q1, cp.q2, cp.p
    RR = cp.RR.toarray() if hasattr(cp.RR, "toarray") else np.asarray(cp.RR)
    RZ1 = cp.RZ1.toarray()
    m1, k1 = cp.D.shape[:2]
    S = np.zeros((q1 + q2, q1 + q2))
    for m in range(m1):
        S[m * k1 : (m + 1) * k1, m * k1 : (m + 1) * k1] = cp.D[m]
    S[q1:, :q1], S[:q1, q1:] = RZ1[:q2], RZ1[:q2].T
    S[q1:, q1:] = RR[:q2, :q2]
    ZX = np.vstack([RZ1[q2 : q2 + p].T, RR[:q2, q2 : q2 + p]])
    return S, ZX, RR[q2 : q2 + p, q2 : q2 + p]


def _lambda(cp: CrossProducts, factors: list[np.ndarray]) -> np.ndarray:
    levels = [cp.D.shape[0]] + [m for m, _ in cp.rest_blocks]
    parts = [np.kron(np.eye(m), T) for m, T in zip(levels, factors)]
    q = sum(part.shape[0] for part in parts)
    out, start = np.zeros((q, q)), 0
    for part in parts:
        out[start : start + len(part), start : start + len(part)] = part
        start += len(part)
    return out


def _powers(S: np.ndarray, Lam: np.ndarray, highest: int) -> list:
    """c_k (k = 1..highest, index k) with V^-k = sigma^-2k (I + Z c_k Z')."""
    q = S.shape[0]
    K = Lam @ cho_solve(cho_factor(np.eye(q) + Lam.T @ S @ Lam), Lam.T)
    K = (K + K.T) / 2.0
    powers = [None, -K]
    for _ in range(highest - 1):
        c = powers[-1]
        powers.append(c - K - c @ S @ K)
    return powers


def _supports(cp: CrossProducts) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each covariance parameter's D_r as its nonzero positions (rows a, columns b), block by block
    in lme4 order, each block's lower triangle column-major (pbkrtest's order)."""
    levels = [cp.D.shape[0]] + [m for m, _ in cp.rest_blocks]
    out, offset = [], 0
    for m, covariance in zip(levels, cp.layout.covariances):
        if covariance.kind != "us":
            raise BayesmixError(
                f"Kenward-Roger's adjustment is implemented for unstructured covariances; this model has a "
                f"'{covariance.kind}' block. Use ddf='satterthwaite'."
            )
        k = covariance.k
        base = offset + k * np.arange(m)
        for j in range(k):
            for i in range(j, k):
                if i == j:
                    out.append((base + i, base + i))
                else:
                    out.append((np.concatenate([base + i, base + j]), np.concatenate([base + j, base + i])))
        offset += m * k
    return out
