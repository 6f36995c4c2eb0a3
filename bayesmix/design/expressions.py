"""The functions a formula may call, and the evaluation of arithmetic expressions of columns.

One namespace serves every part of a formula: the response, ``offset(...)`` and ``offset=``
(evaluated here), and the fixed and random parts (evaluated by formulae, which gets the same
namespace), so ``log(x)`` means the same thing wherever it is written, on the training data and on
new data. It holds R's names for the elementwise functions an lme4 user writes (``log``, ``log1p``,
``exp``, ``sqrt``, ``abs``, ``round``...) and numpy as ``np``/``numpy``. R's ``^`` is a power in
arithmetic (``I(x^2)``) and in terms (``(a + b)^2``); formulae and Python spell both ``**``, so
:func:`r_syntax` rewrites it, with ``%in%`` (R's nesting, ``a %in% b`` is ``a:b``).
"""

from __future__ import annotations

import keyword
import re
import threading
from collections.abc import Mapping

import formulae
import numpy as np
import pandas as pd
from formulae.categorical import ContrastMatrix, Encoding, Sum, Treatment
from formulae.environment import Environment
from formulae.transforms import TRANSFORMS
from scipy.interpolate import BSpline

from bayesmix.errors import BayesmixError


def _log(x, base=None):
    """R's ``log(x, base = exp(1))``."""
    values = np.log(x)
    return values if base is None else values / np.log(base)


def _round(x, digits=0):
    """R's ``round(x, digits)``: halves to even, as IEC 60559 and numpy."""
    return np.round(x, int(digits))


def _signif(x, digits=6):
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore"):
        magnitude = np.where(x == 0, 0, np.floor(np.log10(np.abs(x))))
    factor = 10.0 ** (int(digits) - 1 - magnitude)
    return np.round(x * factor) / factor


class _RContrast(Encoding):
    """An R contrast: with no intercept in the model the first factor is coded by indicators, as R's
    ``model.matrix`` does whatever the contrast."""

    def code_with_intercept(self, levels):
        return ContrastMatrix(np.eye(len(levels)), [str(level) for level in levels])

    def code_without_intercept(self, levels):
        matrix = self.matrix(len(levels))
        return ContrastMatrix(matrix, self.labels(len(levels)))


class Helmert(_RContrast):
    """R's ``contr.helmert``: column j contrasts level j + 1 with the mean of the levels before it."""

    @staticmethod
    def matrix(n: int) -> np.ndarray:
        out = np.zeros((n, n - 1))
        for j in range(n - 1):
            out[: j + 1, j] = -1.0
            out[j + 1, j] = j + 1.0
        return out

    @staticmethod
    def labels(n: int) -> list[str]:
        return [str(j) for j in range(1, n)]


class Poly(_RContrast):
    """R's ``contr.poly`` (the default for ordered factors): orthonormal polynomials in the level
    index, named ``.L``, ``.Q``, ``.C``, ``^4``..."""

    @staticmethod
    def matrix(n: int) -> np.ndarray:
        scores = np.arange(1.0, n + 1) - (n + 1) / 2
        q, r = np.linalg.qr(np.vander(scores, n, increasing=True))
        z = q * np.sign(np.diag(r))  # R's qr.qy(QR, diag(R)) normalised: the sign convention cancels
        return z[:, 1:]

    @staticmethod
    def labels(n: int) -> list[str]:
        return [".L", ".Q", ".C", *(f"^{j}" for j in range(4, n))][: n - 1]


# contrasts by formulae's names and R's (C(x, Sum), C(x, contr.sum))
CONTRASTS = {
    "Treatment": Treatment,
    "Sum": Sum,
    "Helmert": Helmert,
    "Poly": Poly,
    "contr.treatment": Treatment,
    "contr.sum": Sum,
    "contr.helmert": Helmert,
    "contr.poly": Poly,
}


def _as_is(x):
    """R's I(): the value as it is (a formula's arithmetic inside it is arithmetic, not formula syntax)."""
    return x


