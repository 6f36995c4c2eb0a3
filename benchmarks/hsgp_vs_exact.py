"""A spatial block with many positions in NUTS: the exact Cholesky factor beside PyMC's
Hilbert-space approximation (``Model(..., hsgp=...)``), in one run.

Data (seed 1): k sites uniform on [0, 20]^2, one row per site, y = 1 + 0.5 x + f(site) + e with
f a Matérn field (range 3, smoothness 1.5, SD 1) and e of SD 0.5. The model is
``y ~ x + mat(0 + pos | g)`` (g one level: one field), range and smoothness estimated.

Per k and per representation, in a whole process of its own: the time of one gradient of the
log density (JAX, jitted, the mean of 20 after a warm call, or of as many as 20 s allow, at least
3) and, where asked (``--sample``), a ``sample(draws, tune, chains=2)`` with its minimum bulk
ESS over beta, sigma and the field's SD,
range and smoothness per second of sampling, the posterior means and medians, and the REML
estimates (the exact engine, never approximated) beside them. The exact factor's gradient
costs O(k^3) (a Cholesky and its reverse), the approximation's O(k m) for m basis functions.

    . .venv/bin/activate
    python benchmarks/hsgp_vs_exact.py --sizes 300 1000 2000 --sample 1000 --out /tmp/hsgp_vs_exact.json

Results: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PYTHON = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
import numpy as np, pandas as pd, bayesmix
from bayesmix.design.matern import matern_correlation
rng = np.random.default_rng(1)
k = {k}
xy = np.round(rng.uniform(0.0, 20.0, (k, 2)), 4)
d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
field = np.linalg.cholesky(matern_correlation(d, 3.0, 1.5) + 1e-9 * np.eye(k)) @ rng.standard_normal(k)
x = rng.normal(size=k)
frame = pd.DataFrame({{"y": 1.0 + 0.5 * x + field + rng.normal(scale=0.5, size=k), "x": x, "g": "field"}})
frame["pos"] = bayesmix.num_factor(xy[:, 0], xy[:, 1])
model = bayesmix.Model("y ~ x + mat(0 + pos | g)", frame, hsgp={hsgp})
settings = model.design.blocks[0].covariance.hsgp
import jax, jax.numpy as jnp
from pymc.sampling.jax import get_jaxified_graph
pm_model = model.pymc_model("noncentered")
point = pm_model.initial_point()
values = [pm_model.rvs_to_values[v] for v in pm_model.free_RVs]
logp = get_jaxified_graph(inputs=values, outputs=[pm_model.logp()])
gradient = jax.jit(jax.grad(lambda *v: logp(*v)[0], argnums=tuple(range(len(values)))))
args = [jnp.asarray(point[v.name]) for v in values]
jax.block_until_ready(gradient(*args))
start, calls = time.perf_counter(), 0
while calls < 20 and (calls < 3 or time.perf_counter() - start < 20.0):
    jax.block_until_ready(gradient(*args))
    calls += 1
out = {{"k": k, "rank": None if settings is None else settings.rank,
        "m": None if settings is None else list(settings.m), "c": None if settings is None else settings.c,
        "gradient_ms": 1000 * (time.perf_counter() - start) / calls}}
if {draws}:
    import arviz as az
    start = time.perf_counter()
    idata = model.sample(draws={draws}, tune={draws}, chains=2, random_seed=1, progressbar=False,
                         posterior_predictive=False)
    out["sample_s"] = time.perf_counter() - start
    post = idata.posterior
    scalars = {{"Intercept": post["beta"].sel(coef="Intercept"), "x": post["beta"].sel(coef="x"),
               "sigma": post["sigma"], "sd": post["sd_g"].isel(g__term=0), "range": post["range_g"],
               "smoothness": post["smoothness_g"]}}
    ess = {{name: float(az.ess(v.values)) for name, v in scalars.items()}}
    out["min_ess"] = min(ess.values())
    out["ess_per_s"] = out["min_ess"] / out["sample_s"]
    out["means"] = {{name: float(v.mean()) for name, v in scalars.items()}}
    out["medians"] = {{name: float(v.median()) for name, v in scalars.items()}}
    fit = model.fit("reml")  # the exact engine: never approximated
    out["reml"] = {{"x": float(fit.fixef.loc["x", "estimate"]), "sigma": float(fit.sigma),
                   "sd": float(fit.varcorr[0]["sd"][0]), "range": fit.varcorr[0]["range"],
                   "smoothness": fit.varcorr[0]["smoothness"]}}
    out["divergences"] = int(idata.sample_stats["diverging"].sum())
json.dump(out, sys.stdout)
"""


def run(k: int, hsgp, draws: int) -> dict:
    start = time.perf_counter()
    code = PYTHON.format(k=k, hsgp=repr(hsgp), draws=draws)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode:
        return {"k": k, "hsgp": repr(hsgp), "error": done.stderr[-2000:]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result | {"hsgp": repr(hsgp), "process_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 1000, 2000])
    parser.add_argument("--sample", type=int, default=0, help="draws (and tuning steps) per chain; 0: gradients only")
    parser.add_argument("--sample-exact-up-to", type=int, default=300, help="sample the exact factor up to this k")
    parser.add_argument("--exact-up-to", type=int, default=1000, help="the exact factor's gradient up to this k")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = []
    for k in args.sizes:
        for hsgp in (False, True):
            if not hsgp and k > args.exact_up_to:  # its (pairs x nodes) integral outgrows the memory
                continue
            draws = args.sample if (hsgp or k <= args.sample_exact_up_to) else 0
            results.append(run(k, hsgp, draws))
            print(json.dumps(results[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
