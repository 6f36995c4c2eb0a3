"""The collapsed ("marginal") Gaussian model: random effects integrated out exactly.

For a gaussian model with one random-effect block (k terms, M levels), b_m ~ N(0, S S') with
S = diag(sd) L, and Lambda = S / sigma:

    log p(y | beta, S, sigma) = -n/2 log(2 pi sigma^2) - 1/2 sum_m log|A_m| - q(beta) / (2 sigma^2)
    A_m = Lambda' D_m Lambda + I,   c_m = Lambda'(Z_m'y - Z_m'X beta)
    q(beta) = |y - X beta|^2 - sum_m c_m' A_m^{-1} c_m

(Woodbury and the matrix determinant lemma on Var(y) = sigma^2 (I + Z Lambda Lambda' Z')). The data
enter only through per-level cross-products computed once (D_m = Z_m'Z_m, Z_m'X, Z_m'y, X'X, X'y,
y'y), so a gradient costs O(M k^3 + M k p) whatever the number of rows. NUTS samples beta, sigma and
the covariance (same priors and variable names as the non-centred model); afterwards b is drawn
from its exact conditional N(Lambda A_m^{-1} c_m, sigma^2 Lambda A_m^{-1} Lambda') for every draw.
It is the same posterior as the non-centred model (tests/test_collapsed.py compares quantiles).
That is the model for one block when beta's priors are not independent Normals; with Normal priors
(the defaults) one block goes through :func:`build_crossed_model` below with no other block, so that
beta is integrated out too and NUTS moves only the SDs, correlations and sigma.

Several blocks (crossed or nested), :func:`build_crossed_model`: partially collapsed. The block with
the most levels (lme4's first block, "block 1") is integrated out as above, level by level, and so
is beta when its priors are independent Normals N(m, diag(s^2)) (then X beta's prior is Gaussian
too, and beta is what the intercept-vs-group-mean confounding made mix slowly), and with beta every
small one-term block (at most JOIN_MAX levels: given its SD its effects are Normals like beta's; they
join X's columns in G below, with prior SD sd_block; sampled, such a block traded against the large
blocks nested in it). NUTS samples the other blocks' effects kappa (each block centred or
non-centred, :func:`crossed_choices`), the SDs, correlations and sigma. Given those, r = y - X m -
Z_kappa kappa has the Gaussian marginal
N(0, sigma^2 I + Z1 Sigma1 Z1' + X diag(s^2) X'); with T1 = S1 / sigma, T_g = diag(s) / sigma,
C_m = T1' D_m T1 + I and F_m = T1' Z1_m'X T_g (per level), the Schur complement
Sch = T_g X'X T_g + I - sum_m F_m' C_m^{-1} F_m (p x p) and e = T_g X'r - sum_m F_m' C_m^{-1} c_m:

    log p(y | kappa, S, sigma) = -n/2 log(2 pi sigma^2) - 1/2 (sum_m log|C_m| + log|Sch|)
                                 - (r'r - sum_m c_m' C_m^{-1} c_m - e' Sch^{-1} e) / (2 sigma^2)

(Woodbury with the block [Z1 X] elimination; the same formula with beta sampled has no X part).
The data enter through cross-products computed once (:class:`CrossedArrays`): Z1'r = Z1'y0 - A kappa,
X'r and r'r = y0'y0 - 2 kappa'Z_kappa'y0 + kappa' K kappa, with A = Z1'Z_kappa and K =
Z_kappa'Z_kappa sparse. A gradient costs one sparse product with A (about one nonzero per distinct
pair of levels, nearly as many as rows on InstEval-shaped data, so a segment sum over rows would
cost the same, docs/performance.md; the cross-products also work from a Dask design's summed
statistics) plus
O(M1 (k1^3 + k1 p + p^2)). After sampling, (beta, b1) is drawn from its exact joint conditional:
beta from N(m + T_g Sch^{-1} e, sigma^2 T_g Sch^{-1} T_g), then each level of block 1 given beta,
so the posterior has ``beta`` and ``re_<label>`` for every block with the non-centred model's names
and dims. tests/test_collapsed.py checks the likelihood against a dense multivariate normal
(1e-9), the conditional draws against the dense Gaussian conditional, and the posterior quantiles
against the non-centred model's. The model also records rough posterior scales (a few EM sweeps
over the blocks, :func:`rough_variances`) that numpyro starts its mass-matrix adaptation from.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import scipy.sparse as sp

from bayesmix.bayes.build import _block_effects, block_covariance, fixed_effects
from bayesmix.bayes.built import BuiltModel
from bayesmix.bayes.collapsed.draws import _draw_crossed, _draw_one_block
from bayesmix.bayes.collapsed.start import _pins, crossed_choices, initial_scales, rough_variances
from bayesmix.bayes.collapsed.statistics import (
    CrossedArrays,
    _sampled_and_joined,
    confounded_directions,
    crossed_arrays,
    crossed_stats,
    level_stats,
    normal_fixed_priors,
)
from bayesmix.bayes.names import OBS_DIM, level_dim, model_coords, term_dim
from bayesmix.bayes.priors import Prior
from bayesmix.design.encode import Design
from bayesmix.design.hilbert import approximated
from bayesmix.families import LOG_2PI, Family


def collapsible(design: Design, family: Family) -> bool:
    """Whether the collapsed model applies: gaussian, identity link, constant sigma (no dispersion
    formula), no censored rows, no block sampled through a Hilbert-space basis, at least one
    random-effect block (:func:`build_marginal` chooses how much is integrated out)."""
    gaussian = family.name == "gaussian" and family.link.name == "identity"
    constant = not getattr(design, "submodels", None) and getattr(design, "censoring", None) is None
    exact = not any(approximated(block) for block in design.blocks)  # a Hilbert-space basis is sampled
    return gaussian and constant and exact and len(design.blocks) >= 1


def build_marginal(design, family: Family, priors: dict[str, Prior]) -> BuiltModel:
    """The collapsed model of a gaussian design. One block: b and, when its priors are independent
    Normals, beta integrated out (:func:`build_crossed_model` with nothing left to sample but the
    SDs, correlations and sigma; beta is what mixed slowest on large data, the intercept against
    the group means), else b alone (:func:`build_collapsed_model`). Several blocks: partially
    collapsed. The effects integrated out are drawn by the result's post-draw step."""
    if len(design.blocks) == 1 and normal_fixed_priors(design, priors) is None:
        return build_collapsed_model(design, family, priors)
    return build_crossed_model(design, family, priors)


