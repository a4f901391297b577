"""``smapds serve``: the long-running service, as systemd runs it.

Start-up: the HTTP endpoint (probes answer 503 until ready), the database (the embedded cluster is
brought up and migrated; an external one must carry the schema this software knows), crash
recovery (RUNNING ledger rows whose heartbeat stopped are closed as interrupted, which makes their
days due again), the metrics' state rebuilt from the database, then the jobs and ``READY=1``.

Jobs (APScheduler 3, one worker thread, so jobs never overlap; ``coalesce``, ``max_instances=1``,
a misfire grace of hours, explicit ids): ``product`` at ``product_cron`` (UTC) and once at start,
running every due day oldest first (``service.pipeline``); ``ingest`` at ``ingest_cron`` when
``ingest_dir`` is set, loading what changed in the drop folder. With the accelerated clock
(``sim_*`` settings) both run every few wall seconds instead.

The main loop checks the database every few seconds (for ``/healthz`` and the metrics), feeds the
systemd watchdog while the scheduler runs, and rebuilds the metrics' state every minute. SIGTERM
or SIGINT: the running job ends at its next safe point (the current stage finishes, within
``stop_grace_seconds``), the scheduler stops, ``STOPPING=1``, exit 0.

Post-product and post-ingest hooks (collocation, validation refresh) are lists of
``Callable[[Engine, Settings, date], None]`` handed to :func:`serve`; :data:`PRODUCT_HOOKS` and
:data:`INGEST_HOOKS` are the defaults ``smapds serve`` uses. A hook runs in the job's child
process, so it must be a module-level function (picklable by name).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from types import FrameType
from typing import Final

import sqlalchemy as sa
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine

from etl.errors import SchemaError, SmapdsError
from service import __version__
from service.clock import Clock, SimulatedClock, clock_from_settings
from service.collocate import collocate, collocate_ingested
from service.db import Database, check_schema, default_sql_dir
from service.http import Health, HttpEndpoint
from service.metrics import ServiceMetrics
from service.notify import Notifier
from service.pipeline import (
    DayOutcome,
    Hook,
    Supervisor,
    folder_signature,
    one_line,
    recover_stale,
    run_due_days,
    run_ingest,
)
from service.settings import Settings
from service.validate import validate

log = logging.getLogger(__name__)

PRODUCT_HOOKS: list[Hook] = [collocate, validate]
"""Run after each day's product, in order: collocation with the stations, the validation refresh."""
INGEST_HOOKS: list[Hook] = [collocate_ingested, validate]
"""Run after each ingest run: re-collocate the product days the new observations touch, refresh."""

PRODUCT_JOB: Final = "product"
INGEST_JOB: Final = "ingest"
MISFIRE_GRACE_SECONDS: Final = 6 * 3600
REFRESH_SECONDS: Final = 60.0
DB_CHECK_SECONDS: Final = 5.0


