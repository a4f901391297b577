"""Kills (issue 10, part 1): SIGKILL the producing process at each stage boundary and inside each
long stage, then run again, and nothing is lost, doubled or left half-made.

The process under test is a real ``smapds`` command (``fetch``, ``ingest ismn``, ``backfill``,
``serve``) on the 8-day synthetic world. It is killed when its log, its files or the database
show that it reached the point: a log line (a reader's ``sinusoidal_tile_read`` is the regrid of
the stack build, ``stage finished`` a stage boundary), a temporary name in the products folder
(the COG or quicklook being written), a download in the archive's temporary folder, or a
*breakpoint*: a lock held by the cluster's superuser on the table the next statement needs (the
products row, the ledger row, a COPY's partition, the collocations, the validation refresh's
advisory lock), so the process waits at that exact statement until it is killed. Some points are
a seeded random delay after a log line. No fault hook is compiled into the code under test.

Each kill is followed by a run again (the next command, or the service's own retry or restart),
after which: every ``smapds.products`` row points at an existing file with the recorded sha256,
no partial file sits under a final name (temporary names are never products), a product is
registered once per day (a test trigger counts the committed writes), no ledger row stays
``RUNNING``, observations equal a clean load (count and checksum over natural keys), collocating
again changes nothing and the validation statistics equal a full recompute.

Runtime: the model is histogram gradient boosting (no numba compilation in each fresh process,
see ``kill_helpers.make_site``); each command or service start still imports the stack (a few
seconds), which sets the cost of a kill point.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any

import kill_helpers as kh
import pytest
import sqlalchemy as sa
from kill_helpers import Breakpoint, Command, Context, KillPoint, Site
from sqlalchemy.engine import Engine

from service.db import Database

SEED = 20240401
TRAIN = kh.days(date(2024, 4, 1), date(2024, 4, 3))
ALL = kh.days(date(2024, 4, 1), date(2024, 4, 8))
KILLS: list[dict[str, object]] = []  # what each kill hit, printed at the end of each test


# -- fixtures --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A clean, uninterrupted load and fetch of the same inputs (in this process)."""

    world_only: dict[str, object]  # observations digest after the world's ISMN download
    with_csv: dict[str, object]  # ... and the CSV pair of the service test
    csv_files: tuple[Path, ...]
    archive: dict[str, str]  # relative path -> sha256 of every archived granule, 04-01..04-08
    granules: set[tuple[str, str, str, str]]  # (source, day, granule id, status)


@pytest.fixture(scope="module")
def reference(
    cluster_db: Database, demo_world: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Reference]:
    from service.ingest import ingest_csv

    data = tmp_path_factory.mktemp("reference")
    csv_files = tuple(kh.write_csv_pair(data / "csv"))
    with kh.scratch_database(cluster_db, "t_test_kills_ref") as db:
        engine = db.engine("writer")
        try:
            kh.load_stations(engine, demo_world)
            world_only = kh.observations_digest(engine)
            ingest_csv(engine, stations=csv_files[0], observations=csv_files[1], domain="demo")
            with_csv = kh.observations_digest(engine)
            site = Site(db, data / "data", demo_world)
            kh.fetch(engine, site, ALL, today=date.today())  # as the command does
            granules = _granules(engine)
        finally:
            engine.dispose()
    yield Reference(world_only, with_csv, csv_files, _archive(site), granules)


@pytest.fixture
def new_site(
    cluster_db: Database, demo_world: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Site]]:
    """Makes a site on a database of its own (dropped after the test)."""
    with contextlib.ExitStack() as stack:

        def make(**kw: Any) -> Site:
            name = f"t_kills_{request.node.name[5:30].lower()}"
            db = stack.enter_context(kh.scratch_database(cluster_db, name))
            return kh.make_site(db, demo_world, tmp_path / "data", **kw)

        yield make


