"""SoilGrids-like soil property GeoTIFFs and a DEM GeoTIFF from the static 1 km fields.

Both are written on a regular EPSG:4326 grid of ``static_raster_res_deg`` (default 0.0025 degrees,
about 250 m) covering the domain's bounding box, values interpolated bilinearly from the 1 km EASE2
fields for the DEM and from the containing 1 km cell for soil (so the pipeline's area average
recovers the 1 km soil exactly away from edges); open water and pixels outside the domain are
nodata. SoilGrids 2.0 itself is on the
Interrupted Goode Homolosine projection; EPSG:4326 is the simplification allowed here. SoilGrids
conventions are kept (Poggio et al. 2021, SOIL 7:217-240; "mapped units" = stored integers):

=========================  ===========  ==========================================
file                       stored unit  conversion to conventional unit
=========================  ===========  ==========================================
``clay/clay_0-5cm_mean``   g/kg         / 10 -> %  (clay + sand + silt = 1000)
``sand/sand_0-5cm_mean``   g/kg         / 10 -> %
``silt/silt_0-5cm_mean``   g/kg         / 10 -> %
``bdod/bdod_0-5cm_mean``   cg/cm3       / 100 -> kg/dm3 (g/cm3)
``soc/soc_0-5cm_mean``     dg/kg        / 10 -> g/kg
=========================  ===========  ==========================================

int16 with nodata -32768. The DEM (``dem/synthetic_dem_0.0025deg.tif``) is float32 metres rounded
to whole metres (like SRTM; it also compresses five times better), nodata -9999. Because EASE-Grid 2.0 is cylindrical, the 1 km row of a pixel depends on its latitude
only and the column on its longitude only, so the interpolation is a separable gather done in strips
of rows (bounded memory for the China domain).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS

from etl.grid import X_MIN, Y_MAX, Domain, ease2
from etl.synthetic.geotiff import RasterSpec, write_geotiff
from etl.synthetic.randomness import F32
from etl.synthetic.statics import StaticFields

SOIL_NODATA: Final = -32768
DEM_NODATA: Final = -9999.0
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class GeoGrid:
    """A north-up EPSG:4326 grid over a domain, with each pixel's fractional 1 km index."""

    west: float
    north: float
    res: float
    width: int
    height: int
    row_f: F64
    """Fractional domain-relative 1 km row of each raster row (centre-based: cell i spans i-0.5..i+0.5)."""
    col_f: F64

    @property
    def transform(self) -> Affine:
        """Affine transform of the raster."""
        return Affine(self.res, 0.0, self.west, 0.0, -self.res, self.north)

    @classmethod
    def for_domain(cls, domain: Domain, *, res: float) -> GeoGrid:
        """Grid snapped outwards to multiples of ``res`` around the domain's bounding box."""
        west, south, east, north = domain.bbox_lonlat()
        w = math.floor(west / res) * res
        n = math.ceil(north / res) * res
        width = math.ceil((east - w) / res)
        height = math.ceil((n - south) / res)
        lon = w + (np.arange(width) + 0.5) * res
        lat = n - (np.arange(height) + 0.5) * res
        to_xy = Transformer.from_crs(4326, 6933, always_xy=True)
        x, _ = to_xy.transform(lon, np.zeros_like(lon))
        _, y = to_xy.transform(np.zeros_like(lat), lat)
        cell = ease2(1).cell_size
        r0, c0 = domain.offset(1)
        row_f = (Y_MAX - np.asarray(y)) / cell - r0 - 0.5
        col_f = (np.asarray(x) - X_MIN) / cell - c0 - 0.5
        return cls(w, n, res, width, height, row_f, col_f)

    def nearest(
        self, field: npt.NDArray[np.int16], row_off: int, nrows: int, *, nodata: int
    ) -> npt.NDArray[np.int16]:
        """Values of the 1 km cell containing each pixel centre; ``nodata`` outside the domain."""
        nr, nc = field.shape
        r = np.floor(self.row_f[row_off : row_off + nrows] + 0.5).astype(np.int64)
        c = np.floor(self.col_f + 0.5).astype(np.int64)
        out = field[np.clip(r, 0, nr - 1)][:, np.clip(c, 0, nc - 1)]
        out[(r < 0) | (r >= nr), :] = nodata
        out[:, (c < 0) | (c >= nc)] = nodata
        return out

    def sample(self, field: F32, row_off: int, nrows: int) -> F32:
        """Bilinear values of a 1 km field for raster rows row_off..row_off+nrows; NaN outside.

        Separable: interpolate between the two 1 km rows first (cheap, 1 km wide), then between
        the two columns on the raster's own columns.
        """
        nr, nc = field.shape
        rf = self.row_f[row_off : row_off + nrows]
        cf = self.col_f
        r0 = np.clip(np.floor(rf).astype(np.int64), 0, nr - 2)
        c0 = np.clip(np.floor(cf).astype(np.int64), 0, nc - 2)
        wr = np.clip(rf - r0, 0.0, 1.0).astype(np.float32)[:, None]
        wc = np.clip(cf - c0, 0.0, 1.0).astype(np.float32)[None, :]
        rows = field[r0] * (1 - wr) + field[r0 + 1] * wr
        out = (rows[:, c0] * (1 - wc) + rows[:, c0 + 1] * wc).astype(np.float32)
        out[(rf < -0.5) | (rf > nr - 0.5), :] = np.nan
        out[:, (cf < -0.5) | (cf > nc - 0.5)] = np.nan
        return out


