"""Simulation-based scaled residuals (DHARMa's), for GLMMs above all: uniform when the model is right.

For observation i with ``S`` simulated responses from the fitted model, the residual is where the
observed response falls among them: ``r_i = (#{sim < y_i} + V_i) / (S + 1)`` with ``V_i`` uniform
on (0, 1 + #{sim = y_i}), the randomised probability integral transform. If y_i and its
simulations are exchangeable (the model is right), r_i is exactly uniform on (0, 1), for counts and
binary data too, where raw or Pearson residuals are not interpretable.

Simulations: a NUTS fit uses the posterior predictive (one simulated data set per posterior draw,
thinned to ``n_sim`` draws); an exact fit draws new random effects from the fitted covariance
(``re_form="unconditional"``, as DHARMa with lme4) or keeps the conditional modes
(``re_form="conditional"``), then responses from the family with the estimated parameters.

Three tests come with them: uniformity (Kolmogorov-Smirnov), dispersion (the observed sum of
squared deviations from the simulation mean against its simulated distribution, two-sided) and
outliers (residuals in the outer 1/(S+1) of either tail, which for continuous responses means
beyond every simulation: under the model their count is binomial with probability 2/(S+1)).
"""

from __future__ import annotations

from dataclasses import dataclass

import arviz as az
import numpy as np
from scipy import stats

from bayesmix.errors import BayesmixError
from bayesmix.linpred import linear_predictor
from bayesmix.predict import conditional_modes, fixed_estimates, posterior_predict

RE_FORMS = ("unconditional", "conditional")


