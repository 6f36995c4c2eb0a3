"""The JSON contract's keys, in order, as other tools read them (issue: core, item 8)."""

CONTRACT = [
    "formula",
    "family",
    "link",
    "method",
    "nobs",
    "ngrps",
    "fixef",
    "sigma",
    "family_params",
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
