"""The memory guard: a model needing an array above the budget is refused before the array exists.

The budget is set small in each test (nothing large is allocated); the message must name the
array, its shape and size, the budget, how to raise it and what to change in the model.
"""

import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix import BayesmixError, memory


@pytest.fixture
def budget():
    """Set the budget (GB) for one test; restored afterwards."""
    yield bayesmix.set_memory_budget
    bayesmix.set_memory_budget(None)


def many_levels(n: int = 2000, levels: int = 500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "f": [f"L{i}" for i in rng.permutation(np.arange(n) % levels)],  # every level present
            "g": [f"G{i}" for i in rng.permutation(np.arange(n) % 40)],
        }
    )


def test_budget_default_env_and_setter(monkeypatch, budget):
    monkeypatch.delenv(memory.ENV_VAR, raising=False)
    assert bayesmix.memory_budget() == 4_000_000_000
    monkeypatch.setenv(memory.ENV_VAR, "0.5")
    assert bayesmix.memory_budget() == 500_000_000
    budget(2)  # the setter wins over the environment
    assert bayesmix.memory_budget() == 2_000_000_000
    budget(None)
    assert bayesmix.memory_budget() == 500_000_000
    for bad in (0, -1, "lots", float("nan")):
        with pytest.raises(BayesmixError, match="memory budget"):
            budget(bad)
    monkeypatch.setenv(memory.ENV_VAR, "lots")
    with pytest.raises(BayesmixError, match="BAYESMIX_MEMORY_BUDGET_GB"):
        bayesmix.memory_budget()


