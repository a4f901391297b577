"""In situ ingestion: the functions behind ``smapds ingest ismn PATH...`` and ``smapds ingest csv``.

Each file is parsed (``etl.insitu``) and written whole or not at all, and a bad file never costs the
good ones anything: parsed files are written a group at a time in one transaction (fewer, larger
``COPY`` statements), and when a group's transaction fails its files are written again one by one,
each in a transaction of its own, so only the file at fault fails. Every file gets a :class:`FileSummary` and a row in
``smapds.ingest_files``, and its refused rows go to ``smapds.ingest_rejects`` with the reason.
A file whose content (sha256) is unchanged since it was last loaded is skipped: loading everything
again changes nothing.

Statuses: ``OK`` every row loaded; ``DEGRADED`` some rows rejected, the rest loaded;
``QUARANTINED`` the file itself is unusable (unreadable, refused zip member, wrong columns,
contradictory names, impossible header coordinates) or none of its rows is acceptable; ``FAILED``
the file could not be loaded for a reason outside it (database error, a static variables file whose
station has no data loaded yet, a path that does not exist), retried on the next run; ``SKIPPED``
unchanged since its last load (its recorded counts are reported, ``error`` says how it went then).

Exit rule (:func:`exit_code`): 0 when nothing in this run was rejected or failed (every file OK or
SKIPPED); 1 when rows or files were rejected (any DEGRADED or QUARANTINED); 2 when any file FAILED.
A SKIPPED file never makes the exit code non-zero, even if its earlier load had rejects: nothing
was rejected in this run, and its summary still shows the recorded counts.

Speed: this thread reads and parses the files (numpy, see ``etl.insitu.tokens``) while ``workers``
threads write the parsed ones, a group of about ``GROUP_ROWS`` rows per transaction with binary
``COPY`` (see ``etl.insitu.load``), so parsing overlaps loading and the server works on several
groups at once. The commit of a group does not wait for the disk flush (``load.relax_commit``). ``workers=2``
suits a 2-core machine; ``scripts/bench_ingest.py`` measures the loader against a plain ``COPY``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final, TypeVar

import numpy as np
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from etl.errors import InputError, SmapdsError
from etl.grid import Domain, get_domain
from etl.insitu import load
from etl.insitu.csv_format import parse_observations_csv, parse_stations_csv
from etl.insitu.ismn_stm import detect_format, parse_stm
from etl.insitu.model import Format, ParsedObservations, Reason, Reject, Rows, SeriesKey
from etl.insitu.sources import (
    Content,
    Kind,
    ReadLimits,
    SourceFile,
    Sources,
    plain_file,
    read_file,
)
from etl.insitu.static_csv import parse_static_variables
from etl.insitu.text import clip, decode, split_lines

log = logging.getLogger(__name__)

OK: Final = "OK"
DEGRADED: Final = "DEGRADED"
QUARANTINED: Final = "QUARANTINED"
FAILED: Final = "FAILED"
SKIPPED: Final = "SKIPPED"
_FINAL: Final = frozenset({OK, DEGRADED, QUARANTINED})  # outcomes that depend on the content only
_REASONS_SHOWN: Final = 3
GROUP_ROWS: Final = 50_000
"""Rows of parsed data files written together in one transaction (the files are kept whole)."""
GROUP_FILES: Final = 8
"""At most this many files per group (small files: the bookkeeping per file dominates)."""
T = TypeVar("T")


@dataclass(frozen=True)
class FileSummary:
    """What happened to one file (a zip member is named ``archive.zip!member``)."""

    path: str
    format: str
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    status: str
    error: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "format", str(self.format))  # a Format member -> its value


def ingest_ismn(
    engine: Engine,
    paths: Iterable[Path],
    *,
    domain: Domain | str,
    workers: int = 1,
    limits: ReadLimits = ReadLimits(),  # noqa: B008 - frozen value object
) -> list[FileSummary]:
    """Load ISMN downloads: zip archives, folders (Network/Station layout or flat) or single files.

    Data files (``*.stm``, header+values or CEOP, detected per file) are loaded first, with
    ``workers`` files in parallel; then the ``*_static_variables.csv`` files, which attach to the
    stations the data files created; then the stations' grid cells in ``domain`` are computed.
    Returns one summary per file, in path order.
    """
    dom = get_domain(domain) if isinstance(domain, str) else domain
    with Sources(paths, limits=limits) as sources:
        order = {id(f): k for k, f in enumerate(sources.files)}
        data = [f for f in sources.files if f.kind is not Kind.STATIC or f.problem]
        static = [f for f in sources.files if f.kind is Kind.STATIC and not f.problem]
        done = _run(engine, data, read=sources.read, workers=workers, task=_ismn_data_file)
        done += _run(engine, static, read=sources.read, workers=1, task=_ismn_static_file)
    _refresh_cells(engine, dom)
    return [summary for _, summary in sorted(done, key=lambda d: order[id(d[0])])]


def ingest_csv(
    engine: Engine,
    *,
    stations: Path | None,
    observations: Path | None,
    domain: Domain | str,
    limits: ReadLimits = ReadLimits(),  # noqa: B008 - frozen value object
) -> list[FileSummary]:
    """Load the generic CSV format (``etl/insitu/CSV_FORMAT.md``): the stations table first, then
    the observations table, whose stations must be in the database by then."""
    if stations is None and observations is None:
        raise InputError("ingest csv: give a stations table, an observations table or both")
    dom = get_domain(domain) if isinstance(domain, str) else domain
    summaries: list[FileSummary] = []

    def read(source: SourceFile) -> Content:
        return read_file(source, limits=limits)

    if stations is not None:
        summaries.append(_one(engine, plain_file(stations), read=read, task=_csv_stations_file))
    if observations is not None:
        source = plain_file(observations)
        summaries.append(_one(engine, source, read=read, task=_csv_observations_file))
    _refresh_cells(engine, dom)
    return summaries


def exit_code(summaries: Sequence[FileSummary]) -> int:
    """0 nothing rejected or failed; 1 some rows or files rejected; 2 some file failed."""
    statuses = {s.status for s in summaries}
    if FAILED in statuses:
        return 2
    if statuses & {DEGRADED, QUARANTINED}:
        return 1
    return 0


class _Partitions:
    """The months known to have an observations partition in this run (created or seen), so the
    partition function is called only when a file reaches a new month."""

    def __init__(self) -> None:
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def ensure(self, engine: Engine, *, first: np.datetime64, last: np.datetime64) -> None:
        months = load.months(first, last)
        with self._lock:
            if self._known.issuperset(months):
                return
        with engine.begin() as conn:
            load.ensure_partitions(conn, first=first, last=last)
        with self._lock:
            self._known.update(months)


# -- running files --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    """A data file read and parsed, its database part still to run."""

    source: SourceFile
    content: Content
    parsed: ParsedObservations
    started: float


Task = Callable[[Engine, SourceFile, Content], FileSummary | ParsedObservations]
"""A file's work up to its database part: its summary, or (data files) its parsed content."""
Reader = Callable[[SourceFile], Content]


