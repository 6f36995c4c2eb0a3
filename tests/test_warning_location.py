"""bayesmix's warnings name the user's line (errors.warn walks out of the package's frames), so
``python -W error`` tracebacks and warning filters by module point at the caller's code."""

import numpy as np
import pytest

import bayesmix


def test_missing_rank_and_singular_warnings_point_at_the_caller():
    data = bayesmix.load_dataset("sleepstudy").copy()
    data.loc[0, "Days"] = np.nan
    data["Days2"] = 2 * data["Days"]
    with pytest.warns(bayesmix.MissingDataWarning) as missing:
        model = bayesmix.Model("Reaction ~ Days + Days2 + (1 | Subject)", data)
    with pytest.warns(bayesmix.RankDeficientWarning) as aliased:
        model.fit("reml")
    dyestuff = bayesmix.load_dataset("Dyestuff2")
    with pytest.warns(bayesmix.SingularFitWarning) as singular:
        bayesmix.Model("Yield ~ 1 + (1 | Batch)", dyestuff).fit("reml")
    for record in (missing, aliased, singular):
        assert [w.filename for w in record] == [__file__]
