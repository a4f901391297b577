"""MODIS-like covariates: MCD43A3 albedo and MOD16A2 ET as GeoTIFFs on the real sinusoidal tile grid.

The MODIS land grid: a sinusoidal projection on a sphere of radius 6371007.181 m
(``+proj=sinu +R=6371007.181 +nadgrids=@null +wktext``), 36 x 18 tiles hXXvYY of 1111950.5197665 m,
each 2400 x 2400 pixels of 463.3127165 m ("500 m") with the upper-left corner of h00v00 at
(-20015109.354, 10007554.677). Only tiles that intersect the domain are written, and in them only
the pixels over the domain carry data (the rest is the fill value). Real granules are HDF4-EOS,
which the PyPI rasterio cannot write; these GeoTIFFs keep the products' scientific data set names as
band descriptions, their integer encoding and fill codes, and their file naming
``<PRODUCT>.AYYYYDDD.hXXvYY.061.<production time>.tif`` (production time fixed for determinism) in
LP DAAC's ``YYYY.MM.DD`` folders:

* MCD43A3 (daily, 16-day BRDF window): band 1 ``Albedo_WSA_shortwave``, band 2
  ``Albedo_BSA_shortwave``; int16, scale 0.001, valid 0-32766, fill 32767 (also used for failed
  inversions, which occur in patches).
* MOD16A2 (8-day composites starting on day of year 1, 9, 17, ...): band 1 ``ET_500m``, band 2
  ``PET_500m``; int16 sums over the composite, scale 0.1 kg/m2/8day, fill 32767 and the land-cover
  codes 32761 (unclassified) to 32766 (water); here 32762 urban, 32764 barren and 32766 water occur.

The scale factors and fill values are also written as band tags (scale_factor, add_offset,
_FillValue, valid_range, units) as in the HDF4 attributes; GDAL's own scale/offset are not set, so
nothing is scaled behind a reader's back. Pixels take the value of the 1 km cell that contains their
centre (the pipeline averages them back to 1 km).
"""

from __future__ import annotations

import datetime as dt
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
from etl.synthetic.randomness import F32, smooth_field
from etl.synthetic.statics import BARREN, URBAN, WATER

SINUSOIDAL_PROJ4: Final = "+proj=sinu +R=6371007.181 +nadgrids=@null +wktext"
SPHERE_RADIUS: Final = 6371007.181
TILE_SIZE_M: Final = 1111950.5197665
TILE_PIXELS: Final = 2400
PIXEL_M: Final = TILE_SIZE_M / TILE_PIXELS
GRID_X0: Final = -20015109.354
GRID_Y0: Final = 10007554.677
FILL: Final = 32767
ET_CODES: Final[dict[int, int]] = {URBAN: 32762, BARREN: 32764, WATER: 32766}
COLLECTION: Final = "061"

I32 = npt.NDArray[np.int32]


def sinusoidal_crs() -> CRS:
    """The MODIS sinusoidal CRS as rasterio understands it."""
    return CRS.from_proj4(SINUSOIDAL_PROJ4)


@dataclass(frozen=True)
class TileMapping:
    """Which 1 km cell of the domain each pixel of one tile lies in."""

    h: int
    v: int
    cells: I32
    """(2400, 2400) flat indices into the domain's 1 km array, -1 outside the domain."""

    @property
    def name(self) -> str:
        """``hXXvYY``."""
        return f"h{self.h:02d}v{self.v:02d}"

    @property
    def transform(self) -> Affine:
        """Affine transform of the tile."""
        return Affine(
            PIXEL_M,
            0.0,
            GRID_X0 + self.h * TILE_SIZE_M,
            0.0,
            -PIXEL_M,
            GRID_Y0 - self.v * TILE_SIZE_M,
        )

    def sample(
        self, field: npt.NDArray[np.generic]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.generic]]:
        """(inside mask, values at the inside pixels) of a 1 km domain field."""
        inside = self.cells >= 0
        return inside, field.ravel()[self.cells[inside]]


def _ease_x_per_degree() -> float:
    x, _ = Transformer.from_crs(4326, 6933, always_xy=True).transform(1.0, 0.0)
    return float(x)


