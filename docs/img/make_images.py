"""Draw the images of docs/plots.md: python docs/img/make_images.py (from the repository root)."""

import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")

import bayesmix  # noqa: E402
import bayesmix.plots as plots  # noqa: E402

OUT = Path(__file__).parent


def save(obj, name: str) -> None:
    figure = obj if isinstance(obj, matplotlib.figure.Figure) else obj.figure
    figure.savefig(OUT / name, dpi=110)
    matplotlib.pyplot.close(figure)
    print("wrote", OUT / name)


def overdispersed_poisson_fit():
    """A Poisson GLMM fitted to negative binomial counts (alpha = 1): what scaled residuals catch."""
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(30), 20)
    x = rng.normal(size=g.size)
    mu = np.exp(0.5 + 0.4 * x + rng.normal(0, 0.5, 30)[g])
    data = pd.DataFrame({"y": rng.poisson(rng.gamma(1.0, mu)), "x": x, "g": [f"g{i}" for i in g]})
    return bayesmix.Model("y ~ x + (1 | g)", data, family="poisson").fit("laplace")


def counts_images() -> None:
    """docs/counts.md: a poisson GLMM and a zero-inflated one of Salamanders (glmmTMB's data)."""
    data = pd.read_csv(Path(__file__).parents[2] / "tests" / "data" / "salamanders.csv")
    formula = "count ~ spp + mined + (1 | site)"
    poisson = bayesmix.Model(formula, data, family="poisson").fit("laplace")
    zip_fit = bayesmix.Model(formula, data, family="zero_inflated_poisson", zi="~ mined").fit("laplace")
    save(plots.scaled_residuals(poisson, random_seed=1), "salamanders_poisson_scaled_residuals.png")
    save(plots.scaled_residuals(zip_fit, random_seed=1), "salamanders_zip_scaled_residuals.png")
    save(plots.conditional_effects(zip_fit, "mined"), "salamanders_zip_conditional_effects.png")


def censoring_images() -> None:
    """docs/censoring.md: a Tobit mixed model (censored gaussian) beside a fit that takes the
    recorded values at face value."""
    import matplotlib.pyplot as plt

    data = pd.read_csv(Path(__file__).parents[2] / "tests" / "data" / "censored_gaussian_sim.csv")
    censored = bayesmix.Model("y ~ x + (1 | g)", data, censored="cens", upper="upper").fit("laplace")
    naive = bayesmix.Model("y ~ x + (1 | g)", data).fit("ml")
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for code, colour in (("none", "0.6"), ("left", "tab:blue"), ("right", "tab:red"), ("interval", "tab:green")):
        rows = data["cens"] == code
        axis.scatter(data.x[rows], data.y[rows], s=8, color=colour, alpha=0.7, label=f"{code} ({rows.sum()})")
    grid = np.linspace(data.x.min(), data.x.max(), 50)
    for fit, style, name in ((censored, "-", "censored model (Laplace)"), (naive, "--", "values at face value (ML)")):
        b = fit.fixef["estimate"]
        axis.plot(grid, b["Intercept"] + b["x"] * grid, "k" + style, label=name)
    axis.set_xlabel("x")
    axis.set_ylabel("y (recorded)")
    axis.legend(fontsize=8, loc="upper left")
    axis.set_title("A detection limit (left) and a ceiling (right) hide part of the slope")
    save(figure, "censored_gaussian_fits.png")


def grouping_images() -> None:
    """docs/known_covariance.md and docs/multi_membership.md: the groups' effects."""
    data = Path(__file__).parents[2] / "tests" / "data"
    relatedness = pd.read_csv(data / "known_cov_A.csv").set_index("species")
    known = bayesmix.Model(
        "y ~ x + (1 | species)", pd.read_csv(data / "known_cov_sim.csv"), cov={"species": relatedness}
    )
    save(plots.caterpillar(known.fit("reml")), "known_cov_caterpillar.png")
    formula = "y ~ x + (1 | mm(s1, s2, weights = cbind(w1, w2))) + (1 | region)"
    save(plots.caterpillar(bayesmix.Model(formula, pd.read_csv(data / "mm_sim.csv")).fit("reml")), "mm_caterpillar.png")


