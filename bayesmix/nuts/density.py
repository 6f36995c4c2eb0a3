"""A PyMC model's log density as a JAX function, with the data as arguments.

The potential (-log density) is PyMC's graph, converted to JAX with the model's ``pm.Data`` (and any
other shared variable) as arguments rather than constants (:func:`log_density`), so that a program
made from it depends only on shapes and on the model's constants; its fingerprint names the
programs stored for later processes (:mod:`bayesmix.nuts.program_cache`).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor
from pytensor.graph.rewriting.db import RewriteDatabaseQuery

from bayesmix.nuts import program_cache

# PyTensor's rewrites for a graph that XLA compiles: the canonical forms and the numerically stable
# ones (log1p, log-sum-exp...), and those JAX needs (constant shapes); not "fast_run"'s
# specialisations and fusion, which XLA does itself
JAX_REWRITES = RewriteDatabaseQuery(include=["canonicalize", "stabilize", "jax"], exclude=["inplace"])


@dataclass(frozen=True)
class LogDensity:
    """A PyMC model's potential (-log density) as a JAX function: ``potential(values, data)`` of its
    value variables (a list, in ``model.value_vars`` order) and of its ``pm.Data`` (and any other
    shared variable), with ``data`` their current values; ``fingerprint``: the graph's
    (:func:`bayesmix.nuts.program_cache.graph_fingerprint`), which names the programs made from it."""

    potential: Callable
    data: list[np.ndarray]
    fingerprint: str


def log_density(model: pm.Model) -> LogDensity:
    """``model``'s :class:`LogDensity`.

    PyMC's own JAX conversion replaces shared variables by constants, so every new dataset (a
    refit, a replication of a simulation study, a second process on new data of the same shape)
    is a new XLA program to compile. With the data as arguments, a program compiled from this
    function depends only on the shapes (and on constants such as fixed priors): the Laplace
    start's gradient is then served from JAX's persistent cache for the next dataset
    (docs/performance.md), and so is the NUTS program (:func:`bayesmix.nuts.programs.nuts_program`).

    The graph is converted to JAX at the potential's first call (a program found by
    :mod:`bayesmix.nuts.program_cache` never calls it), rewritten with :data:`JAX_REWRITES` only, not
    PyTensor's whole JAX mode: XLA simplifies and fuses the program itself, so the full pass list
    cost most of the conversion's time and gave the same value with a slower gradient
    (docs/performance.md)."""
    from pytensor.compile.mode import optdb
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.fg import FunctionGraph
    from pytensor.graph.traversal import graph_inputs
    from pytensor.link.jax.dispatch import jax_funcify

    potential_graph = -model.logp()
    shared = [v for v in graph_inputs([potential_graph]) if isinstance(v, SharedVariable)]
    fgraph = FunctionGraph(inputs=[*model.value_vars, *shared], outputs=[potential_graph], clone=True)
    fingerprint = program_cache.graph_fingerprint(fgraph.inputs, fgraph.outputs)
    converting = threading.Lock()  # the NUTS program and the gradient may be traced at once

    @functools.cache
    def rewritten():
        optdb.query(JAX_REWRITES).rewrite(fgraph)
        return fgraph

    def potential(values, data):
        # converted at every call (cheap next to tracing): jax.export of a second program tracing
        # the same converted function fails (JAX 0.10: its constants' avals are counted as arguments)
        with converting:
            function = jax_funcify(rewritten())
        return function(*values, *data)[0]

    return LogDensity(potential, [np.asarray(v.get_value(borrow=True)) for v in shared], fingerprint)


def value_shapes(model: pm.Model) -> list[tuple[int, ...]]:
    """The shapes of the model's value variables: their static shapes, or (dims given by coords)
    evaluated, in Python (a C compilation would cost more than the evaluation it serves)."""
    static = [tuple(v.type.shape) for v in model.value_vars]
    if all(size is not None for shape in static for size in shape):
        return static
    with pytensor.config.change_flags(cxx=""):
        evaluated = model.eval_rv_shapes()
    return [tuple(int(size) for size in evaluated[v.name]) for v in model.value_vars]
