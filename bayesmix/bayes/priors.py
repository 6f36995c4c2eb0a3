"""Default priors scaled to the data, and overrides by parameter name.

The rule (documented in docs/priors.md), with ``s`` the response's SD when the link is the
identity and 1 otherwise (the link scale of logit/log models):

- each slope ``b_j``: Normal(0, 2.5 s / sd(x_j));
- ``Intercept``: Normal(g(mean y), 2.5 s sqrt(1 + sum_j (mean(x_j) / sd(x_j))^2)), i.e. the
  implied prior of the intercept when the centred intercept and the slopes have the priors above;
- random-effect SDs ``sd_<block>``: HalfNormal(2.5 s / sd(z_j)) per term (sd(z_j) = 1 for the
  intercept);
- correlations ``corr_<block>``: LKJ(eta=2), mildly favouring smaller correlations; a structured
  block's one correlation ``rho_<block>`` (ar1, cs): uniform where the matrix is positive definite,
  and an ar1 block's one SD the HalfNormal of its first term; a distance structure's (exp, gau,
  ou) range ``range_<block>`` LogNormal(log of the median distance between its positions, 1);
- ``sigma`` (gaussian, t): Exponential(1 / sd(y)); ``nu`` (t): Gamma(2, 0.1); for the lognormal
  families (mu and sigma on the log scale) ``s``, the intercept's centre and sigma's scale read log y;
- ``alpha`` (negative binomial), ``shape`` (gamma), ``phi`` (beta): LogNormal(log 10, 2), a median
  of 10 with 95 % between 0.2 and 500; the weibull's ``shape``: LogNormal(0, 1), centred on the
  exponential (a large shape at the start overflows (y / scale)^shape);
- ``zi``, ``hu``: Beta(1, 1);
- a categorical model's per-category coefficients ``mu<level>_<coefficient>`` (log odds against the
  first level): the intercept Normal(0, 2.5), the slopes Normal(0, 2.5 / sd(x)); a coefficient's
  name alone (``"x"``) sets it in every category, and ``"b"`` every slope;
- an ordinal model's ``thresholds``: StudentT(3, 0, 2.5) each, ordered (brms's default); with
  equidistant thresholds it is the first cut point's, and ``spacing`` (the gap) is HalfNormal(2.5)
  (Normal(0, 2.5) for the sequential families, whose thresholds need not increase).

Every parameter is overridden through ``priors={"name": Prior("Normal", mu=0, sigma=1)}``;
``"b"`` sets all slopes at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from bayesmix.densities import LOG_SCALE
from bayesmix.design.covariance import DISTANCE_STRUCTURES, ONE_SD_STRUCTURES
from bayesmix.design.encode import Design
from bayesmix.design.moments import ColumnMoments, DesignMoments, design_moments
from bayesmix.errors import BayesmixError, did_you_mean
from bayesmix.families import Family
from bayesmix.ordinal import ORDERED_THRESHOLDS

LKJ_ETA = 2.0
SCALE_MULTIPLIER = 2.5


@dataclass(frozen=True)
class Prior:
    """A prior: a PyMC distribution name and its parameters, e.g. ``Prior("Normal", mu=0, sigma=5)``.

    For ``corr_<block>`` the distribution is ``"LKJ"`` with parameter ``eta``.
    """

    dist: str
    params: dict = field(default_factory=dict)

    def __init__(self, dist: str, **params):
        object.__setattr__(self, "dist", dist)
        object.__setattr__(self, "params", dict(params))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_short(v)}" for k, v in self.params.items())
        return f"{self.dist}({args})"

    def distribution(self, shape=None, name: str | None = None):
        """The unnamed PyMC distribution (``pm.X.dist``) with this prior's parameters; given the
        ``name`` of the parameter it is the prior of (inside a model context), with the parameters as
        that model's data (:meth:`parameters`)."""
        import pymc as pm

        params = self.params if name is None else self.parameters(name)
        return getattr(pm, self.dist).dist(**params, **({} if shape is None else {"shape": shape}))

    def variable(self, name: str, **kwargs):
        """A named PyMC random variable with this prior, inside the current model context."""
        import pymc as pm

        return getattr(pm, self.dist)(name, **self.parameters(name), **kwargs)

    def parameters(self, name: str) -> dict:
        """The parameters, each numeric one as ``pm.Data`` ``prior_<name>_<parameter>`` of the
        current model. Why: the compiled programs then depend on the priors' shapes, not on their
        values (bayesmix.nuts.program_cache), so a refit whose data-scaled default priors moved (new data
        of the same shape) reuses them instead of compiling again (sleepstudy-shaped: ~4 s)."""
        import pymc as pm

        def data(key, value):  # static shapes: JAX traces shapes, not values
            return pm.Data(f"prior_{name}_{key}", value, shape=value.shape)

        return {
            key: data(key, np.asarray(value, dtype=float)) if np.asarray(value).dtype.kind in "biuf" else value
            for key, value in self.params.items()
        }


