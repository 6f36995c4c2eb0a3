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
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import scipy.sparse as sp
import xarray as xr

from bayesmix import memory
from bayesmix.bayes.build import (
    COEF_DIM,
    OBS_DIM,
    _block_effects,
    block_covariance,
    covariance_roots,
    fixed_effects,
    flat_draws,
    level_dim,
    model_coords,
    response_name,
    term_dim,
)
from bayesmix.bayes.built import BuiltModel
from bayesmix.bayes.priors import Prior
from bayesmix.design.crossprod import block_z, level_gram, lme4_order, raw_cross_products
from bayesmix.design.encode import Design
from bayesmix.errors import BayesmixWarning
from bayesmix.families import Family

LOG_2PI = float(np.log(2 * np.pi))


# Temporaries per chunk of draws. Small: every large temporary is fresh memory from the system,
# and touching it costs page faults that outweigh the arithmetic; chunks of a tenth of the memory
# budget made the pointwise log-likelihood about three times slower (docs/performance.md)
CHUNK_BYTES = 16 * 2**20


def _chunk(per_draw_bytes: int, total: int) -> int:
    """Draws per chunk so that a chunk's temporaries take about CHUNK_BYTES (and at most a tenth of
    the memory budget), at least one draw."""
    limit = min(CHUNK_BYTES, memory.memory_budget() // 10)
    return int(max(1, min(total, limit // max(per_draw_bytes, 1))))


def collapsible(design: Design, family: Family) -> bool:
    """Whether the collapsed model applies: gaussian, identity link, at least one random-effect block
    (:func:`build_marginal` chooses how much is integrated out)."""
    return family.name == "gaussian" and family.link.name == "identity" and len(design.blocks) >= 1


def build_marginal(design, family: Family, priors: dict[str, Prior]) -> BuiltModel:
    """The collapsed model of a gaussian design. One block: b and, when its priors are independent
    Normals, beta integrated out (:func:`build_crossed_model` with nothing left to sample but the
    SDs, correlations and sigma; beta is what mixed slowest on large data, the intercept against
    the group means), else b alone (:func:`build_collapsed_model`). Several blocks: partially
    collapsed. The effects integrated out are drawn by the result's post-draw step."""
    if len(design.blocks) == 1 and normal_fixed_priors(design, priors) is None:
        return build_collapsed_model(design, family, priors)
    return build_crossed_model(design, family, priors)


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
    if design.in_memory:
        raw = raw_cross_products([(block.codes, block.Zt, block.n_levels)], design.X, design.y_less_offset)
    else:
        raw = design.raw
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


def draw_effects(design: Design, idata: az.InferenceData, seed: int, model: BuiltModel | None = None) -> None:
    """Add ``re_<label>`` (exact conditional draws) and, for rows in memory, the pointwise log_likelihood.

    ``model``: the collapsed model that was sampled (:func:`build_marginal`), whose post-draw step
    this runs; None: a model of one block with beta sampled (:func:`build_collapsed_model`)."""
    built = model
    if built is not None and built.post_draw is not None:
        built.post_draw(idata, seed, stacklevel=5)
        return
    _draw_one_block(design, idata, seed, stacklevel=5)


def _draw_one_block(design: Design, idata: az.InferenceData, seed: int, stacklevel: int = 4) -> None:
    """:func:`build_collapsed_model`'s post-draw step: b drawn from its exact conditional given each
    draw, then the pointwise log-likelihood (``stacklevel``: for its memory warning)."""
    (block,) = design.blocks
    stats = level_stats(design)
    post = idata.posterior
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    beta = flat_draws(post, "beta") if design.fixed_names else np.zeros((chains * draws, 0))
    sigma = flat_draws(post, "sigma")
    S = covariance_roots(post, block)  # (draws, k, k)
    lam = S / sigma[:, None, None]
    k, M = block.n_terms, block.n_levels
    rng = np.random.default_rng(seed)
    effects = np.empty((chains * draws, M, k))
    # chunks of draws keep the (draws, M, k, k) temporaries within the memory budget; the normal
    # draws come in the same order as one (draws, M, k) call would give them
    step = _chunk(8 * M * k * (4 * k + 6), chains * draws)
    for start in range(0, chains * draws, step):
        part = slice(start, start + step)
        lam_p = lam[part]
        A = np.einsum("sji,mjl,slk->smik", lam_p, stats.D, lam_p, optimize=True) + np.eye(k)
        c = np.einsum(
            "sji,smj->smi", lam_p, stats.Zy[None] - np.einsum("mkp,sp->smk", stats.ZX, beta[part]), optimize=True
        )
        chol = np.linalg.cholesky(A)
        mean_u = np.linalg.solve(A, c[..., None])[..., 0]
        z = rng.standard_normal(mean_u.shape)
        # u = mean + sigma L^{-T} z has covariance sigma^2 A^{-1}
        noise = np.linalg.solve(np.swapaxes(chol, -1, -2), z[..., None])[..., 0]
        u = mean_u + sigma[part, None, None] * noise
        effects[part] = np.einsum("sij,smj->smi", lam_p, u, optimize=True)  # b = Lambda u
    post[f"re_{block.label}"] = _effects_array(block, effects.reshape(chains, draws, block.n_levels, k))
    _log_likelihood_if_it_fits(design, idata, beta, {block.label: effects}, sigma, stacklevel=stacklevel)


def _effects_array(block, values: np.ndarray) -> xr.DataArray:
    """(chain, draw, level, term) effects with the non-centred model's dims and coordinates."""
    return xr.DataArray(
        values,
        dims=("chain", "draw", level_dim(block), term_dim(block)),
        coords={level_dim(block): list(block.levels), term_dim(block): list(block.terms)},
    )


def _log_likelihood_if_it_fits(design, idata, beta, effects, sigma, stacklevel: int) -> None:
    post = idata.posterior
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    if not design.in_memory:
        return  # the pointwise log-likelihood needs the rows: a design from statistics has none
    if memory.fits((chains, draws, design.nobs)):
        _add_log_likelihood(design, idata, beta, effects, sigma)
    else:
        warnings.warn(
            f"The pointwise log-likelihood ({chains} x {draws} x {design.nobs} doubles = "
            f"{memory.format_bytes(8 * chains * draws * design.nobs)}) was not stored: it is above the memory "
            f"budget of {memory.format_bytes(memory.memory_budget())} (bayesmix.set_memory_budget). az.loo needs "
            "it: sample fewer draws, or raise the budget.",
            BayesmixWarning,
            stacklevel=stacklevel,
        )


def _add_log_likelihood(design, idata, beta, effects, sigma) -> None:
    """``effects``: {block label: (draws, M, k)} for every block."""
    post = idata.posterior
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    loglik = np.empty((chains * draws, design.nobs))
    step = _chunk(8 * design.nobs * 3, chains * draws)
    # X beta written into the output, Z b for a chunk of draws as one sparse product (about twice as
    # fast as gathering by level codes), then the normal log density in place
    Z = sp.hstack([block_z(b) for b in design.blocks]).tocsr()
    for start in range(0, chains * draws, step):
        part = slice(start, start + step)
        out = loglik[part]
        stacked = np.concatenate([effects[b.label][part].reshape(len(out), -1) for b in design.blocks], axis=1)
        np.matmul(beta[part], design.X.T, out=out)
        out += (Z @ stacked.T).T
        out -= design.y_less_offset
        out *= out
        out *= -0.5 / sigma[part, None] ** 2
        out -= 0.5 * LOG_2PI + np.log(sigma[part, None])
    name = response_name(design, set(post.data_vars))
    # Datasets, not dicts: ArviZ would warn that it adds the chain and draw dims itself
    pointwise = xr.DataArray(
        loglik.reshape(chains, draws, -1),
        dims=("chain", "draw", OBS_DIM),
        coords={"chain": post["chain"].values, "draw": post["draw"].values},
    )
    idata.add_groups(
        log_likelihood=xr.Dataset({name: pointwise}),
        observed_data=xr.Dataset({name: xr.DataArray(design.y, dims=(OBS_DIM,))}),
    )


# ---------------------------------------------------------------------------------------------------
# Several blocks: the partially collapsed model
# ---------------------------------------------------------------------------------------------------

DENSE_FACTOR = 40.0  # see _product
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
    order = tuple(lme4_order(design.blocks))
    if not design.in_memory:
        raw = design.raw
        return CrossedStats(order, raw.D, sp.csr_matrix(raw.RZ1), sp.csr_matrix(raw.RR), raw.n)
    blocks = [(design.blocks[i].codes, design.blocks[i].Zt, design.blocks[i].n_levels) for i in order]
    raw = raw_cross_products(blocks, design.X, design.y_less_offset, dense=False)
    return CrossedStats(order, raw.D, raw.RZ1, raw.RR, raw.n)


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


def rough_variances(design, iterations: int = 15) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    """Rough residual variance, per-block per-term effect variances, and each block's per-level
    Z'Z (M, k, k): a few sweeps of EM over the blocks in turn, each level's conditional variance
    taken alone (the crossing between blocks ignored). They only choose the sampler's starting scales
    and which sampled blocks are centred; the posterior does not depend on them. Rows needed."""
    y, X = design.y_less_offset, design.X
    n = len(y)
    if X.shape[1]:
        basis = np.linalg.qr(X)[0]

        def residual(r):
            return r - basis @ (basis.T @ r)
    else:

        def residual(r):
            return r

    r = residual(y)
    floor = 1e-12 * max(float(np.var(y)), 1e-300)
    sigma2 = max(float(r @ r) / n, floor)
    blocks = design.blocks
    cross, variances, effects = [], [], []
    for block in blocks:
        M, k = block.n_levels, block.n_terms
        cross.append(level_gram(block.codes, block.Zt, M))
        scale = np.maximum(np.mean(block.Zt**2, axis=0), 1e-12)
        variances.append(sigma2 / (len(blocks) + 1) / scale)
        effects.append(np.zeros((M, k)))
    for _ in range(iterations):
        traces = 0.0
        for j, block in enumerate(blocks):
            partial = r + np.sum(block.Zt * effects[j][block.codes], axis=1)
            Zr = np.stack(
                [
                    np.bincount(block.codes, weights=block.Zt[:, t] * partial, minlength=block.n_levels)
                    for t in range(block.n_terms)
                ],
                axis=1,
            )
            V = np.linalg.inv(cross[j] / sigma2 + np.diag(1.0 / variances[j]))
            effects[j] = np.einsum("mij,mj->mi", V, Zr) / sigma2
            r = partial - np.sum(block.Zt * effects[j][block.codes], axis=1)
            diagonal = np.diagonal(V, axis1=1, axis2=2)
            variances[j] = np.maximum(np.mean(effects[j] ** 2 + diagonal, axis=0), 1e-8 * sigma2)
            traces += float(np.einsum("mij,mji->", cross[j], V))
        r = residual(r)
        sigma2 = max((float(r @ r) + traces) / n, floor)
    return sigma2, variances, cross


CENTRE_INFORMATION = 1.0  # a sampled block is centred when its median level's data outweigh its prior


def _level_posterior(D, variance, sigma2):
    """Per level and term: rough posterior variance of the effect and its shrinkage 1 - post/prior."""
    post = np.diagonal(np.linalg.inv(D / sigma2 + np.diag(1.0 / variance)), axis1=1, axis2=2)
    return post, np.clip(1.0 - post / variance, 0.0, 1.0)


def crossed_choices(design, rough) -> dict[str, str]:
    """Centred or non-centred for each block NUTS samples (all but the collapsed one): centred when
    the median level's data precision is at least its prior precision (rough variances), where the
    centred parameterisation samples better; non-centred otherwise, and without rows."""
    order = lme4_order(design.blocks)
    choices = {}
    for i in order[1:]:
        block = design.blocks[i]
        if rough is None:
            choices[block.label] = "noncentered"
            continue
        sigma2, variances, cross = rough
        information = np.diagonal(cross[i], axis1=1, axis2=2) * variances[i] / sigma2  # (M, k)
        centred = float(np.median(np.mean(information, axis=1))) >= CENTRE_INFORMATION
        choices[block.label] = "centered" if centred else "noncentered"
    return choices


def initial_scales(design, rough, choices, sampled_beta: bool) -> dict[str, np.ndarray]:
    """Rough posterior SDs of the sampled (unconstrained) variables, by value-variable name, as the
    starting diagonal of NUTS's mass matrix: the residual SD's log is known to ~1/sqrt(2n) and the
    well-informed effects to their data's precision, while unit scales (the default) start the
    adaptation hundreds of times too wide for those (deep trees through the first windows)."""
    if rough is None:
        return {}
    sigma2, variances, cross = rough
    order = lme4_order(design.blocks)
    scales, dof = {}, float(design.nobs)
    for i, block in enumerate(design.blocks):
        post, shrink = _level_posterior(cross[i], variances[i], sigma2)
        dof -= float(shrink.sum())
        if block.n_terms == 1:
            scales[f"sd_{block.label}_log__"] = np.sqrt([0.5 / max(float(np.sum(shrink[:, 0] ** 2)), 0.5)])
        if i == order[0]:
            continue
        if choices[block.label] == "centered":
            scales[f"re_{block.label}"] = scales[f"z_{block.label}"] = np.sqrt(post)
        else:
            scales[f"z_{block.label}"] = np.sqrt(post / variances[i])
    scales["sigma_log__"] = np.sqrt([0.5 / max(dof, 1.0)])
    if sampled_beta and design.fixed_names:
        X = design.X
        # the intercept's variance is mostly the spread of the effects' means: sum_j var_j / M_j
        inflation = 1.0 + sum(
            design.nobs / b.n_levels * float(np.mean(v)) / sigma2 for b, v in zip(design.blocks, variances)
        )
        beta_var = sigma2 * np.diag(np.linalg.pinv(X.T @ X)) * inflation
        scales["beta"] = np.sqrt(beta_var)
        for j, name in enumerate(design.fixed_names):
            scales[f"beta[{name}]"] = np.sqrt(beta_var[j : j + 1]).reshape(())
    return scales


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


def _pins(design, rough, confounded: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per confounded block, the scale of Q'u: for each column q of Q, 1 / sqrt(sum_m q_m^2 / v_m)
    with v_m the level's rough posterior variance, so that Q'u has unit scale in NUTS's starting metric."""
    if rough is None:
        return {}
    sigma2, variances, cross = rough
    out = {}
    for i, block in enumerate(design.blocks):
        if block.label in confounded:
            post = _level_posterior(cross[i], variances[i], sigma2)[0][:, 0]
            out[block.label] = 1.0 / np.sqrt(np.sum(confounded[block.label] ** 2 / post[:, None], axis=0))
    return out


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


def _lower_solve(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """L^{-1} B for lower-triangular L (..., k, k) and B (..., k, r): forward substitution over the k
    rows, vectorised over the leading axes (draws x levels of these tiny systems: numpy's batched
    LAPACK solve, one call per tiny system, was most of the conditional draws' time at 10^6 rows:
    docs/performance.md)."""
    X = np.empty(np.broadcast_shapes(L.shape[:-2], B.shape[:-2]) + B.shape[-2:])
    for i in range(L.shape[-1]):
        done = np.einsum("...j,...jr->...r", L[..., i, :i], X[..., :i, :])
        X[..., i, :] = (B[..., i, :] - done) / L[..., i, i, None]
    return X


def _upper_solve(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """L'^{-1} B for lower-triangular L (..., k, k): back substitution, as :func:`_lower_solve`."""
    k = L.shape[-1]
    X = np.empty(np.broadcast_shapes(L.shape[:-2], B.shape[:-2]) + B.shape[-2:])
    for i in reversed(range(k)):
        done = np.einsum("...j,...jr->...r", L[..., i + 1 :, i], X[..., i + 1 :, :])
        X[..., i, :] = (B[..., i, :] - done) / L[..., i, i, None]
    return X


def _draw_crossed(design, arrays: CrossedArrays, idata: az.InferenceData, seed: int, stacklevel: int = 4) -> None:
    """The collapsed block's effects (and beta and the joined blocks' effects, when integrated out)
    drawn exactly from their joint conditional given each posterior draw: u_g (G's whitened deviation
    from its prior mean) from N(Schur^{-1} e, sigma^2 Schur^{-1}), then each level's u_m from
    N(C_m^{-1}(c_m - F_m u_g), sigma^2 C_m^{-1}); b_m = T1 u_m, (beta, joined effects) = m + T_g u_g.
    Then the pointwise log-likelihood."""
    post = idata.posterior
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    total = chains * draws
    first = design.blocks[arrays.order[0]]
    kept, joined = _sampled_and_joined(design, arrays.order, arrays.joined)
    M, k = first.n_levels, first.n_terms
    g = arrays.GG.shape[0]
    sigma = flat_draws(post, "sigma")
    T1 = covariance_roots(post, first) / sigma[:, None, None]  # (draws, k, k)
    pieces = [flat_draws(post, f"re_{block.label}").reshape(total, -1) for block in kept]
    sampled_beta = arrays.beta_prior is None
    if sampled_beta and design.fixed_names:
        pieces.append(flat_draws(post, "beta"))
    kappa = np.concatenate(pieces, axis=1) if pieces else np.zeros((total, 0))
    rng = np.random.default_rng(seed)
    effects = np.empty((total, M, k))
    p = len(design.fixed_names)
    # G's values per draw: beta (sampled, or drawn below with the joined effects)
    beta = flat_draws(post, "beta") if sampled_beta and p else np.zeros((total, g if not sampled_beta else p))
    if g:  # G's prior means and SDs per draw: beta's, then 0 and each joined block's SD per level
        prior_mean = np.concatenate([arrays.beta_prior[0], np.zeros(g - p)])
        prior_sd = np.concatenate(
            [np.broadcast_to(arrays.beta_prior[1], (total, p))]
            + [np.repeat(flat_draws(post, f"sd_{b.label}")[:, :1], b.n_levels, axis=1) for b in joined],
            axis=1,
        )
    step = _chunk(8 * M * k * (4 * k + 3 * g + 8), total)
    eye = np.eye(k)
    if g and k == 1:  # F'C^{-1}F summed by the levels' distinct D_m, as in the model
        counts, P = arrays.outer_products_by_rows
    for start in range(0, total, step):
        part = slice(start, start + step)
        t1, s_part = T1[part], sigma[part]
        Z1r = (arrays.Z1y[:, None] - arrays.A @ kappa[part].T).T.reshape(-1, M, k)
        C = np.einsum("sji,mjl,slk->smik", t1, arrays.D, t1, optimize=True) + eye
        c = np.einsum("sji,smj->smi", t1, Z1r, optimize=True)
        chol = np.sqrt(C) if k == 1 else np.linalg.cholesky(C)  # 1 x 1: LAPACK per system is slow
        if g:
            tg = prior_sd[part] / s_part[:, None]  # (draws, g)
            F = np.einsum("sji,mjr->smir", t1, arrays.Q, optimize=True) * tg[:, None, None, :]
            V = _lower_solve(chol, F)
            w = _lower_solve(chol, c[..., None])[..., 0]
            Gr = arrays.Gy[None, :] - kappa[part] @ arrays.GK.T
            if k == 1:  # V_m'V_m = t^2 tg q_m q_m' tg / (1 + t^2 D_m), summed by the distinct D_m as in the model
                t2 = t1[:, 0, 0, None] ** 2
                VV = tg[:, :, None] * np.tensordot(t2 / (1 + t2 * counts), P, axes=1) * tg[:, None, :]
            else:
                VV = np.einsum("smkr,smkt->srt", V, V, optimize=True)
            schur = tg[:, :, None] * arrays.GG * tg[:, None, :] + np.eye(g) - VV
            e = tg * Gr - np.einsum("smkr,smk->sr", V, w, optimize=True)
            schur_chol = np.linalg.cholesky(schur)
            mean_g = np.linalg.solve(schur, e[..., None])[..., 0]
            z = rng.standard_normal(mean_g.shape)
            u_g = mean_g + s_part[:, None] * np.linalg.solve(np.swapaxes(schur_chol, -1, -2), z[..., None])[..., 0]
            beta[part] = prior_mean[None, :] + tg * u_g
            c = c - np.einsum("smkr,sr->smk", F, u_g, optimize=True)
        mean_u = _upper_solve(chol, _lower_solve(chol, c[..., None]))[..., 0]  # C^{-1} c
        z = rng.standard_normal(mean_u.shape)
        u = mean_u + s_part[:, None, None] * _upper_solve(chol, z[..., None])[..., 0]
        effects[part] = np.einsum("sij,smj->smi", t1, u, optimize=True)
    post[f"re_{first.label}"] = _effects_array(first, effects.reshape(chains, draws, M, k))
    if not sampled_beta and design.fixed_names:
        post["beta"] = xr.DataArray(
            beta[:, :p].reshape(chains, draws, -1),
            dims=("chain", "draw", COEF_DIM),
            coords={COEF_DIM: list(design.fixed_names)},
        )
    offsets = np.cumsum([p, *(b.n_levels for b in joined)])
    for block, start, end in zip(joined, offsets[:-1], offsets[1:]):
        post[f"re_{block.label}"] = _effects_array(block, beta[:, start:end].reshape(chains, draws, block.n_levels, 1))
    all_effects = {block.label: flat_draws(post, f"re_{block.label}") for block in [*kept, *joined]}
    all_effects[first.label] = effects
    _log_likelihood_if_it_fits(design, idata, beta[:, :p], all_effects, sigma, stacklevel=stacklevel)
