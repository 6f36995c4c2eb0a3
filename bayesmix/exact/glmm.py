"""Laplace fits of generalized linear mixed models (as glmer with nAGQ = 1, to tight tolerance).

For theta, beta (and the family's dispersion, e.g. the negative binomial's alpha, on the log scale),
with eta = X beta + Z Lambda_theta u and u ~ N(0, I):

    log L = log p(y | u*) - |u*|^2 / 2 - log|H| / 2,   H = Lambda'Z' W Z Lambda + I,

u* the conditional mode (found by Newton's method to a gradient of 1e-10) and W = -d2 log p / d eta2
at u* (the observed information, as glmmTMB and the reference's exact Laplace; it equals lme4's
PIRLS weights for canonical links). log p includes every normalising constant (the binomial
coefficient too). Z Lambda stays sparse; H is factored in blocks (:mod:`bayesmix.exact.blocked`):
per level of the block with the most levels, densely only for the others.

The outer optimiser is L-BFGS on the exact gradient (:func:`laplace_gradient`: the implicit
function theorem through u*, as TMB does), with BOBYQA as the fallback where it stops short and for
adaptive quadrature (nAGQ > 1). SEs come from the Hessian of -2 log L over all outer parameters
(central differences of the exact gradient; lme4's ``use.hessian = TRUE`` differences the deviance),
conditional SDs of the modes from H^{-1} (lme4's condVar), both read on H's own pattern only. The
dense parts are the blocks after the first (q2 x q2) and H^{-1}'s coupling (q2 x q1); q2 above
:data:`MAX_DENSE_EFFECTS` is refused with an error naming the number.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, logit, logsumexp

from bayesmix import categorical, memory, ordinal
from bayesmix.censored import LAPLACE_CENSORABLE, censored_terms
from bayesmix.densities import LOG_SCALE
from bayesmix.design.covariance import ThetaLayout
from bayesmix.design.crossprod import block_z, lme4_order
from bayesmix.design.encode import Design, family_design
from bayesmix.design.fixed import drop_aliased
from bayesmix.errors import BayesmixError, ConvergenceWarning, warn
from bayesmix.exact import blocked
from bayesmix.exact.blocked import BlockedFactor, SelectedInverse
from bayesmix.exact.glm import fit_glm
from bayesmix.exact.lmm import check_identifiable
from bayesmix.exact.optimize import OptimizerSummary, minimize_bounded, minimize_with_gradient
from bayesmix.families import THIRD_STEP, Family

MAX_DENSE_EFFECTS = 8000
INNER_TOLERANCE = 1e-10
STEP_TOLERANCE = 1e-14  # relative Newton step below which u cannot change in double precision
HALVINGS = 40  # step halvings of a Newton step (2^-40: below the values' rounding)
STALLS = 3  # Newton steps in a row without gain (within rounding), after which the search stops
# The family parameters a Laplace fit estimates beside (theta, beta), each on an unbounded scale:
# (to the parameter, from it, its start)
AUXILIARY = {
    "alpha": (np.exp, np.log, lambda y: 10.0),
    # glmmTMB's start (logit 0): from a small zi the optimiser can settle where the zeros are the
    # mean's (Salamanders' ZINB with a zi random effect), a worse local optimum of the Laplace deviance
    "zi": (expit, logit, lambda y: 0.5),
    "hu": (expit, logit, lambda y: float(np.clip(np.mean(y == 0), 0.01, 0.99))),  # its estimate, when alone
    "phi": (np.exp, np.log, lambda y: 10.0),
    "shape": (np.exp, np.log, lambda y: float(np.clip(np.mean(y) ** 2 / max(np.var(y), 1e-12), 0.01, 1e4))),
    "sigma": (np.exp, np.log, lambda y: float(np.std(y)) or 1.0),  # gaussian (dispersion formula, censoring)
    "power": (lambda v: 1.0 + expit(v), lambda p: logit(p - 1.0), lambda y: 1.5),  # tweedie's, in (1, 2)
    # an ordinal model's K - 1 thresholds: the transform is the family's (ordinal.threshold_transform:
    # c_1 and the logs of the gaps where they increase) and the start reads the link
    "thresholds": (None, None, None),
}


@dataclass(frozen=True)
class GlmmProblem:
    """Data of a Laplace fit. Z: sparse (n, q), blocks in lme4 order, level-major."""

    family: Family
    X: np.ndarray
    y: np.ndarray
    trials: np.ndarray | None
    Z: sp.csr_matrix
    layout: ThetaLayout
    levels: tuple[int, ...]
    order: tuple[int, ...]
    offset: np.ndarray | float = 0.0  # the known part of eta (offset terms), coefficient 1
    weights: np.ndarray | None = None  # prior weights: each row's log-likelihood counts w times (glmmTMB)
    auxiliary_X: dict = field(default_factory=dict)  # family parameter -> X of its zi= / dispersion= formula
    # family parameter -> Z (n, q) of its formula's blocks (their columns of u, none without random
    # effects; Z holds the mean's)
    auxiliary_Z: dict = field(default_factory=dict)
    censoring: np.ndarray | None = None  # per row: bayesmix.censored's codes (left, right, interval)
    upper: np.ndarray | None = None  # an interval-censored row's upper bound
    # u's columns reordered for the factorisation: level by level, every block of the first block's
    # grouping factor (the mean's and a zi= formula's (1 | site)), then the rest; None for one such block
    first_order: np.ndarray | None = None
    first_terms: int = 0  # the effects per level in that first part
    # False: the rows live in partitions (a Dask DataFrame's, :mod:`bayesmix.exact.glmm_partitions`)
    # and this problem carries only what does not depend on them (X, y and Z have no rows)
    in_memory: bool = True

    def require_rows(self) -> None:
        """Refuse a computation over rows on a problem whose rows live in partitions (it would see none)."""
        if not self.in_memory:
            raise BayesmixError(
                "This Laplace fit's rows live in a Dask DataFrame's partitions; this step reads them in memory. "
                "Use the fit's own methods (they evaluate from the partitions), or fit a pandas DataFrame."
            )

    @property
    def auxiliary_predictors(self) -> tuple[str, ...]:
        """The family parameters a zi= or dispersion= formula predicts: each a linear predictor of
        its own in the inner problem beside the mean's (with its random effects, if any), so the
        exact gradient covers its coefficients too."""
        return tuple(name for name in self.auxiliary if name in self.auxiliary_Z)

    def auxiliary_eta(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """{parameter: X_a beta_a}, the fixed part of each :attr:`auxiliary_predictors` predictor."""
        start, out = self.layout.n_theta + self.X.shape[1], {}
        for name, size in zip(self.auxiliary, self.auxiliary_sizes):
            if name in self.auxiliary_Z:
                out[name] = self.auxiliary_X[name] @ x[start : start + size]
            start += size
        return out

    @property
    def auxiliary(self) -> tuple[str, ...]:
        """The family's own parameters, estimated after beta in the outer vector (:data:`AUXILIARY`)."""
        return tuple(name for name in self.family.params if name in AUXILIARY or self.family.categorical)

    def transform(self, name: str):
        """(to the parameter, from it, its start) of a family parameter (:data:`AUXILIARY`); a
        categorical response's category predictors are log odds already, started at the
        intercept-only model's estimate."""
        if not self.family.categorical:
            return AUXILIARY[name]
        start = categorical.start_intercepts(self.y - 1, len(self.family.params))[self.family.params.index(name)]
        return (_same, _same, lambda y: float(start))

    @functools.cached_property  # split() reads it at every evaluation; an ordinal size scans y
    def auxiliary_sizes(self) -> tuple[int, ...]:
        """Entries of each family parameter in the outer vector: one for a constant, its formula's
        coefficients where a zi= or dispersion= formula predicts it (:attr:`auxiliary_X`)."""
        return tuple(
            self.auxiliary_X[name].shape[1] if name in self.auxiliary_X else self._constant_size(name)
            for name in self.auxiliary
        )

    @functools.cached_property
    def threshold_transform(self):
        """An ordinal model's (to thresholds, from them, Jacobian): :func:`bayesmix.ordinal.threshold_transform`."""
        family = self.family
        return ordinal.threshold_transform(family.name, family.threshold_structure, int(self.y.max()) - 1)

    def _constant_size(self, name: str) -> int:
        """Entries of a constant family parameter: K - 1 thresholds of an ordinal response (y = 1..K), else 1."""
        if name != "thresholds":
            return 1
        return 2 if self.family.threshold_structure == "equidistant" else int(self.y.max()) - 1

    def split(self, x: np.ndarray):
        """Outer parameter vector -> (theta, beta, family params: a number, or per row where a
        formula predicts the parameter)."""
        n_theta, p = self.layout.n_theta, self.X.shape[1]
        params, start = {}, n_theta + p
        for name, size in zip(self.auxiliary, self.auxiliary_sizes):
            to_parameter = self.transform(name)[0]
            if name in self.auxiliary_X:
                with np.errstate(over="ignore"):  # an optimiser's trial step far out: inf, and the deviance says so
                    params[name] = to_parameter(self.auxiliary_X[name] @ x[start : start + size])
            elif name == "thresholds":
                params[name] = self.threshold_transform[0](x[start : start + size])
            else:
                params[name] = float(to_parameter(x[start]))
            start += size
        return x[:n_theta], x[n_theta : n_theta + p], params

    def auxiliary_start(self) -> tuple[dict[str, float], np.ndarray]:
        """(each family parameter's start value, their entries of the outer start: a formula's
        intercept at that value, its other coefficients at 0)."""
        values = {
            name: ordinal.start_thresholds(self.y - 1, self.family.link.name, self.family.name)
            if name == "thresholds"
            else self.transform(name)[2](self._start_response(name))
            for name in self.auxiliary
        }
        entries = []
        for name, value in values.items():
            from_parameter = self.threshold_transform[1] if name == "thresholds" else None
            unbounded = (from_parameter or self.transform(name)[1])(value)
            X = self.auxiliary_X.get(name)
            intercept = np.all(X == 1.0, axis=0) if X is not None else None
            entries.append(np.atleast_1d(unbounded) if X is None else np.where(intercept, unbounded, 0.0))
        return values, np.concatenate(entries) if entries else np.zeros(0)

    def _start_response(self, name: str) -> np.ndarray:
        """What a parameter's start reads: log y for a lognormal family's sigma (the SD of log y)."""
        if name == "sigma" and self.family.name in LOG_SCALE:
            return np.log(self.y[self.y > 0])
        return self.y

    def terms(self, eta, params):
        """(log p(y | eta), its first and second eta-derivatives) per row, prior weights applied; a
        censored row's from its tail probability (:mod:`bayesmix.censored`)."""
        if self.censoring is None:
            return self.family.laplace_terms(eta, self.y, self.trials, params, self.weights)
        terms = self.family.laplace_terms(eta, self.y, self.trials, params)
        ll, d1, d2 = censored_terms(self.family.name, eta, self.y, self.upper, self.censoring, params, *terms)
        return (ll, d1, d2) if self.weights is None else (self.weights * ll, self.weights * d1, self.weights * d2)

    def parameter_terms(self, name: str, eta, params):
        """The family's analytic derivatives along a parameter's predictor (zi, hu), weights applied, or None."""
        return self.family.parameter_terms(name, eta, self.y, self.trials, params, self.weights)

    def third(self, eta, params):
        """d3 log p / d eta3 per row (the exact gradient reads it): the family's, or for censored
        rows a central difference of :meth:`terms`' second derivative."""
        if self.censoring is None:
            return self.family.laplace_third(eta, self.y, self.trials, params, self.weights)
        step = THIRD_STEP * np.maximum(1.0, np.abs(eta))
        return (self.terms(eta + step, params)[2] - self.terms(eta - step, params)[2]) / (2 * step)

    def lam(self, theta: np.ndarray) -> sp.csr_matrix:
        return self._block_diagonal(self.layout.factors(theta))

    def lam_tangents(self, theta: np.ndarray):
        """dLambda / dtheta_i (sparse q x q) for each theta entry, from the blocks' covariance objects."""
        sizes = self.layout.sizes
        for block, dT in self.layout.tangents(theta):
            yield self._block_diagonal([dT if b == block else np.zeros((k, k)) for b, k in enumerate(sizes)])

    @functools.cached_property
    def cross_cache(self) -> dict:
        """The last :class:`CrossPattern` (its index work reused while the Ms' structure holds)."""
        return {}

    @functools.cached_property
    def _pattern(self) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """Lambda's nonzero pattern, computed once: rows and columns of every lower-triangular entry
        of every level's T, and per block where its T's entries sit (I_M kron T, blocks stacked)."""
        rows, columns, where, offset = [], [], [], 0
        for m, k in zip(self.levels, self.layout.sizes):
            i, j = np.tril_indices(k)
            level = np.repeat(np.arange(m) * k, len(i))
            rows.append(offset + level + np.tile(i, m))
            columns.append(offset + level + np.tile(j, m))
            where.append((i, j))
            offset += m * k
        return np.concatenate(rows), np.concatenate(columns), where

    def _block_diagonal(self, factors) -> sp.csr_matrix:
        """blockdiag(I_M kron T) over the blocks, filled into the fixed pattern (no sparse assembly per block)."""
        rows, columns, where = self._pattern
        data = np.concatenate([np.tile(T[i, j], m) for T, (i, j), m in zip(factors, where, self.levels)])
        q = int(sum(m * k for m, k in zip(self.levels, self.layout.sizes)))
        return sp.csr_matrix((data, (rows, columns)), shape=(q, q))


