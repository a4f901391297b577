"""Shared fixtures: one embedded PostGIS cluster per test session, a fresh database per module.

The cluster lives in a temporary directory and is started with the project's own code (no server
started by hand); each test module gets a database created from the migrated ``smapds`` database
as a template, so modules cannot see each other's rows.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from service.db import Database, default_sql_dir
from service.db.embedded import EmbeddedCluster, find_bindir

REFERENCE_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "reference-data"


@pytest.fixture(scope="session")
def reference_data() -> Path:
    if not REFERENCE_DATA.is_dir():
        pytest.fail(f"reference data not found at {REFERENCE_DATA} (shared/ beside the checkout)")
    return REFERENCE_DATA


@pytest.fixture(scope="session")
def cluster_db() -> Iterator[Database]:
    """The session's embedded cluster with the migrated ``smapds`` database (used as template)."""
    root = Path(tempfile.mkdtemp(prefix="smapds-test-pg-"))
    root.chmod(0o755)  # reachable by the unprivileged server user when tests run as root
    cluster = EmbeddedCluster(root=root / "pg", port=5432, bindir=find_bindir(None))
    db = Database(cluster=cluster, external_url=None, sql_dir=default_sql_dir())
    db.up()
    yield db
    cluster.down()
    shutil.rmtree(cluster.home, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def database(cluster_db: Database, request: pytest.FixtureRequest) -> Iterator[Database]:
    """A fresh, migrated database for this test module."""
    name = "t_" + request.module.__name__.rsplit(".", 1)[-1].lower()[:50]
    cluster_db.drop_database(name)
    cluster_db.create_database(name, template=cluster_db.dbname)
    yield dataclasses.replace(cluster_db, dbname=name)
    cluster_db.drop_database(name)


@pytest.fixture(scope="module")
def writer(database: Database) -> Iterator[Engine]:
    """Engine connected as the service's role (smapds_writer)."""
    engine = database.engine("writer")
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def admin(database: Database) -> Iterator[Engine]:
    """Engine connected as the cluster superuser (for migrations and inspection)."""
    engine = database.engine("admin")
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8-day synthetic world on the demo domain (2024-04-01..08, seed 7), shared by the session."""
    from datetime import date

    from etl.grid import get_domain
    from etl.synthetic import generate

    out = tmp_path_factory.mktemp("demo_world")
    generate(out, domain=get_domain("demo"), start=date(2024, 4, 1), days=8, seed=7)
    return out
