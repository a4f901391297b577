"""Turn stored time offsets ("<unit> since <epoch>") into datetime64[ns] by hand, exactly.

CF time decoding is never applied blindly: IMERG labels its POSIX seconds with ``calendar = julian``
(decoding that would move every date by 13 days), SMAP counts seconds from the J2000 epoch expressed in
UTC, and ERA5 writes epochs like ``1900-01-01 00:00:0.0``. Integer offsets convert with integer
arithmetic; float offsets are split into whole and fractional units so that nanoseconds survive
(``seconds * 1e9`` in float64 would lose them beyond 2**53 ns, about 104 days).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from etl.readers.errors import SchemaDriftError

DatetimeArray = npt.NDArray[np.datetime64]

UNIT_NS: Final[dict[str, int]] = {
    "second": 10**9,
    "seconds": 10**9,
    "minute": 60 * 10**9,
    "minutes": 60 * 10**9,
    "hour": 3600 * 10**9,
    "hours": 3600 * 10**9,
    "day": 86400 * 10**9,
    "days": 86400 * 10**9,
}

_SINCE = re.compile(
    r"^\s*(?P<unit>[A-Za-z]+)\s+since\s+"
    r"(?P<y>\d{4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})"
    r"(?:[ T](?P<h>\d{1,2}):(?P<mi>\d{1,2})(?::(?P<s>\d{1,2}(?:\.\d*)?))?)?"
    r"\s*(?P<tz>UTC|Z|GMT|\+00:?00)?\s*$"
)


def parse_since(units: str, *, path: Path, variable: str) -> tuple[int, np.datetime64]:
    """(nanoseconds per unit, epoch as datetime64[ns]) of a "<unit> since <date time>" string (UTC)."""
    match = _SINCE.match(units)
    if match is None or match["unit"].lower() not in UNIT_NS:
        raise SchemaDriftError(
            f"{path}: variable {variable} has time units {units!r}, "
            "expected '<seconds|minutes|hours|days> since YYYY-MM-DD[ hh:mm[:ss]]' in UTC"
        )
    seconds = float(match["s"] or 0.0)
    whole = int(seconds)
    text = (
        f"{int(match['y']):04d}-{int(match['mo']):02d}-{int(match['d']):02d}"
        f"T{int(match['h'] or 0):02d}:{int(match['mi'] or 0):02d}:{whole:02d}"
    )
    epoch = np.datetime64(text, "ns") + np.timedelta64(round((seconds - whole) * 1e9), "ns")
    return UNIT_NS[match["unit"].lower()], epoch


def offsets_to_datetime64(
    values: npt.ArrayLike,
    *,
    unit_ns: int,
    epoch: np.datetime64,
    missing: npt.NDArray[np.bool_] | None = None,
    resolution_ns: int = 1,
) -> DatetimeArray:
    """``epoch + values * unit`` as datetime64[ns]; NaT where ``missing`` or the value is not finite.

    ``resolution_ns`` rounds the fractional part of float offsets to that many nanoseconds: a float64
    count of ~5e8 seconds carries ~60 ns of representation noise, so a product whose times are
    microsecond values (SMAP) is converted back to those microseconds exactly.
    """
    a = np.asarray(values)
    base = epoch.astype("datetime64[ns]")
    if a.dtype.kind in "iu":
        ns = a.astype(np.int64) * np.int64(unit_ns)
        bad = np.zeros(a.shape, dtype=bool)
    else:
        f = a.astype(np.float64)
        bad = ~np.isfinite(f)
        f = np.where(bad, 0.0, f)
        whole = np.floor(f)
        frac_ns = np.rint((f - whole) * (unit_ns / resolution_ns)).astype(np.int64) * resolution_ns
        ns = whole.astype(np.int64) * np.int64(unit_ns) + frac_ns
    if missing is not None:
        bad = bad | missing
    out: DatetimeArray = base + ns.astype("timedelta64[ns]")
    out[bad] = np.datetime64("NaT", "ns")
    return out
