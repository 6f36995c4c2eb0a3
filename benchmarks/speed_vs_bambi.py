"""bayesmix and bambi (+ nutpie) side by side, in the same run, each fit a whole separate process.

Each (case, tool) runs as its own Python process: import, reading the data, building the model,
compilation and sampling (with whatever each tool computes inside its call: bayesmix's diagnostics
and posterior predictive draws, bambi's InferenceData), exactly as a user would call each tool with
its defaults:

    bayesmix.Model(formula, data, family=...).sample(draws=, tune=, chains=, random_seed=1)
    bambi.Model(formula, data, family=...).fit(draws=, tune=, chains=, random_seed=1,
                                               inference_method="nutpie")

(``progressbar=False`` for both, so that the logs stay readable.) The data are simulated once with a
fixed seed (or loaded: sleepstudy) and written to a Parquet file that both processes read, so both
tools fit the same rows. Cases:

1. ``sleepstudy``: ``Reaction ~ Days + (Days | Subject)``, 4 chains x 1000 draws (1000 tuning), once
   cold and once warm (see below).
2. ``slopes``: ``y ~ x + (x | g)``, 1,000 groups, correlated intercepts and slopes, 10^4, 10^5, 10^6
   rows (``--rows``), 2 x 500 (500 tuning).
3. ``insteval``: InstEval-shaped crossed Gaussian (the generator of benchmarks/insteval_reml.py):
   73,421 rows, ``y ~ service + (1 | s) + (1 | d) + (1 | dept:service)``, 2,972 s, 1,128 d and 28
   dept:service levels, 2 x 500.
4. ``verbagg``: VerbAgg-shaped crossed logistic: 316 subjects x 24 items = 7,584 rows,
   ``r2 ~ x + (1 | id) + (1 | item)``, bernoulli, 2 x 500.

Cold and warm: every process gets its own empty cache directories (JAX's persistent compilation cache
via ``JAX_COMPILATION_CACHE_DIR``, PyTensor's ``base_compiledir`` via ``PYTENSOR_FLAGS``, which also
holds PyTensor's numba cache, and ``NUMBA_CACHE_DIR``), so every row is "cold": nothing compiled
before. The exception is sleepstudy's "warm" row, which runs the same model a second time with the
caches the cold run left. Before every timed process the tool's interpreter imports its package
(with throwaway caches), so that the operating system's file cache is warm for both tools alike
(a process that filled most of the memory, bambi at 10^6 rows stopped at 16 GB, evicts it), and
then the script waits until the machine is idle (:func:`wait_until_idle`; the log says how long).
Why: when the file cache was warmed once, at the start, bayesmix's InstEval fit took 60.7 s right
after that bambi process and 52.6 s alone (same draws); the cause was not pinned down.

Reported per process: wall time of the whole process (measured by this script, interpreter start
to exit), min bulk ESS and max R-hat (arviz, computed by this script from the draws the process
saved, after it ended: the measurement's work is not the fit's) over the model's parameters -- fixed effects, random
effect SDs, correlations (bayesmix only: bambi's ``(x | g)`` has independent intercepts and slopes,
no correlation parameter) and the residual SD -- and separately over the per-level random effects
(bayesmix's ``re_*``, bambi's ``1|g``, ``x|g``; non-centred offsets/z's excluded), ESS per second
(parameter ESS / whole-process wall time), divergences after tuning, and peak RSS of the process
(``getrusage`` of the waited-for child, so also for a process that was stopped).

Limits: each process has a wall-clock limit (``--timeout``, 900 s) and a resident-memory cap
(``--mem-limit-gb``, 16 GB) watched by this script (a cap on the address space with RLIMIT_AS would
misfire: JAX, LLVM and numba reserve several times their resident memory as virtual memory). A
process that fails, times out or passes the cap is reported as such in the table.

bambi is not a dependency of bayesmix; install it in a separate venv (one line; matplotlib<3.11
because arviz_plots 0.8, which bambi 0.17 imports, fails under matplotlib 3.11):

    python3 -m venv /tmp/bambi-venv && /tmp/bambi-venv/bin/pip install "bambi==0.17.*" nutpie pyarrow "matplotlib<3.11"

Run with the bayesmix venv's Python (it simulates the data with numpy/pandas/pyarrow):

    python benchmarks/speed_vs_bambi.py                       # everything (~8 minutes on 2 cores)
    python benchmarks/speed_vs_bambi.py --quick               # smoke run: sleepstudy, 2 x 200, ~1.5 min
    python benchmarks/speed_vs_bambi.py --cases sleepstudy,verbagg --tools bayesmix,bambi
    python benchmarks/speed_vs_bambi.py --cases slopes --rows 100000 --timeout 600

``--bambi-python`` defaults to /tmp/bambi-venv/bin/python (bambi is skipped, saying so, when it is
missing); ``--bayesmix-python`` to this interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_BAMBI_PYTHON = "/tmp/bambi-venv/bin/python"
CASE_NAMES = ("sleepstudy", "slopes", "insteval", "verbagg")
TOOLS = ("bayesmix", "bambi")
SEED = 1

# The child: one whole fit, in one process. argv: tool, spec.json, result.json.
CHILD = r"""
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
phases["import"] = time.perf_counter() - start
t = time.perf_counter()
data = pd.read_parquet(spec["data"])
phases["read data"] = time.perf_counter() - t
t = time.perf_counter()
common = dict(draws=spec["draws"], tune=spec["tune"], chains=spec["chains"], random_seed=spec["seed"],
              progressbar=False)
