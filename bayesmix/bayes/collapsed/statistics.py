"""The collapsed models' data: cross-products read once from the rows (or summed over a Dask
design's partitions), and what follows from them alone.

One block: :class:`LevelStats`, per level Z_m'Z_m, Z_m'X and Z_m'y, with X'X, X'y and y'y. Several
blocks: :class:`CrossedStats` in lme4's block order; :class:`CrossedArrays`, what the partially
collapsed likelihood reads (which blocks join beta, beta's Normal priors folded in); and the
directions of a sampled block's effects that mimic the columns integrated out
(:func:`confounded_directions`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from bayesmix.bayes.priors import Prior
from bayesmix.design.crossprod import lme4_order


@dataclass(frozen=True)
class LevelStats:
    """Per-level cross-products of one block: D (M, k, k), ZX (M, k, p), Zy (M, k); and XX, Xy, yy, n."""

    D: np.ndarray
    ZX: np.ndarray
    Zy: np.ndarray
    XX: np.ndarray
    Xy: np.ndarray
    yy: float
    n: int


def level_stats(design) -> LevelStats:
    """The per-level statistics, read off the design's cross-products of [Z X y] (computed here for
    rows in memory; summed over partitions for a design built from a Dask DataFrame)."""
    (block,) = design.blocks
    raw = design.cross_products()
    M, k, p = block.n_levels, block.n_terms, len(design.fixed_names)
    RZ = raw.RZ1.toarray()  # (p + 1, M k): rows X'Z then y'Z, level-major columns
    return LevelStats(
        D=raw.D,
        ZX=RZ[:p].reshape(p, M, k).transpose(1, 2, 0),
        Zy=RZ[p].reshape(M, k),
        XX=raw.RR[:p, :p],
        Xy=raw.RR[:p, p],
        yy=float(raw.RR[p, p]),
        n=raw.n,
    )


# one-term blocks with at most this many levels are integrated out with beta (:func:`joins_beta`):
# sampled, a small block trades against the large blocks it is confounded with (InstEval-shaped:
# instructors nested in departments against the 28 department x service effects, deep trees on
# every draw; docs/performance.md)
JOIN_MAX = 50


@dataclass(frozen=True)
class CrossedStats:
    """Cross-products of a design with several blocks, blocks in lme4 order (``order``: design
    indices, the collapsed block first): D (M1, k1, k1) per-level Z1'Z1; RZ1 (r, M1 k1) = R'Z1 and
    RR (r, r) = R'R with R = [Z_2 ... Z_B, X, y] (sparse); n rows."""

    order: tuple[int, ...]
    D: np.ndarray
    RZ1: sp.csr_matrix
    RR: sp.csr_matrix
    n: int


def crossed_stats(design) -> CrossedStats:
    """:class:`CrossedStats` from the rows (sparse products, never a dense n x levels matrix) or, for a
    design built from a Dask DataFrame, from its summed cross-products (the same layout)."""
    raw = design.cross_products(dense=False)
    return CrossedStats(tuple(lme4_order(design.blocks)), raw.D, sp.csr_matrix(raw.RZ1), sp.csr_matrix(raw.RR), raw.n)


def normal_fixed_priors(design, priors: dict[str, Prior]) -> tuple[np.ndarray, np.ndarray] | None:
    """(means, SDs) of the fixed effects when every prior is an independent Normal (so beta can be
    integrated out exactly); None otherwise."""
    mu, sd = [], []
    for name in design.fixed_names:
        prior = priors[name]
        if prior.dist != "Normal" or set(prior.params) - {"mu", "sigma"}:
            return None
        if any(np.size(value) != 1 for value in prior.params.values()):
            return None
        mu.append(float(np.asarray(prior.params.get("mu", 0.0))))
        sd.append(float(np.asarray(prior.params.get("sigma", 1.0))))
    return np.array(mu, dtype=float), np.array(sd, dtype=float)


