"""Predictions from a NUTS posterior or an exact fit, on the training data or new data.

New group levels (``allow_new_levels=True``) get, for every posterior draw, fresh random effects
from that draw's covariance (``new_levels="sample"``, the default; brms's behaviour) or none
(``new_levels="population"``). Exact fits predict with the conditional modes (``re_form=
"conditional"``) or at the population level (``re_form="population"``); new levels get the
population level, as lme4's ``allow.new.levels``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bayesmix import memory
from bayesmix.after.members import unseen_member_effects
from bayesmix.bayes.names import OBS_DIM, covariance_roots, flat_draws, parameter_draws, response_name
from bayesmix.design.covariance import LEVEL_TERM
from bayesmix.design.encode import Design, NewData, encode_new_data
from bayesmix.design.hilbert import approximated, draw_effects
from bayesmix.design.linpred import linear_predictor
from bayesmix.errors import BayesmixError
from bayesmix.report import block_key

if TYPE_CHECKING:
    import arviz as az
    import xarray as xr

# "zi", "dispersion": a distributional parameter per row; "probs": an ordinal model's category probabilities
KINDS = ("mean", "link", "response", "zi", "dispersion", "probs")
CATEGORY_DIM = "category"
NEW_LEVELS = ("sample", "population")
RE_FORMS = ("conditional", "population")
# sample() stores simulated responses (chains x draws x rows) up to this many values, 160 MB: enough for
# az.plot_ppc on most data; beyond it, predict(kind="response") on a subset of rows or draws
SAMPLE_PREDICTIVE_VALUES = 20_000_000


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise BayesmixError(f"{name} must be one of {choices}, not {value!r}.")


def encode(design: Design, data, allow_new_levels: bool, random_effects: bool = True) -> NewData:
    """The training rows (``data=None``) or new rows, in the model's encoding; with
    ``random_effects=False`` the fixed part only (no grouping columns needed)."""
    if data is None:
        smooths = design.codings.smooths  # a smooth's block stays at the population level
        blocks = design.all_blocks if random_effects or smooths else ()
        return NewData(
            X=design.X,
            blocks=tuple(
                (b.codes, b.Zt) if random_effects or b.group in smooths else (b.codes, np.zeros_like(b.Zt))
                for b in blocks
            ),
            new_levels=tuple(() for _ in blocks),
            trials=design.trials,
            offset=design.offset,
            submodels={role: sub.X for role, sub in design.submodels.items()},
        )
    return encode_new_data(design, data, allow_new_levels, random_effects)


def by_predictor(design: Design, terms: list) -> tuple[list, dict[str, list]]:
    """Per-block (Zt, codes, effects) in ``all_blocks`` order -> (the mean's, {role: a submodel's})."""
    mu, submodels = [], {role: [] for role in design.submodels}
    for block, (Zt, codes, effects) in zip(design.all_blocks, terms):
        if block.predictor == "mu":
            mu.append((Zt, codes, effects))
        for role in submodels:  # a block shared by several predictors: each reads its own terms
            if block.feeds(role):
                submodels[role].append((Zt * block.mask(role) if block.outputs else Zt, codes, effects))
    return mu, submodels


def _effects_with_new_levels(design, post, new: NewData, new_levels: str, rng):
    """Per block (``all_blocks`` order): (Zt, codes with new levels mapped past M, effects (S, M + new, k))."""
    out = []
    for block, (codes, Zt), unseen in zip(design.all_blocks, new.blocks, new.new_levels):
        effects = flat_draws(post, f"re_{block.label}")
        codes = codes.copy()
        if unseen and block.members:  # new levels as new terms of the block's one level
            term = design.spec.random_terms(block.predictor)[block.term]
            root = block.covariance.root  # sd_<label> is s times each level's root norm
            s = flat_draws(post, f"sd_{block.label}")[:, 0] / np.sqrt(np.sum(root[0] ** 2))
            extra = unseen_member_effects(term, block, unseen, effects[:, 0, :], new_levels, s, rng)
            effects = np.concatenate([effects, extra[:, None, :]], axis=2)
        elif unseen:
            S, _, k = effects.shape
            if new_levels == "sample" and approximated(block):  # from the approximate prior sampled
                z = rng.standard_normal((S, len(unseen), block.covariance.hsgp.rank))
                extra = _approximate_new_levels(post, block, z)
            elif new_levels == "sample":
                chol = covariance_roots(post, block)
                extra = np.einsum("sij,snj->sni", chol, rng.standard_normal((S, len(unseen), k)))
            else:
                extra = np.zeros((S, len(unseen), k))
            effects = np.concatenate([effects, extra], axis=1)
            codes[codes < 0] = block.n_levels - 1 - codes[codes < 0]  # -1 - i -> M + i
        out.append((Zt, codes, effects))
    return out


def _approximate_new_levels(post, block, z: np.ndarray) -> np.ndarray:
    """(S, n, k) effects of n new levels of a block sampled through its Hilbert-space basis."""
    label = block.label
    kappa = flat_draws(post, f"smoothness_{label}") if block.covariance.kind == "mat" else None
    s = flat_draws(post, f"sd_{label}")[:, 0]
    return draw_effects(block.covariance, s, flat_draws(post, f"range_{label}"), kappa, z)


def posterior_predict(
    model,
    idata: az.InferenceData,
    data=None,
    kind="mean",
    allow_new_levels=False,
    new_levels="sample",
    random_seed=None,
    re_form="conditional",
) -> xr.DataArray:
    """(chain, draw, obs) predictions: the mean g^{-1}(eta) or simulated responses.

    ``re_form="population"`` leaves the random effects out (eta = X beta), brms's ``re_formula=NA``.
    """
    _check_choice("kind", kind, KINDS)
    _check_choice("new_levels", new_levels, NEW_LEVELS)
    _check_choice("re_form", re_form, RE_FORMS)
    design, family = model.design, model.family
    new = encode(design, data, allow_new_levels, random_effects=re_form == "conditional")
    post = idata.posterior
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    memory.check(
        "The predictions (chains x draws x rows)",
        (chains, draws, new.nobs),
        "Predict for fewer rows at a time (data=...), or for a subset of the draws "
        "(e.g. idata.sel(draw=slice(0, None, 10))).",
    )
    rng = np.random.default_rng(random_seed)
    beta = flat_draws(post, "beta") if design.fixed_names else np.zeros((chains * draws, 0))
    mu, submodels = by_predictor(design, _effects_with_new_levels(design, post, new, new_levels, rng))
    eta = linear_predictor(new.X, beta, mu, new.offset)
    params = parameter_draws(post, design, family, new.submodels, submodels)
    _check_probs(kind, family)
    if kind == "probs":  # brms's posterior_epred of an ordinal model: (chain, draw, obs, category)
        import xarray as xr

        values = family.probabilities(eta, params)
        coords = {CATEGORY_DIM: [str(level) for level in design.codings.response_levels]}
        return xr.DataArray(
            values.reshape(chains, draws, new.nobs, -1), dims=("chain", "draw", OBS_DIM, CATEGORY_DIM), coords=coords
        )
    if kind in ("zi", "dispersion"):  # glmmTMB's predict(type = "zprob" / "disp")
        values = np.broadcast_to(params[family.submodel_parameter(kind)], eta.shape)
    elif kind == "link":  # brms's posterior_linpred: the mean's linear predictor
        values = eta
    elif kind != "response":  # the mean (a draw does not need it: an ordinal one is (draws, rows, categories))
        values = family.mean(eta, params)
    else:
        if family.takes_trials and data is not None and new.trials is None:
            trials = "the trials column of p(s, n)" if design.spec.response.trials else "both columns of cbind(s, f)"
            raise BayesmixError(f"Simulating binomial responses for new data needs {trials} in the new data.")
        weights = design.weights if data is None else None  # new rows have unit weight, as in lme4's simulate
        values = family.draw(eta, params, new.trials, rng, weights)
    import xarray as xr  # a posterior's predictions only: an exact fit's never load it

    return xr.DataArray(values.reshape(chains, draws, -1), dims=("chain", "draw", OBS_DIM))


def add_predictions(model, idata, values: xr.DataArray, kind: str) -> None:
    """Store predictions in ``idata``: the mean in posterior (``<response>_mean``), simulated
    responses in posterior_predictive (``<response>``, so az.plot_ppc works)."""
    name = response_name(model.design, set(idata.posterior.data_vars))
    if kind == "response" and model.family.category_response:
        # category indices as whole numbers, the observed ones too: az.plot_ppc then counts categories
        # (bars) where it would smooth floats with a density
        values = values.astype(np.int64)
        if "observed_data" in idata.groups() and name in idata.observed_data:
            idata.observed_data[name] = idata.observed_data[name].astype(np.int64)
    if kind != "response":
        idata.posterior[f"{name}_{kind}"] = values
    elif "posterior_predictive" in idata.groups():
        idata.posterior_predictive[name] = values
    else:
        idata.add_groups(posterior_predictive={name: values})


def fit_predict(fit, data=None, re_form="conditional", allow_new_levels=False, kind="mean") -> np.ndarray:
    """(n,) predicted means of an exact fit (conditional modes or population level), or with
    ``kind="zi"``/``"dispersion"`` the zero-inflation (hurdle) probability or the dispersion
    parameter of each row."""
    _check_choice("re_form", re_form, RE_FORMS)
    _check_choice("kind", kind, ("mean", "link", "zi", "dispersion", "probs"))
    _check_probs(kind, fit.family)
    design = fit.design
    new = encode(design, data, allow_new_levels, random_effects=re_form == "conditional")
    beta = fixed_estimates(fit)
    blocks = []
    if new.blocks:  # at the population level only a smooth's (the other blocks' columns are zero)
        for block, (codes, Zt), unseen in zip(design.all_blocks, new.blocks, new.new_levels):
            modes = conditional_modes(fit, block)
            if unseen and block.members:  # new levels as new terms: their conditional means
                term = design.spec.random_terms(block.predictor)[block.term]
                modes = np.hstack([modes, unseen_member_effects(term, block, unseen, modes, "mean")])
            effects = np.vstack([modes, np.zeros((1, modes.shape[1]))])  # row M: new levels
            blocks.append((Zt, np.where(codes < 0, block.n_levels, codes), effects))
    mu, submodels = by_predictor(design, blocks)
    params = fit.parameters(new.submodels, submodels)
    eta = linear_predictor(new.X, beta, mu, new.offset)
    if kind == "probs":  # (n, K): each row's category probabilities (clmm's predict of each level)
        return fit.family.probabilities(eta, params)
    if kind == "link":  # lme4's predict(type = "link"): the mean's linear predictor
        return np.asarray(eta, dtype=float).copy()
    if kind != "mean":
        return np.broadcast_to(params[fit.family.submodel_parameter(kind)], (new.nobs,)).copy()
    return fit.family.mean(eta, params)


def _check_probs(kind: str, family) -> None:
    if kind == "link" and family.categorical:
        raise BayesmixError(
            "A categorical model has one linear predictor per category; kind='link' gives one. Use kind='probs'."
        )
    if kind == "probs" and not family.category_response:
        raise BayesmixError(
            f"kind='probs' gives an ordinal or categorical model's category probabilities; family='{family.name}'."
        )


def fixed_estimates(fit) -> np.ndarray:
    """(p,) the exact fit's beta over all columns of X (aliased, dropped columns at 0)."""
    return fit.fixef["estimate"].reindex(fit.design.fixed_names).fillna(0.0).to_numpy()


