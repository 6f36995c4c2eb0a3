"""Known covariances between a grouping factor's levels (``cov={"species": A}``, brms's
``gr(species, cov = A)``, lme4qtl's relmat) against lme4 fits with the term's Zt replaced by
(Z L)', L L' = A (tests/data/known_cov_references.json, tests/data/r/known_cov_references.R):
REML, ML and Laplace; NUTS agrees with the exact fit; bad matrices are refused with the fix."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix

DATA = Path(__file__).parent / "data"
REFERENCES = json.loads((DATA / "known_cov_references.json").read_text())
CASES = {
    "gaussian_reml": ("y ~ x + (1 | species)", "gaussian", "reml"),
    "gaussian_ml": ("y ~ x + (1 | species)", "gaussian", "ml"),
    "poisson_laplace": ("count ~ x + (1 | species)", "poisson", "laplace"),
}


@pytest.fixture(scope="module")
def data():
    return pd.read_csv(DATA / "known_cov_sim.csv")


@pytest.fixture(scope="module")
def relatedness():
    return pd.read_csv(DATA / "known_cov_A.csv").set_index("species")


@pytest.mark.parametrize("case", list(CASES))
def test_exact_fits_are_lme4s_with_the_relatedness_matrix(data, relatedness, case):
    formula, family, method = CASES[case]
    reference = REFERENCES["cases"][case]["results"]
    fit = bayesmix.Model(formula, data, family=family, cov={"species": relatedness}).fit(method)
    result = fit.to_dict()
    assert result["logLik"] == pytest.approx(reference["logLik"], rel=1e-9)
    assert result["varcorr"][0]["sd"][0] == pytest.approx(reference["sigma_b"], rel=1e-6)
    assert result["varcorr"][0]["structure"] == "known"
    assert result["ngrps"] == {"species": 30}
    np.testing.assert_allclose(result["fixef"]["estimate"], reference["fixef"]["values"], atol=1e-6)
    if family == "gaussian":
        assert result["sigma"] == pytest.approx(reference["sigma"], rel=1e-6)
        np.testing.assert_allclose(result["fixef"]["se"], reference["fixef_se"], rtol=1e-5)
    blups = fit.ranef["species"]["condval"].to_numpy()  # the levels' effects b = L u, level order
    np.testing.assert_allclose(blups, reference["blups"]["b"], atol=1e-5)
    np.testing.assert_allclose(fit.predict(), reference["fitted"], rtol=1e-6)


def test_identity_matrix_is_the_ordinary_random_intercept(data):
    """With A = I the levels are independent: the fit is lme4's (1 | species)."""
    levels = sorted(data["species"].unique())
    identity = pd.DataFrame(np.eye(len(levels)), index=levels, columns=levels)
    known = bayesmix.Model("y ~ x + (1 | species)", data, cov={"species": identity}).fit("reml").to_dict()
    plain = bayesmix.Model("y ~ x + (1 | species)", data).fit("reml").to_dict()
    assert known["logLik"] == pytest.approx(plain["logLik"], rel=1e-9)
    check = REFERENCES["cases"]["gaussian_identity_check"]
    assert known["logLik"] == pytest.approx(check["lmer"]["logLik"], rel=1e-9)


@pytest.fixture(scope="module")
def extended(relatedness):
    """A over the 30 species and spNew, a species without data at position 1.1 of the
    simulation's exponential kernel (range 0.5): the fit is the same, A's extra level left out."""
    positions = np.array(REFERENCES["data"]["species_positions"])
    row = np.exp(-np.abs(positions - 1.1) / 0.5)
    levels = [*relatedness.index, "spNew"]
    A = np.block([[relatedness.to_numpy(), row[:, None]], [row[None, :], np.ones((1, 1))]])
    return pd.DataFrame(A, index=levels, columns=levels)


