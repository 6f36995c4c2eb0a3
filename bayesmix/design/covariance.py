"""The covariance structure of one random-effect block, the one object both engines read.

A block's k effects per level are N(0, sigma^2 T T') for the exact engine (lme4's relative
covariance factor T, lower triangular, a function of the parameter vector theta), and N(0, S S')
for the Bayesian one (S the Cholesky factor of the covariance built from standard deviations and
correlations). A structure says how many parameters it has, how theta maps to T and back, where
theta starts and how it is bounded, and how T moves with each theta entry (the exact gradient).

lme4's unstructured structure (every variance and correlation free, ``us``) is the default;
glmmTMB's compound symmetry (``cs``: a variance per term, one common correlation) and first-order
autoregression (``ar1``: one variance, correlation rho^|i - j| between terms i and j, the indicator
columns of a factor of equally spaced times) are classes with the same methods. The exact engine
takes any of them through these methods alone, and the Bayesian one dispatches on ``kind``.
(``diag``, glmmTMB's independent terms, is lme4's ``||``: one block per term.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from bayesmix.design.hilbert import HilbertBasis, HilbertSettings, block_basis
from bayesmix.design.matern import matern_correlation, matern_derivatives


class Covariance(Protocol):
    """What the engines need of a block's covariance structure."""

    kind: str
    k: int

    @property
    def n_theta(self) -> int: ...

    def factor(self, theta: np.ndarray) -> np.ndarray: ...

    def theta(self, factor: np.ndarray) -> np.ndarray: ...

    def factor_derivatives(self, theta: np.ndarray) -> np.ndarray: ...

    def lower(self) -> np.ndarray: ...

    def start(self) -> np.ndarray: ...

    def is_diagonal(self) -> np.ndarray: ...

    def parameter_names(self, terms) -> list[str]: ...


class _FreeEntries:
    """A factor T whose free entries are theta itself (``positions()``: their (row, column) in T):
    linear in theta, so its derivative is one unit matrix per entry; the diagonal's entries are
    bounded below at 0 (each a column's sign, not identified), and T starts as the identity there."""

    @property
    def n_theta(self) -> int:
        return len(self.positions())

    def factor(self, theta: np.ndarray) -> np.ndarray:
        T = np.zeros((self.k, self.k))
        rows, columns = zip(*self.positions())
        T[rows, columns] = theta[: self.n_theta]
        return T

    def theta(self, factor: np.ndarray) -> np.ndarray:
        rows, columns = zip(*self.positions())
        return np.asarray(factor)[rows, columns]

    def factor_derivatives(self, theta: np.ndarray) -> np.ndarray:
        """(n_theta, k, k): dT/dtheta_i; T is linear in theta, so one unit matrix per entry."""
        out = np.zeros((self.n_theta, self.k, self.k))
        for index, (i, j) in enumerate(self.positions()):
            out[index, i, j] = 1.0
        return out

    def is_diagonal(self) -> np.ndarray:
        """Which theta entries are variances' square roots (T's diagonal): singular at 0."""
        return np.array([i == j for i, j in self.positions()], dtype=bool)

    def lower(self) -> np.ndarray:
        return np.where(self.is_diagonal(), 0.0, -np.inf)

    def start(self) -> np.ndarray:
        """lme4's starting point: T = identity (on the free entries)."""
        return self.is_diagonal().astype(float)


@dataclass(frozen=True)
class Unstructured(_FreeEntries):
    """lme4's ``(x | g)``: any k x k covariance; theta is T's lower triangle, column-major (for
    ``(1 + x | g)``: T11, T21, T22), each diagonal entry bounded below at 0."""

    k: int
    kind: str = "us"

    def positions(self) -> list[tuple[int, int]]:
        """(row, column) in T of each theta entry."""
        return [(i, j) for j in range(self.k) for i in range(j, self.k)]

    def parameter_names(self, terms) -> list[str]:
        """lme4's theta names after the group: ``term`` on the diagonal, ``row.column`` below it."""
        return [terms[i] if i == j else f"{terms[i]}.{terms[j]}" for i, j in self.positions()]


