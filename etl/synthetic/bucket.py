"""Daily two-layer water balance: the surface layer's water content is the 1 km truth.

A surface layer (depth D1, default 50 mm) over a root-zone layer (D2, 300 mm) per cell, stepped once
per UTC day with hydraulic properties from Saxton & Rawls (2006) (:mod:`etl.synthetic.pedotransfer`):

1. infiltration ``I = min(P, 6 h * Ksat)`` into the surface (rain falls over about six hours, the
   rest runs off); storage above porosity passes straight to the root zone;
2. gravity drainage above field capacity decays as ``exp(-k)`` per day with
   ``k = 0.1 * 24 Ksat / (D (theta_s - theta_fc))``: sand drains within a day, clay over several;
   the surface drains into the root zone, the root zone out of the model;
3. diffusive exchange ``q = c * (theta_rz - theta_s)`` rewets a dry surface from below and
   recharges the root zone after rain;
4. soil evaporation from the bare fraction of the surface, ``E = PET * (1 - veg) * beta_s``, and
   transpiration from the root zone, ``T = PET * Kc * veg * beta_rz``, with the stress factor
   ``beta = clip((theta - theta_r) / (theta_fc - theta_r), 0, 1)``: a wet soil dries at the
   atmospheric rate, a dry one ever more slowly towards the air-dry content theta_r, on a time scale
   ``D (theta_fc - theta_r) / PET`` that depends on texture;
5. the surface is kept within [sm_min, min(sm_max, porosity)].

Open water cells are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from etl.synthetic.config import SyntheticConfig
from etl.synthetic.randomness import F32
from etl.synthetic.statics import StaticFields


@dataclass(frozen=True)
class SoilState:
    """Water content of both layers (m3/m3); NaN on water."""

    surface: F32
    root_zone: F32


@dataclass(frozen=True)
class BucketStep:
    """The state after one day and that day's evapotranspiration (mm/day)."""

    state: SoilState
    evapotranspiration: F32


@dataclass(frozen=True)
class BucketParameters:
    """Per-cell constants of the water balance, computed once from the statics."""

    field_capacity: F32
    porosity: F32
    residual: F32
    ksat_mm_h: F32
    k_surface: F32
    """Fraction ``1 - exp(-k)`` of the surface's excess over field capacity drained per day."""
    k_root_zone: F32
    upper: F32
    """Upper bound of the surface water content: min(sm_max, porosity)."""
    bare: F32
    transpiring: F32
    """Kc * vegetation cover."""
    land: npt.NDArray[np.bool_]
    d1: float
    d2: float
    coupling: float
    sm_min: float

    @classmethod
    def build(cls, statics: StaticFields, config: SyntheticConfig) -> BucketParameters:
        """Derive the constants from the soil hydraulics and the configuration."""
        h = statics.hydraulics
        d1 = np.float32(config.layer_depth_mm)
        d2 = np.float32(config.root_zone_depth_mm)
        k1 = np.minimum(
            np.float32(2.4) * h.ksat_mm_h / (d1 * (h.porosity - h.field_capacity)), np.float32(8.0)
        )
        return cls(
            field_capacity=h.field_capacity,
            porosity=h.porosity,
            residual=statics.residual_moisture,
            ksat_mm_h=h.ksat_mm_h,
            k_surface=(np.float32(1.0) - np.exp(-k1)).astype(np.float32),
            k_root_zone=(np.float32(1.0) - np.exp(-k1 * (d1 / d2))).astype(np.float32),
            upper=np.minimum(np.float32(config.sm_max), h.porosity).astype(np.float32),
            bare=(np.float32(1.0) - statics.veg_cover).astype(np.float32),
            transpiring=(statics.crop_coefficient * statics.veg_cover).astype(np.float32),
            land=statics.land,
            d1=float(d1),
            d2=float(d2),
            coupling=config.coupling_per_day,
            sm_min=config.sm_min,
        )


def initial_state(statics: StaticFields) -> SoilState:
    """A plausible starting state: two thirds of the way from residual to field capacity."""
    h = statics.hydraulics
    r = statics.residual_moisture
    theta = (r + np.float32(2.0 / 3.0) * (h.field_capacity - r)).astype(np.float32)
    theta[~statics.land] = np.nan
    return SoilState(surface=theta, root_zone=theta.copy())


BLOCK_ROWS = 256  # rows per block: keeps the temporaries in cache on the China domain


def step(state: SoilState, *, precip: F32, pet: F32, params: BucketParameters) -> BucketStep:
    """Advance both layers by one day (computed in blocks of rows)."""
    surface = np.empty_like(state.surface)
    root_zone = np.empty_like(state.root_zone)
    et = np.empty_like(state.surface)
    for r0 in range(0, surface.shape[0], BLOCK_ROWS):
        b = np.s_[r0 : r0 + BLOCK_ROWS]
        surface[b], root_zone[b], et[b] = _step_block(
            state.surface[b], state.root_zone[b], precip[b], pet[b], params, b
        )
    return BucketStep(state=SoilState(surface=surface, root_zone=root_zone), evapotranspiration=et)


def _step_block(
    s0: F32, rz0: F32, precip: F32, pet: F32, p: BucketParameters, b: slice
) -> tuple[F32, F32, F32]:
    f32 = np.float32
    d1, d2 = f32(p.d1), f32(p.d2)
    fc, por, r = p.field_capacity[b], p.porosity[b], p.residual[b]
    # 1. infiltration and overflow
    s = s0 + np.minimum(precip, p.ksat_mm_h[b] * f32(6.0)) / d1
    overflow = np.maximum(s - por, f32(0.0))
    s -= overflow
    # 2. drainage: surface into root zone, root zone out
    drained = np.maximum(s - fc, f32(0.0)) * p.k_surface[b]
    s -= drained
    rz = np.minimum(rz0 + (overflow + drained) * (d1 / d2), por)
    rz -= np.maximum(rz - fc, f32(0.0)) * p.k_root_zone[b]
    # 3. diffusive exchange (mm)
    q = f32(p.coupling) * (rz - s) * (d1 * d2 / (d1 + d2))
    s += q / d1
    rz -= q / d2
    # 4. evaporation from bare soil, transpiration from the root zone
    span = fc - r
    evap = pet * p.bare[b] * np.clip((s - r) / span, f32(0.0), f32(1.0))
    transp = pet * p.transpiring[b] * np.clip((rz - r) / span, f32(0.0), f32(1.0))
    s_new = np.maximum(s - evap / d1, r)
    rz_new = np.maximum(rz - transp / d2, r)
    et = (s - s_new) * d1 + (rz - rz_new) * d2
    # 5. bounds; water stays NaN
    np.clip(s_new, f32(p.sm_min), p.upper[b], out=s_new)
    water = ~p.land[b]
    for a in (s_new, rz_new, et):
        a[water] = np.nan
    return s_new, rz_new, et
