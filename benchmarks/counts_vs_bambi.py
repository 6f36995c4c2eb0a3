"""Zero-inflated and hurdle counts: bayesmix against bambi (NUTS) and glmmTMB (Laplace), whole
processes, in one run.

Two models, each fitted to one simulated data set (``--rows`` 10^4 rows, ``--groups`` 200 groups,
seed ``--seed``; written once to a CSV that every engine reads):

- ``zip``: ``y ~ x + (1 | g)``, zero-inflated Poisson, zero-inflation probability ``~ 1 + (1 | g)``.
- ``hurdle_nb``: ``y ~ x + (1 | g)``, hurdle negative binomial (NB2), hurdle probability
  ``~ 1 + (1 | g)``.

The data-generating process gives the zero process a random effect per group (logit-scale SD
``--zi-sd``, 0.5; 0 for none), and every engine fits it (``--zi-formula random``, the default):
bayesmix ``zi="~ 1 + (1 | g)"``, bambi the distributional formula ``bmb.Formula("y ~ x + (1 | g)",
"psi ~ 1 + (1 | g)")`` (psi, bambi's probability of the count part, is 1 - zi / 1 - hu: its
intercept and group effects have the opposite sign, its group SD is the same), glmmTMB
``ziformula = ~ 1 + (1 | g)``. ``--zi-formula constant`` fits the zero process as a constant
instead (bayesmix without ``zi=``, bambi's psi constant, glmmTMB ``ziformula = ~1``), the same
misfit for every engine, as this benchmark did before bayesmix took random effects in ``zi=``.
Simulation (x ~ N(0, 1), b_g ~ N(0, 0.6), u_g ~ N(0, zi_sd)):

    zip:        mu = exp(0.8 + 0.4 x + b_g),  zi = logistic(-0.85 + u_g),   y = 0 w.p. zi, else Poisson(mu)
    hurdle_nb:  mu = exp(1.0 + 0.4 x + b_g),  hu = logistic(-0.4 + u_g),    y = 0 w.p. hu, else a
                zero-truncated NB2(mu, alpha = 2) (Var = mu + mu^2 / alpha)

Engines, each a whole separate process timed by this script from its start to its exit (interpreter
or R start, imports, reading the CSV, model, compilation, the fit, writing the result):

- ``bayesmix`` (NUTS): ``bayesmix.Model(formula, data, family=..., zi="~ 1 + (1 | g)").sample(draws=,
  tune=, chains=, random_seed=, progressbar=False)``, the default sampler.
- ``bambi`` (NUTS): ``bambi.Model(bambi.Formula(formula, "psi ~ 1 + (1 | g)"), data,
  family=...).fit(draws=, tune=, chains=, cores=2, random_seed=, progressbar=False)``: bambi's
  default sampler (PyMC's NUTS), families ``zero_inflated_poisson`` and ``hurdle_negativebinomial``
  (psi on the logit link, bambi's default priors; with ``--zi-formula constant`` a constant psi,
  prior Beta).
- ``bayesmix_laplace``: ``bayesmix fit --data CSV --formula ... --family ... --zi "~ 1 + (1 | g)"
  --method laplace --json OUT --quiet`` (the CLI's ``Model(...).fit("laplace")`` and its JSON
  contract).
- ``glmmTMB``: ``Rscript -e`` with ``glmmTMB(y ~ x + (1 | g), ziformula = ~ 1 + (1 | g), family =
  poisson)`` and ``family = truncated_nbinom2``, the estimates written as JSON.

The NUTS processes compute, with ArviZ and inside the timed process, the bulk ESS and R-hat of
every parameter of the model: the fixed effects (bayesmix ``beta`` and the zero process's
``zi_beta`` / ``hu_beta``; bambi ``Intercept``, ``x``, ``psi_Intercept``), the group SDs (``sd_g``
and the zero process's ``sd_zi_g``; ``1|g_sigma`` and ``psi_1|g_sigma``) and the family's
parameters (``alpha``; with a constant zero process ``zi`` / ``hu``, bambi ``psi``); per-level
effects are not among them. Reported per (model, engine): the median whole-process wall time of
``--repeat`` runs (3), the min bulk ESS, min ESS/s (min bulk ESS / wall time; the median over the
runs), max R-hat, divergences, peak RSS, the zero-process SD's bulk ESS and R-hat, and the ratios
bayesmix / bambi (ESS/s) and glmmTMB / bayesmix (Laplace time).

Laplace times, two of each: the whole process (as above) and the fit's own time: glmmTMB's
``system.time(glmmTMB(...))`` elapsed (the model's construction from the data frame and the fit;
not R's start, loading glmmTMB or reading the CSV), and bayesmix's CLI JSON ``time_s`` (from
reading the CSV through ``Model(...)``, ``.fit("laplace")``, the JSON contract and the printed
summary: more than ``MixedFit.time_s``, which times ``.fit()`` alone; not the interpreter's
start or the imports). The Laplace estimates of bayesmix and glmmTMB are compared (largest
relative difference of the fixed effects, the group SD, the zero process (with its random effect:
its logit-scale intercept and its group SD; constant: zi / hu as a probability) and alpha; logLik
difference).

Caches: every process starts with empty cache directories (JAX's persistent compilation cache,
which also holds bayesmix's stored programs, PyTensor's compiledir and numba's cache): all runs are
cold. ``--warm``: one cache per (model, engine) shared by its runs, after one untimed run that fills
it. Before every timed process the tool's interpreter imports its package once (the operating
system's file cache warm for both), and the script waits until the machine is idle (at most 120 s,
benchmarks/speed_vs_bambi.py's ``wait_until_idle``; ``--idle-wait-limit``; ``--no-idle-wait``
skips that, for smoke runs). The script also measures what other processes used of the CPUs while
each timed process ran (the machine's busy time from /proc/stat less the child's own CPU time, over
wall x CPUs; column "others' CPU share", the largest over the runs): a run during which that passed
``--max-other-share`` (0.1) is run again, up to ``--retries`` (2) times, with empty caches again, and
kept in the JSON as ``disturbed_runs``. bambi's runs take minutes each and its draws are the same
in every run (fixed seed): ``--bambi-repeat`` sets its count apart from ``--repeat``.

bambi lives in a separate venv (not a dependency of bayesmix; ``matplotlib<3.11`` because
arviz_plots 0.8, which bambi 0.17 imports, fails under matplotlib 3.11):

    python3 -m venv /tmp/bambi-venv && /tmp/bambi-venv/bin/pip install "bambi==0.17.*" "matplotlib<3.11"

Run with the bayesmix venv's Python (R with glmmTMB and jsonlite on the PATH as ``Rscript``):

    . .venv/bin/activate
    python benchmarks/counts_vs_bambi.py --out /tmp/counts_vs_bambi.json
    python benchmarks/counts_vs_bambi.py --cases zip --engines bayesmix,bambi --repeat 1 --out /tmp/x.json
    python benchmarks/counts_vs_bambi.py --zi-formula constant --out /tmp/constant.json   # zi / hu constant
    python benchmarks/counts_vs_bambi.py --rows 1000 --groups 20 --draws 100 --tune 100 --chains 2 \\
        --repeat 1 --no-idle-wait --out /tmp/smoke.json          # smoke run

A process that fails or passes ``--timeout`` seconds is reported as such (and not run again for the
remaining repeats); the table still shows the others.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import speed_vs_bambi  # noqa: E402
from speed_vs_bambi import cache_env, run_child, wait_until_idle  # noqa: E402

DEFAULT_BAMBI_PYTHON = "/tmp/bambi-venv/bin/python"
ENGINES = ("bayesmix", "bambi", "bayesmix_laplace", "glmmTMB")
NUTS_ENGINES = ("bayesmix", "bambi")
FORMULA = "y ~ x + (1 | g)"
# the zero process's formula (--zi-formula): bayesmix's zi= / --zi (None: not given, a constant),
# bambi's psi formula (None: psi constant, bambi's default), glmmTMB's ziformula
ZI_FORMULAS = {
    "random": {"bayesmix": "~ 1 + (1 | g)", "bambi": "psi ~ 1 + (1 | g)", "glmmTMB": "~ 1 + (1 | g)"},
    "constant": {"bayesmix": None, "bambi": None, "glmmTMB": "~ 1"},
}


@dataclass
class Case:
    name: str
    label: str
    family: str  # bayesmix's family
    bambi_family: str
    glmmtmb_family: str
    family_params: tuple[str, ...]  # bayesmix's names of the family's parameters


CASES = {
    "zip": Case("zip", "zero-inflated poisson", "zero_inflated_poisson", "zero_inflated_poisson", "poisson", ("zi",)),
    "hurdle_nb": Case(
        "hurdle_nb",
        "hurdle negative binomial",
        "hurdle_negativebinomial",
        "hurdle_negativebinomial",
        "truncated_nbinom2",
        ("hu", "alpha"),
    ),
}


# ---------------------------------------------------------------------------------------------------
# data


def simulate(case: str, rows: int, groups: int, zi_sd: float, seed: int):
    """One case's data (see the module's docstring); g as labels g000, g001, ..."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng([seed, 0 if case == "zip" else 1])
    g = rng.integers(0, groups, rows)
    x = rng.normal(size=rows)
    b = rng.normal(0, 0.6, groups)
    u = rng.normal(0, zi_sd, groups) if zi_sd > 0 else np.zeros(groups)
    if case == "zip":
        mu = np.exp(0.8 + 0.4 * x + b[g])
        zero = rng.uniform(size=rows) < 1 / (1 + np.exp(-(-0.85 + u[g])))
        y = np.where(zero, 0, rng.poisson(mu))
    else:
        alpha = 2.0
        mu = np.exp(1.0 + 0.4 * x + b[g])
        zero = rng.uniform(size=rows) < 1 / (1 + np.exp(-(-0.4 + u[g])))
        # zero-truncated NB2(mu, alpha): draw again where a draw was 0 (numpy's p = alpha / (alpha + mu))
        y = np.zeros(rows, dtype=np.int64)
        todo = np.arange(rows)
        while todo.size:
            draw = rng.negative_binomial(alpha, alpha / (alpha + mu[todo]))
            y[todo] = draw
            todo = todo[draw == 0]
        y = np.where(zero, 0, y)
    width = len(str(groups - 1))
    labels = np.array([f"g{i:0{width}d}" for i in range(groups)])
    return pd.DataFrame({"y": y.astype(np.int64), "x": x, "g": labels[g]})


