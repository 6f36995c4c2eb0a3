"""NUTS with numpyro on a PyMC model's log density, started from where it will sample.

PyMC's own route to numpyro (``pm.sample(nuts_sampler="numpyro")``) costs seconds before the first
draw that this one does not (docs/performance.md): it assigns PyMC's step methods (compiling
gradient functions with PyTensor's C backend, never used), and it checks each chain's jittered
initial point with the log density evaluated op by op (one XLA compilation per operation; jitted
here, one compilation). The log density is PyMC's graph, converted to JAX with the data as
arguments (:func:`log_density`); the NUTS kernel and its adaptation are numpyro's, driven by one
compiled program per fit whose arguments are the data and the start (:func:`nuts_program`, compiled
while the start is found); the transformation of the draws back to the constrained space and the
InferenceData are PyMC's.

Small models (at most ``WHITEN_MAX`` sampled values: every collapsed gaussian model with one
block, where NUTS moves only the SDs, correlations and sigma) are sampled in the whitened
coordinates of the posterior's Laplace approximation: x = mode + R u, with the mode from a
trust-region Newton method on the exact gradient and R R' the inverse Hessian there (central
differences of the gradient); the chains start at one draw of u ~ N(0, I) each. The windowed
adaptation goes on from there; an affine map has a constant Jacobian, so the posterior is the same.
Why: the parameters' posterior scales differ by orders of magnitude (log sigma is known to
~1/sqrt(2n)), and numpyro's covariance estimate is shrunk towards 1e-3 I, which makes the metric
for log sigma several times too wide on large data: smaller steps, longer trajectories and fewer
effective draws than in the whitened coordinates, where every direction starts at unit scale
(docs/diagnostics.md, "Where NUTS starts", has the measurements). Where the mode or its Hessian
is not usable (a singular fit's SD running to 0, a non-positive-definite Hessian), PyMC's jittered
initial points and the model's rough scales are used instead.

Larger models start from PyMC's jittered points and run their warmup in two halves: numpyro's
diagonal adaptation, then, in the coordinates of the low-rank metric estimated from the first
half's draws and gradients (:mod:`bayesmix.nuts.low_rank`), the second half and the draws. Both halves
are runs of the same two compiled programs (:func:`nuts_segments`) with other arguments.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import NamedTuple

import arviz as az
import numpy as np
import pymc as pm
import pytensor
from arviz.data.base import make_attrs
from pymc.backends.arviz import coords_and_dims_for_inferencedata, find_constants, find_observations
from pymc.util import get_default_varnames
from pytensor.compile.mode import Mode
from pytensor.graph.rewriting.db import RewriteDatabaseQuery
from pytensor.link.basic import PerformLinker
from scipy import optimize

from bayesmix.nuts import low_rank, program_cache
from bayesmix.nuts.low_rank import LowRankMap
from bayesmix.nuts.program_cache import Program, compile_program

WHITEN_MAX = 40  # sampled values up to which NUTS runs in the Laplace approximation's whitened coordinates
# larger models: the second half of the warmup and the draws run in the coordinates of a low-rank
# metric (bayesmix.nuts.low_rank) estimated from the first half
LOW_RANK = 32  # directions at most
LOW_RANK_MIN_TUNE = 100  # with fewer tuning iterations, one phase and numpyro's diagonal metric
LOW_RANK_VALUES = 25_000_000  # draws (and as many gradients) kept for the estimate, at most: 400 MB
MAX_MODE_DISTANCE = 50.0  # a mode this far (unconstrained units) from the start is a run-away, not a mode
# an approximation this wide (unconstrained units: a log-SD known to within a factor e^10) describes a
# nearly flat density, or a run-away stopped where the gradient fell below tolerance (exp(x) at x = -14)
MAX_LAPLACE_SD = 10.0
# PyTensor's rewrites for a graph that XLA compiles: the canonical forms and the numerically stable
# ones (log1p, log-sum-exp...), and those JAX needs (constant shapes); not "fast_run"'s
# specialisations and fusion, which XLA does itself
JAX_REWRITES = RewriteDatabaseQuery(include=["canonicalize", "stabilize", "jax"], exclude=["inplace"])
# Without XLA's CPU fusion emitters a small model's programs compile much faster, at no cost to its
# sampling speed; on large models the emitters' fused loops sample faster, so only programs of small
# models are compiled without them (docs/performance.md)
SMALL_MODEL_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}


@dataclass(frozen=True)
class Laplace:
    """The Gaussian approximation at the mode, flattened in the order of the model's value variables."""

    mode: np.ndarray  # (d,)
    covariance: np.ndarray  # (d, d), the inverse Hessian of the potential (-log density)


