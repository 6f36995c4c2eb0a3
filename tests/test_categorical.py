"""Unordered categorical responses (issue 22): ``family="categorical"``, brms's multinomial logit
with the formula repeated for every non-reference category, and brms's ``(1 | p | g)`` for effects
correlated across categories. The probabilities and derivatives against their definitions, the
response's coding and the errors a user meets, the Laplace fit against a TMB template
(tests/data/r/categorical_references.R, provenance in tests/data/PROVENANCE.md), the sampler
against the Laplace fit, predictions, files and the JSON contract."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix import categorical

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def choices() -> pd.DataFrame:
    return pd.read_csv(DATA / "categorical_sim.csv")


def test_probabilities_draws_and_the_sampler_graph():
    """Softmax with the reference at 0, draws that follow it, and the PyTensor log-probability equal
    to numpy's."""
    import pytensor
    import pytensor.tensor as pt

    rng = np.random.default_rng(1)
    names = ("mub", "muc")
    params = {"mub": rng.normal(size=30), "muc": rng.normal(size=30)}
    p = categorical.probabilities(params, names)
    expected = np.exp(np.c_[np.zeros(30), params["mub"], params["muc"]])
    np.testing.assert_allclose(p, expected / expected.sum(axis=1, keepdims=True), rtol=1e-12)
    y = rng.integers(0, 3, 30)
    Y, B, C = pt.dvector(), pt.dvector(), pt.dvector()
    graph = pytensor.function([Y, B, C], categorical.pt_log_probability(Y, [B, C]))
    np.testing.assert_allclose(graph(y.astype(float), params["mub"], params["muc"]), np.log(p[np.arange(30), y]))
    many = {"mub": np.full(200_000, 0.3), "muc": np.full(200_000, -0.4)}
    codes = categorical.draw(many, names, np.random.default_rng(2)).astype(int)
    np.testing.assert_allclose(np.bincount(codes) / len(codes), categorical.probabilities(many, names)[0], atol=4e-3)


def test_draws_in_chunks_are_the_draws_in_one_piece(monkeypatch):
    rng = np.random.default_rng(3)
    params = {"mub": rng.normal(size=(40, 25)), "muc": rng.normal(size=(40, 25))}
    whole = categorical.draw(params, ("mub", "muc"), np.random.default_rng(4))
    monkeypatch.setattr(categorical, "DRAW_CHUNK", 3 * 25 * 7)  # 7 draws a chunk
    np.testing.assert_array_equal(categorical.draw(params, ("mub", "muc"), np.random.default_rng(4)), whole)


def test_joint_derivatives_against_differences():
    """The Laplace engine's gradient, Hessian and third derivatives over the category predictors."""
    rng = np.random.default_rng(5)
    etas = [rng.normal(size=12) for _ in range(3)]
    y = rng.integers(0, 4, 12)
    ll, gradient, hessian = categorical.joint_terms(y, etas)
    third = categorical.joint_third(etas)
    h = 1e-5
    for j in range(3):
        up = categorical.joint_terms(y, [e + h * (k == j) for k, e in enumerate(etas)])
        down = categorical.joint_terms(y, [e - h * (k == j) for k, e in enumerate(etas)])
        np.testing.assert_allclose((up[0] - down[0]) / (2 * h), gradient[:, j], atol=1e-9)
        np.testing.assert_allclose((up[1] - down[1]) / (2 * h), hessian[:, :, j], atol=1e-9)
        np.testing.assert_allclose((up[2] - down[2]) / (2 * h), third[..., j], atol=1e-9)
    np.testing.assert_allclose(ll, np.log(categorical.probabilities(dict(zip("abc", etas)), "abc"))[np.arange(12), y])