@pytest.fixture
def engines() -> Iterator[Callable[[Site], tuple[Engine, Engine]]]:
    """The superuser's and the service's engines of a site (disposed after the test)."""
    made: list[Engine] = []

    def make(site: Site) -> tuple[Engine, Engine]:
        made.extend((site.db.engine("admin"), site.db.engine("writer")))
        return made[-2], made[-1]

    yield make
    for e in made:
        e.dispose()


def _archive(site: Site) -> dict[str, str]:
    root = site.data_dir / "archive"
    return {
        str(p.relative_to(root)): kh.sha256_of(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".tmp" not in p.relative_to(root).parts
    }


def _granules(engine: Engine) -> set[tuple[str, str, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT source, granule_date, granule_id, status, sha256 FROM smapds.granules")
        ).all()
    return {(r.source, str(r.granule_date), r.granule_id, f"{r.status}:{r.sha256}") for r in rows}


# -- running a chain of kills ---------------------------------------------------------------------


def _record(point: KillPoint, cmd: Command) -> None:
    """Note a kill: the point, the command, the day it was making (from its log), when."""
    KILLS.append(
        {
            "point": point.name,
            "command": " ".join(cmd.args[:2]),
            "day": _last_day(cmd) or "-",
            "after_s": round(time.monotonic() - cmd.started, 2),
        }
    )


def _print_kills(title: str) -> None:
    print(f"\n{title}: {len(KILLS)} kills")
    for k in KILLS:
        print(f"  KILL {k['command']:<12} {k['day']:<10} {k['after_s']:>6} s  {k['point']}")
    KILLS.clear()


def kill_commands(
    site: Site,
    admin: Engine,
    args: Sequence[str],
    points: Sequence[KillPoint],
    tmp: Path,
    *,
    env: dict[str, str] | None = None,
    after_kill: Callable[[KillPoint], None] = lambda p: None,
    poll: float = 0.005,
) -> None:
    """Run ``smapds ARGS`` once per kill point and SIGKILL it there; ``after_kill`` checks."""
    rng = random.Random(SEED)
    for k, point in enumerate(points):
        cmd = Command(args, env or site.env(), tmp / f"{args[0]}-{k}.log")
        ctx = Context(site, admin, cmd, 0, rng=rng)
        bp: Breakpoint | None = None
        try:
            bp = point.arm(ctx)
            cmd.wait_for(str(point), partial(point.reached, ctx), timeout=120, poll=poll)
            cmd.kill()
            _record(point, cmd)
        finally:
            if bp is not None:
                bp.release()
            if cmd.popen.poll() is None:
                cmd.kill()
        after_kill(point)


def _last_day(cmd: Command) -> str | None:
    for e in reversed(cmd.events()):
        for key in ("date", "day"):
            if e.get(key):
                return str(e[key])
    return None


def invariants(site: Site, admin: Engine, writer: Engine) -> None:
    """What must hold right after any kill (before the rerun)."""
    assert kh.product_problems(writer, site, orphans_allowed=True) == []
    assert all(n == 1 for n in kh.product_writes(admin).values()), kh.product_writes(admin)


def final_checks(
    site: Site, admin: Engine, writer: Engine, made: Sequence[date], *, hooks: bool
) -> None:
    """What must hold once the interrupted work was run again to its end."""
    assert kh.product_problems(writer, site, orphans_allowed=False) == []
    assert kh.product_writes(admin) == dict.fromkeys(made, 1), "a day registered more than once"
    assert kh.ledger_problems(writer, site, made) == []
    if hooks:
        assert kh.hook_problems(writer, site, made) == []
    assert kh.collocate_again(writer, site, made) == dict.fromkeys(made, 0)
    assert kh.validation_problems(writer, site) == []
    left = kh.temporary_files(site)
    assert [p.name for p in left if site.products_dir in p.parents] == []  # swept once made
    print(f"temporary files left in the archive by the kills: {[p.name for p in left]}")


# -- kill points ----------------------------------------------------------------------------------


def point(name: str, reached: Callable[[Context], bool]) -> KillPoint:
    return KillPoint(name, reached)


def locked(name: str, make: Callable[[Context], Breakpoint]) -> KillPoint:
    return kh.on_breakpoint(name, make)


def _ledger_row_lock(stage: str = "product") -> Callable[[Context], Breakpoint]:
    """Lock the ledger row of the day whose ``stage`` is RUNNING (waits for it first)."""

    def make(ctx: Context) -> Breakpoint:
        with ctx.admin.connect() as conn:
            armed = conn.execute(sa.text("SELECT now()")).scalar_one()

        def running() -> date | None:
            with ctx.admin.connect() as conn:
                return conn.execute(
                    sa.text(
                        "SELECT run_date FROM smapds.run_ledger WHERE stage = :s "
                        "AND status = 'RUNNING' AND started_at >= :armed ORDER BY run_date LIMIT 1"
                    ),
                    {"s": stage, "armed": armed},
                ).scalar()

        day = ctx.cmd.wait_for(f"{stage} RUNNING", running, timeout=120, poll=0.02)
        return kh.lock_ledger_row(ctx.admin, day, stage)

    return make


def _after_loaded(
    files: int, make: Callable[[Context], Breakpoint]
) -> Callable[[Context], Breakpoint]:
    """Arm once ``files`` files have been loaded (their transactions committed)."""

    def arm(ctx: Context) -> Breakpoint:
        ctx.cmd.wait_for(
            f"{files} files loaded",
            lambda: sum(e.get("msg") == "ingested file" for e in ctx.cmd.since(ctx.mark)) >= files,
        )
        return make(ctx)

    return arm


# -- the tests ------------------------------------------------------------------------------------


def test_fetch_killed_while_downloading_leaves_a_whole_archive_and_inventory_after_a_rerun(
    new_site: Callable[..., Site],
    engines: Callable[[Site], tuple[Engine, Engine]],
    reference: Reference,
    tmp_path: Path,
) -> None:
    site = new_site(stations=False)
    admin, writer = engines(site)
    args = ["fetch", "--date", "2024-04-01", "--until", "2024-04-08"]
    points = [
        point(
            "fetch: a granule is being downloaded (archive/.tmp)", lambda c: kh.downloading(site)
        ),
        locked(
            "fetch: granule renamed into the archive, its inventory row waits",
            lambda c: kh.lock_table(c.admin, "smapds.granules", waiting="%granules%"),
        ),
        point(
            "fetch: seeded random delay after the first archived granule",
            kh.after_event_and_delay("archived granule", 0.0, 0.3),
        ),
    ]

    def after_kill(p: KillPoint) -> None:
        archived = _archive(site)
        wrong = {k for k, v in archived.items() if reference.archive.get(k) != v}
        assert not wrong, f"archived files that differ from the provider's: {wrong}"

    try:
        kill_commands(site, admin, args, points, tmp_path, after_kill=after_kill, poll=0.001)
        code, log = kh.smapds(*args, env=site.env(), log=tmp_path / "fetch-rerun.log")
        assert code == 0, log
        assert _archive(site) == reference.archive  # nothing lost, nothing corrupt
        assert _granules(writer) == reference.granules  # the inventory says the same
        left = [str(p.relative_to(site.data_dir)) for p in kh.temporary_files(site)]
        print(f"partial downloads left in the archive's temporary folder (never used): {left}")
    finally:
        _print_kills("fetch")


def test_ingest_killed_during_copy_loses_and_duplicates_no_observation(
    new_site: Callable[..., Site],
    engines: Callable[[Site], tuple[Engine, Engine]],
    reference: Reference,
    demo_world: Path,
    tmp_path: Path,
) -> None:
    site = new_site(stations=False)
    admin, writer = engines(site)
    args = ["ingest", "ismn", *map(str, sorted((demo_world / "ismn").glob("*.zip")))]
    points = [
        locked("ingest: COPY of the first file waits", lambda c: kh.lock_observations(c.admin)),
        locked(  # files are written 8 to a transaction by 2 workers: groups are still queued
            "ingest: COPY after the first group of files was committed",
            _after_loaded(1, lambda c: kh.lock_observations(c.admin)),
        ),
        point(
            "ingest: seeded random delay after the first file",
            kh.after_event_and_delay("ingested file", 0.0, 1.0),
        ),
        locked(
            "ingest: every file loaded, the stations' grid cells wait",
            lambda c: kh.lock_table(c.admin, "smapds.station_cells", waiting="%station_cells%"),
        ),
    ]

    def after_kill(p: KillPoint) -> None:
        with writer.connect() as conn:  # partial loads are whole files, never part of one
            bad = conn.execute(
                sa.text("""
                SELECT f.path, f.member, f.rows_loaded, count(o.*) AS n
                  FROM smapds.ingest_files f LEFT JOIN smapds.observations o USING (file_id)
                 WHERE f.format IN ('ismn_header_values', 'ismn_ceop', 'csv_observations')
                 GROUP BY 1, 2, 3 HAVING count(o.*) <> f.rows_loaded
            """)
            ).all()
        assert bad == []

    try:
        kill_commands(site, admin, args, points, tmp_path, after_kill=after_kill)
        code, log = kh.smapds(*args, env=site.env(), log=tmp_path / "ingest-rerun.log")
        assert code in (0, 1), log  # 1: the world's download has rows ISMN flags as bad
        assert kh.observations_digest(writer) == reference.world_only
    finally:
        _print_kills("ingest")


PRODUCT_POINTS = [
    point("regrid: the stack's inputs are being read", kh.after_event("sinusoidal_tile_read")),
    point(
        "predict: seeded random delay after the last input was read",
        kh.after_event_and_delay("smap_l3_read", 0.05, 0.6),
    ),
    point(
        "COG write: .tmp- GeoTIFF in the products folder", lambda c: kh.tmp_product(c.site, ".tif")
    ),
    point(
        "quicklook write: .tmp- PNG (COG already renamed)", lambda c: kh.tmp_product(c.site, ".png")
    ),
    locked(
        "registration: the products row waits (files under final names, no row)",
        lambda c: kh.lock_table(c.admin, "smapds.products", waiting="%smapds.products%"),
    ),
    locked("registration: the ledger outcome waits (same transaction)", _ledger_row_lock()),
]


@pytest.mark.slow
def test_backfill_killed_at_each_point_of_a_day_makes_each_day_once_after_a_rerun(
    new_site: Callable[..., Site],
    engines: Callable[[Site], tuple[Engine, Engine]],
    tmp_path: Path,
) -> None:
    site = new_site(fetch_days=ALL, train_days=TRAIN)
    admin, writer = engines(site)
    made = kh.days(date(2024, 4, 4), date(2024, 4, 6))
    args = ["backfill", "--start", str(made[0]), "--end", str(made[-1])]
    try:
        kill_commands(
            site,
            admin,
            args,
            [PRODUCT_POINTS[k] for k in (0, 1, 2, 4)],  # the others: the service's chain
            tmp_path,
            after_kill=lambda p: invariants(site, admin, writer),
        )
        code, log = kh.smapds(*args, env=site.env(), log=tmp_path / "backfill-rerun.log")
        assert code == 0, log
        final_checks(site, admin, writer, made, hooks=False)
    finally:
        _print_kills("backfill")


# -- the service ----------------------------------------------------------------------------------

SERVICE_DAYS = kh.days(date(2024, 4, 4), date(2024, 4, 8))


def service_env(site: Site, *, today: date, day_seconds: float, **extra: str) -> dict[str, str]:
    """``smapds serve`` on an accelerated clock from ``today``; crashed runs are recovered at
    once (a 1 s heartbeat limit), and a day is retried while its inputs are 30 days old."""
    return site.env(
        SMAPDS_SERVICE_FIRST_DATE=str(SERVICE_DAYS[0]),
        SMAPDS_SIM_EPOCH_DATE=str(today),
        SMAPDS_SIM_EPOCH_UTC=datetime.now(UTC).isoformat(),
        SMAPDS_SIM_DAY_SECONDS=str(day_seconds),
        SMAPDS_STALE_RUNNING_SECONDS="1",
        SMAPDS_LATENCY_WINDOW_DAYS="30",
        **extra,
    )


SERVICE_POINTS = [
    point("between days: the day job just handed to the worker", kh.after_event("day due")),
    point("seeded random delay after 'day due' (a)", kh.after_event_and_delay("day due", 0.2, 3)),
    locked(
        "fetch: granule archived, its inventory row waits",
        lambda c: kh.lock_table(c.admin, "smapds.granules", waiting="%granules%"),
    ),
    point("boundary fetch -> product", kh.after_event("stage finished", stage="fetch")),
    *PRODUCT_POINTS,
    point("seeded random delay after 'day due' (b)", kh.after_event_and_delay("day due", 0.2, 3)),
    point("boundary product -> hooks", kh.after_event("stage finished", stage="product")),
    locked(
        "collocation: the upsert waits",
        lambda c: kh.lock_table(c.admin, "smapds.collocations", waiting="%collocations%"),
    ),
    locked("validation refresh: waits on its advisory lock", lambda c: kh.lock_validation(c.admin)),
]


@pytest.mark.slow
def test_the_service_whose_worker_is_killed_at_every_stage_makes_each_day_once(
    new_site: Callable[..., Site],
    engines: Callable[[Site], tuple[Engine, Engine]],
    reference: Reference,
    tmp_path: Path,
) -> None:
    """The worker process is SIGKILLed at each point (the service lives on, ledgers the stage
    FAILED and retries the day on a later simulated day); at the end the ingest job's worker is
    killed during a COPY of a new CSV pair dropped into the ingest folder."""
    site = new_site(train_days=TRAIN)
    admin, writer = engines(site)
    drop = tmp_path / "incoming"
    drop.mkdir()
    env = service_env(site, today=date(2024, 4, 6), day_seconds=4, SMAPDS_INGEST_DIR=str(drop))
    served = Command(["serve"], env, tmp_path / "serve.log")
    rng = random.Random(SEED)

    def csv_dropped(ctx: Context) -> Breakpoint:
        bp = kh.lock_observations(ctx.admin)
        for f in reference.csv_files:
            shutil.copy(f, drop / f.name)
        return bp

    ingest_point = locked("ingest job: COPY of the new observations waits", csv_dropped)
    try:
        for p in [*SERVICE_POINTS, ingest_point]:
            ctx = Context(site, admin, served, served.mark(), rng=rng)
            bp = p.arm(ctx)
            try:
                served.wait_for(str(p), partial(p.reached, ctx), timeout=120, poll=0.005)
                kh.kill_worker(served)
                _record(p, served)
            finally:
                if bp is not None:
                    bp.release()
            # the supervisor closed the killed job's stage (unless the worker was idle)
            served.wait_for(
                "the killed job closed",
                lambda: served.find(ctx.mark, "job did not finish") or not _running(writer),  # noqa: B023
                timeout=60,
            )
            invariants(site, admin, writer)
        served.wait_for(
            "every day made", lambda: kh.service_done(writer, SERVICE_DAYS), timeout=180
        )
        served.wait_for("the ingest retried", lambda: _ingested_ok(writer), timeout=60)
        mark = ctx.mark  # the ingest point's: the ingest run again after the kill, its hooks
        served.wait_for("the ingest's hooks", lambda: _ingest_hooks_done(served, mark), timeout=60)
        assert served.stop() == 0, served.tail()
        final_checks(site, admin, writer, SERVICE_DAYS, hooks=True)
        assert kh.observations_digest(writer) == reference.with_csv
    finally:
        if served.popen.poll() is None:
            served.kill()
        _print_kills("service, worker killed")


def _running(writer: Engine) -> int:
    with writer.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM smapds.run_ledger WHERE status = 'RUNNING'")
            ).scalar_one()
        )


