"""Laplace fits of GLMMs from a Dask DataFrame: the rows stay in their partitions.

The Laplace deviance's inner Newton step and its exact gradient (:mod:`bayesmix.exact.glmm`) read
the data only through sums over rows of per-row terms at given (beta, u). So each partition is
encoded once and kept where it lives (:class:`bayesmix.design.partitions.Partitions`), and every
step is a map-reduce with (Lambda, beta, u) sent to the partitions; the q x q algebra (the blocked
factor of H, its selected inverse, the outer optimiser) runs on the driver, as in memory. The sums,
in u's space (Z, not M = Z Lambda, so one pass serves every quantity):

- a Newton step (:func:`mode_sums`): sum log p, Z'd1 and Z'WZ (W = -d2 log p / d eta2); then
  M'd1 = Lambda'Z'd1 and H = Lambda'(Z'WZ)Lambda + I;
- the gradient at the mode (:func:`gradient_sums`, H's selected inverse sent for each row's
  leverage m_i'H^{-1}m_i): Z'a, X'b, Z'b and Z'diag(d2)X with a = -d3 h and b = -2 d1 + a, from
  which :func:`bayesmix.exact.glmm.laplace_gradient`'s terms follow (its c = H^{-1} M'a and the
  terms in M c are products with these sums, its trace reads Lambda'Z'WZ);
- the GLM start (:func:`glm_sums`): sum log p, X'd1 and X'WX.

Families with no parameters beside the linear predictor (bernoulli/binomial, poisson), one linear
predictor, one or several grouping factors; the same checks as in memory (aliased columns from X'X,
the response's range, lme4's identifiability rules). Sums added in another order differ in their
last bits from the in-memory ones, so estimates agree to the optimiser's tolerance
(tests/test_distributed.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from bayesmix.design.covariance import ThetaLayout
from bayesmix.design.crossprod import lme4_order, z_rows
from bayesmix.design.partitions import EncodedRows
from bayesmix.errors import BayesmixError
from bayesmix.exact import glmm
from bayesmix.exact.glm import newton_glm
from bayesmix.exact.glmm import Conditional, GlmmProblem, GlmmResult
from bayesmix.exact.lmm import check_identifiable
from bayesmix.families import Family


@dataclass(frozen=True)
class ModeSums:
    """One Newton step's sums: log-likelihood, Z'd1 (q,), Z'WZ (q, q) and, where some row's W is
    negative (a likelihood not log-concave there), Z'W+Z with W's positive part."""

    loglik: float
    Zd1: np.ndarray
    ZWZ: sp.csr_matrix
    ZWZ_positive: sp.csr_matrix

    def __add__(self, other: ModeSums) -> ModeSums:
        return ModeSums(
            self.loglik + other.loglik,
            self.Zd1 + other.Zd1,
            (self.ZWZ + other.ZWZ).tocsr(),
            (self.ZWZ_positive + other.ZWZ_positive).tocsr(),
        )


@dataclass(frozen=True)
class GradientSums:
    """The gradient's sums at the mode (see the module docstring)."""

    Za: np.ndarray
    Xb: np.ndarray
    Zb: np.ndarray
    Zd2X: np.ndarray

    def __add__(self, other: GradientSums) -> GradientSums:
        return GradientSums(self.Za + other.Za, self.Xb + other.Xb, self.Zb + other.Zb, self.Zd2X + other.Zd2X)


@dataclass(frozen=True)
class GlmSums:
    """The GLM start's sums, and the largest |eta| (separation shows as it runs off)."""

    loglik: float
    gradient: np.ndarray
    information: np.ndarray
    eta_max: float

    def __add__(self, other: GlmSums) -> GlmSums:
        return GlmSums(
            self.loglik + other.loglik,
            self.gradient + other.gradient,
            self.information + other.information,
            max(self.eta_max, other.eta_max),
        )


