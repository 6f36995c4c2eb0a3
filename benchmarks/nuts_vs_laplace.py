"""NUTS against the Laplace fit on the reference cases of the count, dispersion, family and
censoring work (issue 21): are the posterior means within 2 posterior SDs of the Laplace estimates?

Each case is a data set and model of ``tests/data`` whose Laplace fit equals glmmTMB's (or a TMB
template's) in the tests. Here the same ``bayesmix.Model`` is fitted both ways:
``fit("laplace")`` (``"ml"`` for a gaussian) and ``sample(draws, tune, chains, random_seed)``
with the default priors, and for every fixed effect (the mean's and each ``zi=`` /
``dispersion=`` formula's), every random-effect SD and every constant family parameter it reports
z = (posterior mean - Laplace estimate) / posterior SD. With weak default priors and these sample
sizes the two should agree to well within 2 posterior SDs; a parameter beyond that, or a sampler
that did not converge (R-hat > 1.01, divergences), is flagged. The posterior SD of a random-effect
SD is skewed, so its posterior mean sits above the mode the Laplace fit estimates: that is the
usual reason a z is positive there.

    . .venv/bin/activate
    python benchmarks/nuts_vs_laplace.py --out /tmp/nuts_vs_laplace.json          # all cases
    python benchmarks/nuts_vs_laplace.py --cases weibull_sim tweedie_sim --out x.json

Results go to docs/calibration.md ("NUTS against Laplace on the reference cases").
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayesmix
from bayesmix.bayes.names import submodel_parameters

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"

# case -> (family, Model keyword arguments beyond the formula read from the case's JSON)
CASES = {
    "salamanders_zip": ("zero_inflated_poisson", {}),
    "salamanders_zinb": ("zero_inflated_negativebinomial", {}),
    "salamanders_hurdle_poisson": ("hurdle_poisson", {}),
    "salamanders_hurdle_nb": ("hurdle_negativebinomial", {}),
    "salamanders_truncated_poisson": ("truncated_poisson", {}),
    "salamanders_truncated_nb": ("truncated_negativebinomial", {}),
    "salamanders_nbinom1": ("negativebinomial1", {}),
    "salamanders_nb_dispformula": ("negativebinomial", {"dispersion": "~ mined"}),
    "salamanders_nbinom1_dispformula": ("negativebinomial1", {"dispersion": "~ mined"}),
    "salamanders_zip_ziformula": ("zero_inflated_poisson", {"zi": "~ spp + mined"}),
    "salamanders_zip_zi_random": ("zero_inflated_poisson", {"zi": "~ mined + (1 | site)"}),
    "salamanders_zinb_zi_spp_random": ("zero_inflated_negativebinomial", {"zi": "~ spp + (1 | site)"}),
    "zi_random_sim_zip": ("zero_inflated_poisson", {"zi": "~ x + (1 | g)"}),
    "zi_random_sim_hurdle_poisson": ("hurdle_poisson", {"zi": "~ x + (1 | g)"}),
    "disp_random_sim_gaussian": ("gaussian", {"dispersion": "~ z + (1 | g)"}),
    "disp_random_sim_nbinom2": ("negativebinomial", {"dispersion": "~ z + (1 | g)"}),
    "sleep_gamma_dispformula": ("gamma", {"dispersion": "~ Days"}),
    "grouseticks_weights_poisson": ("poisson", {"weights": "w"}),
    "grouseticks_weights_nbinom2": ("negativebinomial", {"weights": "w"}),
    "exponential_sim": ("exponential", {}),
    "weibull_sim": ("weibull", {}),
    "lognormal_brms_sim": ("lognormal", {}),
    "hurdle_lognormal_brms_sim": ("hurdle_lognormal", {}),
    "hurdle_gamma_sim": ("hurdle_gamma", {}),
    "betabinomial_sim": ("betabinomial", {}),
    "zib_sim": ("zero_inflated_binomial", {}),
    "beta_sim_logit": ("beta", {}),
    "tweedie_sim": ("tweedie", {}),
    "censored_gaussian_sim": ("gaussian", {}),
    "censored_weibull_sim": ("weibull", {}),
}
LIMIT = 2.0  # |z| above this is flagged


def load(case: str) -> bayesmix.Model:
    """The case's Model, with the data and factor level orders its JSON records."""
    ref = json.loads((DATA / f"{case}.json").read_text())
    root = Path(__file__).resolve().parent.parent
    file = ref["data_file"]
    path = DATA / file if (DATA / file).exists() else root.parent / "shared" / "reference" / file
    data = pd.read_csv(path)
    for column, levels in ref.get("factor_levels", {}).items():
        data[column] = pd.Categorical(data[column].astype(str), categories=[str(v) for v in levels])
    family, kwargs = CASES[case]
    formula = ref["formula"]
    if family.startswith("truncated"):  # glmmTMB's truncated fit of Salamanders reads the positive counts
        data = data[data["count"] > 0]
    if "HEIGHT_cs" in formula:  # the references' scale(HEIGHT) and w <- 1 + (seq_len(n) %% 3)
        data = data.assign(
            HEIGHT_cs=(data.HEIGHT - data.HEIGHT.mean()) / data.HEIGHT.std(),
            w=1 + (np.arange(1, len(data) + 1) % 3),
            YEAR=data.YEAR.astype(str),
            BROOD=data.BROOD.astype(str),
        )
    if "cens(" in formula:  # brms's y | cens(c, upper): the upper column only where a row is interval-censored
        kwargs = {**kwargs, "censored": "cens", **({"upper": "upper"} if "upper" in data.columns else {})}
        formula = "y ~ x + (1 | g)"
    return bayesmix.Model(formula, data, family=family, **kwargs)


