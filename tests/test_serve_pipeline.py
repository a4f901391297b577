"""The service's jobs: which days are due (from the products and the run ledger), crash recovery by
heartbeat, and the day job in its worker process on the synthetic world: hooks that fail or hang
never cost the product, a stage that overruns its timeout is stopped and ledgered, a day whose SMAP
granule is still pending waits, a stop request ends the job at a stage boundary and makes the day
due again, and the ingest job loads a drop folder once."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.archive import Archive
from service import pipeline
from service.fetch import fetch_day
from service.pipeline import DayRecord, day_state, reason_to_run
from service.settings import Settings
from service.sources import build_sources

D = date(2024, 4, 10)


# -- hooks: module-level so that the worker process can unpickle them by name ----------------------


def product_hook(engine: Engine, settings: Settings, day: date) -> None:
    """Runs after the product: the registered file must already be there."""
    with engine.connect() as conn:
        path = conn.execute(
            sa.text("SELECT path FROM smapds.products WHERE product_date = :d"), {"d": day}
        ).scalar_one()
    assert (settings.data_dir / path).is_file()


def failing_hook(engine: Engine, settings: Settings, day: date) -> None:
    raise RuntimeError("the hook broke")


def hanging_hook(engine: Engine, settings: Settings, day: date) -> None:
    time.sleep(3600)


# -- which days are due: pure rules ---------------------------------------------------------------


def rec(**kw: object) -> DayRecord:
    base: dict[str, object] = {
        "day": D,
        "produced": None,
        "as_of": None,
        "running": False,
        "stale": True,
        "interrupted": False,
    }
    return DayRecord(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("record", "today", "why"),
    [
        (rec(), D + timedelta(days=2), "new"),
        (rec(produced="OK", as_of=D), D + timedelta(days=3), None),
        (rec(as_of=D + timedelta(days=2)), D + timedelta(days=2), None),  # tried today already
        (rec(as_of=D + timedelta(days=2)), D + timedelta(days=3), "recheck"),  # in the window
        (rec(as_of=D + timedelta(days=7)), D + timedelta(days=30), "recheck"),  # the last try
        (rec(as_of=D + timedelta(days=8)), D + timedelta(days=30), None),  # given up: a gap
        (rec(as_of=D + timedelta(days=8), interrupted=True), D + timedelta(days=30), "interrupted"),
        (rec(as_of=D, running=True, stale=False), D + timedelta(days=3), None),  # running elsewhere
        (rec(as_of=D, running=True, stale=True), D + timedelta(days=3), "crashed"),
    ],
)
def test_a_day_is_due_when_new_rechecked_interrupted_or_crashed(
    record: DayRecord, today: date, why: str | None
) -> None:
    assert reason_to_run(record, today=today, window_days=7) == why


def test_a_day_without_product_is_pending_until_its_last_try_then_a_gap() -> None:
    today = D + timedelta(days=30)
    assert day_state(rec(produced="DEGRADED"), today=today, window_days=7) == "degraded"
    assert day_state(rec(as_of=D + timedelta(days=3)), today=today, window_days=7) == "pending"
    assert day_state(rec(as_of=D + timedelta(days=8)), today=today, window_days=7) == "gap"


def test_the_due_range_ends_at_the_product_lag() -> None:
    settings = Settings(product_lag_days=2, latency_window_days=7)
    assert pipeline.due_range(settings, D) == (D - timedelta(days=9), D - timedelta(days=2))
    first = Settings(service_first_date=D - timedelta(days=30))
    assert pipeline.due_range(first, D) == (D - timedelta(days=30), D - timedelta(days=2))
    assert pipeline.due_range(Settings(service_first_date=D), D) is None


# -- which days are due: against the database ----------------------------------------------------


def _ledger(
    conn: Connection,
    day: date,
    stage: str,
    status: str,
    *,
    as_of: date | None = None,
    age_seconds: float = 0,
    error: str | None = None,
) -> None:
    conn.execute(
        sa.text("""
        INSERT INTO smapds.run_ledger
            (domain, run_date, stage, status, attempts, started_at, updated_at, error, details)
        VALUES ('demo', :d, :s, :st, 1, now() - make_interval(secs => :age),
                now() - make_interval(secs => :age), :e, CAST(:det AS jsonb))
    """),
        {
            "d": day,
            "s": stage,
            "st": status,
            "age": age_seconds,
            "e": error,
            "det": "{}" if as_of is None else f'{{"as_of": "{as_of}"}}',
        },
    )


def test_a_run_left_running_by_a_dead_process_is_recovered_and_run_again(writer: Engine) -> None:
    first = date(2023, 1, 1)
    settings = Settings(
        domain="demo", service_first_date=first, stale_running_seconds=60, product_lag_days=2
    )
    today = first + timedelta(days=7)  # due: Jan 1..6
    day = [first + timedelta(days=k) for k in range(6)]
    with writer.begin() as conn:
        _ledger(conn, day[0], "fetch", "OK", as_of=today)
        _ledger(conn, day[0], "product", "RUNNING", age_seconds=3600)  # heartbeat stopped long ago
        _ledger(conn, day[1], "fetch", "OK", as_of=today)
        _ledger(conn, day[1], "product", "RUNNING")  # alive (the CLI, say)
        _ledger(conn, day[2], "fetch", "PENDING", as_of=today)  # waiting for SMAP, tried today
        # interrupted once, then tried again today (still waiting): the old mark does not count
        _ledger(conn, day[4], "product", "FAILED", age_seconds=100, error="interrupted: stop")
        _ledger(conn, day[4], "fetch", "PENDING", as_of=today)
    due = pipeline.due_days(writer, settings, today)
    assert due == [(day[0], "crashed"), (day[3], "new"), (day[5], "new")]

    recovered = pipeline.recover_stale(writer, settings)
    assert recovered == [(first, "product")]
    with writer.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT status, error FROM smapds.run_ledger "
                "WHERE run_date = :d AND stage = 'product'"
            ),
            {"d": first},
        ).one()
        live = pipeline.heartbeat(
            conn, domain="demo", run_date=first + timedelta(days=1), stage="product"
        )
    assert row.status == "FAILED" and row.error.startswith("interrupted:")
    assert live == 1
    assert pipeline.due_days(writer, settings, today)[0] == (first, "interrupted")
    with writer.begin() as conn:  # leave nothing RUNNING for the tests below
        conn.execute(sa.text("DELETE FROM smapds.run_ledger WHERE run_date < '2024-01-01'"))


# -- the day job on the synthetic world -----------------------------------------------------------


@pytest.fixture(scope="module")
def served(demo_world: Path, writer: Engine, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Inputs of 2024-04-01..05 fetched and a small forest trained and activated on them."""
    from service.stacks import stack_factory
    from service.train import train

    data = tmp_path_factory.mktemp("data")
    settings = Settings(
        data_dir=data,
        synthetic_dir=demo_world,
        domain="demo",
        stage_timeout_seconds={"hanging_hook": 3},
        log_format="text",
    )
    archive = Archive(root=data / "archive", quarantine=data / "quarantine")
    days = [date(2024, 4, 1) + timedelta(days=k) for k in range(5)]
    for d in days:
        fetch_day(writer, build_sources(settings), archive, d, today=days[-1], window_days=7)
    train(
        writer,
        stack_factory(settings, writer),
        data_dir=data,
        start=days[0],
        end=days[-1],
        models=["rf"],
        params={"rf": {"n_estimators": 20, "max_depth": 8}},
        freeze="rf",
        activate=True,
        seed=3,
        n_jobs=2,
    )
    return settings


