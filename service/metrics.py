"""The service's Prometheus metrics, in a registry of their own.

Two kinds. *Instruments* are fed as things happen in this process: stage durations (a histogram
whose buckets reach hours; the supervisor's one timer feeds it and the log line alike), stage runs
by status, and fetch failures by reason. *State* is rebuilt from the database (the run ledger,
products, the granule inventory, ingest_files and validation_stats) at start-up and after every
job, so a restart shows the same values as before it: each refresh builds a new immutable
snapshot that scrapes render, and a failed refresh keeps the last one (with
``smapds_database_up 0``). No label names a station; labels are stages, statuses, inputs and
estimates, all small sets.

Names carry the ``smapds_`` prefix and their unit (``_seconds``, ``_timestamp_seconds``,
``_ratio``, ``_m3_per_m3``; counts have none).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Connection, Engine

from service import __version__
from service.pipeline import DayOutcome, StageTiming, day_census, one_line
from service.settings import Settings
from service.sources import token_provider

log = logging.getLogger(__name__)

DURATION_BUCKETS: Final = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800)


@dataclass(frozen=True)
class Snapshot:
    """The database-derived state at one refresh."""

    database_up: bool = False
    refreshed_at: float | None = None
    last_success: dict[str, float] = field(default_factory=dict)
    ledger_days: dict[tuple[str, str], int] = field(default_factory=dict)
    days: dict[str, int] = field(default_factory=dict)
    latest_product: float | None = None
    valid_ratio: float | None = None
    gap_filled_ratio: float | None = None
    granules: dict[tuple[str, str], int] = field(default_factory=dict)
    failing: dict[tuple[str, str], int] = field(default_factory=dict)
    observations_loaded: int | None = None
    observations_rejected: int | None = None
    ingest_files: dict[str, int] = field(default_factory=dict)
    validation: dict[tuple[str, str], tuple[int, float | None, float | None, float | None]] = field(
        default_factory=dict
    )
    token_expiry: float | None = None


class ServiceMetrics(Collector):
    """All metrics of one ``smapds serve`` process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage_duration = Histogram(
            "smapds_stage_duration_seconds",
            "Wall time of a pipeline stage (fetch, product, ingest, hooks), per run.",
            ["stage"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.stage_runs = Counter(
            "smapds_stage_runs",
            "Stage runs finished by this process, by outcome status.",
            ["stage", "status"],
            registry=self.registry,
        )
        self.fetch_failures = Counter(
            "smapds_fetch_failures",
            "Inputs that could not be fetched for a day: reason authentication (credentials "
            "refused) or download (network, server, not found after listing).",
            ["source", "reason"],
            registry=self.registry,
        )
        self._snapshot = Snapshot()
        self._scheduler_running = False
        self._lock = threading.Lock()
        self.registry.register(self)

    # -- instruments ------------------------------------------------------------------------------

    def observe_stage(self, timing: StageTiming) -> None:
        if timing.seconds > 0:
            self.stage_duration.labels(timing.stage).observe(timing.seconds)
        self.stage_runs.labels(timing.stage, timing.status).inc()

    def observe_day(self, outcome: DayOutcome) -> None:
        for r in outcome.fetched:
            if r.status == "auth_failed":
                self.fetch_failures.labels(r.source, "authentication").inc()
            elif r.failed:
                self.fetch_failures.labels(r.source, "download").inc(r.failed)

    def set_scheduler_running(self, running: bool) -> None:
        self._scheduler_running = running

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    # -- state from the database ------------------------------------------------------------------

    def refresh(self, engine: Engine, settings: Settings, today: date) -> bool:
        """Rebuild the state from the database; False (and database_up 0) when it fails."""
        with self._lock:
            expiry = earthdata_token_expiry(settings)
            try:
                with engine.connect() as conn:
                    snap = _read_state(conn, settings, today, expiry)
            except sa.exc.SQLAlchemyError as err:
                log.warning("metrics not refreshed", extra={"error": one_line(err)})
                old = self._snapshot
                self._snapshot = Snapshot(**{**old.__dict__, "database_up": False})
                return False
            self._snapshot = snap
            return True

    def mark_database(self, up: bool) -> None:
        """Record the latest health check's verdict without a full refresh."""
        old = self._snapshot
        if old.database_up != up:
            self._snapshot = Snapshot(**{**old.__dict__, "database_up": up})

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot
        yield _labelled("smapds_build_info", "smapds version.", ("version",), {(__version__,): 1})
        yield _gauge(
            "smapds_database_up", "1 when the database answered the last check.", s.database_up
        )
        yield _gauge(
            "smapds_scheduler_running", "1 while the job scheduler runs.", self._scheduler_running
        )
        if s.refreshed_at is not None:
            yield _gauge(
                "smapds_state_refresh_timestamp_seconds",
                "When the gauges were last rebuilt from the database.",
                s.refreshed_at,
            )
        yield _labelled(
            "smapds_stage_last_success_timestamp_seconds",
            "When a stage last finished OK or DEGRADED (any day), from the run ledger.",
            ("stage",),
            {(k,): v for k, v in s.last_success.items()},
        )
        yield _labelled(
            "smapds_ledger_dates",
            "Days in the run ledger by stage and latest status.",
            ("stage", "status"),
            s.ledger_days,
        )
        yield _labelled(
            "smapds_product_dates",
            "The service's days (first date to today minus the lag) by state: ok, degraded, "
            "pending (to be tried or re-checked), gap (given up without a product).",
            ("state",),
            {(k,): v for k, v in s.days.items()},
        )
        for name, doc, value in (
            (
                "smapds_product_latest_date_timestamp_seconds",
                "The newest product day (00:00 UTC of that day).",
                s.latest_product,
            ),
            (
                "smapds_product_valid_ratio",
                "Fraction of land pixels with a value in the newest product.",
                s.valid_ratio,
            ),
            (
                "smapds_product_gap_filled_ratio",
                "Fraction of land pixels gap-filled (no valid 36 km retrieval) in the newest product.",
                s.gap_filled_ratio,
            ),
            (
                "smapds_earthdata_token_expiry_timestamp_seconds",
                "Expiry (exp claim) of the configured Earthdata token.",
                s.token_expiry,
            ),
        ):
            if value is not None:
                yield _gauge(name, doc, value)
        yield _labelled(
            "smapds_granules",
            "Input granules in the inventory by input and status (fetched, quarantined, pending, gap).",
            ("source", "status"),
            s.granules,
        )
        yield _labelled(
            "smapds_granules_failing",
            "Pending granules whose last attempt failed, by input and reason (authentication, "
            "discovery, download).",
            ("source", "reason"),
            s.failing,
        )
        if s.observations_loaded is not None:
            for name, doc, n in (
                (
                    "smapds_observations_ingested",
                    "In situ observation rows loaded (files as last loaded).",
                    s.observations_loaded,
                ),
                (
                    "smapds_observations_rejected",
                    "In situ observation rows rejected (files as last loaded).",
                    s.observations_rejected or 0,
                ),
            ):
                c = CounterMetricFamily(name, doc)
                c.add_metric([], n)
                yield c
        yield _labelled(
            "smapds_ingest_files",
            "In situ files recorded by the loader, by status.",
            ("status",),
            {(k,): v for k, v in s.ingest_files.items()},
        )
        families = {
            "n": _family("smapds_validation_pairs", "Pairs behind the domain-wide statistics."),
            "r": _family("smapds_validation_r", "Domain-wide Pearson R against in situ."),
            "rmse": _family(
                "smapds_validation_rmse_m3_per_m3", "Domain-wide RMSE against in situ."
            ),
            "ubrmse": _family(
                "smapds_validation_ubrmse_m3_per_m3", "Domain-wide ubRMSE against in situ."
            ),
        }
        for (estimate, window), (n, r, rmse, ubrmse) in sorted(s.validation.items()):
            labels = [estimate, window]
            families["n"].add_metric(labels, n)
            for key, value in (("r", r), ("rmse", rmse), ("ubrmse", ubrmse)):
                if value is not None:
                    families[key].add_metric(labels, value)
        yield from families.values()


def _family(name: str, doc: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        name,
        doc
        + " estimate: product_1km, model_1km, coarse_36km, coarse_9km; window_days: 0 = all time.",
        labels=["estimate", "window_days"],
    )


def _gauge(name: str, doc: str, value: float | bool) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))


