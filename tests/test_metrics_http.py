"""The service's metrics and HTTP endpoint: state rebuilt from the database, /healthz and /readyz,
the exposition accepted by ``promtool check metrics``, and a real Prometheus (Debian's package,
on loopback) scraping it with ``up`` 1."""

from __future__ import annotations

import base64
import json
import logging
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine

from service.http import Health, HttpEndpoint
from service.metrics import ServiceMetrics, earthdata_token_expiry, jwt_expiry
from service.pipeline import DayOutcome, SourceResult, StageTiming
from service.settings import Settings

TODAY = date(2024, 4, 12)


def _samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The exposition as {(sample name, sorted labels): value}."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def _get(port: int, path: str, accept: str | None = None) -> tuple[int, str, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if accept:
        req.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


@pytest.fixture(scope="module")
def state(writer: Engine) -> Settings:
    """A ledger, products, granules, ingested files and validation statistics, as the service
    and the other jobs would have left them."""
    settings = Settings(domain="demo", service_first_date=date(2024, 4, 1), product_lag_days=2)
    with writer.begin() as conn:
        conn.execute(
            sa.text("""
            INSERT INTO smapds.models (name, kind, path, sha256, domain, train_start, train_end,
                                       features, active)
            VALUES ('rf-test', 'rf', 'models/rf-test', repeat('a', 64), 'demo', '2024-01-01',
                    '2024-03-31', '[]', true)
        """)
        )
        for k, status in enumerate(["OK", "OK", "DEGRADED", "OK"]):
            day = date(2024, 4, 1 + k)
            conn.execute(
                sa.text("""
                INSERT INTO smapds.products (domain, product_date, path, sha256, stac_path,
                    model_name, model_sha256, status, valid_fraction, gap_filled_fraction,
                    footprint, inputs, software_version)
                VALUES ('demo', :d, 'p.tif', repeat('b', 64), 'p.json', 'rf-test', repeat('a', 64),
                        :st, 0.97, :gap, ST_MakeEnvelope(114, 34, 118, 37, 4326), '{}', 'test')
            """),
                {"d": day, "st": status, "gap": 0.1 * (k + 1)},
            )
            for stage in ("fetch", "product"):
                conn.execute(
                    sa.text("""
                    INSERT INTO smapds.run_ledger (domain, run_date, stage, status, attempts,
                        started_at, finished_at, details)
                    VALUES ('demo', :d, :s, :st, 1, '2024-04-10T00:00Z', '2024-04-10T00:05Z',
                            CAST(:det AS jsonb))
                """),
                    {
                        "d": day,
                        "s": stage,
                        "st": status,
                        "det": json.dumps({"as_of": "2024-04-06"}),
                    },
                )
        # 2024-04-05: tried while still inside the latency window, no product yet: pending
        conn.execute(
            sa.text("""
            INSERT INTO smapds.run_ledger (domain, run_date, stage, status, attempts, started_at,
                                           finished_at, details)
            VALUES ('demo', '2024-04-05', 'fetch', 'PENDING', 1, '2024-04-10T00:00Z',
                    '2024-04-10T00:01Z', '{"as_of": "2024-04-07"}')
        """)
        )
        for source, day, gid, status, error in (
            ("SPL3SMP", "2024-04-01", "a.h5", "fetched", None),
            ("SPL3SMP", "2024-04-02", "b.h5", "quarantined", "checksum mismatch"),
            ("SPL3SMP", "2024-04-05", "*", "pending", "authentication failed: 401"),
            ("MCD43A3", "2024-04-05", "*", "pending", "discovery failed: 503"),
        ):
            conn.execute(
                sa.text("""
                INSERT INTO smapds.granules (source, granule_date, granule_id, product, status,
                                             path, sha256, error)
                VALUES (:s, :d, :g, :s, :st, CASE WHEN :st = 'fetched' THEN 'x' END,
                        CASE WHEN :st = 'fetched' THEN repeat('c', 64) END, :e)
            """),
                {"s": source, "d": day, "g": gid, "st": status, "e": error},
            )
        conn.execute(
            sa.text("""
            INSERT INTO smapds.ingest_files (path, format, rows_read, rows_loaded, rows_rejected,
                                             status)
            VALUES ('/drop/a.stm', 'ismn_header_values', 120, 115, 5, 'DEGRADED'),
                   ('/drop/b.stm', 'ismn_ceop', 40, 40, 0, 'OK'),
                   ('/drop/s.csv', 'csv_stations', 3, 3, 0, 'OK')
        """)
        )
        conn.execute(
            sa.text("""
            INSERT INTO smapds.validation_stats (domain, scope, scope_key, window_days, estimate,
                window_end, n, r, rmse, ubrmse, status, stations)
            VALUES ('demo', 'domain', 'demo', 30, 'product_1km', '2024-04-04', 400, 0.71,
                    0.051, 0.042, 'OK', 12),
                   ('demo', 'domain', 'demo', 30, 'coarse_36km', '2024-04-04', 400, 0.62,
                    0.06, 0.05, 'OK', 12),
                   ('demo', 'station', '7', 30, 'product_1km', '2024-04-04', 30, 0.9,
                    0.02, 0.02, 'OK', 1)
        """)
        )
    return settings


