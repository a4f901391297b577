"""`smapds db ...`, `smapds status` and `smapds config` as an operator runs them, in subprocesses."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from run_cli import smapds

from service.db import Database, default_sql_dir
from service.db.migrate import discover

LATEST = len(discover(default_sql_dir()))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data directory inside pytest's private (0700) temp dir, like a checkout under /root."""
    path = tmp_path_factory.mktemp("cli") / "var"
    yield path
    smapds("db", "down", env={"SMAPDS_DATA_DIR": str(path)})
    home = (path / "pg").resolve()
    if home != (path / "pg").absolute():
        shutil.rmtree(home, ignore_errors=True)


def test_db_up_starts_migrates_and_is_safe_to_repeat(data_dir: Path) -> None:
    env = {"SMAPDS_DATA_DIR": str(data_dir)}
    first = smapds("db", "up", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied migration 001_" in first.stdout
    second = smapds("db", "up", env=env)
    assert second.returncode == 0, second.stderr
    assert "applied migration" not in second.stdout
    status = smapds("db", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert "PostGIS         3." in status.stdout
    assert f"schema version  {LATEST:03d} (software expects {LATEST:03d})" in status.stdout


def test_db_url_and_psql_reach_the_database_with_the_right_roles(data_dir: Path) -> None:
    env = {"SMAPDS_DATA_DIR": str(data_dir)}
    url = smapds("db", "url", env=env).stdout.strip()
    assert url.startswith("postgresql://smapds_writer@/smapds?host=")
    psql = smapds("db", "psql", "--", "-tAc", "SELECT current_user, postgis_lib_version()", env=env)
    assert psql.returncode == 0, psql.stderr
    assert psql.stdout.startswith("smapds_reader|3.")
    denied = smapds(
        "db", "psql", "--", "-v", "ON_ERROR_STOP=1", "-c", "DELETE FROM smapds.run_ledger", env=env
    )
    assert denied.returncode != 0 and "permission denied" in denied.stderr


def test_status_summarises_an_empty_service(data_dir: Path) -> None:
    result = smapds("status", env={"SMAPDS_DATA_DIR": str(data_dir)})
    assert result.returncode == 0, result.stderr
    assert "run ledger: no days processed yet" in result.stdout
    assert "PostgreSQL / PostGIS  15" in result.stdout


def test_db_up_recovers_after_the_postmaster_is_killed(data_dir: Path) -> None:
    env = {"SMAPDS_DATA_DIR": str(data_dir)}
    pid = int((data_dir / "pg" / "data" / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    up = smapds("db", "up", env=env)
    assert up.returncode == 0, up.stderr
    new_pid = int((data_dir / "pg" / "data" / "postmaster.pid").read_text().split()[0])
    assert new_pid != pid
    assert smapds("db", "status", env=env).returncode == 0


def test_db_down_stops_and_is_safe_to_repeat(data_dir: Path) -> None:
    env = {"SMAPDS_DATA_DIR": str(data_dir)}
    assert "embedded cluster stopped" in smapds("db", "down", env=env).stdout
    assert "was not running" in smapds("db", "down", env=env).stdout
    status = smapds("db", "status", env=env)
    assert status.returncode == 1 and "running   no" in status.stdout
    st = smapds("status", env=env)
    assert st.returncode == 1 and "smapds db up" in st.stdout


def test_an_external_database_url_is_used_instead_of_the_embedded_cluster(
    cluster_db: Database, tmp_path: Path
) -> None:
    cluster_db.drop_database("t_external")
    cluster_db.create_database("t_external")
    assert cluster_db.cluster is not None
    url = cluster_db.cluster.url(user="postgres", dbname="t_external")
    env = {"SMAPDS_DATABASE_URL": url, "SMAPDS_DATA_DIR": str(tmp_path / "unused")}
    try:
        up = smapds("db", "up", env=env)
        assert up.returncode == 0, up.stderr
        assert f"applied migration {LATEST:03d}_" in up.stdout
        status = smapds("db", "status", env=env)
        assert status.returncode == 0 and f"schema version  {LATEST:03d}" in status.stdout
        assert "nothing to stop" in smapds("db", "down", env=env).stdout
        assert not (tmp_path / "unused" / "pg").exists()
    finally:
        cluster_db.drop_database("t_external")


def test_an_unreachable_database_is_a_clear_error_without_the_password(tmp_path: Path) -> None:
    env = {"SMAPDS_DATABASE_URL": "postgresql://svc:hunter2@127.0.0.1:1/smapds"}
    result = smapds("db", "status", env=env)
    assert result.returncode == 1
    assert "cannot reach the database at postgresql://svc:***@127.0.0.1:1/smapds" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_a_bad_setting_is_one_line_naming_it_and_exit_code_2() -> None:
    result = smapds("status", env={"SMAPDS_DOMAIN": "atlantis"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "smapds: invalid setting SMAPDS_DOMAIN: unknown domain 'atlantis'; allowed: china, demo"
    ]


def test_config_show_redacts_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "smapds.toml"
    cfg.write_text('domain = "china"\n')
    env = {"SMAPDS_DATABASE_URL": "postgresql://svc:hunter2@db.example/smapds"}
    result = smapds("--config", str(cfg), "config", "show", env=env)
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout
    assert "postgresql://svc:***@db.example/smapds" in result.stdout
    assert "SMAPDS_DOMAIN" in result.stdout and "china" in result.stdout


def test_help_explains_every_command() -> None:
    top = smapds("--help")
    assert top.returncode == 0
    for command in ("config", "db", "status"):
        assert command in top.stdout
    db_help = smapds("db", "--help").stdout
    for action in ("up", "down", "status", "url", "psql", "migrate"):
        assert f"    {action}" in db_help
