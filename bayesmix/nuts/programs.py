"""The compiled JAX programs of a NUTS run: numpyro's NUTS kernel and its windowed adaptation on
every chain, as one program for the whole run (:func:`nuts_program`) or as two (:func:`nuts_segments`:
the chains' initial states, then a segment of iterations) that Python runs segment by segment, to
draw a progress bar and to change the metric between the low-rank metric's two halves; compiled
through :mod:`bayesmix.nuts.program_cache` (:func:`compile_run`). The potential is
:mod:`bayesmix.nuts.density`'s, in the sampled coordinates of :mod:`bayesmix.nuts.coordinates`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bayesmix.nuts import program_cache
from bayesmix.nuts.coordinates import Whitening, to_x, unflatten
from bayesmix.nuts.low_rank import LowRankMap
from bayesmix.nuts.program_cache import Program, compile_program


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
    """What is kept of each NUTS state: the position, the statistics ``sample_stats`` holds and,
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
    :func:`bayesmix.nuts.density.log_density`'s, and the value variables' shapes.

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
            return self.potential(unflatten(to_x(u, transform), self.shapes), data)

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


@functools.cache
def register_named_tuples() -> None:
    """Let jax.export store programs whose arguments or results are named tuples (numpyro's NUTS
    states, the maps to the model's coordinates), which it serialises only when registered; once
    per process."""
    from jax import export
    from numpyro.infer.hmc import HMCState
    from numpyro.infer.hmc_util import HMCAdaptState

    for kind in (HMCState, HMCAdaptState, Whitening, LowRankMap):
        export.register_namedtuple_serialization(kind, serialized_name=f"{kind.__module__}.{kind.__name__}")


@dataclass(frozen=True)
class Segments:
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


def compile_run(
    potential, shapes, how: Chains, example: tuple, compiler_options, key: Callable, phases: tuple[int, ...] = ()
) -> Callable | Segments:
    """The chains' compiled run. Without ``phases``: ``run(keys, start, inverse_mass, args)``, the
    collected draws as :func:`nuts_program` returns them, by one program. With ``phases`` (the
    iterations of each run of the kernel ``how`` sets up): :func:`nuts_segments`' programs, with
    the gradients, cut in segments that divide every phase. ``example``: arguments shaped like
    run's; ``key(name, *parts)``: a stored program's key (:func:`bayesmix.nuts.program_cache.program_key`)."""
    import jax

    register_named_tuples()
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
    return Segments(init, compile_program(segment, segment_example, compiler_options, segment_key), length)
