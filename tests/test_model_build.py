"""The PyMC model: the graph computes what the docs say, for every family (checked against scipy)."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit
from scipy.special import gamma as gamma_function

import bayesmix
import bayesmix.sampled
from bayesmix import BayesmixError, Prior
from bayesmix.bayes.build import choose_parameterization, information_ratio, weakly_informed_centred
from bayesmix.bayes.names import correlation_matrices
from bayesmix.bayes.priors import LKJ_ETA
from bayesmix.counts import ZERO_FAMILIES
from bayesmix.densities import DENSITIES
from bayesmix.families import TRIAL_FAMILIES


def simulate(family, n_groups=12, per_group=6, seed=0):
    rng = np.random.default_rng(seed)
    n = n_groups * per_group
    g = np.repeat(np.arange(n_groups), per_group)
    x = rng.normal(size=n)
    eta = 0.3 + 0.5 * x + rng.normal(0, 0.4, n_groups)[g]
    if family in ("gaussian", "t"):
        y = eta + rng.normal(0, 0.5, n)
    elif family in ("bernoulli", "binomial"):
        y = rng.binomial(1 if family == "bernoulli" else 5, expit(eta))
    elif family in ("poisson", "negativebinomial", "negativebinomial1") or family in ZERO_FAMILIES:
        y = rng.poisson(np.exp(eta))
        if family.startswith("truncated"):
            y = np.maximum(y, 1)
    elif family == "gamma":
        y = rng.gamma(3.0, np.exp(eta) / 3.0)
    elif family in ("cumulative", "sratio", "acat"):  # four ordered categories 1..4
        y = 1.0 + np.searchsorted([-0.5, 0.4, 1.2], eta + rng.logistic(size=n))
    elif family in DENSITIES:
        link = {"log": np.exp, "logit": expit, "identity": lambda e: e}[DENSITIES[family].link]
        params = {"sigma": 0.6, "shape": 2.0, "hu": 0.3, "phi": 8.0, "zi": 0.3, "power": 1.5}
        y = DENSITIES[family].draw(link(eta), params, np.full(n, 5.0) if family in TRIAL_FAMILIES else None, rng)
    else:
        y = rng.beta(expit(eta) * 8, (1 - expit(eta)) * 8)
    data = pd.DataFrame({"y": y.astype(float), "x": x, "g": [f"G{i:02d}" for i in g]})
    if family in TRIAL_FAMILIES:
        data["fail"] = 5 - data.y
    return data


def random_point(model, seed):
    rng = np.random.default_rng(seed)
    point = model.pymc_model().initial_point()
    return {k: v + rng.normal(0, 0.3, size=np.shape(v)) for k, v in point.items()}


def scipy_loglik(family, y, trials, mu, params):
    if family == "gaussian":
        return stats.norm.logpdf(y, mu, params["sigma"])
    if family == "t":
        return stats.t.logpdf(y, params["nu"], mu, params["sigma"])
    if family in ("bernoulli", "binomial"):
        return stats.binom.logpmf(y, trials, mu)
    if family == "poisson":
        return stats.poisson.logpmf(y, mu)
    if family == "negativebinomial":
        alpha = params["alpha"]
        return stats.nbinom.logpmf(y, alpha, alpha / (alpha + mu))
    if family in ZERO_FAMILIES:
        return zero_loglik(family, y, mu, params)
    if family == "negativebinomial1":  # size mu / phi: Var = mu (1 + phi)
        return stats.nbinom.logpmf(y, mu / params["phi"], 1 / (1 + params["phi"]))
    if family == "gamma":
        return stats.gamma.logpdf(y, params["shape"], scale=mu / params["shape"])
    if family in DENSITIES:
        return density_logpdf(family, y, trials, mu, params)
    if family == "cumulative":  # mu is eta here: P(y <= k) = logistic CDF of c_k - eta
        cuts = np.concatenate([[-np.inf], params["thresholds"], [np.inf]])
        k = y.astype(int)
        return np.log(stats.logistic.cdf(cuts[k] - mu) - stats.logistic.cdf(cuts[k - 1] - mu))
    if family == "sratio":  # P(y = k | y >= k) = logistic CDF of c_k - eta, a product of stages
        stop = stats.logistic.cdf(params["thresholds"][None, :] - mu[:, None])  # (n, K - 1)
        go_on = np.cumprod(np.concatenate([np.ones((len(mu), 1)), 1 - stop], axis=1), axis=1)  # (n, K)
        probability = go_on * np.concatenate([stop, np.ones((len(mu), 1))], axis=1)
        return np.log(probability[np.arange(len(mu)), y.astype(int) - 1])
    if family == "acat":  # log P(y = k + 1) / P(y = k) = eta - c_k
        s = np.concatenate([np.zeros((len(mu), 1)), np.cumsum(mu[:, None] - params["thresholds"][None, :], 1)], 1)
        return s[np.arange(len(mu)), y.astype(int) - 1] - np.log(np.exp(s).sum(axis=1))
    return stats.beta.logpdf(y, mu * params["phi"], (1 - mu) * params["phi"])


def density_logpdf(family, y, trials, mu, params):
    """scipy's forms of the families of bayesmix.densities (mu on the family's link scale inverted)."""
    k, hu, zi, phi, sigma = (params.get(name) for name in ("shape", "hu", "zi", "phi", "sigma"))
    safe = np.where(y == 0, 1.0, y)
    if family in ("lognormal", "hurdle_lognormal"):
        positive = stats.lognorm.logpdf(safe, sigma, scale=np.exp(mu))
    elif family == "exponential":
        positive = stats.expon.logpdf(y, scale=mu)
    elif family == "weibull":
        positive = stats.weibull_min.logpdf(y, k, scale=mu / gamma_function(1 + 1 / k))
    elif family == "hurdle_gamma":
        positive = stats.gamma.logpdf(safe, k, scale=mu / k)
    elif family == "betabinomial":
        return stats.betabinom.logpmf(y, trials, mu * phi, (1 - mu) * phi)
    elif family == "tweedie":  # a Poisson number N of gamma terms, summed over N
        p = params["power"]
        lam, shape, scale = mu ** (2 - p) / (phi * (2 - p)), (2 - p) / (p - 1), phi * (p - 1) * mu ** (p - 1)
        n = np.arange(1, 300)[:, None]
        terms = stats.poisson.logpmf(n, lam) + stats.gamma.logpdf(safe, n * shape, scale=scale)
        return np.where(y > 0, np.logaddexp.reduce(terms, axis=0), -lam)
    else:  # zero-inflated binomial
        binomial = stats.binom(trials, mu)
        return np.where(y == 0, np.log(zi + (1 - zi) * binomial.pmf(0)), np.log1p(-zi) + binomial.logpmf(y))
    if family.startswith("hurdle"):
        return np.where(y == 0, np.log(hu), np.log1p(-hu) + positive)
    return positive


def zero_loglik(family, y, mu, params):
    """scipy's count densities with the zero process: zero-inflated, hurdle, zero-truncated."""
    count, zero = ZERO_FAMILIES[family]
    if count == "poisson":
        base = stats.poisson(mu)
    else:
        base = stats.nbinom(params["alpha"], params["alpha"] / (params["alpha"] + mu))
    if zero == "zi":
        zi = params["zi"]
        return np.where(y == 0, np.log(zi + (1 - zi) * base.pmf(0)), np.log1p(-zi) + base.logpmf(y))
    positive = base.logpmf(y) - np.log1p(-base.pmf(0))
    if zero == "truncated":
        return positive
    return np.where(y == 0, np.log(params["hu"]), np.log1p(-params["hu"]) + positive)


