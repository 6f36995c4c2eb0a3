"""Structured random-effect covariances (issue 24): glmmTMB's ar1(), cs() and diag() terms in both
engines, against glmmTMB 1.1.5 (tests/data/r/structured_references.R, provenance in
tests/data/PROVENANCE.md): REML, ML and Laplace fits, the structure's rho, bad input, the summary
and the JSON contract, and the posterior near the exact fit."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix

DATA = Path(__file__).parent / "data"
REFERENCES = json.loads((DATA / "structured_references.json").read_text())["cases"]
GAUSS = pd.read_csv(DATA / "structured_gauss.csv", dtype={"times": str, "subject": str})
COUNTS = pd.read_csv(DATA / "structured_counts.csv", dtype={"times": str, "subject": str})
CASES = {
    "ar1_reml": ("y ~ x + ar1(0 + times | subject)", GAUSS, "gaussian", "reml"),
    "ar1_ml": ("y ~ x + ar1(0 + times | subject)", GAUSS, "gaussian", "ml"),
    "cs_reml": ("y ~ x + cs(0 + times | subject)", GAUSS, "gaussian", "reml"),
    "diag_reml": ("y ~ x + diag(1 + x | subject)", GAUSS, "gaussian", "reml"),
    "ar1_poisson": ("y ~ x + ar1(0 + times | subject)", COUNTS, "poisson", "laplace"),
    "cs_poisson": ("y ~ x + cs(0 + times | subject)", COUNTS, "poisson", "laplace"),
}


def _fit(case: str):
    formula, data, family, method = CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayesmix.SingularFitWarning)
        return bayesmix.Model(formula, data, family=family, categorical=["times"]).fit(method)


def _reference(case: str) -> dict:
    """glmmTMB's fit, or its Newton-polished optimum where the helper's polish converged."""
    case_ref = REFERENCES[case]
    polished = case_ref.get("newton_polish")
    return polished if polished and polished.get("status") == "converged" else case_ref["results"]


@pytest.mark.parametrize("case", [c for c in CASES if c != "cs_reml"])
def test_structured_fits_match_glmmtmb(case):
    fit, ref = _fit(case), _reference(case)
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-8)
    fixef = ref["fixef"]["estimate"] if isinstance(ref["fixef"], dict) else ref["fixef"]
    np.testing.assert_allclose(fit.fixef["estimate"], fixef, rtol=1e-6)
    vc = ref["varcorr"][0]
    ours = fit.varcorr[0]
    if case == "diag_reml":  # glmmTMB's log-SD cannot reach lmer's (and our) singular 0 for x
        assert fit.varcorr[1]["sd"][0] == 0.0 and vc["sd"][1] < 1e-4
        np.testing.assert_allclose(ours["sd"][0], vc["sd"][0], rtol=1e-6)
        return
    np.testing.assert_allclose(ours["sd"], vc["sd"], rtol=1e-6)
    assert ours["structure"] == vc["structure"] and ours["rho"] == pytest.approx(vc["rho"], rel=1e-6)
    np.testing.assert_allclose(ours["corr"], vc["corr"], atol=1e-7)
    if fit.sigma is not None:
        assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-6)


def test_cs_absorbing_the_residual_is_reported():
    """glmmTMB's cs fit here ends at sigma ~ 0 (the block's per-time variances take the residual's):
    the profiled criterion reaches that boundary only as theta grows without end, so bayesmix
    restarts from a small sigma, keeps the better end point and says so."""
    formula, data, _, _ = CASES["cs_reml"]
    with pytest.warns(bayesmix.SingularFitWarning, match="sigma goes to 0"):
        fit = bayesmix.Model(formula, data, categorical=["times"]).fit("reml")
    ref = _reference("cs_reml")
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-7) and fit.sigma < 0.02
    np.testing.assert_allclose(fit.varcorr[0]["sd"], ref["varcorr"][0]["sd"], rtol=1e-4)
    assert fit.varcorr[0]["rho"] == pytest.approx(ref["varcorr"][0]["rho"], rel=1e-4)


def test_summary_contract_and_theta_names():
    fit = _fit("ar1_reml")
    text = fit.summary()
    assert "(ar1)" in text and f"{fit.varcorr[0]['rho']:5.2f} (ar1)" in text
    contract = fit.to_dict()["varcorr"][0]
    assert contract["structure"] == "ar1" and contract["rho"] == pytest.approx(fit.varcorr[0]["rho"])
    assert list(fit.theta.index) == ["subject.sd", "subject.phi"]
    assert np.all(np.isfinite(fit.fixef["df"]))  # Satterthwaite's df through the structure's theta
    with pytest.raises(bayesmix.BayesmixError, match="unstructured"):
        _fit("ar1_reml").source.fit("reml", ddf="kenward-roger")
    with pytest.raises(bayesmix.BayesmixError, match="ar1 block"):
        fit.confint("profile")


def test_a_structured_fit_survives_saving(tmp_path):
    fit = _fit("ar1_ml")
    fit.save(tmp_path / "ar1.nc")
    back = bayesmix.load(tmp_path / "ar1.nc")
    np.testing.assert_allclose(back.predict(GAUSS.head(20)), fit.predict(GAUSS.head(20)), rtol=1e-12)
    assert back.varcorr[0]["rho"] == pytest.approx(fit.varcorr[0]["rho"])


def test_times_out_of_their_order_are_flagged():
    """ar1 reads time order from the factor's levels; t1..t12 sorted as text (t10 before t2) would
    silently correlate the wrong neighbours."""
    data = GAUSS.assign(times=GAUSS["time"].map(lambda t: f"t{t * 2}"))  # t2, t4, ..., t12
    with pytest.warns(bayesmix.BayesmixWarning, match="not in the order of their numbers"):
        bayesmix.Model("y ~ x + ar1(0 + times | subject)", data, categorical=["times"])
    order = [f"t{2 * k}" for k in range(1, 7)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", bayesmix.BayesmixWarning)
        bayesmix.Model("y ~ x + ar1(0 + times | subject)", data, categorical={"times": order})


def test_structures_refuse_what_they_cannot_take():
    numeric = GAUSS.assign(t=GAUSS["time"].astype(float))
    with pytest.raises(bayesmix.BayesmixError, match="ar1 correlates the levels of a factor"):
        bayesmix.Model("y ~ x + ar1(0 + t | subject)", numeric)
    with pytest.raises(bayesmix.BayesmixError, match="relates two or more"):
        bayesmix.Model("y ~ x + cs(1 | subject)", GAUSS)
    with pytest.raises(bayesmix.BayesmixError, match="position"):  # labels that are no coordinates
        bayesmix.Model("y ~ x + mat(0 + subject | times)", GAUSS)
    with pytest.raises(bayesmix.BayesmixError, match="toep correlates the levels of a factor"):
        bayesmix.Model("y ~ x + toep(0 + x | subject)", GAUSS)


def test_posterior_of_an_ar1_block_near_the_exact_fit():
    """NUTS through the structure's closed-form Cholesky factor: rho, the SD, sigma and beta within
    two posterior SDs of the ML estimates."""
    fit = _fit("ar1_ml")
    model = bayesmix.Model(CASES["ar1_ml"][0], GAUSS, categorical=["times"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = model.sample(draws=500, tune=500, chains=2, random_seed=4, progressbar=False)
    post = idata.posterior
    checks = {
        "rho_subject": (post["rho_subject"].values.ravel(), fit.varcorr[0]["rho"]),
        "sd": (post["sd_subject"].values[..., 0].ravel(), fit.varcorr[0]["sd"][0]),
        "sigma": (post["sigma"].values.ravel(), fit.sigma),
        "x": (post["beta"].values[..., 1].ravel(), fit.fixef.loc["x", "estimate"]),
    }
    for name, (draws, exact) in checks.items():
        assert abs(draws.mean() - exact) < 2 * draws.std(), name
    assert "rho_subject" in post and "chol_subject" not in post  # the scale is technical
    contract = model.to_dict()["varcorr"][0]
    assert contract["structure"] == "ar1" and contract["rho"] == pytest.approx(float(post["rho_subject"].mean()))


def test_the_correlation_plot_draws_the_fitted_matrix():
    import matplotlib

    matplotlib.use("Agg")
    from bayesmix import plots

    fit = _fit("ar1_reml")
    ax = plots.correlation(fit, "subject")
    image = next(a for a in ax.get_children() if a.get_gid() == "correlation")
    np.testing.assert_allclose(image.get_array(), fit.varcorr[0]["corr"])
    assert "ar1, rho = " in ax.get_title()
    with pytest.raises(bayesmix.BayesmixError, match="one term per block"):
        plots.correlation(_fit("diag_reml"), "subject")


def _spatial(n_sites: int = 40, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 10, (n_sites, 2)).round(3)
    d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    b = np.linalg.cholesky(0.8**2 * np.exp(-d / 3)) @ rng.standard_normal(n_sites)
    site = np.repeat(np.arange(n_sites), 3)
    z = rng.standard_normal(3 * n_sites)
    frame = pd.DataFrame({"y": 2 + 0.3 * z + b[site] + rng.normal(0, 0.5, 3 * n_sites), "z": z, "group": "a"})
    frame["x1"], frame["x2"] = xy[site, 0], xy[site, 1]
    frame["pos"] = bayesmix.num_factor(frame.x1, frame.x2)
    return frame


def test_distance_structures_maximise_the_dense_likelihood():
    """exp(0 + pos | group) over one group of 40 positions, checked without any package: the ML
    log-likelihood written out on the dense 120 x 120 marginal covariance, at our estimates, equals
    fit.loglik, and no move of (log sd, log range, log sigma) raises it (the profiled beta is GLS)."""
    from scipy.optimize import minimize

    data = _spatial()
    fit = bayesmix.Model("y ~ z + exp(0 + pos | group)", data).fit("ml")
    xy = data[["x1", "x2"]].to_numpy()
    X = np.column_stack([np.ones(len(data)), data["z"]])
    D = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))

    def loglik(params):
        sd, r, sigma = np.exp(params)
        V = sd**2 * np.exp(-D / r) + sigma**2 * np.eye(len(data))
        Vi = np.linalg.inv(V)
        beta = np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ data["y"].to_numpy())
        e = data["y"].to_numpy() - X @ beta
        return -0.5 * (np.linalg.slogdet(2 * np.pi * V)[1] + e @ Vi @ e)

    at = np.log([fit.varcorr[0]["sd"][0], fit.varcorr[0]["range"], fit.sigma])
    assert loglik(at) == pytest.approx(fit.loglik, rel=1e-10)
    better = minimize(lambda p: -loglik(p), at, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12})
    assert -better.fun - fit.loglik < 1e-7
    assert fit.varcorr[0]["structure"] == "exp" and "range" in fit.to_dict()["varcorr"][0]


def test_positions_come_from_num_factor_labels():
    pos = bayesmix.num_factor([2.5, 0.0, 2.5], [1.0, 3.0, 1.0])
    assert list(pos) == ["(2.5,1)", "(0,3)", "(2.5,1)"] and list(pos.categories) == ["(0,3)", "(2.5,1)"]
    data = _spatial(12)
    with pytest.raises(bayesmix.BayesmixError, match="num_factor"):
        site = "s" + data["x1"].rank(method="dense").astype(int).astype(str)
        bayesmix.Model("y ~ z + exp(0 + site | group)", data.assign(site=site))
    with pytest.raises(bayesmix.BayesmixError, match="correlates the levels of a factor of positions"):
        bayesmix.Model("y ~ z + gau(0 + x1 | group)", data)


DISTANCE = json.loads((DATA / "distance_references.json").read_text())["cases"]
TIMES = pd.read_csv(DATA / "distance_times.csv", dtype={"subject": str})
SPACE = pd.read_csv(DATA / "distance_space.csv", dtype={"site": str, "group": str})
DISTANCE_CASES = {
    "ou_reml": ("y ~ x + ou(0 + times | subject)", "times", "gaussian", "reml"),
    "ou_poisson": ("yc ~ x + ou(0 + times | subject)", "times", "poisson", "laplace"),
    "exp_reml": ("y ~ z + exp(0 + pos | group)", "space", "gaussian", "reml"),
    "exp_ml": ("y ~ z + exp(0 + pos | group)", "space", "gaussian", "ml"),
    "gau_reml": ("y ~ z + gau(0 + pos | group)", "space", "gaussian", "reml"),
}


@pytest.mark.parametrize("case", list(DISTANCE_CASES))
def test_distance_structures_match_glmmtmb(case):
    """glmmTMB 1.1.5 (tests/data/r/distance_references.R): ou over six irregular times per subject
    (REML, Laplace), exp and gau over 80 positions of one group (REML, ML). glmmTMB's theta[2] is
    log(scale) for exp and gau (corr exp(-d / s), exp(-(d / s)^2)) and log(rate) for ou (corr
    exp(-rate |t - t'|)); our ``range`` is the scale, 1 / rate for ou."""
    formula, frame, family, method = DISTANCE_CASES[case]
    if frame == "times":
        data = TIMES.assign(times=bayesmix.num_factor(TIMES["time"]))
    else:
        data = SPACE.assign(pos=bayesmix.num_factor(SPACE["x1"], SPACE["x2"]))
    fit = bayesmix.Model(formula, data, family=family).fit(method)
    case_ref = DISTANCE[case]
    polished = case_ref.get("newton_polish") or {}
    ref = polished if polished.get("status") == "converged" else case_ref["results"]
    theta = ref["varcorr"][0]["theta"] if "varcorr" in ref else ref["theta"]
    scale = np.exp(theta[1])
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-8)
    assert fit.varcorr[0]["sd"][0] == pytest.approx(np.exp(theta[0]), rel=1e-6)
    assert fit.varcorr[0]["range"] == pytest.approx(1 / scale if case.startswith("ou") else scale, rel=1e-6)
    fixef = ref["fixef"]["estimate"] if isinstance(ref["fixef"], dict) else ref["fixef"]
    np.testing.assert_allclose(fit.fixef["estimate"], fixef, rtol=1e-6)
    if fit.sigma is not None:
        assert fit.sigma == pytest.approx(float(ref["sigma"]), rel=1e-6)


def _toeplitz_data(seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    subjects, times = 60, 4
    R = np.array([[1, 0.5, 0.2, 0.1], [0.5, 1, 0.5, 0.2], [0.2, 0.5, 1, 0.5], [0.1, 0.2, 0.5, 1]])
    b = rng.standard_normal((subjects, times)) @ np.linalg.cholesky(R).T
    frames = []
    for _ in range(2):  # two rows per subject and time
        x = rng.standard_normal((subjects, times))
        frames.append(
            pd.DataFrame(
                {
                    "y": (1 + 0.5 * x + b + rng.normal(0, 0.5, b.shape)).ravel(),
                    "x": x.ravel(),
                    "times": np.tile([f"t{k}" for k in range(times)], subjects),
                    "subject": np.repeat([f"s{i:03d}" for i in range(subjects)], times),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_toeplitz_maximises_the_dense_likelihood():
    """toep(0 + times | subject): a variance per time and a correlation per lag. The ML fit's
    log-likelihood, written out on each subject's dense 8 x 8 marginal covariance, equals fit.loglik
    at our estimates and no move of (log SDs, the lags' unbounded parameters, log sigma) raises it."""
    from scipy.optimize import minimize

    data = _toeplitz_data()
    model = bayesmix.Model("y ~ x + toep(0 + times | subject)", data, categorical=["times"])
    fit = model.fit("ml")
    X = np.column_stack([np.ones(len(data)), data["x"]])
    t = data["times"].str[1:].astype(int).to_numpy()
    groups = [np.flatnonzero(data["subject"].to_numpy() == s) for s in data["subject"].unique()]
    y = data["y"].to_numpy()

    def loglik(params):
        sd, phi, sigma = np.exp(params[:4]), params[4:7], np.exp(params[7])
        lags = np.concatenate([[1.0], phi / np.sqrt(1 + phi**2)])
        cov = np.outer(sd, sd) * lags[np.abs(np.subtract.outer(np.arange(4), np.arange(4)))]
        blocks = [cov[np.ix_(t[g], t[g])] + sigma**2 * np.eye(len(g)) for g in groups]
        inverses = [np.linalg.inv(V) for V in blocks]
        XtVX = sum(X[g].T @ Vi @ X[g] for g, Vi in zip(groups, inverses))
        XtVy = sum(X[g].T @ Vi @ y[g] for g, Vi in zip(groups, inverses))
        beta = np.linalg.solve(XtVX, XtVy)
        total = 0.0
        for g, V, Vi in zip(groups, blocks, inverses):
            e = y[g] - X[g] @ beta
            total += np.linalg.slogdet(2 * np.pi * V)[1] + e @ Vi @ e
        return -0.5 * total

    lags = np.asarray(fit.varcorr[0]["lags"])
    at = np.concatenate([np.log(fit.varcorr[0]["sd"]), lags / np.sqrt(1 - lags**2), [np.log(fit.sigma)]])
    assert loglik(at) == pytest.approx(fit.loglik, rel=1e-10)
    better = minimize(lambda p: -loglik(p), at, method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-11})
    assert -better.fun - fit.loglik < 1e-7
    assert fit.varcorr[0]["structure"] == "toep" and len(fit.varcorr[0]["lags"]) == 3
    assert "lags" in fit.to_dict()["varcorr"][0] and "(toep)" in fit.summary()
    point = model.pymc_model("noncentered").initial_point()
    assert np.isfinite(model.pymc_model("noncentered").compile_logp()(point))  # the Bayesian form builds


def test_reduced_rank_maximises_the_dense_likelihood():
    """rr(0 + sp | site, 2): five species' effects on two latent dimensions (glmmTMB's rr). The ML
    log-likelihood, written out per site on the dense covariance Lambda Lambda' + sigma^2 I, equals
    fit.loglik at our loadings, and no move of (loadings, log sigma) raises it."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(7)
    sites, species = 60, 5
    loadings = np.array([[1.0, 0], [0.8, 0.5], [-0.5, 0.7], [0.3, -0.6], [0.6, 0.4]])
    b = rng.standard_normal((sites, 2)) @ loadings.T
    frames = [
        pd.DataFrame(
            {
                "y": (1 + b + rng.normal(0, 0.5, (sites, species))).ravel(),
                "sp": np.tile([f"sp{k}" for k in range(species)], sites),
                "site": np.repeat([f"s{i:02d}" for i in range(sites)], species),
            }
        )
        for _ in range(2)
    ]
    data = pd.concat(frames, ignore_index=True)
    model = bayesmix.Model("y ~ 0 + sp + rr(0 + sp | site, 2)", data)
    fit = model.fit("ml")
    X = pd.get_dummies(data["sp"]).to_numpy(dtype=float)
    sp = data["sp"].str[2:].astype(int).to_numpy()
    groups = [np.flatnonzero(data["site"].to_numpy() == s) for s in data["site"].unique()]
    y = data["y"].to_numpy()
    free = np.tril(np.ones((species, 2), dtype=bool))

    def loglik(params):
        lam = np.zeros((species, 2))
        lam[free] = params[:-1]
        sigma = np.exp(params[-1])
        cov = lam @ lam.T
        blocks = [cov[np.ix_(sp[g], sp[g])] + sigma**2 * np.eye(len(g)) for g in groups]
        inverses = [np.linalg.inv(V) for V in blocks]
        beta = np.linalg.solve(
            sum(X[g].T @ Vi @ X[g] for g, Vi in zip(groups, inverses)),
            sum(X[g].T @ Vi @ y[g] for g, Vi in zip(groups, inverses)),
        )
        return -0.5 * sum(
            np.linalg.slogdet(2 * np.pi * V)[1] + (y[g] - X[g] @ beta) @ Vi @ (y[g] - X[g] @ beta)
            for g, V, Vi in zip(groups, blocks, inverses)
        )

    lam = np.asarray(fit.varcorr[0]["loadings"])  # on the data's scale
    at = np.append(lam[free], np.log(fit.sigma))
    assert loglik(at) == pytest.approx(fit.loglik, rel=1e-10)
    better = minimize(lambda p: -loglik(p), at, method="BFGS", options={"gtol": 1e-8})
    assert -better.fun - fit.loglik < 1e-7
    assert fit.varcorr[0]["rank"] == 2 and "rank 2 (rr)" in fit.summary()
    assert list(fit.theta.index)[:2] == ["site.loading1.sp[sp0]", "site.loading1.sp[sp1]"]
    point = model.pymc_model("noncentered").initial_point()
    assert np.isfinite(model.pymc_model("noncentered").compile_logp()(point))
    with pytest.raises(bayesmix.BayesmixError, match="rank d must be at least 1 and below"):
        bayesmix.Model("y ~ 0 + sp + rr(0 + sp | site, 5)", data)


RR_TOEP = json.loads((DATA / "rr_toep_references.json").read_text())["cases"]


@pytest.mark.parametrize("case", ["rr_ml", "toep_ml", "toep_reml"])
def test_rr_and_toep_match_glmmtmb(case):
    """glmmTMB 1.1.5 at its Newton-polished optimum (tests/data/r/rr_toep_references.R): rr over five
    species on two latent dimensions (compared through Lambda Lambda', which a rotation of the
    loadings leaves alone: SDs and correlations) and toep over four times, ML and REML."""
    if case == "rr_ml":
        data = pd.read_csv(DATA / "rr_species.csv", dtype={"site": str, "sp": str})
        fit = bayesmix.Model("y ~ 0 + sp + rr(0 + sp | site, 2)", data).fit("ml")
    else:
        data = pd.read_csv(DATA / "toep_times.csv", dtype={"subject": str, "times": str})
        model = bayesmix.Model("y ~ x + toep(0 + times | subject)", data, categorical=["times"])
        fit = model.fit("ml" if case == "toep_ml" else "reml")
    ref = RR_TOEP[case]["newton_polish"]
    assert ref["status"] == "converged"
    vc = ref["varcorr"][0]
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-10)
    np.testing.assert_allclose(fit.varcorr[0]["sd"], vc["sd"], rtol=1e-8)
    np.testing.assert_allclose(fit.varcorr[0]["corr"], vc["corr"], atol=1e-8)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-8)
    fixef = ref["fixef"] if isinstance(ref["fixef"], list) else ref["fixef"]["estimate"]
    np.testing.assert_allclose(fit.fixef["estimate"], fixef, rtol=1e-8)
    if case != "rr_ml":  # the lags: the correlation matrix's diagonals
        corr = np.asarray(vc["corr"])
        np.testing.assert_allclose(fit.varcorr[0]["lags"], [corr[0, lag] for lag in (1, 2, 3)], rtol=1e-8)


def test_homdiag_is_one_variance_for_independent_terms():
    """glmmTMB's homdiag(0 + f | g): the levels of f within each g independent with one common
    variance, which is lme4's (1 | g:f): the same REML fit; the sampler gives one SD and no
    correlations (the structure has none)."""
    rng = np.random.default_rng(1)
    g, f = np.repeat(np.arange(30), 9), np.tile(["a", "b", "c"], 90)
    b = rng.normal(0, 0.7, (30, 3))
    x = rng.normal(size=270)
    y = 1 + 0.5 * x + b[g, pd.Categorical(f).codes] + rng.normal(0, 0.5, 270)
    data = pd.DataFrame({"y": y, "x": x, "g": [f"s{i}" for i in g], "f": f})
    homdiag = bayesmix.Model("y ~ x + homdiag(0 + f | g)", data, categorical=["f"])
    fit = homdiag.fit("reml").to_dict()
    nested = bayesmix.Model("y ~ x + (1 | g:f)", data).fit("reml").to_dict()
    assert fit["REMLcrit"] == pytest.approx(nested["REMLcrit"], rel=1e-9)
    assert fit["varcorr"][0]["structure"] == "homdiag"
    np.testing.assert_allclose(fit["varcorr"][0]["sd"], nested["varcorr"][0]["sd"][0], rtol=1e-6)
    np.testing.assert_allclose(fit["fixef"]["estimate"], nested["fixef"]["estimate"], rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = homdiag.sample(draws=200, tune=200, chains=2, random_seed=1, progressbar=False)
    assert "cor_g" not in idata.posterior
    sd = idata.posterior["sd_g"].values
    assert np.ptp(sd, axis=-1).max() == 0.0  # one SD for every term