def _cholesky_derivative(L: np.ndarray, dC: np.ndarray) -> np.ndarray:
    """dL for C = L L' moved by dC: L Phi(L^-1 dC L^-T), Phi the lower triangle with its diagonal
    halved (the Cholesky factor's first-order change, Murray 2016)."""
    inner = np.linalg.solve(L, np.linalg.solve(L, dC.T).T)
    return L @ (np.tril(inner, -1) + 0.5 * np.diag(np.diag(inner)))


def _rho(phi: float) -> float:
    """A correlation in (-1, 1) from an unbounded parameter (glmmTMB's: phi / sqrt(1 + phi^2))."""
    return float(phi / np.sqrt(1.0 + phi * phi))


def _rho_slope(phi: float) -> float:
    return float((1.0 + phi * phi) ** -1.5)


@dataclass(frozen=True)
class AutoRegressive:
    """glmmTMB's ``ar1(0 + times | g)``: Var(b_i) = s^2 and Corr(b_i, b_j) = rho^|i - j| over the k
    terms (the levels of a factor of equally spaced times, in order). theta = (s relative to the
    residual SD (>= 0), phi) with rho = phi / sqrt(1 + phi^2). The factor is s times the closed-form
    Cholesky factor of the AR(1) correlation: L[i, 0] = rho^i, L[i, j] = rho^(i - j) sqrt(1 - rho^2)."""

    k: int
    kind: str = "ar1"

    @property
    def n_theta(self) -> int:
        return 2

    def _lags(self) -> np.ndarray:
        i, j = np.indices((self.k, self.k))
        return np.where(i >= j, i - j, 0)

    def correlation_factor(self, rho: float) -> np.ndarray:
        lags, lower = self._lags(), np.tri(self.k, dtype=bool)
        L = np.where(lower, rho**lags, 0.0)
        L[:, 1:] *= np.sqrt(max(1.0 - rho * rho, 0.0))
        return L

    def factor(self, theta: np.ndarray) -> np.ndarray:
        return float(theta[0]) * self.correlation_factor(_rho(float(theta[1])))

    def theta(self, factor: np.ndarray) -> np.ndarray:
        factor = np.asarray(factor, dtype=float)
        s = float(factor[0, 0])
        rho = float(factor[1, 0] / s) if s > 0 else 0.0
        rho = float(np.clip(rho, -1.0 + 1e-12, 1.0 - 1e-12))
        return np.array([s, rho / np.sqrt(1.0 - rho * rho)])

    def factor_derivatives(self, theta: np.ndarray) -> np.ndarray:
        s, phi = float(theta[0]), float(theta[1])
        rho = _rho(phi)
        lags, lower = self._lags(), np.tri(self.k, dtype=bool)
        root = np.sqrt(max(1.0 - rho * rho, 1e-300))
        with np.errstate(divide="ignore", invalid="ignore"):
            power_slope = np.where(lower & (lags > 0), lags * rho ** np.maximum(lags - 1, 0), 0.0)
        dL = power_slope.copy()
        dL[:, 1:] = power_slope[:, 1:] * root - np.where(lower, rho**lags, 0.0)[:, 1:] * rho / root
        return np.stack([self.correlation_factor(rho), s * dL * _rho_slope(phi)])

    def is_diagonal(self) -> np.ndarray:
        return np.array([True, False])

    def lower(self) -> np.ndarray:
        return np.array([0.0, -np.inf])

    def start(self) -> np.ndarray:
        return np.array([1.0, 0.0])

    def parameter_names(self, terms) -> list[str]:
        """theta's names: the relative SD, and ``phi``, rho's unbounded parameter (varcorr has rho)."""
        return ["sd", "phi"]

    def rho(self, theta: np.ndarray) -> float:
        return _rho(float(theta[1]))

    def describe(self, theta: np.ndarray) -> dict:
        """What the reports call the structure's parameter: ``rho``."""
        return {"rho": self.rho(theta)}


