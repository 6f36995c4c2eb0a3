"""Column moments of a design (count, mean, spread, range), which the data-scaled default priors read.

They are sums over rows in a numerically stable form (mean and sum of squared deviations, merged
with Chan, Golub and LeVeque's update), so chunks of rows (Dask partitions) add up to the moments
of all rows, and one chunk gives numpy's ``mean`` and ``std`` of the column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ColumnMoments:
    """Per column: n rows, mean, m2 (sum of squared deviations from the mean), low and high."""

    n: int
    mean: np.ndarray
    m2: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @staticmethod
    def of(values: np.ndarray) -> ColumnMoments:
        """Moments of the columns of ``values`` (n, c)."""
        values = np.asarray(values, dtype=float).reshape(len(values), -1)
        n, c = values.shape
        if n == 0:
            return ColumnMoments(0, np.zeros(c), np.zeros(c), np.full(c, np.inf), np.full(c, -np.inf))
        mean = values.mean(axis=0)
        return ColumnMoments(n, mean, ((values - mean) ** 2).sum(axis=0), values.min(axis=0), values.max(axis=0))

    def __add__(self, other: ColumnMoments) -> ColumnMoments:
        n = self.n + other.n
        if n == 0:
            return self
        delta = other.mean - self.mean
        return ColumnMoments(
            n,
            self.mean + delta * (other.n / n),
            self.m2 + other.m2 + delta**2 * (self.n * other.n / n),
            np.minimum(self.low, other.low),
            np.maximum(self.high, other.high),
        )

    @property
    def constant(self) -> np.ndarray:
        return self.low == self.high

    @property
    def sd(self) -> np.ndarray:
        """Population SD (ddof = 0); exactly 0 for a constant column."""
        return np.where(self.constant, 0.0, np.sqrt(np.maximum(self.m2, 0.0) / max(self.n, 1)))


@dataclass(frozen=True)
class DesignMoments:
    """Moments of X's columns, of the response on the mean's scale (successes / trials for binomial
    data) and of each random-effect block's term matrix, in the design's block order."""

    X: ColumnMoments
    y: ColumnMoments
    Z: tuple[ColumnMoments, ...]

    @staticmethod
    def of(X: np.ndarray, y: np.ndarray, trials: np.ndarray | None, Zts) -> DesignMoments:
        response = y if trials is None else y / trials
        return DesignMoments(ColumnMoments.of(X), ColumnMoments.of(response), tuple(ColumnMoments.of(Z) for Z in Zts))

    def __add__(self, other: DesignMoments) -> DesignMoments:
        return DesignMoments(self.X + other.X, self.y + other.y, tuple(a + b for a, b in zip(self.Z, other.Z)))


def design_moments(design) -> DesignMoments:
    """The moments of an in-memory design, or the summed ones of a design built from statistics."""
    if not design.in_memory:
        return design.moments
    return DesignMoments.of(design.X, design.y, design.trials, [block.Zt for block in design.blocks])
