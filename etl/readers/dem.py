"""Read a digital elevation model GeoTIFF (Copernicus DEM GLO-30/90, SRTM) as float32 metres.

Traps handled: the nodata tag is honoured, and SRTM's void code -32768 is masked even when untagged;
integer (SRTM int16) and float (Copernicus float32) tiles give the same float32 output.
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

SRTM_VOID: Final = -32768


def read_dem(path: str | Path) -> xr.DataArray:
    """Elevation as float32 (y, x) in metres above the geoid, NaN at nodata / voids."""
    source = Path(path)
    band = read_geotiff_band(source)
    if band.scale != 1.0 or band.offset != 0.0:
        raise SchemaDriftError(
            f"{source}: DEM has scale/offset {band.scale}/{band.offset}, expected metres as stored"
        )
    stored = band.values
    values = stored.astype(np.float32)
    bad = (stored == SRTM_VOID) | ~np.isfinite(values)
    if band.nodata is not None:
        bad |= stored == band.nodata
    values[bad] = np.nan
    logger.info("dem_read", extra={"source_file": str(source), "valid_pixels": int((~bad).sum())})
    return raster_dataarray(
        values,
        transform=band.transform,
        crs_wkt=band.crs_wkt,
        name="elevation",
        attrs={"units": "m", "product": "DEM", "source_file": str(source)},
    )
