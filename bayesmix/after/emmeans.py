"""Estimated marginal means and their contrasts (the emmeans package's reference-grid semantics).

The reference grid crosses every level of every factor of the fixed part with each covariate at
its mean over the data (``at`` fixes values, or a subset of levels). An estimated marginal mean of
a combination of the ``specs`` factors (within each ``by`` combination) averages the grid's rows
over the other factors with equal weights: a linear function L beta, with standard error
sqrt(L V L'). An exact LMM's df are Satterthwaite's or Kenward-Roger's for each L (emmeans'
``lmer.df``), a GLMM's are asymptotic (z); ``type="response"`` back-transforms a GLMM's means
through the inverse link (the SE by the delta method, the interval's bounds transformed). A
sampled model's means are L beta per posterior draw, summarised by median and HPD interval.

``contrast(emm, method)`` compares the means within each ``by`` group: ``"pairwise"`` (every pair,
first minus second), ``"trt.vs.ctrl"`` (each level minus the first), ``"poly"`` (orthogonal
polynomial contrasts with integer coefficients) or ``{name: coefficients}``; p-values adjusted by
Tukey's studentized range (emmeans' default for pairs), emmeans' approximation to Dunnett's
(``"dunnettx"``, its default for trt.vs.ctrl), Holm, Bonferroni, or not at all (the default for
poly and custom contrasts, as emmeans').
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri, stdtr, stdtrit

from bayesmix.after.fit_view import view
from bayesmix.design.encode import encode_new_data
from bayesmix.errors import BayesmixError, did_you_mean

ADJUSTMENTS = ("tukey", "dunnettx", "holm", "bonferroni", "none")


@dataclass(frozen=True)
class EMMeans:
    """Marginal means: ``table`` (specs and by columns, emmean, SE, df, lower, upper), the linear
    functions ``L`` (rows x coefficients) behind them, and what contrasts need to recompute."""

    table: pd.DataFrame
    L: np.ndarray
    specs: tuple[str, ...]
    by: tuple[str, ...]
    fit: object
    level: float
    type: str
    ddf: str | None = None
    # a sampled model's: (draws, rows) of each mean on the link scale; None for an exact fit
    draws: np.ndarray | None = None

    def __repr__(self) -> str:
        return self.table.to_string(index=False)


def emmeans(
    fit,
    specs,
    by=None,
    at=None,
    type: str = "link",  # noqa: A002 - emmeans' name
    level: float = 0.95,
    ddf: str | None = None,
) -> EMMeans:
    """Estimated marginal means of ``specs`` (a factor or a list), within each ``by`` level.
    ``ddf``: an exact LMM's df, "satterthwaite" or "kenward-roger" (emmeans' ``lmer.df``; its
    standard errors then use the adjusted covariance); None: the fit's own ddf (R's emmeans
    defaults to Kenward-Roger, bayesmix's fits to Satterthwaite, as lmerTest's). A sampled model
    (its last ``sample()``): each mean's posterior draws, summarised by their median and highest
    posterior density interval, as emmeans on a brms fit."""
    source = view(fit, user="emmeans")
    source.require()
    _check_fit(source)
    specs, by = _formula_specs(specs, by)
    factors, covariates = _grid_variables(fit.design)
    if not factors:
        raise BayesmixError(
            "Marginal means are over the levels of the fixed part's factors; this model's fixed part has none. "
            "A covariate's effect is its coefficient (fit.fixef), or predictions at chosen values (fit.predict)."
        )
    for name in (*specs, *by):
        if name not in factors:
            hint = did_you_mean(name, factors)
            raise BayesmixError(f"'{name}' is not a factor of the fixed part.{hint} Factors: {', '.join(factors)}.")
    grid = _reference_grid(fit.design, factors, covariates, at or {})
    X = encode_new_data(fit.design, grid, random_effects=False).X
    keys = [*by, *specs]
    groups = grid.groupby(keys, sort=False, observed=True).indices
    rows = pd.DataFrame(list(groups), columns=keys)[[*specs, *by]]
    L = np.stack([X[index].mean(axis=0) for index in groups.values()])
    if type not in ("link", "response"):
        raise BayesmixError(f"type='{type}': choose 'link' or 'response'.")
    if source.bayes:
        draws = _beta_draws(source) @ L.T
        scale = fit.family.link.inverse(draws, np) if type == "response" else draws
        table = _posterior_summary(rows, scale, level, "emmean")
        return EMMeans(table, L, specs, by, fit, level, type, None, draws)
    table = _estimates(fit, L, rows, level, ddf=ddf)
    if type == "response":
        table = _on_response_scale(fit, table, level)
    return EMMeans(table, L, specs, by, fit, level, type, ddf)


def _beta_draws(source) -> np.ndarray:
    """(draws, p) posterior draws of the fixed effects, chains stacked."""
    beta = source.idata.posterior["beta"].values
    return beta.reshape(-1, beta.shape[-1])


def _posterior_summary(rows: pd.DataFrame, draws: np.ndarray, level: float, name: str) -> pd.DataFrame:
    """Per column of ``draws``: the median and the highest posterior density interval (emmeans'
    summary of an MCMC fit: ``lower.HPD``, ``upper.HPD``)."""
    import arviz as az

    table = rows.copy()
    table[name] = np.median(draws, axis=0)
    hdi = np.array([az.hdi(draws[:, j], hdi_prob=level) for j in range(draws.shape[1])]).reshape(-1, 2)
    table["lower"], table["upper"] = hdi[:, 0], hdi[:, 1]
    table.attrs["summary"] = f"posterior median, {level:.0%} highest posterior density interval"
    return table


def contrast(emm: EMMeans, method="pairwise", adjust: str | None = None) -> pd.DataFrame:
    """Contrasts of the marginal means within each ``by`` group; see the module docstring."""
    ratios = emm.type == "response"
    if ratios and emm.fit.family.link.name not in ("log", "logit"):
        raise BayesmixError(
            f"Contrasts on the response scale are ratios of exp(link) (odds or rates): the {emm.fit.family.link.name} "
            "link has none. Contrast the means on the link scale (type='link')."
        )
    if emm.draws is not None:
        return _posterior_contrast(emm, method, ratios)
    if adjust is None:  # emmeans' defaults: Tukey for pairs, Dunnett's (approximated) against a control
        adjust = (
            {"pairwise": "tukey", "trt.vs.ctrl": "dunnettx"}.get(method, "none") if isinstance(method, str) else "none"
        )
    if adjust not in ADJUSTMENTS:
        raise BayesmixError(f"adjust='{adjust}' is not available; choices: {', '.join(ADJUSTMENTS)}.")
    parts = []
    for labels, index, by_values in _contrast_rows(emm):
        names, weights = _contrast_weights(method, labels, " / " if ratios else " - ")
        rows = pd.DataFrame({"contrast": names, **by_values})
        table = _estimates(emm.fit, weights @ emm.L[index], rows, emm.level, contrast=True, ddf=emm.ddf)
        table["p_value"] = _adjusted(table, adjust, len(index), method)
        if ratios:  # exp of a difference of logs: an odds ratio (logit) or a rate ratio (log), SE by the delta method
            table["estimate"] = np.exp(table["estimate"])
            table["SE"] = table["estimate"] * table["SE"]
        parts.append(table)
    out = pd.concat(parts, ignore_index=True)
    out.attrs.update(adjust=adjust, scale=emm.type)
    return out


def _posterior_contrast(emm: EMMeans, method, ratios: bool) -> pd.DataFrame:
    """Contrasts of a sampled model's means, draw by draw: their median and HPD interval (exp of
    the link-scale difference for ratios); no p-values, so no adjustment, as emmeans on brms."""
    parts = []
    for labels, index, by_values in _contrast_rows(emm):
        names, weights = _contrast_weights(method, labels, " / " if ratios else " - ")
        rows = pd.DataFrame({"contrast": names, **by_values})
        differences = emm.draws[:, index] @ weights.T
        parts.append(_posterior_summary(rows, np.exp(differences) if ratios else differences, emm.level, "estimate"))
    out = pd.concat(parts, ignore_index=True)
    out.attrs.update(adjust="none (posterior draws)", scale=emm.type, summary=parts[0].attrs["summary"])
    return out


def _contrast_rows(emm: EMMeans):
    """Per ``by`` group: the means' labels, their rows in the table, and the group's by values."""
    for _, index in _by_groups(emm):
        labels = [
            " ".join(_label(emm, name, v) for name, v in zip(emm.specs, row))
            for row in emm.table.iloc[index][list(emm.specs)].to_numpy()
        ]
        yield labels, index, {name: emm.table.iloc[index[0]][name] for name in emm.by}


def _label(emm: EMMeans, factor: str, level) -> str:
    """A mean's name in a contrast, as emmeans writes it: the level, prefixed with the factor's
    name where the level is a number (``Product1 - Product2``, but ``A - B``)."""
    text = str(level)
    try:
        float(text)
    except ValueError:
        return text
    return f"{factor}{text}"


def pairs(emm: EMMeans, adjust: str = "tukey") -> pd.DataFrame:
    """emmeans' ``pairs``: every pairwise difference, Tukey-adjusted by default."""
    return contrast(emm, "pairwise", adjust)