@dataclass(frozen=True)
class CompoundSymmetry:
    """glmmTMB's ``cs(x | g)``: a variance per term and one correlation rho between every pair
    (heterogeneous compound symmetry), rho in (-1 / (k - 1), 1) where the matrix stays positive
    definite. theta = (each term's SD relative to the residual's (>= 0), phi) with rho = lo + (1 -
    lo) / (1 + exp(-phi)), lo = -1 / (k - 1). The factor is diag(s) times the correlation's
    Cholesky factor."""

    k: int
    kind: str = "cs"

    @property
    def n_theta(self) -> int:
        return self.k + 1

    @property
    def _floor(self) -> float:
        return -1.0 / (self.k - 1)

    def rho(self, theta: np.ndarray) -> float:
        lo = self._floor
        return float(lo + (1.0 - lo) / (1.0 + np.exp(-float(theta[-1]))))

    def describe(self, theta: np.ndarray) -> dict:
        return {"rho": self.rho(theta)}

    def _correlation(self, rho: float) -> np.ndarray:
        return (1.0 - rho) * np.eye(self.k) + rho

    def factor(self, theta: np.ndarray) -> np.ndarray:
        L = np.linalg.cholesky(self._correlation(self.rho(theta)))
        return np.asarray(theta[: self.k], dtype=float)[:, None] * L

    def theta(self, factor: np.ndarray) -> np.ndarray:
        cov = np.asarray(factor, dtype=float) @ np.asarray(factor, dtype=float).T
        s = np.sqrt(np.diag(cov))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = cov / np.outer(s, s)
        pairs = corr[np.tril_indices(self.k, -1)]
        rho = float(np.nanmean(pairs)) if np.any(np.isfinite(pairs)) else 0.0
        lo = self._floor
        share = np.clip((rho - lo) / (1.0 - lo), 1e-12, 1.0 - 1e-12)
        return np.append(s, np.log(share / (1.0 - share)))

    def factor_derivatives(self, theta: np.ndarray) -> np.ndarray:
        rho, lo = self.rho(theta), self._floor
        L = np.linalg.cholesky(self._correlation(rho))
        out = np.zeros((self.n_theta, self.k, self.k))
        for i in range(self.k):
            out[i, i] = L[i]  # row i of diag(s) L moves with s_i
        share = (rho - lo) / (1.0 - lo)
        d_rho = (1.0 - lo) * share * (1.0 - share)
        dR = (np.ones((self.k, self.k)) - np.eye(self.k)) * d_rho
        out[-1] = np.asarray(theta[: self.k], dtype=float)[:, None] * _cholesky_derivative(L, dR)
        return out

    def is_diagonal(self) -> np.ndarray:
        return np.append(np.ones(self.k, dtype=bool), False)

    def lower(self) -> np.ndarray:
        return np.append(np.zeros(self.k), -np.inf)

    def start(self) -> np.ndarray:
        return np.append(np.ones(self.k), np.log(-self._floor))  # rho = 0

    def parameter_names(self, terms) -> list[str]:
        """theta's names: each term's relative SD, and ``phi``, rho's unbounded parameter."""
        return [*terms, "phi"]


@dataclass(frozen=True)
class Toeplitz:
    """glmmTMB's ``toep(0 + times | g)``: a variance per term and a correlation per lag,
    Corr(b_i, b_j) = r_|i - j| (the terms in time order). theta = (each term's SD relative to the
    residual's (>= 0), phi_1 .. phi_(k-1)) with r_lag = phi / sqrt(1 + phi^2). Not every set of lag
    correlations is positive definite: there the factor does not exist and the criterion is
    infinite (the optimiser steps back)."""

    k: int
    kind: str = "toep"

    @property
    def n_theta(self) -> int:
        return 2 * self.k - 1

    def lags(self, theta: np.ndarray) -> np.ndarray:
        phi = np.asarray(theta[self.k :], dtype=float)
        return phi / np.sqrt(1.0 + phi * phi)

    def describe(self, theta: np.ndarray) -> dict:
        """``lags``: the correlation at lags 1, 2, ..."""
        return {"lags": [float(v) for v in self.lags(theta)]}

    def _correlation(self, lags: np.ndarray) -> np.ndarray:
        index = np.abs(np.subtract.outer(np.arange(self.k), np.arange(self.k)))
        return np.concatenate([[1.0], lags])[index]

    def factor(self, theta: np.ndarray) -> np.ndarray:
        L = np.linalg.cholesky(self._correlation(self.lags(theta)))
        return np.asarray(theta[: self.k], dtype=float)[:, None] * L

    def theta(self, factor: np.ndarray) -> np.ndarray:
        cov = np.asarray(factor, dtype=float) @ np.asarray(factor, dtype=float).T
        s = np.sqrt(np.diag(cov))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.nan_to_num(cov / np.outer(s, s))
        lags = np.array([np.mean(np.diagonal(corr, offset)) for offset in range(1, self.k)])
        lags = np.clip(lags, -1.0 + 1e-12, 1.0 - 1e-12)
        return np.concatenate([s, lags / np.sqrt(1.0 - lags * lags)])

    def factor_derivatives(self, theta: np.ndarray) -> np.ndarray:
        L = np.linalg.cholesky(self._correlation(self.lags(theta)))
        s = np.asarray(theta[: self.k], dtype=float)
        out = np.zeros((self.n_theta, self.k, self.k))
        for i in range(self.k):
            out[i, i] = L[i]
        index = np.abs(np.subtract.outer(np.arange(self.k), np.arange(self.k)))
        for lag in range(1, self.k):
            dR = (index == lag) * _rho_slope(float(theta[self.k + lag - 1]))
            out[self.k + lag - 1] = s[:, None] * _cholesky_derivative(L, dR)
        return out

    def is_diagonal(self) -> np.ndarray:
        return np.arange(self.n_theta) < self.k

    def lower(self) -> np.ndarray:
        return np.where(self.is_diagonal(), 0.0, -np.inf)

    def start(self) -> np.ndarray:
        return self.is_diagonal().astype(float)  # unit SDs, no correlation

    def parameter_names(self, terms) -> list[str]:
        """theta's names: each term's relative SD and ``phi<lag>``, lag lag's unbounded parameter."""
        return [*terms, *(f"phi{lag}" for lag in range(1, self.k))]


