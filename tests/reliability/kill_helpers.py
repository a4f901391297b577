"""Helpers of the kill and database-fault tests and of ``scripts/soak.py``.

- a **site**: a database, a data directory and the synthetic world, with inputs fetched, a small
  model frozen and activated and (optionally) the world's stations loaded: what ``smapds serve``,
  ``produce`` or ``backfill`` need to make a day;
- **commands** (``smapds ...``) run as their own process group, their JSON log read while it is
  written, so a test can wait for a log line and then SIGKILL the command (or only the service's
  worker process);
- **breakpoints**: a lock held by the cluster's superuser, so that the process under test stops at
  one exact statement (the product's registration, a COPY, the validation refresh's advisory lock)
  and is killed there, deterministically, without a fault hook in the code under test;
- the **checks** a kill must pass afterwards: every ``smapds.products`` row points at an existing
  file with the recorded sha256, no partial file sits under a final name, a day is registered once
  (a trigger installed by the test counts committed writes of ``smapds.products``), nothing is left
  ``RUNNING``, the observations equal a clean load (count and checksum over natural keys), the
  collocations are current (collocating again changes no row) and the validation statistics equal
  a full recompute.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from service.db import Database, default_sql_dir
from service.db.embedded import EmbeddedCluster, find_bindir
from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
WORLD_START = date(2024, 4, 1)
DOMAIN = "demo"
FINAL_NAME = re.compile(
    r"^smapds_sm_1km_(?P<domain>\w+?)_(?P<day>\d{8})_(?P<version>[0-9a-f]{8})\.(tif|png|json)$"
)
Event = dict[str, Any]


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


# -- databases and sites --------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_database(cluster_db: Database, name: str) -> Iterator[Database]:
    """A fresh database cloned from the migrated template of the session's cluster."""
    cluster_db.drop_database(name)
    cluster_db.create_database(name, template=cluster_db.dbname)
    try:
        yield dataclasses.replace(cluster_db, dbname=name)
    finally:
        cluster_db.drop_database(name)


@contextlib.contextmanager
def private_cluster(port: int = 5439) -> Iterator[Database]:
    """A cluster of its own (initialised, started, migrated) in a temporary directory, for a test
    or a soak that stops and starts the server; stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="smapds-private-pg-"))
    root.chmod(0o755)  # reachable by the unprivileged server user when run as root
    cluster = EmbeddedCluster(root=root / "pg", port=port, bindir=find_bindir(None))
    db = Database(cluster=cluster, external_url=None, sql_dir=default_sql_dir())
    db.up()
    try:
        yield db
    finally:
        cluster.down()
        shutil.rmtree(cluster.home, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class Site:
    """What a ``smapds`` process needs: the database, the data directory and the world."""

    db: Database
    data_dir: Path
    world: Path
    domain: str = DOMAIN

    def settings(self, **overrides: Any) -> Settings:
        return Settings(
            data_dir=self.data_dir, synthetic_dir=self.world, domain=self.domain, **overrides
        )

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a ``smapds`` subprocess: no SMAPDS_* of the caller's leaks in."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMAPDS_")}
        env.update(
            {
                "SMAPDS_DATABASE_URL": self.db.url("writer"),
                "SMAPDS_DATA_DIR": str(self.data_dir),
                "SMAPDS_SYNTHETIC_DIR": str(self.world),
                "SMAPDS_DOMAIN": self.domain,
                "SMAPDS_LOG_FORMAT": "json",
                "SMAPDS_HTTP_PORT": "0",
            }
        )
        env.update(extra)
        return env

    @property
    def products_dir(self) -> Path:
        return self.data_dir / "products" / self.domain


def fetch(engine: Engine, site: Site, when: Sequence[date], *, today: date) -> None:
    """Fetch the days into the site's archive in this process (no kill intended)."""
    from etl.archive import Archive
    from service.fetch import fetch_day
    from service.sources import build_sources

    archive = Archive(root=site.data_dir / "archive", quarantine=site.data_dir / "quarantine")
    sources = build_sources(site.settings())
    for d in when:
        fetch_day(engine, sources, archive, d, today=today, window_days=7)


