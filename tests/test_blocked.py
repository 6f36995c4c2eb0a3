"""H = M' W M + I factored in blocks (exact/blocked.py) against dense algebra: the log-determinant,
solves, and H^{-1} on H's pattern, for one block and for crossed blocks with several terms."""

import numpy as np
import pytest
import scipy.sparse as sp

from bayesmix.exact import blocked


def crossed_m(rng, n=300, levels=(40, 7, 5), terms=(2, 1, 1)):
    """M = Z Lambda for random crossed factors: each row one level of each, k terms per level."""
    parts = []
    for m, k in zip(levels, terms):
        codes = rng.integers(0, m, n)
        values = rng.normal(size=(n, k))
        rows = np.repeat(np.arange(n), k)
        columns = (codes[:, None] * k + np.arange(k)).ravel()
        parts.append(sp.csr_matrix((values.ravel(), (rows, columns)), shape=(n, m * k)))
    return sp.hstack(parts).tocsr()


@pytest.mark.parametrize("blocks", [1, 3])
def test_blocked_factor_equals_dense_algebra(blocks):
    rng = np.random.default_rng(1)
    M = crossed_m(rng, levels=(40, 7, 5)[:blocks], terms=(2, 1, 1)[:blocks])
    weights = rng.uniform(0.1, 2.0, M.shape[0])
    H = (M.T @ sp.diags(weights) @ M).toarray() + np.eye(M.shape[1])
    factor = blocked.factor(M, weights, q1=80, k1=2)
    assert factor.logdet == pytest.approx(np.linalg.slogdet(H)[1], rel=1e-12)
    b = rng.normal(size=(M.shape[1], 3))
    np.testing.assert_allclose(factor.solve(b), np.linalg.solve(H, b), rtol=1e-10, atol=1e-12)
    dense = np.linalg.inv(H)
    rows, columns = np.nonzero(H)  # H's pattern: pairs that share a row, and each level's block
    np.testing.assert_allclose(factor.selected_inverse().at(rows, columns), dense[rows, columns], rtol=1e-9, atol=1e-12)
