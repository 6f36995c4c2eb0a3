"""Any column name a DataFrame can hold works (issue 18, item 4): the model's dimensions are named so
that no user's name can collide with ArviZ's, xarray's or PyMC's own (``chain``, ``draw``, ``sample``)
or the model's (``obs``, ``coef``): ``<group>__level``, ``<label>__term``, ``<label>__pair``, the
names kept as they are in the coordinates. A property test draws the names; each step either works or
raises BayesmixError, never anything else."""

import tempfile
import warnings
from pathlib import Path

import arviz as az
import matplotlib
import numpy as np
import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import bayesmix
from bayesmix import BayesmixError, plots
from bayesmix.design.encode import name_part

matplotlib.use("Agg")

TINY = dict(chains=1, draws=30, tune=30, progressbar=False, random_seed=1)
# not "Intercept": formulae names its intercept column so, and a predictor of that name is merged with it
COLLIDING = ["sample", "coef", "chain", "draw", "obs", "beta", "sigma", "X", "re", "y", "prior_sigma_lam"]
ODD = ["my col", "a.b", "a:b", "x y.z:w", "ünï", "群", "Δx", " lead", "1", "a__level", "g__term", "x/2", "a/b:", "50%"]


def _data(y: str, x: str, g: str) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    codes = np.repeat(np.arange(6), 5)
    xv = rng.normal(size=codes.size)
    yv = 1 + 0.5 * xv + rng.normal(0, 1, 6)[codes] + rng.normal(0, 0.5, codes.size)
    return pd.DataFrame({y: yv, x: xv, g: [f"L{c}" for c in codes]})


def _quoted(name: str) -> str:
    return f"`{name}`"


def _either_works_or_refuses(step):
    """The step's result, or None when it raised BayesmixError (anything else fails the test)."""
    try:
        return step()
    except BayesmixError:
        return None


def _every_step(y: str, x: str, g: str) -> list[str]:
    """Build, sample (tiny), fit, predict, scaled residuals and az.extract on a model whose response,
    predictor (also a random slope) and grouping factor have these names; the steps that worked."""
    data = _data(y, x, g)
    formula = f"{_quoted(y)} ~ {_quoted(x)} + ({_quoted(x)} | {_quoted(g)})"
    model = _either_works_or_refuses(lambda: bayesmix.Model(formula, data))
    if model is None:
        return []
    done = ["model"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a tiny run's low ESS, a singular fit
        if _either_works_or_refuses(lambda: model.pymc_model("noncentered")) is not None:
            done.append("build")
        idata = _either_works_or_refuses(lambda: model.sample(**TINY))
        fit = _either_works_or_refuses(lambda: model.fit("reml"))
        if fit is not None:
            done.append("fit")
            if _either_works_or_refuses(lambda: fit.predict(data.head(4))) is not None:
                done.append("fit.predict")
            if _either_works_or_refuses(lambda: bayesmix.scaled_residuals(fit, n_sim=20, random_seed=1)):
                done.append("fit.scaled_residuals")
        if idata is not None:
            done.append("sample")
            new = data.head(4)
            if _either_works_or_refuses(lambda: model.predict(idata, data=new, inplace=False)) is not None:
                done.append("predict")
            if _either_works_or_refuses(lambda: bayesmix.scaled_residuals(model, n_sim=20, random_seed=1)):
                done.append("scaled_residuals")
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "model.nc"
                if _either_works_or_refuses(lambda: model.save(path)) is not None:
                    done.append("save")
                    again = bayesmix.load(path)
                    assert again.idata.posterior.equals(idata.posterior)
            for group in ("posterior", "posterior_predictive", "log_likelihood"):
                if _either_works_or_refuses(lambda group=group: az.extract(idata, group=group)) is not None:
                    done.append(f"extract {group}")
            # the user's names are coordinates, as they are
            post, label = idata.posterior, name_part(g)  # '/' and a final ':' percent-encoded in names
            assert post[f"re_{label}"].dims == ("chain", "draw", f"{label}__level", f"{label}__term")
            assert list(post[f"re_{label}"][f"{label}__level"].values) == [f"L{i}" for i in range(6)]
            term = x.rstrip("\x00")  # numpy's str arrays drop trailing NULs
            assert list(post[f"re_{label}"][f"{label}__term"].values) == ["Intercept", term]
            assert list(post[f"cor_{label}"][f"{label}__pair"].values) == [f"Intercept__{term}"]
            assert list(post["beta"]["coef"].values) == ["Intercept", term]
    return done


ALL_STEPS = [
    "model",
    "build",
    "fit",
    "fit.predict",
    "fit.scaled_residuals",
    "sample",
    "predict",
    "scaled_residuals",
    "save",
    "extract posterior",
    "extract posterior_predictive",
    "extract log_likelihood",
]

names = st.one_of(st.sampled_from(COLLIDING + ODD), st.text(min_size=1, max_size=10))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(names, min_size=3, max_size=3, unique=True))
@example(["y", "x", "sample"])  # Penicillin's grouping factor: az.extract, scaled_residuals
@example(["draw", "chain", "coef"])  # coef: the posterior predictive's matmul; chain/draw: PyMC refused
@example(["sample", "obs", "chain"])
@example(["my y", "x.1", "g:h"])
@example(["ÿ", "Δx", "群"])
@example(["sample", "0", "__"])  # PyMC drops variables whose names end in "__" (sd_ + __) from the draws
@example(["y", "x", "_"])
@example(["y", "x/2", "a/b:"])  # PyMC refuses '/' and a final ':' in names, netCDF '/'
def test_any_column_names_work_or_raise_bayesmix_error(names):
    y, x, g = names
    done = _every_step(y, x, g)
    if set(names) <= set(COLLIDING + ODD):  # names known to work: every step must (others may be refused)
        assert done == ALL_STEPS, done


def test_penicillin_sample_factor():
    """Penicillin's grouping factor is named ``sample``: az.extract stacks chain and draw into a
    dimension of that name, and scaled_residuals (which stacks them too) failed."""
    data = bayesmix.load_dataset("Penicillin")
    model = bayesmix.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = model.sample(**TINY)
    assert idata.posterior["re_sample"].dims == ("chain", "draw", "sample__level", "sample__term")
    assert list(idata.posterior["sample__level"].values) == list("ABCDEF")
    assert az.extract(idata).sizes["sample"] == 30
    residuals = bayesmix.scaled_residuals(model, n_sim=20, random_seed=1)
    assert residuals.residuals.shape == (144,)
    fig = plots.scaled_residuals(model, n_sim=20, random_seed=1)
    assert fig is not None
    assert model.predict(idata, kind="response", inplace=False).shape == (1, 30, 144)
