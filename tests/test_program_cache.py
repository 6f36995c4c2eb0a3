"""Stored JAX programs: the fingerprint that names them, and fits served from them."""

import subprocess
import sys
import warnings

import jax
import numpy as np
import pytest

import bayesmix
from bayesmix.nuts import density, program_cache, programs
from tests.helpers import gaussian_nuts_problem

FORMULA = "Reaction ~ Days + (Days | Subject)"
PRIORS = {  # fixed: the default priors are scaled by the data
    "Intercept": bayesmix.Prior("Normal", mu=250.0, sigma=100.0),
    "b": bayesmix.Prior("Normal", mu=0.0, sigma=50.0),
    "sd_Subject": bayesmix.Prior("HalfNormal", sigma=50.0),
    "sigma": bayesmix.Prior("HalfNormal", sigma=50.0),
}


def fingerprint(data, priors=PRIORS, parameterization="marginal"):
    model = bayesmix.Model(FORMULA, data, priors=priors).pymc_model(parameterization)
    return density.log_density(model).fingerprint


def test_fingerprint_names_the_computation_not_the_data():
    """The data and the priors' parameters are arguments of the log density: new values, same
    program, so a refit on new data of the same shape, whose default priors are scaled by that
    data, compiles nothing. Another prior distribution is another program."""
    data = bayesmix.load_dataset("sleepstudy")
    moved = data.assign(Reaction=data["Reaction"] * 1.5 + np.random.default_rng(0).normal(0, 20, len(data)))
    wider = {**PRIORS, "sigma": bayesmix.Prior("HalfNormal", sigma=51.0)}
    other = {**PRIORS, "sigma": bayesmix.Prior("Exponential", lam=0.02)}
    assert fingerprint(data) == fingerprint(data)  # two models built apart
    assert fingerprint(moved) == fingerprint(data)
    assert fingerprint(moved, None) == fingerprint(data, None)  # default priors, scaled by each dataset
    for parameterization in ("marginal", "noncentered", "centered"):
        assert fingerprint(data, wider, parameterization) == fingerprint(data, PRIORS, parameterization)
        assert fingerprint(data, other, parameterization) != fingerprint(data, PRIORS, parameterization)
    assert fingerprint(data, parameterization="noncentered") != fingerprint(data)
    assert fingerprint(data.iloc[:-10]) != fingerprint(data)  # fewer rows: other shapes in the graph's types


FINGERPRINTS = """
import bayesmix
from bayesmix.nuts import density
sleep = bayesmix.load_dataset("sleepstudy")
cbpp = bayesmix.load_dataset("cbpp")
models = [
    bayesmix.Model("Reaction ~ Days + (Days | Subject)", sleep).pymc_model("marginal"),
    bayesmix.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial").pymc_model(
        "noncentered"
    ),
]
print(" ".join(density.log_density(model).fingerprint for model in models))
"""


def test_fingerprint_is_the_same_in_another_process():
    """A stored program is found by a later process only if the fingerprint does not depend on the
    process (names made from counters, Python's per-process string hashing)."""

    def run():
        done = subprocess.run([sys.executable, "-c", FINGERPRINTS], capture_output=True, text=True, check=True)
        return done.stdout.split()

    first, second = run(), run()
    assert len(first) == 2 and first == second


def sample(data, priors=PRIORS, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bayesmix.Model(FORMULA, data, priors=priors)
        defaults = dict(draws=60, tune=60, chains=2, random_seed=4, progressbar=False, posterior_predictive=False)
        return model.sample(**{**defaults, **options})


@pytest.fixture
def stored_programs(tmp_path, monkeypatch):
    """An empty store; counts the programs traced for export (the work a stored program saves)."""
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(tmp_path))
    traced = []
    export = program_cache._export

    def counting(program, example_args):
        traced.append(program)
        return export(program, example_args)

    monkeypatch.setattr(program_cache, "_export", counting)
    yield tmp_path / program_cache.FOLDER, traced
    jax.config.update("jax_compilation_cache_dir", before)