@dataclass(frozen=True)
class Conditional:
    """The conditional mode u* (q,), log p(y | u*), and H at u* factored in blocks."""

    u: np.ndarray
    loglik: float
    H: BlockedFactor

    @property
    def logdet(self) -> float:
        return self.H.logdet

    def laplace_loglik(self) -> float:
        return self.loglik - 0.5 * float(self.u @ self.u) - 0.5 * self.logdet


def _weights_factor(problem: GlmmProblem, M: sp.csr_matrix, d2: np.ndarray) -> BlockedFactor:
    """H = M' W M + I (W = -d2) factored in blocks (:mod:`bayesmix.exact.blocked`)."""
    if problem.first_order is not None:
        return _factor(problem, (M.T @ sp.diags(-d2) @ M).tocsr())
    return blocked.factor(M, -d2, problem.levels[0] * problem.layout.sizes[0], problem.layout.sizes[0])


def _factor(problem: GlmmProblem, A: sp.csr_matrix):
    """H = A + I factored in blocks: the first block's levels (with every block of the same
    grouping factor, :attr:`GlmmProblem.first_order`) one small block each, the rest dense."""
    if problem.first_order is None:
        return blocked.factor_cross_product(A, problem.levels[0] * problem.layout.sizes[0], problem.layout.sizes[0])
    k1 = problem.first_terms
    return blocked.PermutedFactor.of(A, problem.first_order, problem.levels[0] * k1, k1)


