"""Regridding any georeferenced raster onto a domain of the 1 km EASE-Grid 2.0 grid.

The method is a required choice, never a default, because it is a scientific one:

- ``average``: area-weighted mean, for a source finer than 1 km (MODIS 500 m, SoilGrids 250 m).
  GDAL >= 3.1 weights each source pixel by the fraction of the target cell it covers.
- ``bilinear``: for a source coarser than 1 km (IMERG 0.1 degree, ERA5 0.25 degree).
- ``nearest`` / ``mode``: for categorical data (land cover), coarser / finer source.

NaN is nodata on both sides: missing source pixels are left out of averages and a target cell with
no valid source stays NaN (never 0). Work proceeds tile by tile over the target, and only the part
of each source that a tile needs is cut out, so memory is bounded by the tile size even for the
China domain and a mosaic of many MODIS tiles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import Resampling, reproject, transform_bounds
from rasterio.windows import from_bounds

from etl.errors import GridError
from etl.grid import EPSG, Domain

Method = Literal["average", "bilinear", "nearest", "mode"]
_RESAMPLING = {
    "average": Resampling.average,
    "bilinear": Resampling.bilinear,
    "nearest": Resampling.nearest,
    "mode": Resampling.mode,
}
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class RasterSource:
    """A 2-D float array (NaN = nodata) with its affine transform and CRS (anything rasterio reads)."""

    data: npt.NDArray[np.floating]
    transform: Affine
    crs: str

    def __post_init__(self) -> None:
        if self.data.ndim != 2:
            raise GridError(f"RasterSource needs a 2-D array, got shape {self.data.shape}")


def regrid(
    sources: RasterSource | Sequence[RasterSource],
    domain: Domain,
    *,
    method: Method,
    res_km: int = 1,
    tile: int = 1024,
) -> FloatArray:
    """Resample ``sources`` (one raster, or tiles of one grid, e.g. MODIS hXXvYY) onto ``domain``.

    Several sources must share CRS and pixel size (they are mosaicked per target tile, so an
    average across a tile seam sees both sides). Returns float32 of ``domain.shape(res_km)``.
    """
    srcs = [sources] if isinstance(sources, RasterSource) else list(sources)
    if not srcs:
        raise GridError("regrid: no source raster")
    if method not in _RESAMPLING:
        raise GridError(f"regrid: unknown method {method!r}; allowed: {', '.join(_RESAMPLING)}")
    _check_same_grid(srcs)
    rows, cols = domain.shape(res_km)
    out = np.full((rows, cols), np.nan, dtype=np.float32)
    dst_transform = domain.transform(res_km)
    dst_crs = CRS.from_epsg(EPSG)
    src_crs = CRS.from_user_input(srcs[0].crs)
    for r0 in range(0, rows, tile):
        for c0 in range(0, cols, tile):
            h, w = min(tile, rows - r0), min(tile, cols - c0)
            t = dst_transform @ Affine.translation(c0, r0)
            bounds = _bounds(t, w, h)
            src_bounds = transform_bounds(dst_crs, src_crs, *bounds, densify_pts=21)
            patch = _mosaic(srcs, src_bounds, margin=2)
            if patch is None:
                continue
            data, transform = patch
            dst = np.full((h, w), np.nan, dtype=np.float32)
            reproject(
                source=data,
                destination=dst,
                src_transform=transform,
                src_crs=src_crs,
                src_nodata=np.nan,
                dst_transform=t,
                dst_crs=dst_crs,
                dst_nodata=np.nan,
                resampling=_RESAMPLING[method],
            )
            out[r0 : r0 + h, c0 : c0 + w] = dst
    return out


def _bounds(t: Affine, width: int, height: int) -> tuple[float, float, float, float]:
    x0, y0 = t @ (0, 0)
    x1, y1 = t @ (width, height)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _check_same_grid(srcs: list[RasterSource]) -> None:
    first = srcs[0]
    for s in srcs[1:]:
        same_crs = CRS.from_user_input(s.crs) == CRS.from_user_input(first.crs)
        same_res = math.isclose(s.transform.a, first.transform.a, rel_tol=1e-9) and math.isclose(
            s.transform.e, first.transform.e, rel_tol=1e-9
        )
        if not (same_crs and same_res) or s.transform.b or s.transform.d:
            raise GridError("regrid: mosaicked sources must share CRS and pixel size, unrotated")


def _mosaic(
    srcs: list[RasterSource], bounds: tuple[float, float, float, float], *, margin: int
) -> tuple[npt.NDArray[np.float32], Affine] | None:
    """The sources cut to ``bounds`` (+ ``margin`` pixels) on the first source's pixel grid."""
    ref = srcs[0].transform
    win = from_bounds(*bounds, transform=ref)
    col0 = math.floor(win.col_off) - margin
    row0 = math.floor(win.row_off) - margin
    col1 = math.ceil(win.col_off + win.width) + margin
    row1 = math.ceil(win.row_off + win.height) + margin
    canvas = np.full((row1 - row0, col1 - col0), np.nan, dtype=np.float32)
    hit = False
    for s in srcs:
        # offset of this source's pixel (0, 0) on the reference pixel grid
        ox, oy = ~ref @ (s.transform.c, s.transform.f)
        oc, orow = round(ox), round(oy)
        if abs(ox - oc) > 1e-6 or abs(oy - orow) > 1e-6:
            raise GridError("regrid: mosaicked sources are not aligned on one pixel grid")
        sr, sc = s.data.shape
        r_lo, r_hi = max(row0, orow), min(row1, orow + sr)
        c_lo, c_hi = max(col0, oc), min(col1, oc + sc)
        if r_lo >= r_hi or c_lo >= c_hi:
            continue
        block = s.data[r_lo - orow : r_hi - orow, c_lo - oc : c_hi - oc]
        target = canvas[r_lo - row0 : r_hi - row0, c_lo - col0 : c_hi - col0]
        np.copyto(target, block, where=np.isfinite(block) | np.isnan(target), casting="unsafe")
        hit = True
    if not hit:
        return None
    return canvas, ref @ Affine.translation(col0, row0)
