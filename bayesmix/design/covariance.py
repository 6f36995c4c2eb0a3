"""The covariance structure of one random-effect block, the one object both engines read.

A block's k effects per level are N(0, sigma^2 T T') for the exact engine (lme4's relative
covariance factor T, lower triangular, a function of the parameter vector theta), and N(0, S S')
for the Bayesian one (S the Cholesky factor of the covariance built from standard deviations and
correlations). A structure says how many parameters it has, how theta maps to T and back, where
theta starts and how it is bounded, and how T moves with each theta entry (the exact gradient).

Today's structure is lme4's unstructured one (every variance and correlation free). Structured
covariances (diagonal, compound symmetry, AR(1), ...) add classes with the same methods; the exact
engine takes any of them through these methods alone, and the Bayesian one dispatches on ``kind``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


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


@dataclass(frozen=True)
class Unstructured:
    """lme4's ``(x | g)``: any k x k covariance; theta is T's lower triangle, column-major (for
    ``(1 + x | g)``: T11, T21, T22), each diagonal entry bounded below at 0."""

    k: int
    kind: str = "us"

    @property
    def n_theta(self) -> int:
        return self.k * (self.k + 1) // 2

    def positions(self) -> list[tuple[int, int]]:
        """(row, column) in T of each theta entry."""
        return [(i, j) for j in range(self.k) for i in range(j, self.k)]

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
        """lme4's starting point: T = identity."""
        return self.is_diagonal().astype(float)


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
