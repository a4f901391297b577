"""Writing parsed in situ files into PostGIS (schema in ``sql/003_insitu.sql``).

Every function takes an open connection and works inside the caller's transaction; the caller
(``service.ingest``) runs one transaction per group of files. Writes are idempotent: stations,
sensors, attributes and observations are upserted on their natural keys and a row is only rewritten when
its content differs, so loading the same data again changes nothing.

Observations of one sensor are written in bulk with ``COPY`` in binary format, built from the numpy
columns of :class:`~etl.insitu.model.Rows` without a Python loop per row (the server then parses no
text either). When the sensor has no observation yet in the time range of the rows (the usual case:
new data; always so for a sensor this transaction created) they are copied straight into their
monthly partitions; otherwise they are copied into a temporary staging table and upserted into the
partitioned table with ``ON CONFLICT (sensor_id, time) DO UPDATE ... WHERE`` the content differs.
The check and the write happen under a transaction-scoped advisory lock on the sensor, so a
concurrent loader of the same sensor cannot slip rows in between; the result is the same either
way. New rows of several files can be collected in :class:`NewRows` and copied with one ``COPY``
per month. Measured (PostgreSQL 15, 2 shared CPUs, hourly data of 300 stations for a year, server
CPU per row): one binary COPY per sensor and month straight into its partition 2.4-2.7 us, the same
rows a group of 8 sensors per COPY 1.6 us (a COPY statement has a fixed cost that the few hundred
rows of one sensor-month do not amortise), of which about 0.9 us maintains the primary key; COPY into the parent table, which routes every row, about
3.3 us; text COPY about 0.7 us more; staging plus ``INSERT ... SELECT`` about twice the direct
cost. The monthly partitions must exist first (:func:`ensure_partitions`, best called in its own
short transaction: creating a partition locks the parent table).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from itertools import pairwise
from typing import Any, Final

import numpy as np
import psycopg2
import psycopg2.extensions
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.engine import Connection

from etl.errors import DatabaseError, GridError
from etl.grid import Domain, ease2
from etl.insitu.model import Attribute, Labels, Reject, Rows, Sensor, Station, station_key

log = logging.getLogger(__name__)

LOCK_SPACE: Final = 0x5D5D_0003  # first key of the per-sensor advisory locks (int4)
COORD_TOLERANCE_DEG: Final = 1e-4
_CREATE_STAGE: Final = """
    CREATE TEMP TABLE IF NOT EXISTS insitu_stage_rows (
        sensor_id integer, time timestamptz, value double precision, quality_flag text,
        provider_flag text, file_id integer
    ) ON COMMIT DELETE ROWS"""
_COPY_BINARY: Final = (
    "COPY {} (sensor_id, time, value, quality_flag, provider_flag, file_id) "
    "FROM STDIN WITH (FORMAT binary)"
)  # formatted with a table name made here, never with input
_UPSERT: Final = """
    INSERT INTO smapds.observations AS o
        (sensor_id, time, value, quality_flag, provider_flag, file_id)
    SELECT sensor_id, time, value, quality_flag, provider_flag, file_id FROM insitu_stage_rows
    ON CONFLICT (sensor_id, time) DO UPDATE SET
        value = EXCLUDED.value, quality_flag = EXCLUDED.quality_flag,
        provider_flag = EXCLUDED.provider_flag, file_id = EXCLUDED.file_id
    WHERE (o.value, o.quality_flag, o.provider_flag)
          IS DISTINCT FROM (EXCLUDED.value, EXCLUDED.quality_flag, EXCLUDED.provider_flag)"""
# PostgreSQL binary COPY: the stream header (signature, flags, header extension length), the end
# marker, and the fixed start of every row: field count, then (length, value) of sensor_id int4,
# time timestamptz (int8 microseconds since 2000-01-01 UTC) and value float8, big-endian
_COPY_HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER: Final = b"\xff\xff"
_ROW_START: Final = np.dtype(
    [
        ("fields", ">i2"),
        ("sensor_len", ">i4"),
        ("sensor", ">i4"),
        ("time_len", ">i4"),
        ("time", ">i8"),
        ("value_len", ">i4"),
        ("value", ">f8"),
    ]
)
_PG_EPOCH: Final = np.datetime64("2000-01-01T00:00:00", "us")
_NULL: Final = struct.pack("!i", -1)


@dataclass(frozen=True)
class RecordedFile:
    """What ``smapds.ingest_files`` holds about a file."""

    file_id: int
    sha256: str | None
    format: str
    status: str
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    error: str | None


@cache
def _sql(statement: str) -> sa.TextClause:
    """The SQLAlchemy clause of a statement, built once (building parses the bind parameters)."""
    return sa.text(statement)


def relax_commit(conn: Connection) -> None:
    """Let the current transaction's commit return before its WAL is flushed to disk
    (``synchronous_commit = off`` for this transaction only; the default is restored after it).

    For a file load this trades nothing that matters: PostgreSQL stays consistent after a crash,
    which can only lose the last few hundred milliseconds of committed transactions whole; a lost
    file load takes its ``ingest_files`` row with it, so the next run loads that file again. In
    return a loader does not wait for a disk flush after every file.
    """
    conn.execute(_sql("SET LOCAL synchronous_commit = off"))


def recorded_files(conn: Connection, paths: list[str]) -> dict[tuple[str, str], RecordedFile]:
    """What ``ingest_files`` holds about the files (archive members included) at ``paths``, by
    (path, member)."""
    rows = conn.execute(
        _sql("""
        SELECT path, member, file_id, sha256, format, status, rows_read, rows_loaded,
               rows_rejected, error
          FROM smapds.ingest_files WHERE path = ANY(:paths)
    """),
        {"paths": paths},
    ).all()
    return {
        (r.path, r.member): RecordedFile(
            **{k: v for k, v in r._mapping.items() if k not in ("path", "member")}
        )
        for r in rows
    }


@dataclass(frozen=True)
class FileRow:
    """A file's ``ingest_files`` row as :func:`record_file` left it."""

    file_id: int
    """Stable across reloads of a path."""
    inserted: bool
    """Whether the row is new: the file had never been recorded, so it has no rejects yet."""


