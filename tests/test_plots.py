"""bayesmix.plots: the values drawn, checked against the tidy tables and against computations by hand,
for exact fits (REML, Laplace) and a short NUTS run; bad arguments raise BayesmixError."""

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy import optimize, stats  # noqa: E402
from scipy.special import expit  # noqa: E402

import bayesmix  # noqa: E402
import bayesmix.plots as plots  # noqa: E402
from bayesmix import BayesmixError  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def sleep():
    data = bayesmix.load_dataset("sleepstudy")
    model = bayesmix.Model("Reaction ~ Days + (Days | Subject)", data)
    return data, model, model.fit("reml")


@pytest.fixture(scope="module")
def cbpp():
    data = bayesmix.load_dataset("cbpp")
    model = bayesmix.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", data, family="binomial")
    return data, model, model.fit("laplace")


@pytest.fixture(scope="module")
def covariates():
    """sleepstudy with a numeric and a factor covariate: reference values other than 'none'."""
    data = bayesmix.load_dataset("sleepstudy").copy()
    rng = np.random.default_rng(0)
    data["z"] = rng.normal(2.0, 1.0, len(data))
    data["f"] = np.array(["a", "b", "c"])[np.arange(len(data)) % 3]
    model = bayesmix.Model("Reaction ~ Days + z + f + (1 | Subject)", data)
    return data, model, model.fit("ml")


def artist(ax, gid):
    found = [a for a in ax.get_children() if a.get_gid() == gid]
    assert len(found) == 1, f"{gid}: {found}"
    return found[0]


def xy(ax, gid):
    line = artist(ax, gid)
    return np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float)


def posterior_effects(model):
    post = model.idata.posterior
    beta = post["beta"].values.reshape(-1, 2)
    re = post["re_Subject"].values.reshape(beta.shape[0], -1, 2)
    return beta, re


# --- caterpillar ---------------------------------------------------------------------------------


def test_caterpillar_draws_the_ranef_table_sorted(sleep):
    _, model, fit = sleep
    fig = plots.caterpillar(fit)
    assert [ax.get_title() for ax in fig.axes] == ["Subject: Intercept", "Subject: Days"]
    table = bayesmix.ranef(fit)
    order = table[table.term == "Intercept"].sort_values("condval").level.tolist()
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == order  # sorted by the intercept, lme4's dotplot
    for ax, term in zip(fig.axes, ["Intercept", "Days"]):
        rows = table[table.term == term].set_index("level").loc[order]
        x, y = xy(ax, "estimates")
        np.testing.assert_allclose(x, rows.condval)
        np.testing.assert_array_equal(y, np.arange(18))
        segments = np.array(artist(ax, "intervals").get_segments())
        np.testing.assert_allclose(segments[:, 0, 0], rows.condval - stats.norm.ppf(0.975) * rows.condsd)
        np.testing.assert_allclose(segments[:, 1, 0], rows.upper)
    assert np.all(np.diff(xy(fig.axes[0], "estimates")[0]) >= 0)


def test_caterpillar_of_a_posterior_one_term_into_given_axes(sleep_nuts):
    _, model = sleep_nuts
    _, ax = plt.subplots()
    fig = plots.caterpillar(model, term="Days", ax=ax)
    assert fig.axes == [ax]
    beta, re = posterior_effects(model)
    means = re[:, :, 1].mean(0)
    x, _ = xy(ax, "estimates")
    np.testing.assert_allclose(x, np.sort(means), rtol=1e-10)  # one term: sorted by itself
    segments = np.array(artist(ax, "intervals").get_segments())
    order = np.argsort(means)
    np.testing.assert_allclose(segments[:, 0, 0], np.quantile(re[:, order, 1], 0.025, axis=0), rtol=1e-10)
    assert "posterior mean" in ax.get_xlabel()


def test_caterpillar_groups_and_axes_lists():
    fit = bayesmix.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmix.load_dataset("Penicillin")).fit("reml")
    assert [ax.get_title() for ax in plots.caterpillar(fit).axes] == ["plate: Intercept", "sample: Intercept"]
    _, axes = plt.subplots(1, 2)
    assert plots.caterpillar(fit, ax=list(axes)).axes == list(axes)
    fig = plots.caterpillar(fit, group="sample")
    assert len(fig.axes) == 1 and len(xy(fig.axes[0], "estimates")[0]) == 6
    with pytest.raises(BayesmixError, match="2 panel"):
        plots.caterpillar(fit, ax=axes[0])


# --- shrinkage -----------------------------------------------------------------------------------


