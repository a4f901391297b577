"""The static 1 km fields of the synthetic world: terrain, water, land cover, soil and its hydraulics.

Terrain is a large-scale trend plus ridged multi-scale noise in mountain belts (ridges and valleys),
lakes sit in low plains and rivers follow meandering zero lines of a smooth field. Land cover
follows terrain (forest and shrub on slopes, bare rock on high ridges, cropland on plains, towns as
blobs). Texture comes from an additive log-ratio of correlated fields (fractions sum to one), organic
carbon from land cover, and porosity / field capacity / wilting point / bulk density from Saxton &
Rawls (2006) (see :mod:`etl.synthetic.pedotransfer`). Land cover codes are IGBP as in MCD12Q1
LC_Type1.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from etl.grid import Domain
from etl.synthetic.pedotransfer import OM_PER_OC, HydraulicProperties, saxton_rawls
from etl.synthetic.randomness import F32, fractal_field, smooth_field, stream

log = logging.getLogger(__name__)

U8 = npt.NDArray[np.uint8]

# IGBP classes (MCD12Q1 LC_Type1) used by the synthetic world.
EVERGREEN_NEEDLELEAF: Final = 1
DECIDUOUS_BROADLEAF: Final = 4
MIXED_FOREST: Final = 5
OPEN_SHRUBLAND: Final = 7
GRASSLAND: Final = 10
CROPLAND: Final = 12
URBAN: Final = 13
CROP_MOSAIC: Final = 14
BARREN: Final = 16
WATER: Final = 17

# class -> (vegetation cover, ET crop coefficient, snow-free base albedo, organic carbon g/kg)
LANDCOVER_PROPERTIES: Final[dict[int, tuple[float, float, float, float]]] = {
    EVERGREEN_NEEDLELEAF: (0.90, 1.00, 0.11, 28.0),
    DECIDUOUS_BROADLEAF: (0.85, 1.00, 0.14, 24.0),
    MIXED_FOREST: (0.85, 1.00, 0.13, 25.0),
    OPEN_SHRUBLAND: (0.35, 0.75, 0.22, 8.0),
    GRASSLAND: (0.55, 0.85, 0.20, 15.0),
    CROPLAND: (0.60, 0.95, 0.18, 9.0),
    URBAN: (0.20, 0.60, 0.15, 6.0),
    CROP_MOSAIC: (0.65, 0.95, 0.17, 12.0),
    BARREN: (0.05, 0.50, 0.30, 3.0),
    WATER: (0.0, 1.20, 0.06, 0.0),
}


@dataclass(frozen=True)
class StaticFields:
    """All static 1 km fields over a domain (row 0 north), float32 unless noted."""

    elevation_m: F32
    land: npt.NDArray[np.bool_]
    """True on land, False on open water."""
    landcover: U8
    """IGBP class (see LANDCOVER_PROPERTIES)."""
    sand: F32
    """Weight fractions of the fine earth; sand + silt + clay = 1."""
    silt: F32
    clay: F32
    organic_carbon_g_kg: F32
    hydraulics: HydraulicProperties
    veg_cover: F32
    crop_coefficient: F32
    base_albedo: F32

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the 1 km domain."""
        return (int(self.elevation_m.shape[0]), int(self.elevation_m.shape[1]))

    @property
    def residual_moisture(self) -> F32:
        """Air-dry water content the surface dries towards: half the wilting point, at least 0.02."""
        r: F32 = np.maximum(np.float32(0.02), np.float32(0.5) * self.hydraulics.wilting_point)
        return r


def _terrain(seed: int, shape: tuple[int, int]) -> tuple[F32, F32]:
    """Elevation (m) and a 0-1 'mountainousness' field."""
    rng = stream(seed, "terrain")
    trend = smooth_field(rng, shape, scale_cells=140)
    belt = 1.0 / (1.0 + np.exp(-(1.8 * smooth_field(rng, shape, scale_cells=90) - 1.2)))
    ridged = 1.0 - np.abs(fractal_field(rng, shape, scales_cells=(6.0, 15.0, 35.0))) / 2.5
    ridged = np.clip(ridged, 0.0, 1.0) ** 1.6
    elevation = 120.0 + 90.0 * (trend + 3.0) + belt * (300.0 + 1900.0 * ridged)
    return elevation.astype(np.float32), belt.astype(np.float32)