def load_stations(engine: Engine, world: Path, *, workers: int = 2) -> None:
    """The world's ISMN download loaded in this process: the clean load."""
    from service.ingest import ingest_ismn

    ingest_ismn(engine, sorted((world / "ismn").glob("*.zip")), domain=DOMAIN, workers=workers)


def make_site(
    db: Database,
    world: Path,
    data_dir: Path,
    *,
    fetch_days: Sequence[date] = (),
    train_days: Sequence[date] = (),
    learner: str = "hgb",
    stations: bool = True,
) -> Site:
    """A site with ``fetch_days`` and ``train_days`` fetched, a small model of ``learner`` trained
    on ``train_days`` (if any) frozen and activated, the product audit trigger installed and, with
    ``stations``, the world's stations loaded.

    The kill tests use histogram gradient boosting: every process they start would otherwise
    compile the forest engine's numba kernel (10-20 s) before its first prediction, and what a kill
    may break (files, rows, ledger) does not depend on the learner. The soak uses the forest.
    """
    from service.stacks import stack_factory
    from service.train import train

    site = Site(db, data_dir, world)
    data_dir.mkdir(parents=True, exist_ok=True)
    admin = db.engine("admin")
    writer = db.engine("writer")
    try:
        install_product_audit(admin)
        wanted = sorted({*fetch_days, *train_days})
        if wanted:
            fetch(writer, site, wanted, today=wanted[-1])
        if train_days:
            params = {"hgb": {"max_iter": 30}, "rf": {"n_estimators": 10, "max_depth": 8}}
            train(
                writer,
                stack_factory(site.settings(), writer),
                data_dir=data_dir,
                start=min(train_days),
                end=max(train_days),
                models=[learner],
                params={learner: params[learner]},
                freeze=learner,
                activate=True,
                seed=3,
                n_jobs=2,
            )
        if stations:
            load_stations(writer, world)
    finally:
        admin.dispose()
        writer.dispose()
    return site


_AUDIT = [
    """CREATE TABLE IF NOT EXISTS public.product_writes (
           domain text, product_date date, op text, sha256 text,
           at timestamptz NOT NULL DEFAULT clock_timestamp())""",
    """CREATE OR REPLACE FUNCTION public.audit_product_write() RETURNS trigger
       LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
       BEGIN
           INSERT INTO public.product_writes (domain, product_date, op, sha256)
           VALUES (NEW.domain, NEW.product_date, TG_OP, NEW.sha256);
           RETURN NEW;
       END $$""",
    "DROP TRIGGER IF EXISTS audit_product_write ON smapds.products",
    """CREATE TRIGGER audit_product_write AFTER INSERT OR UPDATE ON smapds.products
       FOR EACH ROW EXECUTE FUNCTION public.audit_product_write()""",
]


def install_product_audit(admin: Engine) -> None:
    """A trigger (test instrumentation, not part of the schema) that records every committed
    write of a ``smapds.products`` row, so "made exactly once" can be counted."""
    with admin.begin() as conn:
        for stmt in _AUDIT:
            conn.exec_driver_sql(stmt)


def product_writes(admin: Engine) -> dict[date, int]:
    with admin.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT product_date, count(*) AS n FROM public.product_writes GROUP BY 1 ORDER BY 1"
            )
        ).all()
    return {r.product_date: int(r.n) for r in rows}


# -- commands as process groups -------------------------------------------------------------------


