"""GLMMs from a Dask DataFrame: Laplace fits from sums over the kept partitions equal the in-memory fits."""

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix import BayesmixError
from tests.helpers import on_local_cluster


def plain(data: pd.DataFrame) -> pd.DataFrame:
    return data.astype({c: str for c in data.columns if isinstance(data[c].dtype, pd.CategoricalDtype)})


def simulated(n=3000, seed=3) -> pd.DataFrame:
    """A bernoulli and a count response, two crossed grouping factors, a badly scaled predictor
    (the optimiser's column transform), an exposure offset and prior weights."""
    rng = np.random.default_rng(seed)
    g, h = rng.integers(0, 50, n), rng.integers(0, 8, n)
    x1, x2 = rng.normal(size=n), rng.normal(size=n) * 50
    effects = rng.multivariate_normal([0, 0], [[0.8, 0.2], [0.2, 0.3]], size=50)
    eta = -0.3 + (0.8 + effects[g, 1]) * x1 + 0.01 * x2 + effects[g, 0] + rng.normal(size=8)[h] * 0.5
    exposure = rng.uniform(0.5, 2.0, n)
    return pd.DataFrame(
        {
            "y": rng.binomial(1, 1 / (1 + np.exp(-eta))),
            "count": rng.poisson(exposure * np.exp(eta / 2)),
            "exposure": exposure,
            "w": rng.integers(1, 4, n).astype(float),
            "x1": x1,
            "x2": x2,
            "g": [f"g{v:02d}" for v in g],
            "h": [f"h{v}" for v in h],
        }
    )


CASES = [
    ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial", {}),
    ("simulated", "y ~ x1 + x2 + (x1 | g) + (1 | h)", "bernoulli", {}),
    ("simulated", "count ~ x1 + x2 + offset(log(exposure)) + (1 | g) + (1 | h)", "poisson", {"weights": "w"}),
]


def data_of(name):
    return plain(bayesmix.load_dataset(name)) if name == "cbpp" else simulated()


def assert_same_fit(fit, reference, tolerance):
    for table in ("estimate", "se"):
        np.testing.assert_allclose(fit.fixef[table], reference.fixef[table], rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(fit.theta, reference.theta, rtol=tolerance, atol=tolerance)
    assert fit.loglik == pytest.approx(reference.loglik, rel=1e-12)
    for ours, theirs in zip(fit.ranef.values(), reference.ranef.values()):
        np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), atol=tolerance * 10)


@pytest.mark.parametrize("name, formula, family, extra", CASES, ids=["cbpp", "crossed-bernoulli", "poisson-offset"])
def test_laplace_from_partitions_equals_the_in_memory_fit(name, formula, family, extra):
    data = data_of(name)
    reference = bayesmix.Model(formula, data, family=family, **extra).fit()
    for partitions in (1, 2, 5):
        with dask.config.set(scheduler="synchronous"):
            model = bayesmix.Model(
                formula, dd.from_pandas(data, npartitions=partitions, sort=False), family=family, **extra
            )
            fit = model.fit()
        assert model.from_statistics and fit.nobs == reference.nobs
        assert_same_fit(fit, reference, 1e-8)
    new = data.head(5)
    np.testing.assert_allclose(fit.predict(new), reference.predict(new), rtol=1e-8)


def test_profile_intervals_from_partitions():
    data = data_of("cbpp")
    formula = CASES[0][1]
    reference = bayesmix.Model(formula, data, family="binomial").fit().confint(method="profile")
    with dask.config.set(scheduler="synchronous"):
        fit = bayesmix.Model(formula, dd.from_pandas(data, npartitions=3, sort=False), family="binomial").fit()
        table = fit.confint(method="profile")
    np.testing.assert_allclose(table.to_numpy(), reference.to_numpy(), atol=1e-6)


def test_what_a_dask_glmm_refuses():
    data = dd.from_pandas(simulated(), npartitions=2, sort=False)
    model = bayesmix.Model("y ~ x1 + (1 | g)", data, family="bernoulli")
    with pytest.raises(BayesmixError, match="NUTS for a bernoulli GLMM from a Dask DataFrame.*fit\\('laplace'\\)"):
        model.sample()
    with pytest.raises(BayesmixError, match="nAGQ=1"):
        model.fit("agq")
    with pytest.raises(BayesmixError, match="family='negativebinomial' is not one"):
        bayesmix.Model("count ~ x1 + (1 | g)", data, family="negativebinomial")
    with pytest.raises(BayesmixError, match="Every row of the response 'y' is a failure"):
        zeros = simulated().assign(y=0)
        bayesmix.Model("y ~ x1 + (1 | g)", dd.from_pandas(zeros, npartitions=2), family="bernoulli").fit()
    with pytest.raises(BayesmixError, match="bernoulli"):  # the response's support, checked where the rows are
        bad = simulated().assign(y=lambda d: d.y * 2)
        bayesmix.Model("y ~ x1 + (1 | g)", dd.from_pandas(bad, npartitions=2), family="bernoulli")
    with pytest.raises(BayesmixError, match="cbind\\(successes, failures\\) instead"):
        bayesmix.Model("y ~ x1 + (1 | g)", data, family="binomial", weights="w")
    with pytest.raises(BayesmixError, match="fixed-effects matrix is not in memory"):
        model.fit().predict()


def test_logistic_glmm_on_a_local_cluster(tmp_path):
    frame = simulated(n=8000, seed=5)
    formula, calls = "y ~ x1 + x2 + (1 | g)", []

    def fit(ddf):
        return bayesmix.Model(formula, ddf, family="bernoulli", progress=lambda *c: calls.append(c)).fit()

    result = on_local_cluster(tmp_path, frame, 2000, fit)
    # as each partition was encoded and kept (Dask may merge the 4 row groups' small partitions)
    total = calls[0][1]
    assert sorted(calls) == [(done, total) for done in range(1, total + 1)]
    assert_same_fit(result, bayesmix.Model(formula, frame, family="bernoulli").fit(), 1e-8)
