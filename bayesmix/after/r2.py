"""Nakagawa's R² and the intraclass correlation (performance's ``r2_nakagawa`` and ``icc``).

Three variances on the linear predictor's scale:

- fixed: the variance over the rows of X beta (R's ``var``, n - 1);
- random: per block, the mean over the rows of z_i' Sigma z_i (Johnson 2014's extension to random
  slopes: for an intercept alone it is the block's variance), summed over the blocks;
- residual: sigma² (gaussian), or the link's distribution-specific variance (logit pi²/3,
  probit 1) for bernoulli and binomial responses.

R² marginal = fixed / total, conditional = (fixed + random) / total; ICC adjusted = random /
(random + residual), unadjusted = random / total. An exact fit gives numbers; a sampled model the
same quantities per posterior draw (brms's ``bayes_R2`` is another definition; this is Nakagawa's,
draw by draw) and their summary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayesmix.after.fit_view import view
from bayesmix.bayes.names import block_correlations, flat_draws
from bayesmix.errors import BayesmixError
from bayesmix.report import INTERVAL

DISTRIBUTION_VARIANCE = {"logit": np.pi**2 / 3.0, "probit": 1.0}  # of the latent residual


@dataclass(frozen=True)
class Variances:
    """Each component (a number for an exact fit, one value per draw for a sampled model)."""

    fixed: np.ndarray
    random: np.ndarray
    residual: np.ndarray

    @property
    def total(self):
        return self.fixed + self.random + self.residual


def _check(source) -> None:
    family, design = source.family, source.design
    supported = family.name == "gaussian" and family.link.name == "identity"
    supported |= family.name in ("bernoulli", "binomial") and family.link.name in DISTRIBUTION_VARIANCE
    if not supported:
        raise BayesmixError(
            f"Nakagawa's R² and the ICC are implemented for gaussian (identity link) and bernoulli/binomial "
            f"(logit, probit) models; not yet for family='{family.name}' with link='{family.link.name}'."
        )
    if design.submodels:
        raise BayesmixError(
            "A dispersion= or zi= formula makes the residual variance differ by row; R² and the ICC assume one."
        )
    if not design.blocks:
        raise BayesmixError("The model has no random effects: R² of a mixed model needs at least one block.")


def _random_variance(design, covariances) -> np.ndarray:
    """sum over blocks of mean_i z_i' Sigma z_i; ``covariances`` (S, k, k) per block."""
    total = 0.0
    for block, cov in zip(design.blocks, covariances):
        Z = np.asarray(block.Zt, dtype=float)  # (n, k)
        total = total + np.einsum("ik,skl,il->s", Z, cov, Z) / Z.shape[0]
    return total


def variances(fit, idata=None) -> Variances:
    """The fixed, random and residual variances of Nakagawa's R² (see the module's docstring)."""
    source = view(fit, idata, "bayesmix.r2")
    source.require()
    _check(source)
    design, family = source.design, source.family
    if source.bayes:
        post = source.idata.posterior
        beta = flat_draws(post, "beta")  # (S, p)
        covariances = []
        for block in design.blocks:
            sd = flat_draws(post, f"sd_{block.label}")
            covariances.append(sd[:, :, None] * block_correlations(post, block) * sd[:, None, :])
        sigma = flat_draws(post, "sigma").reshape(-1) if family.name == "gaussian" else None
        X = design.X
    else:
        names = list(fit.fixef.index)
        X = design.X[:, [design.fixed_names.index(name) for name in names]]
        beta = fit.fixef["estimate"].to_numpy()[None, :]
        covariances = [np.asarray(block["cov"], dtype=float)[None] for block in fit.varcorr[: len(design.blocks)]]
        sigma = np.array([fit.sigma]) if family.name == "gaussian" else None
    fixed = np.var(beta @ X.T, axis=1, ddof=1)
    random = _random_variance(design, covariances)
    residual = sigma**2 if sigma is not None else np.full(fixed.shape, DISTRIBUTION_VARIANCE[family.link.name])
    return Variances(fixed, random, residual)


def _result(values: dict[str, np.ndarray], bayes: bool):
    if not bayes:
        return {name: float(value[0]) for name, value in values.items()}
    half = (1 - INTERVAL) / 2
    summary = pd.DataFrame(
        {
            "estimate": {k: float(np.mean(v)) for k, v in values.items()},
            "se": {k: float(np.std(v, ddof=1)) for k, v in values.items()},
            "lower": {k: float(np.quantile(v, half)) for k, v in values.items()},
            "upper": {k: float(np.quantile(v, 1 - half)) for k, v in values.items()},
        }
    )
    return {"draws": values, "summary": summary}


def r2(fit, idata=None):
    """Nakagawa's R²: ``{"marginal", "conditional"}`` for an exact fit (performance's
    ``r2_nakagawa``); for a sampled model ``{"draws": {name: (S,)}, "summary": DataFrame}`` with the
    posterior mean, SD and central interval."""
    v = variances(fit, idata)
    values = {"marginal": v.fixed / v.total, "conditional": (v.fixed + v.random) / v.total}
    return _result(values, view(fit, idata).bayes)


def icc(fit, idata=None):
    """The intraclass correlation: ``{"adjusted", "unadjusted"}`` (performance's ``icc``): the
    random-effect variance over itself plus the residual's, and over the total (fixed effects'
    variance included); posterior draws and their summary for a sampled model, as :func:`r2`."""
    v = variances(fit, idata)
    values = {"adjusted": v.random / (v.random + v.residual), "unadjusted": v.random / v.total}
    return _result(values, view(fit, idata).bayes)
