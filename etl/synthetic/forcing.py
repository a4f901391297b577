"""Daily meteorological forcing of the synthetic world: rain from moving storms, PET, albedo.

Precipitation: a two-state Markov chain decides whether the domain is under a rain-bearing regime
(many dry days, persistent wet spells). On a wet day, convective cells (small, intense, with a
heavy-tailed Pareto peak rate) and stratiform systems (large, light) are born at random places,
move with a westerly steering wind and rain along their track. A Gaussian rain cell moving at
constant velocity accumulates, at a point, an analytic amount:
``I * exp(-c^2 / 2 s^2) * s / v * sqrt(pi / 2) * [erf(a / (sqrt(2) s)) - erf((a - v T) / (sqrt(2) s))]``
with ``a``/``c`` the along-/cross-track coordinates, so a whole day is one evaluation per cell and
storm. Orography multiplies the total by ``1 + gain * (z - mean z) / 1000``. A monsoon factor peaking
in mid-July raises the number and strength of storms.

PET: Hargreaves & Samani (1985) as in FAO-56 (Allen et al. 1998, eq. 52), with extraterrestrial
radiation from FAO-56 eqs. 21-25 and a synthetic air temperature (seasonal cycle, lapse rate,
smaller diurnal range on rainy days).

Albedo (white-sky shortwave): a land-cover base value that darkens with surface wetness on the bare
fraction of the cell (wet soil absorbs more), up to 35 % darker when saturated.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from etl.grid import Domain, ease2
from etl.synthetic.config import SyntheticConfig
from etl.synthetic.randomness import F32, bspline_upsample, smooth_field, stream
from etl.synthetic.statics import StaticFields

KM_PER_CELL = ease2(1).cell_size / 1000.0
STRATIFORM_STEP = 6  # stratiform systems are evaluated on a 6 km lattice and smoothed to 1 km


def monsoon_factor(day: dt.date) -> float:
    """Seasonal storm activity: 0.6 in winter rising to 1.6 in mid-July (East Asian monsoon)."""
    doy = day.timetuple().tm_yday
    return 0.6 + 1.0 * math.exp(-(((doy - 195) / 50.0) ** 2))


def wet_regimes(*, seed: int, n_days: int, config: SyntheticConfig) -> npt.NDArray[np.bool_]:
    """Domain-wide wet/dry regime per simulated day from a two-state Markov chain."""
    p = config.wet_day_probability
    p_ww = config.wet_persistence
    p_dw = p * (1.0 - p_ww) / (1.0 - p)  # keeps the stationary wet probability at p
    u = stream(seed, "regime").random(n_days)
    wet = np.zeros(n_days, dtype=bool)
    state = bool(u[0] < p)
    for i in range(n_days):
        if i:
            state = bool(u[i] < (p_ww if state else p_dw))
        wet[i] = state
    return wet


@dataclass(frozen=True)
class _Storm:
    row: float  # start position, in 1 km cells (domain-relative, may lie outside)
    col: float
    v_row: float  # velocity in cells per hour
    v_col: float
    sigma: float  # radius (cells)
    peak_mm_h: float
    hours: float


def _draw_storms(
    rng: np.random.Generator, shape: tuple[int, int], *, n: int, kind: str, activity: float
) -> list[_Storm]:
    nr, nc = shape
    margin = 60.0 if kind == "convective" else 250.0
    storms = []
    steer_col = rng.normal(30.0, 8.0)  # km/h eastward, the day's steering wind
    steer_row = rng.normal(0.0, 8.0)
    for _ in range(n):
        if kind == "convective":
            sigma = float(np.exp(rng.normal(np.log(7.0), 0.45)))
            peak = float((rng.pareto(2.5) + 1.0) * activity * 0.5 * rng.uniform(0.5, 1.5))
            hours = float(rng.uniform(1.0, 4.0))
        else:
            sigma = float(rng.uniform(50.0, 130.0))
            peak = float(rng.gamma(2.0, 1.0) * activity)
            hours = float(rng.uniform(6.0, 18.0))
        storms.append(
            _Storm(
                row=float(rng.uniform(-margin, nr + margin)),
                col=float(rng.uniform(-margin, nc + margin)),
                v_row=(steer_row + rng.normal(0.0, 5.0)) / KM_PER_CELL,
                v_col=(steer_col + rng.normal(0.0, 5.0)) / KM_PER_CELL,
                sigma=sigma / KM_PER_CELL,
                peak_mm_h=peak,
                hours=hours,
            )
        )
    return storms


def _accumulate(out: F32, storm: _Storm, *, cell: float, offset: float) -> None:
    """Add one storm's daily total to ``out`` (a lattice with spacing ``cell`` 1 km cells)."""
    nr, nc = out.shape
    speed = math.hypot(storm.v_row, storm.v_col)
    r_end = storm.row + storm.v_row * storm.hours
    c_end = storm.col + storm.v_col * storm.hours
    reach = 3.5 * storm.sigma
    lo_r = int(max(0, math.floor((min(storm.row, r_end) - reach - offset) / cell)))
    hi_r = int(min(nr, math.ceil((max(storm.row, r_end) + reach - offset) / cell) + 1))
    lo_c = int(max(0, math.floor((min(storm.col, c_end) - reach - offset) / cell)))
    hi_c = int(min(nc, math.ceil((max(storm.col, c_end) + reach - offset) / cell) + 1))
    if lo_r >= hi_r or lo_c >= hi_c:
        return
    rr = (np.arange(lo_r, hi_r, dtype=np.float32) * cell + offset - storm.row)[:, None]
    cc = (np.arange(lo_c, hi_c, dtype=np.float32) * cell + offset - storm.col)[None, :]
    ur, uc = storm.v_row / speed, storm.v_col / speed
    along = rr * ur + cc * uc
    cross = rr * uc - cc * ur
    s = storm.sigma
    k = math.sqrt(2.0) * s
    total = (
        storm.peak_mm_h
        * np.exp(-(cross**2) / (2 * s * s))
        * (s / speed * math.sqrt(math.pi / 2.0))
        * (special.erf(along / k) - special.erf((along - speed * storm.hours) / k))
    )
    out[lo_r:hi_r, lo_c:hi_c] += total.astype(np.float32)


