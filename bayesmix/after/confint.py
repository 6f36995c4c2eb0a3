"""Intervals for every parameter of a fit, as lme4's ``confint.merMod`` names and orders them.

Rows: per block the SD of each term and the correlations of it with the later terms
(``sd[Subject:Intercept]``, ``corr[Subject:Intercept,Days]``, ``sd[Subject:Days]``: lme4's .sig01,
.sig02, .sig03), then ``sigma`` (or the family's own parameters), then the fixed effects; columns
``lower`` and ``upper``.

- ``"wald"``: estimate -+ z se for the fixed effects (the normal quantile, as lme4); NaN for the
  variance parameters, as lme4.
- ``"profile"``: profile-likelihood intervals of an LMM (:mod:`bayesmix.exact.profile`), on the
  ML deviance as lme4's.
- ``"boot"``: parametric bootstrap: ``nsim`` responses simulated from the fit with new random
  effects, the model refitted to each by the same method, percentile intervals of the refits'
  parameters (lme4's ``bootMer``, ``boot.type = "perc"``). The responses are drawn in this process
  from ``seed`` first, so the result does not depend on ``n_jobs``, the processes the refits run in.
- A sampled Model: posterior intervals, equal-tailed (``lower``, ``upper``) and highest-density
  (``hdi_lower``, ``hdi_upper``), of the same quantities.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
from scipy.special import ndtri

from bayesmix.after.fit_view import view
from bayesmix.after.predict import simulate_exact
from bayesmix.bayes.names import term_pairs
from bayesmix.design.covariance import ONE_SD_STRUCTURES
from bayesmix.design.hilbert import approximated
from bayesmix.errors import BayesmixError, ConvergenceWarning, warn
from bayesmix.exact import glmm_profile, profile, refit
from bayesmix.exact.glmm_partitions import laplace_fit
from bayesmix.exact.lmm import fit_lmm

METHODS = ("wald", "profile", "boot")


def parameter_names(fit) -> list[str]:
    """lme4's order: per block sd and correlations, sigma or the family's parameters, fixed effects."""
    return list(parameter_values(fit).index)


def parameter_values(fit) -> pd.Series:
    """The estimates of every parameter, named and ordered as :func:`confint`'s rows."""
    values = {}
    for v in fit.varcorr:
        group = v["group"] if v.get("predictor", "mu") == "mu" else f"{v['predictor']}|{v['group']}"
        terms, sd, corr = list(v["terms"]), np.asarray(v["sd"]), np.asarray(v["corr"])
        if v.get("structure") in ONE_SD_STRUCTURES:  # one SD for the block (a smooth's, a known covariance's)
            values[f"sd[{group}]"] = float(sd[0])
            continue
        for j, term in enumerate(terms):
            values[f"sd[{group}:{term}]"] = float(sd[j])
            for k in range(j + 1, len(terms)):
                values[f"corr[{group}:{term},{terms[k]}]"] = float(corr[j, k])
    if fit.sigma is not None:
        values["sigma"] = float(fit.sigma)
    values.update({name: float(value) for name, value in fit.family_params.items()})
    values.update(fit.fixef["estimate"].astype(float).to_dict())
    return pd.Series(values, dtype=float)


def confint(fit, method: str = "wald", level: float = 0.95, parm=None, nsim: int = 1000, seed=None, n_jobs=None):
    """A (parameters x [lower, upper]) table: see the module docstring. ``parm``: a name or a list
    of names to keep (the rows' names)."""
    if not 0.0 < float(level) < 1.0:
        raise BayesmixError(f"level must be between 0 and 1 (0.95 for 95 % intervals), not {level!r}.")
    source = view(fit, user="confint")
    if source.bayes:
        table = _posterior_intervals(source, level)
    elif method == "wald":
        table = _wald(fit, level)
    elif method == "boot":
        table = _bootstrap(fit, level, nsim, seed, n_jobs)
    elif method == "profile":
        table = _profile(fit, level)
    else:
        raise BayesmixError(f"method='{method}' is not an interval method; choices: {', '.join(METHODS)}.")
    return _select(table, parm)


