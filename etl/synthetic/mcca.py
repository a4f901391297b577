"""Write an MCCA-style daily soil-moisture file: NetCDF4 on the global EASE-Grid 2.0 36 km grid.

MCCA SMAP (the multi-channel collaborative algorithm applied to SMAP brightness temperatures) is
distributed outside NSIDC with its own names, so the project reads it through a configurable reader.
This synthetic stand-in is ``mcca/YYYY/MCCA_SMAP_SM_36km_YYYYMMDD.nc`` with:

=============  ==========  ===================================================================
variable       dims        meaning
=============  ==========  ===================================================================
``lat``        (lat)       cell-centre latitude of each EASE2 36 km row (406, north first)
``lon``        (lon)       cell-centre longitude of each column (964)
``SM_D``       (lat, lon)  soil moisture of the descending (06:00 local, "AM") pass, m3/m3,
                           float32, _FillValue -999
``SM_A``       (lat, lon)  the same for the ascending (18:00 local, "PM") pass
``QC_D/QC_A``  (lat, lon)  uint8: 0 good, 1 retrieved but not recommended, 255 no retrieval
``TIME_D/A``   (lat, lon)  overpass time, float64 seconds since 1970-01-01 00:00:00 UTC, -999 fill
``crs``        ()          grid mapping (EPSG:6933)
=============  ==========  ===================================================================

EASE-Grid 2.0 is cylindrical, so latitude depends on the row only and longitude on the column only:
the 1-D coordinates are exact. Values are the truth block mean plus the MCCA bias and an error
independent of SMAP's (useful as the third estimate in triple collocation); passes, swaths and the
outage are those of SMAP. No history attribute with wall-clock time, so files are reproducible.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Final

import netCDF4
import numpy as np

from etl.grid import Domain, ease2
from etl.synthetic.netcdf import compressed_variable, write_ease2_crs
from etl.synthetic.overpass import J2000_UTC
from etl.synthetic.retrieval import RQF_NOT_RECOMMENDED, Retrieval

SM_FILL: Final = -999.0
QC_FILL: Final = 255
_UNIX_MINUS_J2000: Final = (J2000_UTC - dt.datetime(1970, 1, 1)).total_seconds()


def mcca_path(out_dir: Path, *, day: dt.date) -> Path:
    """``mcca/YYYY/MCCA_SMAP_SM_36km_YYYYMMDD.nc``."""
    return out_dir / "mcca" / f"{day:%Y}" / f"MCCA_SMAP_SM_36km_{day:%Y%m%d}.nc"


def write_mcca(path: Path, *, domain: Domain, am: Retrieval, pm: Retrieval, day: dt.date) -> None:
    """Write one MCCA-style daily file (both passes) via a temporary name."""
    grid = ease2(36)
    nrows, ncols = grid.shape
    _, lat = grid.lonlat(np.arange(nrows), np.zeros(nrows, dtype=np.int64))
    lon, _ = grid.lonlat(np.zeros(ncols, dtype=np.int64), np.arange(ncols))
    rows, cols = domain.slices(36)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
        nc.setncatts(
            {
                "title": "MCCA SMAP daily soil moisture, EASE-Grid 2.0 36 km (synthetic)",
                "Conventions": "CF-1.8",
                "source": "smapds synthetic world; MCCA algorithm stand-in",
                "date": f"{day:%Y-%m-%d}",
                "grid": "EASE-Grid 2.0 global 36 km (EPSG:6933), 406 rows x 964 columns",
            }
        )
        nc.createDimension("lat", nrows)
        nc.createDimension("lon", ncols)
        vlat = nc.createVariable("lat", "f8", ("lat",))
        vlat.setncatts({"units": "degrees_north", "standard_name": "latitude"})
        vlat[:] = lat
        vlon = nc.createVariable("lon", "f8", ("lon",))
        vlon.setncatts({"units": "degrees_east", "standard_name": "longitude"})
        vlon[:] = lon
        write_ease2_crs(nc)
        for suffix, retrieval, label in (
            ("D", am, "descending 06:00"),
            ("A", pm, "ascending 18:00"),
        ):
            _write_pass(nc, suffix, retrieval, label, (rows, cols), (nrows, ncols))
    tmp.replace(path)


def _write_pass(
    nc: netCDF4.Dataset,
    suffix: str,
    retrieval: Retrieval,
    label: str,
    window: tuple[slice, slice],
    shape: tuple[int, int],
) -> None:
    chunks = (shape[0] // 2, shape[1] // 2)
    dims = ("lat", "lon")
    sm = compressed_variable(
        nc,
        f"SM_{suffix}",
        "f4",
        dims,
        fill=np.float32(SM_FILL),
        chunks=chunks,
        attrs={
            "units": "m3/m3",
            "long_name": f"MCCA volumetric soil moisture, {label} local solar time overpass",
            "valid_min": np.float32(0.0),
            "valid_max": np.float32(0.6),
            "grid_mapping": "crs",
        },
    )
    qc = compressed_variable(
        nc,
        f"QC_{suffix}",
        "u1",
        dims,
        fill=np.uint8(QC_FILL),
        chunks=chunks,
        attrs={
            "long_name": f"MCCA retrieval quality, {label} overpass",
            "flag_values": np.array([0, 1], dtype=np.uint8),
            "flag_meanings": "good not_recommended",
            "grid_mapping": "crs",
        },
    )
    tv = compressed_variable(
        nc,
        f"TIME_{suffix}",
        "f8",
        dims,
        fill=np.float64(SM_FILL),
        chunks=chunks,
        attrs={
            "units": "seconds since 1970-01-01 00:00:00",
            "calendar": "standard",
            "long_name": f"overpass time (UTC), {label} overpass",
            "grid_mapping": "crs",
        },
    )
    values = retrieval.soil_moisture
    ok = np.isfinite(values)
    sm[window] = np.where(ok, values, np.float32(SM_FILL)).astype(np.float32)
    bad = (retrieval.retrieval_flag & RQF_NOT_RECOMMENDED) > 0
    qc[window] = np.where(ok, np.where(bad, 1, 0), QC_FILL).astype(np.uint8)
    t = retrieval.geometry.time_seconds + _UNIX_MINUS_J2000
    tv[window] = np.where(ok, t, SM_FILL)