def _run(
    engine: Engine, files: list[SourceFile], *, read: Reader, workers: int, task: Task
) -> list[tuple[SourceFile, FileSummary]]:
    """Read and prepare each file in this thread (content, checks, parsing) and hand the parsed
    data files, in groups (``GROUP_ROWS``, ``GROUP_FILES``), to one of ``workers`` threads, so the
    next files are parsed while earlier ones load."""
    out: list[tuple[SourceFile, FileSummary]] = []
    recorded = _recorded(engine, files)
    partitions = _Partitions()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="ingest") if workers > 1 else None
    pending: deque[tuple[list[_Parsed], Future[list[FileSummary]]]] = deque()
    group: list[_Parsed] = []

    def collect(files: list[_Parsed], summaries: list[FileSummary]) -> None:
        out.extend(zip((f.source for f in files), summaries, strict=True))

    def hand_over() -> None:
        files = group.copy()
        group.clear()
        if pool is None:
            collect(files, _load_group(engine, files, partitions))
            return
        pending.append((files, pool.submit(_load_group, engine, files, partitions)))
        while len(pending) > 2 * workers:
            done, future = pending.popleft()
            collect(done, future.result())

    try:
        for f in files:
            step = _prepare(engine, f, read=read, task=task, recorded=recorded)
            if isinstance(step, FileSummary):
                out.append((f, step))
                continue
            group.append(step)
            if len(group) >= GROUP_FILES or sum(p.parsed.rows_read for p in group) >= GROUP_ROWS:
                hand_over()
        if group:
            hand_over()
        while pending:
            done, future = pending.popleft()
            collect(done, future.result())
    finally:
        if pool is not None:
            pool.shutdown()
    return out