def conditional_modes(fit, block) -> np.ndarray:
    """(M, k) conditional modes of one block of an exact fit, in the block's level and term order."""
    table = fit.ranef[block_key(block)]["condval"].unstack("term")
    if block.members:  # a block whose terms are levels, filed as one intercept per level
        return table.reindex(list(block.members))[LEVEL_TERM].to_numpy()[None, :]
    return table.reindex(list(block.levels))[list(block.terms)].to_numpy()


def covariance_root(cov) -> np.ndarray:
    """A square root R of a (possibly singular) covariance, R R' = cov."""
    w, V = np.linalg.eigh(np.asarray(cov, dtype=float))
    return V * np.sqrt(np.clip(w, 0.0, None))


def simulate_exact(fit, n_sim: int, re_form: str, rng) -> np.ndarray:
    """(n_sim, n) responses simulated from an exact fit."""
    design, family = fit.design, fit.family
    blocks = []
    for block, v in zip(design.all_blocks, fit.varcorr):
        if re_form == "conditional":
            effects = conditional_modes(fit, block)
        else:
            root = covariance_root(v["cov"])
            effects = rng.standard_normal((n_sim, block.n_levels, block.n_terms)) @ root.T
        blocks.append((block.Zt, block.codes, effects))
    mu, submodels = by_predictor(design, blocks)
    eta = linear_predictor(design.X, fixed_estimates(fit), mu, design.offset)
    eta = np.broadcast_to(eta, (n_sim, design.nobs))
    params = (
        {"sigma": fit.sigma}
        if fit.sigma is not None
        else fit.parameters({role: sub.X for role, sub in design.submodels.items()}, submodels)
    )
    return family.draw(eta, params, design.trials, rng, design.weights)
