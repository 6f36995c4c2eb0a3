"""Simulation-based calibration (Talts et al. 2018) of bayesmix's NUTS fits.

For each family: build the bayesmix model once on a fixed design (30 groups x 8 rows by default,
``--rows-per-group``; correlated random intercept and slope) with fixed, data-independent priors;
draw (parameters, y) jointly from the prior; refit on each y; record the rank of the true value
among thinned posterior draws. A calibrated sampler gives uniform ranks: the table reports
chi-square and KS p-values per parameter, and the median information ratio of the levels
(bayesmix.bayes.build.information_ratio: "auto" centres a block at >= 1).

Every replication is a fit through the product's own path, ``Model(...).sample()`` (numpyro, the
default sampler), with the parameterisation asked for; for ``marginal`` (the collapsed gaussian
model) b and beta are drawn from their exact conditional afterwards. The compiled programs take the
data as arguments, the priors here are fixed, and the programs are stored
(bayesmix/nuts/program_cache.py), so after the first replication nothing is traced or compiled: ~2 s a
replication on 2 cores. (Until 2026-11-29 the non-marginal parameterisations were sampled by nutpie,
one compilation with the data swapped: a sampler users do not get by default.)

    python benchmarks/sbc.py --reps 200 --families gaussian bernoulli poisson
    python benchmarks/sbc.py --parameterization centered   # hierarchical centring, every block
    python benchmarks/sbc.py --parameterization centered --rows-per-group 40   # informative levels
    python benchmarks/sbc.py --parameterization marginal --families gaussian --reps 100
    python benchmarks/sbc.py --parameterization auto --rows-per-group 40   # what Model.sample() does
    python benchmarks/sbc.py --cases dispersion_re censored_gaussian weibull lognormal

``--cases`` runs the model features that are not a family alone, each on its own design (see
CASES): a random intercept, ``y ~ x + (1 | g)``, with a dispersion formula with random effects
(``dispersion_re``), a censored gaussian response (``censored_gaussian``), and the weibull and
lognormal families (``weibull``, ``lognormal``), an ordinal response with four categories
(``cumulative``, logit link), the tweedie (``tweedie``), an unordered response with three
categories (``categorical``: each non-reference category with its own coefficients and group
SD), an AR(1) block over each group's times (``ar1``: ``y ~ x + ar1(0 + times | g)``) and an
exponential-correlation block over irregular positions (``exp``: ``y ~ x + exp(0 + pos | g)``).
Given ``--cases``, ``--families`` is ignored.

"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
from scipy import stats

import bayesmix
from bayesmix import Prior
from bayesmix.bayes.build import information_ratio

N_GROUPS, PER_GROUP = 30, 8
POSITIONS = ("0", "1", "2.5", "4")  # the exp case's positions within a group
SLOW_FIT_S = 120.0  # a replication slower than this is reported with its truth and tree depth
PRIORS = {
    "Intercept": Prior("Normal", mu=0.0, sigma=1.0),
    "b": Prior("Normal", mu=0.0, sigma=0.5),
    "sd_g": Prior("HalfNormal", sigma=np.array([0.8, 0.4])),
    "corr_g": Prior("LKJ", eta=2.0),
}
FAMILY_PRIORS = {
    "gaussian": {"sigma": Prior("Exponential", lam=1.0)},
    "bernoulli": {},
    "poisson": {},
    "zero_inflated_negativebinomial": {
        "alpha": Prior("LogNormal", mu=float(np.log(5.0)), sigma=0.5),
        "zi": Prior("Beta", alpha=2.0, beta=5.0),
    },
    "hurdle_poisson": {"hu": Prior("Beta", alpha=2.0, beta=3.0)},
}


# Cases beyond a family alone: a random intercept only, fixed data-independent priors (the default
# priors are scaled to the data, so a refit's priors would move with each simulated y), and the
# scalars ranked: the fixed effects, the group SD and the case's own parameters.
CASE_PRIORS = {
    "Intercept": Prior("Normal", mu=0.0, sigma=1.0),
    "b": Prior("Normal", mu=0.0, sigma=0.5),
    "sd_g": Prior("HalfNormal", sigma=np.array([0.8])),
}
_SPOTS = np.linspace(0.0, 2.0, N_GROUPS)
KNOWN_A = pd.DataFrame(
    np.exp(-np.abs(_SPOTS[:, None] - _SPOTS[None, :]) / 0.5),
    index=[str(g) for g in range(N_GROUPS)],
    columns=[str(g) for g in range(N_GROUPS)],
)
CASES = {
    # sigma by group: log sigma_g = sigma_Intercept + b_g, b_g ~ N(0, sd_dispersion_g)
    "dispersion_re": {
        "family": "gaussian",
        "kwargs": {"dispersion": "~ 1 + (1 | g)"},
        "priors": {
            "sigma_Intercept": Prior("Normal", mu=0.0, sigma=0.5),
            "sd_dispersion_g": Prior("HalfNormal", sigma=np.array([0.5])),
        },
        "own": {"sigma_Intercept": ("sigma_beta", 0), "sd_dispersion": ("sd_dispersion_g", 0)},
    },
    # y drawn uncensored from the prior predictive, then censored (censor() below)
    "censored_gaussian": {
        "family": "gaussian",
        "kwargs": {"censored": "cens"},
        "priors": {"sigma": Prior("Exponential", lam=1.0)},
        "own": {"sigma": ("sigma", None)},
    },
    # shape: the default prior, LogNormal(0, 1), which does not read the data
    "weibull": {
        "family": "weibull",
        "kwargs": {},
        "priors": {"shape": Prior("LogNormal", mu=0.0, sigma=1.0)},
        "own": {"shape": ("shape", None)},
    },
    "lognormal": {
        "family": "lognormal",
        "kwargs": {},
        "priors": {"sigma": Prior("Exponential", lam=1.0)},
        "own": {"sigma": ("sigma", None)},
    },
    # power kept below the sampler's series ceiling (TWEEDIE_POWER_CEILING, 1.9): the default
    # Uniform(1, 2) prior puts mass where the sampler refuses, and SBC asks for the prior's truth
    "tweedie": {
        "family": "tweedie",
        "kwargs": {},
        "priors": {
            "phi": Prior("LogNormal", mu=0.0, sigma=0.5),
            "power": Prior("Uniform", lower=1.1, upper=1.8),
        },
        "own": {"phi": ("phi", None), "power": ("power", None)},
    },
    # a known covariance between the 30 groups (cov=, brms's gr(g, cov = A)): A an exponential
    # correlation over 30 evenly spaced positions on [0, 2] (range 0.5), so neighbouring groups are
    # strongly related; the block's one SD is sd_intercept
    "known": {
        "family": "gaussian",
        "formula": "y ~ x + (1 | g)",
        "kwargs": {"cov": {"g": KNOWN_A}},
        "priors": {"sigma": Prior("Exponential", lam=2.0)},
        "own": {"sigma": ("sigma", None)},
    },
    # the same known covariance in a Poisson model, where Model.sample() centres the block on the
    # intercept where its groups carry information (run it with --parameterization auto)
    "known_poisson": {
        "family": "poisson",
        "formula": "y ~ x + (1 | g)",
        "kwargs": {"cov": {"g": KNOWN_A}},
        "priors": {},
        "own": {},
    },
    # an AR(1) block over 4 times of each group (glmmTMB's ar1(0 + times | g)), two rows per time:
    # one SD and rho beside sigma
    "ar1": {
        "family": "gaussian",
        "formula": "y ~ x + ar1(0 + times | g)",
        "kwargs": {"categorical": ["times"]},
        "priors": {
            "sigma": Prior("Exponential", lam=2.0),
            "sd_g": Prior("HalfNormal", sigma=0.8),
            "rho_g": Prior("Uniform", lower=-1.0, upper=1.0),
        },
        "own": {"sigma": ("sigma", None), "rho": ("rho_g", None)},
    },
    # an exponential-correlation block over 4 irregular positions of each group (glmmTMB's
    # exp(0 + pos | g), positions 0, 1, 2.5, 4 as num_factor labels), two rows per position
    "exp": {
        "family": "gaussian",
        "formula": "y ~ x + exp(0 + pos | g)",
        "kwargs": {},
        "priors": {
            "sigma": Prior("Exponential", lam=2.0),
            "sd_g": Prior("HalfNormal", sigma=0.8),
            "range_g": Prior("LogNormal", mu=float(np.log(1.5)), sigma=0.5),
        },
        "own": {"sigma": ("sigma", None), "range": ("range_g", None)},
    },
    # four ordered categories: no intercept (the thresholds take its place), so beta holds the slope
    # alone; threshold priors centred apart so that every category is observed in a replication
    "cumulative": {
        "family": "cumulative",
        "kwargs": {},
        "priors": {"thresholds": Prior("Normal", mu=np.array([-1.5, 0.0, 1.5]), sigma=0.5)},
        "own": {"threshold_1": ("thresholds", 0), "threshold_2": ("thresholds", 1), "threshold_3": ("thresholds", 2)},
        "fixed": {"b_x": 0},
    },
    # three unordered categories (brms's categorical), the formula once per non-reference category:
    # "Intercept" and "b" set both categories' coefficients, each category its own group SD
    "categorical": {
        "family": "categorical",
        "kwargs": {},
        "priors": {
            "sd_mu2_g": Prior("HalfNormal", sigma=np.array([0.8])),
            "sd_mu3_g": Prior("HalfNormal", sigma=np.array([0.8])),
        },
        "drop": ("sd_g",),
        "fixed": {},
        "own": {
            "mu2_Intercept": ("mu2_beta", 0),
            "mu2_x": ("mu2_beta", 1),
            "mu3_Intercept": ("mu3_beta", 0),
            "mu3_x": ("mu3_beta", 1),
            "sd_mu2": ("sd_mu2_g", 0),
            "sd_mu3": ("sd_mu3_g", 0),
        },
    },
}
CENSOR_LOW, CENSOR_HIGH = 0.15, 0.90  # left-censored below this quantile of y, right-censored above that


def placeholder(family: str, rng, per_group: int) -> pd.DataFrame:
    n = N_GROUPS * per_group
    y = rng.integers(0, 2, n).astype(float) if family != "gaussian" else rng.normal(size=n)  # 0/1: any count family
    return pd.DataFrame({"y": y, "x": rng.normal(size=n), "g": np.repeat(np.arange(N_GROUPS), per_group)})


def scalars(group, family: str) -> dict[str, np.ndarray]:
    """The scalar parameters that are ranked, each (chains, draws), from a prior or posterior group."""
    out = {
        "Intercept": group["beta"].values[..., 0],
        "b_x": group["beta"].values[..., 1],
        "sd_intercept": group["sd_g"].values[..., 0],
        "sd_x": group["sd_g"].values[..., 1],
        "corr": group["cor_g"].values[..., 0],
        "re_first": group["re_g"].values[..., 0, 0],
    }
    for name in FAMILY_PRIORS[family]:  # the family's own parameters (sigma, alpha, zi, hu)
        out[name] = group[name].values
    return out


def run_family(
    family: str,
    reps: int,
    draws: int,
    thin: int,
    seed: int,
    parameterization: str,
    per_group: int,
    target_accept: float | None = None,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = placeholder(family, rng, per_group)
    priors = {**PRIORS, **FAMILY_PRIORS[family]}
    model = bayesmix.Model("y ~ x + (x | g)", frame, family=family, priors=priors)
    # the truth from the non-centred model's prior: the same joint prior for every parameterisation
    prior = pm.sample_prior_predictive(draws=reps, model=model.pymc_model("noncentered"), random_seed=seed)
    truth = {name: values[0] for name, values in scalars(prior.prior, family).items()}
    y_sim = prior.prior_predictive["y"].values[0]
    ranks = {name: [] for name in truth}
    # how much each level's data say about its effects (the ratio that parameterization="auto"
    # centres at >= 1), per replication
    designs = (bayesmix.Model("y ~ x + (x | g)", frame.assign(y=y), family=family).design for y in y_sim)
    ratios = [information_ratio(design, design.blocks[0]) for design in designs]
    failures = 0
    start = time.perf_counter()
    for r in range(reps):
        try:
            posterior = (
                bayesmix.Model("y ~ x + (x | g)", frame.assign(y=y_sim[r]), family=family, priors=priors)
                .sample(
                    draws=draws,
                    tune=500,
                    chains=2,
                    random_seed=seed + r,
                    progressbar=False,
                    parameterization=parameterization,
                    target_accept=target_accept,
                    posterior_predictive=False,
                )
                .posterior
            )
        except Exception:
            failures += 1
            continue
        if (r + 1) % 10 == 0:
            print(
                f"{family} {parameterization}: {r + 1}/{reps} replications, {time.perf_counter() - start:.0f} s",
                flush=True,
            )
        for name, draws_ in scalars(posterior, family).items():
            thinned = draws_[:, ::thin].ravel()
            ranks[name].append(int(np.sum(thinned < truth[name][r])))
    elapsed = time.perf_counter() - start
    n_ranks = (draws // thin) * 2 + 1
    rows = []
    for name, rank in ranks.items():
        rank = np.asarray(rank)
        bins = 10
        counts = np.histogram(rank, bins=bins, range=(0, n_ranks))[0]
        rows.append(
            {
                "family": family,
                "parameterization": parameterization,
                "parameter": name,
                "reps": len(rank),
                "chi2_p": stats.chisquare(counts).pvalue,
                "ks_p": stats.kstest((rank + rng.uniform(size=len(rank))) / n_ranks, "uniform").pvalue,
                "failed": failures,
                "info_ratio": float(np.median(ratios)),
                "s_per_rep": elapsed / reps,
            }
        )
    return pd.DataFrame(rows)


def case_placeholder(family: str, rng, per_group: int) -> pd.DataFrame:
    n = N_GROUPS * per_group
    y = rng.normal(size=n)
    if family == "cumulative":  # categories 1..4, each present (the replications' y replace it)
        y = np.log(1.0 + np.arange(n) % 4)
    if family == "categorical":  # categories 1..3 (their parameters: mu2, mu3), exactly whole numbers
        y = np.log(1 + np.arange(n) % 3)
        return pd.DataFrame(
            {"y": 1 + np.arange(n) % 3, "x": rng.normal(size=n), "g": np.repeat(np.arange(N_GROUPS), per_group)}
        )
    return pd.DataFrame(
        {
            "y": y if family == "gaussian" else np.round(np.exp(y)) if family == "poisson" else np.exp(y),
            "x": rng.normal(size=n),
            "g": np.repeat(np.arange(N_GROUPS), per_group),
            # ar1's time factor: each time twice per group, so that sigma is told apart from the block's SD
            "times": np.tile([f"t{k // 2 + 1:02d}" for k in range(per_group)], N_GROUPS),
            # exp's positions, glmmTMB's numFactor labels (used with per_group 8: 4 positions, twice each)
            "pos": np.tile([f"({POSITIONS[(k // 2) % len(POSITIONS)]})" for k in range(per_group)], N_GROUPS),
            "cens": "none",
        }
    )


def case_scalars(group, case: str) -> dict[str, np.ndarray]:
    """The ranked scalars of a case, each (chains, draws), from a prior or posterior group."""
    fixed = CASES[case].get("fixed", {"Intercept": 0, "b_x": 1})  # name -> its column of beta
    out = {name: group["beta"].values[..., j] for name, j in fixed.items()}
    if "sd_g" in group:
        out["sd_intercept"] = group["sd_g"].values[..., 0]
    for name, (variable, index) in CASES[case]["own"].items():
        values = group[variable].values
        out[name] = values if index is None else values[..., index]
    return out


def censor(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left-censor the rows below the CENSOR_LOW order statistic of y at it (code "left": the value is
    at most that) and right-censor those above the CENSOR_HIGH one (code "right": more than it). The
    limits are order statistics, not interpolated quantiles: the likelihood of the data so censored is
    then, as a function of the parameters, the censored model's (type II censoring), so SBC stays exact."""
    order = np.sort(y)
    low, high = order[int(CENSOR_LOW * len(y))], order[int(CENSOR_HIGH * len(y))]
    codes = np.where(y < low, "left", np.where(y > high, "right", "none"))
    return np.clip(y, low, high), codes


