"""``bayesmix.load``: a saved file back as the :class:`~bayesmix.model.Model` (with its posterior) or
the :class:`~bayesmix.mixedfit.MixedFit` it was.

It sits above both types and :mod:`bayesmix.after.io` (the file format), so the types can save
themselves through io without io knowing them: no import cycle.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from bayesmix.after.io import read
from bayesmix.bayes.priors import Prior
from bayesmix.design.encode import ordinal_response_column
from bayesmix.design.formula import parse_formula
from bayesmix.design.hilbert import from_record
from bayesmix.exact.optimize import OptimizerSummary
from bayesmix.mixedfit import MixedFit
from bayesmix.model import Model


def load(path):
    """What ``save`` wrote: a :class:`~bayesmix.model.Model` with ``idata`` set, or a ``MixedFit``."""
    idata, spec, frame, levels, rows, payload = read(path)
    priors = {name: Prior(p["dist"], **p["params"]) for name, p in spec["priors"].items()}
    if spec.get("response_levels") is not None:  # an ordinal response's order
        levels = {**levels, _response_column(spec["formula"]): spec["response_levels"]}
    model = Model(
        spec["formula"],
        frame,
        family=spec["family"],
        link=spec["link"],
        priors=priors,
        categorical=levels,
        offset=spec.get("offset"),
        weights=spec.get("weights"),
        zi=spec.get("zi"),
        dispersion=spec.get("dispersion"),
        censored=spec.get("censored"),
        upper=spec.get("upper"),
        thresholds=spec.get("thresholds"),
        contrasts=spec.get("contrasts"),
        hsgp=False,  # then each block as it was sampled
    )
    design = from_record(model.design, spec.get("hsgp", {}))
    model.design = replace(design, rows=rows, n_dropped=spec["n_dropped"])
    if payload is not None:
        return replace(_fit_from_payload(payload, model.design, model.family), source=model)
    model.idata = idata
    model.sampling_time = spec["sampling_time"]
    return model


def _fit_from_payload(payload: dict, design, family) -> MixedFit:
    fixef = pd.DataFrame(**payload["fixef"]).rename_axis("term")
    array = {"sd", "corr", "cov"}
    return MixedFit(
        method=payload["method"],
        nagq=payload.get("nagq"),
        design=design,
        family=family,
        fixef=fixef,
        vcov=pd.DataFrame(payload["vcov"], index=fixef.index, columns=fixef.index),
        varcorr=[{k: np.asarray(v) if k in array else v for k, v in block.items()} for block in payload["varcorr"]],
        sigma=payload["sigma"],
        family_params=payload["family_params"],
        theta=pd.Series(payload["theta"]["values"], index=payload["theta"]["names"], name="theta"),
        loglik=payload["loglik"],
        reml_criterion=payload["reml_criterion"],
        deviance=payload["deviance"],
        df=payload["df"],
        ranef={g: pd.DataFrame(f).set_index(["level", "term"]) for g, f in payload["ranef"].items()},
        is_singular=payload["is_singular"],
        converged=payload["converged"],
        optimizer=OptimizerSummary(
            **{k: np.asarray(v) if k in ("x", "gradient") else v for k, v in payload["optimizer"].items()}
        ),
        dropped=tuple(payload["dropped"]),
        messages=payload["messages"],
        time_s=payload["time_s"],
        submodels={
            role: pd.DataFrame(**table).rename_axis("term") for role, table in payload.get("submodels", {}).items()
        },
        thresholds=None
        if payload.get("thresholds") is None
        else pd.DataFrame(**payload["thresholds"]).rename_axis("threshold"),
        ordinal_vcov=None if payload.get("ordinal_vcov") is None else pd.DataFrame(**payload["ordinal_vcov"]),
        ddf=payload.get("ddf"),
    )


def _response_column(formula: str) -> str:
    return ordinal_response_column(parse_formula(formula).response.expr)
