"""The sequential ordinal families (issue 22): ``sratio`` (stopping ratio) and ``acat`` (adjacent
category), brms's definitions. Laplace and AGQ fits against lme4's glmer on the continuation-ratio
expansion (sratio) and against a TMB template (acat), tests/data/r/sequential_references.R,
provenance in tests/data/PROVENANCE.md; the densities against their definitions; the sampler
against the exact fit."""

import functools
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import bayesmix
from bayesmix import ordinal

DATA = Path(__file__).parent / "data"
FAMILIES = ("sratio", "acat")


def _by_definition(family: str, eta: float, thresholds) -> np.ndarray:
    """brms's definitions, logit link, written as products."""
    F = expit
    K = len(thresholds) + 1
    if family == "sratio":  # P(y = k | y >= k) = F(c_k - eta)
        p, survive = [], 1.0
        for c in thresholds:
            p.append(survive * F(c - eta))
            survive *= 1.0 - F(c - eta)
        return np.array([*p, survive])
    s = np.concatenate([[0.0], np.cumsum(eta - np.asarray(thresholds))])  # log P(k + 1) / P(k) = eta - c_k
    assert len(s) == K
    return np.exp(s) / np.exp(s).sum()


@pytest.mark.parametrize("family", FAMILIES)
def test_probabilities_are_brms_definitions(family):
    thresholds = np.array([-1.0, 0.4, 0.1, 1.2])  # free: need not increase
    eta = np.array([-2.0, 0.3, 1.7])
    expected = np.array([_by_definition(family, e, thresholds) for e in eta])
    np.testing.assert_allclose(ordinal.family_probabilities(family, "logit", eta, thresholds), expected, rtol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("link", ordinal.ORDINAL_LINKS)
def test_eta_derivatives_and_the_sampler_graph(family, link):
    """The Laplace engine's d/deta and d2/deta2 against central differences of log p, and the
    sampler's PyTensor log p against numpy's."""
    import pytensor
    import pytensor.tensor as pt

    rng = np.random.default_rng(4)
    y = rng.integers(0, 5, 40)
    eta = rng.normal(0, 2, 40)
    params = {"thresholds": np.array([-1.0, 0.4, 0.1, 1.2])}
    ll, d1, d2 = ordinal.sequential_terms(family, eta, y, params, link)
    h = 1e-5
    up, down = (ordinal.sequential_terms(family, eta + s, y, params, link) for s in (h, -h))
    np.testing.assert_allclose(d1, (up[0] - down[0]) / (2 * h), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(d2, (up[1] - down[1]) / (2 * h), rtol=1e-5, atol=1e-7)
    full = ordinal.log_probabilities(family, link, eta, params["thresholds"])
    np.testing.assert_allclose(np.exp(full).sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(ll, full[np.arange(40), y], rtol=1e-12)
    Y, E = pt.dvector(), pt.dvector()
    T = pt.tensor(shape=(4,), dtype="float64")
    graph = pytensor.function([Y, E, T], ordinal.pt_sequential_log_probability(family, link, Y, E, T))
    np.testing.assert_allclose(graph(y.astype(float), eta, params["thresholds"]), ll, rtol=1e-10)


def test_draws_follow_the_probabilities():
    rng = np.random.default_rng(6)
    thresholds, eta = np.array([-0.5, 0.0, 0.8]), np.full(200_000, 0.4)
    for family in FAMILIES:
        codes = ordinal.family_draw(family, "probit", eta, thresholds, rng).astype(int)
        frequencies = np.bincount(codes, minlength=4) / len(codes)
        np.testing.assert_allclose(
            frequencies, ordinal.family_probabilities(family, "probit", 0.4, thresholds), atol=4e-3
        )


CASES = [
    "wine_sratio_logit",
    "wine_sratio_probit",
    "wine_sratio_cloglog",
    "wine_sratio_logit_agq10",
    "sratio_sim_slope",
    "wine_acat_logit",
    "acat_sim",
]


@functools.cache
def fitted(case: str):
    ref = json.loads((DATA / f"{case}.json").read_text())
    data = pd.read_csv(DATA / ref["data_file"], dtype={"judge": str, "bottle": str, "g": str})
    model = bayesmix.Model(ref["formula"], data, family=ref["family"], link=ref["link"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sratio_sim_slope's slope SD is small, not singular
        fit = model.fit("agq" if ref["nAGQ"] > 1 else "laplace", nAGQ=ref["nAGQ"])
    return model, fit, ref


@pytest.mark.parametrize("case", CASES)
def test_matches_glmer_expansion_or_tmb(case):
    """sratio: glmer on the continuation-ratio expansion (the same likelihood, Laplace and AGQ);
    acat: a TMB template; both polished to a gradient below 1e-8."""
    _, fit, ref = fitted(case)
    assert fit.converged
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-6)
    np.testing.assert_allclose(fit.thresholds.estimate, ref["thresholds"]["estimate"], rtol=1e-4, atol=1e-4)
    assert list(fit.thresholds.index) == ref["thresholds"]["names"]
    ours = dict(zip([n.replace("[", "").replace("]", "") for n in fit.fixef.index], fit.fixef.estimate))
    for name, value in zip(ref["beta"]["names"], ref["beta"]["estimate"]):
        assert ours[name] == pytest.approx(value, rel=1e-4, abs=1e-4), name
    # standard errors: the Hessian at the optimum, both sides polished (they agree to ~3e-7)
    np.testing.assert_allclose(fit.fixef.se, ref["beta"]["se"], rtol=1e-5)
    np.testing.assert_allclose(fit.thresholds.se, ref["thresholds"]["se"], rtol=1e-5)
    sds = [sd for block in fit.varcorr for sd in block["sd"]]
    theirs = [sd for group in ref["re_sd"].values() for sd in np.atleast_1d(group)]
    np.testing.assert_allclose(sds, theirs, rtol=1e-4, atol=1e-4)
    correlations = [c for group in ref["re_cor"].values() if group is not None for c in np.atleast_1d(group)]
    if correlations:
        np.testing.assert_allclose(fit.varcorr[0]["corr"][0][1], correlations[0], atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_sampler_agrees_with_the_exact_fit(family):
    model, fit, _ = fitted("wine_sratio_logit" if family == "sratio" else "wine_acat_logit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = model.sample(draws=400, tune=400, chains=2, random_seed=3, progressbar=False)
    post = idata.posterior
    for name in fit.fixef.index:
        draws = post["beta"].sel(coef=name)
        assert abs(float(draws.mean()) - fit.fixef.estimate[name]) < 2 * float(draws.std()), name
    for name, value in fit.thresholds.estimate.items():
        draws = post["thresholds"].sel(threshold=name)
        assert abs(float(draws.mean()) - value) < 2 * float(draws.std()), name
    probs = model.predict(idata, kind="probs").values
    assert probs.shape == (2, 400, 72, 5)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-10)


@pytest.mark.parametrize("family", ("cumulative", *FAMILIES))
def test_posterior_draws_in_chunks_equal_one_piece(family, monkeypatch):
    """Draws over many posterior draws go in chunks (memory holds one chunk's probabilities);
    the uniforms are consumed in the same order, so the categories are the same."""
    rng = np.random.default_rng(9)
    eta = rng.normal(size=(50, 30))
    cuts = np.sort(rng.normal(size=(50, 4)), axis=1)
    whole = ordinal.family_draw(family, "logit", eta, cuts, np.random.default_rng(1))
    monkeypatch.setattr(ordinal, "DRAW_CHUNK", 7 * 30 * 4)  # 7 draws a chunk, the last one shorter
    chunked = ordinal.family_draw(family, "logit", eta, cuts, np.random.default_rng(1))
    np.testing.assert_array_equal(chunked, whole)