def _stages(engine: Engine, day: date) -> dict[str, tuple[str, str | None, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT stage, status, error, attempts FROM smapds.run_ledger WHERE run_date = :d"
            ),
            {"d": day},
        )
        return {r.stage: (r.status, r.error, r.attempts) for r in rows}


def test_failing_and_hanging_hooks_are_ledgered_and_the_product_stays(
    served: Settings, writer: Engine
) -> None:
    day, today = date(2024, 4, 6), date(2024, 4, 8)
    timings: list[pipeline.StageTiming] = []
    with pipeline.supervisor(writer, served, on_stage=timings.append) as sup:
        started = time.monotonic()
        outcome = pipeline.run_day(
            sup, day, today=today, hooks=[product_hook, failing_hook, hanging_hook]
        )
        took = time.monotonic() - started
        # the worker that hung was replaced: the next job runs in a fresh one
        pending = pipeline.run_day(sup, date(2024, 4, 9), today=date(2024, 4, 10))
    assert outcome.status in ("OK", "DEGRADED")
    assert set(outcome.hooks_failed) == {"failing_hook", "hanging_hook"}
    assert took < 120  # the hung hook was stopped after its 3 s, not waited for
    stages = _stages(writer, day)
    # DEGRADED: the 8-day world holds no MOD16A2 composite starting on 04-06 (it would end after it)
    assert stages["fetch"][0] == "DEGRADED" and stages["product"][0] in ("OK", "DEGRADED")
    assert stages["product_hook"][0] == "OK"
    assert stages["failing_hook"][:2] == ("FAILED", "RuntimeError: the hook broke")
    assert stages["hanging_hook"][0] == "FAILED"
    assert stages["hanging_hook"][1] == "timeout: stage hanging_hook ran longer than 3 s"
    with writer.connect() as conn:
        n = conn.execute(
            sa.text("SELECT count(*) FROM smapds.products WHERE product_date = :d"), {"d": day}
        ).scalar()
    assert n == 1
    timed = {t.stage: t for t in timings if t.run_date == day}
    assert timed["hanging_hook"].status == "FAILED" and 3 <= timed["hanging_hook"].seconds < 30
    assert timed["product"].seconds > 0

    # a day whose 36 km granule has not arrived (inside the latency window) waits
    assert pending.status == "PENDING" and pending.product_path is None
    waiting = _stages(writer, date(2024, 4, 9))
    assert waiting == {"fetch": ("PENDING", None, 1)}
    settings = served.model_copy(update={"service_first_date": date(2024, 4, 9)})
    assert pipeline.due_days(writer, settings, date(2024, 4, 11)) == [(date(2024, 4, 9), "recheck")]


