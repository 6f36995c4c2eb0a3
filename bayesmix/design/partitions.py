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
import sys
from dataclasses import dataclass

import numpy as np

from bayesmix.errors import BayesmixError


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
    """Pairwise sums of delayed items, level by level (depth log2 of the partitions); None (a
    partition with no rows) adds nothing."""
    import dask

    add = dask.delayed(add_parts, pure=True)
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
    def persist(cls, delayed_parts: list, progress=None) -> Partitions:
        return cls(persist(delayed_parts, progress))

    def __len__(self) -> int:
        return len(self.parts)

    def map(self, function, *arguments) -> Partitions:
        """``function(part, *arguments)`` for every part, kept in memory in place of the parts."""
        return Partitions.persist(each(function, self.parts, *arguments))

    def sum(self, function, *arguments):
        """The sum over the parts of ``function(part, *arguments)`` (its results must add with +)."""
        import dask

        (total,) = dask.compute(tree_sum(each(function, self.parts, *arguments, pure=False)))
        return total


def each(function, parts: list, *arguments, pure: bool = True) -> list:
    """Delayed ``function(part, *arguments)`` per part (a Dask DataFrame's ``to_delayed()`` or
    kept parts), the arguments in the graph once (one copy per worker, not one per task)."""
    import dask

    shared = dask.delayed(arguments, traverse=False)
    call = dask.delayed(_call, pure=pure)
    return [call(function, part, shared) for part in parts]


def _call(function, part, arguments):
    return None if part is None else function(part, *arguments)


def add_parts(a, b):
    """a + b, where None (a partition without rows) adds nothing."""
    return b if a is None else a if b is None else operator.add(a, b)


def progress_reporter(progress):
    """``progress`` as Model takes it: None or False (silent), True (a line on stderr, redrawn as
    partitions finish) or a callable ``progress(done, total)``."""
    if progress is None or progress is False:
        return None
    if progress is True:
        return _print_progress
    if callable(progress):
        return progress
    raise BayesmixError(f"progress must be True, False or a function progress(done, total), not {progress!r}.")


def _print_progress(done: int, total: int) -> None:
    end = "\n" if done == total else ""
    print(f"\rbayesmix: {done}/{total} partitions read", end=end, file=sys.stderr, flush=True)


def persist(delayed_parts: list, progress=None) -> list:
    """``dask.persist`` of one task per partition, calling ``progress(done, total)`` as each
    finishes: on a distributed cluster as their futures complete, on Dask's local schedulers
    from a scheduler callback."""
    import dask

    if progress is None:
        return list(dask.persist(*delayed_parts))
    total = len(delayed_parts)
    client = _distributed_client()
    if client is None:
        with _partition_counter({part.key for part in delayed_parts}, progress):
            return list(dask.persist(*delayed_parts))
    import distributed

    persisted = list(dask.persist(*delayed_parts))
    for done, _ in enumerate(distributed.as_completed(distributed.futures_of(persisted)), 1):
        progress(done, total)
    return persisted


def _distributed_client():
    """The distributed client Dask's compute would use, or None (a local scheduler)."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


def _partition_counter(keys: set, progress):
    """A Dask callback counting finished partition tasks on the local schedulers (made here:
    Dask is an optional dependency, imported only when a Dask DataFrame is given)."""
    from dask.callbacks import Callback

    class PartitionCounter(Callback):
        def __init__(self):
            super().__init__()
            self.done = 0

        def _posttask(self, key, result, dsk, state, worker_id):
            if key in keys:
                self.done += 1
                progress(self.done, len(keys))

    return PartitionCounter()
