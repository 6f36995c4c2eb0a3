"""``MixedFit``: the result of ``Model.fit`` (ML / REML), read like an lme4 fit.

Fields follow lme4: ``fixef`` (estimate, SE, t value), ``varcorr`` (SD and correlation per block),
``sigma``, ``theta`` (lme4's relative covariance factor, lme4's order), ``loglik``,
``reml_criterion``, ``deviance``, ``aic``, ``bic``, ``nobs``, ``ngrps``, ``is_singular``, ``ranef``
(conditional modes with conditional SDs), the optimiser summary, ``summary()`` and ``to_dict()``
(the JSON contract of :mod:`bayesmix.nuts.summary`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy.special import ndtr, stdtr  # t and normal tails, without scipy.stats' import

from bayesmix import ordinal
from bayesmix.after import confint as intervals
from bayesmix.after import verbs
from bayesmix.after.fit_view import EXACT
from bayesmix.after.io import save
from bayesmix.after.predict import conditional_modes, fit_predict
from bayesmix.design.covariance import ThetaLayout
from bayesmix.design.encode import Design, coding_notes
from bayesmix.design.linpred import linear_predictor
from bayesmix.errors import BayesmixError, ConvergenceWarning, SingularFitWarning, did_you_mean, warn
from bayesmix.exact.glmm import GlmmResult, fit_glmm
from bayesmix.exact.kenward_roger import kenward_roger
from bayesmix.exact.lmm import LmmResult, fit_lmm
from bayesmix.exact.optimize import OptimizerSummary
from bayesmix.exact.satterthwaite import variance_derivatives
from bayesmix.families import Family
from bayesmix.report import (
    categories_to_dict,
    category_lines,
    censoring_lines,
    family_params_to_dict,
    fixef_dict,
    format_submodels,
    format_table,
    format_varcorr,
    ranef_dict,
    ranef_frames,
    submodel_formula_lines,
    submodel_headings,
    submodels_to_dict,
    threshold_lines,
    thresholds_to_dict,
    varcorr_contract,
)

SINGULAR_TOLERANCE = 1e-4  # lme4's isSingular tolerance on theta's diagonal


@dataclass
class MixedFit:
    """An exact fit: ML or REML of a linear mixed model, Laplace or quadrature of a GLMM."""

    fit_kind: ClassVar[str] = EXACT  # what bayesmix.after.fit_view tells the kinds of fit apart by
    method: str
    design: Design
    family: Family
    fixef: pd.DataFrame
    vcov: pd.DataFrame
    varcorr: list[dict]
    sigma: float | None
    family_params: dict[str, float]
    theta: pd.Series
    loglik: float
    reml_criterion: float | None
    deviance: float
    df: int
    ranef: dict[str, pd.DataFrame]
    is_singular: bool
    converged: bool
    optimizer: object
    dropped: tuple[str, ...] = ()
    messages: list[str] = field(default_factory=list)
    time_s: float | None = None
    nagq: int | None = None  # quadrature points per level of a GLMM fit (1: Laplace); None for an LMM
    submodels: dict[str, pd.DataFrame] = field(default_factory=dict)  # zi= / dispersion= coefficients
    thresholds: pd.DataFrame | None = None  # an ordinal model's cut points (estimate, se, statistic)
    # the joint covariance of what the category probabilities read (delta method): an ordinal model's
    # fixed effects and cut points, a categorical model's coefficients of every category
    # what an interval for a category probability needs
    ordinal_vcov: pd.DataFrame | None = None
    # how the fixed effects' tests read their df: "satterthwaite", "kenward-roger", "residual" or
    # "none" (an LMM's t tests, lmerTest's ddf=), or "asymptotic" (a GLMM's Wald z tests, glmer's)
    ddf: str | None = None
    # an ML/REML fit's df pieces for its ddf (Satterthwaite's VarianceDerivatives or KenwardRoger),
    # kept for its F tests (anova(fit)) and emmeans; None where not computed (other ddf, a fit read
    # from a file)
    ddf_pieces: object | None = field(default=None, repr=False, compare=False)
    # the Model this fit came from (its arguments and data: update() starts there); a fit read
    # from a file gets the Model rebuilt from the file's rows
    source: object | None = field(default=None, repr=False, compare=False)

    def parameters(self, submodel_X: dict | None = None, submodel_blocks: dict | None = None) -> dict:
        """The family's parameters: the constant ones (:attr:`family_params`), and per row those a zi=
        or dispersion= formula predicts: on the training rows, with its blocks' conditional modes, or
        on new rows, ``submodel_X`` ({role: X}) and ``submodel_blocks`` ({role: [(Zt, codes, modes)]},
        none at the population level)."""
        out = dict(self.family_params)
        if self.thresholds is not None:
            out["thresholds"] = self.thresholds["estimate"].to_numpy()
        for role, table in self.submodels.items():
            name = self.family.submodel_parameter(role)
            if submodel_X is None:
                X = self.design.submodels[role].X
                blocks = [
                    (b.Zt * b.mask(role), b.codes, conditional_modes(self, b))
                    for b in self.design.submodels[role].blocks
                ]
            else:
                X, blocks = submodel_X[role], (submodel_blocks or {}).get(role, [])
            eta = linear_predictor(np.asarray(X), table["estimate"].to_numpy(), blocks)
            out[name] = self.family.parameter_link(name).inverse(eta, np)
        return out

    @property
    def nobs(self) -> int:
        return self.design.nobs

    @property
    def ngrps(self) -> dict[str, int]:
        return self.design.ngrps

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.df

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + np.log(self.nobs) * self.df

    def summary(self) -> str:
        """A printout that reads like lme4's ``summary(fit)``."""
        title = {
            "REML": "Linear mixed model fit by REML",
            "ML": "Linear mixed model fit by maximum likelihood",
            "Laplace": "Generalized linear mixed model fit by maximum likelihood (Laplace approximation)",
            "AGQ": "Generalized linear mixed model fit by maximum likelihood (Adaptive Gauss-Hermite Quadrature, "
            f"nAGQ = {self.nagq})",
        }
        lines = [
            title[self.method],
            f" Family: {self.family.name} ( {self.family.link.name} )",
            *category_lines(self.design, self.family),
            f"Formula: {self.design.spec.text}",
            *submodel_formula_lines(self.design),
            *censoring_lines(self.design),
            *coding_notes(self.design),
            "",
        ]
        lines.append(f"     AIC      BIC   logLik {'REMLcrit' if self.method == 'REML' else 'deviance'}")
        crit = self.reml_criterion if self.method == "REML" else self.deviance
        lines.append(f"{self.aic:8.1f} {self.bic:8.1f} {self.loglik:8.1f} {crit:8.1f}")
        mean = not self.family.categorical  # a categorical model's effects are its categories' (below)
        lines += ["", "Random effects:", *format_varcorr(self.varcorr, "mu", self.sigma)] if mean else [""]
        groups = ", ".join(f"{g}, {n}" for g, n in self.ngrps.items())
        lines.append(f"Number of obs: {self.nobs}, groups:  {groups}")
        if self.family_params:
            lines.append("Family parameters: " + ", ".join(f"{k} = {v:.4g}" for k, v in self.family_params.items()))
        if mean:
            lines += fixef_lines(self.fixef, self.ddf)
        lines += threshold_lines(self.thresholds, self.design)
        lines += format_submodels(self.submodels, submodel_headings(self.design, self.family), "", self.varcorr)
        lines += [f"Note: {m}" for m in self.messages]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The JSON contract (keys as in :mod:`bayesmix.nuts.summary`)."""
        return {
            "formula": self.design.spec.text,
            "family": self.family.name,
            "link": self.family.link.name,
            "method": self.method.lower(),
            "nAGQ": self.nagq,
            "nobs": self.nobs,
            "ngrps": self.ngrps,
            "fixef": fixef_dict(self.fixef, self.design, self.family, self.submodels),
            "sigma": self.sigma,
            "family_params": family_params_to_dict(self.family_params),
            **submodels_to_dict(self.submodels, self.varcorr, self.ranef),
            "thresholds": thresholds_to_dict(self.thresholds),
            "categories": categories_to_dict(self.design, self.family, self.submodels, self.varcorr, self.ranef),
            "varcorr": varcorr_contract(self.varcorr, self.family),
            "logLik": self.loglik,
            "REMLcrit": self.reml_criterion,
            "AIC": self.aic,
            "BIC": self.bic,
            "isSingular": self.is_singular,
            "ranef": ranef_dict(self.ranef),
            "diagnostics": None,
            "converged": self.converged,
            "messages": list(self.messages),
            "time_s": self.time_s,
        }

    def predict(self, data=None, re_form="conditional", allow_new_levels=False, kind="mean") -> np.ndarray:
        """(n,) predicted means: with the conditional modes (``re_form="conditional"``) or at the
        population level (``"population"``). New levels, when allowed, get the population level.
        ``kind="link"``: the linear predictor (lme4's ``type = "link"``); ``"zi"``/``"dispersion"``:
        each row's zero-inflation (hurdle) probability or dispersion parameter (glmmTMB's
        ``type = "zprob"``/``"disp"``)."""
        return fit_predict(self, data, re_form, allow_new_levels, kind)

    def coef(self) -> dict[str, pd.DataFrame]:
        """lme4's ``coef``: per grouping factor, each level's coefficients (:func:`bayesmix.coef`)."""
        return verbs.coef(self)

    def fitted(self) -> np.ndarray:
        """lme4's ``fitted``: the conditional means of the training rows."""
        return verbs.fitted(self)

    def residuals(self, type: str = "response", scaled: bool = False) -> np.ndarray:  # noqa: A002 - lme4's name
        """lme4's ``residuals``: ``"response"``, ``"pearson"`` or ``"deviance"`` (``scaled``: over sigma)."""
        return verbs.residuals(self, type, scaled)

    def simulate(self, nsim: int = 1, seed=None, re_form: str = "population") -> pd.DataFrame:
        """lme4's ``simulate``: ``nsim`` responses per training row (:func:`bayesmix.simulate`)."""
        return verbs.simulate(self, nsim, seed, re_form)

    def satterthwaite(self):
        """The Satterthwaite pieces of an ML/REML fit (:class:`bayesmix.exact.satterthwaite.VarianceDerivatives`)."""
        return self.df_pieces("satterthwaite")

    def df_pieces(self, ddf: str | None = None):
        """What an ML/REML fit's tests of L beta read for ``ddf`` ("satterthwaite" or "kenward-roger";
        None: the fit's own, Satterthwaite's where the fit has neither): the covariance its standard
        errors use (``adjusted``), ``contrast_df(L)`` and ``f_test(L, beta)``. Kept from the fit, or
        computed again (a fit made with another ddf or read from a file)."""
        own = self.ddf if self.ddf in TEST_DDF else "satterthwaite"
        ddf = own if ddf is None else check_ddf(ddf)
        if ddf not in TEST_DDF:
            raise BayesmixError(f"ddf='{ddf}' has no df pieces; choose one of {', '.join(TEST_DDF)}.")
        if ddf == own and self.ddf_pieces is not None:
            return self.ddf_pieces
        return lmm_ddf_pieces(fit_lmm(self.design, reml=self.method == "REML"), ddf)

    def refit(self, design: Design) -> MixedFit:
        """The same model by the same method on another design of the same shape (a simulated
        response: the parametric bootstrap), its tests left out."""
        if self.nagq is None:  # an ML/REML fit of the exact LMM engine
            result = fit_lmm(design, reml=self.method == "REML", start=self.theta.to_numpy())
            return from_lmm(design, self.family, result, ddf="none")
        return from_glmm(design, self.family, fit_glmm(design, self.family, self.nagq or 1))

    def confint(self, method: str = "wald", level: float = 0.95, parm=None, nsim: int = 1000, seed=None, n_jobs=None):
        """lme4's ``confint``: intervals for every parameter (:func:`bayesmix.confint`)."""
        return intervals.confint(self, method, level, parm, nsim, seed, n_jobs)

    def update(self, formula: str | None = None, data=None, method: str | None = None, **arguments) -> MixedFit:
        """lme4's ``update``: this fit's model with some arguments changed (``formula`` in R's update
        syntax, ``". ~ . + age"``; ``data``; any other argument of Model), fitted again by this
        fit's method (or ``method``) and, for an LMM, its ``ddf``."""
        if self.source is None:
            raise BayesmixError("This fit does not know the Model it came from; update the Model and fit it again.")
        model = self.source.update(formula, data, **arguments)
        method = (method or self.method).lower()
        nagq = self.nagq if method == "agq" else None
        ddf = self.ddf if self.ddf in DDF_CHOICES else "satterthwaite"
        return model.fit(method, nAGQ=nagq, ddf=ddf)

    def save(self, path):
        """Write this fit (estimates, model specification, training rows) to one netCDF file;
        ``bayesmix.load(path)`` gives it back, and ``predict`` then gives identical results."""
        return save(self, path)

    def __repr__(self) -> str:
        return self.summary()