class Command:
    """``python -m service.cli ARGS`` in a new session (its own process group); JSON log lines on
    stderr go to ``log``, stdout to ``log`` with ``.out``."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.args = list(args)
        self.log = log
        self._err = open(log, "wb")  # noqa: SIM115 - closed in _close()
        self._out = open(log.with_suffix(".out"), "wb")  # noqa: SIM115 - closed in _close()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "service.cli", *self.args],
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            start_new_session=True,
        )
        self.started = time.monotonic()
        self._offset = 0
        self._partial = b""
        self._events: list[Event] = []

    @property
    def pid(self) -> int:
        return self.popen.pid

    # the log --------------------------------------------------------------------------------

    def events(self) -> list[Event]:
        """Every JSON log record written so far (read incrementally)."""
        with open(self.log, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a library's warning, not a record
            if isinstance(event, dict):
                self._events.append(event)
        return self._events

    def mark(self) -> int:
        """An index into the events: ``since(mark)`` gives what was logged after it."""
        return len(self.events())

    def since(self, mark: int) -> list[Event]:
        return self.events()[mark:]

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def find(self, mark: int, msg: str, **fields: Any) -> Event | None:
        for e in self.since(mark):
            if e.get("msg") == msg and all(str(e.get(k)) == str(v) for k, v in fields.items()):
                return e
        return None

    def wait_for(
        self, what: str, done: Callable[[], Any], *, timeout: float = 120, poll: float = 0.01
    ) -> Any:
        """Poll ``done`` until it returns something truthy; fail if the process ends first."""
        deadline = time.monotonic() + timeout
        while True:
            value = done()
            if value:
                return value
            if self.popen.poll() is not None:
                raise AssertionError(
                    f"{what}: {self.args[0]} ended (code {self.popen.returncode})\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout:g} s\n{self.tail()}")
            time.sleep(poll)

    def wait_event(self, mark: int, msg: str, *, timeout: float = 120, **fields: Any) -> Event:
        found: Event = self.wait_for(
            f"log line {msg!r} {fields}", lambda: self.find(mark, msg, **fields), timeout=timeout
        )
        return found

    # the process ----------------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL the whole process group (the service, its forkserver and worker): a crash."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(30)
        self._close()

    def finish(self, timeout: float = 300) -> int:
        """Wait for the command to end by itself; its exit code."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.args} did not end within {timeout} s\n{self.tail()}"
            ) from None
        self._close()
        return code

    def stop(self, timeout: float = 120) -> int:
        """SIGTERM to the main process alone (as systemd's KillMode=mixed); the exit code."""
        self.popen.send_signal(signal.SIGTERM)
        return self.finish(timeout)

    def _close(self) -> None:
        for fh in (self._err, self._out):
            fh.close()
        # a killed group's orphans (the worker) are reparented; nothing of ours must stay
        for pid in _group_members(self.popen.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def smapds(*args: str, env: dict[str, str], log: Path, timeout: float = 300) -> tuple[int, str]:
    """Run a command to its end: the exit code and its log."""
    cmd = Command(args, env, log)
    code = cmd.finish(timeout)
    return code, cmd.tail(20000)


def _proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, process group, command line) of every live, non-zombie process."""
    out: dict[int, tuple[int, int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":
            continue
        out[int(entry.name)] = (int(fields[1]), int(fields[2]), cmdline)
    return out


def _group_members(pgid: int) -> list[int]:
    return [pid for pid, (_, group, _) in _proc_table().items() if group == pgid]


def worker_pid(service_pid: int) -> int | None:
    """The service's worker: the child of its forkserver (``service.pipeline.Supervisor``)."""
    table = _proc_table()
    servers = {
        pid for pid, (ppid, _, cmd) in table.items() if ppid == service_pid and "forkserver" in cmd
    }
    workers = [pid for pid, (ppid, _, _) in table.items() if ppid in servers]
    return workers[0] if len(workers) == 1 else None


def kill_worker(served: Command, *, timeout: float = 60) -> int:
    """SIGKILL the service's worker (the service itself lives on); its pid."""
    pid = served.wait_for("the worker process", lambda: worker_pid(served.pid), timeout=timeout)
    os.kill(pid, signal.SIGKILL)
    return int(pid)


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode()


def served_port(served: Command) -> int:
    return int(served.wait_event(0, "http endpoint listening", timeout=60)["port"])


# -- breakpoints ----------------------------------------------------------------------------------