if tool == "bayesmix":
    model = bayesmix.Model(spec["formula"], data, family=spec["family"])
    phases["model"] = time.perf_counter() - t
    t = time.perf_counter()
    idata = model.sample(**common)
    phases["sample"] = time.perf_counter() - t
else:
    model = bmb.Model(spec["formula"], data, family=spec["family"])
    phases["model"] = time.perf_counter() - t
    t = time.perf_counter()
    idata = model.fit(inference_method="nutpie", **common)
    phases["sample"] = time.perf_counter() - t
t = time.perf_counter()
post = idata.posterior
params, levels = {}, {}
if tool == "bayesmix":
    for name, var in post.data_vars.items():
        if name.startswith("cor_"):  # one value per pair of terms
            (pair,) = var.dims[2:]
            for i, value in enumerate(var[pair].values):
                params[f"{name}[{value}]"] = var.isel({pair: i}).drop_vars(pair)
        elif name == "beta" or name == "sigma" or name.startswith("sd_"):
            params[name] = var
        elif name.startswith("re_"):
            levels[name] = var
else:
    for name, var in post.data_vars.items():
        if name.endswith("__") or name.endswith("_offset"):
            continue  # transformed values (sigma_log__) and non-centred offsets
        if "|" in name and not name.endswith("_sigma"):
            levels[name] = var
        else:
            params[name] = var

def flat(arrays):
    out = {}
    for name, var in arrays.items():
        other = [d for d in var.dims if d not in ("chain", "draw")]
        if not other:
            out[name] = var.transpose("chain", "draw").values[..., None], [name]
        else:
            st = var.stack(_i=other).transpose("chain", "draw", "_i")
            labels = [f"{name}[{','.join(map(str, v if isinstance(v, tuple) else (v,)))}]" for v in st["_i"].values]
            out[name] = st.values, labels
    values = np.concatenate([v for v, _ in out.values()], axis=-1)
    labels = [l for _, ls in out.values() for l in ls]
    return values, labels

# the draws go to the parent, which computes ESS and R-hat after this process ended: that is the
# measurement's work, not the fit's (ArviZ over 2,000 per-level effects takes ~2.5 s)
arrays = {}
for group, chosen in (("params", params), ("levels", levels)):
    if chosen:
        values, labels = flat(chosen)
        arrays[group], arrays[group + "_labels"] = values, np.array(labels)
np.savez(out_path + ".npz", **arrays)
result = {"param_names": sorted(params), "level_names": sorted(levels),
          "divergences": int(idata.sample_stats["diverging"].sum()),
          "mean_steps": float(idata.sample_stats["n_steps"].mean()) if "n_steps" in idata.sample_stats else None,
          "draws_total": int(post.sizes["chain"] * post.sizes["draw"])}
