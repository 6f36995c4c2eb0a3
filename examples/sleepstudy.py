"""sleepstudy: correlated random intercept and slope, NUTS beside REML, and the shrinkage figure of both.

python examples/sleepstudy.py [--quick] [--out FILE.png]
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the figure is written to a file, never shown

import matplotlib.pyplot as plt  # noqa: E402

import bayesmix  # noqa: E402
from bayesmix import plots  # noqa: E402

DEFAULT_OUT = Path("sleepstudy_shrinkage.png")


def main(quick: bool, out: Path) -> None:
    data = bayesmix.load_dataset("sleepstudy")
    model = bayesmix.Model("Reaction ~ Days + (Days | Subject)", data)
    fit = model.fit("reml")
    print(fit.summary(), "\n")
    draws = 100 if quick else 1000
    model.sample(draws=draws, tune=draws, chains=2 if quick else 4, random_seed=1, progressbar=False)
    print(model.summary())

    # No pooling (a regression per subject) vs partial pooling (the mixed model), exact fit and posterior.
    fig, axes = plt.subplots(1, 2, figsize=(12, 7), sharex=True, sharey=True, layout="constrained")
    plots.shrinkage(fit, ax=axes[0])
    plots.shrinkage(model, ax=axes[1])
    fig.savefig(out, dpi=100)
    plt.close(fig)
    print(f"\nShrinkage plot written to {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="few draws (for tests)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"PNG file for the plot (default {DEFAULT_OUT})")
    args = parser.parse_args()
    main(args.quick, args.out)