def _row(kind: str, name: str, laplace: float, draws: np.ndarray) -> dict:
    mean, sd = float(draws.mean()), float(draws.std(ddof=1))
    return {"kind": kind, "name": name, "laplace": laplace, "mean": mean, "sd": sd, "z": (mean - laplace) / sd}


def compare(model: bayesmix.Model, fit, idata) -> list[dict]:
    """One row per parameter: the Laplace estimate against the posterior's mean and SD."""
    post = idata.posterior
    rows = [
        _row("fixef", name, float(fit.fixef.estimate[name]), post["beta"].sel(coef=name).to_numpy())
        for name in fit.fixef.index
    ]
    predicted = submodel_parameters(model.design, model.family)
    for role, table in fit.submodels.items():
        draws = post[f"{predicted[role]}_beta"].to_numpy().reshape(-1, len(table.index))
        for k, name in enumerate(table.index):
            rows.append(_row(role, name, float(table.estimate[name]), draws[:, k]))
    for block in model.design.all_blocks:
        ours = next(v for v in fit.varcorr if v["group"] == block.group and v.get("predictor", "mu") == block.predictor)
        sd = post[f"sd_{block.label}"].to_numpy().reshape(-1, block.n_terms)
        for k, term in enumerate(block.terms):
            rows.append(_row("sd", f"{block.label}:{term}", float(ours["sd"][k]), sd[:, k]))
    for name in model.family.params:
        if name in predicted.values():
            continue
        value = fit.sigma if name == "sigma" else fit.family_params.get(name)
        if value is not None and name in post and np.isfinite(value):
            rows.append(_row("family", name, float(value), post[name].to_numpy()))
    return rows


def run_case(case: str, draws: int, tune: int, chains: int, seed: int) -> dict:
    model = load(case)
    gaussian = model.family.name == "gaussian"
    start = time.perf_counter()
    fit = model.fit("ml" if gaussian else "laplace")
    laplace_s = time.perf_counter() - start
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = model.sample(draws=draws, tune=tune, chains=chains, random_seed=seed, progressbar=False)
    nuts_s = time.perf_counter() - start
    rows = compare(model, fit, idata)
    import arviz as az

    names = [v for v in idata.posterior.data_vars if not v.startswith("re_")]
    summary = az.summary(idata, var_names=names, kind="diagnostics")
    divergences = int(idata.sample_stats["diverging"].sum())
    worst = max(rows, key=lambda r: abs(r["z"]))
    return {
        "case": case,
        "family": model.family.name,
        "rows": rows,
        "max_abs_z": abs(worst["z"]),
        "worst": f"{worst['kind']} {worst['name']}",
        "max_rhat": float(summary["r_hat"].max()),
        "min_ess_bulk": float(summary["ess_bulk"].min()),
        "divergences": divergences,
        "laplace_converged": bool(fit.converged),
        "laplace_s": laplace_s,
        "nuts_s": nuts_s,
    }


def table(results: list[dict]) -> str:
    lines = [
        "| case | family | parameters | max abs z (where) | within 2 SDs | max R-hat | min bulk ESS | divergences |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['case']} | - | - | error: {r['error']} | - | - | - | - |")
            continue
        ok = "yes" if r["max_abs_z"] <= LIMIT else "**no**"
        lines.append(
            f"| {r['case']} | {r['family']} | {len(r['rows'])} | {r['max_abs_z']:.2f} ({r['worst']}) | {ok} | "
            f"{r['max_rhat']:.3f} | {r['min_ess_bulk']:.0f} | {r['divergences']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    results = []
    for case in args.cases:
        try:
            result = run_case(case, args.draws, args.tune, args.chains, args.seed)
        except Exception as error:  # one failing case is reported, the rest still run
            result = {"case": case, "error": f"{type(error).__name__}: {error}"}
        results.append(result)
        print(table([result]).splitlines()[-1], flush=True)
        Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