def test_a_stop_request_ends_the_job_at_a_stage_boundary_and_the_day_runs_again(
    served: Settings, writer: Engine
) -> None:
    day, today = date(2024, 4, 7), date(2024, 4, 9)
    stop = threading.Event()
    stop.set()
    with pipeline.supervisor(writer, served, stop=stop) as sup:
        outcome = pipeline.run_day(sup, day, today=today)
    assert outcome.status == "FAILED" and outcome.error is not None
    assert outcome.error.startswith("interrupted:")
    stages = _stages(writer, day)
    assert stages["fetch"][0] in ("OK", "DEGRADED")  # the stage that was running finished
    assert stages["product"][0] == "FAILED" and stages["product"][1].startswith("interrupted")
    assert stages["product"][2] == 0  # never started: no attempt counted
    settings = served.model_copy(update={"service_first_date": day})
    assert pipeline.due_days(writer, settings, today)[0] == (day, "interrupted")


def test_the_ingest_job_loads_the_drop_folder_once(
    served: Settings, writer: Engine, demo_world: Path, tmp_path: Path
) -> None:
    drop = tmp_path / "incoming"
    drop.mkdir()
    for z in (demo_world / "ismn").glob("*.zip"):
        shutil.copy(z, drop / z.name)
    settings = served.model_copy(update={"ingest_dir": drop})
    today = date(2024, 4, 9)
    with pipeline.supervisor(writer, settings) as sup:
        first = pipeline.run_ingest(sup, today=today)
        again = pipeline.run_ingest(sup, today=today)
    assert first.status in ("OK", "DEGRADED") and first.rows_loaded > 0
    assert again.rows_loaded == 0 and set(again.files) == {"SKIPPED"}
    assert _stages(writer, today)["ingest"][2] == 2  # two runs, one ledger row


def test_the_drop_folder_pairs_csv_tables_and_refuses_links_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outside = tmp_path / "outside_observations.csv"
    outside.write_text("network,station\n")
    drop = tmp_path / "drop"
    (drop / "net").mkdir(parents=True)
    (drop / "net" / "a_stations.csv").write_text("x\n")
    (drop / "net" / "a_observations.csv").write_text("x\n")
    (drop / "b_stations.csv").write_text("x\n")
    (drop / "b_observations.csv").symlink_to(outside)
    plan = pipeline.plan_drop_folder(drop)
    assert plan.csv_pairs == (
        (drop / "b_stations.csv", None),
        (drop / "net" / "a_stations.csv", drop / "net" / "a_observations.csv"),
    )
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert warning.msg == "symbolic link in the drop folder refused"
    assert warning.path == str(drop / "b_observations.csv")  # type: ignore[attr-defined]
