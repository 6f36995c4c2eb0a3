"""Penalised smooths as random-effect blocks: the bases of mgcv's ``s(x)`` in gamm4's mixed-model form.

A smooth f(x) = X beta with penalty lambda beta' S beta is a mixed model (Wood 2004; gamm4, brms): with
S = U D U' (eigenvalues D_+ > 0 on the penalised directions, 0 on the null space), the columns
X U_0 are fixed effects and X U_+ D_+^(-1/2) carry independent effects of one variance sigma_s^2 =
sigma^2 / lambda: a ``homdiag`` block of one level (:class:`bayesmix.design.covariance.HomogeneousDiagonal`).

The bases are mgcv's, so that a fit equals gamm4's: the thin-plate regression spline (``bs="tp"``,
mgcv's default; one covariate, second-order penalty, every distinct value a knot) and the cubic
regression spline (``bs="cr"``, knots spread through the distinct values), each with mgcv's
sum-to-zero constraint absorbed (``smoothCon(absorb.cons = TRUE)``) and its penalty scaled as
mgcv scales it. A basis is learned from the training data once (a frozen :class:`SmoothBasis`) and
evaluates new x the same way (mgcv's ``PredictMat``), so fitting and predicting share one map.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from bayesmix.errors import BayesmixError

TPRS_MAX_KNOTS = 2000  # mgcv's max.knots: above it mgcv draws knots at random; here the quantiles


@dataclass(frozen=True)
class SmoothSpec:
    """``s(x, k = 10, bs = "tp", by = f)`` as written: the covariate, the basis dimension, the basis
    type and a factor ``by`` (one smooth per level, mgcv's factor-by smooth). A factor-by smooth is
    expanded once the data's levels are known (:func:`expand_by_smooths`) into one smooth per
    ``level``, labelled as gamm4 labels them (``s(x):fa``)."""

    variable: str
    k: int = 10
    bs: str = "tp"
    by: str | None = None
    level: str | None = None

    @property
    def label(self) -> str:
        return f"s({self.variable})" + ("" if self.level is None else f":{self.by}{self.level}")

    @property
    def unexpanded(self) -> bool:
        """A factor-by smooth whose levels the data have not yet given."""
        return self.by is not None and self.level is None

    @property
    def n_random(self) -> int:
        """Penalised columns: k less the constraint and the one unpenalised (linear) direction."""
        return self.k - 2

    def fixed_names(self) -> list[str]:
        return [f"{self.label}Fx1"]  # gamm4's name, less its leading X

    def random_names(self) -> list[str]:
        return [f"{self.label}{j}" for j in range(1, self.n_random + 1)]

    def column_names(self) -> list[str]:
        """The columns the formula reads in place of the smooth: fixed, random and the one-level group."""
        return [*self.fixed_names(), *self.random_names(), self.label]

    def fixed_terms(self) -> str:
        return " + ".join(f"`{name}`" for name in self.fixed_names())

    def random_expr(self) -> str:
        """The penalised part's left-hand side: ``0 + s(x)1 + ... + s(x)8`` (a homdiag block of one level)."""
        return "0 + " + " + ".join(f"`{name}`" for name in self.random_names())


@dataclass(frozen=True)
class SmoothBasis:
    """A smooth's basis learned from the training x: ``raw(x)`` is mgcv's model matrix before the
    constraint; ``constraint`` the orthogonal map that absorbs it; ``fixed`` and ``random`` map the
    constrained columns to gamm4's fixed columns (X U_0) and random ones (X U_+ D_+^(-1/2))."""

    spec: SmoothSpec
    raw: object = field(repr=False)  # x -> (n, k) model matrix before the constraint
    constraint: np.ndarray = field(repr=False)  # (k, k - 1)
    penalty: np.ndarray = field(repr=False)  # (k - 1, k - 1), constrained and scaled as mgcv's
    fixed_map: np.ndarray = field(repr=False)  # (k - 1, null rank)
    random_map: np.ndarray = field(repr=False)  # (k - 1, penalised rank)

    def model_matrix(self, x) -> np.ndarray:
        """mgcv's constrained model matrix at x (``PredictMat``)."""
        return self.raw(np.asarray(x, dtype=float)) @ self.constraint

    def columns(self, x) -> tuple[np.ndarray, np.ndarray]:
        """(fixed columns, random columns) at x: gamm4's ``Xf`` and ``Xr``."""
        X = self.model_matrix(x)
        return X @ self.fixed_map, X @ self.random_map


def smooth_basis(spec: SmoothSpec, x) -> SmoothBasis:
    """Learn ``spec``'s basis from the training covariate x (mgcv's ``smoothCon`` then gamm4's
    ``smooth2random``)."""
    x = np.asarray(x, dtype=float)
    if spec.bs == "tp":
        raw, S = _thin_plate(x, spec.k)
    elif spec.bs == "cr":
        raw, S = _cubic_regression(x, spec.k)
    else:
        raise ValueError(f"s(bs = '{spec.bs}') is not available; bs = 'tp' (the default) or 'cr'")
    X = raw(x)
    S = S / (np.abs(S).sum(axis=0).max() / np.abs(X).sum(axis=1).max() ** 2)  # mgcv's scale.penalty
    Q = _sum_to_zero(X)
    X, S = X @ Q, Q.T @ S @ Q
    fixed_map, random_map = _mixed_model_maps(S, null_rank=1)
    return SmoothBasis(spec, raw, Q, S, fixed_map, random_map)


def _sum_to_zero(X: np.ndarray) -> np.ndarray:
    """The columns of the Householder Q of the constraint 1'X beta = 0 after its first (mgcv's
    absorb.cons: beta = Q[:, 1:] gamma)."""
    c = X.sum(axis=0)
    Q, _ = np.linalg.qr(c[:, None], mode="complete")
    return Q[:, 1:]


def _mixed_model_maps(S: np.ndarray, null_rank: int) -> tuple[np.ndarray, np.ndarray]:
    """gamm4's reparameterisation (mgcv's ``smooth2random``): S = U D U' with the eigenvalues in
    decreasing order; the penalised columns scaled by D^(-1/2), the null space's unscaled."""
    values, vectors = np.linalg.eigh(S)
    values, vectors = values[::-1], vectors[:, ::-1]
    rank = S.shape[0] - null_rank
    return vectors[:, rank:], vectors[:, :rank] / np.sqrt(values[:rank])


def _thin_plate(x: np.ndarray, k: int):
    """mgcv's thin-plate regression spline of one covariate, penalty order 2 (Wood 2003; mgcv's
    ``tprs_setup``): the radial basis eta(r) = r^3 / 12 at the knots (the distinct x, centred at x's
    mean) truncated to the k eigenvectors U of E = eta(|x_i - x_j|) of largest magnitude (in
    decreasing order of eigenvalue), constrained by T'U delta = 0 through mgcv's Householder
    factorisation (T = (1, x)), beside the two polynomials; each column scaled to root mean square 1
    over the data, as mgcv scales them (the penalty's scaling, and so the smooth's SD, follow)."""
    shift = float(np.mean(x))
    knots = np.unique(x) - shift
    if len(knots) > TPRS_MAX_KNOTS:
        knots = np.quantile(knots, np.linspace(0.0, 1.0, TPRS_MAX_KNOTS))
    if k > len(knots):
        raise ValueError(f"s(k = {k}) needs at least {k} distinct values of the covariate; it has {len(knots)}")
    E = np.abs(knots[:, None] - knots[None, :]) ** 3 / 12.0
    values, vectors = np.linalg.eigh(E)
    keep = np.argsort(-np.abs(values), kind="stable")[:k]
    keep = keep[np.argsort(-values[keep], kind="stable")]
    U, D = vectors[:, keep], values[keep]
    T = np.column_stack([np.ones_like(knots), knots])
    Z = _null_space_householder(T.T @ U)
    UZ = U @ Z
    S = np.zeros((k, k))
    S[: k - 2, : k - 2] = Z.T @ np.diag(D) @ Z

    unscaled = _ThinPlateColumns(shift, knots, UZ, np.ones(k))
    scale = np.sqrt(np.mean(unscaled(x) ** 2, axis=0))  # mgcv: every column of X to root mean square 1
    return _ThinPlateColumns(shift, knots, UZ, scale), S / np.outer(scale, scale)


@dataclass(frozen=True)
class _ThinPlateColumns:
    """x -> the thin-plate basis before the constraint (mgcv's ``Predict.matrix.tprs.smooth``)."""

    shift: float
    knots: np.ndarray = field(repr=False)
    UZ: np.ndarray = field(repr=False)
    scale: np.ndarray = field(repr=False)

    def __call__(self, values_x) -> np.ndarray:
        centred = np.asarray(values_x, dtype=float) - self.shift
        radial = np.abs(centred[:, None] - self.knots[None, :]) ** 3 / 12.0
        return np.column_stack([radial @ self.UZ, np.ones_like(centred), centred]) / self.scale


def _null_space_householder(A: np.ndarray) -> np.ndarray:
    """mgcv's ``QT``: A Q = [0, B] by Householder reflections from the right, A's first row moved
    onto the last column, the second onto the last two, ...; the null space of A is Q's first
    columns. Its particular basis (not just its span) sets mgcv's column scaling."""
    A = np.array(A, dtype=float)
    rows, k = A.shape
    Q = np.eye(k)
    for step in range(rows):
        m = k - step
        row = A[step, :m]
        u = row.copy()
        u[-1] += (1.0 if row[-1] >= 0 else -1.0) * np.linalg.norm(row)
        H = np.eye(k)
        H[:m, :m] -= 2.0 * np.outer(u, u) / (u @ u)
        A, Q = A @ H, Q @ H
    return Q[:, : k - rows]


def _cubic_regression(x: np.ndarray, k: int):
    """mgcv's cubic regression spline: k knots spread through the distinct x (``place.knots``), the
    coefficients the spline's values at the knots, a natural cubic spline between them and linear
    beyond, penalty the integrated squared second derivative D' B^-1 D."""
    knots = _place_knots(x, k)
    h = np.diff(knots)
    D = np.zeros((k - 2, k))
    B = np.zeros((k - 2, k - 2))
    for i in range(k - 2):
        D[i, i], D[i, i + 1], D[i, i + 2] = 1.0 / h[i], -1.0 / h[i] - 1.0 / h[i + 1], 1.0 / h[i + 1]
        B[i, i] = (h[i] + h[i + 1]) / 3.0
        if i < k - 3:
            B[i, i + 1] = B[i + 1, i] = h[i + 1] / 6.0
    F = np.zeros((k, k))
    F[1:-1] = np.linalg.solve(B, D)  # second derivatives at the knots (0 at the ends) from the values
    S = D.T @ np.linalg.solve(B, D)

    return _CubicColumns(knots, F), S


@dataclass(frozen=True)
class _CubicColumns:
    """x -> the cubic regression spline's basis before the constraint (values at the knots)."""

    knots: np.ndarray = field(repr=False)
    F: np.ndarray = field(repr=False)

    def __call__(self, values_x) -> np.ndarray:
        return _cubic_values(np.asarray(values_x, dtype=float), self.knots, self.F)


def _place_knots(x: np.ndarray, k: int) -> np.ndarray:
    """mgcv's ``place.knots``: k knots evenly spread through the sorted distinct values."""
    values = np.unique(x)
    n = len(values)
    if k > n:
        raise ValueError(f"s(k = {k}) needs at least {k} distinct values of the covariate; it has {n}")
    delta = (n - 1) / (k - 1)
    steps = delta * np.arange(1, k - 1)
    lower = np.floor(steps).astype(int)
    fraction = steps - lower
    inner = values[lower] * (1 - fraction) + values[np.minimum(lower + 1, n - 1)] * fraction
    return np.concatenate([[values[0]], inner, [values[-1]]])


def _cubic_values(x: np.ndarray, knots: np.ndarray, F: np.ndarray) -> np.ndarray:
    """(n, k): the cubic regression spline at x as a linear map of its knot values (the value and
    second-derivative interpolation of each interval; beyond the end knots the tangent line)."""
    k, out = len(knots), np.zeros((len(x), len(knots)))
    j = np.clip(np.searchsorted(knots, x, side="right") - 1, 0, k - 2)
    h = knots[j + 1] - knots[j]
    inside = (x >= knots[0]) & (x <= knots[-1])
    right, left = knots[j + 1] - x, x - knots[j]
    rows = np.arange(len(x))
    a_minus, a_plus = right / h, left / h
    c_minus = (right**3 / h - h * right) / 6.0
    c_plus = (left**3 / h - h * left) / 6.0
    out[rows[inside], j[inside]] += a_minus[inside]
    out[rows[inside], j[inside] + 1] += a_plus[inside]
    out[inside] += c_minus[inside, None] * F[j[inside]] + c_plus[inside, None] * F[j[inside] + 1]
    for end, side in ((0, x < knots[0]), (k - 1, x > knots[-1])):
        if side.any():  # value at the end knot plus its slope times the distance
            slope = _end_slope(knots, F, end)
            out[side] += np.eye(k)[end] + (x[side] - knots[end])[:, None] * slope
    return out


def _end_slope(knots: np.ndarray, F: np.ndarray, end: int) -> np.ndarray:
    """(k,): the spline's first derivative at an end knot as a linear map of the knot values."""
    k = len(knots)
    j = 0 if end == 0 else k - 2
    h = knots[j + 1] - knots[j]
    unit = np.eye(k)
    if end == 0:  # d/dx at x = knots[0]: (b1 - b0)/h - h (2 f0 + f1) / 6, with f0 = 0
        return (unit[1] - unit[0]) / h - h * (2.0 * F[0] + F[1]) / 6.0
    return (unit[k - 1] - unit[k - 2]) / h + h * (F[k - 2] + 2.0 * F[k - 1]) / 6.0


def learn_smooths(smooths, frame) -> dict[str, SmoothBasis]:
    """Each smooth's basis from the model frame's covariate (the complete rows, as mgcv's). The
    levels of a factor-by smooth share one basis, learned (its constraint too) from every row
    whatever its level, as mgcv's ``smoothCon`` learns it before multiplying by each level's
    indicator."""
    bases, learned = {}, {}
    for spec in smooths:
        column = frame[spec.variable]
        if not np.issubdtype(np.asarray(column).dtype, np.number) or np.asarray(column).dtype == bool:
            raise BayesmixError(f"{spec.label} smooths a numeric covariate; '{spec.variable}' is {column.dtype}.")
        key = (spec.variable, spec.k, spec.bs, spec.by)
        try:
            if key not in learned:
                learned[key] = smooth_basis(spec, np.asarray(column, dtype=float))
        except ValueError as exc:
            raise BayesmixError(f"{spec.label}: {exc}. Give a smaller k, e.g. s({spec.variable}, k = 4).") from None
        bases[spec.label] = replace(learned[key], spec=spec)
    return bases


def with_smooth_columns(frame, bases: dict[str, SmoothBasis]):
    """A copy of ``frame`` with each smooth's columns (fixed, random, and its one-level group); a
    factor-by smooth's columns are zero on the rows of the other levels."""
    frame = frame.copy()
    for label, basis in bases.items():
        spec = basis.spec
        fixed, random = basis.columns(np.asarray(frame[spec.variable], dtype=float))
        if spec.by is not None:
            _check_by_levels(frame[spec.by], spec, bases)
            indicator = (frame[spec.by].astype(object).astype(str) == spec.level).to_numpy(dtype=float)
            fixed, random = fixed * indicator[:, None], random * indicator[:, None]
        for name, values in zip(spec.fixed_names() + spec.random_names(), [*fixed.T, *random.T]):
            frame[name] = values
        frame[label] = label
    return frame


def _check_by_levels(column, spec: SmoothSpec, bases) -> None:
    """New data whose ``by`` factor has a level the smooths were not learned for: refused (no smooth of it)."""
    known = {b.spec.level for b in bases.values() if b.spec.by == spec.by and b.spec.variable == spec.variable}
    unseen = sorted(set(column.astype(object).astype(str)) - known)
    if unseen:
        raise BayesmixError(
            f"s({spec.variable}, by = {spec.by}) has a smooth for the levels {sorted(known)} of '{spec.by}'; the "
            f"data have {unseen[:5]}, which it has no smooth for."
        )


def expand_by_smooths(smooths, levels: dict[str, tuple]) -> tuple[list[SmoothSpec], list[SmoothSpec]]:
    """(every smooth with each factor-by smooth replaced by one per level of its factor, the new
    per-level smooths); ``levels``: each by factor's level names in order."""
    out, added = [], []
    for spec in smooths:
        if not spec.unexpanded:
            out.append(spec)
            continue
        per_level = [replace(spec, level=str(level)) for level in levels[spec.by]]
        out.extend(per_level)
        added.extend(per_level)
    return out, added