def theta_names(design: Design, order) -> list[str]:
    """lme4's theta names: ``group.term`` on the diagonal, ``group.row.col`` below it; a structured
    block's own parameters (``group.sd``, ``group.rho`` of an ar1 block)."""
    names, blocks = [], design.all_blocks
    for i in order:
        block = blocks[i]
        group = block.group if block.predictor == "mu" else f"{block.predictor}|{block.group}"
        names += [f"{group}.{name}" for name in block.covariance.parameter_names(block.terms)]
    return names


@dataclass(frozen=True)
class _Estimates:
    """What an exact engine hands over; per-block lists are in lme4's block order."""

    method: str
    beta: np.ndarray
    vcov: np.ndarray
    fixed_names: tuple[str, ...]
    dropped: tuple[str, ...]
    factors: list[np.ndarray]
    order: list[int]
    layout: ThetaLayout
    scale: float  # sigma for LMMs (covariances are scale^2 T T'), 1 for GLMMs
    sigma: float | None
    family_params: dict[str, float]
    loglik: float
    reml_criterion: float | None
    deviance: float
    df: int
    modes: list[np.ndarray]
    mode_sds: list[np.ndarray]
    optimizer: OptimizerSummary
    singular_theta: np.ndarray | None = None  # theta to judge singularity on; None: optimizer.x
    nagq: int | None = None
    submodels: dict[str, pd.DataFrame] = field(default_factory=dict)
    thresholds: pd.DataFrame | None = None
    ordinal_vcov: pd.DataFrame | None = None
    coefficient_df: np.ndarray | None = None  # an LMM's t tests' df per coefficient; None: Wald z tests
    ddf: str | None = None
    ddf_pieces: object | None = None