def record_file(
    conn: Connection,
    *,
    path: str,
    member: str,
    sha256: str | None,
    size: int | None,
    format: str,
    rows_read: int,
    rows_loaded: int,
    rows_rejected: int,
    status: str,
    error: str | None,
    span: tuple[np.datetime64, np.datetime64] | None = None,
) -> FileRow:
    """Insert or update the file's row (untouched when the outcome is the same as recorded).

    ``span`` is the (first, last) observation time loaded from the file; without one the row keeps
    the span it has (the rows an earlier version of the file brought stay in the table).
    """
    first, last = (None, None) if span is None else (_utc(span[0]), _utc(span[1]))
    # xmax is 0 on a row this statement inserted, and set on one it updated
    row = conn.execute(
        _sql("""
        INSERT INTO smapds.ingest_files AS f
            (path, member, sha256, size_bytes, format, rows_read, rows_loaded, rows_rejected,
             status, error, first_time, last_time)
        VALUES (:path, :member, :sha256, :size, :format, :read, :loaded, :rejected, :status,
                :error, :first, :last)
        ON CONFLICT (path, member) DO UPDATE SET
            sha256 = EXCLUDED.sha256, size_bytes = EXCLUDED.size_bytes, format = EXCLUDED.format,
            rows_read = EXCLUDED.rows_read, rows_loaded = EXCLUDED.rows_loaded,
            rows_rejected = EXCLUDED.rows_rejected, status = EXCLUDED.status,
            error = EXCLUDED.error, loaded_at = now(), collocated_at = NULL,
            first_time = coalesce(EXCLUDED.first_time, f.first_time),
            last_time = coalesce(EXCLUDED.last_time, f.last_time)
        WHERE (f.sha256, f.size_bytes, f.format, f.rows_read, f.rows_loaded, f.rows_rejected,
               f.status, f.error, f.first_time, f.last_time)
              IS DISTINCT FROM (EXCLUDED.sha256, EXCLUDED.size_bytes, EXCLUDED.format,
                                EXCLUDED.rows_read, EXCLUDED.rows_loaded, EXCLUDED.rows_rejected,
                                EXCLUDED.status, EXCLUDED.error,
                                coalesce(EXCLUDED.first_time, f.first_time),
                                coalesce(EXCLUDED.last_time, f.last_time))
        RETURNING file_id, xmax = 0 AS inserted
    """),
        {
            "path": path,
            "member": member,
            "sha256": sha256,
            "size": size,
            "format": format,
            "read": rows_read,
            "loaded": rows_loaded,
            "rejected": rows_rejected,
            "status": status,
            "error": error,
            "first": first,
            "last": last,
        },
    ).first()
    if row is not None:
        return FileRow(int(row.file_id), bool(row.inserted))
    file_id = conn.execute(  # the same outcome as recorded: the row is left as it was
        _sql("SELECT file_id FROM smapds.ingest_files WHERE path = :p AND member = :m"),
        {"p": path, "m": member},
    ).scalar_one()
    return FileRow(int(file_id), inserted=False)


