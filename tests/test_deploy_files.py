"""The deployment files: the systemd unit verifies and scores OK or better in
``systemd-analyze security``, the installer and bootstrap are valid shell (and shellcheck-clean
where shellcheck is installed), and the Prometheus configuration and alert rules pass promtool,
including the rules' own unit tests."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def unit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unit as shipped, with ExecStart pointing at this checkout's smapds (verify wants the
    binary to exist; /opt/smapds is where install.sh puts it)."""
    text = (DEPLOY / "smapds.service").read_text()
    assert "ExecStart=/opt/smapds/.venv/bin/smapds serve" in text
    here = Path(sys.executable).parent / "smapds"
    assert here.is_file()
    out = tmp_path_factory.mktemp("unit") / "smapds.service"
    out.write_text(text.replace("/opt/smapds/.venv/bin/smapds", str(here)))
    return out


def test_the_unit_verifies(unit: Path) -> None:
    result = _run("systemd-analyze", "verify", str(unit))
    assert result.returncode == 0, result.stderr
    assert str(unit) not in result.stderr, result.stderr  # no warning about the unit itself


def test_the_unit_scores_ok_or_better_in_systemd_analyze_security(unit: Path) -> None:
    result = _run("systemd-analyze", "security", "--offline=true", str(unit))
    assert result.returncode == 0, result.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert found, result.stdout[-2000:]
    score, verdict = float(found.group(1)), found.group(2)
    assert verdict in ("PERFECT", "SAFE", "OK") and score <= 2.0, found.group(0)
    assert "Invalid" not in result.stderr, result.stderr


def test_the_unit_runs_as_notify_with_watchdog_credentials_and_hardening() -> None:
    text = (DEPLOY / "smapds.service").read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=120",
        "Restart=on-failure",
        "User=smapds",
        "EnvironmentFile=-/etc/smapds/smapds.env",
        "LoadCredential=earthdata_token:/etc/smapds/credentials/earthdata_token",
        "Environment=SMAPDS_EARTHDATA_TOKEN_FILE=%d/earthdata_token",
        "Environment=PGPASSFILE=%d/pgpass",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/smapds",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
        "KillMode=mixed",
    ):
        assert line in text.splitlines(), line


@pytest.mark.parametrize("script", ["install.sh", "bootstrap.sh"])
def test_the_shell_scripts_are_valid(script: str) -> None:
    result = _run("bash", "-n", str(DEPLOY / script))
    assert result.returncode == 0, result.stderr
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = _run("shellcheck", str(DEPLOY / script))
    assert result.returncode == 0, result.stdout


def test_the_prometheus_config_and_rules_pass_promtool() -> None:
    folder = DEPLOY / "prometheus"
    assert shutil.which("promtool"), "promtool is missing: run deploy/bootstrap.sh"
    for args in (
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "alerts.yml"),
        ("test", "rules", "alerts_test.yml"),
    ):
        result = _run("promtool", *args, cwd=folder)
        assert result.returncode == 0, result.stdout + result.stderr
    names = set(re.findall(r"alert: (\w+)", (folder / "alerts.yml").read_text()))
    assert {
        "SmapdsNoRecentProduct",
        "SmapdsStageFailed",
        "SmapdsAuthenticationFailing",
        "SmapdsDatabaseDown",
        "SmapdsValidationRLow",
    } <= names