INVERSE_LINK = {
    "gaussian": lambda e: e,
    "t": lambda e: e,
    "bernoulli": expit,
    "binomial": expit,
    "poisson": np.exp,
    "negativebinomial": np.exp,
    "negativebinomial1": np.exp,
    "gamma": np.exp,
    "beta": expit,
    **{name: np.exp for name in ZERO_FAMILIES},
    **{name: (lambda e: e) for name in ("cumulative", "sratio", "acat")},  # thresholds and eta, not a mean
    **{name: {"log": np.exp, "logit": expit, "identity": lambda e: e}[d.link] for name, d in DENSITIES.items()},
}


# a categorical response has a predictor per category, not one eta: tests/test_categorical.py checks
# its sampler graph against numpy and its Laplace fit against a TMB template
@pytest.mark.parametrize("family", [name for name in bayesmix.FAMILY_NAMES if name != "categorical"])
def test_likelihood_matches_scipy(family):
    data = simulate(family)
    formula = "cbind(y, fail) ~ x + (x | g)" if family in TRIAL_FAMILIES else "y ~ x + (x | g)"
    model = bayesmix.Model(formula, data, family=family)
    params = list(model.family.params)
    point = random_point(model, 1)
    loglik, beta, re, cor, sd, *values = _evaluate_all(model, params, point)
    corr = correlation_matrices(cor, len(sd))
    design = model.design
    block = design.blocks[0]
    eta = design.X @ beta + (block.Zt * re[block.codes]).sum(1)
    trials = design.trials if design.trials is not None else np.ones(design.nobs)
    expected = scipy_loglik(family, design.y, trials, INVERSE_LINK[family](eta), dict(zip(params, values)))
    np.testing.assert_allclose(loglik, expected.sum(), rtol=1e-8)
    # non-centred effects: re = z @ (diag(sd) L)^T with L the Cholesky factor of corr
    z = point["z_g"]
    np.testing.assert_allclose(re, z @ (np.diag(sd) @ np.linalg.cholesky(corr)).T, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.diag(corr), 1.0)