def _utc(t: np.datetime64) -> datetime:
    moment: datetime = t.astype("datetime64[us]").astype(datetime)
    return moment.replace(tzinfo=UTC)


def replace_rejects(conn: Connection, recorded: FileRow, *, rejects: Iterable[Reject]) -> None:
    """The file's rejected rows, replacing those of an earlier version of the file."""
    file_id = recorded.file_id
    if not recorded.inserted:
        conn.execute(_sql("DELETE FROM smapds.ingest_rejects WHERE file_id = :f"), {"f": file_id})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for r in rejects:
        writer.writerow((file_id, r.line_no, r.reason.value, r.detail, r.line.replace("\x00", "")))
    if buffer.tell():
        _copy(
            conn,
            "COPY smapds.ingest_rejects (file_id, line_no, reason, detail, line) "
            "FROM STDIN WITH (FORMAT csv)",
            buffer.getvalue(),
        )


def ensure_partitions(conn: Connection, *, first: np.datetime64, last: np.datetime64) -> int:
    """Create the monthly partitions covering [first, last] (UTC times); returns how many."""
    created = conn.execute(
        _sql(
            "SELECT smapds.ensure_observation_partitions(CAST(:a AS timestamptz), "
            "CAST(:b AS timestamptz))"
        ),
        {"a": utc_text(first), "b": utc_text(last)},
    ).scalar_one()
    return int(created)


def months(first: np.datetime64, last: np.datetime64) -> list[str]:
    """The ``YYYY-MM`` months from the month of ``first`` to that of ``last`` (UTC times)."""
    span = np.arange(first.astype("datetime64[M]"), last.astype("datetime64[M]") + 1)
    return [str(m) for m in span]


def utc_text(time: np.datetime64) -> str:
    """A UTC time as PostgreSQL ``timestamptz`` input (``2024-05-01T00:00:00.000000+00``)."""
    return f"{np.datetime_as_string(time, unit='us')}+00"


def add_station(conn: Connection, station: Station) -> int:
    """The id of an ISMN data file's station, created when new.

    An existing station keeps its coordinates (those of the first file loaded): ISMN repeats them
    in every file, sometimes rounded differently per sensor; a real move is logged as a warning.
    """
    sid = conn.execute(
        _sql("""
        INSERT INTO smapds.stations (network, station, station_key, geom, elevation_m)
        VALUES (:network, :station, :key, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :elev)
        ON CONFLICT (network, station_key) DO NOTHING
        RETURNING station_id
    """),
        _station_params(station),
    ).scalar()
    if sid is not None:
        return int(sid)
    row = conn.execute(
        _sql("""
        SELECT station_id, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM smapds.stations
         WHERE network = :network AND station_key = :key
    """),
        {"network": station.network, "key": station.key},
    ).one()
    if max(abs(row.lon - station.lon), abs(row.lat - station.lat)) > COORD_TOLERANCE_DEG:
        log.warning(
            "station coordinates differ between files; keeping the first",
            extra={
                "network": station.network,
                "station": station.name,
                "kept": (row.lon, row.lat),
                "ignored": (station.lon, station.lat),
            },
        )
    return int(row.station_id)