@dataclass(frozen=True)
class CrossedArrays:
    """What the partially collapsed likelihood reads (numpy; see :func:`build_crossed_model`).

    kappa: the effects NUTS samples, flattened level-major in ``order[1:]``'s order (the ``joined``
    blocks left out), then beta when it is not integrated out (``beta_prior`` None). G: the columns
    integrated out with block 1 as Normal "fixed" effects: X when beta is integrated out, then the
    indicator columns of the ``joined`` blocks (small one-term blocks, :data:`JOIN_MAX`: their effects
    are N(0, sd^2) given their SD, so they join beta in the Schur complement), else empty. With r = y
    - G m - Z_kappa kappa (m: G's prior means, beta's and 0 for the joined effects): Z1'r = Z1y - A
    kappa, G'r = Gy - GK kappa, r'r = yy - 2 Ky kappa + kappa' KK kappa.
    """

    order: tuple[int, ...]
    D: np.ndarray  # (M1, k1, k1)
    Z1y: np.ndarray  # (M1 k1,)
    A: sp.csr_matrix  # (M1 k1, q)
    Q: np.ndarray  # (M1, k1, g): Z1'G
    Gy: np.ndarray  # (g,)
    GK: np.ndarray  # (g, q)
    GG: np.ndarray  # (g, g)
    Ky: np.ndarray  # (q,)
    KK: sp.csr_matrix  # (q, q)
    yy: float
    n: int
    beta_prior: tuple[np.ndarray, np.ndarray] | None  # (means, SDs) of integrated-out beta
    sizes: tuple[int, ...]  # kappa's pieces: M_j k_j per sampled block (then p when beta is sampled)
    joined: tuple[str, ...] = ()  # labels of the blocks integrated out with beta, in G's order

    @functools.cached_property
    def outer_products_by_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """For a one-term block 1: :func:`_outer_products_by_rows` of Q and D, which the likelihood
        and the conditional draws both sum by (computed once)."""
        return _outer_products_by_rows(self.Q[:, 0, :], self.D[:, 0, 0])


def joins_beta(block) -> bool:
    """Whether a block other than the collapsed one is integrated out together with beta: one term
    and at most :data:`JOIN_MAX` levels (given its SD its effects are independent Normals, like
    beta's, and the Schur complement stays small)."""
    return block.n_terms == 1 and block.n_levels <= JOIN_MAX


def _sampled_and_joined(design, order, joined: tuple[str, ...]) -> tuple[list, list]:
    """The blocks after block 1 (lme4 ``order``): those NUTS samples and those (labels ``joined``)
    integrated out with beta, each in that order."""
    rest = [design.blocks[i] for i in order[1:]]
    return [b for b in rest if b.label not in joined], [b for b in rest if b.label in joined]