@dataclass(frozen=True)
class ReducedRank(_FreeEntries):
    """glmmTMB's ``rr(x | g, d)``: a covariance of rank d, Lambda Lambda' with Lambda (k x d) lower
    trapezoidal (zero above its diagonal), its diagonal >= 0 (a column's sign is otherwise free).
    theta = Lambda's free entries column by column; the factor is [Lambda | 0] (k x k): the effects
    of the k terms move along d latent dimensions (a factor-analytic model, as for species)."""

    k: int
    rank: int
    kind: str = "rr"

    def positions(self) -> list[tuple[int, int]]:
        return [(i, j) for j in range(self.rank) for i in range(j, self.k)]

    def parameter_names(self, terms) -> list[str]:
        """theta's names: ``loading<j>.<term>``, term's loading on latent dimension j."""
        return [f"loading{j + 1}.{terms[i]}" for i, j in self.positions()]

    def describe(self, theta: np.ndarray) -> dict:
        """``rank`` and ``loadings`` (k x d; relative to the residual SD in a gaussian model's theta,
        the reports scale them back)."""
        return {"rank": self.rank, "loadings": self.factor(theta)[:, : self.rank].tolist()}


class _ScaledRoot:
    """A factor s R with R fixed (``root``): one parameter, the SD s relative to the residual SD
    (>= 0), starting at 1; the correlations are R's, none estimated."""

    @property
    def n_theta(self) -> int:
        return 1

    def factor(self, theta: np.ndarray) -> np.ndarray:
        return float(theta[0]) * self.root

    def theta(self, factor: np.ndarray) -> np.ndarray:
        """s from a factor of this structure (its size against the root's)."""
        factor = np.asarray(factor, dtype=float)
        return np.array([float(np.sqrt(np.sum(factor * factor) / np.sum(self.root * self.root)))])

    def factor_derivatives(self, theta: np.ndarray) -> np.ndarray:
        return self.root[None]

    def is_diagonal(self) -> np.ndarray:
        return np.array([True])

    def lower(self) -> np.ndarray:
        return np.array([0.0])

    def start(self) -> np.ndarray:
        return np.array([1.0])

    def parameter_names(self, terms) -> list[str]:
        return ["sd"]

    def describe(self, theta: np.ndarray) -> dict:
        return {}


@dataclass(frozen=True)
class HomogeneousDiagonal(_ScaledRoot):
    """glmmTMB's ``homdiag(x | g)``: k independent effects with one common SD (the random part of a
    penalised smooth, gamm4's and brms's mixed-model form of ``s(x)``); the factor is s I."""

    k: int
    kind: str = "homdiag"

    @property
    def root(self) -> np.ndarray:
        return np.eye(self.k)