def _labelled(
    name: str, doc: str, labels: tuple[str, ...], samples: Mapping[Any, float]
) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=list(labels))
    for key, v in sorted(samples.items()):
        g.add_metric(list(key), float(v))
    return g


def _read_state(
    conn: Connection, settings: Settings, today: date, token_expiry: float | None
) -> Snapshot:
    d = {"d": settings.domain}
    last_success = {
        r.stage: float(r.ts)
        for r in conn.execute(
            sa.text("""
            SELECT stage, extract(epoch FROM max(finished_at)) AS ts FROM smapds.run_ledger
             WHERE domain = :d AND status IN ('OK', 'DEGRADED') AND finished_at IS NOT NULL
             GROUP BY stage
        """),
            d,
        )
    }
    ledger_days = {
        (r.stage, r.status): int(r.n)
        for r in conn.execute(
            sa.text(
                "SELECT stage, status, count(*) AS n FROM smapds.run_ledger WHERE domain = :d "
                "GROUP BY stage, status"
            ),
            d,
        )
    }
    latest = conn.execute(
        sa.text("""
        SELECT product_date, valid_fraction, gap_filled_fraction FROM smapds.products
         WHERE domain = :d ORDER BY product_date DESC LIMIT 1
    """),
        d,
    ).first()
    granules = {
        (r.source, r.status): int(r.n)
        for r in conn.execute(
            sa.text("SELECT source, status, count(*) AS n FROM smapds.granules GROUP BY 1, 2")
        )
    }
    failing = {
        (r.source, r.reason): int(r.n)
        for r in conn.execute(
            sa.text("""
            SELECT source,
                   CASE WHEN error LIKE 'authentication failed%' THEN 'authentication'
                        WHEN error LIKE 'discovery failed%' THEN 'discovery'
                        ELSE 'download' END AS reason,
                   count(*) AS n
              FROM smapds.granules WHERE status = 'pending' AND error IS NOT NULL
             GROUP BY 1, 2
        """)
        )
    }
    obs = conn.execute(
        sa.text("""
        SELECT coalesce(sum(rows_loaded), 0) AS loaded, coalesce(sum(rows_rejected), 0) AS rejected
          FROM smapds.ingest_files
         WHERE format IN ('ismn_header_values', 'ismn_ceop', 'csv_observations')
    """)
    ).one()
    files = {
        r.status: int(r.n)
        for r in conn.execute(
            sa.text("SELECT status, count(*) AS n FROM smapds.ingest_files GROUP BY status")
        )
    }
    return Snapshot(
        database_up=True,
        refreshed_at=time.time(),
        last_success=last_success,
        ledger_days=ledger_days,
        days=day_census(conn, settings, today),
        latest_product=None if latest is None else _midnight(latest.product_date),
        valid_ratio=None if latest is None else float(latest.valid_fraction),
        gap_filled_ratio=None if latest is None else float(latest.gap_filled_fraction),
        granules=granules,
        failing=failing,
        observations_loaded=int(obs.loaded),
        observations_rejected=int(obs.rejected),
        ingest_files=files,
        validation=_validation(conn, settings.domain),
        token_expiry=token_expiry,
    )


