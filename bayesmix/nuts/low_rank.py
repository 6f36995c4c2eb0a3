"""A low-rank metric for NUTS, learnt from warmup draws and their gradients, applied as a change of
coordinates.

The estimator is nutpie's (nuts-rs, ``mass_matrix/low_rank.rs``; Seyboldt et al., "Preconditioning
Hamiltonian Monte Carlo by minimizing Fisher divergence"):

1. a scale per coordinate, s = sqrt(sd(draws) / sd(gradients)): exact for independent Gaussian
   coordinates however well the draws have mixed, where the draws' SD alone (numpyro's and Stan's
   estimate) is only as good as the mixing;
2. in the coordinates divided by s, within the span of the draws and the gradients, the SPD
   geometric mean of the draws' covariance and the inverse of the gradients' covariance (for a
   Gaussian posterior both are its covariance; the mean minimises the Fisher divergence);
3. its eigen-directions whose eigenvalue is off 1 by more than a factor :data:`CUTOFF`, the
   ``rank`` most extreme of them.

The metric S (I + V (Λ - I) V') S, with S = diag(s), is used as the affine map
x = shift + S (u + V (Λ^½ - I) V' u) (:class:`LowRankMap`): NUTS with the identity metric in u is NUTS
with that metric in x (an affine map's Jacobian is constant). numpyro has only diagonal and dense
metrics; a dense one takes d² memory and work per leapfrog step, the map d · rank.

Why: in a crossed logistic model (VerbAgg's shape, 316 subjects x 24 items, both blocks centred)
the intercept moves with every level effect of both blocks, a direction no diagonal metric follows:
min bulk ESS 300-700 of 1,000 draws over four seeds, parameter R-hat up to 1.014; with this metric
680-1,070 over eight seeds, parameter R-hat <= 1.006 at all eight, at the same number of leapfrog
steps (docs/performance.md).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

CUTOFF = 2.0  # keep a direction whose variance is off the diagonal metric's by more than this factor
GAMMA = 1e-5  # nutpie's regularisation of the two covariances (towards the identity, in scaled units)
SCALE_BOUNDS = (1e-10, 1e10)  # a coordinate whose draws or gradients did not move keeps scale 1


class LowRankMap(NamedTuple):
    """x = shift + scale * (u + V diag(stretch) V' u) with V = ``vectors``, for u (..., d) of numpy
    or JAX arrays alike. shift, scale: (d,); vectors: (d, rank) orthonormal columns, zero columns
    padding a metric of lower rank (the rank is part of a compiled program's shape); stretch:
    (rank,) = sqrt(eigenvalue) - 1, 0 on the padding."""

    shift: np.ndarray
    scale: np.ndarray
    vectors: np.ndarray
    stretch: np.ndarray

    def to_x(self, u):
        return self.shift + self.scale * (u + self._along(u, self.stretch))

    def to_u(self, x):
        scaled = (x - self.shift) / self.scale
        return scaled + self._along(scaled, 1 / (1 + self.stretch) - 1)

    def gradient_in_u(self, gradient_x):
        """The gradient with respect to u of a function whose gradient in x is ``gradient_x``."""
        scaled = self.scale * gradient_x
        return scaled + self._along(scaled, self.stretch)

    def _along(self, u, factors):
        """V diag(factors) V' u for u (..., d). As einsum: inside a compiled NUTS loop XLA ran
        ``(u @ V) @ V.T`` 4x slower (0.12 against 0.03 ms for a gradient at d = 1,113, rank 32; the
        whole NUTS step 20% slower than without the map)."""
        einsum = np.einsum if isinstance(u, np.ndarray) and isinstance(self.vectors, np.ndarray) else _jax_einsum()
        return einsum("...k,dk->...d", einsum("...d,dk->...k", u, self.vectors) * factors, self.vectors)

    @property
    def directions(self) -> int:
        """How many directions the metric stretches beyond its diagonal (host arrays only)."""
        return int(np.count_nonzero(np.asarray(self.stretch)))


def _jax_einsum():
    import jax.numpy as jnp

    return jnp.einsum


def identity(d: int, rank: int) -> LowRankMap:
    """The map x = u, shaped as a metric of ``rank``."""
    return LowRankMap(np.zeros(d), np.ones(d), np.zeros((d, rank)), np.zeros(rank))


def estimate(draws: np.ndarray, gradients: np.ndarray, rank: int, cutoff: float = CUTOFF) -> LowRankMap:
    """The low-rank metric of draws and the gradients of the log density (or of the potential: only
    their covariance counts) there, both (chains, n, d), as a :class:`LowRankMap` of ``rank`` centred
    at the draws' mean. Each chain's own mean is removed first, so a chain still far from the others
    does not pass its distance for posterior spread."""
    chains, n, d = draws.shape
    centred = (draws - draws.mean(axis=1, keepdims=True)).reshape(-1, d)
    centred_gradients = (gradients - gradients.mean(axis=1, keepdims=True)).reshape(-1, d)
    count = chains * n
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.sqrt(centred.std(axis=0) / centred_gradients.std(axis=0))
    scale = np.where(np.isfinite(scale) & (scale >= SCALE_BOUNDS[0]) & (scale <= SCALE_BOUNDS[1]), scale, 1.0)
    shift = draws.reshape(-1, d).mean(axis=0)
    # nutpie's scaling: the covariances below are the sample covariances / (count * GAMMA) + I
    scaled_draws = (centred / (scale * count)).T  # (d, count)
    scaled_gradients = (centred_gradients * (scale / count)).T
    none = LowRankMap(shift, scale, np.zeros((d, rank)), np.zeros(rank))
    try:
        basis = np.linalg.qr(
            np.concatenate(
                [
                    np.linalg.svd(scaled_draws, full_matrices=False)[0],
                    np.linalg.svd(scaled_gradients, full_matrices=False)[0],
                ],
                axis=1,
            )
        )[0]
        within_draws, within_gradients = basis.T @ scaled_draws, basis.T @ scaled_gradients
        identity_k = np.eye(basis.shape[1])
        values, vectors = np.linalg.eigh(
            spd_mean(
                within_draws @ within_draws.T / GAMMA + identity_k,
                within_gradients @ within_gradients.T / GAMMA + identity_k,
            )
        )
    except np.linalg.LinAlgError:
        return none
    if not (np.all(np.isfinite(values)) and np.all(values > 0)):
        return none
    off = np.abs(np.log(values))
    keep = np.argsort(-off)[: min(rank, values.size)]
    keep = keep[off[keep] > np.log(cutoff)]
    stretch, directions = np.zeros(rank), np.zeros((d, rank))
    stretch[: keep.size] = np.sqrt(values[keep]) - 1
    directions[:, : keep.size] = basis @ vectors[:, keep]
    return LowRankMap(shift, scale, directions, stretch)


def spd_mean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The SPD geometric mean of ``a`` and the inverse of ``b``: the SPD matrix m with m b m = a,
    b^-½ (b^½ a b^½)^½ b^-½."""

    def power(matrix, exponent):
        values, vectors = np.linalg.eigh(matrix)
        return (vectors * values**exponent) @ vectors.T

    root = power(b, 0.5)
    inverse_root = power(b, -0.5)
    return inverse_root @ power(root @ a @ root, 0.5) @ inverse_root