def tile_mapping(domain: Domain, h: int, v: int) -> TileMapping:
    """Map the pixel centres of tile (h, v) to the domain's 1 km cells (nearest = containing)."""
    px = np.arange(TILE_PIXELS, dtype=np.float64) + 0.5
    x = GRID_X0 + h * TILE_SIZE_M + px * PIXEL_M
    y = GRID_Y0 - v * TILE_SIZE_M - px * PIXEL_M
    lat = np.degrees(y / SPHERE_RADIUS)
    cos_lat = np.cos(np.radians(lat))
    lon = np.degrees(x[None, :] / (SPHERE_RADIUS * cos_lat[:, None]))
    _, ease_y = Transformer.from_crs(4326, 6933, always_xy=True).transform(
        np.zeros_like(lat), np.clip(lat, -86.0, 86.0)
    )
    cell = ease2(1).cell_size
    r0, c0 = domain.offset(1)
    nr, nc = domain.shape(1)
    rows = np.floor((Y_MAX - np.asarray(ease_y)) / cell).astype(np.int64) - r0
    cols = np.floor((lon * _ease_x_per_degree() - X_MIN) / cell).astype(np.int64) - c0
    inside = (rows[:, None] >= 0) & (rows[:, None] < nr) & (cols >= 0) & (cols < nc)
    inside &= np.abs(lon) <= 180.0
    cells = np.where(inside, rows[:, None] * nc + cols, -1).astype(np.int32)
    return TileMapping(h=h, v=v, cells=cells)


def tiles_for_domain(domain: Domain) -> list[tuple[int, int]]:
    """The (h, v) of the tiles hit by the domain's 9 km cell centres or its 1 km edge cells."""
    lon9, lat9 = domain.lonlat(9)
    (r0, c0), (nr, nc) = domain.offset(1), domain.shape(1)
    ring_r = np.concatenate([np.full(nc, r0), np.full(nc, r0 + nr - 1), np.arange(r0, r0 + nr)])
    ring_c = np.concatenate([np.arange(c0, c0 + nc), np.arange(c0, c0 + nc), np.full(nr, c0)])
    ring_r = np.concatenate([ring_r, np.arange(r0, r0 + nr)])
    ring_c = np.concatenate([ring_c, np.full(nr, c0 + nc - 1)])
    lon1, lat1 = ease2(1).lonlat(ring_r, ring_c)
    lon = np.concatenate([lon9.ravel(), lon1])
    lat = np.concatenate([lat9.ravel(), lat1])
    x = SPHERE_RADIUS * np.radians(lon) * np.cos(np.radians(lat))
    y = SPHERE_RADIUS * np.radians(lat)
    h = np.floor((x - GRID_X0) / TILE_SIZE_M).astype(np.int64)
    v = np.floor((GRID_Y0 - y) / TILE_SIZE_M).astype(np.int64)
    return sorted({(int(a), int(b)) for a, b in zip(h, v, strict=True)})


def composite_start(day: dt.date) -> dt.date:
    """First day of the 8-day MOD16A2 composite containing ``day`` (DOY 1, 9, 17, ... per year)."""
    doy = day.timetuple().tm_yday
    return day - dt.timedelta(days=(doy - 1) % 8)


def composite_end(start: dt.date) -> dt.date:
    """Last day of the composite starting on ``start`` (the last one of a year is shorter)."""
    return min(start + dt.timedelta(days=7), dt.date(start.year, 12, 31))


def _name(product: str, day: dt.date, tile: TileMapping) -> str:
    produced = day + dt.timedelta(days=8 if product == "MCD43A3" else 10)
    prod_time = f"{produced:%Y%j}000000"
    return f"{product}.A{day:%Y%j}.{tile.name}.{COLLECTION}.{prod_time}.tif"


def product_path(out_dir: Path, *, product: str, day: dt.date, tile: TileMapping) -> Path:
    """``modis/<PRODUCT>/YYYY.MM.DD/<file>``."""
    return out_dir / "modis" / product / f"{day:%Y.%m.%d}" / _name(product, day, tile)


def _tile_band(
    inside: npt.NDArray[np.bool_], values: npt.NDArray[np.int16]
) -> npt.NDArray[np.int16]:
    band = np.full((TILE_PIXELS, TILE_PIXELS), FILL, dtype=np.int16)
    band[inside] = values
    return band


