"""An ordinal response with a random intercept: bayesmix against bambi (NUTS, its ``cumulative``
family) and ordinal::clmm (Laplace), whole processes, in one run.

The model, ``y ~ x + (1 | g)`` with K = ``--categories`` (5) ordered categories, cumulative logit,
fitted to one simulated data set (``--rows`` 5,000, ``--groups`` 200, seed ``--seed``; one CSV that
every engine reads): x ~ N(0, 1), b_g ~ N(0, 0.8), P(y <= k) = logistic(c_k - 0.6 x - b_g), the
cut points c evenly spaced over [-2, 2].

Engines, each a whole separate process timed from its start to its exit (interpreter or R start,
imports, reading the CSV, the model, compilation, the fit, writing the result):

- ``bayesmix`` (NUTS): ``bayesmix.Model("y ~ x + (1 | g)", data, family="cumulative").sample(draws=,
  tune=, chains=, random_seed=, progressbar=False)``, the default sampler;
- ``bambi`` (NUTS): ``bambi.Model("y ~ x + (1 | g)", data, family="cumulative").fit(draws=, tune=,
  chains=, cores=2, random_seed=, progressbar=False)``, y an ordered Categorical, bambi's default
  priors and sampler (PyMC's NUTS);
- ``bayesmix_laplace``: ``bayesmix fit --data CSV --formula ... --family cumulative --method laplace
  --json OUT --quiet``;
- ``clmm``: ``Rscript`` with ``clmm(factor(y, ordered = TRUE) ~ x + (1 | g))``, timed by
  ``system.time`` too.

The NUTS processes are benchmarks/counts_vs_bambi.py's child (the min bulk ESS and max R-hat over the
fixed effects, the thresholds and the group SD, computed with ArviZ inside the timed process). The
machinery (empty caches per run, waiting for an idle machine, a run disturbed by other processes run
again) is counts_vs_bambi.py's; see its docstring. bambi's venv is that script's too.

    . .venv/bin/activate
    python benchmarks/ordinal_vs_bambi.py --out /tmp/ordinal_vs_bambi.json
    python benchmarks/ordinal_vs_bambi.py --rows 500 --groups 20 --draws 100 --tune 100 --repeat 1 \\
        --no-idle-wait --out /tmp/smoke.json          # smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import counts_vs_bambi as counts  # noqa: E402
import speed_vs_bambi  # noqa: E402
from speed_vs_bambi import cache_env, wait_until_idle  # noqa: E402

ENGINES = ("bayesmix", "bambi", "bayesmix_laplace", "clmm")
FORMULA = "y ~ x + (1 | g)"

R_CHILD = r"""
suppressPackageStartupMessages(library(ordinal))
dat <- read.csv("@DATA@", colClasses = c(g = "character"))
dat$y <- factor(dat$y, ordered = TRUE)
dat$g <- factor(dat$g)
fit_time <- system.time(m <- clmm(y ~ x + (1 | g), data = dat))
est <- list(logLik = as.numeric(logLik(m)), thresholds = unname(m$alpha), beta = unname(m$beta),
            sd = unname(attr(VarCorr(m)$g, "stddev")), fit_s = unname(fit_time[["elapsed"]]),
            max_abs_gradient = max(abs(m$gradient)),
            versions = list(R = R.version.string, ordinal = as.character(packageVersion("ordinal"))))