def _water(seed: int, elevation: F32, belt: F32) -> npt.NDArray[np.bool_]:
    rng = stream(seed, "water")
    shape = (int(elevation.shape[0]), int(elevation.shape[1]))
    lakes = smooth_field(rng, shape, scale_cells=7)
    low = elevation < np.percentile(elevation, 35)
    lake = (lakes > 2.1) & low
    river_line = smooth_field(rng, shape, scale_cells=45)
    river = (np.abs(river_line) < 0.018) & (belt < 0.5)
    water: npt.NDArray[np.bool_] = lake | river
    return water


def _landcover(seed: int, elevation: F32, belt: F32, water: npt.NDArray[np.bool_]) -> U8:
    rng = stream(seed, "landcover")
    shape = (int(elevation.shape[0]), int(elevation.shape[1]))
    patch = smooth_field(rng, shape, scale_cells=8)
    towns = smooth_field(rng, shape, scale_cells=4)
    lc = np.full(shape, CROPLAND, dtype=np.uint8)
    lc[(patch > 0.8) & (belt < 0.35)] = CROP_MOSAIC
    lc[(patch < -1.3) & (belt < 0.35)] = GRASSLAND
    lc[(belt >= 0.35) & (belt < 0.5)] = OPEN_SHRUBLAND
    lc[(belt >= 0.35) & (belt < 0.5) & (patch > 0.3)] = GRASSLAND
    forest = belt >= 0.5
    lc[forest] = DECIDUOUS_BROADLEAF
    lc[forest & (patch > 0.4)] = MIXED_FOREST
    lc[forest & (elevation > 1600)] = EVERGREEN_NEEDLELEAF
    lc[(belt >= 0.5) & (elevation > np.percentile(elevation, 99.2))] = BARREN
    lc[(towns > 2.3) & (belt < 0.35)] = URBAN
    lc[water] = WATER
    return lc


def _texture(seed: int, belt: F32, river_clay: F32) -> tuple[F32, F32, F32]:
    rng = stream(seed, "texture")
    shape = (int(belt.shape[0]), int(belt.shape[1]))
    a = np.log(0.33) + 0.55 * smooth_field(rng, shape, scale_cells=22) + 0.6 * belt
    b = np.log(0.20) + 0.45 * smooth_field(rng, shape, scale_cells=30) - 0.3 * belt + river_clay
    c = np.log(0.47) + 0.2 * smooth_field(rng, shape, scale_cells=12)
    ea, eb, ec = np.exp(a), np.exp(b), np.exp(c)
    total = ea + eb + ec
    sand = (ea / total).astype(np.float32)
    clay = (eb / total).astype(np.float32)
    silt = (np.float32(1.0) - sand - clay).astype(np.float32)
    return sand, silt, clay


def _lookup(lc: U8, column: int) -> F32:
    table = np.zeros(256, dtype=np.float32)
    for code, props in LANDCOVER_PROPERTIES.items():
        table[code] = props[column]
    out: F32 = table[lc]
    return out


def build_statics(domain: Domain, *, seed: int) -> StaticFields:
    """Generate every static 1 km field of the domain from the seed."""
    shape = domain.shape(1)
    elevation, belt = _terrain(seed, shape)
    water = _water(seed, elevation, belt)
    lc = _landcover(seed, elevation, belt, water)
    # Floodplains near water are more clayey: a blurred water mask raises the clay log-ratio.
    near_water = smooth_field(stream(seed, "floodplain"), shape, scale_cells=3)
    river_clay = (0.25 * (near_water > 1.0) * (belt < 0.4)).astype(np.float32)
    sand, silt, clay = _texture(seed, belt, river_clay)
    oc_noise = np.exp(0.3 * smooth_field(stream(seed, "soc"), shape, scale_cells=10))
    soc = (_lookup(lc, 3) * oc_noise).astype(np.float32)
    soc[~water] = np.maximum(soc[~water], np.float32(1.5))
    hydraulics = saxton_rawls(sand, clay, soc / np.float32(10.0) * np.float32(OM_PER_OC))
    statics = StaticFields(
        elevation_m=elevation,
        land=~water,
        landcover=lc,
        sand=sand,
        silt=silt,
        clay=clay,
        organic_carbon_g_kg=soc,
        hydraulics=hydraulics,
        veg_cover=_lookup(lc, 0),
        crop_coefficient=_lookup(lc, 1),
        base_albedo=_lookup(lc, 2),
    )
    log.debug(
        "statics built",
        extra={"domain": domain.name, "water_fraction": float(water.mean()), "shape": shape},
    )
    return statics