def _evaluate_all(model, params, point):
    pm_model = model.pymc_model()
    obs = pm_model.observed_RVs[0]
    names = ["beta", "re_g", "cor_g", "sd_g", *params]
    return compile_at(pm_model, [pm_model.logp(vars=[obs], sum=True)], names, point)


def compile_at(pm_model, graphs, names, point):
    """Evaluate ``graphs`` and the named variables (as functions of the value variables) at ``point``."""
    outputs = pm_model.replace_rvs_by_values([pm_model[n] for n in names])
    fn = pm_model.compile_fn(
        graphs + outputs, inputs=pm_model.value_vars, mode="JAX", point_fn=False, on_unused_input="ignore"
    )
    values = fn(*[point[v.name] for v in pm_model.value_vars])
    return values


def test_dims_and_coords_are_named():
    model = bayesmix.Model("Reaction ~ Days + (Days | Subject)", bayesmix.load_dataset("sleepstudy"))
    pm_model = model.pymc_model()
    assert pm_model.named_vars_to_dims["beta"] == ("coef",)
    assert pm_model.named_vars_to_dims["re_Subject"] == ("Subject__level", "Subject__term")
    assert pm_model.named_vars_to_dims["cor_Subject"] == ("Subject__pair",)
    assert list(pm_model.coords["coef"]) == ["Intercept", "Days"]
    assert list(pm_model.coords["Subject__level"])[:3] == ["308", "309", "310"]
    assert list(pm_model.coords["Subject__pair"]) == ["Intercept__Days"]
    assert "cor_Subject" in [d.name for d in pm_model.deterministics]
    assert pm_model.observed_RVs[0].name == "Reaction"


def test_default_priors_follow_the_documented_rule():
    data = bayesmix.load_dataset("sleepstudy")
    model = bayesmix.Model("Reaction ~ Days + (Days | Subject)", data)
    sy, sx, mx = data.Reaction.std(ddof=0), data.Days.std(ddof=0), data.Days.mean()
    p = model.priors
    assert p["Days"].params == pytest.approx({"mu": 0.0, "sigma": 2.5 * sy / sx})
    assert p["Intercept"].params == pytest.approx(
        {"mu": data.Reaction.mean(), "sigma": 2.5 * sy * np.sqrt(1 + (mx / sx) ** 2)}
    )
    np.testing.assert_allclose(p["sd_Subject"].params["sigma"], [2.5 * sy, 2.5 * sy / sx])
    assert p["corr_Subject"].params == {"eta": LKJ_ETA}
    assert p["sigma"].params == pytest.approx({"lam": 1 / sy})
    logit = bayesmix.Model("y ~ x + (1 | g)", simulate("bernoulli"), family="bernoulli").priors
    assert logit["sd_g"].params["sigma"] == pytest.approx([2.5])


