"""sleepstudy: correlated random intercept and slope, NUTS beside REML.

python examples/sleepstudy.py [--quick]
"""

import argparse

import bayesmix


def main(quick: bool) -> None:
    data = bayesmix.load_dataset("sleepstudy")
    model = bayesmix.Model("Reaction ~ Days + (Days | Subject)", data)
    print(model.fit("reml").summary(), "\n")
    draws = 100 if quick else 1000
    model.sample(draws=draws, tune=draws, chains=2 if quick else 4, random_seed=1, progressbar=False)
    print(model.summary())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="few draws (for tests)")
    main(parser.parse_args().quick)