# ---------------------------------------------------------------------------------------------------
# the processes

# The NUTS child: one whole fit, in one process. argv: tool, spec.json, result.json. The draws of
# the parameters go to result.json.npz (for a later look), ESS and R-hat are computed here.
NUTS_CHILD = r"""
import json, sys, time
start = time.perf_counter()
tool, spec_path, out_path = sys.argv[1:4]
spec = json.load(open(spec_path))
phases = {}
import numpy as np
import pandas as pd
if tool == "bayesmix":
    import bayesmix
else:
    import bambi as bmb
import arviz as az
phases["import"] = time.perf_counter() - start
t = time.perf_counter()
data = pd.read_csv(spec["data"], dtype={"g": str})
if spec.get("ordinal") and tool == "bambi":  # bambi's ordinal families read an ordered Categorical
    data["y"] = pd.Categorical(data["y"], categories=sorted(data["y"].unique()), ordered=True)
phases["read data"] = time.perf_counter() - t
t = time.perf_counter()
common = dict(draws=spec["draws"], tune=spec["tune"], chains=spec["chains"], random_seed=spec["seed"],
              progressbar=False)
if tool == "bayesmix":
    model = bayesmix.Model(spec["formula"], data, family=spec["family"], zi=spec.get("zi"))
    phases["model"] = time.perf_counter() - t
    t = time.perf_counter()
    idata = model.sample(**common)
else:
    formula = bmb.Formula(spec["formula"], spec["bambi_zi"]) if spec.get("bambi_zi") else spec["formula"]
    model = bmb.Model(formula, data, family=spec["bambi_family"])
    phases["model"] = time.perf_counter() - t
    t = time.perf_counter()
    idata = model.fit(cores=spec["cores"], **common)
phases["sample"] = time.perf_counter() - t
t = time.perf_counter()
post = idata.posterior
if tool == "bayesmix":
    # fixed effects (beta; the zero process's zi_beta / hu_beta), the group SDs (sd_g; the zero
    # process's sd_zi_g) and the family's parameters (zi / hu where constant; alpha)
    names = [n for n in post.data_vars
             if n in ("beta", "zi_beta", "hu_beta") or n.startswith("sd_") or n in spec["family_params"]]
else:
    # fixed effects (Intercept, x; psi_Intercept), the group SDs (1|g_sigma; psi_1|g_sigma), psi
    # (where constant) and alpha: not the per-level effects (1|g, psi_1|g), their non-centred
    # offsets, transformed values (*__), the linear predictors (mu, psi per row) if kept
    names = [n for n in post.data_vars
             if not n.endswith("__") and not n.endswith("_offset") and n != "mu"
             and "__obs__" not in post[n].dims
             and ("|" not in n or n.endswith("_sigma"))]
chosen = post[names]
ess = az.ess(chosen, method="bulk")
rhat = az.rhat(chosen)
per = {}
for name in names:
    e, r = np.atleast_1d(ess[name].values), np.atleast_1d(rhat[name].values)
    dims = [d for d in chosen[name].dims if d not in ("chain", "draw")]
    labels = [str(v) for v in chosen[name][dims[0]].values] if dims else [None]
    for label, ei, ri in zip(labels, e.ravel(), r.ravel()):
        key = name if label is None else f"{name}[{label}]"
        per[key] = {"ess_bulk": float(ei), "rhat": float(ri), "mean": None}
    means = np.atleast_1d(chosen[name].mean(("chain", "draw")).values).ravel()
    for label, m in zip(labels, means):
        per[name if label is None else f"{name}[{label}]"]["mean"] = float(m)
phases["diagnostics"] = time.perf_counter() - t
low = min(per, key=lambda k: per[k]["ess_bulk"])
high = max(per, key=lambda k: per[k]["rhat"])
result = {
    "parameters": per,
    "min_ess_bulk": per[low]["ess_bulk"], "min_ess_at": low,
    "max_rhat": per[high]["rhat"], "max_rhat_at": high,
    "divergences": int(idata.sample_stats["diverging"].sum()),
    "draws_total": int(post.sizes["chain"] * post.sizes["draw"]),
    "phases": phases,
}
import importlib.metadata as md
result["versions"] = {}
for pkg in ("bayesmix", "bambi", "pymc", "pytensor", "numpyro", "jax", "arviz", "numpy"):
    try:
        result["versions"][pkg] = md.version(pkg)
    except md.PackageNotFoundError:
        pass
result["in_process_s"] = time.perf_counter() - start
json.dump(result, open(out_path, "w"))
"""

