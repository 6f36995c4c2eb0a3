"""The Hilbert-space approximation of a distance structure's Gaussian process (Solin and Särkkä
2020; Riutort-Mayol et al. 2023), for sampling a block with many positions.

A block ``exp(pos + 0 | g)``, ``gau(...)``, ``ou(...)`` or ``mat(...)`` with k positions has a
k x k correlation whose Cholesky factor costs O(k^3) at every gradient of NUTS. Above
:data:`MIN_POSITIONS` positions the sampler instead writes the covariance as the low-rank
s^2 Phi diag(S(omega)) Phi': Phi (k x m) the Laplacian's eigenfunctions on a box of half-widths
L = c x the positions' half-range, evaluated at the positions (fixed: they do not depend on the
parameters), and S the kernel's spectral density at the eigenfrequencies omega. Each level then
has m standard-normal coefficients and its k effects are Phi (sqrt(S) * z) s: O(k m) per gradient.

The eigenfunctions and eigenvalues are PyMC's (``pymc.gp.hsgp_approx``, what its ``HSGP`` uses);
the spectral densities are written here, once for numpy and PyTensor, because PyMC has none for
the exponential kernel nor for a Matérn of estimated smoothness, and because they are glmmTMB's
parameterisations: exp(-d / r) is a Matérn of smoothness 1/2 and scale r, glmmTMB's ``mat`` has
C(d) = 2^(1 - kappa) / Gamma(kappa) (d / r)^kappa K_kappa(d / r), and ``gau`` is exp(-(d / r)^2),
PyMC's ExpQuad with length scale r / sqrt(2).

Only the sampler approximates; the exact engine always uses the exact correlation. The
approximation is good where the range is neither much shorter than the basis resolves (L / m)
nor much longer than the box (L): :func:`approximation_error` measures it at a range, and the
sampler warns after sampling when the posterior's range lands where it is poor.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from bayesmix.errors import BayesmixError

MIN_POSITIONS = 300  # "auto" approximates a block with more positions than this
DEFAULT_BOUNDARY = 1.5  # the least c: the box's half-width over the positions' half-range
TOLERANCE = 0.05  # largest acceptable error of an approximate correlation


@dataclass(frozen=True)
class HilbertSettings:
    """m: basis functions per coordinate (their product is the rank); c: the boundary factor."""

    m: tuple[int, ...]
    c: float

    @property
    def rank(self) -> int:
        return int(np.prod(self.m))


@dataclass(frozen=True)
class HilbertBasis:
    """The fixed part of the approximation at a block's positions: ``phi`` (k, m) the
    eigenfunctions, ``omega2`` (m,) the squared norms of their frequencies (the Laplacian's
    eigenvalues), ``L`` the box's half-widths and ``center`` its centre."""

    phi: np.ndarray
    omega2: np.ndarray
    L: np.ndarray
    center: np.ndarray


def basis(positions: np.ndarray, settings: HilbertSettings) -> HilbertBasis:
    """PyMC's eigenfunctions at the positions (centred at the midpoint of their range, as
    ``HSGP.prior_linearized`` centres them), on the box ``c`` times their half-range."""
    from pymc.gp.hsgp_approx import calc_eigenvalues, calc_eigenvectors

    positions = np.asarray(positions, dtype=float)
    center = (positions.max(axis=0) + positions.min(axis=0)) / 2.0
    half_range = (positions.max(axis=0) - positions.min(axis=0)) / 2.0
    L = settings.c * np.where(half_range > 0, half_range, 1.0)
    eigenvalues = calc_eigenvalues(L, list(settings.m))
    phi = calc_eigenvectors(positions - center, L, eigenvalues, list(settings.m)).eval()
    return HilbertBasis(np.asarray(phi, dtype=float), eigenvalues.sum(axis=1), L, center)


def log_spectral_density(kind: str, omega2, dims: int, r, kappa=None, xp=np, gammaln=None):
    """log S(omega) of the unit-variance correlation ``kind`` at squared frequencies ``omega2``
    in ``dims`` dimensions (the Fourier transform of the correlation, so that
    C(d) = (2 pi)^-dims int S(omega) cos(omega . d) domega). ``gammaln``: the log-gamma of ``xp``
    (needed for ``mat`` only, whose smoothness may be a tensor)."""
    if kind == "gau":  # exp(-(d/r)^2) = ExpQuad(ls = r / sqrt 2): pi^(D/2) r^D exp(-r^2 omega^2 / 4)
        return 0.5 * dims * np.log(np.pi) + dims * xp.log(r) - r**2 * omega2 / 4.0
    if kind == "mat":
        nu = kappa
        constant = gammaln(nu + dims / 2.0) - gammaln(nu)
    else:  # exp, ou: the Matérn of smoothness 1/2
        nu = 0.5
        from scipy.special import gammaln as scalar_gammaln

        constant = float(scalar_gammaln(0.5 + dims / 2.0) - scalar_gammaln(0.5))
    # 2^D pi^(D/2) Gamma(nu + D/2) / Gamma(nu) r^D (1 + r^2 omega^2)^-(nu + D/2), a = 1 / r
    return (
        dims * np.log(2.0)
        + 0.5 * dims * np.log(np.pi)
        + constant
        + dims * xp.log(r)
        - (nu + dims / 2.0) * xp.log1p(r**2 * omega2)
    )


