"""One-sided formulas for a distributional parameter (issue 21): ``zi=`` (glmmTMB's ziformula, brms's
``zi ~ x``) and ``dispersion=`` (dispformula, brms's ``sigma ~ x``), in both engines, against
glmmTMB's fits of Salamanders (tests/data/salamanders_*.json, Newton-polished optima; provenance in
tests/data/PROVENANCE.md)."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmix
from tests.test_zero_counts import salamanders

FORMULA = "count ~ spp + mined + (1 | site)"


def assert_table(table: pd.DataFrame, target: dict, rel: float) -> None:
    ours = dict(zip((r_name(n) for n in table.index), zip(table.estimate, table.se)))
    for name, value, se in zip(target["names"], target["estimate"], target["se"]):
        assert ours[name][0] == pytest.approx(value, rel=rel, abs=1e-6), name
        assert ours[name][1] == pytest.approx(se, rel=10 * rel), name


def r_name(name: str) -> str:
    return "(Intercept)" if name == "Intercept" else name.replace("[", "").replace("]", "")


def test_zi_formula_laplace_matches_glmmtmb():
    data, ref = salamanders("salamanders_zip_ziformula")
    target = ref["newton_polish"]
    model = bayesmix.Model(FORMULA, data, family="zero_inflated_poisson", zi="~ spp + mined")
    fit = model.fit("laplace")
    assert fit.loglik == pytest.approx(target["logLik"], rel=1e-10)
    assert_table(fit.fixef, target["fixef"]["cond"], rel=1e-5)
    assert_table(fit.submodels["zi"], target["fixef"]["zi"], rel=1e-5)
    assert fit.varcorr[0]["sd"][0] == pytest.approx(target["re_sd"]["cond"], rel=1e-5)
    assert "zi" not in fit.family_params  # it varies by row now
    out = fit.to_dict()
    assert out["zi"]["fixef"]["names"] == list(fit.submodels["zi"].index) and out["dispersion"] is None
    assert "zi model (zi, logit link)" in fit.summary()
    # the response mean has each row's own zero process: (1 - zi_i) mu_i, for new rows too
    zi = fit.parameters()["zi"]
    eta_free = np.log(fit.predict()) - np.log1p(-zi)
    assert np.all(np.isfinite(eta_free)) and zi.shape == (len(data),) and 0 < zi.min() < zi.max() < 1
    np.testing.assert_allclose(fit.predict(data.iloc[:7]), fit.predict()[:7], rtol=1e-12)
    np.testing.assert_allclose(fit.predict(data.iloc[:7], kind="zi"), zi[:7], rtol=1e-12)
    with pytest.raises(bayesmix.BayesmixError, match="no dispersion parameter"):
        fit.predict(kind="dispersion")


def test_dispersion_formula_laplace_matches_glmmtmb():
    data, ref = salamanders("salamanders_nb_dispformula")
    target = ref["newton_polish"]
    fit = bayesmix.Model(FORMULA, data, family="nbinom2", dispersion="~ mined").fit("laplace")
    assert fit.loglik == pytest.approx(target["logLik"], rel=1e-10)
    assert_table(fit.fixef, target["fixef"]["cond"], rel=1e-5)
    assert_table(fit.submodels["dispersion"], target["fixef"]["disp"], rel=1e-5)  # log theta
    alpha = fit.parameters()["alpha"]
    by_mined = {level: alpha[(data.mined == level).to_numpy()][0] for level in ("yes", "no")}
    for level, theta in target["family_params"]["theta_by_mined"].items():
        assert by_mined[level] == pytest.approx(theta, rel=1e-5)


def test_save_and_load_keep_the_formulas(tmp_path):
    data, _ = salamanders("salamanders_zip_ziformula")
    fit = bayesmix.Model(FORMULA, data, family="zero_inflated_poisson", zi="~ mined").fit("laplace")
    path = fit.save(tmp_path / "zip.nc")
    again = bayesmix.load(path)
    pd.testing.assert_frame_equal(again.submodels["zi"], fit.submodels["zi"])
    np.testing.assert_allclose(again.predict(data.head(4)), fit.predict(data.head(4)), rtol=1e-12)
    assert again.design.spec.submodels[0].text == "~ mined"


def test_nuts_zi_formula_agrees_with_laplace():
    data, _ = salamanders("salamanders_zip_ziformula")
    model = bayesmix.Model("count ~ mined + (1 | site)", data, family="zero_inflated_poisson", zi="~ mined")
    fit = model.fit("laplace")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = model.sample(draws=500, tune=500, chains=2, random_seed=3, progressbar=False)
    post = idata.posterior
    assert "zi" not in post and post["zi_beta"].dims[-1] == "zi_coef"
    for name in fit.submodels["zi"].index:
        draws = post["zi_beta"].sel(zi_coef=name)
        assert abs(float(draws.mean()) - fit.submodels["zi"].estimate[name]) < 2 * float(draws.std()), name
    summary = model.to_dict()
    assert summary["zi"]["fixef"]["names"] == ["Intercept", "mined[no]"]
    # new rows get their zi from the formula as the training rows did: the same draws, the same means
    new = model.predict(data=data.head(5), kind="mean", inplace=False).to_numpy()
    training = model.predict(kind="mean", inplace=False).to_numpy()[..., :5]
    np.testing.assert_allclose(new, training, rtol=1e-12)
    zi = model.predict(data=data.head(5), kind="zi", inplace=False)
    assert zi.dims == ("chain", "draw", "obs") and float(zi.min()) > 0 and float(zi.max()) < 1
    model.predict(kind="zi")
    assert "count_zi" in model.idata.posterior


def test_submodel_formula_errors():
    data, _ = salamanders("salamanders_zip")
    with pytest.raises(bayesmix.BayesmixError, match="no zero process.*zero_inflated_poisson"):
        bayesmix.Model(FORMULA, data, family="beta", zi="~ mined")
    # glmmTMB's spelling: a family without a zero process plus a ziformula is its zero-inflated (or,
    # for a truncated count, hurdle) form
    assert bayesmix.Model(FORMULA, data, family="nbinom2", zi="~ mined").family.name == "zero_inflated_negativebinomial"
    assert bayesmix.Model(FORMULA, data, family="truncated_poisson", zi="~ 1").family.name == "hurdle_poisson"
    with pytest.raises(bayesmix.BayesmixError, match="no dispersion parameter"):
        bayesmix.Model(FORMULA, data, family="poisson", dispersion="~ mined")
    with pytest.raises(bayesmix.BayesmixError, match="response left of '~'"):
        bayesmix.Model(FORMULA, data, family="zero_inflated_poisson", zi="count ~ mined")
    with pytest.raises(bayesmix.BayesmixError, match="an offset in zi="):
        bayesmix.Model(FORMULA, data, family="zero_inflated_poisson", zi="~ mined + offset(log(cover + 5))")
    with pytest.raises(bayesmix.BayesmixError, match="Unknown column 'minde'"):
        bayesmix.Model(FORMULA, data, family="zero_inflated_poisson", zi="~ minde")
    sleep = bayesmix.load_dataset("sleepstudy")
    model = bayesmix.Model("Reaction ~ Days + (1 | Subject)", sleep, dispersion="~ Days")
    with pytest.raises(bayesmix.BayesmixError, match="fitted by maximum likelihood.*method='ml'"):
        model.fit("reml")
    assert model.resolve_parameterization("auto") != "marginal"  # sigma varies by row: not collapsible
    assert json.loads(json.dumps(sorted(model.priors)))[:2] == ["Days", "Intercept"]
    assert {"sigma_Intercept", "sigma_Days"} <= set(model.priors) and "sigma" not in model.priors
