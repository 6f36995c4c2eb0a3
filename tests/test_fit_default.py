"""fit() without a method does what lme4/glmmTMB would do for the model."""

import numpy as np
import pandas as pd

import bayesmix


def _data():
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(12), 10)
    x = rng.normal(size=g.size)
    eta = 0.3 + 0.5 * x + rng.normal(0, 0.5, 12)[g]
    return pd.DataFrame({"y": eta + rng.normal(size=g.size), "k": rng.poisson(np.exp(eta)), "x": x, "g": g.astype(str)})


def test_default_method_follows_lme4():
    data = _data()
    lmm = bayesmix.Model("y ~ x + (1 | g)", data)
    assert lmm.fit().reml_criterion == lmm.fit("reml").reml_criterion
    glmm = bayesmix.Model("k ~ x + (1 | g)", data, family="poisson")
    assert glmm.fit().loglik == glmm.fit("laplace").loglik
    dispersion = bayesmix.Model("y ~ x + (1 | g)", data, dispersion="~ x")
    assert dispersion.fit().loglik == dispersion.fit("ml").loglik
