"""Where the database is and how to reach it: the embedded cluster or a configured PostGIS server.

Roles: ``admin`` migrates (the embedded cluster's superuser, or the configured URL's user),
``writer`` is what the service uses, ``reader`` is for Grafana and analysts. With a configured
URL all three are that URL's user: the operator's server, the operator's roles.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from etl.errors import DatabaseError, SchemaError
from service.db.embedded import SUPERUSER, EmbeddedCluster, find_bindir
from service.db.migrate import Migration, applied, check_schema, discover, migrate
from service.settings import Settings, redact_url

Role = Literal["admin", "writer", "reader"]
_ROLE_USERS: dict[Role, str] = {
    "admin": SUPERUSER,
    "writer": "smapds_writer",
    "reader": "smapds_reader",
}
DBNAME = "smapds"


@dataclass(frozen=True)
class DbStatus:
    where: str
    running: bool
    server_version: str | None = None
    postgis_version: str | None = None
    schema_version: int | None = None
    schema_expected: int | None = None
    schema_problem: str | None = None


@dataclass(frozen=True)
class Database:
    """The embedded cluster (``cluster`` set) or an external server (``external_url`` set)."""

    cluster: EmbeddedCluster | None
    external_url: str | None
    sql_dir: Path
    dbname: str = DBNAME

    @classmethod
    def from_settings(cls, settings: Settings, *, sql_dir: Path) -> Database:
        if settings.database_url is not None:
            return cls(
                cluster=None, external_url=settings.database_url.get_secret_value(), sql_dir=sql_dir
            )
        cluster = EmbeddedCluster(
            root=settings.data_dir.resolve() / "pg",
            port=settings.db_port,
            bindir=find_bindir(settings.pg_bindir),
            run_as=settings.db_run_as,
        )
        return cls(cluster=cluster, external_url=None, sql_dir=sql_dir)

    @property
    def where(self) -> str:
        if self.cluster is not None:
            return f"embedded cluster {self.cluster.pgdata} (socket {self.cluster.socket_dir})"
        assert self.external_url is not None
        return redact_url(self.external_url)

    def url(self, role: Role = "writer", *, dbname: str | None = None) -> str:
        if self.cluster is not None:
            return self.cluster.url(user=_ROLE_USERS[role], dbname=dbname or self.dbname)
        assert self.external_url is not None
        return self.external_url

    def engine(self, role: Role = "writer", *, dbname: str | None = None) -> Engine:
        """A pooled SQLAlchemy engine (pre-ping on checkout; sessions in UTC)."""
        return sa.create_engine(
            self.url(role, dbname=dbname),
            pool_pre_ping=True,
            connect_args={"application_name": "smapds", "options": "-c timezone=UTC"},
        )

    def up(self) -> list[Migration]:
        """Start (embedded), create the database if needed, apply missing migrations."""
        if self.cluster is not None:
            self.cluster.up()
            self.create_database(self.dbname)
        engine = self.engine("admin")
        try:
            return migrate(engine, self.sql_dir)
        except OperationalError as err:
            raise self.unreachable(err) from err
        finally:
            engine.dispose()

    def unreachable(self, err: OperationalError) -> DatabaseError:
        """The error for a server that cannot be reached: where (password hidden) and why."""
        return DatabaseError(f"cannot reach the database at {self.where}: {_first_line(err)}")

    def down(self) -> bool:
        """Stop the embedded cluster; False when it was not running or the database is external."""
        return self.cluster.down() if self.cluster is not None else False

    def create_database(self, name: str, *, template: str | None = None) -> bool:
        """CREATE DATABASE on the embedded cluster if it is missing; True when created."""
        engine = self.engine("admin", dbname="postgres").execution_options(
            isolation_level="AUTOCOMMIT"
        )
        try:
            with engine.connect() as conn:
                exists = conn.execute(
                    sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
                ).first()
                if exists:
                    return False
                ident = conn.dialect.identifier_preparer.quote(name)
                stmt = f"CREATE DATABASE {ident}"
                if template:
                    stmt += f" TEMPLATE {conn.dialect.identifier_preparer.quote(template)}"
                conn.exec_driver_sql(stmt)
                return True
        except SQLAlchemyError as err:
            raise DatabaseError(f"cannot create database {name!r}: {_first_line(err)}") from err
        finally:
            engine.dispose()

    def drop_database(self, name: str) -> None:
        engine = self.engine("admin", dbname="postgres").execution_options(
            isolation_level="AUTOCOMMIT"
        )
        try:
            with engine.connect() as conn:
                ident = conn.dialect.identifier_preparer.quote(name)
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {ident} WITH (FORCE)")
        finally:
            engine.dispose()

    def status(self) -> DbStatus:
        """What the server is and whether its schema is the one this software knows."""
        if self.cluster is not None and not self.cluster.is_running():
            return DbStatus(where=self.where, running=False)
        engine = self.engine("admin")
        try:
            with engine.connect() as conn:
                server = conn.execute(sa.text("SHOW server_version")).scalar()
                postgis = conn.execute(
                    sa.text("SELECT extversion FROM pg_extension WHERE extname = 'postgis'")
                ).scalar()
                expected = len(discover(self.sql_dir))
                done = applied(conn)
                problem = None
                try:
                    check_schema(conn, self.sql_dir)
                except SchemaError as err:
                    problem = str(err)
                return DbStatus(
                    where=self.where,
                    running=True,
                    server_version=str(server),
                    postgis_version=None if postgis is None else str(postgis),
                    schema_version=max(done, default=0),
                    schema_expected=expected,
                    schema_problem=problem,
                )
        except OperationalError as err:
            raise self.unreachable(err) from err
        finally:
            engine.dispose()


def _first_line(err: BaseException) -> str:
    text = str(getattr(err, "orig", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__
