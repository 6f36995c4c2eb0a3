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
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from bayesmix import memory
from bayesmix.build import OBS_DIM, block_covariance, fixed_effects, model_coords, response_name, term_dim
from bayesmix.design import Design
from bayesmix.errors import BayesmixWarning
from bayesmix.exact.lmm import raw_cross_products
from bayesmix.families import Family
from bayesmix.priors import Prior
from bayesmix.sampling import DERIVED_VALUES_ATTR

LOG_2PI = float(np.log(2 * np.pi))


def _chunk(per_draw_bytes: int, total: int) -> int:
    """Draws per chunk so that a chunk's temporaries take at most a tenth of the memory budget."""
    return int(max(1, min(total, memory.memory_budget() // (10 * max(per_draw_bytes, 1)))))


def collapsible(design: Design, family: Family) -> bool:
    """Whether the collapsed model applies: gaussian, identity link, exactly one random-effect block."""
    return family.name == "gaussian" and family.link.name == "identity" and len(design.blocks) == 1


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
        raw = raw_cross_products([(block.codes, block.Zt, block.n_levels)], design.X, design.y)
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


def build_collapsed_model(design: Design, family: Family, priors: dict[str, Prior]) -> pm.Model:
    """The PyMC model of (beta, sigma, covariance) with b integrated out (see the module docstring)."""
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
    setattr(model, DERIVED_VALUES_ATTR, block.n_levels * block.n_terms)  # re_<label>, drawn after sampling
    return model


def _logdet_and_quadratic(A, c, k: int):
    """sum_m log|A_m| and sum_m c_m' A_m^{-1} c_m for (M, k, k) A and (M, k) c.

    k = 1 and k = 2 are written out elementwise (a batched LAPACK call per gradient costs ~1 ms for
    1,000 levels on the CPU; the closed forms cost microseconds); larger k use batched Choleskys.
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


def _flat(post, name):
    values = post[name].values
    return values.reshape((-1,) + values.shape[2:])


def draw_effects(design: Design, idata: az.InferenceData, seed: int) -> None:
    """Add ``re_<label>`` (exact conditional draws) and, for rows in memory, the pointwise log_likelihood."""
    (block,) = design.blocks
    stats = level_stats(design)
    post = idata.posterior
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    beta = _flat(post, "beta") if design.fixed_names else np.zeros((chains * draws, 0))
    sigma = _flat(post, "sigma")
    sd = _flat(post, f"sd_{block.label}")
    corr = _flat(post, f"corr_{block.label}") if block.n_terms > 1 else np.ones((len(sd), 1, 1))
    S = sd[:, :, None] * np.linalg.cholesky(corr)  # (draws, k, k)
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
        A = np.einsum("sji,mjl,slk->smik", lam_p, stats.D, lam_p) + np.eye(k)
        c = np.einsum("sji,smj->smi", lam_p, stats.Zy[None] - np.einsum("mkp,sp->smk", stats.ZX, beta[part]))
        chol = np.linalg.cholesky(A)
        mean_u = np.linalg.solve(A, c[..., None])[..., 0]
        z = rng.standard_normal(mean_u.shape)
        # u = mean + sigma L^{-T} z has covariance sigma^2 A^{-1}
        noise = np.linalg.solve(np.swapaxes(chol, -1, -2), z[..., None])[..., 0]
        u = mean_u + sigma[part, None, None] * noise
        effects[part] = np.einsum("sij,smj->smi", lam_p, u)  # b = Lambda u
    dims = ("chain", "draw", block.group, term_dim(block))
    post[f"re_{block.label}"] = xr.DataArray(
        effects.reshape(chains, draws, block.n_levels, k),
        dims=dims,
        coords={block.group: list(block.levels), term_dim(block): list(block.terms)},
    )
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
            stacklevel=3,
        )


def _add_log_likelihood(design, idata, beta, effects, sigma) -> None:
    (block,) = design.blocks
    post = idata.posterior
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    loglik = np.empty((chains * draws, design.nobs))
    step = _chunk(8 * design.nobs * (block.n_terms + 3), chains * draws)
    for start in range(0, chains * draws, step):
        part = slice(start, start + step)
        mu = beta[part] @ design.X.T + np.einsum("snk,nk->sn", effects[part][:, block.codes], block.Zt)
        loglik[part] = -0.5 * (LOG_2PI + 2 * np.log(sigma[part, None])) - (design.y - mu) ** 2 / (
            2 * sigma[part, None] ** 2
        )
    name = response_name(design, set(post.data_vars))
    idata.add_groups(
        log_likelihood={name: xr.DataArray(loglik.reshape(chains, draws, -1), dims=("chain", "draw", OBS_DIM))},
        observed_data={name: xr.DataArray(design.y, dims=(OBS_DIM,))},
    )
