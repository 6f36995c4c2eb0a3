"""What both kinds of fit print and report alike: the random effects' tables and text tables.

The exact fit (:mod:`bayesmix.mixedfit`) and the NUTS summary (:mod:`bayesmix.nuts.summary`) both read
these, so neither engine's result type imports the other's.
"""

from __future__ import annotations

import pandas as pd

from bayesmix.design.encode import Design

INTERVAL = 0.95  # the central interval every table and plot reports, for both kinds of fit


def ranef_to_dict(frame: pd.DataFrame) -> dict:
    """A (level, term)-indexed frame of condval/condsd -> the contract's per-group dict."""
    levels = list(dict.fromkeys(frame.index.get_level_values("level")))
    terms = list(dict.fromkeys(frame.index.get_level_values("term")))
    out = {"levels": levels, "terms": terms, "condval": {}, "condsd": {}}
    for term in terms:
        part = frame.xs(term, level="term").reindex(levels)
        out["condval"][term] = part["condval"].tolist()
        out["condsd"][term] = part["condsd"].tolist()
    return out


def ranef_frames(design: Design, modes, sds, lower=None, upper=None) -> dict[str, pd.DataFrame]:
    """Per grouping factor, a (level, term) frame with condval and condsd (blocks of a group merged),
    and lower/upper interval bounds when given.

    ``modes``, ``sds``, ``lower``, ``upper``: lists of (M, k) arrays in the design's block order.
    """
    parts: dict[str, list[pd.DataFrame]] = {}
    for i, (block, mode, sd) in enumerate(zip(design.blocks, modes, sds)):
        index = pd.MultiIndex.from_product([block.levels, block.terms], names=["level", "term"])
        columns = {"condval": mode.ravel(), "condsd": sd.ravel()}
        if lower is not None:
            columns.update(lower=lower[i].ravel(), upper=upper[i].ravel())
        parts.setdefault(block.group, []).append(pd.DataFrame(columns, index=index))
    return {group: pd.concat(frames) for group, frames in parts.items()}


def format_table(rows: list[list[str]], align_left: int = 2) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [c.ljust(w) if i < align_left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append(" " + "  ".join(cells).rstrip())
    return lines