def test_a_refit_runs_the_stored_programs_and_draws_the_same(stored_programs):
    """The NUTS program, the gradient and the map to the model's variables are stored at the first
    fit; the second traces none of them and, run through the same exported form, draws the same."""
    folder, traced = stored_programs
    data = bayesmix.load_dataset("sleepstudy")
    first = sample(data)
    assert len(traced) == 3 and len(list(folder.glob("*.stablehlo"))) == 3
    second = sample(data)
    assert len(traced) == 3 and len(list(folder.glob("*.stablehlo"))) == 3
    np.testing.assert_array_equal(first.posterior["sd_Subject"], second.posterior["sd_Subject"])


def test_a_refit_with_other_prior_values_runs_the_stored_programs_with_those_values(stored_programs, tmp_path):
    """The priors' parameters are the programs' arguments: a fit whose sigma prior is 50x tighter
    (HalfNormal(0.5) against a residual SD of ~25) traces nothing new and draws what the same fit
    traced into an empty store draws, sigma pulled well below the first fit's."""
    folder, traced = stored_programs
    data = bayesmix.load_dataset("sleepstudy")
    tight_priors = {**PRIORS, "sigma": bayesmix.Prior("HalfNormal", sigma=0.5)}
    loose = sample(data)
    tight = sample(data, tight_priors)
    assert len(traced) == 3
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "empty"))
    traced_afresh = sample(data, tight_priors)
    assert len(traced) == 6
    np.testing.assert_array_equal(tight.posterior["sigma"], traced_afresh.posterior["sigma"])
    assert float(tight.posterior["sigma"].mean()) < 0.6 * float(loose.posterior["sigma"].mean())


def test_an_unreadable_stored_program_is_traced_again(stored_programs):
    folder, traced = stored_programs
    data = bayesmix.load_dataset("sleepstudy")
    first = sample(data)
    for path in folder.glob("*.stablehlo"):
        path.write_bytes(path.read_bytes()[:100])  # cut short, as by a full disk
    second = sample(data)
    assert len(traced) == 6
    np.testing.assert_array_equal(first.posterior["sd_Subject"], second.posterior["sd_Subject"])


def test_a_run_with_a_progress_bar_is_stored_too(stored_programs):
    """With a progress bar the run is two programs, the start and a segment of iterations, with the
    bar drawn between segments (not by host callbacks inside the program, which no later process
    could call): both are stored, and the draws are those of the run without a bar."""
    folder, traced = stored_programs
    data = bayesmix.load_dataset("sleepstudy")
    first = sample(data, progressbar=True)
    assert len(traced) == 4  # the start, the segment, the gradient, the map to the model's variables
    again = sample(data, progressbar=True)
    assert len(traced) == 4 and len(list(folder.glob("*.stablehlo"))) == 4
    np.testing.assert_array_equal(first.posterior["sd_Subject"], again.posterior["sd_Subject"])
    quiet = sample(data)
    np.testing.assert_allclose(first.posterior["sd_Subject"], quiet.posterior["sd_Subject"], rtol=1e-6)


@pytest.mark.parametrize("method", ["parallel", "sequential", "vectorized"])
def test_a_stored_nuts_program_draws_what_the_traced_one_draws(stored_programs, method):
    """However the chains run (one device each, in turn, batched), the program read back from the
    store is the program: the same draws as the traced one, up to rounding."""
    folder, traced = stored_programs
    potential, args = gaussian_nuts_problem(3, [1.0, 4.0])
    how = programs.Chains(2, 100, 50, 0.8, method, progressbar=False)
    program = programs.nuts_program(potential, [(2,)], how)
    traced_draws = program_cache.compile_program(program, args)(*args)[0]
    key = program_cache.program_key("test", method)
    stored = [program_cache.compile_program(program, args, key=key)(*args)[0] for _ in range(2)]
    assert len(traced) == 1 and len(list(folder.glob("*.stablehlo"))) == 1  # stored once, then read
    np.testing.assert_array_equal(stored[0], stored[1])
    np.testing.assert_allclose(stored[0], traced_draws, rtol=1e-9, atol=1e-9)
