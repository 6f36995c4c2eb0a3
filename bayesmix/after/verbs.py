"""lme4's verbs on an exact fit: ``coef``, ``fitted``, ``residuals``, ``simulate``.

- ``coef(fit)``: per grouping factor, each level's coefficients: the fixed effects plus that
  level's random effects where a term of its blocks has the coefficient's name (lme4's ``coef``).
- ``fitted(fit)``: the conditional means (random effects at their modes; probabilities for
  binomial data), lme4's ``fitted``.
- ``residuals(fit, type)``: on the response's scale (a binomial response as the proportion
  successes / trials, as lme4): ``"response"`` y - mu; ``"pearson"`` (y - mu) sqrt(w) / sqrt(V(mu))
  with V the family's variance function and w the prior weights (the trials of binomial data);
  ``"deviance"`` sign(y - mu) sqrt(d) with d the family's deviance contribution (glm's).
- ``simulate(fit, nsim, seed, re_form)``: responses drawn from the fitted model, with new random
  effects from the estimated covariances (``re_form="population"``, lme4's default ``use.u =
  FALSE``) or the conditional modes (``"conditional"``, lme4's ``use.u = TRUE``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import xlogy

from bayesmix.after.predict import conditional_modes, simulate_exact
from bayesmix.errors import BayesmixError
from bayesmix.report import block_key

RESIDUAL_TYPES = ("response", "pearson", "deviance")
SIMULATION_FORMS = {"population": "unconditional", "conditional": "conditional"}


def _exact(fit, verb: str):
    if getattr(type(fit), "fit_kind", None) != "exact":
        raise BayesmixError(
            f"{verb}() reads an exact fit (Model.fit()); a sampled Model's counterparts are predictions per draw: "
            "model.predict(kind='mean' or 'response')."
        )
    if fit.family.category_response:
        raise BayesmixError(
            f"{verb}() reads a response with a mean; a category response has fit.predict(kind='probs')."
        )


def coef(fit) -> dict[str, pd.DataFrame]:
    """{grouping factor: a (levels x fixed effects) table}: each level's coefficients."""
    _exact(fit, "coef")
    fixed = fit.fixef["estimate"]
    out = {}
    for block in fit.design.blocks:
        key = block_key(block)
        table = out.get(key)
        if table is None:
            table = pd.DataFrame(
                np.tile(fixed.to_numpy(), (block.n_levels, 1)),
                index=pd.Index(block.levels, name=block.group),
                columns=list(fixed.index),
            )
        modes = conditional_modes(fit, block)
        for j, term in enumerate(block.terms):
            if term in table.columns:
                table[term] = table[term].to_numpy() + modes[:, j]
            else:  # a random term with no fixed counterpart: the deviation alone, as lme4
                table[term] = modes[:, j]
        out[key] = table
    return out


def fitted(fit) -> np.ndarray:
    """(n,) conditional means on the response's scale (probabilities for binomial data)."""
    _exact(fit, "fitted")
    return np.asarray(fit.predict(), dtype=float)


def residuals(fit, type: str = "response", scaled: bool = False) -> np.ndarray:  # noqa: A002 - lme4's name
    """(n,) residuals of the training rows: ``"response"``, ``"pearson"`` or ``"deviance"``;
    ``scaled`` divides by the residual SD sigma (lme4's ``scaled = TRUE``, for a gaussian model)."""
    _exact(fit, "residuals")
    if type not in RESIDUAL_TYPES:
        raise BayesmixError(f"type='{type}' is not a residual type; choices: {', '.join(RESIDUAL_TYPES)}.")
    values = _residuals(fit, type)
    if not scaled:
        return values
    if fit.sigma is None:
        raise BayesmixError("scaled=True divides by the residual SD sigma; this model has none.")
    return values / fit.sigma


def _residuals(fit, type: str) -> np.ndarray:  # noqa: A002
    design = fit.design
    mu = fitted(fit)
    trials = design.trials
    y = design.y if trials is None else design.y / trials
    w = (np.ones_like(y) if trials is None else trials) * (1.0 if design.weights is None else design.weights)
    if type == "response":
        return y - mu
    if type == "pearson":
        return (y - mu) * np.sqrt(w) / np.sqrt(_variance_function(fit, mu))
    return np.sign(y - mu) * np.sqrt(np.maximum(w * _unit_deviance(fit, y, mu), 0.0))


def _variance_function(fit, mu: np.ndarray) -> np.ndarray:
    """V(mu): the response's variance per unit weight (sigma^2 apart for gaussian, as glm's)."""
    name, params = fit.family.name, fit.parameters()
    if name == "gaussian":
        return np.ones_like(mu)
    if name in ("bernoulli", "binomial"):
        return mu * (1.0 - mu)
    if name == "poisson":
        return mu
    if name == "negativebinomial":
        return mu + mu**2 / params["alpha"]
    if name == "gamma":
        return mu**2
    raise BayesmixError(
        f"Pearson residuals are written for gaussian, binomial, poisson, negativebinomial and gamma; not {name}."
    )


def _unit_deviance(fit, y: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Each row's deviance contribution per unit weight (R's family()$dev.resids)."""
    name, params = fit.family.name, fit.parameters()
    if name == "gaussian":
        return (y - mu) ** 2
    if name in ("bernoulli", "binomial"):
        return 2.0 * (xlogy(y, y / mu) + xlogy(1.0 - y, (1.0 - y) / (1.0 - mu)))
    if name == "poisson":
        return 2.0 * (xlogy(y, y / mu) - (y - mu))
    if name == "negativebinomial":
        theta = params["alpha"]
        return 2.0 * (xlogy(y, y / mu) - (y + theta) * np.log((y + theta) / (mu + theta)))
    if name == "gamma":
        return -2.0 * (np.log(y / mu) - (y - mu) / mu)
    raise BayesmixError(
        f"Deviance residuals are written for gaussian, binomial, poisson, negativebinomial and gamma; not {name}."
    )


def simulate(fit, nsim: int = 1, seed=None, re_form: str = "population") -> pd.DataFrame:
    """``nsim`` simulated responses of the training rows: a (rows x nsim) table with columns
    ``sim_1``, ... indexed by the rows' labels in the data, as lme4's ``simulate``."""
    _exact(fit, "simulate")
    if re_form not in SIMULATION_FORMS:
        raise BayesmixError(f"re_form='{re_form}': choose 'population' (new random effects) or 'conditional'.")
    if isinstance(nsim, bool) or not isinstance(nsim, (int, np.integer)) or nsim < 1:
        raise BayesmixError(f"nsim must be a whole number >= 1, not {nsim!r}.")
    draws = simulate_exact(fit, int(nsim), SIMULATION_FORMS[re_form], np.random.default_rng(seed))
    columns = [f"sim_{i + 1}" for i in range(int(nsim))]
    return pd.DataFrame(np.asarray(draws).T, index=fit.design.data.index, columns=columns)
