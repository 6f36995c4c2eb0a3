"""Posterior summaries of a NUTS fit: tidy tables, an lme4-style printout, the JSON contract.

The JSON contract (``to_dict``) is read by other tools; its keys are fixed::

    formula, family, link, method, nobs, ngrps{group: n}, fixef{names, estimate, se, df, statistic,
    p_value} (the tests' lists for an exact fit, df null for a Wald z test; null for NUTS), sigma,
    family_params{name: value}, thresholds{names, estimate, se} (an ordinal model's; null otherwise),
    categories{levels, reference, predictors{mu<level>: {category, fixef, varcorr, ranef}}} (a
    categorical model's, whose fixef names are mu<level>_<coefficient>; null otherwise),
    varcorr[{group, terms, sd, corr}], logLik, REMLcrit, AIC, BIC,
    isSingular, ranef{group: {levels, terms, condval{term: [...]}, condsd{term: [...]}}},
    diagnostics{max_rhat, min_ess_bulk, min_ess_tail, divergences}, converged, messages, time_s

For NUTS, estimates are posterior means and se/condsd posterior SDs; keys that do not apply
(logLik, REMLcrit, AIC, BIC, isSingular) are null.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import arviz as az
import numpy as np
import pandas as pd

from bayesmix.bayes.names import covariance_moments, flat_draws, submodel_parameters
from bayesmix.design.covariance import ONE_SD_STRUCTURES
from bayesmix.design.encode import Design, coding_notes
from bayesmix.families import Family
from bayesmix.nuts.run import Diagnostics
from bayesmix.ordinal import threshold_names
from bayesmix.report import (
    INTERVAL,
    categories_to_dict,
    category_lines,
    censoring_lines,
    family_params_to_dict,
    fixef_dict,
    format_submodels,
    format_table,
    ranef_dict,
    ranef_frames,
    shown_terms,
    structure_text,
    submodel_formula_lines,
    submodel_headings,
    submodels_to_dict,
    thresholds_to_dict,
    varcorr_contract,
)


@dataclass(frozen=True)
class NutsSummary:
    """Posterior means and SDs arranged like an lme4 fit.

    fixef: DataFrame indexed by coefficient: estimate, se, lower, upper, rhat, ess_bulk, ess_tail.
    varcorr: one dict per block: group, terms, sd (k,), corr (k, k), cov (k, k), sd_se (k,),
        corr_se (k, k): posterior means (each of sd, corr and cov averaged on its own) and SDs.
    sigma, sigma_se, sigma_var: posterior mean and SD of the residual SD, posterior mean of the
        residual variance (None when the family has no sigma).
    family_params: posterior means of the family's other parameters.
    ranef: {group: DataFrame with a (level, term) MultiIndex and columns condval, condsd (posterior
        mean and SD), lower, upper (the central ``INTERVAL`` interval)}.
    missing: the InferenceData groups the summary would read but did not find (``sample_stats``
        from variational inference); :attr:`notes` says what that leaves unknown.
    submodels: per zi= / dispersion= formula, its coefficients as ``fixef`` (link scale).
    """

    fixef: pd.DataFrame
    varcorr: list[dict]
    sigma: float | None
    family_params: dict[str, float]
    ranef: dict[str, pd.DataFrame]
    diagnostics: Diagnostics
    sigma_se: float | None = None
    sigma_var: float | None = None
    missing: tuple[str, ...] = ()
    submodels: dict[str, pd.DataFrame] = field(default_factory=dict)  # role -> its coefficients
    thresholds: pd.DataFrame | None = None  # an ordinal model's cut points (posterior mean, SD, interval)

    @property
    def notes(self) -> list[str]:
        """What the summary cannot say because the InferenceData lacks it."""
        if "sample_stats" in self.missing:
            return [
                "This InferenceData has no sample_stats (it was not made by NUTS: e.g. variational inference with "
                "pm.fit): divergences and tree depth are unknown, and R-hat and ESS describe its draws as if they "
                "were MCMC chains."
            ]
        return []


def summarize(design: Design, family: Family, idata: az.InferenceData, diagnostics: Diagnostics) -> NutsSummary:
    post = idata.posterior
    fixef = pd.DataFrame(index=pd.Index(design.fixed_names, name="term"))
    if design.fixed_names:
        draws = flat_draws(post, "beta")
        half = (1 - INTERVAL) / 2
        with np.errstate(all="ignore"):
            summary = az.summary(idata, var_names=["beta"], kind="diagnostics")
        fixef["estimate"] = draws.mean(0)
        fixef["se"] = draws.std(0, ddof=1)
        fixef["lower"] = np.quantile(draws, half, axis=0)
        fixef["upper"] = np.quantile(draws, 1 - half, axis=0)
        fixef["rhat"] = summary["r_hat"].to_numpy()
        fixef["ess_bulk"] = summary["ess_bulk"].to_numpy()
        fixef["ess_tail"] = summary["ess_tail"].to_numpy()
    varcorr, modes, sds, bounds = [], [], [], []
    half = (1 - INTERVAL) / 2
    for block in design.all_blocks:
        sd = flat_draws(post, f"sd_{block.label}")  # (S, k)
        moments = covariance_moments(post, block)  # chunk by chunk: a spatial block has many terms
        varcorr.append(
            {
                "group": block.group,
                "terms": list(block.terms),
                "sd": sd.mean(0),
                "sd_se": sd.std(0, ddof=1),
                "corr": moments["corr"],
                "corr_se": moments["corr_se"],
                "cov": moments["cov"],
            }
            | ({} if block.predictor == "mu" else {"predictor": block.predictor})
            | _structure_means(post, block)
        )
        effects = flat_draws(post, f"re_{block.label}")  # (S, M, k)
        modes.append(effects.mean(0))
        sds.append(effects.std(0, ddof=1))
        bounds.append(np.quantile(effects, [half, 1 - half], axis=0))
    ranef = ranef_frames(design, modes, sds, [b[0] for b in bounds], [b[1] for b in bounds])
    sigma = sigma_se = sigma_var = None
    predicted = submodel_parameters(design, family)
    if "sigma" in family.params and "sigma" not in predicted.values():  # a dispersion formula's sigma varies by row
        draws = flat_draws(post, "sigma")
        sigma, sigma_se, sigma_var = float(draws.mean()), float(draws.std(ddof=1)), float((draws**2).mean())
    family_params = {
        p: float(flat_draws(post, p).mean())
        for p in family.params
        if p not in ("sigma", "thresholds") and p not in predicted.values()
    }
    thresholds = None
    if family.ordinal:
        thresholds = _coefficient_table(post, "thresholds", threshold_names(design.codings.response_levels))
    submodels = {
        role: _coefficient_table(post, f"{name}_beta", design.submodels[role].fixed_names)
        for role, name in predicted.items()
    }
    missing = tuple(group for group in ("sample_stats",) if group not in idata.groups())
    return NutsSummary(
        fixef, varcorr, sigma, family_params, ranef, diagnostics, sigma_se, sigma_var, missing, submodels, thresholds
    )


def _coefficient_table(post, variable: str, names) -> pd.DataFrame:
    """Posterior mean, SD and central interval of a coefficient vector, one row per name."""
    draws = flat_draws(post, variable)
    half = (1 - INTERVAL) / 2
    table = pd.DataFrame(index=pd.Index(list(names), name="term"))
    table["estimate"], table["se"] = draws.mean(0), draws.std(0, ddof=1)
    table["lower"], table["upper"] = np.quantile(draws, half, axis=0), np.quantile(draws, 1 - half, axis=0)
    return table


def _number(value):
    return None if value is None or not np.isfinite(value) else float(value)


def to_dict(design: Design, family: Family, summary: NutsSummary, time_s: float | None) -> dict:
    """The JSON contract for a NUTS fit (see the module docstring)."""
    d = summary.diagnostics
    return {
        "formula": design.spec.text,
        "family": family.name,
        "link": family.link.name,
        "method": "nuts",
        "nAGQ": None,
        "nobs": design.nobs,
        "ngrps": design.ngrps,
        "fixef": fixef_dict(summary.fixef, design, family, summary.submodels),
        "sigma": summary.sigma,
        "family_params": family_params_to_dict(summary.family_params),
        **submodels_to_dict(summary.submodels, summary.varcorr, summary.ranef),
        "thresholds": thresholds_to_dict(summary.thresholds),
        "categories": categories_to_dict(design, family, summary.submodels, summary.varcorr, summary.ranef),
        "varcorr": varcorr_contract(summary.varcorr, family),
        "logLik": None,
        "REMLcrit": None,
        "AIC": None,
        "BIC": None,
        "isSingular": None,
        "ranef": ranef_dict(summary.ranef),
        "diagnostics": {
            "max_rhat": _number(d.max_rhat),
            "min_ess_bulk": _number(d.min_ess_bulk),
            "min_ess_tail": _number(d.min_ess_tail),
            "divergences": None if "sample_stats" in summary.missing else d.divergences,
        },
        "converged": d.converged,
        "messages": [text for _, text in d.messages()] + summary.notes,
        "time_s": time_s,
    }


def _structure_means(post, block) -> dict:
    """A structured block's structure and the posterior mean of its parameter (rho or range)."""
    kind = block.covariance.kind
    if kind == "us":
        return {}
    if kind in ONE_SD_STRUCTURES:
        return {"structure": kind}
    if kind == "toep":
        return {"structure": kind, "lags": post[f"lags_{block.label}"].mean(("chain", "draw")).values.tolist()}
    if kind == "rr":
        loadings = post[f"loadings_{block.label}"].mean(("chain", "draw")).values.tolist()
        return {"structure": kind, "rank": block.covariance.rank, "loadings": loadings}
    keys = ("rho",) if kind in ("ar1", "cs") else ("range", "smoothness") if kind == "mat" else ("range",)
    return {"structure": kind, **{key: float(post[f"{key}_{block.label}"].mean()) for key in keys}}


