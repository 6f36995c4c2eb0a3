"""An AR(1) random effect over 500 subjects x 10 times, bayesmix beside glmmTMB in one run.

Simulated once here (seed 1, written to a CSV both read): y = 1 + 0.5 x + b[subject, time] + e, b
AR(1) over the times with rho 0.6 and SD 1, e of SD 0.5; and a Poisson version with the same
structure. Each measurement is a whole process timed from its start to its exit: ``python -c``
(import bayesmix, read the CSV, ``Model("y ~ x + ar1(0 + times | subject)").fit()``) against
``Rscript -e`` (load glmmTMB, ``read.csv``, ``glmmTMB(y ~ x + ar1(times + 0 | subject), REML = ...)``),
REML for the Gaussian model and Laplace for the Poisson one. Reported: the median of ``--repeat``
runs and the logLik of each (they must agree).

    . .venv/bin/activate
    python benchmarks/structured_vs_glmmtmb.py --repeat 3 --out /tmp/structured_vs_glmmtmb.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from confint_vs_lme4 import timed  # noqa: E402 - a whole process, timed from start to exit

SUBJECTS, TIMES = 500, 10

PYTHON = """
import json, sys, warnings
warnings.simplefilter("ignore")
import pandas as pd, bayesmix
d = pd.read_csv("{data}", dtype={{"times": str, "subject": str}})
fit = bayesmix.Model("{response} ~ x + ar1(0 + times | subject)", d, family="{family}", categorical=["times"]).fit()
json.dump({{"logLik": fit.loglik}}, sys.stdout)
"""

R = """
suppressPackageStartupMessages(library(glmmTMB))
d <- read.csv("{data}", colClasses = c(times = "character", subject = "character"))
d$times <- factor(d$times, levels = sprintf("t%02d", 1:{times}))
fit <- glmmTMB({response} ~ x + ar1(times + 0 | subject), family = {family}, data = d, REML = {reml})
cat(jsonlite::toJSON(list(logLik = as.numeric(logLik(fit))), digits = NA))
"""


def simulate(path: Path) -> None:
    rng = np.random.default_rng(1)
    lags = np.abs(np.subtract.outer(np.arange(TIMES), np.arange(TIMES)))
    root = np.linalg.cholesky(0.6**lags)
    b = rng.standard_normal((SUBJECTS, TIMES)) @ root.T
    x = rng.standard_normal((SUBJECTS, TIMES))
    frame = pd.DataFrame(
        {
            "y": (1.0 + 0.5 * x + b + rng.normal(0.0, 0.5, b.shape)).ravel(),
            "count": rng.poisson(np.exp(0.3 + 0.3 * x + 0.5 * b)).ravel(),
            "x": x.ravel(),
            "times": np.tile([f"t{k + 1:02d}" for k in range(TIMES)], SUBJECTS),
            "subject": np.repeat([f"s{i:03d}" for i in range(SUBJECTS)], TIMES),
        }
    )
    frame.to_csv(path, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "ar1.csv"
        simulate(data)
        for response, family, r_family, reml in (
            ("y", "gaussian", "gaussian", "TRUE"),
            ("count", "poisson", "poisson", "FALSE"),
        ):
            ours = [
                timed([sys.executable, "-c", PYTHON.format(data=data, response=response, family=family)])
                for _ in range(args.repeat)
            ]
            theirs = [
                timed(
                    ["Rscript", "-e", R.format(data=data, response=response, family=r_family, reml=reml, times=TIMES)]
                )
                for _ in range(args.repeat)
            ]
            rows.append(
                {
                    "model": f"{family} ar1, {'REML' if reml == 'TRUE' else 'Laplace'}",
                    "bayesmix_s": statistics.median(t for t, _ in ours),
                    "glmmTMB_s": statistics.median(t for t, _ in theirs),
                    "bayesmix_logLik": ours[-1][1]["logLik"],
                    "glmmTMB_logLik": theirs[-1][1]["logLik"][0],
                }
            )
            row = rows[-1]
            print(
                f"{row['model']}: bayesmix {row['bayesmix_s']:.2f} s, glmmTMB {row['glmmTMB_s']:.2f} s, "
                f"logLik {row['bayesmix_logLik']:.6f} vs {row['glmmTMB_logLik']:.6f}"
            )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
