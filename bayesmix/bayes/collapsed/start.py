"""Rough posterior scales of a collapsed model, before sampling: a few EM sweeps over the blocks
(:func:`rough_variances`) and what they choose: each sampled block's parameterisation
(:func:`crossed_choices`), the starting diagonal of NUTS's mass matrix (:func:`initial_scales`)
and the scales that pin the confounded directions (:func:`_pins`). None of them changes the
posterior, only how well NUTS starts on it.
"""

from __future__ import annotations

import numpy as np

from bayesmix.design.crossprod import level_gram, lme4_order


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
