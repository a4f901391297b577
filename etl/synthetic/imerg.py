"""Write GPM IMERG Early daily files (3B-DAY-E, V07B) as NetCDF4, like GES DISC's GPM_3IMERGDE.

Layout of the real product: ``precipitation`` (float32, mm/day, _FillValue -9999.9) with dimensions
**(time, lon, lat)** (longitude before latitude), ``lat`` ascending from the south, 0.1 degree cell
centres at -179.95 + 0.1 k / -89.95 + 0.1 k, ``time`` as int32 days since 1970-01-01 with the
"julian" calendar and ``time_bnds``; also ``precipitation_cnt`` and ``randomError``. Names follow
``3B-DAY-E.MS.MRG.3IMERG.YYYYMMDD-S000000-E235959.V07B.nc4`` in ``GPM_3IMERGDE.07/YYYY/MM/``.

Simplification: the files hold the window of the global grid over the domain's bounding box plus
0.2 degrees (as a spatial subset from GES DISC's OPeNDAP or Harmony service would), not the whole
globe. Values are the mean of the 1 km precipitation over each 0.1 degree cell, times a log-normal
error (config ``imerg_error_sd``); cells of the margin outside the domain take the value of the
nearest covered cell. No wall-clock time is written, so the files are reproducible.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import netCDF4
import numpy as np
import numpy.typing as npt
from scipy import ndimage

from etl.grid import Domain
from etl.synthetic.randomness import F32, stream

RES: Final = 0.1
FILL: Final = np.float32(-9999.9)
MARGIN_DEG: Final = 0.2


@dataclass(frozen=True)
class ImergWindow:
    """The 0.1 degree cells around a domain and the 1 km cells falling in each."""

    i_lon: npt.NDArray[np.int64]
    """Global longitude indices (0-3599) of the window, west to east."""
    j_lat: npt.NDArray[np.int64]
    """Global latitude indices (0-1799) of the window, south to north."""
    bins: npt.NDArray[np.int64]
    """For each 1 km cell (flattened), its window cell as lon_index * n_lat + lat_index."""
    counts: npt.NDArray[np.float64]
    nearest: tuple[npt.NDArray[np.intp], ...]
    """Indices of the nearest covered window cell, for every window cell."""

    @classmethod
    def for_domain(cls, domain: Domain) -> ImergWindow:
        """Window over the domain's bounding box plus a margin."""
        west, south, east, north = domain.bbox_lonlat()
        i0 = math.floor((west - MARGIN_DEG + 180.0) / RES)
        i1 = math.floor((east + MARGIN_DEG + 180.0) / RES)
        j0 = math.floor((south - MARGIN_DEG + 90.0) / RES)
        j1 = math.floor((north + MARGIN_DEG + 90.0) / RES)
        i_lon = np.arange(max(i0, 0), min(i1, 3599) + 1)
        j_lat = np.arange(max(j0, 0), min(j1, 1799) + 1)
        lon, lat = domain.lonlat(1)
        ii = np.floor((lon.ravel() + 180.0) / RES).astype(np.int64) - int(i_lon[0])
        jj = np.floor((lat.ravel() + 90.0) / RES).astype(np.int64) - int(j_lat[0])
        del lon, lat
        bins = ii * len(j_lat) + jj
        counts = np.bincount(bins, minlength=len(i_lon) * len(j_lat)).astype(np.float64)
        empty = (counts == 0).reshape(len(i_lon), len(j_lat))
        _, nearest = ndimage.distance_transform_edt(empty, return_indices=True)
        return cls(
            i_lon=i_lon,
            j_lat=j_lat,
            bins=bins,
            counts=counts,
            nearest=(nearest[0], nearest[1]),
        )

    @property
    def shape(self) -> tuple[int, int]:
        """(n_lon, n_lat)."""
        return (len(self.i_lon), len(self.j_lat))

    def aggregate(self, precip_1km: F32) -> F32:
        """Mean of the 1 km field over each 0.1 degree cell, (lon, lat) order, margin filled."""
        sums = np.bincount(self.bins, weights=precip_1km.ravel(), minlength=self.counts.size)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (sums / self.counts).reshape(self.shape)
        out: F32 = mean[self.nearest].astype(np.float32)
        return out


