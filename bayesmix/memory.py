"""The memory budget: the largest array bayesmix will allocate, checked before allocating it.

Where bayesmix builds arrays whose size grows with a product of the data's dimensions (the
fixed-effects matrix, a block's term matrix, the exact engines' dense parts, the NUTS draws and the
pointwise log-likelihood), it first asks :func:`check` whether the array fits the budget. A model
that does not fit raises :class:`~bayesmix.errors.BayesmixError` naming the array, its shape, its
size, the budget and the fix, before any memory is taken.

The budget (default :data:`DEFAULT_BUDGET_GB` = 4 GB, 1 GB = 10^9 bytes) is, in order of precedence:
:func:`set_memory_budget`, the environment variable ``BAYESMIX_MEMORY_BUDGET_GB``, the default.
"""

from __future__ import annotations

import math
import os

from bayesmix.errors import BayesmixError

DEFAULT_BUDGET_GB = 4.0
ENV_VAR = "BAYESMIX_MEMORY_BUDGET_GB"
DOUBLE = 8  # bytes per float64

_budget_gb: float | None = None


def _as_budget(value, where: str) -> float:
    try:
        gb = float(value)
    except (TypeError, ValueError):
        raise BayesmixError(f"The memory budget ({where}) must be a number of GB, not {value!r}.") from None
    if not math.isfinite(gb) or gb <= 0:
        raise BayesmixError(f"The memory budget ({where}) must be a positive number of GB, not {value!r}.")
    return gb


def set_memory_budget(gb: float | None) -> None:
    """Set the memory budget in GB (10^9 bytes) for this process; ``None`` goes back to the
    environment variable ``BAYESMIX_MEMORY_BUDGET_GB`` or the default of 4 GB."""
    global _budget_gb
    _budget_gb = None if gb is None else _as_budget(gb, "set_memory_budget")


def memory_budget() -> int:
    """The budget in bytes."""
    if _budget_gb is not None:
        return int(_budget_gb * 1e9)
    text = os.environ.get(ENV_VAR, "").strip()
    gb = _as_budget(text, f"environment variable {ENV_VAR}") if text else DEFAULT_BUDGET_GB
    return int(gb * 1e9)


def format_bytes(n: float) -> str:
    """``40.0 GB``, ``512.0 MB``, ``3.2 kB``, ``12 bytes``."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{int(n)} bytes"


def check(what: str, shape: tuple[int, ...], fix: str, bytes_per_value: int = DOUBLE, unit: str = "doubles") -> None:
    """Raise BayesmixError when an array of ``shape`` would exceed the budget.

    what: the array, as a user would recognise it ("the fixed-effects matrix X").
    fix: what the user can change, as a sentence.
    """
    values = math.prod(int(s) for s in shape)
    size = values * bytes_per_value
    budget = memory_budget()
    if size > budget:
        dims = " x ".join(f"{int(s):,}" for s in shape)
        raise BayesmixError(
            f"{what} would be {dims} {unit} = {format_bytes(size)}, above the memory budget of "
            f"{format_bytes(budget)} (bayesmix.set_memory_budget(gb) or the environment variable {ENV_VAR} "
            f"raise it). {fix}"
        )


def fits(shape: tuple[int, ...], bytes_per_value: int = DOUBLE) -> bool:
    """Whether an array of ``shape`` fits the budget (for optional outputs that are skipped, not refused)."""
    return math.prod(int(s) for s in shape) * bytes_per_value <= memory_budget()