def _ingest_hooks_done(served: Command, mark: int) -> bool:
    """After ``mark``, an ingest run's hooks ended: collocate_ingested, then its validation."""
    events = served.since(mark)
    ends = [
        k
        for k, e in enumerate(events)
        if e.get("msg") == "stage finished" and e.get("stage") == "collocate_ingested"
    ]
    return bool(ends) and any(
        e.get("msg") == "stage finished"
        and e.get("stage") == "validate"
        and e.get("status") == "OK"
        for e in events[ends[0] :]
    )


def _ingested_ok(writer: Engine) -> bool:
    with writer.connect() as conn:
        return bool(
            conn.execute(
                sa.text(
                    "SELECT count(*) = 2 FROM smapds.ingest_files WHERE path LIKE '%kill_%' "
                    "AND status = 'OK'"
                )
            ).scalar_one()
        )


CRASH_POINTS = [
    locked(
        "crash during fetch: an inventory row waits",
        lambda c: kh.lock_table(c.admin, "smapds.granules", waiting="%granules%"),
    ),
    point(
        "crash at the boundary fetch -> product (the fetch's end just logged)",
        kh.after_event("stage finished", stage="fetch"),
    ),
    locked(
        "crash at registration: the products row waits",
        lambda c: kh.lock_table(c.admin, "smapds.products", waiting="%smapds.products%"),
    ),
    locked(
        "crash during collocation: the upsert waits",
        lambda c: kh.lock_table(c.admin, "smapds.collocations", waiting="%collocations%"),
    ),
    locked("crash during validation refresh", lambda c: kh.lock_validation(c.admin)),
]


