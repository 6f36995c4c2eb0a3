"""Data larger than a worker's memory: REML and the collapsed sampler from a partitioned Parquet dataset.

    python benchmarks/out_of_core.py [--rows 25000000] [--partition-rows 1000000] [--memory-limit 2GB]
                                     [--workers 2] [--dir /tmp/bayesmix-out-of-core] [--glmm]

Writes ``y ~ x1 + ... + x10 + (x1 | g)`` (1,000 groups, correlated slopes) as Parquet files of
``--partition-rows`` rows each, generated chunk by chunk (never all rows in one process; skipped
when the files exist), then, on a local Dask cluster whose worker processes have ``--memory-limit``
each, times the floor of the statistics pass (:func:`floor`: reading the files and forming the same
sums with numpy, no encoding) and builds ``bayesmix.Model`` from ``dask.dataframe.read_parquet``,
twice in turn (the first round also warms the workers up), fits it by REML and samples it
(collapsed NUTS, 2 chains x 500 draws, beside the same model on the first file's 10^6 rows).
Prints the data's in-memory size, each stage's wall time (the statistics pass also as a multiple of
the floor), and the peak resident memory of the client process and of every worker (getrusage).

``--glmm``: instead, the logistic GLMM ``y ~ x1 + x2 + (1 | g)`` with 10,000 groups (default 10⁷
rows in 10 files): the Laplace fit from the Dask DataFrame on the cluster, and the in-memory Laplace
fit of the same rows (all files read into one pandas DataFrame), timed in the same run; prints both
times, their ratio and the largest difference between the two fits' estimates.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import resource
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

GROUPS = 1_000
PREDICTORS = 10


def write_partitions(directory: Path, rows: int, partition_rows: int, frame_of) -> None:
    """One Parquet file per partition, ``frame_of(rng, n)`` its rows (seeded per partition; files
    that exist are kept)."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, start in enumerate(range(0, rows, partition_rows)):
        path = directory / f"part-{i:05d}.parquet"
        if not path.exists():
            frame_of(np.random.default_rng(i + 1), min(partition_rows, rows - start)).to_parquet(path, index=False)


def generate(directory: Path, rows: int, partition_rows: int) -> None:
    """The LMM's dataset: 10 predictors, correlated intercepts and slopes of x1 in 1,000 groups."""
    effects = np.random.default_rng(0).multivariate_normal([0, 0], [[1.0, 0.3], [0.3, 0.5]], size=GROUPS)
    beta = np.linspace(-1, 1, PREDICTORS)

    def frame_of(rng, n):
        g = rng.integers(0, GROUPS, n)
        x = rng.normal(size=(n, PREDICTORS))
        y = 1 + x @ beta + effects[g, 0] + effects[g, 1] * x[:, 0] + rng.normal(size=n)
        frame = pd.DataFrame({"y": y, **{f"x{j + 1}": x[:, j] for j in range(PREDICTORS)}})
        frame["g"] = pd.Series([f"g{v:04d}" for v in g], dtype="string")
        return frame

    write_partitions(directory, rows, partition_rows, frame_of)


GLMM_GROUPS = 10_000


def generate_glmm(directory: Path, rows: int, partition_rows: int) -> None:
    """The logistic GLMM's dataset: two predictors, random intercepts of 10,000 groups."""
    effects = np.random.default_rng(0).normal(size=GLMM_GROUPS)

    def frame_of(rng, n):
        g = rng.integers(0, GLMM_GROUPS, n)
        x = rng.normal(size=(n, 2))
        eta = -0.5 + 0.5 * x[:, 0] - 0.3 * x[:, 1] + effects[g]
        y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
        frame = pd.DataFrame({"y": y, "x1": x[:, 0], "x2": x[:, 1]})
        frame["g"] = pd.Series([f"g{v:05d}" for v in g], dtype="string")
        return frame

    write_partitions(directory, rows, partition_rows, frame_of)


