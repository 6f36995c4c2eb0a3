"""After sampling: the effects a collapsed model integrated out, drawn exactly from their conditional
Gaussian given each posterior draw (the collapsed block's, and beta and the joined blocks' when
those were integrated out too), then the pointwise log-likelihood; both in chunks of draws that
keep the temporaries within the memory budget.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import scipy.sparse as sp
import xarray as xr

from bayesmix import memory
from bayesmix.bayes.built import BuiltModel
from bayesmix.bayes.collapsed.statistics import CrossedArrays, _sampled_and_joined, level_stats
from bayesmix.bayes.names import COEF_DIM, OBS_DIM, covariance_roots, flat_draws, level_dim, response_name, term_dim
from bayesmix.design.crossprod import block_z
from bayesmix.design.encode import Design
from bayesmix.errors import BayesmixWarning, warn
from bayesmix.families import LOG_2PI

# Temporaries per chunk of draws. Small: every large temporary is fresh memory from the system,
# and touching it costs page faults that outweigh the arithmetic; chunks of a tenth of the memory
# budget made the pointwise log-likelihood about three times slower (docs/performance.md)
CHUNK_BYTES = 16 * 2**20


def _chunk(per_draw_bytes: int, total: int) -> int:
    """Draws per chunk so that a chunk's temporaries take about CHUNK_BYTES (and at most a tenth of
    the memory budget), at least one draw."""
    limit = min(CHUNK_BYTES, memory.memory_budget() // 10)
    return int(max(1, min(total, limit // max(per_draw_bytes, 1))))


def draw_effects(design: Design, idata: az.InferenceData, seed: int, model: BuiltModel | None = None) -> None:
    """Add ``re_<label>`` (exact conditional draws) and, for rows in memory, the pointwise log_likelihood.

    ``model``: the collapsed model that was sampled (:func:`build_marginal`), whose post-draw step
    this runs; None: a model of one block with beta sampled (:func:`build_collapsed_model`)."""
    built = model
    if built is not None and built.post_draw is not None:
        built.post_draw(idata, seed)
        return
    _draw_one_block(design, idata, seed)


def _draw_one_block(design: Design, idata: az.InferenceData, seed: int) -> None:
    """:func:`build_collapsed_model`'s post-draw step: b drawn from its exact conditional given each
    draw, then the pointwise log-likelihood."""
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
    _log_likelihood_if_it_fits(design, idata, beta, {block.label: effects}, sigma)


def _effects_array(block, values: np.ndarray) -> xr.DataArray:
    """(chain, draw, level, term) effects with the non-centred model's dims and coordinates."""
    return xr.DataArray(
        values,
        dims=("chain", "draw", level_dim(block), term_dim(block)),
        coords={level_dim(block): list(block.levels), term_dim(block): list(block.terms)},
    )


