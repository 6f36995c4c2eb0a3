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
    """beta maximising sum w log p(y | offset + X beta) (w: prior weights, 1 when None). A step
    that lowers the log-likelihood is halved; a singular or non-finite Newton system (weights
    vanished: fitted probabilities at 0 or 1, counts at 0) stops the iteration unconverged, as
    does running out of iterations, which is how separation shows (the estimates run off to infinity)."""
    beta = np.zeros(X.shape[1])
    if not X.shape[1]:
        return GlmFit(beta, True)

    def loglik(b):
        with np.errstate(all="ignore"):
            ll, d1, d2 = family.laplace_terms(X @ b + offset, y, trials, params, weights)
        value = float(np.sum(ll))
        return (value if np.isfinite(value) else -np.inf), d1, d2

    value, d1, d2 = loglik(beta)
    for _ in range(ITERATIONS):
        try:
            step = np.linalg.solve((X.T * -d2) @ X, X.T @ d1)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)):
            break
        for _ in range(HALVINGS):
            new_value, new_d1, new_d2 = loglik(beta + step)
            if new_value >= value - 1e-12 * abs(value):
                break
            step /= 2
        else:
            break
        beta, value, d1, d2 = beta + step, new_value, new_d1, new_d2
        if np.max(np.abs(step), initial=0.0) < STEP_TOLERANCE:
            return GlmFit(beta, True)
    return GlmFit(beta, False)