def _short(value) -> str:
    array = np.asarray(value, dtype=float)
    if array.ndim == 0:
        return f"{float(array):.4g}"
    return "[" + ", ".join(f"{v:.4g}" for v in array.ravel()) + "]"


def _scale(moments: ColumnMoments, j: int = 0) -> float:
    """The SD of column ``j``; 1 where it is 0 (a constant column), undefined (one row) or not finite."""
    sd = float(moments.sd[j]) if moments.n > 1 else 0.0
    return sd if np.isfinite(sd) and sd > 0 else 1.0


def _link_location(moments: DesignMoments, family: Family) -> float:
    """g(mean response), clipped into the link's domain; 0 when undefined."""
    mean = float(moments.y.mean[0])
    if family.link.name in ("logit", "probit", "cloglog"):
        mean = min(max(mean, 0.01), 0.99)
    elif family.link.name in ("log", "inverse", "sqrt"):
        mean = max(mean, 0.01)
    with np.errstate(all="ignore"):
        location = float(family.link.forward(np.asarray(mean)))
    return location if np.isfinite(location) else 0.0


def response_scale(moments: DesignMoments, family: Family) -> float:
    """``s`` of the rule: sd(y) on an identity link, else 1."""
    return _scale(moments.y) if family.link.name == "identity" else 1.0


def intercept_columns(moments: DesignMoments) -> list[bool]:
    """For each column of X, whether it is the constant-1 intercept."""
    return [bool(low == high == 1.0) for low, high in zip(moments.X.low, moments.X.high)]


def default_priors(design: Design, family: Family, moments: DesignMoments | None = None) -> dict[str, Prior]:
    """The default prior of every parameter, by name (see the module docstring for the rule).

    The rule reads only column moments (:mod:`bayesmix.design.moments`), so a design known through its
    statistics (a Dask DataFrame) gets the same priors as the rows in memory.
    """
    moments = design_moments(design) if moments is None else moments
    if family.name in LOG_SCALE and design.in_memory:  # mu and sigma are the mean and SD of log y
        moments = replace(moments, y=ColumnMoments.of(np.log(design.y[design.y > 0])))
    s = response_scale(moments, family)
    priors: dict[str, Prior] = {}
    is_intercept = intercept_columns(moments)
    inflation = 0.0
    for j, name in enumerate(design.fixed_names):
        if is_intercept[j]:
            continue
        sd = _scale(moments.X, j)
        priors[name] = Prior("Normal", mu=0.0, sigma=SCALE_MULTIPLIER * s / sd)
        inflation += (float(moments.X.mean[j]) / sd) ** 2
    for j, name in enumerate(design.fixed_names):
        if is_intercept[j]:
            priors[name] = Prior(
                "Normal", mu=_link_location(moments, family), sigma=SCALE_MULTIPLIER * s * np.sqrt(1.0 + inflation)
            )
    priors.update(submodel_priors(design, family, moments))
    predicted = {family.submodel_parameter(role) for role in getattr(design, "submodels", {})}
    for param in family.params:
        if param in predicted:  # a zi= or dispersion= formula (or a category's copy of the formula) predicts it
            continue
        if param == "sigma":
            priors[param] = Prior("Exponential", lam=1.0 / _scale(moments.y))
        elif param == "nu":
            priors[param] = Prior("Gamma", alpha=2.0, beta=0.1)
        elif param in ("zi", "hu"):  # a probability (of a structural zero, of any zero): brms's beta(1, 1)
            priors[param] = Prior("Beta", alpha=1.0, beta=1.0)
        elif param == "thresholds":  # an ordinal model's cut points: brms's student_t(3, 0, 2.5), ordered
            priors[param] = Prior("StudentT", nu=3.0, mu=0.0, sigma=SCALE_MULTIPLIER)
            if family.threshold_structure == "equidistant":  # the gap between cut points, > 0 where they increase
                ordered = family.name in ORDERED_THRESHOLDS
                priors["spacing"] = Prior("HalfNormal" if ordered else "Normal", sigma=SCALE_MULTIPLIER)
        elif param == "power":  # the tweedie's, between the Poisson (1) and the gamma (2)
            priors[param] = Prior("Uniform", lower=1.0, upper=2.0)
        elif param == "phi" and family.name == "tweedie":  # Var = phi mu^p: about 1 on most data
            priors[param] = Prior("LogNormal", mu=0.0, sigma=1.5)
        elif param == "shape" and family.name == "weibull":  # median 1, the exponential; 95 % in 0.14 .. 7
            priors[param] = Prior("LogNormal", mu=0.0, sigma=1.0)
        else:
            priors[param] = Prior("LogNormal", mu=float(np.log(10.0)), sigma=2.0)
    for block, Z in zip(design.blocks, moments.Z):
        priors |= block_priors(block, [SCALE_MULTIPLIER * s / _scale(Z, j) for j in range(block.n_terms)])
    return priors