def glmm_main(args) -> None:
    """The GLMM acceptance run (see the module docstring)."""
    rows = args.rows if args.rows != 25_000_000 else 10_000_000
    directory = args.dir / f"glmm-{rows}-by-{args.partition_rows}"
    generate_glmm(directory, rows, args.partition_rows)
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    import bayesmix

    formula = "y ~ x1 + x2 + (1 | g)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, memory_limit=args.memory_limit) as cluster:
            with Client(cluster) as client:
                t0 = time.perf_counter()
                model = bayesmix.Model(formula, dd.read_parquet(directory), family="bernoulli")
                t1 = time.perf_counter()
                distributed_fit = model.fit()
                t2 = time.perf_counter()
                workers = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)
        t3 = time.perf_counter()
        frame = pd.concat([pd.read_parquet(path) for path in sorted(directory.glob("*.parquet"))], ignore_index=True)
        memory_model = bayesmix.Model(formula, frame, family="bernoulli")
        t4 = time.perf_counter()
        memory_fit = memory_model.fit()
        t5 = time.perf_counter()
    difference = max(
        np.max(np.abs(distributed_fit.fixef.estimate.to_numpy() - memory_fit.fixef.estimate.to_numpy())),
        np.max(np.abs(distributed_fit.theta.to_numpy() - memory_fit.theta.to_numpy())),
    )
    files = len(list(directory.glob("*.parquet")))
    print(f"{rows:,} rows in {files} files, {GLMM_GROUPS:,} groups; {args.workers} workers x {args.memory_limit}")
    print(f"Dask: encode and keep the partitions {t1 - t0:.1f} s, Laplace fit {t2 - t1:.1f} s")
    print(f"in memory: read the files {t4 - t3:.1f} s (with Model), Laplace fit {t5 - t4:.1f} s")
    print(
        f"fit time Dask / in memory: {(t2 - t1) / (t5 - t4):.2f}; "
        f"whole Dask / whole in-memory: {(t2 - t0) / (t5 - t3):.2f}"
    )
    print(
        f"largest difference in beta and theta: {difference:.1e}; "
        f"loglik {distributed_fit.loglik:.6f} vs {memory_fit.loglik:.6f}"
    )
    peaks = ", ".join(f"{v:.2f} GB" for v in workers.values())
    print(f"peak RSS: client {peak_gb():.2f} GB (holds the in-memory copy); workers {peaks}")


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB -> GB on Linux


def _floor_partition(path: str):
    """The floor one partition's statistics cannot beat: read the file with pandas and form the
    same sums with numpy ([1 X y]'[1 X y] and, per group, the sums of [1 X y] and of x1 [1 X y]),
    with no encoding logic (the group codes by pd.factorize, unordered)."""
    frame = pd.read_parquet(path)
    F = np.column_stack([np.ones(len(frame)), frame[[f"x{j + 1}" for j in range(PREDICTORS)]].to_numpy(), frame["y"]])
    codes, _ = pd.factorize(frame["g"])
    per_group = [
        np.bincount(codes, weights=F[:, j] * t, minlength=GROUPS) for t in (1.0, F[:, 1]) for j in range(F.shape[1])
    ]
    return F.T @ F, np.stack(per_group)


def floor(directory: Path) -> float:
    """Seconds for :func:`_floor_partition` over every file on the cluster, summed pairwise."""
    import dask

    parts = [dask.delayed(_floor_partition)(str(path)) for path in sorted(directory.glob("*.parquet"))]
    add = dask.delayed(lambda a, b: (a[0] + b[0], a[1] + b[1]))
    while len(parts) > 1:
        parts = [add(*parts[i : i + 2]) if i + 1 < len(parts) else parts[i] for i in range(0, len(parts), 2)]
    start = time.perf_counter()
    dask.compute(parts[0])
    return time.perf_counter() - start


def sample_quietly(model, **arguments):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.sample(progressbar=False, **arguments)