def _profile(fit, level: float) -> pd.DataFrame:
    """Profile-likelihood intervals of an LMM (bayesmix.exact.profile), on the ML deviance as lme4's;
    of a GLMM on its Laplace (or quadrature) deviance (bayesmix.exact.glmm_profile)."""
    structured = sorted({b.covariance.kind for b in fit.design.all_blocks} - {"us"})
    if structured:
        raise BayesmixError(
            f"Profile intervals are profiled over SDs and correlations, which a {structured[0]} block ties together; "
            "use method='boot' (its refits keep the structure) or 'wald'."
        )
    if fit.nagq is not None:
        return _glmm_profile(fit, level)
    design = fit.design
    result = fit_lmm(design, reml=False)
    minimum, phi, cp = result.criterion, profile.to_phi(result), result.cross
    names = parameter_names(fit)
    table = pd.DataFrame({"lower": np.nan, "upper": np.nan}, index=names)
    for name, (index, kind) in _phi_positions(fit, cp).items():
        scale = {"sd": 0.2 * max(phi[index], 0.1 * phi[-1]), "corr": 0.1, "sigma": 0.1 * phi[-1]}[kind]
        edges = {"sd": (0.0, None), "corr": (-profile.CORRELATION_EDGE, profile.CORRELATION_EDGE)}.get(
            kind, (None, None)
        )
        curve = profile.variance_profile(result, index)
        table.loc[name] = profile.interval(curve, phi[index], minimum, level, scale, *edges)
    se = fit.fixef["se"]
    for k, name in enumerate(design.fixed_names):
        curve = profile.fixed_profile(design, result, k)
        estimate = float(result.solution.beta[k])
        table.loc[name] = profile.interval(curve, estimate, minimum, level, float(se[name]))
    table.attrs["method"] = "profile likelihood (ML deviance, as lme4)"
    return table


def _glmm_profile(fit, level: float) -> pd.DataFrame:
    design = fit.design
    if design.submodels or fit.family.categorical or fit.thresholds is not None:
        raise BayesmixError(
            "Profile intervals of a GLMM cover one linear predictor and constant family parameters; this model's "
            "zi=/dispersion= formulas, categories or thresholds are not profiled. Use method='boot' or 'wald'."
        )
    result = laplace_fit(design, fit.family, fit.nagq or 1)
    problem, phi, minimum = result.problem, glmm_profile.to_phi(result), -2.0 * result.loglik
    positions = _variance_positions([design.all_blocks[i] for i in problem.order])
    m, p = glmm_profile.variance_size(problem.layout), len(result.fixed_names)
    table = pd.DataFrame({"lower": np.nan, "upper": np.nan}, index=parameter_names(fit))
    se = np.sqrt(np.clip(np.diag(result.vcov), 0.0, None))
    for name, (index, kind) in positions.items():
        scale = 0.2 * max(phi[index], 0.1) if kind == "sd" else 0.1
        edges = (0.0, None) if kind == "sd" else (-profile.CORRELATION_EDGE, profile.CORRELATION_EDGE)
        table.loc[name] = profile.interval(
            glmm_profile.profile(result, index), phi[index], minimum, level, scale, *edges
        )
    for j, name in enumerate(result.fixed_names):
        curve = glmm_profile.profile(result, m + j)
        table.loc[name] = profile.interval(curve, phi[m + j], minimum, level, _positive(se[problem.layout.n_theta + j]))
    for j, name in enumerate(problem.auxiliary):
        index = m + p + j
        curve = glmm_profile.profile(result, index)
        bounds = profile.interval(curve, phi[index], minimum, level, _positive(se[problem.layout.n_theta + p + j]))
        table.loc[name] = sorted(problem.transform(name)[0](np.asarray(bounds, dtype=float)))
    table.attrs["method"] = (
        "profile likelihood (Laplace deviance, as lme4)"
        if result.nagq == 1
        else (f"profile likelihood (adaptive Gauss-Hermite deviance, nAGQ = {result.nagq})")
    )
    return table


def _positive(se: float) -> float:
    """A standard error as a profile's first step, 0.1 where the fit gave none."""
    return float(se) if np.isfinite(se) and se > 0 else 0.1


def _variance_positions(blocks) -> dict[str, tuple[int, str]]:
    """{row name: (its index in a profile's phi, "sd" or "corr")}: blocks in lme4's order there."""
    positions, start = {}, 0
    for block in blocks:
        k, terms = block.n_terms, block.terms
        for j, term in enumerate(terms):
            positions[f"sd[{block.group}:{term}]"] = (start + j, "sd")
        for pair, (j, m) in enumerate(zip(*np.triu_indices(k, 1))):
            positions[f"corr[{block.group}:{terms[j]},{terms[m]}]"] = (start + k + pair, "corr")
        start += k + k * (k - 1) // 2
    return positions


