"""Column moments of a design (count, mean, spread, range), which the data-scaled default priors read.

They are sums over rows in a numerically stable form (mean and sum of squared deviations, merged
with Chan, Golub and LeVeque's update), so chunks of rows (Dask partitions) add up to the moments
of all rows, and one chunk gives numpy's ``mean`` and ``std`` of the column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MOMENT_BLOCK = 16_384  # rows per block of ColumnMoments.of (a few hundred kB per column: cache-sized)


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
        """Moments of the columns of ``values`` (n, c), in blocks of rows merged in turn: a block,
        transposed, is reduced from cache, where reductions over all rows read memory five times
        (a Dask partition's statistics pass is bound by that)."""
        values = np.asarray(values, dtype=float).reshape(len(values), -1)
        n, c = values.shape
        if n <= MOMENT_BLOCK:
            return ColumnMoments._of_block(values)
        total = ColumnMoments._of_block(values[:MOMENT_BLOCK])
        for start in range(MOMENT_BLOCK, n, MOMENT_BLOCK):
            total = total + ColumnMoments._of_block(values[start : start + MOMENT_BLOCK])
        return total

    @staticmethod
    def _of_block(values: np.ndarray) -> ColumnMoments:
        n, c = values.shape
        if n == 0:
            return ColumnMoments(0, np.zeros(c), np.zeros(c), np.full(c, np.inf), np.full(c, -np.inf))
        columns = values.T.copy()  # each column contiguous: row-major reductions over few columns are slow
        mean = columns.mean(axis=1)
        centred = columns - mean[:, None]
        m2 = np.einsum("ij,ij->i", centred, centred)
        return ColumnMoments(n, mean, m2, columns.min(axis=1), columns.max(axis=1))

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
