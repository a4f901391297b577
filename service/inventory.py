"""The granule inventory (``smapds.granules``): what was fetched, quarantined, is pending or a gap.

Rows are keyed by (source, granule date, granule id); a date for which no granule has appeared
yet holds the placeholder id ``*`` (pending, then gap once the latency window has passed), removed
as soon as a granule for that date is fetched. All writes are upserts, so repeating a run changes
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.archive import Stored
from etl.sources import Granule
from etl.stack import ArchivedFile, Catalog

PLACEHOLDER = "*"


@dataclass(frozen=True)
class InventoryRow:
    source: str
    granule_date: date
    granule_id: str
    status: str
    path: str | None
    sha256: str | None
    attempts: int
    error: str | None


def lookup(conn: Connection, granule: Granule) -> InventoryRow | None:
    row = conn.execute(
        sa.text("""
        SELECT source, granule_date, granule_id, status, path, sha256, attempts, error
          FROM smapds.granules
         WHERE source = :s AND granule_date = :d AND granule_id = :g
    """),
        {"s": granule.source, "d": granule.day, "g": granule.granule_id},
    ).first()
    return None if row is None else InventoryRow(**row._mapping)


def rows_for(conn: Connection, *, source: str, day: date) -> list[InventoryRow]:
    result = conn.execute(
        sa.text("""
        SELECT source, granule_date, granule_id, status, path, sha256, attempts, error
          FROM smapds.granules WHERE source = :s AND granule_date = :d ORDER BY granule_id
    """),
        {"s": source, "d": day},
    )
    return [InventoryRow(**r._mapping) for r in result]


def _upsert(
    conn: Connection,
    *,
    source: str,
    day: date,
    granule_id: str,
    product: str,
    version: str | None,
    status: str,
    path: str | None = None,
    size: int | None = None,
    sha256: str | None = None,
    error: str | None = None,
    attempt: bool,
) -> None:
    conn.execute(
        sa.text("""
        INSERT INTO smapds.granules AS g
            (source, granule_date, granule_id, product, version, status, path, size_bytes,
             sha256, attempts, error)
        VALUES (:source, :day, :gid, :product, :version, :status, :path, :size, :sha256,
                CASE WHEN :attempt THEN 1 ELSE 0 END, :error)
        ON CONFLICT (source, granule_date, granule_id) DO UPDATE SET
            product = EXCLUDED.product, version = EXCLUDED.version, status = EXCLUDED.status,
            path = EXCLUDED.path, size_bytes = EXCLUDED.size_bytes, sha256 = EXCLUDED.sha256,
            attempts = g.attempts + CASE WHEN :attempt THEN 1 ELSE 0 END,
            error = EXCLUDED.error,
            updated_at = CASE WHEN (g.status, g.path, g.sha256, g.error)
                                   IS NOT DISTINCT FROM
                                   (EXCLUDED.status, EXCLUDED.path, EXCLUDED.sha256,
                                    EXCLUDED.error)
                              THEN g.updated_at ELSE now() END
    """),
        {
            "source": source,
            "day": day,
            "gid": granule_id,
            "product": product,
            "version": version,
            "status": status,
            "path": path,
            "size": size,
            "sha256": sha256,
            "error": error,
            "attempt": attempt,
        },
    )


def mark_fetched(
    conn: Connection, granule: Granule, stored: Stored, *, relpath: str, downloaded: bool
) -> None:
    """Record a verified granule in the archive and drop the day's placeholder."""
    _upsert(
        conn,
        source=granule.source,
        day=granule.day,
        granule_id=granule.granule_id,
        product=granule.source,
        version=granule.version,
        status="fetched",
        path=relpath,
        size=stored.size,
        sha256=stored.sha256,
        attempt=downloaded,
    )
    conn.execute(
        sa.text(
            "DELETE FROM smapds.granules WHERE source = :s AND granule_date = :d "
            "AND granule_id = :p"
        ),
        {"s": granule.source, "d": granule.day, "p": PLACEHOLDER},
    )


def mark_quarantined(conn: Connection, granule: Granule, *, error: str) -> None:
    _upsert(
        conn,
        source=granule.source,
        day=granule.day,
        granule_id=granule.granule_id,
        product=granule.source,
        version=granule.version,
        status="quarantined",
        error=error,
        attempt=True,
    )


def mark_granule_pending(conn: Connection, granule: Granule, *, error: str) -> None:
    """A known granule that could not be fetched this time (network, 404 after listing)."""
    _upsert(
        conn,
        source=granule.source,
        day=granule.day,
        granule_id=granule.granule_id,
        product=granule.source,
        version=granule.version,
        status="pending",
        error=error,
        attempt=True,
    )


def mark_missing(
    conn: Connection, *, source: str, day: date, status: str, error: str | None
) -> None:
    """No granule for the day yet: ``pending`` inside the latency window, ``gap`` after it."""
    if status not in ("pending", "gap"):
        raise ValueError(f"missing-day status must be pending or gap, not {status!r}")
    _upsert(
        conn,
        source=source,
        day=day,
        granule_id=PLACEHOLDER,
        product=source,
        version=None,
        status=status,
        error=error,
        attempt=True,
    )


def catalog(engine: Engine, *, data_dir: Path) -> Catalog:
    """A Catalog over the fetched granules in the inventory (paths resolved under ``data_dir``)."""

    def find(source: str, day: date) -> list[ArchivedFile]:
        with engine.connect() as conn:
            result = conn.execute(
                sa.text("""
                SELECT granule_id, path, sha256 FROM smapds.granules
                 WHERE source = :s AND granule_date = :d AND status = 'fetched'
                 ORDER BY granule_id
            """),
                {"s": source, "d": day},
            )
            return [
                ArchivedFile(source, r.granule_id, day, data_dir / r.path, r.sha256) for r in result
            ]

    return find