def factor(kind: str, hilbert: HilbertBasis, s, r, kappa=None, xp=np, gammaln=None):
    """The (k, m) approximate factor s Phi diag(sqrt(S(omega))): the covariance is its product
    with its transpose (numpy or PyTensor, as ``xp``)."""
    dims = hilbert.L.shape[0]
    log_s = log_spectral_density(kind, hilbert.omega2, dims, r, kappa, xp, gammaln)
    return s * hilbert.phi * xp.exp(0.5 * log_s)[None, :]


def draw_effects(covariance, s, r, kappa, z: np.ndarray) -> np.ndarray:
    """(S, n, k) effects of n new levels, one draw each from the approximate prior the sampler
    used, Phi (sqrt(S(omega)) * z) s, given draws (S,) of s, r (and kappa) and standard normals
    z (S, n, m); never forms the (S, k, m) factor."""
    from scipy.special import gammaln

    hilbert = covariance.basis
    kappa = None if kappa is None else np.asarray(kappa)[:, None]
    log_s = log_spectral_density(
        covariance.kind, hilbert.omega2[None, :], hilbert.L.shape[0], np.asarray(r)[:, None], kappa, np, gammaln
    )
    weighted = z * (np.exp(0.5 * log_s) * np.asarray(s)[:, None])[:, None, :]
    return np.einsum("km,snm->snk", hilbert.phi, weighted)


def approximation_error(covariance, r: float, kappa: float | None = None) -> float:
    """The largest absolute difference between the approximate and the exact correlation over
    every pair of the block's positions (and each position with itself) at range r."""
    from scipy.special import gammaln

    approx = factor(covariance.kind, covariance.basis, 1.0, r, kappa, gammaln=gammaln)
    approx = approx @ approx.T
    exact = covariance.correlation(r) if kappa is None else covariance.correlation_at(r, kappa)
    return float(np.max(np.abs(approx - exact)))


def resolve(hsgp, covariance) -> HilbertSettings | None:
    """The settings for a distance block, or None (exact): ``hsgp`` is "auto" (approximate above
    :data:`MIN_POSITIONS` positions where the rank is below their number), True (every distance
    block), False (none), or a dict with ``m`` (an int, or one per coordinate), ``c`` and
    ``min_positions`` (default 0: every distance block). m and c not given come from
    :func:`default_settings`."""
    options = dict(hsgp) if isinstance(hsgp, dict) else {}
    unknown = set(options) - {"m", "c", "min_positions"}
    if unknown or not (isinstance(hsgp, dict) or hsgp in ("auto", True, False)):
        raise BayesmixError(
            f"hsgp= takes 'auto', True, False or a dict with m, c and min_positions; got {hsgp!r}. "
            "For example hsgp={'m': 30, 'c': 1.5}."
        )
    if hsgp is False or covariance is None:
        return None
    dims = covariance.positions.shape[1]
    default = default_settings(covariance.kind, covariance.positions, covariance.distances)
    m = options.get("m", default.m)
    m = tuple(int(v) for v in (m if np.ndim(m) else [m] * dims))
    c = float(options.get("c", default.c))
    if len(m) != dims or min(m) < 1 or c <= 1.0:
        raise BayesmixError(
            f"hsgp= needs m, one positive count per coordinate ({dims} here), and c above 1 "
            f"(1.5 to 5 is usual); got m={m}, c={c}."
        )
    settings, k = HilbertSettings(m, c), covariance.k
    if hsgp is True:
        return settings
    if isinstance(hsgp, dict):  # asked for: every block with more than min_positions positions
        return settings if k > int(options.get("min_positions", 0)) else None
    return settings if k > MIN_POSITIONS and settings.rank < k else None


