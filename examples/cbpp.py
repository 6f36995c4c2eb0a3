"""cbpp: binomial GLMM, cbind(successes, failures), Laplace beside NUTS, and the scaled-residual check.

python examples/cbpp.py [--quick] [--out FILE.png]
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the figure is written to a file, never shown

import bayesmix  # noqa: E402
from bayesmix import plots  # noqa: E402


def main(quick: bool, out: Path) -> None:
    data = bayesmix.load_dataset("cbpp")
    model = bayesmix.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", data, family="binomial")
    fit = model.fit("laplace")
    print(fit.summary(), "\n")
    draws = 100 if quick else 1000
    model.sample(draws=draws, tune=draws, chains=2 if quick else 4, random_seed=1, progressbar=False)
    print(model.summary(), "\n")

    # Residuals of a binomial model are only readable after scaling: uniform when the model is right.
    print(bayesmix.scaled_residuals(fit, random_seed=1))
    plots.scaled_residuals(fit, random_seed=1).savefig(out, dpi=100)
    print(f"\nScaled-residual plot written to {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="few draws (for tests)")
    parser.add_argument("--out", type=Path, default=Path("cbpp_scaled_residuals.png"), help="PNG file for the plot")
    args = parser.parse_args()
    main(args.quick, args.out)
