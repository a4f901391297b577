"""Open a GeoTIFF band with rasterio as stored: values, nodata, CRS (WKT), transform, tags; typed errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import rasterio
from affine import Affine
from rasterio.errors import RasterioError

from etl.readers.errors import CorruptFileError, SchemaDriftError


@dataclass(frozen=True)
class GeoBand:
    """One band as stored, with the georeferencing, GDAL scale/offset, description and tags."""

    values: npt.NDArray[Any]
    transform: Affine
    crs_wkt: str
    nodata: float | None
    scale: float
    offset: float
    tags: dict[str, str]
    description: str | None
    band_tags: dict[str, str]


def band_descriptions(path: Path) -> tuple[str | None, ...]:
    """The description of every band (GDAL band description; None where unset)."""
    with _open(path) as src:
        return tuple(src.descriptions)


def read_geotiff_band(path: Path, *, band: int | str = 1) -> GeoBand:
    """Read ``band`` (1-based number, or the band's description, e.g. an SDS name) of ``path``.

    CorruptFileError if the file does not open; SchemaDriftError without a CRS or without the band.
    """
    with _open(path) as src:
        if isinstance(band, str):
            if band not in src.descriptions:
                raise SchemaDriftError(
                    f"{path}: no band described as {band!r} (bands: {src.descriptions})"
                )
            index = src.descriptions.index(band) + 1
        else:
            index = band
        if index < 1 or index > src.count:
            raise SchemaDriftError(f"{path}: has {src.count} band(s), band {index} requested")
        if src.crs is None:
            raise SchemaDriftError(f"{path}: GeoTIFF has no CRS")
        try:
            values = np.asarray(src.read(index))
        except RasterioError as err:
            raise CorruptFileError(f"{path}: band {index} cannot be read ({err})") from err
        nodata = src.nodatavals[index - 1]
        return GeoBand(
            values=values,
            transform=src.transform,
            crs_wkt=src.crs.to_wkt(),
            nodata=None if nodata is None else float(nodata),
            scale=float(src.scales[index - 1]),
            offset=float(src.offsets[index - 1]),
            tags=dict(src.tags()),
            description=src.descriptions[index - 1],
            band_tags=dict(src.tags(index)),
        )


@contextmanager
def _open(path: Path) -> Iterator[Any]:
    if not path.is_file():
        raise CorruptFileError(f"{path}: no such file")
    try:
        src = rasterio.open(path)
    except RasterioError as err:
        raise CorruptFileError(f"{path}: does not open as GeoTIFF ({err})") from err
    try:
        yield src
    finally:
        src.close()