def test_nuts_agrees_with_the_exact_fit(data, extended):
    """Posterior means of sigma and the fixed effects within two posterior SDs of the REML fit's
    estimates, and the species' SD of its (the sampler draws s, the effects through L). A species
    of A without data is drawn from its conditional given the others' effects: near the exact
    fit's BLUP, and less certain than a species with data."""
    model = bayesmix.Model("y ~ x + (1 | species)", data, cov={"species": extended})
    fit = model.fit("reml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = model.sample(draws=400, tune=400, chains=2, random_seed=1, progressbar=False)
    post = idata.posterior
    assert "cor_species" not in post
    for draws, estimate in [
        (post["sigma"], fit.sigma),
        (post["beta"].sel(coef="x"), fit.fixef.loc["x", "estimate"]),
        (post["beta"].sel(coef="Intercept"), fit.fixef.loc["Intercept", "estimate"]),
        (post["sd_species"].isel(species__term=0), fit.varcorr[0]["sd"][0]),
    ]:
        assert abs(float(draws.mean()) - estimate) < 2 * float(draws.std())
    rows = data.head(2).assign(species=["spNew", "sp15"], x=0.0)
    draws = model.predict(idata, data=rows, kind="link", allow_new_levels=True, random_seed=1, inplace=False)
    draws = draws.to_numpy().reshape(-1, 2)
    exact = fit.predict(rows, kind="link", allow_new_levels=True)
    assert np.all(np.abs(draws.mean(axis=0) - exact) < 2 * draws.std(axis=0))
    assert draws[:, 0].std() > draws[:, 1].std()


def test_bad_matrices_are_refused(data, relatedness):
    def model(cov, formula="y ~ x + (1 | species)"):
        return bayesmix.Model(formula, data, cov=cov)

    with pytest.raises(bayesmix.BayesmixError, match="DataFrame whose index and columns"):
        model({"species": relatedness.to_numpy()})
    with pytest.raises(bayesmix.BayesmixError, match="lacks the data's level"):
        model({"species": relatedness.iloc[1:, 1:]})
    with pytest.raises(bayesmix.BayesmixError, match="not positive definite"):
        model({"species": relatedness * 0 + 1})
    asymmetric = relatedness.copy()
    asymmetric.iloc[0, 1] += 0.1
    with pytest.raises(bayesmix.BayesmixError, match="symmetric"):
        model({"species": asymmetric})
    with pytest.raises(bayesmix.BayesmixError, match="groups no"):
        model({"genus": relatedness})
    with pytest.raises(bayesmix.BayesmixError, match=r"write \(1 \| species\)"):
        model({"species": relatedness}, "y ~ x + (x | species)")
    import dask.dataframe as dd  # a test dependency

    with pytest.raises(bayesmix.BayesmixError, match="pandas DataFrame"):
        bayesmix.Model("y ~ x + (1 | species)", dd.from_pandas(data, npartitions=2), cov={"species": relatedness})
    subset = data[data["species"] != "sp30"]  # extra levels in A: their marginal is the submatrix
    fit = bayesmix.Model("y ~ x + (1 | species)", subset, cov={"species": relatedness}).fit()
    assert fit.to_dict()["ngrps"] == {"species": 29}


def test_a_species_of_A_without_data_is_predicted_through_A(data, relatedness):
    """An exact fit predicts a species A covers but the data lack with its BLUP, the covariance of
    its effect with the data times V^-1 (y - X beta) (the joint normal's conditional mean); a
    species A lacks is refused (a sampled model's draws: test_nuts_agrees_with_the_exact_fit)."""
    seen = data[data["species"] != "sp30"]
    fit = bayesmix.Model("y ~ x + (1 | species)", seen, cov={"species": relatedness}).fit("reml")
    new = data[data["species"] == "sp30"].head(3)
    with pytest.raises(bayesmix.BayesmixError, match="allow_new_levels"):
        fit.predict(new)
    s, sigma = fit.varcorr[0]["sd"][0], fit.sigma
    levels = sorted(seen["species"].unique())
    Z = (seen["species"].to_numpy()[:, None] == np.array(levels)[None, :]).astype(float)
    V = s**2 * Z @ relatedness.loc[levels, levels].to_numpy() @ Z.T + sigma**2 * np.eye(len(seen))
    beta = fit.fixef["estimate"]
    residual = seen["y"].to_numpy() - beta["Intercept"] - beta["x"] * seen["x"].to_numpy()
    blup = s**2 * relatedness.loc[["sp30"], levels].to_numpy() @ Z.T @ np.linalg.solve(V, residual)
    expected = beta["Intercept"] + beta["x"] * new["x"].to_numpy() + blup[0]
    np.testing.assert_allclose(fit.predict(new, allow_new_levels=True), expected, rtol=1e-6)
    other = relatedness.rename(index={"sp30": "spX"}, columns={"sp30": "spX"})
    fit_other = bayesmix.Model("y ~ x + (1 | species)", seen, cov={"species": other}).fit("reml")
    with pytest.raises(bayesmix.BayesmixError, match="does not cover"):
        fit_other.predict(new, allow_new_levels=True)


def test_brms_spelling_gr_with_cov(data, relatedness):
    """brms's (1 | gr(species, cov = A)) with the matrix passed under its name, cov={"A": A}, is
    the same model; gr(species) alone is (1 | species); a named matrix not given is refused."""
    written = bayesmix.Model("y ~ x + (1 | gr(species, cov = A))", data, cov={"A": relatedness}).fit()
    keyed = bayesmix.Model("y ~ x + (1 | species)", data, cov={"species": relatedness}).fit()
    assert written.loglik == keyed.loglik
    plain = bayesmix.Model("y ~ x + (1 | gr(species))", data).fit()
    assert plain.loglik == bayesmix.Model("y ~ x + (1 | species)", data).fit().loglik
    for cov in (None, {"B": relatedness}):
        with pytest.raises(bayesmix.BayesmixError, match=r"cov=\{'A': A\}"):
            bayesmix.Model("y ~ x + (1 | gr(species, cov = A))", data, cov=cov)
    with pytest.raises(bayesmix.BayesmixError, match="gr\\(g, cov = A\\)"):
        bayesmix.Model("y ~ x + (1 | gr(species, by = f))", data)


def test_glmm_block_is_centred_on_the_intercept(data, relatedness):
    """In a GLMM whose species carry much information the automatic choice centres the known
    block, each species' effect on the intercept they add up to (the non-centred sampler moves the
    intercept against the common part of the related effects: bulk ESS 39 of 1,000 here)."""
    import arviz as az

    model = bayesmix.Model("count ~ x + (1 | species)", data, family="poisson", cov={"species": relatedness})
    assert model.resolve_parameterization("auto") == {"species": "centered"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = model.sample(draws=500, tune=500, chains=2, random_seed=3, progressbar=False)
    assert float(az.ess(idata.posterior["beta"].sel(coef="Intercept").values)) > 400
    fit = model.fit("laplace")
    draws = idata.posterior["beta"].sel(coef="Intercept")
    assert abs(float(draws.mean()) - fit.fixef.loc["Intercept", "estimate"]) < 2 * float(draws.std())
