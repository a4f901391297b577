"""Parsers of the generic in situ CSV format: a stations table and an observations table.

The format is documented for data providers in ``CSV_FORMAT.md`` beside this module; the column lists
below are the reference. Both files are RFC 4180 CSV (comma, optional double quotes, UTF-8, a header
row; column names are case-insensitive and may come in any order). Unknown columns are an error, so a
typo (``latitude`` for ``lat``) cannot silently drop a field. Times must be ISO 8601 with a time zone;
they are stored in UTC.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Final

from etl.errors import InputError
from etl.insitu.model import (
    ISMN_VARIABLES,
    UNKNOWN_INSTRUMENT,
    Attribute,
    Format,
    ParsedObservations,
    ParsedStations,
    Reason,
    Reject,
    Rows,
    RowsBuilder,
    Sensor,
    SeriesKey,
    Station,
    StationRow,
    station_key,
)
from etl.insitu.text import (
    clip,
    decode,
    is_number,
    iso_time,
    lat_lon_problem,
    split_lines,
    to_number,
)

STATION_COLUMNS: Final = ("network", "station", "lon", "lat")
STATION_OPTIONAL: Final = (
    "elevation_m",
    "land_cover_code",
    "land_cover",
    "climate_class",
    "clay_pct",
    "sand_pct",
    "silt_pct",
    "organic_carbon_pct",
    "saturation",
)
OBSERVATION_COLUMNS: Final = (
    "network",
    "station",
    "variable",
    "depth_from_m",
    "depth_to_m",
    "time",
    "value",
    "quality_flag",
)
OBSERVATION_OPTIONAL: Final = ("instrument", "provider_flag")
CSV_SOURCE: Final = "csv"

# numeric attribute column -> (quantity name as ISMN spells it, unit)
_NUMERIC_ATTRIBUTES: Final = {
    "clay_pct": ("clay fraction", "% weight"),
    "sand_pct": ("sand fraction", "% weight"),
    "silt_pct": ("silt fraction", "% weight"),
    "organic_carbon_pct": ("organic carbon", "% weight"),
    "saturation": ("saturation", "m^3*m^-3"),
}


def parse_stations_csv(data: bytes, *, name: str) -> ParsedStations:
    """Parse a stations table; InputError naming the file when its header is wrong."""
    stations: list[StationRow] = []
    rejects: list[Reject] = []
    seen: set[tuple[str, str]] = set()
    read = 0
    lines = split_lines(decode(data))
    for line_no, line, row in _records(
        lines, name=name, required=STATION_COLUMNS, optional=STATION_OPTIONAL
    ):
        read += 1
        if isinstance(row, Reject):
            rejects.append(row)
            continue
        missing = [c for c in STATION_COLUMNS if not row[c]]
        if missing:
            rejects.append(
                Reject(line_no, Reason.MISSING_FIELD, f"empty {', '.join(missing)}", line)
            )
            continue
        lon, lat = to_number(row["lon"]), to_number(row["lat"])
        elevation = to_number(row.get("elevation_m", ""))
        if lon is None or lat is None or (row.get("elevation_m") and elevation is None):
            detail = "lon, lat and elevation_m must be numbers"
            rejects.append(Reject(line_no, Reason.NON_NUMERIC_VALUE, detail, line))
            continue
        problem = lat_lon_problem(lat, lon)
        if problem is not None:
            rejects.append(Reject(line_no, Reason.LAT_LON_OUT_OF_RANGE, problem, line))
            continue
        key = (row["network"], station_key(row["station"]))
        if key in seen:
            detail = f"station {row['network']}/{row['station']} already on an earlier line"
            rejects.append(Reject(line_no, Reason.DUPLICATE_KEY, detail, line))
            continue
        try:
            attributes = _attributes(row)
        except ValueError as err:
            rejects.append(Reject(line_no, Reason.NON_NUMERIC_VALUE, str(err), line))
            continue
        seen.add(key)
        station = Station(row["network"], row["station"], lon, lat, elevation)
        stations.append(StationRow(station=station, attributes=attributes, line_no=line_no))
    return ParsedStations(stations=stations, rejects=rejects, rows_read=read)


def parse_observations_csv(data: bytes, *, name: str) -> ParsedObservations:
    """Parse an observations table; rows are grouped by sensor (network, station, variable,
    depths, instrument). InputError naming the file when its header is wrong."""
    blocks: dict[SeriesKey, RowsBuilder] = {}
    rejects: list[Reject] = []
    read = 0
    lines = split_lines(decode(data))
    for line_no, line, row in _records(
        lines, name=name, required=OBSERVATION_COLUMNS, optional=OBSERVATION_OPTIONAL
    ):
        read += 1
        if isinstance(row, Reject):
            rejects.append(row)
            continue
        missing = [c for c in OBSERVATION_COLUMNS if not row[c]]
        if missing:
            rejects.append(
                Reject(line_no, Reason.MISSING_FIELD, f"empty {', '.join(missing)}", line)
            )
            continue
        when, reason, detail = iso_time(row["time"])
        if when is None:
            assert reason is not None
            rejects.append(Reject(line_no, reason, detail, line))
            continue
        d0, d1 = to_number(row["depth_from_m"]), to_number(row["depth_to_m"])
        if d0 is None or d1 is None:
            detail = "depth_from_m and depth_to_m must be numbers (metres)"
            rejects.append(Reject(line_no, Reason.NON_NUMERIC_VALUE, detail, line))
            continue
        value = row["value"]
        if not is_number(value):
            detail = f"value {value!r} is not a number"
            rejects.append(Reject(line_no, Reason.NON_NUMERIC_VALUE, detail, line))
            continue
        variable = row["variable"]
        variable = ISMN_VARIABLES.get(variable.lower(), (variable, ""))[0]
        sensor = Sensor(variable, d0, d1, row.get("instrument") or UNKNOWN_INSTRUMENT)
        block = blocks.setdefault(SeriesKey(row["network"], row["station"], sensor), RowsBuilder())
        block.add(when, value, row["quality_flag"], row.get("provider_flag", ""), line_no)
    kept: list[tuple[SeriesKey, Rows]] = []
    for key, block in blocks.items():
        rows, dropped = block.build().without_duplicate_times()
        rejects.extend(
            Reject(
                n,
                Reason.DUPLICATE_TIME,
                "same sensor and time as an earlier line",
                clip(lines[n - 1]),
            )
            for n in dropped
        )
        kept.append((key, rows))
    return ParsedObservations(
        format=Format.CSV_OBSERVATIONS,
        station=None,
        blocks=kept,
        rejects=sorted(rejects, key=lambda r: r.line_no),
        rows_read=read,
    )


def _records(
    lines: list[str], *, name: str, required: tuple[str, ...], optional: tuple[str, ...]
) -> Iterator[tuple[int, str, dict[str, str] | Reject]]:
    """(line number, raw line, fields by column name or a Reject) for every non-empty record.

    Each line is one record, read on its own: no field of these tables may hold a line break, so
    an unclosed quote or an oversized field costs its own line, not the rest of the file."""
    header: list[str] | None = None
    for line_no, raw in enumerate(lines, start=1):
        if "\ufffd" in raw and header is not None:  # text.decode: an invalid UTF-8 byte
            line = clip(raw)
            detail = "invalid UTF-8 byte(s) in the line"
            yield line_no, line, Reject(line_no, Reason.MALFORMED_RECORD, detail, line)
            continue
        try:
            record = next(csv.reader([raw], strict=True), [])
        except csv.Error as err:
            if header is None:
                raise InputError(f"{name}: line {line_no}: unreadable header ({err})") from None
            line = clip(raw)
            detail = f"not a CSV record: {err}"
            yield line_no, line, Reject(line_no, Reason.MALFORMED_RECORD, detail, line)
            continue
        if not any(f.strip() for f in record):
            continue
        if header is None:
            header = [f.strip().lower() for f in record]
            _check_header(header, name=name, line_no=line_no, required=required, optional=optional)
            continue
        line = clip(raw)
        if len(record) != len(header):
            detail = f"expected {len(header)} fields as in the header, found {len(record)}"
            yield line_no, line, Reject(line_no, Reason.WRONG_COLUMN_COUNT, detail, line)
            continue
        yield line_no, line, {c: f.strip() for c, f in zip(header, record, strict=True)}
    if header is None:
        raise InputError(f"{name}: empty file (a header row is required)")


def _check_header(
    header: list[str],
    *,
    name: str,
    line_no: int,
    required: tuple[str, ...],
    optional: tuple[str, ...],
) -> None:
    missing = [c for c in required if c not in header]
    unknown = [c for c in header if c not in required and c not in optional]
    doubled = sorted({c for c in header if header.count(c) > 1})
    problems = []
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown column(s) {', '.join(repr(c) for c in unknown)}")
    if doubled:
        problems.append(f"repeated column(s) {', '.join(doubled)}")
    if problems:
        raise InputError(
            f"{name}: line {line_no}: {'; '.join(problems)} "
            f"(required: {', '.join(required)}; optional: {', '.join(optional)})"
        )


def _attributes(row: dict[str, str]) -> list[Attribute]:
    """The optional attribute columns of a stations row as station attributes (source ``csv``)."""
    out: list[Attribute] = []
    for column, (quantity, unit) in _NUMERIC_ATTRIBUTES.items():
        text = row.get(column, "")
        if not text:
            continue
        number = to_number(text)
        if number is None:
            raise ValueError(f"{column} {text!r} is not a number")
        out.append(Attribute(quantity, CSV_SOURCE, None, None, text, number, unit, None))
    code, label = row.get("land_cover_code", ""), row.get("land_cover", "")
    if code or label:
        out.append(
            Attribute(
                "land cover classification",
                CSV_SOURCE,
                None,
                None,
                code or label,
                to_number(code) if code else None,
                None,
                label or None,
            )
        )
    climate = row.get("climate_class", "")
    if climate:
        out.append(
            Attribute("climate classification", CSV_SOURCE, None, None, climate, None, None, None)
        )
    return out