def precipitation(
    statics: StaticFields,
    *,
    seed: int,
    day_index: int,
    day: dt.date,
    wet: bool,
    config: SyntheticConfig,
) -> F32:
    """Daily precipitation (mm/day, UTC day) on the 1 km domain grid."""
    shape = statics.shape
    out = np.zeros(shape, dtype=np.float32)
    if not wet:
        return out
    rng = stream(seed, "storms", day_index)
    activity = monsoon_factor(day)
    area_10k = shape[0] * shape[1] * KM_PER_CELL**2 / 1e4
    n_conv = int(rng.poisson(config.storms_per_10k_km2 * area_10k * activity))
    n_strat = int(rng.poisson(area_10k / 8.0 * activity))
    for storm in _draw_storms(
        rng, shape, n=n_conv, kind="convective", activity=config.storm_peak_mm_h_scale * activity
    ):
        _accumulate(out, storm, cell=1.0, offset=0.0)
    if n_strat:
        step = STRATIFORM_STEP
        coarse = np.zeros((shape[0] // step + 4, shape[1] // step + 4), dtype=np.float32)
        for storm in _draw_storms(rng, shape, n=n_strat, kind="stratiform", activity=activity):
            _accumulate(coarse, storm, cell=float(step), offset=-float(step))
        texture = np.exp(0.5 * smooth_field(rng, coarse.shape, scale_cells=3) - 0.125)
        coarse *= texture.astype(np.float32)
        out += bspline_upsample(coarse, shape, step=step)
    z = statics.elevation_m
    oro = 1.0 + config.orographic_gain_per_km * (z - np.float32(z.mean())) / np.float32(1000.0)
    out *= np.clip(oro, 0.3, None).astype(np.float32)
    out[out < 0.05] = 0.0  # below the detection limit of a gauge or satellite
    return out


def extraterrestrial_radiation(lat_deg: F32, day: dt.date) -> F32:
    """Daily extraterrestrial radiation Ra (MJ m-2 day-1), FAO-56 eqs. 21-25."""
    doy = day.timetuple().tm_yday
    phi = np.deg2rad(lat_deg.astype(np.float64))
    dr = 1 + 0.033 * math.cos(2 * math.pi * doy / 365)
    delta = 0.409 * math.sin(2 * math.pi * doy / 365 - 1.39)
    ws = np.arccos(np.clip(-np.tan(phi) * math.tan(delta), -1.0, 1.0))
    ra = (
        (24 * 60 / math.pi)
        * 0.0820
        * dr
        * (ws * np.sin(phi) * math.sin(delta) + np.cos(phi) * math.cos(delta) * np.sin(ws))
    )
    out: F32 = ra.astype(np.float32)
    return out


def air_temperature(lat_deg: F32, elevation_m: F32, day: dt.date) -> F32:
    """Synthetic daily mean air temperature (deg C): seasonal cycle, latitude and lapse rate."""
    doy = day.timetuple().tm_yday
    seasonal = 11.0 + 15.0 * math.sin(2 * math.pi * (doy - 110) / 365)
    t = seasonal - 0.7 * (lat_deg - 35.0) - 0.0065 * elevation_m
    out: F32 = t.astype(np.float32)
    return out


@dataclass(frozen=True)
class Climatology:
    """Per-cell fields that PET needs and that do not change from day to day."""

    lat_deg: F32
    """Latitude of each 1 km row, shape (rows, 1): EASE-Grid 2.0 latitude depends on the row only."""

    @classmethod
    def for_domain(cls, domain: Domain) -> Climatology:
        """Cell-centre latitudes of the 1 km domain's rows."""
        r0, c0 = domain.offset(1)
        rows = np.arange(r0, r0 + domain.shape(1)[0])
        _, lat = ease2(1).lonlat(rows, np.full_like(rows, c0))
        return cls(lat_deg=lat.astype(np.float32)[:, None])


def potential_et(
    statics: StaticFields, climatology: Climatology, *, day: dt.date, precip: F32
) -> F32:
    """Reference evapotranspiration (mm/day), Hargreaves & Samani (FAO-56 eq. 52)."""
    ra = extraterrestrial_radiation(climatology.lat_deg, day)
    t = air_temperature(climatology.lat_deg, statics.elevation_m, day)
    dtr = np.where(precip > 1.0, np.float32(6.0), np.float32(11.0))
    pet = 0.0023 * 0.408 * ra * (t + 17.8) * np.sqrt(dtr)
    out: F32 = np.clip(pet, 0.1, 12.0).astype(np.float32)
    return out


def albedo(statics: StaticFields, *, wetness: F32, day: dt.date) -> F32:
    """White-sky shortwave albedo (0-1): land-cover base darkened by wetness on bare soil.

    ``wetness`` is relative saturation (0 = residual, 1 = porosity), NaN on water. Cropland greens
    up from May (slightly lower albedo as the canopy closes).
    """
    doy = day.timetuple().tm_yday
    green = 0.5 + 0.5 * math.tanh((doy - 135) / 15.0)
    veg = statics.veg_cover * np.float32(0.8 + 0.3 * green)
    bare = np.clip(1.0 - veg, 0.0, 1.0)
    w = np.nan_to_num(wetness, nan=0.0)
    a = statics.base_albedo * (1.0 - 0.35 * w * bare) * (1.0 - 0.05 * green)
    out: F32 = a.astype(np.float32)
    return out