def _mean_varcorr_lines(summary: NutsSummary) -> list[str]:
    rows = [["Groups", "Name", "Std.Dev.", "Corr"]]
    for v in summary.varcorr:
        if v.get("predictor", "mu") != "mu":
            continue
        terms, shown = shown_terms(v)
        for j, term in enumerate(terms[:shown]):
            corr = " ".join(f"{v['corr'][j, i]:5.2f}" for i in range(j))
            if "structure" in v:  # the structure's one parameter, as the exact fit's table
                corr = f"{structure_text(v)} ({v['structure']})" if j == 0 else ""
            rows.append([v["group"] if j == 0 else "", term, f"{v['sd'][j]:.4g}", corr])
        if shown < len(terms):
            rows.append(["", f"... {len(terms) - shown} more", "", ""])
    if summary.sigma is not None:
        rows.append(["Residual", "", f"{summary.sigma:.4g}", ""])
    return format_table(rows)


def format_summary(design: Design, family: Family, summary: NutsSummary, idata: az.InferenceData) -> str:
    """A printout that reads like lme4's ``print(summary(fit))``, with R-hat and ESS columns."""
    post = idata.posterior
    sampler = post.attrs.get("bayesmix_sampler", "?")
    d = summary.diagnostics
    kind = "Linear" if family.name == "gaussian" and family.link.name == "identity" else "Generalized linear"
    how = f"NUTS ({sampler};" if "sample_stats" not in summary.missing else "an unknown method (no sample_stats;"
    lines = [
        f"Bayesian {kind.lower()} mixed model fit by {how} {d.chains} chains x {d.draws} draws)",
        f" Formula: {design.spec.text}",
        *submodel_formula_lines(design, " "),
        *censoring_lines(design, " "),
        f" Family: {family.name} ( {family.link.name} )",
        *category_lines(design, family),
        *coding_notes(design),
    ]
    if not family.categorical:  # whose effects are each category's (below)
        lines += ["", "Random effects (posterior means):", *_mean_varcorr_lines(summary)]
    else:
        lines.append("")
    groups = ", ".join(f"{g}, {n}" for g, n in design.ngrps.items())
    lines.append(f"Number of obs: {design.nobs}{'; groups:  ' + groups if groups else ''}")
    if summary.family_params:
        lines.append("Family parameters: " + ", ".join(f"{k} = {v:.4g}" for k, v in summary.family_params.items()))
    if design.fixed_names:
        lines += ["", f"Fixed effects (posterior mean, SD, {int(INTERVAL * 100)}% interval):"]
        rows = [["", "Estimate", "Est.Error", "l-95% CI", "u-95% CI", "Rhat", "Bulk_ESS", "Tail_ESS"]]
        for name, r in summary.fixef.iterrows():
            rows.append(
                [
                    name,
                    f"{r.estimate:.4g}",
                    f"{r.se:.4g}",
                    f"{r.lower:.4g}",
                    f"{r.upper:.4g}",
                    f"{r.rhat:.3f}",
                    f"{r.ess_bulk:.0f}",
                    f"{r.ess_tail:.0f}",
                ]
            )
        lines += format_table(rows, align_left=1)
    if summary.thresholds is not None:
        order = " < ".join(str(level) for level in design.codings.response_levels)
        lines += ["", f"Thresholds (response levels {order}; posterior mean, SD, 95% interval):"]
        rows = [["", "Estimate", "Est.Error", "l-95% CI", "u-95% CI"]]
        for name, r in summary.thresholds.iterrows():
            rows.append([name, f"{r.estimate:.4g}", f"{r.se:.4g}", f"{r.lower:.4g}", f"{r.upper:.4g}"])
        lines += format_table(rows, align_left=1)
    lines += format_submodels(
        summary.submodels, submodel_headings(design, family), "l-95% CI|u-95% CI", summary.varcorr
    )
    divergences = "unknown" if "sample_stats" in summary.missing else d.divergences
    lines += [
        "",
        f"Diagnostics: max R-hat {d.max_rhat:.3f}, min bulk ESS {d.min_ess_bulk:.0f}, "
        f"min tail ESS {d.min_ess_tail:.0f}, divergences {divergences}",
    ]
    lines += [f"Warning: {text}" for _, text in d.messages()]
    lines += [f"Note: {text}" for text in summary.notes]
    return "\n".join(lines)