def test_prior_overrides_change_the_model():
    data = simulate("gaussian")
    model = bayesmix.Model(
        "y ~ x + (1 | g)",
        data,
        priors={
            "Intercept": Prior("StudentT", nu=3, mu=1.0, sigma=2.0),
            "b": Prior("Normal", mu=0.0, sigma=3.0),
            "sd_g": Prior("Exponential", lam=2.0),
        },
    )
    pm_model = model.pymc_model()
    assert {"beta[Intercept]", "beta[x]"} <= set(pm_model.named_vars)
    point = random_point(model, 2)
    names = ["beta[Intercept]", "beta[x]", "sd_g"]
    logp_graph = pm_model.logp(vars=[pm_model[n] for n in names], jacobian=False, sum=True)
    logp, b0, b1, sd = compile_at(pm_model, [logp_graph], names, point)
    expected = stats.t.logpdf(b0, 3, 1.0, 2.0) + stats.norm.logpdf(b1, 0, 3.0) + stats.expon.logpdf(sd, scale=0.5).sum()
    np.testing.assert_allclose(logp, expected, rtol=1e-8)


@pytest.mark.parametrize(
    "priors, fragment",
    [
        ({"slope": Prior("Normal", mu=0, sigma=1)}, "No parameter named 'slope'.*Parameters: b, x, Intercept"),
        ({"x": Prior("Nromal", mu=0, sigma=1)}, "Unknown distribution 'Nromal'.*Did you mean 'Normal'"),
        ({"x": Prior("Normal", mean=0)}, "is invalid"),
        ({"x": (0, 1)}, "must be a bayesmix.Prior"),
        ({"sd_g": Prior("Normal", mu=0, sigma=1), "corr_g": Prior("Normal")}, "No parameter named 'corr_g'"),
    ],
)
def test_bad_priors_are_named(priors, fragment):
    with pytest.raises(BayesmixError, match=fragment):
        bayesmix.Model("y ~ x + (1 | g)", simulate("gaussian"), priors=priors)


def test_response_support_checks():
    data = simulate("gaussian")
    for family, change, fragment in [
        ("bernoulli", {"y": 2.0}, "0/1 response"),
        ("poisson", {"y": -1.0}, "non-negative whole"),
        ("poisson", {"y": 1.5}, "non-negative whole"),
        ("gamma", {"y": 0.0}, "strictly positive"),
        ("beta", {"y": 1.0}, "strictly between 0 and 1"),
    ]:
        with pytest.raises(BayesmixError, match=fragment):
            bayesmix.Model("y ~ x + (1 | g)", data.assign(**change), family=family)
    with pytest.raises(BayesmixError, match="successes exceed trials"):
        bayesmix.Model("p(y, n) ~ 1 + (1 | g)", data.assign(y=3.0, n=2.0), family="binomial")
    with pytest.raises(BayesmixError, match="Pass family='binomial'"):
        bayesmix.Model("p(y, n) ~ 1 + (1 | g)", data.assign(y=1.0, n=2.0), family="poisson")
    with pytest.raises(BayesmixError, match="Unknown family 'poison'.*Did you mean 'poisson'"):
        bayesmix.Model("y ~ x + (1 | g)", data, family="poison")
    with pytest.raises(BayesmixError, match="does not take link='log'"):
        bayesmix.Model("y ~ x + (1 | g)", data.assign(y=1.0), family="bernoulli", link="log")


@pytest.mark.parametrize("link", ["probit", "cloglog"])
def test_other_links_by_name(link):
    data = simulate("bernoulli")
    model = bayesmix.Model("y ~ x + (1 | g)", data, family="bernoulli", link=link)
    point = random_point(model, 3)
    pm_model = model.pymc_model()
    obs = pm_model.observed_RVs[0]
    loglik, beta, re = compile_at(pm_model, [pm_model.logp(vars=[obs], sum=True)], ["beta", "re_g"], point)
    block = model.design.blocks[0]
    eta = model.design.X @ beta + re[block.codes, 0]
    p = stats.norm.cdf(eta) if link == "probit" else 1 - np.exp(-np.exp(eta))
    np.testing.assert_allclose(loglik, stats.bernoulli.logpmf(model.design.y, p).sum(), rtol=1e-8)


