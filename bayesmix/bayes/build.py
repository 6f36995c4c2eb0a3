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
``sd_<label>`` (``<label>__term``), ``cor_<label>`` (``<label>__pair``: the strict lower triangle
of the block's correlation matrix, one value per pair of terms, coordinates ``<term1>__<term2>`` as
brms's ``cor_Subject__Intercept__Days``), ``re_<label>`` (``<group>__level``, ``<label>__term``).
Technical variables, which NUTS moves but which duplicate or transform those (``chol_<label>``, the
LKJ Cholesky factor; ``z_<label>``, the standardised effects; ``u_<label>``, centred effects before
their shift; ``beta[<name>]``, one coefficient each), are kept out of the posterior after sampling
(:func:`split_technical`). Every dimension built from a user's name ends in ``__level``, ``__term``
or ``__pair`` (the coordinates hold the names as they are), so no column name can collide with
ArviZ's and xarray's ``chain``, ``draw`` and ``sample`` or the model's ``obs`` and ``coef``; in
names, ``/`` and a final ``:`` (which PyMC and netCDF refuse) are percent-encoded
(:func:`bayesmix.design.encode.name_part`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayesmix.bayes.hsgp import BasisFactor, hilbert_factor
from bayesmix.bayes.names import (
    COEF_DIM,
    OBS_DIM,
    THRESHOLD_DIM,
    basis_dim,
    level_dim,
    model_coords,
    pair_dim,
    response_name,
    submodel_dim,
    term_dim,
    term_pairs,
)
from bayesmix.bayes.priors import Prior
from bayesmix.design.crossprod import raw_cross_products
from bayesmix.design.encode import Block, Design, name_part
from bayesmix.design.hilbert import approximated
from bayesmix.design.linpred import OneTermRows, Predictor, linear_predictor, one_term_rows
from bayesmix.design.matern import log_matern
from bayesmix.errors import BayesmixError, did_you_mean
from bayesmix.families import Family
from bayesmix.ordinal import ORDERED_THRESHOLDS, start_thresholds

PARAMETERIZATIONS = ("noncentered", "centered")


def fixed_effects(design: Design, priors: dict[str, Prior]):
    """``beta`` (p,): one vector variable when all coefficients share a distribution, else one each."""
    return _coefficients("beta", design.fixed_names, design.fixed_names, priors, COEF_DIM)


def _coefficients(variable: str, names, keys, priors: dict[str, Prior], dims: str):
    """A coefficient vector named ``variable`` with the priors ``priors[key]`` (one vector variable
    when all share a distribution, else one ``variable[name]`` each)."""
    if not names:
        return pt.zeros(0)
    chosen = [priors[key] for key in keys]
    same = all(p.dist == chosen[0].dist and set(p.params) == set(chosen[0].params) for p in chosen)
    if same:
        stacked = {k: np.array([np.asarray(p.params[k], dtype=float) for p in chosen]) for k in chosen[0].params}
        return Prior(chosen[0].dist, **stacked).variable(variable, dims=dims)
    parts = [prior.variable(f"{variable}[{name_part(name)}]") for name, prior in zip(names, chosen)]
    return pm.Deterministic(variable, pt.stack(parts), dims=dims)


def family_parameters(design: Design, family: Family, priors: dict[str, Prior], per_block: dict[str, str]) -> dict:
    """The family's parameters: a constant with its prior, or, where a zi= or dispersion= formula
    predicts one, the inverse link of its linear predictor (coefficients ``<param>_beta``, dim
    ``<param>_coef``, priors ``<param>_<coefficient>``; its blocks as the mean's, labels
    ``<role>_<group>``)."""
    params, built = {}, {}  # built: a block shared by several predictors, made once
    for role, predictor in design.submodels.items():
        name = family.submodel_parameter(role)
        keys = [f"{name}_{coefficient}" for coefficient in predictor.fixed_names]
        coefficients = _coefficients(f"{name}_beta", predictor.fixed_names, keys, priors, submodel_dim(name))
        X_name = (f"X_{name}", submodel_dim(name))
        eta = _predictor_eta(predictor, coefficients, priors, per_block, {}, X_name, built)
        params[name] = family.parameter_link(name).inverse(eta, pt)
    for name in family.params:
        if name == "thresholds":
            params[name] = _thresholds(design, family, priors[name], priors.get("spacing"))
        elif name not in params:
            params[name] = priors[name].variable(name)
    return params


def _thresholds(design: Design, family: Family, prior: Prior, spacing_prior: Prior | None):
    """An ordinal model's K - 1 cut points, started where eta = 0 gives the observed proportions:
    increasing (PyMC's ordered transform) for the cumulative family, free for the sequential ones
    (as brms's)."""
    start = start_thresholds(design.y - 1, family.link.name, family.name)
    for key, value in prior.params.items():
        if np.ndim(value) and np.size(value) != len(start):
            raise BayesmixError(
                f"The prior for 'thresholds' gives {key} {np.size(value)} values; this response has {len(start) + 1} "
                f"categories, so {len(start)} thresholds. Give one value, or one per threshold."
            )
    # a static shape (not the dims' length): JAX traces shapes, not values
    if family.threshold_structure == "equidistant":
        return _equidistant_thresholds(family, prior, spacing_prior, start)
    ordered = {"transform": _ORDERED} if family.name in ORDERED_THRESHOLDS else {}
    return prior.variable("thresholds", dims=THRESHOLD_DIM, shape=(len(start),), initval=start, **ordered)


def _equidistant_thresholds(family: Family, prior: Prior, spacing_prior: Prior, start: np.ndarray):
    """c_k = threshold_1 + (k - 1) spacing, a deterministic ``thresholds`` beside its two parameters;
    the spacing positive where the thresholds must increase (its prior's support says so)."""
    if any(np.ndim(value) for value in prior.params.values()):
        raise BayesmixError(
            "Equidistant thresholds have one first cut point: the prior for 'thresholds' (on it) takes scalars."
        )
    first = prior.variable("threshold_1", initval=float(start[0]))
    spacing = spacing_prior.variable("spacing", initval=max(float(np.mean(np.diff(start))), 0.1))
    steps = np.arange(len(start), dtype=float)
    return pm.Deterministic("thresholds", first + spacing * steps, dims=THRESHOLD_DIM)


class _Ordered(pm.distributions.transforms.Ordered):
    """PyMC's ordered transform (c_1, then the logs of the gaps), its inverse written without
    ``value.shape``: the sampler's graph is rewritten for JAX without the passes that fold a shape
    into a constant (bayesmix.nuts.density), and JAX cannot trace a symbolic shape."""

    def backward(self, value, *inputs):
        return pt.concatenate([value[..., :1], value[..., :1] + pt.cumsum(pt.exp(value[..., 1:]), axis=-1)], axis=-1)


_ORDERED = _Ordered()


def block_covariance(block: Block, priors: dict[str, Prior]):
    """The Cholesky factor (k, k) of the block's covariance, built as its structure
    (``block.covariance.kind``) says; the variables it adds are named in :func:`public_names`."""
    kind = block.covariance.kind
    if kind not in COVARIANCE_BUILDERS:
        raise BayesmixError(f"The covariance structure '{kind}' of ({block.label}) has no Bayesian form yet.")
    return COVARIANCE_BUILDERS[kind](block, priors)


def _unstructured_covariance(block: Block, priors: dict[str, Prior]):
    """diag(sd) @ L with corr = L L' ~ LKJ: adds ``sd_<label>`` (and, for k > 1, ``cor_<label>``,
    the strict lower triangle of the correlation matrix, and the sampled ``chol_<label>``)."""
    label, k = block.label, block.n_terms
    sd_prior = priors[f"sd_{label}"]
    if k == 1:
        sd = sd_prior.variable(f"sd_{label}", dims=term_dim(block), shape=(1,))
        return sd[:, None]
    chol, corr, sd = pm.LKJCholeskyCov(
        f"chol_{label}",
        n=k,
        eta=float(priors[f"corr_{label}"].params["eta"]),
        sd_dist=sd_prior.distribution(shape=k, name=f"sd_{label}"),
        compute_corr=True,
        store_in_trace=False,
    )
    pm.Deterministic(f"sd_{label}", sd, dims=term_dim(block))
    rows, columns = zip(*term_pairs(block))
    pm.Deterministic(f"cor_{label}", corr[list(columns), list(rows)], dims=pair_dim(block))
    return chol


def _autoregressive_covariance(block: Block, priors: dict[str, Prior]):
    """s L(rho) with L the closed-form Cholesky factor of the AR(1) correlation rho^|i - j|
    (L[i, 0] = rho^i, L[i, j] = rho^(i - j) sqrt(1 - rho^2)): adds the sampled s (``chol_<label>``,
    technical: the factor's scale) and ``rho_<label>``, and ``sd_<label>`` (s for every term) and
    ``cor_<label>`` (every pair's rho^lag)."""
    label, k = block.label, block.n_terms
    s = priors[f"sd_{label}"].variable(f"chol_{label}")
    rho = priors[f"rho_{label}"].variable(f"rho_{label}")
    lags = np.subtract.outer(np.arange(k), np.arange(k))
    lower = np.tril(np.ones((k, k)))
    powers = rho ** pt.as_tensor(np.where(lags > 0, lags, 0).astype(float))
    scale = np.ones((k, k))
    scale[:, 1:] = 0.0
    L = lower * powers * (scale + (1.0 - scale) * pt.sqrt(1.0 - rho**2))
    pm.Deterministic(f"sd_{label}", s * pt.ones(k), dims=term_dim(block))
    rows, columns = zip(*term_pairs(block))
    pm.Deterministic(
        f"cor_{label}", rho ** pt.as_tensor(np.abs(np.subtract(rows, columns)).astype(float)), dims=pair_dim(block)
    )
    return s * L


def _compound_symmetry_covariance(block: Block, priors: dict[str, Prior]):
    """diag(sd) chol((1 - rho) I + rho 11'): adds ``sd_<label>``, the sampled ``rho_<label>`` and
    ``cor_<label>`` (rho for every pair)."""
    label, k = block.label, block.n_terms
    sd = priors[f"sd_{label}"].variable(f"sd_{label}", dims=term_dim(block), shape=(k,))
    rho = priors[f"rho_{label}"].variable(f"rho_{label}")
    L = pt.linalg.cholesky((1.0 - rho) * pt.eye(k) + rho * pt.ones((k, k)))
    pm.Deterministic(f"cor_{label}", rho * pt.ones(len(term_pairs(block))), dims=pair_dim(block))
    return sd[:, None] * L


def _distance_covariance(block: Block, priors: dict[str, Prior]):
    """s chol(R(r)) with R the structure's correlation at the positions' distances (exp(-d / r),
    or exp(-(d / r)^2) for gau): adds the sampled s (``chol_<label>``) and ``range_<label>``, and
    ``sd_<label>`` and ``cor_<label>``. A jitter of 1e-9 on R's diagonal keeps the factor finite
    where a long range makes R nearly singular. A block the sampler approximates
    (:mod:`bayesmix.design.hilbert`) gets the factor of PyMC's HSGP instead (a
    :class:`~bayesmix.bayes.hsgp.BasisFactor`), and no ``cor_<label>`` (k (k - 1) / 2 values per
    draw; they follow from the range)."""
    label, k = block.label, block.n_terms
    s = priors[f"sd_{label}"].variable(f"chol_{label}")
    r = priors[f"range_{label}"].variable(f"range_{label}")
    if approximated(block):  # many positions: PyMC's Hilbert-space basis, no k x k factor
        pm.Deterministic(f"sd_{label}", s * pt.ones(k), dims=term_dim(block))
        return hilbert_factor(block, s, r)
    d = pt.as_tensor(block.covariance.distances)
    R = pt.exp(-((d / r) ** 2)) if block.covariance.kind == "gau" else pt.exp(-d / r)
    L = pt.linalg.cholesky(R + 1e-9 * pt.eye(k))
    pm.Deterministic(f"sd_{label}", s * pt.ones(k), dims=term_dim(block))
    rows, columns = zip(*term_pairs(block))
    pm.Deterministic(f"cor_{label}", R[list(rows), list(columns)], dims=pair_dim(block))
    return s * L


def _matern_covariance(block: Block, priors: dict[str, Prior]):
    """s chol(C(r, kappa)) with C the Matérn correlation at the positions' distances, written with
    the exact engine's integral for the Bessel function (:mod:`bayesmix.design.matern`, the same
    nodes, in PyTensor): adds the sampled s (``chol_<label>``), ``range_<label>`` and
    ``smoothness_<label>``, and ``sd_<label>`` and ``cor_<label>``; 1e-9 on the diagonal as
    :func:`_distance_covariance`."""
    from pytensor.gradient import disconnected_grad

    label, k = block.label, block.n_terms
    s = priors[f"sd_{label}"].variable(f"chol_{label}")
    r = priors[f"range_{label}"].variable(f"range_{label}")
    kappa = priors[f"smoothness_{label}"].variable(f"smoothness_{label}")
    if approximated(block):
        pm.Deterministic(f"sd_{label}", s * pt.ones(k), dims=term_dim(block))
        return hilbert_factor(block, s, r, kappa)
    rows, columns = np.triu_indices(k, 1)
    x = pt.as_tensor(block.covariance.distances[rows, columns]) / r
    upper = pt.exp(log_matern(x, kappa, pt.gammaln, xp=pt, constant=disconnected_grad)[0])
    R = pt.eye(k) + pt.zeros((k, k))[rows, columns].set(upper) + pt.zeros((k, k))[columns, rows].set(upper)
    L = pt.linalg.cholesky(R + 1e-9 * pt.eye(k))
    pm.Deterministic(f"sd_{label}", s * pt.ones(k), dims=term_dim(block))
    pairs_rows, pairs_columns = zip(*term_pairs(block))
    pm.Deterministic(f"cor_{label}", R[list(pairs_rows), list(pairs_columns)], dims=pair_dim(block))
    return s * L


def _toeplitz_covariance(block: Block, priors: dict[str, Prior]):
    """diag(sd) chol(R) with R[i, j] = lags[|i - j|]: adds ``sd_<label>``, the sampled ``lags_<label>``
    (one correlation per lag; where they make no positive-definite R the density is -inf and NUTS
    steps back) and ``cor_<label>``."""
    label, k = block.label, block.n_terms
    sd = priors[f"sd_{label}"].variable(f"sd_{label}", dims=term_dim(block), shape=(k,))
    lags = priors[f"lags_{label}"].variable(f"lags_{label}", shape=(k - 1,))
    index = np.abs(np.subtract.outer(np.arange(k), np.arange(k)))
    R = pt.concatenate([pt.ones(1), lags])[index]
    L = pt.linalg.cholesky(R)
    rows, columns = zip(*term_pairs(block))
    pm.Deterministic(f"cor_{label}", R[list(rows), list(columns)], dims=pair_dim(block))
    return sd[:, None] * L


def _reduced_rank_covariance(block: Block, priors: dict[str, Prior]):
    """[Lambda | 0] with Lambda (k x d) lower trapezoidal: ``loadings_<label>`` (k, d), the sampled
    ``chol_<label>`` masked above the diagonal with its diagonal made positive by its absolute
    value (a column's sign is not identified; folding it keeps the posterior in one of the mirror
    images), ``sd_<label>`` and ``cor_<label>`` from Lambda Lambda'."""
    label, k, d = block.label, block.n_terms, block.covariance.rank
    raw = priors[f"loadings_{label}"].variable(f"chol_{label}", shape=(k, d))  # technical: before folding
    mask = np.tril(np.ones((k, d)))
    diagonal = np.eye(k, d)
    loadings = pm.Deterministic(f"loadings_{label}", raw * mask * (1.0 - diagonal) + pt.abs(raw) * diagonal)
    cov = loadings @ loadings.T
    sd = pt.sqrt(pt.diagonal(cov))
    pm.Deterministic(f"sd_{label}", sd, dims=term_dim(block))
    rows, columns = zip(*term_pairs(block))
    corr = cov / (sd[:, None] * sd[None, :])
    pm.Deterministic(f"cor_{label}", corr[list(rows), list(columns)], dims=pair_dim(block))
    return pt.concatenate([loadings, pt.zeros((k, k - d))], axis=1)


def _homogeneous_diagonal_covariance(block: Block, priors: dict[str, Prior]):
    """s I: adds the sampled s (``chol_<label>``) and ``sd_<label>`` (s for every term); the terms
    are independent, so no correlations."""
    label, k = block.label, block.n_terms
    s = priors[f"sd_{label}"].variable(f"chol_{label}")
    pm.Deterministic(f"sd_{label}", s * pt.ones(k), dims=term_dim(block))
    return s * pt.eye(k)


def _known_covariance(block: Block, priors: dict[str, Prior]):
    """s L with L L' = A the levels' known covariance: adds the sampled s (``chol_<label>``) and
    ``sd_<label>`` (s sqrt(A_jj) for every level); the correlations are A's, not sampled."""
    label, root = block.label, block.covariance.root
    s = priors[f"sd_{label}"].variable(f"chol_{label}")
    pm.Deterministic(f"sd_{label}", s * np.sqrt(np.sum(root * root, axis=1)), dims=term_dim(block))
    return s * pt.as_tensor(root)


# covariance structure (its ``kind``) -> the PyMC variables that make the block's Cholesky factor
COVARIANCE_BUILDERS = {
    "us": _unstructured_covariance,
    "homdiag": _homogeneous_diagonal_covariance,
    "mm": _homogeneous_diagonal_covariance,
    "known": _known_covariance,
    "ar1": _autoregressive_covariance,
    "cs": _compound_symmetry_covariance,
    "toep": _toeplitz_covariance,
    "rr": _reduced_rank_covariance,
    "exp": _distance_covariance,
    "gau": _distance_covariance,
    "ou": _distance_covariance,
    "mat": _matern_covariance,
}


def _block_effects(block: Block, priors: dict[str, Prior], parameterization: str, means=None):
    """The (M, k) random effects of one block.

    Centred with ``means`` (M, k) (hierarchical centring, Gelfand, Sahu and Carlin 1995): the sampled
    ``u_<label>`` ~ N(means, S S') and b = u - means (:func:`_centring_means`). The posterior is the same
    (a shift with unit Jacobian); NUTS no longer has to move the fixed effect against the mean of
    the level effects, which it confounds when each level carries much information.
    """
    label, dims = block.label, (level_dim(block), term_dim(block))
    chol = block_covariance(block, priors)
    if parameterization == "centered":
        if means is None:
            if block.n_terms == 1:
                return pm.Normal(f"re_{label}", 0.0, chol[0, 0], dims=dims)
            return pm.MvNormal(f"re_{label}", mu=pt.zeros(block.n_terms), chol=chol, dims=dims)
        if block.n_terms == 1:
            u = pm.Normal(f"u_{label}", means, chol[0, 0], dims=dims)
        else:
            u = pm.MvNormal(f"u_{label}", mu=means, chol=chol, dims=dims)
        return pm.Deterministic(f"re_{label}", u - means, dims=dims)
    if isinstance(chol, BasisFactor):  # one z per basis function
        z = pm.Normal(f"z_{label}", 0.0, 1.0, dims=(level_dim(block), basis_dim(block)))
        return pm.Deterministic(f"re_{label}", chol.effects(z), dims=dims)
    z = pm.Normal(f"z_{label}", 0.0, 1.0, dims=dims)
    return pm.Deterministic(f"re_{label}", z @ chol.T, dims=dims)


def shared_columns(design: Design, block: Block) -> dict[int, int]:
    """{term index: fixed-effect index} for the block's terms that are also columns of X (same name
    and the same values in every row), e.g. the intercept of (1 | g) beside a fixed intercept."""
    fixed = {name: j for j, name in enumerate(design.fixed_names)}
    return {
        t: fixed[term]
        for t, term in enumerate(block.terms)
        if term in fixed and np.array_equal(design.X[:, fixed[term]], block.Zt[:, t])
    }


def level_columns(design: Design, block: Block) -> tuple[list[int], np.ndarray]:
    """Fixed-effect columns constant within every level of the block (group-level predictors, e.g. a
    subject's score for (1 | subject)): their indices and their (M, c) values per level."""
    X, codes = design.X, block.codes
    first = np.full(block.n_levels, -1)
    first[codes[::-1]] = np.arange(len(codes))[::-1]  # first row of each level
    seen = first >= 0
    per_level = np.zeros((block.n_levels, X.shape[1]))
    per_level[seen] = X[first[seen]]
    constant = np.all(X == per_level[codes], axis=0)
    columns = [j for j in range(X.shape[1]) if constant[j]]
    return columns, per_level[:, columns]


def _centring_means(design: Design, per_block: dict[str, str], beta) -> dict[str, object]:
    """Per centred block, the (M, k) means its level effects are centred on.

    A term that is also a fixed-effect column is centred on that fixed effect; the intercept term
    also on the group-level predictors (X's columns constant within each of the block's levels:
    u_m ~ N(x_m' beta, ...)). Each fixed effect is absorbed by one block only: first the block whose
    mean the prior pins least (largest between-level variance / levels), as the fixed effect trades
    against that mean most.
    """
    centred = [b for b in design.blocks if per_block[b.label] == "centered"]
    if not centred or not design.in_memory:
        return {}
    taken, out = set(), {}

    def pinned(block):
        anova = level_anova(design, block)
        return anova.between / anova.levels

    for block in sorted(centred, key=lambda b: -pinned(b)):
        if block.members:  # terms that are levels: every term centred on the intercept they add up to
            intercept = _members_intercept(design, block)
            if intercept is not None and intercept not in taken:
                taken.add(intercept)
                out[block.label] = pt.ones((1, block.n_terms)) * beta[intercept]
            continue
        shared = {t: j for t, j in shared_columns(design, block).items() if j not in taken}
        intercept = block.terms.index("Intercept") if "Intercept" in block.terms else None
        columns, values = level_columns(design, block) if intercept is not None else ([], None)
        free = [c for c, j in enumerate(columns) if j not in taken and j not in shared.values()]
        means = [None] * block.n_terms
        for t, j in shared.items():
            means[t] = pt.ones(block.n_levels) * beta[j]
        if free:
            level_mean = pt.dot(pt.constant(values[:, free]), beta[[columns[c] for c in free]])
            means[intercept] = level_mean if means[intercept] is None else means[intercept] + level_mean
        if all(m is None for m in means):
            continue
        taken.update(shared.values())
        taken.update(columns[c] for c in free)
        out[block.label] = pt.stack([pt.zeros(block.n_levels) if m is None else m for m in means], axis=1)
    return out


def _members_intercept(design: Design, block: Block) -> int | None:
    """The fixed intercept's column when a block whose terms are levels adds up to it (every row's
    Z summing to 1: a known covariance's indicators, mm()'s scaled weights), else None."""
    if "Intercept" not in design.fixed_names or not np.allclose(block.Zt.sum(axis=1), 1.0):
        return None
    return design.fixed_names.index("Intercept")


CENTRE_RATIO = 1.0  # centre a block when its levels' data outweigh the spread between levels


@dataclass(frozen=True)
class LevelAnova:
    """A one-way ANOVA of the response (proportions for binomial) by one block's levels:
    median rows per level, the between-level variance of the level means less their noise
    (floored at 0), the within-level variance, and the number of levels with rows."""

    rows_per_level: float
    between: float
    within: float
    levels: int


def level_anova(design: Design, block: Block) -> LevelAnova:
    y = design.y if design.trials is None else design.y / design.trials
    n = np.bincount(block.codes, minlength=block.n_levels).astype(float)
    seen = n > 0
    means = np.bincount(block.codes, weights=y, minlength=block.n_levels) / np.maximum(n, 1)
    within = float(np.sum((y - means[block.codes]) ** 2)) / max(len(y) - int(seen.sum()), 1)
    between = 0.0
    if seen.sum() >= 2:
        between = max(float(np.var(means[seen], ddof=1)) - within * float(np.mean(1.0 / n[seen])), 0.0)
    return LevelAnova(float(np.median(n[seen])), between, within, int(seen.sum()))


def information_ratio(design: Design, block: Block) -> float:
    """How much each level's data say about its effects, relative to the spread between levels:
    per term, the between-level variance of the levels' own least-squares estimates (less their
    noise) over a typical level's sampling variance of that estimate; the smallest over the terms.

    For an intercept this is rows per level x between-level variance / within-level variance (a
    one-way ANOVA). A slope counts on its own: levels can pin their intercepts and say little about
    their slopes (few rows, little spread of x within a level, or slopes that hardly vary), and a
    centred block whose slope SD is near 0 sits in the funnel that biased the slope SD in
    simulation-based calibration (docs/calibration.md). Above 1 the level effects are well
    identified by their own data, where the centred parameterisation samples better; below 1 they
    are shrunk mostly by the prior, where the non-centred one does (Papaspiliopoulos, Roberts and
    Skold 2007). The response (proportions for binomial) is taken less its least-squares fit on the
    fixed effects, a rough linear measure: a level-wide covariate (a site's treatment) explains
    between-level spread that the block's SD then does not have to.
    """
    if block.members:  # terms that are levels: as a random intercept over them (each row's main level)
        codes = np.argmax(block.Zt, axis=1)
        block = replace(block, codes=codes, Zt=np.ones((len(codes), 1)), levels=block.members, terms=("Intercept",))
    y = design.y if design.trials is None else design.y / design.trials
    if design.X.shape[1]:
        y = y - design.X @ np.linalg.lstsq(design.X, y, rcond=None)[0]
    codes, M, k = block.codes, block.n_levels, block.n_terms
    raw = raw_cross_products([(codes, block.Zt, M)], np.zeros((len(y), 0)), y)  # no X: RZ1 is y'Z
    ZZ, Zy = raw.D, raw.RZ1.toarray().reshape(M, k)
    rows = np.bincount(codes, minlength=M).astype(float)
    yy = np.bincount(codes, weights=y * y, minlength=M)
    # levels whose own data determine all k effects (more rows than terms, Z_m'Z_m well conditioned)
    usable = rows > k
    usable[usable] = np.linalg.cond(ZZ[usable]) < 1e8
    if usable.sum() < 2:
        return 0.0
    estimates = np.linalg.solve(ZZ[usable], Zy[usable][..., None])[..., 0]  # (levels, k)
    residual = yy[usable] - np.einsum("mk,mk->m", estimates, Zy[usable])
    within = float(np.sum(residual)) / float(np.sum(rows[usable] - k))
    if within <= 0:
        return np.inf
    noise = within * np.diagonal(np.linalg.inv(ZZ[usable]), axis1=1, axis2=2)  # (levels, k) sampling variances
    between = np.maximum(np.var(estimates, axis=0, ddof=1) - noise.mean(axis=0), 0.0)
    return float(np.min(between / np.median(noise, axis=0)))


def choose_parameterization(design: Design) -> dict[str, str]:
    """``"auto"`` for a model that is not collapsed: per block, centred where
    :func:`information_ratio` is at least :data:`CENTRE_RATIO`, else non-centred (always, for a
    design known only through its statistics: it needs the rows, and only the collapsed model runs)."""
    if not design.in_memory:
        return "noncentered"
    return {
        b.label: "centered" if not approximated(b) and information_ratio(design, b) >= CENTRE_RATIO else "noncentered"
        for b in design.blocks
    }


def weakly_informed_centred(design: Design, parameterization) -> dict[str, float]:
    """{block label: information ratio} of the blocks that ``parameterization`` centres although
    their levels carry little information (:func:`information_ratio` below :data:`CENTRE_RATIO`).
    There a centred block's SDs sit in a funnel that NUTS explores with bias: simulation-based
    calibration of an all-centred bernoulli model rejected the slope SD's ranks with 8 rows per
    level and with 40 (chi-square p < 0.001 and 0.001, 200 replications each; docs/calibration.md)."""
    if not design.in_memory or parameterization in ("noncentered", "marginal"):
        return {}
    per_block = _per_block(design, parameterization)
    ratios = {b.label: information_ratio(design, b) for b in design.blocks if per_block[b.label] == "centered"}
    return {label: ratio for label, ratio in ratios.items() if ratio < CENTRE_RATIO}


def build_model(design: Design, family: Family, priors: dict[str, Prior], parameterization="noncentered") -> pm.Model:
    """The PyMC model. ``parameterization``: one name for all blocks or {block label: name}."""
    per_block = _per_block(design, parameterization)
    with pm.Model(coords=model_coords(design, family)) as model:
        beta = fixed_effects(design, priors)
        means = _centring_means(design, per_block, beta)
        eta = _predictor_eta(design.predictors["mu"], beta, priors, per_block, means)
        params = family_parameters(design, family, priors, per_block)
        trials = None if design.trials is None else pm.Data("trials", design.trials, dims=OBS_DIM)
        observed = pm.Data("observed", design.y, dims=OBS_DIM)
        weights = None if design.weights is None else pm.Data("weights", design.weights, dims=OBS_DIM)
        censoring = None
        if design.censoring is not None:  # a finite upper bound where a row is not interval-censored
            upper = np.where(design.censoring == 3, design.upper, design.y + 1.0)
            censoring = (pm.Data("censoring", design.censoring, dims=OBS_DIM), pm.Data("upper", upper, dims=OBS_DIM))
        name = response_name(design, model.named_vars)
        family.likelihood(
            name,
            eta,
            params,
            observed,
            trials=trials,
            dims=OBS_DIM,
            weights=weights,
            censoring=censoring,
            groups=design.blocks[0].codes if design.blocks else None,  # within-level moments (the tweedie's)
        )
    return model


def _predictor_eta(
    predictor: Predictor,
    beta,
    priors: dict[str, Prior],
    per_block: dict[str, str],
    means: dict,
    X_name=("X", COEF_DIM),
    built: dict | None = None,
):
    """One linear predictor in the graph: its arrays as ``pm.Data`` (so a new dataset of the same
    shapes reuses the compiled program; X named and dimensioned as ``X_name`` says), its blocks'
    effects, and eta. ``built``: {label: (Zt, codes, effects)} of the blocks made so far, where a
    block shared by several predictors is made once (each predictor then reads its own terms)."""
    X = pm.Data(X_name[0], predictor.X, dims=(OBS_DIM, X_name[1]))
    built = {} if built is None else built
    terms = []
    for block in predictor.blocks:
        if block.label not in built:
            codes = pm.Data(f"codes_{block.label}", block.codes, dims=OBS_DIM)
            rows = one_term_rows(block.Zt)
            if rows is None:
                Zt = pm.Data(f"Z_{block.label}", block.Zt, dims=(OBS_DIM, term_dim(block)))
            else:  # many terms, one per row: each row's value and term, not the dense (n, k) Z
                values = pm.Data(f"Z_{block.label}", rows.values, dims=OBS_DIM)
                Zt = OneTermRows(values, pm.Data(f"Zterm_{block.label}", rows.terms, dims=OBS_DIM))
            effects = _block_effects(block, priors, per_block[block.label], means.get(block.label))
            built[block.label] = (Zt, codes, effects)
        Zt, codes, effects = built[block.label]
        if block.outputs:
            mask = block.mask(predictor.name)
            Zt = Zt.masked(pt.as_tensor(mask)) if isinstance(Zt, OneTermRows) else Zt * mask
        terms.append((Zt, codes, effects))
    offset = None if predictor.offset is None else pm.Data("offset", predictor.offset, dims=OBS_DIM)
    return linear_predictor(X, beta, terms, offset)


def _per_block(design: Design, parameterization) -> dict[str, str]:
    labels = [b.label for b in design.all_blocks]
    if isinstance(parameterization, str):
        parameterization = {label: parameterization for label in labels}
    unknown = set(parameterization) - set(labels)
    if unknown:
        name = sorted(unknown)[0]
        raise BayesmixError(
            f"parameterization names block '{name}', which is not in the model.{did_you_mean(name, labels)} "
            f"Blocks: {', '.join(labels)}."
        )
    approximate = {b.label for b in design.all_blocks if approximated(b)}
    for label, choice in parameterization.items():
        if choice == "centered" and label in approximate:
            raise BayesmixError(
                f"Block '{label}' is sampled through its Hilbert-space basis (Model(..., hsgp=...)), which is "
                f"non-centred only. Pass parameterization={{'{label}': 'noncentered'}} (or 'auto'), or "
                "Model(..., hsgp=False) for the exact factor."
            )
        if choice not in PARAMETERIZATIONS:
            raise BayesmixError(
                f"Unknown parameterization '{choice}' for block '{label}'.{did_you_mean(choice, PARAMETERIZATIONS)} "
                f"Choices: {', '.join(PARAMETERIZATIONS)}."
            )
    return {label: parameterization.get(label, "noncentered") for label in labels}