@dataclass(frozen=True)
class CrossPattern:
    """Where sum_jk M_j' diag(W_jk) M_k puts each product of two nonzeros of one data row (the
    P linear predictors' M_j fixed while u moves): per product its row, predictors (j, k), value
    M_j[i, a] M_k[i, b] and slot in the CSR data of the result, so each Newton step only sums."""

    rows: np.ndarray
    first: np.ndarray
    second: np.ndarray
    products: np.ndarray
    slot: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    q: int
    columns: tuple = ()  # each product's two columns of u (a, b)
    factors: tuple = ()  # each product's two entries of the Ms' concatenated CSR data
    structure: tuple = ()  # the Ms' (indptr, indices): the pattern holds while they do

    @classmethod
    def of(cls, Ms: list, cache: dict | None = None) -> CrossPattern:
        """The pattern of ``Ms``; with ``cache`` (one per problem), the index work is done once per
        nonzero structure (it changes only where an entry of Lambda is exactly 0) and later calls
        only multiply the values."""
        data = np.concatenate([M.data for M in Ms])
        previous = None if cache is None else cache.get("pattern")
        if previous is not None and len(previous.structure) == 2 * len(Ms):
            arrays = [array for M in Ms for array in (M.indptr, M.indices)]
            if all(np.array_equal(a, b) for a, b in zip(arrays, previous.structure)):
                first, second = previous.factors
                return replace(previous, products=data[first] * data[second])
        pattern = cls._build(Ms, data)
        if cache is not None:
            cache["pattern"] = pattern
        return pattern

    @classmethod
    def _build(cls, Ms: list, data: np.ndarray) -> CrossPattern:
        coos = [M.tocoo() for M in Ms]  # a CSR matrix's COO keeps its data order
        row = np.concatenate([c.row for c in coos])
        order = np.argsort(row, kind="stable")
        row = row[order]
        column = np.concatenate([c.col for c in coos])[order]
        predictor = np.concatenate([np.full(c.nnz, j) for j, c in enumerate(coos)])[order]
        counts = np.bincount(row, minlength=Ms[0].shape[0])
        sizes = counts * counts  # every ordered pair of nonzeros within a row
        position = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        per_row = np.repeat(counts, sizes)
        start = np.repeat(np.cumsum(counts) - counts, sizes)
        a, b = start + position // per_row, start + position % per_row
        q = Ms[0].shape[1]
        keys, slot = np.unique(column[a].astype(np.int64) * q + column[b], return_inverse=True)
        indptr = np.searchsorted(keys // q, np.arange(q + 1))
        pairs = (column[a], column[b])
        factors = (order[a], order[b])
        structure = tuple(array.copy() for M in Ms for array in (M.indptr, M.indices))
        products = data[factors[0]] * data[factors[1]]
        return cls(row[a], predictor[a], predictor[b], products, slot, keys % q, indptr, q, pairs, factors, structure)

    def leverages(self, H_inverse: SelectedInverse, n: int, P: int) -> np.ndarray:
        """(n, P, P) cross-leverages h_jk,i = m_j,i' H^{-1} m_k,i of every row's predictors."""
        values = self.products * H_inverse.at(*self.columns)
        flat = (self.rows * P + self.first) * P + self.second
        return np.bincount(flat, weights=values, minlength=n * P * P).reshape(n, P, P)

    def cross_product(self, W: np.ndarray) -> sp.csr_matrix:
        """sum_jk M_j' diag(W[:, j, k]) M_k for W (n, P, P)."""
        data = np.bincount(
            self.slot, weights=W[self.rows, self.first, self.second] * self.products, minlength=len(self.indices)
        )
        return sp.csr_matrix((data, self.indices, self.indptr), shape=(self.q, self.q))


def _information_factor(
    problem: GlmmProblem, Ms: list, hessians: np.ndarray, positive: bool, pattern: CrossPattern | None = None
) -> BlockedFactor:
    """H = sum_jk M_j' W_jk M_k + I, W_i = -(row i's Hessian over its P linear predictors), factored
    in blocks; with ``positive``, W_i's positive part (an ascent direction where W_i is indefinite:
    a count with a zero process is not log-concave away from the mode)."""
    if len(Ms) == 1:
        d2 = hessians[:, 0, 0]
        return _weights_factor(problem, Ms[0], np.minimum(d2, 0.0) if positive else d2)
    W = -hessians
    if positive:
        values, vectors = np.linalg.eigh(W)
        W = np.einsum("nij,nj,nkj->nik", vectors, np.maximum(values, 0.0), vectors)
    A = (pattern or CrossPattern.of(Ms)).cross_product(W)
    return _factor(problem, A)


PARAMETER_STEP = 2e-3  # step of the 5-point differences along a parameter's linear predictor (_joint_terms)


def _joint_terms(problem: GlmmProblem, etas: list, params: dict):
    """(log p (n,), its gradient (n, P) and Hessian (n, P, P) per row) over the P linear predictors:
    the mean's eta, then each :attr:`GlmmProblem.auxiliary_predictors` parameter's. The mean's
    derivatives are the family's own, and so are those along a zero process's logit; along another
    parameter's predictor they are 5-point differences of the family's log density (error O(h^4),
    rounding ~1e-13 in the gradient, which sets the mode)."""
    names = problem.auxiliary_predictors
    if problem.family.categorical:
        return _category_terms(problem, etas)

    def at(shifts: dict):
        values = dict(params)
        for name, eta in zip(names, etas[1:]):
            values[name] = problem.transform(name)[0](eta + shifts.get(name, 0.0))
        return problem.terms(etas[0], values)

    ll, d1, d2 = at({})
    n, P, h = len(ll), len(etas), PARAMETER_STEP
    gradient, hessian = np.empty((n, P)), np.empty((n, P, P))
    gradient[:, 0], hessian[:, 0, 0] = d1, d2

    def derivative(name, shift):
        """d log p / d eta_name at another parameter's predictor shifted by ``shift`` (name, amount)."""
        f = {s: at({shift[0]: shift[1], name: s * h})[0] for s in (-2, -1, 1, 2)}
        return (f[-2] - 8 * f[-1] + 8 * f[1] - f[2]) / (12 * h)

    values = dict(params)
    for name, eta in zip(names, etas[1:]):
        values[name] = problem.transform(name)[0](eta)
    for i, name in enumerate(names, 1):
        analytic = problem.parameter_terms(name, etas[0], values)
        if analytic is not None:
            gradient[:, i], hessian[:, i, i], hessian[:, 0, i] = analytic
            hessian[:, i, 0] = hessian[:, 0, i]
            continue
        shifted = {s: at({name: s * h}) for s in (-2, -1, 1, 2)}  # log p and its eta-derivative there
        f, g = ({s: value[k] for s, value in shifted.items()} for k in (0, 1))
        gradient[:, i] = (f[-2] - 8 * f[-1] + 8 * f[1] - f[2]) / (12 * h)
        hessian[:, i, i] = (-f[-2] + 16 * f[-1] - 30 * ll + 16 * f[1] - f[2]) / (12 * h * h)
        hessian[:, 0, i] = hessian[:, i, 0] = (g[-2] - 8 * g[-1] + 8 * g[1] - g[2]) / (12 * h)
        for j, other in enumerate(names[: i - 1], 1):
            g = {s: derivative(other, (name, s * h)) for s in (-2, -1, 1, 2)}
            hessian[:, i, j] = hessian[:, j, i] = (g[-2] - 8 * g[-1] + 8 * g[1] - g[2]) / (12 * h)
    return ll, gradient, hessian


def _category_terms(problem: GlmmProblem, etas: list):
    """:func:`_joint_terms` of a categorical response, analytic (:func:`bayesmix.categorical.joint_terms`):
    the mean's predictor (the reference category's, 0) has no derivatives."""
    ll, gradient, hessian = categorical.joint_terms(problem.y - 1, etas[1:])
    n, P = len(ll), len(etas)
    full_gradient, full_hessian = np.zeros((n, P)), np.zeros((n, P, P))
    full_gradient[:, 1:], full_hessian[:, 1:, 1:] = gradient, hessian
    if problem.weights is None:
        return ll, full_gradient, full_hessian
    w = problem.weights
    return w * ll, w[:, None] * full_gradient, w[:, None, None] * full_hessian


def _same(value):
    return value


def _linear_parts(problem: GlmmProblem, theta, beta, aux_eta: dict | None):
    """([M_j = Z_j Lambda], [the fixed part of eta_j]) of the P linear predictors."""
    lam = problem.lam(theta)
    Ms = [(problem.Z @ lam).tocsr()]
    offsets = [problem.X @ beta + problem.offset]
    for name in problem.auxiliary_predictors:
        Ms.append((problem.auxiliary_Z[name] @ lam).tocsr())
        offsets.append(aux_eta[name])
    return Ms, offsets


def newton_mode(evaluate, u: np.ndarray):
    """Newton's method on a concave function of u with step halving, from ``u``. ``evaluate(u)`` gives
    (value, gradient, factor, ...anything kept with the point) with ``factor(positive)`` the
    factored negative Hessian (``positive``: its positive part, an ascent direction where the
    Hessian is indefinite). The function's rows may sit in memory or in partitions
    (:mod:`bayesmix.exact.glmm_partitions`): one search for both. Returns u at the end and that
    point's tuple."""
    point = evaluate(u)
    stalls = 0
    for _ in range(200):
        value, gradient, factor = point[:3]
        if np.max(np.abs(gradient), initial=0.0) < INNER_TOLERANCE:
            break
        try:
            step = factor(False).solve(gradient)
        except np.linalg.LinAlgError:
            step = factor(True).solve(gradient)
        if np.max(np.abs(step), initial=0.0) <= STEP_TOLERANCE * max(1.0, np.max(np.abs(u), initial=0.0)):
            break  # large counts: the gradient's rounding noise exceeds INNER_TOLERANCE, u no longer moves
        for _ in range(HALVINGS):
            candidate = u + step
            new = evaluate(candidate)
            if new[0] >= value - 1e-12 * abs(value):
                break
            step /= 2
        stalls = stalls + 1 if new[0] <= value else 0
        u, point = candidate, new
        if stalls >= STALLS:  # steps within the values' rounding, no gain: as precise as they allow
            break
    return u, point


def conditional_mode(
    problem: GlmmProblem, theta, beta, params, start: np.ndarray | None = None, aux_eta: dict | None = None
) -> Conditional:
    """The conditional mode of log p(y | u) - |u|^2/2 (:func:`newton_mode`) over rows in memory;
    ``aux_eta``: the fixed part of each random-effect parameter's predictor
    (:meth:`GlmmProblem.auxiliary_eta`)."""
    problem.require_rows()
    Ms, offsets = _linear_parts(problem, theta, beta, aux_eta)
    pattern = CrossPattern.of(Ms, problem.cross_cache) if len(Ms) > 1 else None

    def evaluate(u):
        ll, d1, d2 = _joint_terms(problem, [o + M @ u for o, M in zip(offsets, Ms)], params)
        gradient = sum(M.T @ d1[:, j] for j, M in enumerate(Ms)) - u
        value = float(ll.sum()) - 0.5 * float(u @ u)
        return value, gradient, functools.partial(_information_factor, problem, Ms, d2, pattern=pattern)

    u = np.zeros(Ms[0].shape[1]) if start is None else start.copy()
    u, _ = newton_mode(evaluate, u)
    ll, _, d2 = _joint_terms(problem, [o + M @ u for o, M in zip(offsets, Ms)], params)
    return Conditional(u=u, loglik=float(ll.sum()), H=_information_factor(problem, Ms, d2, False, pattern))


def _leverages(M: sp.csr_matrix, H_inverse: SelectedInverse) -> np.ndarray:
    """h_i = m_i' H^{-1} m_i for every row m_i of M, from its few nonzeros (never M H^{-1}, n x q)."""
    coo = M.tocoo()
    rows, columns, values = coo.row, coo.col, coo.data
    counts = np.bincount(rows, minlength=M.shape[0])
    starts = np.concatenate([[0], np.cumsum(counts)])
    # every ordered pair (k, l) of nonzeros within a row (COO from a CSR matrix is sorted by row)
    sizes = counts * counts
    position = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)  # 0 .. c^2 - 1 in a row
    per_row, row_start = np.repeat(counts, sizes), np.repeat(starts[:-1], sizes)
    first, second = row_start + position // per_row, row_start + position % per_row
    products = values[first] * values[second] * H_inverse.at(columns[first], columns[second])
    return np.bincount(rows[first], weights=products, minlength=M.shape[0])


