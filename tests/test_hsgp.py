"""The sampler's Hilbert-space approximation of a distance structure (``Model(..., hsgp=...)``):
its spectral densities are the correlations' Fourier transforms, PyMC's HSGP basis in the graph is
the one the posterior is read with, the approximation converges to the exact correlation, "auto"
switches it on above the threshold only, bad settings are refused, and a posterior sampled through
it agrees with the exact fit."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import quad
from scipy.special import gammaln

import bayesmix
from bayesmix.design.covariance import num_factor, structure
from bayesmix.design.hilbert import (
    MIN_POSITIONS,
    HilbertSettings,
    approximation_error,
    factor,
    log_spectral_density,
)


def _structure(kind: str, points: np.ndarray, settings=None):
    from dataclasses import replace

    labels = list(num_factor(*np.atleast_2d(points.T)).categories)
    covariance = structure(kind, len(labels), labels)
    return covariance if settings is None else replace(covariance, hsgp=settings)


@pytest.mark.parametrize(("kind", "kappa"), [("exp", None), ("gau", None), ("mat", 0.8), ("mat", 2.5)])
def test_spectral_density_is_the_fourier_transform(kind, kappa):
    """In one dimension C(d) = (1 / pi) int_0^inf S(omega) cos(omega d) domega, at several ranges."""
    for r in (0.7, 3.0):
        for d in (0.0, 0.5, 2.0, 6.0):
            density = lambda w, r=r: np.exp(log_spectral_density(kind, w**2, 1, r, kappa, gammaln=gammaln))  # noqa: E731
            # QUADPACK's Fourier integral (QAWF) for d > 0: the integrand oscillates and decays slowly
            fourier = {"weight": "cos", "wvar": d} if d > 0 else {}
            value = quad(density, 0, np.inf, limit=400, **fourier)[0] / np.pi
            if kind == "exp":
                exact = np.exp(-d / r)
            elif kind == "gau":
                exact = np.exp(-((d / r) ** 2))
            else:
                exact = 1.0 if d == 0 else structure("mat", 2, ["(0)", f"({d})"]).correlation_at(r, kappa)[0, 1]
            assert value == pytest.approx(exact, abs=2e-6)


@pytest.mark.parametrize(("kind", "kappa", "tolerance"), [("gau", None, 1e-5), ("mat", 2.5, 1e-4), ("exp", None, 0.15)])
def test_approximation_converges_in_two_dimensions(kind, kappa, tolerance):
    """With many basis functions and a wide box the approximate correlation is the exact one; the
    exponential (rough: its spectral density decays slowest) converges slowest."""
    points = np.random.default_rng(0).uniform(0.0, 10.0, (40, 2))
    coarse = approximation_error(_structure(kind, points, HilbertSettings((15, 15), 2.0)), 1.5, kappa)
    fine = approximation_error(_structure(kind, points, HilbertSettings((60, 60), 4.0)), 1.5, kappa)
    assert fine < tolerance and fine < coarse


def test_the_graph_uses_pymcs_basis_and_the_structures_kernel():
    """hilbert_factor (PyMC's HSGP.prior_linearized with bayesmix's kernel) equals the numpy factor
    the posterior is read with, and the kernel's full matrix is the exact correlation."""
    from types import SimpleNamespace

    from bayesmix.bayes.hsgp import StructureKernel, hilbert_factor

    points = np.random.default_rng(1).uniform(0.0, 8.0, (25, 2))
    for kind, kappa in (("exp", None), ("gau", None), ("mat", 1.7)):
        covariance = _structure(kind, points, HilbertSettings((7, 6), 2.0))
        # float64 parameters, as the model's are (PyTensor reads the Python float 2.0 as float32)
        r, s = np.float64(2.0), np.float64(1.3)
        parts = hilbert_factor(
            SimpleNamespace(covariance=covariance), s, r, None if kappa is None else np.float64(kappa)
        )
        graph = parts.phi.eval() * parts.weights.eval()[None, :]
        expected = factor(kind, covariance.basis, 1.3, 2.0, kappa, gammaln=gammaln)
        np.testing.assert_allclose(graph, expected, rtol=1e-10, atol=1e-12)
        full = StructureKernel(kind, 2, r, kappa).full(covariance.positions).eval()
        exact = covariance.correlation(2.0) if kappa is None else covariance.correlation_at(2.0, kappa)
        np.testing.assert_allclose(full, exact, atol=2e-6)  # PyMC's distances carry sqrt(1e-12)


def _field(positions: int, groups=("A", "B", "C"), repeats=2, seed=4) -> pd.DataFrame:
    """A Matérn field (range 1.5, smoothness 1.5) per group over the same 1-D positions, a
    covariate, gaussian noise."""
    from bayesmix.design.matern import matern_correlation

    rng = np.random.default_rng(seed)
    x = np.round(np.sort(rng.uniform(0.0, 20.0, positions)), 6)
    root = np.linalg.cholesky(matern_correlation(np.abs(np.subtract.outer(x, x)), 1.5, 1.5))
    rows = []
    for g in groups:
        field = 0.8 * root @ rng.standard_normal(positions)
        for _ in range(repeats):
            covariate = rng.normal(size=positions)
            y = 1.0 + 0.5 * covariate + field + rng.normal(scale=0.4, size=positions)
            rows.append(pd.DataFrame({"y": y, "x": covariate, "where": x, "g": g}))
    frame = pd.concat(rows, ignore_index=True)
    return frame.assign(pos=bayesmix.num_factor(frame["where"]))


