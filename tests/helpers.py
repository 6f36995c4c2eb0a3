"""The JSON contract's keys, in order, as other tools read them (issue: core, item 8)."""

CONTRACT = [
    "formula",
    "family",
    "link",
    "method",
    "nAGQ",
    "nobs",
    "ngrps",
    "fixef",
    "sigma",
    "family_params",
    "zi",
    "dispersion",
    "thresholds",
    "categories",
    "varcorr",
    "logLik",
    "REMLcrit",
    "AIC",
    "BIC",
    "isSingular",
    "ranef",
    "diagnostics",
    "converged",
    "messages",
    "time_s",
]

QUICK_NUTS = ("--chains", "2", "--draws", "200", "--tune", "200", "--quiet")  # CLI arguments of a short NUTS run


def fit_via_cli(tmp_path, dataset: str, formula: str, *args: str) -> tuple[int, dict | None]:
    """Write a bundled dataset to CSV, run ``bayesmix fit`` on it; (exit code, the JSON written)."""
    import json

    import bayesmix
    from bayesmix.cli import main

    path = tmp_path / f"{dataset}.csv"
    bayesmix.load_dataset(dataset).to_csv(path, index=False)
    out = tmp_path / "fit.json"
    code = main(["fit", "--data", str(path), "--formula", formula, *args, "--json", str(out)])
    return code, json.loads(out.read_text()) if code == 0 else None


def gaussian_nuts_problem(seed: int, variances):
    """A 2-d Gaussian for the numpyro driver's programs: ``(potential, args)``, potential(values, data) =
    -log N(values[0]; data[0], diag(data[1])) and args = (keys, start, inverse_mass, (data,)) for 2
    chains starting at 0 (as nuts_program takes them)."""
    import jax
    import jax.numpy as jnp

    def potential(values, data):
        return 0.5 * jnp.sum((values[0] - data[0]) ** 2 / data[1])

    keys = jax.random.split(jax.random.PRNGKey(seed), 2)
    data = [jnp.array([1.0, -2.0]), jnp.array(variances)]
    energy, grad = jax.vmap(jax.value_and_grad(lambda u: potential([u], data)))(jnp.zeros((2, 2)))
    return potential, (keys, (jnp.zeros((2, 2)), energy, grad), jnp.ones(2), (data,))


def on_local_cluster(tmp_path, frame, row_group_size: int, fit):
    """``fit(ddf)`` with ``frame`` (a pandas DataFrame) read back from Parquet row groups on a
    local cluster of two worker processes (1 GB each)."""
    import dask.dataframe as dd
    import distributed

    frame.to_parquet(tmp_path / "data.parquet", row_group_size=row_group_size)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GB") as cluster:
        with distributed.Client(cluster):
            ddf = dd.read_parquet(tmp_path / "data.parquet", split_row_groups=True)
            assert ddf.npartitions == -(-len(frame) // row_group_size)
            return fit(ddf)
