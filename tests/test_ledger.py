"""The run ledger: one row per (domain, date, stage), attempts counted, outcomes summarised."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from sqlalchemy.engine import Engine

from service import ledger


def test_a_stage_is_recorded_once_per_day_and_attempts_are_counted(writer: Engine) -> None:
    day = date(2024, 4, 1)
    for _ in range(2):
        with writer.begin() as conn:
            ledger.start(
                conn,
                domain="demo",
                run_date=day,
                stage="product",
                run_id=uuid.uuid4(),
                software_version="test",
            )
    with writer.begin() as conn:
        ledger.finish(
            conn,
            domain="demo",
            run_date=day,
            stage="product",
            status="FAILED",
            error="InputError: truncated file",
            details={"granules": 0},
        )
    with writer.begin() as conn:
        ledger.start(
            conn,
            domain="demo",
            run_date=day,
            stage="product",
            run_id=uuid.uuid4(),
            software_version="test",
        )
        ledger.finish(
            conn,
            domain="demo",
            run_date=day,
            stage="product",
            status="OK",
            details={"valid_fraction": 0.93},
        )
    with writer.connect() as conn:
        (row,) = ledger.rows(conn, domain="demo")
    assert row.status == "OK" and row.attempts == 3 and row.error is None
    assert row.details == {"valid_fraction": 0.93}
    assert row.started_at is not None and row.finished_at is not None
    assert row.started_at.tzinfo is not None and row.finished_at >= row.started_at


def test_summary_counts_statuses_and_the_latest_good_day(writer: Engine) -> None:
    outcomes = {date(2024, 5, 1): "OK", date(2024, 5, 2): "DEGRADED", date(2024, 5, 3): "PENDING"}
    with writer.begin() as conn:
        for day, status in outcomes.items():
            ledger.start(
                conn,
                domain="china",
                run_date=day,
                stage="fetch",
                run_id=uuid.uuid4(),
                software_version="test",
            )
            ledger.finish(conn, domain="china", run_date=day, stage="fetch", status=status)
    with writer.connect() as conn:
        s = ledger.summary(conn, domain="china")
    assert s == {
        "fetch": {"counts": {"DEGRADED": 1, "OK": 1, "PENDING": 1}, "latest_ok": date(2024, 5, 2)}
    }


def test_finishing_needs_a_started_stage_and_a_final_status(writer: Engine) -> None:
    with pytest.raises(ValueError, match="call start"), writer.begin() as conn:
        ledger.finish(conn, domain="demo", run_date=date(2030, 1, 1), stage="x", status="OK")
    with pytest.raises(ValueError, match="not a final"), writer.begin() as conn:
        ledger.finish(conn, domain="demo", run_date=date(2030, 1, 1), stage="x", status="RUNNING")