def build_collapsed_model(design: Design, family: Family, priors: dict[str, Prior]) -> BuiltModel:
    """The PyMC model of (beta, sigma, covariance) with b integrated out (see the module docstring);
    its post-draw step draws b (:func:`_draw_one_block`)."""
    (block,) = design.blocks
    stats = level_stats(design)
    coords = {key: value for key, value in model_coords(design).items() if key != OBS_DIM}
    with pm.Model(coords=coords) as model:
        D = pm.Data("D", stats.D)
        ZX = pm.Data("ZX", stats.ZX)
        Zy = pm.Data("Zy", stats.Zy)
        XX = pm.Data("XX", stats.XX)
        Xy = pm.Data("Xy", stats.Xy)
        yy = pm.Data("yy", stats.yy)
        beta = fixed_effects(design, priors)
        S = block_covariance(block, priors)
        sigma = priors["sigma"].variable("sigma")
        lam = S / sigma
        A = pt.einsum("ji,mjl,lk->mik", lam, D, lam) + pt.eye(block.n_terms)
        c = pt.einsum("ji,mj->mi", lam, Zy - pt.einsum("mkp,p->mk", ZX, beta))
        logdet, w2 = _logdet_and_quadratic(A, c, block.n_terms)
        rss = yy - 2 * pt.dot(beta, Xy) + pt.dot(beta, pt.dot(XX, beta))
        quad = rss - w2
        n = stats.n
        pm.Potential("marginal_loglik", -0.5 * n * (LOG_2PI + 2 * pt.log(sigma)) - 0.5 * logdet - quad / (2 * sigma**2))
    return BuiltModel(
        model,
        derived_values=block.n_levels * block.n_terms,  # re_<label>
        post_draw=functools.partial(_draw_one_block, design),
        sampler_log_likelihood=False,
    )


