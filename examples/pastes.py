"""Pastes: nested random effects (cask within batch) with (1 | batch/cask), REML beside NUTS.

python examples/pastes.py [--quick]
"""

import argparse

import bayesmix


def main(quick: bool) -> None:
    data = bayesmix.load_dataset("Pastes")
    model = bayesmix.Model("strength ~ 1 + (1 | batch/cask)", data)
    print(model.fit("reml").summary(), "\n")
    draws = 100 if quick else 1000
    model.sample(
        draws=draws, tune=draws, chains=2 if quick else 4, random_seed=1, progressbar=False, target_accept=0.95
    )
    print(model.summary())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="few draws (for tests)")
    main(parser.parse_args().quick)
