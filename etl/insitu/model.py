"""Value objects of the in situ loader: stations, sensors, rows of observations, rejected rows.

Parsers turn files into these; the loader writes them. Observation rows are kept as numpy columns
(UTC times, float values, flags as codes into their few distinct texts) because the loader sends
them to PostgreSQL in binary ``COPY`` format, which is built from such columns without a Python loop
per row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

import numpy as np
from numpy.typing import NDArray

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


MAX_DETAIL_CHARS: Final = 300
"""Longest reject explanation kept (``smapds.ingest_rejects.detail``, file errors, logs)."""


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
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    MALFORMED_RECORD = "malformed_record"


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

    def __post_init__(self) -> None:
        # a detail quotes the offending field, which can be megabytes long (a huge line)
        if len(self.detail) > MAX_DETAIL_CHARS:
            clipped = self.detail[: MAX_DETAIL_CHARS - 30]
            object.__setattr__(self, "detail", f"{clipped}... ({len(self.detail)} characters)")


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


UtcTimes = NDArray[np.datetime64]
"""Times as ``datetime64[us]`` in UTC (naive numpy values that mean UTC)."""


@dataclass(frozen=True)
class Labels:
    """A text column with few distinct values (quality and provider flags), as codes into names.

    ``names[codes[i]]`` is row i's text; the empty string means "none" (stored as NULL).
    """

    codes: NDArray[np.intp]
    names: tuple[str, ...]

    @classmethod
    def of(cls, texts: Sequence[str]) -> Labels:
        """The labels of a list of texts (names in order of first appearance)."""
        index: dict[str, int] = {}
        codes = np.fromiter(
            (index.setdefault(t, len(index)) for t in texts), dtype=np.intp, count=len(texts)
        )
        return cls(codes, tuple(index))

    def __len__(self) -> int:
        return len(self.codes)

    def tolist(self) -> list[str]:
        names = self.names
        return [names[c] for c in self.codes.tolist()]

    def take(self, index: NDArray[np.intp] | NDArray[np.bool_]) -> Labels:
        """The labels of the rows selected by an index array or a boolean mask."""
        return Labels(self.codes[index], self.names)


@dataclass(frozen=True)
class Rows:
    """Observation rows of one sensor as columns, in the order of the file unless sorted.

    ``times`` UTC (``datetime64[us]``), ``values`` finite floats (decimal text converts to the same
    double as PostgreSQL's ``float8`` input gives), flags as :class:`Labels` (provider flag empty
    when the file has none), ``line_nos`` the rows' 1-based lines in the file.
    """

    times: UtcTimes
    values: NDArray[np.float64]
    quality_flags: Labels
    provider_flags: Labels
    line_nos: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.times)

    def in_time_order(self) -> bool:
        """True when the times never decrease (the usual case: files are written in order)."""
        return bool(np.all(self.times[1:] >= self.times[:-1]))

    def time_range(self) -> tuple[np.datetime64, np.datetime64]:
        """(first, last) time; the rows must not be empty."""
        if self.in_time_order():
            return self.times[0], self.times[-1]
        return self.times.min(), self.times.max()

    def take(self, index: NDArray[np.intp] | NDArray[np.bool_]) -> Rows:
        """The rows selected by an index array (in its order) or a boolean mask."""
        return Rows(
            times=self.times[index],
            values=self.values[index],
            quality_flags=self.quality_flags.take(index),
            provider_flags=self.provider_flags.take(index),
            line_nos=self.line_nos[index],
        )

    def sorted_by_time(self) -> Rows:
        """The rows sorted by time (stable: equal times keep their order); self when sorted."""
        if self.in_time_order():
            return self
        return self.take(np.argsort(self.times, kind="stable"))

    def without_duplicate_times(self) -> tuple[Rows, list[int]]:
        """The rows with every repeated time after its first occurrence dropped, and the line
        numbers of the dropped rows."""
        order = None if self.in_time_order() else np.argsort(self.times, kind="stable")
        times = self.times if order is None else self.times[order]
        repeated = np.zeros(len(times), dtype=np.bool_)
        repeated[1:] = times[1:] == times[:-1]
        if not repeated.any():
            return self, []
        if order is not None:  # back to file order: a stable sort keeps first occurrences first
            unsorted = np.empty_like(repeated)
            unsorted[order] = repeated
            repeated = unsorted
        return self.take(~repeated), self.line_nos[repeated].tolist()

    @classmethod
    def concat(cls, parts: Sequence[Rows]) -> Rows:
        """The rows of ``parts`` one after the other (flags re-coded into one set of names)."""
        return cls(
            times=np.concatenate([p.times for p in parts]),
            values=np.concatenate([p.values for p in parts]),
            quality_flags=_concat_labels([p.quality_flags for p in parts]),
            provider_flags=_concat_labels([p.provider_flags for p in parts]),
            line_nos=np.concatenate([p.line_nos for p in parts]),
        )


def _concat_labels(parts: Sequence[Labels]) -> Labels:
    index: dict[str, int] = {}
    codes = []
    for part in parts:
        remap = np.array([index.setdefault(n, len(index)) for n in part.names], dtype=np.intp)
        codes.append(remap[part.codes] if len(part.names) else part.codes)
    return Labels(np.concatenate(codes) if codes else np.zeros(0, np.intp), tuple(index))


@dataclass
class RowsBuilder:
    """Rows collected one by one by a line-oriented parser, as validated text.

    ``add`` takes a canonical UTC time (``YYYY-MM-DD HH:MM:SS[.ffffff]+00``, as ``text.ismn_time``
    and ``text.iso_time`` give) and a finite decimal number (``text.is_number``).
    """

    times: list[str] = field(default_factory=list)
    values: list[str] = field(default_factory=list)
    quality_flags: list[str] = field(default_factory=list)
    provider_flags: list[str] = field(default_factory=list)
    line_nos: list[int] = field(default_factory=list)

    def add(
        self, time: str, value: str, quality_flag: str, provider_flag: str, line_no: int
    ) -> None:
        self.times.append(time)
        self.values.append(value)
        self.quality_flags.append(quality_flag)
        self.provider_flags.append(provider_flag)
        self.line_nos.append(line_no)

    def build(self) -> Rows:
        return Rows(
            times=np.array([t.removesuffix("+00") for t in self.times], dtype="datetime64[us]"),
            values=np.array(self.values, dtype=np.float64),
            quality_flags=Labels.of(self.quality_flags),
            provider_flags=Labels.of(self.provider_flags),
            line_nos=np.array(self.line_nos, dtype=np.int64),
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
