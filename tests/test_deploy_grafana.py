"""Every SQL query of the Grafana dashboards (panels and template variables) runs, as the
read-only role Grafana uses, against a migrated database holding a little of every table."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from service.db import Database

GRAFANA = Path(__file__).resolve().parents[1] / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
SQL_DASHBOARDS = [p for p in DASHBOARDS if '"rawSql"' in p.read_text()]
VARIABLES = {"domain": "demo", "window": "90", "station": "1"}


def _queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query" and var["datasource"]["uid"] == "smapds-postgis":
            yield f"variable {var['name']}", var["query"]
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            if "rawSql" in target:
                yield f"panel {panel['title']}", target["rawSql"]


def _expand(sql: str) -> str:
    """Grafana's macros and variables, as Grafana would substitute them."""
    sql = re.sub(
        r"\$__timeFilter\((\w+)\)",
        r"(\1 BETWEEN TIMESTAMPTZ '2000-01-01' AND TIMESTAMPTZ '2100-01-01')",
        sql,
    )
    for name, value in VARIABLES.items():
        sql = sql.replace(f"${name}", value)
    assert "$" not in sql, f"unexpanded macro or variable in {sql}"
    return sql


@pytest.fixture(scope="module")
def reader(database: Database, writer: Engine) -> Iterator[Engine]:
    with writer.begin() as conn:
        conn.execute(
            sa.text("""
            INSERT INTO smapds.models (name, kind, path, sha256, domain, train_start, train_end,
                                       features)
            VALUES ('m', 'rf', 'm', repeat('0', 64), 'demo', '2024-01-01', '2024-03-31', '[]');
            INSERT INTO smapds.stations (network, station, station_key, geom)
            VALUES ('NET', 'S-1', 's_1', ST_SetSRID(ST_MakePoint(116, 36), 4326));
            INSERT INTO smapds.products (domain, product_date, path, sha256, stac_path,
                model_name, model_sha256, status, valid_fraction, gap_filled_fraction,
                footprint, inputs, software_version, unc_p10, unc_p50, unc_p90)
            VALUES ('demo', '2024-04-02', 'p', repeat('0', 64), 's', 'm', repeat('0', 64),
                    'OK', 0.9, 0.4, ST_MakeEnvelope(114, 34, 118, 38, 4326), '{}', 't',
                    0.01, 0.02, 0.03);
            INSERT INTO smapds.collocations (domain, product_date, station_id, insitu_sm,
                insitu_n, window_start, window_end, sm_1km, sm_1km_uncertainty, sm_model,
                sm_36km, sm_9km)
            VALUES ('demo', '2024-04-02', 1, 0.2, 3, '2024-04-01 21:00+00', '2024-04-02 03:00+00',
                    0.21, 0.02, 0.22, 0.25, 0.24);
            INSERT INTO smapds.run_ledger (domain, run_date, stage, status)
            VALUES ('demo', '2024-04-02', 'product', 'OK');
        """)
        )
    from service.validate import ValidationConfig, refresh

    refresh(writer, domain="demo", config=ValidationConfig((30, 90, 365), 10, 100))
    engine = database.engine("reader")
    yield engine
    engine.dispose()


def test_the_dashboards_are_there_and_use_provisioned_datasources() -> None:
    assert {p.stem for p in DASHBOARDS} >= {
        "smapds-products",
        "smapds-stations",
        "smapds-freshness",
        "smapds-health",
    }
    provisioned = (GRAFANA / "provisioning" / "datasources" / "smapds.yaml").read_text()
    uids = set(re.findall(r"^\s*uid:\s*(\S+)", provisioned, re.MULTILINE))
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        used = {p["datasource"]["uid"] for p in board["panels"]}
        assert used <= uids, (path.name, used - uids)
        assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


@pytest.mark.parametrize("path", SQL_DASHBOARDS, ids=[p.stem for p in SQL_DASHBOARDS])
def test_every_dashboard_query_runs_as_the_read_only_role(path: Path, reader: Engine) -> None:
    board = json.loads(path.read_text())
    queries = list(_queries(board))
    assert queries
    returned = 0
    with reader.connect() as conn:
        for where, sql in queries:
            try:
                rows = conn.execute(sa.text(_expand(sql).replace(":", r"\:"))).all()
            except sa.exc.DBAPIError as err:
                pytest.fail(f"{path.name}, {where}: {err.orig}")
            returned += len(rows)
    assert returned > 0


def test_every_prometheus_expression_of_the_dashboards_parses(tmp_path: Path) -> None:
    """promtool checks each panel expression as the expression of a recording rule."""
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: deploy/bootstrap.sh installs Debian's prometheus"
    exprs = [
        target["expr"]
        for path in DASHBOARDS
        for panel in json.loads(path.read_text())["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    assert len(exprs) >= 10
    rules = ["groups:", "  - name: dashboards", "    rules:"]
    for k, expr in enumerate(exprs):
        rules += [f"      - record: smapds:dashboard_{k}", f"        expr: {json.dumps(expr)}"]
    (tmp_path / "rules.yml").write_text("\n".join(rules) + "\n")
    done = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "rules.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
