"""``smapds serve`` at the edges of its life: a port that is taken is one line and exit 2; a
database that does not answer keeps it waiting (``/healthz`` 503 with the reason, ``/readyz`` 503)
until SIGTERM, which ends it with exit 0."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from run_cli import smapds


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMAPDS_")}
    env.update(
        {
            "SMAPDS_DATA_DIR": str(tmp_path / "data"),
            "SMAPDS_DATABASE_URL": f"postgresql://smapds_writer@/smapds?host={tmp_path}&port=1",
            "SMAPDS_LOG_FORMAT": "json",
            **extra,
        }
    )
    return env


def test_a_taken_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = smapds("serve", env=_env(tmp_path, SMAPDS_HTTP_PORT=str(port)), timeout=60)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"smapds: cannot listen on 127.0.0.1:{port}")
    )


def _get(port: int, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def test_without_a_database_it_waits_unhealthy_and_stops_cleanly(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "serve.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve"],
            env=_env(tmp_path, SMAPDS_HTTP_PORT=str(port)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            deadline = time.monotonic() + 60
            while "waiting for the database" not in log.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            status, body = _get(port, "/healthz")
            assert status == 503 and str(body["reason"]).startswith("scheduler not running")
            assert "database:" in str(body["reason"])
            assert _get(port, "/readyz") == (503, {"status": "starting"})
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
    assert code == 0, log.read_text()
    assert '"msg": "service stopped"' in log.read_text()