def _flatten(values) -> np.ndarray:
    return np.concatenate([np.ravel(v) for v in values]) if values else np.zeros(0)


def _unflatten(flat, shapes):
    """(..., d) -> one array per shape, keeping the leading axes (numpy or JAX arrays alike)."""
    lead, parts, start = flat.shape[:-1], [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        parts.append(flat[..., start : start + size].reshape((*lead, *shape)))
        start += size
    return parts


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
    (docs/performance.md), and so is the NUTS program (:func:`nuts_program`).

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


def laplace(value_and_grad, start: list[np.ndarray], data=()) -> Laplace | None:
    """The Laplace approximation of ``exp(-potential(values, data))`` near ``start`` (a list of
    arrays), or None when the optimisation fails, runs away, or the Hessian there is not positive
    definite. ``value_and_grad(values, data)``: the potential and its gradient (a list like
    ``values``), jitted (``jax.jit(jax.value_and_grad(potential))``). The mode only has to be close
    (a fraction of a posterior SD): the adaptation goes on from it."""
    shapes = [np.shape(v) for v in start]

    def objective(x):
        value, grad = value_and_grad(_unflatten(x, shapes), data)
        return float(value), _flatten([np.asarray(g, dtype=float) for g in grad])

    def hessian(x):  # central differences of the exact gradient: exact for a quadratic
        step = 1e-4 * np.maximum(1.0, np.abs(x))
        columns = []
        for j in range(x.size):
            shift = np.zeros(x.size)
            shift[j] = step[j]
            columns.append((objective(x + shift)[1] - objective(x - shift)[1]) / (2 * step[j]))
        return 0.5 * (np.array(columns) + np.array(columns).T)

    x0 = _flatten(start).astype(float)
    # a trust region, not BFGS: on large data the gradient at the start is huge and BFGS's first
    # (unit-metric) step jumped to where the density is not finite
    try:
        with np.errstate(all="ignore"):
            result = optimize.minimize(
                objective, x0, jac=True, hess=hessian, method="trust-exact", options={"gtol": 1e-6, "maxiter": 100}
            )
    except (ValueError, np.linalg.LinAlgError):  # a step reached where the Hessian is not finite
        return None
    mode = result.x
    if not np.all(np.isfinite(mode)) or np.max(np.abs(mode - x0), initial=0.0) > MAX_MODE_DISTANCE:
        return None
    try:
        root = np.linalg.cholesky(hessian(mode))
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(root)):
        return None
    inverse_root = np.linalg.solve(root, np.eye(mode.size))
    covariance = inverse_root.T @ inverse_root
    if np.sqrt(np.max(np.diag(covariance), initial=0.0)) > MAX_LAPLACE_SD:
        return None
    return Laplace(mode=mode, covariance=covariance)


class Whitening(NamedTuple):
    """The affine map x = shift + root u (u: (..., d)) of the Laplace approximation's whitened
    coordinates; shift (d,), root (d, d)."""

    shift: np.ndarray
    root: np.ndarray

    def to_x(self, u):
        return self.shift + u @ self.root.T

    def gradient_in_u(self, gradient_x):
        return gradient_x @ self.root


@dataclass(frozen=True)
class Start:
    """Where the chains start: u (chains, d), and the map to the model's flattened value variables
    (None: x = u)."""

    u: np.ndarray
    whitening: Whitening | None = None


def _laplace_start(value_and_grad, data, points: list[np.ndarray], seed: int) -> Start | None:
    """The whitened start (one draw per chain from the Laplace approximation), or None when the
    approximation is not usable or a draw has no finite density. ``points``: PyMC's jittered points;
    ``value_and_grad``: as :func:`laplace`'s."""
    first = [np.asarray(v)[0] for v in points]
    approx = laplace(value_and_grad, first, data)
    if approx is None:
        return None
    shapes = [np.shape(v) for v in first]
    root = np.linalg.cholesky(approx.covariance)
    u = np.random.default_rng([seed, 2]).standard_normal((len(points[0]), approx.mode.size))
    x = approx.mode + u @ root.T
    if not all(np.isfinite(float(value_and_grad(_unflatten(row, shapes), data)[0])) for row in x):
        return None
    return Start(u=u, whitening=Whitening(approx.mode, root))


def _value_shapes(model: pm.Model) -> list[tuple[int, ...]]:
    """The shapes of the model's value variables: their static shapes, or (dims given by coords)
    evaluated, in Python (a C compilation would cost more than the evaluation it serves)."""
    static = [tuple(v.type.shape) for v in model.value_vars]
    if all(size is not None for shape in static for size in shape):
        return static
    with pytensor.config.change_flags(cxx=""):
        evaluated = model.eval_rv_shapes()
    return [tuple(int(size) for size in evaluated[v.name]) for v in model.value_vars]