class Breakpoint:
    """Locks taken by the cluster's superuser in an open transaction: whoever needs them waits at
    that statement (PostgreSQL does not notice a dead client while its backend waits on a lock, so
    the waiting transaction of a killed process rolls back only once the lock is released: it
    never commits)."""

    def __init__(
        self,
        admin: Engine,
        *statements: str,
        waiting: str = "%",
        params: dict[str, Any] | None = None,
    ) -> None:
        self.admin = admin
        self.statements = statements
        self.waiting = waiting
        self.params = params or {}
        self._conn: Connection | None = None

    def __enter__(self) -> Breakpoint:
        self.hold()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def hold(self) -> None:
        conn = self.admin.connect()
        conn.begin()
        for stmt in self.statements:
            conn.execute(sa.text(stmt), self.params)
        self._conn = conn

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.rollback()
            conn.close()

    def reached(self) -> bool:
        """Some other session of this database waits on a lock, running a matching statement."""
        if self._conn is None:
            return False
        holder = self._conn.connection.dbapi_connection
        holder_pid = holder.get_backend_pid() if holder is not None else -1
        with self.admin.connect() as conn:
            n = conn.execute(
                sa.text("""
                SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid NOT IN (pg_backend_pid(), :holder)
                   AND wait_event_type = 'Lock' AND query ILIKE :pattern
            """),
                {"holder": holder_pid, "pattern": self.waiting},
            ).scalar_one()
        return bool(n)


def lock_table(admin: Engine, table: str, *, waiting: str = "%") -> Breakpoint:
    return Breakpoint(admin, f"LOCK TABLE {table} IN EXCLUSIVE MODE", waiting=waiting)


def lock_validation(admin: Engine, domain: str = DOMAIN) -> Breakpoint:
    """The validation refresh's own advisory lock (``service.validate.refresh``)."""
    return Breakpoint(
        admin,
        "SELECT pg_advisory_xact_lock(hashtext('smapds.validate:' || :domain))",
        waiting="%pg_advisory_xact_lock%",
        params={"domain": domain},
    )


def lock_ledger_row(admin: Engine, day: date, stage: str, domain: str = DOMAIN) -> Breakpoint:
    """The ledger row of (day, stage): its final UPDATE (``ledger.finish``) waits."""
    return Breakpoint(
        admin,
        "SELECT 1 FROM smapds.run_ledger WHERE domain = :domain AND run_date = :day "
        "AND stage = :stage FOR UPDATE",
        waiting="%finished_at%",
        params={"domain": domain, "day": day, "stage": stage},
    )


def lock_observations(admin: Engine) -> Breakpoint:
    """Every monthly partition of the world's observations (made first if missing): a COPY into
    one of them waits."""
    with admin.begin() as conn:
        conn.execute(
            sa.text(
                "SELECT smapds.ensure_observation_partitions("
                "CAST('2024-03-01 00:00+00' AS timestamptz), CAST('2024-04-30 00:00+00' AS timestamptz))"
            )
        )
    return Breakpoint(
        admin,
        "LOCK TABLE smapds.observations_2024_03, smapds.observations_2024_04 IN EXCLUSIVE MODE",
        waiting="%COPY%",
    )


# -- what the files say ---------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def temporary_files(site: Site) -> list[Path]:
    """Names the writers use before the rename (``.NAME.tmp-PID...``, ``.NAME.prev-PID``) and the
    archive's download folder."""
    found = [p for p in site.products_dir.rglob(".*") if p.is_file()]
    tmp = site.data_dir / "archive" / ".tmp"
    if tmp.is_dir():
        found += [p for p in tmp.rglob("*") if p.is_file()]
    return sorted(found)


def tmp_product(site: Site, suffix: str) -> bool:
    """A product file is being written: a ``.*.tmp-*<suffix>`` name exists."""
    return any(site.products_dir.rglob(f".*.tmp-*{suffix}"))


def downloading(site: Site) -> bool:
    """A granule is being downloaded: the archive's temporary folder holds a file."""
    tmp = site.data_dir / "archive" / ".tmp"
    return tmp.is_dir() and any(p.is_file() for p in tmp.rglob("*"))


