"""End to end: ``smapds serve`` as a real process on a 14-day synthetic world, with the clock
accelerated to one simulated day per few seconds. Over ten simulated days, with a stop of three
days and a restart in the middle, every day is produced exactly once and in order, the catch-up
after the restart comes from the run ledger, the drop folder's stations are ingested, and
``/metrics`` shows it all (including the days produced before the restart)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine

from etl.archive import Archive
from service.clock import SimulatedClock
from service.db import Database
from service.fetch import fetch_day
from service.settings import Settings
from service.sources import build_sources

pytestmark = pytest.mark.slow  # about a minute and a half; part of the default run

DAY_SECONDS = 4.0
EPOCH_DATE = date(2024, 4, 6)  # the simulated today when the service first starts
FIRST, LAST = date(2024, 4, 4), date(2024, 4, 14)  # the service's days (world: 04-01..04-14)
DAYS = (LAST - FIRST).days + 1
STOP_AFTER = date(2024, 4, 8)  # the first run is stopped once this day is produced


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from etl.grid import get_domain
    from etl.synthetic import generate

    out = tmp_path_factory.mktemp("world14")
    generate(out, domain=get_domain("demo"), start=date(2024, 4, 1), days=14, seed=7)
    return out


@pytest.fixture(scope="module")
def trained(world: Path, writer: Engine, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The first five days fetched and a small forest frozen and activated on them."""
    from service.stacks import stack_factory
    from service.train import train

    data = tmp_path_factory.mktemp("data")
    settings = Settings(data_dir=data, synthetic_dir=world, domain="demo")
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


