"""``bayesmix.Model``: ties the stages together (formula -> design -> PyMC model -> NUTS -> results).

The formula is parsed and the data encoded once, in the constructor, so every user mistake is
reported before any PyMC work; the PyMC model is built on first use and reused.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from bayesmix.after.fit_view import SAMPLED
from bayesmix.after.io import save as save_model
from bayesmix.after.predict import add_predictions, posterior_predict
from bayesmix.bayes.priors import Prior, resolve_priors
from bayesmix.design.encode import Design, as_pandas, build_design, family_design, formula_for_data
from bayesmix.design.formula import parse_formula, parse_submodel, update_formula
from bayesmix.design.hilbert import with_hilbert_bases
from bayesmix.design.known import with_known_covariances
from bayesmix.design.statistics import StatsDesign, build_stats_design, is_dask_frame
from bayesmix.errors import BayesmixError, did_you_mean
from bayesmix.exact.glmm_partitions import check_family, laplace_fit
from bayesmix.exact.lmm import fit_lmm
from bayesmix.families import Family, get_family
from bayesmix.mixedfit import MixedFit, check_ddf, from_glmm, from_lmm

if TYPE_CHECKING:
    import arviz as az
    import pymc as pm

    from bayesmix.bayes.built import BuiltModel
    from bayesmix.nuts.summary import NutsSummary

FIT_METHODS = ("reml", "ml", "laplace", "agq")
DEFAULT_NAGQ = 10  # fit("agq") without nAGQ: enough points that the estimates no longer move


def _sampled():
    """The Bayesian half (bayesmix/sampled.py), loaded on first use: building a model and fitting
    it exactly never import PyMC, PyTensor, JAX or ArviZ (tests/test_import_light.py)."""
    return importlib.import_module("bayesmix.sampled")


class Model:
    """A mixed-effects model written in lme4 syntax against a pandas DataFrame.

    Parameters
    ----------
    formula: e.g. ``"Reaction ~ Days + (Days | Subject)"`` (see docs/formula.md).
    data: pandas DataFrame; it is read, never modified.
    family: ``gaussian``, ``bernoulli``, ``binomial``, ``poisson``, ``negativebinomial``, ``t``,
        ``gamma`` or ``beta``. link: another link than the family's default, by name.
    priors: ``{parameter name: bayesmix.Prior(...)}``; see :meth:`priors` for the names.
    categorical: columns to treat as factors: a list, or ``{column: [level order]}``.
    missing: ``"drop"`` (rows with NaN in a used column, with a warning) or ``"raise"``.
    offset: a known term of the linear predictor with coefficient 1, as lme4's ``offset=``: a column
        name, an expression of columns (``"log(exposure)"``) or one number per row; it adds to any
        ``offset(...)`` terms of the formula.
    contrasts: ``{factor column: contrast}`` (``"contr.sum"``, ``"contr.helmert"``, ``"contr.poly"``,
        ``"contr.treatment"``), as lme4's ``contrasts=``; an ordered pandas Categorical gets
        ``contr.poly`` by default, as in R.
    weights: prior weights, as lme4's/glmmTMB's ``weights=``: a column name, an expression of
        columns or one positive number per row. Gaussian: precision weights (a row's residual
        variance is sigma^2 / w). Binomial with a proportion response: the number of trials (lme4's
        idiom). Other families: each row's log-likelihood counts w times (glmmTMB).
    zi: a one-sided formula (``"~ x"``) for the zero-inflation probability (``zi``) of a
        zero-inflated family, or the zero probability (``hu``) of a hurdle family, on the logit
        scale: glmmTMB's ``ziformula``, brms's ``zi ~ x``. Fixed effects only, for now.
    dispersion: a one-sided formula for the family's dispersion parameter (``sigma``, ``alpha``,
        ``shape`` or ``phi``) on the log scale: glmmTMB's ``dispformula``, brms's ``sigma ~ x``.
    censored: a column of censoring codes, brms's ``cens()``: ``"none"``, ``"left"`` (the value is
        at most y), ``"right"`` (more than y), ``"interval"`` (between y and the ``upper=`` column);
        or brms's 0, -1, 1, 2. Gaussian, poisson and gamma; sample() (NUTS).
    cov: known covariances between a grouping factor's levels, ``{"species": A}`` with A a
        DataFrame whose index and columns are the levels (a phylogeny's or pedigree's correlation
        matrix): the term ``(1 | species)`` then has effects N(0, s^2 A), brms's ``gr(species,
        cov = A)``, lme4qtl's relmat; both engines.
    thresholds: an ordinal family's cut points: ``"flexible"`` (one free cut point each, the
        default) or ``"equidistant"`` (c_k = c_1 + (k - 1) spacing), clmm's and brms's
        ``threshold=``.
    hsgp: how sample() represents a distance structure's Gaussian process (``exp``, ``gau``,
        ``ou``, ``mat``): ``"auto"`` (the exact Cholesky factor up to 300 positions, PyMC's
        Hilbert-space approximation above), True, False (always exact), or ``{"m": basis functions
        per coordinate, "c": boundary factor}`` (brms's ``gp(..., k, c)``); see
        docs/spatial_covariance.md. Exact fits (fit()) are never approximated.
    progress: with a Dask DataFrame, report the pass over its partitions: True (a line on stderr)
        or a function ``progress(done, total)`` called as each partition finishes.
    """

    fit_kind = SAMPLED  # what bayesmix.after.fit_view tells the kinds of fit apart by

    def __init__(
        self,
        formula: str,
        data,
        family="gaussian",
        priors=None,
        categorical=None,
        link=None,
        missing="drop",
        offset=None,
        contrasts=None,
        weights=None,
        zi=None,
        dispersion=None,
        censored=None,
        upper=None,
        thresholds=None,
        cov=None,
        hsgp="auto",
        progress=None,
    ):
        # what update() starts from: the call's arguments, the data as given (only read, never changed)
        self._arguments = dict(
            formula=formula,
            data=data,
            family=family,
            priors=priors,
            categorical=categorical,
            link=link,
            missing=missing,
            offset=offset,
            contrasts=contrasts,
            weights=weights,
            zi=zi,
            dispersion=dispersion,
            censored=censored,
            upper=upper,
            thresholds=thresholds,
            cov=cov,
            hsgp=hsgp,
            progress=progress,
        )
        self.family: Family = get_family(family, link)
        if thresholds is not None:  # an ordinal family's cut points: "flexible" or "equidistant" (clmm's)
            self.family = self.family.with_thresholds(thresholds)
        if zi is not None:  # glmmTMB's family = nbinom2, ziformula = ~ x: the zero-inflated family
            self.family = self.family.with_zero_process()
        data = as_pandas(data)
        self.spec, data = formula_for_data(parse_formula(formula), data, offset, weights)
        self.spec = with_known_covariances(self.spec, cov)
        for role, text in (("zi", zi), ("dispersion", dispersion)):
            if text is not None:
                self.family.submodel_parameter(role)  # refuses a family without that parameter
                self.spec = self.spec.with_submodel(parse_submodel(text, role))
        if censored is not None:
            if self.spec.censoring is not None:
                raise BayesmixError("The formula's cens() and censored= both give censoring codes: keep one.")
            self.spec = self.spec.with_censoring(censored, upper)
        elif upper is not None:
            raise BayesmixError("upper= gives interval censoring's upper bounds; pass censored='column' with it.")
        if is_dask_frame(data):
            self.design = self._statistics_design(data, categorical, missing, contrasts, progress)
        else:
            design = build_design(
                self.spec, data, categorical, missing, contrasts, self.family.ordinal, self.family.categorical
            )
            self.spec = design.spec  # with a factor-by smooth's per-level smooths, once the data gave the levels
            if self.family.categorical:  # one linear predictor per category but the first
                self.family = self.family.with_categories(design.codings.response_levels)
            self.design: Design = family_design(design, self.family)
        self.design = with_hilbert_bases(self.design, hsgp)
        self.priors: dict[str, Prior] = resolve_priors(self.design, self.family, priors)
        self._built: dict = {}  # parameterisation -> BuiltModel (bayesmix/sampled.py fills it)
        self.idata: az.InferenceData | None = None
        self.sampling_time: float | None = None

    def _statistics_design(self, data, categorical, missing, contrasts, progress) -> StatsDesign:
        """A Dask DataFrame: reduced to the sufficient statistics of a gaussian model; a GLMM's
        partitions are also encoded once and kept where they live, for its Laplace fit."""
        if self.spec.submodels:
            raise BayesmixError(
                "A Dask DataFrame is reduced to the sums a gaussian model with constant sigma needs; zi= and "
                "dispersion= formulas need every row. Load the data into memory (ddf.compute())."
            )
        if self.family.name == "gaussian" and self.family.link.name == "identity":
            return build_stats_design(
                self.spec, data, categorical=categorical, missing=missing, contrasts=contrasts, progress=progress
            )
        check_family(self.family)
        if self.family.name == "binomial" and self.spec.weights is not None:
            raise BayesmixError(
                "A binomial proportion with weights= (the trials) is read from rows in memory; from a Dask DataFrame "
                "give the counts as cbind(successes, failures) instead."
            )
        return build_stats_design(
            self.spec, data, categorical, missing, contrasts, family=self.family, progress=progress
        )

    @property
    def from_statistics(self) -> bool:
        """Whether the data were reduced to sufficient statistics (a Dask DataFrame): ML/REML fits and
        the collapsed sampler work from those; whatever needs the rows does not."""
        return not self.design.in_memory

    @property
    def formula(self) -> str:
        return self.spec.text

    @property
    def nobs(self) -> int:
        return self.design.nobs

    def pymc_model(self, parameterization="noncentered") -> pm.Model:
        """The PyMC model (built once per parameterisation, then reused).

        ``"noncentered"``/``"centered"`` (for all blocks, or ``{block label: choice}``) or
        ``"marginal"`` (gaussian models: the random effects integrated out; with several blocks, the
        block with the most levels and beta integrated out, see :mod:`bayesmix.bayes.collapsed`).
        """
        return self._built_model(parameterization).model

    def _built_model(self, parameterization) -> BuiltModel:
        """The :class:`~bayesmix.bayes.built.BuiltModel` of a parameterisation (built once, then reused)."""
        return _sampled().built_model(self, parameterization)

    def resolve_parameterization(self, parameterization):
        """``"auto"``: the collapsed model where it applies (fastest and exact), else per block
        centred or non-centred from the information its levels carry."""
        return _sampled().resolve_parameterization(self, parameterization)

    def sample(
        self,
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        random_seed: int | None = None,
        sampler: str = "auto",
        progressbar: bool = True,
        target_accept: float | None = None,
        parameterization="auto",
        posterior_predictive: bool = True,
    ) -> az.InferenceData:
        """Draw from the posterior with NUTS.

        Returns an InferenceData with posterior (each identifiable quantity once: ``beta``, ``sigma``
        and the family's parameters, ``sd_<label>``, ``cor_<label>``, ``re_<label>``; named dims
        ``coef``, ``<group>__level``, ``<label>__term``, ``<label>__pair``), sample_stats,
        observed_data, the pointwise log_likelihood (for ``az.loo``) and, with
        ``posterior_predictive``, one simulated response per draw (for ``az.plot_ppc``; seeded from
        ``random_seed``). The sampler's technical variables (Cholesky factors, standardised
        effects) are in the group ``sampler_internals``, out of ArviZ's default view.

        Warns (DivergenceWarning, RhatWarning, LowESSWarning,
        TreeDepthWarning) when diagnostics fail. ``target_accept`` None: 0.9, or
        :data:`bayesmix.sampled.FUNNEL_TARGET_ACCEPT` where a block is centred although its levels carry little
        information (a funnel: smaller steps follow its neck; docs/calibration.md); such a model is
        also sampled with numpyro's diagonal metric, not the low-rank one.
        """
        return _sampled().sample(
            self,
            draws,
            tune,
            chains,
            random_seed,
            sampler,
            progressbar,
            target_accept,
            parameterization,
            posterior_predictive,
        )

    def log_prior(self, idata=None) -> az.InferenceData:
        """Add the ``log_prior`` group to ``idata`` (the last ``sample()``'s by default) and return
        it: each parameter's prior log density at every draw (the random effects' N(0, Sigma) is
        the model's hierarchy, not a prior, and is left out), so ``az.psens(idata)`` measures the
        posterior's sensitivity to power-scaling the prior (and, with ``component="likelihood"``,
        the likelihood). Not added by ``sample()`` itself: PyMC compiles the density and visits
        every draw, a second or two that most fits do not need."""
        return _sampled().add_log_prior(self, self._require(idata))

    def prior_predictive(self, draws: int = 500, random_seed: int | None = None) -> az.InferenceData:
        """Draws from the priors and the responses they imply (the data are not used).

        Returns an InferenceData with ``prior`` (the parameters as the posterior holds them, random
        effects included; not the technical variables) and
        ``prior_predictive`` (``draws`` simulated responses per row; ``az.plot_ppc(idata,
        group="prior")`` compares them with the data), plus observed_data. Same seed, same draws.
        """
        return _sampled().prior_predictive(self, draws, random_seed)

    def fit(  # noqa: N803 - lme4's name
        self, method: str | None = None, nAGQ: int | None = None, ddf: str = "satterthwaite"
    ) -> MixedFit:
        """Frequentist fit, lme4-comparable: ``"reml"``, ``"ml"``, ``"laplace"`` or ``"agq"``.

        Without ``method``, what lme4/glmmTMB would do for this model: REML for a gaussian model
        with identity link (lmer's default), ML where a dispersion formula or censored rows make
        lme4's REML inapplicable (glmmTMB's), Laplace otherwise (glmer's nAGQ = 1).

        Gaussian models (ML/REML): the random effects are integrated out exactly, beta and sigma
        profiled out, theta optimised with its diagonal bounded at 0 (lme4's profiled deviance).
        GLMMs (Laplace, as glmer nAGQ=1): the Laplace approximation at the conditional modes,
        optimised over (theta, beta[, dispersion]). ``nAGQ`` > 1 (``method="agq"``, default 10, or
        ``"laplace"`` with nAGQ): adaptive Gauss-Hermite quadrature with that many points per level,
        as glmer's, for a single scalar random-effect term. Returns a
        :class:`bayesmix.mixedfit.MixedFit`. See docs/exact_fits.md.

        ``ddf``: the df of an ML/REML fit's t tests of the fixed effects (``fixef``'s ``df`` and
        ``p_value``), lmerTest's ``ddf=``: ``"satterthwaite"`` (lmerTest's default),
        ``"kenward-roger"`` (REML fits; pbkrtest's adjusted covariance gives the standard errors),
        ``"residual"`` (n - p) or ``"none"`` (no p-values, lme4's own summary). A GLMM's tests are
        Wald z tests, as glmer's.
        """
        method = self._check_method(method)
        ddf = check_ddf(ddf)
        if ddf == "kenward-roger" and method == "ml":
            raise BayesmixError(
                "Kenward-Roger's df are defined for REML fits (pbkrtest refits an ML fit by REML); use "
                "method='reml', or ddf='satterthwaite' with method='ml'."
            )
        start = time.perf_counter()
        if method in ("laplace", "agq") or self.design.submodels or self.design.censoring is not None:
            nagq = nAGQ if nAGQ is not None else (DEFAULT_NAGQ if method == "agq" else 1)
            result = laplace_fit(self.design, self.family, nagq)
            fit = from_glmm(self.design, self.family, result, time_s=time.perf_counter() - start)
            return replace(fit, source=self)
        if nAGQ not in (None, 1):
            raise BayesmixError(f"nAGQ is for GLMM fits (method='laplace' or 'agq'); method='{method}' is exact.")
        result = fit_lmm(self.design, reml=method == "reml")
        fit = from_lmm(self.design, self.family, result, time_s=time.perf_counter() - start, ddf=ddf)
        return replace(fit, source=self)

    def update(self, formula: str | None = None, data=None, **arguments) -> Model:
        """A new Model with this one's arguments, some changed (lme4's ``update``): ``formula`` in
        R's update syntax, ``.`` for this model's side (``". ~ . + age"``, ``". ~ . - (1 | g) +
        (x | g)"``); ``data`` and any other argument of :class:`Model` replace this model's."""
        unknown = sorted(set(arguments) - set(self._arguments))
        if unknown:
            raise BayesmixError(
                f"update() got {unknown[0]!r}, which Model does not take.{did_you_mean(unknown[0], self._arguments)}"
            )
        changed = {**self._arguments, **arguments}
        if formula is not None:
            changed["formula"] = update_formula(self._arguments["formula"], formula)
        if data is not None:
            changed["data"] = data
        return Model(**changed)

    def _default_method(self) -> str:
        gaussian = self.family.name == "gaussian" and self.family.link.name == "identity"
        if not gaussian:
            return "laplace"
        return "ml" if self.design.submodels or getattr(self.design, "censoring", None) is not None else "reml"

    def _check_method(self, method) -> str:
        key = self._default_method() if method is None else str(method).lower()
        if key not in FIT_METHODS:
            raise BayesmixError(
                f"Unknown method '{method}'.{did_you_mean(key, FIT_METHODS)} "
                f"Methods of fit(): {', '.join(FIT_METHODS)}; "
                "for NUTS use sample()."
            )
        gaussian = self.family.name == "gaussian" and self.family.link.name == "identity"
        if key in ("reml", "ml") and not gaussian:
            instead = "method='laplace', or sample() for NUTS" if self.family.has_laplace else "sample() (NUTS)"
            raise BayesmixError(
                f"method='{key}' needs a gaussian family with identity link; this model is {self.family.name} "
                f"({self.family.link.name} link). Use {instead}."
            )
        # sigma by row, or censored rows: the Laplace engine's maximum likelihood, not lme4's profiled one
        dispersion = gaussian and (bool(self.design.submodels) or getattr(self.design, "censoring", None) is not None)
        if key in ("laplace", "agq") and gaussian and not dispersion:
            raise BayesmixError("For a gaussian model the likelihood is exact: use method='ml' (or 'reml').")
        if dispersion and key in ("reml", "agq"):
            raise BayesmixError(
                f"A gaussian model with a dispersion formula or a censored response is fitted by maximum likelihood "
                f"(lme4's profiled criterion and its REML no longer apply): use method='ml' (exact with a dispersion "
                f"formula of fixed effects; the Laplace approximation with censored rows or random effects in that "
                f"formula), not '{key}'; or sample() (NUTS)."
            )
        if not self.design.all_blocks:
            raise BayesmixError("fit() needs at least one random-effect term such as (1 | g) in the formula.")
        return key

    def predict(
        self,
        idata=None,
        data=None,
        kind="mean",
        allow_new_levels=False,
        new_levels="sample",
        random_seed=None,
        inplace=True,
        re_form="conditional",
    ):
        """Posterior predictions on the training data (``data=None``) or new data.

        kind: ``"mean"`` (the response mean: g^{-1} of the linear predictor, with the zero process
            of a zero-inflated or hurdle family), ``"link"`` (the linear predictor, brms's
            ``posterior_linpred``), ``"response"`` (simulated responses), ``"zi"``
            or ``"dispersion"`` (each row's zero-inflation / hurdle probability or dispersion
            parameter, stored as ``<response>_zi`` / ``<response>_dispersion``); an ordinal model's
            ``"mean"`` is the expected category index 1..K and ``"probs"`` the category
            probabilities, (chain, draw, obs, category).
        allow_new_levels: unseen group levels get fresh effects from each draw's covariance
        (``new_levels="sample"``) or the population level (``"population"``); otherwise they raise.
        re_form: ``"conditional"`` (with the random effects) or ``"population"`` (X beta only, as
        brms's ``re_formula=NA``; the grouping columns are then not needed in ``data``).
        Returns a (chain, draw, obs) DataArray; with ``inplace`` it is also stored in ``idata``
        (``<response>_mean`` in posterior, or ``<response>`` in posterior_predictive).
        """
        idata = self._require(idata)
        values = posterior_predict(self, idata, data, kind, allow_new_levels, new_levels, random_seed, re_form)
        if inplace:
            add_predictions(self, idata, values, kind)
        return values

    def save(self, path, idata=None):
        """Write the posterior (default: the last ``sample()``) and the model (formula, family, priors,
        level codings, training rows) to one netCDF file; ``bayesmix.load(path)`` gives the model
        back with ``idata`` set, and ``predict`` then gives identical results. Returns the path."""
        return save_model(self, path, idata)

    def _require(self, idata):
        idata = self.idata if idata is None else idata
        if idata is None:
            raise BayesmixError("This model has not been sampled yet. Call model.sample() first.")
        return idata

    def posterior_summary(self, idata: az.InferenceData | None = None) -> NutsSummary:
        """Posterior means/SDs of fixed effects, variance components and random effects."""
        return _sampled().posterior_summary(self, self._require(idata))

    def summary(self, idata: az.InferenceData | None = None) -> str:
        """An lme4-style printout of the posterior (with R-hat and ESS)."""
        return _sampled().summary(self, self._require(idata))

    def to_dict(self, idata: az.InferenceData | None = None, time_s: float | None = None) -> dict:
        """The JSON contract (see :mod:`bayesmix.nuts.summary`)."""
        idata = self._require(idata)
        if time_s is None and idata is self.idata:
            time_s = self.sampling_time
        return _sampled().contract(self, idata, time_s)

    def __repr__(self) -> str:
        return (
            f"bayesmix.Model('{self.spec.text}', family='{self.family.name}', link='{self.family.link.name}', "
            f"nobs={self.nobs})"
        )