writeLines(jsonlite::toJSON(est, digits = NA, auto_unbox = TRUE), "@OUT@")
"""


def simulate(rows: int, groups: int, categories: int, seed: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng([seed, 22])
    g = rng.integers(0, groups, rows)
    x = rng.normal(size=rows)
    eta = 0.6 * x + rng.normal(0, 0.8, groups)[g]
    cuts = np.linspace(-2.0, 2.0, categories - 1)
    y = 1 + np.sum(rng.logistic(size=rows)[:, None] + eta[:, None] > cuts, axis=1)  # latent logistic
    width = len(str(groups - 1))
    labels = np.array([f"g{i:0{width}d}" for i in range(groups)])
    return pd.DataFrame({"y": y.astype(int), "x": x, "g": labels[g]})


def command(engine: str, data: Path, out: Path, spec_path: Path, work: Path, pythons: dict, exe: str) -> list[str]:
    if engine in counts.NUTS_ENGINES:
        return [pythons[engine], str(work / "nuts_child.py"), engine, str(spec_path), str(out)]
    if engine == "bayesmix_laplace":
        return [exe, "fit", "--data", str(data), "--formula", FORMULA, "--family", "cumulative",
                "--method", "laplace", "--json", str(out), "--quiet"]  # fmt: skip
    return ["Rscript", "-e", R_CHILD.replace("@DATA@", str(data)).replace("@OUT@", str(out))]


def timed(engine: str, cmd: list[str], tag: str, work: Path, args, pythons: dict, exe: str) -> dict:
    """One timed process, run again (empty caches) while other processes disturbed it."""
    log, out = work / f"{tag}.log", work / f"{tag}.json"
    disturbed = []
    for attempt in range(1 + args.retries):
        cache = work / "cache" / f"{tag}.{attempt}"
        out.unlink(missing_ok=True)
        warm_engine = "glmmTMB" if engine == "clmm" else engine
        counts.warm_file_cache(warm_engine, pythons, exe, cache_env(work / "cache" / f"throwaway-{engine}"))
        waited, share = (0.0, float("nan")) if args.no_idle_wait else wait_until_idle()
        status, wall, peak, others = counts.measured_run(cmd, cache_env(cache), log, args.timeout, args.mem_limit_gb)
        if status == "ok" and not out.exists():
            status = "failed (no result written)"
        print(f"  {engine:16s} {tag}: {status}, {wall:.2f} s (others' CPU share {others:.2f})", flush=True)
        if status != "ok" or others <= args.max_other_share:
            break
        disturbed.append({"wall_s": wall, "others_share": others})
    run = {"status": status, "wall_s": wall, "peak_gb": peak, "others_share": others, "disturbed_runs": disturbed}
    if status == "ok":
        run["result"] = json.loads(out.read_text())
    else:
        run["output_tail"] = log.read_text(errors="replace")[-2000:]
    return run


def summarise(engine: str, runs: list[dict]) -> dict:
    ok = [r for r in runs if r["status"] == "ok"]
    record = {"status": "ok" if ok else runs[-1]["status"], "runs": runs}
    if not ok:
        return record
    record["median_s"] = statistics.median(r["wall_s"] for r in ok)
    record["max_others_share"] = max(r["others_share"] for r in ok)
    record["peak_gb_max"] = max(r["peak_gb"] for r in ok)
    results = [r["result"] for r in ok]
    if engine in counts.NUTS_ENGINES:
        record["ess_per_s_median"] = statistics.median(r["result"]["min_ess_bulk"] / r["wall_s"] for r in ok)
        record["min_ess_bulk"] = min(x["min_ess_bulk"] for x in results)
        record["min_ess_at"] = results[0]["min_ess_at"]
        record["max_rhat"] = max(x["max_rhat"] for x in results)
        record["divergences_max"] = max(x["divergences"] for x in results)
    else:
        record["fit_s_median"] = statistics.median(float(x.get("fit_s", x.get("time_s"))) for x in results)
        record["logLik"] = float(results[0]["logLik"])
    return record


def table(records: dict, args) -> str:
    fmt = counts.fmt
    lines = [
        f"{args.rows} rows, {args.groups} groups, {args.categories} categories; NUTS {args.chains} x {args.draws} "
        f"({args.tune} tuning); median of {args.repeat} whole processes (bambi {args.bambi_repeat or args.repeat})",
        "",
        "| engine | wall (s) | fit (s) | min bulk ESS | ESS/s | max R-hat | divergences | peak RSS (GB) | logLik "
        "| others' CPU share |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for engine, r in records.items():
        if r["status"] != "ok":
            lines.append(f"| {engine} | **{r['status']}** |" + " - |" * 8)
            continue
        lines.append(
            f"| {engine} | {fmt(r['median_s'], '.1f')} | {fmt(r.get('fit_s_median'), '.2f')} "
            f"| {fmt(r.get('min_ess_bulk'), '.0f')} | {fmt(r.get('ess_per_s_median'), '.1f')} "
            f"| {fmt(r.get('max_rhat'), '.3f')} | {r.get('divergences_max', '-')} | {fmt(r['peak_gb_max'], '.2f')} "
            f"| {fmt(r.get('logLik'), '.4f')} | {fmt(r['max_others_share'], '.2f')} |"
        )
    return "\n".join(lines)


def ratios(records: dict) -> dict:
    out = {}
    nuts, bambi = records.get("bayesmix", {}), records.get("bambi", {})
    if nuts.get("ess_per_s_median") and bambi.get("ess_per_s_median"):
        out["ess_per_s_ratio"] = nuts["ess_per_s_median"] / bambi["ess_per_s_median"]
    lap, clmm = records.get("bayesmix_laplace", {}), records.get("clmm", {})
    if lap.get("median_s") and clmm.get("median_s"):
        out["laplace_whole_process_speedup"] = clmm["median_s"] / lap["median_s"]
        out["laplace_fit_speedup"] = clmm["fit_s_median"] / lap["fit_s_median"]
        out["logLik_difference"] = lap["logLik"] - clmm["logLik"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bambi-repeat", type=int, default=None)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--categories", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--no-idle-wait", action="store_true")
    parser.add_argument("--idle-wait-limit", type=float, default=120.0)
    parser.add_argument("--max-other-share", type=float, default=0.1)
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--mem-limit-gb", type=float, default=16.0)
    parser.add_argument("--bambi-python", default=counts.DEFAULT_BAMBI_PYTHON)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    speed_vs_bambi.IDLE_WAIT_LIMIT_S = args.idle_wait_limit
    engines = [e for e in args.engines.split(",") if e]
    exe = str(Path(sys.executable).parent / "bayesmix")
    pythons = {"bayesmix": sys.executable, "bambi": args.bambi_python}
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="ordinal_vs_bambi-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "nuts_child.py").write_text(counts.NUTS_CHILD)
    frame = simulate(args.rows, args.groups, args.categories, args.seed)
    data = work / "ordinal.csv"
    frame.to_csv(data, index=False, float_format="%.17g")
    spec = {"data": str(data), "formula": FORMULA, "family": "cumulative", "bambi_family": "cumulative",
            "family_params": ["thresholds"], "ordinal": True, "draws": args.draws, "tune": args.tune,
            "chains": args.chains, "seed": args.seed, "cores": args.cores}  # fmt: skip
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec))
    print(f"work directory: {work}; data: {frame.y.value_counts().sort_index().to_dict()}", flush=True)
    runs = {e: [] for e in engines}
    for index in range(args.repeat):
        for engine in engines:
            if engine == "bambi" and index >= (args.bambi_repeat or args.repeat):
                continue
            if runs[engine] and runs[engine][-1]["status"] != "ok":
                continue
            cmd = command(engine, data, work / f"{engine}.{index}.json", spec_path, work, pythons, exe)
            runs[engine].append(timed(engine, cmd, f"{engine}.{index}", work, args, pythons, exe))
    records = {e: summarise(e, r) for e, r in runs.items() if r}
    text = table(records, args)
    summary = ratios(records)
    print("\n" + text + "\n\n" + json.dumps(summary, indent=1))
    document = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "bayesmix": counts.git_state(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "engines": records,
        "ratios": summary,
        "table": text,
    }
    Path(args.out).write_text(json.dumps(document, indent=1, default=str))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
