"""Text helpers shared by the in situ parsers: decoding, line splitting, numbers and UTC times.

ISMN files mix line endings (CR only, CRLF, LF, even LF CR); every line ending counts as one line
break, so line numbers match what an editor that understands all three shows. Numbers and times are
validated here strictly enough that PostgreSQL will accept every row that passes, because a single
bad row would abort a whole ``COPY``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from functools import lru_cache
from typing import Final

from etl.insitu.model import Reason

MIN_YEAR: Final = 1900
MAX_YEAR: Final = 2100
MAX_LINE_CHARS: Final = 1000

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)
HHMM: Final = frozenset(f"{h:02d}:{m:02d}" for h in range(24) for m in range(60))
_ISO = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)"
    r"\s*(?P<zone>Z|z|UTC|[+-]\d{2}(?::?\d{2})?)?"
)


_UTF8_MULTIBYTE: Final = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)


def decode(data: bytes) -> str:
    """UTF-8 (a byte-order mark is dropped); UTF-8 text with stray invalid bytes stays UTF-8, the
    bad bytes becoming U+FFFD (their lines then fail their field checks, the rest is intact);
    text without any UTF-8 multibyte character is Latin-1, which never fails."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        if _UTF8_MULTIBYTE.search(data):
            return data.decode("utf-8-sig", errors="replace")
        return data.decode("latin-1")


def split_lines(text: str) -> list[str]:
    """Lines split at CR LF, CR or LF (only those: no Unicode separators), empty lines kept."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def clip(line: str) -> str:
    """A raw line as stored with a reject: NUL removed, at most MAX_LINE_CHARS characters."""
    return line.replace("\x00", "")[:MAX_LINE_CHARS]


def is_number(text: str) -> bool:
    """A decimal number PostgreSQL reads as float8 (``0.141``, ``-2``, ``.5``, ``1e-3``) whose
    value is finite (``1e999`` is not: it overflows). ASCII digits only."""
    body = text[1:] if text[:1] in ("-", "+") and len(text) > 1 else text
    if (body.replace(".", "", 1).isdigit() and body.isascii()) or _NUMBER.fullmatch(text):
        return math.isfinite(float(text))
    return False


def to_number(text: str) -> float | None:
    """The number in ``text`` when :func:`is_number` accepts it, else None."""
    text = text.strip()
    return float(text) if text and is_number(text) else None


@lru_cache(maxsize=100_000)
def ismn_day(text: str) -> tuple[str | None, Reason | None, str]:
    """``YYYY/MM/DD`` -> (``YYYY-MM-DD``, None, "") for a real day in 1900-2100, else (None, why)."""
    if not (len(text) == 10 and text[4] == "/" and text[7] == "/" and text.isascii()):
        return None, Reason.UNPARSEABLE_TIME, f"date {text!r} is not YYYY/MM/DD"
    if not text.replace("/", "").isdigit():
        return None, Reason.UNPARSEABLE_TIME, f"date {text!r} is not YYYY/MM/DD"
    if not MIN_YEAR <= int(text[:4]) <= MAX_YEAR:
        return None, Reason.TIME_OUT_OF_RANGE, f"date {text!r} outside {MIN_YEAR}-{MAX_YEAR}"
    try:
        day = dt.date(int(text[0:4]), int(text[5:7]), int(text[8:10]))
    except ValueError:
        return None, Reason.UNPARSEABLE_TIME, f"date {text!r} is not a calendar day"
    return day.isoformat(), None, ""


def ismn_time(day: str, hhmm: str) -> tuple[str | None, Reason | None, str]:
    """Canonical UTC time of an ISMN ``YYYY/MM/DD`` and ``HH:MM`` pair, or why not.

    ISMN times are UTC by definition, so no zone is required. Returns (time, None, "") or
    (None, reason, detail).
    """
    iso, reason, detail = ismn_day(day)
    if iso is None:
        return None, reason, detail
    if hhmm not in HHMM:
        return None, Reason.UNPARSEABLE_TIME, f"time {hhmm!r} is not HH:MM"
    return f"{iso} {hhmm}:00+00", None, ""


def iso_time(text: str) -> tuple[str | None, Reason | None, str]:
    """Canonical UTC time of an ISO 8601 date-time that names its zone, or why not.

    Accepted: ``YYYY-MM-DD[T| ]HH:MM[:SS[.ffffff]]`` followed by ``Z``, ``UTC`` or an offset
    (``+08:00``, ``+0800``, ``+08``). A time without a zone is refused (time_zone_missing):
    guessing UTC for local times would shift the series by hours.
    """
    m = _ISO.fullmatch(text.strip())
    if m is None:
        return (
            None,
            Reason.UNPARSEABLE_TIME,
            f"time {text!r} is not ISO 8601 (YYYY-MM-DDTHH:MM:SSZ)",
        )
    zone = m["zone"]
    if zone is None:
        return None, Reason.TIME_ZONE_MISSING, f"time {text!r} has no time zone (add Z or +HH:MM)"
    if zone in ("Z", "z", "UTC"):
        offset = "+00:00"
    elif len(zone) == 3:
        offset = zone + ":00"
    elif ":" not in zone:
        offset = f"{zone[:3]}:{zone[3:]}"
    else:
        offset = zone
    try:
        when = dt.datetime.fromisoformat(f"{m['date']}T{m['time']}{offset}")
    except ValueError:
        return None, Reason.UNPARSEABLE_TIME, f"time {text!r} is not a valid date and time"
    utc = when.astimezone(dt.UTC)
    if not (MIN_YEAR <= utc.year <= MAX_YEAR):
        return None, Reason.TIME_OUT_OF_RANGE, f"time {text!r} outside {MIN_YEAR}-{MAX_YEAR}"
    return utc.strftime("%Y-%m-%d %H:%M:%S.%f+00").replace(".000000+00", "+00"), None, ""


def lat_lon_problem(lat: float, lon: float) -> str | None:
    """Why a latitude/longitude pair is impossible, or None. Names a likely swap."""
    if -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0:
        return None
    hint = " (latitude and longitude swapped?)" if abs(lon) <= 90.0 < abs(lat) <= 180.0 else ""
    return f"latitude {lat} / longitude {lon} out of range [-90, 90] / [-180, 180]{hint}"
