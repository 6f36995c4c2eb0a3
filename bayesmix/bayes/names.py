"""The names of a sampled model's variables and dimensions, and reading them back from a posterior.

Shared by the PyMC graphs (bayes/build.py, bayes/collapsed/) and by what reads a posterior
(predictions, summaries, checks) without building one: this module imports neither PyMC nor
PyTensor, so an exact fit and its predictions never load them. The naming rules are in
:mod:`bayesmix.bayes.build`'s docstring.
"""

from __future__ import annotations

import numpy as np

from bayesmix.design.covariance import INDEPENDENT_STRUCTURES, ONE_SD_STRUCTURES
from bayesmix.design.encode import Block, Design, name_part
from bayesmix.design.hilbert import approximated
from bayesmix.design.linpred import linear_predictor
from bayesmix.families import Family
from bayesmix.ordinal import threshold_names

OBS_DIM = "obs"
THRESHOLD_DIM = "threshold"  # an ordinal model's thresholds, named "1|2", "2|3", ... as clmm and brms
COEF_DIM = "coef"
# names ArviZ, xarray and PyMC give dimensions and variables themselves, and the fixed names of the
# model's data and parameters: an observed variable of that name would collide with them
RESERVED = frozenset(
    {"chain", "draw", "sample", OBS_DIM, COEF_DIM, "beta", "sigma", "nu", "alpha", "shape", "phi", "zi", "hu"}
    | {"X", "observed", "offset", "trials", "weights", "censoring", "upper"}
    | {"D", "ZX", "Zy", "XX", "Xy", "yy", "Z1y", "Gy", "GG", "Ky", "KK", "GK"}
    | {"Q", "counts", "P", "prior_beta_sigma", "marginal_loglik"}
)
OUR_PREFIXES = (
    "sd_",
    "cor_",
    "corr_",
    "rho_",
    "range_",
    "lags_",
    "loadings_",
    "re_",
    "z_",
    "u_",
    "chol_",
    "codes_",
    "Z_",
    "Zterm_",
    "A_",
    "beta",
    "prior_",
)
DIM_SUFFIXES = ("__level", "__term", "__pair", "__basis")


def level_dim(block: Block) -> str:
    """The dimension of a block's group levels: ``<group>__level`` (coordinates: the levels)."""
    return f"{name_part(block.group)}__level"


def term_dim(block: Block) -> str:
    return f"{block.label}__term"


def pair_dim(block: Block) -> str:
    return f"{block.label}__pair"


def basis_dim(block: Block) -> str:
    """A block's Hilbert-space basis functions (:mod:`bayesmix.design.hilbert`): ``<label>__basis``."""
    return f"{block.label}__basis"


def term_pairs(block: Block) -> list[tuple[int, int]]:
    """(i, j), i < j, in brms's order (Intercept-Days, Intercept-x, Days-x): ``cor_<label>``'s order."""
    k = block.n_terms
    return [(i, j) for i in range(k) for j in range(i + 1, k)]


def pair_names(block: Block) -> list[str]:
    return [f"{block.terms[i]}__{block.terms[j]}" for i, j in term_pairs(block)]


def correlation_matrices(pairs: np.ndarray, k: int) -> np.ndarray:
    """(..., k, k) correlation matrices from (..., k (k - 1) / 2) values in :func:`term_pairs` order."""
    pairs = np.asarray(pairs, dtype=float)
    out = np.broadcast_to(np.eye(k), pairs.shape[:-1] + (k, k)).copy()
    for n, (i, j) in enumerate([(a, b) for a in range(k) for b in range(a + 1, k)]):
        out[..., i, j] = out[..., j, i] = pairs[..., n]
    return out


def flat_draws(posterior, name: str) -> np.ndarray:
    """Draws of ``name`` with chain and draw stacked into the first axis: (S, ...)."""
    values = posterior[name].values
    return values.reshape((-1,) + values.shape[2:])


def covariance_roots(posterior, block: Block) -> np.ndarray:
    """(S, k, k) per draw, the lower Cholesky factor of a block's covariance: diag(sd) L with the
    correlation matrix L L' (what new levels' effects and the collapsed draws are scaled by)."""
    sd = flat_draws(posterior, f"sd_{block.label}")
    return sd[:, :, None] * np.linalg.cholesky(block_correlations(posterior, block))