R_CHILD = r"""
suppressPackageStartupMessages(library(glmmTMB))
dat <- read.csv("@DATA@", colClasses = c(g = "character"))
dat$g <- factor(dat$g)
fit_time <- system.time(m <- glmmTMB(y ~ x + (1 | g), ziformula = @ZI@, family = @FAMILY@, data = dat))
vc <- VarCorr(m)$cond
vz <- VarCorr(m)$zi
est <- list(logLik = as.numeric(logLik(m)), fixef = as.list(fixef(m)$cond), zi = as.list(fixef(m)$zi),
            sd = unname(attr(vc$g, "stddev")),
            zi_sd = if (!is.null(vz$g)) unname(attr(vz$g, "stddev")) else NULL,
            fit_s = unname(fit_time[["elapsed"]]),
            alpha = if (grepl("nbinom", family(m)$family)) sigma(m) else NULL,
            convergence = m$fit$convergence, pdHess = m$sdr$pdHess,
            versions = list(R = R.version.string, glmmTMB = as.character(packageVersion("glmmTMB"))))
writeLines(jsonlite::toJSON(est, digits = NA, auto_unbox = TRUE, null = "null"), "@OUT@")
"""


def r_program(case: Case, data: Path, out: Path, zi: str) -> str:
    text = R_CHILD
    replace = {
        "@DATA@": str(data),
        "@ZI@": ZI_FORMULAS[zi]["glmmTMB"],
        "@FAMILY@": case.glmmtmb_family,
        "@OUT@": str(out),
    }
    for key, value in replace.items():
        text = text.replace(key, value)
    return text