@pytest.mark.slow
def test_the_service_crashed_at_every_stage_and_restarted_makes_each_day_once(
    new_site: Callable[..., Site],
    engines: Callable[[Site], tuple[Engine, Engine]],
    tmp_path: Path,
) -> None:
    """The whole service (its process group: service, forkserver, worker) is SIGKILLed at each
    point and started again; the clock stands still, so each day is retried because its ledger
    rows, left RUNNING, are closed as interrupted at start-up."""
    site = new_site(train_days=TRAIN)
    admin, writer = engines(site)
    made = kh.days(date(2024, 4, 4), date(2024, 4, 6))
    env = service_env(site, today=date(2024, 4, 8), day_seconds=86400)
    rng = random.Random(SEED)
    served: Command | None = None
    try:
        for k, p in enumerate(CRASH_POINTS):
            served = Command(["serve"], env, tmp_path / f"serve-{k}.log")
            ctx = Context(site, admin, served, 0, rng=rng)
            bp = p.arm(ctx)
            try:
                served.wait_for(str(p), partial(p.reached, ctx), timeout=120, poll=0.005)
                served.kill()
                _record(p, served)
            finally:
                if bp is not None:
                    bp.release()
            invariants(site, admin, writer)
        served = Command(["serve"], env, tmp_path / "serve-last.log")
        served.wait_for("every day made", lambda: kh.service_done(writer, made), timeout=180)
        assert served.stop() == 0, served.tail()
        final_checks(site, admin, writer, made, hooks=True)
    finally:
        if served is not None and served.popen.poll() is None:
            served.kill()
        _print_kills("service crashed and restarted")