def test_auto_approximates_only_above_the_threshold():
    many = _field(MIN_POSITIONS + 20, groups=("A",), repeats=1)  # exp: gau is singular on so many close points
    auto = bayesmix.Model("y ~ x + exp(0 + pos | g)", many)
    exact = bayesmix.Model("y ~ x + exp(0 + pos | g)", many, hsgp=False)
    block = auto.design.blocks[0]
    assert block.covariance.hsgp is not None and block.covariance.hsgp.rank < block.n_terms
    assert exact.design.blocks[0].covariance.hsgp is None
    assert bayesmix.Model("y ~ x + gau(0 + pos | g)", _field(40)).design.blocks[0].covariance.hsgp is None
    # the exact engine never approximates
    assert auto.fit().loglik == pytest.approx(exact.fit().loglik, rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = auto.pymc_model()
    assert "cor_g" not in graph.named_vars and graph.named_vars_to_dims["z_g"] == ("g__level", "g__basis")
    assert len(graph.coords["g__basis"]) == block.covariance.hsgp.rank
    assert auto.resolve_parameterization("auto") == {"g": "noncentered"}


def test_bad_settings_are_refused():
    data = _field(30)
    for bad in ("yes", {"q": 1}, {"m": [3, 3]}, {"c": 0.9}, {"m": 0}):
        with pytest.raises(bayesmix.BayesmixError, match="hsgp="):
            bayesmix.Model("y ~ x + gau(0 + pos | g)", data, hsgp=bad)
    model = bayesmix.Model("y ~ x + gau(0 + pos | g)", data, hsgp={"m": 20})
    with pytest.raises(bayesmix.BayesmixError, match="non-centred only"):
        model.pymc_model({"g": "centered"})
    with pytest.raises(bayesmix.BayesmixError, match="hsgp=False"):
        model.pymc_model("marginal")


@pytest.fixture(scope="module")
def sampled():
    data = _field(60)
    model = bayesmix.Model("y ~ x + mat(0 + pos | g)", data, hsgp={"m": 40, "c": 2.5})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = model.sample(draws=500, tune=500, chains=2, random_seed=3, progressbar=False)
    return model, idata


def test_posterior_agrees_with_the_exact_fit(sampled):
    """Posterior means within 2 posterior SDs of the REML estimates (sd, range, smoothness, sigma,
    beta)."""
    model, idata = sampled
    post = idata.posterior
    assert "cor_g" not in post and {"sd_g", "range_g", "re_g"} <= set(post.data_vars)
    fit = model.fit("reml")
    block = fit.varcorr[0]
    pairs = [
        (post["sd_g"].isel({"g__term": 0}), block["sd"][0]),
        (post["range_g"], block["range"]),
        (post["smoothness_g"], block["smoothness"]),
        (post["sigma"], fit.sigma),
        (post["beta"].sel(coef="x"), fit.fixef.loc["x", "estimate"]),
    ]
    for draws, estimate in pairs:
        assert abs(float(draws.mean()) - estimate) < 2 * float(draws.std())
    # the random effects' posterior means follow the exact fit's conditional modes
    modes = fit.ranef["g"]["condval"].to_numpy()
    means = post["re_g"].mean(("chain", "draw")).to_numpy().reshape(-1)
    assert np.corrcoef(modes, means)[0, 1] > 0.95


def test_what_reads_the_posterior_works_without_correlation_draws(sampled):
    model, idata = sampled
    text = model.summary(idata)
    assert "(mat)" in text
    rows = bayesmix.confint(model)  # the model's last sampled posterior
    assert {"sd[g]", "range[g]"} <= set(rows.index)
    new = model.design.data.iloc[:60].assign(g="D")  # a group never seen: a new field drawn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predicted = model.predict(idata, new, allow_new_levels=True, random_seed=1, inplace=False)
    assert np.isfinite(np.asarray(predicted)).all()
    assert np.isfinite(bayesmix.r2(model, idata)["draws"]["conditional"]).all()


def test_a_saved_model_reads_its_posterior_as_sampled(sampled, tmp_path):
    model, idata = sampled
    path = model.save(tmp_path / "field.nc")
    loaded = bayesmix.load(path)
    assert loaded.design.blocks[0].covariance.hsgp == model.design.blocks[0].covariance.hsgp
    assert loaded.summary() == model.summary(idata)


def test_a_basis_too_coarse_for_the_posterior_range_is_warned_about():
    """The check after sampling: a posterior range the basis resolves passes; one it cannot (short
    against m, here 6 basis functions) warns, naming m, c and hsgp=False."""
    import xarray as xr

    from bayesmix.sampled import _check_hilbert

    data = _field(60)
    model = bayesmix.Model("y ~ x + gau(0 + pos | g)", data, hsgp={"m": 6, "c": 2.0})

    def posterior(r):
        values = np.random.default_rng(0).lognormal(np.log(r), 0.1, (2, 50))
        return xr.Dataset({"range_g": (("chain", "draw"), values)})

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _check_hilbert(model.design, posterior(7.0))
    with pytest.warns(bayesmix.BayesmixWarning, match=r"Hilbert-space approximation.*raise m.*hsgp=False"):
        _check_hilbert(model.design, posterior(0.8))
