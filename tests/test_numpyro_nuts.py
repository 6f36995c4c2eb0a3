"""numpyro's start: the Laplace approximation (mode, inverse Hessian) and the whitened coordinates."""

import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayesmix
from bayesmix.nuts import numpyro_driver, programs
from bayesmix.nuts import start as nuts_start
from bayesmix.nuts.program_cache import compile_program
from tests.helpers import gaussian_nuts_problem


def test_laplace_of_a_gaussian_is_its_mean_and_covariance():
    rng = np.random.default_rng(0)
    root = np.tril(rng.normal(size=(4, 4))) + 3 * np.eye(4)
    scales = np.diag([1e-3, 1e-1, 1.0, 3.0])  # posterior SDs far apart, as log(sigma) and an SD's log
    covariance = scales @ (root @ root.T / 9) @ scales
    precision, mean = np.linalg.inv(covariance), np.array([1.0, -2.0, 0.5, 3.0])

    def potential(parts, data):  # two value variables, shapes (3,) and (); no data
        x = jnp.concatenate([parts[0], parts[1][None]]) - mean
        return 0.5 * x @ precision @ x

    # the samplers run in double precision (PyMC's JAX backend turns it on); this potential is plain
    # JAX, so the test turns it on itself rather than rely on an earlier test having imported PyMC
    with jax.enable_x64(True):
        approx = nuts_start.laplace(jax.jit(jax.value_and_grad(potential)), [np.zeros(3), np.zeros(())])
    np.testing.assert_allclose(approx.mode, mean, rtol=1e-6, atol=1e-6 * np.sqrt(np.diag(covariance)).max())
    np.testing.assert_allclose(approx.covariance, covariance, rtol=1e-5)


def test_laplace_refuses_a_run_away_mode():
    """A density without a mode (the log-SD of a singular fit running to -infinity) is not approximated."""

    def laplace(potential, start):
        return nuts_start.laplace(jax.jit(jax.value_and_grad(potential)), start)

    assert laplace(lambda parts, data: jnp.exp(parts[0]).sum(), [np.zeros(1)]) is None
    assert laplace(lambda parts, data: jnp.sum(parts[0] ** 2) / 1e4, [np.zeros(2)]) is None  # flat


