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
from collections.abc import Callable, Iterable, Sequence
from typing import Final

import numpy as np

from etl.errors import InputError
from etl.insitu.ismn_names import DataName, parse_data_name
from etl.insitu.model import (
    Format,
    ParsedObservations,
    Reason,
    Reject,
    Rows,
    RowsBuilder,
    Sensor,
    SeriesKey,
    Station,
    station_key,
)
from etl.insitu.text import (
    clip,
    decode,
    is_number,
    ismn_day,
    ismn_time,
    lat_lon_problem,
    split_lines,
)
from etl.insitu.tokens import decimals, hhmm_minutes, ismn_days, labels, split_tokens, utc_times

_NUM: Final = r"[-+]?(?:\d+\.?\d*|\.\d+)"
_HEADER = re.compile(
    rf"\s*(?P<cse>\S+)\s+(?P<network>\S+)\s+(?P<station>\S.*?)\s+(?P<lat>{_NUM})\s+(?P<lon>{_NUM})"
    rf"\s+(?P<elev>{_NUM})\s+(?P<d0>{_NUM})\s+(?P<d1>{_NUM})(?:\s+(?P<instrument>\S.*?))?\s*"
)
_DEPTH_TOLERANCE_M: Final = 1e-6
_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")


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
    text = decode(data)
    found = _first_line(text)
    if found is None:
        raise InputError(f"{name}: empty file")
    header_no, header, body_start = found
    m = _HEADER.fullmatch(header)
    if m is None:
        raise InputError(
            f"{name}: line {header_no}: not a header+values header (CSE, network, station, "
            f"latitude, longitude, elevation, depth from, depth to, sensor): "
            f"{clip(header)[:120]!r}"
        )
    lat, lon = float(m["lat"]), float(m["lon"])
    problem = lat_lon_problem(lat, lon)
    if problem is not None:
        raise InputError(f"{name}: line {header_no} (header): {problem}")
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
    rows, rejects, read = _value_lines(text[body_start:], first_line_no=header_no + 1)
    return ParsedObservations(
        format=Format.ISMN_HEADER_VALUES,
        station=station,
        blocks=[(SeriesKey(station.network, station.name, sensor), rows)] if len(rows) else [],
        rejects=sorted(rejects, key=lambda r: r.line_no),
        rows_read=read,
    )


def _first_line(text: str) -> tuple[int, str, int] | None:
    """(1-based number, text, offset of the next line) of the first line that is not blank."""
    line_no, start = 1, 0
    while start < len(text):
        brk = _LINE_BREAK.search(text, start)
        end, following = (brk.start(), brk.end()) if brk else (len(text), len(text))
        if text[start:end].strip():
            return line_no, text[start:end], following
        line_no, start = line_no + 1, following
    return None


def _value_lines(body: str, *, first_line_no: int) -> tuple[Rows, list[Reject], int]:
    """The measurement lines of a header+values file (``body`` starts at line ``first_line_no``):
    the rows without repeated times, the rejects, and how many lines were read.

    The hot path of the loader: lines of the usual shape are read all at once by
    :mod:`etl.insitu.tokens`; any other line (a reject, or an unusual but valid number such as
    ``1e-3``) is read alone by :func:`_value_line`, the rule both paths implement.
    """
    tokens = split_tokens(body)
    if tokens is None:  # not plain ASCII: every line alone
        lines = split_lines(body)
        every = _line_by_line(lines, range(len(lines)), first_line_no)
        return _without_repeats(*every, lambda n: lines[n - first_line_no])
    counts = tokens.token_counts
    shaped = np.flatnonzero((counts == 4) | (counts == 5))
    days, ok = ismn_days(tokens.data, *tokens.field(shaped, 0))
    minutes, time_ok = hhmm_minutes(tokens.data, *tokens.field(shaped, 1))
    values, value_ok = decimals(tokens.data, *tokens.field(shaped, 2))
    ok &= time_ok & value_ok
    good = shaped[ok]
    flag_starts, flag_ends = tokens.field(good, 3)
    provider_starts, provider_ends = flag_ends.copy(), flag_ends.copy()  # none: an empty span
    with_provider = counts[good] == 5
    provider_starts[with_provider], provider_ends[with_provider] = tokens.field(
        good[with_provider], 4
    )
    rows = Rows(
        times=utc_times(days[ok], minutes[ok]),
        values=values[ok],
        quality_flags=labels(tokens.data, flag_starts, flag_ends),
        provider_flags=labels(tokens.data, provider_starts, provider_ends),
        line_nos=good + first_line_no,
    )
    others = counts > 0
    others[good] = False
    alone = np.flatnonzero(others).tolist()
    read = int(np.count_nonzero(counts))
    rejects: list[Reject] = []
    if alone:
        more, rejects, _ = _line_by_line([tokens.line(i) for i in alone], alone, first_line_no)
        if len(more):
            rows = Rows.concat([rows, more])
            rows = rows.take(np.argsort(rows.line_nos, kind="stable"))
    return _without_repeats(rows, rejects, read, lambda n: tokens.line(n - first_line_no))


def _line_by_line(
    lines: Sequence[str], numbers: Iterable[int], first_line_no: int
) -> tuple[Rows, list[Reject], int]:
    """Measurement lines read one at a time: ``lines[k]`` is line ``numbers[k] + first_line_no``."""
    rows = RowsBuilder()
    rejects: list[Reject] = []
    read = 0
    for line, i in zip(lines, numbers, strict=True):
        tokens = line.split()
        if not tokens:
            continue
        read += 1
        row = _value_line(tokens, line=line, line_no=i + first_line_no)
        if isinstance(row, Reject):
            rejects.append(row)
        else:
            rows.add(*row, line_no=i + first_line_no)
    return rows.build(), rejects, read


def _value_line(
    tokens: list[str], *, line: str, line_no: int
) -> tuple[str, str, str, str] | Reject:
    """One measurement line: (canonical UTC time, value, quality flag, provider flag or ""), or
    why it is refused. The reference rule; :func:`_value_lines` reads most lines faster."""
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
    if not is_number(tokens[2]):
        detail = f"value {tokens[2]!r} is not a number"
        return Reject(line_no, Reason.NON_NUMERIC_VALUE, detail, clip(line))
    return when, tokens[2], tokens[3], tokens[4] if n == 5 else ""


def _without_repeats(
    rows: Rows, rejects: list[Reject], read: int, line: Callable[[int], str]
) -> tuple[Rows, list[Reject], int]:
    """The rows without repeated times, the rejects with the dropped repeats added, ``read``."""
    rows, dropped = rows.without_duplicate_times()
    return rows, rejects + _duplicates(dropped, line), read


def parse_ceop(data: bytes, *, name: str) -> ParsedObservations:
    """Parse a CEOP (separate files) file: station and depths on every line, actual UTC times used.

    The first valid line fixes the station; lines naming another station or depth are refused.
    """
    lines = split_lines(decode(data))
    fname = parse_data_name(name)
    builder = RowsBuilder()
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
        builder.add(when, value, flag, provider, line_no=i + 1)
    rows, dropped = builder.build().without_duplicate_times()
    rejects.extend(_duplicates(dropped, lambda n: lines[n - 1]))
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


def _duplicates(line_nos: list[int], line: Callable[[int], str]) -> list[Reject]:
    """Rejects of repeated times; ``line`` gives the text of a 1-based line number."""
    return [
        Reject(n, Reason.DUPLICATE_TIME, "time already given on an earlier line", clip(line(n)))
        for n in line_nos
    ]