def laplace_command(case: Case, data: Path, out: Path, executable: str, zi: str) -> list[str]:
    zi_formula = ZI_FORMULAS[zi]["bayesmix"]
    return [executable, "fit", "--data", str(data), "--formula", FORMULA, "--family", case.family,
            *(["--zi", zi_formula] if zi_formula else []),
            "--method", "laplace", "--json", str(out), "--quiet"]  # fmt: skip


def cpu_counters() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine from /proc/stat, CPU seconds of this script's waited-for
    children): their changes over a process give the CPU time of everything else."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return busy, usage.ru_utime + usage.ru_stime


def measured_run(command, env, log: Path, timeout: float, mem_limit_gb: float) -> tuple[str, float, float, float]:
    """speed_vs_bambi's ``run_child`` (status, wall, peak RSS GB), and the share of the machine's CPU
    time that other processes used while it ran (the machine's busy time less the child's own CPU
    time, over wall x CPUs): a process started beside the measurement shows there."""
    busy0, own0 = cpu_counters()
    status, wall, peak = run_child(command, env, log, timeout, mem_limit_gb)
    busy1, own1 = cpu_counters()
    others = max(0.0, (busy1 - busy0) - (own1 - own0)) / (max(wall, 1e-9) * (os.cpu_count() or 1))
    return status, wall, peak, others


def warm_file_cache(engine: str, pythons: dict, bayesmix_exe: str, env: dict) -> None:
    """Load the engine's libraries once (untimed), so that the OS's file cache is warm for all."""
    if engine == "glmmTMB":
        command = ["Rscript", "-e", "suppressPackageStartupMessages(library(glmmTMB))"]
    elif engine == "bambi":
        command = [pythons["bambi"], "-c", "import bambi, arviz"]
    else:
        command = [pythons["bayesmix"], "-c", "import bayesmix, arviz"]
    subprocess.run(command, env=env, capture_output=True)


