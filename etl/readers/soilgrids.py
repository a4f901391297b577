"""Read SoilGrids 2.0 property GeoTIFFs (250 m) into conventional units.

SoilGrids stores int16 values in "mapped units" with nodata -32768, in its own projection (Interrupted
Goode Homolosine, ESRI:54052, for the global maps; the file's CRS is used as stored). Conversions
(ISRIC's conversion factors): clay, sand, silt g/kg -> fraction (x 0.001); bdod cg/cm3 -> g/cm3
(x 0.01); soc dg/kg -> g/kg (x 0.1). Traps handled: the integers are never taken as physical
values; a float GeoTIFF (already converted by someone) is refused rather than scaled twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

import xarray as xr

from etl.errors import ConfigError
from etl.readers.errors import SchemaDriftError
from etl.readers.geotiff import read_geotiff_band
from etl.readers.raster import raster_dataarray
from etl.readers.scaling import CodeRule, decode

logger = logging.getLogger(__name__)

SOILGRIDS_NODATA: Final = -32768

# property -> (factor to conventional units, units, largest plausible stored value)
PROPERTIES: Final[Mapping[str, tuple[float, str, int]]] = MappingProxyType(
    {
        "clay": (0.001, "1", 1000),
        "sand": (0.001, "1", 1000),
        "silt": (0.001, "1", 1000),
        "bdod": (0.01, "g/cm3", 32767),
        "soc": (0.1, "g/kg", 32767),
    }
)


def read_soilgrids(path: str | Path, *, prop: str) -> xr.DataArray:
    """SoilGrids ``prop`` (clay, sand, silt, bdod, soc) as float32 (y, x) in conventional units."""
    source = Path(path)
    try:
        factor, units, top = PROPERTIES[prop]
    except KeyError:
        raise ConfigError(
            f"unknown SoilGrids property {prop!r}; known: {', '.join(PROPERTIES)}"
        ) from None
    band = read_geotiff_band(source)
    if band.values.dtype.kind not in "iu":
        raise SchemaDriftError(
            f"{source}: SoilGrids {prop} holds {band.values.dtype}, expected integers in mapped units"
        )
    fills = {SOILGRIDS_NODATA} | ({int(band.nodata)} if band.nodata is not None else set())
    decoded = decode(
        band.values,
        CodeRule(scale=factor, offset=0.0, fill=tuple(sorted(fills)), valid_min=0, valid_max=top),
    )
    logger.info("soilgrids_read", extra={"source_file": str(source), "property": prop})
    return raster_dataarray(
        decoded.values,
        transform=band.transform,
        crs_wkt=band.crs_wkt,
        name=prop,
        attrs={"units": units, "product": f"SoilGrids_{prop}", "source_file": str(source)},
    )
