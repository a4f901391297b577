"""Read ERA5 (and ERA5-Land) NetCDF from the Copernicus CDS as north-up grids on -180..180 longitudes.

Both the old CDS output (NetCDF-3 from grib_to_netcdf: int16 packed with scale_factor/add_offset,
``time`` as "hours since 1900-01-01 00:00:0.0") and the newer NetCDF-4 output (float32, ``valid_time``
as "seconds since 1970-01-01") are read without CF decoding. Traps handled:

* Packed int16: physical = stored * scale_factor + add_offset (float64, then float32); the stored
  _FillValue / missing_value (-32767) becomes NaN before unpacking.
* Longitude 0..360 is rolled to -180..180 ascending; latitude is returned north-up (descending, as
  stored), and a south-up file is flipped.
* ``swvl1`` units "m**3 m**-3" are reported as m3/m3; over sea it is ~0, not missing (use the
  ``land_sea_mask`` coordinate, kept when the file has ``lsm``).
It is the third, independent soil-moisture estimate for triple collocation (layer 1 = 0-7 cm).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import xarray as xr
from affine import Affine
from pyproj import CRS

from etl.readers.errors import SchemaDriftError
from etl.readers.raster import decimal_centres, raster_dataarray, regular_axis
from etl.readers.timecodes import offsets_to_datetime64, parse_since
from etl.readers.variables import RawVariable, read_variables

logger = logging.getLogger(__name__)

_UNITS: Final[dict[str, str]] = {"m**3 m**-3": "m3/m3", "m3 m-3": "m3/m3", "m3/m3": "m3/m3"}
_CALENDARS: Final = frozenset({"gregorian", "standard", "proleptic_gregorian"})


def read_era5(path: str | Path, *, variable: str) -> xr.DataArray:
    """Read ``variable`` (e.g. ``swvl1``) as float32 (time, y, x) in physical units, lon -180..180.

    Attrs: units, crs (EPSG:4326 WKT), transform, product ("ERA5"), variable, source_file; coordinate
    ``land_sea_mask`` (0-1, first time step) when the file has ``lsm``.
    """
    source = Path(path)
    found = read_variables(
        source, [variable, "latitude", "longitude"], optional=["time", "valid_time", "lsm"]
    )
    time_var = found.get("valid_time") or found.get("time")
    if time_var is None:
        raise SchemaDriftError(f"{source}: variable time (or valid_time) is missing")
    data = found[variable]
    time_dim = time_var.name
    if data.dims != (time_dim, "latitude", "longitude"):
        raise SchemaDriftError(
            f"{source}: {variable} dims {data.dims}, expected ({time_dim}, latitude, longitude)"
        )
    values = _unpack(data, path=source)
    lsm = _unpack(found["lsm"], path=source)[0] if "lsm" in found else None

    lon = decimal_centres(found["longitude"].values)
    lat = decimal_centres(found["latitude"].values)
    wrapped = ((lon + 180.0) % 360.0) - 180.0
    order = np.argsort(wrapped, kind="stable")
    lon = wrapped[order]
    if np.unique(lon).size != lon.size:
        raise SchemaDriftError(
            f"{source}: longitudes repeat after wrapping to -180..180 (both 0 and 360?)"
        )
    values = values[..., order]
    lsm = lsm[..., order] if lsm is not None else None
    if lat[0] < lat[-1]:
        lat, values = lat[::-1], values[:, ::-1, :]
        lsm = lsm[::-1] if lsm is not None else None
    lon_axis, lat_axis = regular_axis(lon, tolerance=1e-6), regular_axis(lat, tolerance=1e-6)
    if lon_axis is None or lat_axis is None:
        raise SchemaDriftError(f"{source}: latitude/longitude are not a regular grid")
    dx, dy = lon_axis[1], -lat_axis[1]
    transform = Affine(dx, 0.0, lon[0] - dx / 2, 0.0, -dy, lat[0] + dy / 2)

    calendar = (time_var.text("calendar") or "gregorian").lower()
    if calendar not in _CALENDARS:
        raise SchemaDriftError(f"{source}: {time_var.name} calendar {calendar!r} is not Gregorian")
    unit_ns, epoch = parse_since(time_var.text("units") or "", path=source, variable=time_var.name)
    times = offsets_to_datetime64(time_var.values.ravel(), unit_ns=unit_ns, epoch=epoch)
    units_in = data.text("units") or ""
    da = raster_dataarray(
        values,
        transform=transform,
        crs_wkt=CRS.from_epsg(4326).to_wkt(),
        name=variable,
        leading=[("time", times)],
        attrs={
            "units": _UNITS.get(units_in, units_in),
            "product": "ERA5",
            "variable": variable,
            "long_name": data.text("long_name") or variable,
            "source_file": str(source),
        },
        companions={"land_sea_mask": lsm} if lsm is not None else None,
    )
    logger.info(
        "era5_read", extra={"source_file": str(source), "variable": variable, "steps": len(times)}
    )
    return da


def _unpack(var: RawVariable, *, path: Path) -> npt.NDArray[np.float32]:
    stored = var.values
    missing = np.zeros(stored.shape, dtype=bool)
    for key in ("_FillValue", "missing_value"):
        code = var.number(key)
        if code is not None:
            missing |= stored == np.asarray(code).astype(stored.dtype)
    scale, offset = var.number("scale_factor"), var.number("add_offset")
    if stored.dtype.kind in "iu" and (scale is None or offset is None):
        raise SchemaDriftError(
            f"{path}: {var.name} is packed {stored.dtype} without scale_factor/add_offset"
        )
    out: npt.NDArray[Any] = stored.astype(np.float64) * (scale if scale is not None else 1.0) + (
        offset if offset is not None else 0.0
    )
    result = out.astype(np.float32)
    result[missing | ~np.isfinite(result)] = np.nan
    return result