def _assemble(design: Design, family: Family, e: _Estimates, time_s: float | None) -> MixedFit:
    """Build the MixedFit (design order for varcorr and ranef); warn about singular fits and
    non-convergence."""
    position = {block_index: k for k, block_index in enumerate(e.order)}
    tested = e.vcov if e.ddf_pieces is None else e.ddf_pieces.adjusted  # Kenward-Roger's se: adjusted
    fixef = coefficient_table(e.beta, tested, e.fixed_names, e.coefficient_df)
    varcorr, blocks = [], design.all_blocks
    for i, block in enumerate(blocks):
        T = e.factors[position[i]]
        cov = e.scale**2 * T @ T.T
        sd = np.sqrt(np.diag(cov))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.where(np.outer(sd, sd) > 0, cov / np.outer(sd, sd), 0.0)
        np.fill_diagonal(corr, 1.0)
        varcorr.append(
            {"group": block.group, "terms": list(block.terms), "sd": sd, "corr": corr, "cov": cov}
            | ({} if block.predictor == "mu" else {"predictor": block.predictor})
            | _structure_entry(block.covariance, e.layout, e.optimizer.x, position[i], e.scale)
        )
    theta_values = e.optimizer.x[: e.layout.n_theta]
    judged = theta_values if e.singular_theta is None else e.singular_theta[: e.layout.n_theta]
    is_singular = bool(np.any(np.abs(judged[e.layout.is_diagonal()]) < SINGULAR_TOLERANCE))
    messages = []
    if e.dropped:
        messages.append(
            f"fixed-effect model matrix is rank deficient so dropping {len(e.dropped)} "
            f"column(s): {', '.join(e.dropped)}"
        )
    if is_singular:
        messages.append(
            "boundary (singular) fit: a variance component is estimated as 0 or a correlation "
            "as +-1; see the varcorr table"
        )
        warn(messages[-1], SingularFitWarning)
    if not e.optimizer.converged:
        messages.append(
            f"the optimiser did not converge: projected gradient {e.optimizer.gradient} ({e.optimizer.message})"
        )
        warn(messages[-1], ConvergenceWarning)
    modes = [e.modes[position[i]] for i in range(len(blocks))]
    sds = [e.mode_sds[position[i]] for i in range(len(blocks))]
    return MixedFit(
        method=e.method,
        design=design,
        family=family,
        fixef=fixef,
        vcov=pd.DataFrame(e.vcov, index=fixef.index, columns=fixef.index),
        varcorr=varcorr,
        sigma=e.sigma,
        family_params=e.family_params,
        theta=pd.Series(theta_values, index=theta_names(design, e.order), name="theta"),
        loglik=e.loglik,
        reml_criterion=e.reml_criterion,
        deviance=e.deviance,
        df=e.df,
        ranef=ranef_frames(design, modes, sds),
        is_singular=is_singular,
        converged=e.optimizer.converged,
        optimizer=e.optimizer,
        dropped=e.dropped,
        messages=messages,
        time_s=time_s,
        nagq=e.nagq,
        submodels=e.submodels,
        thresholds=e.thresholds,
        ordinal_vcov=e.ordinal_vcov,
        ddf=e.ddf,
        ddf_pieces=e.ddf_pieces,
    )