def test_levels_reference_and_names(choices):
    """Strings sort (brms's factor levels: the first is the reference), a Categorical keeps its
    order, categorical= sets it; whole-number levels are named as R prints them."""
    model = bayesmix.Model("choice ~ x + (1 | g)", choices, family="categorical")
    assert model.family.params == ("mucar", "mutrain")
    assert model.design.codings.response_levels == ("bus", "car", "train")
    ordered = choices.assign(choice=pd.Categorical(choices.choice, ["train", "car", "bus"]))
    assert bayesmix.Model("choice ~ x", ordered, family="categorical").family.params == ("mucar", "mubus")
    given = bayesmix.Model("choice ~ x", choices, family="categorical", categorical={"choice": ["car", "bus", "train"]})
    assert given.family.params == ("mubus", "mutrain")
    numbers = choices.assign(choice=choices.choice.map({"bus": 1.0, "car": 2.0, "train": 3.0}))
    assert bayesmix.Model("choice ~ x", numbers, family="categorical").family.params == ("mu2", "mu3")
    assert [b.label for b in model.design.all_blocks] == ["mucar_g", "mutrain_g"]
    assert sorted(model.priors) == ["mucar_Intercept", "mucar_x", "mutrain_Intercept", "mutrain_x"] + [
        "sd_mucar_g",
        "sd_mutrain_g",
    ]


def test_a_coefficient_prior_by_its_name_sets_every_category(choices):
    prior = bayesmix.Prior("Normal", mu=0.0, sigma=0.3)
    model = bayesmix.Model("choice ~ x + (1 | g)", choices, family="categorical", priors={"x": prior})
    assert model.priors["mucar_x"] == model.priors["mutrain_x"] == prior
    model = bayesmix.Model("choice ~ x + (1 | g)", choices, family="categorical", priors={"b": prior})
    assert model.priors["mucar_x"] == prior and model.priors["mucar_Intercept"] != prior


@pytest.mark.parametrize(
    "change, kwargs, fragment",
    [
        (lambda d: d[d.choice != "train"], {}, "use family='bernoulli'"),
        (lambda d: d, {"categorical": {"choice": ["bus", "car", "train", "plane"]}}, "no observations"),
        (lambda d: d.assign(choice=d.choice.str.replace("train", "ca r")), {}, "the parameter name 'mucar'"),
        (lambda d: d, {"offset": "x"}, "takes no offset"),
        (lambda d: d, {"zi": "~ 1"}, "no zero process"),
    ],
)
def test_bad_input_names_the_fix(choices, change, kwargs, fragment):
    with pytest.raises(bayesmix.BayesmixError, match=fragment):
        bayesmix.Model("choice ~ x + (1 | g)", change(choices), family="categorical", **kwargs)


def test_a_shared_id_needs_a_categorical_response(choices):
    with pytest.raises(bayesmix.BayesmixError, match=r"correlates the effects of a categorical"):
        bayesmix.Model("x ~ 1 + (1 | p | g)", choices)


def test_no_mean_and_no_scaled_residuals(choices):
    fit = bayesmix.Model("choice ~ x + (1 | g)", choices, family="categorical").fit()
    with pytest.raises(bayesmix.BayesmixError, match="no mean"):
        fit.predict()
    with pytest.raises(bayesmix.BayesmixError, match="needs an order"):
        bayesmix.scaled_residuals(fit)


def test_weights_count_rows_as_copies(choices):
    """glmmTMB's prior weights: a row of weight 2 is the row twice (same group), so the Laplace fit
    with weights is the fit of the data with those rows repeated."""
    part = choices[choices.g < 20]
    weights = np.where(part.index % 3 == 0, 2.0, 1.0)
    weighted = bayesmix.Model("choice ~ x + (1 | g)", part.assign(w=weights), family="categorical", weights="w").fit()
    repeated = pd.concat([part, part[weights == 2.0]]).sort_values("g", kind="stable")
    copies = bayesmix.Model("choice ~ x + (1 | g)", repeated, family="categorical").fit()
    assert weighted.loglik == pytest.approx(copies.loglik, rel=1e-9)
    for role in ("mucar", "mutrain"):
        np.testing.assert_allclose(
            weighted.submodels[role]["estimate"], copies.submodels[role]["estimate"], rtol=1e-5, atol=1e-7
        )


