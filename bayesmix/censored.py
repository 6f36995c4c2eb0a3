"""Censored rows for the Laplace engine: log P(Y <= y), log P(Y > y) and log P(a < Y <= b), with
their first two derivatives in the linear predictor eta (brms's ``cens()``; NUTS reads the same
CDFs through :mod:`bayesmix.families`).

Each family gives its tails as (log P, P'/P, P''/P) in eta, from which a censored row's terms are
d1 = P'/P and d2 = P''/P - (P'/P)^2, in log space so that far tails stay finite:

- gaussian (and lognormal on log y): P = Phi(w), w = +-(t - eta) / sigma, and with the inverse
  Mills ratio lambda = phi(w) / Phi(w): P'/P = -+lambda / sigma, P''/P = -w lambda / sigma^2;
- weibull (exponential: shape 1), z = (t / scale)^k: the survival e^(-z) has P'/P = k z and
  P''/P = k^2 z (z - 1); the CDF 1 - e^(-z) has P'/P = -k z / (e^z - 1) and P''/P =
  -k^2 z (z - 1) / (e^z - 1).

An interval P(a < Y <= b) is F(b) - F(a) in the lower tails (or S(a) - S(b) in the upper tails
where F(a) > 1/2, against cancellation), scaled by its larger term.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln, log_ndtr

LOG_2PI = float(np.log(2 * np.pi))
LAPLACE_CENSORABLE = ("gaussian", "lognormal", "weibull", "exponential")
NONE, LEFT, RIGHT, INTERVAL = 0, 1, 2, 3  # bayesmix.design.encode's CENSORING codes


def _normal_tail(z, sigma, upper: bool):
    w = -z if upper else z
    log_p = log_ndtr(w)
    mills = np.exp(-0.5 * w * w - 0.5 * LOG_2PI - log_p)
    return log_p, (mills if upper else -mills) / sigma, -w * mills / sigma**2


def _weibull_tail(t, log_scale, k, upper: bool):
    z = np.exp(k * (np.log(t) - log_scale))
    if upper:
        return -z, k * z, k**2 * z * (z - 1.0)
    ratio = z / np.expm1(z)
    return np.log(-np.expm1(-z)), -k * ratio, -(k**2) * (z - 1.0) * ratio


def tail(family: str, t, eta, params, upper: bool):
    """(log P, P'/P, P''/P) of P = P(Y <= t) (or P(Y > t) with ``upper``) as functions of eta."""
    if family == "gaussian":
        return _normal_tail((t - eta) / params["sigma"], params["sigma"], upper)
    if family == "lognormal":
        return _normal_tail((np.log(t) - eta) / params["sigma"], params["sigma"], upper)
    if family == "weibull":
        k = params["shape"]
        return _weibull_tail(t, eta - gammaln(1.0 + 1.0 / k), k, upper)
    return _weibull_tail(t, eta, 1.0, upper)  # exponential: scale = mean


def _interval(family: str, a, b, eta, params):
    """(ll, d1, d2) of log P(a < Y <= b)."""
    lower = tail(family, a, eta, params, False)[0] < np.log(0.5)  # F(a) < 1/2: the lower tails
    fa, fb = tail(family, a, eta, params, False), tail(family, b, eta, params, False)
    sa, sb = tail(family, a, eta, params, True), tail(family, b, eta, params, True)
    big = [np.where(lower, x, y) for x, y in zip(fb, sa)]  # the larger term of the difference
    small = [np.where(lower, x, y) for x, y in zip(fa, sb)]
    share = np.exp(small[0] - big[0])
    rest = -np.expm1(small[0] - big[0])
    d1 = (big[1] - small[1] * share) / rest
    d2 = (big[2] - small[2] * share) / rest - d1**2
    return big[0] + np.log(rest), d1, d2


def censored_terms(family: str, eta, y, upper, codes, params, ll, d1, d2):
    """The Laplace terms (ll, d1, d2) with each censored row's replaced by its tail probability's;
    ``ll, d1, d2``: the density's terms for every row (kept where the code is NONE)."""
    ll, d1, d2 = (np.array(np.broadcast_to(a, np.shape(eta)), dtype=float) for a in (ll, d1, d2))
    for code in (LEFT, RIGHT, INTERVAL):
        rows = codes == code
        if not rows.any():
            continue
        part = {name: (value[rows] if np.ndim(value) else value) for name, value in params.items()}
        if code == INTERVAL:
            ll[rows], d1[rows], d2[rows] = _interval(family, y[rows], upper[rows], eta[rows], part)
        else:
            log_p, r1, r2 = tail(family, y[rows], eta[rows], part, code == RIGHT)
            ll[rows], d1[rows], d2[rows] = log_p, r1, r2 - r1**2
    return ll, d1, d2