# -- the repairs after a kill ---------------------------------------------------------------------


def test_backfill_killed_after_the_registration_collocates_the_day_when_run_again(
    new_site: Callable[..., Site],
    engines: Callable[[Site], tuple[Engine, Engine]],
    tmp_path: Path,
) -> None:
    site = new_site(fetch_days=ALL, train_days=TRAIN)
    admin, writer = engines(site)
    day = date(2024, 4, 7)
    args = ["backfill", "--start", str(day), "--end", str(day)]
    where = locked(
        "backfill: the day's collocation upsert waits (product registered)",
        lambda c: kh.lock_table(c.admin, "smapds.collocations", waiting="%collocations%"),
    )
    try:
        kill_commands(site, admin, args, [where], tmp_path)
        code, log = kh.smapds(*args, env=site.env(), log=tmp_path / "backfill-rerun.log")
        assert code == 0, log
        assert kh.product_writes(admin) == {day: 1}
        assert kh.collocate_again(writer, site, [day]) == {day: 0}
        assert kh.validation_problems(writer, site) == []
    finally:
        _print_kills("backfill killed in its hooks")


@pytest.mark.slow
def test_a_day_made_again_and_killed_before_its_registration_keeps_a_row_that_matches_its_file(
    new_site: Callable[..., Site],
    engines: Callable[[Site], tuple[Engine, Engine]],
    tmp_path: Path,
) -> None:
    from service.stacks import stack_factory
    from service.train import train

    site = new_site(fetch_days=ALL, train_days=TRAIN)
    admin, writer = engines(site)
    day = date(2024, 4, 8)
    args = ["produce", "--date", str(day)]
    try:
        code, log = kh.smapds(*args, env=site.env(), log=tmp_path / "first.log")
        assert code == 0, log
        train(  # another model: the day made again has other bytes
            writer,
            stack_factory(site.settings(), writer),
            data_dir=site.data_dir,
            start=ALL[0],
            end=ALL[-1],
            models=["hgb"],
            params={"hgb": {"max_iter": 10}},
            freeze="hgb",
            activate=True,
            seed=5,
            n_jobs=2,
        )
        kill_commands(site, admin, args, [PRODUCT_POINTS[4]], tmp_path)
        after_kill = kh.product_problems(writer, site, orphans_allowed=True)
        code, log = kh.smapds(*args, env=site.env(), log=tmp_path / "again.log")
        assert code == 0, log
        assert kh.product_problems(writer, site, orphans_allowed=False) == []  # whole again
        assert after_kill == []  # ... but not between the kill and the run again
    finally:
        _print_kills("produce again")


