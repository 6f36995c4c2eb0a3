"""Tidy tables for both kinds of fit: ``fixef``, ``ranef`` and ``varcorr`` as pandas DataFrames.

Each takes a :class:`~bayesmix.mixedfit.MixedFit` (from ``Model.fit``) or a sampled
:class:`~bayesmix.model.Model` (its last ``sample()`` result, or the ``idata`` passed), and gives
the same columns for both, so an exact fit and a posterior are compared like with like:

- ``fixef``: indexed by ``term``; estimate, se, lower, upper (95 %: Wald for exact fits, posterior
  quantiles for NUTS); exact fits add ``statistic`` (t or z value), NUTS fits rhat, ess_bulk, ess_tail.
- ``ranef``: a row per (group, level, term): condval, condsd, lower, upper, as lme4's
  ``as.data.frame(ranef(fit, condVar = TRUE))`` (exact fits: condval -+ 1.96 condsd; NUTS: posterior
  mean, SD and quantiles).
- ``varcorr``: as lme4's ``as.data.frame(VarCorr(fit))``: group, var1, var2, vcov, sdcor; for each
  block a row per standard deviation (var2 empty) then a row per correlation, then ``Residual``.
  NUTS fits add ``sdcor_se`` (posterior SD of the SD or correlation); their vcov is the posterior
  mean of the variance or covariance itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtri  # the normal quantile, without scipy.stats' import

from bayesmix.after.fit_view import view
from bayesmix.design.covariance import ONE_SD_STRUCTURES
from bayesmix.report import INTERVAL, shown_terms


def _source(obj, idata=None):
    """(The MixedFit itself or the posterior summary of a sampled Model, whether it is the latter)."""
    fit_view = view(obj, idata)
    return fit_view.source(), fit_view.bayes


def _wald(estimate, se):
    z = ndtri(0.5 + INTERVAL / 2)
    return estimate - z * se, estimate + z * se


def fixef(fit, idata=None) -> pd.DataFrame:
    """Fixed effects: estimate, se, lower, upper (+ statistic, or rhat and ESS), indexed by term."""
    source, bayes = _source(fit, idata)
    table = source.fixef.copy()
    if not bayes:
        table["lower"], table["upper"] = _wald(table["estimate"], table["se"])
        table = table[["estimate", "se", "lower", "upper", "statistic"]]
    return table


def ranef(fit, idata=None) -> pd.DataFrame:
    """Random effects in long form: group, level, term, condval, condsd, lower, upper."""
    source, bayes = _source(fit, idata)
    frames = []
    for group, frame in source.ranef.items():
        frame = frame.copy()
        if "lower" not in frame:
            frame["lower"], frame["upper"] = _wald(frame["condval"], frame["condsd"])
        frames.append(frame.reset_index().assign(group=group))
    columns = ["group", "level", "term", "condval", "condsd", "lower", "upper"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def varcorr(fit, idata=None) -> pd.DataFrame:
    """Variance components: group, var1, var2, vcov, sdcor (+ sdcor_se for NUTS); a zi= or
    dispersion= formula's blocks under ``<role>|<group>``, as in ``ranef``."""
    source, bayes = _source(fit, idata)
    rows = []
    for v in source.varcorr:
        terms, sd, corr, cov = v["terms"], np.asarray(v["sd"]), np.asarray(v["corr"]), np.asarray(v["cov"])
        k = len(terms)
        if v.get("structure") in ONE_SD_STRUCTURES:  # one SD and no estimated correlations: one row
            terms, k = shown_terms(v)[0], 1
        group = v["group"] if v.get("predictor", "mu") == "mu" else f"{v['predictor']}|{v['group']}"  # ranef's key
        for j in range(k):
            row = {"group": group, "var1": terms[j], "var2": None, "vcov": cov[j, j], "sdcor": sd[j]}
            if bayes:
                row["sdcor_se"] = v["sd_se"][j]
            rows.append(row)
        for i in range(k):
            for j in range(i + 1, k):
                row = {"group": group, "var1": terms[i], "var2": terms[j], "vcov": cov[j, i], "sdcor": corr[j, i]}
                if bayes:
                    row["sdcor_se"] = v["corr_se"][j, i]
                rows.append(row)
    if source.sigma is not None:
        row = {"group": "Residual", "var1": None, "var2": None, "sdcor": source.sigma}
        row["vcov"] = source.sigma_var if bayes else source.sigma**2
        if bayes:
            row["sdcor_se"] = source.sigma_se
        rows.append(row)
    columns = ["group", "var1", "var2", "vcov", "sdcor"] + (["sdcor_se"] if bayes else [])
    return pd.DataFrame(rows, columns=columns)
