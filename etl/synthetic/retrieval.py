"""Coarse retrievals like SMAP's: the 1 km truth block-averaged, plus bias, noise, flags and gaps.

For each coarse cell (36 or 9 km) and pass: the observation is the mean of the truth over the land
1 km cells of the block (exact, the grids nest), plus the configured bias and Gaussian noise. The
real product's quality conventions are imitated:

``surface_flag`` bits set here: 0 static water (water fraction > 0.05), 3 urban (urban fraction
> 0.25), 4 precipitation (> 10 mm that day), 9 mountainous (1 km elevation sd > 200 m),
10 dense vegetation (vegetation cover > 0.8), 11 nadir region (central 16 % of the swath).

``retrieval_qual_flag`` (bit 0 = not recommended, 1 = not attempted, 2 = failed, 3 = freeze/thaw
failed): 0 for a good retrieval; 1 where water > 0.1, urban > 0.25, dense vegetation or, at random,
``not_recommended_fraction`` of the cells (the value is still written); 15 and no value where the
cell is more than half water (not attempted); 13 and no value for 1 % random failures; the fill
65534 where no pass saw the cell. Values outside the valid range 0.02-0.5 are written as they come,
as in the real product, so readers must mask them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from etl.grid import Domain, block_mean, nesting_factor
from etl.synthetic.overpass import F64, PassGeometry
from etl.synthetic.randomness import F32
from etl.synthetic.statics import URBAN, StaticFields

U16 = npt.NDArray[np.uint16]

FLAG_FILL: Final = 65534
RQF_NOT_RECOMMENDED: Final = 1
RQF_NOT_ATTEMPTED: Final = 15
RQF_FAILED: Final = 13
FAILURE_FRACTION: Final = 0.01

SF_STATIC_WATER: Final = 1 << 0
SF_URBAN: Final = 1 << 3
SF_PRECIPITATION: Final = 1 << 4
SF_MOUNTAINOUS: Final = 1 << 9
SF_DENSE_VEGETATION: Final = 1 << 10
SF_NADIR: Final = 1 << 11


@dataclass(frozen=True)
class CoarseStatics:
    """Static properties of the coarse cells of a domain at one resolution (domain-relative)."""

    res_km: int
    factor: int
    lon: F64
    lat: F64
    rows: npt.NDArray[np.int64]
    """Global EASE-Grid 2.0 row index of each cell."""
    cols: npt.NDArray[np.int64]
    water_fraction: F32
    clay_fraction: F32
    bulk_density: F32
    static_flags: U16
    """surface_flag bits that do not change from day to day."""
    not_recommended: npt.NDArray[np.bool_]
    """Static reasons for 'retrieval not recommended'."""


def coarse_statics(statics: StaticFields, domain: Domain, *, res_km: int) -> CoarseStatics:
    """Aggregate the 1 km statics to the coarse cells of ``domain``."""
    f = nesting_factor(res_km, 1)
    lon, lat = domain.lonlat(res_km)
    r0, c0 = domain.offset(res_km)
    nr, nc = domain.shape(res_km)
    rows, cols = np.meshgrid(np.arange(r0, r0 + nr), np.arange(c0, c0 + nc), indexing="ij")
    land = statics.land.astype(np.float32)
    water = (1.0 - block_mean(land, f)[0]).astype(np.float32)
    urban = block_mean((statics.landcover == URBAN).astype(np.float32), f)[0]
    veg = block_mean(statics.veg_cover, f)[0]
    z = statics.elevation_m.astype(np.float64)
    z_sd = np.sqrt(np.maximum(block_mean(z * z, f)[0] - block_mean(z, f)[0] ** 2, 0.0))
    on_land = np.where(statics.land, 1.0, np.nan)
    clay = block_mean(statics.clay * on_land, f)[0].astype(np.float32)
    bd = block_mean(statics.hydraulics.bulk_density * on_land, f)[0].astype(np.float32)
    flags = np.zeros((nr, nc), dtype=np.uint16)
    flags[water > 0.05] |= SF_STATIC_WATER
    flags[urban > 0.25] |= SF_URBAN
    flags[z_sd > 200.0] |= SF_MOUNTAINOUS
    flags[veg > 0.8] |= SF_DENSE_VEGETATION
    return CoarseStatics(
        res_km=res_km,
        factor=f,
        lon=lon,
        lat=lat,
        rows=rows,
        cols=cols,
        water_fraction=water,
        clay_fraction=clay,
        bulk_density=bd,
        static_flags=flags,
        not_recommended=(water > 0.1) | (urban > 0.25) | (veg > 0.8),
    )


@dataclass(frozen=True)
class Retrieval:
    """One pass of one day at one resolution, over the domain's coarse cells."""

    geometry: PassGeometry
    soil_moisture: F32
    """Retrieved value (m3/m3) or NaN where nothing was retrieved."""
    retrieval_flag: U16
    surface_flag: U16


def retrieve(
    coarse: CoarseStatics,
    geometry: PassGeometry,
    *,
    truth_mean: F32,
    precip_mean: F32,
    rng: np.random.Generator,
    noise_sd: float,
    bias: float,
    not_recommended_fraction: float,
) -> Retrieval:
    """Synthesise a retrieval from the block-mean truth; every random draw comes from ``rng``."""
    shape = coarse.water_fraction.shape
    noise = rng.standard_normal(shape).astype(np.float32) * np.float32(noise_sd)
    u_recommend = rng.random(shape)
    u_fail = rng.random(shape)
    seen = geometry.seen
    value = (truth_mean + np.float32(bias) + noise).astype(np.float32)

    not_attempted = seen & (coarse.water_fraction > 0.5)
    failed = seen & ~not_attempted & (u_fail < FAILURE_FRACTION)
    retrieved = seen & ~not_attempted & ~failed & np.isfinite(truth_mean)
    not_rec = retrieved & (coarse.not_recommended | (u_recommend < not_recommended_fraction))

    rqf = np.full(shape, FLAG_FILL, dtype=np.uint16)
    rqf[retrieved] = 0
    rqf[not_rec] = RQF_NOT_RECOMMENDED
    rqf[failed] = RQF_FAILED
    rqf[not_attempted] = RQF_NOT_ATTEMPTED

    sflag = coarse.static_flags.copy()
    sflag[np.nan_to_num(precip_mean) > 10.0] |= SF_PRECIPITATION
    sflag[np.abs(geometry.cross_track - 0.5) < 0.08] |= SF_NADIR
    sflag[~seen] = FLAG_FILL
    return Retrieval(
        geometry=geometry,
        soil_moisture=np.where(retrieved, value, np.float32(np.nan)).astype(np.float32),
        retrieval_flag=rqf,
        surface_flag=sflag,
    )