def _logdet_and_quadratic(A, c, k: int):
    """sum_m log|A_m| and sum_m c_m' A_m^{-1} c_m for (M, k, k) A and (M, k) c.

    k = 1 and k = 2 are written out elementwise: on the CPU a batched LAPACK call per gradient
    costs far more than these closed forms for tiny matrices (docs/performance.md); larger k use
    batched Choleskys.
    """
    if k == 1:
        a = A[:, 0, 0]
        return pt.sum(pt.log(a)), pt.sum(c[:, 0] ** 2 / a)
    if k == 2:
        l11 = pt.sqrt(A[:, 0, 0])
        l21 = A[:, 1, 0] / l11
        l22 = pt.sqrt(A[:, 1, 1] - l21**2)
        w1 = c[:, 0] / l11
        w2 = (c[:, 1] - l21 * w1) / l22
        return 2 * pt.sum(pt.log(l11) + pt.log(l22)), pt.sum(w1**2 + w2**2)
    chol = pt.linalg.cholesky(A)
    w = pt.linalg.solve_triangular(chol, c[..., None], lower=True)[..., 0]
    return 2 * pt.sum(pt.log(pt.diagonal(chol, axis1=-2, axis2=-1))), pt.sum(w**2)


# ---------------------------------------------------------------------------------------------------
# Several blocks: the partially collapsed model
# ---------------------------------------------------------------------------------------------------

DENSE_FACTOR = 40.0  # see _product


def _product(name: str, matrix: sp.spmatrix, vector):
    """``matrix @ vector`` in the graph, from the nonzeros only: the columns with many nonzeros
    (at least rows / DENSE_FACTOR) as a dense matrix product, the others as their nonzeros gathered by
    column and added up by row. On XLA's CPU backend a gathered-and-added nonzero (forward and
    gradient) costs about as much as DENSE_FACTOR dense entries, so this is the cheaper split; it
    never builds the dense rows x columns matrix of a large sparse block."""
    matrix = sp.csc_matrix(matrix)
    matrix.sum_duplicates()
    rows, cols = matrix.shape
    heavy = np.flatnonzero(np.diff(matrix.indptr) * DENSE_FACTOR >= max(rows, 1))
    light = np.setdiff1d(np.arange(cols), heavy)
    out = None
    if len(heavy):
        dense = pm.Data(f"{name}_dense", matrix[:, heavy].toarray())
        out = pt.dot(dense, vector if len(heavy) == cols else vector[heavy])
    if len(light) and matrix[:, light].nnz:
        coo = sp.csr_matrix(matrix[:, light])
        coo.sort_indices()
        coo = coo.tocoo()
        row = pm.Data(f"{name}_row", coo.row.astype(np.int64))
        col = pm.Data(f"{name}_col", light[coo.col].astype(np.int64))
        value = pm.Data(f"{name}_value", coo.data)
        sparse = pt.inc_subtensor(pt.zeros(rows)[row], value * vector[col])
        out = sparse if out is None else out + sparse
    return pt.zeros(rows) if out is None else out


