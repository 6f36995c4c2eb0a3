"""The user's DataFrame is never modified, by building a model, fitting it or sampling it."""

import warnings

import numpy as np
import pandas as pd

import bayesmix


def fingerprint(frame: pd.DataFrame):
    return (
        list(frame.columns),
        [str(t) for t in frame.dtypes],
        frame.index.tolist(),
        pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes(),
    )


def test_dataframe_is_byte_for_byte_unchanged_after_fit_and_sample():
    data = bayesmix.load_dataset("Orthodont")
    data.loc[3, "distance"] = np.nan  # a dropped row must not be dropped from the user's frame
    data["Sex"] = data["Sex"].astype(str)  # text column: encoded on a copy only
    before = fingerprint(data)
    copy = data.copy(deep=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bayesmix.Model("distance ~ age + Sex + (age | Subject)", data, categorical={"Sex": ["Male", "Female"]})
        model.fit("reml")
        model.sample(draws=50, tune=50, chains=2, random_seed=1, progressbar=False)
    assert fingerprint(data) == before
    pd.testing.assert_frame_equal(data, copy)
    assert model.nobs == len(data) - 1
