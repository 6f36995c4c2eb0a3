"""With many groups and rows, the NUTS posterior concentrates on the ML/REML estimates.

Simulates y ~ x + (x | g) with 400 groups x 25 rows (10,000 rows), fits REML and NUTS on the same
Model object, and prints the two side by side (posterior mean +- SD against estimate +- SE).

    python examples/bayes_vs_reml.py [--quick]
"""

import argparse

import numpy as np
import pandas as pd

import bayesmix


def simulate(groups: int, per_group: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per_group)
    x = rng.normal(size=g.size)
    cov = np.array([[1.0, 0.3 * 0.5], [0.3 * 0.5, 0.25]])
    b = rng.multivariate_normal([0, 0], cov, size=groups)
    y = 2.0 + 0.5 * x + b[g, 0] + b[g, 1] * x + rng.normal(0, 1.5, g.size)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def main(quick: bool) -> None:
    groups, per_group = (60, 10) if quick else (400, 25)
    model = bayesmix.Model("y ~ x + (x | g)", simulate(groups, per_group))
    fit = model.fit("reml")
    draws = 100 if quick else 1000
    idata = model.sample(draws=draws, tune=draws, chains=2 if quick else 4, random_seed=3, progressbar=False)
    post = idata.posterior
    rows = [
        ("Intercept", post["beta"].sel(coef="Intercept"), fit.fixef.estimate["Intercept"], fit.fixef.se["Intercept"]),
        ("x", post["beta"].sel(coef="x"), fit.fixef.estimate["x"], fit.fixef.se["x"]),
        ("sd Intercept", post["sd_g"].sel(g__term="Intercept"), fit.varcorr[0]["sd"][0], np.nan),
        ("sd x", post["sd_g"].sel(g__term="x"), fit.varcorr[0]["sd"][1], np.nan),
        ("corr", post["cor_g"].sel(g__pair="Intercept__x"), fit.varcorr[0]["corr"][0][1], np.nan),
        ("sigma", post["sigma"], fit.sigma, np.nan),
    ]
    print(f"{model.nobs} rows, {groups} groups")
    print(f"{'parameter':14s} {'posterior mean':>15s} {'posterior SD':>13s} {'REML':>10s} {'REML SE':>9s}")
    for name, draws_, estimate, se in rows:
        print(f"{name:14s} {float(draws_.mean()):15.4f} {float(draws_.std()):13.4f} {estimate:10.4f} {se:9.4f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a smaller data set and few draws (for tests)")
    main(parser.parse_args().quick)