class Service:
    """One ``smapds serve`` process."""

    def __init__(
        self,
        settings: Settings,
        *,
        product_hooks: Sequence[Hook],
        ingest_hooks: Sequence[Hook],
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.product_hooks = tuple(product_hooks)
        self.ingest_hooks = tuple(ingest_hooks)
        self.clock: Clock = clock_from_settings(settings)
        self.stop = threading.Event()
        self.notifier = notifier or Notifier()
        self.metrics = ServiceMetrics()
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": MISFIRE_GRACE_SECONDS,
            },
        )
        self.health = Health(scheduler_running=lambda: bool(self.scheduler.running))
        self.http = HttpEndpoint(
            settings.http_address,
            settings.http_port,
            registry=self.metrics.registry,
            health=self.health,
        )
        self.db = Database.from_settings(settings, sql_dir=default_sql_dir())
        self._engine: Engine | None = None
        self._supervisor: Supervisor | None = None
        self._started_cluster = False
        self._ingest_seen: tuple[tuple[str, int, int], ...] | None = None
        self._signal: int | None = None

    @property
    def engine(self) -> Engine:
        assert self._engine is not None, "the database is not connected yet"
        return self._engine

    @property
    def supervisor(self) -> Supervisor:
        assert self._supervisor is not None, "the database is not connected yet"
        return self._supervisor

    # -- the process --------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; 0 after a clean stop, 1 when start-up failed."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        _quiet_apscheduler()
        log.info(
            "service starting",
            extra={
                "version": __version__,
                "domain": self.settings.domain,
                "clock": type(self.clock).__name__,
                "today": str(self.clock.today()),
            },
        )
        self.http.start()
        try:
            if not self._connect():
                return 0 if self.stop.is_set() else 1
            recover_stale(self.engine, self.settings)
            self._refresh()
            self._schedule()
            self.health.ready = True
            self.metrics.set_scheduler_running(True)
            self.notifier.ready(f"serving {self.settings.domain}; today {self.clock.today()}")
            log.info("service ready", extra={"port": self.http.port})
            self._main_loop()
            return 0
        except SmapdsError as err:
            log.error("service cannot run", extra={"error": str(err)})
            return 1
        finally:
            self._shutdown()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only a plain assignment here: a handler that takes a lock (Event.set, logging) can
        # deadlock against the code it interrupted. The main thread acts on it in _pause().
        self._signal = signum

    def _pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True (and the stop event set) once a stop was requested."""
        end = time.monotonic() + seconds
        while True:
            if self._signal is not None and not self.stop.is_set():
                log.info("stop requested", extra={"signal": signal.Signals(self._signal).name})
                self.stop.set()
            if self.stop.is_set():
                return True
            left = end - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(0.2, left))

    def _connect(self) -> bool:
        """Bring up (embedded) or reach the database and check its schema; retried until it
        answers or a stop is requested. SchemaError (another schema version) is fatal."""
        while not self.stop.is_set():
            try:
                if self.db.cluster is not None:  # start it if needed, apply new migrations
                    was_running = self.db.cluster.is_running()
                    self.db.up()
                    self._started_cluster = not was_running
                self._engine = self._engine or self.db.engine("writer")
                with self.engine.connect() as conn:
                    check_schema(conn, self.db.sql_dir)
                self._supervisor = Supervisor(
                    self.engine, self.settings, self.stop, self.metrics.observe_stage
                )
                self.health.database_checked(True)
                self.metrics.mark_database(True)
                return True
            except SchemaError:
                raise
            except SmapdsError as err:
                self._waiting(str(err))
            except sa.exc.SQLAlchemyError as err:
                self._waiting(one_line(err))
            self._pause(DB_CHECK_SECONDS)
        return False

    def _waiting(self, error: str) -> None:
        self.health.database_checked(False, error)
        log.warning("waiting for the database", extra={"error": error})
        self.notifier.send(STATUS=f"waiting for the database: {error}"[:200], WATCHDOG="1")

    def _schedule(self) -> None:
        now = datetime.now(UTC)
        if isinstance(self.clock, SimulatedClock):
            every = max(0.5, min(5.0, self.clock.day_seconds / 4))
            product_trigger: object = IntervalTrigger(seconds=every, timezone=UTC)
            ingest_trigger: object = IntervalTrigger(seconds=every, timezone=UTC)
        else:
            product_trigger = CronTrigger.from_crontab(self.settings.product_cron, timezone=UTC)
            ingest_trigger = CronTrigger.from_crontab(self.settings.ingest_cron, timezone=UTC)
        self.scheduler.add_job(
            self._product_job,
            product_trigger,
            id=PRODUCT_JOB,
            name="daily product (catch-up from the run ledger)",
            next_run_time=now,
            replace_existing=True,
        )
        if self.settings.ingest_dir is not None:
            self.scheduler.add_job(
                self._ingest_job,
                ingest_trigger,
                id=INGEST_JOB,
                name="in situ ingest from the drop folder",
                next_run_time=now,
                replace_existing=True,
            )
        self.scheduler.start()

    def _main_loop(self) -> None:
        watchdog = self.notifier.watchdog_seconds
        tick = min(DB_CHECK_SECONDS, watchdog / 3) if watchdog else DB_CHECK_SECONDS
        next_refresh = time.monotonic() + REFRESH_SECONDS
        while not self._pause(tick):
            self._check_database()
            running = bool(self.scheduler.running)
            self.metrics.set_scheduler_running(running)
            if running:
                self.notifier.watchdog()
            if time.monotonic() >= next_refresh:
                next_refresh = time.monotonic() + REFRESH_SECONDS
                self._refresh()

    def _check_database(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as err:
            self.health.database_checked(False, one_line(err))
            self.metrics.mark_database(False)
            return
        self.health.database_checked(True)
        self.metrics.mark_database(True)

    def _shutdown(self) -> None:
        self.stop.set()
        self.health.stopping = True
        self.notifier.stopping("stopping: finishing the current stage")
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)  # the job returns at its next safe point
        if self._supervisor is not None:
            self._supervisor.close()
        self.metrics.set_scheduler_running(False)
        self.http.stop()
        if self._engine is not None:
            self._engine.dispose()
        if self._started_cluster:
            self.db.down()
        log.info("service stopped")

    # -- the jobs -----------------------------------------------------------------------------

    def _product_job(self) -> None:
        try:
            run_due_days(
                self.supervisor, self.clock, hooks=self.product_hooks, on_day=self._day_done
            )
        except Exception:  # the job must not take the scheduler down; the next run retries
            log.exception("product job failed")
        self._refresh()

    def _day_done(self, outcome: DayOutcome) -> None:
        self.metrics.observe_day(outcome)
        self._refresh()

    def _ingest_job(self) -> None:
        folder = self.settings.ingest_dir
        if folder is None or self.stop.is_set():
            return
        if not folder.is_dir():
            log.warning("ingest folder missing", extra={"path": str(folder)})
            return
        seen = folder_signature(folder)
        if seen == self._ingest_seen:
            return  # nothing new since the last run (the loader would skip everything anyway)
        try:
            outcome = run_ingest(self.supervisor, today=self.clock.today(), hooks=self.ingest_hooks)
        except Exception:
            log.exception("ingest job failed")
            return
        if outcome.status != "FAILED":
            self._ingest_seen = seen
        self._refresh()

    def _refresh(self) -> None:
        if self._engine is not None:
            self.metrics.refresh(self.engine, self.settings, self.clock.today())


def _quiet_apscheduler() -> None:
    """APScheduler logs every run at INFO and every run skipped while the previous one still
    works at WARNING; with one worker and coalescing that is normal, and our jobs log what they
    do. Its errors still come through."""
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("apscheduler.scheduler").addFilter(
        lambda record: "maximum number of running instances" not in record.getMessage()
    )


def serve(
    settings: Settings,
    *,
    product_hooks: Sequence[Hook] | None = None,
    ingest_hooks: Sequence[Hook] | None = None,
) -> int:
    """Run the service until stopped; the exit code."""
    service = Service(
        settings,
        product_hooks=PRODUCT_HOOKS if product_hooks is None else product_hooks,
        ingest_hooks=INGEST_HOOKS if ingest_hooks is None else ingest_hooks,
    )
    return service.run()