class Served:
    """One ``smapds serve`` process and its JSON log."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._err = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._err,
        )
        self.port = int(self._wait_for_event("http endpoint listening")["port"])

    def events(self) -> list[dict[str, object]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a warning printed by a library, not a log record
        return out

    def _wait_for_event(self, msg: str, timeout: float = 60) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events() if e.get("msg") == msg]
            if found:
                return found[0]
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            time.sleep(0.2)
        raise AssertionError(f"no {msg!r} in the log:\n{self.log.read_text()[-3000:]}")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)  # to the service alone, as systemd's KillMode=mixed
        try:
            return self.proc.wait(timeout=90)
        finally:
            self._err.close()


def _wait(what: str, done: Callable[[], bool], timeout: float, served: Served) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert served.proc.poll() is None, served.log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"{what}: timeout\n{served.log.read_text()[-3000:]}"
        time.sleep(0.5)


def _produced(engine: Engine) -> list[date]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.text("SELECT product_date FROM smapds.products ORDER BY product_date")
            ).scalars()
        )


def _covers(engine: Engine, first: date, last: date) -> Callable[[], bool]:
    want = {first + timedelta(days=k) for k in range((last - first).days + 1)}
    return lambda: want <= set(_produced(engine))


def _done_days(metrics: str) -> float:
    return _metric(metrics, "smapds_product_dates", state="ok") + _metric(
        metrics, "smapds_product_dates", state="degraded"
    )


def _metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"{name}{labels} not in /metrics")


@pytest.fixture
def environment(
    trained: Settings, database: Database, world: Path, tmp_path: Path
) -> Iterator[dict[str, str]]:
    drop = tmp_path / "incoming"
    drop.mkdir()
    for z in (world / "ismn").glob("*.zip"):
        shutil.copy(z, drop / z.name)
    epoch = datetime.now(UTC)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMAPDS_")}
    env.update(
        {
            "SMAPDS_DATABASE_URL": database.url("writer"),
            "SMAPDS_DATA_DIR": str(trained.data_dir),
            "SMAPDS_SYNTHETIC_DIR": str(world),
            "SMAPDS_DOMAIN": "demo",
            "SMAPDS_SERVICE_FIRST_DATE": FIRST.isoformat(),
            "SMAPDS_SIM_EPOCH_DATE": EPOCH_DATE.isoformat(),
            "SMAPDS_SIM_EPOCH_UTC": epoch.isoformat(),
            "SMAPDS_SIM_DAY_SECONDS": str(DAY_SECONDS),
            "SMAPDS_HTTP_PORT": "0",
            "SMAPDS_LOG_FORMAT": "json",
            "SMAPDS_INGEST_DIR": str(drop),
        }
    )
    yield env


def test_serve_produces_every_day_once_in_order_across_a_stop_and_a_restart(
    environment: dict[str, str], writer: Engine, tmp_path: Path
) -> None:
    clock = SimulatedClock(
        EPOCH_DATE, datetime.fromisoformat(environment["SMAPDS_SIM_EPOCH_UTC"]), DAY_SECONDS
    )

    told: list[str] = []  # systemd's side of sd_notify, read as systemd would
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(0.5)
    listening = threading.Event()
    listening.set()

    def listen() -> None:
        while listening.is_set():
            with contextlib.suppress(TimeoutError):
                told.append(notify.recv(4096).decode())

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    systemd = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "3000000"}
    first = Served({**environment, **systemd}, tmp_path / "first.log")
    try:
        _wait("first run", _covers(writer, FIRST, STOP_AFTER), 120, first)
        health = first.get("/healthz")
    finally:
        code = first.stop()
        listening.clear()
        listener.join()
        notify.close()
    assert told[0].startswith("READY=1") and "WATCHDOG=1" in told
    assert told[-1].startswith("STOPPING=1")
    stopped_on = clock.today()
    made_before = _produced(writer)
    assert code == 0, first.log.read_text()[-3000:]
    assert made_before[-1] >= STOP_AFTER
    assert health[0] == 200 and json.loads(health[1])["status"] == "ok"

    time.sleep(clock.seconds_until_tomorrow() + 2 * DAY_SECONDS + 0.5)  # three simulated days
    second = Served(environment, tmp_path / "second.log")
    restarted_on = clock.today()
    try:
        _wait("second run", _covers(writer, FIRST, LAST), 150, second)
        # the gauges are rebuilt just after a day's row commits: wait for that refresh
        _wait("metrics refresh", lambda: _done_days(second.get("/metrics")[1]) >= DAYS, 30, second)
        status, metrics = second.get("/metrics")
        ready = second.get("/readyz")
    finally:
        code = second.stop()
    assert code == 0, second.log.read_text()[-3000:]
    assert (restarted_on - stopped_on).days >= 3

    # every day exactly once: one product row, one product run, in date order
    with writer.connect() as conn:
        rows = conn.execute(
            sa.text("""
            SELECT p.product_date, p.created_at, l.attempts
              FROM smapds.products p
              JOIN smapds.run_ledger l
                ON l.domain = p.domain AND l.run_date = p.product_date AND l.stage = 'product'
             WHERE p.product_date BETWEEN :a AND :b ORDER BY p.product_date
        """),
            {"a": FIRST, "b": LAST},
        ).all()
    assert [r.product_date for r in rows] == [
        FIRST + timedelta(days=k) for k in range((LAST - FIRST).days + 1)
    ]
    assert all(r.attempts == 1 for r in rows), [(r.product_date, r.attempts) for r in rows]
    assert [r.created_at for r in rows] == sorted(r.created_at for r in rows)

    # the second run caught up from the ledger: from the first day the first run had not made
    due = [e for e in second.events() if e.get("msg") == "day due"]
    assert date.fromisoformat(str(due[0]["date"])) == made_before[-1] + timedelta(days=1)
    assert due[0]["reason"] in ("new", "interrupted")
    caught_up = [date.fromisoformat(str(e["date"])) for e in due]
    caught_up = [d for d in caught_up if d <= LAST]
    assert caught_up == sorted(set(caught_up))  # oldest first, each once

    # and the metrics say so, including the days made before the restart
    assert status == 200 and ready[0] == 200
    assert _done_days(metrics) >= DAYS
    latest = _metric(metrics, "smapds_product_latest_date_timestamp_seconds")
    assert latest >= datetime(LAST.year, LAST.month, LAST.day, tzinfo=UTC).timestamp()
    assert _metric(metrics, "smapds_database_up") == 1
    assert _metric(metrics, "smapds_scheduler_running") == 1
    assert _metric(metrics, "smapds_stage_last_success_timestamp_seconds", stage="product") > 0
    assert _metric(metrics, "smapds_observations_ingested_total") > 0
    assert _metric(metrics, "smapds_stage_duration_seconds_count", stage="product") >= 1
