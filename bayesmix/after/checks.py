"""Simulation-based scaled residuals (DHARMa's), for GLMMs above all: uniform when the model is right.

For observation i with ``S`` simulated responses from the fitted model, the residual is where the
observed response falls among them: ``r_i = (#{sim < y_i} + V_i) / (S + 1)`` with ``V_i`` uniform
on (0, 1 + #{sim = y_i}), the randomised probability integral transform. If y_i and its
simulations are exchangeable (the model is right), r_i is exactly uniform on (0, 1), for counts and
binary data too, where raw or Pearson residuals are not interpretable.

Simulations (``re_form``), for an exact fit and a sampled Model alike:

- ``"unconditional"`` (the default; DHARMa's default with lme4, ``re.form = NA``): every simulated
  data set gets new random effects for the training levels, drawn from the fitted covariance (an
  exact fit) or from one posterior draw's covariance (NUTS: ``n_sim`` draws spread evenly over
  the chains, each with its own fixed effects, covariance and family parameters), then responses
  from the family. The observed data and the simulations are then exchangeable but for the
  estimation of a few variance parameters.
- ``"conditional"``: the random effects stay at their fitted values: the conditional modes (an
  exact fit) or each posterior draw's effects (NUTS: the posterior predictive).

The dispersion test compares a spread statistic of the observed data with its distribution over
the simulations (two-sided). Under unconditional simulation it is DHARMa's: the sum of squared
deviations from the simulation mean. Under conditional simulation that comparison is biased: the
fitted effects were shrunk towards the observed data, so the observed deviations from the
conditional fit are smaller than the simulated ones (by the effective number of parameters the
random effects use), and a correct model is flagged as underdispersed. The conditional test
therefore compares statistics that are computed the same way on both sides:

- exact fit: the Pearson chi-square of the conditional fit, ``sum (y - mu)^2 / Var(mu)`` with
  (beta, b) the joint penalised mode at the fitted variance parameters, for the observed data and
  for each of ``n_sim`` unconditional simulations refitted the same way (a parametric bootstrap
  that holds the variance parameters: no refit of the covariance);
- NUTS: the realised discrepancy of each posterior draw (Gelman, Meng and Stern, 1996): the
  Pearson chi-square of the observed data and of that draw's simulated data, both around that
  draw's means.

With a fitted dispersion (gaussian sigma, a negative binomial's alpha) the spread of the data is
what the fit matched, so the test is conservative there (p-values pile up towards 1); it has its
power where the family fixes the variance (Poisson, binomial). docs/calibration.md has the
rejection rates on data simulated from the model (``benchmarks/dispersion_calibration.py``).

Three tests come with the residuals: uniformity (Kolmogorov-Smirnov), dispersion (above) and
outliers (residuals in the outer 1/(S+1) of either tail, which for continuous responses means
beyond every simulation: under the model their count is binomial with probability 2/(S+1)).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import arviz as az
import numpy as np
import scipy.sparse as sp
from scipy import stats

from bayesmix.after.fit_view import view
from bayesmix.after.predict import (
    _effects_with_new_levels,
    by_predictor,
    covariance_root,
    encode,
    fixed_estimates,
    simulate_exact,
)
from bayesmix.bayes.names import flat_draws, parameter_draws
from bayesmix.design.crossprod import block_z
from bayesmix.design.linpred import linear_predictor
from bayesmix.errors import BayesmixError

RE_FORMS = ("unconditional", "conditional")


@dataclass(frozen=True)
class ScaledResiduals:
    """Scaled residuals and their tests.

    residuals: (n,) in (0, 1); fitted: (n,) predicted means (for the plot's x axis); n_sim: the
    number of simulated data sets. ks_statistic, ks_pvalue: uniformity. dispersion_ratio: observed
    over mean simulated sum of squared deviations (> 1 overdispersed, < 1 underdispersed), with its
    dispersion_pvalue (see the module docstring for the statistic of each re_form). n_outliers,
    outlier_pvalue: residuals beyond all simulations. re_form: how the simulations treated the
    random effects. zero_ratio, zero_pvalue: observed zeros over the simulations' mean number of
    zeros, and its two-sided simulation p-value (DHARMa's testZeroInflation: a ratio above 1 with a
    small p is excess zeros; NaN when neither the data nor the simulations have a zero).
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
    re_form: str = "unconditional"
    zero_ratio: float = float("nan")
    zero_pvalue: float = float("nan")

    def summary(self) -> str:
        return (
            f"Scaled residuals ({len(self.residuals)} observations, {self.n_sim} {self.re_form} simulations each)\n"
            f"  uniformity (KS): D = {self.ks_statistic:.4f}, p = {self.ks_pvalue:.4g}\n"
            f"  dispersion: ratio = {self.dispersion_ratio:.4f}, p = {self.dispersion_pvalue:.4g}\n"
            f"  outliers: {self.n_outliers}, p = {self.outlier_pvalue:.4g}"
            + (
                f"\n  zeros: ratio = {self.zero_ratio:.4f}, p = {self.zero_pvalue:.4g}"
                if np.isfinite(self.zero_ratio)
                else ""
            )
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
            f"outliers p = {self.outlier_pvalue:.3g}"
            + (f"; zeros p = {self.zero_pvalue:.3g}" if np.isfinite(self.zero_pvalue) else ""),
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


def _pearson(y: np.ndarray, mean: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """Pearson chi-square over the last axis."""
    return (((y - mean) ** 2) / np.maximum(variance, 1e-300)).sum(axis=-1)


def _family_params(fit) -> dict:
    return {"sigma": fit.sigma} if fit.sigma is not None else fit.parameters()


def _penalised_design(fit):
    """(A, p): the sparse n x (p + q) matrix [X, Z_1 R_1, ...] of the joint penalised mode, with the
    fixed-effect columns the fit estimated and each block's effects b = R u in whitened u."""
    design = fit.design
    kept = [i for i, name in enumerate(design.fixed_names) if name in fit.fixef.index]
    parts = [sp.csc_matrix(design.X[:, kept])]
    for block, v in zip(design.blocks, fit.varcorr):
        root = covariance_root(v["cov"])
        parts.append(block_z(block) @ sp.kron(sp.identity(block.n_levels), sp.csc_matrix(root)))
    return sp.hstack(parts).tocsc(), len(kept)


def _conditional_pearson(fit, responses: np.ndarray) -> np.ndarray:
    """(S,) Pearson chi-square of the conditional fit to each of ``responses`` (S, n): (beta, b) at
    the joint penalised mode given the fitted variance parameters (Henderson's equations for a
    gaussian model; penalised Newton, i.e. PIRLS, for a GLMM), as the fit's own conditional modes."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu

    design, family = fit.design, fit.family
    params = _family_params(fit)
    A, p = _penalised_design(fit)
    d = A.shape[1]
    penalty = sp.diags(np.r_[np.zeros(p), np.ones(d - p)])
    offset = 0.0 if design.offset is None else design.offset
    weights = design.weights
    if family.name == "gaussian":  # identity link: one factorisation for every data set
        WA = A if weights is None else sp.diags(weights) @ A  # precision weights: Henderson's equations in W
        lu = splu((A.T @ WA + params["sigma"] ** 2 * penalty).tocsc())
        z = lu.solve(np.ascontiguousarray(WA.T @ (responses - offset).T))
        eta = offset + (A @ z).T
        mean, variance = family.moments(eta, params, design.trials, weights)
        return _pearson(responses, mean, variance)
    kept = [i for i, name in enumerate(design.fixed_names) if name in fit.fixef.index]
    start = np.r_[fixed_estimates(fit)[kept], np.zeros(d - p)]
    modes = _penalised_modes(A, p, family, responses, design.trials, params, offset, start, weights)
    mean, variance = family.moments(offset + (A @ modes.T).T, params, design.trials)
    return _pearson(responses, mean, variance)


def _penalised_modes(A, p, family, responses, trials, params, offset, start, weights=None) -> np.ndarray:
    """(S, d) maxima of log p(y | eta = offset + A z) - |u|^2 / 2 over z = (beta, u), one per row of
    ``responses``: Newton steps (with the family's observed information), halved where the
    objective would fall, for all data sets at once."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu

    S, d = len(responses), A.shape[1]
    u_mask = np.r_[np.zeros(p), np.ones(d - p)]
    dense = A.toarray() if d <= 1000 else None

    def evaluate(Z):
        ll, d1, d2 = family.laplace_terms(offset + (A @ Z.T).T, responses, trials, params, weights)
        value = ll.sum(axis=1) - 0.5 * (u_mask * Z**2).sum(axis=1)
        return np.where(np.isfinite(value), value, -np.inf), d1, d2

    def newton_steps(gradient, weights):
        if dense is not None:
            hessian = np.matmul(dense.T[None] * weights[:, None, :], dense) + np.diag(u_mask)
            return np.linalg.solve(hessian, gradient[..., None])[..., 0]
        return np.stack(
            [splu((A.T @ sp.diags(w) @ A + sp.diags(u_mask)).tocsc()).solve(g) for g, w in zip(gradient, weights)]
        )

    Z = np.broadcast_to(start, (S, d)).copy()
    value, d1, d2 = evaluate(Z)
    active = np.ones(S, dtype=bool)
    for _ in range(100):
        steps = newton_steps((A.T @ d1.T).T - u_mask * Z, np.maximum(-d2, 1e-10))
        steps[~active] = 0.0
        scale = np.ones(S)
        for _ in range(30):  # halve each data set's step until its objective does not fall
            trial = evaluate(Z + scale[:, None] * steps)
            worse = trial[0] < value - 1e-10 * np.abs(value)
            if not worse.any():
                break
            scale[worse] /= 2
        Z = Z + scale[:, None] * steps
        value, d1, d2 = trial
        active &= np.max(np.abs(scale[:, None] * steps), axis=1) > 1e-8
        if not active.any():
            break
    return Z


def _fresh_effect_blocks(model, post, rng):
    """Per block (``all_blocks`` order) (Zt, codes, effects (S, M, k)) with new effects for every
    training level, drawn from each posterior draw's covariance: the training rows recoded as new
    levels of their own."""
    design = model.design
    new = encode(design, None, allow_new_levels=False)
    new = dataclasses.replace(
        new,
        blocks=tuple((-1 - block.codes, block.Zt) for block in design.all_blocks),
        new_levels=tuple(tuple(block.levels) for block in design.all_blocks),
    )
    return _effects_with_new_levels(design, post, new, "sample", rng)


def _simulate_nuts(model, thinned: az.InferenceData, re_form: str, rng):
    """(simulated (S, n), per-draw response mean (S, n), variance (S, n)) from a thinned posterior."""
    design, family = model.design, model.family
    post = thinned.posterior
    S = post.sizes["draw"]
    beta = flat_draws(post, "beta") if design.fixed_names else np.zeros((S, 0))
    if re_form == "conditional":
        blocks = [(b.Zt, b.codes, flat_draws(post, f"re_{b.label}")) for b in design.all_blocks]
    else:
        blocks = _fresh_effect_blocks(model, post, rng)
    mu, submodels = by_predictor(design, blocks)
    eta = linear_predictor(design.X, beta, mu, design.offset)
    submodel_X = {role: sub.X for role, sub in design.submodels.items()}
    params = parameter_draws(post, design, family, submodel_X, submodels)
    simulated = family.draw(eta, params, design.trials, rng, design.weights)
    mean, variance = family.moments(eta, params, design.trials, design.weights)
    return simulated, mean, variance


def _two_sided(observed, simulated) -> float:
    """Two-sided simulation p-value of ``observed`` (scalar or (S,), one per simulation) against
    ``simulated`` (S,)."""
    upper = (1 + np.sum(simulated >= observed)) / (len(simulated) + 1)
    lower = (1 + np.sum(simulated <= observed)) / (len(simulated) + 1)
    return float(min(1.0, 2 * min(upper, lower)))


def scaled_residuals(fit, n_sim: int = 250, re_form: str = "unconditional", random_seed=None, idata=None):
    """DHARMa-style scaled residuals of an exact fit or a sampled Model (see the module docstring).

    ``re_form``: ``"unconditional"`` (new random effects in every simulation, the default) or
    ``"conditional"`` (the fitted random effects). Returns :class:`ScaledResiduals`; ``.plot()``
    draws the two diagnostic panels.
    """
    source = view(fit, idata, user="scaled_residuals")
    if source.family.categorical:
        raise BayesmixError(
            "Scaled (quantile) residuals place each response among simulated ones, which needs an order; a "
            "categorical response has none. Check its fit by the categories' observed and simulated frequencies "
            "(az.plot_ppc of sample()'s posterior predictive) or predict(kind='probs')."
        )
    if isinstance(n_sim, bool) or not isinstance(n_sim, (int, np.integer)) or n_sim < 10:
        raise BayesmixError(f"n_sim must be a whole number >= 10, not {n_sim!r}; 250 or more is usual.")
    if re_form not in RE_FORMS:
        raise BayesmixError(f"re_form must be one of {RE_FORMS}, not {re_form!r}.")
    n_sim = int(n_sim)
    rng = np.random.default_rng(random_seed)
    source.require()
    observed = source.design.y
    if not source.bayes:
        simulated = simulate_exact(fit, n_sim, re_form, rng)
        fitted = fit.predict()
        if re_form == "conditional":  # the observed and simulated data refitted alike
            observed_stat = float(_conditional_pearson(fit, observed[None, :])[0])
            simulated_stat = _conditional_pearson(fit, simulate_exact(fit, n_sim, "unconditional", rng))
    else:
        simulated, mean, variance = _simulate_nuts(fit, _thinned(source.idata, n_sim), re_form, rng)
        fitted = source.fitted()
        if re_form == "conditional":  # realised discrepancies: each draw's own means on both sides
            observed_stat = _pearson(observed, mean, variance)
            simulated_stat = _pearson(simulated, mean, variance)
    residuals = _randomised_pit(observed, simulated, rng)
    ks = stats.kstest(residuals, "uniform")
    if re_form == "unconditional":  # DHARMa's: squared deviations from the simulation mean
        centre = simulated.mean(axis=0)
        observed_stat = float(((observed - centre) ** 2).sum())
        simulated_stat = ((simulated - centre) ** 2).sum(axis=1)
    zeros, simulated_zeros = float(np.sum(observed == 0)), np.sum(simulated == 0, axis=1)
    any_zero = zeros > 0 or simulated_zeros.any()
    tail = 1.0 / (n_sim + 1)  # beyond every simulation; with ties, the randomised share of that
    outside = int(np.sum((residuals < tail) | (residuals > 1.0 - tail)))
    return ScaledResiduals(
        residuals=residuals,
        fitted=np.asarray(fitted, dtype=float),
        n_sim=n_sim,
        ks_statistic=float(ks.statistic),
        ks_pvalue=float(ks.pvalue),
        dispersion_ratio=float(np.mean(observed_stat)) / float(np.mean(simulated_stat)),
        dispersion_pvalue=_two_sided(observed_stat, simulated_stat),
        n_outliers=outside,
        outlier_pvalue=float(stats.binomtest(outside, len(observed), 2.0 / (n_sim + 1)).pvalue),
        re_form=re_form,
        zero_ratio=zeros / max(float(simulated_zeros.mean()), 1e-300) if any_zero else float("nan"),
        zero_pvalue=_two_sided(zeros, simulated_zeros) if any_zero else float("nan"),
    )