def _structure_entry(covariance, layout: ThetaLayout, x: np.ndarray, index: int, scale: float = 1.0) -> dict:
    """A structured block's varcorr entries: its structure and its parameters as the reports name
    them (ar1's and cs's ``rho``, a distance structure's ``range``, toep's ``lags``); nothing for
    an unstructured block."""
    if covariance.kind == "us":
        return {}
    theta = layout.split(np.asarray(x[: layout.n_theta], dtype=float))[index]
    described = covariance.describe(theta)
    if "loadings" in described:  # rr's loadings on the data's scale, as the SDs (theta's are relative to sigma)
        described["loadings"] = (scale * np.asarray(described["loadings"])).tolist()
    return {"structure": covariance.kind, **described}


def coefficient_table(beta, vcov, names, df=None) -> pd.DataFrame:
    """estimate, se, statistic, df and p_value per coefficient: t tests with ``df`` (an LMM's), Wald z
    tests without (df NaN), as lmerTest's and glmer's summaries; ``df`` all NaN: no p-values (lme4's
    lmer summary, ddf="none")."""
    se = np.sqrt(np.diag(vcov))
    statistic = beta / se
    if df is None:
        df, p = np.full(len(beta), np.nan), 2.0 * ndtr(-np.abs(statistic))
    else:
        p = 2.0 * stdtr(df, -np.abs(statistic))
    columns = {"estimate": beta, "se": se, "statistic": statistic, "df": df, "p_value": p}
    return pd.DataFrame(columns, index=pd.Index(names, name="term"))