def _effect_columns(design, order, joined: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(K, J): in R's columns (:class:`CrossedStats`), the indices of the sampled blocks' effects
    and of the ``joined`` blocks' effects."""
    rest = [design.blocks[i] for i in order[1:]]
    offsets = np.cumsum([0, *(b.n_levels * b.n_terms for b in rest)])
    columns = [(b.label in joined, np.arange(start, end)) for b, start, end in zip(rest, offsets[:-1], offsets[1:])]
    pick = lambda chosen: np.concatenate([c for j, c in columns if j == chosen] or [np.zeros(0, int)])  # noqa: E731
    return pick(False), pick(True)


def crossed_arrays(design, priors: dict[str, Prior], stats: CrossedStats | None = None) -> CrossedArrays:
    stats = crossed_stats(design) if stats is None else stats
    p = len(design.fixed_names)
    r = stats.RR.shape[0]
    q_effects = r - p - 1
    M1, k1 = stats.D.shape[0], stats.D.shape[1]
    RZ1 = stats.RZ1.tocsr()
    RR = stats.RR.tocsr()
    beta_prior = normal_fixed_priors(design, priors)
    rest = [design.blocks[i] for i in stats.order[1:]]
    joined = tuple(b.label for b in rest if beta_prior is not None and joins_beta(b))
    sampled, _ = _sampled_and_joined(design, stats.order, joined)
    K, J = _effect_columns(design, stats.order, joined)
    sizes = [b.n_levels * b.n_terms for b in sampled]
    y_col = r - 1
    if beta_prior is not None:
        m = np.concatenate([beta_prior[0], np.zeros(len(J))])
        G = np.concatenate([np.arange(q_effects, q_effects + p), J])
        RRd = lambda rows, cols: RR[rows][:, cols]  # noqa: E731
        XX = RRd(G, G).toarray()
        Xy = RRd(G, [y_col]).toarray()[:, 0]
        KX = RRd(K, G)
        Z1X = RZ1[G].T.toarray()  # (M1 k1, g)
        return CrossedArrays(
            order=stats.order,
            D=stats.D,
            Z1y=RZ1[y_col].toarray()[0] - Z1X @ m,
            A=RZ1[K].T.tocsr(),
            Q=Z1X.reshape(M1, k1, len(G)),
            Gy=Xy - XX @ m,
            GK=KX.T.toarray(),
            GG=XX,
            Ky=RRd(K, [y_col]).toarray()[:, 0] - KX @ m,
            KK=RRd(K, K).tocsr(),
            yy=float(RR[y_col, y_col] - 2 * m @ Xy + m @ XX @ m),
            n=stats.n,
            beta_prior=beta_prior,
            sizes=tuple(sizes),
            joined=joined,
        )
    K = np.arange(q_effects + p)
    return CrossedArrays(
        order=stats.order,
        D=stats.D,
        Z1y=RZ1[y_col].toarray()[0],
        A=RZ1[K].T.tocsr(),
        Q=np.zeros((M1, k1, 0)),
        Gy=np.zeros(0),
        GK=np.zeros((0, len(K))),
        GG=np.zeros((0, 0)),
        Ky=RR[K][:, [y_col]].toarray()[:, 0],
        KK=RR[K][:, K].tocsr(),
        yy=float(RR[y_col, y_col]),
        n=stats.n,
        beta_prior=None,
        sizes=tuple(sizes) + ((p,) if p else ()),
    )


def _outer_products_by_rows(Q: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values (C,), P (C, g, g)): the distinct values of D_m = Z1_m'Z1_m (the rows of level m, for an
    intercept) over the collapsed one-term block's levels and, for each, the sum of q_m q_m' over the
    levels with that value. For k1 = 1 the weight of level m in Q' diag(w) Q is w_m = t^2 / (1 +
    t^2 D_m), a function of D_m alone, so Q' diag(w) Q = sum_c w(D_c) P_c exactly: C g^2 per gradient
    instead of M g^2 (InstEval-shaped, the 28 department x service effects joined to beta: 2,972
    levels, g = 30, about 90 distinct row counts; with beta alone the matrix multiply was as cheap)."""
    values, which = np.unique(D, return_inverse=True)
    P = np.zeros((len(values), Q.shape[1], Q.shape[1]))
    np.add.at(P, which, Q[:, :, None] * Q[:, None, :])
    return values, P


def confounded_directions(design, stats: CrossedStats, joined: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """For each sampled one-term block: an orthonormal (M, c) basis of the directions of its effects
    that mimic columns integrated out with block 1, X's and the ``joined`` blocks' (the level means
    of those columns, weighted by the term: D^{-1} Z'G). With them integrated out, the likelihood
    barely sees b along these directions (the intercept absorbs the effects' mean, a level-constant
    predictor their slope, a joined block nesting the levels their means in each of its levels), so
    only the prior does; see :func:`_sampled_effects`."""
    p = len(design.fixed_names)
    RR = stats.RR.tocsr()
    q_effects = RR.shape[0] - p - 1
    G = np.concatenate([np.arange(q_effects, q_effects + p), _effect_columns(design, stats.order, joined)[1]])
    if not len(G):
        return {}
    out, start = {}, 0
    for block in (design.blocks[i] for i in stats.order[1:]):
        size = block.n_levels * block.n_terms
        if block.n_terms == 1 and block.label not in joined:
            rows = np.arange(start, start + size)
            ZX = RR[rows][:, G].toarray()
            counts = RR.diagonal()[rows]
            W = ZX / np.where(counts > 0, counts, 1.0)[:, None]
            U, singular, _ = np.linalg.svd(W, full_matrices=False)
            keep = singular > 1e-8 * max(float(singular.max(initial=0.0)), 1e-300)
            if keep.any():
                out[block.label] = U[:, keep]
        start += size
    return out
