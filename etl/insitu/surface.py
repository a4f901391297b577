"""The surface soil moisture rule, and the analysts' station queries, from Python.

Which sensors count as *surface* soil moisture: ``soil_moisture`` sensors whose upper depth is at
most ``max_depth_from_m`` below the surface (default 0.05 m: the top 5 cm that SMAP's L-band signal
senses). When a station has several, the shallowest layer wins (smallest depth_from, then smallest
depth_to); replicate sensors on that same layer are all kept and their daily means are averaged,
each sensor weighted equally. The rule lives in SQL (``smapds.surface_sensors_at``, and the views
that read the setting ``smapds.surface_max_depth_m``); these functions pass the depth explicitly,
so callers decide it (the service from its settings) and nothing here reads configuration.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

DEFAULT_SURFACE_MAX_DEPTH_M: Final = 0.05


@dataclass(frozen=True)
class SurfaceSensor:
    station_id: int
    sensor_id: int
    depth_from_m: float
    depth_to_m: float
    instrument: str
    replicates: int


@dataclass(frozen=True)
class DailyValue:
    """A station's daily (UTC) mean of good (G) surface soil moisture, m3/m3."""

    day: dt.date
    soil_moisture: float
    n_obs: int
    n_sensors: int


def surface_sensors(conn: Connection, *, max_depth_from_m: float) -> list[SurfaceSensor]:
    """Every station's surface sensor(s) under the rule with the given depth limit."""
    rows = conn.execute(
        sa.text(
            "SELECT station_id, sensor_id, depth_from_m, depth_to_m, instrument, replicates "
            "FROM smapds.surface_sensors_at(:d) ORDER BY station_id, sensor_id"
        ),
        {"d": max_depth_from_m},
    )
    return [
        SurfaceSensor(
            r.station_id,
            r.sensor_id,
            float(r.depth_from_m),
            float(r.depth_to_m),
            r.instrument,
            r.replicates,
        )
        for r in rows
    ]


def daily_surface_sm(
    conn: Connection,
    *,
    station_id: int,
    start: dt.date,
    end: dt.date,
    max_depth_from_m: float,
) -> list[DailyValue]:
    """A station's daily surface soil moisture over the UTC days [start, end]
    (``smapds.surface_daily_sm``, which reads only the partitions of those days)."""
    rows = conn.execute(
        sa.text("""
        SELECT day, soil_moisture, n_obs, n_sensors
          FROM smapds.surface_daily_sm(:depth, CAST(:a AS timestamptz), CAST(:b AS timestamptz))
         WHERE station_id = :s ORDER BY day
    """),
        {
            "depth": max_depth_from_m,
            "a": f"{start.isoformat()} 00:00+00",
            "b": f"{(end + dt.timedelta(days=1)).isoformat()} 00:00+00",
            "s": station_id,
        },
    )
    return [DailyValue(r.day, r.soil_moisture, r.n_obs, r.n_sensors) for r in rows]