def _phi_positions(fit, cp) -> dict[str, tuple[int, str]]:
    """{row name: (its index in profile.to_phi's vector, its kind)}: blocks in lme4's order there."""
    blocks = [fit.design.all_blocks[i] for i in cp.order]
    positions = _variance_positions(blocks)
    positions["sigma"] = (sum(b.n_terms + b.n_terms * (b.n_terms - 1) // 2 for b in blocks), "sigma")
    return positions


def _select(table: pd.DataFrame, parm) -> pd.DataFrame:
    if parm is None:
        return table
    names = [parm] if isinstance(parm, str) else list(parm)
    unknown = [name for name in names if name not in table.index]
    if unknown:
        raise BayesmixError(f"parm names {unknown[0]!r}, which is not a parameter; the rows: {', '.join(table.index)}.")
    return table.loc[names]


def _wald(fit, level: float) -> pd.DataFrame:
    values = parameter_values(fit)
    z = ndtri(0.5 + level / 2.0)
    table = pd.DataFrame({"lower": np.nan, "upper": np.nan}, index=values.index)
    fixef = fit.fixef
    table.loc[fixef.index, "lower"] = (fixef["estimate"] - z * fixef["se"]).to_numpy()
    table.loc[fixef.index, "upper"] = (fixef["estimate"] + z * fixef["se"]).to_numpy()
    table.attrs["method"] = "Wald"
    return table


_BOOT: dict = {}  # the fit and responses the bootstrap's forked processes read (no pickling of the fit)


def _bootstrap(fit, level: float, nsim: int, seed, n_jobs) -> pd.DataFrame:
    draws = bootstrap(fit, nsim, seed, n_jobs)
    low, high = np.nanquantile(draws.to_numpy(), [(1.0 - level) / 2.0, (1.0 + level) / 2.0], axis=0)
    table = pd.DataFrame({"lower": low, "upper": high}, index=draws.columns)
    table.attrs.update(method="parametric bootstrap (percentile)", **draws.attrs)
    return table


def bootstrap(fit, nsim: int = 1000, seed=None, n_jobs=None) -> pd.DataFrame:
    """(nsim x parameters): the parametric bootstrap's refits (lme4's ``bootMer`` with every
    parameter), columns as :func:`confint`'s rows; a failed refit's row is NaN."""
    if isinstance(nsim, bool) or not isinstance(nsim, (int, np.integer)) or nsim < 2:
        raise BayesmixError(f"nsim must be a whole number of bootstrap samples >= 2 (1000 is usual), not {nsim!r}.")
    responses = simulate_exact(fit, int(nsim), "unconditional", np.random.default_rng(seed))
    _BOOT.update(fit=fit, responses=np.asarray(responses))
    jobs = min(int(n_jobs or os.cpu_count() or 1), int(nsim))
    chunks = np.array_split(np.arange(int(nsim)), jobs)
    try:
        if jobs == 1:
            results = [_refits(chunks[0])]
        else:
            with multiprocessing.get_context("fork").Pool(jobs) as pool:
                results = pool.map(_refits_one_thread, chunks)
    finally:
        _BOOT.clear()
    draws = np.vstack([values for values, _ in results])
    unconverged = sum(count for _, count in results)
    failed = int(np.isnan(draws).any(axis=1).sum())
    if failed or unconverged:
        warn(
            f"Of {nsim} bootstrap refits {failed} failed (left out of the intervals) and {unconverged} stopped short "
            "of the optimiser's tolerance (kept, as lme4's bootMer keeps them).",
            ConvergenceWarning,
        )
    table = pd.DataFrame(draws, columns=parameter_names(fit))
    table.attrs.update(nsim=int(nsim), failed=failed, unconverged=unconverged)
    return table


def _refits_one_thread(indices: np.ndarray) -> tuple[np.ndarray, int]:
    """:func:`_refits` in a worker process with one BLAS thread: the workers already use the cores,
    and each one's BLAS threads on top of them thrash (slower than one process)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _refits(indices)


def _refits(indices: np.ndarray) -> tuple[np.ndarray, int]:
    """Each simulated response's refit, as :func:`parameter_values` (NaN where the refit fails), and
    how many did not converge. Singular refits are no news in a bootstrap: their warnings are not
    repeated. An ML/REML fit refits on its cross-products with the response's swapped
    (:mod:`bayesmix.exact.refit`); other fits through their type's ``refit``."""
    fit, responses = _BOOT["fit"], _BOOT["responses"]
    names = parameter_names(fit)
    out, unconverged = np.full((len(indices), len(names)), np.nan), 0
    lmm = _lmm_refitter(fit, responses[indices]) if fit.nagq is None else None
    for row, i in enumerate(indices):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if lmm is not None:
                    converged, values = lmm(row)
                else:
                    again = _refit(fit, responses[i])
                    converged, values = again.converged, parameter_values(again).reindex(names).to_numpy()
            except (BayesmixError, np.linalg.LinAlgError, ValueError):
                continue
        unconverged += not converged
        out[row] = values
    return out, unconverged


def _lmm_refitter(fit, responses: np.ndarray):
    """row -> (converged, parameter values) of an ML/REML fit's refit to ``responses[row]``."""
    design = fit.design
    result = fit_lmm(design, reml=fit.method == "REML", start=fit.theta.to_numpy())
    columns, _, _ = design.fixed_columns()
    products = refit.response_products(design, columns, responses)
    position = {block_index: k for k, block_index in enumerate(result.cross.order)}

    def one(row: int) -> tuple[bool, np.ndarray]:
        again = refit.refit(result, products, row)
        sigma = again.solution.sigma
        values = []
        for i, block in enumerate(design.blocks):
            T = again.factorization.factors[position[i]]
            cov = sigma**2 * T @ T.T
            sd = np.sqrt(np.diag(cov))
            for j in range(block.n_terms):
                values.append(sd[j])
                values.extend(cov[j, k] / (sd[j] * sd[k]) if sd[j] * sd[k] > 0 else 0.0 for k in range(j + 1, len(sd)))
        return again.optimizer.converged, np.array([*values, sigma, *again.solution.beta])

    return one


def _refit(fit, y: np.ndarray):
    """The fit's model, by its method, on response ``y`` (same rows, trials and weights): the fit
    type's own ``refit`` (the exact engines sit below this module, their results' type above it)."""
    return fit.refit(replace(fit.design, y=np.asarray(y, dtype=float)))


def _posterior_intervals(source, level: float) -> pd.DataFrame:
    import arviz as az

    draws = posterior_parameters(source)
    low, high = np.quantile(draws.to_numpy(), [(1.0 - level) / 2.0, (1.0 + level) / 2.0], axis=0)
    hdi = np.array([az.hdi(draws[column].to_numpy(), hdi_prob=level) for column in draws.columns])
    table = pd.DataFrame(
        {"lower": low, "upper": high, "hdi_lower": hdi[:, 0], "hdi_upper": hdi[:, 1]}, index=draws.columns
    )
    table.attrs["method"] = "posterior (equal-tailed and highest-density)"
    return table


def posterior_parameters(source) -> pd.DataFrame:
    """(draws x parameters): the posterior's SDs, correlations, sigma or family parameters and
    fixed effects, named as :func:`confint`'s rows."""
    return group_parameters(source.idata.posterior, source.design, source.family)


def group_parameters(post, design, family) -> pd.DataFrame:
    """:func:`posterior_parameters` of any group of draws with the posterior's variables (a
    posterior, or the ``prior`` group of ``Model.prior_predictive()``)."""
    columns = {}

    def flat(name):
        values = post[name].values
        return values.reshape(values.shape[0] * values.shape[1], -1)

    for block in design.all_blocks:
        group = block.group if block.predictor == "mu" else f"{block.predictor}|{block.group}"
        sd = flat(f"sd_{block.label}")
        if block.covariance.kind in ONE_SD_STRUCTURES:  # one SD for the block
            columns[f"sd[{group}]"] = sd[:, 0]
            continue
        if approximated(block):  # many positions: the structure's parameters, not every pair
            columns[f"sd[{group}]"] = sd[:, 0]
            for key in ("range", "smoothness"):
                if f"{key}_{block.label}" in post:
                    columns[f"{key}[{group}]"] = flat(f"{key}_{block.label}")[:, 0]
            continue
        corr = flat(f"cor_{block.label}") if block.n_terms > 1 else None
        pairs = term_pairs(block)
        for j, term in enumerate(block.terms):
            columns[f"sd[{group}:{term}]"] = sd[:, j]
            for k in range(j + 1, block.n_terms):
                columns[f"corr[{group}:{term},{block.terms[k]}]"] = corr[:, pairs.index((j, k))]
    for name in family.params:
        if name in post and post[name].ndim == 2:
            columns[name] = flat(name)[:, 0]
    if design.fixed_names:
        beta = flat("beta")
        columns.update({name: beta[:, j] for j, name in enumerate(design.fixed_names)})
    return pd.DataFrame(columns)
