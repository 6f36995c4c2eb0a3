"""Ctrl-C during sample(): the draws made so far come back, marked, where the sampler can keep them.

A real SIGINT is sent to this process from PyMC's per-draw callback after a chosen number of
iterations (tuning included), which is what pressing Ctrl-C does between two NUTS steps.
"""

import os
import signal
import warnings

import arviz as az
import numpy as np
import pymc
import pytest
import xarray as xr

import bayesmix
from bayesmix.nuts.run import mark_interruption

TUNE, DRAWS = 50, 50


def small_model():
    return bayesmix.Model("Yield ~ 1 + (1 | Batch)", bayesmix.load_dataset("Dyestuff"))


@pytest.fixture
def ctrl_c_after(monkeypatch):
    """Make pm.sample send SIGINT to this process after ``n`` iterations (sequential chains)."""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    original = pymc.sample

    def arm(n: int):
        count = {"iterations": 0}

        def sample(**kwargs):
            inner = kwargs.get("callback")

            def callback(trace, draw):
                count["iterations"] += 1
                if count["iterations"] == n:
                    os.kill(os.getpid(), signal.SIGINT)
                if inner is not None:
                    inner(trace=trace, draw=draw)

            return original(**{**kwargs, "callback": callback, "cores": 1})

        monkeypatch.setattr(pymc, "sample", sample)

    return arm


def sample(model, chains):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        idata = model.sample(draws=DRAWS, tune=TUNE, chains=chains, random_seed=3, sampler="pymc", progressbar=False)
    interrupted = [str(w.message) for w in caught if issubclass(w.category, bayesmix.SamplingInterruptedWarning)]
    return idata, interrupted


def test_ctrl_c_keeps_the_draws_so_far_and_stops_the_later_chains(ctrl_c_after):
    """Ctrl-C 20 draws after tuning in the first of two chains. PyMC's sequential sampler catches it
    and would start the second chain; bayesmix stops that one too and keeps the 20 draws."""
    ctrl_c_after(TUNE + 20)
    model = small_model()
    idata, interrupted = sample(model, chains=2)
    assert interrupted == [
        "Sampling was interrupted (Ctrl-C): kept 20 of 50 draws in 1 of 2 chain(s), 20 draws in all "
        "(idata.posterior.attrs['bayesmix_interrupted'] = 1). Summaries and diagnostics describe these draws only; "
        "run sample() again for the full number."
    ]
    assert idata.posterior.attrs["bayesmix_interrupted"] == 1 and idata.posterior.attrs["bayesmix_draws_kept"] == 20
    assert (idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]) == (1, 20)
    assert np.all(np.isfinite(idata.posterior["beta"]))
    assert idata.posterior["re_Batch"].shape == (1, 20, 6, 1)  # the collapsed model's effects, for those draws
    assert idata.log_likelihood["Yield"].shape == (1, 20, 30)
    assert "Random effects" in model.summary()  # the partial result works like a full one
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # our handler is gone again


def test_ctrl_c_while_tuning_keeps_nothing_and_says_so(ctrl_c_after):
    ctrl_c_after(10)
    with pytest.warns(bayesmix.SamplingInterruptedWarning):
        with pytest.raises(KeyboardInterrupt, match="before the first draw after the 50 tuning steps; no draws"):
            small_model().sample(draws=DRAWS, tune=TUNE, chains=1, random_seed=3, sampler="pymc", progressbar=False)


@pytest.mark.parametrize("sampler", ["numpyro", "blackjax"])
def test_jax_samplers_say_they_keep_nothing(monkeypatch, sampler):
    """Ctrl-C inside the one compiled JAX call that runs every chain (numpyro through
    bayesmix.nuts.numpyro_driver, blackjax through PyMC's JAX sampling function)."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    if sampler == "numpyro":
        monkeypatch.setattr(bayesmix.nuts.numpyro_driver, "sample", interrupted)
    else:
        import pymc.sampling.jax  # a submodule pymc does not import itself: alone, this test must

        monkeypatch.setattr(pymc.sampling.jax, "sample_jax_nuts", interrupted)
    with pytest.warns(bayesmix.SamplingInterruptedWarning):
        with pytest.raises(KeyboardInterrupt, match=f"sampler='{sampler}' keeps no draws .* sampler='pymc'"):
            small_model().sample(draws=DRAWS, tune=TUNE, chains=2, random_seed=3, sampler=sampler, progressbar=False)


def nutpie_like(counts, draws=DRAWS):
    """An InferenceData as nutpie returns it after Ctrl-C: chains stopped early are padded with NaN."""
    chains = len(counts)
    values = np.random.default_rng(0).normal(size=(chains, draws, 3))
    for chain, n in enumerate(counts):
        values[chain, n:] = np.nan
    coords = {"chain": np.arange(chains), "draw": np.arange(draws)}
    posterior = xr.Dataset({"beta": (("chain", "draw", "coef"), values)}, coords=coords)
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((chains, draws), dtype=bool))}, coords=coords)
    warmup = xr.Dataset(
        {"beta": (("chain", "draw", "coef"), np.zeros((chains, 7, 3)))}, coords={"chain": coords["chain"]}
    )
    return az.InferenceData(posterior=posterior, sample_stats=stats, warmup_posterior=warmup)


def test_nan_padded_chains_keep_their_complete_draws():
    with pytest.warns(bayesmix.SamplingInterruptedWarning, match="kept 30 of 50 draws in 2 of 3 chain"):
        idata = mark_interruption(nutpie_like([30, 4, 45]), draws=DRAWS, chains=3, tune=TUNE)
    assert list(idata.posterior.chain.values) == [0, 2]  # 2 x 30 draws beat 1 x 45 and 3 x 4
    assert idata.sample_stats.sizes == {"chain": 2, "draw": 30}
    assert idata.warmup_posterior.sizes["draw"] == 7  # warmup is not cut to the posterior's length
    assert not np.any(np.isnan(idata.posterior["beta"]))
    assert idata.posterior.attrs["bayesmix_draws_kept"] == 60
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete run passes through untouched
        full = nutpie_like([DRAWS, DRAWS])
        assert mark_interruption(full, draws=DRAWS, chains=2, tune=TUNE) is full
    with pytest.warns(bayesmix.SamplingInterruptedWarning), pytest.raises(KeyboardInterrupt, match="no draws"):
        mark_interruption(nutpie_like([0, 0]), draws=DRAWS, chains=2, tune=TUNE)