def block_priors(block, scales: list[float]) -> dict[str, Prior]:
    """A block's SD priors (HalfNormal with the terms' ``scales``) and its correlations': LKJ for an
    unstructured block; a structured one's single correlation ``rho_<block>`` uniform over where
    the matrix stays positive definite (ar1: (-1, 1); cs: (-1 / (k - 1), 1)), and ar1's one SD
    the first term's scale (its terms are the levels of one factor)."""
    label, kind, k = block.label, block.covariance.kind, block.n_terms
    if kind == "ar1":
        return {
            f"sd_{label}": Prior("HalfNormal", sigma=float(scales[0])),
            f"rho_{label}": Prior("Uniform", lower=-1.0, upper=1.0),
        }
    if kind in DISTANCE_STRUCTURES:  # the range: log-normal around the positions' median distance
        distances = block.covariance.distances[~np.eye(k, dtype=bool)]
        out = {
            f"sd_{label}": Prior("HalfNormal", sigma=float(scales[0])),
            f"range_{label}": Prior("LogNormal", mu=float(np.log(np.median(distances[distances > 0]))), sigma=1.0),
        }
        if kind == "mat":  # the smoothness: 95 % between 0.14 and 7, centred on 1 (glmmTMB's start)
            out[f"smoothness_{label}"] = Prior("LogNormal", mu=0.0, sigma=1.0)
        return out
    if kind in ONE_SD_STRUCTURES:  # one SD for terms on one scale (a smooth's, a known covariance's levels)
        return {f"sd_{label}": Prior("HalfNormal", sigma=float(np.median(scales)))}
    if kind == "rr":  # the loadings: each term's, on the scale of its SD prior
        return {f"loadings_{label}": Prior("Normal", mu=0.0, sigma=np.asarray(scales)[:, None])}
    out = {f"sd_{label}": Prior("HalfNormal", sigma=np.asarray(scales))}
    if kind == "toep":  # one correlation per lag
        out[f"lags_{label}"] = Prior("Uniform", lower=-1.0, upper=1.0)
    elif kind == "cs":
        out[f"rho_{label}"] = Prior("Uniform", lower=-1.0 / (k - 1), upper=1.0)
    elif k > 1:
        out[f"corr_{label}"] = Prior("LKJ", eta=LKJ_ETA)
    return out