def _one(engine: Engine, source: SourceFile, *, read: Reader, task: Task) -> FileSummary:
    step = _prepare(engine, source, read=read, task=task, recorded=_recorded(engine, [source]))
    if isinstance(step, FileSummary):
        return step
    [summary] = _load_group(engine, [step], _Partitions())
    return summary


def _prepare(
    engine: Engine,
    source: SourceFile,
    *,
    read: Reader,
    task: Task,
    recorded: dict[tuple[str, str], load.RecordedFile],
) -> FileSummary | _Parsed:
    """The file read and its task run up to its database part; the summary once it is done
    (SKIPPED at once when ``recorded`` says this exact content was loaded from this path)."""
    started = time.perf_counter()
    content = _read(engine, source, read)
    if isinstance(content, FileSummary):
        return content
    skipped = _unchanged(source, content, recorded.get((str(source.path), source.member)))
    if skipped is not None:
        return skipped
    step = _guarded(engine, source, content, partial(task, engine, source, content))
    if isinstance(step, FileSummary):
        return _logged(step, started)
    return _Parsed(source, content, step, started)


def _load_group(engine: Engine, group: list[_Parsed], partitions: _Partitions) -> list[FileSummary]:
    """Write parsed data files in one transaction; when that fails, each in a transaction of its
    own, so that one file's trouble (a database refusal, a conflict, a bug) costs the others
    nothing and is reported with that file."""
    if len(group) > 1:
        try:
            summaries = _write(engine, group, partitions)
        except Exception as err:  # the files alone below say which one it was
            log.warning(
                "group of files failed, loading them one by one",
                extra={"files": len(group), "error": _one_line(err)},
            )
        else:
            return [_logged(s, p.started) for s, p in zip(summaries, group, strict=True)]
    return [
        _logged(
            _guarded(engine, p.source, p.content, partial(_write_one, engine, p, partitions)),
            p.started,
        )
        for p in group
    ]


def _write_one(engine: Engine, parsed: _Parsed, partitions: _Partitions) -> FileSummary:
    [summary] = _write(engine, [parsed], partitions)
    return summary


def _write(engine: Engine, group: list[_Parsed], partitions: _Partitions) -> list[FileSummary]:
    """Write parsed data files: partitions first (own transaction), then all the rest in one."""
    ranges = [rows.time_range() for p in group for _, rows in p.parsed.blocks]
    if ranges:
        partitions.ensure(engine, first=min(r[0] for r in ranges), last=max(r[1] for r in ranges))
    with engine.begin() as conn:
        load.relax_commit(conn)
        new_rows = load.NewRows(conn)
        summaries = [_write_file(conn, p.source, p.content, p.parsed, new_rows) for p in group]
        new_rows.flush()
    return summaries


def _read(engine: Engine, source: SourceFile, read: Reader) -> Content | FileSummary:
    """The file's content, or the summary of why it could not be read."""
    if source.problem is not None and not source.member and not os.path.lexists(source.path):
        log.warning("input not found", extra={"path": source.label})
        return FileSummary(source.label, Format.UNKNOWN, 0, 0, 0, FAILED, source.problem)
    try:
        return read(source)
    except InputError as err:
        fmt = Format.ZIP if source.kind is Kind.ARCHIVE else Format.UNKNOWN
        return _record_bad(engine, source, None, fmt, str(err), QUARANTINED)


