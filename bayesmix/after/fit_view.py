"""The one place that tells a sampled :class:`~bayesmix.model.Model` from an exact
:class:`~bayesmix.mixedfit.MixedFit`: what reads either kind of fit (tidy tables, plots, scaled
residuals, anova, save) asks :func:`view` for a :class:`FitView` and reads that.

Each fit type says which it is in a class attribute ``fit_kind`` (``"sampled"`` or ``"exact"``),
so this module, and those above it, need not import the types themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtri  # the normal quantile, without scipy.stats' import

from bayesmix.after.smooth_band import smooth_prediction_se
from bayesmix.design.encode import encode_new_data
from bayesmix.errors import BayesmixError

EXACT, SAMPLED = "exact", "sampled"


@dataclass(frozen=True)
class FitView:
    """A MixedFit (``bayes`` False) or a sampled Model with the posterior to read (``idata``)."""

    obj: object
    idata: object
    bayes: bool

    @property
    def design(self):
        return self.obj.design

    @property
    def family(self):
        return self.obj.family

    @property
    def label(self) -> str:
        return "NUTS" if self.bayes else self.obj.method

    def require(self) -> None:
        if self.bayes and self.idata is None:
            raise BayesmixError(
                "This model has not been sampled yet. Call model.sample() first, or use an exact fit: "
                "pass model.fit('reml') (or 'ml', 'laplace') instead of the model."
            )

    def source(self):
        """What the tables read: the MixedFit itself, or the posterior summary of the sampled Model."""
        self.require()
        return self.obj.posterior_summary(self.idata) if self.bayes else self.obj

    def family_params(self) -> dict:
        if self.bayes:
            return dict(self.obj.posterior_summary(self.idata).family_params)
        return dict(self.obj.family_params)

    def fitted(self) -> np.ndarray:
        """Conditional means on the training rows (random effects included)."""
        if self.bayes:
            values = self.obj.predict(self.idata, kind="mean", inplace=False)
            return values.mean(("chain", "draw")).to_numpy()
        return np.asarray(self.obj.predict(), dtype=float)

    def population(self, grid: pd.DataFrame, interval: float | None, scale: str = "response"):
        """Population-level mean on ``grid`` with its interval (None when ``interval`` is None), on
        the response scale or the link's (``scale="link"``: the linear predictor)."""
        n = len(grid)
        kind = "link" if scale == "link" else "mean"
        if self.bayes:
            draws = self.obj.predict(self.idata, data=grid, kind=kind, re_form="population", inplace=False).to_numpy()
            draws = draws.reshape(-1, n)
            mean = draws.mean(axis=0)
            if interval is None:
                return mean, None, None
            lower, upper = np.quantile(draws, [(1 - interval) / 2, (1 + interval) / 2], axis=0)
            return mean, lower, upper
        mean = np.asarray(self.obj.predict(grid, re_form="population", kind=kind), dtype=float)
        if interval is None:
            return mean, None, None
        new = encode_new_data(self.design, grid, random_effects=False)
        X = new.X
        names = list(self.obj.fixef.index)  # without aliased columns
        X = X[:, [self.design.fixed_names.index(name) for name in names]]
        V = self.obj.vcov.loc[names, names].to_numpy()
        eta = np.asarray(self.obj.predict(grid, re_form="population", kind="link"), dtype=float)
        if self.design.codings.smooths:  # a smooth's penalised effects are uncertain too (mgcv's se.fit)
            se = smooth_prediction_se(self.obj, new)
        else:
            se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", X, V, X), 0.0))
        z = ndtri(0.5 + interval / 2)
        if scale == "link":
            return mean, eta - z * se, eta + z * se
        params = self.obj.parameters(new.submodels)  # the grid's own zi / dispersion, where a formula predicts them
        a, b = self.family.mean(eta - z * se, params), self.family.mean(eta + z * se, params)
        return mean, np.minimum(a, b), np.maximum(a, b)

    def population_probabilities(self, grid: pd.DataFrame, interval: float | None):
        """An ordinal model's population-level category probabilities on ``grid``, each (rows, K):
        (mean, lower, upper), the bounds None when ``interval`` is None. NUTS: posterior means and
        central quantiles. Exact: the delta method over the fixed effects and the cut points
        (their joint covariance, ``ordinal_vcov``), the bounds clipped to [0, 1]."""
        if self.bayes:
            draws = self.obj.predict(self.idata, data=grid, kind="probs", re_form="population", inplace=False)
            draws = draws.to_numpy().reshape(-1, len(grid), draws.shape[-1])
            mean = draws.mean(axis=0)
            if interval is None:
                return mean, None, None
            lower, upper = np.quantile(draws, [(1 - interval) / 2, (1 + interval) / 2], axis=0)
            return mean, lower, upper
        mean = np.asarray(self.obj.predict(grid, kind="probs", re_form="population"), dtype=float)
        if interval is None or self.obj.ordinal_vcov is None:
            return mean, None, None
        at, probabilities = self._probability_function(grid)
        V = self.obj.ordinal_vcov.to_numpy()
        steps = 1e-6 * np.maximum(1.0, np.abs(at))
        J = np.stack(  # d probability / d (beta, cuts): (rows, K, parameters), central differences
            [(probabilities(at + h * e) - probabilities(at - h * e)) / (2 * h) for h, e in zip(steps, np.eye(len(at)))],
            axis=-1,
        )
        se = np.sqrt(np.maximum(np.einsum("rkp,pq,rkq->rk", J, V, J), 0.0))
        z = ndtri(0.5 + interval / 2)
        return mean, np.clip(mean - z * se, 0.0, 1.0), np.clip(mean + z * se, 0.0, 1.0)

    def _probability_function(self, grid: pd.DataFrame):
        """(the exact fit's estimates that the category probabilities read, in ``ordinal_vcov``'s
        order; the function from those to the (rows, K) probabilities on ``grid``'s rows)."""
        new = encode_new_data(self.design, grid, random_effects=False)
        if self.family.categorical:  # each category's coefficients, one after another
            tables = [self.obj.submodels[role] for role in self.family.params]
            sizes = np.cumsum([0] + [len(table) for table in tables])

            def by_category(values):
                etas = {
                    role: new.submodels[role] @ values[sizes[i] : sizes[i + 1]]
                    for i, role in enumerate(self.family.params)
                }
                return self.family.probabilities(None, etas)

            return np.concatenate([table["estimate"].to_numpy() for table in tables]), by_category
        names = list(self.obj.fixef.index)
        X = new.X[:, [self.design.fixed_names.index(name) for name in names]]
        beta, cuts = self.obj.fixef["estimate"].to_numpy(), self.obj.thresholds["estimate"].to_numpy()

        def ordered(values):
            return self.family.probabilities(X @ values[: len(beta)], {"thresholds": values[len(beta) :]})

        return np.r_[beta, cuts], ordered


def view(fit, idata=None, user: str | None = None) -> FitView:
    """``fit`` (a MixedFit, or a Model with ``idata`` or its last ``sample()``) as a :class:`FitView`;
    ``user`` names the function asking, for the message when ``fit`` is neither."""
    kind = getattr(type(fit), "fit_kind", None)
    if kind == EXACT:
        if idata is not None:
            raise BayesmixError(
                "idata= goes with a sampled bayesmix.Model; a fit from Model.fit() has no posterior. "
                "Pass the model (with idata=) or the fit (without)."
            )
        return FitView(fit, None, False)
    if kind == SAMPLED:
        return FitView(fit, fit.idata if idata is None else idata, True)
    takes = f" ({user} takes a fit or a sampled model)" if user else ""
    raise BayesmixError(
        f"Expected a fit from Model.fit() or a sampled bayesmix.Model, not {type(fit).__name__}{takes}. "
        "Call model.fit('reml') or model.sample() first and pass the result (or the model)."
    )
