"""GLMMs on the JAX samplers: on one accelerator the chains run vectorised (tested on the CPU by
making JAX report a GPU, so the code path and its draws are exercised without one). Same seed, same
draws holds for numpyro whatever the chain method (tests/test_sampling.py)."""

import warnings

import jax
import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix.nuts.run import jax_chain_method


def test_chain_method_follows_the_devices(monkeypatch):
    monkeypatch.setattr(jax, "local_device_count", lambda: 4)
    assert jax_chain_method(4) == "parallel"  # a device per chain (bayesmix asks XLA for one per core)
    monkeypatch.setattr(jax, "local_device_count", lambda: 1)
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert jax_chain_method(4) == "sequential"
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert jax_chain_method(4) == "vectorized"  # one accelerator: all chains as one batched computation


@pytest.fixture(scope="module")
def logistic():
    rng = np.random.default_rng(4)
    subjects, items = 40, 12
    s, i = np.meshgrid(np.arange(subjects), np.arange(items), indexing="ij")
    s, i = s.ravel(), i.ravel()
    x = rng.normal(size=s.size)
    eta = -0.3 + 0.8 * x + rng.normal(0, 1.0, subjects)[s] + rng.normal(0, 0.5, items)[i]
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    return pd.DataFrame({"y": y, "x": x, "id": [f"s{v}" for v in s], "item": [f"i{v}" for v in i]})


def test_crossed_logistic_glmm_with_vectorised_chains(monkeypatch, logistic):
    monkeypatch.setattr(jax, "local_device_count", lambda: 1)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    model = bayesmix.Model("y ~ x + (1 | id) + (1 | item)", logistic, family="bernoulli")
    kwargs = dict(draws=100, tune=100, chains=2, random_seed=8, sampler="numpyro", progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = model.sample(**kwargs)
    assert idata.posterior.attrs["bayesmix_chain_method"] == "vectorized"
    assert idata.posterior["beta"].shape == (2, 100, 2) and np.isfinite(idata.posterior["beta"].values).all()
    beta = idata.posterior["beta"].values.reshape(-1, 2)
    assert np.all(np.abs(beta.mean(0) - [-0.3, 0.8]) < 3 * beta.std(0) + 0.1)  # the simulated truth
    assert idata.log_likelihood["y"].shape == (2, 100, len(logistic))