def smooth_by_image() -> None:
    """docs/smooths.md: s(x, by = f), a curve per level, by REML and by NUTS side by side."""
    data = pd.read_csv(Path(__file__).parents[2] / "tests" / "data" / "smooth_by_sim.csv")
    model = bayesmix.Model("y ~ f + s(x, by = f) + (1 | g)", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit()
        model.sample(draws=400, tune=400, chains=2, random_seed=1, progressbar=False)
    figure, axes = matplotlib.pyplot.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, source, name in ((axes[0], fit, "REML (gamm4's fit)"), (axes[1], model, "NUTS")):
        plots.conditional_effects(source, ["x", "f"], ax=ax)
        ax.set_title(f"{name}\n{ax.get_title().splitlines()[-1]}", fontsize=9)
    figure.tight_layout()
    figure.savefig(OUT / "smooth_by_conditional_effects.png", dpi=90)
    matplotlib.pyplot.close(figure)


def spatial_image() -> None:
    """docs/spatial_covariance.md: the fitted correlation over distance of exp, gau and mat on one field."""
    from bayesmix.design.matern import matern_correlation

    data = pd.read_csv(Path(__file__).parents[2] / "tests" / "data" / "matern_sim.csv").assign(group="field")
    data["pos"] = bayesmix.num_factor(data["x1"], data["x2"])
    distance = np.linspace(1e-6, 8.0, 200)
    curves = {
        "exp": lambda v: np.exp(-distance / v["range"]),
        "gau": lambda v: np.exp(-((distance / v["range"]) ** 2)),
        "mat": lambda v: np.array(
            [matern_correlation(np.array([[0.0, d], [d, 0.0]]), v["range"], v["smoothness"])[0, 1] for d in distance]
        ),
    }
    figure, ax = matplotlib.pyplot.subplots(figsize=(6.4, 4.2))
    for kind, curve in curves.items():
        fit = bayesmix.Model(f"y ~ x + {kind}(0 + pos | group)", data).fit()
        entry = fit.varcorr[0]
        label = f"{kind}: range {entry['range']:.2f}"
        label += f", smoothness {entry['smoothness']:.2f}" if kind == "mat" else ""
        ax.plot(distance, curve(entry), lw=2, label=f"{label} (logLik {fit.loglik:.2f})")
    ax.set_xlabel("distance between sites")
    ax.set_ylabel("fitted correlation of the field")
    ax.set_title("One field, three structures (REML fits)", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    figure.tight_layout()
    figure.savefig(OUT / "spatial_correlation.png", dpi=100)
    matplotlib.pyplot.close(figure)


def main() -> None:
    sleep = bayesmix.Model("Reaction ~ Days + (Days | Subject)", bayesmix.load_dataset("sleepstudy"))
    reml = sleep.fit("reml")
    save(plots.caterpillar(reml), "sleepstudy_caterpillar.png")
    save(plots.shrinkage(reml), "sleepstudy_shrinkage.png")
    save(plots.qq_ranef(reml), "sleepstudy_qq_ranef.png")
    save(plots.residuals(reml), "sleepstudy_residuals.png")
    save(plots.residuals(reml, by_group=True), "sleepstudy_residuals_by_subject.png")
    save(plots.conditional_effects(reml, "Days"), "sleepstudy_conditional_effects_reml.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sleep.sample(draws=500, tune=500, chains=2, random_seed=1, progressbar=False)
    save(plots.conditional_effects(sleep, "Days"), "sleepstudy_conditional_effects_nuts.png")
    save(plots.caterpillar(sleep), "sleepstudy_caterpillar_nuts.png")

    cbpp = bayesmix.Model(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", bayesmix.load_dataset("cbpp"), family="binomial"
    )
    laplace = cbpp.fit("laplace")
    save(plots.conditional_effects(laplace, "period"), "cbpp_conditional_effects.png")
    save(plots.shrinkage(laplace), "cbpp_shrinkage.png")
    save(plots.caterpillar(laplace), "cbpp_caterpillar.png")

    save(plots.scaled_residuals(laplace, random_seed=1), "cbpp_scaled_residuals.png")
    save(plots.scaled_residuals(overdispersed_poisson_fit(), random_seed=1), "overdispersed_scaled_residuals.png")

    penicillin = bayesmix.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmix.load_dataset("Penicillin"))
    save(plots.caterpillar(penicillin.fit("reml")), "penicillin_caterpillar.png")
    grouping_images()
    smooth_by_image()
    spatial_image()


if __name__ == "__main__":
    main()
