"""Profile and bootstrap intervals on sleepstudy, bayesmix beside lme4 in one run, whole processes.

Each measurement is a separate process timed from its start to its exit: ``python -c`` (import
bayesmix, read the CSV, the REML fit, ``fit.confint(method)``) against ``Rscript -e`` (load lme4,
``read.csv``, ``lmer``, ``confint(fm, method = ...)``); the bootstrap with ``nsim`` (1000) refits
on the machine's cores (bayesmix's default ``n_jobs``; lme4's ``confint`` bootstraps serially, as
its default ``parallel = "no"``). Reported: the median wall time of ``--repeat`` runs and the
largest relative difference of bayesmix's bounds from lme4's (the profile: the same quantity; the
bootstrap: different random draws, so only Monte-Carlo agreement is expected).

    . .venv/bin/activate
    python benchmarks/confint_vs_lme4.py --repeat 3 --out /tmp/confint_vs_lme4.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bayesmix" / "datasets" / "sleepstudy.csv"
FORMULA = "Reaction ~ Days + (Days | Subject)"

PYTHON = """
import json, sys, warnings
warnings.simplefilter("ignore")
import pandas as pd, bayesmix
fit = bayesmix.Model("{formula}", pd.read_csv("{data}")).fit()
table = fit.confint("{method}", nsim={nsim}, seed=1)
json.dump({{"lower": table["lower"].tolist(), "upper": table["upper"].tolist()}}, sys.stdout)
"""

R = """
suppressPackageStartupMessages(library(lme4))
d <- read.csv("{data}"); d$Subject <- factor(d$Subject)
fm <- lmer({formula}, d)
ci <- suppressMessages(suppressWarnings(
  if ("{method}" == "boot") confint(fm, method = "boot", nsim = {nsim}, seed = 1)
  else confint(fm, method = "{method}")))
cat(jsonlite::toJSON(list(lower = unname(ci[, 1]), upper = unname(ci[, 2])), digits = NA))
"""


def timed(command: list[str]) -> tuple[float, dict]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--nsim", type=int, default=1000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    for method in ("profile", "boot"):
        arguments = {"formula": FORMULA, "data": DATA, "method": method, "nsim": args.nsim}
        ours = [timed([sys.executable, "-c", PYTHON.format(**arguments)]) for _ in range(args.repeat)]
        theirs = [timed(["Rscript", "-e", R.format(**arguments)]) for _ in range(args.repeat)]
        gap = max(
            abs(a / b - 1.0)
            for side in ("lower", "upper")
            for a, b in zip(ours[-1][1][side], theirs[-1][1][side])
            if b not in (0, None) and a is not None
        )
        rows.append(
            {
                "method": method,
                "bayesmix_s": statistics.median(t for t, _ in ours),
                "lme4_s": statistics.median(t for t, _ in theirs),
                "max_relative_bound_difference": gap,
                "bayesmix": ours[-1][1],
                "lme4": theirs[-1][1],
            }
        )
        print(f"{method}: bayesmix {rows[-1]['bayesmix_s']:.2f} s, lme4 {rows[-1]['lme4_s']:.2f} s, bounds {gap:.2e}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