def laplace_gradient(problem: GlmmProblem, x: np.ndarray, conditional: Conditional) -> np.ndarray:
    """The exact gradient of the Laplace deviance -2 log L over (theta, beta), at the mode u*.

    D = -2 log p(y | u*) + |u*|^2 + log|H|. The first two terms' derivative through u* vanishes at
    the mode, leaving their explicit part -2 d1' d eta. log|H| moves with Lambda directly and with W
    = -d2(eta), whose change d3 * d eta includes u*'s response du* = H^{-1} dg (implicit function
    theorem on g = M' d1 - u = 0). With h the rows' leverages m_i' H^{-1} m_i, a = -d3 h and
    c = H^{-1} M' a, each coordinate costs a few sparse products (TMB differentiates the same way).
    A constant family parameter psi (dispersion, shape, an ordinal model's thresholds) enters each
    row's terms directly: its entry is -2 sum l_psi + h' W_psi + (M c)' g_psi, with l_psi, g_psi and
    W_psi the psi-derivatives of the rows' log-likelihood, eta-gradient and -Hessian, 5-point
    differences of the family's row terms (no mode search).
    """
    theta, beta, params = problem.split(x)
    lam, u = problem.lam(theta), conditional.u
    M = (problem.Z @ lam).tocsr()
    eta = problem.X @ beta + problem.offset + M @ u
    _, d1, d2 = problem.terms(eta, params)
    H_inverse = conditional.H.selected_inverse()
    leverages = _leverages(M, H_inverse)
    a = -problem.third(eta, params) * leverages
    c = conditional.H.solve(M.T @ a)
    d2_Mc = d2 * (M @ c)
    gradient = np.full(len(x), np.nan)
    n_theta, p = problem.layout.n_theta, problem.X.shape[1]
    gradient[n_theta : n_theta + p] = problem.X.T @ (-2.0 * d1 + a + d2_Mc)
    weighted = (M.T @ sp.diags(-d2) @ problem.Z).tocsr()  # M' W Z: log|H|'s direct dependence on Lambda
    for index, d_lam in enumerate(problem.lam_tangents(theta)):
        d_eta = problem.Z @ (d_lam @ u)
        direct = (weighted @ d_lam).tocoo()
        trace = float(np.sum(H_inverse.at(direct.col, direct.row) * direct.data))
        dg = d_lam.T @ (problem.Z.T @ d1)
        gradient[index] = -2.0 * d1 @ d_eta + 2.0 * trace + (a + d2_Mc) @ d_eta + c @ dg
    Mc = M @ c
    for index in range(n_theta + p, len(x)):
        ll, g, d2_psi = _parameter_derivatives(problem, x, index, eta)
        gradient[index] = -2.0 * float(ll.sum()) - leverages @ d2_psi + Mc @ g
    return gradient


def _parameter_derivatives(problem: GlmmProblem, x: np.ndarray, index: int, eta: np.ndarray):
    """d/dx_index of each row's (log p, d1, d2) at fixed eta: 5-point differences in a family
    parameter's unconstrained coordinate (error O(h^4), ~1e-12 relative at PARAMETER_STEP)."""
    h = PARAMETER_STEP * max(1.0, abs(x[index]))
    rows = {}
    for s in (-2, -1, 1, 2):
        shifted = x.copy()
        shifted[index] += s * h
        rows[s] = problem.terms(eta, problem.split(shifted)[2])
    return tuple((rows[-2][k] - 8 * rows[-1][k] + 8 * rows[1][k] - rows[2][k]) / (12 * h) for k in range(3))


