"""The service's jobs as plain functions: which days need work, the day job, the ingest job.

**Which days.** The product job is responsible for every day from ``service_first_date`` (default:
the latency window before the newest due day) up to today minus ``product_lag_days`` (SMAP L3
arrives about two days late). A day lacking a product is due when the service never tried it, when
its last attempt was interrupted (a stop, or a crash detected by a stale ledger heartbeat), or when
its last attempt was made on an earlier (possibly simulated) day while the day was still inside the
latency window: it is re-checked once a day until the window closes, then tried one last time and,
without a product, left as a *gap*. Everything is read from ``smapds.products`` and the run ledger,
never from the scheduler's memory, so a restart neither skips nor repeats a day. Days run oldest
first. A day that has its product but whose hooks were cut short (a kill, a crash or a stop
between or during them) runs its hooks again, and only them.

**The day job.** ``fetch`` (every input for the day and the six days before, which the stack's
precipitation window reads; what the inventory holds as fetched, quarantined or gap is not asked
for again), then ``product`` (``service.product.produce_day``), then the post-product hooks, each a
``Callable[[Engine, Settings, date], None]`` ledgered as its own stage; a failing hook is logged and
ledgered and the product stays. While the day's 36 km SMAP granule is still pending inside the
latency window the product waits (the fetch row says ``PENDING``), so a day is not gap-filled for
lack of patience.

**Isolation and timeouts.** Jobs run in a worker process (multiprocessing ``forkserver``: a
clean single-threaded server with the heavy modules preloaded forks it, never the service's
threads) that lives across jobs, so imports, the forest kernel's compilation and connections are
paid once. The worker reports each stage's start and end over a pipe; the service times the stage
(one timer for the log line and the metric), beats the ledger row's heartbeat (``updated_at``),
and kills the worker when the stage exceeds its timeout, ledgering that stage ``FAILED`` with the
reason, so a hung stage never blocks the next day (the next job gets a fresh worker). On a stop
request the worker ends the job at the next stage boundary; a stage still running after
``stop_grace_seconds`` is killed and ledgered as interrupted, which makes its day due again at the
next start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import multiprocessing.connection
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final, Generic, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.errors import SmapdsError
from service import __version__, ledger
from service.clock import Clock
from service.logs import bound, configure_logging
from service.settings import Settings

log = logging.getLogger(__name__)

STAGE_FETCH: Final = "fetch"
STAGE_PRODUCT: Final = "product"  # service.product.STAGE (not imported: it loads GDAL and numpy)
STAGE_INGEST: Final = "ingest"
DEFAULT_TIMEOUTS: Final[dict[str, float]] = {
    STAGE_FETCH: 3600.0,
    STAGE_PRODUCT: 7200.0,
    STAGE_INGEST: 3600.0,
    "hook": 3600.0,  # any post-product or post-ingest hook without its own entry
}
PRECIP_WINDOW_DAYS: Final = 7  # etl.stack reads IMERG for the day and the six days before
WAIT_FOR: Final = ("SPL3SMP",)  # etl.stack.InputNames().smap36: the product waits for it
INTERRUPTED: Final = "interrupted"  # prefix of the ledger error that makes a day due again
WORKER_DIED: Final = "the worker process died"  # prefix of the error when the worker was killed
_SETUP: Final = "setup"  # the child's start, before its first stage
_PRELOAD: Final = [
    "service.pipeline",
    "service.product",
    "service.stacks",
    "service.train",
    "service.fetch",
    "service.ingest",
]

Hook = Callable[[Engine, Settings, date], None]
"""Runs after a day's product (or after an ingest run, with that day): collocation, validation."""


def hook_stage(hook: Hook) -> str:
    """The ledger stage of a hook: its ``stage`` attribute, else its function name."""
    return str(getattr(hook, "stage", None) or getattr(hook, "__name__", "hook"))


def stage_timeout(settings: Settings, stage: str) -> float:
    """Seconds a stage may run: the setting's entry, the default's, or the hooks' default."""
    table = {**DEFAULT_TIMEOUTS, **settings.stage_timeout_seconds}
    return table.get(stage, table["hook"])


