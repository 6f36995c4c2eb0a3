"""The low-rank metric (bayesmix.nuts.low_rank): its estimate from draws and gradients, its map, and NUTS
in its coordinates."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pymc as pm
import pytest

from bayesmix.nuts import low_rank, numpyro_driver, programs
from bayesmix.nuts.low_rank import LowRankMap

# double precision, as the product's JAX sampling runs (pymc's JAX path turns it on): alone, this
# file would otherwise compare float32 gradients with float64 ones
jax.config.update("jax_enable_x64", True)


def correlated_gaussian(d: int, seed: int):
    """A Gaussian's mean and covariance, and two linear functions of x (d, 2): coordinates scaled
    from 1e-2 to 1e2, and two directions spread over all of them (the functions measure them), one
    50 times wider than the rest, one 50 times narrower."""
    rng = np.random.default_rng(seed)
    scales = np.logspace(-2, 2, d)
    spikes = np.linalg.qr(rng.standard_normal((d, 2)))[0]
    inner = np.eye(d) + spikes @ np.diag([49.0, 1 / 50 - 1]) @ spikes.T
    return rng.normal(size=d), scales[:, None] * inner * scales[None, :], spikes / scales[:, None]


def map_jacobian(transform: LowRankMap) -> np.ndarray:
    """d x / d u of the affine map."""
    return np.asarray(jax.jacfwd(transform.to_x)(jnp.zeros(transform.shift.size)))


def condition_in_u(transform: LowRankMap, covariance: np.ndarray) -> float:
    """The condition number of the covariance in the map's coordinates u (1: NUTS's ideal)."""
    inverse = np.linalg.inv(map_jacobian(transform))
    return float(np.linalg.cond(inverse @ covariance @ inverse.T))


def test_estimate_whitens_a_correlated_badly_scaled_gaussian():
    """With exact gradients the estimate is the covariance in the directions it keeps (every
    direction off the diagonal scales by more than the cutoff: the spikes and what they do to the
    scales), leaving a condition number within the cutoff both ways, where the diagonal alone leaves
    the spikes' ~2,500."""
    d = 50
    mean, covariance, _ = correlated_gaussian(d, seed=0)
    draws = np.random.default_rng(1).multivariate_normal(mean, covariance, size=(2, 1000))
    gradients = (draws - mean) @ np.linalg.inv(covariance)  # the potential's: Σ⁻¹ (x - μ)
    estimated = low_rank.estimate(draws, gradients, rank=8)
    assert 2 <= estimated.directions < 8
    assert condition_in_u(estimated, covariance) < low_rank.CUTOFF**2
    diagonal_only = low_rank.estimate(draws, gradients, rank=8, cutoff=np.inf)
    assert diagonal_only.directions == 0
    assert condition_in_u(diagonal_only, covariance) > 1000
    assert np.all(np.abs(estimated.shift - mean) < 4.5 * np.sqrt(np.diag(covariance) / draws[..., 0].size))


def test_estimate_keeps_at_most_rank_directions_and_survives_coordinates_that_never_moved():
    mean, covariance, _ = correlated_gaussian(20, seed=2)
    draws = np.random.default_rng(3).multivariate_normal(mean, covariance, size=(2, 300))
    gradients = (draws - mean) @ np.linalg.inv(covariance)
    assert low_rank.estimate(draws, gradients, rank=1).directions == 1
    draws[:, :, 4] = 1.5  # a coordinate stuck in every draw: no scale to learn
    gradients[:, :, 4] = 0.0
    stuck = low_rank.estimate(draws, gradients, rank=4)
    assert stuck.scale[4] == 1.0
    assert np.all(np.isfinite(stuck.vectors)) and np.all(np.isfinite(stuck.stretch))


def test_map_inverts_and_carries_gradients():
    rng = np.random.default_rng(4)
    d, rank = 7, 3
    vectors = np.linalg.qr(rng.standard_normal((d, 2)))[0]
    transform = LowRankMap(
        rng.normal(size=d),
        np.exp(rng.normal(size=d)),
        np.concatenate([vectors, np.zeros((d, 1))], axis=1),  # padded to the rank
        np.array([3.0, -0.6, 0.0]),
    )
    assert transform.directions == 2 and transform.vectors.shape == (d, rank)
    u = rng.normal(size=(5, d))
    np.testing.assert_allclose(transform.to_u(transform.to_x(u)), u, atol=1e-12)

    def f(x):
        return jnp.sum(jnp.sin(x) * jnp.arange(1.0, d + 1))

    expected = jax.grad(lambda v: f(transform.to_x(v)))(jnp.asarray(u[0]))
    np.testing.assert_allclose(transform.gradient_in_u(np.asarray(jax.grad(f)(transform.to_x(u[0])))), expected)
    identity = low_rank.identity(d, rank)
    np.testing.assert_array_equal(identity.to_x(u), u)  # phase one samples x itself