# Riutort-Mayol et al.'s rules (PyMC's approx_hsgp_hyperparams): c = max(a1 l_max / S, 1.2) and
# m = a2 c S / l_min per coordinate of half-range S, for length scales l in [l_min, l_max]; the
# Matérn 3/2 constants stand in for the rougher exponential and for mat (PyMC has none for them)
RULES = {"gau": "expquad", "exp": "matern32", "ou": "matern32", "mat": "matern32"}
MAX_BASIS = {1: 120, 2: 30, 3: 10}  # per coordinate: the rank stays a few hundred
# ranges beyond a few half-ranges make a field nearly flat over the positions (an intercept); a
# box that wide would cost resolution at the short ranges the data can tell apart
MAX_BOUNDARY = 4.0


def default_settings(kind: str, positions: np.ndarray, distances: np.ndarray) -> HilbertSettings:
    """m and c for the range prior's central 68% (its median the median distance between
    positions, a factor e either way: bayesmix.bayes.priors), as PyMC's heuristic advises for that
    range of length scales (gau's length scale is r / sqrt 2, a Matérn's r sqrt(2 kappa) with
    kappa at its prior median 1), c at most :data:`MAX_BOUNDARY` (m scaled down with it), m at
    most :data:`MAX_BASIS` per coordinate."""
    from pymc.gp.hsgp_approx import approx_hsgp_hyperparams

    positions = np.asarray(positions, dtype=float)
    off = distances[~np.eye(len(distances), dtype=bool)]
    median = float(np.median(off[off > 0])) if np.any(off > 0) else 1.0
    scale = {"gau": 1.0 / np.sqrt(2.0), "mat": np.sqrt(2.0)}.get(kind, 1.0)
    lengths = [median * scale / np.e, median * scale * np.e]
    advised = []  # (m, c) per coordinate; one c for all (the widest asked, capped), m rescaled to it
    for column in positions.T:
        low, high = float(column.min()), float(column.max())
        advised.append(approx_hsgp_hyperparams([low, high], lengths, RULES[kind]) if high > low else (1, 1.2))
    c = min(max([DEFAULT_BOUNDARY] + [float(c_d) for _, c_d in advised]), MAX_BOUNDARY)
    cap = MAX_BASIS.get(positions.shape[1], 8)
    m = [int(min(max(np.ceil(m_d * c / c_d), 4), cap)) if m_d > 1 else 1 for m_d, c_d in advised]
    return HilbertSettings(tuple(m), c)


@functools.lru_cache(maxsize=32)
def _cached_basis(positions_bytes: bytes, shape: tuple, m: tuple, c: float) -> HilbertBasis:
    positions = np.frombuffer(positions_bytes, dtype=float).reshape(shape)
    return basis(positions, HilbertSettings(m, c))


def block_basis(positions: np.ndarray, settings: HilbertSettings) -> HilbertBasis:
    """:func:`basis`, computed once per set of positions and settings."""
    positions = np.ascontiguousarray(positions, dtype=float)
    return _cached_basis(positions.tobytes(), positions.shape, settings.m, settings.c)


DISTANCE_KINDS = ("exp", "gau", "ou", "mat")


def with_hilbert_bases(design, hsgp):
    """``design`` with each distance block's sampler approximation set as ``hsgp`` says
    (:func:`resolve`); the exact engine reads none of it."""
    resolve(hsgp, None)  # refuses a malformed hsgp= even where no block is a distance structure
    chosen = {
        block.label: resolve(hsgp, block.covariance)
        for block in design.all_blocks
        if block.covariance.kind in DISTANCE_KINDS
    }
    return with_settings(design, chosen)


def with_settings(design, chosen: dict):
    """``design`` with the blocks named in ``chosen`` ({label: HilbertSettings or None}) set so."""
    from dataclasses import replace

    def convert(block):
        covariance = block.covariance
        if block.label not in chosen or chosen[block.label] == covariance.hsgp:
            return block
        return replace(block, covariance=replace(covariance, hsgp=chosen[block.label]))

    changed = {"blocks": tuple(convert(block) for block in design.blocks)}
    if design.submodels:
        changed["submodels"] = {
            role: replace(predictor, blocks=tuple(convert(block) for block in predictor.blocks))
            for role, predictor in design.submodels.items()
        }
    return replace(design, **changed)


def settings_record(design) -> dict:
    """{label: {"m": [...], "c": c}} of the approximated blocks (what a saved model records)."""
    return {
        block.label: {"m": list(block.covariance.hsgp.m), "c": block.covariance.hsgp.c}
        for block in design.all_blocks
        if approximated(block)
    }


def from_record(design, record: dict):
    """:func:`settings_record`'s inverse: the design with those blocks approximated so."""
    return with_settings(design, {label: HilbertSettings(tuple(v["m"]), float(v["c"])) for label, v in record.items()})


def approximated(block) -> bool:
    """Whether the sampler approximates this block's covariance (:mod:`bayesmix.design.hilbert`)."""
    return getattr(block.covariance, "hsgp", None) is not None
