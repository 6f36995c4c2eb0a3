"""Calibration of bayesmix.scaled_residuals' tests on data simulated from the fitted model's own form.

A test is calibrated when, on data simulated from the model, its p-values are uniform: it rejects
at 5 % in 5 % of the replications. Each replication simulates one data set from ``y ~ x + (1 | g)``
(40 groups x 5 rows; gaussian: intercept 1, slope 0.5, group SD 2, sigma 1; poisson, log link:
intercept 0.5, slope 0.4, group SD 1: group effects strong enough for shrinkage to matter), fits it
once (REML, Laplace or NUTS) and computes the scaled residuals with both ``re_form`` options from
that fit. The table gives, per option, the dispersion test's rejection rate at 5 % with its exact
(Clopper-Pearson) 95 % interval, the KS p-value of the dispersion p-values against the uniform (a
conservative test, whose p-values pile up near 1, fails this while rejecting rarely), and the
rejection rates of the other two tests (uniformity, outliers).

NUTS runs are short (2 chains x 250 draws after 250 tuning, numpyro) and spread over worker
processes; ``--time-limit`` stops the NUTS replications after that many minutes and reports how
many finished. ``--module`` takes the tests from another checks.py (e.g. an earlier commit's) to
measure it on the same data.

    python benchmarks/dispersion_calibration.py --reps 500 --workers 2
    python benchmarks/dispersion_calibration.py --reps 60 --options reml laplace   # exact fits only
    git show d049277:bayesmix/checks.py > /tmp/old_checks.py
    python benchmarks/dispersion_calibration.py --module /tmp/old_checks.py --options reml laplace
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
import warnings

import numpy as np
import pandas as pd
from scipy import stats

GROUPS, PER_GROUP = 40, 5
# option name -> (family, fit: "reml" | "laplace" | "nuts")
FITS = {"reml": ("gaussian", "reml"), "laplace": ("poisson", "laplace"), "nuts": ("gaussian", "nuts")}
FITS["nuts_poisson"] = ("poisson", "nuts")
RE_FORMS = ("unconditional", "conditional")


def simulate(family: str, seed: int) -> pd.DataFrame:
    """One data set from y ~ x + (1 | g) with the benchmark's true parameters."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(GROUPS), PER_GROUP)
    x = rng.normal(size=g.size)
    if family == "gaussian":
        y = 1.0 + 0.5 * x + rng.normal(0, 2.0, GROUPS)[g] + rng.normal(0, 1.0, g.size)
    else:
        y = rng.poisson(np.exp(0.5 + 0.4 * x + rng.normal(0, 1.0, GROUPS)[g])).astype(float)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


def checks_function(module: str | None):
    """bayesmix.scaled_residuals, or the one in the checks.py file ``module``."""
    if module is None:
        from bayesmix import scaled_residuals

        return scaled_residuals
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("other_checks", module)
    other = importlib.util.module_from_spec(spec)
    sys.modules["other_checks"] = other
    spec.loader.exec_module(other)
    return other.scaled_residuals


def replicate(task):
    """(option, rep) -> rows of p-values for both re_forms, or a failure row."""
    import bayesmix

    option, rep, seed, n_sim, module = task
    scaled_residuals = checks_function(module)
    family, method = FITS[option]
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = bayesmix.Model("y ~ x + (1 | g)", simulate(family, seed), family=family)
            if method == "nuts":
                model.sample(chains=2, draws=250, tune=250, progressbar=False, random_seed=seed)
                fit = model
            else:
                fit = model.fit(method)
            rows = []
            for re_form in RE_FORMS:
                check = scaled_residuals(fit, n_sim=n_sim, re_form=re_form, random_seed=seed + 1)
                rows.append(
                    {
                        "option": option,
                        "re_form": re_form,
                        "rep": rep,
                        "dispersion_p": check.dispersion_pvalue,
                        "dispersion_ratio": check.dispersion_ratio,
                        "ks_p": check.ks_pvalue,
                        "outlier_p": check.outlier_pvalue,
                        "seconds": time.perf_counter() - start,
                    }
                )
            return rows
    except Exception as error:  # a failed fit is counted, not hidden
        return [{"option": option, "re_form": f, "rep": rep, "error": repr(error)} for f in RE_FORMS]


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    alpha = 1 - level
    lower = stats.beta.ppf(alpha / 2, k, n - k + 1) if k > 0 else 0.0
    upper = stats.beta.ppf(1 - alpha / 2, k + 1, n - k) if k < n else 1.0
    return float(lower), float(upper)


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (option, re_form), part in results.groupby(["option", "re_form"], sort=False):
        ok = part.dropna(subset=["dispersion_p"]) if "dispersion_p" in part else part.iloc[:0]
        n = len(ok)
        k = int((ok["dispersion_p"] < 0.05).sum())
        lower, upper = clopper_pearson(k, n)
        family, method = FITS[option]
        rows.append(
            {
                "fit": f"{family} {method}",
                "re_form": re_form,
                "reps": n,
                "failed": len(part) - n,
                "reject_5%": k / n,
                "ci_low": lower,
                "ci_high": upper,
                "ks_p_uniform": stats.kstest(ok["dispersion_p"], "uniform").pvalue,
                "median_p": ok["dispersion_p"].median(),
                "mean_ratio": ok["dispersion_ratio"].mean(),
                "ks_reject_5%": float((ok["ks_p"] < 0.05).mean()),
                "outlier_reject_5%": float((ok["outlier_p"] < 0.05).mean()),
                "s_per_rep": ok["seconds"].mean(),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=500, help="replications per fit")
    parser.add_argument("--options", nargs="+", default=list(FITS), choices=list(FITS))
    parser.add_argument("--n-sim", type=int, default=250)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--time-limit", type=float, default=40.0, help="minutes for each NUTS option")
    parser.add_argument("--csv", default=None, help="write every replication's p-values here")
    parser.add_argument("--module", default=None, help="a checks.py file whose scaled_residuals to measure")
    args = parser.parse_args()

    frames = []
    context = mp.get_context("spawn")  # JAX does not survive fork
    for option in args.options:
        tasks = [(option, r, args.seed * 1_000_003 + 7919 * r, args.n_sim, args.module) for r in range(args.reps)]
        limit = 60 * args.time_limit if FITS[option][1] == "nuts" else np.inf
        rows, started = [], time.monotonic()
        pool = context.Pool(args.workers)  # one per option: a time limit ends it with its unfinished tasks
        try:
            for result in pool.imap_unordered(replicate, tasks):
                rows.extend(result)
                if time.monotonic() - started > limit:
                    print(f"{option}: time limit reached", flush=True)
                    break
        finally:
            pool.terminate()
            pool.join()
        frames.append(pd.DataFrame(rows))
        print(f"{option}: {len(rows) // 2} replications in {time.monotonic() - started:.0f} s", flush=True)
    results = pd.concat(frames, ignore_index=True)
    if args.csv:
        results.to_csv(args.csv, index=False)
    table = summarise(results)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