phases["draws out"] = time.perf_counter() - t
result["phases"] = phases
result["in_process_s"] = time.perf_counter() - start
import importlib.metadata as md
result["versions"] = {}
for pkg in ("bayesmix", "bambi", "pymc", "pytensor", "nutpie", "numpyro", "jax", "arviz", "numpy", "numba"):
    try:
        result["versions"][pkg] = md.version(pkg)
    except md.PackageNotFoundError:
        pass
json.dump(result, open(out_path, "w"))
"""


@dataclass
class Run:
    case: str  # the table's case label
    key: str  # file-name-safe id
    data: str  # data key
    formula: str
    family: str
    chains: int
    draws: int
    tune: int
    cache: str  # cache key: runs with the same key share caches ("warm" second run)


@dataclass
class Outcome:
    run: Run
    tool: str
    status: str = "ok"
    wall: float = float("nan")
    peak_gb: float = float("nan")
    result: dict = field(default_factory=dict)
    log: str = ""


# ---------------------------------------------------------------------------------------------------
# data


def simulate_slopes(rows: int, groups: int = 1000, seed: int = SEED):
    """The data of benchmarks/collapsed_scaling.py: y ~ x + (x | g), correlated intercept and slope."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, rows)
    x = rng.normal(size=rows)
    b = rng.multivariate_normal([0, 0], [[1, 0.3], [0.3, 0.5]], size=groups)
    y = 1 + 0.5 * x + b[g, 0] + b[g, 1] * x + rng.normal(0, 1, rows)
    labels = [f"g{i:04d}" for i in range(groups)]
    return pd.DataFrame({"y": y, "x": x, "g": pd.Categorical.from_codes(g, labels)})


def simulate_insteval(seed: int = SEED):
    """benchmarks/insteval_reml.py's generator; the grouping columns (and service) as categories."""
    import pandas as pd

    sys.path.insert(0, str(HERE))
    from insteval_reml import simulate

    frame = simulate(seed)
    for column in ("s", "d", "dept", "service"):
        frame[column] = pd.Categorical(frame[column].astype(str))
    return frame


