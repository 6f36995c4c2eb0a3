"""Unordered categorical responses: the multinomial logit (brms's ``categorical``).

A response with K categories, coded 0..K-1, the first the reference. Each other category k has its
own linear predictor mu_k (its own coefficients and random effects: the formula is repeated per
category, as brms's), the reference's is 0, and

    P(y = k) = exp(mu_k) / sum_j exp(mu_j).

The per-category predictors are the design's submodels, one per category, named ``mu<level>``
(:func:`parameter_names`; brms's ``muB``, ``muC``), so each has the coefficients ``mu<level>_beta``
and blocks labelled ``mu<level>_<group>``. Here: those names, the category probabilities and draws
(numpy), and each row's log-probability in PyTensor.
"""

from __future__ import annotations

import re

import numpy as np
from scipy.special import log_softmax, softmax

from bayesmix.errors import BayesmixError

DRAW_CHUNK = 2**24  # entries of a (draws, rows, categories) array formed at once when drawing


def parameter_names(levels) -> tuple[str, ...]:
    """``mu<level>`` for each level but the first (the reference), with characters other than
    letters, digits, ``_`` and ``.`` dropped (brms's rule), so that the names can name model
    variables and dimensions."""
    names = tuple("mu" + re.sub(r"[^0-9A-Za-z_.]", "", _text(level)) for level in levels[1:])
    clash = sorted({name for name in names if names.count(name) > 1})
    if clash:
        raise BayesmixError(
            f"The response levels {[str(v) for v in levels]} give two categories the parameter name '{clash[0]}' "
            "(letters, digits, '_' and '.' are kept). Rename the levels so that they differ in those."
        )
    return names


def _text(level) -> str:
    """A level as R prints a factor level: a whole number without its decimals (2.0 -> "2")."""
    if isinstance(level, float | np.floating) and float(level).is_integer():
        return str(int(level))
    return str(level)


def _logits(params: dict, names) -> np.ndarray:
    """(..., K) each category's linear predictor, the reference's 0, broadcast over the categories'."""
    parts = np.broadcast_arrays(*(np.asarray(params[name], dtype=float) for name in names))
    return np.stack([np.zeros_like(parts[0]), *parts], axis=-1)


def probabilities(params: dict, names) -> np.ndarray:
    """(..., K) category probabilities from each non-reference category's linear predictor."""
    return softmax(_logits(params, names), axis=-1)


def log_probabilities(params: dict, names) -> np.ndarray:
    return log_softmax(_logits(params, names), axis=-1)


def draw(params: dict, names, rng: np.random.Generator) -> np.ndarray:
    """Category codes 0..K-1, one per entry of the predictors' shape. Posterior draws ((S, n) each)
    go in chunks of draws, so memory holds (chunk, n, K) at a time; the uniforms come from ``rng``
    in the same order as in one piece, so the codes do not depend on the chunking."""
    shape = np.broadcast_shapes(*(np.shape(params[name]) for name in names))
    K = len(names) + 1
    if len(shape) == 2 and shape[0] * shape[1] * K > DRAW_CHUNK:
        step = max(1, DRAW_CHUNK // (shape[1] * K))
        parts = []
        for i in range(0, shape[0], step):
            chunk = {name: np.broadcast_to(params[name], shape)[i : i + step] for name in names}
            parts.append(_one_draw(chunk, names, rng))
        return np.concatenate(parts)
    return _one_draw(params, names, rng)


def _one_draw(params: dict, names, rng: np.random.Generator) -> np.ndarray:
    cumulative = np.cumsum(probabilities(params, names), axis=-1)[..., :-1]
    return np.sum(rng.random(cumulative.shape[:-1])[..., None] > cumulative, axis=-1).astype(float)


def pt_log_probability(y, etas):
    """log P(y | mu_2..mu_K) per row in PyTensor; ``etas``: the K - 1 (n,) predictors. The category is
    picked with a one-hot mask over a static K (JAX traces no symbolic shape)."""
    import pytensor.tensor as pt

    K = len(etas) + 1
    logits = pt.stack([pt.zeros_like(etas[0]), *etas], axis=1)  # (n, K)
    chosen = pt.eq(pt.cast(y, "int64")[:, None], np.arange(K)[None, :])
    return pt.sum(pt.switch(chosen, logits, 0.0), axis=1) - pt.logsumexp(logits, axis=1)


def joint_terms(y, etas) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log P(y), its gradient (n, K - 1) and Hessian (n, K - 1, K - 1)) per row over the
    non-reference categories' predictors ``etas`` (K - 1 arrays (n,)); ``y`` the codes 0..K-1. With
    p the probabilities, d/d mu_j = [y = j] - p_j and d2/d mu_j d mu_k = p_j p_k - [j = k] p_j."""
    logits = np.stack([np.zeros_like(etas[0]), *etas], axis=-1)
    log_p = log_softmax(logits, axis=-1)
    y = np.asarray(y, dtype=np.int64)
    ll = np.take_along_axis(log_p, y[:, None], axis=1)[:, 0]
    p = np.exp(log_p[:, 1:])
    gradient = (y[:, None] == np.arange(1, len(etas) + 1)[None, :]) - p
    hessian = p[:, :, None] * p[:, None, :] - np.einsum("nj,jk->njk", p, np.eye(len(etas)))
    return ll, gradient, hessian


def joint_third(etas) -> np.ndarray:
    """(n, K - 1, K - 1, K - 1) third derivatives of log P(y) over the non-reference predictors (y
    drops out): -[j = k = l] p_j + [j = k] p_j p_l + [j = l] p_j p_k + [k = l] p_j p_k - 2 p_j p_k p_l."""
    p = softmax(np.stack([np.zeros_like(etas[0]), *etas], axis=-1), axis=-1)[:, 1:]
    eye = np.eye(len(etas))
    ppp = np.einsum("nj,nk,nl->njkl", p, p, p)
    pairs = np.einsum("nj,nl,jk->njkl", p, p, eye) + np.einsum("nj,nk,jl->njkl", p, p, eye)
    pairs = pairs + np.einsum("nj,nk,kl->njkl", p, p, eye)
    diagonal = np.einsum("nj,jk,jl->njkl", p, eye, eye)
    return -diagonal + pairs - 2.0 * ppp


def start_intercepts(y, count: int) -> np.ndarray:
    """Each non-reference category's intercept where the predictors are 0: log(n_k / n_1), the
    intercept-only model's estimate (the optimiser's start)."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=count + 1).astype(float)
    return np.log(np.maximum(counts[1:], 0.5) / max(counts[0], 0.5))
