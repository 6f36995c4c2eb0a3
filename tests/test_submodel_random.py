"""Random effects in zi= and dispersion= formulas (issue 21): several linear predictors, each with
its own blocks, in both engines.

The Laplace fits are checked against glmmTMB (zero inflation and hurdle, Newton-polished optima)
and, for random effects in the dispersion formula, which glmmTMB 1.1.5 refuses ("no random effects
allowed in dispersion term"), against a TMB template (tests/data/r/disp_random.cpp) that equals
glmmTMB to 4e-11 without that random effect. References: tests/data/r/submodel_random_references.R;
provenance in tests/data/PROVENANCE.md.
"""

import functools
import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import bayesmix
from bayesmix.exact.glmm import _joint_terms, glmm_problem, laplace_objective

DATA = Path(__file__).parent / "data"

# case -> (data file, formula, family, submodel formulas)
CASES = {
    "salamanders_zip_zi_random": (
        "salamanders.csv",
        "count ~ spp + mined + (1 | site)",
        "zero_inflated_poisson",
        {"zi": "~ mined + (1 | site)"},
    ),
    # several local optima of the Laplace deviance: guards the optimiser's start and its restarts
    "salamanders_zinb_zi_spp_random": (
        "salamanders.csv",
        "count ~ spp + mined + (1 | site)",
        "zero_inflated_negativebinomial",
        {"zi": "~ spp + (1 | site)"},
    ),
    "zi_random_sim_hurdle_poisson": ("zi_random_sim.csv", "y ~ x + (1 | g)", "hurdle_poisson", {"zi": "~ x + (1 | g)"}),
    "disp_random_sim_gaussian": ("disp_random_sim.csv", "y ~ x + (1 | g)", "gaussian", {"dispersion": "~ z + (1 | g)"}),
    "disp_random_sim_nbinom2": (
        "disp_random_sim_nb.csv",
        "y ~ x + (1 | g)",
        "negativebinomial",
        {"dispersion": "~ z + (1 | g)"},
    ),
}


def reference(case: str):
    ref = json.loads((DATA / f"{case}.json").read_text())
    file, formula, family, submodels = CASES[case]
    data = pd.read_csv(DATA / file)
    for column, levels in ref["factor_levels"].items():
        data[column] = pd.Categorical(data[column].astype(str), categories=[str(v) for v in levels])
    return bayesmix.Model(formula, data, family=family, **submodels), ref["newton_polish"]


@functools.cache
def fitted(case: str):
    """(model, fit, reference) of a case, fitted once per test process."""
    model, target = reference(case)
    return model, model.fit("ml" if model.family.name == "gaussian" else "laplace"), target


def r_name(name: str) -> str:
    return "(Intercept)" if name == "Intercept" else name.replace("[", "").replace("]", "")