FUNCTIONS = {
    "I": _as_is,
    "log": _log,
    "log1p": np.log1p,
    "log2": np.log2,
    "log10": np.log10,
    "exp": np.exp,
    "expm1": np.expm1,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "sign": np.sign,
    "round": _round,
    "signif": _signif,
    "floor": np.floor,
    "ceiling": np.ceil,
    "trunc": np.trunc,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "pmin": np.minimum,
    "pmax": np.maximum,
    "np": np,
    "numpy": np,
    **CONTRASTS,
}


# the contrast named as a later argument of C(...): C(x, Sum), C(x, contr.sum)
_CONTRAST_ARGUMENT = re.compile(r"\bC\s*\((?:[^()]|\([^()]*\))*?,\s*([A-Za-z_][\w.]*)")


def column_names(names, expr: str | None = None) -> set[str]:
    """formulae's ``var_names`` less the contrasts named in ``C(x, Sum)``, backticks removed. Given
    the expression, only a contrast's name used as C(...)'s argument is left out: elsewhere it is a
    column's (data may have a column named ``Sum``)."""
    contrasts = set(CONTRASTS) if expr is None else set(_CONTRAST_ARGUMENT.findall(expr)) & set(CONTRASTS)
    return {n.strip("`") for n in names if isinstance(n, str) and n and n not in contrasts}


_TOKEN = re.compile(r"`[^`]*`|%in%|\^|(?<![\w.])[^\W\d][\w.]*")


def r_syntax(expr: str) -> str:
    """``expr`` with R's ``^`` as ``**`` and ``a %in% b`` as ``a:b`` (text in backticks untouched)."""

    def swap(match):
        token = match.group()
        return {"^": "**", "%in%": ":"}.get(token, token)

    return _TOKEN.sub(swap, expr)


class _Namespace(Mapping):
    """Names an expression may use: the frame's columns (as float or object arrays), then FUNCTIONS."""

    def __init__(self, frame: pd.DataFrame, aliases: dict[str, str]):
        self._frame, self._aliases = frame, aliases

    def __getitem__(self, name):
        column = self._aliases.get(name, name)
        if column in self._frame.columns:
            return self._frame[column].to_numpy()
        return FUNCTIONS[name]

    def __iter__(self):
        return iter(FUNCTIONS)

    def __len__(self):
        return len(FUNCTIONS)


def _with_aliases(expr: str, columns) -> tuple[str, dict[str, str]]:
    """Every column name (backticked, or a plain R-style name such as ``my.var``) replaced by an
    identifier Python can read; the map back."""
    aliases: dict[str, str] = {}
    known = {str(c) for c in columns}

    def alias(match):
        token = match.group()
        name = token[1:-1] if token.startswith("`") else token
        if token.startswith("`") or (name in known and (not name.isidentifier() or keyword.iskeyword(name))):
            key = f"_bayesmix_column_{len(aliases)}"
            aliases[key] = name
            return key
        return {"^": "**"}.get(token, token)

    return _TOKEN.sub(alias, expr), aliases


def evaluate(frame: pd.DataFrame, expr: str, what: str) -> np.ndarray:
    """The values of ``expr`` (an arithmetic expression of columns) on ``frame``'s rows, as floats."""
    text, aliases = _with_aliases(expr, frame.columns)
    try:
        values = eval(compile(text, "<formula>", "eval"), {"__builtins__": {}}, _Namespace(frame, aliases))
    except KeyError as exc:
        raise BayesmixError(
            f"Cannot evaluate the {what} '{expr}': {exc.args[0]!r} is neither a column nor a function bayesmix "
            f"knows (functions: {', '.join(sorted(k for k in FUNCTIONS if k[0].islower() and '.' not in k))})."
        ) from None
    except Exception as exc:
        raise BayesmixError(
            f"Cannot evaluate the {what} '{expr}': {exc}. Use columns, arithmetic and functions."
        ) from None
    return _as_float(values, len(frame), expr, what)


