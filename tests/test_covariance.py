"""The covariance object per block (design/covariance.py): its maps, and that the exact engine
reaches a block's structure only through it (a structure defined here fits as lme4 does)."""

from dataclasses import dataclass, replace

import numpy as np
import pytest

import bayesmix
from bayesmix.design.covariance import ThetaLayout, Unstructured
from bayesmix.exact.lmm import cross_products, fit_lmm, gradient, objective


def test_unstructured_maps_theta_as_lme4():
    c = Unstructured(3)
    theta = np.arange(1.0, 7.0)
    T = c.factor(theta)
    # column-major lower triangle: T11, T21, T31, T22, T32, T33
    assert np.array_equal(T, [[1, 0, 0], [2, 4, 0], [3, 5, 6]])
    assert np.array_equal(c.theta(T), theta)
    assert np.array_equal(c.start(), [1, 0, 0, 1, 0, 1])
    assert np.array_equal(c.lower(), [0, -np.inf, -np.inf, 0, -np.inf, 0])
    step = 1e-3
    for i, dT in enumerate(c.factor_derivatives(theta)):
        moved = theta.copy()
        moved[i] += step
        assert np.allclose((c.factor(moved) - T) / step, dT)


def test_layout_splits_theta_across_blocks():
    layout = ThetaLayout((Unstructured(2), Unstructured(1)))
    theta = np.array([1.0, 0.5, 2.0, 3.0])
    T1, T2 = layout.factors(theta)
    assert np.array_equal(T1, [[1.0, 0.0], [0.5, 2.0]]) and np.array_equal(T2, [[3.0]])
    assert np.array_equal(layout.theta([T1, T2]), theta)
    assert [block for block, _ in layout.tangents(theta)] == [0, 0, 0, 1]


@dataclass(frozen=True)
class Diagonal:
    """Independent effects with their own variances: T = diag(theta)."""

    k: int
    kind: str = "diag"

    @property
    def n_theta(self):
        return self.k

    def factor(self, theta):
        return np.diag(np.asarray(theta, dtype=float)[: self.k])

    def theta(self, factor):
        return np.diagonal(factor).copy()

    def factor_derivatives(self, theta):
        out = np.zeros((self.k, self.k, self.k))
        out[np.arange(self.k), np.arange(self.k), np.arange(self.k)] = 1.0
        return out

    def is_diagonal(self):
        return np.ones(self.k, dtype=bool)

    def lower(self):
        return np.zeros(self.k)

    def start(self):
        return np.ones(self.k)


@pytest.mark.parametrize("reml", [True, False])
def test_a_new_structure_plugs_into_the_exact_engine(reml):
    data = bayesmix.load_dataset("sleepstudy")
    one_block = bayesmix.Model("Reaction ~ Days + (Days | Subject)", data).design
    block = one_block.blocks[0]
    diagonal = replace(one_block, blocks=(replace(block, covariance=Diagonal(2)),))
    two_blocks = bayesmix.Model("Reaction ~ Days + (Days || Subject)", data).design
    ours, reference = fit_lmm(diagonal, reml), fit_lmm(two_blocks, reml)
    assert ours.optimizer.objective == pytest.approx(reference.optimizer.objective, rel=1e-9)
    assert np.allclose(ours.optimizer.x, reference.optimizer.x, rtol=1e-5)
    cp = cross_products(diagonal)
    theta = np.array([0.9, 0.3])
    step = 1e-4  # central differences: truncation error ~ step^2, rounding ~ 1e-16 / step
    numeric = [
        (objective(cp, theta + step * e, reml) - objective(cp, theta - step * e, reml)) / (2 * step) for e in np.eye(2)
    ]
    assert np.allclose(gradient(cp, theta, reml), numeric, rtol=1e-6)
