"""Penicillin: crossed random effects (plate x sample), REML beside NUTS.

python examples/penicillin.py [--quick]
"""

import argparse

import bayesmix


def main(quick: bool) -> None:
    data = bayesmix.load_dataset("Penicillin")
    model = bayesmix.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", data)
    print(model.fit("reml").summary(), "\n")
    draws = 100 if quick else 1000
    model.sample(draws=draws, tune=draws, chains=2 if quick else 4, random_seed=1, progressbar=False)
    print(model.summary())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="few draws (for tests)")
    main(parser.parse_args().quick)