@pytest.mark.slow
def test_the_ingest_job_killed_in_its_collocation_collocates_the_new_stations_when_run_again(
    new_site: Callable[..., Site],
    engines: Callable[[Site], tuple[Engine, Engine]],
    reference: Reference,
    tmp_path: Path,
) -> None:
    site = new_site(train_days=TRAIN)
    admin, writer = engines(site)
    drop = tmp_path / "incoming"
    drop.mkdir()
    made = [SERVICE_DAYS[0]]
    env = service_env(site, today=date(2024, 4, 6), day_seconds=86400, SMAPDS_INGEST_DIR=str(drop))
    served = Command(["serve"], env, tmp_path / "serve.log")
    where = locked(
        "ingest job: files committed, collocate_ingested's upsert waits",
        lambda c: kh.lock_table(c.admin, "smapds.collocations", waiting="%collocations%"),
    )
    try:
        served.wait_for("the day made", lambda: kh.service_done(writer, made), timeout=120)
        ctx = Context(site, admin, served, served.mark())
        bp = where.arm(ctx)
        try:
            for f in reference.csv_files:
                shutil.copy(f, drop / f.name)
            served.wait_for(str(where), partial(where.reached, ctx), timeout=60)
            kh.kill_worker(served)
            _record(where, served)
        finally:
            if bp is not None:
                bp.release()
        mark = served.mark()
        served.wait_event(mark, "stage finished", stage="ingest", status="OK", timeout=60)
        served.wait_for("the ingest's hooks", lambda: _ingest_hooks_done(served, mark), timeout=60)
        assert served.stop() == 0, served.tail()
        assert _ingested_ok(writer)
        assert kh.collocate_again(writer, site, made) == dict.fromkeys(made, 0)
    finally:
        if served.popen.poll() is None:
            served.kill()
        _print_kills("ingest job killed in its collocation")