def _whiten(A, rhs, k: int):
    """(L^{-1} rhs, sum_m log|A_m|) for A_m = L_m L_m' (M, k, k) and rhs (M, k, q); closed forms
    for k = 1, 2 as in :func:`_logdet_and_quadratic`."""
    if k == 1:
        root = pt.sqrt(A[:, 0, 0])
        return rhs / root[:, None, None], 2 * pt.sum(pt.log(root))
    if k == 2:
        l11 = pt.sqrt(A[:, 0, 0])
        l21 = A[:, 1, 0] / l11
        l22 = pt.sqrt(A[:, 1, 1] - l21**2)
        w1 = rhs[:, 0] / l11[:, None]
        w2 = (rhs[:, 1] - l21[:, None] * w1) / l22[:, None]
        return pt.stack([w1, w2], axis=1), 2 * pt.sum(pt.log(l11) + pt.log(l22))
    chol = pt.linalg.cholesky(A)
    return (
        pt.linalg.solve_triangular(chol, rhs, lower=True),
        2 * pt.sum(pt.log(pt.diagonal(chol, axis1=-2, axis2=-1))),
    )


def _sampled_effects(
    block, priors: dict[str, Prior], choice: str, confounded: np.ndarray | None, pin: np.ndarray | None = None
):
    """The (M, k) effects of a block NUTS samples. Centred one-term blocks with directions confounded
    with X (:func:`confounded_directions`, orthonormal basis Q, c columns) are centred off those
    directions and non-centred along them:

        b = u - Q Q'u + sd Q w,   w ~ N(0, I_c),
        u: (I - QQ')u ~ N(0, sd^2 (I - QQ')) and, independently, Q'u ~ N(0, diag(pin^2))

    which is exactly b ~ N(0, sd^2 I_M): the two parts of b are independent with covariances
    sd^2 (I - QQ') and sd^2 QQ'. Along Q the posterior is the prior's, where the non-centred form
    samples well; elsewhere the data dominate, where the centred form does. Q'u does not enter b:
    its N(0, pin^2) (``pin``: constants, about the scale NUTS's mass matrix starts with along each
    column of Q) only keeps it from being a long direction NUTS must cross (with sd^2 instead it was
    several times longer than the levels' posterior scales, and the trees deeper; docs/performance.md). Free variables
    ``z_<label>`` (u) and ``z_<label>_mean`` (w); ``re_<label>`` = b."""
    if choice != "centered" or confounded is None:
        return _block_effects(block, priors, choice)
    label, dims = block.label, (level_dim(block), term_dim(block))
    sd = block_covariance(block, priors)[0, 0]
    u = pm.Normal(f"z_{label}", 0.0, sd, dims=dims)[:, 0]
    w = pm.Normal(f"z_{label}_mean", 0.0, 1.0, shape=confounded.shape[1])
    Q = pt.as_tensor(confounded)
    along = pt.dot(Q.T, u)
    if pin is not None:  # replace N(0, sd^2) along Q by N(0, pin^2): the density of u given above
        c = confounded.shape[1]
        pm.Potential(
            f"z_{label}_pin", 0.5 * pt.sum(along**2) / sd**2 + c * pt.log(sd) - 0.5 * pt.sum(along**2 / pin**2)
        )
    b = u - pt.dot(Q, along) + sd * pt.dot(Q, w)
    return pm.Deterministic(f"re_{label}", b[:, None], dims=dims)


@dataclass(frozen=True)
class CrossedPlan:
    """What :func:`build_crossed_model` decides before it writes the graph: the likelihood's arrays,
    the collapsed block (``first``), the blocks NUTS samples (``kept``) and those integrated out with
    beta (``joined``), each sampled block's parameterisation (``choices``), the confounded
    directions and their pins (:func:`_sampled_effects`), and ``rough()``: the rough variances
    (:func:`rough_variances`; None without rows), computed at most once."""

    arrays: CrossedArrays
    first: object
    kept: list
    joined: list
    choices: dict[str, str]
    confounded: dict[str, np.ndarray]
    pins: dict[str, np.ndarray]
    rough: Callable[[], tuple | None]


