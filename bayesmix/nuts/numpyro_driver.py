"""NUTS with numpyro on a PyMC model's log density, started from where it will sample.

PyMC's own route to numpyro (``pm.sample(nuts_sampler="numpyro")``) costs seconds before the first
draw that this one does not (docs/performance.md): it assigns PyMC's step methods (compiling
gradient functions with PyTensor's C backend, never used), and it checks each chain's jittered
initial point with the log density evaluated op by op (one XLA compilation per operation; jitted
here, one compilation). The log density is PyMC's graph, converted to JAX with the data as
arguments (:func:`~bayesmix.nuts.density.log_density`); the NUTS kernel and its adaptation are
numpyro's, driven by one compiled program per fit whose arguments are the data and the start
(:func:`~bayesmix.nuts.programs.nuts_program`, compiled while the start is found); the
transformation of the draws back to the constrained space and the InferenceData are PyMC's.

Small models (at most ``WHITEN_MAX`` sampled values: every collapsed gaussian model with one
block, where NUTS moves only the SDs, correlations and sigma) are sampled in the whitened
coordinates of the posterior's Laplace approximation: x = mode + R u, with R R' the inverse
Hessian at the mode; the chains start at one draw of u ~ N(0, I) each (:mod:`bayesmix.nuts.start`).
The windowed adaptation goes on from there; an affine map has a constant Jacobian, so the posterior
is the same.
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
are runs of the same two compiled programs (:func:`~bayesmix.nuts.programs.nuts_segments`) with
other arguments.

This module drives a run (:func:`sample`) and decides what it is (small or not, one phase or two);
the parts it drives each have their module: the log density (:mod:`bayesmix.nuts.density`), the
sampled coordinates (:mod:`bayesmix.nuts.coordinates`), the start (:mod:`bayesmix.nuts.start`) and
the compiled NUTS programs (:mod:`bayesmix.nuts.programs`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import NamedTuple

import arviz as az
import numpy as np
import pymc as pm
from arviz.data.base import make_attrs
from pymc.backends.arviz import coords_and_dims_for_inferencedata, find_constants, find_observations
from pymc.util import get_default_varnames

from bayesmix.nuts import low_rank, program_cache
from bayesmix.nuts.coordinates import Whitening, to_x, unflatten
from bayesmix.nuts.density import LogDensity, log_density, value_shapes
from bayesmix.nuts.low_rank import LowRankMap
from bayesmix.nuts.program_cache import Program, compile_program
from bayesmix.nuts.programs import Chains, Segments, compile_run
from bayesmix.nuts.start import Start, chain_starts, find_start

WHITEN_MAX = 40  # sampled values up to which NUTS runs in the Laplace approximation's whitened coordinates
# larger models: the second half of the warmup and the draws run in the coordinates of a low-rank
# metric (bayesmix.nuts.low_rank) estimated from the first half
LOW_RANK = 32  # directions at most
LOW_RANK_MIN_TUNE = 100  # with fewer tuning iterations, one phase and numpyro's diagonal metric
LOW_RANK_VALUES = 25_000_000  # draws (and as many gradients) kept for the estimate, at most; doubles, twice over
# Without XLA's CPU fusion emitters a small model's programs compile much faster, at no cost to its
# sampling speed; on large models the emitters' fused loops sample faster, so only programs of small
# models are compiled without them (docs/performance.md)
SMALL_MODEL_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}


@contextmanager
def _compiler_thread():
    """One worker thread for compiling beside the main thread. Leaving the block on an error or a
    Ctrl-C does not wait for a compilation still running there (seconds for a large model)."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        yield pool
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _sample_stats(collected, chains: int) -> dict[str, np.ndarray]:
    """numpyro's per-draw statistics under PyMC's names (as ``pymc.sampling.jax`` names them), as
    host arrays (chains, draws); ``collected``: the programs' fields, in the order
    :mod:`bayesmix.nuts.programs` keeps them (the position first)."""
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
    shapes = value_shapes(model)
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
    """Arguments shaped like the chains' run's (:func:`compile_run`): keys, the start, the inverse
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
    """What the chains start from and what follows them: the compiled ``run`` (:func:`compile_run`),
    the value-and-gradient program, the :class:`Start`, the starting inverse mass, the map of the
    sampled coordinates (``transform``), each chain's start (:func:`chain_starts`), and the compiled
    map of the draws to the model's variables named ``names``."""

    run: Callable | Segments
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
            compile_run, potential, shapes, plan.kernel_how, example, plan.compiler_options, plan.key, plan.phases
        )
        value_and_grad = _gradient_program(plan, values_like)
        start, inverse_mass = find_start(
            model, value_and_grad, plan.data, plan.how.chains, seed, plan.small, diagonal_metric
        )
        to_model, names = _to_model_program(model, plan, values_like)
        # a small model's program samples x = shift + root u: the jittered points where the Laplace
        # start failed are x = 0 + I u; a larger one starts at x = u
        if plan.small:
            transform = start.whitening or Whitening(np.zeros(plan.d), np.eye(plan.d))
        else:
            transform = low_rank.identity(plan.d, plan.rank)
        starts = chain_starts(value_and_grad, plan.data, start.u, shapes, transform)
        run = program.result()
    return _Prepared(run, value_and_grad, start, inverse_mass, transform, starts, to_model, names)


def _on_device(arrays):
    import jax
    import jax.numpy as jnp

    return jax.tree.map(jnp.asarray, arrays)


def _run_chains(plan: _Plan, prepared: _Prepared, keys, seed: int) -> tuple[tuple, Whitening | LowRankMap]:
    """(collected, transform): the programs' fields of every draw (host or device arrays with a
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
    starts = chain_starts(prepared.value_and_grad, plan.data, u, plan.shapes, transform)
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
    raw = unflatten(to_x(u, transform), plan.shapes)
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
