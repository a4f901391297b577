"""Parsers of ISMN ``.stm`` data files in the two download formats: header+values and CEOP.

*Header+values*: a first line ``CSE NETWORK STATION LAT LON ELEVATION DEPTH_FROM DEPTH_TO SENSOR``,
then one line per measurement ``YYYY/MM/DD HH:MM VALUE ISMN_FLAG [PROVIDER_FLAG]``; the times are the
actual measurement times in UTC. *CEOP* (``_sep``: one file per sensor): no header, every line is
``NOMINAL_DATE NOMINAL_TIME ACTUAL_DATE ACTUAL_TIME CSE NETWORK STATION LAT LON ELEVATION
DEPTH_FROM DEPTH_TO VALUE ISMN_FLAG [PROVIDER_FLAG]``; the actual time is used, so both formats give the
same rows. Traps handled (all seen in real downloads): CR-only, CRLF and mixed line endings; a missing
provider flag on some lines (the column is then empty, stored as NULL); combined quality flags such as
``D03,D10`` kept as given; station names written differently in the file name (``CST-01`` vs
``CST_01``). Station identity comes from the file contents; the file name gives the variable (and the
instrument for CEOP) and must agree with the contents once names are normalised
(:func:`etl.insitu.model.station_key`), else the file is refused.
"""

from __future__ import annotations

import re
from typing import Final

from etl.errors import InputError
from etl.insitu.ismn_names import DataName, parse_data_name
from etl.insitu.model import (
    Format,
    ParsedObservations,
    Reason,
    Reject,
    Rows,
    Sensor,
    SeriesKey,
    Station,
    station_key,
)
from etl.insitu.text import (
    HHMM,
    clip,
    decode,
    is_number,
    ismn_day,
    ismn_time,
    lat_lon_problem,
    split_lines,
)

_NUM: Final = r"[-+]?(?:\d+\.?\d*|\.\d+)"
_HEADER = re.compile(
    rf"\s*(?P<cse>\S+)\s+(?P<network>\S+)\s+(?P<station>\S.*?)\s+(?P<lat>{_NUM})\s+(?P<lon>{_NUM})"
    rf"\s+(?P<elev>{_NUM})\s+(?P<d0>{_NUM})\s+(?P<d1>{_NUM})(?:\s+(?P<instrument>\S.*?))?\s*"
)
_DEPTH_TOLERANCE_M: Final = 1e-6


def detect_format(data: bytes) -> Format:
    """CEOP when the first non-empty line starts with a date, header+values otherwise."""
    for raw in data[:4096].replace(b"\r", b"\n").split(b"\n"):
        tokens = raw.split()
        if tokens:
            first = tokens[0].decode("latin-1")
            return Format.ISMN_CEOP if ismn_day(first)[0] is not None else Format.ISMN_HEADER_VALUES
    raise InputError("empty file")


def parse_stm(data: bytes, *, name: str) -> ParsedObservations:
    """Parse an ``.stm`` file in whichever of the two formats it is; ``name`` is its file name."""
    try:
        fmt = detect_format(data)
    except InputError as err:
        raise InputError(f"{name}: {err}") from err
    if fmt is Format.ISMN_CEOP:
        return parse_ceop(data, name=name)
    return parse_header_values(data, name=name)


def parse_header_values(data: bytes, *, name: str) -> ParsedObservations:
    """Parse a header+values file. InputError (naming the file and line) when the file as a whole
    is unusable: no or malformed header, impossible coordinates, a file name that contradicts it."""
    lines = split_lines(decode(data))
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise InputError(f"{name}: empty file")
    m = _HEADER.fullmatch(lines[first])
    if m is None:
        raise InputError(
            f"{name}: line {first + 1}: not a header+values header (CSE, network, station, latitude, "
            f"longitude, elevation, depth from, depth to, sensor): {clip(lines[first])[:120]!r}"
        )
    lat, lon = float(m["lat"]), float(m["lon"])
    problem = lat_lon_problem(lat, lon)
    if problem is not None:
        raise InputError(f"{name}: line {first + 1} (header): {problem}")
    fname = parse_data_name(name)
    d0, d1 = float(m["d0"]), float(m["d1"])
    _check_name(fname, name=name, cse=m["cse"], network=m["network"], station=m["station"])
    _check_depths(fname, name=name, depth_from=d0, depth_to=d1)
    header_instrument = m["instrument"]
    if header_instrument and station_key(header_instrument) != station_key(fname.instrument):
        raise InputError(
            f"{name}: the header names sensor {header_instrument!r}, the file name "
            f"{fname.instrument!r}"
        )
    station = Station(
        network=m["network"], name=m["station"], lon=lon, lat=lat, elevation_m=float(m["elev"])
    )
    sensor = Sensor(
        variable=fname.variable,
        depth_from_m=d0,
        depth_to_m=d1,
        instrument=header_instrument or fname.instrument,
    )
    rows, rejects, read = _value_lines(lines, first=first + 1)
    rows, dropped = rows.without_duplicate_times()
    rejects.extend(_duplicates(dropped, lines))
    return ParsedObservations(
        format=Format.ISMN_HEADER_VALUES,
        station=station,
        blocks=[(SeriesKey(station.network, station.name, sensor), rows)] if len(rows) else [],
        rejects=sorted(rejects, key=lambda r: r.line_no),
        rows_read=read,
    )