def settings_digest(settings: Settings) -> str:
    """sha256 of the effective settings (secrets redacted), recorded with every product."""
    text = json.dumps(settings.redacted(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# -- which days need work -------------------------------------------------------------------------


def due_range(settings: Settings, today: date) -> tuple[date, date] | None:
    """First and last day the product job is responsible for today; None when there is none."""
    last = today - timedelta(days=settings.product_lag_days)
    first = settings.service_first_date or last - timedelta(days=settings.latency_window_days)
    return (first, last) if first <= last else None


@dataclass(frozen=True)
class DayRecord:
    """What the products table and the run ledger say about one day."""

    day: date
    produced: str | None  # products.status (OK or DEGRADED), None without a product
    as_of: date | None  # the (simulated) today of the service's last attempt
    running: bool  # a fetch or product row is RUNNING
    stale: bool  # ... and its heartbeat is older than stale_running_seconds
    interrupted: bool  # the last attempt was stopped or died before it finished


def reason_to_run(rec: DayRecord, *, today: date, window_days: int) -> str | None:
    """Why the day must run now (``new``, ``crashed``, ``interrupted``, ``recheck``), or None."""
    if rec.produced is not None:
        return None
    if rec.running:
        return "crashed" if rec.stale else None  # a live run elsewhere (the CLI) is left alone
    if rec.as_of is None:
        return "new"
    if rec.interrupted:
        return INTERRUPTED
    if rec.as_of < today and (rec.as_of - rec.day).days <= window_days:
        return "recheck"
    return None


def day_state(rec: DayRecord, *, today: date, window_days: int) -> str:
    """``ok``, ``degraded``, ``pending`` (will be tried or re-checked) or ``gap`` (given up)."""
    if rec.produced is not None:
        return rec.produced.lower()
    final = rec.as_of is not None and (rec.as_of - rec.day).days > window_days
    if final and not rec.running and not rec.interrupted:
        return "gap"
    return "pending"


def day_records(
    conn: Connection, *, domain: str, first: date, last: date, stale_seconds: float
) -> list[DayRecord]:
    """One record per day from ``first`` to ``last``, oldest first."""
    result = conn.execute(
        sa.text("""
        WITH days AS (
            SELECT CAST(d AS date) AS day
              FROM generate_series(CAST(:first AS date), CAST(:last AS date),
                                   interval '1 day') AS d
        )
        SELECT days.day,
               pr.status AS produced,
               f.details ->> 'as_of' AS as_of,
               coalesce(f.status = 'RUNNING', false) OR coalesce(p.status = 'RUNNING', false)
                   AS running,
               NOT (coalesce(f.status = 'RUNNING' AND f.updated_at >= now() - :stale, false)
                    OR coalesce(p.status = 'RUNNING' AND p.updated_at >= now() - :stale, false))
                   AS stale,
               -- the product row's mark counts only when it is newer than the last fetch
               coalesce(f.error LIKE :interrupted, false)
                   OR coalesce(p.error LIKE :interrupted
                               AND p.updated_at >= coalesce(f.updated_at, '-infinity'), false)
                   -- a fetch that ended well with no product stage after it: the process died
                   -- between the two stages (the product stage always leaves a row)
                   OR coalesce(f.status IN ('OK', 'DEGRADED')
                               AND coalesce(p.updated_at < f.updated_at, true), false)
                   AS interrupted
          FROM days
          LEFT JOIN smapds.products pr
                 ON pr.domain = :domain AND pr.product_date = days.day
          LEFT JOIN smapds.run_ledger f
                 ON f.domain = :domain AND f.run_date = days.day AND f.stage = :fetch
          LEFT JOIN smapds.run_ledger p
                 ON p.domain = :domain AND p.run_date = days.day AND p.stage = :product
         ORDER BY days.day
    """),
        {
            "first": first,
            "last": last,
            "domain": domain,
            "stale": timedelta(seconds=stale_seconds),
            "interrupted": f"{INTERRUPTED}%",
            "fetch": STAGE_FETCH,
            "product": STAGE_PRODUCT,
        },
    )
    return [
        DayRecord(
            day=r.day,
            produced=r.produced,
            as_of=date.fromisoformat(r.as_of) if r.as_of else None,
            running=r.running,
            stale=r.stale,
            interrupted=r.interrupted,
        )
        for r in result
    ]


def due_days(engine: Engine, settings: Settings, today: date) -> list[tuple[date, str]]:
    """The days to run now, oldest first, each with the reason."""
    span = due_range(settings, today)
    if span is None:
        return []
    with engine.connect() as conn:
        records = day_records(
            conn,
            domain=settings.domain,
            first=span[0],
            last=span[1],
            stale_seconds=settings.stale_running_seconds,
        )
    out = []
    for rec in records:
        why = reason_to_run(rec, today=today, window_days=settings.latency_window_days)
        if why is not None:
            out.append((rec.day, why))
    return out


def hooks_due(engine: Engine, settings: Settings, today: date, stages: Sequence[str]) -> list[date]:
    """Product days of the service's range whose post-product hooks (ledger ``stages``) did not
    all finish, oldest first: a hook that never started after the product (a kill or a stop
    between the two), one left RUNNING by a dead process (stale heartbeat), or one closed as
    interrupted or by its worker's death. A hook that failed by itself (an error, a timeout) is
    not run again: the product stays either way."""
    span = due_range(settings, today)
    if span is None:
        return []
    return unfinished_hooks(engine, settings, span[0], span[1], stages)


def unfinished_hooks(
    engine: Engine,
    settings: Settings,
    first: date,
    last: date,
    stages: Sequence[str],
    *,
    any_not_ok: bool = False,
) -> list[date]:
    """Product days from ``first`` to ``last`` whose hooks (ledger ``stages``) did not all
    finish (see :func:`hooks_due`), oldest first. With ``any_not_ok`` (a repair by hand: the
    operator's ``smapds backfill``), every hook not OK counts, a failed or RUNNING one too."""
    if not stages:
        return []
    with engine.connect() as conn:
        result = conn.execute(
            sa.text("""
            SELECT p.product_date FROM smapds.products p
             WHERE p.domain = :d AND p.product_date BETWEEN :first AND :last
               AND EXISTS (
                   SELECT 1 FROM unnest(CAST(:stages AS text[])) AS s(stage)
                     LEFT JOIN smapds.run_ledger h
                            ON h.domain = p.domain AND h.run_date = p.product_date
                           AND h.stage = s.stage
                    WHERE h.stage IS NULL
                       OR (:any_not_ok AND h.status <> 'OK')
                       OR (h.status = 'RUNNING' AND h.updated_at < now() - :stale)
                       OR (h.status = 'FAILED'
                           AND (h.error LIKE :interrupted OR h.error LIKE :died)))
             ORDER BY p.product_date
        """),
            {
                "d": settings.domain,
                "first": first,
                "last": last,
                "stages": list(stages),
                "any_not_ok": any_not_ok,
                "stale": timedelta(seconds=settings.stale_running_seconds),
                "interrupted": f"{INTERRUPTED}%",
                "died": f"{WORKER_DIED}%",
            },
        )
        return list(result.scalars())


def day_census(conn: Connection, settings: Settings, today: date) -> dict[str, int]:
    """How many of the service's days are ok, degraded, pending and gaps (for the metrics)."""
    counts = dict.fromkeys(("ok", "degraded", "pending", "gap"), 0)
    span = due_range(settings, today)
    if span is None:
        return counts
    for rec in day_records(
        conn,
        domain=settings.domain,
        first=span[0],
        last=span[1],
        stale_seconds=settings.stale_running_seconds,
    ):
        state = day_state(rec, today=today, window_days=settings.latency_window_days)
        counts[state] = counts.get(state, 0) + 1
    return counts


# -- the ledger's heartbeat and crash recovery ----------------------------------------------------


def heartbeat(conn: Connection, *, domain: str, run_date: date, stage: str) -> int:
    """Touch a RUNNING ledger row (its ``updated_at`` is the heartbeat); rows touched."""
    return conn.execute(
        sa.text("""
        UPDATE smapds.run_ledger SET updated_at = now()
         WHERE domain = :d AND run_date = :day AND stage = :stage AND status = 'RUNNING'
    """),
        {"d": domain, "day": run_date, "stage": stage},
    ).rowcount


def fail_running(
    conn: Connection,
    *,
    domain: str,
    run_date: date,
    stage: str,
    error: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Close a stage that will not finish by itself (timeout, killed, interrupted) as FAILED."""
    touched = conn.execute(
        sa.text("""
        UPDATE smapds.run_ledger
           SET status = 'FAILED', finished_at = greatest(now(), started_at), error = :error,
               details = details || CAST(:details AS jsonb), updated_at = now()
         WHERE domain = :d AND run_date = :day AND stage = :stage AND status = 'RUNNING'
    """),
        {
            "d": domain,
            "day": run_date,
            "stage": stage,
            "error": error,
            "details": json.dumps(details or {}, default=str),
        },
    ).rowcount
    if not touched:  # the stage died before it could start its row
        ledger.start(
            conn,
            domain=domain,
            run_date=run_date,
            stage=stage,
            run_id=uuid.uuid4(),
            software_version=__version__,
        )
        ledger.finish(
            conn,
            domain=domain,
            run_date=run_date,
            stage=stage,
            status="FAILED",
            error=error,
            details=details,
        )


def recover_stale(engine: Engine, settings: Settings) -> list[tuple[date, str]]:
    """At start-up: RUNNING rows whose heartbeat stopped were left by a dead process; close them
    as interrupted (which makes their day due again) and return (day, stage) of each."""
    with engine.begin() as conn:
        rows = conn.execute(
            sa.text("""
            UPDATE smapds.run_ledger
               SET status = 'FAILED', finished_at = greatest(now(), started_at),
                   error = :error, updated_at = now()
             WHERE domain = :d AND status = 'RUNNING'
               AND updated_at < now() - make_interval(secs => :stale)
            RETURNING run_date, stage
        """),
            {
                "d": settings.domain,
                "stale": float(settings.stale_running_seconds),
                "error": f"{INTERRUPTED}: the process running it died (heartbeat stopped)",
            },
        ).all()
    found = sorted((r.run_date, r.stage) for r in rows)
    for day, stage in found:
        log.warning("stale running stage recovered", extra={"date": str(day), "stage": stage})
    return found


# -- running a job in a child process -------------------------------------------------------------


class StageReporter(Protocol):
    """What a job tells its supervisor, and asks it."""

    def begin(self, stage: str) -> None: ...

    def end(self, stage: str, status: str, error: str | None = None) -> None: ...

    def stop_requested(self) -> bool: ...


P = TypeVar("P")
R = TypeVar("R")
Job = Callable[[Engine, Settings, StageReporter, P], R]


@dataclass(frozen=True)
class StageTiming:
    """One stage as the supervisor saw it."""

    stage: str
    run_date: date
    status: str
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class JobRun(Generic[R]):
    """A job's result (None when it did not finish) and why it did not."""

    result: R | None
    stages: tuple[StageTiming, ...]
    failure: str | None = None


class _PipeReporter:
    """The worker's side of the pipe, for one job."""

    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        self._conn = conn
        self._stop = False

    def begin(self, stage: str) -> None:
        self._conn.send(("begin", stage))

    def end(self, stage: str, status: str, error: str | None = None) -> None:
        self._conn.send(("end", stage, status, error))

    def stop_requested(self) -> bool:
        while not self._stop and self._conn.poll():
            self._stop = self._conn.recv() == ("stop",)
        return self._stop


def _worker_main(
    conn: multiprocessing.connection.Connection, settings: Settings, database_url: str
) -> None:
    """The worker process: runs the jobs it is sent, one at a time, until told to exit.

    It lives across jobs, so imports, the numba kernels of the forest engine (compiled on first
    use, seconds) and database connections are paid once, not once per day.
    """
    # Ctrl-C, or a SIGTERM sent to the whole process group, reaches the worker too: the parent
    # decides when it ends (a stop at the next stage boundary, or SIGKILL).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    from service.db import Database, default_sql_dir

    # The parent's database, whatever it is (embedded, external, a test's), with the same options.
    db = Database(cluster=None, external_url=database_url, sql_dir=default_sql_dir())
    engine = db.engine("writer")
    try:
        while True:
            try:
                msg = conn.recv()
            except EOFError:
                return
            if msg[0] == "exit":
                return
            if msg[0] != "job":
                continue  # a stop request that came after its job ended
            job, payload = msg[1], msg[2]
            try:
                conn.send(("result", job(engine, settings, _PipeReporter(conn), payload)))
            except Exception as err:
                log.exception("job failed", extra={"job": getattr(job, "__name__", "?")})
                conn.send(("error", f"{type(err).__name__}: {err}"))
    finally:
        engine.dispose()
        conn.close()


_context_lock = threading.Lock()


def _mp_context() -> multiprocessing.context.ForkServerContext:
    """The forkserver context, with the heavy modules preloaded into the server once."""
    with _context_lock:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx


@dataclass
class _Worker:
    proc: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    jobs: int = 0


@dataclass
class Supervisor:
    """Runs jobs in a worker process with per-stage timeouts, heartbeats and stop requests.

    The worker is started on the first job and kept for the next ones; it is replaced after a
    timeout or a crash (killed, or dead), and after ``max_jobs`` jobs (so memory cannot creep).
    """

    engine: Engine
    settings: Settings
    stop: threading.Event
    on_stage: Callable[[StageTiming], None] | None = None
    heartbeat_seconds: float = 30.0
    max_jobs: int = 200
    _worker: _Worker | None = field(default=None, init=False, repr=False)

    def close(self, *, force: bool = False) -> None:
        """End the worker: asked to exit when idle, killed when ``force`` (it is stuck)."""
        worker, self._worker = self._worker, None
        if worker is not None:
            if not force:
                _send(worker.conn, ("exit",))
                worker.proc.join(10)
            _kill(worker.proc)
            worker.conn.close()

    def _ensure_worker(self) -> _Worker:
        if self._worker is not None and (
            not self._worker.proc.is_alive() or self._worker.jobs >= self.max_jobs
        ):
            self.close()
        if self._worker is None:
            ctx = _mp_context()
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker_main,
                args=(child, self.settings, self.engine.url.render_as_string(False)),
                name="smapds-worker",
                daemon=True,
            )
            proc.start()
            child.close()
            self._worker = _Worker(proc, parent)
        return self._worker

    def run(
        self,
        job: Job[P, R],
        payload: P,
        *,
        run_date: date,
        fail_details: dict[str, Any] | None = None,
    ) -> JobRun[R]:
        """Run ``job(engine, settings, reporter, payload)`` in the worker; see the module doc."""
        worker = self._ensure_worker()
        worker.jobs += 1
        _send(worker.conn, ("job", job, payload))
        beat = min(self.heartbeat_seconds, self.settings.stale_running_seconds / 4)
        stage, began = _SETUP, time.monotonic()
        deadline = began + stage_timeout(self.settings, "hook")
        next_beat = began + beat
        stop_deadline: float | None = None
        stages: list[StageTiming] = []
        result: R | None = None
        failure: str | None = None
        done = False
        while not done:
            now = time.monotonic()
            if self.stop.is_set() and stop_deadline is None:
                stop_deadline = now + self.settings.stop_grace_seconds
                _send(worker.conn, ("stop",))
            limit = min(deadline, stop_deadline or deadline, next_beat)
            ready = multiprocessing.connection.wait(
                [worker.conn, worker.proc.sentinel], timeout=max(0.0, min(limit - now, 1.0))
            )
            if worker.conn in ready:
                try:
                    msg = worker.conn.recv()
                except EOFError:
                    msg = ("died",)
                kind = msg[0]
                if kind == "begin":
                    stage, began = msg[1], time.monotonic()
                    deadline = began + stage_timeout(self.settings, stage)
                elif kind == "end":
                    stages.append(self._ended(msg[1], run_date, msg[2], msg[3], began))
                    stage = _SETUP
                elif kind == "result":
                    result, done = msg[1], True
                elif kind == "error":
                    failure, done = msg[1], True
                else:
                    break
                continue
            if worker.proc.sentinel in ready:
                break
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + beat
                if stage != _SETUP:
                    self._beat(run_date, stage)
            overdue = now >= deadline
            if overdue or (stop_deadline is not None and now >= stop_deadline):
                failure = (
                    f"timeout: stage {stage} ran longer than "
                    f"{stage_timeout(self.settings, stage):g} s"
                    if overdue
                    else f"{INTERRUPTED}: the service stopped during stage {stage}"
                )
                break
        if not done:  # timed out, interrupted, or the worker died: it goes, the stage is closed
            self.close(force=True)
            if failure is None:
                died = f"{WORKER_DIED} (exit code {worker.proc.exitcode})"
                failure = f"{INTERRUPTED}: {died} while stopping" if self.stop.is_set() else died
            if stage != _SETUP:
                self._fail(run_date, stage, failure, fail_details)
                timing = StageTiming(stage, run_date, "FAILED", time.monotonic() - began, failure)
                stages.append(timing)
                if self.on_stage is not None:
                    self.on_stage(timing)
        if failure is not None:
            log.error("job did not finish", extra={"date": str(run_date), "error": failure})
        return JobRun(result, tuple(stages), failure)

    def _ended(
        self, stage: str, run_date: date, status: str, error: str | None, began: float
    ) -> StageTiming:
        timing = StageTiming(stage, run_date, status, time.monotonic() - began, error)
        good = status in ("OK", "DEGRADED", "PENDING", "SKIPPED")
        log.log(
            logging.INFO if good else logging.WARNING,
            "stage finished",
            extra={
                "date": str(run_date),
                "stage": stage,
                "status": status,
                "seconds": round(timing.seconds, 3),
                **({"error": error} if error else {}),
            },
        )
        if self.on_stage is not None:
            self.on_stage(timing)
        return timing

    def _beat(self, run_date: date, stage: str) -> None:
        try:
            with self.engine.begin() as conn:
                heartbeat(conn, domain=self.settings.domain, run_date=run_date, stage=stage)
        except sa.exc.SQLAlchemyError as err:
            log.warning("heartbeat not written", extra={"stage": stage, "error": one_line(err)})

    def _fail(self, run_date: date, stage: str, error: str, details: dict[str, Any] | None) -> None:
        with self.engine.begin() as conn:
            fail_running(
                conn,
                domain=self.settings.domain,
                run_date=run_date,
                stage=stage,
                error=error,
                details=details if stage == STAGE_FETCH else None,
            )


def _send(conn: multiprocessing.connection.Connection, msg: tuple[Any, ...]) -> None:
    with contextlib.suppress(OSError):  # the worker is gone already
        conn.send(msg)


def _kill(proc: multiprocessing.process.BaseProcess) -> None:
    if proc.is_alive():
        proc.kill()  # the worker ignores SIGTERM
    proc.join(5)


def one_line(err: BaseException) -> str:
    """The first line of an error (a driver's own message where there is one), for logs."""
    text = str(getattr(err, "orig", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# -- the day job ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceResult:
    """One input's fetch outcome for one day, as the metrics need it."""

    source: str
    day: date
    status: str
    downloaded: int
    quarantined: int
    failed: int


@dataclass(frozen=True)
class DayOutcome:
    """What one run of the day job came to."""

    day: date
    status: str  # the product's status; PENDING when waiting for data; else the failing stage's
    product_path: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    fetched: tuple[SourceResult, ...] = ()
    hooks_failed: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class DayPayload:
    day: date
    today: date
    hooks: tuple[Hook, ...]


def _stage_status(err: BaseException) -> str:
    if isinstance(err, SmapdsError) and err.status in ledger.STATUSES and err.status != "RUNNING":
        return err.status
    return "FAILED"


def _start(engine: Engine, settings: Settings, run_date: date, stage: str) -> None:
    with engine.begin() as conn:
        ledger.start(
            conn,
            domain=settings.domain,
            run_date=run_date,
            stage=stage,
            run_id=uuid.uuid4(),
            software_version=__version__,
        )


def _finish(
    engine: Engine,
    settings: Settings,
    run_date: date,
    stage: str,
    status: str,
    *,
    error: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    with engine.begin() as conn:
        ledger.finish(
            conn,
            domain=settings.domain,
            run_date=run_date,
            stage=stage,
            status=status,
            error=error,
            details=details,
        )


def _day_job(
    engine: Engine, settings: Settings, reporter: StageReporter, payload: DayPayload
) -> DayOutcome:
    """Fetch, produce and run the hooks for one day (in the worker process)."""
    day, today = payload.day, payload.today
    with bound(date=str(day)):
        reporter.begin(STAGE_FETCH)
        _start(engine, settings, day, STAGE_FETCH)
        as_of = {"as_of": today.isoformat()}
        try:
            fetched, status, wait_for, error = _fetch(engine, settings, day, today)
        except Exception as err:
            error = f"{type(err).__name__}: {err}"
            log.exception("fetch failed", extra={"stage": STAGE_FETCH})
            _finish(engine, settings, day, STAGE_FETCH, "FAILED", error=error, details=as_of)
            reporter.end(STAGE_FETCH, "FAILED", error)
            return DayOutcome(day, "FAILED", error=error)
        details = {
            **as_of,
            "sources": {r.source: r.status for r in fetched if r.day == day},
            "waiting_for": wait_for,
        }
        _finish(engine, settings, day, STAGE_FETCH, status, error=error, details=details)
        reporter.end(STAGE_FETCH, status, error)
        if wait_for:
            return DayOutcome(day, "PENDING", fetched=fetched, error=error)
        if reporter.stop_requested():
            return _interrupted_before(engine, settings, day, STAGE_PRODUCT, fetched)

        reporter.begin(STAGE_PRODUCT)
        made = _produce(engine, settings, day)
        reporter.end(STAGE_PRODUCT, made.status, made.error)
        if made.path is None:
            return DayOutcome(day, made.status, fetched=fetched, error=made.error)

        failed: list[str] = []
        for hook in payload.hooks:
            if reporter.stop_requested():
                log.warning("hooks skipped: stopping", extra={"stage": hook_stage(hook)})
                break
            if not run_hook(engine, settings, hook, day, reporter):
                failed.append(hook_stage(hook))
        return DayOutcome(
            day,
            made.status,
            product_path=str(made.path),
            stats=made.stats,
            fetched=fetched,
            hooks_failed=tuple(failed),
        )


def _interrupted_before(
    engine: Engine, settings: Settings, day: date, stage: str, fetched: tuple[SourceResult, ...]
) -> DayOutcome:
    """Record that a stop came before ``stage`` began, so the day runs again at the next start."""
    error = f"{INTERRUPTED}: the service stopped before stage {stage}"
    with engine.begin() as conn:  # FAILED without counting an attempt: the stage never started
        conn.execute(
            sa.text("""
            INSERT INTO smapds.run_ledger AS l (domain, run_date, stage, status, attempts, error,
                                                software_version)
            VALUES (:d, :day, :stage, 'FAILED', 0, :error, :version)
            ON CONFLICT (domain, run_date, stage) DO UPDATE SET
                status = 'FAILED', error = EXCLUDED.error, updated_at = now()
        """),
            {
                "d": settings.domain,
                "day": day,
                "stage": stage,
                "error": error,
                "version": __version__,
            },
        )
    return DayOutcome(day, "FAILED", fetched=fetched, error=error)


def _fetch(
    engine: Engine, settings: Settings, day: date, today: date
) -> tuple[tuple[SourceResult, ...], str, list[str], str | None]:
    """Fetch every input for the day and the precipitation window before it.

    Returns the outcomes, the stage status, the inputs the product waits for, and an error text.
    """
    from etl.archive import Archive
    from service.fetch import fetch_day
    from service.sources import build_sources

    sources = build_sources(settings)
    archive = Archive(
        root=settings.data_dir / "archive", quarantine=settings.data_dir / "quarantine"
    )
    first = day - timedelta(days=PRECIP_WINDOW_DAYS - 1)
    with engine.connect() as conn:
        settled = _settled(conn, first=first, last=day)
    results: list[SourceResult] = []
    auth: list[str] = []
    for k in range(PRECIP_WINDOW_DAYS):
        d = first + timedelta(days=k)
        todo = [s for s in sources if (s.source, d) not in settled]
        for o in fetch_day(
            engine, todo, archive, d, today=today, window_days=settings.latency_window_days
        ):
            results.append(
                SourceResult(o.source, d, o.status, o.downloaded, o.quarantined, o.failed)
            )
            if o.status == "auth_failed":
                auth.append(o.source)
    on_day = {r.source: r.status for r in results if r.day == day}
    inside = (today - day).days <= settings.latency_window_days
    wait_for = [s for s in WAIT_FOR if on_day.get(s) in ("pending", "auth_failed") and inside]
    error = f"authentication failed: {', '.join(sorted(set(auth)))}" if auth else None
    if wait_for:
        status = "PENDING"
    elif auth:
        status = "FAILED"
    elif all(s == "fetched" for s in on_day.values()):
        status = "OK"
    else:
        status = "DEGRADED"
    return tuple(results), status, wait_for, error


def _settled(conn: Connection, *, first: date, last: date) -> set[tuple[str, date]]:
    """(source, day) whose every granule is fetched, quarantined or a gap: not asked for again."""
    rows = conn.execute(
        sa.text("""
        SELECT source, granule_date FROM smapds.granules
         WHERE granule_date BETWEEN :a AND :b
         GROUP BY source, granule_date
        HAVING bool_and(status IN ('fetched', 'quarantined', 'gap'))
    """),
        {"a": first, "b": last},
    )
    return {(r.source, r.granule_date) for r in rows}


@dataclass(frozen=True)
class _Made:
    status: str
    path: Path | None
    stats: dict[str, Any]
    error: str | None


def _produce(engine: Engine, settings: Settings, day: date) -> _Made:
    """The product stage: the active model and the stack factory, then ``produce_day``."""
    from service.product import produce_day
    from service.stacks import stack_factory
    from service.tiles import runner
    from service.train import active_model

    try:
        model = active_model(engine, domain=settings.domain, data_dir=settings.data_dir)
        factory = stack_factory(settings, engine)
        with runner(settings.dask_scheduler) as run:
            r = produce_day(
                engine,
                factory,
                model,
                data_dir=settings.data_dir,
                day=day,
                settings_hash=settings_digest(settings),
                tile_cells=settings.tile_cells,
                run=run,
            )
    except Exception as err:  # set-up failed (no model, no static layers) or a bug: ledger it
        error = f"{type(err).__name__}: {err}"
        log.exception("product stage failed", extra={"stage": STAGE_PRODUCT})
        with engine.begin() as conn:
            fail_running(
                conn, domain=settings.domain, run_date=day, stage=STAGE_PRODUCT, error=error
            )
        return _Made("FAILED", None, {}, error)
    return _Made(r.status, r.path, dict(r.stats), r.error)


class _Unsupervised:
    """The reporter of a hook run in this process (``smapds backfill``): nobody to tell."""

    def begin(self, stage: str) -> None:
        pass

    def end(self, stage: str, status: str, error: str | None = None) -> None:
        pass

    def stop_requested(self) -> bool:
        return False


def run_hook(
    engine: Engine,
    settings: Settings,
    hook: Hook,
    day: date,
    reporter: StageReporter | None = None,
) -> bool:
    """One hook as its own ledgered stage; a failure is logged and ledgered, never raised."""
    reporter = reporter or _Unsupervised()
    stage = hook_stage(hook)
    reporter.begin(stage)
    _start(engine, settings, day, stage)
    try:
        hook(engine, settings, day)
    except Exception as err:
        error = f"{type(err).__name__}: {err}"
        log.exception("hook failed", extra={"stage": stage, "date": str(day)})
        _finish(engine, settings, day, stage, _stage_status(err), error=error)
        reporter.end(stage, _stage_status(err), error)
        return False
    _finish(engine, settings, day, stage, "OK")
    reporter.end(stage, "OK")
    return True


def run_hook_once(engine: Engine, settings: Settings, hook: Hook, days: Sequence[date]) -> bool:
    """A hook that does not depend on its day (the validation refresh) run once for several
    days, each ledgered: what ``smapds backfill`` does after its days' collocations."""
    if not days:
        return True
    stage = hook_stage(hook)
    for day in days:
        _start(engine, settings, day, stage)
    status, error = "OK", None
    try:
        hook(engine, settings, days[-1])
    except Exception as err:
        status, error = _stage_status(err), f"{type(err).__name__}: {err}"
        log.exception("hook failed", extra={"stage": stage, "date": str(days[-1])})
    for day in days:
        _finish(engine, settings, day, stage, status, error=error)
    return status == "OK"


@contextlib.contextmanager
def supervisor(
    engine: Engine,
    settings: Settings,
    *,
    stop: threading.Event | None = None,
    on_stage: Callable[[StageTiming], None] | None = None,
) -> Iterator[Supervisor]:
    """A supervisor whose worker ends with the block."""
    sup = Supervisor(engine, settings, stop or threading.Event(), on_stage)
    try:
        yield sup
    finally:
        sup.close()


def run_day(sup: Supervisor, day: date, *, today: date, hooks: Sequence[Hook] = ()) -> DayOutcome:
    """Run the day job for ``day`` in the supervisor's worker; the outcome is also ledgered."""
    run = sup.run(
        _day_job,
        DayPayload(day, today, tuple(hooks)),
        run_date=day,
        fail_details={"as_of": today.isoformat()},
    )
    if run.result is not None:
        return run.result
    # The worker did not come back (a timeout, a stop, a crash): what the stages said still holds.
    made = [t.status for t in run.stages if t.stage == STAGE_PRODUCT]
    hooks_failed = tuple(
        t.stage
        for t in run.stages
        if t.stage not in (STAGE_FETCH, STAGE_PRODUCT) and t.status == "FAILED"
    )
    status = made[0] if made else "FAILED"
    return DayOutcome(day, status, hooks_failed=hooks_failed, error=run.failure)


@dataclass(frozen=True)
class HooksPayload:
    day: date
    hooks: tuple[Hook, ...]


def _hooks_job(
    engine: Engine, settings: Settings, reporter: StageReporter, payload: HooksPayload
) -> DayOutcome:
    """Run the post-product hooks of a day that has its product (in the worker process)."""
    day = payload.day
    with bound(date=str(day)):
        with engine.connect() as conn:
            made = conn.execute(
                sa.text(
                    "SELECT status, path FROM smapds.products "
                    "WHERE domain = :d AND product_date = :day"
                ),
                {"d": settings.domain, "day": day},
            ).one()
        failed: list[str] = []
        for hook in payload.hooks:
            if reporter.stop_requested():
                log.warning("hooks skipped: stopping", extra={"stage": hook_stage(hook)})
                break
            if not run_hook(engine, settings, hook, day, reporter):
                failed.append(hook_stage(hook))
    path = str(settings.data_dir / made.path)
    return DayOutcome(day, made.status, product_path=path, hooks_failed=tuple(failed))


def run_hooks(sup: Supervisor, day: date, *, hooks: Sequence[Hook]) -> DayOutcome:
    """Run the post-product hooks of a produced day in the supervisor's worker."""
    run = sup.run(_hooks_job, HooksPayload(day, tuple(hooks)), run_date=day)
    if run.result is not None:
        return run.result
    failed = tuple(t.stage for t in run.stages if t.status == "FAILED")
    return DayOutcome(day, "FAILED", hooks_failed=failed, error=run.failure)


def run_due_days(
    sup: Supervisor,
    clock: Clock,
    *,
    hooks: Sequence[Hook] = (),
    on_day: Callable[[DayOutcome], None] | None = None,
) -> list[DayOutcome]:
    """Run every due day, oldest first, until none is left or a stop is requested; a produced
    day whose hooks did not finish (:func:`hooks_due`) runs its hooks only.

    "Today" is asked again after each day, so a long catch-up picks up the days that fell due
    meanwhile; a day is run at most once per (possibly simulated) today within one call.
    """
    outcomes: list[DayOutcome] = []
    tried: set[tuple[date, date]] = set()
    stages = [hook_stage(h) for h in hooks]
    while not sup.stop.is_set():
        today = clock.today()
        due = due_days(sup.engine, sup.settings, today)
        due += [(d, "hooks") for d in hooks_due(sup.engine, sup.settings, today, stages)]
        todo = sorted((d, why) for d, why in due if (d, today) not in tried)
        if not todo:
            break
        day, why = todo[0]
        tried.add((day, today))
        if why == "hooks":
            log.info("hooks due", extra={"date": str(day), "today": str(today)})
            outcome = run_hooks(sup, day, hooks=hooks)
        else:
            log.info("day due", extra={"date": str(day), "reason": why, "today": str(today)})
            outcome = run_day(sup, day, today=today, hooks=hooks)
        outcomes.append(outcome)
        if on_day is not None:
            on_day(outcome)
    return outcomes


# -- the ingest job -------------------------------------------------------------------------------

_STATIONS: Final = "_stations.csv"
_OBSERVATIONS: Final = "_observations.csv"


@dataclass(frozen=True)
class IngestPlan:
    """What a drop folder holds: ISMN material (the folder itself) and generic CSV pairs."""

    folder: Path
    csv_pairs: tuple[tuple[Path | None, Path | None], ...]


def plan_drop_folder(folder: Path) -> IngestPlan:
    """Pair ``NAME_stations.csv`` with ``NAME_observations.csv`` (a symbolic link is refused with a
    warning); ISMN files are found by the loader itself (``*.stm``, ``*_static_variables.csv``,
    zips; other files are ignored)."""
    pairs: dict[Path, list[Path | None]] = {}
    for path in sorted(folder.rglob("*.csv")):
        if path.is_symlink():  # as the ISMN loader does: a link could point anywhere
            log.warning("symbolic link in the drop folder refused", extra={"path": str(path)})
            continue
        if not path.is_file():
            continue
        for suffix, slot in ((_STATIONS, 0), (_OBSERVATIONS, 1)):
            if path.name.endswith(suffix):
                key = path.with_name(path.name[: -len(suffix)])
                pairs.setdefault(key, [None, None])[slot] = path
    return IngestPlan(folder, tuple((p[0], p[1]) for _, p in sorted(pairs.items())))


def folder_signature(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """(path, size, mtime) of every file: unchanged means nothing new to load."""
    out = []
    for path in sorted(folder.rglob("*")):
        try:
            st = path.lstat()
        except OSError:
            continue
        if path.is_file() and not path.is_symlink():
            out.append((str(path.relative_to(folder)), st.st_size, st.st_mtime_ns))
    return tuple(out)


@dataclass(frozen=True)
class IngestOutcome:
    """What one ingest run came to (counts over the files of this run)."""

    run_date: date
    status: str
    files: dict[str, int] = field(default_factory=dict)
    rows_loaded: int = 0
    rows_rejected: int = 0
    hooks_failed: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class IngestPayload:
    run_date: date
    hooks: tuple[Hook, ...]


def _ingest_job(
    engine: Engine, settings: Settings, reporter: StageReporter, payload: IngestPayload
) -> IngestOutcome:
    """Load the drop folder (in the child process); unchanged files are skipped by the loader."""
    from service import ingest

    assert settings.ingest_dir is not None
    run_date = payload.run_date
    reporter.begin(STAGE_INGEST)
    _start(engine, settings, run_date, STAGE_INGEST)
    try:
        plan = plan_drop_folder(settings.ingest_dir)
        summaries = ingest.ingest_ismn(engine, [plan.folder], domain=settings.domain)
        for stations, observations in plan.csv_pairs:
            summaries += ingest.ingest_csv(
                engine, stations=stations, observations=observations, domain=settings.domain
            )
    except Exception as err:
        error = f"{type(err).__name__}: {err}"
        log.exception("ingest failed", extra={"stage": STAGE_INGEST})
        _finish(engine, settings, run_date, STAGE_INGEST, "FAILED", error=error)
        reporter.end(STAGE_INGEST, "FAILED", error)
        return IngestOutcome(run_date, "FAILED", error=error)
    files: dict[str, int] = {}
    for s in summaries:
        files[s.status] = files.get(s.status, 0) + 1
    fresh = [s for s in summaries if s.status != ingest.SKIPPED]
    loaded = sum(s.rows_loaded for s in fresh)
    rejected = sum(s.rows_rejected for s in fresh)
    status = {0: "OK", 1: "DEGRADED"}.get(ingest.exit_code(summaries), "FAILED")
    errors = [f"{s.path}: {s.error}" for s in summaries if s.status == ingest.FAILED]
    failures = "; ".join(errors)[:2000] or None
    details = {"files": files, "rows_loaded": loaded, "rows_rejected": rejected}
    _finish(engine, settings, run_date, STAGE_INGEST, status, error=failures, details=details)
    reporter.end(STAGE_INGEST, status, failures)
    failed = [
        hook_stage(h)
        for h in payload.hooks
        if not reporter.stop_requested() and not run_hook(engine, settings, h, run_date, reporter)
    ]
    return IngestOutcome(run_date, status, files, loaded, rejected, tuple(failed), failures)


def run_ingest(sup: Supervisor, *, today: date, hooks: Sequence[Hook] = ()) -> IngestOutcome:
    """Load what is new in the drop folder (``ingest_dir``) in the worker, then run the hooks."""
    folder = sup.settings.ingest_dir
    if folder is None or not folder.is_dir():
        raise SmapdsError(f"ingest folder {folder} does not exist")
    run = sup.run(_ingest_job, IngestPayload(today, tuple(hooks)), run_date=today)
    if run.result is not None:
        return run.result
    return IngestOutcome(today, "FAILED", error=run.failure)