# ---------------------------------------------------------------------------------------------------
# estimates


def _scalar(value) -> float:
    return float(value[0] if isinstance(value, list) else value)


def laplace_estimates(engine: str, raw: dict) -> dict:
    """Flat estimates of a Laplace fit: fixed effects, the group SD, the zero process (constant: zi /
    hu as a probability, ``zero``; with its random effect: its intercept on the logit scale,
    ``zero intercept (logit)``, and its group SD, ``zero sd``), alpha, logLik; and the fit's own
    time where the process reports it (``fit_s``: glmmTMB's ``system.time(glmmTMB(...))`` elapsed,
    bayesmix's CLI JSON ``time_s``)."""
    if engine == "glmmTMB":
        fixef = {k.strip("()"): float(v) for k, v in raw["fixef"].items()}
        zi_logit = float(raw["zi"]["(Intercept)"])
        if raw.get("zi_sd") is not None:
            params = {"zero intercept (logit)": zi_logit, "zero sd": _scalar(raw["zi_sd"])}
        else:
            params = {"zero": 1 / (1 + math.exp(-zi_logit))}
        if raw.get("alpha") is not None:
            params["alpha"] = float(raw["alpha"])
        sd = _scalar(raw["sd"])
        converged = raw.get("convergence") == 0 and bool(raw.get("pdHess"))
    else:
        fixef = dict(zip(raw["fixef"]["names"], map(float, raw["fixef"]["estimate"])))
        family = raw.get("family_params") or {}
        zero = raw.get("zi") or {}
        if zero.get("varcorr"):
            zero_fixef = dict(zip(zero["fixef"]["names"], map(float, zero["fixef"]["estimate"])))
            params = {"zero intercept (logit)": zero_fixef["Intercept"], "zero sd": float(zero["varcorr"][0]["sd"][0])}
        else:
            params = {"zero": float(family["zi"] if "zi" in family else family["hu"])}
        if "alpha" in family:
            params["alpha"] = float(family["alpha"])
        sd = float(raw["varcorr"][0]["sd"][0])
        converged = bool(raw.get("converged"))
    fit_s = raw.get("fit_s") if engine == "glmmTMB" else raw.get("time_s")
    return {
        "fixef": fixef,
        "sd": sd,
        "params": params,
        "logLik": float(raw["logLik"]),
        "converged": converged,
        "fit_s": None if fit_s is None else _scalar(fit_s),
    }


def compare(ours: dict, target: dict) -> dict:
    def rel(a: float, b: float) -> float:
        return abs(a - b) / max(abs(b), 1e-300)

    values = {f"fixef {k}": rel(ours["fixef"][k], v) for k, v in target["fixef"].items() if k in ours["fixef"]}
    values["sd"] = rel(ours["sd"], target["sd"])
    values.update({k: rel(ours["params"][k], v) for k, v in target["params"].items() if k in ours["params"]})
    worst = max(values, key=values.get)
    return {"max_rel": values[worst], "at": worst, "all": values, "logLik_diff": ours["logLik"] - target["logLik"]}


# ---------------------------------------------------------------------------------------------------
# the run


