"""The Bayesian half of :class:`bayesmix.model.Model`: design → PyMC model → NUTS → posterior.

``Model`` imports this module on the first call that needs it (sampling, the PyMC model, a
posterior summary), so building a model and fitting it exactly never load PyMC, PyTensor, JAX or
ArviZ. Each function takes the Model and works on its design, family, priors and its cache of
built PyMC models (``model._built``).
"""

from __future__ import annotations

import time
import warnings

import arviz as az
import numpy as np
import pymc as pm

from bayesmix.after.predict import SAMPLE_PREDICTIVE_VALUES, add_predictions, posterior_predict
from bayesmix.bayes.build import build_model, choose_parameterization, weakly_informed_centred
from bayesmix.bayes.built import BuiltModel
from bayesmix.bayes.collapsed import build_marginal, collapsible
from bayesmix.bayes.names import TECHNICAL_GROUP, split_technical
from bayesmix.design.hilbert import TOLERANCE as HILBERT_TOLERANCE
from bayesmix.design.hilbert import approximated, approximation_error
from bayesmix.errors import BayesmixError, BayesmixWarning, warn
from bayesmix.nuts.run import check_counts, collapsed_is_fast, diagnose, run_nuts, seed_from, warn_diagnostics
from bayesmix.nuts.summary import NutsSummary, format_summary, summarize, to_dict

DEFAULT_TARGET_ACCEPT = 0.9
# where a block is centred although its levels carry little information: its SDs sit in a funnel
# whose neck NUTS explores with bias unless its steps are small; such a model also keeps numpyro's
# diagonal metric, as the low-rank one, learnt in half the warmup, did not follow the neck
# (simulation-based calibration of both choices: docs/calibration.md)
FUNNEL_TARGET_ACCEPT = 0.99


def built_model(model, parameterization) -> BuiltModel:
    """The :class:`~bayesmix.bayes.built.BuiltModel` of a parameterisation (built once, then reused)."""
    if model.from_statistics and not (model.family.name == "gaussian" and model.family.link.name == "identity"):
        raise BayesmixError(
            f"NUTS for a {model.family.name} GLMM from a Dask DataFrame is not available: a non-gaussian "
            "likelihood has no fixed-size sufficient statistics, so every gradient would read every partition. "
            "Fit it by Laplace from the partitions (fit('laplace')), or load the rows into memory (ddf.compute(), "
            "or a sample of them) and sample() there, on a GPU for large data (docs/scaling.md)."
        )
    if model.from_statistics and parameterization != "marginal":
        raise BayesmixError(
            "This model was built from a Dask DataFrame (sufficient statistics only): NUTS works from those for "
            "the collapsed model (parameterization='marginal' or 'auto': a gaussian model). Use fit('reml') or "
            "fit('ml') for other models, or load the rows into memory."
        )
    key = parameterization if isinstance(parameterization, str) else tuple(sorted(parameterization.items()))
    if key not in model._built:
        if parameterization == "marginal":
            if not collapsible(model.design, model.family):
                raise BayesmixError(
                    "parameterization='marginal' needs a gaussian model (identity link) with at least one "
                    "random-effect block and no block sampled through a Hilbert-space basis (Model(..., "
                    "hsgp=False) keeps the exact factor); use 'noncentered' or 'centered' for this model."
                )
            model._built[key] = build_marginal(model.design, model.family, model.priors)
        else:
            model._built[key] = BuiltModel(build_model(model.design, model.family, model.priors, parameterization))
    return model._built[key]


def resolve_parameterization(model, parameterization):
    """``"auto"``: the collapsed model where it applies (fastest and exact), else per block
    centred or non-centred from the information its levels carry (:func:`choose_parameterization`)."""
    if parameterization == "auto":
        if collapsible(model.design, model.family):  # without JAX: non-centred (nuts.run.collapsed_is_fast)
            return "marginal" if model.from_statistics or collapsed_is_fast() else "noncentered"
        return choose_parameterization(model.design)
    return parameterization


def _target_accept(model, parameterization, target_accept) -> tuple[float, dict]:
    """The step-size target and the blocks sampled centred in a funnel (warned about)."""
    funnels = weakly_informed_centred(model.design, parameterization)
    if target_accept is None:
        target_accept = FUNNEL_TARGET_ACCEPT if funnels else DEFAULT_TARGET_ACCEPT
    for label, ratio in funnels.items():
        warn(
            f"Block '{label}' is sampled centred, but its levels carry little information (information ratio "
            f"{ratio:.2g} < 1): its SDs then sit in a funnel that NUTS explores with bias unless its steps are "
            f"small (target_accept={target_accept:g}; {FUNNEL_TARGET_ACCEPT:g} when not given) and slow. Use "
            "parameterization='auto' (non-centred for this block) or 'noncentered'.",
            BayesmixWarning,
        )
    return target_accept, funnels