def _guarded(
    engine: Engine, source: SourceFile, content: Content, work: Callable[[], T]
) -> T | FileSummary:
    """Run part of one file's work; whatever goes wrong is that file's FAILED summary, never the
    run's."""
    try:
        return work()
    except (SmapdsError, SQLAlchemyError, OSError) as err:
        log.error("file failed", extra={"path": source.label, "error": _one_line(err)})
        return _record_bad(engine, source, content, Format.UNKNOWN, _one_line(err), FAILED)
    except Exception as err:  # a bug must not cost the other files: report it with this file
        log.exception("file failed unexpectedly", extra={"path": source.label})
        error = f"{type(err).__name__}: {err}"
        return _record_bad(engine, source, content, Format.UNKNOWN, error, FAILED)


def _logged(summary: FileSummary, started: float) -> FileSummary:
    log.info(
        "ingested file",
        extra={
            "path": summary.path,
            "format": summary.format,
            "status": summary.status,
            "rows_read": summary.rows_read,
            "rows_loaded": summary.rows_loaded,
            "rows_rejected": summary.rows_rejected,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
    return summary


# -- one file of each kind ------------------------------------------------------------------------


def _ismn_data_file(
    engine: Engine, source: SourceFile, content: Content
) -> FileSummary | ParsedObservations:
    try:
        fmt = detect_format(content.data)
    except InputError as err:
        return _record_bad(
            engine, source, content, Format.UNKNOWN, _named(source, err), QUARANTINED
        )
    try:
        parsed = parse_stm(content.data, name=source.name)
    except InputError as err:
        return _record_bad(engine, source, content, fmt, _named(source, err), QUARANTINED)
    return parsed


def _csv_observations_file(
    engine: Engine, source: SourceFile, content: Content
) -> FileSummary | ParsedObservations:
    try:
        parsed = parse_observations_csv(content.data, name=source.label)
    except InputError as err:
        return _record_bad(engine, source, content, Format.CSV_OBSERVATIONS, str(err), QUARANTINED)
    return parsed


def _write_file(
    conn: Connection,
    source: SourceFile,
    content: Content,
    parsed: ParsedObservations,
    new_rows: load.NewRows,
) -> FileSummary:
    """Write a parsed data file in the caller's transaction (its new rows through ``new_rows``)."""
    known: dict[tuple[str, str], int] = {}
    if parsed.station is not None:
        station = parsed.station
        known[(station.network, station.key)] = load.add_station(conn, station)
    blocks: list[tuple[load.SensorRef, Rows]] = []
    unknown: list[tuple[SeriesKey, Rows]] = []
    physical, impossible = _physical(parsed.blocks)
    for key, rows in physical:
        station_id = known.get((key.network, key.station_key))
        if station_id is None:
            station_id = load.find_station(conn, network=key.network, name=key.station)
        if station_id is None:
            unknown.append((key, rows))
        else:
            sensor = load.add_sensor(conn, station_id=station_id, sensor=key.sensor)
            blocks.append((sensor, rows))
    rejects = list(parsed.rejects)
    if impossible:
        rejects = sorted(rejects + _range_rejects(impossible, content), key=lambda r: r.line_no)
    if unknown:
        rejects = sorted(
            rejects + _unknown_station_rejects(unknown, content), key=lambda r: r.line_no
        )
    loaded = sum(len(rows) for _, rows in blocks)
    status, error = _verdict(parsed.rows_read, loaded, rejects)
    spans = [rows.time_range() for _, rows in blocks if len(rows)]
    file_id = _record(
        conn,
        source,
        content,
        parsed.format,
        parsed.rows_read,
        loaded,
        rejects,
        status,
        error,
        span=(min(a for a, _ in spans), max(b for _, b in spans)) if spans else None,
    )
    for sensor, rows in blocks:
        load.write_rows(conn, sensor=sensor, file_id=file_id, rows=rows, new_rows=new_rows)
    return FileSummary(
        source.label, parsed.format, parsed.rows_read, loaded, len(rejects), status, error
    )


def _ismn_static_file(engine: Engine, source: SourceFile, content: Content) -> FileSummary:
    fmt = Format.ISMN_STATIC
    try:
        parsed = parse_static_variables(content.data, name=source.name)
    except InputError as err:
        return _record_bad(engine, source, content, fmt, _named(source, err), QUARANTINED)
    with engine.connect() as conn:
        found = (
            load.find_station(conn, network=network, name=station)
            for network, station in parsed.candidates
        )
        station_id = next((sid for sid in found if sid is not None), None)
    if station_id is None:
        network, station = parsed.candidates[0]
        missing = (
            f"{source.label}: no station {network}/{station} in the database yet "
            "(its data files must be loaded first); retried next time"
        )
        return _record_bad(engine, source, content, fmt, missing, FAILED)
    loaded = len(parsed.attributes)
    status, error = _verdict(parsed.rows_read, loaded, parsed.rejects)
    with engine.begin() as conn:
        _record(conn, source, content, fmt, parsed.rows_read, loaded, parsed.rejects, status, error)
        load.put_attributes(conn, station_id=station_id, attributes=parsed.attributes)
    return FileSummary(
        source.label, fmt, parsed.rows_read, loaded, len(parsed.rejects), status, error
    )


def _csv_stations_file(engine: Engine, source: SourceFile, content: Content) -> FileSummary:
    fmt = Format.CSV_STATIONS
    try:
        parsed = parse_stations_csv(content.data, name=source.label)
    except InputError as err:
        return _record_bad(engine, source, content, fmt, str(err), QUARANTINED)
    loaded = len(parsed.stations)
    status, error = _verdict(parsed.rows_read, loaded, parsed.rejects)
    with engine.begin() as conn:
        _record(conn, source, content, fmt, parsed.rows_read, loaded, parsed.rejects, status, error)
        for row in parsed.stations:
            station_id = load.put_station(conn, row.station)
            load.put_attributes(conn, station_id=station_id, attributes=row.attributes)
    return FileSummary(
        source.label, fmt, parsed.rows_read, loaded, len(parsed.rejects), status, error
    )


# -- helpers ----------------------------------------------------------------------------------------


def _recorded(
    engine: Engine, files: Sequence[SourceFile]
) -> dict[tuple[str, str], load.RecordedFile]:
    """What ``ingest_files`` holds about the files, read once before they are loaded; nothing when
    the database cannot say (each file's own load then fails with the reason, or loads again:
    loading is idempotent)."""
    try:
        with engine.connect() as conn:
            return load.recorded_files(conn, sorted({str(f.path) for f in files}))
    except SQLAlchemyError as err:
        log.warning("cannot read the files already loaded", extra={"error": _one_line(err)})
        return {}


def _unchanged(
    source: SourceFile, content: Content, prev: load.RecordedFile | None
) -> FileSummary | None:
    """The SKIPPED summary when this exact content was already loaded from this path."""
    if prev is None or prev.sha256 != content.sha256 or prev.status not in _FINAL:
        return None
    note = f"unchanged since its {prev.status} load" + (f": {prev.error}" if prev.error else "")
    return FileSummary(
        source.label,
        prev.format,
        prev.rows_read,
        prev.rows_loaded,
        prev.rows_rejected,
        SKIPPED,
        note,
    )


def _record(
    conn: Connection,
    source: SourceFile,
    content: Content | None,
    fmt: str,
    read: int,
    loaded: int,
    rejects: Sequence[Reject],
    status: str,
    error: str | None,
    span: tuple[np.datetime64, np.datetime64] | None = None,
) -> int:
    """The file's ingest_files row (with the ``span`` of the times loaded from it) and its
    rejects (replacing an earlier version's)."""
    recorded = load.record_file(
        conn,
        path=str(source.path),
        member=source.member,
        sha256=None if content is None else content.sha256,
        size=None if content is None else content.size,
        format=fmt,
        rows_read=read,
        rows_loaded=loaded,
        rows_rejected=len(rejects),
        status=status,
        error=error,
        span=span,
    )
    load.replace_rejects(conn, recorded, rejects=rejects)
    return recorded.file_id


def _record_bad(
    engine: Engine,
    source: SourceFile,
    content: Content | None,
    fmt: str,
    error: str,
    status: str,
) -> FileSummary:
    """Record a file that was refused (QUARANTINED) or could not be loaded (FAILED)."""
    try:
        with engine.begin() as conn:
            _record(conn, source, content, fmt, 0, 0, (), status, error)
    except SQLAlchemyError as err:
        log.error("cannot record file outcome", extra={"path": source.label, "error": str(err)})
        status, error = FAILED, f"{error}; and it cannot be recorded: {_one_line(err)}"
    return FileSummary(source.label, fmt, 0, 0, 0, status, error)


def _verdict(read: int, loaded: int, rejects: Sequence[Reject]) -> tuple[str, str | None]:
    """Status and error text of a file from its row counts."""
    if not rejects:
        return (OK, None) if read else (QUARANTINED, "no data rows")
    counts = Counter(r.reason for r in rejects)
    first: dict[Reason, Reject] = {}
    for r in rejects:
        first.setdefault(r.reason, r)
    parts = [
        f"{reason.value} {n} (first: line {first[reason].line_no}: {first[reason].detail})"
        for reason, n in counts.most_common(_REASONS_SHOWN)
    ]
    more = len(counts) - _REASONS_SHOWN
    text = f"{len(rejects)} of {read} rows rejected: " + "; ".join(parts)
    if more > 0:
        text += f"; and {more} other reason(s)"
    return (DEGRADED if loaded else QUARANTINED), text


SOIL_MOISTURE_RANGE: Final = (0.0, 1.0)
"""Volumetric soil moisture (m3/m3) outside this is impossible: e.g. percent given as m3/m3."""


def _physical(
    blocks: Sequence[tuple[SeriesKey, Rows]],
) -> tuple[list[tuple[SeriesKey, Rows]], list[tuple[SeriesKey, Rows]]]:
    """The blocks split into physically possible rows and impossible ones (soil moisture)."""
    keep: list[tuple[SeriesKey, Rows]] = []
    bad: list[tuple[SeriesKey, Rows]] = []
    lo, hi = SOIL_MOISTURE_RANGE
    for key, rows in blocks:
        if key.sensor.variable != "soil_moisture":
            keep.append((key, rows))
            continue
        out = (rows.values < lo) | (rows.values > hi)
        if out.any():
            bad.append((key, rows.take(out)))
            rows = rows.take(~out)
        if len(rows):
            keep.append((key, rows))
    return keep, bad


def _range_rejects(blocks: list[tuple[SeriesKey, Rows]], content: Content) -> list[Reject]:
    lines = split_lines(decode(content.data))
    lo, hi = SOIL_MOISTURE_RANGE
    return [
        Reject(
            n,
            Reason.VALUE_OUT_OF_RANGE,
            f"soil moisture {v:g} is outside {lo:g}-{hi:g} m3/m3 (percent given as m3/m3?)",
            clip(lines[n - 1]),
        )
        for _, rows in blocks
        for n, v in zip(rows.line_nos.tolist(), rows.values.tolist(), strict=True)
    ]


def _unknown_station_rejects(
    blocks: list[tuple[SeriesKey, Rows]], content: Content
) -> list[Reject]:
    lines = split_lines(decode(content.data))
    return [
        Reject(
            n,
            Reason.UNKNOWN_STATION,
            f"station {key.network}/{key.station} is not in the stations table",
            clip(lines[n - 1]),
        )
        for key, rows in blocks
        for n in rows.line_nos.tolist()
    ]


def _refresh_cells(engine: Engine, domain: Domain) -> None:
    """Grid cells of new stations; a failure is logged (retried next run), the files stay loaded."""
    try:
        with engine.begin() as conn:
            n = load.refresh_station_cells(conn, domain=domain)
    except SQLAlchemyError as err:
        log.error("station cells not computed", extra={"error": _one_line(err)})
        return
    if n:
        log.info("station cells computed", extra={"domain": domain.name, "stations": n})


def _named(source: SourceFile, err: InputError) -> str:
    """A parser's message (which names the file by its own name) with the full location."""
    text, own = str(err), f"{source.name}: "
    return f"{source.label}: {text[len(own) :] if text.startswith(own) else text}"


def _one_line(err: BaseException) -> str:
    text = str(getattr(err, "orig", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__