def _check_fit(source) -> None:
    fit = source.obj
    if fit.family.category_response or fit.design.submodels:
        raise BayesmixError(
            "emmeans() reads a model with one linear predictor (no category response, zi= or dispersion=)."
        )


def _formula_specs(specs, by) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """emmeans' formula specs, ``"~ Product"`` or ``"~ Product | Information"`` (factors joined by
    ``+`` or ``*``), or names and lists as they are. A left-hand side (``"pairwise ~ Product"``,
    which R's emmeans answers with means and contrasts at once) is refused, naming the two calls."""
    if not (isinstance(specs, str) and "~" in specs):
        return _names(specs), _names(by) if by is not None else ()
    left, right = specs.split("~", 1)
    if left.strip():
        raise BayesmixError(
            f"'{specs}': bayesmix computes the means and their contrasts in two calls: "
            f"emm = bayesmix.emmeans(fit, '~{right}'); bayesmix.contrast(emm, '{left.strip()}')."
        )
    means, _, groups = right.partition("|")
    split = [name.strip() for name in means.replace("*", "+").split("+") if name.strip()]
    grouped = [name.strip() for name in groups.replace("*", "+").split("+") if name.strip()]
    if by is not None and grouped:
        raise BayesmixError("Give the by factors once: in the formula after '|', or as by=, not both.")
    return tuple(split), tuple(grouped) if grouped else (_names(by) if by is not None else ())


