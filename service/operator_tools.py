"""What ``smapds inspect`` and ``smapds convert`` do with a granule an operator points at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine

from etl.errors import ConfigError
from etl.export import write_geotiff
from etl.readers import open_granule
from etl.readers.identify import identify


def inspect_granule(path: Path) -> dict[str, Any]:
    """Product, version, date, and per pass or layer: valid cells, value range, flag summary."""
    product = identify(path)
    obj = open_granule(path, product=product)
    report: dict[str, Any] = {"file": str(path), "product": product}
    for key in ("version", "date", "tile", "units", "res_km"):
        if key in obj.attrs:
            report[key] = obj.attrs[key]
    if isinstance(obj, xr.Dataset):
        report["passes"] = {str(p): _coarse_pass(obj.sel({"pass": p})) for p in obj["pass"].values}
    else:
        report["shape"] = list(obj.shape)
        report.update(_summary(obj.values))
    return report


def _coarse_pass(ds: xr.Dataset) -> dict[str, Any]:
    out = _summary(ds["soil_moisture"].values)
    raw = ds["soil_moisture_raw"].values
    out["retrieved_cells"] = int(np.isfinite(raw).sum())
    if "recommended" in ds:
        rec = ds["recommended"].values
        out["recommended_cells"] = int(rec.sum())
        out["not_recommended_cells"] = int((np.isfinite(raw) & ~rec).sum())
    if "overpass_time" in ds:
        times = ds["overpass_time"].values
        times = times[~np.isnat(times)]
        if times.size:
            out["overpass_utc"] = [str(times.min())[:19] + "Z", str(times.max())[:19] + "Z"]
    return out


def _summary(values: np.ndarray) -> dict[str, Any]:
    finite = values[np.isfinite(values)]
    out: dict[str, Any] = {"valid_cells": int(finite.size)}
    if finite.size:
        out.update(
            min=round(float(finite.min()), 6),
            mean=round(float(finite.mean()), 6),
            max=round(float(finite.max()), 6),
        )
    return out


def convert_granule(path: Path, out: Path, *, pass_: str, variable: str, raw: bool) -> int:
    """Write one pass and variable of a coarse soil-moisture granule as a GeoTIFF on its EASE-Grid
    2.0 grid, NaN where not valid (``raw``: NaN only at fill). Returns the count of values written."""
    product = identify(path)
    ds = open_granule(path, product=product)
    if not isinstance(ds, xr.Dataset):
        raise ConfigError(f"{path}: convert handles SMAP L3 granules; {product} is a covariate")
    if pass_ not in ds["pass"].values:
        raise ConfigError(f"{path}: no {pass_} pass in this file")
    name = "soil_moisture_raw" if raw and variable == "soil_moisture" else variable
    if name not in ds or ds[name].dims != ("pass", "y", "x"):
        allowed = [str(v) for v in ds.data_vars if ds[v].dims == ("pass", "y", "x")]
        raise ConfigError(f"unknown variable {variable!r}; allowed: {', '.join(allowed)}")
    data = ds[name].sel({"pass": pass_}).values
    if data.dtype.kind == "M":
        raise ConfigError(f"{variable} is a time; convert writes numeric layers")
    data = data.astype(np.float32)
    if name == "retrieval_qual_flag":
        data[ds[name].sel({"pass": pass_}).values == 65534] = np.nan
    write_geotiff(
        out,
        data,
        transform=Affine.from_gdal(*ds.attrs["transform"]),
        crs=ds.attrs["crs_epsg"],
        description=f"{name} {pass_}",
        units=str(ds[name].attrs.get("units", ds.attrs.get("units", ""))),
        tags={
            "source_file": path.name,
            "product": product,
            "version": str(ds.attrs.get("version", "")),
            "validity": "raw: fill masked only"
            if raw
            else "not fill, 0.02-0.5 m3/m3, retrieval recommended",
        },
    )
    return int(np.isfinite(data).sum())