def run_case(case: Case, engines: list[str], data: Path, work: Path, args, pythons: dict, bayesmix_exe: str) -> dict:
    records = {e: {"status": "ok", "wall_s": [], "peak_gb": [], "runs": [], "log": None} for e in engines}
    zi = ZI_FORMULAS[args.zi_formula]
    spec = {
        "data": str(data),
        "formula": FORMULA,
        "zi": zi["bayesmix"],
        "bambi_zi": zi["bambi"],
        "family": case.family,
        "bambi_family": case.bambi_family,
        "family_params": list(case.family_params),
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "seed": args.seed,
        "cores": args.cores,
    }
    spec_path = work / f"{case.name}.spec.json"
    spec_path.write_text(json.dumps(spec))
    child = work / "nuts_child.py"
    repeats = {e: args.repeat for e in engines}
    if "bambi" in repeats and args.bambi_repeat is not None:
        repeats["bambi"] = args.bambi_repeat
    passes = [("warm-up", -1)] if args.warm else []
    passes += [("timed", i) for i in range(max(repeats.values()))]
    for kind, index in passes:
        for engine in engines:
            record = records[engine]
            if record["status"] != "ok":  # a process that failed or timed out is not run again
                continue
            if index >= repeats[engine]:
                continue
            tag = f"{case.name}.{engine}.{'warmup' if index < 0 else index}"
            out = work / f"{tag}.json"
            log = work / f"{tag}.log"
            if engine in NUTS_ENGINES:
                command = [pythons[engine], str(child), engine, str(spec_path), str(out)]
            elif engine == "bayesmix_laplace":
                command = laplace_command(case, data, out, bayesmix_exe, args.zi_formula)
            else:
                command = ["Rscript", "-e", r_program(case, data, out, args.zi_formula)]
            cache = work / "cache" / (f"{case.name}-{engine}" if args.warm else tag)
            env = cache_env(cache)
            for attempt in range(1 + args.retries):
                if attempt and not args.warm:  # a cold run that is run again gets empty caches again
                    shutil.rmtree(cache, ignore_errors=True)
                    env = cache_env(cache)
                out.unlink(missing_ok=True)
                warm_file_cache(engine, pythons, bayesmix_exe, cache_env(work / "cache" / f"throwaway-{engine}"))
                waited, share = (0.0, float("nan")) if args.no_idle_wait else wait_until_idle()
                status, wall, peak, others = measured_run(command, env, log, args.timeout, args.mem_limit_gb)
                if status == "ok" and not out.exists():
                    status = "failed (no result written)"
                note = f"idle after {waited:.0f} s (busy {share:.2f}); other processes' CPU share {others:.2f}"
                print(
                    f"  {case.name:9s} {engine:16s} {kind} {max(index, 0) + 1}: {status}, {wall:.2f} s ({note})",
                    flush=True,
                )
                if status != "ok" or others <= args.max_other_share or kind == "warm-up":
                    break
                record.setdefault("disturbed_runs", []).append({"wall_s": wall, "others_share": others})
                if attempt < args.retries:
                    print(f"    other processes used {others:.2f} of the CPUs: run again", flush=True)
            if kind == "warm-up":
                if status != "ok":
                    record["status"], record["log"] = status, str(log)
                continue
            record["status"] = status
            if status != "ok":
                record["log"] = str(log)
                record["output_tail"] = log.read_text(errors="replace")[-2000:]
                continue
            raw = json.loads(out.read_text())
            record["wall_s"].append(wall)
            record["peak_gb"].append(peak)
            record["runs"].append(
                {"wall_s": wall, "peak_gb": peak, "idle_wait_s": waited, "busy_share": share, "others_share": others}
            )
            if engine in NUTS_ENGINES:
                record["runs"][-1].update({k: raw[k] for k in ("min_ess_bulk", "max_rhat", "divergences", "phases")})
                record["runs"][-1]["ess_per_s"] = raw["min_ess_bulk"] / wall
                if "result" not in record:
                    record["result"] = raw
            else:
                estimates = laplace_estimates(engine, raw)
                record["runs"][-1]["fit_s"] = estimates["fit_s"]
                if "estimates" not in record:
                    record["estimates"] = estimates
                    record["versions"] = raw.get("versions")
    for engine, record in records.items():
        if record["status"] == "ok" and record["wall_s"]:
            record["median_s"] = statistics.median(record["wall_s"])
            record["max_others_share"] = max(r["others_share"] for r in record["runs"])
            record["peak_gb_max"] = max(record["peak_gb"])
            if engine in NUTS_ENGINES:
                record["ess_per_s_median"] = statistics.median(r["ess_per_s"] for r in record["runs"])
                record["min_ess_bulk"] = min(r["min_ess_bulk"] for r in record["runs"])
                record["max_rhat"] = max(r["max_rhat"] for r in record["runs"])
                record["divergences_max"] = max(r["divergences"] for r in record["runs"])
            else:
                fits = [r["fit_s"] for r in record["runs"] if r.get("fit_s") is not None]
                if fits:
                    record["fit_s"] = fits
                    record["fit_s_median"] = statistics.median(fits)
    result = {"family": case.family, "bambi_family": case.bambi_family, "glmmTMB": case.glmmtmb_family,
              "formula": FORMULA, "zi_formula": zi, "data": str(data.name), "engines": records}  # fmt: skip
    nuts = [records.get(e) for e in NUTS_ENGINES]
    if all(r and r.get("ess_per_s_median") for r in nuts):
        result["ess_per_s_ratio"] = nuts[0]["ess_per_s_median"] / nuts[1]["ess_per_s_median"]
    lap, tmb = records.get("bayesmix_laplace"), records.get("glmmTMB")
    if lap and tmb and lap.get("median_s") and tmb.get("median_s"):
        result["laplace_speedup"] = tmb["median_s"] / lap["median_s"]
    if lap and tmb and lap.get("fit_s_median") and tmb.get("fit_s_median"):
        result["laplace_fit_speedup"] = tmb["fit_s_median"] / lap["fit_s_median"]
    if lap and tmb and lap.get("estimates") and tmb.get("estimates"):
        result["laplace_agreement"] = compare(lap["estimates"], tmb["estimates"])
    return result