def _third_derivatives(problem: GlmmProblem, etas: list, params: dict) -> np.ndarray:
    """(n, P, P, P): d/d eta_l of each row's Hessian over the predictors, 5-point differences of
    :func:`_joint_terms` along each predictor (how W moves, which log|H|'s gradient reads)."""
    if problem.family.categorical:  # analytic; the reference's predictor has no derivatives
        third = np.zeros((len(etas[0]),) + (len(etas),) * 3)
        third[:, 1:, 1:, 1:] = categorical.joint_third(etas[1:])
        return third if problem.weights is None else problem.weights[:, None, None, None] * third
    analytic = _zero_process_third(problem, etas, params)
    if analytic is not None:
        return analytic
    h = PARAMETER_STEP
    n, P = len(etas[0]), len(etas)
    third = np.empty((n, P, P, P))
    for along in range(P):
        at = {}
        for s in (-2, -1, 1, 2):
            shifted = [eta + s * h if j == along else eta for j, eta in enumerate(etas)]
            at[s] = _joint_terms(problem, shifted, params)[2]
        third[..., along] = (at[-2] - 8 * at[-1] + 8 * at[1] - at[2]) / (12 * h)
    return third


def _zero_process_third(problem: GlmmProblem, etas: list, params: dict) -> np.ndarray | None:
    """The (n, 2, 2, 2) third derivatives over (eta, zeta) where the only other predictor is a zero
    process's logit with analytic terms (:meth:`Family.parameter_third`), else None."""
    names = problem.auxiliary_predictors
    if len(names) != 1 or problem.censoring is not None:
        return None
    values = dict(params)
    values[names[0]] = problem.transform(names[0])[0](etas[1])
    mixed = problem.family.parameter_third(names[0], etas[0], problem.y, problem.trials, values, problem.weights)
    if mixed is None:
        return None
    zeta3, zeta2_eta, zeta_eta2 = mixed
    third = np.empty((len(etas[0]), 2, 2, 2))
    third[:, 0, 0, 0] = problem.third(etas[0], values)
    third[:, 0, 0, 1] = third[:, 0, 1, 0] = third[:, 1, 0, 0] = zeta_eta2
    third[:, 0, 1, 1] = third[:, 1, 0, 1] = third[:, 1, 1, 0] = zeta2_eta
    third[:, 1, 1, 1] = zeta3
    return third


def joint_laplace_gradient(problem: GlmmProblem, x: np.ndarray, conditional: Conditional, aux_eta: dict):
    """The gradient of the Laplace deviance over theta and the coefficients of every linear
    predictor (the mean's, and each random-effect parameter's formula), as :func:`laplace_gradient`
    for P predictors: with per-row gradients g (n, P), W = -Hessian (n, P, P), third derivatives T,
    cross-leverages h_jk = m_j' H^{-1} m_k, a_l = -sum_jk h_jk T_jkl, c = H^{-1} sum_l M_l' a_l and
    b_l = -2 g_l + a_l - sum_j (M_j c) W_jl, a coefficient of predictor l gets X_l' b_l and a theta
    entry sum_l b_l' Z_l dLambda u + 2 tr(H^{-1} sum_jk M_k' W_kj Z_j dLambda) + c' sum_j dLambda' Z_j' g_j.
    Entries of constant family parameters (no formula) are NaN (the caller differences them)."""
    theta, beta, params = problem.split(x)
    Ms, offsets = _linear_parts(problem, theta, beta, aux_eta)
    Zs = [problem.Z] + [problem.auxiliary_Z[name] for name in problem.auxiliary_predictors]
    etas = [o + M @ conditional.u for o, M in zip(offsets, Ms)]
    _, g, hessian = _joint_terms(problem, etas, params)
    W, P, n = -hessian, len(Ms), len(etas[0])
    selected = conditional.H.selected_inverse()
    h = CrossPattern.of(Ms, problem.cross_cache).leverages(selected, n, P)
    a = -np.einsum("njk,njkl->nl", h, _third_derivatives(problem, etas, params))
    c = conditional.H.solve(sum(M.T @ a[:, j] for j, M in enumerate(Ms)))
    Mc = np.column_stack([M @ c for M in Ms])
    b = -2.0 * g + a - np.einsum("nj,njl->nl", Mc, W)
    gradient = np.full(len(x), np.nan)
    n_theta, p = problem.layout.n_theta, problem.X.shape[1]
    gradient[n_theta : n_theta + p] = problem.X.T @ b[:, 0]
    start = n_theta + p
    for name, size in zip(problem.auxiliary, problem.auxiliary_sizes):
        if name in problem.auxiliary_predictors:
            gradient[start : start + size] = (
                problem.auxiliary_X[name].T @ b[:, 1 + problem.auxiliary_predictors.index(name)]
            )
        start += size
    weighted = [sum(Ms[k].T @ sp.diags(W[:, k, j]) for k in range(P)) @ Zs[j] for j in range(P)]
    u = conditional.u
    for index, d_lam in enumerate(problem.lam_tangents(theta)):
        direct = sum(w @ d_lam for w in weighted).tocoo()
        trace = float(np.sum(selected.at(direct.col, direct.row) * direct.data))
        d_u = d_lam @ u
        explicit = sum(b[:, j] @ (Z @ d_u) for j, Z in enumerate(Zs))
        response = sum(c @ (d_lam.T @ (Z.T @ g[:, j])) for j, Z in enumerate(Zs))
        gradient[index] = explicit + 2.0 * trace + response
    return gradient


SEPARATION_ETA = 30.0  # |linear predictor| of the GLM start beyond which estimates run off to infinity


def _infinite_estimates(problem: GlmmProblem) -> BayesmixError:
    name = problem.family.name
    what = (
        "the predictors separate the 0s from the 1s (complete or quasi-complete separation)"
        if name in ("bernoulli", "binomial")
        else "some combination of predictors has only zero counts"
    )
    return BayesmixError(
        f"The maximum-likelihood fixed effects of this {name} model are infinite: {what}, so the linear "
        "predictor runs off to infinity and a Laplace fit has no optimum. Remove or merge the predictor or level "
        "responsible, or use sample(), whose priors keep the estimates finite."
    )


def _glm_start(problem: GlmmProblem, params) -> np.ndarray:
    """beta of the GLM without random effects, the outer optimiser's start. Raises BayesmixError
    when the estimates run off to infinity (separation)."""
    X = problem.X
    if not X.shape[1]:  # a categorical model's mean predictor (the reference's) has no coefficients
        return np.zeros(0)
    start = fit_glm(problem.family, X, problem.y, problem.trials, problem.offset, params, problem.weights)
    if not start.converged and np.max(np.abs(X @ start.beta), initial=0.0) > SEPARATION_ETA:
        raise _infinite_estimates(problem)
    return start.beta


def _check_response_varies(design: Design, family: Family) -> None:
    y = design.y if design.trials is None else design.y[design.trials > 0] / design.trials[design.trials > 0]
    if len(y):
        check_response_varies(float(np.min(y)), float(np.max(y)), design.spec.response.expr, family)


def check_response_varies(low: float, high: float, response: str, family: Family) -> None:
    """All 0s or all 1s (all successes), all zero counts: the intercept's estimate is infinite.
    ``low``, ``high``: the response's range on the mean's scale (successes / trials)."""
    if family.name in ("bernoulli", "binomial"):
        if high == 0 or low == 1:
            outcome = "a failure" if high == 0 else "a success"
            raise BayesmixError(
                f"Every row of the response '{response}' is {outcome}: the maximum-likelihood "
                "intercept is infinite and a Laplace fit has no optimum. Check the data, or use sample(), whose "
                "priors keep the estimates finite."
            )
    elif family.link.name == "log" and high == 0:
        raise BayesmixError(
            f"Every count of the response '{response}' is 0: the maximum-likelihood intercept is "
            "minus infinity and a Laplace fit has no optimum. Check the data, or use sample()."
        )