DDF_METHODS = {
    "satterthwaite": "Satterthwaite's method",
    "kenward-roger": "Kenward-Roger's method (standard errors adjusted)",
    "residual": "the residual df (n - p)",
}


def fixef_lines(fixef: pd.DataFrame, ddf: str | None) -> list[str]:
    """The fixed-effects table: lmerTest's (df, t value, Pr(>|t|)) for an LMM's t tests, lme4's
    (t value alone) with ddf="none", glmer's (z value, Pr(>|z|)) for Wald z tests."""
    t_tests = ddf in DDF_METHODS
    tested = t_tests or ddf == "asymptotic"
    letter = "z" if ddf == "asymptotic" else "t"
    head = ["", "Estimate", "Std. Error", *(["df"] if t_tests else []), f"{letter} value"]
    rows = [head + ([f"Pr(>|{letter}|)"] if tested else [])]
    for name, r in fixef.iterrows():
        row = [str(name), f"{r.estimate:.4g}", f"{r.se:.4g}", *([f"{r.df:.2f}"] if t_tests else [])]
        rows.append(row + [f"{r.statistic:.3f}"] + ([_p_text(r.p_value)] if tested else []))
    note = [f"t tests use {DDF_METHODS[ddf]}"] if t_tests else []
    return ["", "Fixed effects:", *format_table(rows, align_left=1), *note]


def _p_text(p: float) -> str:
    """A p-value as R prints it: 3 significant digits, and "< 2e-16" below double precision's reach."""
    return "< 2e-16" if p < 2.2e-16 else f"{p:.3g}"