def product_problems(engine: Engine, site: Site, *, orphans_allowed: bool) -> list[str]:
    """What is wrong with the products: rows pointing at missing or different files, partial or
    unreadable files under final names, final files without a row (allowed between a kill and
    the rerun: complete files renamed before the registration that the kill prevented)."""
    import rasterio

    problems: list[str] = []
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT product_date, path, sha256, stac_path FROM smapds.products "
                "WHERE domain = :d ORDER BY product_date"
            ),
            {"d": site.domain},
        ).all()
    registered: set[Path] = set()
    for r in rows:
        cog, stac = site.data_dir / r.path, site.data_dir / r.stac_path
        registered |= {cog, stac, cog.with_suffix(".png")}
        if not cog.is_file():
            problems.append(f"{r.product_date}: row points at missing {cog}")
            continue
        if sha256_of(cog) != r.sha256:
            problems.append(f"{r.product_date}: {cog.name} differs from the row's sha256")
        if not stac.is_file():
            problems.append(f"{r.product_date}: STAC item {stac} missing")
        else:
            asset = json.loads(stac.read_text())["assets"]["data"]
            if asset.get("file:checksum_sha256") != r.sha256:
                problems.append(f"{r.product_date}: STAC item names another COG checksum")
        if not cog.with_suffix(".png").is_file():
            problems.append(f"{r.product_date}: quicklook missing")
    for path in sorted(site.products_dir.rglob("*")):
        if not path.is_file() or not FINAL_NAME.match(path.name):
            continue
        try:
            if path.suffix == ".tif":
                with rasterio.open(path) as ds:
                    assert ds.count == 4
                    ds.read()
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
                raise ValueError("not a PNG")
        except Exception as err:
            problems.append(f"partial or unreadable file under a final name: {path} ({err})")
        if path not in registered and not orphans_allowed:
            problems.append(f"final file without a products row: {path}")
    return problems


def ledger_problems(engine: Engine, site: Site, product_days: Sequence[date]) -> list[str]:
    """Nothing RUNNING; each product day's ``product`` row agrees with ``smapds.products``."""
    problems: list[str] = []
    with engine.connect() as conn:
        running = conn.execute(
            sa.text(
                "SELECT run_date, stage FROM smapds.run_ledger WHERE domain = :d "
                "AND status = 'RUNNING' ORDER BY 1, 2"
            ),
            {"d": site.domain},
        ).all()
        rows = conn.execute(
            sa.text("""
            SELECT p.product_date, p.status, p.path, l.status AS ledger, l.details ->> 'path' AS lpath
              FROM smapds.products p
              LEFT JOIN smapds.run_ledger l ON l.domain = p.domain
                   AND l.run_date = p.product_date AND l.stage = 'product'
             WHERE p.domain = :d ORDER BY 1
        """),
            {"d": site.domain},
        ).all()
    problems += [f"{r.run_date} {r.stage} left RUNNING" for r in running]
    made = {r.product_date: r for r in rows}
    for d in product_days:
        r = made.get(d)
        if r is None:
            problems.append(f"{d}: no product")
        elif r.ledger != r.status:
            problems.append(f"{d}: ledger says {r.ledger}, products says {r.status}")
        elif r.lpath is None or Path(r.lpath) != site.data_dir / r.path:
            problems.append(f"{d}: ledger names {r.lpath}, products {r.path}")
    return problems


def service_done(engine: Engine, product_days: Sequence[date]) -> bool:
    """Every day has its product and both post-product hooks ended OK; nothing is RUNNING."""
    with engine.connect() as conn:
        n = conn.execute(
            sa.text("""
            SELECT count(*) FROM smapds.products p
             WHERE p.product_date = ANY(:days)
               AND (SELECT count(*) FROM smapds.run_ledger h WHERE h.run_date = p.product_date
                       AND h.stage IN ('collocate', 'validate') AND h.status = 'OK') = 2
        """),
            {"days": list(product_days)},
        ).scalar_one()
        running = conn.execute(
            sa.text("SELECT count(*) FROM smapds.run_ledger WHERE status = 'RUNNING'")
        ).scalar_one()
    return n == len(product_days) and running == 0