@dataclass(frozen=True)
class ScaledResiduals:
    """Scaled residuals and their tests.

    residuals: (n,) in (0, 1); fitted: (n,) predicted means (for the plot's x axis); n_sim: the
    number of simulated data sets. ks_statistic, ks_pvalue: uniformity. dispersion_ratio: observed
    over mean simulated sum of squared deviations (> 1 overdispersed, < 1 underdispersed), with its
    dispersion_pvalue. n_outliers, outlier_pvalue: residuals beyond all simulations.
    """

    residuals: np.ndarray
    fitted: np.ndarray
    n_sim: int
    ks_statistic: float
    ks_pvalue: float
    dispersion_ratio: float
    dispersion_pvalue: float
    n_outliers: int
    outlier_pvalue: float

    def summary(self) -> str:
        return (
            f"Scaled residuals ({len(self.residuals)} observations, {self.n_sim} simulations each)\n"
            f"  uniformity (KS): D = {self.ks_statistic:.4f}, p = {self.ks_pvalue:.4g}\n"
            f"  dispersion: ratio = {self.dispersion_ratio:.4f}, p = {self.dispersion_pvalue:.4g}\n"
            f"  outliers: {self.n_outliers}, p = {self.outlier_pvalue:.4g}"
        )

    def __repr__(self) -> str:
        return self.summary()

    def plot(self, axes=None):
        """Two panels, as DHARMa's: a uniform Q-Q plot with the tests, and residuals against the rank
        of the fitted values with their 0.25/0.5/0.75 quantiles per bin. Returns the Figure."""
        import matplotlib.pyplot as plt

        if axes is None:
            fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), layout="constrained")
        left, right = axes
        n = len(self.residuals)
        expected = (np.arange(1, n + 1) - 0.5) / n
        left.plot(expected, np.sort(self.residuals), ".", ms=3, color="C0")
        left.plot([0, 1], [0, 1], color="C3", lw=1)
        left.set(
            xlabel="expected (uniform)",
            ylabel="observed scaled residual",
            title=f"Q-Q: KS p = {self.ks_pvalue:.3g}; dispersion p = {self.dispersion_pvalue:.3g}; "
            f"outliers p = {self.outlier_pvalue:.3g}",
        )
        left.title.set_fontsize(9)
        rank = stats.rankdata(self.fitted) / n
        right.plot(rank, self.residuals, ".", ms=3, color="C0", alpha=0.6)
        edges = np.linspace(0, 1, min(10, max(3, n // 20)) + 1)
        centres = (edges[:-1] + edges[1:]) / 2
        which = np.clip(np.digitize(rank, edges[1:-1]), 0, len(centres) - 1)
        for q in (0.25, 0.5, 0.75):
            right.axhline(q, color="0.6", ls="--", lw=0.8)
            values = [
                np.quantile(self.residuals[which == b], q) if np.any(which == b) else np.nan
                for b in range(len(centres))
            ]
            right.plot(centres, values, "-", color="C3", lw=1.5)
        right.set(
            xlabel="fitted value (rank, scaled to 0-1)",
            ylabel="scaled residual",
            ylim=(0, 1),
            title="residual vs fitted: red lines should follow 0.25 / 0.5 / 0.75",
        )
        right.title.set_fontsize(9)
        return left.figure


def _randomised_pit(observed: np.ndarray, simulated: np.ndarray, rng) -> np.ndarray:
    """(n,) residuals from observed (n,) and simulated (S, n) responses."""
    below = (simulated < observed).sum(axis=0)
    ties = (simulated == observed).sum(axis=0)
    return (below + rng.uniform(0.0, 1.0 + ties)) / (simulated.shape[0] + 1)


def _thinned(idata: az.InferenceData, n_sim: int) -> az.InferenceData:
    """A one-chain posterior of ``n_sim`` draws spread evenly over all chains and draws."""
    stacked = idata.posterior.stack(sample=("chain", "draw"))
    total = stacked.sizes["sample"]
    if n_sim > total:
        raise BayesmixError(f"n_sim={n_sim} is more than the {total} posterior draws; pass n_sim <= {total}.")
    picked = stacked.isel(sample=np.linspace(0, total - 1, n_sim).round().astype(int))
    picked = picked.drop_vars(["sample", "chain", "draw"]).rename(sample="draw").expand_dims(chain=1)
    return az.InferenceData(posterior=picked.transpose("chain", "draw", ...))


def _simulate_exact(fit, n_sim: int, re_form: str, rng) -> np.ndarray:
    """(n_sim, n) responses simulated from an exact fit."""
    design, family = fit.design, fit.family
    blocks = []
    for block, v in zip(design.blocks, fit.varcorr):
        if re_form == "conditional":
            effects = conditional_modes(fit, block)
        else:  # a square root of the (possibly singular) covariance
            w, V = np.linalg.eigh(np.asarray(v["cov"]))
            root = V * np.sqrt(np.clip(w, 0.0, None))
            effects = rng.standard_normal((n_sim, block.n_levels, block.n_terms)) @ root.T
        blocks.append((block.Zt, block.codes, effects))
    eta = linear_predictor(design.X, fixed_estimates(fit), blocks, design.offset)
    mean = np.broadcast_to(family.mean(eta), (n_sim, design.nobs))
    params = {"sigma": fit.sigma} if fit.sigma is not None else dict(fit.family_params)
    return family.draw(mean, params, design.trials, rng)


def scaled_residuals(fit, n_sim: int = 250, re_form: str = "unconditional", random_seed=None, idata=None):
    """DHARMa-style scaled residuals of an exact fit or a sampled Model (see the module docstring).

    Returns :class:`ScaledResiduals`; ``.plot()`` draws the two diagnostic panels.
    """
    from bayesmix.mixedfit import MixedFit
    from bayesmix.model import Model

    if isinstance(n_sim, bool) or not isinstance(n_sim, (int, np.integer)) or n_sim < 10:
        raise BayesmixError(f"n_sim must be a whole number >= 10, not {n_sim!r}; 250 or more is usual.")
    if re_form not in RE_FORMS:
        raise BayesmixError(f"re_form must be one of {RE_FORMS}, not {re_form!r}.")
    rng = np.random.default_rng(random_seed)
    if isinstance(fit, MixedFit):
        design = fit.design
        simulated = _simulate_exact(fit, int(n_sim), re_form, rng)
        fitted = fit.predict()
    elif isinstance(fit, Model):
        design, idata = fit.design, fit._require(idata)
        thinned = _thinned(idata, int(n_sim))
        simulated = posterior_predict(fit, thinned, kind="response", random_seed=rng).values[0]
        fitted = fit.predict(idata, inplace=False).mean(("chain", "draw")).values
    else:
        raise BayesmixError(
            f"scaled_residuals takes a fit from Model.fit() or a sampled Model, not {type(fit).__name__}."
        )
    observed = design.y
    residuals = _randomised_pit(observed, simulated, rng)
    ks = stats.kstest(residuals, "uniform")
    centre = simulated.mean(axis=0)
    observed_ss = float(((observed - centre) ** 2).sum())
    simulated_ss = ((simulated - centre) ** 2).sum(axis=1)
    upper = (1 + np.sum(simulated_ss >= observed_ss)) / (len(simulated_ss) + 1)
    lower = (1 + np.sum(simulated_ss <= observed_ss)) / (len(simulated_ss) + 1)
    tail = 1.0 / (n_sim + 1)  # beyond every simulation; with ties, the randomised share of that
    outside = int(np.sum((residuals < tail) | (residuals > 1.0 - tail)))
    return ScaledResiduals(
        residuals=residuals,
        fitted=np.asarray(fitted, dtype=float),
        n_sim=int(n_sim),
        ks_statistic=float(ks.statistic),
        ks_pvalue=float(ks.pvalue),
        dispersion_ratio=observed_ss / float(simulated_ss.mean()),
        dispersion_pvalue=float(min(1.0, 2 * min(upper, lower))),
        n_outliers=outside,
        outlier_pvalue=float(stats.binomtest(outside, len(observed), 2.0 / (n_sim + 1)).pvalue),
    )