def sample(model, draws, tune, chains, random_seed, sampler, progressbar, target_accept, parameterization, predictive):
    """:meth:`bayesmix.model.Model.sample`: NUTS, the effects a collapsed model integrated out, the
    technical variables set aside, simulated responses, and the diagnostics' warnings."""
    parameterization = resolve_parameterization(model, parameterization)
    built = built_model(model, parameterization)
    target_accept, funnels = _target_accept(model, parameterization, target_accept)
    start = time.perf_counter()
    idata = run_nuts(
        built,
        draws=draws,
        tune=tune,
        chains=chains,
        random_seed=random_seed,
        sampler=sampler,
        progressbar=progressbar,
        target_accept=target_accept,
        low_rank_metric=not funnels,
    )
    seed = idata.posterior.attrs["bayesmix_seed"]
    built.finish(idata, seed)
    split_technical(idata, model.design, model.family)
    if predictive and model.design.in_memory and chains * draws * model.nobs <= SAMPLE_PREDICTIVE_VALUES:
        responses = posterior_predict(model, idata, kind="response", random_seed=[seed, 1])
        add_predictions(model, idata, responses, "response")
    idata.posterior.attrs["bayesmix_parameterization"] = str(parameterization)
    model.sampling_time = time.perf_counter() - start
    model.idata = idata
    warn_diagnostics(diagnose(idata))
    _check_hilbert(model.design, idata.posterior)
    return idata


def _check_hilbert(design, post) -> None:
    """Warn where a block sampled through its Hilbert-space basis has its posterior median range or
    the range's 10% quantile (at the median smoothness) where the approximation misses the exact
    correlation by more than
    :data:`bayesmix.design.hilbert.TOLERANCE` (a range too short for the basis or too long for
    its box): the posterior is then that of another model."""
    for block in design.all_blocks:
        if not approximated(block):
            continue
        ranges = post[f"range_{block.label}"].values.reshape(-1)
        kappa = float(post[f"smoothness_{block.label}"].median()) if block.covariance.kind == "mat" else None
        # the median, and the short ranges' tenth percentile, where a basis too coarse fails first
        r_low, r = (float(v) for v in np.quantile(ranges, [0.1, 0.5]))
        error = max(approximation_error(block.covariance, value, kappa) for value in (r_low, r))
        if error > HILBERT_TOLERANCE:
            settings = block.covariance.hsgp
            warn(
                f"The Hilbert-space approximation of block '{block.label}' ({settings.rank} basis functions, "
                f"m={list(settings.m)}, c={settings.c:g}) misses the exact correlation by up to {error:.2f} at the "
                f"posterior's range (median {r:.3g}, 10% quantile {r_low:.3g}): raise m (shorter ranges) or c "
                "(longer ones), e.g. "
                f"Model(..., hsgp={{'m': {2 * settings.m[0]}, 'c': {settings.c + 1:g}}}), or sample the exact "
                "factor with Model(..., hsgp=False).",
                BayesmixWarning,
            )


def add_log_prior(model, idata) -> az.InferenceData:
    """:meth:`bayesmix.model.Model.log_prior`: the ``log_prior`` group (each top-level parameter's
    prior log density at every draw, PyMC's ``compute_log_prior`` on the non-centred model, whose
    parameters are the posterior's and the sampler's), so ``az.psens`` can power-scale the prior.
    The random effects' N(0, Sigma) is the hierarchical part of the model, not a prior: left out
    (priorsense's and brms's ``lprior`` leave it out too)."""
    import xarray as xr

    pymc_model = built_model(model, "noncentered").model
    post = idata.posterior
    internals = idata[TECHNICAL_GROUP] if TECHNICAL_GROUP in idata.groups() else xr.Dataset()
    values, priors, shapes = {}, [], pymc_model.eval_rv_shapes()
    for rv in pymc_model.free_RVs:
        name = rv.name
        if name in post or name in internals:
            values[name] = post[name] if name in post else internals[name]
            priors.append(name)
        elif name.startswith("z_"):  # standardised effects: not in the prior, but the function reads every input
            shape = shapes[name]
            dims = ("chain", "draw", *[f"{name}_dim_{i}" for i in range(len(shape))])
            values[name] = xr.DataArray(np.zeros((post.sizes["chain"], post.sizes["draw"], *shape)), dims=dims)
        else:
            raise BayesmixError(f"The posterior lacks '{name}', so its prior density cannot be evaluated.")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*BLAS.*")
        log_prior = pm.compute_log_prior(
            az.InferenceData(posterior=xr.Dataset(values)),
            var_names=priors,
            model=pymc_model,
            extend_inferencedata=False,
            progressbar=False,
        )
    if "log_prior" in idata.groups():
        del idata["log_prior"]
    idata.add_groups(log_prior=log_prior)
    return idata


def prior_predictive(model, draws: int, random_seed) -> az.InferenceData:
    """:meth:`bayesmix.model.Model.prior_predictive`."""
    check_counts(draws=draws)
    pymc_model = built_model(model, "noncentered").model
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*BLAS.*")
        idata = pm.sample_prior_predictive(draws=int(draws), model=pymc_model, random_seed=seed_from(random_seed))
    return split_technical(idata, model.design, model.family, groups=("prior",), keep=False)


def posterior_summary(model, idata) -> NutsSummary:
    return summarize(model.design, model.family, idata, diagnose(idata))


def summary(model, idata) -> str:
    return format_summary(model.design, model.family, posterior_summary(model, idata), idata)


def contract(model, idata, time_s) -> dict:
    """The JSON contract of a sampled model (see :mod:`bayesmix.nuts.summary`)."""
    return to_dict(model.design, model.family, posterior_summary(model, idata), time_s)
