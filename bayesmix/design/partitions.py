"""Rows kept where a Dask DataFrame's partitions live, for engines that read every row at every step.

A Gaussian model needs only sums over rows, computed once (:mod:`bayesmix.design.statistics`). A
GLMM's Laplace fit needs sums of per-row terms at every (beta, u) it tries: each partition is encoded
once with the frozen codings (:class:`EncodedRows`) and kept in the memory of the process that holds
it (``dask.persist``: the workers of a distributed cluster, so no one process holds all rows); each
step then maps a function over the kept partitions, with its small arguments (beta, u, Lambda) sent
once per step, and adds the results up pairwise (:meth:`Partitions.sum`).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EncodedRows:
    """One partition encoded with the model's codings: X (n, p) (every fixed-effect column), the
    response y, trials (binomial), offset, prior weights, and per random-effect block (design
    order) its (codes (n,), Zt (n, k))."""

    X: np.ndarray
    y: np.ndarray
    trials: np.ndarray | None
    offset: np.ndarray | None
    weights: np.ndarray | None
    blocks: tuple[tuple[np.ndarray, np.ndarray], ...]

    @property
    def n(self) -> int:
        return len(self.y)


def tree_sum(items):
    """Pairwise sums of delayed items, level by level (depth log2 of the partitions)."""
    import dask

    add = dask.delayed(operator.add, pure=True)
    while len(items) > 1:
        items = [add(*items[i : i + 2]) if i + 1 < len(items) else items[i] for i in range(0, len(items), 2)]
    return items[0]


class Partitions:
    """Objects kept in memory where the partitions live (persisted Dask delayed objects, one per
    partition). They stay there while this object (and the Dask client that holds them) lives."""

    def __init__(self, parts: list):
        self.parts = list(parts)
        self.derived: dict = {}  # what an engine built from these parts once (bayesmix.exact.glmm_partitions)

    @classmethod
    def persist(cls, delayed_parts: list) -> Partitions:
        import dask

        return cls(dask.persist(*delayed_parts))

    def __len__(self) -> int:
        return len(self.parts)

    def map(self, function, *arguments) -> Partitions:
        """``function(part, *arguments)`` for every part, kept in memory in place of the parts."""
        import dask

        shared = dask.delayed(arguments, traverse=False)  # one copy per worker, not one per task
        call = dask.delayed(_call, pure=True)
        return Partitions.persist([call(function, part, shared) for part in self.parts])

    def sum(self, function, *arguments):
        """The sum over the parts of ``function(part, *arguments)`` (its results must add with +)."""
        import dask

        shared = dask.delayed(arguments, traverse=False)
        call = dask.delayed(_call, pure=False)
        (total,) = dask.compute(tree_sum([call(function, part, shared) for part in self.parts]))
        return total


def _call(function, part, arguments):
    return function(part, *arguments)