@dataclass(frozen=True)
class KnownCovariance(_ScaledRoot):
    """brms's ``(1 | gr(g, cov = A))``, lme4qtl's relmat: the levels' effects N(0, s^2 A) with A a
    known matrix over the levels (a phylogeny's or pedigree's), one block of one level whose k
    terms are the levels' indicators (glmmTMB's ``propto``); the factor is s L, L L' = A (``root``)."""

    k: int
    root: np.ndarray = field(repr=False, compare=False)
    members: tuple[str, ...] = ()  # the levels the terms stand for, in the terms' order
    kind: str = "known"


@dataclass(frozen=True)
class MultiMembership(HomogeneousDiagonal):
    """brms's ``(1 | mm(a, b))`` (:mod:`bayesmix.design.membership`): one block of one level whose
    terms are the levels (``members``), each row's Z its membership weights; the levels' effects
    independent with one SD, the factor s I."""

    members: tuple[str, ...] = ()
    kind: str = "mm"


ONE_SD_STRUCTURES = ("homdiag", "known", "mm")  # one SD for the block; its correlations none or given
LEVEL_TERM_STRUCTURES = ("known", "mm")  # one block of one level whose terms are the group's levels
LEVEL_TERM = "Intercept"  # such a block's effects as ranef files them: one intercept per level
INDEPENDENT_STRUCTURES = ("homdiag", "mm")  # one SD and no correlations: the factor s I

KERNELS = {
    # correlation at distance d for range r, and its derivative in log r
    "exp": (lambda d, r: np.exp(-d / r), lambda d, r: np.exp(-d / r) * d / r),
    "gau": (lambda d, r: np.exp(-((d / r) ** 2)), lambda d, r: np.exp(-((d / r) ** 2)) * 2.0 * (d / r) ** 2),
}
KERNELS["ou"] = KERNELS["exp"]  # glmmTMB's Ornstein-Uhlenbeck: the exponential correlation over times


@dataclass(frozen=True)
class DistanceCorrelation:
    """glmmTMB's ``exp(pos + 0 | g)``, ``gau(...)``, ``ou(times + 0 | g)``: one SD s and a
    correlation that decays with the distance between the terms' positions (the levels of a factor
    of coordinates, as glmmTMB's ``numFactor``): exp(-d / r) (exp and ou), exp(-(d / r)^2) (gau).
    theta = (s relative to the residual SD (>= 0), log r); the factor is s chol(R(r))."""

    k: int
    kind: str
    distances: np.ndarray = field(repr=False, compare=False)
    positions: np.ndarray | None = field(default=None, repr=False, compare=False)
    hsgp: HilbertSettings | None = None  # the sampler's Hilbert-space approximation, if any

    @property
    def n_theta(self) -> int:
        return 2

    @property
    def basis(self) -> HilbertBasis | None:
        return None if self.hsgp is None else block_basis(self.positions, self.hsgp)

    def range(self, theta: np.ndarray) -> float:
        return float(np.exp(theta[1]))

    def describe(self, theta: np.ndarray) -> dict:
        return {"range": self.range(theta)}

    def correlation(self, r: float) -> np.ndarray:
        return KERNELS[self.kind][0](self.distances, r)

    def factor(self, theta: np.ndarray) -> np.ndarray:
        return float(theta[0]) * np.linalg.cholesky(self.correlation(self.range(theta)))

    def theta(self, factor: np.ndarray) -> np.ndarray:
        """From a factor of this structure (its first row's scale; the range from the correlation of
        the two closest positions)."""
        cov = np.asarray(factor, dtype=float) @ np.asarray(factor, dtype=float).T
        s = float(np.sqrt(cov[0, 0]))
        apart = np.where(np.eye(self.k, dtype=bool), np.inf, self.distances)
        i, j = np.unravel_index(np.argmin(apart), apart.shape)
        rho = float(np.clip(cov[i, j] / max(cov[0, 0], 1e-300), 1e-12, 1.0 - 1e-12))
        d = float(self.distances[i, j])
        r = d / -np.log(rho) if self.kind != "gau" else d / np.sqrt(-np.log(rho))
        return np.array([s, np.log(r)])

    def factor_derivatives(self, theta: np.ndarray) -> np.ndarray:
        s, r = float(theta[0]), self.range(theta)
        L = np.linalg.cholesky(self.correlation(r))
        return np.stack([L, s * _cholesky_derivative(L, KERNELS[self.kind][1](self.distances, r))])

    def is_diagonal(self) -> np.ndarray:
        return np.array([True, False])

    def lower(self) -> np.ndarray:
        return np.array([0.0, -np.inf])

    def start(self) -> np.ndarray:
        """s = 1 and the range the median distance between positions."""
        off = self.distances[~np.eye(self.k, dtype=bool)]
        return np.array([1.0, float(np.log(np.median(off[off > 0])))])

    def parameter_names(self, terms) -> list[str]:
        """theta's names: the relative SD and the log of the range."""
        return ["sd", "log_range"]