def put_station(conn: Connection, station: Station) -> int:
    """Insert or update a station from an authoritative stations table (the generic CSV).

    Changed coordinates drop the station's precomputed grid cells (recomputed by
    :func:`refresh_station_cells`).
    """
    params = _station_params(station)
    changed = conn.execute(
        _sql("""
        INSERT INTO smapds.stations AS s (network, station, station_key, geom, elevation_m)
        VALUES (:network, :station, :key, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :elev)
        ON CONFLICT (network, station_key) DO UPDATE SET
            station = EXCLUDED.station, geom = EXCLUDED.geom, elevation_m = EXCLUDED.elevation_m
        WHERE (s.station, ST_AsEWKB(s.geom), s.elevation_m)
              IS DISTINCT FROM (EXCLUDED.station, ST_AsEWKB(EXCLUDED.geom), EXCLUDED.elevation_m)
        RETURNING station_id
    """),
        params,
    ).scalar()
    if changed is not None:
        conn.execute(_sql("DELETE FROM smapds.station_cells WHERE station_id = :s"), {"s": changed})
        return int(changed)
    found = find_station(conn, network=station.network, name=station.name)
    assert found is not None
    return found


def find_station(conn: Connection, *, network: str, name: str) -> int | None:
    """The id of a station by network and name (any spelling with the same key)."""
    sid = conn.execute(
        _sql("SELECT station_id FROM smapds.stations WHERE network = :n AND station_key = :k"),
        {"n": network, "k": station_key(name)},
    ).scalar()
    return None if sid is None else int(sid)


@dataclass(frozen=True)
class SensorRef:
    """A sensor's id, and whether the current transaction created it: a sensor created here has
    no observations (until this transaction commits, no other can see it)."""

    sensor_id: int
    created: bool


def add_sensor(conn: Connection, *, station_id: int, sensor: Sensor) -> SensorRef:
    """The id of a sensor, created when new."""
    params = {
        "station": station_id,
        "variable": sensor.variable,
        "d0": round(sensor.depth_from_m, 4),
        "d1": round(sensor.depth_to_m, 4),
        "instrument": sensor.instrument,
        "unit": sensor.unit,
    }
    sid = conn.execute(
        _sql("""
        INSERT INTO smapds.sensors (station_id, variable, depth_from_m, depth_to_m, instrument, unit)
        VALUES (:station, :variable, :d0, :d1, :instrument, :unit)
        ON CONFLICT (station_id, variable, depth_from_m, depth_to_m, instrument) DO NOTHING
        RETURNING sensor_id
    """),
        params,
    ).scalar()
    if sid is not None:
        return SensorRef(int(sid), created=True)
    sid = conn.execute(
        _sql("""
        SELECT sensor_id FROM smapds.sensors
         WHERE station_id = :station AND variable = :variable AND depth_from_m = :d0
           AND depth_to_m = :d1 AND instrument = :instrument
    """),
        params,
    ).scalar_one()
    return SensorRef(int(sid), created=False)


def put_attributes(conn: Connection, *, station_id: int, attributes: Iterable[Attribute]) -> int:
    """Upsert static attributes of a station; returns how many rows were inserted or changed."""
    changed = 0
    for a in attributes:
        result = conn.execute(
            _sql("""
            INSERT INTO smapds.station_attributes AS a
                (station_id, quantity, source, depth_from_m, depth_to_m, value_text, value_num,
                 unit, description, details)
            VALUES (:station, :quantity, :source, :d0, :d1, :text, :num, :unit, :description,
                    CAST(:details AS jsonb))
            ON CONFLICT ON CONSTRAINT station_attributes_key DO UPDATE SET
                value_text = EXCLUDED.value_text, value_num = EXCLUDED.value_num,
                unit = EXCLUDED.unit, description = EXCLUDED.description,
                details = EXCLUDED.details
            WHERE (a.value_text, a.value_num, a.unit, a.description, a.details)
                  IS DISTINCT FROM (EXCLUDED.value_text, EXCLUDED.value_num, EXCLUDED.unit,
                                    EXCLUDED.description, EXCLUDED.details)
        """),
            {
                "station": station_id,
                "quantity": a.quantity,
                "source": a.source,
                "d0": a.depth_from_m,
                "d1": a.depth_to_m,
                "text": a.value_text,
                "num": a.value_num,
                "unit": a.unit,
                "description": a.description,
                "details": json.dumps(a.details, sort_keys=True),
            },
        )
        changed += result.rowcount
    return changed