def _eta(part: GlmmProblem, beta: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    eta = part.X @ beta + part.offset
    return eta if b is None else eta + part.Z @ b


def _weighted_gram(Z: sp.csr_matrix, w: np.ndarray) -> sp.csr_matrix:
    return (Z.T @ sp.diags(w) @ Z).tocsr()


def mode_sums(part: GlmmProblem, lam: sp.csr_matrix, beta: np.ndarray, params: dict, u: np.ndarray) -> ModeSums:
    with np.errstate(all="ignore"):
        ll, d1, d2 = part.terms(_eta(part, beta, lam @ u), params)
    ZWZ = _weighted_gram(part.Z, -d2)
    positive = _weighted_gram(part.Z, -np.minimum(d2, 0.0)) if np.any(d2 > 0) else ZWZ
    return ModeSums(float(ll.sum()), part.Z.T @ d1, ZWZ, positive)


def gradient_sums(part: GlmmProblem, lam, beta, params: dict, u: np.ndarray, selected) -> GradientSums:
    M = (part.Z @ lam).tocsr()
    eta = _eta(part, beta, lam @ u)
    with np.errstate(all="ignore"):
        _, d1, d2 = part.terms(eta, params)
        a = -part.third(eta, params) * glmm._leverages(M, selected)
    b = -2.0 * d1 + a
    return GradientSums(part.Z.T @ a, part.X.T @ b, part.Z.T @ b, np.asarray(part.Z.T @ (part.X * d2[:, None])))


def glm_sums(part: GlmmProblem, beta: np.ndarray, params: dict) -> GlmSums:
    fixed = part.X @ beta
    with np.errstate(all="ignore"):  # a trial step far out: non-finite terms, and the step is halved
        ll, d1, d2 = part.terms(fixed + part.offset, params)
        sums = GlmSums(float(np.sum(ll)), part.X.T @ d1, (part.X.T * -d2) @ part.X, 0.0)
    return replace(sums, eta_max=float(np.max(np.abs(fixed), initial=0.0)))


@dataclass(frozen=True)
class PartitionConditional(Conditional):
    """The conditional mode, with the sums at it that the gradient reads."""

    sums: ModeSums | None = None


class PartitionRows:
    """The :class:`~bayesmix.exact.glmm.Evaluator` of a GLMM whose rows are partitions. ``skeleton``:
    the problem without rows (family, Lambda's layout, levels); ``parts``: a
    :class:`~bayesmix.design.partitions.Partitions` of row-holding problems; ``transform``: the
    optimiser's columns, beta = T beta_s (identity: the user's)."""

    def __init__(self, skeleton: GlmmProblem, parts, transform: np.ndarray):
        self.skeleton, self.parts, self.transform = skeleton, parts, transform

    def with_transform(self, transform: np.ndarray) -> PartitionRows:
        return PartitionRows(self.skeleton, self.parts, transform)

    def _split(self, x: np.ndarray):
        theta, beta, params = self.skeleton.split(x)
        return theta, self.transform @ beta, params

    def mode(self, x: np.ndarray, start: np.ndarray | None) -> PartitionConditional:
        theta, beta, params = self._split(x)
        lam = self.skeleton.lam(theta)

        def evaluate(u):
            sums = self.parts.sum(mode_sums, lam, beta, params, u)
            value = sums.loglik - 0.5 * float(u @ u)

            def factored(positive):  # H = Lambda' Z'WZ Lambda + I, in blocks
                gram = sums.ZWZ_positive if positive else sums.ZWZ
                return glmm._factor(self.skeleton, (lam.T @ gram @ lam).tocsr())

            return value, lam.T @ sums.Zd1 - u, factored, sums

        u = np.zeros(lam.shape[0]) if start is None else start.copy()
        u, (_, _, factored, sums) = glmm.newton_mode(evaluate, u)
        return PartitionConditional(u=u, loglik=sums.loglik, H=factored(False), sums=sums)

    def gradient(self, x: np.ndarray, conditional: PartitionConditional) -> np.ndarray:
        """:func:`bayesmix.exact.glmm.laplace_gradient`'s gradient from the partitions' sums."""
        theta, beta, params = self._split(x)
        lam, u, sums = self.skeleton.lam(theta), conditional.u, conditional.sums
        selected = conditional.H.selected_inverse()
        totals = self.parts.sum(gradient_sums, lam, beta, params, u, selected)
        c = conditional.H.solve(lam.T @ totals.Za)
        gradient = np.full(len(x), np.nan)
        n_theta, p = self.skeleton.layout.n_theta, len(beta)
        gradient[n_theta : n_theta + p] = self.transform.T @ (totals.Xb + totals.Zd2X.T @ (lam @ c))
        weighted = (lam.T @ sums.ZWZ).tocsr()  # M'WZ: log|H|'s direct dependence on Lambda
        for index, d_lam in enumerate(self.skeleton.lam_tangents(theta)):
            d_u = d_lam @ u
            direct = (weighted @ d_lam).tocoo()
            trace = float(np.sum(selected.at(direct.col, direct.row) * direct.data))
            response = c @ (d_lam.T @ sums.Zd1)
            gradient[index] = totals.Zb @ d_u - c @ (weighted @ d_u) + 2.0 * trace + response
        return gradient

    def glm_start(self, params: dict) -> np.ndarray:
        """beta_s of the GLM without random effects (:func:`bayesmix.exact.glm.newton_glm`), as in memory."""
        T = self.transform

        def sums(beta_s):
            total = self.parts.sum(glm_sums, T @ beta_s, params)
            return total.loglik, T.T @ total.gradient, T.T @ total.information @ T

        start = newton_glm(sums, T.shape[0])
        if not start.converged and self.parts.sum(glm_sums, T @ start.beta, params).eta_max > glmm.SEPARATION_ETA:
            raise glmm._infinite_estimates(self.skeleton)
        return start.beta


def partition_problem(rows: EncodedRows, skeleton: GlmmProblem, kept: list[int], order: tuple[int, ...]):
    """A partition's rows as a :class:`GlmmProblem` (the skeleton's, with rows): X's identified
    columns, Z's blocks in lme4 order (u's columns), as :func:`bayesmix.exact.glmm.glmm_problem` builds them."""
    Z = sp.hstack([z_rows(*rows.blocks[i], m) for i, m in zip(order, skeleton.levels)], format="csr")
    X = rows.X if list(kept) == list(range(rows.X.shape[1])) else rows.X[:, kept]
    offset = 0.0 if rows.offset is None else rows.offset
    return replace(
        skeleton, X=X, y=rows.y, trials=rows.trials, Z=Z, offset=offset, weights=rows.weights, in_memory=True
    )


def check_family(family: Family) -> None:
    """Refuse what a Laplace fit from partitions does not cover (and why)."""
    if not family.has_laplace or set(family.params) & set(glmm.AUXILIARY) or family.ordinal or family.categorical:
        raise BayesmixError(
            f"A Laplace fit from a Dask DataFrame covers families with no parameter beside the mean "
            f"(bernoulli/binomial, poisson), as sums over the partitions; family='{family.name}' is not one. Load "
            "the rows into memory (ddf.compute()) to fit it, or fit a sample of the rows."
        )


def fit_partitioned(design, family: Family, nagq: int = 1) -> GlmmResult:
    """The Laplace fit of a GLMM whose rows are a Dask DataFrame's partitions (``design``: a
    :class:`~bayesmix.design.statistics.StatsDesign` with :attr:`partitions`), as
    :func:`bayesmix.exact.glmm.fit_glmm` fits rows in memory."""
    check_family(family)
    if nagq != 1:
        raise BayesmixError(
            "Adaptive quadrature (nAGQ > 1) reads each level's rows at every point; from a Dask DataFrame only the "
            "Laplace approximation (nAGQ=1) is fitted. Load the rows into memory for nAGQ > 1."
        )
    check_identifiable(design, allow_n=True)
    moments = design.moments
    glmm.check_response_varies(float(moments.y.low[0]), float(moments.y.high[0]), design.spec.response.expr, family)
    kept, names, dropped = design.fixed_columns()
    rows = _partition_rows(design, family, kept)
    n_theta = rows.skeleton.layout.n_theta
    transform = glmm.column_transform(moments.X.mean[kept], moments.X.sd[kept])
    scaled = rows.with_transform(transform)
    start = np.concatenate([rows.skeleton.layout.start(), scaled.glm_start({})])
    summary, conditional, vcov, _ = glmm.optimise_laplace(rows.skeleton, scaled, start)
    summary, vcov = glmm.in_user_columns(summary, vcov, transform, n_theta)
    return GlmmResult(rows.skeleton, summary, conditional, vcov, names, dropped, 1, None, rows)


def _partition_rows(design, family: Family, kept: list[int]) -> PartitionRows:
    """The partitions as row-holding problems (built once per family and columns, then kept)."""
    key = (family.name, family.link.name, tuple(kept))
    cache = design.partitions.derived
    if key not in cache:
        order = tuple(lme4_order(design.blocks))
        blocks = [design.blocks[i] for i in order]
        first_order, first_terms = glmm._first_part(blocks)
        glmm._check_dense_parts(blocks, first_terms)
        q = sum(b.n_levels * b.n_terms for b in blocks)
        skeleton = GlmmProblem(
            family=family,
            X=np.zeros((0, len(kept))),
            y=np.zeros(0),
            trials=None,
            Z=sp.csr_matrix((0, q)),
            layout=ThetaLayout(tuple(b.covariance for b in blocks)),
            levels=tuple(b.n_levels for b in blocks),
            order=order,
            first_order=first_order,
            first_terms=first_terms,
            in_memory=False,
        )
        parts = design.partitions.map(partition_problem, skeleton, list(kept), order)
        cache[key] = PartitionRows(skeleton, parts, np.eye(len(kept)))
    return cache[key]


def laplace_fit(design, family: Family, nagq: int = 1) -> GlmmResult:
    """A GLMM's Laplace (or quadrature) fit, wherever its rows are: in memory, or a Dask DataFrame's partitions."""
    if design.in_memory:
        return glmm.fit_glmm(design, family, nagq)
    if getattr(design, "partitions", None) is None:
        raise BayesmixError("This design holds sums only (a gaussian model's); a Laplace fit needs the rows.")
    return fit_partitioned(design, family, nagq)
