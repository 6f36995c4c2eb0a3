"""The two coordinate systems of a NUTS run: the model's value variables, flattened into one vector x
(in ``model.value_vars`` order), and the sampled coordinates u, with x = ``transform.to_x(u)`` for
an affine map (:class:`Whitening`, or :class:`~bayesmix.nuts.low_rank.LowRankMap`) or x = u.

An affine map's Jacobian is constant, so the posterior in u is the posterior in x: a change of
coordinates is a change of NUTS's metric. These functions run on the host (numpy) and inside the
compiled programs (JAX) alike.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def flatten(values) -> np.ndarray:
    """A list of arrays -> one vector (d,), the inverse of :func:`unflatten`."""
    return np.concatenate([np.ravel(v) for v in values]) if values else np.zeros(0)


def unflatten(flat, shapes):
    """(..., d) -> one array per shape, keeping the leading axes (numpy or JAX arrays alike)."""
    lead, parts, start = flat.shape[:-1], [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        parts.append(flat[..., start : start + size].reshape((*lead, *shape)))
        start += size
    return parts


class Whitening(NamedTuple):
    """The affine map x = shift + root u (u: (..., d)) of the Laplace approximation's whitened
    coordinates; shift (d,), root (d, d)."""

    shift: np.ndarray
    root: np.ndarray

    def to_x(self, u):
        return self.shift + u @ self.root.T

    def gradient_in_u(self, gradient_x):
        return gradient_x @ self.root


def to_x(u, transform):
    """The model's flattened value variables from the sampled coordinates u (..., d): x =
    ``transform.to_x(u)`` (a :class:`Whitening` or a :class:`~bayesmix.nuts.low_rank.LowRankMap`), or x = u
    (``transform`` None)."""
    return u if transform is None else transform.to_x(u)