def test_shrinkage_points_are_separate_fits_and_fixef_plus_ranef(sleep):
    data, _, fit = sleep
    ax = plots.shrinkage(fit)
    fixef = bayesmix.fixef(fit).estimate
    table = bayesmix.ranef(fit)
    levels = list(fit.design.blocks[0].levels)
    partial = np.column_stack(
        [fixef[t] + table[table.term == t].set_index("level").condval.loc[levels] for t in ("Intercept", "Days")]
    )
    np.testing.assert_allclose(np.column_stack(xy(ax, "partial_pooling")), partial, rtol=1e-12)
    separate = []
    for level in levels:
        rows = data[data.Subject.astype(str) == level]
        A = np.column_stack([np.ones(len(rows)), rows.Days])
        separate.append(np.linalg.lstsq(A, rows.Reaction, rcond=None)[0])
    np.testing.assert_allclose(np.column_stack(xy(ax, "no_pooling")), separate, rtol=1e-10)
    pooled = np.linalg.lstsq(np.column_stack([np.ones(len(data)), data.Days]), data.Reaction, rcond=None)[0]
    np.testing.assert_allclose(np.ravel(xy(ax, "complete_pooling")), pooled, rtol=1e-10)
    np.testing.assert_allclose(np.ravel(xy(ax, "average")), fixef[["Intercept", "Days"]], rtol=1e-12)
    arrows = [a for a in ax.texts if hasattr(a, "arrow_patch") and a.arrow_patch is not None]
    assert len(arrows) == 18
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Intercept", "Days slope")
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0].startswith("No pooling") and legend[2].startswith("Complete pooling")
    swapped = plots.shrinkage(fit, x="Days")
    np.testing.assert_allclose(np.column_stack(xy(swapped, "partial_pooling")), partial[:, ::-1], rtol=1e-12)


def test_shrinkage_of_a_posterior_uses_posterior_means(sleep_nuts):
    _, model = sleep_nuts
    ax = plots.shrinkage(model)
    beta, re = posterior_effects(model)
    expected = beta.mean(0) + re.mean(0)
    np.testing.assert_allclose(np.column_stack(xy(ax, "partial_pooling")), expected, rtol=1e-10)
    assert "NUTS" in ax.get_title()


def test_shrinkage_one_term_binomial_separate_fits_by_maximum_likelihood(cbpp):
    data, _, fit = cbpp
    ax = plots.shrinkage(fit)
    assert ax.get_xlabel() == "Intercept (logit scale)"
    beta = fit.fixef.estimate
    period_effect = np.array([0.0, beta["period[2]"], beta["period[3]"], beta["period[4]"]])
    offset = period_effect[data.period.cat.codes.to_numpy()]
    y, n = data.incidence.to_numpy(float), data["size"].to_numpy(float)

    def separate(rows):
        def nll(a):
            eta = a + offset[rows]
            return -np.sum(y[rows] * eta - n[rows] * np.logaddexp(0, eta))

        return optimize.minimize_scalar(nll, bounds=(-10, 5), method="bounded", options={"xatol": 1e-10}).x

    levels = list(fit.design.blocks[0].levels)
    by_hand = np.array([separate((data.herd.astype(str) == level).to_numpy()) for level in levels])
    x, pos = xy(ax, "no_pooling")
    order = pos.astype(int)  # row of each level
    np.testing.assert_allclose(x, by_hand, atol=1e-6)
    assert sorted(order) == list(range(15)) and np.all(np.diff(by_hand[np.argsort(order)]) >= 0)  # sorted rows
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [levels[i] for i in np.argsort(by_hand)]
    modes = fit.ranef["herd"].xs("Intercept", level="term").condval.reindex(levels)
    np.testing.assert_allclose(xy(ax, "partial_pooling")[0], beta["Intercept"] + modes, rtol=1e-12)
    pooled = artist(ax, "complete_pooling").get_xdata()[0]
    assert pooled == pytest.approx(separate(np.ones(len(data), bool)), abs=1e-6)


def test_shrinkage_leaves_out_separate_fits_that_do_not_exist(cbpp):
    data = cbpp[0].copy()
    data.loc[data.herd.astype(str) == "3", "incidence"] = 0  # no successes: the separate MLE is -infinity
    model = bayesmix.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", data, family="binomial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ax = plots.shrinkage(model.fit("laplace"))
    x, pos = xy(ax, "no_pooling")
    levels = list(model.design.blocks[0].levels)
    assert np.isnan(x[levels.index("3")]) and np.isfinite(np.delete(x, levels.index("3"))).all()
    assert np.isfinite(xy(ax, "partial_pooling")[0]).all()
    assert ax.get_legend().get_title().get_text().startswith("1 herd level(s) without a finite separate fit")
    assert sum(hasattr(t, "arrow_patch") for t in ax.texts) == 14