def hook_problems(engine: Engine, site: Site, product_days: Sequence[date]) -> list[str]:
    """The service's post-product hooks (collocate, validate) ended OK for each product day."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT run_date, stage, status, error FROM smapds.run_ledger "
                "WHERE domain = :d AND stage IN ('collocate', 'validate')"
            ),
            {"d": site.domain},
        ).all()
    got = {(r.run_date, r.stage): (r.status, r.error) for r in rows}
    return [
        f"{d} {stage}: {got.get((d, stage), ('never run', None))}"
        for d in product_days
        for stage in ("collocate", "validate")
        if got.get((d, stage), ("",))[0] != "OK"
    ]


# -- observations, collocations, validation -------------------------------------------------------


def observations_digest(engine: Engine) -> dict[str, Any]:
    """Counts and checksums of the in situ tables over natural keys (ids differ between loads;
    files are named by their base name and zip member, so a copy in another folder compares)."""
    with engine.connect() as conn:
        obs = conn.execute(
            sa.text("""
            SELECT count(*) AS n, md5(string_agg(concat_ws('|', st.network, st.station_key,
                       se.variable, se.depth_from_m, se.depth_to_m, se.instrument, o.time, o.value,
                       o.quality_flag, o.provider_flag, regexp_replace(f.path, '^.*/', ''),
                       f.member), E'\n'
                       ORDER BY st.network, st.station_key, se.variable, se.depth_from_m,
                                se.depth_to_m, se.instrument, o.time)) AS md5
              FROM smapds.observations o
              JOIN smapds.sensors se ON se.sensor_id = o.sensor_id
              JOIN smapds.stations st ON st.station_id = se.station_id
              LEFT JOIN smapds.ingest_files f ON f.file_id = o.file_id
        """)
        ).one()
        files = conn.execute(
            sa.text("""
            SELECT md5(string_agg(concat_ws('|', regexp_replace(path, '^.*/', ''), member, sha256,
                                            status, rows_read, rows_loaded, rows_rejected), E'\n'
                                  ORDER BY regexp_replace(path, '^.*/', ''), member)) AS md5,
                   count(*) AS n
              FROM smapds.ingest_files
        """)
        ).one()
        cells = conn.execute(
            sa.text("""
            SELECT count(*) AS n, md5(string_agg(concat_ws('|', s.network, s.station_key, c.domain,
                       c.row_1km, c.col_1km, c.row_36km, c.col_36km), E'\n'
                       ORDER BY s.network, s.station_key, c.domain)) AS md5
              FROM smapds.stations s LEFT JOIN smapds.station_cells c USING (station_id)
        """)
        ).one()
        rejects = conn.execute(sa.text("SELECT count(*) FROM smapds.ingest_rejects")).scalar_one()
    return {
        "observations": (int(obs.n), obs.md5),
        "files": (int(files.n), files.md5),
        "stations_cells": (int(cells.n), cells.md5),
        "rejects": int(rejects),
    }


def collocate_again(engine: Engine, site: Site, product_days: Sequence[date]) -> dict[date, int]:
    """Collocate each day once more in this process: rows changed per day (0 when the stored
    collocations were complete and current)."""
    from service.collocate import collocate_day, overpass_window
    from service.stacks import stack_factory

    settings = site.settings()
    factory = stack_factory(settings, engine)
    out = {}
    for d in product_days:
        c = collocate_day(
            engine, factory, data_dir=site.data_dir, day=d, window=overpass_window(settings)
        )
        out[d] = c.changed
    return out


def validation_problems(engine: Engine, site: Site) -> list[str]:
    """The stored statistics are those of a full recompute from the current collocations."""
    from service.validate import refresh, validation_config

    problems: list[str] = []
    with engine.connect() as conn:
        pending = conn.execute(
            sa.text("SELECT count(*) FROM smapds.collocation_changes WHERE domain = :d"),
            {"d": site.domain},
        ).scalar_one()
        anchor = conn.execute(
            sa.text("SELECT anchor_date FROM smapds.validation_state WHERE domain = :d"),
            {"d": site.domain},
        ).scalar()
        latest = conn.execute(
            sa.text("SELECT max(product_date) FROM smapds.collocations WHERE domain = :d"),
            {"d": site.domain},
        ).scalar()
    if pending:
        problems.append(f"{pending} collocation changes not applied to the statistics")
    if anchor != latest:
        problems.append(f"statistics end on {anchor}, collocations on {latest}")
    before = _stats(engine, site)
    refresh(engine, domain=site.domain, config=validation_config(site.settings()), full=True)
    after = _stats(engine, site)
    if set(before) != set(after):
        problems.append(f"statistics rows differ from a full recompute: {set(before) ^ set(after)}")
    for key in set(before) & set(after):
        if not _close(before[key], after[key]):
            problems.append(f"{key}: stored {before[key]} != recomputed {after[key]}")
    return problems


def _stats(engine: Engine, site: Site) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("""
            SELECT scope, scope_key, window_days, estimate, window_end, n, r, rmse, bias, status
              FROM smapds.validation_stats WHERE domain = :d
        """),
            {"d": site.domain},
        ).all()
    return {tuple(r[:4]): tuple(r[4:]) for r in rows}


def _close(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    for x, y in zip(a, b, strict=True):
        if isinstance(x, float) and isinstance(y, float):
            if not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12):
                return False
        elif x != y:
            return False
    return True


# -- kill points ----------------------------------------------------------------------------------


@dataclass
class Context:
    """What a kill point sees: the site, the superuser's engine and the command under test."""

    site: Site
    admin: Engine
    cmd: Command
    mark: int  # the log index where the attempt under test began
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    state: dict[str, Any] = field(default_factory=dict)  # the kill point's, for this attempt


