"""Database faults (issue 10, part 2): PostgreSQL stopped during a run, restarted between jobs, and
a connection killed in the middle of a transaction; ``smapds serve`` fails the run cleanly,
survives (``/healthz`` answers 503 while the database is away, 200 again once it is back) and
makes the day once the database answers again.

The database is a cluster of this module's own (``kill_helpers.private_cluster``), so stopping
it touches no other test; the service reaches it by URL, as it would an external server, and
runs on an accelerated clock (a simulated day every few seconds, a 2 s heartbeat limit), so a
day whose run failed is retried within seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import kill_helpers as kh
import pytest
import sqlalchemy as sa
from kill_helpers import Command, Site
from sqlalchemy.engine import Engine

from service.db import Database
from service.db.embedded import EmbeddedCluster

pytestmark = pytest.mark.slow  # about a minute; part of the default run

TRAIN = kh.days(date(2024, 4, 1), date(2024, 4, 3))


@dataclass(frozen=True)
class World:
    db: Database
    site: Site
    admin: Engine
    writer: Engine


@pytest.fixture(scope="module")
def cluster() -> Iterator[Database]:
    with kh.private_cluster(port=5439) as db:
        yield db


@pytest.fixture
def world(
    cluster: Database, demo_world: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[World]:
    """A database of its own on the module's cluster, with a site (model, stations)."""
    with kh.scratch_database(cluster, f"t_{request.node.name[5:40]}") as db:
        site = kh.make_site(db, demo_world, tmp_path / "data", train_days=TRAIN)
        admin, writer = db.engine("admin"), db.engine("writer")
        try:
            yield World(db, site, admin, writer)
        finally:
            admin.dispose()
            writer.dispose()


def serve(world: World, day: date, log: Path) -> Command:
    """``smapds serve`` from ``day`` on: that day is due at once (the simulated today is two
    days later), the next ones every 8 s."""
    env = world.site.env(
        SMAPDS_SERVICE_FIRST_DATE=str(day),
        SMAPDS_SIM_EPOCH_DATE=str(date.fromordinal(day.toordinal() + 2)),
        SMAPDS_SIM_EPOCH_UTC=datetime.now(UTC).isoformat(),
        SMAPDS_SIM_DAY_SECONDS="8",
        SMAPDS_STALE_RUNNING_SECONDS="2",
        SMAPDS_LATENCY_WINDOW_DAYS="30",
    )
    return Command(["serve"], env, log)


def check_day(world: World, day: date) -> None:
    assert kh.product_writes(world.admin).get(day) == 1
    assert kh.product_problems(world.writer, world.site, orphans_allowed=False) == []
    assert kh.ledger_problems(world.writer, world.site, [day]) == []
    assert kh.collocate_again(world.writer, world.site, [day]) == {day: 0}
    assert kh.validation_problems(world.writer, world.site) == []


def _wait_health(served: Command, port: int, code: int, timeout: float = 30) -> None:
    served.wait_for(
        f"/healthz {code}",
        lambda: kh.http_get(port, "/healthz")[0] == code,
        timeout=timeout,
        poll=0.2,
    )


def _cluster(world: World) -> EmbeddedCluster:
    assert world.db.cluster is not None
    return world.db.cluster


def test_postgres_stopped_during_the_product_stage_fails_the_run_and_the_day_is_made_when_back(
    world: World, tmp_path: Path
) -> None:
    day = date(2024, 4, 4)
    served = serve(world, day, tmp_path / "serve.log")
    try:
        port = kh.served_port(served)
        served.wait_event(0, "sinusoidal_tile_read", date=str(day), timeout=90)
        _cluster(world).down()  # fast shutdown: every session is ended
        _wait_health(served, port, 503)
        _, body = kh.http_get(port, "/healthz")
        assert "database" in json.loads(body)["reason"]
        # the run failed cleanly: the job's failure is logged, the service lives on
        served.wait_for(
            "the failed run logged",
            lambda: served.find(0, "job did not finish") or served.find(0, "product job failed"),
            timeout=60,
        )
        assert served.popen.poll() is None
        assert kh.http_get(port, "/readyz")[0] == 200  # the scheduler still runs
        _cluster(world).up()
        _wait_health(served, port, 200)
        served.wait_for(
            "the day made", lambda: kh.service_done(world.writer, [day]), timeout=90, poll=0.2
        )
        assert served.stop() == 0, served.tail()
        check_day(world, day)
    finally:
        if served.popen.poll() is None:
            served.kill()
        _cluster(world).up()


def test_postgres_restarted_between_jobs_is_reconnected_and_the_next_day_is_made(
    world: World, tmp_path: Path
) -> None:
    day = date(2024, 4, 5)
    served = serve(world, day, tmp_path / "serve.log")
    try:
        port = kh.served_port(served)
        served.wait_for(
            "the day made", lambda: kh.service_done(world.writer, [day]), timeout=90, poll=0.2
        )
        _cluster(world).down()
        _wait_health(served, port, 503)
        mark = served.mark()
        _cluster(world).up()
        _wait_health(served, port, 200)
        # the service's pooled connections died with the server: the next jobs run all the same
        served.wait_event(mark, "day due", timeout=60)
        served.wait_event(mark, "stage finished", stage="fetch", timeout=60)
        assert served.stop() == 0, served.tail()
        check_day(world, day)
    finally:
        if served.popen.poll() is None:
            served.kill()
        _cluster(world).up()


def test_a_connection_terminated_in_the_registration_transaction_fails_the_day_until_retried(
    world: World, tmp_path: Path
) -> None:
    day = date(2024, 4, 6)
    served = serve(world, day, tmp_path / "serve.log")
    bp = kh.lock_table(world.admin, "smapds.products", waiting="%smapds.products%")
    bp.hold()
    try:
        served.wait_for("the registration waits", bp.reached, timeout=90, poll=0.05)
        with world.admin.connect() as conn:
            killed = (
                conn.execute(
                    sa.text("""
                SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'
                   AND query ILIKE '%smapds.products%'
            """)
                )
                .scalars()
                .all()
            )
        assert killed == [True]
        bp.release()

        def failed() -> str | None:
            with world.writer.connect() as conn:
                return conn.execute(
                    sa.text(
                        "SELECT error FROM smapds.run_ledger WHERE run_date = :d "
                        "AND stage = 'product' AND status = 'FAILED'"
                    ),
                    {"d": day},
                ).scalar()

        error = served.wait_for("the product stage ledgered FAILED", failed, timeout=30)
        assert error.startswith("OperationalError")  # the connection the day was using
        # the half-written day left nothing under a final name and no row
        assert kh.product_problems(world.writer, world.site, orphans_allowed=False) == []
        assert day not in kh.product_writes(world.admin)
        served.wait_for(
            "the day retried and made", lambda: kh.service_done(world.writer, [day]), timeout=90
        )
        assert served.stop() == 0, served.tail()
        check_day(world, day)
    finally:
        bp.release()
        if served.popen.poll() is None:
            served.kill()