def write_rows(
    conn: Connection,
    *,
    sensor: SensorRef,
    file_id: int,
    rows: Rows,
    new_rows: NewRows | None = None,
) -> None:
    """Write one sensor's rows; the monthly partitions must exist.

    New data (a sensor created in this transaction, or one with no observation in the rows' time
    range) goes straight into the partitions: through ``new_rows`` when given (copied with other
    files' new rows when it is flushed, before the transaction ends), else at once. Otherwise the
    rows are copied into a staging table and upserted, changing only rows whose value or flags
    differ. A per-sensor advisory lock keeps the check valid until commit.
    """
    if not len(rows):
        return
    if new_rows is not None and sensor.sensor_id in new_rows:
        new_rows.flush()  # the sensor's rows collected so far must be in the table for the check
    rows = rows.sorted_by_time()
    records = copy_records(
        rows, sensor_id=sensor.sensor_id, file_id=file_id, encoding=_encoding(conn)
    )
    if sensor.created or not _has_rows(conn, sensor.sensor_id, rows.times[0], rows.times[-1]):
        batch = NewRows(conn) if new_rows is None else new_rows
        batch.add(sensor.sensor_id, records, month_slices(rows.times))
        if new_rows is None:
            batch.flush()
        return
    conn.execute(_sql(_CREATE_STAGE))
    conn.execute(_sql("TRUNCATE insitu_stage_rows"))
    _copy(conn, _COPY_BINARY.format("insitu_stage_rows"), records.stream(0, len(rows)))
    conn.execute(_sql(_UPSERT))


class NewRows:
    """New observation rows of several sensors (and files) of one transaction, copied into their
    monthly partitions together: one ``COPY`` per month for all of them instead of one per sensor
    and month, which roughly halves the server's CPU per row for files of a year of hourly data
    (COPY has a cost per statement that a few hundred rows do not amortise).

    Rows are held until :meth:`flush`, which the owner calls before its transaction commits;
    :meth:`add` flushes by itself past ``flush_rows`` rows, so memory stays bounded.
    """

    def __init__(self, conn: Connection, *, flush_rows: int = 250_000) -> None:
        self._conn = conn
        self._flush_rows = flush_rows
        self._held: dict[str, list[memoryview]] = {}
        self._sensors: set[int] = set()
        self._rows = 0

    def __contains__(self, sensor_id: object) -> bool:
        return sensor_id in self._sensors

    def add(self, sensor_id: int, records: CopyRecords, slices: list[tuple[str, int, int]]) -> None:
        """Hold the rows of one sensor (``slices`` as :func:`month_slices` gives)."""
        for month, first, end in slices:
            self._held.setdefault(month, []).append(records.body(first, end))
        self._sensors.add(sensor_id)
        self._rows += len(records.ends)
        if self._rows >= self._flush_rows:
            self.flush()

    def flush(self) -> None:
        """Copy the rows held into their partitions (in month order) and forget them."""
        for month in sorted(self._held):
            stream = b"".join((_COPY_HEADER, *self._held[month], _COPY_TRAILER))
            _copy(self._conn, _COPY_BINARY.format(partition_of(month)), stream)
        self._held.clear()
        self._sensors.clear()
        self._rows = 0


def _has_rows(conn: Connection, sensor_id: int, first: np.datetime64, last: np.datetime64) -> bool:
    """Whether the sensor has observations in [first, last]; takes the sensor's advisory lock
    (held until commit) first, so no other loader can add some before this one commits."""
    conn.execute(
        _sql("SELECT pg_advisory_xact_lock(:space, :sensor)"),
        {"space": LOCK_SPACE, "sensor": sensor_id},
    )
    present = conn.execute(
        _sql("""
        SELECT EXISTS (SELECT 1 FROM smapds.observations WHERE sensor_id = :s
                          AND time BETWEEN CAST(:a AS timestamptz) AND CAST(:b AS timestamptz))
    """),
        {"s": sensor_id, "a": utc_text(first), "b": utc_text(last)},
    ).scalar_one()
    return bool(present)


@dataclass(frozen=True)
class CopyRecords:
    """Rows as the tuples of PostgreSQL's binary ``COPY`` format, back to back in ``data``;
    row ``i`` ends at byte ``ends[i]``."""

    data: NDArray[np.uint8]
    ends: NDArray[np.int64]

    def body(self, first: int, end: int) -> memoryview:
        """The tuples of rows ``first`` to ``end - 1``, without the stream's header and trailer."""
        start = int(self.ends[first - 1]) if first else 0
        return self.data[start : int(self.ends[end - 1])].data

    def stream(self, first: int, end: int) -> bytes:
        """A complete binary ``COPY`` stream of rows ``first`` to ``end - 1``."""
        return b"".join((_COPY_HEADER, self.body(first, end), _COPY_TRAILER))