# --- qq_ranef ------------------------------------------------------------------------------------


def test_qq_ranef_plots_sorted_standardised_effects(sleep):
    _, _, fit = sleep
    fig = plots.qq_ranef(fit)
    table = bayesmix.ranef(fit)
    for ax, term in zip(fig.axes, ["Intercept", "Days"]):
        values = table[table.term == term].condval.to_numpy()
        x, y = xy(ax, "effects")
        np.testing.assert_allclose(y, np.sort((values - values.mean()) / values.std(ddof=1)), rtol=1e-12)
        np.testing.assert_allclose(x, stats.norm.ppf((np.arange(1, 19) - 0.5) / 18))
        line = artist(ax, "reference")
        assert line.get_slope() == 1.0 and line._xy1 == (0.0, 0.0)
    labelled = {t.get_text() for t in fig.axes[0].texts}
    extremes = table[table.term == "Intercept"].set_index("level").condval
    assert labelled == set((extremes - extremes.mean()).abs().nlargest(2).index)


# --- residuals -----------------------------------------------------------------------------------


def test_residuals_are_observed_minus_fitted(sleep):
    data, _, fit = sleep
    ax = plots.residuals(fit)
    x, y = xy(ax, "residuals")
    np.testing.assert_allclose(x, fit.predict())
    np.testing.assert_allclose(y, data.Reaction - fit.predict())
    smooth_x, smooth_y = xy(ax, "smoother")
    assert smooth_x.min() == pytest.approx(x.min()) and np.all(np.abs(smooth_y) < 10)  # residuals average ~0
    fig = plots.residuals(fit, by_group=True)
    assert len(fig.axes) == 18 and fig.axes[0].get_title() == "308"
    rows = (data.Subject.astype(str) == "308").to_numpy()
    np.testing.assert_allclose(xy(fig.axes[0], "residuals")[1], y[rows])


def test_residual_pages_and_group_order(sleep):
    _, _, fit = sleep
    levels = fit.design.blocks[0].levels
    last = plots.residuals(fit, by_group=True, per_page=5, page=4)
    assert [ax.get_title() for ax in last.axes] == list(levels[15:])
    assert "levels 16-18 of 18, page 4 of 4" in last._suptitle.get_text()


def test_residuals_of_a_posterior_use_the_posterior_mean_fit(sleep_nuts):
    data, model = sleep_nuts
    beta, re = posterior_effects(model)
    codes = model.design.blocks[0].codes
    days = data.Days.to_numpy()
    mu = beta[:, None, 0] + re[:, codes, 0] + (beta[:, None, 1] + re[:, codes, 1]) * days
    x, y = xy(plots.residuals(model), "residuals")
    np.testing.assert_allclose(x, mu.mean(0), rtol=1e-10)
    np.testing.assert_allclose(y, data.Reaction - mu.mean(0), rtol=1e-8)


def test_residuals_of_binomial_data_are_proportions(cbpp):
    data, _, fit = cbpp
    x, y = xy(plots.residuals(fit), "residuals")
    np.testing.assert_allclose(y, data.incidence / data["size"] - fit.predict())


# --- conditional_effects -------------------------------------------------------------------------


def test_conditional_effects_exact_fit_is_x_beta_with_a_wald_band(sleep):
    data, _, fit = sleep
    ax = plots.conditional_effects(fit, "Days")
    grid, line = xy(ax, "prediction")
    b, V = fit.fixef.estimate.to_numpy(), fit.vcov.to_numpy()
    np.testing.assert_allclose(grid, np.linspace(0, 9, 100))
    np.testing.assert_allclose(line, b[0] + b[1] * grid, rtol=1e-12)
    se = np.sqrt(V[0, 0] + 2 * grid * V[0, 1] + grid**2 * V[1, 1])
    band = artist(ax, "interval").get_paths()[0].vertices
    lower = band[1 : len(grid) + 1, 1]
    np.testing.assert_allclose(lower, line - 1.959963984540054 * se, rtol=1e-10)
    np.testing.assert_allclose(np.sort(xy(ax, "data")[1]), np.sort(data.Reaction))
    assert "random effects excluded" in ax.get_title() and "no other predictors" in ax.get_title()
    assert "REML" in ax.get_title()
    no_band = plots.conditional_effects(fit, "Days", interval=None, data_points=False, resolution=5)
    assert [a.get_gid() for a in no_band.get_children() if a.get_gid()] == ["prediction"]


