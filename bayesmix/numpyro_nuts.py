"""NUTS with numpyro on a PyMC model's log density, started from where it will sample.

PyMC's own route to numpyro (``pm.sample(nuts_sampler="numpyro")``) costs seconds before the first
draw that this one does not: it assigns PyMC's step methods (compiling gradient functions with
PyTensor's C backend, ~2 s, never used), and it checks each chain's jittered initial point with
the log density evaluated op by op (one XLA compilation per operation: 4-5 s for a small model;
jitted here, one compilation). The log density is PyMC's graph, converted to JAX with the data as
arguments (:func:`log_density`); the NUTS kernel, the transformation of the draws back to the
constrained space and the InferenceData are numpyro's and PyMC's, unchanged.

Small models (at most ``WHITEN_MAX`` sampled values: every collapsed gaussian model with one
block, where NUTS moves only the SDs, correlations and sigma) are sampled in the whitened
coordinates of the posterior's Laplace approximation: x = mode + R u, with the mode from a
trust-region Newton method on the exact gradient and R R' the inverse Hessian there (central
differences of the gradient); the chains start at one draw of u ~ N(0, I) each. The windowed
adaptation goes on from there; an affine map has a constant Jacobian, so the posterior is the same.
Why: the parameters' posterior scales differ by 100x or more (log sigma is known to ~1/sqrt(2n)),
and numpyro's covariance estimate is shrunk towards 1e-3 I, which made the metric for log sigma 6x
too wide: on the 10^5-row benchmark 500 tuning steps ended at step size 0.38, 9 leapfrog steps per
draw and min bulk ESS ~470 of 1,000 draws (a dense metric alone: ~600); whitened, ~0.7, 5.5 steps
and ~1,000. Where the mode or its Hessian is not usable (a singular fit's SD running to 0, a
non-positive-definite Hessian), PyMC's jittered initial points and the model's rough scales are
used instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import arviz as az
import numpy as np
import pymc as pm
import pytensor
from arviz.data.base import make_attrs
from pymc.backends.arviz import coords_and_dims_for_inferencedata, find_constants, find_observations
from pymc.sampling import jax as pymc_jax
from pymc.util import get_default_varnames
from pytensor.graph.rewriting.db import RewriteDatabaseQuery
from scipy import optimize

WHITEN_MAX = 40  # sampled values up to which NUTS runs in the Laplace approximation's whitened coordinates
MAX_MODE_DISTANCE = 50.0  # a mode this far (unconstrained units) from the start is a run-away, not a mode
# an approximation this wide (unconstrained units: a log-SD known to within a factor e^10) describes a
# nearly flat density, or a run-away stopped where the gradient fell below tolerance (exp(x) at x = -14)
MAX_LAPLACE_SD = 10.0
# PyTensor's rewrites for a graph that XLA compiles: the canonical forms and the numerically stable
# ones (log1p, log-sum-exp...), and those JAX needs (constant shapes); not "fast_run"'s
# specialisations and fusion, which XLA does itself
JAX_REWRITES = RewriteDatabaseQuery(include=["canonicalize", "stabilize", "jax"], exclude=["inplace"])
# XLA's CPU fusion emitters halve the compilation of a small model's programs (sleepstudy's NUTS
# program: 2.8 s -> 1.9 s; its gradient 0.9 s -> 0.4 s) at no cost to its speed; on large models they
# slow sampling (InstEval-shaped: +15%), so only programs of small models are compiled without them
SMALL_MODEL_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}
_STATS = ("num_steps", "potential_energy", "energy", "adapt_state.step_size", "accept_prob", "diverging")


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


def log_density(model: pm.Model) -> tuple[Callable, list[np.ndarray]]:
    """``(potential, data)``: ``potential(values, data)`` = -log density of ``model`` as a JAX
    function of its value variables (a list, in ``model.value_vars`` order) and of its ``pm.Data``
    (and any other shared variable), with ``data`` their current values.

    PyMC's own JAX conversion replaces shared variables by constants, so every new dataset (a
    refit, a replication of a simulation study, a second process on new data of the same shape)
    is a new XLA program to compile. With the data as arguments, a program compiled from this
    function depends only on the shapes (and on constants such as fixed priors): the Laplace
    start's gradient is then served from JAX's persistent cache for the next dataset (measured:
    2.9 s -> 0.9 s on sleepstudy-shaped data). The NUTS program is not: numpyro's potential functions
    take no data arguments, so :func:`sample`'s closes over them (a numpyro model's arguments would
    not help: its parallel chains, ``pmap``, close over them too).

    The graph is rewritten with :data:`JAX_REWRITES` only, not PyTensor's whole JAX mode: XLA
    simplifies and fuses the program itself, and the full pass list cost 0.6-0.9 s per model
    (sleepstudy's collapsed model: 0.07 s now, the same value, and a gradient ~20% faster)."""
    from pytensor.compile.mode import optdb
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.basic import graph_inputs
    from pytensor.graph.fg import FunctionGraph
    from pytensor.link.jax.dispatch import jax_funcify

    potential_graph = -model.logp()
    shared = [v for v in graph_inputs([potential_graph]) if isinstance(v, SharedVariable)]
    fgraph = FunctionGraph(inputs=[*model.value_vars, *shared], outputs=[potential_graph], clone=True)
    optdb.query(JAX_REWRITES).rewrite(fgraph)
    function = jax_funcify(fgraph)

    def potential(values, data):
        return function(*values, *data)[0]

    return potential, [np.asarray(v.get_value(borrow=True)) for v in shared]


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
    # a trust region, not BFGS: at 10^6 rows the gradient at the start is ~1e6 and BFGS's first
    # (unit-metric) step jumped to where the density is not finite
    with np.errstate(all="ignore"):
        result = optimize.minimize(
            objective, x0, jac=True, hess=hessian, method="trust-exact", options={"gtol": 1e-6, "maxiter": 100}
        )
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


@dataclass(frozen=True)
class Start:
    """Where the chains start: u (chains, d), and the affine map x = shift + u @ root.T to the model's
    flattened value variables (root None: x = u)."""

    u: np.ndarray
    shift: np.ndarray | None = None
    root: np.ndarray | None = None

    @property
    def whitened(self) -> bool:
        return self.root is not None


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
    return Start(u=u, shift=approx.mode, root=root)


def _static_size(model: pm.Model) -> float:
    """Number of sampled values from the value variables' static shapes (inf when one is not static)."""
    shapes = [v.type.shape for v in model.value_vars]
    if any(size is None for shape in shapes for size in shape):
        return float("inf")
    return float(sum(int(np.prod(shape)) for shape in shapes))


def parallel_chains(compiler_options: dict | None):
    """numpyro's ``chain_method``: one chain per XLA device (``pmap``'s semantics, as
    ``jit(shard_map(...))``, which is what ``pmap`` is built from) compiled with ``compiler_options``
    (XLA debug options; ``pmap`` takes none)."""
    import jax
    from jax.sharding import Mesh, PartitionSpec

    def chain_method(function):
        def mapped(args):
            chains = jax.tree.leaves(args)[0].shape[0]
            mesh = Mesh(np.array(jax.devices()[:chains]), ("chain",))

            def one_chain(block):  # each device's block holds one chain: leading axis 1
                result = function(jax.tree.map(lambda leaf: leaf[0], block))
                return jax.tree.map(lambda leaf: leaf[None], result)

            spec = PartitionSpec("chain")
            program = jax.shard_map(one_chain, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)
            return jax.jit(program, compiler_options=compiler_options)(args)

        return mapped

    return chain_method


def _sample_stats(mcmc) -> dict[str, np.ndarray]:
    """numpyro's per-draw statistics under PyMC's names (as ``pymc.sampling.jax`` names them), copied
    to host arrays (PyMC's own conversion copies each on the device, one compilation per statistic)."""
    names = {
        "potential_energy": "lp",
        "adapt_state.step_size": "step_size",
        "num_steps": "n_steps",
        "accept_prob": "acceptance_rate",
    }
    stats = {names.get(key, key): np.array(value) for key, value in mcmc.get_extra_fields(group_by_chain=True).items()}
    stats["tree_depth"] = np.log2(stats["n_steps"]).astype(int) + 1
    return stats


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
) -> az.InferenceData:
    """Posterior draws of ``model`` (posterior, sample_stats, observed_data, constant_data and, with
    ``log_likelihood``, the pointwise log-likelihood). ``diagonal_metric()``: the model's rough
    posterior variances (flattened) or None, the starting metric where the Laplace start is not used
    (called only then: it evaluates the model's initial point, ~1 s the first time)."""
    import jax
    import jax.numpy as jnp
    import numpyro
    from numpyro.infer import MCMC, NUTS

    potential, data = log_density(model)
    small = _static_size(model) <= WHITEN_MAX
    compiler_options = SMALL_MODEL_COMPILER_OPTIONS if small else None
    value_and_grad = jax.jit(jax.value_and_grad(potential), compiler_options=compiler_options)
    data = [jnp.asarray(v) for v in data]
    # a small model's Laplace start compiles the gradient anyway, and the initial points' check then
    # shares that program; a larger model's check compiles the value alone, the cheaper program
    if small:
        value = lambda values: value_and_grad(values, data)[0]  # noqa: E731
    else:
        value = functools.partial(jax.jit(potential), data=data)
    # PyMC's function of the initial points runs once per chain: compiled to C (cxx), its first run
    # cost ~1 s of compilation; evaluated in Python, 0.1 s
    with pytensor.config.change_flags(cxx=""):
        points = pymc_jax._get_batched_jittered_initial_points(
            model=model, chains=chains, initvals=None, random_seed=seed, logp_fn=value
        )
    points = [np.asarray(v) if chains > 1 else np.asarray(v)[None] for v in points]  # (chains, ...) each
    shapes = [np.shape(v)[1:] for v in points]
    size = sum(int(np.prod(shape)) for shape in shapes)
    start = _laplace_start(value_and_grad, data, points, seed) if size <= WHITEN_MAX else None
    nuts_kwargs: dict = {}
    if start is None:
        start = Start(u=np.concatenate([v.reshape(chains, -1) for v in points], axis=1))
        if (metric := diagonal_metric()) is not None:
            nuts_kwargs["inverse_mass_matrix"] = metric

    shift = None if start.shift is None else jnp.asarray(start.shift)
    root = None if start.root is None else jnp.asarray(start.root)

    def to_x(u):
        return _unflatten(u if root is None else shift + u @ root.T, shapes)

    def potential_energy(u):  # in the sampled coordinates u; the affine map's Jacobian is constant
        return potential(to_x(u), data)

    # a potential function, not a numpyro model: numpyro would run the model eagerly to initialise
    # it, compiling each operation of the log density on its own (~0.5 s)
    mcmc = MCMC(
        NUTS(potential_fn=potential_energy, target_accept_prob=target_accept, **nuts_kwargs),
        num_warmup=tune,
        num_samples=draws,
        num_chains=chains,
        chain_method=parallel_chains(compiler_options) if chain_method == "parallel" else chain_method,
        progress_bar=False,
    )
    # numpyro turns the progress bar off for every callable chain method; it works with ours
    mcmc.progress_bar = progressbar
    key = jax.random.PRNGKey(seed)
    mcmc.run(
        jax.random.split(key, chains) if chains > 1 else key,
        init_params=jnp.asarray(start.u if chains > 1 else start.u[0]),
        extra_fields=_STATS,
    )
    # on the host: each JAX operation on the chains' device arrays would be a program to compile
    u = np.asarray(mcmc.get_samples(group_by_chain=True))
    stats = _sample_stats(mcmc)
    raw = _unflatten(u if start.root is None else start.shift + u @ start.root.T, shapes)
    pointwise = pymc_jax._get_log_likelihood(model, raw, postprocessing_vectorize="vmap") if log_likelihood else None
    names = list(get_default_varnames(model.unobserved_value_vars, include_transformed=False))
    constrain = pymc_jax.get_jaxified_graph(inputs=model.value_vars, outputs=names)
    values = pymc_jax._postprocess_samples(constrain, raw, postprocessing_vectorize="vmap", donate_samples=True)
    coords, dims = coords_and_dims_for_inferencedata(model)
    attrs = make_attrs(
        {"tuning_steps": tune, "bayesmix_start": "laplace" if start.whitened else "jitter"}, library=numpyro
    )
    return az.from_dict(
        posterior={v.name: np.asarray(value) for v, value in zip(names, values)},
        log_likelihood=pointwise,
        observed_data=find_observations(model),
        constant_data=find_constants(model),
        sample_stats=stats,
        coords=coords,
        dims=dims,
        attrs=attrs,
        posterior_attrs=attrs,
    )
