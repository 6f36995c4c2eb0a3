"""Model comparison of exact fits: lme4's ``anova`` (AIC, BIC and likelihood-ratio tests), and
with one fit the type III table of its fixed effects' terms (lmerTest's ``anova``).

``anova(fit0, fit1, ...)`` sorts the fits by their number of parameters and tests each against the
one before it: Chisq = 2 (logLik_i - logLik_{i-1}) on Df = npar_i - npar_{i-1} degrees of freedom.
The fits must share the data (the same response values) and family. REML likelihoods are only
comparable between models with the same fixed effects, so REML fits with different fixed effects
are refused, unless ``refit=True`` refits them by ML (lme4's default behaviour). A variance
component tested at zero lies on the boundary of its space; the chi-square p-value is then
conservative (about twice the true one for one component), as in lme4.

Sampled models are compared out of sample instead: ``az.compare({"m0": m0.idata, "m1": m1.idata})``
(PSIS-LOO on the stored pointwise log-likelihood).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import chdtrc  # chi-square upper tail, without scipy.stats' import

from bayesmix.after.fit_view import EXACT, SAMPLED
from bayesmix.design.hypotheses import type3_contrasts
from bayesmix.errors import BayesmixError
from bayesmix.exact.kenward_roger import KenwardRoger
from bayesmix.exact.lmm import fit_lmm
from bayesmix.mixedfit import from_lmm

COLUMNS = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]


def _check_fit(name: str, fit) -> None:
    kind = getattr(type(fit), "fit_kind", None)
    if kind == SAMPLED:
        raise BayesmixError(
            f"anova compares exact fits, and '{name}' is a Model: pass model.fit('ml') (or 'laplace'). "
            "For sampled models use az.compare({'m0': m0.idata, 'm1': m1.idata}) (LOO)."
        )
    if kind != EXACT:
        raise BayesmixError(f"anova takes fits from Model.fit(); '{name}' is a {type(fit).__name__}.")


def _refit_ml(fit):
    return from_lmm(fit.design, fit.family, fit_lmm(fit.design, reml=False), ddf="none")  # for its logLik


def _same_data(first, other) -> bool:
    a, b = first.design, other.design
    same_trials = (a.trials is None and b.trials is None) or (
        a.trials is not None and b.trials is not None and np.array_equal(a.trials, b.trials)
    )
    return a.nobs == b.nobs and np.array_equal(a.y, b.y) and same_trials


def _comparable(names: list[str], fits: list, refit: bool) -> list:
    """The fits to compare (REML ones refitted by ML where ``refit``), after the checks."""
    first = fits[0]
    for name, fit in zip(names[1:], fits[1:]):
        if not _same_data(first, fit):
            raise BayesmixError(
                f"'{names[0]}' and '{name}' were fitted to different data ({first.nobs} and {fit.nobs} rows, or other "
                "response values): likelihoods are only comparable on the same observations. Drop missing rows "
                "from the data before fitting both models."
            )
        if (fit.family.name, fit.family.link.name) != (first.family.name, first.family.link.name):
            raise BayesmixError(
                f"'{names[0]}' ({first.family.name}) and '{name}' ({fit.family.name}) have different families; "
                "anova compares models of one family."
            )
    methods = {fit.method for fit in fits}
    if "REML" in methods and refit:
        return [_refit_ml(fit) if fit.method == "REML" else fit for fit in fits]
    if "REML" in methods and len(methods) > 1:
        raise BayesmixError(
            "anova cannot compare REML and ML fits. Fit every model with method='ml', or pass refit=True to "
            "refit the REML ones by ML."
        )
    if methods == {"REML"}:
        fixed = {tuple(fit.design.fixed_names) for fit in fits}
        if len(fixed) > 1 or not all(np.array_equal(fits[0].design.X, fit.design.X) for fit in fits):
            raise BayesmixError(
                "REML likelihoods are not comparable between models with different fixed effects. Fit the models "
                "with method='ml', or pass refit=True to refit them by ML (as lme4's anova does)."
            )
    return fits


def anova(*fits, refit: bool = False, ddf: str | None = None, **named_fits) -> pd.DataFrame:
    """Compare nested exact fits; one row per fit, sorted by the number of parameters. With one
    fit, its type III table (:func:`type3_table`; ``ddf``: "satterthwaite" or "kenward-roger",
    the fit's own when None, as lmerTest's ``anova(fit, ddf=)``).

    Columns: npar, AIC, BIC, logLik, deviance (-2 logLik), Chisq, Df, Pr(>Chisq) (the test against
    the row above). Fits are named ``model1``, ... or by keyword: ``anova(m0=fit0, m1=fit1)``.
    ``table.attrs["method"]`` says whether the likelihoods are ML (or Laplace) or REML.
    """
    names = [f"model{i + 1}" for i in range(len(fits))] + list(named_fits)
    fits = list(fits) + list(named_fits.values())
    if len(fits) == 1:
        _check_fit(names[0], fits[0])
        return type3_table(fits[0], ddf)
    if not fits:
        raise BayesmixError("anova takes one fit (its type III table) or several to compare, e.g. anova(fit0, fit1).")
    for name, fit in zip(names, fits):
        _check_fit(name, fit)
    fits = _comparable(names, fits, refit)
    order = sorted(range(len(fits)), key=lambda i: fits[i].df)  # stable: ties keep their order
    table = pd.DataFrame(
        {
            "npar": [fits[i].df for i in order],
            "AIC": [fits[i].aic for i in order],
            "BIC": [fits[i].bic for i in order],
            "logLik": [fits[i].loglik for i in order],
            "deviance": [-2.0 * fits[i].loglik for i in order],
        },
        index=pd.Index([names[i] for i in order], name="model"),
    )
    chisq = 2.0 * table["logLik"].diff()
    df = table["npar"].diff()
    table["Chisq"] = chisq.clip(lower=0.0)
    table["Df"] = df
    with np.errstate(invalid="ignore"):
        table["Pr(>Chisq)"] = np.where(df > 0, chdtrc(df.where(df > 0), table["Chisq"]), np.nan)
    table.attrs["method"] = "REML" if {fit.method for fit in fits} == {"REML"} else "ML"
    return table[COLUMNS]


F_COLUMNS = ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
CHISQ_COLUMNS = ["Chisq", "Df", "Pr(>Chisq)"]


def type3_table(fit, ddf: str | None = None) -> pd.DataFrame:
    """The type III tests of the fixed part's terms (:func:`bayesmix.design.hypotheses.type3_contrasts`).

    ML/REML fits: lmerTest's ``anova(fit)``, F tests with Satterthwaite's or Kenward-Roger's
    denominator df (``ddf``; the fit's own when None). Sum Sq and Mean Sq are on the residual
    variance's scale, Mean Sq = F sigma^2, F before Kenward-Roger's scaling (as lmerTest prints
    them). GLMMs: Wald chi-square tests of L beta = 0 (car's ``Anova(type = 3)``), chi-square on q df.
    """
    contrasts = type3_contrasts(fit.design)
    beta = fit.fixef["estimate"].reindex(fit.design.fixed_names).to_numpy()
    if np.isnan(beta).any():
        raise BayesmixError(
            f"A type III table needs every coefficient; this fit dropped {', '.join(fit.dropped)} (rank deficient). "
            "Remove the aliased terms from the formula."
        )
    index = pd.Index(list(contrasts), name="term")
    if fit.method not in ("REML", "ML") or fit.sigma is None:
        V = fit.vcov.to_numpy()
        chisq = [float(L @ beta @ np.linalg.solve(L @ V @ L.T, L @ beta)) for L in contrasts.values()]
        df = [L.shape[0] for L in contrasts.values()]
        table = pd.DataFrame({"Chisq": chisq, "Df": df, "Pr(>Chisq)": chdtrc(df, chisq)}, index=index)
        table.attrs["method"] = "Wald chi-square tests (type III)"
        return table
    pieces = fit.df_pieces(ddf)  # kept from the fit, or computed again
    tests = [pieces.f_test(L, beta) for L in contrasts.values()]
    sigma2 = fit.sigma**2
    table = pd.DataFrame(
        {
            "Sum Sq": [t.unscaled * sigma2 * t.numerator_df for t in tests],
            "Mean Sq": [t.unscaled * sigma2 for t in tests],
            "NumDF": [t.numerator_df for t in tests],
            "DenDF": [t.denominator_df for t in tests],
            "F value": [t.F for t in tests],
            "Pr(>F)": [t.p_value for t in tests],
        },
        index=index,
    )
    name = "Kenward-Roger's" if isinstance(pieces, KenwardRoger) else "Satterthwaite's"
    table.attrs["method"] = f"Type III Analysis of Variance Table with {name} method"
    return table[F_COLUMNS]
