"""Whole-process cost of NUTS on y ~ x + (x | g) with 1,000 groups as the rows grow.

Each case runs in its own process (import, data, model, compilation, sampling, conditional draws of
the random effects, diagnostics), 2 chains x 500 draws after 500 tuning steps, default settings
(the collapsed model: parameterization="auto"). Prints wall time, min bulk ESS over beta, sigma and
the covariance, ESS per second, max R-hat and peak memory (RSS).

    python benchmarks/collapsed_scaling.py [--rows 10000 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CASE = r"""
import json, resource, sys, time, warnings
start = time.perf_counter()
import numpy as np, pandas as pd, arviz as az
import bayesmix
n, groups = int(sys.argv[1]), 1000
rng = np.random.default_rng(1)
g = rng.integers(0, groups, n)
x = rng.normal(size=n)
b = rng.multivariate_normal([0, 0], [[1, 0.3], [0.3, 0.5]], size=groups)
y = 1 + 0.5 * x + b[g, 0] + b[g, 1] * x + rng.normal(0, 1, n)
model = bayesmix.Model("y ~ x + (x | g)", pd.DataFrame({"y": y, "x": x, "g": g}))
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    idata = model.sample(draws=500, tune=500, chains=2, random_seed=1, progressbar=False)
summary = az.summary(idata, var_names=["beta", "sigma", "sd_g", "cor_g"], kind="diagnostics")
print(json.dumps({"seconds": time.perf_counter() - start, "ess": float(summary.ess_bulk.min()),
                  "rhat": float(summary.r_hat.max()),
                  "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}))
"""


def run(rows: int) -> dict:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CASE, str(rows)], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args()
    print("| rows | whole process (s) | min bulk ESS | ESS/s | max R-hat | peak RSS (GB) |")
    print("|---|---|---|---|---|---|")
    for rows in args.rows:
        r = run(rows)
        print(
            f"| {rows:,} | {r['wall']:.1f} | {r['ess']:.0f} | {r['ess'] / r['wall']:.1f} | {r['rhat']:.3f} | "
            f"{r['peak_gb']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