def test_a_fixed_factor_with_many_levels_is_refused_before_formulae_builds_x(budget):
    data = many_levels()
    budget(2000 * 300 * 8 / 1e9)  # room for 300 columns; f gives 500
    model_class = bayesmix.Model  # imported before the window: only the model's own memory is traced
    tracemalloc.start()
    with pytest.raises(BayesmixError) as error:
        model_class("y ~ x + f + (1 | g)", data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    message = str(error.value)
    assert "The fixed-effects matrix X would be 2,000 x 502 doubles = 8.0 MB" in message
    assert "above the memory budget of 4.8 MB" in message
    assert "bayesmix.set_memory_budget(gb)" in message and "BAYESMIX_MEMORY_BUDGET_GB" in message
    assert "use a random effect (1 | f) instead of a fixed factor 'f' with 500 levels" in message.lower()
    assert peak < 4_000_000  # refused from the level counts: X (8 MB) was never built
    budget(1)
    model = bayesmix.Model("y ~ x + f + (1 | g)", data)  # within the budget it builds
    assert model.design.X.shape == (2000, 501)  # formulae's reduced coding: the estimate is an upper bound


def test_interactions_and_c_calls_count_their_levels(budget):
    from bayesmix.design.encode import estimate_columns

    data = many_levels(levels=50).assign(h=lambda d: np.arange(len(d)) % 7)
    levels = {"f": tuple(sorted(data.f.unique())), "g": tuple(sorted(data.g.unique()))}
    assert estimate_columns("x * f", data, levels) == (1 + 1 + 50 + 50, "f", 50)
    assert estimate_columns("0 + f:g", data, levels)[0] == 50 * 40
    assert estimate_columns("C(h) + scale(x)", data, levels) == (1 + 7 + 1, "h", 7)
    budget(2000 * 1000 * 8 / 1e9)
    with pytest.raises(BayesmixError, match=r"2,000 x 2,000 doubles"):
        bayesmix.Model("y ~ 0 + f:g + (1 | g)", data)


def test_a_factor_slope_with_many_levels_is_refused(budget):
    budget(2000 * 100 * 8 / 1e9)
    with pytest.raises(BayesmixError, match=r"term matrix of \(f \| g\) would be 2,000 x 501 doubles") as error:
        bayesmix.Model("y ~ 1 + (f | g)", many_levels())
    assert "use (1 | g:f)" in str(error.value)


def test_exact_fit_dense_parts_are_checked(budget):
    # crossed factors: f (500 levels) is the first block, g's 40 levels and X make the r x r part
    model = bayesmix.Model("y ~ x + (1 | f) + (1 | g)", many_levels())
    budget(40 * 40 * 8 / 1e9)  # too small for r = 40 + 2 + 1 = 43
    with pytest.raises(BayesmixError, match=r"dense Schur complement .* would be 43 x 43 doubles"):
        model.fit("reml")
    budget(43 * 43 * 8 / 1e9 * 1.01)  # r x r fits, the r x q1 coupling block (43 x 500) does not
    with pytest.raises(BayesmixError, match=r"coupling block .* would be 43 x 500 doubles"):
        model.fit("reml")


def test_laplace_dense_parts_are_checked(budget):
    """Z Lambda stays sparse and the largest factor's levels are factored one by one; the dense parts
    are the other blocks' Schur complement and H^{-1}'s coupling block (40 x 500 here)."""
    data = many_levels()
    data["y"] = (data.y > 0).astype(float)
    model = bayesmix.Model("y ~ x + (1 | f) + (1 | g)", data, family="bernoulli")
    budget(40 * 400 * 8 / 1e9)
    with pytest.raises(BayesmixError, match=r"coupling block of H\^\{-1\} .* would be 40 x 500 doubles"):
        model.fit("laplace")


def test_nuts_draws_are_checked_before_sampling(budget):
    data = bayesmix.load_dataset("sleepstudy")
    model = bayesmix.Model("Reaction ~ Days + (Days | Subject)", data)
    # non-centred: beta 2, chol 3, z 36, sigma 1, sd 2, cor 1, re 36 = 81 values per draw
    budget(4 * 1000 * 40 * 8 / 1e9)
    with pytest.raises(BayesmixError, match=r"posterior draws .* would be 4 x 1,000 x 81 doubles"):
        model.sample(sampler="pymc", parameterization="noncentered", progressbar=False)
    # collapsed: beta 2, chol 3, sigma 1, sd 2, cor 1 sampled (9 fit), re (36) drawn afterwards = 45
    with pytest.raises(BayesmixError, match=r"4 x 1,000 x 45 doubles"):
        model.sample(sampler="pymc", parameterization="marginal", draws=1000, chains=4, progressbar=False)


def test_pointwise_log_likelihood_is_skipped_when_it_does_not_fit(budget):
    from bayesmix.nuts.run import check_memory

    model = bayesmix.Model("Reaction ~ Days + (Days | Subject)", bayesmix.load_dataset("sleepstudy"))
    pm_model = model.pymc_model("noncentered")
    budget(2 * 100 * 100 * 8 / 1e9)  # draws (2 x 100 x 81) fit, the log-likelihood (2 x 100 x 180) does not
    with pytest.warns(bayesmix.BayesmixWarning, match=r"log-likelihood \(2 x 100 x 180 doubles = 288.0 kB\)"):
        assert check_memory(pm_model, draws=100, chains=2, log_likelihood=True) is False
    budget(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_memory(pm_model, draws=100, chains=2, log_likelihood=True) is True


def test_budget_message_numbers_read_naturally(monkeypatch):
    monkeypatch.delenv(memory.ENV_VAR, raising=False)
    assert memory.format_bytes(512e6) == "512.0 MB" and memory.format_bytes(12) == "12 bytes"
    with pytest.raises(BayesmixError) as error:
        memory.check("The fixed-effects matrix X", (1_000_000, 5_000), "Use (1 | f).")
    assert str(error.value).startswith(
        "The fixed-effects matrix X would be 1,000,000 x 5,000 doubles = 40.0 GB, above the memory budget of 4.0 GB"
    )
    assert str(error.value).endswith("raise it). Use (1 | f).")
    memory.check("The fixed-effects matrix X", (1_000_000, 500), "")  # 4.0 GB exactly fits


def test_predictions_are_checked_against_the_budget():
    import arviz as az

    data = bayesmix.load_dataset("sleepstudy")
    model = bayesmix.Model("Reaction ~ Days + (1 | Subject)", data)
    posterior = {"beta": np.zeros((2, 50, 2)), "sigma": np.ones((2, 50)), "sd_Subject": np.ones((2, 50, 1))}
    posterior["re_Subject"] = np.zeros((2, 50, 18, 1))
    idata = az.from_dict(posterior=posterior)
    bayesmix.set_memory_budget(2 * 50 * 180 * 8 / 1e9 * 0.99)  # just below the predictions' size
    try:
        with pytest.raises(BayesmixError, match="The predictions \\(chains x draws x rows\\) would be 2 x 50 x 180"):
            model.predict(idata, inplace=False)
    finally:
        bayesmix.set_memory_budget(None)
    assert model.predict(idata, inplace=False).shape == (2, 50, 180)