def test_conditional_effects_posterior_is_the_posterior_mean_of_x_beta(sleep_nuts):
    _, model = sleep_nuts
    ax = plots.conditional_effects(model, "Days", interval=0.9, resolution=11)
    grid, line = xy(ax, "prediction")
    beta, _ = posterior_effects(model)
    draws = beta[:, None, 0] + beta[:, None, 1] * grid
    np.testing.assert_allclose(line, draws.mean(0), rtol=1e-10)
    band = artist(ax, "interval").get_paths()[0].vertices
    np.testing.assert_allclose(band[1:12, 1], np.quantile(draws, 0.05, axis=0), rtol=1e-10)
    assert "90 % posterior interval" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_conditional_effects_over_several_predictors(covariates, cbpp):
    """brms's effects = "Days:f" with panels by z: one line per level of f, one panel per z at its
    mean -+ SD, each line X beta at those values; the link scale gives eta itself."""
    data, _, fit = covariates
    b = fit.fixef.estimate
    axes = plots.conditional_effects(fit, ["Days", "f", "z"], resolution=5)
    assert len(axes) == 3
    z = data["z"].mean() + data["z"].std()
    assert "z = " in axes[2].get_title() and "(mean + SD)" in axes[2].get_title()
    grid, line = xy(axes[2], "prediction f = b")
    expected = b["Intercept"] + b["Days"] * grid + b["z"] * z + b["f[b]"]
    np.testing.assert_allclose(line, expected, rtol=1e-12)
    assert len(artist(axes[0], "data").get_xdata()) == len(data)  # a numeric panel shows every row
    two = plots.conditional_effects(fit, ["f", "Days"], interval=None)  # a factor on the x axis, lines by Days
    assert [t.get_text() for t in two.get_legend().get_texts()][0].startswith("Days = ")
    data, _, glmm = cbpp
    link = plots.conditional_effects(glmm, "period", scale="link")
    levels = list(glmm.design.codings.levels["period"])
    eta = glmm.predict(data.head(len(levels)).assign(period=levels), re_form="population", kind="link")
    np.testing.assert_allclose(xy(link, "prediction")[1], eta, rtol=1e-12)
    assert "linear predictor (logit link)" == link.get_ylabel()
    with pytest.raises(bayesmix.BayesmixError, match="two or three different"):
        plots.conditional_effects(fit, ["Days", "Days"])


def test_conditional_effects_holds_other_predictors_at_stated_values(covariates):
    data, _, fit = covariates
    b = fit.fixef.estimate
    ax = plots.conditional_effects(fit, "Days", resolution=4)
    title = ax.get_title()
    assert f"z = {data.z.mean():.4g} (mean)" in title and "f = a (reference level)" in title
    grid, line = xy(ax, "prediction")
    np.testing.assert_allclose(line, b["Intercept"] + b["Days"] * grid + b["z"] * data.z.mean(), rtol=1e-12)
    ax = plots.conditional_effects(fit, "Days", at={"z": 0, "f": "c"}, resolution=4)
    assert "z = 0 (set)" in ax.get_title() and "f = c (set)" in ax.get_title()
    np.testing.assert_allclose(xy(ax, "prediction")[1], b["Intercept"] + b["Days"] * grid + b["f[c]"], rtol=1e-12)
    ax = plots.conditional_effects(fit, "f")
    x, points = xy(ax, "prediction")
    np.testing.assert_array_equal(x, [0, 1, 2])
    at_means = b["Intercept"] + b["Days"] * 4.5 + b["z"] * data.z.mean()
    np.testing.assert_allclose(points, at_means + np.array([0, b["f[b]"], b["f[c]"]]), rtol=1e-12)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert "Days = 4.5 (mean)" in ax.get_title()


def test_conditional_effects_of_a_binomial_factor_on_the_probability_scale(cbpp):
    data, _, fit = cbpp
    ax = plots.conditional_effects(fit, "period")
    b, V = fit.fixef.estimate.to_numpy(), fit.vcov.to_numpy()
    X = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1]], float)
    eta, se = X @ b, np.sqrt(np.einsum("ij,jk,ik->i", X, V, X))
    np.testing.assert_allclose(xy(ax, "prediction")[1], expit(eta), rtol=1e-10)
    bars = np.array(artist(ax, "interval").get_segments())
    np.testing.assert_allclose(bars[:, 0, 1], expit(eta - 1.959963984540054 * se), rtol=1e-10)
    np.testing.assert_allclose(bars[:, 1, 1], expit(eta + 1.959963984540054 * se), rtol=1e-10)
    np.testing.assert_allclose(xy(ax, "data")[1], data.incidence / data["size"])
    assert "proportion" in ax.get_ylabel() and "no other predictors" in ax.get_title()