def crossed_plan(design, priors: dict[str, Prior]) -> CrossedPlan:
    """:class:`CrossedPlan` of a design with its priors."""
    stats = crossed_stats(design)
    arrays = crossed_arrays(design, priors, stats)
    kept, joined = _sampled_and_joined(design, stats.order, arrays.joined)
    # the rough variances read every row, the costliest part of building a large model; with one
    # block they serve only NUTS's starting metric, which the Laplace start usually replaces, so
    # they wait until asked for
    rough_once = functools.cache(lambda: rough_variances(design) if design.in_memory else None)
    rough = rough_once() if kept else None
    confounded = confounded_directions(design, stats, arrays.joined) if arrays.beta_prior is not None else {}
    return CrossedPlan(
        arrays=arrays,
        first=design.blocks[stats.order[0]],
        kept=kept,
        joined=joined,
        choices=crossed_choices(design, rough),
        confounded=confounded,
        pins=_pins(design, rough, confounded),
        rough=rough_once,
    )


class _IntegratedG(NamedTuple):
    """The graph's part for G, the columns integrated out with block 1 (beta's and the joined
    blocks'): tg = T_g's diagonal (prior SDs / sigma), G'r and G'G."""

    tg: object
    Gr: object
    GG: object


def _integrated_g(arrays: CrossedArrays, joined: list, priors: dict[str, Prior], sigma) -> _IntegratedG | None:
    """G's part of the graph (each joined block's SD a free variable), or None when G is empty."""
    if not arrays.GG.shape[0]:
        return None
    # T_g = diag(prior SDs of beta, each joined block's SD per level) / sigma
    joined_sds = [block_covariance(b, priors)[0, 0] * pt.ones(b.n_levels) for b in joined]
    beta_sds = pm.Data("prior_beta_sigma", arrays.beta_prior[1], shape=arrays.beta_prior[1].shape)
    tg = pt.concatenate([beta_sds, *joined_sds]) / sigma
    return _IntegratedG(tg, pm.Data("Gy", arrays.Gy), pm.Data("GG", arrays.GG))


def _without_sampled(arrays: CrossedArrays, pieces: list, Z1r, rr, G: _IntegratedG | None):
    """(Z1'r, r'r, G) with the sampled effects kappa (``pieces``, concatenated) taken out of the
    residual: Z1'r = Z1'y - A kappa, r'r = y'y - 2 Ky kappa + kappa' KK kappa, G'r = Gy - GK kappa."""
    if not pieces:  # (one block, beta integrated out) the residual is y - X m itself
        return Z1r, rr, G
    offsets = np.cumsum((0, *arrays.sizes))
    Z1r = Z1r - sum(
        _product(f"A_{i}", arrays.A[:, offsets[i] : offsets[i + 1]], piece) for i, piece in enumerate(pieces)
    )
    kappa = pt.concatenate(pieces) if len(pieces) > 1 else pieces[0]
    rr = rr - 2 * pt.dot(pm.Data("Ky", arrays.Ky), kappa) + pt.dot(kappa, _product("KK", arrays.KK, kappa))
    if G is not None:
        G = G._replace(Gr=G.Gr - pt.dot(pm.Data("GK", arrays.GK), kappa))
    return Z1r, rr, G


def _one_term_block(arrays: CrossedArrays, S1, sigma, Z1r, G: _IntegratedG | None):
    """(sum_m log|C_m|, sum_m c_m'C_m^{-1}c_m, Schur complement, e) for a one-term block 1, written
    out: C_m = 1 + t^2 n_m, no batched k x k algebra (the last two None without G)."""
    t2 = (S1[0, 0] / sigma) ** 2
    a = 1 + t2 * pm.Data("D", arrays.D[:, 0, 0])
    z = Z1r[:, 0]
    logdet = pt.sum(pt.log(a))
    quad = t2 * pt.sum(z**2 / a)
    if G is None:
        return logdet, quad, None, None
    g = arrays.GG.shape[0]
    Q = pm.Data("Q", arrays.Q[:, 0, :])
    counts, P = arrays.outer_products_by_rows
    QWQ = pt.tensordot(t2 / (1 + t2 * pm.Data("counts", counts)), pm.Data("P", P), axes=1)
    schur = G.tg[:, None] * G.tg[None, :] * (G.GG - QWQ) + pt.eye(g)
    e = G.tg * (G.Gr - pt.dot(Q.T, t2 / a * z))
    return logdet, quad, schur, e