def test_json_contract_and_a_file_round_trip(choices, tmp_path):
    model = bayesmix.Model(
        "choice ~ x + (1 | p | g)", choices, family="categorical", categorical={"choice": ["train", "bus", "car"]}
    )
    fit = model.fit()
    contract = fit.to_dict()
    assert contract["fixef"]["names"] == ["mubus_Intercept", "mubus_x", "mucar_Intercept", "mucar_x"]
    categories = contract["categories"]
    assert categories["levels"] == ["train", "bus", "car"] and categories["reference"] == "train"
    assert categories["predictors"]["mucar"]["fixef"]["names"] == ["Intercept", "x"]
    assert [v["terms"] for v in contract["varcorr"]] == [["mubus_Intercept", "mucar_Intercept"]]
    assert categories["shared"]["varcorr"][0]["group"] == "g"
    assert "Categories: train (reference), bus, car" in fit.summary()
    assert json.loads(json.dumps(contract)) == contract
    fit.save(tmp_path / "fit.nc")
    back = bayesmix.load(tmp_path / "fit.nc")
    assert back.family.params == ("mubus", "mucar") and back.loglik == fit.loglik
    new = pd.DataFrame({"x": [-1.0, 0.5], "g": [3, 12345]})
    probabilities = back.predict(new, kind="probs", allow_new_levels=True)
    np.testing.assert_allclose(probabilities, fit.predict(new, kind="probs", allow_new_levels=True))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    population = fit.predict(new.iloc[1:], kind="probs", re_form="population")
    np.testing.assert_allclose(probabilities[1], population[0])  # an unseen level: the population's


def test_cli_fits_a_categorical_model(tmp_path):
    from bayesmix.cli import main

    out = tmp_path / "fit.json"
    argv = ["fit", "--data", str(DATA / "categorical_sim.csv"), "--formula", "choice ~ x + (1 | g)"]
    argv += ["--family", "categorical", "--method", "laplace", "--categorical", "choice=car,bus,train"]
    main([*argv, "--json", str(out), "--quiet"])
    contract = json.loads(out.read_text())
    assert contract["categories"]["reference"] == "car"
    assert contract["fixef"]["names"][0] == "mubus_Intercept"


REFERENCES = ("categorical_sim", "categorical_sim_slope", "categorical_sim_shared")


def _reference(case: str) -> dict:
    return json.loads((DATA / f"{case}.json").read_text())


@pytest.mark.parametrize("case", REFERENCES)
def test_laplace_matches_the_tmb_template(choices, case):
    """logLik within 1e-9 relative, coefficients and SDs within 1e-6, standard errors within 1e-5
    relative, against the TMB template's Laplace fit polished to a gradient below 1e-8 (they agree
    to ~1e-8: the slope case is singular, a correlation at -1, in both)."""
    ref = _reference(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmix.SingularFitWarning)
        fit = bayesmix.Model(ref["formula"], choices, family="categorical").fit()
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-9)
    for role, table in ref["fixef"].items():
        ours = fit.submodels[role].loc[table["names"]]
        np.testing.assert_allclose(ours["estimate"], table["estimate"], atol=1e-6)
        np.testing.assert_allclose(ours["se"], table["se"], rtol=1e-5)
    varcorr = {v["predictor"]: v for v in fit.varcorr}
    for role, block in ref["re"].items():
        ours = varcorr[role]
        assert list(ours["terms"]) == block["terms"]
        np.testing.assert_allclose(ours["sd"], block["sd"], atol=1e-6)
        np.testing.assert_allclose(ours["corr"], block["corr"], atol=1e-5)


@pytest.mark.filterwarnings("ignore:min effective sample size")
def test_nuts_agrees_with_the_laplace_fit(choices):
    """Posterior means within 2 posterior SDs of the Laplace estimates (a flat-ish prior, 800 rows)."""
    ref = _reference("categorical_sim")
    model = bayesmix.Model(ref["formula"], choices, family="categorical")
    idata = model.sample(draws=500, tune=500, chains=2, random_seed=8, progressbar=False)
    post = idata.posterior
    for role, table in ref["fixef"].items():
        draws = post[f"{role}_beta"].values.reshape(-1, len(table["names"]))
        gap = np.abs(draws.mean(axis=0) - np.asarray(table["estimate"])) / draws.std(axis=0)
        assert np.all(gap < 2.0), (role, gap)
        sd = post[f"sd_{role}_g"].values.ravel()
        assert abs(sd.mean() - ref["re"][role]["sd"][0]) < 2.0 * sd.std()
    probabilities = model.predict(kind="probs", inplace=False)
    assert probabilities.dims == ("chain", "draw", "obs", "category")
    np.testing.assert_allclose(probabilities.sum("category"), 1.0)
    drawn = idata.posterior_predictive[model.design.spec.response.expr].values
    assert set(np.unique(drawn)) == {1, 2, 3} and drawn.dtype == np.int64  # az.plot_ppc counts them
    assert idata.observed_data[model.design.spec.response.expr].dtype == np.int64