def run_case(
    case: str,
    reps: int,
    draws: int,
    thin: int,
    seed: int,
    parameterization: str,
    per_group: int,
    target_accept: float | None = None,
    progress: str | None = None,
) -> pd.DataFrame:
    spec = CASES[case]
    family, kwargs = spec["family"], spec["kwargs"]
    rng = np.random.default_rng(seed)
    frame = case_placeholder(family, rng, per_group)
    priors = {**CASE_PRIORS, **spec["priors"]}
    if "drop" in spec:  # priors of parameters the case's model does not have
        priors = {key: value for key, value in priors.items() if key not in spec["drop"]}
    elif "Intercept" not in spec.get("fixed", {"Intercept": 0}):  # an ordinal model has none
        del priors["Intercept"]
    formula = spec.get("formula", "y ~ x + (1 | g)")
    # the truth from the non-centred model's prior; a censored case draws y uncensored (the same
    # joint prior: the model without censored=) and censors it afterwards
    drawn = {key: value for key, value in kwargs.items() if key != "censored"}
    model = bayesmix.Model(formula, frame, family=family, priors=priors, **drawn)
    prior = pm.sample_prior_predictive(draws=reps, model=model.pymc_model("noncentered"), random_seed=seed)
    truth = {name: values[0] for name, values in case_scalars(prior.prior, case).items()}
    y_sim = prior.prior_predictive["y"].values[0]
    ranks = {name: [] for name in truth}
    failures, divergent_fits, divergences, high_rhat, max_rhat, censored = 0, 0, 0, 0, 1.0, []
    start = time.perf_counter()
    done = _load_progress(progress, case)
    for r in range(reps):
        if r in done:  # a replication an earlier run of the same seed finished: its ranks and diagnostics
            rank_r, n_div, rhat = done[r]
            for name, value in rank_r.items():
                ranks[name].append(value)
            divergences, divergent_fits = divergences + n_div, divergent_fits + (n_div > 0)
            high_rhat += rhat > 1.01
            max_rhat = max(max_rhat, rhat)
            continue
        data = frame.assign(y=y_sim[r])
        if "censored" in kwargs:
            y_c, codes = censor(y_sim[r])
            data = data.assign(y=y_c, cens=codes)
            censored.append(np.mean(codes != "none"))
        try:
            fit_start = time.perf_counter()
            idata = bayesmix.Model(formula, data, family=family, priors=priors, **kwargs).sample(
                draws=draws,
                tune=500,
                chains=2,
                random_seed=seed + r,
                progressbar=False,
                parameterization=parameterization,
                target_accept=target_accept,
                posterior_predictive=False,
            )
        except Exception as exc:
            print(f"{case}: replication {r} failed: {exc!r}", flush=True)
            failures += 1
            continue
        fit_s = time.perf_counter() - fit_start
        if fit_s > SLOW_FIT_S:  # where a run's time goes: the truth and the tree depth of a slow fit
            depth = int(idata.sample_stats["tree_depth"].values.max()) if "tree_depth" in idata.sample_stats else -1
            drawn = ", ".join(f"{name} {values[r]:.3g}" for name, values in truth.items())
            print(f"{case}: replication {r} took {fit_s:.0f} s (max tree depth {depth}; truth {drawn})", flush=True)
        n_div = int(idata.sample_stats["diverging"].values.sum())
        divergences += n_div
        divergent_fits += n_div > 0
        estimated = case_scalars(idata.posterior, case)
        rhats = {name: float(az.rhat(values)) for name, values in estimated.items()}
        worst = max(rhats, key=rhats.get)
        rhat = rhats[worst]
        high_rhat += rhat > 1.01
        if rhat > 1.05:
            print(f"{case}: replication {r}: R-hat {rhat:.3f} ({worst}), {n_div} divergences", flush=True)
        max_rhat = max(max_rhat, rhat)
        if (r + 1) % 10 == 0:
            print(
                f"{case} {parameterization}: {r + 1}/{reps} replications, {time.perf_counter() - start:.0f} s",
                flush=True,
            )
        rank_r = {name: int(np.sum(d[:, ::thin].ravel() < truth[name][r])) for name, d in estimated.items()}
        for name, value in rank_r.items():
            ranks[name].append(value)
        _save_progress(progress, case, r, rank_r, n_div, rhat)
    elapsed = time.perf_counter() - start
    if censored:
        print(f"{case}: {100 * np.mean(censored):.1f} % of rows censored", flush=True)
    n_ranks = (draws // thin) * 2 + 1
    rows = []
    for name, rank in ranks.items():
        rank = np.asarray(rank)
        counts = np.histogram(rank, bins=10, range=(0, n_ranks))[0]
        rows.append(
            {
                "case": case,
                "parameterization": parameterization,
                "parameter": name,
                "reps": len(rank),
                "chi2_p": stats.chisquare(counts).pvalue,
                "ks_p": stats.kstest((rank + rng.uniform(size=len(rank))) / n_ranks, "uniform").pvalue,
                "histogram": " ".join(str(c) for c in counts),
                "failed": failures,
                "div_fits": divergent_fits,
                "div_total": divergences,
                "rhat>1.01": high_rhat,
                "max_rhat": max_rhat,
                "s_per_rep": elapsed / reps,
            }
        )
    return pd.DataFrame(rows)


def _load_progress(path: str | None, case: str) -> dict[int, tuple[dict[str, int], int, float]]:
    """{replication: (ranks, divergences, worst R-hat)} that an earlier run wrote to ``path`` (a run
    of hours can then go on in a later process: the truths come from the seed, so they are the same)."""
    if path is None or not os.path.exists(path):
        return {}
    rows = pd.read_csv(path)
    rows = rows[rows.case == case]
    out = {}
    for r, group in rows.groupby("rep"):
        ranks = dict(zip(group.parameter, group["rank"].astype(int)))
        out[int(r)] = (ranks, int(group.n_div.iloc[0]), float(group.rhat.iloc[0]))
    return out


def _save_progress(path: str | None, case: str, r: int, ranks: dict[str, int], n_div: int, rhat: float) -> None:
    if path is None:
        return
    rows = pd.DataFrame(
        {"case": case, "rep": r, "parameter": list(ranks), "rank": list(ranks.values()), "n_div": n_div, "rhat": rhat}
    )
    rows.to_csv(path, mode="a", header=not os.path.exists(path), index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--thin", type=int, default=5)
    parser.add_argument("--families", nargs="+", default=["gaussian", "bernoulli", "poisson"])
    parser.add_argument(
        "--cases", nargs="+", default=None, choices=list(CASES), help="run these cases (CASES) instead of --families"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--parameterization", default="noncentered", choices=["noncentered", "centered", "marginal", "auto"]
    )
    parser.add_argument("--rows-per-group", type=int, default=PER_GROUP)
    parser.add_argument(
        "--target-accept", type=float, default=None, help="Model.sample's target_accept (default: its own choice)"
    )
    parser.add_argument(
        "--progress", default=None, help="CSV each finished replication is appended to; a rerun goes on from it (cases)"
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    run, names = (run_case, args.cases) if args.cases else (run_family, args.families)
    options = (args.reps, args.draws, args.thin, args.seed, args.parameterization, args.rows_per_group)
    extra = {"progress": args.progress} if args.cases else {}
    table = pd.concat([run(f, *options, args.target_accept, **extra) for f in names])
    pd.set_option("display.width", 120)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    p_values = table.chi2_p.to_numpy()
    print(
        f"\nmin chi-square p = {p_values.min():.3f} over {len(p_values)} tests "
        f"(Bonferroni 5% threshold {0.05 / len(p_values):.4f})"
    )
    if args.cases:  # each case is its own family of tests
        for case, rows in table.groupby("case", sort=False):
            worst = rows.iloc[int(np.argmin(rows.chi2_p.to_numpy()))]
            threshold = 0.05 / len(rows)
            verdict = (
                "pass" if worst.chi2_p >= threshold else f"FAIL ({', '.join(rows.parameter[rows.chi2_p < threshold])})"
            )
            print(
                f"{case}: min chi-square p = {worst.chi2_p:.4f} ({worst.parameter}) over {len(rows)} tests, "
                f"Bonferroni 5% threshold {threshold:.4f}: {verdict}"
            )


if __name__ == "__main__":
    main()
