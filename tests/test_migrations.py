"""The schema runner: order, checksums, refusal of changed or unknown schemas, and the three roles."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ProgrammingError

from etl.errors import SchemaError
from service.db import Database, check_schema, default_sql_dir
from service.db.migrate import discover, migrate


def test_a_migrated_database_is_at_the_latest_version_with_postgis(admin: Engine) -> None:
    with admin.connect() as conn:
        assert check_schema(conn, default_sql_dir()) == len(discover(default_sql_dir()))
        version = conn.execute(sa.text("SELECT postgis_lib_version()")).scalar()
        assert str(version).startswith("3.")
        rows = conn.execute(
            sa.text("SELECT version, sha256 FROM public.smapds_migrations ORDER BY version")
        ).all()
    assert [r.version for r in rows] == [m.version for m in discover(default_sql_dir())]


def test_migrating_again_applies_nothing(admin: Engine) -> None:
    assert migrate(admin, default_sql_dir()) == []


def test_tables_belong_to_the_owner_role(admin: Engine) -> None:
    with admin.connect() as conn:
        owners = set(
            conn.execute(
                sa.text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'smapds'")
            ).scalars()
        )
    assert owners == {"smapds_owner"}


def test_every_table_and_column_is_commented(admin: Engine) -> None:
    with admin.connect() as conn:
        missing = (
            conn.execute(
                sa.text("""
            SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'smapds' AND c.relkind IN ('r', 'p', 'v')
               AND obj_description(c.oid, 'pg_class') IS NULL""")
            )
            .scalars()
            .all()
        )
    assert missing == []


def test_the_writer_writes_rows_but_cannot_change_the_schema(writer: Engine) -> None:
    with writer.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO smapds.granules (source, granule_date, granule_id, "
                "product, status) VALUES ('T', '2024-04-01', '*', 'T', 'pending')"
            )
        )
        conn.execute(sa.text("DELETE FROM smapds.granules WHERE source = 'T'"))
    with pytest.raises(ProgrammingError, match="permission denied"), writer.begin() as conn:
        conn.execute(sa.text("CREATE TABLE smapds.intruder (x int)"))
    with pytest.raises(ProgrammingError, match="must be owner"), writer.begin() as conn:
        conn.execute(sa.text("DROP TABLE smapds.run_ledger"))


def test_the_reader_can_only_select(database: Database) -> None:
    reader = database.engine("reader")
    try:
        with reader.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM smapds.run_ledger")).scalar() == 0
        with pytest.raises(ProgrammingError, match="permission denied"), reader.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO smapds.run_ledger (domain, run_date, stage, status) "
                    "VALUES ('demo', '2024-04-01', 'x', 'OK')"
                )
            )
        with pytest.raises(ProgrammingError, match="permission denied"), reader.begin() as conn:
            conn.execute(sa.text("CREATE TABLE public.intruder (x int)"))
    finally:
        reader.dispose()


def test_constraints_reject_impossible_rows(writer: Engine) -> None:
    with pytest.raises(sa.exc.IntegrityError), writer.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO smapds.run_ledger (domain, run_date, stage, status) "
                "VALUES ('demo', '2024-04-01', 'x', 'MAYBE')"
            )
        )
    with pytest.raises(sa.exc.IntegrityError), writer.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO smapds.granules (source, granule_date, granule_id, "
                "product, status) VALUES ('S', '2024-04-01', 'g', 'P', 'fetched')"
            )
        )


@pytest.fixture
def scratch(cluster_db: Database, request: pytest.FixtureRequest) -> Database:
    """An empty database (no migrations) for runner tests that change the sql directory."""
    import dataclasses

    name = "t_scratch_" + request.node.name[:40].lower()
    cluster_db.drop_database(name)
    cluster_db.create_database(name)
    request.addfinalizer(lambda: cluster_db.drop_database(name))
    return dataclasses.replace(cluster_db, dbname=name)


def _copy_sql(tmp_path: Path) -> Path:
    target = tmp_path / "sql"
    shutil.copytree(default_sql_dir(), target)
    return target


def test_a_changed_applied_migration_is_refused(scratch: Database, tmp_path: Path) -> None:
    sql_dir = _copy_sql(tmp_path)
    engine = scratch.engine("admin")
    try:
        migrate(engine, sql_dir)
        first = sorted(sql_dir.glob("002_*.sql"))[0]
        first.write_text(first.read_text() + "\n-- edited after release\n")
        with pytest.raises(SchemaError, match=r"002_.*was changed after it was applied"):
            migrate(engine, sql_dir)
        with engine.connect() as conn, pytest.raises(SchemaError, match="changed"):
            check_schema(conn, sql_dir)
    finally:
        engine.dispose()


def test_a_newer_unknown_schema_is_refused(scratch: Database, tmp_path: Path) -> None:
    sql_dir = _copy_sql(tmp_path)
    n = len(discover(sql_dir))
    newer = sql_dir / f"{n + 1:03d}_from_the_future.sql"
    newer.write_text("CREATE TABLE smapds.future (x int);")
    engine = scratch.engine("admin")
    try:
        migrate(engine, sql_dir)
        newer.unlink()
        with engine.connect() as conn, pytest.raises(SchemaError, match="newer than this software"):
            check_schema(conn, sql_dir)
    finally:
        engine.dispose()


def test_a_missing_migration_is_reported_as_pending(scratch: Database) -> None:
    engine = scratch.engine("admin")
    try:
        with engine.connect() as conn, pytest.raises(SchemaError, match="smapds db migrate"):
            check_schema(conn, default_sql_dir())
    finally:
        engine.dispose()


def test_a_failing_migration_leaves_nothing_behind(scratch: Database, tmp_path: Path) -> None:
    sql_dir = _copy_sql(tmp_path)
    n = len(discover(sql_dir))
    (sql_dir / f"{n + 1:03d}_broken.sql").write_text(
        "CREATE TABLE smapds.half_made (x int);\nSELECT no_such_function();\n"
    )
    engine = scratch.engine("admin")
    try:
        with pytest.raises(SchemaError, match=f"{n + 1:03d}_broken.sql failed"):
            migrate(engine, sql_dir)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT to_regclass('smapds.half_made')")).scalar() is None
            assert (
                max(conn.execute(sa.text("SELECT version FROM public.smapds_migrations")).scalars())
                == n
            )
    finally:
        engine.dispose()


def test_badly_named_or_gapped_files_are_refused(tmp_path: Path) -> None:
    sql_dir = _copy_sql(tmp_path)
    (sql_dir / "7_oops.sql").write_text("SELECT 1;")
    with pytest.raises(SchemaError, match="NNN_lower_snake"):
        discover(sql_dir)
    (sql_dir / "7_oops.sql").unlink()
    newest = max(int(f.name[:3]) for f in sql_dir.glob("[0-9][0-9][0-9]_*.sql"))
    (sql_dir / f"{newest + 2:03d}_gap.sql").write_text("SELECT 1;")
    with pytest.raises(SchemaError, match="gap or duplicate"):
        discover(sql_dir)
