"""Design + Family + priors -> ``pm.Model``.

Per block with k terms over M levels (non-centred, the default)::

    z ~ Normal(0, 1)                     shape (M, k)
    b = z @ (diag(sd) @ L).T             L: Cholesky factor of corr ~ LKJ(eta)   (k > 1)
    b = z * sd                           (k == 1)

and the linear predictor ``eta = X @ beta + sum_blocks sum_j Zt[:, j] * b[codes, j]``, gathered by
group codes (never a dense Z). How a block's effects are parameterised is a choice applied per
block (:data:`PARAMETERIZATIONS`), not baked into the model. Data enter as ``pm.Data`` so a new
dataset of the same shape reuses the compiled functions.

Variable names (and dims): ``beta`` (coef), ``sigma`` and the family's other parameters,
``sd_<label>`` (``<label>__term``), ``corr_<label>`` (``<label>__term``, ``<label>__term_``),
``re_<label>`` (group levels, ``<label>__term``), ``z_<label>`` (the standardised effects).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayesmix.design import Block, Design
from bayesmix.errors import BayesmixError, did_you_mean
from bayesmix.families import Family
from bayesmix.linpred import linear_predictor
from bayesmix.priors import Prior

PARAMETERIZATIONS = ("noncentered", "centered")
OBS_DIM = "obs"


def term_dim(block: Block) -> str:
    return f"{block.label}__term"


def response_name(design: Design, reserved) -> str:
    """The observed variable's name: the response column when it is a plain name, else ``y``."""
    name = design.spec.response.expr
    return name if name.isidentifier() and name not in reserved else "y"


def model_coords(design: Design) -> dict:
    coords = {"coef": list(design.fixed_names), OBS_DIM: np.arange(design.nobs)}
    for block in design.blocks:
        coords[block.group] = list(block.levels)
        coords[term_dim(block)] = list(block.terms)
        if block.n_terms > 1:
            coords[term_dim(block) + "_"] = list(block.terms)
    return coords


def fixed_effects(design: Design, priors: dict[str, Prior]):
    """``beta`` (p,): one vector variable when all coefficients share a distribution, else one each."""
    names = design.fixed_names
    if not names:
        return pt.zeros(0)
    chosen = [priors[n] for n in names]
    same = all(p.dist == chosen[0].dist and set(p.params) == set(chosen[0].params) for p in chosen)
    if same:
        stacked = {k: np.array([np.asarray(p.params[k], dtype=float) for p in chosen]) for k in chosen[0].params}
        return Prior(chosen[0].dist, **stacked).variable("beta", dims="coef")
    parts = [prior.variable(f"beta[{name}]") for name, prior in zip(names, chosen)]
    return pm.Deterministic("beta", pt.stack(parts), dims="coef")


def block_covariance(block: Block, priors: dict[str, Prior]):
    """The Cholesky factor (k, k) of the block's covariance, diag(sd) @ L with corr = L L' ~ LKJ.

    Adds ``sd_<label>`` (and, for k > 1, ``corr_<label>`` and the sampled ``chol_<label>``).
    """
    label, k = block.label, block.n_terms
    sd_prior = priors[f"sd_{label}"]
    if k == 1:
        sd = sd_prior.variable(f"sd_{label}", dims=term_dim(block), shape=(1,))
        return sd[:, None]
    chol, corr, sd = pm.LKJCholeskyCov(
        f"chol_{label}",
        n=k,
        eta=float(priors[f"corr_{label}"].params["eta"]),
        sd_dist=sd_prior.distribution(shape=k),
        compute_corr=True,
        store_in_trace=False,
    )
    pm.Deterministic(f"sd_{label}", sd, dims=term_dim(block))
    pm.Deterministic(f"corr_{label}", corr, dims=(term_dim(block), term_dim(block) + "_"))
    return chol


def _block_effects(block: Block, priors: dict[str, Prior], parameterization: str):
    """The (M, k) random effects of one block."""
    label, dims = block.label, (block.group, term_dim(block))
    chol = block_covariance(block, priors)
    if parameterization == "centered":
        if block.n_terms == 1:
            return pm.Normal(f"re_{label}", 0.0, chol[0, 0], dims=dims)
        return pm.MvNormal(f"re_{label}", mu=pt.zeros(block.n_terms), chol=chol, dims=dims)
    z = pm.Normal(f"z_{label}", 0.0, 1.0, dims=dims)
    return pm.Deterministic(f"re_{label}", z @ chol.T, dims=dims)


def build_model(design: Design, family: Family, priors: dict[str, Prior], parameterization="noncentered") -> pm.Model:
    """The PyMC model. ``parameterization``: one name for all blocks or {block label: name}."""
    per_block = _per_block(design, parameterization)
    with pm.Model(coords=model_coords(design)) as model:
        X = pm.Data("X", design.X, dims=(OBS_DIM, "coef"))
        beta = fixed_effects(design, priors)
        terms = []
        for block in design.blocks:
            codes = pm.Data(f"codes_{block.label}", block.codes, dims=OBS_DIM)
            Zt = pm.Data(f"Z_{block.label}", block.Zt, dims=(OBS_DIM, term_dim(block)))
            terms.append((Zt, codes, _block_effects(block, priors, per_block[block.label])))
        eta = linear_predictor(X, beta, terms)
        params = {name: priors[name].variable(name) for name in family.params}
        trials = None if design.trials is None else pm.Data("trials", design.trials, dims=OBS_DIM)
        observed = pm.Data("observed", design.y, dims=OBS_DIM)
        family.likelihood(response_name(design, model.named_vars), eta, params, observed, trials=trials, dims=OBS_DIM)
    return model


def _per_block(design: Design, parameterization) -> dict[str, str]:
    labels = [b.label for b in design.blocks]
    if isinstance(parameterization, str):
        parameterization = {label: parameterization for label in labels}
    unknown = set(parameterization) - set(labels)
    if unknown:
        name = sorted(unknown)[0]
        raise BayesmixError(
            f"parameterization names block '{name}', which is not in the model.{did_you_mean(name, labels)} "
            f"Blocks: {', '.join(labels)}."
        )
    for label, choice in parameterization.items():
        if choice not in PARAMETERIZATIONS:
            raise BayesmixError(
                f"Unknown parameterization '{choice}' for block '{label}'.{did_you_mean(choice, PARAMETERIZATIONS)} "
                f"Choices: {', '.join(PARAMETERIZATIONS)}."
            )
    return {label: parameterization.get(label, "noncentered") for label in labels}
