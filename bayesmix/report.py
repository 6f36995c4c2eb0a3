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


def submodels_to_dict(tables: dict[str, pd.DataFrame]) -> dict:
    """The JSON contract's ``zi`` and ``dispersion``: ``{fixef: {names, estimate, se}, varcorr}`` of
    each one-sided formula's coefficients (link scale), None where the model has none."""
    out = {}
    for role in ("zi", "dispersion"):
        table = tables.get(role)
        out[role] = (
            None
            if table is None
            else {
                "fixef": {
                    "names": [str(name) for name in table.index],
                    "estimate": table["estimate"].astype(float).tolist(),
                    "se": table["se"].astype(float).tolist(),
                },
                "varcorr": [],
            }
        )
    return out


def format_submodels(tables: dict[str, pd.DataFrame], parameters: dict[str, str], interval: str) -> list[str]:
    """Summary lines of each one-sided formula's coefficients (``parameters``: role -> parameter,
    for the heading; ``interval``: the columns' heading for the bounds, when the table has them)."""
    lines = []
    for role, table in tables.items():
        link = "logit" if role == "zi" else "log"
        lines += ["", f"{role} model ({parameters[role]}, {link} link):"]
        bounds = "lower" in table.columns
        rows = [
            ["", "Estimate", "Std. Error" if not bounds else "Est.Error"] + ([*interval.split("|")] if bounds else [])
        ]
        for name, r in table.iterrows():
            row = [str(name), f"{r.estimate:.4g}", f"{r.se:.4g}"]
            rows.append(row + ([f"{r.lower:.4g}", f"{r.upper:.4g}"] if bounds else []))
        lines += format_table(rows, align_left=1)
    return lines


def family_params_to_dict(params: dict) -> dict | None:
    """The JSON contract's ``family_params``: the family's own parameters by bayesmix's names, and
    the negative binomial's alpha also as ``theta``, the name glmmTMB (nbinom2) and MASS give it."""
    if not params:
        return None
    out = {name: float(value) for name, value in params.items()}
    if "alpha" in out:
        out["theta"] = out["alpha"]
    return out
