"""lme4's modular steps (bayesmix.modular) give what Model.fit gives, and the deviance function
evaluates lme4's own criterion at lme4's theta."""

import json
from pathlib import Path

import numpy as np
import pytest

import bayesmix
from bayesmix import modular

DATA = Path(__file__).parent / "data"


def test_lmer_steps_equal_model_fit():
    data = bayesmix.load_dataset("sleepstudy")
    design = modular.l_formula("Reaction ~ Days + (Days | Subject)", data)
    devfun = modular.mk_lmer_devfun(design, reml=True)
    fit = modular.mk_mer_mod(design, modular.optimize_lmer(design, reml=True))
    reference = bayesmix.Model("Reaction ~ Days + (Days | Subject)", data).fit("reml")
    assert np.array_equal(fit.fixef["estimate"], reference.fixef["estimate"])
    assert devfun(fit.optimizer.x) == pytest.approx(reference.reml_criterion, rel=1e-12)
    assert devfun(devfun.start) > reference.reml_criterion  # the start is not the optimum
    lme4 = json.loads((DATA / "sleep_reml.json").read_text())["results"]
    assert devfun(lme4["theta"]["values"]) == pytest.approx(lme4["REMLcrit"], rel=1e-9)


def test_glmer_steps_equal_model_fit():
    data = bayesmix.load_dataset("cbpp")
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    design = modular.l_formula(formula, data)
    devfun = modular.mk_glmer_devfun(design, "binomial")
    fit = modular.mk_mer_mod(design, modular.optimize_glmer(design, "binomial"))
    reference = bayesmix.Model(formula, data, family="binomial").fit("laplace")
    assert np.array_equal(fit.fixef["estimate"], reference.fixef["estimate"])
    assert devfun(fit.optimizer.x) == pytest.approx(-2 * reference.loglik, rel=1e-10)
    assert len(devfun.start) == len(devfun.lower) == 1 + 4
