"""``MixedFit``: the result of ``Model.fit`` (ML / REML), read like an lme4 fit.

Fields follow lme4: ``fixef`` (estimate, SE, t value), ``varcorr`` (SD and correlation per block),
``sigma``, ``theta`` (lme4's relative covariance factor, lme4's order), ``loglik``,
``reml_criterion``, ``deviance``, ``aic``, ``bic``, ``nobs``, ``ngrps``, ``is_singular``, ``ranef``
(conditional modes with conditional SDs), the optimiser summary, ``summary()`` and ``to_dict()``
(the JSON contract of :mod:`bayesmix.results`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayesmix.design import Design
from bayesmix.errors import ConvergenceWarning, SingularFitWarning
from bayesmix.exact.lmm import LmmResult
from bayesmix.families import Family
from bayesmix.results import format_table, ranef_frames, ranef_to_dict

SINGULAR_TOLERANCE = 1e-4  # lme4's isSingular tolerance on theta's diagonal


@dataclass
class MixedFit:
    """An ML or REML fit of a linear mixed model."""

    method: str
    design: Design
    family: Family
    fixef: pd.DataFrame
    vcov: pd.DataFrame
    varcorr: list[dict]
    sigma: float | None
    theta: pd.Series
    loglik: float
    reml_criterion: float | None
    deviance: float
    df: int
    ranef: dict[str, pd.DataFrame]
    is_singular: bool
    converged: bool
    optimizer: object
    dropped: tuple[str, ...] = ()
    messages: list[str] = field(default_factory=list)
    time_s: float | None = None

    @property
    def nobs(self) -> int:
        return self.design.nobs

    @property
    def ngrps(self) -> dict[str, int]:
        return self.design.ngrps

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.df

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + np.log(self.nobs) * self.df

    def summary(self) -> str:
        """A printout that reads like lme4's ``summary(fit)``."""
        title = {"REML": "Linear mixed model fit by REML", "ML": "Linear mixed model fit by maximum likelihood"}
        lines = [title[self.method], f"Formula: {self.design.spec.text}", ""]
        lines.append(f"     AIC      BIC   logLik {'REMLcrit' if self.method == 'REML' else 'deviance'}")
        crit = self.reml_criterion if self.method == "REML" else self.deviance
        lines.append(f"{self.aic:8.1f} {self.bic:8.1f} {self.loglik:8.1f} {crit:8.1f}")
        lines += ["", "Random effects:"]
        rows = [["Groups", "Name", "Variance", "Std.Dev.", "Corr"]]
        for v in self.varcorr:
            for j, term in enumerate(v["terms"]):
                corr = " ".join(f"{v['corr'][j][i]:5.2f}" for i in range(j))
                rows.append([v["group"] if j == 0 else "", term, f"{v['sd'][j] ** 2:.4g}", f"{v['sd'][j]:.4g}", corr])
        rows.append(["Residual", "", f"{self.sigma**2:.4g}", f"{self.sigma:.4g}", ""])
        lines += format_table(rows)
        groups = ", ".join(f"{g}, {n}" for g, n in self.ngrps.items())
        lines.append(f"Number of obs: {self.nobs}, groups:  {groups}")
        lines += ["", "Fixed effects:"]
        rows = [["", "Estimate", "Std. Error", "t value"]]
        for name, r in self.fixef.iterrows():
            rows.append([str(name), f"{r.estimate:.4g}", f"{r.se:.4g}", f"{r.statistic:.3f}"])
        lines += format_table(rows, align_left=1)
        lines += [f"Note: {m}" for m in self.messages]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The JSON contract (keys as in :mod:`bayesmix.results`)."""
        return {
            "formula": self.design.spec.text,
            "family": self.family.name,
            "link": self.family.link.name,
            "method": self.method.lower(),
            "nobs": self.nobs,
            "ngrps": self.ngrps,
            "fixef": {
                "names": list(self.fixef.index),
                "estimate": self.fixef["estimate"].tolist(),
                "se": self.fixef["se"].tolist(),
            },
            "sigma": self.sigma,
            "family_params": None,
            "varcorr": [
                {
                    "group": v["group"],
                    "terms": list(v["terms"]),
                    "sd": list(map(float, v["sd"])),
                    "corr": np.asarray(v["corr"], dtype=float).tolist(),
                }
                for v in self.varcorr
            ],
            "logLik": self.loglik,
            "REMLcrit": self.reml_criterion,
            "AIC": self.aic,
            "BIC": self.bic,
            "isSingular": self.is_singular,
            "ranef": {group: ranef_to_dict(frame) for group, frame in self.ranef.items()},
            "diagnostics": None,
            "converged": self.converged,
            "messages": list(self.messages),
            "time_s": self.time_s,
        }

    def __repr__(self) -> str:
        return self.summary()


def theta_names(design: Design, order) -> list[str]:
    """lme4's theta names: ``group.term`` on the diagonal, ``group.row.col`` below it."""
    names = []
    for i in order:
        block = design.blocks[i]
        terms = block.terms
        for j in range(block.n_terms):
            for r in range(j, block.n_terms):
                names.append(f"{block.group}.{terms[r]}" if r == j else f"{block.group}.{terms[r]}.{terms[j]}")
    return names