def simulate_verbagg(seed: int = SEED, subjects: int = 316, items: int = 24):
    """VerbAgg's shape: every subject answers every item (316 x 24); a subject-level covariate x
    (a standardised Anger score), subject SD 1.3 and item SD 1.1 on the logit scale."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(subjects), items)
    item = np.tile(np.arange(items), subjects)
    x_subject = rng.normal(size=subjects)
    eta = -0.2 + 0.3 * x_subject[ids] + rng.normal(0, 1.3, subjects)[ids] + rng.normal(0, 1.1, items)[item]
    r2 = (rng.uniform(size=ids.size) < 1 / (1 + np.exp(-eta))).astype(np.int64)
    return pd.DataFrame(
        {
            "r2": r2,
            "x": x_subject[ids],
            "id": pd.Categorical.from_codes(ids, [f"s{i:03d}" for i in range(subjects)]),
            "item": pd.Categorical.from_codes(item, [f"i{i:02d}" for i in range(items)]),
        }
    )


def write_data(key: str, path: Path, bayesmix_python: str) -> None:
    if key == "sleepstudy":
        code = f"import bayesmix; bayesmix.load_dataset('sleepstudy').to_parquet({str(path)!r})"
        subprocess.run([bayesmix_python, "-c", code], check=True, capture_output=True)
        return
    if key.startswith("slopes"):
        frame = simulate_slopes(int(key.split("-")[1]))
    elif key == "insteval":
        frame = simulate_insteval()
    elif key == "verbagg":
        frame = simulate_verbagg()
    else:
        raise ValueError(key)
    frame.to_parquet(path)


# ---------------------------------------------------------------------------------------------------
# runs


def plan(cases, rows, quick: bool) -> list[Run]:
    def run(label, key, formula, family, chains, draws, data=None, cache=None):
        """A Run; ``label`` has ``{size}`` where chains x draws go; data and cache default to ``key``."""
        c, d = (2, 200) if quick else (chains, draws)
        return Run(label.format(size=f"{c}x{d}"), key, data or key, formula, family, c, d, d, cache or key)

    runs = []
    for case in cases:
        if case == "sleepstudy":
            formula = "Reaction ~ Days + (Days | Subject)"
            for temp in ("cold", "warm"):
                label = f"sleepstudy {{size}}, {temp}"
                runs.append(run(label, f"sleepstudy-{temp}", formula, "gaussian", 4, 1000, "sleepstudy", "sleepstudy"))
        elif case == "slopes":
            for n in rows:
                runs.append(
                    run(
                        f"(x | g), 1,000 groups, {n:,} rows, {{size}}",
                        f"slopes-{n}",
                        "y ~ x + (x | g)",
                        "gaussian",
                        2,
                        500,
                    )
                )
        elif case == "insteval":
            formula = "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)"
            runs.append(run("InstEval-shaped, 73,421 rows, {size}", "insteval", formula, "gaussian", 2, 500))
        elif case == "verbagg":
            formula = "r2 ~ x + (1 | id) + (1 | item)"
            runs.append(run("VerbAgg-shaped logistic, 7,584 rows, {size}", "verbagg", formula, "bernoulli", 2, 500))
    return runs


def cache_env(root: Path) -> dict:
    env = dict(os.environ)
    for sub in ("jax", "pytensor", "numba"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    env["JAX_COMPILATION_CACHE_DIR"] = str(root / "jax")
    flags = env.get("PYTENSOR_FLAGS", "")
    env["PYTENSOR_FLAGS"] = ",".join(f for f in (flags, f"base_compiledir={root / 'pytensor'}") if f)
    env["NUMBA_CACHE_DIR"] = str(root / "numba")
    return env


def rss_bytes(pid: int) -> int:
    """Resident memory of pid and its descendants (0 once gone)."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
            pass
    return total


def run_child(cmd, env, log_path: Path, timeout: float, mem_cap_gb: float) -> tuple[str, float, float]:
    """Run cmd as its own process group; returns (status, wall seconds, peak RSS GB).

    A thread waits for the process (a blocking wait4: the wall time is read the moment it exits,
    not at the next poll) while this one checks the time and memory limits every 0.2 s."""
    cap = mem_cap_gb * 1e9
    with open(log_path, "w") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        ended: dict = {}

        def wait() -> None:
            _, ended["status"], ended["usage"] = os.wait4(proc.pid, 0)
            ended["wall"] = time.perf_counter() - start

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        stopped = None
        try:
            while waiter.is_alive():
                elapsed = time.perf_counter() - start
                if stopped is None:
                    if elapsed > timeout:
                        stopped = f"not finished after {timeout:.0f} s (stopped)"
                    elif rss_bytes(proc.pid) > cap:
                        stopped = f"out of memory: RSS passed {mem_cap_gb:g} GB after {elapsed:.0f} s (stopped)"
                    if stopped:
                        try:
                            os.killpg(proc.pid, signal.SIGKILL)  # the group this script started
                        except ProcessLookupError:
                            pass
                waiter.join(0.2)
        except BaseException:  # Ctrl-C here: do not leave the fit running
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            raise
    wstatus, usage, wall = ended["status"], ended["usage"], ended["wall"]
    proc.returncode = os.waitstatus_to_exitcode(wstatus)
    peak = usage.ru_maxrss * 1024 / 1e9
    if stopped:
        return stopped, wall, peak
    if proc.returncode == 0:
        return "ok", wall, peak
    tail = log_path.read_text(errors="replace").strip().splitlines()[-40:]
    text = "\n".join(tail)
    if proc.returncode == -signal.SIGKILL:
        return "killed by SIGKILL (the system's out-of-memory killer?)", wall, peak
    if "MemoryError" in text or "Unable to allocate" in text or "out of memory" in text.lower():
        return "out of memory (" + (tail[-1] if tail else "") + ")", wall, peak
    last = next((line for line in reversed(tail) if line.strip()), f"exit status {proc.returncode}")
    return f"failed: {last.strip()[:200]}", wall, peak


