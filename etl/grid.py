"""EASE-Grid 2.0 global (EPSG:6933) at 36, 9 and 1 km, product domains, and exact block operations.

All three grids share one origin (x_min, y_max) and nest exactly: a 36 km cell is 36 x 36 cells of
1 km and 4 x 4 cells of 9 km; a 9 km cell is 9 x 9 cells of 1 km. Product domains are windows of the
1 km grid aligned to 36 km cells, so aggregation to the coarse grids and expansion back are pure
reshapes with no resampling error. Constants follow NSIDC (Brodzik et al. 2012, "EASE-Grid 2.0:
Incremental but Significant Improvements for Earth-Gridded Data Sets", ISPRS IJGI 1(1):32-45) and
the SMAP L3 product specification; cell centres are checked against NSIDC's published 36 km
latitude/longitude files in the tests. Never derive a grid from a file's own lat/lon arrays: SMAP
stores -9999 there wherever nothing was retrieved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from affine import Affine
from pyproj import CRS, Transformer

from etl.errors import GridError

EPSG: Final = 6933
X_MIN: Final = -17367530.44516
Y_MAX: Final = 7314540.83064

# resolution (km) -> (cell size in metres, columns, rows)
_GRID_CONSTANTS: Final[dict[int, tuple[float, int, int]]] = {
    36: (36032.220840584, 964, 406),
    9: (9008.055210146, 3856, 1624),
    1: (1000.89502334956, 34704, 14616),
}
RESOLUTIONS_KM: Final = tuple(sorted(_GRID_CONSTANTS, reverse=True))

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _crs() -> CRS:
    return CRS.from_epsg(EPSG)


@dataclass(frozen=True)
class Ease2Grid:
    """One global EASE-Grid 2.0 grid: row 0 is the northernmost row, column 0 the westernmost."""

    res_km: int
    cell_size: float
    ncols: int
    nrows: int

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        return (self.nrows, self.ncols)

    @property
    def transform(self) -> Affine:
        """Affine transform from (col, row) of the cell's upper-left corner to (x, y) in metres."""
        return Affine(self.cell_size, 0.0, X_MIN, 0.0, -self.cell_size, Y_MAX)

    @property
    def crs(self) -> CRS:
        """EPSG:6933 as a pyproj CRS (rasterio accepts it, or ``crs.to_wkt()``)."""
        return _crs()

    def xy(self, rows: npt.ArrayLike, cols: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Projected cell-centre coordinates (metres) of integer cell indices."""
        r = np.asarray(rows, dtype=np.float64)
        c = np.asarray(cols, dtype=np.float64)
        return X_MIN + (c + 0.5) * self.cell_size, Y_MAX - (r + 0.5) * self.cell_size

    def lonlat(self, rows: npt.ArrayLike, cols: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Cell-centre longitude and latitude (degrees, WGS84) of integer cell indices."""
        x, y = self.xy(rows, cols)
        lon, lat = _to_lonlat().transform(x, y)
        return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)

    def rowcol(self, lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[IntArray, IntArray]:
        """Indices of the cells containing the points; the inverse of :meth:`lonlat`.

        Raises GridError for non-finite coordinates or points outside the grid (beyond about
        +/-86.7 degrees of latitude at 36 km). Longitude -180 belongs to the first column and
        +180 to the last (every longitude in [-180, 180] is inside the grid).
        """
        lon_a = np.asarray(lon, dtype=np.float64)
        lat_a = np.asarray(lat, dtype=np.float64)
        if not (np.all(np.isfinite(lon_a)) and np.all(np.isfinite(lat_a))):
            raise GridError("rowcol: longitude/latitude must be finite")
        if np.any(np.abs(lon_a) > 180.0) or np.any(np.abs(lat_a) > 90.0):
            raise GridError("rowcol: longitude must be within [-180, 180] and latitude [-90, 90]")
        x, y = _to_xy().transform(lon_a, lat_a)
        cols = np.floor((np.asarray(x) - X_MIN) / self.cell_size).astype(np.int64)
        rows = np.floor((Y_MAX - np.asarray(y)) / self.cell_size).astype(np.int64)
        # lon = +/-180 land a hair outside the grid's edges (origin rounded to 10 micrometres)
        cols = np.clip(cols, 0, self.ncols - 1)
        if np.any(rows < 0) or np.any(rows >= self.nrows):
            raise GridError(f"rowcol: point outside the EASE-Grid 2.0 {self.res_km} km grid")
        return rows, cols


def ease2(res_km: int) -> Ease2Grid:
    """The global EASE-Grid 2.0 grid at 36, 9 or 1 km."""
    try:
        cell, ncols, nrows = _GRID_CONSTANTS[res_km]
    except KeyError:
        raise GridError(
            f"no EASE-Grid 2.0 grid at {res_km!r} km; allowed: {', '.join(map(str, RESOLUTIONS_KM))}"
        ) from None
    return Ease2Grid(res_km=res_km, cell_size=cell, ncols=ncols, nrows=nrows)


def nesting_factor(coarse_km: int, fine_km: int) -> int:
    """How many fine cells span one coarse cell along each axis (36/1 -> 36, 36/9 -> 4, 9/1 -> 9)."""
    ease2(coarse_km), ease2(fine_km)
    if coarse_km % fine_km:
        raise GridError(f"{fine_km} km cells do not nest in {coarse_km} km cells")
    return coarse_km // fine_km


@dataclass(frozen=True)
class Domain:
    """A product domain: a window of the 1 km grid whose edges fall on 36 km cell edges.

    Defined by its top-left 36 km cell (``row36``, ``col36``) and its size in 36 km cells, so the
    same window is exact on every grid.
    """

    name: str
    row36: int
    col36: int
    nrows36: int
    ncols36: int

    def __post_init__(self) -> None:
        g = ease2(36)
        if self.nrows36 < 1 or self.ncols36 < 1:
            raise GridError(f"domain {self.name!r}: size must be at least one 36 km cell")
        if (
            self.row36 < 0
            or self.col36 < 0
            or self.row36 + self.nrows36 > g.nrows
            or (self.col36 + self.ncols36 > g.ncols)
        ):
            raise GridError(f"domain {self.name!r}: window lies outside the 36 km grid")

    def offset(self, res_km: int) -> tuple[int, int]:
        """(row, col) of the domain's top-left cell in the global grid at ``res_km``."""
        f = nesting_factor(36, res_km)
        return self.row36 * f, self.col36 * f

    def shape(self, res_km: int) -> tuple[int, int]:
        """(rows, cols) of the domain at ``res_km``."""
        f = nesting_factor(36, res_km)
        return self.nrows36 * f, self.ncols36 * f

    def slices(self, res_km: int) -> tuple[slice, slice]:
        """Row and column slices that cut the domain out of a global array at ``res_km``."""
        (r0, c0), (nr, nc) = self.offset(res_km), self.shape(res_km)
        return slice(r0, r0 + nr), slice(c0, c0 + nc)

    def transform(self, res_km: int) -> Affine:
        """Affine transform of the domain's own array at ``res_km``."""
        r0, c0 = self.offset(res_km)
        return ease2(res_km).transform @ Affine.translation(c0, r0)

    def bounds(self) -> tuple[float, float, float, float]:
        """(x_min, y_min, x_max, y_max) in EPSG:6933 metres; identical at every resolution."""
        g = ease2(36)
        x0 = X_MIN + self.col36 * g.cell_size
        y1 = Y_MAX - self.row36 * g.cell_size
        return x0, y1 - self.nrows36 * g.cell_size, x0 + self.ncols36 * g.cell_size, y1

    def bbox_lonlat(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees. Exact: on a cylindrical grid the corners bound it."""
        x0, y0, x1, y1 = self.bounds()
        lon, lat = _to_lonlat().transform(np.array([x0, x1]), np.array([y0, y1]))
        return float(lon[0]), float(lat[0]), float(lon[1]), float(lat[1])

    def lonlat(self, res_km: int) -> tuple[FloatArray, FloatArray]:
        """2-D arrays of cell-centre longitude and latitude over the domain at ``res_km``."""
        (r0, c0), (nr, nc) = self.offset(res_km), self.shape(res_km)
        rows, cols = np.meshgrid(np.arange(r0, r0 + nr), np.arange(c0, c0 + nc), indexing="ij")
        return ease2(res_km).lonlat(rows, cols)

    def rowcol(
        self, res_km: int, lon: npt.ArrayLike, lat: npt.ArrayLike
    ) -> tuple[IntArray, IntArray]:
        """Domain-relative indices of the cells containing the points; GridError if outside."""
        rows, cols = ease2(res_km).rowcol(lon, lat)
        r0, c0 = self.offset(res_km)
        nr, nc = self.shape(res_km)
        rows, cols = rows - r0, cols - c0
        if np.any(rows < 0) or np.any(rows >= nr) or np.any(cols < 0) or np.any(cols >= nc):
            raise GridError(f"point outside domain {self.name!r}")
        return rows, cols


# China: 73-136 E, 18-54 N rounded outwards to 36 km cells -> 6120 x 3708 cells of 1 km.
# demo: 12 x 10 cells of 36 km (432 x 360 of 1 km) over the North China Plain / Huai River basin.
DOMAINS: Final[dict[str, Domain]] = {
    "china": Domain("china", row36=38, col36=677, nrows36=103, ncols36=170),
    "demo": Domain("demo", row36=82, col36=785, nrows36=10, ncols36=12),
}


def get_domain(name: str) -> Domain:
    """A named domain; GridError naming the allowed names otherwise."""
    try:
        return DOMAINS[name]
    except KeyError:
        raise GridError(f"unknown domain {name!r}; allowed: {', '.join(sorted(DOMAINS))}") from None


def block_mean(
    values: npt.ArrayLike, factor: int, *, weights: npt.ArrayLike | None = None
) -> tuple[FloatArray, IntArray]:
    """NaN-aware mean over non-overlapping ``factor`` x ``factor`` blocks, and the count of valid cells.

    ``values`` has shape (R*factor, C*factor) (extra leading axes are allowed). NaN cells are left out
    of both the sum and the count; a block with no valid cell gives NaN and count 0. Optional
    ``weights`` (same shape, >= 0; NaN treated as 0) give a weighted mean. Float64 throughout so the
    mean of a block is exact up to rounding, which residual correction relies on.
    """
    a = np.asarray(values, dtype=np.float64)
    *lead, nr, nc = a.shape
    if factor < 1 or nr % factor or nc % factor:
        raise GridError(f"block_mean: shape {a.shape[-2:]} is not a multiple of factor {factor}")
    blocks = (*lead, nr // factor, factor, nc // factor, factor)
    axes = (len(lead) + 1, len(lead) + 3)
    valid = np.isfinite(a)
    w = valid.astype(np.float64)
    if weights is not None:
        w = w * np.nan_to_num(np.asarray(weights, dtype=np.float64), nan=0.0)
    total = np.where(valid, a, 0.0) * w
    wsum = w.reshape(blocks).sum(axis=axes)
    count = valid.reshape(blocks).sum(axis=axes).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total.reshape(blocks).sum(axis=axes) / wsum
    mean[wsum == 0] = np.nan
    return mean, count


def block_expand(values: npt.ArrayLike, factor: int) -> npt.NDArray[np.generic]:
    """Repeat each cell into a ``factor`` x ``factor`` block (the inverse layout of :func:`block_mean`)."""
    a = np.asarray(values)
    if factor < 1:
        raise GridError(f"block_expand: factor must be >= 1, got {factor}")
    return np.repeat(np.repeat(a, factor, axis=-2), factor, axis=-1)


def _to_lonlat() -> Transformer:
    # A new Transformer per call: pyproj transformers must not be shared between threads.
    return Transformer.from_crs(EPSG, 4326, always_xy=True)


def _to_xy() -> Transformer:
    return Transformer.from_crs(4326, EPSG, always_xy=True)