SOIL_LAYERS: Final = ("clay", "sand", "silt", "bdod", "soc")
_SOIL_META: Final[dict[str, tuple[str, str]]] = {
    "clay": ("g/kg", "Proportion of clay particles (< 0.002 mm) in the fine earth fraction"),
    "sand": ("g/kg", "Proportion of sand particles (> 0.05 mm) in the fine earth fraction"),
    "silt": ("g/kg", "Proportion of silt particles (>= 0.002 mm and <= 0.05 mm) in the fine earth"),
    "bdod": ("cg/cm3", "Bulk density of the fine earth fraction"),
    "soc": ("dg/kg", "Soil organic carbon content in the fine earth fraction"),
}


def soil_path(out_dir: Path, layer: str) -> Path:
    """``soilgrids/<prop>/<prop>_0-5cm_mean.tif``."""
    return out_dir / "soilgrids" / layer / f"{layer}_0-5cm_mean.tif"


def dem_path(out_dir: Path, *, res: float) -> Path:
    """``dem/synthetic_dem_<res>deg.tif``."""
    return out_dir / "dem" / f"synthetic_dem_{res:g}deg.tif"


def soil_integers(statics: StaticFields) -> dict[str, npt.NDArray[np.int16]]:
    """The five layers at 1 km in SoilGrids' stored integers (nodata on water)."""
    water = ~statics.land
    sand = np.round(statics.sand * 1000.0).astype(np.int16)
    clay = np.round(statics.clay * 1000.0).astype(np.int16)
    layers = {
        "clay": clay,
        "sand": sand,
        "silt": (1000 - sand - clay).astype(np.int16),
        "bdod": np.round(statics.hydraulics.bulk_density * 100.0).astype(np.int16),
        "soc": np.round(statics.organic_carbon_g_kg * 10.0).astype(np.int16),
    }
    for values in layers.values():
        values[water] = SOIL_NODATA
    return layers


def _soil_strip(
    layer: npt.NDArray[np.int16], grid: GeoGrid, row: int, n: int
) -> list[npt.NDArray[np.generic]]:
    return [grid.nearest(layer, row, n, nodata=SOIL_NODATA)]


def write_soilgrids(
    out_dir: Path, statics: StaticFields, domain: Domain, *, res: float
) -> list[Path]:
    """Write the five SoilGrids-like layers; returns their paths."""
    grid = GeoGrid.for_domain(domain, res=res)
    integers = soil_integers(statics)
    paths = []
    for layer in SOIL_LAYERS:
        units, long_name = _SOIL_META[layer]
        spec = RasterSpec(
            width=grid.width,
            height=grid.height,
            crs=CRS.from_epsg(4326),
            transform=grid.transform,
            dtype="int16",
            nodata=float(SOIL_NODATA),
            descriptions=(f"{layer}_0-5cm_mean",),
            tags={"source": "smapds synthetic world (SoilGrids 2.0 conventions)"},
            band_tags=({"units": units, "long_name": long_name, "depth": "0-5cm"},),
            predictor=2,
        )
        path = soil_path(out_dir, layer)
        strip = functools.partial(_soil_strip, integers[layer], grid)
        write_geotiff(path, spec, strip, strip_rows=2048)
        paths.append(path)
    return paths


def write_dem(out_dir: Path, statics: StaticFields, domain: Domain, *, res: float) -> Path:
    """Write the DEM GeoTIFF (float32 metres)."""
    grid = GeoGrid.for_domain(domain, res=res)
    spec = RasterSpec(
        width=grid.width,
        height=grid.height,
        crs=CRS.from_epsg(4326),
        transform=grid.transform,
        dtype="float32",
        nodata=DEM_NODATA,
        descriptions=("elevation",),
        tags={"source": "smapds synthetic world", "AREA_OR_POINT": "Area"},
        band_tags=({"units": "m", "long_name": "height above the EGM2008 geoid"},),
        predictor=3,
    )

    def strip(row: int, n: int) -> list[npt.NDArray[np.generic]]:
        z = np.round(grid.sample(statics.elevation_m, row, n))
        return [np.where(np.isfinite(z), z, np.float32(DEM_NODATA)).astype(np.float32)]

    path = dem_path(out_dir, res=res)
    write_geotiff(path, spec, strip, strip_rows=2048)
    return path