def test_collapsed_model_starts_from_the_laplace_approximation():
    model = bayesmix.Model("Yield ~ 1 + (1 | Batch)", bayesmix.load_dataset("Dyestuff"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = model.sample(draws=200, tune=200, chains=2, random_seed=5, progressbar=False)
        again = model.sample(draws=200, tune=200, chains=2, random_seed=5, progressbar=False)
    assert first.posterior.attrs["bayesmix_start"] == "laplace"  # larger models: tests/test_collapsed.py
    np.testing.assert_array_equal(first.posterior["sd_Batch"], again.posterior["sd_Batch"])
    draws = first.posterior["sigma"].values
    assert not np.array_equal(draws[0], draws[1])  # chains start apart
    assert int(first.sample_stats.diverging.sum()) == 0


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="counts the process's memory maps (Linux)")
def test_repeated_fits_do_not_accumulate_compiled_programs():
    """Each fit compiles new JAX programs; kept, they cost ~1,000 memory maps a fit until the process
    dies at vm.max_map_count (about 60 fits)."""

    def maps():
        return sum(1 for _ in open("/proc/self/maps"))

    data = bayesmix.load_dataset("Dyestuff")
    counts = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in range(3):
            frame = data.assign(Yield=data.Yield + np.random.default_rng(seed).normal(0, 1, len(data)))
            bayesmix.Model("Yield ~ 1 + (1 | Batch)", frame).sample(
                draws=30, tune=30, chains=2, random_seed=seed, progressbar=False, posterior_predictive=False
            )
            counts.append(maps())
    assert counts[2] - counts[0] < 200, counts


def test_nuts_program_gives_each_chain_the_same_draws_however_chains_run():
    """One chain per device, chains one after another, or batched: the same kernel on the same key
    and start, so the same draws (up to rounding); the small-model compiler options change rounding
    only; the data are an argument: one compiled program serves new data."""

    def potential(values, data):  # x ~ N(data[0], diag(data[1]))
        return 0.5 * jnp.sum((values[0] - data[0]) ** 2 / data[1])

    keys = jax.random.split(jax.random.PRNGKey(3), 2)

    def start(data):  # at u = 0: the potential and its gradient
        energy, grad = jax.vmap(jax.value_and_grad(lambda u: potential([u], data)))(jnp.zeros((2, 2)))
        return jnp.zeros((2, 2)), energy, grad

    def program(method, data, options=None):
        how = programs.Chains(2, 100, 50, 0.8, method, progressbar=False)
        example = (keys, start(data), jnp.ones(2), (data,))
        return compile_program(programs.nuts_program(potential, [(2,)], how), example, options)

    def draws(compiled, data):
        collected = compiled(keys, start(data), jnp.ones(2), (data,))
        assert all(np.shape(leaf)[:2] == (2, 50) for leaf in collected)
        return np.asarray(collected[0])

    data = [jnp.array([1.0, -2.0]), jnp.array([1.0, 4.0])]
    parallel = program("parallel", data)
    reference = draws(parallel, data)
    assert not np.array_equal(reference[0], reference[1])
    for method in ("sequential", "vectorized"):
        np.testing.assert_allclose(draws(program(method, data), data), reference, rtol=1e-9, atol=1e-9)
    small = program("parallel", data, numpyro_driver.SMALL_MODEL_COMPILER_OPTIONS)
    np.testing.assert_allclose(draws(small, data), reference, rtol=1e-9, atol=1e-9)
    other = [jnp.array([3.0, 0.5]), jnp.array([2.0, 0.25])]
    np.testing.assert_array_equal(draws(parallel, other), draws(program("parallel", other), other))
    assert np.abs(draws(parallel, other).mean(axis=(0, 1)) - np.array([3.0, 0.5])).max() < 0.5


def test_new_data_of_the_same_shapes_compile_nothing_new():
    """Every program of a numpyro fit takes the data (and the start) as arguments, so a fit on new
    data of the same shapes, with the same priors (a simulation study's replications: the default
    priors are scaled by the data, constants of the program), is served by JAX's compilation
    caches: no XLA compilation at all."""
    from jax import monitoring

    data = bayesmix.load_dataset("sleepstudy")
    other = data.assign(Reaction=data["Reaction"] + np.random.default_rng(0).normal(0, 20, len(data)))
    priors = {
        "Intercept": bayesmix.Prior("Normal", mu=250.0, sigma=100.0),
        "b": bayesmix.Prior("Normal", mu=0.0, sigma=50.0),
        "sd_Subject": bayesmix.Prior("HalfNormal", sigma=50.0),
        "sigma": bayesmix.Prior("HalfNormal", sigma=50.0),
    }
    events = []

    def listener(event, **kwargs):
        if event.startswith("/jax/compilation_cache/cache_"):
            events.append(event.rsplit("_", 1)[-1])  # "hits" or "misses"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = bayesmix.Model("Reaction ~ Days + (Days | Subject)", data, priors=priors)
        first.sample(draws=100, tune=100, chains=2, random_seed=1, progressbar=False)
        monitoring.register_event_listener(listener)
        try:
            second = bayesmix.Model("Reaction ~ Days + (Days | Subject)", other, priors=priors)
            idata = second.sample(draws=100, tune=100, chains=2, random_seed=1, progressbar=False)
        finally:
            monitoring.unregister_event_listener(listener)
    assert idata.posterior.attrs["bayesmix_start"] == "laplace"
    assert "hits" in events and "misses" not in events  # the persistent cache was asked, and had all


def test_segment_lengths_divide_the_run():
    assert programs.segment_length(2000) == 100
    assert programs.segment_length(1200) == 60
    assert programs.segment_length(60) == 3
    assert programs.segment_length(1999) == 1  # a prime: one iteration a segment
    assert programs.segment_length(7) == 1


# (batched chains too, but there the two programs round differently, and NUTS's discrete choices
# carry rounding differences up to different, equally valid draws within ~100 iterations)
@pytest.mark.parametrize("method", ["parallel", "sequential"])
def test_segments_continue_the_adaptation_where_it_stopped(method):
    """The run cut into segments (a progress bar between them) draws what the single program draws:
    the state carries numpyro's windowed adaptation across segments."""
    potential, args = gaussian_nuts_problem(5, [0.01, 9.0])  # scales far apart
    how = programs.Chains(2, 150, 90, 0.8, method, progressbar=False)
    whole = compile_program(programs.nuts_program(potential, [(2,)], how), args)(*args)
    init, segment, length = programs.nuts_segments(potential, [(2,)], how)
    assert length == 12
    states = compile_program(init, args)(*args)
    step = compile_program(segment, (states, args[3]))
    parts = []
    for _ in range(240 // length):
        states, collected = step(states, args[3])
        parts.append([np.asarray(leaf) for leaf in collected])
    for leaf, pieces in zip(whole, zip(*parts)):
        np.testing.assert_allclose(np.concatenate(pieces, axis=1)[:, 150:], leaf, rtol=1e-9, atol=1e-9)


def test_laplace_gives_up_where_the_hessian_is_not_finite():
    """A potential whose gradient turns NaN next to the start (a centred funnel's neck): the
    trust-region step meets a non-finite Hessian, and the Laplace start is skipped, not a crash."""
    from bayesmix.nuts.start import laplace

    def value_and_grad(values, data):
        x = values[0]
        if np.any(np.abs(x - 1.0) > 1e-9):
            return 0.5 * float(x @ x), [np.full_like(x, np.nan)]
        return 0.5 * float(x @ x), [x]

    assert laplace(value_and_grad, [np.ones(3)]) is None
