"""Small NetCDF helpers shared by the synthetic writers (grid mapping, compressed variables)."""

from __future__ import annotations

from typing import Any, Literal

import netCDF4
import numpy as np

from etl.grid import ease2


def write_ease2_crs(nc: netCDF4.Dataset, **extra: Any) -> None:
    """Add the CF grid-mapping variable ``crs`` for EASE-Grid 2.0 (EPSG:6933) to ``nc``."""
    wkt = ease2(1).crs.to_wkt()
    crs = nc.createVariable("crs", "i4", ())
    crs.setncatts(
        {
            "grid_mapping_name": "lambert_cylindrical_equal_area",
            "standard_parallel": 30.0,
            "longitude_of_central_meridian": 0.0,
            "false_easting": 0.0,
            "false_northing": 0.0,
            "semi_major_axis": 6378137.0,
            "inverse_flattening": 298.257223563,
            "epsg_code": "EPSG:6933",
            "crs_wkt": wkt,
            "spatial_ref": wkt,
            **extra,
        }
    )


def compressed_variable(
    nc: netCDF4.Dataset,
    name: str,
    dtype: str,
    dims: tuple[str, ...],
    *,
    attrs: dict[str, Any],
    fill: np.generic | None = None,
    chunks: tuple[int, ...] | None = None,
    level: Literal[1, 4] = 4,
    digits: int | None = None,
) -> netCDF4.Variable[Any]:
    """A zlib-compressed variable with its attributes (``digits``: decimal digits kept)."""
    var: netCDF4.Variable[Any] = nc.createVariable(
        name,
        dtype,
        dims,
        zlib=True,
        complevel=level,
        chunksizes=chunks,
        fill_value=fill,
        least_significant_digit=digits,
    )
    var.setncatts(attrs)
    return var
