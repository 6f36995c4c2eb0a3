"""Coverage of known truth: simulated data for every family (60 groups, correlated intercept and
slope), 90 % posterior intervals. Fixed seeds make the test deterministic; the assertion is on the
pooled coverage (a calibrated sampler covers 90 %; fewer than 80 % of ~50 intervals has
probability < 1 % when calibrated) plus a gross-error bound on every single parameter."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import bayesmix
from bayesmix.counts import ZERO_FAMILIES, zero_draws
from bayesmix.densities import DENSITIES
from bayesmix.families import TRIAL_FAMILIES, get_family

N_GROUPS, PER_GROUP = 60, 10
BETA = np.array([0.4, 0.6])
SD = np.array([0.5, 0.3])
CORR = 0.4
FAMILY_PARAMS = {
    "gaussian": {"sigma": 0.8},
    "t": {"sigma": 0.6, "nu": 5.0},
    "negativebinomial": {"alpha": 4.0},
    "gamma": {"shape": 6.0},
    "beta": {"phi": 12.0},
    "bernoulli": {},
    "binomial": {},
    "poisson": {},
    "negativebinomial1": {"phi": 1.5},
    "zero_inflated_poisson": {"zi": 0.3},
    "zero_inflated_negativebinomial": {"alpha": 4.0, "zi": 0.3},
    "hurdle_poisson": {"hu": 0.4},
    "hurdle_negativebinomial": {"alpha": 4.0, "hu": 0.4},
    "truncated_poisson": {},
    "truncated_negativebinomial": {"alpha": 4.0},
    "lognormal": {"sigma": 0.5},
    "exponential": {},
    "weibull": {"shape": 1.5},
    "hurdle_gamma": {"shape": 4.0, "hu": 0.3},
    "hurdle_lognormal": {"sigma": 0.5, "hu": 0.3},
    "betabinomial": {"phi": 10.0},
    "zero_inflated_binomial": {"zi": 0.3},
    "tweedie": {"phi": 1.2, "power": 1.5},
}
TRIALS = 8
# every family with a mean and an intercept; an ordinal model's thresholds replace the intercept and
# a categorical model has a predictor per category: theirs are checked by SBC (benchmarks/sbc.py)
# and against clmm and a TMB template (tests/test_ordinal.py, tests/test_categorical.py)
COVERED = [name for name in bayesmix.FAMILY_NAMES if not get_family(name).category_response]


def simulate(family, seed):
    rng = np.random.default_rng(seed)
    n = N_GROUPS * PER_GROUP
    g = np.repeat(np.arange(N_GROUPS), PER_GROUP)
    x = rng.normal(size=n)
    cov = np.diag(SD) @ np.array([[1, CORR], [CORR, 1]]) @ np.diag(SD)
    b = rng.multivariate_normal(np.zeros(2), cov, size=N_GROUPS)
    eta = BETA[0] + BETA[1] * x + b[g, 0] + b[g, 1] * x
    p = FAMILY_PARAMS[family]
    if family == "gaussian":
        y = eta + rng.normal(0, p["sigma"], n)
    elif family == "t":
        y = eta + p["sigma"] * rng.standard_t(p["nu"], n)
    elif family == "bernoulli":
        y = rng.binomial(1, expit(eta))
    elif family == "binomial":
        y = rng.binomial(TRIALS, expit(eta))
    elif family == "poisson":
        y = rng.poisson(np.exp(eta))
    elif family == "negativebinomial":
        y = rng.poisson(rng.gamma(p["alpha"], np.exp(eta) / p["alpha"]))
    elif family == "negativebinomial1":
        mu = np.exp(eta)
        y = rng.poisson(rng.gamma(mu / p["phi"], p["phi"]))
    elif family in ZERO_FAMILIES:  # the count with its zero process, as bayesmix.counts draws it
        y = zero_draws(family, np.exp(eta), p, rng)
    elif family in DENSITIES:  # as bayesmix.densities draws it, on the family's link
        density = DENSITIES[family]
        mu = {"log": np.exp, "logit": expit, "identity": lambda e: e}[density.link](eta)
        y = density.draw(mu, p, np.full(n, float(TRIALS)) if family in TRIAL_FAMILIES else None, rng)
    elif family == "gamma":
        y = rng.gamma(p["shape"], np.exp(eta) / p["shape"])
    else:
        mu = expit(eta)
        y = rng.beta(mu * p["phi"], (1 - mu) * p["phi"])
    return pd.DataFrame({"y": y.astype(float), "x": x, "n": float(TRIALS), "g": g})


def fit(family, seed):
    formula = "p(y, n) ~ x + (x | g)" if family in TRIAL_FAMILIES else "y ~ x + (x | g)"
    model = bayesmix.Model(formula, simulate(family, seed), family=family)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = model.sample(draws=500, tune=500, chains=2, random_seed=seed, progressbar=False)
    post = idata.posterior
    draws = {
        "Intercept": post["beta"].sel(coef="Intercept"),
        "x": post["beta"].sel(coef="x"),
        "sd_intercept": post["sd_g"].sel(g__term="Intercept"),
        "sd_x": post["sd_g"].sel(g__term="x"),
        "corr": post["cor_g"].sel(g__pair="Intercept__x"),
        **{name: post[name] for name in FAMILY_PARAMS[family]},
    }
    truth = {
        "Intercept": BETA[0],
        "x": BETA[1],
        "sd_intercept": SD[0],
        "sd_x": SD[1],
        "corr": CORR,
        **FAMILY_PARAMS[family],
    }
    rows = []
    for name, d in draws.items():
        values = np.asarray(d).ravel()
        low, high = np.quantile(values, [0.05, 0.95])
        rows.append(
            {
                "family": family,
                "parameter": name,
                "truth": truth[name],
                "mean": values.mean(),
                "sd": values.std(),
                "covered": low <= truth[name] <= high,
            }
        )
    return rows


@pytest.fixture(scope="module")
def coverage():
    rows = [row for i, family in enumerate(COVERED) for row in fit(family, 100 + i)]
    return pd.DataFrame(rows)


def test_pooled_90_percent_coverage(coverage):
    print(coverage.to_string())
    assert len(coverage) >= 45
    assert coverage.covered.mean() >= 0.8, coverage[~coverage.covered]


@pytest.mark.parametrize("family", COVERED)
def test_no_gross_errors(coverage, family):
    rows = coverage[coverage.family == family]
    z = np.abs(rows["mean"] - rows.truth) / rows.sd
    assert z.max() < 5, rows  # gross errors only: nu and sigma of t trade off on one data set
