"""Read CHIRPS precipitation GeoTIFFs (v2.0/v3.0, daily or monthly totals, 0.05 deg, EPSG:4326).

Stored as float32 millimetres over the file's period (a daily file: mm/day) with -9999 over sea and
outside 50 S-50 N. Traps handled: -9999 is masked even when the GeoTIFF carries no nodata tag (some
CHIRPS releases omit it) or tags another value; negative totals are impossible and also masked.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

import numpy as np
import xarray as xr

from etl.readers.errors import SchemaDriftError
from etl.readers.geotiff import read_geotiff_band
from etl.readers.raster import raster_dataarray

logger = logging.getLogger(__name__)

CHIRPS_FILL: Final = -9999.0


def read_chirps(path: str | Path) -> xr.DataArray:
    """CHIRPS total precipitation as float32 (y, x) in mm, NaN at -9999 / nodata / negative values."""
    source = Path(path)
    band = read_geotiff_band(source)
    if band.scale != 1.0 or band.offset != 0.0:
        raise SchemaDriftError(
            f"{source}: CHIRPS GeoTIFF has scale/offset {band.scale}/{band.offset}, expected none"
        )
    stored = band.values
    values = stored.astype(np.float32)
    bad = (stored == CHIRPS_FILL) | ~np.isfinite(values) | (values < 0)
    if band.nodata is not None:
        bad |= stored == band.nodata
    values[bad] = np.nan
    logger.info(
        "chirps_read", extra={"source_file": str(source), "valid_pixels": int((~bad).sum())}
    )
    return raster_dataarray(
        values,
        transform=band.transform,
        crs_wkt=band.crs_wkt,
        name="precipitation",
        attrs={"units": "mm", "product": "CHIRPS", "source_file": str(source)},
    )