def submodel_priors(design: Design, family: Family, moments: DesignMoments) -> dict[str, Prior]:
    """``<param>_<coefficient>`` of each zi= or dispersion= formula, on its link's scale (logit for a
    probability, log for a scale): the slopes Normal(0, 2.5 / sd(x)), the intercept Normal(c, 2.5)
    with c = 0 for a probability (one half) and the log of the parameter's usual size for a scale
    (sd(y) for sigma, else 10, the constant parameter's prior median); its blocks' ``sd_<label>``
    HalfNormal(2.5 / sd(z_j)) and ``corr_<label>`` LKJ(2)."""
    priors = {}
    for role, predictor in getattr(design, "submodels", {}).items():
        param = family.submodel_parameter(role)
        centre = (
            0.0
            if role == "zi" or family.categorical
            else float(np.log(_scale(moments.y) if param == "sigma" else 10.0))
        )
        X = np.asarray(predictor.X, dtype=float)
        for j, name in enumerate(predictor.fixed_names):
            column = X[:, j]
            if np.all(column == 1.0):
                priors[f"{param}_{name}"] = Prior("Normal", mu=centre, sigma=SCALE_MULTIPLIER)
            else:
                sd = float(np.std(column)) or 1.0
                priors[f"{param}_{name}"] = Prior("Normal", mu=0.0, sigma=SCALE_MULTIPLIER / sd)
        for block in predictor.blocks:  # on the link scale, as the mean's blocks of a logit/log model
            scales = [SCALE_MULTIPLIER / (float(np.std(block.Zt[:, j])) or 1.0) for j in range(block.n_terms)]
            priors |= block_priors(block, scales)
    return priors


def resolve_priors(design: Design, family: Family, overrides) -> dict[str, Prior]:
    """Defaults with the user's ``overrides`` applied; unknown names raise BayesmixError."""
    moments = design_moments(design)
    priors = default_priors(design, family, moments)
    if overrides is None:
        return priors
    if not isinstance(overrides, dict):
        raise BayesmixError("priors must be a dict {parameter name: bayesmix.Prior(...)}.")
    slopes = [n for n, intercept in zip(design.fixed_names, intercept_columns(moments)) if not intercept]
    if family.categorical:
        slopes = _category_slopes(design)
    for name, prior in overrides.items():
        if not isinstance(prior, Prior):
            raise BayesmixError(
                f"The prior for '{name}' must be a bayesmix.Prior, e.g. Prior('Normal', mu=0, sigma=1); "
                f"got {type(prior).__name__}."
            )
        targets = slopes if name == "b" else [name]
        if family.categorical and name not in priors and name != "b":  # a coefficient of every category
            targets = [f"{param}_{name}" for param in family.params if f"{param}_{name}" in priors] or targets
        if name not in priors and name != "b" and targets == [name]:
            raise BayesmixError(
                f"No parameter named '{name}' takes a prior.{did_you_mean(name, priors)} "
                f"Parameters: {', '.join(['b', *priors])}."
            )
        _check_prior(name, prior)
        for target in targets:
            priors[target] = prior
    return priors


def _category_slopes(design: Design) -> list[str]:
    """A categorical model's slopes, ``<category parameter>_<coefficient>``: the columns that are
    not the constant intercept, in every category's copy of the formula."""
    return [
        f"{role}_{name}"
        for role, predictor in design.submodels.items()
        for name, column in zip(predictor.fixed_names, np.asarray(predictor.X, dtype=float).T)
        if not np.all(column == 1.0)
    ]


def _check_prior(name: str, prior: Prior) -> None:
    if name.startswith("corr_"):
        if prior.dist != "LKJ" or set(prior.params) != {"eta"}:
            raise BayesmixError(f"The prior for '{name}' must be Prior('LKJ', eta=...) with eta > 0.")
        if not float(prior.params["eta"]) > 0:
            raise BayesmixError(f"LKJ eta for '{name}' must be > 0, got {prior.params['eta']}.")
        return
    import pymc as pm

    cls = getattr(pm, prior.dist, None)
    if not (isinstance(cls, type) and issubclass(cls, pm.Distribution)):
        raise BayesmixError(
            f"Unknown distribution '{prior.dist}' in the prior for '{name}'."
            f"{did_you_mean(prior.dist, [d for d in dir(pm) if d[:1].isupper()])} Use a PyMC distribution name."
        )
    try:
        prior.distribution()
    except Exception as exc:
        raise BayesmixError(f"The prior for '{name}', {prior!r}, is invalid: {exc}") from None
