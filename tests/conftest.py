"""Fixtures shared across test files.

JAX is configured here, before any test module imports it: bayesmix.configure_jax() asks XLA for
one CPU device per core (parallel chains) and turns on JAX's persistent compilation cache, which it
can only do before JAX starts (bayesmix does it when a sampler first runs; test_accelerator_path.py
imports jax first, and without this the whole session ran chains sequentially and recompiled every
model: 13.6 minutes instead of about 7).
"""

import warnings

import pytest

import bayesmix

bayesmix.configure_jax()


@pytest.fixture(scope="session")
def sleep_nuts():
    """(data, model): sleepstudy, ``(Days | Subject)``, a short default NUTS run (2 chains x 200,
    seed 5), for tests that need a posterior to compute from, not a converged one. Tests must not
    change ``model.idata`` in ways others would see (predict with ``inplace=False``)."""
    data = bayesmix.load_dataset("sleepstudy")
    model = bayesmix.Model("Reaction ~ Days + (Days | Subject)", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.sample(draws=200, tune=200, chains=2, random_seed=5, progressbar=False)
    return data, model