def _names(value) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _grid_variables(design) -> tuple[list[str], list[str]]:
    """(the factors, the numeric variables) the fixed part reads."""
    factors, covariates = [], []
    for term in design.codings.fixed_matrix.terms.values():
        for component in getattr(term, "components", []):
            for name in component.var_names:
                if name in design.codings.levels and name not in factors:
                    factors.append(name)
                elif name not in design.codings.levels and name in design.data.columns and name not in covariates:
                    covariates.append(name)
    return factors, covariates


def _reference_grid(design, factors, covariates, at: dict) -> pd.DataFrame:
    unknown = [name for name in at if name not in factors + covariates]
    if unknown:
        raise BayesmixError(f"at= names '{unknown[0]}', which the fixed part does not use.")
    values = {}
    for name in factors:
        levels = list(design.codings.levels[name])
        values[name] = (
            [level for level in levels if str(level) in {str(v) for v in np.atleast_1d(at[name])}]
            if name in at
            else levels
        )
    for name in covariates:
        values[name] = list(np.atleast_1d(at[name])) if name in at else [float(design.data[name].astype(float).mean())]
    grid = pd.DataFrame(list(itertools.product(*values.values())), columns=list(values))
    for name in factors:
        grid[name] = pd.Categorical(grid[name], categories=list(design.codings.levels[name]))
    return grid