def _log_likelihood_if_it_fits(design, idata, beta, effects, sigma) -> None:
    post = idata.posterior
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    if not design.in_memory:
        return  # the pointwise log-likelihood needs the rows: a design from statistics has none
    if memory.fits((chains, draws, design.nobs)):
        _add_log_likelihood(design, idata, beta, effects, sigma)
    else:
        warn(
            f"The pointwise log-likelihood ({chains} x {draws} x {design.nobs} doubles = "
            f"{memory.format_bytes(8 * chains * draws * design.nobs)}) was not stored: it is above the memory "
            f"budget of {memory.format_bytes(memory.memory_budget())} (bayesmix.set_memory_budget). az.loo needs "
            "it: sample fewer draws, or raise the budget.",
            BayesmixWarning,
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
        if design.weights is not None:  # a row's sd is sigma / sqrt(w)
            out *= design.weights
        out *= -0.5 / sigma[part, None] ** 2
        out -= 0.5 * LOG_2PI + np.log(sigma[part, None])
        if design.weights is not None:
            out += 0.5 * np.log(design.weights)
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


def _draw_crossed(design, arrays: CrossedArrays, idata: az.InferenceData, seed: int) -> None:
    """The collapsed block's effects (and beta and the joined blocks' effects, when integrated out)
    drawn exactly from their joint conditional given each posterior draw: u_g (G's whitened deviation
    from its prior mean) from N(Schur^{-1} e, sigma^2 Schur^{-1}), then each level's u_m from
    N(C_m^{-1}(c_m - F_m u_g), sigma^2 C_m^{-1}); b_m = T1 u_m, (beta, joined effects) = m + T_g u_g.
    Then the pointwise log-likelihood."""
    post = idata.posterior
    total = post.sizes["chain"] * post.sizes["draw"]
    first = design.blocks[arrays.order[0]]
    kept, joined = _sampled_and_joined(design, arrays.order, arrays.joined)
    M, k = first.n_levels, first.n_terms
    g = arrays.GG.shape[0]
    p = len(design.fixed_names)
    sampled_beta = arrays.beta_prior is None
    sigma = flat_draws(post, "sigma")
    T1 = covariance_roots(post, first) / sigma[:, None, None]  # (draws, k, k)
    kappa = _sampled_values(design, arrays, post, kept)
    # G's values per draw: beta (sampled, or drawn below with the joined effects)
    beta = flat_draws(post, "beta") if sampled_beta and p else np.zeros((total, g if not sampled_beta else p))
    prior = _g_prior(arrays, post, joined, p) if g else None
    rng = np.random.default_rng(seed)
    effects = np.empty((total, M, k))
    step = _chunk(8 * M * k * (4 * k + 3 * g + 8), total)
    for start in range(0, total, step):
        part = slice(start, start + step)
        chunk_prior = None if prior is None else (prior[0], prior[1][part])
        effects[part], values = _draw_chunk(arrays, rng, T1[part], sigma[part], kappa[part], chunk_prior)
        if values is not None:
            beta[part] = values
    _store_crossed(design, post, first, joined, effects, beta, sampled_beta)
    all_effects = {block.label: flat_draws(post, f"re_{block.label}") for block in [*kept, *joined]}
    all_effects[first.label] = effects
    _log_likelihood_if_it_fits(design, idata, beta[:, :p], all_effects, sigma)


def _sampled_values(design, arrays: CrossedArrays, post, kept: list) -> np.ndarray:
    """kappa per draw (draws, q): the sampled blocks' effects in ``kept``'s order, then beta when it
    was sampled (the layout of :class:`CrossedArrays`)."""
    total = post.sizes["chain"] * post.sizes["draw"]
    pieces = [flat_draws(post, f"re_{block.label}").reshape(total, -1) for block in kept]
    if arrays.beta_prior is None and design.fixed_names:
        pieces.append(flat_draws(post, "beta"))
    return np.concatenate(pieces, axis=1) if pieces else np.zeros((total, 0))


def _g_prior(arrays: CrossedArrays, post, joined: list, p: int) -> tuple[np.ndarray, np.ndarray]:
    """G's prior means (g,) and SDs per draw (draws, g): beta's, then 0 and each joined block's SD
    per level."""
    total = post.sizes["chain"] * post.sizes["draw"]
    g = arrays.GG.shape[0]
    prior_mean = np.concatenate([arrays.beta_prior[0], np.zeros(g - p)])
    prior_sd = np.concatenate(
        [np.broadcast_to(arrays.beta_prior[1], (total, p))]
        + [np.repeat(flat_draws(post, f"sd_{b.label}")[:, :1], b.n_levels, axis=1) for b in joined],
        axis=1,
    )
    return prior_mean, prior_sd


def _draw_chunk(arrays: CrossedArrays, rng, t1, sigma, kappa, prior) -> tuple[np.ndarray, np.ndarray | None]:
    """One chunk of draws (``t1``: T1, ``sigma`` and ``kappa``, the sampled values, per draw;
    ``prior``: G's prior means and this chunk's SDs, None without G): block 1's effects
    (draws, M1, k1) and G's values (draws, g), None without G. u_g comes first: each level's
    conditional is given it."""
    M, k = arrays.D.shape[0], arrays.D.shape[1]
    Z1r = (arrays.Z1y[:, None] - arrays.A @ kappa.T).T.reshape(-1, M, k)
    C = np.einsum("sji,mjl,slk->smik", t1, arrays.D, t1, optimize=True) + np.eye(k)
    c = np.einsum("sji,smj->smi", t1, Z1r, optimize=True)
    chol = np.sqrt(C) if k == 1 else np.linalg.cholesky(C)  # 1 x 1: LAPACK per system is slow
    values = None
    if prior is not None:
        prior_mean, prior_sd = prior
        tg = prior_sd / sigma[:, None]  # (draws, g)
        F = np.einsum("sji,mjr->smir", t1, arrays.Q, optimize=True) * tg[:, None, None, :]
        u_g = _draw_g(arrays, rng, t1, sigma, tg, chol, F, c, kappa)
        values = prior_mean[None, :] + tg * u_g
        c = c - np.einsum("smkr,sr->smk", F, u_g, optimize=True)
    mean_u = _upper_solve(chol, _lower_solve(chol, c[..., None]))[..., 0]  # C^{-1} c
    z = rng.standard_normal(mean_u.shape)
    u = mean_u + sigma[:, None, None] * _upper_solve(chol, z[..., None])[..., 0]
    return np.einsum("sij,smj->smi", t1, u, optimize=True), values


def _draw_g(arrays: CrossedArrays, rng, t1, sigma, tg, chol, F, c, kappa) -> np.ndarray:
    """u_g for one chunk of draws, from N(Schur^{-1} e, sigma^2 Schur^{-1}): with V_m = L_m^{-1} F_m
    and w_m = L_m^{-1} c_m (``chol``: L_m, C_m = L_m L_m'), Schur = T_g G'G T_g + I - sum_m V_m'V_m
    and e = T_g G'r - sum_m V_m'w_m."""
    k, g = chol.shape[-1], arrays.GG.shape[0]
    V = _lower_solve(chol, F)
    w = _lower_solve(chol, c[..., None])[..., 0]
    Gr = arrays.Gy[None, :] - kappa @ arrays.GK.T
    if k == 1:  # V_m'V_m = t^2 tg q_m q_m' tg / (1 + t^2 D_m), summed by the distinct D_m as in the model
        counts, P = arrays.outer_products_by_rows
        t2 = t1[:, 0, 0, None] ** 2
        VV = tg[:, :, None] * np.tensordot(t2 / (1 + t2 * counts), P, axes=1) * tg[:, None, :]
    else:
        VV = np.einsum("smkr,smkt->srt", V, V, optimize=True)
    schur = tg[:, :, None] * arrays.GG * tg[:, None, :] + np.eye(g) - VV
    e = tg * Gr - np.einsum("smkr,smk->sr", V, w, optimize=True)
    schur_chol = np.linalg.cholesky(schur)
    mean_g = np.linalg.solve(schur, e[..., None])[..., 0]
    z = rng.standard_normal(mean_g.shape)
    return mean_g + sigma[:, None] * np.linalg.solve(np.swapaxes(schur_chol, -1, -2), z[..., None])[..., 0]


def _store_crossed(design, post, first, joined: list, effects: np.ndarray, beta: np.ndarray, sampled_beta: bool):
    """Adds ``re_<label>`` of block 1 (``effects``) and of the joined blocks, and ``beta`` when it was
    integrated out (``beta``: G's values per draw, beta's first), with the non-centred model's dims."""
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    p = len(design.fixed_names)
    post[f"re_{first.label}"] = _effects_array(first, effects.reshape(chains, draws, first.n_levels, first.n_terms))
    if not sampled_beta and design.fixed_names:
        post["beta"] = xr.DataArray(
            beta[:, :p].reshape(chains, draws, -1),
            dims=("chain", "draw", COEF_DIM),
            coords={COEF_DIM: list(design.fixed_names)},
        )
    offsets = np.cumsum([p, *(b.n_levels for b in joined)])
    for block, start, end in zip(joined, offsets[:-1], offsets[1:]):
        post[f"re_{block.label}"] = _effects_array(block, beta[:, start:end].reshape(chains, draws, block.n_levels, 1))
