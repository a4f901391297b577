"""Value objects of the in situ loader: stations, sensors, rows of observations, rejected rows.

Parsers turn files into these; the loader writes them. Observation rows are kept as columns of
validated text (canonical UTC time, the value as written) because that is what ``COPY`` reads, and
converting millions of values to floats and back would only cost time and risk rounding.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import islice
from typing import Final

# ISMN file-name codes -> (variable name, unit). Codes not listed are kept as given, unit unknown.
ISMN_VARIABLES: Final[dict[str, tuple[str, str]]] = {
    "sm": ("soil_moisture", "m3/m3"),
    "ts": ("soil_temperature", "degC"),
    "tsf": ("surface_temperature", "degC"),
    "ta": ("air_temperature", "degC"),
    "p": ("precipitation", "mm"),
    "su": ("soil_suction", "kPa"),
    "sd": ("snow_depth", "mm"),
    "sweq": ("snow_water_equivalent", "mm"),
}
UNITS: Final[dict[str, str]] = dict(ISMN_VARIABLES.values())
SOIL_MOISTURE: Final = "soil_moisture"
UNKNOWN_INSTRUMENT: Final = "unknown"

_KEY_BREAK = re.compile(r"[\W_]+")


def station_key(name: str) -> str:
    """The matching key of a station name: case-folded, every run of non-alphanumerics -> ``_``.

    ISMN writes the same station differently in folder names, file names and file contents
    (``CST-01`` / ``CST_01``); all spellings share one key, and the key identifies the station.
    """
    return _KEY_BREAK.sub("_", name.casefold()).strip("_")


class Reason(StrEnum):
    """Why a row was refused (the ``reason`` column of ``smapds.ingest_rejects``)."""

    UNPARSEABLE_TIME = "unparseable_time"
    TIME_ZONE_MISSING = "time_zone_missing"
    TIME_OUT_OF_RANGE = "time_out_of_range"
    DUPLICATE_TIME = "duplicate_time"
    DUPLICATE_KEY = "duplicate_key"
    NON_NUMERIC_VALUE = "non_numeric_value"
    LAT_LON_OUT_OF_RANGE = "lat_lon_out_of_range"
    WRONG_COLUMN_COUNT = "wrong_column_count"
    MISSING_FIELD = "missing_field"
    STATION_MISMATCH = "station_mismatch"
    UNKNOWN_STATION = "unknown_station"


class Format(StrEnum):
    """What a file is (the ``format`` column of ``smapds.ingest_files``)."""

    ISMN_HEADER_VALUES = "ismn_header_values"
    ISMN_CEOP = "ismn_ceop"
    ISMN_STATIC = "ismn_static_variables"
    CSV_STATIONS = "csv_stations"
    CSV_OBSERVATIONS = "csv_observations"
    ZIP = "zip"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Reject:
    """One refused row: its 1-based line number, a reason code, an explanation and the raw line."""

    line_no: int
    reason: Reason
    detail: str
    line: str


@dataclass(frozen=True)
class Station:
    """A station as a data file or a stations table describes it."""

    network: str
    name: str
    lon: float
    lat: float
    elevation_m: float | None

    @property
    def key(self) -> str:
        return station_key(self.name)


@dataclass(frozen=True)
class Sensor:
    """What is measured where and with what: variable, depth range (m), instrument."""

    variable: str
    depth_from_m: float
    depth_to_m: float
    instrument: str

    @property
    def unit(self) -> str | None:
        return UNITS.get(self.variable)


@dataclass(frozen=True)
class SeriesKey:
    """The sensor a block of rows belongs to, named by its station's network and name."""

    network: str
    station: str
    sensor: Sensor

    @property
    def station_key(self) -> str:
        return station_key(self.station)


@dataclass
class Rows:
    """Observation rows of one sensor as columns of validated text.

    ``times`` are canonical UTC (``YYYY-MM-DD HH:MM:SS+00``), ``values`` decimal numbers as written,
    ``provider_flags`` empty when the file has none; ``line_nos`` are 1-based lines in the file.
    """

    times: list[str] = field(default_factory=list)
    values: list[str] = field(default_factory=list)
    quality_flags: list[str] = field(default_factory=list)
    provider_flags: list[str] = field(default_factory=list)
    line_nos: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.times)

    def in_time_order(self) -> bool:
        """True when the times never decrease (the usual case: files are written in order)."""
        return all(map(operator.le, self.times, islice(self.times, 1, None)))

    def time_range(self) -> tuple[str, str]:
        """(first, last) time; canonical text sorts chronologically."""
        if self.in_time_order():
            return self.times[0], self.times[-1]
        return min(self.times), max(self.times)

    def without_duplicate_times(self) -> tuple[Rows, list[int]]:
        """The rows with every repeated time after its first occurrence dropped, and the line
        numbers of the dropped rows."""
        ordered = self.in_time_order()
        if (ordered and not any(map(operator.eq, self.times, islice(self.times, 1, None)))) or (
            not ordered and len(set(self.times)) == len(self.times)
        ):
            return self, []
        seen: set[str] = set()
        mask: list[bool] = []
        for t in self.times:
            mask.append(t not in seen)
            seen.add(t)
        dropped = [n for n, k in zip(self.line_nos, mask, strict=True) if not k]
        return self.keep(mask), dropped

    def keep(self, mask: list[bool]) -> Rows:
        """The rows whose mask entry is True."""
        return Rows(
            times=[v for v, k in zip(self.times, mask, strict=True) if k],
            values=[v for v, k in zip(self.values, mask, strict=True) if k],
            quality_flags=[v for v, k in zip(self.quality_flags, mask, strict=True) if k],
            provider_flags=[v for v, k in zip(self.provider_flags, mask, strict=True) if k],
            line_nos=[v for v, k in zip(self.line_nos, mask, strict=True) if k],
        )


@dataclass(frozen=True)
class ParsedObservations:
    """A parsed data file: its rows grouped by sensor, the rows refused, how many rows it had.

    ``station`` is the station the file itself describes (ISMN files carry coordinates); the generic
    CSV observations table names stations that the stations table defines, so it has none.
    """

    format: Format
    station: Station | None
    blocks: list[tuple[SeriesKey, Rows]]
    rejects: list[Reject]
    rows_read: int

    @property
    def rows_accepted(self) -> int:
        return sum(len(rows) for _, rows in self.blocks)


@dataclass(frozen=True)
class Attribute:
    """One static attribute of a station as given (ISMN static variables, CSV attribute columns)."""

    quantity: str
    source: str
    depth_from_m: float | None
    depth_to_m: float | None
    value_text: str
    value_num: float | None
    unit: str | None
    description: str | None
    details: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, float | None, float | None]:
        return (self.quantity, self.source, self.depth_from_m, self.depth_to_m)


@dataclass(frozen=True)
class ParsedStatic:
    """A parsed ``*_static_variables.csv``: the (network, station) readings of its file name, most
    likely first, and its attributes."""

    candidates: list[tuple[str, str]]
    attributes: list[Attribute]
    rejects: list[Reject]
    rows_read: int


@dataclass(frozen=True)
class StationRow:
    """A station of the generic CSV stations table with its optional attributes."""

    station: Station
    attributes: list[Attribute]
    line_no: int


@dataclass(frozen=True)
class ParsedStations:
    """A parsed generic CSV stations table."""

    stations: list[StationRow]
    rejects: list[Reject]
    rows_read: int
