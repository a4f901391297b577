"""`smapds ingest ismn` as an operator runs it, against a real database."""

from __future__ import annotations

from pathlib import Path

from run_cli import smapds

from service.db import Database


def test_ingest_ismn_loads_once_and_reports_bad_files(
    database: Database, reference_data: Path, tmp_path: Path
) -> None:
    env = {"SMAPDS_DATABASE_URL": database.url("writer"), "SMAPDS_DATA_DIR": str(tmp_path)}
    zipped = reference_data / "ismn" / "zip_archives" / "header"
    first = smapds("ingest", "ismn", str(zipped), env=env)
    assert first.returncode == 0, first.stderr + first.stdout
    assert "OK" in first.stdout
    again = smapds("ingest", "ismn", str(zipped), env=env)
    assert again.returncode == 0 and "SKIPPED" in again.stdout
    bad = tmp_path / "NET_NET_ST_sm_0.050000_0.050000_X_20200101_20200131.stm"
    bad.write_text("this is not an ISMN file\n")
    result = smapds("ingest", "ismn", str(bad), env=env)
    assert result.returncode != 0 and bad.name in result.stdout
