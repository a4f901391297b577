"""Write a 2-D array as a GeoTIFF a GIS opens: CRS, transform, NaN nodata, band description, units.

Written to a temporary name beside the target and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import rasterio
from affine import Affine


def write_geotiff(
    path: Path,
    data: npt.NDArray[np.floating],
    *,
    transform: Affine,
    crs: str,
    description: str,
    units: str,
    tags: dict[str, str] | None = None,
) -> Path:
    """Float32 GeoTIFF (DEFLATE, tiled when large), nodata NaN."""
    if data.ndim != 2:
        raise ValueError(f"write_geotiff needs a 2-D array, got shape {data.shape}")
    rows, cols = data.shape
    profile: dict[str, object] = {
        "driver": "GTiff",
        "width": cols,
        "height": rows,
        "count": 1,
        "dtype": "float32",
        "crs": crs,
        "transform": transform,
        "nodata": float("nan"),
        "compress": "deflate",
        "predictor": 3,
    }
    if rows >= 256 and cols >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data.astype(np.float32, copy=False), 1)
            dst.set_band_description(1, description)
            dst.update_tags(1, units=units)
            if tags:
                dst.update_tags(**tags)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