@dataclass(frozen=True)
class MaternCorrelation:
    """glmmTMB's ``mat(pos + 0 | g)``: one SD s and the Matérn correlation at the distances between
    the terms' positions, range r and smoothness kappa both estimated (:mod:`bayesmix.design.matern`;
    kappa = 1/2 is ``exp``). theta = (s relative to the residual SD (>= 0), log r, log kappa); the
    factor is s chol(C(r, kappa))."""

    k: int
    distances: np.ndarray = field(repr=False, compare=False)
    kind: str = "mat"
    positions: np.ndarray | None = field(default=None, repr=False, compare=False)
    hsgp: HilbertSettings | None = None  # the sampler's Hilbert-space approximation, if any

    @property
    def n_theta(self) -> int:
        return 3

    @property
    def basis(self) -> HilbertBasis | None:
        return None if self.hsgp is None else block_basis(self.positions, self.hsgp)

    def correlation_at(self, r: float, kappa: float) -> np.ndarray:
        return matern_correlation(self.distances, r, kappa)

    def describe(self, theta: np.ndarray) -> dict:
        return {"range": float(np.exp(theta[1])), "smoothness": float(np.exp(theta[2]))}

    def factor(self, theta: np.ndarray) -> np.ndarray:
        C = matern_correlation(self.distances, float(np.exp(theta[1])), float(np.exp(theta[2])))
        return float(theta[0]) * np.linalg.cholesky(C)

    def theta(self, factor: np.ndarray) -> np.ndarray:
        """From a factor of this structure: its first row's scale, kappa 1 and the range that gives
        the two closest positions the factor's correlation (found on a grid of ranges)."""
        cov = np.asarray(factor, dtype=float) @ np.asarray(factor, dtype=float).T
        s = float(np.sqrt(cov[0, 0]))
        apart = np.where(np.eye(self.k, dtype=bool), np.inf, self.distances)
        i, j = np.unravel_index(np.argmin(apart), apart.shape)
        rho = float(np.clip(cov[i, j] / max(cov[0, 0], 1e-300), 1e-12, 1.0 - 1e-12))
        pair = self.distances[np.ix_([i, j], [i, j])]
        ranges = float(pair[0, 1]) * np.exp(np.linspace(-7.0, 7.0, 281))
        found = [matern_correlation(pair, r, 1.0)[0, 1] for r in ranges]
        return np.array([s, float(np.log(ranges[int(np.argmin(np.abs(np.subtract(found, rho))))])), 0.0])

    def factor_derivatives(self, theta: np.ndarray) -> np.ndarray:
        s, r, kappa = float(theta[0]), float(np.exp(theta[1])), float(np.exp(theta[2]))
        L = np.linalg.cholesky(matern_correlation(self.distances, r, kappa))
        by_range, by_smoothness = matern_derivatives(self.distances, r, kappa)
        return np.stack([L, s * _cholesky_derivative(L, by_range), s * _cholesky_derivative(L, by_smoothness)])

    def is_diagonal(self) -> np.ndarray:
        return np.array([True, False, False])

    def lower(self) -> np.ndarray:
        return np.array([0.0, -np.inf, -np.inf])

    def start(self) -> np.ndarray:
        """s = 1, the range the median distance between positions, kappa = 1 (glmmTMB's start)."""
        off = self.distances[~np.eye(self.k, dtype=bool)]
        return np.array([1.0, float(np.log(np.median(off[off > 0]))), 0.0])

    def parameter_names(self, terms) -> list[str]:
        return ["sd", "log_range", "log_smoothness"]