DDF_CHOICES = ("satterthwaite", "kenward-roger", "residual", "none")
TEST_DDF = ("satterthwaite", "kenward-roger")  # the methods with df per contrast
DDF_ALIASES = {"kr": "kenward-roger", "kenwardroger": "kenward-roger", "satt": "satterthwaite"}


def lmm_ddf_pieces(result: LmmResult, ddf: str):
    """Satterthwaite's derivatives or Kenward-Roger's adjusted covariance at an ML/REML result."""
    return kenward_roger(result) if ddf == "kenward-roger" else variance_derivatives(result)


def lmm_coefficient_df(result: LmmResult, ddf: str):
    """(each coefficient's denominator df: Satterthwaite's (lmerTest's default) or Kenward-Roger's,
    the residual n - p, or NaN (no p-values, lme4's own summary); the df pieces, or None)."""
    p = len(result.solution.beta)
    if ddf == "residual":
        return np.full(p, float(result.cross.n - p)), None
    if ddf == "none" or not p:
        return np.full(p, np.nan), None
    pieces = lmm_ddf_pieces(result, ddf)
    return np.array([pieces.contrast_df(e) for e in np.eye(p)]), pieces


def check_ddf(ddf) -> str:
    key = str(ddf).lower().replace("_", "-").replace(" ", "-")
    key = DDF_ALIASES.get(key, key)
    if key not in DDF_CHOICES:
        raise BayesmixError(
            f"ddf='{ddf}' is not a method for the fixed effects' df.{did_you_mean(key, DDF_CHOICES)} "
            f"Choices: {', '.join(DDF_CHOICES)}."
        )
    return key


def from_lmm(
    design: Design, family: Family, result: LmmResult, time_s: float | None = None, ddf: str = "satterthwaite"
) -> MixedFit:
    """A MixedFit from an ML/REML result, its t tests with ``ddf``'s df."""
    sol, cp = result.solution, result.cross
    criterion = result.criterion
    ddf = check_ddf(ddf)
    coefficient_df, derivatives = lmm_coefficient_df(result, ddf)
    return _assemble(
        design,
        family,
        _Estimates(
            method="REML" if result.reml else "ML",
            beta=sol.beta,
            vcov=sol.vcov,
            fixed_names=result.fixed_names,
            dropped=result.dropped,
            factors=result.factorization.factors,
            order=list(cp.order),
            layout=cp.layout,
            scale=sol.sigma,
            sigma=sol.sigma,
            family_params={},
            loglik=-criterion / 2.0,
            reml_criterion=criterion if result.reml else None,
            deviance=result.ml_deviance,
            df=len(result.fixed_names) + cp.layout.n_theta + 1,
            modes=sol.modes,
            mode_sds=sol.mode_sds,
            optimizer=result.optimizer,
            singular_theta=result.scaled_theta,
            coefficient_df=coefficient_df,
            ddf=ddf,
            ddf_pieces=derivatives,
        ),
        time_s,
    )


def from_glmm(design: Design, family: Family, result: GlmmResult, time_s: float | None = None) -> MixedFit:
    """A MixedFit from a Laplace result (deviance = -2 log L)."""
    problem = result.problem
    theta, beta, params = result.estimates()
    n_theta, p = problem.layout.n_theta, len(beta)
    modes, sds = result.modes()
    submodels = _submodel_tables(design, family, result)
    predicted = {family.submodel_parameter(role) for role in submodels}
    params = {name: value for name, value in params.items() if name not in predicted and name != "thresholds"}
    return _assemble(
        design,
        family,
        _Estimates(
            method=_glmm_method(family, result),
            beta=beta,
            vcov=result.vcov[n_theta : n_theta + p, n_theta : n_theta + p],
            fixed_names=result.fixed_names,
            dropped=result.dropped,
            factors=problem.layout.factors(theta),
            order=list(problem.order),
            layout=problem.layout,
            scale=1.0,
            sigma=None,
            family_params=params,
            loglik=result.loglik,
            reml_criterion=None,
            deviance=-2.0 * result.loglik,
            df=len(result.optimizer.x),
            modes=modes,
            mode_sds=sds,
            optimizer=result.optimizer,
            nagq=result.nagq,
            submodels=submodels,
            thresholds=_threshold_table(design, family, result),
            ordinal_vcov=_ordinal_vcov(design, family, result),
            ddf="asymptotic",
        ),
        time_s,
    )


