"""Schema migrations: numbered SQL files in ``sql/`` applied in order, each in its own transaction.

Every applied file is recorded in ``public.smapds_migrations`` with its sha256. The runner refuses
(SchemaError) when an applied file has changed, when a file is missing from the sequence, or when the
database carries a version this software does not know (a newer release migrated it). Migrations
take a transaction-scoped advisory lock, so two processes migrating at once apply each file once.
When the connecting user may act as ``smapds_owner``, files after the first run under that role so
the objects belong to the owner and pick up its default privileges for writer and reader.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.errors import SchemaError

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x5D5D_0001  # arbitrary, constant: the advisory lock of the migration runner
OWNER_ROLE = "smapds_owner"

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS public.smapds_migrations (
    version     integer PRIMARY KEY,
    name        text        NOT NULL,
    sha256      text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    applied_by  text        NOT NULL DEFAULT current_user
);
COMMENT ON TABLE public.smapds_migrations IS
    'smapds schema migrations applied to this database (sql/NNN_name.sql), with their sha256';
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sha256: str

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def default_sql_dir() -> Path:
    """``sql/`` at the top of the source tree (the project is installed in editable mode)."""
    return Path(__file__).resolve().parents[2] / "sql"


def discover(sql_dir: Path) -> list[Migration]:
    """The migration files in order; SchemaError on a gap, a duplicate or a badly named file."""
    if not sql_dir.is_dir():
        raise SchemaError(f"schema directory {sql_dir} not found")
    found: list[Migration] = []
    for path in sorted(sql_dir.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise SchemaError(f"{path}: migration files are named NNN_lower_snake.sql")
        found.append(
            Migration(
                int(m.group(1)), m.group(2), path, hashlib.sha256(path.read_bytes()).hexdigest()
            )
        )
    for expected, mig in enumerate(found, start=1):
        if mig.version != expected:
            raise SchemaError(f"{mig.path}: expected migration {expected:03d} (gap or duplicate)")
    return found


def applied(conn: Connection) -> dict[int, tuple[str, str]]:
    """version -> (name, sha256) recorded in the database; empty for a fresh database."""
    exists = conn.execute(sa.text("SELECT to_regclass('public.smapds_migrations')")).scalar()
    if exists is None:
        return {}
    rows = conn.execute(sa.text("SELECT version, name, sha256 FROM public.smapds_migrations"))
    return {r.version: (r.name, r.sha256) for r in rows}


def verify(conn: Connection, migrations: list[Migration]) -> list[Migration]:
    """Check the recorded history against the files; return the migrations still to apply."""
    done = applied(conn)
    known = {m.version: m for m in migrations}
    newer = sorted(v for v in done if v not in known)
    if newer:
        raise SchemaError(
            f"database has schema version {newer[-1]:03d}, newer than this software knows "
            f"({len(migrations):03d}); upgrade smapds"
        )
    for version, (name, digest) in sorted(done.items()):
        if known[version].sha256 != digest:
            raise SchemaError(
                f"migration {version:03d}_{name}.sql was changed after it was applied "
                f"(recorded sha256 {digest[:12]}..., file {known[version].sha256[:12]}...); "
                "add a new migration instead of editing an applied one"
            )
    return [m for m in migrations if m.version not in done]


def migrate(engine: Engine, sql_dir: Path) -> list[Migration]:
    """Apply the missing migrations in order; return those applied (empty when up to date)."""
    migrations = discover(sql_dir)
    applied_now: list[Migration] = []
    for mig in migrations:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            conn.execute(sa.text(_BOOTSTRAP))
            if mig not in verify(conn, migrations):
                continue
            if mig.version > 1 and _may_act_as_owner(conn):
                conn.execute(sa.text(f"SET LOCAL ROLE {OWNER_ROLE}"))
            log.info("applying migration", extra={"version": mig.version, "migration": mig.name})
            _execute_script(conn, mig)
            conn.execute(sa.text("RESET ROLE"))
            conn.execute(
                sa.text(
                    "INSERT INTO public.smapds_migrations (version, name, sha256) "
                    "VALUES (:v, :n, :s)"
                ),
                {"v": mig.version, "n": mig.name, "s": mig.sha256},
            )
            applied_now.append(mig)
    return applied_now


def check_schema(conn: Connection, sql_dir: Path) -> int:
    """The schema version if the database is exactly the one this software knows; SchemaError if not."""
    migrations = discover(sql_dir)
    pending = verify(conn, migrations)
    if pending:
        raise SchemaError(
            f"database schema is at version {len(migrations) - len(pending):03d}, this software "
            f"needs {len(migrations):03d}; run `smapds db migrate`"
        )
    return len(migrations)


def _execute_script(conn: Connection, mig: Migration) -> None:
    """Run a whole SQL file through the driver without parameter parsing ('%' stays literal)."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(mig.sql)
    except psycopg2.Error as err:
        raise SchemaError(f"migration {mig.path.name} failed: {str(err).strip()}") from err
    finally:
        cursor.close()


def _may_act_as_owner(conn: Connection) -> bool:
    return bool(
        conn.execute(
            sa.text(
                "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :r) "
                "THEN pg_has_role(current_user, :r, 'MEMBER') ELSE false END"
            ),
            {"r": OWNER_ROLE},
        ).scalar()
    )
