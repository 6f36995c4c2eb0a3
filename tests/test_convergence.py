"""bayesmix.nuts.convergence gives ArviZ's rank-normalised R-hat and bulk/tail ESS, vectorised."""

import warnings

import arviz as az
import numpy as np
import pytest
from scipy import stats

from bayesmix.nuts.convergence import _average_ranks, ess_bulk, ess_tail, rhat


def autoregressive(rng, chains, draws, k, phi):
    x = np.zeros((chains, draws, k))
    noise = rng.normal(size=(chains, draws, k))
    for t in range(draws):
        x[:, t] = (phi * x[:, t - 1] if t else 0.0) + noise[:, t]
    return x


def cases():
    rng = np.random.default_rng(0)
    with_constant_and_nan = rng.normal(size=(2, 100, 5))
    with_constant_and_nan[:, :, 2] = 1.5
    with_constant_and_nan[0, 5, 3] = np.nan
    return {
        "iid": rng.normal(size=(4, 200, 30)),
        "random walk": autoregressive(rng, 2, 300, 20, 0.95),
        "antithetic, odd draws": autoregressive(rng, 2, 301, 20, -0.6),
        "chains apart": autoregressive(rng, 3, 100, 10, 0.5) + np.array([0.0, 0.5, 1.0])[:, None, None],
        "one chain": autoregressive(rng, 1, 100, 10, 0.3),
        "five draws": rng.normal(size=(2, 5, 10)),
        "three draws": rng.normal(size=(2, 3, 4)),
        "ties": rng.integers(0, 3, size=(2, 200, 10)).astype(float),
        "heavy tails": rng.standard_cauchy(size=(4, 250, 10)),
        "constant and NaN columns": with_constant_and_nan,
    }


@pytest.mark.parametrize("name", list(cases()))
def test_same_numbers_as_arviz(name):
    x = cases()[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = az.convert_to_dataset({"v": x})
        expected = {
            "rhat": az.rhat(data)["v"].values,
            "bulk": az.ess(data, method="bulk")["v"].values,
            "tail": az.ess(data, method="tail")["v"].values,
        }
    for label, got in (("rhat", rhat(x)), ("bulk", ess_bulk(x)), ("tail", ess_tail(x))):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected[label]), err_msg=label)
        np.testing.assert_allclose(got, expected[label], rtol=1e-10, err_msg=label)


def test_average_ranks_are_scipys():
    rng = np.random.default_rng(1)
    for values in (
        rng.normal(size=(100, 7)),
        rng.integers(0, 4, size=(100, 7)).astype(float),
        np.ones((10, 3)),
        np.c_[rng.normal(size=50), rng.integers(0, 3, 50)],
    ):
        np.testing.assert_array_equal(_average_ranks(values), stats.rankdata(values, method="average", axis=0))
