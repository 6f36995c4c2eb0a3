"""Laplace fits of the gamma (log link), beta (logit) and nbinom1 families, with and without a
dispersion formula, against glmmTMB 1.1.5's optimum Newton-polished on its own objective
(tests/data/r/family_references.R; provenance in tests/data/PROVENANCE.md). glmmTMB's dispersion
parameters are ours: Gamma's shape (its sigma is 1 / sqrt(shape)), beta's and nbinom1's phi, its
dispformula on the log of each."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix.families import get_family

DATA = Path(__file__).parent / "data"
CASES = {
    "sleep_gamma_log": ("gamma", None),
    "sleep_gamma_dispformula": ("gamma", "~ Days"),
    "salamanders_nbinom1": ("nbinom1", None),
    "salamanders_nbinom1_dispformula": ("nbinom1", "~ mined"),
    "beta_sim_logit": ("beta", None),
}


def case_data(ref: dict) -> pd.DataFrame:
    name = ref["data_file"].split("/")[-1]
    data = bayesmix.load_dataset("sleepstudy") if name == "sleepstudy.csv" else pd.read_csv(DATA / name)
    for column, levels in (ref.get("factor_levels") or {}).items():
        data[column] = pd.Categorical(data[column].astype(str), categories=[str(v) for v in levels])
    return data


def r_name(name: str) -> str:
    return "(Intercept)" if name == "Intercept" else name.replace("[", "").replace("]", "")


@pytest.mark.parametrize("case", list(CASES))
def test_laplace_matches_glmmtmb(case):
    ref = json.loads((DATA / f"{case}.json").read_text())
    family, dispersion = CASES[case]
    target = ref["newton_polish"]
    fit = bayesmix.Model(ref["formula"], case_data(ref), family=family, dispersion=dispersion).fit("laplace")
    assert fit.loglik == pytest.approx(target["logLik"], rel=1e-10)
    ours = {r_name(n): (e, s) for n, e, s in zip(fit.fixef.index, fit.fixef.estimate, fit.fixef.se)}
    for name, value, se in zip(*(target["fixef"]["cond"][k] for k in ("names", "estimate", "se"))):
        assert ours[name][0] == pytest.approx(value, rel=2e-5, abs=1e-6), name
        assert ours[name][1] == pytest.approx(se, rel=2e-4), name
    np.testing.assert_allclose(fit.varcorr[0]["sd"], np.atleast_1d(target["re_sd"]["cond"]), rtol=2e-5)
    if dispersion is None:
        expected = target["family_params"]
        name = "shape" if family == "gamma" else "phi"
        assert fit.family_params[name] == pytest.approx(expected[name], rel=2e-5)
    else:  # glmmTMB's dispformula is on the log of the same parameter
        table, theirs = fit.submodels["dispersion"], target["fixef"]["disp"]
        np.testing.assert_allclose(table.estimate, theirs["estimate"], rtol=2e-5)
        np.testing.assert_allclose(table.se, theirs["se"], rtol=2e-4)


def test_nbinom1_is_the_mean_variance_line():
    """nbinom1's phi scales the variance linearly in the mean, Var = mu (1 + phi): simulated
    responses show it (and the family's moments say it)."""
    family = get_family("nbinom1")
    rng = np.random.default_rng(0)
    eta = np.full(200_000, np.log(4.0))
    draws = family.draw(eta, {"phi": 1.5}, None, rng)
    mean, variance = family.moments(eta[:1], {"phi": 1.5})
    assert draws.mean() == pytest.approx(mean[0], rel=0.01) and mean[0] == pytest.approx(4.0)
    assert draws.var() == pytest.approx(variance[0], rel=0.03) and variance[0] == pytest.approx(10.0)