def _validation(
    conn: Connection, domain: str
) -> dict[tuple[str, str], tuple[int, float | None, float | None, float | None]]:
    """Domain-wide statistics per estimate and window (sql/006); empty where the table is not."""
    if conn.execute(sa.text("SELECT to_regclass('smapds.validation_stats')")).scalar() is None:
        return {}
    try:
        with conn.begin_nested():
            rows = conn.execute(
                sa.text("""
                SELECT estimate, window_days, n, r, rmse, ubrmse FROM smapds.validation_stats
                 WHERE domain = :d AND scope = 'domain' AND status = 'OK'
            """),
                {"d": domain},
            ).all()
    except sa.exc.ProgrammingError as err:  # another layout than this code knows
        log.warning("validation statistics not read", extra={"error": one_line(err)})
        return {}
    return {
        (r.estimate, str(r.window_days)): (int(r.n), _opt(r.r), _opt(r.rmse), _opt(r.ubrmse))
        for r in rows
    }


def earthdata_token_expiry(settings: Settings) -> float | None:
    """The ``exp`` claim of the Earthdata token when it is a JWT (Earthdata Login's are); the
    token itself is never logged or kept."""
    provider = token_provider(settings)
    if provider is None:
        return None
    try:
        token = provider(False)
    except Exception:  # a missing or unreadable file: the fetch stage reports it
        return None
    return jwt_expiry(token) if token else None


def jwt_expiry(token: str) -> float | None:
    """``exp`` (seconds since the epoch) of a JWT's payload, unverified; None if not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        exp = payload.get("exp") if isinstance(payload, dict) else None
    except ValueError:
        return None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def _midnight(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _opt(v: float | None) -> float | None:
    return None if v is None else float(v)