def diagnostics(idata):
    import arviz as az

    return az.summary(idata, var_names=["beta", "sigma", "sd_g", "cor_g"], kind="diagnostics")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=25_000_000)
    parser.add_argument("--partition-rows", type=int, default=1_000_000)
    parser.add_argument("--memory-limit", default="2GB")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bayesmix-out-of-core"))
    parser.add_argument("--glmm", action="store_true", help="the logistic GLMM's Laplace fit instead")
    args = parser.parse_args()
    if args.glmm:
        glmm_main(args)
        return
    directory = args.dir / f"rows-{args.rows}-by-{args.partition_rows}"

    start = time.perf_counter()
    generate(directory, args.rows, args.partition_rows)
    print(f"data: {directory} ({len(list(directory.glob('*.parquet')))} files), {time.perf_counter() - start:.0f} s")

    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    import bayesmix

    formula = "y ~ " + " + ".join(f"x{j + 1}" for j in range(PREDICTORS)) + " + (x1 | g)"
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, memory_limit=args.memory_limit) as cluster:
        with Client(cluster) as client:
            ddf = dd.read_parquet(directory)
            in_memory = ddf.memory_usage(deep=True).sum().compute() / 1e9
            print(
                f"{args.rows:,} rows, {ddf.npartitions} partitions, {in_memory:.2f} GB as a pandas DataFrame; "
                f"{args.workers} workers x {args.memory_limit}"
            )
            # the workers import bayesmix's encoding once (a cost per worker process, not per pass)
            t_import = time.perf_counter()
            client.run(importlib.import_module, "bayesmix.design.statistics")
            t_import = time.perf_counter() - t_import
            # the floor and the pass in turn, twice: the first pass also warms the workers up
            rounds = []
            for _ in range(2):
                floor_s = floor(directory)
                t0 = time.perf_counter()
                model = bayesmix.Model(formula, ddf)
                t1 = time.perf_counter()
                rounds.append((floor_s, t1 - t0))
            fit = model.fit("reml")
            t2 = time.perf_counter()
            # the same model on the first file's 10^6 rows, sampled before (compiling the sampler's
            # program, which the larger run then reuses) and after, so both timed runs are warm
            small = bayesmix.Model(formula, dd.read_parquet(sorted(directory.glob("*.parquet"))[0]))
            sampled = functools.partial(sample_quietly, draws=500, tune=500, chains=2, random_seed=1)
            sampled(small)
            t_small = time.perf_counter()
            idata_small = sampled(small)
            t_small = time.perf_counter() - t_small
            t2s = time.perf_counter()
            idata = sampled(model)
            t3 = time.perf_counter()
            workers = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)
    summary, summary_small = diagnostics(idata), diagnostics(idata_small)
    for i, (floor_s, pass_s) in enumerate(rounds, 1):
        print(
            f"round {i}: floor (each file read with pandas, the same sums with numpy) {floor_s:.1f} s; statistics "
            f"pass (levels, encoding, cross-products) {pass_s:.1f} s = {pass_s / floor_s:.2f} x the floor"
        )
    print(f"(the workers imported bayesmix first: {t_import:.1f} s)")
    print(
        f"REML from the statistics: {t2 - t1:.1f} s; sigma {fit.sigma:.4f}, SDs "
        f"{np.round(fit.varcorr[0]['sd'], 4).tolist()}, corr {fit.varcorr[0]['corr'][1, 0]:.4f} "
        "(simulated: sigma 1, SDs 1 and 0.707, corr 0.424)"
    )
    print(
        f"collapsed NUTS 2 x 500: {t3 - t2s:.1f} s; min bulk ESS {summary.ess_bulk.min():.0f}, "
        f"max R-hat {summary.r_hat.max():.3f}; the first file's 10^6 rows: {t_small:.1f} s, min bulk ESS "
        f"{summary_small.ess_bulk.min():.0f}, max R-hat {summary_small.r_hat.max():.3f}; time ratio "
        f"{(t3 - t2s) / t_small:.2f}"
    )
    print(f"peak RSS: client {peak_gb():.2f} GB; workers " + ", ".join(f"{v:.2f} GB" for v in workers.values()))


if __name__ == "__main__":
    main()
