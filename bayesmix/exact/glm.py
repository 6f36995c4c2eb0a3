"""Maximum likelihood of a generalized linear model without random effects: Newton's method on the
family's log-likelihood derivatives (``Family.laplace_terms``) with step halving.

The Laplace fit starts its outer optimiser from it, and the shrinkage plot fits each level's rows
alone with it; one routine, so both see the same estimates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ITERATIONS = 100
HALVINGS = 60
STEP_TOLERANCE = 1e-10  # Newton steps below this (in every coefficient) end the iteration


@dataclass(frozen=True)
class GlmFit:
    """The coefficients where Newton's method stopped, and whether its steps had vanished there."""

    beta: np.ndarray
    converged: bool


def fit_glm(family, X: np.ndarray, y: np.ndarray, trials, offset, params: dict, weights=None) -> GlmFit:
    """beta maximising sum w log p(y | offset + X beta) (w: prior weights, 1 when None), by
    :func:`newton_glm` on the rows in memory."""

    def sums(b):
        with np.errstate(all="ignore"):  # a trial step far out: non-finite terms, and the step is halved
            ll, d1, d2 = family.laplace_terms(X @ b + offset, y, trials, params, weights)
            return float(np.sum(ll)), X.T @ d1, (X.T * -d2) @ X

    return newton_glm(sums, X.shape[1])


def newton_glm(sums, p: int) -> GlmFit:
    """Newton's method from beta = 0 on a GLM log-likelihood given by ``sums(beta)`` = (log-likelihood,
    its gradient X'd1, the information X'WX), wherever the rows are (in memory, or a Dask
    DataFrame's partitions). A step that lowers the log-likelihood is halved; a singular or
    non-finite Newton system (weights vanished: fitted probabilities at 0 or 1, counts at 0) stops
    the iteration unconverged, as does running out of iterations, which is how separation shows
    (the estimates run off to infinity)."""
    beta = np.zeros(p)
    if not p:
        return GlmFit(beta, True)

    def loglik(b):
        value, gradient, information = sums(b)
        return (value if np.isfinite(value) else -np.inf), gradient, information

    value, gradient, information = loglik(beta)
    for _ in range(ITERATIONS):
        try:
            step = np.linalg.solve(information, gradient)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)):
            break
        for _ in range(HALVINGS):
            new_value, new_gradient, new_information = loglik(beta + step)
            if new_value >= value - 1e-12 * abs(value):
                break
            step /= 2
        else:
            break
        beta, value, gradient, information = beta + step, new_value, new_gradient, new_information
        if np.max(np.abs(step), initial=0.0) < STEP_TOLERANCE:
            return GlmFit(beta, True)
    return GlmFit(beta, False)