def _hessian(fun, x: np.ndarray, step: float = 1e-4) -> np.ndarray:
    n = len(x)
    h = step * np.maximum(1.0, np.abs(x))
    H = np.empty((n, n))
    f0 = fun(x)
    for i in range(n):
        ei = np.zeros(n)
        ei[i] = h[i]
        H[i, i] = (fun(x + ei) - 2 * f0 + fun(x - ei)) / h[i] ** 2
        for j in range(i):
            ej = np.zeros(n)
            ej[j] = h[j]
            H[i, j] = H[j, i] = (fun(x + ei + ej) - fun(x + ei - ej) - fun(x - ei + ej) + fun(x - ei - ej)) / (
                4 * h[i] * h[j]
            )
    return H


def _hessian_of_gradient(objective, x: np.ndarray, step: float = 1e-4) -> np.ndarray:
    """Central differences of the exact gradient (2 d evaluations, where differences of the
    deviance itself need 2 d^2), made symmetric."""
    n = len(x)
    h = step * np.maximum(1.0, np.abs(x))
    H = np.empty((n, n))
    for i in range(n):
        e = np.zeros(n)
        e[i] = h[i]
        H[i] = (objective(x + e)[1] - objective(x - e)[1]) / (2 * h[i])
    return (H + H.T) / 2


