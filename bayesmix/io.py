"""Save a sampled model to one netCDF file and load it back, ready to predict.

The file is the InferenceData (``arviz.InferenceData.to_netcdf``) plus a group ``bayesmix_model``
holding what rebuilds the :class:`~bayesmix.model.Model`: the training rows and columns as they
were encoded (``Design.data``; factors as integer codes with their level order) and, in the group's
attributes, a JSON specification (formula, family, link, every prior, the level order of every
factor, the file format and the bayesmix version). Loading re-encodes those rows, which gives the
same design and codings, so ``predict`` on new data gives the same numbers as before saving.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bayesmix.errors import BayesmixError
from bayesmix.priors import Prior

FORMAT = 1
GROUP = "bayesmix_model"
ROW_DIM = "bayesmix_row"


def bayesmix_version() -> str:
    try:
        return version("bayesmix")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "unknown"


def _plain(value):
    """JSON-ready copy of a prior parameter or a level (numpy scalars and arrays to Python)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _column_variables(frame: pd.DataFrame) -> dict[str, xr.DataArray]:
    """One variable per column, named by position (column names may be any text): numbers as they
    are, factors as int codes with their levels in the attributes."""
    out = {}
    for i, name in enumerate(frame.columns):
        column = frame[name]
        attrs = {"name": str(name)}
        if isinstance(column.dtype, pd.CategoricalDtype):
            values = column.cat.codes.to_numpy(dtype=np.int64)
            attrs["levels"] = json.dumps([_plain(level) for level in column.cat.categories])
        else:
            values = column.to_numpy()
            attrs["dtype"] = str(values.dtype)
            if values.dtype == bool:
                values = values.astype(np.int8)
        out[f"column_{i}"] = xr.DataArray(values, dims=(ROW_DIM,), attrs=attrs)
    return out


def _frame(group: xr.Dataset) -> tuple[pd.DataFrame, dict[str, list]]:
    """The training frame and ``{column: level order}`` for its factors."""
    columns, levels = {}, {}
    for i in range(len(group.data_vars) - 1):  # the last variable is the row positions
        var = group[f"column_{i}"]
        name = var.attrs["name"]
        if "levels" in var.attrs:
            levels[name] = json.loads(var.attrs["levels"])
            columns[name] = pd.Categorical.from_codes(var.values, categories=levels[name], ordered=True)
        else:
            columns[name] = var.values.astype(var.attrs["dtype"])
    return pd.DataFrame(columns), levels


def save(model, path, idata=None) -> Path:
    """Write ``idata`` (default: the model's last ``sample()``) and the model to one netCDF file."""
    idata = model._require(idata)
    design = model.design
    spec = {
        "format": FORMAT,
        "bayesmix_version": bayesmix_version(),
        "formula": design.spec.text,
        "family": model.family.name,
        "link": model.family.link.name,
        "priors": {
            name: {"dist": prior.dist, "params": {k: _plain(v) for k, v in prior.params.items()}}
            for name, prior in model.priors.items()
        },
        "n_dropped": design.n_dropped,
        "sampling_time": model.sampling_time,
    }
    variables = _column_variables(design.data)
    variables["rows"] = xr.DataArray(design.rows.astype(np.int64), dims=(ROW_DIM,))
    out = idata.copy()
    if GROUP in out.groups():
        del out[GROUP]
    out.add_groups({GROUP: xr.Dataset(variables, attrs={"bayesmix_spec": json.dumps(spec)})})
    path = Path(path)
    out.to_netcdf(str(path))
    return path


def _read(path: Path) -> az.InferenceData:
    if not path.is_file():
        raise BayesmixError(f"'{path}': no such file. Pass the path a model was saved to with model.save(path).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return az.from_netcdf(str(path))
    except Exception as exc:
        raise BayesmixError(
            f"'{path}' could not be read as a netCDF file ({type(exc).__name__}: {exc}). "
            "It is damaged or not a file written by model.save(); save the model again."
        ) from None


def _spec(idata: az.InferenceData, path: Path) -> dict:
    if GROUP not in idata.groups():
        raise BayesmixError(
            f"'{path}' is an InferenceData file but was not written by bayesmix (no '{GROUP}' group). "
            "Save models with model.save(path); a plain InferenceData can be read with arviz.from_netcdf."
        )
    try:
        spec = json.loads(idata[GROUP].attrs["bayesmix_spec"])
    except (KeyError, TypeError, ValueError):
        raise BayesmixError(f"'{path}' has a damaged bayesmix model specification; save the model again.") from None
    if spec.get("format") != FORMAT:
        raise BayesmixError(
            f"'{path}' was written in bayesmix file format {spec.get('format')} (bayesmix "
            f"{spec.get('bayesmix_version')}); this bayesmix ({bayesmix_version()}) reads format {FORMAT}. "
            f"Load it with that version of bayesmix, or refit and save again."
        )
    return spec


def load(path):
    """A :class:`~bayesmix.model.Model` from a file written by ``model.save``, with ``idata`` set."""
    from bayesmix.model import Model

    path = Path(path)
    idata = _read(path)
    spec = _spec(idata, path)
    try:
        frame, levels = _frame(idata[GROUP])
        rows = idata[GROUP]["rows"].values
    except (KeyError, ValueError, TypeError) as exc:
        raise BayesmixError(f"'{path}' has damaged training data ({exc}); save the model again.") from None
    priors = {name: Prior(p["dist"], **p["params"]) for name, p in spec["priors"].items()}
    model = Model(spec["formula"], frame, family=spec["family"], link=spec["link"], priors=priors, categorical=levels)
    model.design = replace(model.design, rows=rows, n_dropped=spec["n_dropped"])
    del idata[GROUP]
    model.idata = idata
    model.sampling_time = spec["sampling_time"]
    return model