def _several_terms_block(arrays: CrossedArrays, S1, sigma, Z1r, G: _IntegratedG | None):
    """:func:`_one_term_block` for a block 1 of k1 > 1 terms: each level's C_m whitened."""
    k1 = arrays.D.shape[1]
    T1 = S1 / sigma
    C11 = pt.einsum("ji,mjl,lk->mik", T1, pm.Data("D", arrays.D), T1) + pt.eye(k1)
    c1 = pt.einsum("ji,mj->mi", T1, Z1r)
    if G is None:
        W, logdet = _whiten(C11, c1[:, :, None], k1)
        return logdet, pt.sum(W**2), None, None
    g = arrays.GG.shape[0]
    F = pt.einsum("ji,mjr->mir", T1, pm.Data("Q", arrays.Q)) * G.tg
    W, logdet = _whiten(C11, pt.concatenate([F, c1[:, :, None]], axis=2), k1)
    V, w = W[:, :, :g], W[:, :, g]
    schur = G.tg[:, None] * G.GG * G.tg[None, :] + pt.eye(g) - pt.einsum("mkr,mks->rs", V, V)
    e = G.tg * G.Gr - pt.einsum("mkr,mk->r", V, w)
    return logdet, pt.sum(w**2), schur, e


def build_crossed_model(design, family: Family, priors: dict[str, Prior]) -> BuiltModel:
    """The partially collapsed PyMC model of a gaussian model with several random-effect blocks.

    The block with the most levels (lme4's first block) is integrated out exactly, level by level;
    so is beta when its priors are independent Normals (a dense p x p Schur complement); NUTS samples
    the other blocks' effects (centred or non-centred, :func:`crossed_choices`), the SDs,
    correlations and sigma. See the module docstring. The post-draw step draws what was integrated
    out (:func:`_draw_crossed`).
    """
    plan = crossed_plan(design, priors)
    arrays, first = plan.arrays, plan.first
    M1, k1 = first.n_levels, first.n_terms
    g = arrays.GG.shape[0]
    coords = {key: value for key, value in model_coords(design).items() if key != OBS_DIM}
    with pm.Model(coords=coords) as model:
        pieces = [
            _sampled_effects(
                block, priors, plan.choices[block.label], plan.confounded.get(block.label), plan.pins.get(block.label)
            ).reshape((-1,))
            for block in plan.kept
        ]
        if arrays.beta_prior is None and design.fixed_names:
            pieces.append(fixed_effects(design, priors))
        S1 = block_covariance(first, priors)
        sigma = priors["sigma"].variable("sigma")
        Z1r, rr = pm.Data("Z1y", arrays.Z1y), pm.Data("yy", arrays.yy)
        G = _integrated_g(arrays, plan.joined, priors, sigma)
        Z1r, rr, G = _without_sampled(arrays, pieces, Z1r, rr, G)
        terms = _one_term_block if k1 == 1 else _several_terms_block
        logdet, quad, schur, e = terms(arrays, S1, sigma, Z1r.reshape((M1, k1)), G)
        if G is not None:
            L = pt.linalg.cholesky(schur)
            logdet = logdet + 2 * pt.sum(pt.log(pt.diag(L)))
            quad = quad + pt.sum(pt.linalg.solve_triangular(L, e, lower=True) ** 2)
        pm.Potential(
            "marginal_loglik",
            -0.5 * arrays.n * (LOG_2PI + 2 * pt.log(sigma)) - 0.5 * logdet - (rr - quad) / (2 * sigma**2),
        )
    sampled_beta = arrays.beta_prior is None
    return BuiltModel(
        model,
        derived_values=M1 * k1 + g,  # re_<label> of block 1, and beta and the joined effects when integrated out
        initial_scales=lambda: initial_scales(design, plan.rough(), plan.choices, sampled_beta),
        post_draw=functools.partial(_draw_crossed, design, arrays),
        sampler_log_likelihood=False,
    )