def _threshold_table(design: Design, family: Family, result: GlmmResult) -> pd.DataFrame | None:
    """An ordinal model's thresholds with SEs by the delta method from the optimiser's
    unconstrained (c_1, log gaps) coordinates, named ``1|2``, ``2|3``... as clmm names them."""
    if not family.ordinal:
        return None
    problem = result.problem
    start = problem.layout.n_theta + problem.X.shape[1]
    for name, size in zip(problem.auxiliary, problem.auxiliary_sizes):
        if name == "thresholds":
            free = result.optimizer.x[start : start + size]
            to_thresholds, _, jacobian = problem.threshold_transform
            J = jacobian(free)
            vcov = J @ result.vcov[start : start + size, start : start + size] @ J.T
            estimate = to_thresholds(free)
            se = np.sqrt(np.diag(vcov))
            names = ordinal.threshold_names(design.codings.response_levels)
            return pd.DataFrame(
                {"estimate": estimate, "se": se, "statistic": estimate / se}, index=pd.Index(names, name="threshold")
            )
        start += size
    return None


def _ordinal_vcov(design: Design, family: Family, result: GlmmResult) -> pd.DataFrame | None:
    """The joint covariance of what a category response's probabilities read: the fixed effects and
    an ordinal model's cut points (the optimiser's covariance of (beta, the thresholds' unconstrained
    coordinates) through the thresholds' Jacobian), or a categorical model's coefficients of every
    category (``mu<level>_<coefficient>``, in the outer vector after theta)."""
    if family.categorical:
        problem = result.problem
        start = problem.layout.n_theta + problem.X.shape[1]
        index = np.arange(start, start + sum(problem.auxiliary_sizes))
        names = [f"{role}_{name}" for role in family.params for name in design.submodels[role].fixed_names]
        return pd.DataFrame(result.vcov[np.ix_(index, index)], index=names, columns=names)
    if not family.ordinal:
        return None
    problem = result.problem
    n_theta, p = problem.layout.n_theta, problem.X.shape[1]
    start = n_theta + p
    for name, size in zip(problem.auxiliary, problem.auxiliary_sizes):
        if name == "thresholds":
            break
        start += size
    free = result.optimizer.x[start : start + size]
    J = np.zeros((p + problem.threshold_transform[2](free).shape[0], p + size))
    J[:p, :p] = np.eye(p)
    J[p:, p:] = problem.threshold_transform[2](free)
    index = np.r_[np.arange(n_theta, n_theta + p), np.arange(start, start + size)]
    names = [*result.fixed_names, *ordinal.threshold_names(design.codings.response_levels)]
    return pd.DataFrame(J @ result.vcov[np.ix_(index, index)] @ J.T, index=names, columns=names)


def _glmm_method(family: Family, result: GlmmResult) -> str:
    """How the Laplace engine's fit reads: a gaussian model (sigma predicted by a dispersion formula)
    is exact ML unless that formula has random effects or rows are censored, whose integral the
    Laplace approximation takes."""
    random = any(Z.nnz for Z in result.problem.auxiliary_Z.values())  # effects in a dispersion formula
    if family.name == "gaussian" and not random and result.problem.censoring is None:
        return "ML"
    return "Laplace" if result.nagq == 1 else "AGQ"


def _submodel_tables(design: Design, family: Family, result: GlmmResult) -> dict[str, pd.DataFrame]:
    """{role: the coefficients (estimate, se, z statistic) of its zi= / dispersion= formula}, read
    from the outer vector after (theta, beta), where the Laplace fit estimated them."""
    problem = result.problem
    start = problem.layout.n_theta + problem.X.shape[1]
    positions = {}
    for name, size in zip(problem.auxiliary, problem.auxiliary_sizes):
        positions[name] = slice(start, start + size)
        start += size
    tables = {}
    for role, predictor in design.submodels.items():
        where = positions[family.submodel_parameter(role)]
        estimate = result.optimizer.x[where]
        se = np.sqrt(np.diag(result.vcov)[where])
        tables[role] = pd.DataFrame(
            {"estimate": estimate, "se": se, "statistic": estimate / se},
            index=pd.Index(predictor.fixed_names, name="term"),
        )
    return tables