@pytest.fixture
def endpoint(state: Settings, writer: Engine) -> Iterator[tuple[ServiceMetrics, Health, int]]:
    metrics = ServiceMetrics()
    assert metrics.refresh(writer, state, TODAY)
    running = {"on": True}
    health = Health(scheduler_running=lambda: running["on"])
    http = HttpEndpoint("127.0.0.1", 0, registry=metrics.registry, health=health)
    http.start()
    try:
        yield metrics, health, http.port
    finally:
        http.stop()


def test_metrics_are_rebuilt_from_the_database(
    endpoint: tuple[ServiceMetrics, Health, int],
) -> None:
    metrics, _, port = endpoint
    metrics.set_scheduler_running(True)
    metrics.observe_stage(StageTiming("product", TODAY, "OK", 42.0))
    metrics.observe_day(
        DayOutcome(
            TODAY,
            "PENDING",
            fetched=(
                SourceResult("SPL3SMP", TODAY, "auth_failed", 0, 0, 1),
                SourceResult("MCD43A3", TODAY, "pending", 0, 0, 2),
            ),
        )
    )
    status, ctype, body = _get(port, "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    got = _samples(body)
    expected = {
        ("smapds_product_dates", (("state", "ok"),)): 3,
        ("smapds_product_dates", (("state", "degraded"),)): 1,
        ("smapds_product_dates", (("state", "pending"),)): 6,  # 04-05 and the untried 04-06..10
        ("smapds_product_dates", (("state", "gap"),)): 0,
        ("smapds_product_latest_date_timestamp_seconds", ()): datetime(
            2024, 4, 4, tzinfo=UTC
        ).timestamp(),
        ("smapds_product_valid_ratio", ()): 0.97,
        ("smapds_product_gap_filled_ratio", ()): 0.4,
        ("smapds_ledger_dates", (("stage", "fetch"), ("status", "PENDING"))): 1,
        ("smapds_ledger_dates", (("stage", "product"), ("status", "OK"))): 3,
        ("smapds_stage_last_success_timestamp_seconds", (("stage", "product"),)): datetime(
            2024, 4, 10, 0, 5, tzinfo=UTC
        ).timestamp(),
        ("smapds_granules", (("source", "SPL3SMP"), ("status", "quarantined"))): 1,
        ("smapds_granules_failing", (("reason", "authentication"), ("source", "SPL3SMP"))): 1,
        ("smapds_granules_failing", (("reason", "discovery"), ("source", "MCD43A3"))): 1,
        ("smapds_observations_ingested_total", ()): 155,
        ("smapds_observations_rejected_total", ()): 5,
        ("smapds_ingest_files", (("status", "DEGRADED"),)): 1,
        ("smapds_validation_r", (("estimate", "product_1km"), ("window_days", "30"))): 0.71,
        ("smapds_validation_r", (("estimate", "coarse_36km"), ("window_days", "30"))): 0.62,
        (
            "smapds_validation_ubrmse_m3_per_m3",
            (("estimate", "product_1km"), ("window_days", "30")),
        ): 0.042,
        ("smapds_database_up", ()): 1,
        ("smapds_scheduler_running", ()): 1,
        ("smapds_fetch_failures_total", (("reason", "authentication"), ("source", "SPL3SMP"))): 1,
        ("smapds_fetch_failures_total", (("reason", "download"), ("source", "MCD43A3"))): 2,
        ("smapds_stage_duration_seconds_bucket", (("le", "30.0"), ("stage", "product"))): 0,
        ("smapds_stage_duration_seconds_bucket", (("le", "60.0"), ("stage", "product"))): 1,
        ("smapds_stage_duration_seconds_bucket", (("le", "28800.0"), ("stage", "product"))): 1,
        ("smapds_stage_runs_total", (("stage", "product"), ("status", "OK"))): 1,
    }
    assert {k: got.get(k) for k in expected} == pytest.approx(expected)
    assert "station" not in body  # no per-station labels (the station row is not exposed)


def test_state_survives_a_restart_and_a_lost_database(state: Settings, writer: Engine) -> None:
    before, after = ServiceMetrics(), ServiceMetrics()
    before.refresh(writer, state, TODAY)
    after.refresh(writer, state, TODAY)
    keep = ("days", "latest_product", "granules", "ledger_days", "validation", "last_success")
    assert {k: getattr(before.snapshot, k) for k in keep} == {
        k: getattr(after.snapshot, k) for k in keep
    }
    broken = sa.create_engine("postgresql://nobody@/nowhere?host=/nonexistent&port=1")
    assert not after.refresh(broken, state, TODAY)
    assert after.snapshot.database_up is False and after.snapshot.days == before.snapshot.days


def test_healthz_and_readyz_say_why(endpoint: tuple[ServiceMetrics, Health, int]) -> None:
    _, health, port = endpoint
    status, ctype, body = _get(port, "/healthz")
    assert status == 503 and ctype == "application/json"
    assert json.loads(body)["reason"] == "database: not checked yet"
    health.database_checked(True)
    assert _get(port, "/healthz")[0] == 200
    health.database_checked(False, "connection refused")
    status, _, body = _get(port, "/healthz")
    assert status == 503 and "connection refused" in json.loads(body)["reason"]
    health.database_checked(True)
    health.scheduler_running = lambda: False
    status, _, body = _get(port, "/healthz")
    assert status == 503 and json.loads(body)["reason"] == "scheduler not running"

    assert json.loads(_get(port, "/readyz")[2]) == {"status": "starting"}
    health.ready = True
    assert _get(port, "/readyz")[0] == 200
    health.stopping = True
    assert _get(port, "/readyz")[:1] == (503,)
    assert _get(port, "/nothing")[0] == 404


def test_the_exposition_passes_promtool(endpoint: tuple[ServiceMetrics, Health, int]) -> None:
    _, _, port = endpoint
    for accept in (None, "application/openmetrics-text; version=1.0.0"):
        status, ctype, body = _get(port, "/metrics", accept)
        assert status == 200
        if accept is None:  # promtool lints the Prometheus text format
            checked = subprocess.run(
                ["promtool", "check", "metrics"], input=body, capture_output=True, text=True
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr
            assert checked.stdout.strip() == "" and checked.stderr.strip() == ""
        else:
            assert ctype.startswith("application/openmetrics-text") and body.endswith("# EOF\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_real_prometheus_scrapes_the_service(
    endpoint: tuple[ServiceMetrics, Health, int], tmp_path: Path
) -> None:
    _, _, port = endpoint
    prometheus = shutil.which("prometheus")
    assert prometheus, "Debian's prometheus package is missing: run deploy/bootstrap.sh"
    web = _free_port()
    config = tmp_path / "prometheus.yml"
    shipped = (Path(__file__).parents[1] / "deploy/prometheus/prometheus.yml").read_text()
    config.write_text(
        shipped.replace('"127.0.0.1:9640"', f'"127.0.0.1:{port}"')
        .replace("scrape_interval: 30s", "scrape_interval: 1s")
        .replace(
            "  - alerts.yml", f"  - {Path(__file__).parents[1] / 'deploy/prometheus/alerts.yml'}"
        )
    )
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{web}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        result: list[dict[str, object]] = []
        while time.monotonic() < deadline and not result:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{web}/api/v1/query?query=up%7Bjob%3D%22smapds%22%7D",
                    timeout=5,
                ) as r:
                    result = json.load(r)["data"]["result"]
            except (urllib.error.URLError, ConnectionError):
                continue
        assert result, "Prometheus never scraped the service"
        assert result[0]["value"][1] == "1"  # type: ignore[index]
        with urllib.request.urlopen(
            f"http://127.0.0.1:{web}/api/v1/query?query=smapds_validation_r", timeout=5
        ) as r:
            assert json.load(r)["data"]["result"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _jwt(payload: dict[str, object]) -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(payload)}.c2lnbmF0dXJl"


def test_the_earthdata_token_expiry_is_read_and_the_token_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = _jwt({"type": "User", "uid": "someone", "exp": 1893456000})
    path = tmp_path / "token"
    path.write_text(token + "\n")
    caplog.set_level(logging.DEBUG)
    assert earthdata_token_expiry(Settings(earthdata_token_file=path)) == 1893456000.0
    assert jwt_expiry("not-a-jwt") is None and jwt_expiry("a.b.c") is None
    assert jwt_expiry(_jwt({"uid": "x"})) is None
    assert earthdata_token_expiry(Settings(earthdata_token_file=tmp_path / "missing")) is None
    assert token not in caplog.text and token.split(".")[1] not in caplog.text