def _tested(fit, L: np.ndarray, ddf: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(the covariance of beta the SEs use, each row's df): for an ML/REML fit Satterthwaite's df or
    Kenward-Roger's (with its adjusted covariance), ``ddf`` or the fit's own; for a GLMM the Wald
    covariance and infinite df (z)."""
    names = fit.design.fixed_names
    V = fit.vcov.reindex(index=names, columns=names).to_numpy()
    if fit.sigma is None or fit.method not in ("REML", "ML") or fit.nagq is not None:
        return V, np.full(len(L), np.inf)
    pieces = fit.df_pieces(ddf)  # kept from the fit, or computed again
    return pieces.adjusted, np.array([pieces.contrast_df(row) for row in L])


def _estimates(
    fit, L: np.ndarray, rows: pd.DataFrame, level: float, contrast: bool = False, ddf: str | None = None
) -> pd.DataFrame:
    beta = fit.fixef["estimate"].reindex(fit.design.fixed_names).to_numpy()
    V, df = _tested(fit, L, ddf)
    estimate, se = L @ beta, np.sqrt(np.einsum("ij,jk,ik->i", L, V, L))
    table = rows.copy()
    table["estimate" if contrast else "emmean"] = estimate
    table["SE"], table["df"] = se, df
    if contrast:
        table["statistic"] = estimate / se
    else:
        half = _quantile(level, df) * se
        table["lower"], table["upper"] = estimate - half, estimate + half
    return table


def _quantile(level: float, df: np.ndarray) -> np.ndarray:
    p = 0.5 + level / 2.0
    return np.where(np.isinf(df), ndtri(p), stdtrit(np.where(np.isinf(df), 1.0, df), p))


def _on_response_scale(fit, table: pd.DataFrame, level: float) -> pd.DataFrame:
    link = fit.family.link
    eta = table["emmean"].to_numpy()
    step = 1e-6 * np.maximum(1.0, np.abs(eta))
    slope = (link.inverse(eta + step, np) - link.inverse(eta - step, np)) / (2 * step)
    out = table.copy()
    out["emmean"] = link.inverse(eta, np)
    out["SE"] = np.abs(slope) * table["SE"]
    out["lower"], out["upper"] = (
        link.inverse(table["lower"].to_numpy(), np),
        link.inverse(table["upper"].to_numpy(), np),
    )
    return out


def _by_groups(emm: EMMeans):
    if not emm.by:
        return [((), np.arange(len(emm.table)))]
    return list(emm.table.groupby(list(emm.by), sort=False, observed=True).indices.items())


def _contrast_weights(method, labels: list[str], between: str = " - ") -> tuple[list[str], np.ndarray]:
    k = len(labels)
    if method == "pairwise":
        pairs_ = list(itertools.combinations(range(k), 2))
        weights = np.zeros((len(pairs_), k))
        for row, (i, j) in enumerate(pairs_):
            weights[row, i], weights[row, j] = 1.0, -1.0
        return [f"{labels[i]}{between}{labels[j]}" for i, j in pairs_], weights
    if method == "trt.vs.ctrl":
        weights = np.hstack([-np.ones((k - 1, 1)), np.eye(k - 1)])
        return [f"{labels[i]}{between}{labels[0]}" for i in range(1, k)], weights
    if method == "poly":
        return _polynomial(k)
    if isinstance(method, dict):
        weights = np.array([np.asarray(w, dtype=float) for w in method.values()])
        if weights.shape[1:] != (k,):
            raise BayesmixError(f"Each custom contrast needs {k} coefficients, one per mean ({', '.join(labels)}).")
        return list(method), weights
    raise BayesmixError(f"method={method!r}: choose 'pairwise', 'trt.vs.ctrl', 'poly' or {{name: coefficients}}.")


def _polynomial(k: int) -> tuple[list[str], np.ndarray]:
    """R's contr.poly, scaled to the smallest whole numbers (emmeans' poly.emmc)."""
    x = np.arange(1.0, k + 1.0)
    basis = np.vander(x - x.mean(), k, increasing=True)
    q, _ = np.linalg.qr(basis)
    names = ["linear", "quadratic", "cubic", "quartic"] + [f"degree {d}" for d in range(5, k)]
    rows = []
    for degree in range(1, k):
        column = q[:, degree] / np.min(np.abs(q[:, degree][np.abs(q[:, degree]) > 1e-8]))
        rows.append(np.round(column * np.sign(column[-1]), 10))
    return names[: k - 1], np.array(rows)


def _adjusted(table: pd.DataFrame, adjust: str, means: int, method) -> np.ndarray:
    t, df = np.abs(table["statistic"].to_numpy()), table["df"].to_numpy()
    raw = 2.0 * np.where(np.isinf(df), ndtr(-t), stdtr(np.where(np.isinf(df), 1.0, df), -t))
    if adjust == "none":
        return raw
    if adjust == "bonferroni":
        return np.minimum(raw * len(raw), 1.0)
    if adjust == "holm":
        order = np.argsort(raw)
        scaled = np.maximum.accumulate(raw[order] * (len(raw) - np.arange(len(raw))))
        out = np.empty_like(raw)
        out[order] = np.minimum(scaled, 1.0)
        return out
    from scipy.stats import studentized_range  # noqa: PLC0415 - only these adjustments need scipy.stats

    df = np.where(np.isinf(df), 1e7, df)  # the range's distribution at df = 1e7 is the asymptotic one
    if adjust == "dunnettx":
        return _dunnett_approximation(t, len(raw), df, raw, studentized_range)
    if method != "pairwise":
        raise BayesmixError(
            "Tukey's adjustment is for pairwise comparisons; choose dunnettx, holm, bonferroni or none."
        )
    return studentized_range.sf(t * np.sqrt(2.0), means, df)


def _dunnett_approximation(t, k: int, df, raw, studentized_range) -> np.ndarray:
    """emmeans' ``dunnettx``: one minus a weighted average of two distribution functions of |t|
    over k contrasts, Tukey's studentized range for the number of means m with m (m - 1) / 2 = k
    (weight (k - 1) / k) and Sidak's product (1 - p)^k (weight 1 / k): Dunnett's two-sided
    many-to-one adjustment without its multivariate t integral."""
    if k == 1:
        return raw
    weight = (k - 1.0) / k
    tukey = 1.0 - studentized_range.sf(np.sqrt(2.0) * t, (1.0 + np.sqrt(1.0 + 8.0 * k)) / 2.0, df)
    sidak = (1.0 - raw) ** k
    return 1.0 - (weight * tukey + (1.0 - weight) * sidak)