# PyMC's initial-point graph evaluated op by op in Python: it runs a few times per fit, so any
# compilation costs more than it saves (PyMC's FAST_COMPILE function rewrites the graph, imports
# setuptools for the C linker's exceptions and compiles inner graphs; docs/performance.md)
PERFORM_ONLY = Mode(linker=PerformLinker(), optimizer=None)


def jittered_initial_points(model: pm.Model, chains: int, seed: int, potential: Callable, retries: int = 10):
    """PyMC's jittered initial points, one per chain, as a list over ``model.value_vars`` of arrays
    (chains, *shape): each free variable's support point plus U(-1, 1) jitter in the unconstrained
    space, redrawn (up to ``retries`` times, as ``pm.sample`` does) where ``potential(values)`` is
    not finite, then PyMC's SamplingError naming the variables at fault. Same seed, same points."""
    from pymc.initial_point import make_initial_point_expression
    from pymc.pytensorf import find_rng_nodes, replace_rng_nodes, reseed_rngs
    from pymc.util import _get_seeds_per_chain

    with pytensor.config.change_flags(mode=PERFORM_ONLY, cxx=""):  # also for inner graphs (OpFromGraph)
        expression = make_initial_point_expression(
            free_rvs=model.free_RVs,
            rvs_to_transforms=model.rvs_to_transforms,
            initval_strategies=model.rvs_to_initial_values,
            jitter_rvs=set(model.free_RVs),
            return_transformed=True,
        )
        evaluate = pytensor.function([], replace_rng_nodes(expression))
        rngs = find_rng_nodes(evaluate.maker.fgraph.outputs)
        points = []
        for chain_seed in _get_seeds_per_chain(seed, chains):
            retry_seeds = np.random.default_rng(chain_seed)
            for attempt in range(retries + 1):
                reseed_rngs(rngs, chain_seed)
                point = [np.asarray(v) for v in evaluate()]
                if np.isfinite(potential(point)):
                    break
                if attempt == retries:  # PyMC's SamplingError, naming the variables whose density is not finite
                    model.check_start_vals(dict(zip((v.name for v in model.value_vars), point)))
                chain_seed = retry_seeds.integers(2**30, dtype=np.int64)
            points.append(point)
    return [np.stack(values) for values in zip(*points)]


def _to_x(u, transform):
    """The model's flattened value variables from the sampled coordinates u (..., d): x =
    ``transform.to_x(u)`` (a :class:`Whitening` or a :class:`~bayesmix.nuts.low_rank.LowRankMap`), or x = u
    (``transform`` None)."""
    return u if transform is None else transform.to_x(u)


def _chain_starts(value_and_grad, data, u0: np.ndarray, shapes, transform) -> tuple:
    """Each chain's start for :func:`nuts_program`: u0 (chains, d), the potential there (chains,)
    and its gradient with respect to u (chains, d)."""
    energies, gradients = zip(*(value_and_grad(_unflatten(x, shapes), data) for x in _to_x(u0, transform)))
    grad = np.stack([_flatten([np.asarray(g) for g in gradient]) for gradient in gradients])
    return u0, np.array([float(e) for e in energies]), grad if transform is None else transform.gradient_in_u(grad)


@dataclass(frozen=True)
class Chains:
    """How the chains run: ``tune`` + ``draws`` NUTS iterations each, on ``chains`` chains run by
    ``method`` ("parallel": one XLA device each; "sequential"; "vectorized": one batched computation);
    with a progress bar or not."""

    chains: int
    tune: int
    draws: int
    target_accept: float
    method: str
    progressbar: bool


def _collected(state, gradients: bool = False) -> tuple:
    """What is kept of each NUTS state: the position, the statistics of :func:`_sample_stats` and,
    with ``gradients``, the potential's gradient at the position (last)."""
    kept = (
        state.z,
        state.num_steps,
        state.potential_energy,
        state.energy,
        state.adapt_state.step_size,
        state.accept_prob,
        state.diverging,
    )
    return (*kept, state.z_grad) if gradients else kept


