"""Reproducible GeoTIFF writing for the synthetic covariates (deflate level 1, tiled, no datetime tag).

GDAL writes a TIFFTAG_DATETIME only when asked to, and deflate output depends on the data alone
(also when compressing on several threads), so the same arrays give the same bytes. Blocks that are entirely nodata are not written
(SPARSE_OK), which keeps mostly-empty MODIS tiles small; readers see nodata there.
Large rasters are written in strips of rows produced by a callback, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

BLOCK = 512


@dataclass(frozen=True)
class RasterSpec:
    """Georeferencing and encoding of one GeoTIFF."""

    width: int
    height: int
    crs: CRS
    transform: Affine
    dtype: str
    nodata: float
    descriptions: tuple[str, ...]
    tags: dict[str, str]
    band_tags: tuple[dict[str, str], ...]
    predictor: int = 1
    """TIFF predictor: 1 none, 2 horizontal differencing (smooth integers), 3 floating point."""


def write_geotiff(
    path: Path,
    spec: RasterSpec,
    strip: Callable[[int, int], Sequence[npt.NDArray[np.generic]]],
    *,
    strip_rows: int = 2048,
) -> None:
    """Write ``path`` (via a temporary name); ``strip(row_off, nrows)`` gives each band's rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    profile = {
        "driver": "GTiff",
        "width": spec.width,
        "height": spec.height,
        "count": len(spec.descriptions),
        "dtype": spec.dtype,
        "crs": spec.crs,
        "transform": spec.transform,
        "nodata": spec.nodata,
        "compress": "deflate",
        "zlevel": 1,
        "predictor": spec.predictor,
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
        "sparse_ok": True,
        "interleave": "band",
        "num_threads": "ALL_CPUS",  # parallel compression; blocks are still written in order
    }
    step = max(BLOCK, strip_rows // BLOCK * BLOCK)
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.update_tags(**spec.tags)
        for band, (description, tags) in enumerate(
            zip(spec.descriptions, spec.band_tags, strict=True), start=1
        ):
            dst.set_band_description(band, description)
            dst.update_tags(band, **tags)
        for row in range(0, spec.height, step):
            nrows = min(step, spec.height - row)
            arrays = strip(row, nrows)
            window = Window(0, row, spec.width, nrows)
            for band, array in enumerate(arrays, start=1):
                dst.write(array.astype(spec.dtype, copy=False), band, window=window)
    tmp.replace(path)
