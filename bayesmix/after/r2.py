"""Nakagawa's R² and the intraclass correlation (performance's ``r2_nakagawa`` and ``icc``).

Three variances on the linear predictor's scale:

- fixed: the variance over the rows of X beta (R's ``var``, n - 1);
- random: per block, the mean over the rows of z_i' Sigma z_i (Johnson 2014's extension to random
  slopes: for an intercept alone it is the block's variance), summed over the blocks;
- residual: sigma² (gaussian), or the distribution-specific variance on the link scale as
  insight 0.19 computes it: the link's (logit pi²/3, probit 1, cloglog pi²/6) for bernoulli and
  binomial responses; log1p(1 / mu0) for poisson and log1p(1 / mu0 + 1 / alpha) for the negative
  binomial (log link; the lognormal approximation), mu0 = exp(intercept) of the null model
  ``y ~ 1 + <the random terms>`` fitted by Laplace, alpha the model's own dispersion; 1 / shape
  (the squared coefficient of variation, glmmTMB's sigma²) for gamma.

R² marginal = fixed / total, conditional = (fixed + random) / total; ICC adjusted = random /
(random + residual), unadjusted = random / total. An exact fit gives numbers; a sampled model the
same quantities per posterior draw (brms's ``bayes_R2`` is another definition; this is Nakagawa's,
draw by draw) and their summary.
"""

from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayesmix.after.fit_view import view
from bayesmix.bayes.names import block_correlations, draw_chunks, flat_draws
from bayesmix.errors import BayesmixError
from bayesmix.report import INTERVAL

DISTRIBUTION_VARIANCE = {"logit": np.pi**2 / 3.0, "probit": 1.0, "cloglog": np.pi**2 / 6.0}  # latent residual's
LOG_LINK_COUNTS = ("poisson", "negativebinomial")


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
    supported |= family.name in (*LOG_LINK_COUNTS, "gamma") and family.link.name == "log"
    if not supported:
        raise BayesmixError(
            f"Nakagawa's R² and the ICC are implemented for gaussian (identity link), bernoulli/binomial "
            f"(logit, probit, cloglog), poisson, negativebinomial and gamma (log link) models; not for "
            f"family='{family.name}' with link='{family.link.name}'."
        )
    if design.submodels:
        raise BayesmixError(
            "A dispersion= or zi= formula makes the residual variance differ by row; R² and the ICC assume one."
        )
    if not design.blocks:
        raise BayesmixError("The model has no random effects: R² of a mixed model needs at least one block.")


def _random_variance(design, covariances) -> np.ndarray:
    """sum over blocks of mean_i z_i' Sigma z_i = trace(Sigma Z'Z / n); ``covariances`` per
    block: (S, k, k), or a function of a slice of the draws giving theirs (read chunk by chunk)."""
    total = 0.0
    for block, cov in zip(design.blocks, covariances):
        Z = np.asarray(block.Zt, dtype=float)  # (n, k)
        moment = Z.T @ Z / Z.shape[0]
        if callable(cov):
            total = total + np.concatenate([np.einsum("skl,kl->s", cov(chunk), moment) for chunk in cov.chunks])
        else:
            total = total + np.einsum("skl,kl->s", cov, moment)
    return total


class _PosteriorCovariance:
    """A block's posterior covariance per draw, computed for a slice of the draws at a time."""

    def __init__(self, post, block):
        self.post, self.block = post, block
        self.chunks = draw_chunks(post, block)

    def __call__(self, chunk: slice) -> np.ndarray:
        sd = flat_draws(self.post, f"sd_{self.block.label}")[chunk]
        return sd[:, :, None] * block_correlations(self.post, self.block, chunk) * sd[:, None, :]


def variances(fit, idata=None) -> Variances:
    """The fixed, random and residual variances of Nakagawa's R² (see the module's docstring)."""
    source = view(fit, idata, "bayesmix.r2")
    source.require()
    _check(source)
    design, family = source.design, source.family
    if source.bayes:
        post = source.idata.posterior
        beta = flat_draws(post, "beta")  # (S, p)
        covariances = [_PosteriorCovariance(post, block) for block in design.blocks]
        params = {name: flat_draws(post, name).reshape(-1) for name in family.params if name in post}
        X = design.X
    else:
        names = list(fit.fixef.index)
        X = design.X[:, [design.fixed_names.index(name) for name in names]]
        beta = fit.fixef["estimate"].to_numpy()[None, :]
        covariances = [np.asarray(block["cov"], dtype=float)[None] for block in fit.varcorr[: len(design.blocks)]]
        params = {"sigma": np.array([fit.sigma])} if fit.sigma is not None else {}
        params |= {name: np.array([value]) for name, value in fit.family_params.items()}
    fixed = np.var(beta @ X.T, axis=1, ddof=1)
    random = _random_variance(design, covariances)
    return Variances(fixed, random, _distribution_variance(source, params, fixed.shape))


def _distribution_variance(source, params: dict, shape) -> np.ndarray:
    """The residual's variance on the link scale (see the module's docstring), per draw or once."""
    family = source.family
    if family.name == "gaussian":
        return params["sigma"] ** 2
    if family.name == "gamma":
        return 1.0 / params["shape"]
    if family.name in LOG_LINK_COUNTS:
        mu0 = np.exp(_null_intercept(source))
        extra = 1.0 / params["alpha"] if family.name == "negativebinomial" else 0.0
        return np.log1p(1.0 / mu0 + extra) * np.ones(shape)
    return np.full(shape, DISTRIBUTION_VARIANCE[family.link.name])


def _null_intercept(source) -> float:
    """The intercept of the null model ``y ~ 1 + <the random terms>`` (Laplace, the same family and
    data): insight's mu0 for the count families' distribution-specific variance."""
    model = source.obj.source if not source.bayes else source.obj
    if model is None:
        raise BayesmixError(
            "R² of a count model refits its null model (y ~ 1 + random terms); this fit does not know the Model it "
            "came from (a fit read from a file). Fit the Model again and pass that fit."
        )
    terms = []
    for term in model.design.spec.random:
        bar = "|" if term.correlated else "||"
        text = f"({term.expr} {bar} {term.group})"
        terms.append(text if term.structure == "us" else f"{term.structure}{text}")
    key = ". ~ 1 + " + " + ".join(terms)
    if key not in _NULL_INTERCEPTS.setdefault(id(model), {}):  # r2 and icc of one fit: one null refit
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            null = model.update(key).fit("laplace")
        _NULL_INTERCEPTS[id(model)][key] = float(null.fixef["estimate"].iloc[0])
        weakref.finalize(model, _NULL_INTERCEPTS.pop, id(model), None)
    return _NULL_INTERCEPTS[id(model)][key]


# per Model (by id, dropped when the Model is collected): its null models' intercepts. A Model's
# data and formula do not change after it is built, so a null refit holds for its lifetime.
_NULL_INTERCEPTS: dict[int, dict[str, float]] = {}


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
