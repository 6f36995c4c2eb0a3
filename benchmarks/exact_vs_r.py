"""bayesmix's exact fits (REML, Laplace) beside lme4 and glmmTMB, whole processes, in one run.

Every fit is a separate process timed by this script from its start to its exit, as a user would
run it: ``bayesmix fit --data CSV ... --json OUT`` (interpreter start, imports, reading the CSV,
the fit, the summary and the JSON) against ``Rscript -e`` (R's start, loading lme4 or glmmTMB,
``read.csv``, the fit, the estimates written as JSON). Both sides read the same CSV file. Reported
per (case, engine): the median wall time of ``--repeat`` runs (3), and how far the estimates are
from lme4's in the same run: the largest relative difference over the fixed effects, over lme4's
theta (the relative covariance factor; for bayesmix and glmmTMB computed from their SDs,
correlations and sigma), over the random-effect SDs (and sigma), and logLik's difference. For the
GLMMs the same against the Laplace optimum computed by hand in the stored reference (``exact``
columns; ``exact_laplace`` in tests/data/*_laplace.json): lme4's tight fit does not always reach it,
and its reported logLik is not always the Laplace value at its own estimates, so a fit at the
optimum can differ from lme4 by more than lme4 differs from the optimum.

Cases (``--cases``, comma-separated; default all):

- ``sleepstudy_reml``: ``Reaction ~ Days + (Days | Subject)``, REML.
- ``insteval_reml``: lme4's InstEval, ``y ~ service + (1 | s) + (1 | d) + (1 | dept:service)``,
  REML (the model of docs/performance.md and benchmarks/insteval_reml.py, here on the real data).
- ``verbagg``: ``r2_yes ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)``, binomial,
  Laplace (tests/data/verbagg.csv; r2_yes is lme4's r2 == "Y").
- ``grouseticks``: ``TICKS ~ YEAR + HEIGHT_cs + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)``,
  poisson, Laplace (tests/data/grouseticks.csv plus HEIGHT_cs = scale(HEIGHT)).
- ``insteval_binomial``: ``y4 ~ 1 + (1 | s) + (1 | d) + (1 | dept:service)``, binomial, Laplace,
  y4 = (y >= 4).

The GLMMs are fitted by lme4 with ``glmerControl(optimizer = "bobyqa", tolPwrss = 1e-10)``, the
call of the stored references (tests/data/*_laplace.json, ``lme4_tight``; made by
tests/data/r/exact_speed_references.R), because the default inner tolerance stops short of the
Laplace optimum; the default call is available as engine ``lme4_default``. glmmTMB runs for the
GLMMs only. sleepstudy and InstEval are exported from R (lme4's own data) into a temporary folder
at the start of the run; nothing is downloaded. After the run, lme4's estimates in this run are
also compared with the stored reference, where one exists (``stored_reference`` in the JSON), which
checks that the CSV round trip fits the same data.

    . .venv/bin/activate
    python benchmarks/exact_vs_r.py --out /tmp/exact_vs_r.json
    python benchmarks/exact_vs_r.py --cases sleepstudy_reml,verbagg --timeout 300 --out /tmp/x.json
    python benchmarks/exact_vs_r.py --cases grouseticks --engines bayesmix,lme4,lme4_default,glmmTMB

A process that fails or passes ``--timeout`` seconds is reported as such (and not run again for the
remaining repeats); the table still shows the others.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
TIGHT = 'glmerControl(optimizer = "bobyqa", tolPwrss = 1e-10)'
ENGINES = ("bayesmix", "lme4", "lme4_default", "glmmTMB")
DEFAULT_ENGINES = ("bayesmix", "lme4", "glmmTMB")


@dataclass
class Case:
    name: str
    formula: str
    family: str  # gaussian, binomial or poisson
    method: str  # bayesmix's --method: reml or laplace
    data: str  # a file name in the run's temporary folder (made by prepare_data)
    factors: dict[str, list[str] | None]  # fixed-effect factors (with lme4's level order) and grouping columns
    reference: str | None = None  # a stored reference JSON in tests/data
    reference_block: str = "lme4_tight"
    notes: list[str] = field(default_factory=list)

    @property
    def glmm(self) -> bool:
        return self.family != "gaussian"


CASES = {
    "sleepstudy_reml": Case(
        "sleepstudy_reml",
        "Reaction ~ Days + (Days | Subject)",
        "gaussian",
        "reml",
        "sleepstudy.csv",
        {"Subject": None},
        reference="sleep_reml.json",
        reference_block="results",
    ),
    "insteval_reml": Case(
        "insteval_reml",
        "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)",
        "gaussian",
        "reml",
        "insteval.csv",
        {"service": ["0", "1"], "s": None, "d": None, "dept": None},
    ),
    "verbagg": Case(
        "verbagg",
        "r2_yes ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
        "binomial",
        "laplace",
        "verbagg.csv",
        {
            "Gender": ["F", "M"],
            "btype": ["curse", "scold", "shout"],
            "situ": ["other", "self"],
            "id": None,
            "item": None,
        },
        reference="verbagg_laplace.json",
    ),
    "grouseticks": Case(
        "grouseticks",
        "TICKS ~ YEAR + HEIGHT_cs + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
        "poisson",
        "laplace",
        "grouseticks.csv",
        {"YEAR": ["95", "96", "97"], "BROOD": None, "INDEX": None, "LOCATION": None},
        reference="grouseticks_laplace.json",
    ),
    "insteval_binomial": Case(
        "insteval_binomial",
        "y4 ~ 1 + (1 | s) + (1 | d) + (1 | dept:service)",
        "binomial",
        "laplace",
        "insteval.csv",
        {"service": ["0", "1"], "s": None, "d": None, "dept": None},
        reference="insteval_binomial_laplace.json",
    ),
}

# R writes lme4's own data sets as CSV for the cases that need them; factors as their labels.
R_EXPORT = r"""
args <- commandArgs(trailingOnly = TRUE)
folder <- args[1]; wanted <- args[-1]
suppressPackageStartupMessages(library(lme4))
if ("sleepstudy" %in% wanted)
  write.csv(data.frame(Reaction = sleepstudy$Reaction, Days = sleepstudy$Days,
                       Subject = as.character(sleepstudy$Subject)),
            file.path(folder, "sleepstudy.csv"), row.names = FALSE)
