"""Write the synthetic world's truth: daily 1 km soil moisture and the static 1 km fields (NetCDF4).

Never read by the product pipeline; only skill tests and benchmarks (the OSSE) use it. Both files
are on the domain's window of the 1 km EASE-Grid 2.0 grid: coordinates ``x``/``y`` are cell-centre
EPSG:6933 metres (y decreasing: row 0 north) and ``crs`` carries the grid mapping and WKT.

* ``truth/truth_1km_<domain>_<start>_<end>.nc``: ``soil_moisture`` (m3/m3, surface layer, daily value
  of the UTC day, NaN-filled -9999 on water), ``precipitation`` and ``pet`` (mm/day) with
  dimensions (time, y, x); time is days since 1970-01-01. Stored to 1e-4 m3/m3 (0.01 mm) so the
  file compresses well.
* ``truth/static_1km_<domain>.nc``: elevation, land mask, land cover (IGBP), sand/silt/clay
  fractions, organic carbon, porosity, field capacity, wilting point, Ksat, bulk density,
  vegetation cover (stored to 1e-4 or coarser, see ``write_static``).
* ``truth/stations.csv``: station positions, cells and hidden sensor biases.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Final

import netCDF4
import numpy as np
import numpy.typing as npt

from etl.grid import Domain
from etl.synthetic.netcdf import compressed_variable, write_ease2_crs
from etl.synthetic.randomness import F32
from etl.synthetic.statics import StaticFields

FILL: Final = np.float32(-9999.0)
EPOCH: Final = dt.date(1970, 1, 1)


def truth_path(out_dir: Path, *, domain: Domain, start: dt.date, end: dt.date) -> Path:
    """Path of the daily truth file."""
    return out_dir / "truth" / f"truth_1km_{domain.name}_{start:%Y%m%d}_{end:%Y%m%d}.nc"


def static_path(out_dir: Path, *, domain: Domain) -> Path:
    """Path of the static truth file."""
    return out_dir / "truth" / f"static_1km_{domain.name}.nc"


def _grid(nc: netCDF4.Dataset, domain: Domain) -> tuple[str, str]:
    nr, nc_ = domain.shape(1)
    t = domain.transform(1)
    nc.createDimension("y", nr)
    nc.createDimension("x", nc_)
    x = nc.createVariable("x", "f8", ("x",))
    x.setncatts({"standard_name": "projection_x_coordinate", "units": "m"})
    x[:] = t.c + (np.arange(nc_) + 0.5) * t.a
    y = nc.createVariable("y", "f8", ("y",))
    y.setncatts({"standard_name": "projection_y_coordinate", "units": "m"})
    y[:] = t.f + (np.arange(nr) + 0.5) * t.e
    write_ease2_crs(nc, GeoTransform=" ".join(f"{v!r}" for v in (t.c, t.a, t.b, t.f, t.d, t.e)))
    return ("y", "x")


def _global_attrs(nc: netCDF4.Dataset, domain: Domain, title: str) -> None:
    nc.setncatts(
        {
            "title": title,
            "Conventions": "CF-1.8",
            "source": "smapds synthetic world",
            "domain": domain.name,
            "grid": "EASE-Grid 2.0 1 km (EPSG:6933), window of the global grid",
            "comment": "Truth of the OSSE: not an input of the product pipeline.",
        }
    )


class TruthWriter:
    """Writes the daily truth one day at a time into a NetCDF4 file of known length."""

    def __init__(self, path: Path, *, domain: Domain, start: dt.date, days: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._tmp = path.with_name(path.name + ".part")
        self._start = start
        self._nc = netCDF4.Dataset(self._tmp, "w", format="NETCDF4")
        _global_attrs(self._nc, domain, "Synthetic world: daily 1 km truth")
        dims = _grid(self._nc, domain)
        self._nc.createDimension("time", days)
        time = self._nc.createVariable("time", "i4", ("time",))
        time.setncatts(
            {"standard_name": "time", "units": "days since 1970-01-01", "calendar": "standard"}
        )
        time[:] = np.arange(days, dtype=np.int32) + (start - EPOCH).days
        chunks = (1, *domain.shape(1))
        self._vars = {}
        for name, units, digits, long_name in (
            ("soil_moisture", "m3/m3", 4, "volumetric water content of the surface layer"),
            ("precipitation", "mm/day", 2, "precipitation of the UTC day"),
            ("pet", "mm/day", 2, "potential evapotranspiration (Hargreaves)"),
        ):
            self._vars[name] = compressed_variable(
                self._nc,
                name,
                "f4",
                ("time", *dims),
                fill=FILL,
                chunks=chunks,
                level=1,
                digits=digits,
                attrs={"units": units, "long_name": long_name, "grid_mapping": "crs"},
            )

    def write_day(self, day: dt.date, **fields: F32) -> None:
        """Write the fields (soil_moisture, precipitation, pet) of ``day``."""
        k = (day - self._start).days
        for name, values in fields.items():
            self._vars[name][k, :, :] = np.where(np.isfinite(values), values, FILL)

    def close(self) -> None:
        """Finish the file and move it to its final name."""
        self._nc.close()
        self._tmp.replace(self.path)


def write_static(path: Path, *, domain: Domain, statics: StaticFields) -> None:
    """Write the static 1 km fields."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    h = statics.hydraulics
    # name, values, units, long name, decimal digits kept (None: integers)
    fields: list[tuple[str, npt.NDArray[np.generic], str, str, int | None]] = [
        ("elevation", statics.elevation_m, "m", "terrain height", 1),
        ("land", statics.land.astype(np.uint8), "1", "1 land, 0 open water", None),
        ("landcover", statics.landcover, "1", "IGBP class (MCD12Q1 LC_Type1 codes)", None),
        ("sand", statics.sand, "1", "sand weight fraction", 4),
        ("silt", statics.silt, "1", "silt weight fraction", 4),
        ("clay", statics.clay, "1", "clay weight fraction", 4),
        ("organic_carbon", statics.organic_carbon_g_kg, "g/kg", "soil organic carbon", 2),
        ("porosity", h.porosity, "m3/m3", "saturated water content (Saxton & Rawls 2006)", 4),
        ("field_capacity", h.field_capacity, "m3/m3", "water content at -33 kPa", 4),
        ("wilting_point", h.wilting_point, "m3/m3", "water content at -1500 kPa", 4),
        ("ksat", h.ksat_mm_h, "mm/h", "saturated hydraulic conductivity", 2),
        ("bulk_density", h.bulk_density, "g/cm3", "normal bulk density", 3),
        ("veg_cover", statics.veg_cover, "1", "vegetation cover fraction", 3),
    ]
    with netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
        _global_attrs(nc, domain, "Synthetic world: static 1 km fields")
        dims = _grid(nc, domain)
        for name, values, units, long_name, digits in fields:
            v = compressed_variable(
                nc,
                name,
                values.dtype.str.lstrip("<>|="),
                dims,
                level=1,
                digits=digits,
                attrs={"units": units, "long_name": long_name, "grid_mapping": "crs"},
            )
            v[:, :] = values
    tmp.replace(path)
