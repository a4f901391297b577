"""Where and when the synthetic radiometer looks: swaths, overpass times and the UTC-day split.

SMAP flies a sun-synchronous orbit (about 14.57 orbits a day, an 8-day exact repeat) with a
1000 km swath: descending passes at about 06:00 local solar time (the AM product), ascending ones at
about 18:00 (PM). Here a pass covers, on local date L, the cells whose phase
``((lon + 0.17 * (lat - 35) - lon0(L)) / spacing) mod 1`` is below the configured coverage, where
``spacing = 360 / 14.57`` degrees is the distance between neighbouring ground tracks and
``lon0`` advances by 3/8 of it a day (an 8-day cycle); the lat term tilts the swath like an inclined
track. A cell is thus seen by a given pass on a fraction ``coverage`` of the days.

The overpass time is ``L + LST - lon / 15 h`` in UTC, plus up to +/-20 min across the swath. Daily
L3 files hold the half-orbits of one UTC day, so east of 90 E the AM overpass of the local morning
of L+1 (about 22:00 UTC on L) lands in the file of day L: readers must use ``tb_time_seconds``.
``tb_time_seconds`` counts seconds since 2000-01-01T11:58:55.816Z (the J2000 epoch expressed in UTC)
without leap seconds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from etl.synthetic.randomness import F32

F64 = npt.NDArray[np.float64]

J2000_UTC: Final = dt.datetime(2000, 1, 1, 11, 58, 55, 816000)
"""The J2000 epoch (2000-01-01T12:00:00 TT) in UTC; the zero of tb_time_seconds."""
ORBITS_PER_DAY: Final = 14.57
TRACK_SPACING_DEG: Final = 360.0 / ORBITS_PER_DAY
LOCAL_SOLAR_HOUR: Final[dict[str, float]] = {"AM": 6.0, "PM": 18.0}
_TRACK_TILT: Final[dict[str, float]] = {"AM": 0.17, "PM": -0.17}
_TRACK_ORIGIN_DEG: Final[dict[str, float]] = {"AM": 3.1, "PM": 15.4}
_EPOCH_DAY: Final = dt.date(2000, 1, 1)


@dataclass(frozen=True)
class PassGeometry:
    """One pass over the cells of a coarse domain grid in one daily (UTC) file."""

    seen: npt.NDArray[np.bool_]
    """The cell lies in the swath of this pass within the file's UTC day."""
    cross_track: F32
    """Position across the swath, 0-1 (0.5 = nadir); meaningless where not seen."""
    time_seconds: F64
    """Overpass time in seconds since J2000 (UTC epoch), NaN where not seen."""


def seconds_since_j2000(moment: dt.datetime) -> float:
    """Seconds from 2000-01-01T11:58:55.816Z to a naive UTC datetime, without leap seconds."""
    return (moment - J2000_UTC).total_seconds()


def pass_geometry(
    lon: F64, lat: F64, *, file_day: dt.date, pass_name: str, coverage: float
) -> PassGeometry:
    """Which cells a pass sees in the L3 file of UTC day ``file_day``, and when."""
    utc_hour = LOCAL_SOLAR_HOUR[pass_name] - lon / 15.0
    # Local date of the overpass that falls within this UTC day: L = F - floor(utc_hour / 24).
    day_shift = -np.floor(utc_hour / 24.0)
    local_day_index = (file_day - _EPOCH_DAY).days + day_shift
    lon0 = _TRACK_ORIGIN_DEG[pass_name] + local_day_index * TRACK_SPACING_DEG * 3.0 / 8.0
    phase = np.mod((lon + _TRACK_TILT[pass_name] * (lat - 35.0) - lon0) / TRACK_SPACING_DEG, 1.0)
    seen = phase < coverage
    cross = np.where(seen, phase / coverage, 0.0).astype(np.float32)
    hours = np.mod(utc_hour, 24.0) + (cross - 0.5) * (40.0 / 60.0)
    hours = np.clip(hours, 0.0, 24.0 - 1e-6)
    day_start = seconds_since_j2000(dt.datetime.combine(file_day, dt.time()))
    seconds = np.round(day_start + hours * 3600.0, 3)
    return PassGeometry(
        seen=seen,
        cross_track=cross,
        time_seconds=np.where(seen, seconds, np.nan),
    )


def utc_strings(seconds: F64) -> npt.NDArray[np.bytes_]:
    """ISO strings like ``2024-04-01T22:03:15.123Z`` (24 bytes) for seconds since J2000."""
    ms = np.round(np.nan_to_num(seconds) * 1000.0).astype(np.int64)
    moments = np.datetime64(J2000_UTC, "ms") + ms.astype("timedelta64[ms]")
    text = np.char.add(np.datetime_as_string(moments, unit="ms"), "Z")
    out: npt.NDArray[np.bytes_] = np.char.encode(text, "ascii").astype("S24")
    return out
