"""Save a sampled model or an exact fit to one netCDF file and load it back, ready to predict.

A sampled model's file is its InferenceData (``arviz.InferenceData.to_netcdf``) plus a group
``bayesmix_model``; an exact fit's file has that group alone. The group holds what rebuilds the
:class:`~bayesmix.model.Model`: the training rows and columns as they were encoded (``Design.data``;
factors as integer codes with their level order) and, in its attributes, a JSON specification
(formula, family, link, every prior, the file format and the bayesmix version). An exact fit adds
its estimates as JSON bytes (``fit_json``: attributes are too small for large ``ranef`` tables).
Loading re-encodes the rows, which gives the same design and codings, so ``predict`` on new data
gives the same numbers as before saving.
"""

from __future__ import annotations

import json
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bayesmix.after.fit_view import EXACT, view
from bayesmix.design.formula import parse_formula
from bayesmix.design.hilbert import settings_record
from bayesmix.errors import BayesmixError

if TYPE_CHECKING:
    import arviz as az
    import xarray as xr

FORMAT = 1
GROUP = "bayesmix_model"
ROW_DIM = "bayesmix_row"


def bayesmix_version() -> str:
    try:
        return version("bayesmix")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "unknown"


def offset_argument(design) -> str | None:
    """The offsets the formula's text does not hold (lme4's ``offset=`` argument), as one expression."""
    extra = design.spec.offsets[len(parse_formula(design.spec.text).offsets) :]
    return " + ".join(f"({expr})" for expr in extra) if extra else None


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
    import xarray as xr  # loaded when a file is written: an exact fit never needs it otherwise

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
    for i in range(sum(name.startswith("column_") for name in group.data_vars)):
        var = group[f"column_{i}"]
        name = var.attrs["name"]
        if "levels" in var.attrs:
            levels[name] = json.loads(var.attrs["levels"])
            # unordered: the order travels in ``levels``, and an ordered factor would get polynomial contrasts
            columns[name] = pd.Categorical.from_codes(var.values, categories=levels[name], ordered=False)
        else:
            columns[name] = var.values.astype(var.attrs["dtype"])
    return pd.DataFrame(columns), levels


def _model_group(design, family, priors: dict | None, **extra) -> xr.Dataset:
    """The ``bayesmix_model`` group: encoded training data, row map, and the JSON specification."""
    import xarray as xr  # loaded when a file is written: an exact fit never needs it otherwise

    spec = {
        "format": FORMAT,
        "bayesmix_version": bayesmix_version(),
        "formula": design.spec.text,
        "family": family.name,
        "link": family.link.name,
        "priors": {
            name: {"dist": prior.dist, "params": {k: _plain(v) for k, v in prior.params.items()}}
            for name, prior in (priors or {}).items()
        },
        "n_dropped": design.n_dropped,
        "offset": offset_argument(design),
        "weights": design.spec.weights,
        **{sub.role: sub.text for sub in design.spec.submodels},  # zi= and dispersion= formulas
        **(
            {"censored": design.spec.censoring[0], "upper": design.spec.censoring[1]}
            if design.spec.censoring is not None
            else {}
        ),
        "contrasts": design.codings.contrasts,
        # an ordinal response's level order (the stored column holds the user's values)
        **(
            {"response_levels": [_plain(v) for v in design.codings.response_levels]} if family.category_response else {}
        ),
        **({"thresholds": family.threshold_structure} if family.ordinal else {}),
        **({"hsgp": settings_record(design)} if settings_record(design) else {}),  # how the sampler read each block
        **extra,
    }
    variables = _column_variables(design.data)
    variables["rows"] = xr.DataArray(design.rows.astype(np.int64), dims=(ROW_DIM,))
    return xr.Dataset(variables, attrs={"bayesmix_spec": json.dumps(spec)})


