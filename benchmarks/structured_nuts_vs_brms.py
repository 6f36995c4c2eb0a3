"""NUTS on an AR(1) random effect over 500 subjects x 10 times: bayesmix beside brms, in one run.

The data are structured_vs_glmmtmb.py's (seed 1, written to a CSV both read): y = 1 + 0.5 x +
b[subject, time] + e, b AR(1) over the times (rho 0.6, SD 1), e of SD 0.5. The same model in each:

- bayesmix: ``Model("y ~ x + ar1(0 + times | subject)", d, categorical=["times"]).sample(draws,
  tune, chains=2, random_seed=1)``, a latent AR(1) effect per subject and time plus a residual.
- brms: brms has no AR(1) random-effect term; its AR(1) residual process, written as a residual
  covariance (``ar(time = t, gr = subject, p = 1, cov = TRUE)``), plus an iid effect per row
  (``(1 | obs)``) is the same model: per subject, Cov(y) = s^2 R(rho) + sigma^2 I. ``brm(...,
  chains = 2, cores = 2, iter = tune + draws, warmup = tune, seed = 1)``, brms's default priors and
  backend (rstan).

Each engine is a whole process, timed by this script from its start to its exit; brms's
compilation is reported apart from its sampling (``get_elapsed_time``: warmup + sampling, the
slower chain). ESS is the minimum bulk ESS (ArviZ's for bayesmix, posterior's ``ess_bulk`` for
brms: the same rank-normalised estimator) over the fixed effects, the AR(1) SD and rho and the
residual SD. Reported: bayesmix's ESS per second of its whole process (compilation included) and
of its sampling; brms's per second of sampling (and of its whole process).

    . .venv/bin/activate
    python benchmarks/structured_nuts_vs_brms.py --out /tmp/structured_nuts_vs_brms.json

rstan compiles against the headers of R's ``BH`` package, which Debian's r-cran-bh does not ship:
``ln -s /usr/include/boost /usr/lib/R/site-library/BH/include/boost`` (results: docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from confint_vs_lme4 import timed  # noqa: E402 - a whole process, timed from start to exit
from structured_vs_glmmtmb import simulate  # noqa: E402 - the same data

PYTHON = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
import arviz as az, numpy as np, pandas as pd, bayesmix
d = pd.read_csv("{data}", dtype={{"times": str, "subject": str}})
model = bayesmix.Model("y ~ x + ar1(0 + times | subject)", d, categorical=["times"])
start = time.perf_counter()
idata = model.sample(draws={draws}, tune={tune}, chains=2, random_seed=1, progressbar=False, posterior_predictive=False)
sample_s = time.perf_counter() - start
post = idata.posterior
scalars = {{
    "Intercept": post["beta"].sel(coef="Intercept"), "x": post["beta"].sel(coef="x"),
    "sd": post["sd_subject"].isel(subject__term=0), "rho": post["rho_subject"], "sigma": post["sigma"],
}}
ess = {{name: float(az.ess(values.values)) for name, values in scalars.items()}}
rhat = {{name: float(az.rhat(values.values)) for name, values in scalars.items()}}
means = {{name: float(values.mean()) for name, values in scalars.items()}}
json.dump({{"sample_s": sample_s, "ess": ess, "rhat": rhat, "means": means,
           "divergences": int(idata.sample_stats["diverging"].sum())}}, sys.stdout)
"""

R = """
suppressPackageStartupMessages({{library(brms); library(posterior)}})
d <- read.csv("{data}", colClasses = c(times = "character", subject = "character"))
d$t <- as.integer(sub("t", "", d$times)); d$obs <- seq_len(nrow(d))
formula <- bf(y ~ x + ar(time = t, gr = subject, p = 1, cov = TRUE) + (1 | obs))
start <- proc.time()[["elapsed"]]
model <- brm(formula, data = d, chains = 0, backend = "rstan", silent = 2, refresh = 0)
compile_s <- proc.time()[["elapsed"]] - start
fit <- update(model, recompile = FALSE, chains = 2, cores = 2, iter = {iter}, warmup = {tune}, seed = 1,
              refresh = 0, silent = 2)
elapsed <- rstan::get_elapsed_time(fit$fit)
draws <- as_draws_df(fit, variable = c("b_Intercept", "b_x", "ar[1]", "sigma", "sd_obs__Intercept"))
names <- c("b_Intercept", "b_x", "ar[1]", "sigma", "sd_obs__Intercept")
ess <- sapply(names, function(v) ess_bulk(extract_variable_matrix(draws, v)))
rhat <- sapply(names, function(v) rhat(extract_variable_matrix(draws, v)))
means <- sapply(names, function(v) mean(extract_variable_matrix(draws, v)))
np <- nuts_params(fit)
cat(jsonlite::toJSON(list(compile_s = compile_s, sample_s = max(rowSums(elapsed)), ess = as.list(ess),
                          rhat = as.list(rhat), means = as.list(means),
                          divergences = sum(np$Value[np$Parameter == "divergent__"])),
                     auto_unbox = TRUE, digits = NA))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--engines", default="bayesmix,brms")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    result = {"draws": args.draws, "tune": args.tune, "chains": 2}
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "ar1.csv"
        simulate(data)
        for engine in args.engines.split(","):
            if engine == "bayesmix":
                code = PYTHON.format(data=data, draws=args.draws, tune=args.tune)
                command = [sys.executable, "-c", code]
            else:
                code = R.format(data=data, iter=args.tune + args.draws, tune=args.tune)
                command = ["Rscript", "-e", code]
            wall, out = timed(command)
            record = out | {"wall_s": wall}
            record["min_ess"] = min(record["ess"].values())
            record["ess_per_s_sampling"] = record["min_ess"] / record["sample_s"]
            record["ess_per_s_process"] = record["min_ess"] / wall
            result[engine] = record
            print(engine, json.dumps(record), flush=True)
    if "bayesmix" in result and "brms" in result:
        result["ratio_process_vs_sampling"] = (
            result["bayesmix"]["ess_per_s_process"] / result["brms"]["ess_per_s_sampling"]
        )
        print(
            "bayesmix ESS/s (whole process) over brms ESS/s (sampling):", round(result["ratio_process_vs_sampling"], 1)
        )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
