"""The run ledger: one row per (domain, date, stage) with status, attempts, timings and error.

Catch-up after downtime reads this table. Writes are upserts keyed on (domain, date, stage), so
recording the same outcome twice leaves one row; ``attempts`` counts the starts.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

STATUSES = (
    "PENDING",
    "RUNNING",
    "OK",
    "DEGRADED",
    "INSUFFICIENT_DATA",
    "QUARANTINED",
    "FAILED",
    "SKIPPED",
)


@dataclass(frozen=True)
class LedgerRow:
    domain: str
    run_date: date
    stage: str
    status: str
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    details: dict[str, Any]


def start(
    conn: Connection,
    *,
    domain: str,
    run_date: date,
    stage: str,
    run_id: uuid.UUID,
    software_version: str,
) -> None:
    """Mark a stage RUNNING for a day and count the attempt."""
    conn.execute(
        sa.text("""
        INSERT INTO smapds.run_ledger AS l
            (domain, run_date, stage, status, attempts, run_id, started_at, finished_at, error,
             software_version)
        VALUES (:domain, :run_date, :stage, 'RUNNING', 1, :run_id, now(), NULL, NULL, :version)
        ON CONFLICT (domain, run_date, stage) DO UPDATE SET
            status = 'RUNNING', attempts = l.attempts + 1, run_id = EXCLUDED.run_id,
            started_at = now(), finished_at = NULL, error = NULL,
            software_version = EXCLUDED.software_version, updated_at = now()
    """),
        {
            "domain": domain,
            "run_date": run_date,
            "stage": stage,
            "run_id": run_id,
            "version": software_version,
        },
    )


def finish(
    conn: Connection,
    *,
    domain: str,
    run_date: date,
    stage: str,
    status: str,
    error: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Record the outcome of a started stage."""
    if status not in STATUSES or status == "RUNNING":
        raise ValueError(f"not a final ledger status: {status!r}")
    result = conn.execute(
        sa.text("""
        UPDATE smapds.run_ledger
           SET status = :status, finished_at = greatest(now(), started_at), error = :error,
               details = CAST(:details AS jsonb), updated_at = now()
         WHERE domain = :domain AND run_date = :run_date AND stage = :stage
    """),
        {
            "domain": domain,
            "run_date": run_date,
            "stage": stage,
            "status": status,
            "error": error,
            "details": json.dumps(details or {}, default=str),
        },
    )
    if result.rowcount != 1:
        raise ValueError(f"no ledger row for {domain}/{run_date}/{stage}: call start() first")


def rows(conn: Connection, *, domain: str, since: date | None = None) -> list[LedgerRow]:
    """The ledger of a domain, oldest day first."""
    result = conn.execute(
        sa.text("""
        SELECT domain, run_date, stage, status, attempts, started_at, finished_at, error, details
          FROM smapds.run_ledger
         WHERE domain = :domain AND (CAST(:since AS date) IS NULL OR run_date >= :since)
         ORDER BY run_date, stage
    """),
        {"domain": domain, "since": since},
    )
    return [LedgerRow(**r._mapping) for r in result]


def summary(conn: Connection, *, domain: str) -> dict[str, dict[str, Any]]:
    """Per stage: counts by status and the latest day that ended OK or DEGRADED."""
    result = conn.execute(
        sa.text("""
        SELECT stage, status, count(*) AS n,
               max(run_date) FILTER (WHERE status IN ('OK', 'DEGRADED')) AS latest_ok
          FROM smapds.run_ledger WHERE domain = :domain
         GROUP BY stage, status ORDER BY stage, status
    """),
        {"domain": domain},
    )
    out: dict[str, dict[str, Any]] = {}
    for r in result:
        stage = out.setdefault(r.stage, {"counts": {}, "latest_ok": None})
        stage["counts"][r.status] = r.n
        if r.latest_ok is not None and (
            stage["latest_ok"] is None or r.latest_ok > stage["latest_ok"]
        ):
            stage["latest_ok"] = r.latest_ok
    return out