def block_correlations(posterior, block: Block, draws: slice = slice(None)) -> np.ndarray:
    """(S, k, k) correlation matrices of a block from a posterior's ``cor_<label>`` (chain and
    draw stacked; the identity for one term), or, for a block sampled through its Hilbert-space
    basis (which stores no ``cor_<label>``: k (k - 1) / 2 values per draw), the structure's exact
    correlation at each draw's range. ``draws``: a slice of the stacked draws."""
    n = flat_draws(posterior, f"sd_{block.label}")[draws].shape[0]
    k, kind = block.n_terms, block.covariance.kind
    if k == 1:
        return np.ones((n, 1, 1))
    if kind in INDEPENDENT_STRUCTURES:  # independent terms
        return np.broadcast_to(np.eye(k), (n, k, k)).copy()
    if kind == "known":  # the given matrix's correlations
        root = block.covariance.root
        scale = np.sqrt(np.sum(root * root, axis=1))
        correlation = (root @ root.T) / np.outer(scale, scale)
        return np.broadcast_to(correlation, (n, k, k)).copy()
    if approximated(block):
        ranges = flat_draws(posterior, f"range_{block.label}")[draws]
        if kind == "mat":
            kappas = flat_draws(posterior, f"smoothness_{block.label}")[draws]
            return np.stack([block.covariance.correlation_at(r, kappa) for r, kappa in zip(ranges, kappas)])
        return np.stack([block.covariance.correlation(r) for r in ranges])
    pairs = flat_draws(posterior, f"cor_{block.label}")[draws]  # (S, pair)
    return correlation_matrices(pairs, k)