def summarize_draws(values, labels: list[str]) -> dict:
    """Min bulk ESS and max R-hat (ArviZ) over (chain, draw, i) draws, with where each is; entries
    constant by construction (a correlation matrix's diagonal, rounding noise only) left out."""
    import arviz as az
    import numpy as np
    import xarray as xr

    varying = np.ptp(values, axis=(0, 1)) > 1e-12 * np.maximum(1.0, np.abs(values).max(axis=(0, 1)))
    values, labels = values[..., varying], [label for label, keep in zip(labels, varying) if keep]
    ds = xr.Dataset({"v": (("chain", "draw", "i"), values)})
    ess = az.ess(ds, method="bulk")["v"].values
    rhat = az.rhat(ds)["v"].values
    i = int(np.nanargmin(ess))
    return {
        "n": len(labels),
        "min_ess": float(ess[i]),
        "min_ess_at": labels[i],
        "max_rhat": float(np.nanmax(rhat)),
        "max_rhat_at": labels[int(np.nanargmax(rhat))],
    }


def iid_reference(chains: int, draws: int, count: int, simulations: int = 5) -> tuple[float, float]:
    """Median (over ``simulations``) of the min bulk ESS and max R-hat that :func:`summarize_draws`
    gives for ``count`` quantities of independent draws, (chains, draws) each: what a perfect
    sampler would show. Over 2,000 per-level effects at 2 x 500 that is ESS ~600 and R-hat ~1.011,
    a floor set by the estimators' noise, not by mixing."""
    import numpy as np

    rng = np.random.default_rng(0)
    found = [summarize_draws(rng.standard_normal((chains, draws, count)), [""] * count) for _ in range(simulations)]
    return float(np.median([f["min_ess"] for f in found])), float(np.median([f["max_rhat"] for f in found]))


def diagnose_draws(path: Path) -> dict:
    """:func:`summarize_draws` of the parameters and of the per-level effects a child saved."""
    import numpy as np

    saved = np.load(path)
    return {
        group: summarize_draws(saved[group], list(saved[group + "_labels"])) if group in saved else None
        for group in ("params", "levels")
    }


def warm_file_cache(python: str, tool: str, work: Path) -> None:
    code = "import bayesmix" if tool == "bayesmix" else "import bambi, nutpie"
    env = cache_env(work / "cache" / f"throwaway-{tool}")
    subprocess.run([python, "-c", code], env=env, capture_output=True)


IDLE_BUSY_SHARE = 0.1  # idle: at most this share of all CPUs' time busy over a second
IDLE_WAIT_LIMIT_S = 120.0


def busy_share(interval: float = 1.0) -> float:
    """The share of all CPUs' time spent busy (not idle, not waiting for I/O) over ``interval``
    seconds, from /proc/stat's first line; 0 where /proc/stat is missing (not Linux)."""

    def times() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle, iowait
        return sum(fields[:8]) - idle, sum(fields[:8])  # user..steal; guest time is counted in user

    if not Path("/proc/stat").exists():
        return 0.0
    busy0, total0 = times()
    time.sleep(interval)
    busy1, total1 = times()
    return (busy1 - busy0) / max(total1 - total0, 1)


def wait_until_idle() -> tuple[float, float]:
    """Wait (at most :data:`IDLE_WAIT_LIMIT_S`) until the machine is idle; (seconds waited, the
    last second's busy share)."""
    start = time.perf_counter()
    while (share := busy_share()) > IDLE_BUSY_SHARE and time.perf_counter() - start < IDLE_WAIT_LIMIT_S:
        pass
    return time.perf_counter() - start, share


# ---------------------------------------------------------------------------------------------------
# output


def fmt(value, spec):
    if value is None or value != value:  # None or nan
        return "-"
    return format(value, spec)