# --- errors --------------------------------------------------------------------------------------


def test_bad_arguments_raise_bayesmix_errors(sleep, covariates):
    data, model, fit = sleep
    unsampled = bayesmix.Model("Reaction ~ Days + (Days | Subject)", data)
    cases = [
        (lambda: plots.caterpillar(fit, group="Subjet"), "Did you mean 'Subject'"),
        (lambda: plots.caterpillar(fit, group="Subject", term="Day"), "no random-effect term 'Day'"),
        (lambda: plots.caterpillar(fit, term="Dais"), "No grouping factor has a random-effect term 'Dais'"),
        (lambda: plots.caterpillar(unsampled), "not been sampled yet"),
        (lambda: plots.qq_ranef(unsampled), "model.fit\\('reml'\\)"),
        (lambda: plots.residuals(unsampled), "not been sampled yet"),
        (lambda: plots.caterpillar("fit"), "Expected a fit from Model.fit"),
        (lambda: plots.caterpillar(fit, idata=object()), "idata= goes with a sampled"),
        (lambda: plots.shrinkage(fit, x="Dayz"), "Did you mean 'Days'"),
        (lambda: plots.residuals(fit, page=2, by_group=True), "page must be between 1 and 1"),
        (lambda: plots.residuals(fit, group="Subject"), "pass by_group=True"),
        (lambda: plots.residuals(fit, ax="axes"), "ax must be a matplotlib Axes"),
        (lambda: plots.conditional_effects(fit, "Dayz"), "Did you mean 'Days'"),
        (lambda: plots.conditional_effects(fit, "Subject"), "not a population-level predictor"),
        (lambda: plots.conditional_effects(fit, "Days", interval=95), "between 0 and 1"),
        (lambda: plots.conditional_effects(fit, "Days", at={"Days": 1}), "leave it out"),
        (lambda: plots.conditional_effects(unsampled, "Days"), "not been sampled yet"),
        (lambda: plots.conditional_effects(covariates[2], "Days", at={"g": 1}), "not a population-level"),
        (lambda: plots.conditional_effects(covariates[2], "Days", at={"f": "d"}), "not a level of 'f'"),
        (lambda: plots.conditional_effects(covariates[2], "Days", at={"z": "high"}), "must be a number"),
    ]
    for call, message in cases:
        with pytest.raises(BayesmixError, match=message):
            call()


def test_shrinkage_refuses_what_it_cannot_draw(sleep):
    data, _, _ = sleep
    three = bayesmix.Model("Reaction ~ Days + I(Days**2) + (Days + I(Days**2) | Subject)", data)
    with pytest.raises(BayesmixError, match="one or two random-effect terms; 'Subject' has 3"):
        plots.shrinkage(three)
    student = bayesmix.Model("Reaction ~ Days + (1 | Subject)", data, family="t")
    with pytest.raises(BayesmixError, match="this one is t"):
        plots.shrinkage(student)
    two_groups = bayesmix.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmix.load_dataset("Penicillin"))
    with pytest.raises(BayesmixError, match="several grouping factors \\(plate, sample\\)"):
        plots.shrinkage(two_groups)
    no_predictor = bayesmix.Model("diameter ~ 1 + (1 | plate)", bayesmix.load_dataset("Penicillin"))
    with pytest.raises(BayesmixError, match="has no predictors"):
        plots.conditional_effects(no_predictor, "plate")


def test_every_plot_takes_the_fit_as_model_keyword():
    fit = bayesmix.Model("Reaction ~ Days + (Days | Subject)", bayesmix.load_dataset("sleepstudy")).fit("reml")
    ranef = bayesmix.ranef(fit)
    figure = plots.caterpillar(model=fit, term="Days")
    drawn = np.sort(np.concatenate([line.get_xdata() for line in figure.axes[0].lines if line.get_marker() == "o"]))
    np.testing.assert_allclose(drawn, np.sort(ranef[ranef.term == "Days"].condval))
    for plot in (plots.shrinkage, plots.qq_ranef, plots.residuals, plots.scaled_residuals):
        assert plot(model=fit) is not None
    assert plots.conditional_effects(model=fit, effect="Days") is not None
