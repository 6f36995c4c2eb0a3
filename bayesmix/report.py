"""What both kinds of fit print and report alike: the random effects' tables and text tables.

The exact fit (:mod:`bayesmix.mixedfit`) and the NUTS summary (:mod:`bayesmix.nuts.summary`) both read
these, so neither engine's result type imports the other's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayesmix.design.covariance import LEVEL_TERM, LEVEL_TERM_STRUCTURES, ONE_SD_STRUCTURES
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


def submodel_formula_lines(design: Design, indent: str = "") -> list[str]:
    """``Zero inflation: ~ mined + (1 | site)`` and ``Dispersion: ~ x`` under the formula, as glmmTMB prints them."""
    heading = {"zi": "Zero inflation", "dispersion": "Dispersion"}
    return [f"{indent}{heading[sub.role]}: {sub.text}" for sub in design.spec.submodels]


def censoring_lines(design: Design, indent: str = "") -> list[str]:
    """``Censored: 168 left, 102 right, 44 interval (of 1000)`` under the formula, when rows are."""
    codes = getattr(design, "censoring", None)
    if codes is None:
        return []
    counts = [f"{int(np.sum(codes == code))} {name}" for code, name in ((1, "left"), (2, "right"), (3, "interval"))]
    return [f"{indent}Censored: {', '.join(counts)} (of {len(codes)} rows)"]


def block_key(block) -> str:
    """Where a block's effects are filed in ``ranef`` and named in ``varcorr``: its grouping factor
    for the mean's blocks, ``<role>|<group>`` for a zi= or dispersion= formula's (glmmTMB's
    ``ranef(fit)$zi``), since the same factor may group both."""
    return block.group if block.predictor == "mu" else f"{block.predictor}|{block.group}"


def ranef_frames(design: Design, modes, sds, lower=None, upper=None) -> dict[str, pd.DataFrame]:
    """Per grouping factor (:func:`block_key`), a (level, term) frame with condval and condsd (blocks
    of a group merged), and lower/upper interval bounds when given.

    ``modes``, ``sds``, ``lower``, ``upper``: lists of (M, k) arrays in the design's ``all_blocks`` order.
    """
    parts: dict[str, list[pd.DataFrame]] = {}
    for i, (block, mode, sd) in enumerate(zip(design.all_blocks, modes, sds)):
        # a block whose terms are levels (mm(), cov=): one intercept per level, as brms's ranef
        levels, terms = (block.members, block.report_terms) if block.members else (block.levels, block.terms)
        index = pd.MultiIndex.from_product([levels, terms], names=["level", "term"])
        columns = {"condval": mode.ravel(), "condsd": sd.ravel()}
        if lower is not None:
            columns.update(lower=lower[i].ravel(), upper=upper[i].ravel())
        parts.setdefault(block_key(block), []).append(pd.DataFrame(columns, index=index))
    return {group: pd.concat(frames) for group, frames in parts.items()}


def format_table(rows: list[list[str]], align_left: int = 2) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [c.ljust(w) if i < align_left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append(" " + "  ".join(cells).rstrip())
    return lines


def varcorr_to_dict(varcorr: list[dict], predictor: str = "mu") -> list[dict]:
    """The contract's ``varcorr`` entries of one linear predictor's blocks (the mean's by default)."""
    return [
        {
            "group": v["group"],
            "terms": list(v["terms"]),
            "sd": np.asarray(v["sd"], dtype=float).tolist(),
            "corr": np.asarray(v["corr"], dtype=float).tolist(),
        }
        | {key: v[key] for key in STRUCTURE_KEYS if key in v}
        for v in varcorr
        if v.get("predictor", "mu") == predictor
    ]


def ranef_dict(ranef: dict[str, pd.DataFrame], predictor: str = "mu") -> dict:
    """The contract's ``ranef`` of one linear predictor's blocks, keyed by grouping factor."""
    prefix = "" if predictor == "mu" else f"{predictor}|"
    return {
        key[len(prefix) :]: ranef_to_dict(frame)
        for key, frame in ranef.items()
        if ("|" not in key if predictor == "mu" else key.startswith(prefix))
    }


def submodels_to_dict(tables: dict[str, pd.DataFrame], varcorr: list[dict] = (), ranef: dict | None = None) -> dict:
    """The JSON contract's ``zi`` and ``dispersion``: ``{fixef: {names, estimate, se}, varcorr,
    ranef}`` of each one-sided formula (coefficients on the link scale, its blocks' SDs and
    correlations, their levels' effects), None where the model has none (a categorical model's
    per-category tables are its ``categories``)."""
    out = {}
    for role in ("zi", "dispersion"):
        table = tables.get(role)
        out[role] = (
            None
            if table is None
            else {
                "fixef": _fixef_dict(table),
                "varcorr": varcorr_to_dict(list(varcorr), role),
                "ranef": ranef_dict(ranef or {}, role),
            }
        )
    return out


STRUCTURED_ROWS = 8  # a structured block of more terms prints its first seven and a count
STRUCTURE_KEYS = (
    "structure",
    "rho",
    "range",
    "smoothness",
    "lags",
    "rank",
    "loadings",
)  # a structured block's in the contract


def structure_text(v: dict) -> str:
    """A structured block's parameter as the tables print it: ``0.62``, ``range 3.1``, ``lags 0.5 0.2``."""
    if "rho" in v:
        return f"{v['rho']:5.2f}"
    if "smoothness" in v:
        return f"range {v['range']:.3g}, smoothness {v['smoothness']:.3g}"
    if "range" in v:
        return f"range {v['range']:.3g}"
    if "rank" in v:
        return f"rank {v['rank']}"
    if v["structure"] in ONE_SD_STRUCTURES:
        return ""
    return "lags " + " ".join(f"{value:.2f}" for value in v["lags"])


def shown_terms(v: dict) -> tuple[list[str], int]:
    """A block's Name column and how many of its rows print: a one-SD block one row (its terms'
    range, as gamm4's; ``Intercept`` where the terms are the levels, as brms's mm() and gr()),
    a structured block of many terms its first seven and a count."""
    terms = list(v["terms"])
    if v.get("structure") in LEVEL_TERM_STRUCTURES:
        return [LEVEL_TERM], 1
    if v.get("structure") in ONE_SD_STRUCTURES:
        return [f"{terms[0]}..{terms[-1]}" if len(terms) > 1 else terms[0]], 1
    return terms, len(terms) if "structure" not in v or len(terms) <= STRUCTURED_ROWS else STRUCTURED_ROWS - 1


def format_varcorr(varcorr: list[dict], predictor: str = "mu", sigma: float | None = None) -> list[str]:
    """The random-effects table (SDs and correlations) of one linear predictor's blocks."""
    rows = [["Groups", "Name", "Variance", "Std.Dev.", "Corr"]]
    for v in varcorr:
        if v.get("predictor", "mu") != predictor:
            continue
        sd, corr = np.asarray(v["sd"]), np.asarray(v["corr"])
        terms, shown = shown_terms(v)
        for j, term in enumerate(terms[:shown]):
            correlations = " ".join(f"{corr[j][i]:5.2f}" for i in range(j))
            if "structure" in v:  # glmmTMB's way: the structure's one parameter, on the first row
                correlations = f"{structure_text(v)} ({v['structure']})".strip() if j == 0 else ""
            rows.append([v["group"] if j == 0 else "", term, f"{sd[j] ** 2:.4g}", f"{sd[j]:.4g}", correlations])
        if shown < len(terms):  # a structure's many positions: the rest in fit.varcorr
            rows.append(["", f"... {len(terms) - shown} more", "", "", ""])
    if sigma is not None:
        rows.append(["Residual", "", f"{sigma**2:.4g}", f"{sigma:.4g}", ""])
    return format_table(rows)


def submodel_headings(design: Design, family) -> dict[str, str]:
    """The heading of each further linear predictor's table: ``zi model (zi, logit link)``, or for a
    categorical response ``car vs bus (mucar, log odds)``."""
    if family.categorical:
        levels = design.codings.response_levels
        return {role: f"{level} vs {levels[0]} ({role}, log odds)" for role, level in zip(family.params, levels[1:])}
    links = {"zi": "logit", "dispersion": "log"}
    return {role: f"{role} model ({family.submodel_parameter(role)}, {links[role]} link)" for role in design.submodels}


def category_lines(design: Design, family) -> list[str]:
    """``Categories: bus (reference), car, train`` under the family, for a categorical response."""
    if not family.categorical:
        return []
    first, *rest = (str(level) for level in design.codings.response_levels)
    return [f" Categories: {first} (reference), {', '.join(rest)}"]


def categories_to_dict(
    design: Design, family, tables: dict[str, pd.DataFrame], varcorr: list[dict] = (), ranef: dict | None = None
) -> dict | None:
    """The JSON contract's ``categories``: a categorical response's levels, its reference, and per
    other category its predictor's ``{category, fixef, varcorr, ranef}`` (log odds against the
    reference); None for other families."""
    if not family.categorical:
        return None
    levels = [str(level) for level in design.codings.response_levels]
    return {
        "levels": levels,
        "reference": levels[0],
        "predictors": {
            role: {
                "category": level,
                "fixef": _fixef_dict(tables[role]),
                "varcorr": varcorr_to_dict(list(varcorr), role),
                "ranef": ranef_dict(ranef or {}, role),
            }
            for role, level in zip(family.params, levels[1:])
        },
        # (1 | p | g): one covariance over the categories' effects, terms named mu<level>_<term>
        "shared": {"varcorr": varcorr_to_dict(list(varcorr), "shared"), "ranef": ranef_dict(ranef or {}, "shared")},
    }


def fixef_dict(fixed: pd.DataFrame, design: Design, family, tables: dict[str, pd.DataFrame]) -> dict:
    """The contract's ``fixef``; a categorical response's coefficients as brms names them, each
    category's ``mu<level>_<coefficient>``, one after another."""
    if not family.categorical:
        return _fixef_dict(fixed)
    parts = [_fixef_dict(tables[role]) for role in family.params]
    names = [f"{role}_{name}" for role, part in zip(family.params, parts) for name in part["names"]]
    joined = {key: None if parts[0][key] is None else [v for part in parts for v in part[key]] for key in parts[0]}
    return {**joined, "names": names}


def varcorr_contract(varcorr: list[dict], family) -> list[dict]:
    """The contract's top-level ``varcorr``: the mean's blocks, or a categorical response's blocks of
    every category, their terms named ``mu<level>_<term>`` (brms's ``sd_g__mucar_Intercept``)."""
    if not family.categorical:
        return varcorr_to_dict(varcorr)
    own = [
        {**entry, "terms": [f"{role}_{term}" for term in entry["terms"]]}
        for role in family.params
        for entry in varcorr_to_dict(list(varcorr), role)
    ]
    return own + varcorr_to_dict(list(varcorr), "shared")


def _fixef_dict(table: pd.DataFrame) -> dict:
    """``{names, estimate, se, df, statistic, p_value}``: the tests' lists where the table has them
    (an exact fit's; a Wald z test's df is null), else null (a posterior's)."""
    out = {
        "names": [str(name) for name in table.index],
        "estimate": table["estimate"].astype(float).tolist() if len(table) else [],
        "se": table["se"].astype(float).tolist() if len(table) else [],
    }
    for key in ("df", "statistic", "p_value"):
        values = table[key].astype(float) if key in table.columns else None
        out[key] = None if values is None else [float(v) if np.isfinite(v) else None for v in values]
    return out


def format_submodels(
    tables: dict[str, pd.DataFrame], headings: dict[str, str], interval: str, varcorr: list[dict] = ()
) -> list[str]:
    """Summary lines of each further linear predictor: its random effects' SDs (where it has blocks)
    and its coefficients (``headings``: role -> its table's heading, :func:`submodel_headings`;
    ``interval``: the columns' heading for the bounds, when the table has them)."""
    lines = []
    for role, table in tables.items():
        lines += ["", f"{headings[role]}:"]
        if any(v.get("predictor", "mu") == role for v in varcorr):
            lines += [" Random effects:", *format_varcorr(list(varcorr), role), " Fixed effects:"]
        bounds = "lower" in table.columns
        rows = [
            ["", "Estimate", "Std. Error" if not bounds else "Est.Error"] + ([*interval.split("|")] if bounds else [])
        ]
        for name, r in table.iterrows():
            row = [str(name), f"{r.estimate:.4g}", f"{r.se:.4g}"]
            rows.append(row + ([f"{r.lower:.4g}", f"{r.upper:.4g}"] if bounds else []))
        lines += format_table(rows, align_left=1)
    if any(v.get("predictor") == "shared" for v in varcorr):  # (1 | p | g): effects correlated across categories
        lines += ["", "Random effects shared across categories (correlated):", *format_varcorr(list(varcorr), "shared")]
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


def thresholds_to_dict(table) -> dict | None:
    """The JSON contract's ``thresholds``: ``{names, estimate, se}`` of an ordinal model, else None."""
    if table is None:
        return None
    return {"names": [str(n) for n in table.index], "estimate": table["estimate"].tolist(), "se": table["se"].tolist()}


def threshold_lines(table, design) -> list[str]:
    """clmm's "Threshold coefficients" table, after the response's level order."""
    if table is None:
        return []
    levels = design.codings.response_levels
    rows = [["", "Estimate", "Std. Error", "z value"]]
    for name, r in table.iterrows():
        rows.append([str(name), f"{r.estimate:.4g}", f"{r.se:.4g}", f"{r.statistic:.3f}"])
    order = " < ".join(str(level) for level in levels)
    return ["", f"Threshold coefficients (response levels {order}):", *format_table(rows, align_left=1)]