def test_segment_lengths_divide_both_phases():
    assert programs.segment_length(250, 750) == 50
    assert programs.segment_length(251, 750) == 1  # no common divisor: one iteration a segment


def gaussian_model(mean, covariance) -> pm.Model:
    """x ~ N(mean, covariance) as a PyMC model (its quadratic form: PyMC's MvNormal does not convert to JAX)."""
    precision = np.linalg.inv(covariance)
    with pm.Model() as model:
        x = pm.Flat("x", shape=mean.size)
        pm.Potential("density", -0.5 * (x - mean) @ precision @ (x - mean))
    return model


def sample_gaussian(mean, covariance, progressbar: bool, low_rank_metric: bool = True):
    """numpyro_driver.sample's draws of x ~ N(mean, covariance), 2 chains x 1,000 after 600 tuning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return numpyro_driver.sample(
            gaussian_model(mean, covariance),
            draws=1000,
            tune=600,
            chains=2,
            seed=6,
            target_accept=0.8,
            chain_method="sequential",
            progressbar=progressbar,
            log_likelihood=False,
            diagonal_metric=lambda: None,
            low_rank_metric=low_rank_metric,
        )


@pytest.fixture(scope="module")
def gaussian_draws():
    d = 60  # more than numpyro_driver.WHITEN_MAX: the low-rank metric's two phases
    mean, covariance, spikes = correlated_gaussian(d, seed=5)
    return mean, covariance, spikes, sample_gaussian(mean, covariance, progressbar=False)


def test_nuts_in_the_low_rank_coordinates_samples_the_target(gaussian_draws):
    """The draws, mapped back, have the target's mean and its covariance (in the directions that
    need the metric most: the two spikes and the widest and narrowest coordinates), within Monte
    Carlo error; the metric found the spikes."""
    import arviz as az

    mean, covariance, spikes, idata = gaussian_draws
    kind, directions = idata.posterior.attrs["bayesmix_metric"].split(", ")
    assert kind == "low-rank" and int(directions.split()[0]) >= 2
    assert int(idata.sample_stats.diverging.sum()) == 0
    x = idata.posterior["x"].values  # (chains, draws, d)
    ess = az.ess(idata.posterior)["x"].values
    assert ess.min() > 500
    sd = np.sqrt(np.diag(covariance))
    assert np.all(np.abs(x.mean(axis=(0, 1)) - mean) / sd < 4.5 / np.sqrt(ess))
    for direction in (*spikes.T, np.eye(60)[0], np.eye(60)[-1]):
        projected = x @ direction  # (chains, draws)
        ratio = projected.var() / (direction @ covariance @ direction)
        within = 4.5 * np.sqrt(2 / float(az.ess(az.convert_to_dataset(projected))["x"]))  # its relative error
        assert abs(ratio - 1) < within, (ratio, within)


def test_the_low_rank_metric_can_be_turned_off(gaussian_draws):
    """Without it (a funnel: bayesmix.sampled.FUNNEL_TARGET_ACCEPT), one warmup phase and numpyro's
    diagonal metric, which leaves the spikes of the same target far slower to mix."""
    import arviz as az

    mean, covariance, _, low_rank = gaussian_draws
    idata = sample_gaussian(mean, covariance, progressbar=False, low_rank_metric=False)
    assert idata.posterior.attrs["bayesmix_metric"] == "diagonal"
    assert idata.sample_stats.sizes["draw"] == 1000
    steps = float(idata.sample_stats.n_steps.mean())
    assert steps > 2 * float(low_rank.sample_stats.n_steps.mean()), steps
    assert float(az.ess(idata.posterior)["x"].min()) > 50  # 100 at this seed; 1,500 with the metric


def test_same_seed_same_draws_through_both_phases(gaussian_draws):
    mean, covariance, _, first = gaussian_draws
    again = sample_gaussian(mean, covariance, progressbar=True)
    np.testing.assert_array_equal(first.posterior["x"].values, again.posterior["x"].values)


def test_segments_keep_every_thin_th_iteration_after_the_warmup_across_segment_boundaries():
    from tqdm.auto import tqdm

    length = 5

    def segment(first, args):  # the state is the next iteration's index; every field holds the index
        indices = np.arange(first, first + length)[None, :]
        return first + length, (indices,) * 8  # _collected's 7 fields and the gradient

    runner = programs.Segments(init=None, segment=segment, length=length)
    with tqdm(disable=True) as bar:
        state, kept = runner.advance(0, None, 20, keep_after=7, bar=bar, thin=3, gradients=True)
        assert state == 20 and len(kept) == 8
        np.testing.assert_array_equal(kept[0], [[7, 10, 13, 16, 19]])
        _, draws = runner.advance(0, None, 20, keep_after=7, bar=bar)
        assert len(draws) == 7  # no gradients
        np.testing.assert_array_equal(draws[0], [np.arange(7, 20)])
