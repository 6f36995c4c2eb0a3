"""cbpp: binomial GLMM, cbind(successes, failures), Laplace beside NUTS.

python examples/cbpp.py [--quick]
"""

import argparse

import bayesmix


def main(quick: bool) -> None:
    data = bayesmix.load_dataset("cbpp")
    model = bayesmix.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", data, family="binomial")
    print(model.fit("laplace").summary(), "\n")
    draws = 100 if quick else 1000
    model.sample(draws=draws, tune=draws, chains=2 if quick else 4, random_seed=1, progressbar=False)
    print(model.summary())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="few draws (for tests)")
    main(parser.parse_args().quick)