def _fit_payload(fit) -> bytes:
    """The estimates of an exact fit as JSON (floats round-trip exactly)."""
    payload = {
        "method": fit.method,
        "nagq": fit.nagq,
        "fixef": fit.fixef.to_dict(orient="split"),
        "vcov": fit.vcov.to_numpy(),
        "varcorr": fit.varcorr,
        "sigma": fit.sigma,
        "family_params": fit.family_params,
        "theta": {"names": list(fit.theta.index), "values": fit.theta.to_numpy()},
        "loglik": fit.loglik,
        "reml_criterion": fit.reml_criterion,
        "deviance": fit.deviance,
        "df": fit.df,
        "ranef": {group: frame.reset_index().to_dict(orient="list") for group, frame in fit.ranef.items()},
        "is_singular": fit.is_singular,
        "converged": fit.converged,
        "optimizer": vars(fit.optimizer),
        "dropped": list(fit.dropped),
        "messages": fit.messages,
        "time_s": fit.time_s,
        "submodels": {role: table.to_dict(orient="split") for role, table in fit.submodels.items()},
        "thresholds": None if fit.thresholds is None else fit.thresholds.to_dict(orient="split"),
        "ordinal_vcov": None if fit.ordinal_vcov is None else fit.ordinal_vcov.to_dict(orient="split"),
        "ddf": fit.ddf,
    }
    return json.dumps(payload, default=_plain).encode()


def save(obj, path, idata=None) -> Path:
    """Write a sampled Model (with ``idata``, default its last ``sample()``) or an exact fit
    (``MixedFit``) to one netCDF file at ``path``; returns the path."""
    import arviz as az  # loaded when a file is written: an exact fit never needs ArviZ otherwise
    import xarray as xr

    path = Path(path)
    if obj.fit_kind == EXACT:
        group = _model_group(obj.design, obj.family, None, kind="fit")
        group["fit_json"] = xr.DataArray(np.frombuffer(_fit_payload(obj), dtype=np.uint8), dims=("fit_json_byte",))
        az.InferenceData(**{GROUP: group}).to_netcdf(str(path))
        return path
    source = view(obj, idata)
    source.require()
    out = source.idata.copy()
    if GROUP in out.groups():
        del out[GROUP]
    out.add_groups(
        {GROUP: _model_group(obj.design, obj.family, obj.priors, kind="nuts", sampling_time=obj.sampling_time)}
    )
    _check_names(obj.design, out)
    out.to_netcdf(str(path))
    return path


def _check_names(design, idata: az.InferenceData) -> None:
    """BayesmixError for text a netCDF file cannot hold: a NUL character anywhere (in the columns'
    names, the levels, the terms), and '/' in a variable's or dimension's name (HDF5's group
    separator; bayesmix's own names encode it, :func:`bayesmix.design.encode.name_part`)."""
    texts = [str(name) for name in design.data.columns]
    for group in idata.groups():
        data = idata[group]
        texts += [str(name) for name in [*data.data_vars, *data.dims]]
        texts += [str(v) for name in data.coords if data[name].dtype.kind in "OUS" for v in data[name].values]
    nul = [text for text in texts if "\x00" in text]
    slashed = [str(n) for g in idata.groups() for n in [*idata[g].data_vars, *idata[g].dims] if "/" in str(n)]
    if nul or slashed:
        bad, what = (nul, "a NUL character") if nul else (slashed, "'/'")
        raise BayesmixError(
            f"{bad[0]!r} holds {what}, which a netCDF file cannot hold in a name or label. Rename the column or "
            "its levels (data.rename(...)) and sample again to save this model."
        )


def _read(path: Path) -> az.InferenceData:
    import arviz as az  # loaded when a file is read

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


def read(path) -> tuple[az.InferenceData, dict, pd.DataFrame, dict, np.ndarray, dict | None]:
    """What ``save`` wrote, as parts: (the InferenceData without the model group, the specification,
    the training frame, its factors' level orders, the rows used, an exact fit's estimates or None).
    :func:`bayesmix.loading.load` makes the Model or the fit of them."""
    path = Path(path)
    idata = _read(path)
    spec = _spec(idata, path)
    try:
        frame, levels = _frame(idata[GROUP])
        rows = idata[GROUP]["rows"].values
        payload = json.loads(idata[GROUP]["fit_json"].values.tobytes()) if spec["kind"] == "fit" else None
    except (KeyError, ValueError, TypeError) as exc:
        raise BayesmixError(f"'{path}' has damaged contents ({exc}); save the model again.") from None
    del idata[GROUP]
    return idata, spec, frame, levels, rows, payload
