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


def test_permuted_factor_merges_one_factor_across_predictors():
    """A site's effect on the mean and on the zero process (two blocks of one factor, columns
    0..39 and 47..86 here, with a crossed block between): the permuted factor puts them in one
    2 x 2 block per site and still equals dense algebra in H's own order."""
    rng = np.random.default_rng(2)
    n, m = 300, 40
    codes, other = rng.integers(0, m, n), rng.integers(0, 7, n)
    rows = np.arange(n)
    mean = sp.csr_matrix((rng.normal(size=n), (rows, codes)), shape=(n, m))
    crossed = sp.csr_matrix((rng.normal(size=n), (rows, other)), shape=(n, 7))
    zero = sp.csr_matrix((rng.normal(size=n), (rows, codes)), shape=(n, m))
    M = sp.hstack([mean, crossed, zero]).tocsr()
    A = (M.T @ sp.diags(rng.uniform(0.1, 2.0, n)) @ M).tocsr()
    A = A + sp.csr_matrix((np.full(m, 0.3), (np.arange(m), 47 + np.arange(m))), shape=A.shape)  # mean-zero coupling
    A = (A + A.T) / 2
    order = np.concatenate([np.column_stack([np.arange(m), 47 + np.arange(m)]).ravel(), 40 + np.arange(7)])
    factor = blocked.PermutedFactor.of(A.tocsr(), order, q1=2 * m, k1=2)
    H = A.toarray() + np.eye(A.shape[0])
    assert factor.logdet == pytest.approx(np.linalg.slogdet(H)[1], rel=1e-12)
    b = rng.normal(size=A.shape[0])
    np.testing.assert_allclose(factor.solve(b), np.linalg.solve(H, b), rtol=1e-10, atol=1e-12)
    dense = np.linalg.inv(H)
    pattern_rows, pattern_columns = np.nonzero(H)
    np.testing.assert_allclose(
        factor.selected_inverse().at(pattern_rows, pattern_columns),
        dense[pattern_rows, pattern_columns],
        rtol=1e-9,
        atol=1e-12,
    )
    assert factor.inner.schur[0].shape == (7, 7)  # only the crossed block is dense