def _as_float(values, n: int, expr: str, what: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1 or len(values) != n:
        raise BayesmixError(
            f"The {what} '{expr}' does not give one value per row (it gives {values.size}). "
            "Name a column (in backticks if it is not a plain name: `my column`) or an expression of columns."
        )
    if values.dtype == bool:
        values = values.astype(float)
    if not np.issubdtype(values.dtype, np.number):
        raise BayesmixError(
            f"The {what} '{expr}' is not numeric (dtype {values.dtype}). Convert it to numbers, e.g. 0/1 for a "
            "yes/no outcome."
        )
    out = values.astype(float)
    if not np.all(np.isfinite(out)):
        raise BayesmixError(
            f"The {what} '{expr}' has {int(np.sum(~np.isfinite(out)))} non-finite values (e.g. log of 0 or of a "
            "negative number). Remove those rows or change the expression."
        )
    return out


class RScale:
    """R's ``scale(x, center = TRUE, scale = TRUE)``: the SD divides by n - 1 (formulae's by n).
    Stateful as formulae's: the mean and SD learnt on the training rows are reused on new data."""

    __transform_name__ = "scale"
    __stateful_transform__ = True

    def __init__(self):
        self.params_set = False
        self.mean, self.sd = 0.0, 1.0

    def __call__(self, x, center=True, scale=True):
        x = np.asarray(x, dtype=float)
        if not self.params_set:
            self.mean = float(np.mean(x)) if center else 0.0
            if scale:  # R: the root mean square about the centre, over n - 1
                self.sd = float(np.sqrt(np.sum((x - self.mean) ** 2) / max(len(x) - 1, 1)))
            self.params_set = True
        return (x - self.mean) / self.sd


def _interior_knots(x: np.ndarray, count: int) -> np.ndarray:
    """R's default interior knots: quantiles at equal steps (R's type 7, numpy's default)."""
    return np.quantile(x, np.linspace(0, 1, count + 2)[1:-1]) if count > 0 else np.zeros(0)


def _spline_basis(knots: np.ndarray, x: np.ndarray, order: int, derivative: int = 0) -> np.ndarray:
    """R's ``splineDesign(knots, x, order, derivs)``: every B-spline of the full knot sequence at x."""
    count = len(knots) - order
    eye = np.eye(count)
    return np.column_stack(
        [BSpline(knots, eye[j], order - 1, extrapolate=True)(x, nu=derivative) for j in range(count)]
    )


class RBSpline:
    """R's ``splines::bs(x, df, knots, degree = 3, intercept = FALSE)``: the B-spline basis, its knots
    learnt on the training rows (formulae's ``bs`` spans the same space in another basis, so its
    coefficients are not R's)."""

    __transform_name__ = "bs"
    __stateful_transform__ = True

    def __init__(self):
        self.knots = None

    def __call__(self, x, df=None, knots=None, degree=3, intercept=False):
        x = np.asarray(x, dtype=float)
        degree = int(degree)
        if self.knots is None:
            interior = np.asarray(knots, dtype=float) if knots is not None else None
            if interior is None:
                interior = _interior_knots(x, (int(df) if df is not None else degree + 1) - degree - bool(intercept))
            bounds = np.array([x.min(), x.max()])
            self.knots = np.sort(np.concatenate([np.repeat(bounds, degree + 1), interior]))
            self.degree, self.intercept = degree, bool(intercept)
        basis = _spline_basis(self.knots, x, self.degree + 1)
        return basis if self.intercept else basis[:, 1:]


class RNaturalSpline:
    """R's ``splines::ns(x, df, knots, intercept = FALSE)``: the natural cubic spline basis (linear
    beyond the boundary knots), R's construction: the cubic B-splines projected off the second
    derivatives at the boundaries."""

    __transform_name__ = "ns"
    __stateful_transform__ = True

    def __init__(self):
        self.knots = None

    def __call__(self, x, df=None, knots=None, intercept=False):
        x = np.asarray(x, dtype=float)
        if self.knots is None:
            interior = np.asarray(knots, dtype=float) if knots is not None else None
            if interior is None:
                interior = _interior_knots(x, (int(df) if df is not None else 1) - 1 - bool(intercept))
            self.bounds = np.array([x.min(), x.max()])
            self.knots = np.sort(np.concatenate([np.repeat(self.bounds, 4), interior]))
            self.intercept = bool(intercept)
            const = _spline_basis(self.knots, self.bounds, 4, derivative=2)
            const = const if self.intercept else const[:, 1:]
            self.projection = np.linalg.qr(const.T, mode="complete")[0][:, 2:]
        inside = np.clip(x, *self.bounds)  # beyond the boundary knots: the tangent line, as R
        basis = _spline_basis(self.knots, inside, 4)
        slope = _spline_basis(self.knots, inside, 4, derivative=1)
        basis = basis + slope * (x - inside)[:, None]
        return (basis if self.intercept else basis[:, 1:]) @ self.projection


# R's versions of the transforms formulae also has, and R's that formulae lacks (see formulae_matrix)
R_TRANSFORMS = {"scale": RScale, "bs": RBSpline, "ns": RNaturalSpline}

_SWAP_LOCK = threading.Lock()


def formulae_matrix(expr: str, frame: pd.DataFrame):
    """formulae's design matrix of ``expr`` on ``frame``, evaluated in :data:`FUNCTIONS` with R's
    ``scale``, ``bs`` and ``ns``. formulae looks its own transforms up before any namespace it is
    given, so R's stand in for formulae's while the matrix is built; the fitted matrix keeps the
    transforms it was built with, so new data are encoded by the same ones."""
    env = Environment([FUNCTIONS])
    with _SWAP_LOCK:
        saved = {name: TRANSFORMS.get(name) for name in R_TRANSFORMS}
        TRANSFORMS.update(R_TRANSFORMS)
        try:
            return formulae.design_matrices(expr, frame, env=env).common
        finally:
            for name, transform in saved.items():
                if transform is None:
                    del TRANSFORMS[name]
                else:
                    TRANSFORMS[name] = transform


def contrast_name(value) -> str:
    """A contrast given as ``"sum"``, ``"contr.sum"``, ``"Sum"`` or formulae's class -> its key in
    :data:`CONTRASTS` (``"Sum"``)."""
    by_name = {key.lower().removeprefix("contr."): key for key in CONTRASTS if not key.startswith("contr.")}
    if isinstance(value, type) and value in CONTRASTS.values():
        return next(key for key, cls in CONTRASTS.items() if cls is value and not key.startswith("contr."))
    key = str(value).lower().removeprefix("contr.")
    if key not in by_name:
        raise BayesmixError(
            f"Unknown contrast {value!r}. Contrasts: {', '.join(f'contr.{k}' for k in by_name)} "
            "(or formulae's names: Treatment, Sum, Helmert, Poly)."
        )
    return by_name[key]


def with_contrasts(expr: str, contrasts: dict[str, str]) -> str:
    """``expr`` with each factor named in ``contrasts`` written ``C(name, Contrast)`` (where it is
    not already inside a ``C(...)`` call), so formulae codes it with that contrast."""
    if not contrasts:
        return expr

    def swap(match):
        token = match.group()
        name = token[1:-1] if token.startswith("`") else token
        if name not in contrasts or re.search(r"(?<![\w.])C\(\s*$", expr[: match.start()]):
            return token
        return f"C({token}, {contrasts[name]})"

    # a whole name (not a prefix of a longer one) that is not a function being called
    return re.sub(r"`[^`]*`|(?<![\w.])[^\W\d][\w.]*(?![\w.])(?!\s*\()", swap, expr)


def display_names(names, contrasts: dict[str, str]) -> tuple[str, ...]:
    """formulae's column names with the ``C(name, Contrast)`` that :func:`with_contrasts` wrote
    shown as the factor's name: ``temperature[.L]``, ``recipe[A]``."""
    out = []
    for name in names:
        for factor, contrast in contrasts.items():
            for written in (factor, f"`{factor}`"):
                name = name.replace(f"C({written}, {contrast})", factor)
        out.append(name)
    return tuple(out)
