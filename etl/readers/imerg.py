"""Read GPM IMERG precipitation (half-hourly 3IMERGHH, daily 3IMERGDE/DL/DF; V06 and V07) as north-up grids.

Works on the original HDF5 granules and on NetCDF-4 subsets (e.g. OPeNDAP/Harmony ``.nc4``), both
read through h5py without CF decoding. Traps handled:

* Arrays are stored (time, lon, lat): longitude varies along the second axis, latitude (south to
  north) along the third. The reader finds the axes by dimension name and returns (time, y, x) with
  row 0 the northernmost latitude.
* The time variable says ``calendar = julian`` but counts POSIX seconds ("seconds since 1970-01-01
  00:00:00 UTC"); decoding it on the Julian calendar would shift every date by 13 days. Times are
  decoded by hand (proleptic Gregorian) and checked against the FileHeader's StartGranuleDateTime
  when the file carries one.
* Fill is -9999.9 (float32 -9999.900391); it and any other negative rate become NaN.
* V06 calls the calibrated estimate ``precipitationCal``; V07 calls it ``precipitation``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import xarray as xr
from affine import Affine
from pyproj import CRS

from etl.readers.errors import SchemaDriftError
from etl.readers.hdf5 import open_hdf5, to_text
from etl.readers.raster import decimal_centres, raster_dataarray, regular_axis
from etl.readers.timecodes import offsets_to_datetime64, parse_since
from etl.readers.variables import RawVariable, read_variables

logger = logging.getLogger(__name__)

IMERG_FILL: Final = np.float32(-9999.9)
CALIBRATED_NAMES: Final = ("precipitationCal", "precipitation")
"""The calibrated precipitation estimate in V06 and in V07."""
_UNITS: Final = frozenset({"mm/hr", "mm/day", "mm"})


def read_imerg(path: str | Path, *, variable: str | None = None) -> xr.DataArray:
    """Read IMERG precipitation as float32 (time, y, x), north-up, units as in the file (mm/hr, mm/day).

    ``variable`` defaults to the calibrated estimate of whichever version the file is (see
    :data:`CALIBRATED_NAMES`). Attrs: units, crs (EPSG:4326 WKT), transform, product, version,
    variable, source_file.
    """
    source = Path(path)
    group = _grid_group(source)
    name = variable or _calibrated_name(source, group)
    vars_ = read_variables(
        source, [f"{group}/{name}", f"{group}/lat", f"{group}/lon", f"{group}/time"]
    )
    data, lat, lon, time = (vars_[f"{group}/{n}"] for n in (name, "lat", "lon", "time"))
    values = _to_time_lat_lon(data, path=source)
    lat_c, lon_c = decimal_centres(lat.values), decimal_centres(lon.values)
    if values.shape[1:] != (lat_c.size, lon_c.size):
        raise SchemaDriftError(
            f"{source}: {data.name} shape {data.values.shape} does not match lat/lon sizes"
        )
    lon_axis = regular_axis(lon_c, tolerance=1e-4)
    lat_axis = regular_axis(lat_c, tolerance=1e-4)
    if lon_axis is None or lat_axis is None or lon_axis[1] <= 0:
        raise SchemaDriftError(f"{source}: lat/lon are not a regular grid with ascending longitude")
    if lat_axis[1] > 0:  # stored south-to-north: flip to north-up
        values = values[:, ::-1, :]
        lat_c = lat_c[::-1]
    dx, dy = lon_axis[1], abs(lat_axis[1])
    transform = Affine(dx, 0.0, lon_c[0] - dx / 2, 0.0, -dy, lat_c[0] + dy / 2)

    fill = data.number("_FillValue")
    stored_fill = np.float32(fill) if fill is not None else IMERG_FILL
    if stored_fill != IMERG_FILL:
        raise SchemaDriftError(f"{source}: {data.name} _FillValue {fill}, expected -9999.9")
    out = values.astype(np.float32, copy=True)
    with np.errstate(invalid="ignore"):
        out[(values == IMERG_FILL) | (values < 0) | ~np.isfinite(values)] = np.nan

    units = data.text("units") or data.text("Units") or ""
    if units not in _UNITS:
        raise SchemaDriftError(
            f"{source}: {data.name} units {units!r}, expected one of {sorted(_UNITS)}"
        )
    times = _decode_time(time, path=source)
    header = _file_header(source)
    _check_start(header, times, path=source)
    da = raster_dataarray(
        out,
        transform=transform,
        crs_wkt=CRS.from_epsg(4326).to_wkt(),
        name=name,
        leading=[("time", times)],
        attrs={
            "units": units,
            "product": header.get("DOIshortName") or header.get("AlgorithmID") or "GPM_IMERG",
            "version": header.get("ProductVersion") or header.get("AlgorithmVersion") or "unknown",
            "variable": name,
            "source_file": str(source),
        },
    )
    logger.info(
        "imerg_read", extra={"source_file": str(source), "variable": name, "steps": len(times)}
    )
    return da


def _grid_group(path: Path) -> str:
    with open_hdf5(path) as handle:
        return "/Grid" if "Grid" in handle else ""


def _calibrated_name(path: Path, group: str) -> str:
    with open_hdf5(path) as handle:
        for candidate in CALIBRATED_NAMES:
            if f"{group}/{candidate}".lstrip("/") in handle:
                return candidate
    raise SchemaDriftError(
        f"{path}: variable {group}/{CALIBRATED_NAMES[0]} (V06) or {group}/{CALIBRATED_NAMES[1]} (V07) is missing"
    )


def _to_time_lat_lon(data: RawVariable, *, path: Path) -> npt.NDArray[Any]:
    dims = data.dims
    if dims is None or sorted(dims) != ["lat", "lon", "time"]:
        raise SchemaDriftError(f"{path}: {data.name} dims {dims}, expected time, lon, lat")
    return np.transpose(data.values, [dims.index("time"), dims.index("lat"), dims.index("lon")])


def _decode_time(time: RawVariable, *, path: Path) -> npt.NDArray[np.datetime64]:
    units = time.text("units") or time.text("Units") or ""
    unit_ns, epoch = parse_since(units, path=path, variable=time.name)
    if epoch != np.datetime64("1970-01-01T00:00:00", "ns"):
        raise SchemaDriftError(
            f"{path}: {time.name} units {units!r}, expected seconds since 1970-01-01 UTC"
        )
    # calendar="julian" is ignored on purpose: the count is POSIX seconds (see module docstring).
    return offsets_to_datetime64(time.values.ravel(), unit_ns=unit_ns, epoch=epoch)


def _file_header(path: Path) -> dict[str, str]:
    with open_hdf5(path) as handle:
        text = to_text(handle.attrs["FileHeader"]) if "FileHeader" in handle.attrs else ""
    return {k.strip(): v.strip() for k, v in re.findall(r"([A-Za-z]+)=([^;]*);", text)}


def _check_start(header: dict[str, str], times: npt.NDArray[np.datetime64], *, path: Path) -> None:
    start = header.get("StartGranuleDateTime")
    if not start or times.size == 0:
        return
    expected = np.datetime64(start.rstrip("Z"), "ns")
    if times[0] != expected:
        raise SchemaDriftError(
            f"{path}: time {times[0]} does not match FileHeader StartGranuleDateTime {start}"
        )
