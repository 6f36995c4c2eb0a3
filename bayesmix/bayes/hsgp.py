"""A distance structure's covariance in the sampler's graph through PyMC's ``HSGP``.

:class:`StructureKernel` is glmmTMB's correlation (``exp``, ``gau``, ``ou``, ``mat``) as a PyMC
stationary covariance function, with the power spectral density that PyMC's ``HSGP`` needs
(:func:`bayesmix.design.hilbert.log_spectral_density`); :func:`hilbert_factor` asks
``HSGP.prior_linearized`` for the basis at the block's positions and its square-root spectral
weights, the two parts of the (k, m) factor the block's effects are drawn through.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pytensor.gradient import disconnected_grad

from bayesmix.design.hilbert import log_spectral_density
from bayesmix.design.matern import log_matern


class StructureKernel(pm.gp.cov.Stationary):
    """glmmTMB's correlation ``kind`` at range r (and smoothness kappa for ``mat``) in
    ``input_dim`` coordinates: PyMC scales distances by its length scale, here r."""

    def __init__(self, kind: str, input_dim: int, r, kappa=None):
        super().__init__(input_dim, ls=r)
        self.kind, self.kappa = kind, kappa

    def full_from_distance(self, dist, squared: bool = False):
        x = self._sqrt(dist) if squared else dist  # d / r
        if self.kind == "gau":
            return pt.exp(-(x**2))
        if self.kind == "mat":
            safe = pt.maximum(x, 1e-12)
            value = pt.exp(log_matern(safe, self.kappa, pt.gammaln, xp=pt, constant=disconnected_grad)[0])
            return pt.switch(x < 1e-6, 1.0, value)
        return pt.exp(-x)

    def power_spectral_density(self, omega):
        omega2 = pt.sum(pt.square(omega), axis=-1)
        return pt.exp(log_spectral_density(self.kind, omega2, self.n_dims, self.ls, self.kappa, pt, pt.gammaln))


class BasisFactor(NamedTuple):
    """The approximate factor s Phi diag(sqrt(S(omega))) kept in its two parts: the constant basis
    ``phi`` (k, m) and the weights s sqrt(S(omega)) (m,). A level's effects are Phi (w * z): one
    matrix product, where forming the (k, m) factor itself would cost JAX's gradient several
    (k, m) intermediates per evaluation."""

    phi: pt.TensorVariable
    weights: pt.TensorVariable

    def effects(self, z):
        """(M, k) effects from (M, m) standard normals."""
        return (z * self.weights[None, :]) @ self.phi.T


def hilbert_factor(block, s, r, kappa=None) -> BasisFactor:
    """PyMC's HSGP basis at the block's positions (the same as
    :func:`bayesmix.design.hilbert.basis` gives the code that reads the posterior) and the
    kernel's square-root spectral weights, times s."""
    covariance = block.covariance
    settings, positions = covariance.hsgp, np.asarray(covariance.positions, dtype=float)
    kernel = StructureKernel(covariance.kind, positions.shape[1], r, kappa)
    gp = pm.gp.HSGP(m=list(settings.m), L=list(covariance.basis.L), cov_func=kernel)
    phi, sqrt_psd = gp.prior_linearized(pt.as_tensor(positions))
    # the basis does not depend on the parameters: evaluated once, a constant of the graph (traced,
    # JAX would recompute its sines at every gradient)
    return BasisFactor(pt.constant(phi.eval()), s * sqrt_psd)
