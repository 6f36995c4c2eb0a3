"""The standard error of an exact fit's population-level prediction when it carries a smooth.

A smooth's penalised part is a random-effect block, so the fixed effects' covariance alone would
leave its uncertainty out of a band drawn over x. As mgcv's ``se.fit`` (its Bayesian covariance
Vp, which gamm4's ``predict(fit$gam)`` reports), the coefficients' joint covariance is that of
(beta, u) given the data at the estimated variances: the inverse of C'WC + diag(0, I), C = [X, Z
Lambda] with b = Lambda u, W the rows' information about eta (w / sigma^2 for a gaussian model,
minus the log density's second eta-derivative at the conditional modes for a GLMM, as the Laplace
fit's). The other blocks' effects are integrated out (a Schur complement through a sparse
factorisation); the smooth's effects and beta remain.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from bayesmix.after.predict import covariance_root
from bayesmix.report import block_key


def _block_root(fit, block) -> np.ndarray:
    """A root R of the block's estimated covariance (R R' = Sigma, singular allowed)."""
    entry = next(v for v in fit.varcorr if v["group"] == block_key(block) and list(v["terms"]) == list(block.terms))
    sd = np.asarray(entry["sd"], dtype=float)
    return covariance_root(sd[:, None] * np.asarray(entry["corr"], dtype=float) * sd[None, :])


def _u_columns(codes: np.ndarray, Zt: np.ndarray, R: np.ndarray, levels: int) -> sp.csr_matrix:
    """(n, levels k) the block's columns in u (b = Lambda u): row i's Zt[i] R at its level's slot."""
    n, k = Zt.shape
    values = Zt @ R
    rows = np.repeat(np.arange(n), k)
    columns = (np.asarray(codes)[:, None] * k + np.arange(k)[None, :]).ravel()
    keep = np.asarray(codes).repeat(k) >= 0  # a new level: no column (its effect is 0 at the population level)
    return sp.csr_matrix((values.ravel()[keep], (rows[keep], columns[keep])), shape=(n, levels * k))


def _information(fit) -> np.ndarray:
    """(n,) W: what each training row says about its eta at the estimates."""
    design, family = fit.design, fit.family
    weights = np.ones(design.nobs) if design.weights is None else np.asarray(design.weights, dtype=float)
    if family.name == "gaussian" and family.link.name == "identity" and fit.sigma is not None:
        return weights / fit.sigma**2
    eta = np.asarray(fit.predict(kind="link"), dtype=float)
    d2 = family.laplace_terms(eta, design.y, design.trials, fit.parameters(), design.weights)[2]
    return np.maximum(-np.asarray(d2, dtype=float), 0.0)


def smooth_prediction_se(fit, new, fixed_columns=None) -> np.ndarray:
    """(rows,) the standard error of the population-level linear predictor on ``new`` (an encoded
    :class:`~bayesmix.design.encode.NewData` whose smooth blocks carry their columns), over beta
    (``fixed_columns``: the names of the fixed effects counted; None: all the fit kept) and the
    smooths' effects."""
    design = fit.design
    names = list(fit.fixef.index)
    index = [design.fixed_names.index(name) for name in names]
    blocks = [b for b in design.all_blocks if b.predictor == "mu"]
    smooth = [b.group in design.codings.smooths for b in blocks]
    roots = [_block_root(fit, b) for b in blocks]
    train = [_u_columns(b.codes, b.Zt, R, b.n_levels) for b, R in zip(blocks, roots)]
    kept = sp.hstack([sp.csr_matrix(design.X[:, index]), *[u for u, s in zip(train, smooth) if s]]).tocsc()
    other = [u for u, s in zip(train, smooth) if not s]
    W = sp.diags(_information(fit))
    prior_kept = np.concatenate([np.zeros(len(index)), np.ones(kept.shape[1] - len(index))])
    P_aa = (kept.T @ W @ kept).toarray() + np.diag(prior_kept)
    if other:
        Z_b = sp.hstack(other).tocsc()
        P_bb = (Z_b.T @ W @ Z_b + sp.identity(Z_b.shape[1])).tocsc()
        P_ba = (Z_b.T @ W @ kept).toarray()
        P_aa = P_aa - P_ba.T @ splu(P_bb).solve(P_ba)
    covariance = np.linalg.inv(P_aa)
    by_block = {b.label: (codes, Zt) for b, (codes, Zt) in zip(design.all_blocks, new.blocks)}
    X_new = np.asarray(new.X, dtype=float)[:, index]
    if fixed_columns is not None:
        X_new = X_new * np.isin(names, list(fixed_columns))[None, :]
    pieces = [X_new] + [
        _u_columns(*by_block[b.label], R, b.n_levels).toarray() for b, R, s in zip(blocks, roots, smooth) if s
    ]
    rows = np.hstack(pieces)
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", rows, covariance, rows), 0.0))