HEADER = (
    "| case | tool | wall (s) | min bulk ESS, params | ESS/s | max R-hat, params | "
    "min bulk ESS, per-level effects | max R-hat, per-level effects | divergences | peak RSS (GB) |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def cell(text) -> str:
    """Markdown table cell: a literal | (as in "(x | g)" or bambi's "1|g") must be escaped."""
    return str(text).replace("|", "\\|")


def row(o: Outcome) -> str:
    r = o.result
    p, lv = r.get("params") or {}, r.get("levels") or {}
    wall = fmt(o.wall, ".1f")
    if o.status != "ok":
        return (
            f"| {cell(o.run.case)} | {o.tool} | {wall} | **{cell(o.status)}** | - | - | - | - | - | "
            f"{fmt(o.peak_gb, '.2f')} |"
        )
    ess = p.get("min_ess")
    return (
        f"| {cell(o.run.case)} | {o.tool} | {wall} | {fmt(ess, '.0f')} | {fmt(ess / o.wall if ess else None, '.1f')} | "
        f"{fmt(p.get('max_rhat'), '.3f')} | {fmt(lv.get('min_ess'), '.0f')} | {fmt(lv.get('max_rhat'), '.3f')} | "
        f"{r.get('divergences', '-')} | {fmt(o.peak_gb, '.2f')} |"
    )


def details(outcomes: list[Outcome]) -> str:
    lines = [
        "| case | tool | phases in the process (s) | leapfrog steps per draw | parameters (count: names) | min ESS at "
        "| max R-hat at |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        r = o.result
        if not r:
            continue
        phases = ", ".join(f"{k} {v:.1f}" for k, v in r["phases"].items())
        p = r.get("params") or {}
        lv = r.get("levels") or {}
        params = f"{p.get('n', 0)}: {', '.join(r['param_names'])}"
        names = f"{params}; per-level: {', '.join(r['level_names'])} ({lv.get('n', 0)})"
        steps = fmt(r.get("mean_steps"), ".1f")
        lines.append(
            f"| {cell(o.run.case)} | {o.tool} | {phases} | {steps} | {cell(names)} | "
            f"{cell(p.get('min_ess_at', '-'))} | {cell(p.get('max_rhat_at', '-'))} |"
        )
    return "\n".join(lines)


def report(outcomes: list[Outcome]) -> None:
    """The Markdown tables, versions and the log tails of the processes that did not finish."""
    print()
    print(HEADER)
    for o in outcomes:
        print(row(o))
    print()
    print(details(outcomes))
    shapes = sorted(
        {
            (o.run.chains, o.run.draws, n)
            for o in outcomes
            for n in [(o.result.get(g) or {}).get("n") for g in ("params", "levels")]
            if n
        }
    )
    if shapes:
        print("\nIndependent draws of the same size (min bulk ESS, max R-hat; median of 5 simulations), the best any")
        print("sampler can show on these columns: ", end="")
        print(
            "; ".join(
                f"{c} x {d} x {n}: {fmt(e, '.0f')}, {fmt(r, '.3f')}"
                for c, d, n in shapes
                for e, r in [iid_reference(c, d, n)]
            )
        )
    versions = {}
    for o in outcomes:
        for k, v in o.result.get("versions", {}).items():
            versions.setdefault(f"{k} {v}", []).append(o.tool)
    commit = subprocess.run(
        ["git", "-C", str(HERE), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    if commit:
        print(f"\nbayesmix source: git {commit}")
    if versions:
        print()
        print("versions: " + "; ".join(f"{k} ({'/'.join(sorted(set(v)))})" for k, v in sorted(versions.items())))
    failed = [o for o in outcomes if o.status != "ok"]
    for o in failed:
        print(f"\n{o.run.case} / {o.tool}: {o.status}; last lines of {o.log}:")
        try:
            print("\n".join(Path(o.log).read_text(errors="replace").strip().splitlines()[-8:]))
        except OSError:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--cases",
        default=None,
        help=f"comma-separated, from {', '.join(CASE_NAMES)} (or 1-4); default all (with --quick: sleepstudy)",
    )
    parser.add_argument("--tools", default="bayesmix,bambi")
    parser.add_argument(
        "--rows",
        type=int,
        nargs="+",
        default=None,
        help="rows of the slopes case (default 10000 100000 1000000; with --quick 10000)",
    )
    parser.add_argument("--quick", action="store_true", help="2 chains x 200 draws (200 tuning) everywhere")
    parser.add_argument("--timeout", type=float, default=900.0, help="wall-clock limit per process (s)")
    parser.add_argument("--mem-limit-gb", type=float, default=16.0, help="resident memory cap per process (GB)")
    parser.add_argument("--bambi-python", default=None, help=f"default {DEFAULT_BAMBI_PYTHON} when it exists")
    parser.add_argument("--bayesmix-python", default=sys.executable)
    parser.add_argument(
        "--workdir", default=None, help="keep data, caches and logs here (default: a temp dir, removed)"
    )
    args = parser.parse_args()

    names = args.cases or ("sleepstudy" if args.quick else ",".join(CASE_NAMES))
    cases = []
    for name in names.split(","):
        name = name.strip()
        name = CASE_NAMES[int(name) - 1] if name.isdigit() and 1 <= int(name) <= 4 else name
        if name not in CASE_NAMES:
            parser.error(f"unknown case {name!r}; cases: {', '.join(CASE_NAMES)}")
        cases.append(name)
    rows = args.rows or ([10_000] if args.quick else [10_000, 100_000, 1_000_000])
    tools = [t.strip() for t in args.tools.split(",")]
    for t in tools:
        if t not in TOOLS:
            parser.error(f"unknown tool {t!r}; tools: {', '.join(TOOLS)}")
    pythons = {"bayesmix": args.bayesmix_python, "bambi": args.bambi_python}
    if "bambi" in tools and pythons["bambi"] is None:
        if Path(DEFAULT_BAMBI_PYTHON).exists():
            pythons["bambi"] = DEFAULT_BAMBI_PYTHON
        else:
            print(
                f"bambi skipped: no --bambi-python and {DEFAULT_BAMBI_PYTHON} does not exist. Set it up with\n"
                '  python3 -m venv /tmp/bambi-venv && /tmp/bambi-venv/bin/pip install "bambi==0.17.*" nutpie '
                'pyarrow "matplotlib<3.11"',
                file=sys.stderr,
            )
            tools.remove("bambi")

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="speed_vs_bambi-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "child.py").write_text(CHILD)
    runs = plan(cases, rows, args.quick)
    print(f"work directory: {work}", file=sys.stderr)
    outcomes: list[Outcome] = []
    try:
        written = {}
        for run in runs:
            if run.data not in written:
                path = work / f"{run.data}.parquet"
                t = time.perf_counter()
                write_data(run.data, path, args.bayesmix_python)
                written[run.data] = path
                print(f"data {run.data}: {path} ({time.perf_counter() - t:.1f} s)", file=sys.stderr)
            for tool in tools:
                spec = {
                    "data": str(written[run.data]),
                    "formula": run.formula,
                    "family": run.family,
                    "chains": run.chains,
                    "draws": run.draws,
                    "tune": run.tune,
                    "seed": SEED,
                }
                spec_path = work / f"{run.key}-{tool}.json"
                spec_path.write_text(json.dumps(spec))
                out_path = work / f"{run.key}-{tool}.result.json"
                log_path = work / f"{run.key}-{tool}.log"
                env = cache_env(work / "cache" / f"{run.cache}-{tool}")
                cmd = [pythons[tool], str(work / "child.py"), tool, str(spec_path), str(out_path)]
                warm_file_cache(pythons[tool], tool, work)
                waited, share = wait_until_idle()
                print(f"{run.key}-{tool}: machine idle after {waited:.0f} s (busy share {share:.2f})", file=sys.stderr)
                status, wall, peak = run_child(cmd, env, log_path, args.timeout, args.mem_limit_gb)
                outcome = Outcome(run, tool, status, wall, peak, log=str(log_path))
                if status == "ok":
                    outcome.result = json.loads(out_path.read_text())
                    outcome.result.update(diagnose_draws(Path(f"{out_path}.npz")))
                outcomes.append(outcome)
                print(row(outcome), file=sys.stderr, flush=True)
    finally:
        try:
            report(outcomes)
        finally:
            if not args.workdir:
                shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