@dataclass
class KillPoint:
    """Where to kill: ``arm`` (take locks; optional) before the attempt, ``reached`` polled."""

    name: str
    reached: Callable[[Context], bool]
    arm: Callable[[Context], Breakpoint | None] = lambda ctx: None

    def __str__(self) -> str:
        return self.name


def after_event(msg: str, **fields: Any) -> Callable[[Context], bool]:
    """Reached when the command logs ``msg`` (with ``fields``) after the attempt began."""
    return lambda ctx: ctx.cmd.find(ctx.mark, msg, **fields) is not None


def after_event_and_delay(
    msg: str, low: float, high: float, **fields: Any
) -> Callable[[Context], bool]:
    """Reached a seeded random delay in [low, high) s after ``msg`` (drawn when first seen)."""

    def reached(ctx: Context) -> bool:
        if "at" not in ctx.state:
            if ctx.cmd.find(ctx.mark, msg, **fields) is None:
                return False
            ctx.state["at"] = time.monotonic() + ctx.rng.uniform(low, high)
        return time.monotonic() >= float(ctx.state["at"])

    return reached


def on_breakpoint(name: str, make: Callable[[Context], Breakpoint]) -> KillPoint:
    """A kill point armed with a breakpoint: reached when the process waits on its lock."""

    def arm(ctx: Context) -> Breakpoint:
        bp = make(ctx)
        bp.hold()
        ctx.state["bp"] = bp
        return bp

    return KillPoint(name, lambda ctx: bool(ctx.state["bp"].reached()), arm)


def write_csv_pair(folder: Path, *, name: str = "kill", seed: int = 11) -> list[Path]:
    """Three stations of a network ``KILL`` inside the demo domain with hourly surface soil
    moisture over the world's eight days (generic CSV format, ``etl/insitu/CSV_FORMAT.md``)."""
    from etl.grid import get_domain

    rng = random.Random(seed)
    west, south, east, north = get_domain(DOMAIN).bbox_lonlat()
    stations = [
        (f"K{k}", west + (east - west) * fx, south + (north - south) * fy)
        for k, (fx, fy) in enumerate([(0.3, 0.3), (0.5, 0.6), (0.7, 0.4)], start=1)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    st = folder / f"{name}_stations.csv"
    ob = folder / f"{name}_observations.csv"
    st.write_text(
        "network,station,lon,lat\n"
        + "".join(f"KILL,{s},{lon:.5f},{lat:.5f}\n" for s, lon, lat in stations)
    )
    lines = ["network,station,variable,depth_from_m,depth_to_m,time,value,quality_flag"]
    for s, _, _ in stations:
        for h in range(8 * 24):
            hour = f"{WORLD_START + timedelta(days=h // 24)}T{h % 24:02d}:00:00Z"
            lines.append(
                f"KILL,{s},soil_moisture,0.0,0.05,{hour},{0.15 + 0.1 * rng.random():.4f},G"
            )
    ob.write_text("\n".join(lines) + "\n")
    return [st, ob]