if ("insteval" %in% wanted)
  write.csv(data.frame(y = InstEval$y, y4 = as.integer(InstEval$y >= 4), s = as.character(InstEval$s),
                       d = as.character(InstEval$d), dept = as.character(InstEval$dept),
                       service = as.character(InstEval$service)),
            file.path(folder, "insteval.csv"), row.names = FALSE)
cat(jsonlite::toJSON(list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
  glmmTMB = as.character(packageVersion("glmmTMB")), Matrix = as.character(packageVersion("Matrix"))),
  auto_unbox = TRUE))
"""

# The R child: read the CSV, set the factors, fit, write the estimates. Placeholders are filled by
# r_program; the grouping columns are made factors from their labels, as lme4's own data have them.
R_CHILD = r"""
suppressPackageStartupMessages(library(@PACKAGE@))
dat <- read.csv("@DATA@", colClasses = c(@CLASSES@))
@FACTORS@
m <- @CALL@
est <- list(logLik = as.numeric(logLik(m)))
if ("@PACKAGE@" == "lme4") {
  fe <- fixef(m); vc <- VarCorr(m)
  th <- getME(m, "theta"); cnms <- getME(m, "cnms"); k <- 0; tg <- list()
  for (g in seq_along(cnms)) {
    len <- length(cnms[[g]]) * (length(cnms[[g]]) + 1) / 2
    tg[[names(cnms)[g]]] <- I(unname(th[k + seq_len(len)])); k <- k + len
  }
  est$theta <- tg
} else {
  fe <- fixef(m)$cond; vc <- VarCorr(m)$cond
}
est$fixef <- as.list(fe)
est$varcorr <- lapply(names(vc), function(g) {
  S <- vc[[g]]; C <- attr(S, "correlation"); if (is.null(C)) C <- diag(nrow(S))
  list(group = g, terms = I(colnames(S)), sd = I(unname(attr(S, "stddev"))), corr = unname(as.matrix(C)))
})
est$sigma <- if (@GAUSSIAN@) sigma(m) else NULL
writeLines(jsonlite::toJSON(est, digits = NA, auto_unbox = TRUE, null = "null"), "@OUT@")
"""


def r_program(case: Case, engine: str, data: Path, out: Path) -> str:
    """The ``Rscript -e`` program of one (case, engine)."""
    package = "glmmTMB" if engine == "glmmTMB" else "lme4"
    if engine == "glmmTMB":
        call = f"glmmTMB({case.formula}, family = {case.family}, data = dat)"
    elif not case.glmm:
        call = f"lmer({case.formula}, data = dat, REML = {'TRUE' if case.method == 'reml' else 'FALSE'})"
    elif engine == "lme4":
        call = f"glmer({case.formula}, family = {case.family}, data = dat, control = {TIGHT})"
    else:
        call = f"glmer({case.formula}, family = {case.family}, data = dat)"
    # factor columns are read as text so that labels such as "95" or "0" keep their spelling
    classes = ", ".join(f'{name} = "character"' for name in case.factors)
    lines = []
    for name, levels in case.factors.items():
        if levels:
            labels = ", ".join(f'"{level}"' for level in levels)
            lines.append(f"dat${name} <- factor(dat${name}, levels = c({labels}))")
        else:
            lines.append(f"dat${name} <- factor(dat${name})")
    replace = {
        "@PACKAGE@": package,
        "@DATA@": str(data),
        "@CLASSES@": classes,
        "@FACTORS@": "\n".join(lines),
        "@CALL@": call,
        "@GAUSSIAN@": "TRUE" if case.family == "gaussian" else "FALSE",
        "@OUT@": str(out),
    }
    text = R_CHILD
    for key, value in replace.items():
        text = text.replace(key, value)
    return text


def bayesmix_command(case: Case, data: Path, out: Path, executable: str) -> list[str]:
    command = [executable, "fit", "--data", str(data), "--formula", case.formula, "--family", case.family]
    command += ["--method", case.method, "--json", str(out), "--quiet"]
    for name, levels in case.factors.items():
        if levels:  # grouping columns need no flag: bayesmix groups by their values
            command += ["--categorical", f"{name}={','.join(levels)}"]
    return command


def prepare_data(cases: list[Case], folder: Path) -> dict:
    """Write every case's CSV into ``folder``; R's versions, as the export reported them."""
    wanted = sorted({c.data.removesuffix(".csv") for c in cases} & {"sleepstudy", "insteval"})
    done = subprocess.run(["Rscript", "-e", R_EXPORT, str(folder), *wanted], capture_output=True, text=True, check=True)
    versions = json.loads(done.stdout.strip().splitlines()[-1])
    names = {c.data for c in cases}
    if "verbagg.csv" in names:
        shutil.copy(DATA / "verbagg.csv", folder / "verbagg.csv")
    if "grouseticks.csv" in names:
        ticks = pd.read_csv(DATA / "grouseticks.csv", dtype={"INDEX": str, "BROOD": str, "YEAR": str, "LOCATION": str})
        # R's scale(): centred on the mean, divided by the SD with n - 1
        height = ticks["HEIGHT"]
        ticks["HEIGHT_cs"] = (height - height.mean()) / height.std(ddof=1)
        ticks.to_csv(folder / "grouseticks.csv", index=False, float_format="%.17g")
    return versions


def run_process(command: list[str], timeout: float) -> tuple[str, float, str]:
    """(status, wall seconds, the output's tail) of one whole process. The process gets a session of
    its own so that a timeout stops everything it started."""
    start = time.perf_counter()
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        output, _ = child.communicate()
        return "timeout", time.perf_counter() - start, output[-2000:]
    wall = time.perf_counter() - start
    return ("ok" if child.returncode == 0 else f"failed (exit {child.returncode})"), wall, output[-2000:]


# ------------------------------------------------------------------ estimates and agreement


def norm(name: str) -> str:
    """One spelling for R's and bayesmix's names: ``(Intercept)`` = ``Intercept``, ``YEAR96`` =
    ``YEAR[96]``."""
    return "".join(ch for ch in name if ch not in "()[] ")


def theta_of(varcorr: list[dict], sigma: float | None) -> dict[str, list[float]]:
    """lme4's theta by group from SDs and correlations: the lower Cholesky factor of the covariance
    over sigma (1 without a scale parameter), column by column, as lme4 orders it."""
    out = {}
    for block in varcorr:
        sd = np.asarray(block["sd"], dtype=float)
        corr = np.asarray(block.get("corr") or np.eye(len(sd)), dtype=float).reshape(len(sd), len(sd))
        cov = np.outer(sd, sd) * corr
        try:
            lower = np.linalg.cholesky(cov) if len(sd) > 1 else np.sqrt(cov)
        except np.linalg.LinAlgError:  # a singular covariance has no unique factor to compare
            continue
        lower = lower / (sigma or 1.0)
        out[norm(block["group"])] = [float(lower[i, j]) for j in range(len(sd)) for i in range(j, len(sd))]
    return out


def estimates(engine: str, raw: dict) -> dict:
    """One engine's output reduced to flat, comparable estimates."""
    if engine == "bayesmix":
        fixef = dict(zip(raw["fixef"]["names"], raw["fixef"]["estimate"]))
    else:
        fixef = raw["fixef"]
    varcorr = raw["varcorr"]
    sigma = raw.get("sigma")
    sds = {f"{norm(b['group'])}.{norm(t)}": s for b in varcorr for t, s in zip(b["terms"], b["sd"])}
    if sigma is not None:
        sds["sigma"] = sigma
    theta = raw.get("theta") if engine.startswith("lme4") else None
    theta = {norm(g): list(v) for g, v in theta.items()} if theta else theta_of(varcorr, sigma)
    return {
        "fixef": {norm(k): float(v) for k, v in fixef.items()},
        "theta": {f"{g}[{i}]": float(v) for g, vs in theta.items() for i, v in enumerate(vs)},
        "sd": {k: float(v) for k, v in sds.items()},
        "logLik": float(raw["logLik"]),
    }


def largest_relative(ours: dict[str, float], target: dict[str, float]) -> dict:
    """The largest |ours - target| / |target| over the target's names, and where; a name the other
    side lacks is listed as missing."""
    missing = sorted(set(target) - set(ours))
    worst, where = 0.0, None
    for name, value in target.items():
        if name in ours:
            rel = abs(ours[name] - value) / max(abs(value), 1e-300)
            if rel > worst or where is None:
                worst, where = rel, name
    return {"max_rel": worst, "at": where, "missing": missing}


def agreement(ours: dict, target: dict) -> dict:
    return {
        "fixef": largest_relative(ours["fixef"], target["fixef"]),
        "theta": largest_relative(ours["theta"], target["theta"]),
        "sd": largest_relative(ours["sd"], target["sd"]),
        "logLik_diff": ours["logLik"] - target["logLik"],
        "logLik_rel": abs(ours["logLik"] - target["logLik"]) / abs(target["logLik"]),
    }


def stored_reference(case: Case) -> dict | None:
    """The stored lme4 reference of a case (tests/data) as flat estimates, or None."""
    if case.reference is None or not (DATA / case.reference).exists():
        return None
    block = json.loads((DATA / case.reference).read_text())[case.reference_block]
    theta = {}
    if "theta_by_group" in block:
        theta = {b["group"]: b["values"] for b in block["theta_by_group"]}
    else:  # older references list theta flat, named group.term
        for name, value in zip(block["theta"]["names"], block["theta"]["values"]):
            theta.setdefault(name.split(".")[0], []).append(value)
    raw = {
        "fixef": dict(zip(block["fixef"]["names"], block["fixef"]["estimate"])),
        "varcorr": block["varcorr"],
        "sigma": block.get("sigma"),
        "theta": theta,
        "logLik": block["logLik"],
    }
    return estimates("lme4", raw)


def stored_exact(case: Case) -> tuple[dict, str] | None:
    """The best Laplace fit the stored reference knows, as flat estimates, and where it comes from:
    the maximum of the Laplace approximation computed by hand (``exact_laplace.maximised``) or, where
    that was not searched for, the engine whose estimates give the highest exact Laplace value."""
    if case.reference is None or not case.glmm or not (DATA / case.reference).exists():
        return None
    ref = json.loads((DATA / case.reference).read_text())
    exact = ref.get("exact_laplace")
    if not exact:
        return None
    if "maximised" in exact:
        best = exact["maximised"]
        raw = {
            "fixef": dict(zip(best["fixef"]["names"], best["fixef"]["estimate"])),
            "varcorr": [
                {"group": g, "terms": ["(Intercept)"], "sd": [v]}
                for g, v in zip(best["sd"]["groups"], best["sd"]["values"])
            ],
            "logLik": best["logLik"],
        }
        return estimates("glmmTMB", raw), "exact_laplace.maximised"
    evaluated = {k[3:]: v["logLik"] for k, v in exact.items() if k.startswith("at_")}
    engine = max(evaluated, key=evaluated.get)
    block = ref[engine]
    raw = {
        "fixef": dict(zip(block["fixef"]["names"], block["fixef"]["estimate"])),
        "varcorr": block["varcorr"],
        "logLik": evaluated[engine],
    }
    return estimates("glmmTMB", raw), f"{engine}'s estimates with exact_laplace.at_{engine}.logLik"


# ------------------------------------------------------------------ the run


def run_case(case: Case, engines: list[str], folder: Path, repeat: int, timeout: float, bayesmix_exe: str) -> dict:
    engines = [e for e in engines if case.glmm or e in ("bayesmix", "lme4")]
    data = folder / case.data
    runs = {e: {"status": "ok", "wall_s": [], "output_tail": None, "estimates": None} for e in engines}
    for index in range(repeat):
        for engine in engines:
            record = runs[engine]
            if record["status"] != "ok":  # a process that failed or timed out is not run again
                continue
            out = folder / f"{case.name}.{engine}.{index}.json"
            if engine == "bayesmix":
                command = bayesmix_command(case, data, out, bayesmix_exe)
            else:
                command = ["Rscript", "-e", r_program(case, engine, data, out)]
            status, wall, tail = run_process(command, timeout)
            print(f"  {case.name:18s} {engine:12s} run {index + 1}: {status}, {wall:.2f} s", flush=True)
            record["output_tail"] = tail
            if status == "ok" and not out.exists():
                status = "failed (no JSON written)"
            record["status"] = status
            if status == "ok":
                record["wall_s"].append(wall)
                if record["estimates"] is None:
                    record["estimates"] = estimates(engine, json.loads(out.read_text()))
            elif status == "timeout":
                record["wall_s"].append(wall)
    stored = stored_reference(case)
    exact = stored_exact(case)
    target = runs.get("lme4", {}).get("estimates") or stored
    for record in runs.values():
        record["median_s"] = statistics.median(record["wall_s"]) if record["status"] == "ok" else None
        if record["status"] == "ok":
            record["output_tail"] = None  # kept only where it explains a failure
        record["agreement"] = agreement(record["estimates"], target) if record["estimates"] and target else None
        record["agreement_exact"] = agreement(record["estimates"], exact[0]) if record["estimates"] and exact else None
    result = {
        "formula": case.formula,
        "family": case.family,
        "method": case.method,
        "lme4_call": "lmer(..., REML = TRUE)" if not case.glmm else f"glmer(..., control = {TIGHT})",
        "agreement_target": "lme4 in this run" if runs.get("lme4", {}).get("estimates") else "stored reference",
        "exact_target": exact[1] if exact else None,
        "engines": runs,
    }
    if stored and runs.get("lme4", {}).get("estimates"):
        check = agreement(runs["lme4"]["estimates"], stored)
        result["stored_reference"] = {"file": f"tests/data/{case.reference}", **check}
    return result


def fmt_rel(block: dict | None) -> str:
    if block is None:
        return "-"
    text = f"{block['max_rel']:.1e}"
    return text + (f" (missing {', '.join(block['missing'])})" if block["missing"] else "")


def table(results: dict, repeat: int) -> str:
    lines = [
        f"| case | engine | wall s (median of {repeat}) | fixef max rel | theta max rel | SD max rel | logLik - lme4 "
        "| fixef max rel, exact | SD max rel, exact | logLik - exact |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        for engine, record in result["engines"].items():
            if record["status"] == "timeout":
                wall = f"timeout (> {record['wall_s'][-1]:.0f} s)"
            elif record["status"] != "ok":
                wall = record["status"]
            else:
                wall = f"{record['median_s']:.2f}"
            a = record["agreement"]
            if engine == "lme4" and result["agreement_target"] == "lme4 in this run":
                a = None  # the target itself
            cells = ["-"] * 4
            if a:
                cells = [fmt_rel(a["fixef"]), fmt_rel(a["theta"]), fmt_rel(a["sd"]), f"{a['logLik_diff']:.2e}"]
            x = record["agreement_exact"]
            cells += [fmt_rel(x["fixef"]), fmt_rel(x["sd"]), f"{x['logLik_diff']:.2e}"] if x else ["-"] * 3
            lines.append(f"| {name} | {engine} | {wall} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def git_state() -> dict:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--", "bayesmix"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument(
        "--engines", default=",".join(DEFAULT_ENGINES), help=f"comma-separated, from {', '.join(ENGINES)}"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of every process; the median is reported")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one process may run")
    parser.add_argument("--out", required=True, help="JSON results file")
    parser.add_argument("--bayesmix", default=None, help="the bayesmix command (default: this venv's)")
    args = parser.parse_args(argv)

    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown += [e for e in engines if e not in ENGINES]
    if unknown:
        parser.error(f"unknown case or engine: {', '.join(unknown)}")
    bayesmix_exe = args.bayesmix or str(Path(sys.executable).parent / "bayesmix")
    if not Path(bayesmix_exe).exists():
        bayesmix_exe = shutil.which("bayesmix") or bayesmix_exe

    cases = [CASES[n] for n in names]
    results = {}
    with tempfile.TemporaryDirectory(prefix="exact_vs_r_") as tmp:
        folder = Path(tmp)
        print(f"exporting data into {folder} ...", flush=True)
        versions = prepare_data(cases, folder)
        for case in cases:
            print(f"{case.name}: {case.formula} ({case.family}, {case.method})", flush=True)
            results[case.name] = run_case(case, engines, folder, args.repeat, args.timeout, bayesmix_exe)

    text = table(results, args.repeat)
    print()
    print(text)
    print(
        "\nrelative differences against lme4 in this run (GLMMs: the tolPwrss = 1e-10 call); "
        "'exact': against the Laplace optimum computed by hand in tests/data/r/exact_speed_references.R "
        "(exact_laplace; see the JSON's exact_target)"
    )
    document = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "bayesmix": git_state(),
        "r": versions,
        "repeat": args.repeat,
        "timeout_s": args.timeout,
        "wall_time": "whole process, start to exit, measured by this script",
        "cases": results,
        "table": text,
    }
    Path(args.out).write_text(json.dumps(document, indent=1, allow_nan=False))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