@dataclass(frozen=True)
class GlmmResult:
    """A finished Laplace fit; vcov is over all outer parameters (theta, beta[, log alpha])."""

    problem: GlmmProblem
    optimizer: OptimizerSummary
    conditional: Conditional
    vcov: np.ndarray
    fixed_names: tuple[str, ...]
    dropped: tuple[str, ...]
    nagq: int = 1  # quadrature points per level: 1 is the Laplace approximation
    quadrature_loglik: float | None = None  # the adaptive Gauss-Hermite log-likelihood when nagq > 1
    evaluator: Evaluator | None = None  # where its rows' sums come from (None: the problem's rows)

    def evaluate(self) -> Evaluator:
        """The :class:`Evaluator` of this fit's rows, in the user's columns (a profile's deviance reads it)."""
        return self.evaluator or in_memory(self.problem)

    @property
    def loglik(self) -> float:
        return self.conditional.laplace_loglik() if self.quadrature_loglik is None else self.quadrature_loglik

    def estimates(self):
        return self.problem.split(self.optimizer.x)

    def modes(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per block (lme4 order): conditional modes b (M, k) and conditional SDs (M, k): each
        level's Var(b) = T H^{-1}_mm T', from H^{-1}'s within-level blocks (never all of H^{-1})."""
        theta = self.problem.split(self.optimizer.x)[0]
        b = self.problem.lam(theta) @ self.conditional.u
        selected = self.conditional.H.selected_inverse()
        modes, sds, start = [], [], 0
        for m, k, T in zip(self.problem.levels, self.problem.layout.sizes, self.problem.layout.factors(theta)):
            index = start + np.arange(m)[:, None] * k + np.arange(k)[None]  # (m, k) effect positions
            rows = np.broadcast_to(index[:, :, None], (m, k, k)).ravel()
            columns = np.broadcast_to(index[:, None, :], (m, k, k)).ravel()
            within = selected.at(rows, columns).reshape(m, k, k)
            variance = np.einsum("ab,mbc,dc->mad", T, within, T)
            modes.append(b[start : start + m * k].reshape(m, k))
            sds.append(np.sqrt(np.clip(np.diagonal(variance, axis1=1, axis2=2), 0.0, None)))
            start += m * k
        return modes, sds


def check_quadrature(design: Design, nagq) -> int:
    """nAGQ as lme4 takes it: a whole number >= 1; above 1 only for a single scalar random-effect
    term, whose levels' integrals are one-dimensional and independent."""
    if isinstance(nagq, bool) or not isinstance(nagq, (int, np.integer)) or nagq < 1:
        raise BayesmixError(f"nAGQ must be a whole number >= 1 (1 is the Laplace approximation), not {nagq!r}.")
    blocks = design.all_blocks
    if nagq > 1 and (len(blocks) != 1 or blocks[0].n_terms != 1):
        terms = ", ".join(f"({' + '.join(b.terms)} | {b.group})" for b in blocks)
        raise BayesmixError(
            f"nAGQ > 1 (adaptive Gauss-Hermite quadrature) needs a single scalar random-effect term such as "
            f"(1 | g), as in lme4; this model has {terms}. Use nAGQ=1 (Laplace), or sample()."
        )
    return int(nagq)


def agq_loglik(problem: GlmmProblem, conditional: Conditional, x: np.ndarray, nagq: int) -> float:
    """The adaptive Gauss-Hermite log-likelihood of a model with one scalar random-effect term.

    Each level's integral over its effect u is one-dimensional: centred at the conditional mode u*
    and scaled by the curvature h there, it is h^(-1/2) E_z[exp(g(u* + z h^(-1/2)) + z^2/2)] with
    z standard normal and g the log of the level's likelihood times N(u; 0, 1) (its 2 pi cancels
    the normal density's). nagq = 1 gives the Laplace approximation.
    """
    theta, beta, params = problem.split(x)
    coo = problem.Z.tocoo()
    codes = np.zeros(problem.Z.shape[0], dtype=np.int64)
    zt = np.zeros(problem.Z.shape[0])
    codes[coo.row], zt[coo.row] = coo.col, coo.data * theta[0]
    levels = problem.Z.shape[1]
    eta = problem.X @ beta + problem.offset + zt * conditional.u[codes]
    _, _, d2 = problem.terms(eta, params)
    h = 1.0 + np.bincount(codes, weights=zt**2 * -d2, minlength=levels)
    z, w = np.polynomial.hermite_e.hermegauss(nagq)
    terms = np.empty((nagq, levels))
    for k in range(nagq):
        shift = z[k] / np.sqrt(h)
        ll, _, _ = problem.terms(eta + zt * shift[codes], params)
        terms[k] = np.bincount(codes, weights=ll, minlength=levels) - 0.5 * (conditional.u + shift) ** 2 + z[k] ** 2 / 2
    per_level = logsumexp(terms, axis=0, b=(w / np.sqrt(2 * np.pi))[:, None]) - 0.5 * np.log(h)
    return float(per_level.sum())


def fit_glmm(design: Design, family: Family, nagq: int = 1) -> GlmmResult:
    """Optimise the Laplace approximation over (theta, beta[, log dispersion]); with ``nagq`` > 1
    then adaptive Gauss-Hermite quadrature from that optimum (glmer's nAGQ)."""
    nagq = check_quadrature(design, nagq)
    problem, X, kept, dropped, transform = glmm_problem(design, family)
    start_params, auxiliary_start = problem.auxiliary_start()
    start = np.concatenate([problem.layout.start(), _glm_start(problem, start_params), auxiliary_start])
    summary, conditional, vcov, quadrature = optimise_laplace(problem, in_memory(problem), start, nagq)
    summary, vcov = in_user_columns(summary, vcov, transform, problem.layout.n_theta)
    return GlmmResult(replace(problem, X=X), summary, conditional, vcov, kept, dropped, nagq, quadrature)


def optimise_laplace(problem: GlmmProblem, evaluator: Evaluator, start: np.ndarray, nagq: int = 1):
    """(optimiser summary, conditional mode, vcov, quadrature log-likelihood or None) from ``start``:
    the Laplace deviance minimised on its exact gradient, then with ``nagq`` > 1 the quadrature's
    (lme4's order too: the Laplace optimum is the quadrature's start); vcov from the Hessian of the
    deviance at the end point."""
    n_theta = problem.layout.n_theta
    lower = np.concatenate([problem.layout.lower(), np.full(len(start) - n_theta, -np.inf)])
    deviance, objective = deviance_function(problem, evaluator=evaluator), laplace_objective(problem, evaluator)
    summary, conditional = _optimum(problem, deviance, start, lower, objective, evaluator)
    quadrature = None
    if nagq > 1:
        deviance = deviance_function(problem, nagq)
        summary, conditional = _optimum(problem, deviance, summary.x, lower)
        quadrature = agq_loglik(problem, conditional, summary.x, nagq)
        hessian = _hessian(deviance, summary.x)
    else:
        hessian = _hessian_of_gradient(objective, summary.x)
        summary, conditional = _newton_polish(summary, conditional, hessian, lower, objective, evaluator)
    return summary, conditional, _vcov(hessian), quadrature


def _newton_polish(summary: OptimizerSummary, conditional, hessian, lower, objective, evaluator):
    """One Newton step on the exact gradient from the optimiser's end point, with the Hessian the
    standard errors read anyway, over the entries off their bounds. L-BFGS stops where the
    deviance's change falls below its tolerance, up to ~1e-7 from the optimum and at a point that
    depends on the sums' rounding; one Newton step from there lands within rounding of the
    optimum, so fits of the same rows summed in another order (a Dask DataFrame's partitions)
    agree to ~1e-10. Kept only where the deviance does not rise."""
    free = ~(np.isfinite(lower) & (summary.x <= lower))
    if not free.any() or not np.all(np.isfinite(summary.gradient)):
        return summary, conditional
    try:
        root = np.linalg.cholesky(hessian[np.ix_(free, free)])
    except np.linalg.LinAlgError:
        return summary, conditional
    x = summary.x.copy()
    value, gradient = objective(x)
    step = np.linalg.solve(root.T, np.linalg.solve(root, gradient[free]))
    x[free] -= step
    if np.any(x < lower):
        return summary, conditional
    new_value, new_gradient = objective(x)
    if not np.isfinite(new_value) or new_value > value + 1e-12 * abs(value):
        return summary, conditional
    new_gradient[~free] = summary.gradient[~free]  # the optimiser's projected gradient at the bounds
    summary = replace(summary, x=x, objective=new_value, gradient=new_gradient)
    return summary, evaluator.mode(x, conditional.u)


def in_user_columns(summary: OptimizerSummary, vcov: np.ndarray, transform: np.ndarray, n_theta: int):
    """The optimiser's summary and vcov back in the user's columns: eta = X_s beta_s = X (T beta_s),
    so beta = T beta_s (T: :func:`column_transform`)."""
    p, size = transform.shape[0], len(summary.x)
    outer = sp.block_diag([sp.identity(n_theta), transform, sp.identity(size - n_theta - p)]).toarray()
    summary = replace(summary, x=outer @ summary.x, gradient=np.linalg.solve(outer.T, summary.gradient))
    return summary, outer @ vcov @ outer.T


def glmm_problem(design: Design, family: Family):
    """The :class:`GlmmProblem` of a design (its columns transformed by :func:`_column_transform`), after
    the checks a Laplace fit needs. Returns (problem, X without aliased columns, their names kept and
    dropped, the column transform T)."""
    if not family.has_laplace:
        raise BayesmixError(
            f"Laplace fits are available for binomial/bernoulli (logit, probit, cloglog), poisson, "
            f"negativebinomial and negativebinomial1 (log), their zero-inflated, hurdle and truncated forms (log), "
            f"gamma, exponential, weibull, tweedie and hurdle_gamma (log), lognormal and hurdle_lognormal "
            f"(identity), beta, betabinomial and zero_inflated_binomial (logit), and gaussian with a dispersion "
            f"formula or censored rows; not for {family.name} with the {family.link.name} link. Use sample() "
            "for NUTS."
        )
    if design.censoring is not None and family.name not in LAPLACE_CENSORABLE:
        raise BayesmixError(
            f"A censored response has a Laplace fit for {', '.join(LAPLACE_CENSORABLE)}; not for family="
            f"'{family.name}' (its CDF's derivatives are not written out). Use sample() (NUTS)."
        )
    design = family_design(design, family)  # a binomial proportion's weights are its trials
    check_identifiable(design, allow_n=True)
    _check_response_varies(design, family)
    X, kept, dropped = drop_aliased(design.X, design.fixed_names)
    order = lme4_order(design.all_blocks)
    blocks = [design.all_blocks[i] for i in order]
    first_order, first_terms = _first_part(blocks)
    _check_dense_parts(blocks, first_terms)
    transform = _column_transform(X)

    def z_of(predictor: str) -> sp.csr_matrix:
        """Z of one linear predictor over all of u's columns (zero where another predictor's blocks sit)."""
        parts = [
            block_z(replace(b, Zt=b.Zt * b.mask(predictor))) if b.feeds(predictor) else sp.csr_matrix(block_z(b).shape)
            for b in blocks
        ]
        return sp.hstack(parts).tocsr()

    problem = GlmmProblem(
        family=family,
        X=X @ transform,
        y=design.y,
        trials=design.trials,
        Z=z_of("mu"),
        layout=ThetaLayout(tuple(b.covariance for b in blocks)),
        levels=tuple(b.n_levels for b in blocks),
        order=tuple(order),
        offset=0.0 if design.offset is None else design.offset,
        weights=design.weights,
        auxiliary_X={family.submodel_parameter(role): sub.X for role, sub in design.submodels.items()},
        auxiliary_Z={family.submodel_parameter(r): z_of(r) for r in design.submodels},
        censoring=design.censoring,
        upper=None if design.censoring is None else np.where(design.censoring == 3, design.upper, np.nan),
        first_order=first_order,
        first_terms=first_terms,
    )
    return problem, X, kept, dropped, transform


def _first_part(blocks) -> tuple[np.ndarray | None, int]:
    """(the column order that puts every block of the first block's grouping factor level by level
    first, or None where that block is alone; the effects per level there). Every row of the data
    touches one level of that factor, so H stays block diagonal over those levels with them all in."""
    first = blocks[0]
    same = [i for i, b in enumerate(blocks) if b.group == first.group and np.array_equal(b.codes, first.codes)]
    if len(same) == 1:
        return None, first.n_terms
    offsets = np.cumsum([0] + [b.n_levels * b.n_terms for b in blocks])
    levels = np.arange(first.n_levels)[:, None]
    parts = [offsets[i] + levels * blocks[i].n_terms + np.arange(blocks[i].n_terms) for i in same]
    merged = np.hstack(parts).ravel()
    rest = np.setdiff1d(np.arange(offsets[-1]), merged)  # sorted: the other blocks in u's order
    return np.concatenate([merged, rest]), sum(blocks[i].n_terms for i in same)


def _check_dense_parts(blocks, first_terms: int) -> None:
    """The dense parts of the blocked algebra: the Schur complement of all blocks but the first
    part (the first block's grouping factor, ``first_terms`` effects per level; q2 x q2) and
    H^{-1}'s coupling block (q2 x q1); the first part's levels cost O(q1) only."""
    q1 = blocks[0].n_levels * first_terms
    q2 = sum(b.n_levels * b.n_terms for b in blocks) - q1
    fix = (
        f"Its size grows with the random effects of all blocks but {blocks[0].group} ({q2:,}); use sample() (NUTS) "
        "for this model, or fewer levels in the crossed grouping factors."
    )
    if q2 > MAX_DENSE_EFFECTS:
        raise BayesmixError(
            f"This Laplace fit has {q2:,} random effects outside its largest grouping factor; the dense part of its "
            f"inner algebra is limited to {MAX_DENSE_EFFECTS:,} ({q2 * q2 * 8 / 1e9:.1f} GB). Use sample() for NUTS."
        )
    memory.check("The Laplace fit's dense Schur complement (q2 x q2, q2 = other blocks' effects)", (q2, q2), fix)
    coupling = f"The Laplace fit's coupling block of H^{{-1}} (q2 x q1, q1 = {blocks[0].group}'s effects)"
    memory.check(coupling, (q2, q1), fix)


@dataclass(frozen=True)
class Evaluator:
    """Where a Laplace fit's sums over rows come from. ``mode(x, start)``: the :class:`Conditional`
    at the outer parameters x, Newton's method started from ``start`` (None: u = 0); ``gradient(x,
    conditional)``: the exact gradient of -2 log L there (NaN where a family parameter's entry is
    left to differences). :func:`in_memory` reads the rows of a :class:`GlmmProblem`;
    :mod:`bayesmix.exact.glmm_partitions` sums a Dask DataFrame's partitions."""

    mode: Callable
    gradient: Callable


def in_memory(problem: GlmmProblem) -> Evaluator:
    """The :class:`Evaluator` of rows held by ``problem``."""
    problem.require_rows()

    def mode(x, start):
        theta, beta, params = problem.split(x)
        return conditional_mode(problem, theta, beta, params, start, problem.auxiliary_eta(x))

    def gradient(x, conditional):
        if problem.auxiliary_predictors:
            return joint_laplace_gradient(problem, x, conditional, problem.auxiliary_eta(x))
        return laplace_gradient(problem, x, conditional)

    return Evaluator(mode, gradient)


def deviance_function(problem: GlmmProblem, nagq: int = 1, evaluator: Evaluator | None = None):
    """-2 log L as a function of the outer parameters (theta, beta[, log dispersion]): Laplace, or
    adaptive Gauss-Hermite quadrature with ``nagq`` points. Each call starts Newton's method from the
    previous call's mode; an overflow at an extreme point gives inf, so the optimiser steps back."""
    evaluator = evaluator or in_memory(problem)
    warm = {"u": None}

    def deviance(x):
        try:
            with np.errstate(all="ignore"):
                conditional = evaluator.mode(x, warm["u"])
                value = conditional.laplace_loglik() if nagq == 1 else agq_loglik(problem, conditional, x, nagq)
        except (np.linalg.LinAlgError, ValueError):
            return np.inf
        warm["u"] = conditional.u
        return -2.0 * value if np.isfinite(value) else np.inf

    return deviance


def laplace_objective(problem: GlmmProblem, evaluator: Evaluator | None = None):
    """(-2 log L, its gradient) as a function of (theta, beta[, family parameters]): the gradient
    from :func:`laplace_gradient` (one linear predictor) or :func:`joint_laplace_gradient` (a zi= or
    dispersion= formula's too), each constant family parameter's entry by central differences (two
    warm-started modes each). Non-finite values (an overflow at an extreme point) give inf."""
    evaluator = evaluator or in_memory(problem)
    warm = {"u": None}
    deviance = deviance_function(problem, evaluator=evaluator)

    def objective(x):
        try:
            with np.errstate(all="ignore"):
                conditional = evaluator.mode(x, warm["u"])
                value = -2.0 * conditional.laplace_loglik()
                gradient = evaluator.gradient(x, conditional)
        except (np.linalg.LinAlgError, ValueError):
            return np.inf, np.full(len(x), np.nan)
        if not np.isfinite(value):
            return np.inf, gradient
        warm["u"] = conditional.u
        for index in np.flatnonzero(np.isnan(gradient)):
            step = DISPERSION_STEP * max(1.0, abs(x[index]))
            up, down = x.copy(), x.copy()
            up[index] += step
            down[index] -= step
            gradient[index] = (deviance(up) - deviance(down)) / (2 * step)
        return value, gradient

    return objective


DISPERSION_STEP = 1e-5  # relative step of the central difference in a family parameter (unbounded scale)


def _optimum(problem: GlmmProblem, deviance, start: np.ndarray, lower: np.ndarray, gradient=None, evaluator=None):
    """From ``start``: L-BFGS on the exact gradient where ``gradient`` (the objective with it) is
    given, BOBYQA otherwise or where L-BFGS stops short; the optimiser's summary and the conditional
    mode at its end point."""
    evaluator = evaluator or in_memory(problem)
    summary = None
    if gradient is not None:
        summary = minimize_with_gradient(gradient, start, lower)
        if not summary.converged:  # a failed line search, often where warm-started modes jumped: once more, cold
            again = minimize_with_gradient(laplace_objective(problem, evaluator), summary.x, lower)
            summary = again if again.objective <= summary.objective else summary
    if summary is None or not summary.converged:
        summary = minimize_bounded(deviance, start if summary is None else summary.x, lower)
    summary = _off_the_boundary(deviance, summary, lower, gradient)
    try:
        if not np.isfinite(summary.objective):
            raise ValueError("non-finite deviance")
        with np.errstate(all="ignore"):
            conditional = evaluator.mode(summary.x, None)
    except (np.linalg.LinAlgError, ValueError):
        raise BayesmixError(
            "The Laplace fit failed numerically: the deviance is not finite at the optimiser's end point "
            f"({np.round(summary.x, 4).tolist()}). Rescale the predictors (e.g. to unit SD), or use sample()."
        ) from None
    return summary, conditional


BOUNDARY_RESTART = 0.1  # where a covariance factor's diagonal at 0 restarts (_off_the_boundary)


def _off_the_boundary(deviance, summary: OptimizerSummary, lower: np.ndarray, gradient=None) -> OptimizerSummary:
    """The deviance is even in each diagonal entry of a covariance factor (b and -b are the same
    model), so its derivative there vanishes at 0: a gradient method that reaches 0 stops, even
    where 0 is a maximum along that entry and a larger SD fits better. From such an end point,
    the optimiser restarts with those entries at :data:`BOUNDARY_RESTART` (L-BFGS where the exact
    gradient is given, BOBYQA where it is not or where L-BFGS stops short); the better of the two
    end points stands."""
    at_bound = np.isfinite(lower) & (summary.x <= lower)
    if not at_bound.any():
        return summary
    start = summary.x.copy()
    start[at_bound] = lower[at_bound] + BOUNDARY_RESTART
    again = None if gradient is None else minimize_with_gradient(gradient, start, lower)
    if again is None or not again.converged:
        again = minimize_bounded(deviance, start if again is None else again.x, lower)
    better = again.objective < summary.objective - 1e-10 * max(1.0, abs(summary.objective))
    return again if better else summary


BADLY_SCALED = (0.1, 10.0)  # a column whose SD is outside this range is centred and scaled for the optimiser


def _column_transform(X: np.ndarray) -> np.ndarray:
    return column_transform(X.mean(axis=0), X.std(axis=0))


def column_transform(mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """T (p, p) with X T centred and scaled to unit SD in the columns whose SD is far from 1 (as
    lme4's advice to rescale, done for the user): the outer optimiser's steps are then of one size
    in every direction, where a predictor on the 1e4 scale made it stop short. The intercept absorbs
    the centring; a model without an intercept is only scaled. ``mean``, ``sd``: X's columns' (ddof 0)."""
    p = len(mean)
    transform = np.eye(p)
    if not p:
        return transform
    intercept = [j for j in range(p) if sd[j] == 0 and mean[j] == 1.0]
    for j in range(p):
        if sd[j] > 0 and not BADLY_SCALED[0] <= sd[j] <= BADLY_SCALED[1]:
            transform[j, j] = 1.0 / sd[j]
            if intercept:
                transform[intercept[0], j] = -mean[j] / sd[j]
    return transform


def _vcov(hessian: np.ndarray) -> np.ndarray:
    """2 H^{-1}, or NaN (with a ConvergenceWarning) when the finite-difference Hessian of the
    deviance is not positive definite: its inverse then gives no standard errors."""
    try:
        vcov = 2.0 * np.linalg.inv(hessian)
    except np.linalg.LinAlgError:
        vcov = np.full_like(hessian, np.nan)
    diagonal = np.diag(vcov)
    if np.any(~np.isfinite(diagonal)) or np.any(diagonal <= 0):
        warn(
            "The Hessian of the Laplace deviance is not positive definite at the optimum, so the standard errors "
            "are not available (NaN). The fit may not be at a minimum: rescale the predictors (e.g. to unit SD) "
            "and compare with sample().",
            ConvergenceWarning,
        )
        vcov = np.full_like(hessian, np.nan)
    return vcov
