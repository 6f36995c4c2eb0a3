"""Mass-matrix adaptation for GLMMs: bayesmix's default (numpyro, diagonal metric, per-block
parameterisation) against nutpie's diagonal and low-rank ("low_rank_modified_mass_matrix")
adaptation, on the same bayesmix PyMC model. Each fit is a whole separate process.

Cases (2 chains x 500 draws, 500 tuning):

1. ``verbagg``: VerbAgg-shaped crossed logistic (speed_vs_bambi.py's generator): 316 subjects x 24
   items, ``r2 ~ x + (1 | id) + (1 | item)``, bernoulli.
2. ``poisson``: a Poisson model with large groups: 40 groups x 2,500 rows,
   ``y ~ x + (x | g)``, intercept SD 0.5, slope SD 0.3, correlation 0.3, mean count ~ 3.

Variants: ``bayesmix`` (``Model.sample()`` as a user calls it: numpyro, ``parameterization="auto"``);
``nutpie-diag`` and ``nutpie-lowrank`` (nutpie with its JAX backend, on the model "auto" chose);
``nutpie-lowrank-nc`` (low rank on the all non-centred model, what bambi samples).

    python benchmarks/mass_matrix.py                 # both cases, all variants (~5 minutes on 2 cores)
    python benchmarks/mass_matrix.py --cases poisson

Every process starts with empty compilation caches (JAX, PyTensor, numba). Printed: wall time of
the process, min bulk ESS and max R-hat over the parameters (fixed effects, SDs, correlations), ESS
per second, divergences.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from speed_vs_bambi import simulate_verbagg, summarize_draws  # noqa: E402

VARIANTS = ("bayesmix", "nutpie-diag", "nutpie-lowrank", "nutpie-lowrank-nc")
CASES = {
    "verbagg": ("r2 ~ x + (1 | id) + (1 | item)", "bernoulli"),
    "poisson": ("y ~ x + (x | g)", "poisson"),
}


def simulate(case: str, seed: int = 1):
    import numpy as np
    import pandas as pd

    if case == "verbagg":
        return simulate_verbagg(seed)
    rng = np.random.default_rng(seed)
    groups, per_group = 40, 2500
    g = np.repeat(np.arange(groups), per_group)
    x = rng.normal(size=g.size)
    b = rng.multivariate_normal([0, 0], [[0.25, 0.3 * 0.5 * 0.3], [0.3 * 0.5 * 0.3, 0.09]], size=groups)
    y = rng.poisson(np.exp(1.0 + 0.2 * x + b[g, 0] + b[g, 1] * x))
    return pd.DataFrame({"y": y, "x": x, "g": pd.Categorical([f"g{i:02d}" for i in g])})


def fit(case: str, variant: str, data_path: str) -> dict:
    """One fit in this process; the parameters' draws summarised."""
    import warnings

    import numpy as np
    import pandas as pd
    import pymc as pm

    import bayesmix
    from bayesmix.nuts.run import nutpie_options

    formula, family = CASES[case]
    model = bayesmix.Model(formula, pd.read_parquet(data_path), family=family)
    common = dict(draws=500, tune=500, chains=2, random_seed=1, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if variant == "bayesmix":
            idata = model.sample(**common, posterior_predictive=False)
        else:
            choice = "noncentered" if variant.endswith("-nc") else model.resolve_parameterization("auto")
            idata = pm.sample(
                model=model.pymc_model(choice),
                nuts_sampler="nutpie",
                # the options sampler="nutpie" runs with, the low rank switched per variant
                nuts_sampler_kwargs={**nutpie_options(), "low_rank_modified_mass_matrix": "lowrank" in variant},
                target_accept=0.9,
                idata_kwargs={"log_likelihood": False},
                compute_convergence_checks=False,
                **common,
            )
    post = idata.posterior
    names = [n for n in post.data_vars if n == "beta" or n.startswith(("sd_", "cor_"))]
    values = np.concatenate([post[name].values.reshape(2, 500, -1) for name in names], axis=2)
    summary = summarize_draws(values, [str(i) for i in range(values.shape[2])])
    return {
        "min_ess": summary["min_ess"],
        "max_rhat": summary["max_rhat"],
        "divergences": int(idata.sample_stats["diverging"].sum()),
        "parameterization": str(post.attrs.get("bayesmix_parameterization", "")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--child", nargs=3, metavar=("CASE", "VARIANT", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(fit(*args.child)))
        return
    work = Path(tempfile.mkdtemp(prefix="mass_matrix-"))
    print("| case | variant | wall (s) | min bulk ESS | ESS/s | max R-hat | divergences |")
    print("|---|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        data_path = work / f"{case}.parquet"
        simulate(case).to_parquet(data_path)
        for variant in args.variants.split(","):
            cache = work / f"cache-{case}-{variant}"  # cold: nothing compiled before
            env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache / "jax")}
            env.update(NUMBA_CACHE_DIR=str(cache / "numba"), PYTENSOR_FLAGS=f"base_compiledir={cache / 'pytensor'}")
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, __file__, "--child", case, variant, str(data_path)],
                capture_output=True,
                text=True,
                env=env,
            )
            wall = time.perf_counter() - start
            if done.returncode:
                print(f"| {case} | {variant} | {wall:.1f} | failed: {done.stderr.strip().splitlines()[-1][:120]} |||")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"| {case} | {variant} | {wall:.1f} | {r['min_ess']:.0f} | {r['min_ess'] / wall:.1f} | "
                f"{r['max_rhat']:.3f} | {r['divergences']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