def crossed_with_group_predictor(seed=0, subjects=30, items=8):
    """VerbAgg's shape in small: every subject answers every item; x is a subject-level predictor."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(subjects), items)
    item = np.tile(np.arange(items), subjects)
    x = rng.normal(size=subjects)
    eta = -0.2 + 0.3 * x[ids] + rng.normal(0, 1.3, subjects)[ids] + rng.normal(0, 1.1, items)[item]
    return pd.DataFrame(
        {
            "r": (rng.uniform(size=ids.size) < expit(eta)).astype(float),
            "x": x[ids],
            "id": [f"s{i:02d}" for i in ids],
            "item": [f"i{i}" for i in item],
        }
    )


def test_hierarchical_centring_is_the_same_posterior():
    """Centred blocks are centred on the fixed effects they share (the item intercept on beta[Intercept],
    the subject intercept on x_m * beta[x]): u = b + means, a shift with unit Jacobian. So at every
    point the centred model's log density equals the non-centred one's at z = b / sd, plus the
    non-centred Jacobian M log(sd) per block."""
    model = bayesmix.Model("r ~ x + (1 | id) + (1 | item)", crossed_with_group_predictor(), family="bernoulli")
    centred = model.pymc_model("centered")
    noncentred = model.pymc_model("noncentered")
    assert {v.name for v in centred.free_RVs} >= {"u_id", "u_item"}
    rng = np.random.default_rng(1)
    logp_c, logp_n = centred.compile_logp(mode="JAX"), noncentred.compile_logp(mode="JAX")
    x_subject = model.design.X[np.unique(model.design.blocks[0].codes, return_index=True)[1], 1]
    for _ in range(3):
        beta = rng.normal(size=2)
        log_sd = {"id": rng.normal(), "item": rng.normal()}
        b = {"id": rng.normal(size=(30, 1)), "item": rng.normal(size=(8, 1))}
        means = {"id": (x_subject * beta[1])[:, None], "item": np.full((8, 1), beta[0])}
        point_c = {"beta": beta}
        point_n = {"beta": beta}
        jacobian = 0.0
        for label in ("id", "item"):
            sd = np.exp(log_sd[label])
            point_c[f"sd_{label}_log__"] = point_n[f"sd_{label}_log__"] = np.array([log_sd[label]])
            point_c[f"u_{label}"] = b[label] + means[label]
            point_n[f"z_{label}"] = b[label] / sd
            jacobian += b[label].size * np.log(sd)
        assert float(logp_c(point_c)) == pytest.approx(float(logp_n(point_n)) - jacobian, rel=1e-12)
    # the effects reported are the deviations b, whatever the parameterisation
    with centred:
        re_item = centred["re_item"].eval({centred["u_item"]: point_c["u_item"], centred["beta"]: beta}, mode="JAX")
    np.testing.assert_allclose(re_item, b["item"])


def test_auto_centres_blocks_whose_levels_carry_much_information():
    verbagg = bayesmix.Model("r ~ x + (1 | id) + (1 | item)", crossed_with_group_predictor(), family="bernoulli")
    assert verbagg.resolve_parameterization("auto") == {"id": "centered", "item": "centered"}
    # few rows per herd, little spread between herds: the prior does most of the work
    cbpp = bayesmix.Model(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", bayesmix.load_dataset("cbpp"), family="binomial"
    )
    assert cbpp.resolve_parameterization("auto") == {"herd": "noncentered"}
    # pure noise: no spread between levels
    rng = np.random.default_rng(0)
    noise = pd.DataFrame({"y": rng.poisson(3, 200), "g": np.repeat(np.arange(20), 10).astype(str)})
    assert bayesmix.Model("y ~ 1 + (1 | g)", noise, family="poisson").resolve_parameterization("auto") == {
        "g": "noncentered"
    }
    assert (
        bayesmix.Model(
            "Reaction ~ Days + (Days | Subject)", bayesmix.load_dataset("sleepstudy")
        ).resolve_parameterization("auto")
        == "marginal"
    )


def test_centring_a_weakly_informed_block_is_warned_about(monkeypatch):
    """Centred where its levels say little (cbpp's herds), a block's SDs sit in a funnel that NUTS
    explores with bias (docs/calibration.md): asked for explicitly, it is warned about before
    sampling, and sampled with smaller steps (target_accept 0.99, unless given) and numpyro's
    diagonal metric."""
    used = []
    run_nuts = bayesmix.sampled.run_nuts

    def spy(model, **kwargs):
        used.append((kwargs["target_accept"], kwargs["low_rank_metric"]))
        return run_nuts(model, **kwargs)

    monkeypatch.setattr(bayesmix.sampled, "run_nuts", spy)
    cbpp = bayesmix.Model(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", bayesmix.load_dataset("cbpp"), family="binomial"
    )
    assert set(weakly_informed_centred(cbpp.design, "centered")) == {"herd"}
    assert weakly_informed_centred(cbpp.design, {"herd": "noncentered"}) == {}
    verbagg = bayesmix.Model("r ~ x + (1 | id) + (1 | item)", crossed_with_group_predictor(), family="bernoulli")
    assert weakly_informed_centred(verbagg.design, "centered") == {}  # its levels are well informed
    options = dict(draws=20, tune=20, chains=1, random_seed=1, progressbar=False, posterior_predictive=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cbpp.sample(**options, parameterization="centered")
        cbpp.sample(**options, parameterization="centered", target_accept=0.95)
        cbpp.sample(**options, parameterization="noncentered")
    messages = [str(w.message) for w in caught if issubclass(w.category, bayesmix.BayesmixWarning)]
    assert any("Block 'herd' is sampled centred" in m and "'noncentered'" in m for m in messages), messages
    assert any("target_accept=0.99;" in m for m in messages) and any("target_accept=0.95;" in m for m in messages)
    assert used == [(0.99, False), (0.95, False), (0.9, True)]


def test_a_slope_the_levels_say_little_about_keeps_its_block_non_centred():
    """The information ratio is taken per term, the smallest counting: 40 rows per level pin each
    level's intercept (spread 1 on the logit scale), but slopes that hardly vary between levels
    (SD 0.02) leave the slope SD in a centred block's funnel."""
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(30), 40)
    x = rng.normal(size=g.size)
    intercepts, slopes = rng.normal(0, 1.0, 30), rng.normal(0, 0.02, 30)
    y = rng.random(g.size) < 1 / (1 + np.exp(-(intercepts[g] + (0.5 + slopes[g]) * x)))
    frame = pd.DataFrame({"y": y.astype(float), "x": x, "g": g.astype(str)})
    assert bayesmix.Model("y ~ x + (1 | g)", frame, family="bernoulli").resolve_parameterization("auto") == {
        "g": "centered"
    }
    slopes_too = bayesmix.Model("y ~ x + (x | g)", frame, family="bernoulli")
    assert slopes_too.resolve_parameterization("auto") == {"g": "noncentered"}
    assert information_ratio(slopes_too.design, slopes_too.design.blocks[0]) < 1


