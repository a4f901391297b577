"""The service's HTTP endpoint: ``/metrics``, ``/healthz`` and ``/readyz`` on one small server.

- ``/metrics``: the Prometheus exposition of the service's own registry (OpenMetrics when the
  scraper asks for it).
- ``/healthz``: 200 while the scheduler runs and the database answered its latest check (made by
  the main loop every few seconds, so a probe never waits on the database); otherwise 503 with a
  JSON body naming the reason.
- ``/readyz``: 200 once start-up is complete (database checked, state rebuilt, jobs scheduled)
  and until the service begins to stop; otherwise 503.

A ``ThreadingHTTPServer`` in a daemon thread, bound to ``http_address`` (127.0.0.1 by default:
put a reverse proxy or the Prometheus host on the same machine in front of it).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from etl.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class Health:
    """What the probes report; written by the main loop, read by the HTTP threads."""

    scheduler_running: Callable[[], bool]
    max_check_age_seconds: float = 60.0
    ready: bool = False
    stopping: bool = False
    db_ok: bool = False
    db_error: str | None = "not checked yet"
    db_checked_at: float | None = None

    def database_checked(self, ok: bool, error: str | None = None) -> None:
        self.db_ok, self.db_error, self.db_checked_at = ok, error, time.monotonic()

    def health(self) -> tuple[int, dict[str, Any]]:
        reasons = []
        if not self.scheduler_running():
            reasons.append("scheduler not running")
        age = None if self.db_checked_at is None else time.monotonic() - self.db_checked_at
        if not self.db_ok:
            reasons.append(f"database: {self.db_error}")
        elif age is None or age > self.max_check_age_seconds:
            reasons.append("database: no recent check")
        body: dict[str, Any] = {
            "status": "ok" if not reasons else "unhealthy",
            "scheduler": self.scheduler_running(),
            "database": self.db_ok,
        }
        if reasons:
            body["reason"] = "; ".join(reasons)
        return (200 if not reasons else 503), body

    def readiness(self) -> tuple[int, dict[str, Any]]:
        if self.stopping:
            return 503, {"status": "stopping"}
        if not self.ready:
            return 503, {"status": "starting"}
        return 200, {"status": "ready"}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._reply(200, encoder(self.server.registry), content_type)
        elif path == "/healthz":
            self._json(*self.server.health.health())
        elif path == "/readyz":
            self._json(*self.server.health.readiness())
        else:
            self._json(
                404, {"status": "not found", "endpoints": ["/metrics", "/healthz", "/readyz"]}
            )

    def _json(self, code: int, body: dict[str, Any]) -> None:
        self._reply(code, (json.dumps(body) + "\n").encode(), "application/json")

    def _reply(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http request", extra={"client": self.client_address[0], "line": format % args})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], registry: CollectorRegistry, health: Health
    ) -> None:
        self.registry = registry
        self.health = health
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class HttpEndpoint:
    """The server and its thread."""

    def __init__(
        self, address: str, port: int, *, registry: CollectorRegistry, health: Health
    ) -> None:
        try:
            self._server = _Server((address, port), registry, health)
        except OSError as err:
            raise ConfigError(
                f"cannot listen on {address}:{port} ({err.strerror}); "
                "see SMAPDS_HTTP_ADDRESS and SMAPDS_HTTP_PORT"
            ) from err
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="smapds-http", daemon=True
        )

    @property
    def port(self) -> int:
        """The bound port (the chosen one when the setting is 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info(
            "http endpoint listening",
            extra={"address": self._server.server_address[0], "port": self.port},
        )

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