def _value_lines(lines: list[str], *, first: int) -> tuple[Rows, list[Reject], int]:
    """The measurement lines of a header+values file (the hot loop: keep it lean)."""
    rows = Rows()
    add_time, add_value = rows.times.append, rows.values.append
    add_flag, add_provider, add_line = (
        rows.quality_flags.append,
        rows.provider_flags.append,
        rows.line_nos.append,
    )
    rejects: list[Reject] = []
    days: dict[str, str] = {}
    read = 0
    for i in range(first, len(lines)):
        tokens = lines[i].split()
        n = len(tokens)
        if n == 0:
            continue
        read += 1
        if n == 4 or n == 5:
            day = days.get(tokens[0])
            if day is None:
                day = days[tokens[0]] = ismn_day(tokens[0])[0] or ""
            value = tokens[2]
            # plain non-negative decimals inline (nearly every row); anything else via is_number
            if (
                day
                and tokens[1] in HHMM
                and ((value.replace(".", "", 1).isdigit() and value.isascii()) or is_number(value))
            ):
                add_time(f"{day} {tokens[1]}:00+00")
                add_value(value)
                add_flag(tokens[3])
                add_provider(tokens[4] if n == 5 else "")
                add_line(i + 1)
                continue
        rejects.append(_value_line_reject(tokens, line=lines[i], line_no=i + 1))
    return rows, rejects, read


def _value_line_reject(tokens: list[str], *, line: str, line_no: int) -> Reject:
    """Why a measurement line was refused (the slow path, only for bad lines)."""
    n = len(tokens)
    if n == 3 and ismn_time(tokens[0], tokens[1])[0] is not None and is_number(tokens[2]):
        return Reject(line_no, Reason.MISSING_FIELD, "quality flag missing", clip(line))
    if n < 4 or n > 5:
        detail = f"expected 4 or 5 fields (date time value flag [provider flag]), found {n}"
        return Reject(line_no, Reason.WRONG_COLUMN_COUNT, detail, clip(line))
    when, reason, detail = ismn_time(tokens[0], tokens[1])
    if when is None:
        assert reason is not None
        return Reject(line_no, reason, detail, clip(line))
    return Reject(
        line_no, Reason.NON_NUMERIC_VALUE, f"value {tokens[2]!r} is not a number", clip(line)
    )