def imerg_path(out_dir: Path, *, day: dt.date) -> Path:
    """GES DISC layout ``imerg/GPM_3IMERGDE.07/YYYY/MM/3B-DAY-E...V07B.nc4``."""
    name = f"3B-DAY-E.MS.MRG.3IMERG.{day:%Y%m%d}-S000000-E235959.V07B.nc4"
    return out_dir / "imerg" / "GPM_3IMERGDE.07" / f"{day:%Y}" / f"{day:%m}" / name


def write_imerg(
    path: Path,
    *,
    window: ImergWindow,
    precip_1km: F32,
    day: dt.date,
    seed: int,
    day_index: int,
    error_sd: float,
) -> None:
    """Write one daily IMERG-like file from the 1 km precipitation (mm/day)."""
    mean = window.aggregate(precip_1km)
    z = stream(seed, "imerg", day_index).standard_normal(mean.shape).astype(np.float32)
    factor = np.exp(np.float32(error_sd) * z - np.float32(0.5 * error_sd**2))
    precip = np.round(mean * factor, 2).astype(np.float32)
    days = (day - dt.date(1970, 1, 1)).days
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
        nc.setncatts(
            {
                "BeginDate": f"{day:%Y-%m-%d}",
                "BeginTime": "00:00:00.000Z",
                "EndDate": f"{day:%Y-%m-%d}",
                "EndTime": "23:59:59.999Z",
                "FileHeader": (
                    f"StartGranuleDateTime={day:%Y-%m-%d}T00:00:00.000Z;\n"
                    f"StopGranuleDateTime={day:%Y-%m-%d}T23:59:59.999Z"
                ),
                "InputPointer": f"3B-HHR-E.MS.MRG.3IMERG.{day:%Y%m%d}-S000000-E002959.0000.V07B.HDF5",
                "title": "GPM IMERG Early Precipitation L3 1 day 0.1 degree x 0.1 degree (synthetic)",
                "DOI": "10.5067/GPM/IMERGDE/DAY/07",
                "ProductionTime": f"{day + dt.timedelta(days=1):%Y-%m-%d}T06:00:00.000Z",
            }
        )
        nc.createDimension("time", 1)
        nc.createDimension("lon", window.shape[0])
        nc.createDimension("lat", window.shape[1])
        nc.createDimension("nv", 2)
        t = nc.createVariable("time", "i4", ("time",))
        t.setncatts(
            {
                "standard_name": "time",
                "units": "days since 1970-01-01 00:00:00Z",
                "calendar": "julian",
                "bounds": "time_bnds",
                "axis": "T",
            }
        )
        t[:] = np.array([days], dtype=np.int32)
        tb = nc.createVariable("time_bnds", "i4", ("time", "nv"))
        tb.setncatts({"units": "days since 1970-01-01 00:00:00Z", "calendar": "julian"})
        tb[:] = np.array([[days, days + 1]], dtype=np.int32)
        lon = nc.createVariable("lon", "f4", ("lon",))
        lon.setncatts({"units": "degrees_east", "standard_name": "longitude", "axis": "X"})
        lon[:] = (-179.95 + RES * window.i_lon).astype(np.float32)
        lat = nc.createVariable("lat", "f4", ("lat",))
        lat.setncatts({"units": "degrees_north", "standard_name": "latitude", "axis": "Y"})
        lat[:] = (-89.95 + RES * window.j_lat).astype(np.float32)
        dims = ("time", "lon", "lat")
        p = nc.createVariable("precipitation", "f4", dims, zlib=True, complevel=4, fill_value=FILL)
        p.setncatts(
            {
                "units": "mm/day",
                "long_name": "Daily mean precipitation rate (combined microwave-IR) estimate. "
                "Formerly precipitationCal.",
                "coordinates": "time lon lat",
            }
        )
        p[:] = precip[None, :, :]
        cnt = nc.createVariable("precipitation_cnt", "i1", dims, zlib=True, complevel=4)
        cnt.setncatts(
            {
                "units": "count",
                "long_name": "Count of all valid half-hourly precipitation retrievals for the day",
                "coordinates": "time lon lat",
            }
        )
        cnt[:] = np.full((1, *window.shape), 48, dtype=np.int8)
        err = nc.createVariable("randomError", "f4", dims, zlib=True, complevel=4, fill_value=FILL)
        err.setncatts(
            {
                "units": "mm/day",
                "long_name": "Daily mean random error for the combined microwave-IR estimate",
                "coordinates": "time lon lat",
            }
        )
        err[:] = np.round(np.float32(0.2) * precip + np.float32(0.8) * np.sqrt(precip), 2)[None]
    tmp.replace(path)