@pytest.mark.parametrize("case", list(CASES))
def test_laplace_matches_the_reference(case):
    model, fit, target = fitted(case)
    assert fit.converged
    assert fit.loglik == pytest.approx(target["logLik"], rel=1e-9)
    role = next(iter(model.design.submodels))
    for ours, theirs in ((fit.fixef, target["fixef"]["cond"]), (fit.submodels[role], target["fixef"][role[:4]])):
        estimates = dict(zip(map(r_name, ours.index), ours.estimate))
        ses = dict(zip(map(r_name, ours.index), ours.se))
        for name, value, se in zip(theirs["names"], theirs["estimate"], theirs["se"]):
            assert estimates[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name
            assert ses[name] == pytest.approx(se, rel=2e-4), name
    cond = next(v for v in fit.varcorr if "predictor" not in v)
    sub = next(v for v in fit.varcorr if v.get("predictor") == role)
    assert cond["sd"][0] == pytest.approx(target["re_sd"]["cond"], rel=1e-4)
    assert sub["sd"][0] == pytest.approx(target["re_sd"][role[:4]], rel=1e-4)


def test_zero_inflation_modes_predictions_and_contract(tmp_path):
    """The zi block's conditional modes are glmmTMB's; predict(kind="zi") is expit of the zi
    predictor with them (the population level for a new site); the JSON carries zi's varcorr and ranef."""
    model, fit, target = fitted("salamanders_zip_zi_random")
    theirs = target["ranef"]["zi"]["site"]
    ours = fit.ranef["zi|site"].xs("Intercept", level="term").reindex(theirs["levels"])
    np.testing.assert_allclose(ours["condval"], theirs["condval"]["(Intercept)"], rtol=1e-4, atol=1e-5)
    data = model.design.data
    zi = fit.submodels["zi"]["estimate"]
    modes = ours["condval"].reindex(data["site"].astype(str)).to_numpy()
    eta = zi["Intercept"] + zi["mined[no]"] * (data["mined"].astype(str) == "no").to_numpy() + modes
    np.testing.assert_allclose(fit.predict(kind="zi"), expit(eta), rtol=1e-10)
    new = data.iloc[:3].assign(site="a new site")
    np.testing.assert_allclose(
        fit.predict(new, kind="zi", allow_new_levels=True), expit(eta[:3] - modes[:3]), rtol=1e-10
    )
    mean = fit.predict()
    count = fit.predict(kind="mean", re_form="population")
    assert np.all(mean > 0) and not np.allclose(mean, count)
    contract = json.loads(json.dumps(fit.to_dict()))
    assert contract["zi"]["varcorr"][0]["group"] == "site"
    assert contract["zi"]["varcorr"][0]["sd"][0] == pytest.approx(target["re_sd"]["zi"], rel=1e-4)
    assert set(contract["zi"]["ranef"]) == {"site"} and set(contract["ranef"]) == {"site"}
    assert [v["group"] for v in contract["varcorr"]] == ["site"]  # the mean's blocks only
    assert "Zero inflation: ~ mined + (1 | site)" in fit.summary()
    assert list(bayesmix.varcorr(fit).group) == ["site", "zi|site"]
    population = fit.predict(data.drop(columns="site"), re_form="population", kind="zi")  # no grouping column needed
    np.testing.assert_allclose(population, expit(eta - modes), rtol=1e-10)
    fit.save(tmp_path / "fit.nc")
    again = bayesmix.load(tmp_path / "fit.nc")
    np.testing.assert_array_equal(again.predict(kind="zi"), fit.predict(kind="zi"))
    np.testing.assert_array_equal(again.predict(new, allow_new_levels=True), fit.predict(new, allow_new_levels=True))


def test_joint_terms_are_the_derivatives_of_the_zero_inflated_density():
    """Along the zi predictor the inner Newton step uses 5-point differences of the family's
    density; for the zero-inflated Poisson they have a closed form: with pi = expit(zeta) and r the
    posterior probability of a structural zero at y = 0, d/dzeta = r - pi (y = 0) or -pi,
    d2/dzeta2 = r (1 - r) - pi (1 - pi) or -pi (1 - pi), d2/deta dzeta = r (1 - r) mu or 0."""
    model, _ = reference("salamanders_zip_zi_random")
    problem = glmm_problem(model.design, model.family)[0]
    rng = np.random.default_rng(3)
    eta, zeta = rng.normal(0.2, 1.0, model.design.nobs), rng.normal(-0.5, 1.0, model.design.nobs)
    _, gradient, hessian = _joint_terms(problem, [eta, zeta], {})
    y, mu, pi = problem.y, np.exp(eta), expit(zeta)
    r = np.where(y == 0, pi / (pi + (1 - pi) * np.exp(-mu)), 0.0)
    np.testing.assert_allclose(gradient[:, 1], np.where(y == 0, r - pi, -pi), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(hessian[:, 1, 1], r * (1 - r) - pi * (1 - pi), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(hessian[:, 0, 1], r * (1 - r) * mu, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(hessian[:, 1, 0], hessian[:, 0, 1])


def test_nuts_agrees_with_laplace_and_names_every_prior():
    model, fit, _ = fitted("zi_random_sim_hurdle_poisson")
    assert {"sd_zi_g", "hu_Intercept", "hu_x", "sd_g"} <= set(model.priors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = model.sample(draws=400, tune=400, chains=2, random_seed=2, progressbar=False)
    post = idata.posterior
    for name in fit.fixef.index:
        draws = post["beta"].sel(coef=name)
        assert abs(float(draws.mean()) - fit.fixef.estimate[name]) < 2 * float(draws.std()), name
    for name, value in fit.submodels["zi"]["estimate"].items():
        draws = post["hu_beta"].sel(hu_coef=name)
        assert abs(float(draws.mean()) - value) < 2 * float(draws.std()), name
    sd = post["sd_zi_g"]
    zi_sd = next(v["sd"][0] for v in fit.varcorr if v.get("predictor") == "zi")
    assert abs(float(sd.mean()) - zi_sd) < 2 * float(sd.std())
    assert post["re_zi_g"].dims == ("chain", "draw", "g__level", "zi_g__term")
    contract = model.to_dict()
    assert contract["zi"]["varcorr"][0]["group"] == "g" and "g" in contract["zi"]["ranef"]
    hu = model.predict(kind="zi", inplace=False)
    assert float(hu.min()) > 0 and float(hu.max()) < 1
    by_group = hu.mean(("chain", "draw")).to_pandas().groupby(model.design.data["g"].to_numpy(), observed=True)
    assert by_group.mean().std() > 0.05  # the hurdle probability varies by group through its random effect


def test_submodel_blocks_need_their_own_names():
    data = pd.read_csv(DATA / "zi_random_sim.csv").assign(zi_g=lambda d: d["g"])
    with pytest.raises(bayesmix.BayesmixError, match="share the name 'zi_g'"):
        bayesmix.Model("y ~ x + (1 | zi_g)", data, family="zero_inflated_poisson", zi="~ (1 | g)")


def test_sampled_gaussian_dispersion_model_reports_its_sigma_by_row():
    """A gaussian model whose sigma a dispersion formula predicts has no scalar sigma: the NUTS
    summary and contract report the formula (its SD per group) and sigma null, not a KeyError."""
    model, _, _ = fitted("disp_random_sim_gaussian")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.sample(draws=60, tune=60, chains=1, random_seed=1, progressbar=False)
    contract = json.loads(json.dumps(model.to_dict()))
    assert contract["sigma"] is None and contract["dispersion"]["varcorr"][0]["group"] == "g"
    assert "dispersion model (sigma, log link)" in model.summary()


def test_one_factor_in_two_predictors_is_factored_level_by_level():
    """site's blocks in the mean and in zi are one 2 x 2 block per site in the factorisation (no
    dense Schur complement over zi's sites); the deviance and its exact gradient are unchanged."""
    model, _ = reference("salamanders_zip_zi_random")
    problem = glmm_problem(model.design, model.family)[0]
    assert problem.first_terms == 2
    size = problem.layout.n_theta + problem.X.shape[1] + sum(problem.auxiliary_sizes)
    x = np.random.default_rng(5).normal(0.0, 0.5, size)
    x[: problem.layout.n_theta] = [0.3, 0.8]
    unmerged = replace(problem, first_order=None, first_terms=1)
    merged_value, merged_gradient = laplace_objective(problem)(x)
    plain_value, plain_gradient = laplace_objective(unmerged)(x)
    assert merged_value == pytest.approx(plain_value, rel=1e-12)
    np.testing.assert_allclose(merged_gradient, plain_gradient, rtol=1e-7, atol=1e-8)