def draw_chunks(posterior, block: Block, values: int = 4_000_000):
    """Slices of the stacked draws such that a chunk's (draws, k, k) correlations hold at most
    ``values`` numbers: what reads every draw's correlation matrix of a block with many terms."""
    n = flat_draws(posterior, f"sd_{block.label}").shape[0]
    size = max(1, values // max(block.n_terms**2, 1))
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def covariance_moments(posterior, block: Block) -> dict[str, np.ndarray]:
    """The posterior mean and SD of a block's (k, k) correlation matrix and the mean of its
    covariance, accumulated over chunks of draws (:func:`draw_chunks`)."""
    sd = flat_draws(posterior, f"sd_{block.label}")  # (S, k)
    total, squares, cov = 0.0, 0.0, 0.0
    for chunk in draw_chunks(posterior, block):
        corr = block_correlations(posterior, block, chunk)
        total = total + corr.sum(axis=0)
        squares = squares + (corr**2).sum(axis=0)
        cov = cov + (sd[chunk][:, :, None] * corr * sd[chunk][:, None, :]).sum(axis=0)
    n = sd.shape[0]
    mean = total / n
    spread = np.sqrt(np.maximum(squares - n * mean**2, 0.0) / max(n - 1, 1))
    return {"corr": mean, "corr_se": spread, "cov": cov / n}


def response_name(design: Design, reserved=()) -> str:
    """The observed variable's name: the response column when it is a plain name that no other name
    of the model, of its dimensions or of ArviZ's can be (nor can ``<name>_mean``, where predicted
    means go: ``re`` would give ``re_mean``), else ``y``."""
    name = design.spec.response.expr
    plain = (
        name.isidentifier()
        and name not in RESERVED
        and name not in reserved
        and not f"{name}_".startswith(OUR_PREFIXES)
        and not name.endswith(DIM_SUFFIXES)
    )
    return name if plain else "y"


def submodel_dim(param: str) -> str:
    """The dimension of a zi= or dispersion= formula's coefficients: ``<param>_coef``."""
    return f"{param}_coef"


def submodel_parameters(design: Design, family: Family) -> dict[str, str]:
    """{role: the family parameter its formula predicts} for the zi= and dispersion= formulas."""
    return {role: family.submodel_parameter(role) for role in getattr(design, "submodels", {})}


def parameter_draws(
    posterior, design: Design, family: Family, submodel_X: dict | None = None, submodel_blocks: dict | None = None
) -> dict:
    """Each family parameter's draws: (S, 1) for a constant one, (S, n) for one a zi= or
    dispersion= formula predicts, on the training rows (with its blocks' effects) or on new rows:
    ``submodel_X`` ({role: X}) and ``submodel_blocks`` ({role: [(Zt, codes, effects (S, M, k))]},
    empty for the population level)."""
    predicted = submodel_parameters(design, family)
    out = {
        name: flat_draws(posterior, name) if name == "thresholds" else flat_draws(posterior, name)[:, None]
        for name in family.params
        if name not in predicted.values()
    }  # an ordinal model's thresholds stay (S, K - 1)
    for role, name in predicted.items():
        if submodel_X is None:
            X = design.submodels[role].X
            blocks = [
                (b.Zt * b.mask(role), b.codes, flat_draws(posterior, f"re_{b.label}"))
                for b in design.submodels[role].blocks
            ]
        else:
            X, blocks = submodel_X[role], (submodel_blocks or {}).get(role, [])
        eta = linear_predictor(np.asarray(X), flat_draws(posterior, f"{name}_beta"), blocks)
        out[name] = family.parameter_link(name).inverse(eta, np)
    return out


def model_coords(design: Design, family: Family | None = None) -> dict:
    coords = {COEF_DIM: list(design.fixed_names), OBS_DIM: np.arange(design.nobs)}
    if family is not None:
        for role, param in submodel_parameters(design, family).items():
            coords[submodel_dim(param)] = list(design.submodels[role].fixed_names)
        if family.ordinal:
            coords[THRESHOLD_DIM] = threshold_names(design.codings.response_levels)
    for block in design.all_blocks:
        coords[level_dim(block)] = list(block.levels)
        coords[term_dim(block)] = list(block.terms)
        if block.n_terms > 1 and block.covariance.kind not in ONE_SD_STRUCTURES and not approximated(block):
            coords[pair_dim(block)] = pair_names(block)
        if approximated(block):
            coords[basis_dim(block)] = list(range(block.covariance.hsgp.rank))
    return coords


def public_names(design: Design, family: Family) -> list[str]:
    """The posterior's variables, each identifiable quantity once: ``beta``, the family's parameters,
    per block ``sd_<label>``, ``cor_<label>`` (more than one term) and ``re_<label>``."""
    names = ["beta"] if design.fixed_names else []
    predicted = set(submodel_parameters(design, family).values())
    names += [name if name not in predicted else f"{name}_beta" for name in family.params]
    if family.threshold_structure == "equidistant":  # the gap; the first cut point is thresholds[0]
        names.append("spacing")
    for block in design.all_blocks:
        names.append(f"sd_{block.label}")
        kind = block.covariance.kind
        if block.n_terms > 1 and kind not in ONE_SD_STRUCTURES and not approximated(block):  # else none stored
            names.append(f"cor_{block.label}")
        if kind in ("ar1", "cs"):  # a structured block's one correlation
            names.append(f"rho_{block.label}")
        elif kind == "toep":  # a correlation per lag
            names.append(f"lags_{block.label}")
        elif kind == "rr":  # the loadings
            names.append(f"loadings_{block.label}")
        elif kind not in ("us", *ONE_SD_STRUCTURES):  # a distance structure's range (and mat's smoothness)
            names.append(f"range_{block.label}")
            if kind == "mat":
                names.append(f"smoothness_{block.label}")
        names.append(f"re_{block.label}")
    return names


TECHNICAL_GROUP = "sampler_internals"


def split_technical(idata, design: Design, family: Family, groups=("posterior",), keep=True):
    """Move the technical variables (all but :func:`public_names`: Cholesky factors, standardised
    and centred effects, per-coefficient ``beta[...]``) out of ``groups`` of ``idata``: into the
    group :data:`TECHNICAL_GROUP` (with ``keep``; for the posterior) or nowhere. Dimensions no
    variable uses any more are dropped. Returns ``idata`` (changed in place)."""
    public = public_names(design, family)
    for group in groups:
        if group not in idata.groups():
            continue
        data = idata[group]
        technical = [name for name in data.data_vars if name not in public]
        if keep and technical:
            moved = data[technical]
            idata.add_groups({TECHNICAL_GROUP: moved.drop_dims(_unused_dims(moved))})
        kept = data[[name for name in public if name in data.data_vars]]  # in public_names' order
        # setattr, not idata[group] = ...: ArviZ's __setitem__ lists an existing group a second time
        setattr(idata, group, kept.drop_dims(_unused_dims(kept)))
    return idata


def _unused_dims(data) -> list[str]:
    return [
        d for d in data.dims if d not in ("chain", "draw") and not any(d in v.dims for v in data.data_vars.values())
    ]
