"""Effects of levels new data name that the model did not see, in a block whose terms are levels.

A multi-membership group's new level is one more independent N(0, s^2) effect: zero for an exact
fit (lme4's rule for a new level), drawn from each draw's s for a sampled model (brms's). A known
covariance's new level is related to the seen ones through A: given their effects b_s, its effect
is N(C b_s, s^2 (A_nn - C A_sn)) with C = A_ns A_ss^-1 (the conditional of the joint normal), so an
exact fit predicts it with C times the conditional modes (the BLUP) and a sampled model draws it
from that conditional at each draw. ``new_levels="population"`` gives every new level zero.
"""

from __future__ import annotations

import numpy as np


def _known_conditional(term, members, unseen) -> tuple[np.ndarray, np.ndarray]:
    """(C (U, L), a root (U, U) of the conditional correlation A_nn - C A_sn) from A."""
    A = term.known
    A_ss = A.loc[list(members), list(members)].to_numpy()
    A_ns = A.loc[list(unseen), list(members)].to_numpy()
    C = np.linalg.solve(A_ss, A_ns.T).T
    conditional = A.loc[list(unseen), list(unseen)].to_numpy() - C @ A_ns.T
    values, vectors = np.linalg.eigh((conditional + conditional.T) / 2.0)
    return C, vectors * np.sqrt(np.clip(values, 0.0, None))


def unseen_member_effects(term, block, unseen, seen: np.ndarray, how: str, s=None, rng=None) -> np.ndarray:
    """(S, U) the unseen levels' effects given the seen ones' ``seen`` (S, L) (S = 1 for an exact
    fit's modes). ``how``: "mean" (an exact fit: the conditional mean), "sample" (a draw per row of
    ``seen``, with that draw's SD ``s`` (S,)) or "population" (zero)."""
    S = seen.shape[0]
    if how == "population" or (term.known is None and how == "mean"):
        return np.zeros((S, len(unseen)))
    if term.known is None:  # a multi-membership level: independent of the others
        return np.asarray(s)[:, None] * rng.standard_normal((S, len(unseen)))
    C, root = _known_conditional(term, block.members, unseen)
    mean = seen @ C.T
    if how == "mean":
        return mean
    return mean + np.asarray(s)[:, None] * (rng.standard_normal((S, len(unseen))) @ root.T)
