"""Where the chains start.

Small models start from the Laplace approximation of the posterior (:func:`laplace`): the mode from
a trust-region Newton method on the exact gradient and the inverse Hessian there (central
differences of the gradient); each chain starts at one draw of u ~ N(0, I) in the whitened
coordinates x = mode + R u, with R R' the inverse Hessian (:func:`laplace_start`). Where the mode or
its Hessian is not usable (a singular fit's SD running to 0, a non-positive-definite Hessian), and
for larger models, the chains start from PyMC's jittered initial points
(:func:`jittered_initial_points`), evaluated without compiling anything. :func:`find_start` chooses;
:func:`chain_starts` gives each chain's start as the NUTS programs take it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor
from pytensor.compile.mode import Mode
from pytensor.link.basic import PerformLinker
from scipy import optimize

from bayesmix.nuts.coordinates import Whitening, flatten, to_x, unflatten

MAX_MODE_DISTANCE = 50.0  # a mode this far (unconstrained units) from the start is a run-away, not a mode
# an approximation this wide (unconstrained units: a log-SD known to within a factor e^10) describes a
# nearly flat density, or a run-away stopped where the gradient fell below tolerance (exp(x) at x = -14)
MAX_LAPLACE_SD = 10.0


@dataclass(frozen=True)
class Laplace:
    """The Gaussian approximation at the mode, flattened in the order of the model's value variables."""

    mode: np.ndarray  # (d,)
    covariance: np.ndarray  # (d, d), the inverse Hessian of the potential (-log density)


def laplace(value_and_grad, start: list[np.ndarray], data=()) -> Laplace | None:
    """The Laplace approximation of ``exp(-potential(values, data))`` near ``start`` (a list of
    arrays), or None when the optimisation fails, runs away, or the Hessian there is not positive
    definite. ``value_and_grad(values, data)``: the potential and its gradient (a list like
    ``values``), jitted (``jax.jit(jax.value_and_grad(potential))``). The mode only has to be close
    (a fraction of a posterior SD): the adaptation goes on from it."""
    shapes = [np.shape(v) for v in start]

    def objective(x):
        value, grad = value_and_grad(unflatten(x, shapes), data)
        return float(value), flatten([np.asarray(g, dtype=float) for g in grad])

    def hessian(x):  # central differences of the exact gradient: exact for a quadratic
        step = 1e-4 * np.maximum(1.0, np.abs(x))
        columns = []
        for j in range(x.size):
            shift = np.zeros(x.size)
            shift[j] = step[j]
            columns.append((objective(x + shift)[1] - objective(x - shift)[1]) / (2 * step[j]))
        return 0.5 * (np.array(columns) + np.array(columns).T)

    x0 = flatten(start).astype(float)
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


@dataclass(frozen=True)
class Start:
    """Where the chains start: u (chains, d), and the map to the model's flattened value variables
    (None: x = u)."""

    u: np.ndarray
    whitening: Whitening | None = None


def laplace_start(value_and_grad, data, points: list[np.ndarray], seed: int) -> Start | None:
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
    if not all(np.isfinite(float(value_and_grad(unflatten(row, shapes), data)[0])) for row in x):
        return None
    return Start(u=u, whitening=Whitening(approx.mode, root))


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


def find_start(
    model: pm.Model, value_and_grad, data, chains: int, seed: int, small: bool, diagonal_metric
) -> tuple[Start, np.ndarray]:
    """(start, inverse mass): the Laplace-whitened start of a ``small`` model (unit metric), else
    PyMC's jittered points with ``diagonal_metric()`` (or the unit metric). ``value_and_grad``: as
    :func:`laplace`'s."""

    def value(values):
        return float(value_and_grad(values, data)[0])

    points = jittered_initial_points(model, chains, seed, value)
    start = laplace_start(value_and_grad, data, points, seed) if small else None
    inverse_mass = np.ones(sum(v[0].size for v in points))
    if start is None:
        start = Start(u=np.concatenate([v.reshape(chains, -1) for v in points], axis=1))
        if (metric := diagonal_metric()) is not None:
            inverse_mass = metric
    return start, inverse_mass


def chain_starts(value_and_grad, data, u0: np.ndarray, shapes, transform) -> tuple:
    """Each chain's start for :func:`bayesmix.nuts.programs.nuts_program`: u0 (chains, d), the
    potential there (chains,) and its gradient with respect to u (chains, d)."""
    energies, gradients = zip(*(value_and_grad(unflatten(x, shapes), data) for x in to_x(u0, transform)))
    grad = np.stack([flatten([np.asarray(g) for g in gradient]) for gradient in gradients])
    return u0, np.array([float(e) for e in energies]), grad if transform is None else transform.gradient_in_u(grad)