def copy_records(rows: Rows, *, sensor_id: int, file_id: int, encoding: str) -> CopyRecords:
    """The rows as binary ``COPY`` tuples (sensor_id, time, value, quality_flag, provider_flag,
    file_id); an empty provider flag is NULL; text is encoded with the Python codec ``encoding``
    (the connection's client encoding).

    Each row is a fixed start (sensor, time, value) and a tail (flags, file) that depends only on
    the row's pair of flags: the tails of the few distinct pairs are encoded once, and rows are
    assembled as a byte matrix, padding then squeezed out when the tails differ in length.
    """
    n = len(rows)
    tails, pair = _flag_tails(
        rows.quality_flags, rows.provider_flags, file_id=file_id, encoding=encoding
    )
    if not n:
        return CopyRecords(np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int64))
    widths = np.array([len(t) for t in tails], dtype=np.int64)
    head, width = _ROW_START.itemsize, _ROW_START.itemsize + int(widths.max())
    matrix = np.empty((n, width), dtype=np.uint8)
    start = matrix.view(_row_start(width)).reshape(n)  # the first bytes of each row, as fields
    start["fields"], start["sensor_len"], start["sensor"] = 6, 4, sensor_id
    start["time_len"], start["time"] = 8, (rows.times - _PG_EPOCH).astype(np.int64)
    start["value_len"], start["value"] = 8, rows.values
    table = np.zeros((len(tails), width - head), dtype=np.uint8)
    for k, tail in enumerate(tails):
        table[k, : len(tail)] = np.frombuffer(tail, dtype=np.uint8)
    matrix[:, head:] = table[0] if len(tails) == 1 else table[pair]
    lengths = head + widths[pair]
    if widths.min() < widths.max():  # squeeze out the padding of the shorter tails
        matrix = matrix[np.arange(width) < lengths[:, None]]
    return CopyRecords(matrix.reshape(-1), np.cumsum(lengths))


def _row_start(width: int) -> np.dtype[np.void]:
    """:data:`_ROW_START` laid over rows of ``width`` bytes."""
    fields = _ROW_START.fields
    assert fields is not None
    return np.dtype(
        {
            "names": list(fields),
            "formats": [fields[name][0] for name in fields],
            "offsets": [fields[name][1] for name in fields],
            "itemsize": width,
        }
    )


def _flag_tails(
    quality: Labels, provider: Labels, *, file_id: int, encoding: str
) -> tuple[list[bytes], NDArray[np.intp]]:
    """The encoded row tails (quality flag, provider flag, file) of the flag pairs that occur, and
    the index of each row's tail."""
    n_provider = max(len(provider.names), 1)
    pairs = quality.codes * n_provider + provider.codes
    present = np.bincount(pairs, minlength=len(quality.names) * n_provider) > 0
    used = np.flatnonzero(present)
    file_field = struct.pack("!ii", 4, file_id)
    tails = []
    for code in used.tolist():
        q, p = divmod(code, n_provider)
        tails.append(
            _text_field(quality.names[q], encoding)
            + _text_field(provider.names[p], encoding, empty_is_null=True)
            + file_field
        )
    return tails, (np.cumsum(present) - 1)[pairs]


def _text_field(text: str, encoding: str, *, empty_is_null: bool = False) -> bytes:
    if empty_is_null and not text:
        return _NULL
    data = text.encode(encoding)
    return struct.pack("!i", len(data)) + data


def month_slices(times: NDArray[np.datetime64]) -> list[tuple[str, int, int]]:
    """(``YYYY-MM``, first, end) of the rows of each UTC month that has rows (times sorted)."""
    if not len(times):
        return []
    months = np.arange(times[0].astype("datetime64[M]"), times[-1].astype("datetime64[M]") + 1)
    starts = np.searchsorted(times, np.append(months, months[-1] + 1).astype(times.dtype))
    spans = zip(months.tolist(), pairwise(starts.tolist()), strict=True)
    return [(f"{m:%Y-%m}", a, b) for m, (a, b) in spans if a < b]