# ---------------------------------------------------------------------------------------------------
# output


def fmt(value, spec: str) -> str:
    if value is None or value != value:
        return "-"
    return format(value, spec)


def wall_cell(record: dict, spec: str = ".1f") -> str:
    if record["status"] != "ok":
        return f"**{record['status']}**"
    return fmt(record.get("median_s"), spec)


ZERO_SD_NAMES = ("sd_zi_g", "sd_zi_g[Intercept]", "psi_1|g_sigma")


def zero_sd_cell(record: dict) -> str:
    """Bulk ESS and R-hat of the zero process's group SD (bayesmix sd_zi_g, bambi psi_1|g_sigma)."""
    per = (record.get("result") or {}).get("parameters") or {}
    for name in ZERO_SD_NAMES:
        if name in per:
            return f"{per[name]['ess_bulk']:.0f} / {per[name]['rhat']:.3f}"
    return "-"


def tables(results: dict, args) -> str:
    size = f"{args.chains} x {args.draws} ({args.tune} tuning)"
    lines = [
        f"NUTS, {size}; zero process: {args.zi_formula} (bayesmix zi={ZI_FORMULAS[args.zi_formula]['bayesmix']!r}, "
        f"bambi {ZI_FORMULAS[args.zi_formula]['bambi']!r}); wall: median of {args.repeat} whole processes "
        f"(bambi: {args.bambi_repeat or args.repeat}); ESS/s = min bulk ESS / wall (median over the runs)",
        "",
        "| model | engine | wall (s) | min bulk ESS | ESS/s | max R-hat | R-hat <= 1.01 | divergences "
        "| peak RSS (GB) | min ESS at | zero-process SD: ESS / R-hat | bayesmix / bambi, ESS/s | others' CPU share |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        for engine in NUTS_ENGINES:
            record = result["engines"].get(engine)
            if record is None:
                continue
            ratio = fmt(result.get("ess_per_s_ratio"), ".1f") if engine == "bayesmix" else ""
            if record["status"] != "ok":
                dashes = " | ".join(["-"] * 8)
                lines.append(f"| {CASES[name].label} | {engine} | {wall_cell(record)} | {dashes} | {ratio} | - |")
                continue
            rhat = record.get("max_rhat")
            at = record["result"]["min_ess_at"].replace("|", "\\|")
            lines.append(
                f"| {CASES[name].label} | {engine} | {wall_cell(record)} | {fmt(record.get('min_ess_bulk'), '.0f')} "
                f"| {fmt(record.get('ess_per_s_median'), '.1f')} | {fmt(rhat, '.3f')} "
                f"| {'yes' if rhat is not None and rhat <= 1.01 else 'no'} | {record.get('divergences_max', '-')} "
                f"| {fmt(record.get('peak_gb_max'), '.2f')} | {at} | {zero_sd_cell(record)} "
                f"| {ratio} | {fmt(record.get('max_others_share'), '.2f')} |"
            )
    lines += [
        "",
        f"Laplace; median of {args.repeat} runs; whole process: start to exit; fit: glmmTMB's "
        "system.time(glmmTMB(...)) elapsed, bayesmix's CLI JSON time_s (Model(...) from the CSV, the fit, "
        "the summary)",
        "",
        "| model | engine | whole process (s) | fit (s) | glmmTMB / bayesmix, whole process "
        "| glmmTMB / bayesmix, fit | logLik | max rel. difference to glmmTMB "
        "(fixef, SD, zero process, alpha) | logLik - glmmTMB's | converged | others' CPU share |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        for engine in ("bayesmix_laplace", "glmmTMB"):
            record = result["engines"].get(engine)
            if record is None:
                continue
            est = record.get("estimates") or {}
            agreement = result.get("laplace_agreement") if engine == "bayesmix_laplace" else None
            speed = fmt(result.get("laplace_speedup"), ".2f") if engine == "bayesmix_laplace" else ""
            fit_speed = fmt(result.get("laplace_fit_speedup"), ".2f") if engine == "bayesmix_laplace" else ""
            lines.append(
                f"| {CASES[name].label} | {engine} | {wall_cell(record, '.2f')} "
                f"| {fmt(record.get('fit_s_median'), '.2f')} "
                f"| {speed} | {fit_speed} | {fmt(est.get('logLik'), '.3f')} "
                f"| {fmt(agreement['max_rel'], '.1e') + ' (' + agreement['at'] + ')' if agreement else '-'} "
                f"| {fmt(agreement['logLik_diff'], '.1e') if agreement else '-'} | {est.get('converged', '-')} "
                f"| {fmt(record.get('max_others_share'), '.2f')} |"
            )
    return "\n".join(lines)


def git_state() -> dict:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--", "bayesmix"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, from {', '.join(ENGINES)}")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of every process; the median is reported")
    parser.add_argument(
        "--bambi-repeat", type=int, default=None, help="bambi's timed runs (default --repeat; each takes minutes)"
    )
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--zi-sd", type=float, default=0.5, help="SD of the zero process's group effect (logit)")
    parser.add_argument(
        "--zi-formula",
        choices=tuple(ZI_FORMULAS),
        default="random",
        help="the fitted zero process: random, ~ 1 + (1 | g) in every engine (default); constant: zi / hu / psi "
        "constant",
    )
    parser.add_argument("--seed", type=int, default=1, help="the data's seed and both samplers' random_seed")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--cores", type=int, default=2, help="bambi's cores=")
    parser.add_argument("--warm", action="store_true", help="caches kept across a case's runs, after an untimed run")
    parser.add_argument("--no-idle-wait", action="store_true", help="do not wait for an idle machine (smoke runs)")
    parser.add_argument("--idle-wait-limit", type=float, default=120.0, help="seconds to wait for an idle machine")
    parser.add_argument(
        "--max-other-share",
        type=float,
        default=0.1,
        help="a run during which other processes used more of the CPUs than this is run again (--retries)",
    )
    parser.add_argument("--retries", type=int, default=2, help="runs again of a disturbed run (see --max-other-share)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one process may run")
    parser.add_argument("--mem-limit-gb", type=float, default=16.0, help="resident memory cap per process (GB)")
    parser.add_argument("--bambi-python", default=DEFAULT_BAMBI_PYTHON)
    parser.add_argument("--bayesmix-python", default=sys.executable)
    parser.add_argument("--bayesmix", default=None, help="the bayesmix command (default: this venv's)")
    parser.add_argument("--workdir", default=None, help="keep data, logs, results here (default: a temp dir, removed)")
    parser.add_argument("--out", required=True, help="JSON results file")
    args = parser.parse_args(argv)
    speed_vs_bambi.IDLE_WAIT_LIMIT_S = args.idle_wait_limit

    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [n for n in names if n not in CASES] + [e for e in engines if e not in ENGINES]
    if unknown:
        parser.error(f"unknown case or engine: {', '.join(unknown)}")
    skipped = {}
    if "bambi" in engines and not Path(args.bambi_python).exists():
        skipped["bambi"] = f"{args.bambi_python} does not exist (see the docstring for the venv)"
    if "glmmTMB" in engines and shutil.which("Rscript") is None:
        skipped["glmmTMB"] = "no Rscript on the PATH"
    for engine, why in skipped.items():
        print(f"{engine} skipped: {why}", file=sys.stderr)
        engines.remove(engine)
    bayesmix_exe = args.bayesmix or str(Path(sys.executable).parent / "bayesmix")
    if not Path(bayesmix_exe).exists():
        bayesmix_exe = shutil.which("bayesmix") or bayesmix_exe
    pythons = {"bayesmix": args.bayesmix_python, "bambi": args.bambi_python}

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="counts_vs_bambi-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "nuts_child.py").write_text(NUTS_CHILD)
    print(f"work directory: {work}", flush=True)
    results, data_summary = {}, {}
    try:
        for name in names:
            case = CASES[name]
            frame = simulate(name, args.rows, args.groups, args.zi_sd, args.seed)
            data = work / f"{name}.csv"
            frame.to_csv(data, index=False, float_format="%.17g")
            data_summary[name] = {
                "rows": len(frame),
                "groups": int(frame["g"].nunique()),
                "zeros": float((frame["y"] == 0).mean()),
                "mean": float(frame["y"].mean()),
                "max": int(frame["y"].max()),
            }
            zi_text = ZI_FORMULAS[args.zi_formula]["glmmTMB"]
            print(f"{name}: {case.label}, {FORMULA}, zero process {zi_text}; data {data_summary[name]}", flush=True)
            results[name] = run_case(case, engines, data, work, args, pythons, bayesmix_exe)
    finally:
        text = tables(results, args)
        print()
        print(text)
        versions = {}
        for result in results.values():
            for engine, record in result["engines"].items():
                found = (record.get("result") or {}).get("versions") or record.get("versions") or {}
                for k, v in found.items():
                    versions.setdefault(engine, {})[k] = v
        document = {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
            "bayesmix": git_state(),
            "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
            "skipped": skipped,
            "data": data_summary,
            "wall_time": "whole process, start to exit, measured by this script",
            "versions": versions,
            "cases": results,
            "table": text,
        }
        Path(args.out).write_text(json.dumps(document, indent=1, default=str))
        print(f"\nwrote {args.out}")
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