def parse_ceop(data: bytes, *, name: str) -> ParsedObservations:
    """Parse a CEOP (separate files) file: station and depths on every line, actual UTC times used.

    The first valid line fixes the station; lines naming another station or depth are refused.
    """
    lines = split_lines(decode(data))
    fname = parse_data_name(name)
    rows = Rows()
    rejects: list[Reject] = []
    station: Station | None = None
    ident: tuple[str, str, float, float] | None = None
    read = 0
    for i, line in enumerate(lines):
        tokens = line.split()
        if not tokens:
            continue
        read += 1
        fields = _ceop_fields(tokens)
        if isinstance(fields, str):
            rejects.append(Reject(i + 1, Reason.WRONG_COLUMN_COUNT, fields, clip(line)))
            continue
        cse, network, name_in_line, lat_s, lon_s, elev_s, d0_s, d1_s, value, flag, provider = fields
        when, reason, detail = ismn_time(tokens[2], tokens[3])
        if when is None:
            assert reason is not None
            rejects.append(Reject(i + 1, reason, f"actual {detail}", clip(line)))
            continue
        bad = next((s for s in (lat_s, lon_s, elev_s, d0_s, d1_s) if not is_number(s)), None)
        if bad is not None:
            detail = f"station field {bad!r} is not a number"
            rejects.append(Reject(i + 1, Reason.NON_NUMERIC_VALUE, detail, clip(line)))
            continue
        if not is_number(value):
            detail = f"value {value!r} is not a number"
            rejects.append(Reject(i + 1, Reason.NON_NUMERIC_VALUE, detail, clip(line)))
            continue
        lat, lon = float(lat_s), float(lon_s)
        problem = lat_lon_problem(lat, lon)
        if problem is not None:
            rejects.append(Reject(i + 1, Reason.LAT_LON_OUT_OF_RANGE, problem, clip(line)))
            continue
        this = (network, station_key(name_in_line), float(d0_s), float(d1_s))
        if ident is None:
            _check_name(fname, name=name, cse=cse, network=network, station=name_in_line)
            _check_depths(fname, name=name, depth_from=this[2], depth_to=this[3])
            ident = this
            station = Station(network, name_in_line, lon, lat, float(elev_s))
        elif this != ident:
            detail = f"station {network}/{name_in_line} at {d0_s}-{d1_s} m differs from line 1's"
            rejects.append(Reject(i + 1, Reason.STATION_MISMATCH, detail, clip(line)))
            continue
        rows.times.append(when)
        rows.values.append(value)
        rows.quality_flags.append(flag)
        rows.provider_flags.append(provider)
        rows.line_nos.append(i + 1)
    rows, dropped = rows.without_duplicate_times()
    rejects.extend(_duplicates(dropped, lines))
    blocks: list[tuple[SeriesKey, Rows]] = []
    if station is not None and ident is not None and len(rows):
        sensor = Sensor(fname.variable, ident[2], ident[3], fname.instrument)
        blocks.append((SeriesKey(station.network, station.name, sensor), rows))
    return ParsedObservations(
        format=Format.ISMN_CEOP,
        station=station,
        blocks=blocks,
        rejects=sorted(rejects, key=lambda r: r.line_no),
        rows_read=read,
    )


_CeopFields = tuple[str, str, str, str, str, str, str, str, str, str, str]


def _ceop_fields(tokens: list[str]) -> _CeopFields | str:
    """(cse, network, station, lat, lon, elevation, depth from, depth to, value, flag, provider
    flag) of a CEOP line, or why the line does not have that shape.

    The usual line has 14 or 15 whitespace-separated fields. A station name with spaces makes
    more; then the line is read from the right, where a numeric next-to-last field means the
    provider flag is missing (ISMN quality flags are never numbers).
    """
    n = len(tokens)
    if n in (14, 15) and all(is_number(t) for t in tokens[7:12]):
        cse, network, station, lat, lon, elev, d0, d1, value, flag = tokens[4:14]
        return (
            cse,
            network,
            station,
            lat,
            lon,
            elev,
            d0,
            d1,
            value,
            flag,
            tokens[14] if n == 15 else "",
        )
    rest = tokens[6:]
    if len(rest) >= 8 and is_number(rest[-2]):
        value, flag, provider, body = rest[-2], rest[-1], "", rest[:-2]
    elif len(rest) >= 9:
        value, flag, provider, body = rest[-3], rest[-2], rest[-1], rest[:-3]
    else:
        return (
            f"expected 14 or 15 fields (nominal date, time, actual date, time, CSE, network, "
            f"station, latitude, longitude, elevation, depth from, depth to, value, flag "
            f"[provider flag]), found {n}"
        )
    station = " ".join(body[:-5])
    lat, lon, elev, d0, d1 = body[-5:]
    return (tokens[4], tokens[5], station, lat, lon, elev, d0, d1, value, flag, provider)


def _check_name(fname: DataName, *, name: str, cse: str, network: str, station: str) -> None:
    in_name = fname.station_after(cse, network)
    if in_name is None:
        raise InputError(
            f"{name}: the file contents name network {network!r} (CSE {cse!r}) but the file name "
            f"does not start with {cse}_{network}_"
        )
    if station_key(in_name) != station_key(station):
        raise InputError(
            f"{name}: the file contents name station {station!r}, the file name {in_name!r}"
        )


def _check_depths(fname: DataName, *, name: str, depth_from: float, depth_to: float) -> None:
    if (
        abs(fname.depth_from_m - depth_from) > _DEPTH_TOLERANCE_M
        or abs(fname.depth_to_m - depth_to) > _DEPTH_TOLERANCE_M
    ):
        raise InputError(
            f"{name}: the file contents give depths {depth_from}-{depth_to} m, the file name "
            f"{fname.depth_from_m}-{fname.depth_to_m} m"
        )


def _duplicates(line_nos: list[int], lines: list[str]) -> list[Reject]:
    return [
        Reject(
            n, Reason.DUPLICATE_TIME, "time already given on an earlier line", clip(lines[n - 1])
        )
        for n in line_nos
    ]