def partition_of(month: str) -> str:
    """The partition of smapds.observations holding a ``YYYY-MM`` month (UTC), schema-qualified
    (``smapds.observations_2024_05``: digits and underscores, no quoting needed)."""
    if not (len(month) == 7 and month[4] == "-" and (month[:4] + month[5:]).isdigit()):
        raise ValueError(f"not a YYYY-MM month: {month!r}")
    return f"smapds.observations_{month[:4]}_{month[5:7]}"


def refresh_station_cells(conn: Connection, *, domain: Domain) -> int:
    """Compute the grid cells of every station that has none yet for ``domain``; returns how many.

    Cells are domain-relative (row 0 = the domain's north edge) at 1, 9 and 36 km; a station
    outside the domain gets a row of NULLs, so it is not recomputed every time.
    """
    todo = conn.execute(
        _sql("""
        SELECT s.station_id, ST_X(s.geom) AS lon, ST_Y(s.geom) AS lat FROM smapds.stations s
         WHERE NOT EXISTS (SELECT 1 FROM smapds.station_cells c
                            WHERE c.station_id = s.station_id AND c.domain = :d)
         ORDER BY s.station_id
    """),
        {"d": domain.name},
    ).all()
    if not todo:
        return 0
    ids = [r.station_id for r in todo]
    lon = np.array([r.lon for r in todo], dtype=np.float64)
    lat = np.array([r.lat for r in todo], dtype=np.float64)
    cells = {res: _domain_cells(domain, res, lon, lat) for res in (1, 9, 36)}
    params = []
    for k, sid in enumerate(ids):
        row: dict[str, Any] = {"station": sid, "domain": domain.name}
        for res, (rows, cols, inside) in cells.items():
            ok = bool(inside[k]) and bool(cells[1][2][k])
            row[f"r{res}"] = int(rows[k]) if ok else None
            row[f"c{res}"] = int(cols[k]) if ok else None
        params.append(row)
    conn.execute(
        _sql("""
        INSERT INTO smapds.station_cells
            (station_id, domain, row_1km, col_1km, row_9km, col_9km, row_36km, col_36km)
        VALUES (:station, :domain, :r1, :c1, :r9, :c9, :r36, :c36)
        ON CONFLICT (station_id, domain) DO NOTHING
    """),
        params,
    )
    return len(params)


def _domain_cells(
    domain: Domain, res_km: int, lon: np.ndarray[Any, Any], lat: np.ndarray[Any, Any]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Domain-relative (rows, cols, inside) of points at ``res_km``, vectorised."""
    grid = ease2(res_km)
    rows = np.full(lon.shape, -1, dtype=np.int64)
    cols = np.full(lon.shape, -1, dtype=np.int64)
    try:
        rows, cols = grid.rowcol(lon, lat)
    except GridError:  # a point beyond the grid's latitude limit: do them one by one
        for k in range(len(lon)):
            try:
                r, c = grid.rowcol(lon[k : k + 1], lat[k : k + 1])
            except GridError:
                continue
            rows[k], cols[k] = r[0], c[0]
    r0, c0 = domain.offset(res_km)
    nr, nc = domain.shape(res_km)
    rows, cols = rows - r0, cols - c0
    inside = (rows >= 0) & (rows < nr) & (cols >= 0) & (cols < nc)
    return rows, cols, inside


def _station_params(station: Station) -> dict[str, Any]:
    return {
        "network": station.network,
        "station": station.name,
        "key": station.key,
        "lon": station.lon,
        "lat": station.lat,
        "elev": station.elevation_m,
    }


def _encoding(conn: Connection) -> str:
    """The Python codec of the connection's client encoding (how psycopg2 encodes text)."""
    dbapi: Any = conn.connection.dbapi_connection
    return str(psycopg2.extensions.encodings[dbapi.encoding])


def _copy(conn: Connection, sql: object, data: str | bytes) -> None:
    """Run ``COPY ... FROM STDIN`` on the connection's own transaction; DatabaseError on failure."""
    dbapi: Any = conn.connection.dbapi_connection
    cursor = dbapi.cursor()
    stream = io.BytesIO(data) if isinstance(data, bytes) else io.StringIO(data)
    try:
        cursor.copy_expert(sql, stream, size=1 << 20)
    except psycopg2.Error as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DatabaseError(f"COPY failed: {first}") from err
    finally:
        cursor.close()