def nuts_program(potential: Callable, shapes: list[tuple], how: Chains) -> Program:
    """The :class:`~bayesmix.nuts.program_cache.Program` ``program(keys, start, inverse_mass, args)``:
    every chain's draws, :func:`_collected` with a leading (chains, draws) axis. keys (chains, 2): a
    PRNG key per chain; start: where each chain starts, ``(u0, energy0, grad0)`` of shapes (chains,
    d), (chains,), (chains, d): the position in the sampled coordinates u, the potential there and
    its gradient in u (computed by the caller, which has them: numpyro would otherwise evaluate the
    gradient once more inside the program, a second copy of it for XLA to compile); inverse_mass
    (d,): the diagonal metric the adaptation starts from; args: ``(data, transform)``, the model's
    flattened value variables being x = ``transform.to_x(u)`` (a :class:`Whitening` or a
    :class:`~bayesmix.nuts.low_rank.LowRankMap`), or ``(data,)`` (x = u). ``potential``, ``shapes``: as
    :func:`log_density`'s, and the value variables' shapes.

    The data and the start are arguments, not constants: the compiled program depends only on
    shapes and on the model's constants (its priors' parameters; the default priors are scaled by
    the data), so it can be compiled while the start is being found, and JAX's persistent cache
    serves it to the next dataset of the same shapes and priors, as in a simulation study
    (numpyro's own driver, ``MCMC``, closes over them). The kernel is numpyro's NUTS
    (``numpyro.infer.hmc.hmc``), with its windowed adaptation."""
    from numpyro.util import fori_collect

    kernel = _Kernel(potential, shapes, how)

    def one_chain(key, start, inverse_mass, args):
        state, sample_kernel = kernel.set_up(key, start, inverse_mass, args)
        return fori_collect(
            how.tune,
            how.tune + how.draws,
            lambda current: sample_kernel(current, model_args=args),
            state,
            transform=_collected,
            progbar=False,
        )

    return _over_chains(one_chain, per_chain=2, shared=2, how=how)


# a run with a progress bar is cut into this many segments (or more), one bar update each
PROGRESS_UPDATES = 20


