"""Compiled JAX programs for a later process, found without tracing them again.

JAX's persistent compilation cache skips XLA's compilation of a program seen before, but its key
is the lowered program: every process still traces the Python code that makes it (numpyro's NUTS
kernel around PyMC's log density) and lowers it, only to compute that key. On sleepstudy's warm
run that was ~0.8 s of ~5 s, all of it holding Python's lock. Here a program is also stored as JAX
exports it (StableHLO, ``jax.export``), under a key computed without tracing:

- a fingerprint of the PyTensor graph it is made from (:func:`graph_fingerprint`: every operation
  with its parameters, every constant's bytes, every type with its static shape);
- the program's settings and the shapes and dtypes of its arguments;
- the versions of what turns a graph into a program (PyTensor, PyMC, JAX, numpyro, and the source of
  the bayesmix modules that build programs), and JAX's settings that change tracing.

Equal keys mean equal programs; whatever a key misses makes a miss (a fresh trace), not a wrong
program. A stored program is lowered again (cheap: the StableHLO is inlined) and compiled, which
JAX's persistent cache then serves. Every program goes through its exported form, the first time
too, so the first and later processes run the same compiled code: same seed, same draws.

Stored programs live in a folder of JAX's persistent cache directory (``bayesmix-exported``);
without that directory nothing is stored. A program with host callbacks cannot be exported (it is
then traced every time): bayesmix's progress bars are drawn between programs instead
(``programs.nuts_segments``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import pickle
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FOLDER = "bayesmix-exported"
FORMAT = 1  # of the stored files and of the key; bump to orphan every stored program
# the modules whose code builds the programs (the graphs themselves are fingerprinted)
PROGRAM_SOURCES = (
    "numpyro_driver.py",
    "density.py",
    "coordinates.py",
    "programs.py",
    "program_cache.py",
    "low_rank.py",
)
VERSIONED = ("bayesmix", "pytensor", "pymc", "jax", "jaxlib", "numpyro")


@dataclass(frozen=True)
class Program:
    """A JAX function to compile. ``build()`` makes it (called only when it must be traced: not for
    a stored program); ``in_shardings``/``out_shardings``: where its arguments and results live,
    as ``jax.jit`` takes them, for a program over several devices (None: one device)."""

    build: Callable[[], Callable]
    in_shardings: Any = None
    out_shardings: Any = None


def _update(digest, *parts) -> None:
    digest.update(pickle.dumps(parts, protocol=4))


def _root_value(variable) -> bytes:
    """The bytes of a constant's (or a shared variable's) value, with its dtype and shape."""
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.basic import Constant

    if isinstance(variable, Constant):
        value = variable.data
    elif isinstance(variable, SharedVariable):
        value = variable.get_value(borrow=True)
    else:
        raise ValueError(f"{variable} is an input of the graph that is not among its inputs")
    array = np.asarray(value)
    if array.dtype == object:  # a random generator, a slice...
        return pickle.dumps(value, protocol=4)
    return pickle.dumps((array.dtype.str, array.shape), protocol=4) + np.ascontiguousarray(array).tobytes()


def _op_identity(op):
    """What an operation computes, as a value that pickles the same in every process: the op itself,
    or, for one with an inner graph (OpFromGraph, Einsum, Scan; whose pickle holds its variables'
    process-dependent names), its class, parameters and the inner graph's fingerprint."""
    from pytensor.graph.op import HasInnerGraph

    if not isinstance(op, HasInnerGraph):
        return op
    props = tuple(repr(getattr(op, name)) for name in getattr(op, "__props__", ()))
    return type(op).__module__, type(op).__qualname__, props, graph_fingerprint(op.inner_inputs, op.inner_outputs)


def graph_fingerprint(inputs: Sequence, outputs: Sequence) -> str:
    """A sha256 (hex) of the computation of ``outputs`` from ``inputs`` (PyTensor variables): the
    inputs' types, every operation in topological order with its parameters and the positions of
    its arguments, every constant's and shared variable's value. Names are left out: two graphs
    that compute the same thing from the same constants get the same fingerprint."""
    from pytensor.graph.traversal import io_toposort

    digest = hashlib.sha256()
    position = {}
    for variable in inputs:
        position[variable] = len(position)
        _update(digest, "input", variable.type)
    for node in io_toposort(list(inputs), list(outputs)):
        for variable in node.inputs:
            if variable not in position:
                position[variable] = len(position)
                _update(digest, "root", variable.type)
                digest.update(_root_value(variable))
        _update(digest, "apply", _op_identity(node.op), [position[v] for v in node.inputs])
        for variable in node.outputs:
            position[variable] = len(position)
            _update(digest, "output", variable.type)
    _update(digest, "result", [position[v] for v in outputs])
    return digest.hexdigest()


