"""The collapsed builder hands the sampler a BuiltModel: no values hung on the pm.Model."""

import ast
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm

import bayesmix
from bayesmix.bayes.built import BuiltModel, built_model
from bayesmix.bayes.collapsed import build_marginal
from bayesmix.nuts.run import initial_inverse_mass, run_nuts, values_per_draw

PACKAGE = Path(bayesmix.__file__).parent


def penicillin():
    return bayesmix.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", bayesmix.load_dataset("Penicillin"))


def test_the_builder_returns_the_derived_values_and_leaves_the_pm_model_bare():
    model = penicillin()
    built = build_marginal(model.design, model.family, model.priors)
    assert isinstance(built, BuiltModel) and isinstance(built.model, pm.Model)
    assert not [name for name in vars(built.model) if name.startswith("bayesmix")]
    plate = model.design.blocks[0] if model.design.blocks[0].label == "plate" else model.design.blocks[1]
    # plate (24 levels, the collapsed block) and the intercept are drawn after sampling; sample
    # (6 levels) is joined to beta
    assert built.derived_values == plate.n_levels + 1 + 6
    sampled = sum(int(np.size(v)) for v in built.model.initial_point().values())
    assert values_per_draw(built) >= sampled + built.derived_values
    assert built.post_draw is not None and not built.sampler_log_likelihood
    assert built_model(built) is built
    assert built_model(built.model).derived_values == 0  # a bare pm.Model: the graph alone


def test_initial_scales_come_from_the_built_model():
    model = bayesmix.Model("y ~ x + (1 | g) + (1 | h)", crossed_frame())
    built = build_marginal(model.design, model.family, model.priors)
    metric = initial_inverse_mass(built)
    assert metric is not None and metric.size == sum(int(np.size(v)) for v in built.model.initial_point().values())
    assert initial_inverse_mass(BuiltModel(built.model)) is None


def crossed_frame():
    rng = np.random.default_rng(0)
    g, h = rng.integers(0, 80, 500), rng.integers(0, 70, 500)
    x = rng.normal(size=500)
    y = 1 + x + rng.normal(size=80)[g] + rng.normal(size=70)[h] + rng.normal(size=500)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g], "h": [f"h{i}" for i in h]})


def test_run_nuts_takes_a_built_model_and_finish_adds_the_effects():
    model = bayesmix.Model("Reaction ~ Days + (Days | Subject)", bayesmix.load_dataset("sleepstudy"))
    built = build_marginal(model.design, model.family, model.priors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = run_nuts(
            built, draws=50, tune=50, chains=1, random_seed=3, sampler="numpyro", progressbar=False, target_accept=0.9
        )
    assert "re_Subject" not in idata.posterior and "log_likelihood" not in idata.groups()
    built.finish(idata, seed=3)
    assert idata.posterior["re_Subject"].shape == (1, 50, 18, 2)
    assert "log_likelihood" in idata.groups()


def test_the_builder_does_not_import_the_sampler():
    builders = [*sorted((PACKAGE / "bayes" / "collapsed").glob("*.py")), PACKAGE / "bayes" / "built.py"]
    assert len(builders) > 2, builders  # an empty glob (the folder moved) would check nothing
    for path in builders:
        name = str(path.relative_to(PACKAGE))
        tree = ast.parse(path.read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert not [m for m in imported if m and m.startswith("bayesmix.nuts")], name