def _band_tags(scale: float, units: str, long_name: str, valid: str) -> dict[str, str]:
    return {
        "scale_factor": f"{scale:g}",
        "add_offset": "0",
        "_FillValue": str(FILL),
        "valid_range": valid,
        "units": units,
        "long_name": long_name,
    }


def _write_tile(
    path: Path,
    tile: TileMapping,
    bands: list[npt.NDArray[np.int16]],
    *,
    inside: npt.NDArray[np.bool_],
    descriptions: tuple[str, ...],
    band_tags: tuple[dict[str, str], ...],
    tags: dict[str, str],
) -> None:
    spec = RasterSpec(
        width=TILE_PIXELS,
        height=TILE_PIXELS,
        crs=sinusoidal_crs(),
        transform=tile.transform,
        dtype="int16",
        nodata=float(FILL),
        descriptions=descriptions,
        tags=tags,
        band_tags=band_tags,
    )
    full = [_tile_band(inside, b) for b in bands]
    write_geotiff(path, spec, lambda row, n: [b[row : row + n] for b in full], strip_rows=2400)


def write_mcd43a3(
    path: Path, tile: TileMapping, *, albedo_wsa: F32, albedo_bsa: F32, gaps: npt.NDArray[np.bool_]
) -> None:
    """One daily MCD43A3 tile from 1 km white-/black-sky albedo (0-1); ``gaps`` (1 km) are fill."""
    bands = []
    inside, gap = tile.sample(gaps)
    for field in (albedo_wsa, albedo_bsa):
        _, values = tile.sample(field)
        bad = gap.astype(bool) | ~np.isfinite(values.astype(np.float32))
        scaled = np.clip(np.round(np.nan_to_num(values) / 0.001), 0, 32766)
        bands.append(np.where(bad, FILL, scaled).astype(np.int16))
    tags = _band_tags(0.001, "reflectance, no units", "white-sky albedo", "0, 32766")
    bsa_tags = {**tags, "long_name": "black-sky albedo at local solar noon"}
    _write_tile(
        path,
        tile,
        bands,
        inside=inside,
        descriptions=("Albedo_WSA_shortwave", "Albedo_BSA_shortwave"),
        band_tags=(tags, bsa_tags),
        tags={"SHORTNAME": "MCD43A3", "COLLECTION": COLLECTION, "TILE": tile.name},
    )


def write_mod16a2(
    path: Path,
    tile: TileMapping,
    *,
    et_sum_mm: F32,
    pet_sum_mm: F32,
    landcover: npt.NDArray[np.uint8],
) -> None:
    """One 8-day MOD16A2 tile from 1 km ET and PET sums over the composite (mm = kg/m2)."""
    inside, lc = tile.sample(landcover)
    bands = []
    for field in (et_sum_mm, pet_sum_mm):
        values = np.nan_to_num(tile.sample(field)[1].astype(np.float32))
        band = np.clip(np.round(values / 0.1), 0, 32700).astype(np.int16)
        for code_class, code in ET_CODES.items():
            band[lc == code_class] = code
        bands.append(band)
    et_tags = _band_tags(0.1, "kg/m^2/8day", "Total of Evapotranspiration", "-32767, 32700")
    pet_tags = {**et_tags, "long_name": "Total Potential Evapotranspiration"}
    _write_tile(
        path,
        tile,
        bands,
        inside=inside,
        descriptions=("ET_500m", "PET_500m"),
        band_tags=(et_tags, pet_tags),
        tags={"SHORTNAME": "MOD16A2", "COLLECTION": COLLECTION, "TILE": tile.name},
    )


def albedo_gaps(
    rng: np.random.Generator, shape: tuple[int, int], fraction: float
) -> npt.NDArray[np.bool_]:
    """Patches (about 10 km) of failed BRDF inversions covering ``fraction`` of the domain."""
    if fraction <= 0:
        return np.zeros(shape, dtype=bool)
    field = smooth_field(rng, shape, scale_cells=10)
    threshold = float(
        np.quantile(field[:: max(1, shape[0] // 256), :: max(1, shape[1] // 256)], 1 - fraction)
    )
    gaps: npt.NDArray[np.bool_] = field > threshold
    return gaps
