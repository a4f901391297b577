"""Soil hydraulic properties from texture and organic matter (Saxton & Rawls 2006).

Saxton, K. E. and Rawls, W. J. (2006): "Soil Water Characteristic Estimates by Texture and Organic
Matter for Hydrologic Solutions", Soil Science Society of America Journal 70(5):1569-1578,
doi:10.2136/sssaj2005.0117. Equations 1-3 and 5 (moisture regressions) and 16 (saturated
conductivity) of their Table 1, with S and C as weight fractions (0-1) and OM in percent by weight.
The regressions were fitted for OM <= 8 % and clay <= 60 %, so inputs are clipped to that range.
Organic matter is taken as 1.724 x organic carbon (the van Bemmelen factor).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]

OM_PER_OC = 1.724


@dataclass(frozen=True)
class HydraulicProperties:
    """Per-cell soil water characteristics (m3/m3, mm/h, unitless), float32 arrays."""

    wilting_point: F32
    """theta_1500: water content at -1500 kPa."""
    field_capacity: F32
    """theta_33: water content at -33 kPa."""
    porosity: F32
    """theta_S: saturated water content."""
    ksat_mm_h: F32
    """Saturated hydraulic conductivity."""
    bulk_density: F32
    """Normal density rho_N = (1 - theta_S) * 2.65 (g/cm3), Saxton & Rawls eq. 6."""


def saxton_rawls(sand: F32, clay: F32, organic_matter_pct: F32) -> HydraulicProperties:
    """Saxton & Rawls (2006) moisture regressions and saturated conductivity, element-wise."""
    s = np.clip(sand.astype(np.float64), 0.0, 1.0)
    c = np.clip(clay.astype(np.float64), 0.0, 0.6)
    om = np.clip(organic_matter_pct.astype(np.float64), 0.0, 8.0)

    t1500t = (
        -0.024 * s
        + 0.487 * c
        + 0.006 * om
        + 0.005 * s * om
        - 0.013 * c * om
        + 0.068 * s * c
        + 0.031
    )
    t1500 = t1500t + (0.14 * t1500t - 0.02)
    t33t = -0.251 * s + 0.195 * c + 0.011 * om + 0.006 * s * om - 0.027 * c * om + 0.452 * s * c
    t33t = t33t + 0.299
    t33 = t33t + (1.283 * t33t**2 - 0.374 * t33t - 0.015)
    ts33t = 0.278 * s + 0.034 * c + 0.022 * om - 0.018 * s * om - 0.027 * c * om - 0.584 * s * c
    ts33t = ts33t + 0.078
    ts33 = ts33t + (0.636 * ts33t - 0.107)
    ts = t33 + ts33 - 0.097 * s + 0.043

    t1500 = np.clip(t1500, 0.01, 0.45)
    t33 = np.clip(t33, t1500 + 0.02, 0.55)
    ts = np.clip(ts, t33 + 0.02, 0.65)
    b = (np.log(1500.0) - np.log(33.0)) / (np.log(t33) - np.log(t1500))
    lam = 1.0 / b
    ksat = 1930.0 * (ts - t33) ** (3.0 - lam)
    return HydraulicProperties(
        wilting_point=t1500.astype(np.float32),
        field_capacity=t33.astype(np.float32),
        porosity=ts.astype(np.float32),
        ksat_mm_h=ksat.astype(np.float32),
        bulk_density=((1.0 - ts) * 2.65).astype(np.float32),
    )