def from_lmm(design: Design, family: Family, result: LmmResult, time_s: float | None = None) -> MixedFit:
    """Assemble a MixedFit from the exact engine's result; emit singular-fit / convergence warnings."""
    sol, cp = result.solution, result.cross
    order = list(cp.order)
    factors = result.factorization.factors
    position = {block_index: k for k, block_index in enumerate(order)}
    se = np.sqrt(np.diag(sol.vcov))
    fixef = pd.DataFrame(
        {"estimate": sol.beta, "se": se, "statistic": sol.beta / se}, index=pd.Index(result.fixed_names, name="term")
    )
    varcorr = []
    for i, block in enumerate(design.blocks):
        T = factors[position[i]]
        cov = sol.sigma**2 * T @ T.T
        sd = np.sqrt(np.diag(cov))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.where(np.outer(sd, sd) > 0, cov / np.outer(sd, sd), 0.0)
        np.fill_diagonal(corr, 1.0)
        varcorr.append({"group": block.group, "terms": list(block.terms), "sd": sd, "corr": corr})
    theta = pd.Series(result.optimizer.x, index=theta_names(design, order), name="theta")
    diagonal = cp.layout.is_diagonal()
    is_singular = bool(np.any(np.abs(result.optimizer.x[diagonal]) < SINGULAR_TOLERANCE))
    messages = []
    if result.dropped:
        messages.append(
            f"fixed-effect model matrix is rank deficient so dropping {len(result.dropped)} "
            f"column(s): {', '.join(result.dropped)}"
        )
    if is_singular:
        messages.append(
            "boundary (singular) fit: a variance component is estimated as 0 or a correlation "
            "as +-1; see the varcorr table"
        )
        warnings.warn(messages[-1], SingularFitWarning, stacklevel=3)
    if not result.optimizer.converged:
        messages.append(
            f"the optimiser did not converge: projected gradient {result.optimizer.gradient} "
            f"({result.optimizer.message})"
        )
        warnings.warn(messages[-1], ConvergenceWarning, stacklevel=3)
    criterion = result.criterion
    modes = [sol.modes[position[i]] for i in range(len(design.blocks))]
    sds = [sol.mode_sds[position[i]] for i in range(len(design.blocks))]
    return MixedFit(
        method="REML" if result.reml else "ML",
        design=design,
        family=family,
        fixef=fixef,
        vcov=pd.DataFrame(sol.vcov, index=fixef.index, columns=fixef.index),
        varcorr=varcorr,
        sigma=sol.sigma,
        theta=theta,
        loglik=-criterion / 2.0,
        reml_criterion=criterion if result.reml else None,
        deviance=result.ml_deviance,
        df=len(result.fixed_names) + cp.layout.n_theta + 1,
        ranef=ranef_frames(design, modes, sds),
        is_singular=is_singular,
        converged=result.optimizer.converged,
        optimizer=result.optimizer,
        dropped=result.dropped,
        messages=messages,
        time_s=time_s,
    )
