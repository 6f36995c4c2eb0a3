"""brms's ``hypothesis()`` on a sampled model: each hypothesis a comparison of an expression of the
parameters with a number, evaluated draw by draw.

``hypothesis(model, ["Days > 5", "Intercept - 250 = 0"])``: per hypothesis ``left op right`` the
draws of ``left - right``, their mean (``Estimate``) and SD (``Est.Error``), and an interval
(``CI.Lower``, ``CI.Upper``): equal-tailed 1 - alpha for a point hypothesis (``=``), the alpha and
1 - alpha quantiles for a one-sided one (``<``, ``>``), as brms's. A one-sided hypothesis has its
posterior probability (``Post.Prob``) and the evidence ratio P(H) / P(not H) (``Evid.Ratio``); a
point hypothesis has the Savage-Dickey ratio of the posterior's density of ``left - right`` at 0 to
the prior's (``prior_draws``: ``model.prior_predictive(draws=4000)``, or a table of draws with
the same columns),
with the densities from Gaussian kernel estimates, as brms's (which uses logspline). ``Star`` marks
a one-sided hypothesis whose posterior probability exceeds 1 - alpha and a point hypothesis whose
interval excludes 0.

Parameters are named as :func:`bayesmix.after.confint.posterior_parameters` names them: the fixed
effects by coefficient (``Days``, ``Intercept``), ``sigma`` and the family's parameters, the SDs and
correlations (``sd[Subject:Days]``); a name that is not a Python name goes in backticks
(```period[2]` > 0``).
"""

from __future__ import annotations

import ast
import re

import numpy as np
import pandas as pd
from scipy.stats import gaussian_kde

from bayesmix.after.confint import group_parameters, posterior_parameters
from bayesmix.after.fit_view import view
from bayesmix.errors import BayesmixError, did_you_mean

_COMPARISON = re.compile(r"(<=|>=|=|<|>)")
_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd)


def hypothesis(model, hypotheses, alpha: float = 0.05, prior_draws=None, idata=None) -> pd.DataFrame:
    """One row per hypothesis (see the module docstring)."""
    source = view(model, idata, user="hypothesis")
    if not source.bayes:
        raise BayesmixError("hypothesis() reads posterior draws: pass a sampled Model (model.sample()).")
    if not 0.0 < float(alpha) < 0.5:
        raise BayesmixError(f"alpha must be between 0 and 0.5 (0.05 is brms's), not {alpha!r}.")
    draws = posterior_parameters(source)
    if prior_draws is not None and hasattr(prior_draws, "groups"):  # Model.prior_predictive()'s InferenceData
        if "prior" not in prior_draws.groups():
            raise BayesmixError("prior_draws needs the 'prior' group: pass model.prior_predictive(draws=...).")
        prior_draws = group_parameters(prior_draws.prior, source.design, source.family)
    texts = [hypotheses] if isinstance(hypotheses, str) else list(hypotheses)
    rows = [_row(text, draws, alpha, prior_draws) for text in texts]
    return pd.DataFrame(rows).set_index("Hypothesis")


def _row(text: str, draws: pd.DataFrame, alpha: float, prior_draws) -> dict:
    parts = _COMPARISON.split(text)
    if len(parts) != 3:
        raise BayesmixError(f"The hypothesis '{text}' needs one comparison: '=', '<' or '>' (e.g. 'Days > 5').")
    left, op, right = parts
    op = {"<=": "<", ">=": ">"}.get(op, op)
    difference = _evaluate(f"({left}) - ({right})", draws, text)
    one_sided = op != "="
    probs = (alpha, 1.0 - alpha) if one_sided else (alpha / 2.0, 1.0 - alpha / 2.0)
    low, high = np.quantile(difference, probs)
    row = {
        "Hypothesis": f"({left.strip()}) - ({right.strip()}) {op} 0",
        "Estimate": float(difference.mean()),
        "Est.Error": float(difference.std(ddof=1)),
        "CI.Lower": float(low),
        "CI.Upper": float(high),
    }
    if one_sided:
        holds = float(np.mean(difference > 0 if op == ">" else difference < 0))
        row["Evid.Ratio"] = holds / (1.0 - holds) if holds < 1.0 else np.inf
        row["Post.Prob"] = holds
        row["Star"] = "*" if holds > 1.0 - alpha else ""
    else:
        row["Evid.Ratio"] = _savage_dickey(difference, f"({left}) - ({right})", prior_draws, text)
        row["Post.Prob"] = row["Evid.Ratio"] / (1.0 + row["Evid.Ratio"]) if np.isfinite(row["Evid.Ratio"]) else np.nan
        row["Star"] = "*" if low > 0 or high < 0 else ""
    return row


def _savage_dickey(posterior: np.ndarray, expression: str, prior_draws, text: str) -> float:
    """The posterior's density of the difference at 0 over the prior's; NaN without prior draws."""
    if prior_draws is None:
        return np.nan
    prior = _evaluate(expression, prior_draws, text)
    return float(gaussian_kde(posterior)(0.0)[0] / gaussian_kde(prior)(0.0)[0])


def _evaluate(expression: str, draws: pd.DataFrame, text: str) -> np.ndarray:
    """The expression's value per draw; names are the draws' columns (in backticks if not Python names)."""
    names: dict[str, str] = {}

    def placeholder(match):
        names[f"_p{len(names)}"] = match.group(1)
        return f"_p{len(names) - 1}"

    code = re.sub(r"`([^`]+)`", placeholder, expression)
    try:
        tree = ast.parse(code, mode="eval")
    except SyntaxError:
        raise BayesmixError(f"The hypothesis '{text}' is not an expression bayesmix can read.") from None
    return np.asarray(_value(tree.body, draws, names, text), dtype=float) * np.ones(len(draws))


def _value(node, draws: pd.DataFrame, names: dict, text: str):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.Name):
        name = names.get(node.id, node.id)
        if name not in draws.columns:
            raise BayesmixError(
                f"The hypothesis '{text}' names '{name}', which is not a parameter.{did_you_mean(name, draws.columns)} "
                f"Parameters: {', '.join(draws.columns)} (in backticks where not a plain name)."
            )
        return draws[name].to_numpy()
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, _OPERATORS):
        value = _value(node.operand, draws, names, text)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, _OPERATORS):
        a, b = _value(node.left, draws, names, text), _value(node.right, draws, names, text)
        return {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide, ast.Pow: np.power}[
            type(node.op)
        ](a, b)
    raise BayesmixError(f"The hypothesis '{text}' uses something other than parameters, numbers and + - * / **.")
