"""Datasets bundled with bayesmix (from the R packages lme4 and nlme), ready to model.

Factor columns come back as pandas Categoricals in lme4's level order, so the first level is the
treatment-contrast baseline exactly as in R (e.g. Orthodont's ``Sex``: Male, Female).
"""

from __future__ import annotations

import json
from importlib import resources

import pandas as pd

from bayesmix.errors import BayesmixError, did_you_mean

DATASETS = ("sleepstudy", "Penicillin", "Pastes", "Dyestuff", "Dyestuff2", "Orthodont", "cbpp")


def load_dataset(name: str) -> pd.DataFrame:
    """A fresh copy of the bundled dataset ``name`` (one of :data:`DATASETS`)."""
    if name not in DATASETS:
        raise BayesmixError(f"Unknown dataset '{name}'.{did_you_mean(name, DATASETS)} Datasets: {', '.join(DATASETS)}.")
    folder = resources.files(__name__)
    levels = json.loads(folder.joinpath("factor_levels.json").read_text())[name]
    with folder.joinpath(f"{name}.csv").open("r") as handle:
        frame = pd.read_csv(handle, dtype={column: str for column in levels})
    for column, order in levels.items():
        frame[column] = pd.Categorical(frame[column], categories=order)
    return frame
