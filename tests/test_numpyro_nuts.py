"""numpyro's start: the Laplace approximation (mode, inverse Hessian) and the whitened coordinates."""

import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayesmix
from bayesmix import numpyro_nuts


def test_laplace_of_a_gaussian_is_its_mean_and_covariance():
    rng = np.random.default_rng(0)
    root = np.tril(rng.normal(size=(4, 4))) + 3 * np.eye(4)
    scales = np.diag([1e-3, 1e-1, 1.0, 3.0])  # posterior SDs far apart, as log(sigma) and an SD's log
    covariance = scales @ (root @ root.T / 9) @ scales
    precision, mean = np.linalg.inv(covariance), np.array([1.0, -2.0, 0.5, 3.0])

    def potential(parts, data):  # two value variables, shapes (3,) and (); no data
        x = jnp.concatenate([parts[0], parts[1][None]]) - mean
        return 0.5 * x @ precision @ x

    approx = numpyro_nuts.laplace(jax.jit(jax.value_and_grad(potential)), [np.zeros(3), np.zeros(())])
    np.testing.assert_allclose(approx.mode, mean, rtol=1e-6, atol=1e-6 * np.sqrt(np.diag(covariance)).max())
    np.testing.assert_allclose(approx.covariance, covariance, rtol=1e-5)


def test_laplace_refuses_a_run_away_mode():
    """A density without a mode (the log-SD of a singular fit running to -infinity) is not approximated."""

    def laplace(potential, start):
        return numpyro_nuts.laplace(jax.jit(jax.value_and_grad(potential)), start)

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


def test_parallel_chains_is_pmap_with_compiler_options():
    """Our chain method gives pmap's draws (without compiler options: the same program) and one
    chain per device; with the small-model options, the same chains up to rounding."""
    from numpyro.infer import MCMC, NUTS

    def potential(u):
        return 0.5 * jnp.sum((u - jnp.array([1.0, -2.0])) ** 2 / jnp.array([1.0, 4.0]))

    def draws(chain_method):
        mcmc = MCMC(
            NUTS(potential_fn=potential),
            num_warmup=100,
            num_samples=50,
            num_chains=2,
            chain_method=chain_method,
            progress_bar=False,
        )
        mcmc.run(jax.random.split(jax.random.PRNGKey(3), 2), init_params=jnp.zeros((2, 2)))
        return np.asarray(mcmc.get_samples(group_by_chain=True))

    reference = draws("parallel")
    assert reference.shape == (2, 50, 2) and not np.array_equal(reference[0], reference[1])
    np.testing.assert_array_equal(draws(numpyro_nuts.parallel_chains(None)), reference)
    small = draws(numpyro_nuts.parallel_chains(numpyro_nuts.SMALL_MODEL_COMPILER_OPTIONS))
    np.testing.assert_allclose(small, reference, rtol=1e-9, atol=1e-9)