def positions(names, kind: str) -> np.ndarray:
    """(k, dimensions) coordinates of a distance structure's terms, read from their factor levels'
    labels as glmmTMB's ``numFactor`` writes them: ``(1.5)``, ``(3,7.25)`` (the brackets of a
    display name such as ``pos[(3,7.25)]`` removed first)."""
    rows = []
    for name in names:
        label = str(name)
        if label.endswith("]") and "[" in label:
            label = label[label.rindex("[") + 1 : -1]
        try:
            rows.append([float(part) for part in label.strip().strip("()").split(",")])
        except ValueError:
            raise ValueError(f"{kind}() reads positions from a factor's level labels; '{name}' is not one") from None
    if len({len(row) for row in rows}) != 1:
        raise ValueError(f"{kind}() positions must all have the same number of coordinates")
    return np.asarray(rows, dtype=float)


def num_factor(*coordinates):
    """glmmTMB's ``numFactor``: a factor whose levels are positions, labelled ``(x)`` or ``(x,y)``,
    ordered by their coordinates: what ``exp(0 + pos | g)``, ``gau(...)`` and ``ou(...)`` read."""
    import pandas as pd

    columns = [np.asarray(c, dtype=float) for c in coordinates]
    if not columns or len({len(c) for c in columns}) != 1:
        raise ValueError("num_factor takes one or more coordinate columns of the same length")

    def text(v: float) -> str:
        return np.format_float_positional(v, trim="-")

    labels = ["(" + ",".join(text(c[i]) for c in columns) + ")" for i in range(len(columns[0]))]
    order = sorted(set(zip(*[c.tolist() for c in columns], labels)))
    return pd.Categorical(labels, categories=list(dict.fromkeys(label for *_, label in order)))


STRUCTURES = {
    "us": Unstructured,
    "cs": CompoundSymmetry,
    "ar1": AutoRegressive,
    "toep": Toeplitz,
    "homdiag": HomogeneousDiagonal,
}
DISTANCE_STRUCTURES = ("exp", "gau", "ou", "mat")


def structure(kind: str, k: int, names=(), rank=None) -> Covariance:
    """The covariance structure ``kind`` of a block with k terms (``names``: the terms, whose labels
    hold a distance structure's positions; ``rank``: rr's d, or a known covariance's root)."""
    if kind == "known":  # rank: (the root of A over the levels, the levels)
        return KnownCovariance(k, np.asarray(rank[0], dtype=float), members=tuple(rank[1]))
    if kind == "mm":
        return MultiMembership(k, members=tuple(names))
    if kind == "rr":
        return ReducedRank(k, 2 if rank is None else int(rank))
    if kind in DISTANCE_STRUCTURES:
        xy = positions(names, kind)
        distances = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=-1))
        if kind == "mat":
            return MaternCorrelation(k, distances, positions=xy)
        return DistanceCorrelation(k, kind, distances, positions=xy)
    return STRUCTURES[kind](k)


@dataclass(frozen=True)
class ThetaLayout:
    """Where each block's theta lives in the whole vector: the blocks' structures in lme4 order."""

    covariances: tuple[Covariance, ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(c.k for c in self.covariances)

    @property
    def n_theta(self) -> int:
        return sum(c.n_theta for c in self.covariances)

    def split(self, theta: np.ndarray) -> list[np.ndarray]:
        bounds = np.cumsum([0] + [c.n_theta for c in self.covariances])
        return [theta[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def factors(self, theta: np.ndarray) -> list[np.ndarray]:
        """theta -> each block's k x k relative covariance factor T."""
        return [c.factor(part) for c, part in zip(self.covariances, self.split(np.asarray(theta, dtype=float)))]

    def theta(self, factors: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([c.theta(T) for c, T in zip(self.covariances, factors)])

    def tangents(self, theta: np.ndarray):
        """(block, dT) for every theta entry in order: how that block's T moves with the entry."""
        for block, (c, part) in enumerate(zip(self.covariances, self.split(np.asarray(theta, dtype=float)))):
            for dT in c.factor_derivatives(part):
                yield block, dT

    def is_diagonal(self) -> np.ndarray:
        return np.concatenate([c.is_diagonal() for c in self.covariances])

    def lower(self) -> np.ndarray:
        return np.concatenate([c.lower() for c in self.covariances])

    def start(self) -> np.ndarray:
        return np.concatenate([c.start() for c in self.covariances])
