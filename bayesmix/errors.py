"""The one error type for user mistakes, and the warning classes users can filter.

Every mistake a user can make raises :class:`BayesmixError` before any PyMC work starts; the
message names the problem and the fix. Warnings are subclasses of :class:`BayesmixWarning`, so
``warnings.filterwarnings("ignore", category=bayesmix.DivergenceWarning)`` silences one kind.
"""

from __future__ import annotations

import difflib
import sys
import warnings


class BayesmixError(ValueError):
    """A user mistake: bad formula, bad data, unknown option. The message says how to fix it."""


class BayesmixWarning(UserWarning):
    """Base class of every warning bayesmix emits."""


class MissingDataWarning(BayesmixWarning):
    """Rows with missing values in used columns were dropped."""


class DivergenceWarning(BayesmixWarning):
    """NUTS reported divergent transitions: the posterior geometry was not explored reliably."""


class RhatWarning(BayesmixWarning):
    """Some parameter has R-hat above 1.01: the chains disagree."""


class LowESSWarning(BayesmixWarning):
    """Some parameter has a small effective sample size (bulk or tail)."""


class TreeDepthWarning(BayesmixWarning):
    """NUTS hit its maximum tree depth in many iterations."""


def did_you_mean(name: str, candidates) -> str:
    """Return ' Did you mean 'x'?' for the closest candidate, or '' when none is close."""
    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def caret(text: str, position: int) -> str:
    """Two lines: ``text`` and a caret under character ``position`` (0-based)."""
    position = max(0, min(position, len(text)))
    return f"    {text}\n    {' ' * position}^"


class SingularFitWarning(BayesmixWarning):
    """A variance component is estimated at the boundary (an SD at 0 or a correlation at +-1)."""


class ConvergenceWarning(BayesmixWarning):
    """The optimiser of an ML/REML/Laplace fit did not converge."""


class RankDeficientWarning(BayesmixWarning):
    """Columns of the fixed-effects matrix are linear combinations of others; they were dropped."""


class SamplingInterruptedWarning(BayesmixWarning):
    """Sampling was interrupted (Ctrl-C); the draws made so far were kept and are returned."""


def warn(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` pointed at the caller's own line: the first frame outside bayesmix, however
    many of bayesmix's frames lie between (a fixed ``stacklevel`` breaks whenever a call moves)."""
    frame, level = sys._getframe(1), 2
    while frame is not None and str(frame.f_globals.get("__name__", "")).split(".")[0] == "bayesmix":
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