@functools.cache
def _environment() -> tuple:
    """What else turns a graph into a program: versions, JAX's tracing settings, bayesmix's
    program-building code."""
    import jax

    here = Path(__file__).parent
    versions = []
    for package in VERSIONED:
        try:
            versions.append((package, importlib.metadata.version(package)))
        except importlib.metadata.PackageNotFoundError:
            versions.append((package, None))
    sources = hashlib.sha256(b"".join((here / name).read_bytes() for name in PROGRAM_SOURCES)).hexdigest()
    settings = tuple(
        (name, getattr(jax.config, name, None))
        for name in (
            "jax_enable_x64",
            "jax_default_matmul_precision",
            "jax_numpy_rank_promotion",
            "jax_default_prng_impl",
        )
    )
    return FORMAT, tuple(versions), sources, settings, os.environ.get("XLA_FLAGS", ""), jax.device_count()


def abstract(example_args) -> tuple:
    """The structure, shapes and dtypes of a program's arguments (arrays or ShapeDtypeStructs)."""
    import jax

    leaves, tree = jax.tree.flatten(example_args)
    return str(tree), tuple((tuple(np.shape(leaf)), np.dtype(leaf.dtype).str) for leaf in leaves)


def program_key(*parts) -> str:
    """The key of a program described by ``parts`` (fingerprints, settings, :func:`abstract`
    arguments: values with a deterministic ``repr``) in this environment."""
    return hashlib.sha256(repr((_environment(), parts)).encode()).hexdigest()


def _stored_path(key: str | None) -> Path | None:
    import jax

    directory = jax.config.jax_compilation_cache_dir
    if key is None or not directory:
        return None
    return Path(directory) / FOLDER / f"{key}.stablehlo"


def _load(path: Path):
    from jax import export

    try:
        return export.deserialize(bytearray(path.read_bytes()))
    except Exception:  # absent, truncated, or written by another JAX: trace again, and replace it
        return None


def _store(path: Path, serialized: bytes) -> None:
    """Write atomically: a concurrent process reads the whole file or none."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as file:
            file.write(serialized)
        os.replace(file.name, path)
    except OSError:  # a read-only cache: the program still runs, it is only not kept
        pass


def _export(program: Program, example_args):
    """The traced program, exported and serialised; None where it cannot be (host callbacks;
    flatbuffers, which JAX's serialisation needs, not installed)."""
    import jax
    from jax import export

    jitted = jax.jit(program.build(), in_shardings=program.in_shardings, out_shardings=program.out_shardings)
    try:
        return export.export(jitted)(*example_args).serialize()
    except (ValueError, NotImplementedError, ImportError):
        return None


def compile_program(
    program: Program, example_args: tuple, compiler_options: dict | None = None, key: str | None = None
):
    """``program`` compiled ahead of time for arguments shaped like ``example_args`` (arrays or
    ``jax.ShapeDtypeStruct``); with a ``key`` (:func:`program_key`), through its stored exported
    form, traced and stored first when there is none."""
    import jax
    from jax import export

    path = _stored_path(key)
    exported = _load(path) if path is not None else None
    if exported is None and path is not None and (serialized := _export(program, example_args)) is not None:
        _store(path, serialized)
        # the program as a later process will read it, so that both run the same compiled code
        exported = export.deserialize(bytearray(serialized))
    if exported is None:
        function, in_shardings, out_shardings = program.build(), program.in_shardings, program.out_shardings
    else:
        function, in_shardings, out_shardings = exported.call, None, None
        if program.in_shardings is not None:  # the stored program's placements, on this process's devices
            mesh = jax.tree.leaves(program.in_shardings)[0].mesh
            in_shardings = exported.in_tree.unflatten(exported.in_shardings_jax(mesh))[0]
            out_shardings = exported.out_tree.unflatten(exported.out_shardings_jax(mesh))
    jitted = jax.jit(
        function, in_shardings=in_shardings, out_shardings=out_shardings, compiler_options=compiler_options
    )
    return jitted.lower(*example_args).compile()