def test_a_level_wide_covariate_does_not_count_as_information_about_the_levels():
    """Spread between levels that a fixed effect explains (a site's treatment) is not the block's:
    with it in the formula the levels' own deviations are small beside their noise, and the block
    stays non-centred (Salamanders' hurdle NB, centred on the raw counts' spread, gave 155
    divergences)."""
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(30), 10)
    treated = (np.arange(30) % 2).astype(float)
    y = 3.0 * treated[g] + rng.normal(0, 0.05, 30)[g] + rng.normal(size=g.size)
    frame = pd.DataFrame({"y": y, "treated": treated[g], "g": g.astype(str)})
    without = bayesmix.Model("y ~ 1 + (1 | g)", frame)
    assert information_ratio(without.design, without.design.blocks[0]) > 10
    model = bayesmix.Model("y ~ treated + (1 | g)", frame)
    assert information_ratio(model.design, model.design.blocks[0]) < 0.5
    assert choose_parameterization(model.design) == {"g": "noncentered"}  # gaussian's "auto" collapses


def test_an_intercepts_information_ratio_is_the_one_way_anova_ratio():
    """For an intercept-only block the per-term ratio reduces to rows per level x between-level
    variance / within-level variance (balanced levels: every level has the same rows)."""
    from bayesmix.bayes.build import level_anova

    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(25), 12)
    frame = pd.DataFrame({"y": rng.normal(0, 0.7, 25)[g] + rng.normal(size=g.size), "g": g.astype(str)})
    design = bayesmix.Model("y ~ 1 + (1 | g)", frame).design
    anova = level_anova(design, design.blocks[0])
    expected = anova.rows_per_level * anova.between / anova.within
    np.testing.assert_allclose(information_ratio(design, design.blocks[0]), expected, rtol=1e-10)
    assert expected > 1  # 12 rows x 0.49 / 1: a well-informed block