def segment_length(*phases: int) -> int:
    """The NUTS iterations of each segment of a run of ``phases`` (iterations each) with a progress
    bar: the largest divisor of every phase that makes at least :data:`PROGRESS_UPDATES` segments
    in all (all segments are one compiled program)."""
    target = max(1, sum(phases) // PROGRESS_UPDATES)
    common = math.gcd(*phases)
    return max(k for k in range(1, min(target, common) + 1) if common % k == 0)


def nuts_segments(
    potential: Callable, shapes: list[tuple], how: Chains, length: int | None = None, gradients: bool = False
) -> tuple[Program, Program, int]:
    """The run of :func:`nuts_program` as two programs, so that Python can act between segments (draw
    a progress bar, change the metric) without host callbacks inside a program (which could not be
    stored: :mod:`bayesmix.nuts.program_cache`): ``init(keys, start, inverse_mass, args)``: every chain's
    NUTS state (arguments as :func:`nuts_program`'s); ``segment(states, args)``: ``(states,
    collected)`` after ``length`` (default :func:`segment_length`) more iterations, :func:`_collected`
    (with ``gradients`` or not) of each with a leading (chains, length) axis. The segments continue
    numpyro's windowed adaptation where the last left it (the state carries it), so the draws are
    :func:`nuts_program`'s."""
    import jax

    kernel = _Kernel(potential, shapes, how)
    length = length or segment_length(how.tune + how.draws)

    def init_chain(key, start, inverse_mass, args):
        return kernel.set_up(key, start, inverse_mass, args)[0]

    def segment_chain(state, args):
        start = (state.z, state.potential_energy, state.z_grad)
        # numpyro's sample kernel uses settings that its init kernel makes, closing over the data:
        # made again in this program (the state they come with is not used)
        _, sample_kernel = kernel.set_up(state.rng_key, start, state.adapt_state.inverse_mass_matrix, args)

        def step(current, _):
            current = sample_kernel(current, model_args=args)
            return current, _collected(current, gradients)

        return jax.lax.scan(step, state, None, length=length)

    init = _over_chains(init_chain, per_chain=2, shared=2, how=how)
    return init, _over_chains(segment_chain, per_chain=1, shared=1, how=how), length


@dataclass(frozen=True)
class _Kernel:
    """numpyro's NUTS kernel on the potential in the sampled coordinates u."""

    potential: Callable
    shapes: list[tuple]
    how: Chains

    def energy_of(self, data, transform=None):
        def energy(u):  # the affine map's Jacobian is constant
            return self.potential(_unflatten(_to_x(u, transform), self.shapes), data)

        return energy

    def set_up(self, key, start, inverse_mass, args) -> tuple:
        """``(state, sample_kernel)``: a chain's initial NUTS state at ``start`` = (u, potential,
        gradient) and the kernel that moves it (``sample_kernel(state, model_args=args)``)."""
        from numpyro.infer.hmc import hmc
        from numpyro.infer.util import ParamInfo

        init_kernel, sample_kernel = hmc(potential_fn_gen=self.energy_of, algo="NUTS")
        state = init_kernel(
            ParamInfo(*start),
            num_warmup=self.how.tune,
            inverse_mass_matrix=inverse_mass,
            target_accept_prob=self.how.target_accept,
            model_args=args,
            rng_key=key,
        )
        return state, sample_kernel


def _over_chains(one: Callable, per_chain: int, shared: int, how: Chains) -> Program:
    """The :class:`~bayesmix.nuts.program_cache.Program` applying ``one`` to every chain: its first
    ``per_chain`` arguments have a leading chain axis, the next ``shared`` are the same for all
    chains; the results get a leading chain axis. Chains run as ``how.method`` says."""
    import jax

    def split(arguments):
        return arguments[:per_chain], arguments[per_chain:]

    if how.method == "parallel":
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        mesh = Mesh(np.array(jax.devices()[: how.chains]), ("chain",))

        def block(*arguments):  # each device's block holds one chain
            chained, common = split(arguments)
            firsts = [jax.tree.map(lambda leaf: leaf[0], a) for a in chained]
            return jax.tree.map(lambda leaf: leaf[None], one(*firsts, *common))

        chain, same = PartitionSpec("chain"), PartitionSpec()
        specs = (chain,) * per_chain + (same,) * shared
        # no replication checks: numpyro's kernel mixes per-chain and constant branches of a cond
        return Program(
            lambda: jax.shard_map(block, mesh=mesh, in_specs=specs, out_specs=chain, check_vma=False),
            in_shardings=tuple(NamedSharding(mesh, spec) for spec in specs),
            out_shardings=NamedSharding(mesh, chain),
        )
    if how.method == "vectorized":
        return Program(lambda: jax.vmap(one, in_axes=(0,) * per_chain + (None,) * shared))

    def sequential(*arguments):
        chained, common = split(arguments)
        return jax.lax.map(lambda row: one(*row, *common), tuple(chained))

    return Program(lambda: sequential)


@contextmanager
def _compiler_thread():
    """One worker thread for compiling beside the main thread. Leaving the block on an error or a
    Ctrl-C does not wait for a compilation still running there (seconds for a large model)."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        yield pool
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


@functools.cache
def _register_named_tuples() -> None:
    """Let jax.export store programs whose arguments or results are named tuples (numpyro's NUTS
    states, the maps to the model's coordinates), which it serialises only when registered; once
    per process."""
    from jax import export
    from numpyro.infer.hmc import HMCState
    from numpyro.infer.hmc_util import HMCAdaptState

    for kind in (HMCState, HMCAdaptState, Whitening, LowRankMap):
        export.register_namedtuple_serialization(kind, serialized_name=f"{kind.__module__}.{kind.__name__}")


@dataclass(frozen=True)
class _Segments:
    """:func:`nuts_segments`' two programs, compiled."""

    init: Callable
    segment: Callable
    length: int

    def advance(self, states, args, iterations: int, keep_after: int, bar, thin: int = 1, gradients: bool = False):
        """``(states, collected)`` after ``iterations`` (a multiple of ``length``) more NUTS
        iterations of every chain; collected: :func:`_collected` (``gradients`` or not) of every
        ``thin``-th iteration from ``keep_after`` on, host arrays with a leading (chains, kept) axis.
        ``bar``: a tqdm bar, moved a segment at a time, showing the divergences among the kept
        draws (not during a warmup whose gradients are kept)."""
        kept, divergences = [], 0
        for first in range(0, iterations, self.length):
            states, collected = self.segment(states, args)
            begin = max(0, keep_after - first)
            begin += -(first + begin - keep_after) % thin
            if begin < self.length:
                fields = collected if gradients else collected[:-1]
                kept.append([np.asarray(leaf)[:, begin::thin] for leaf in fields])
                if not gradients:
                    divergences += int(kept[-1][6].sum())  # _collected's diverging
                    bar.set_postfix(divergences=divergences, refresh=False)
            bar.update(self.length)
        return states, tuple(np.concatenate(parts, axis=1) for parts in zip(*kept))


def _compile_run(
    potential, shapes, how: Chains, example: tuple, compiler_options, key: Callable, phases: tuple[int, ...] = ()
) -> Callable | _Segments:
    """The chains' compiled run. Without ``phases``: ``run(keys, start, inverse_mass, args)``, the
    collected draws as :func:`nuts_program` returns them, by one program. With ``phases`` (the
    iterations of each run of the kernel ``how`` sets up): :func:`nuts_segments`' programs, with
    the gradients, cut in segments that divide every phase. ``example``: arguments shaped like
    run's; ``key(name, *parts)``: a stored program's key (:func:`bayesmix.nuts.program_cache.program_key`)."""
    import jax

    _register_named_tuples()
    if not phases:
        program = nuts_program(potential, shapes, how)
        return compile_program(
            program, example, compiler_options, key("nuts", shapes, how, program_cache.abstract(example))
        )
    init, segment, length = nuts_segments(potential, shapes, how, segment_length(*phases), gradients=True)
    init = compile_program(
        init, example, compiler_options, key("nuts init", shapes, how, program_cache.abstract(example))
    )
    segment_example = (
        jax.tree.map(lambda info: jax.ShapeDtypeStruct(info.shape, info.dtype), init.out_info),
        example[3],
    )
    segment_key = key("nuts segment", shapes, how, length, program_cache.abstract(segment_example))
    return _Segments(init, compile_program(segment, segment_example, compiler_options, segment_key), length)


def _sample_stats(collected, chains: int) -> dict[str, np.ndarray]:
    """numpyro's per-draw statistics under PyMC's names (as ``pymc.sampling.jax`` names them), as
    host arrays (chains, draws)."""
    names = ("n_steps", "lp", "energy", "step_size", "acceptance_rate", "diverging")
    stats = {name: np.asarray(value).reshape(chains, -1) for name, value in zip(names, collected[1:])}
    stats["tree_depth"] = np.log2(stats["n_steps"]).astype(int) + 1
    return stats


@dataclass(frozen=True)
class _Plan:
    """What one run of :func:`sample` is, before anything is compiled: the log density and its data
    (on the device), the value variables' shapes and their number ``d``; whether the model is
    ``small`` (the Laplace-whitened start) and the compiler options that go with that; how the
    chains run (``how``) and how each run of the kernel is set up (``kernel_how``: the first half of
    the warmup with ``two_phases``); the iterations of each run of the kernel (``phases``: the
    low-rank metric's two halves, the whole run in segments for a progress bar, or ``()``: one
    program); the low-rank metric's ``rank``."""

    density: LogDensity
    data: list
    shapes: list[tuple[int, ...]]
    d: int
    small: bool
    compiler_options: dict | None
    how: Chains
    kernel_how: Chains
    two_phases: bool
    phases: tuple[int, ...]
    rank: int

    def key(self, name: str, *parts) -> str:
        """The stored key of a program made from the log density (for later processes)."""
        return program_cache.program_key(name, self.density.fingerprint, self.compiler_options, *parts)


def _plan(model: pm.Model, how: Chains, low_rank_metric: bool) -> _Plan:
    import jax.numpy as jnp

    density = log_density(model)
    shapes = _value_shapes(model)
    d = sum(int(np.prod(shape)) for shape in shapes)
    small = d <= WHITEN_MAX
    # the low-rank metric's two phases: each half of the warmup (the first runs one iteration more,
    # without adaptation, when tune is odd)
    two_phases = low_rank_metric and not small and how.tune >= LOW_RANK_MIN_TUNE
    if two_phases:
        phases = (how.tune - how.tune // 2, how.tune // 2 + how.draws)
    else:
        phases = (how.tune + how.draws,) if how.progressbar or not small else ()
    return _Plan(
        density=density,
        data=[jnp.asarray(v) for v in density.data],
        shapes=shapes,
        d=d,
        small=small,
        compiler_options=SMALL_MODEL_COMPILER_OPTIONS if small else None,
        how=how,
        kernel_how=replace(how, tune=how.tune // 2) if two_phases else how,
        two_phases=two_phases,
        phases=phases,
        rank=min(LOW_RANK, d),
    )


def _run_example(plan: _Plan, keys) -> tuple:
    """Arguments shaped like the chains' run's (:func:`_compile_run`): keys, the start, the inverse
    mass and ``(data, transform)``."""
    import jax

    d, chains = plan.d, plan.how.chains
    vector, matrix = jax.ShapeDtypeStruct((d,), np.float64), jax.ShapeDtypeStruct((d, d), np.float64)
    per_chain = jax.ShapeDtypeStruct((chains, d), np.float64)
    start_like = (per_chain, jax.ShapeDtypeStruct((chains,), np.float64), per_chain)
    if plan.small:
        transform_like = Whitening(vector, matrix)
    else:
        directions = jax.ShapeDtypeStruct((d, plan.rank), np.float64)
        transform_like = LowRankMap(vector, vector, directions, jax.ShapeDtypeStruct((plan.rank,), np.float64))
    return (keys, start_like, vector, (plan.data, transform_like))


class _Prepared(NamedTuple):
    """What the chains start from and what follows them: the compiled ``run`` (:func:`_compile_run`),
    the value-and-gradient program, the :class:`Start`, the starting inverse mass, the map of the
    sampled coordinates (``transform``), each chain's start (:func:`_chain_starts`), and the compiled
    map of the draws to the model's variables named ``names``."""

    run: Callable | _Segments
    value_and_grad: Callable
    start: Start
    inverse_mass: np.ndarray
    transform: Whitening | LowRankMap
    starts: tuple
    to_model: Callable
    names: list


def _gradient_program(plan: _Plan, values_like: list) -> Callable:
    """One program for the initial points' check, the Laplace start and the chains' starting gradients."""
    import jax

    gradient_example = (values_like, plan.data)
    return compile_program(
        Program(lambda: jax.value_and_grad(plan.density.potential)),
        gradient_example,
        plan.compiler_options,
        plan.key("value_and_grad", program_cache.abstract(gradient_example)),
    )


def _find_start(model, plan: _Plan, value_and_grad, seed: int, diagonal_metric) -> tuple[Start, np.ndarray]:
    """(start, inverse mass): the Laplace-whitened start of a small model (unit metric), else
    PyMC's jittered points with ``diagonal_metric()`` (or the unit metric)."""

    def value(values):
        return float(value_and_grad(values, plan.data)[0])

    chains = plan.how.chains
    points = jittered_initial_points(model, chains, seed, value)
    start = _laplace_start(value_and_grad, plan.data, points, seed) if plan.small else None
    inverse_mass = np.ones(plan.d)
    if start is None:
        start = Start(u=np.concatenate([v.reshape(chains, -1) for v in points], axis=1))
        if (metric := diagonal_metric()) is not None:
            inverse_mass = metric
    return start, inverse_mass


def _to_model_program(model, plan: _Plan, values_like: list) -> tuple[Callable, list]:
    """(program, names): the map of the draws (chains, draws, ...) of the value variables to the
    model's variables ``names`` (PyMC's graph)."""
    import jax
    from pymc.sampling import jax as pymc_jax

    names = list(get_default_varnames(model.unobserved_value_vars, include_transformed=False))
    chains, draws = plan.how.chains, plan.how.draws
    like_draws = [jax.ShapeDtypeStruct((chains, draws, *v.shape), v.dtype) for v in values_like]

    def to_model_function():
        constrain = pymc_jax.get_jaxified_graph(inputs=model.value_vars, outputs=names)
        return lambda raw: jax.vmap(jax.vmap(constrain))(*raw)

    to_model_key = program_cache.program_key(
        "to_model",
        program_cache.graph_fingerprint(model.value_vars, names),
        plan.compiler_options,
        program_cache.abstract((like_draws,)),
    )
    return compile_program(Program(to_model_function), (like_draws,), plan.compiler_options, to_model_key), names


def _prepare(model, plan: _Plan, example: tuple, seed: int, diagonal_metric) -> _Prepared:
    """Compile the chains' run in a second thread while this one compiles the gradient, finds the
    start and compiles the map of the draws to the model (XLA compiles without Python's lock)."""
    import jax

    values_like = [jax.ShapeDtypeStruct(shape, v.type.dtype) for v, shape in zip(model.value_vars, plan.shapes)]
    potential, shapes = plan.density.potential, plan.shapes
    with _compiler_thread() as pool:
        program = pool.submit(
            _compile_run, potential, shapes, plan.kernel_how, example, plan.compiler_options, plan.key, plan.phases
        )
        value_and_grad = _gradient_program(plan, values_like)
        start, inverse_mass = _find_start(model, plan, value_and_grad, seed, diagonal_metric)
        to_model, names = _to_model_program(model, plan, values_like)
        # a small model's program samples x = shift + root u: the jittered points where the Laplace
        # start failed are x = 0 + I u; a larger one starts at x = u
        if plan.small:
            transform = start.whitening or Whitening(np.zeros(plan.d), np.eye(plan.d))
        else:
            transform = low_rank.identity(plan.d, plan.rank)
        starts = _chain_starts(value_and_grad, plan.data, start.u, shapes, transform)
        run = program.result()
    return _Prepared(run, value_and_grad, start, inverse_mass, transform, starts, to_model, names)


def _on_device(arrays):
    import jax
    import jax.numpy as jnp

    return jax.tree.map(jnp.asarray, arrays)


def _run_chains(plan: _Plan, prepared: _Prepared, keys, seed: int) -> tuple[tuple, Whitening | LowRankMap]:
    """(collected, transform): :func:`_collected` of every draw (host or device arrays with a
    leading (chains, draws) axis), and the map of the sampled coordinates the draws are in."""
    import jax.numpy as jnp

    transform = prepared.transform
    args = (plan.data, _on_device(transform))
    run, start, inverse_mass = prepared.run, _on_device(prepared.starts), jnp.asarray(prepared.inverse_mass)
    if not plan.phases:
        return run(keys, start, inverse_mass, args), transform
    from tqdm.auto import tqdm

    how = plan.how
    chains = how.chains
    bar = tqdm(
        total=how.tune + how.draws, desc=f"Sampling {chains} chain{'s' * (chains > 1)}", disable=not how.progressbar
    )
    with bar:
        states = run.init(keys, start, inverse_mass, args)
        if plan.two_phases:
            states, transform = _low_rank_phase(plan, prepared, states, args, seed, bar)
            args = (plan.data, _on_device(transform))
        states, collected = run.advance(states, args, plan.phases[-1], plan.kernel_how.tune, bar)
    return collected, transform


def _low_rank_phase(plan: _Plan, prepared: _Prepared, states, args, seed: int, bar) -> tuple:
    """(states, transform): the first half of the warmup (numpyro's diagonal adaptation), then each
    chain's state again, in the coordinates of the low-rank metric estimated from that half's draws
    and gradients, at the second half's start."""
    import jax
    import jax.numpy as jnp

    first, chains = plan.phases[0], plan.how.chains
    window = first - first // 3  # the first third is the way to the typical set
    thin = math.ceil(chains * window * plan.d / LOW_RANK_VALUES)
    states, warmup = prepared.run.advance(states, args, first, first // 3, bar, thin=thin, gradients=True)
    transform = low_rank.estimate(warmup[0], warmup[-1], plan.rank)
    u = transform.to_u(np.asarray(states.z))
    starts = _chain_starts(prepared.value_and_grad, plan.data, u, plan.shapes, transform)
    phase_keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 1), chains)
    args = (plan.data, _on_device(transform))
    return prepared.run.init(phase_keys, _on_device(starts), jnp.ones(plan.d), args), transform


def _inference_data(model, plan: _Plan, prepared: _Prepared, collected, transform, log_likelihood: bool):
    """The draws as PyMC's InferenceData: posterior, sample_stats, observed and constant data and,
    with ``log_likelihood``, the pointwise log-likelihood."""
    import numpyro
    from pymc.sampling import jax as pymc_jax

    u = np.asarray(collected[0])  # (chains, draws, d), on the host: no more XLA programs to compile
    stats = _sample_stats(collected, plan.how.chains)
    raw = _unflatten(_to_x(u, transform), plan.shapes)
    pointwise = pymc_jax._get_log_likelihood(model, raw, postprocessing_vectorize="vmap") if log_likelihood else None
    values = prepared.to_model(raw)
    coords, dims = coords_and_dims_for_inferencedata(model)
    if prepared.start.whitening:
        metric = "laplace"
    else:
        metric = f"low-rank, {transform.directions} directions" if plan.two_phases else "diagonal"
    attrs = make_attrs(
        {
            "tuning_steps": plan.how.tune,
            "bayesmix_start": "laplace" if prepared.start.whitening else "jitter",
            "bayesmix_metric": metric,
        },
        library=numpyro,
    )
    return az.from_dict(
        posterior={v.name: np.asarray(value) for v, value in zip(prepared.names, values)},
        log_likelihood=pointwise,
        observed_data=find_observations(model),
        constant_data=find_constants(model),
        sample_stats=stats,
        coords=coords,
        dims=dims,
        attrs=attrs,
        posterior_attrs=attrs,
    )


def sample(
    model: pm.Model,
    *,
    draws: int,
    tune: int,
    chains: int,
    seed: int,
    target_accept: float,
    chain_method: str,
    progressbar: bool,
    log_likelihood: bool,
    diagonal_metric: Callable[[], np.ndarray | None],
    low_rank_metric: bool = True,
) -> az.InferenceData:
    """Posterior draws of ``model`` (posterior, sample_stats, observed_data, constant_data and, with
    ``log_likelihood``, the pointwise log-likelihood). ``diagonal_metric()``: the model's rough
    posterior variances (flattened) or None, the starting metric where the Laplace start is not used
    (called only then: it evaluates the model's initial point, which costs a compilation the first
    time). ``low_rank_metric`` False: a larger model keeps numpyro's diagonal metric, adapted over
    the whole warmup in one phase.

    The steps: what the run is (:func:`_plan`); the chains' program compiled in a second thread
    while this one finds the start (:func:`_prepare`: XLA compiles without Python's lock, so the
    two overlap); the chains (:func:`_run_chains`); the InferenceData (:func:`_inference_data`)."""
    import jax
    import numpyro  # noqa: F401 - numpyro and PyMC's JAX module imported here, before the compiler thread
    from pymc.sampling import jax as pymc_jax  # noqa: F401 - starts and imports them too

    how = Chains(chains, tune, draws, target_accept, chain_method, progressbar)
    plan = _plan(model, how, low_rank_metric)
    keys = jax.random.split(jax.random.PRNGKey(seed), chains)
    prepared = _prepare(model, plan, _run_example(plan, keys), seed, diagonal_metric)
    collected, transform = _run_chains(plan, prepared, keys, seed)
    return _inference_data(model, plan, prepared, collected, transform, log_likelihood)
