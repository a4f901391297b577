"""A private PostgreSQL + PostGIS cluster under the data directory, run from the system's binaries.

Layout under ``root`` (``<data_dir>/pg``): ``data/`` (PGDATA), ``run/`` (the unix socket, or a short
directory under /tmp when the path would exceed the 107-byte socket limit), ``postgresql.log`` and a
lock file that serialises concurrent ``up``/``down`` calls. As root, the server runs as an
unprivileged system user (created on first use). Clients connect over the unix socket with trust
authentication; the socket is mode 0770, so only the server's user and group (and root) reach it.
There is no TCP listener.

``initdb`` runs into a temporary directory that is renamed into place, so a kill during
initialisation leaves nothing half-made; ``start`` clears a stale ``postmaster.pid`` left by a
crashed server and waits for orphaned backends to let go of shared memory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from etl.errors import DatabaseError

log = logging.getLogger(__name__)

SUPERUSER = "postgres"
FALLBACK_HOME = Path("/var/lib/smapds")
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes including ".s.PGSQL.NNNNN" and the NUL


@dataclass(frozen=True)
class ServerUser:
    """The OS account the postgres processes run as."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class EmbeddedCluster:
    """One private cluster. All methods are safe to call repeatedly and from several processes."""

    root: Path
    port: int
    bindir: Path
    run_as: str = "smapds"

    @property
    def home(self) -> Path:
        """Where the cluster's files really are: ``root``, or the target of ``root`` as a symlink."""
        return self.root.resolve()

    @property
    def pgdata(self) -> Path:
        return self.home / "data"

    @property
    def logfile(self) -> Path:
        return self.home / "postgresql.log"

    @property
    def socket_dir(self) -> Path:
        preferred = self.home / "run"
        if len(str(preferred)) + len(f"/.s.PGSQL.{self.port}") <= _SOCKET_PATH_MAX:
            return preferred
        digest = hashlib.sha256(str(preferred).encode()).hexdigest()[:16]
        return Path("/tmp") / f"smapds-pg-{digest}"

    def url(self, *, user: str, dbname: str) -> str:
        """libpq URI over the unix socket (accepted by psql, psycopg2 and SQLAlchemy)."""
        host = quote(str(self.socket_dir), safe="")
        return f"postgresql://{user}@/{dbname}?host={host}&port={self.port}"

    # -- lifecycle -----------------------------------------------------------------------------

    def up(self) -> None:
        """Initialise (first time) and start the server; return once it accepts connections."""
        with self._locked():
            user = self._server_user()
            if not (self.pgdata / "PG_VERSION").is_file():
                self._make_home(user)
                self._initdb(user)
            if self._live_postmaster() is not None:
                return
            self._prepare_socket_dir(user)
            self._write_conf()
            self._clear_stale_locks()
            self._start(user)

    def down(self) -> bool:
        """Stop the server (fast shutdown). Returns False if it was not running."""
        with self._locked():
            if not (self.pgdata / "PG_VERSION").is_file():
                return False
            user = self._server_user()
            if self._live_postmaster() is None:
                return False
            self._run(
                user,
                [
                    self._bin("pg_ctl"),
                    "-D",
                    str(self.pgdata),
                    "stop",
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "120",
                ],
            )
            return True

    def is_running(self) -> bool:
        return self._live_postmaster() is not None

    def postmaster_pid(self) -> int | None:
        """PID recorded in postmaster.pid (None when there is no such file)."""
        return _pid_in(self.pgdata / "postmaster.pid")

    def _live_postmaster(self) -> int | None:
        """The postmaster's PID if it is really alive.

        Not ``pg_ctl status``: where PID 1 does not reap orphans (containers, sandboxes), a
        postmaster killed with SIGKILL stays a zombie and ``kill(pid, 0)`` still succeeds.
        """
        pid = self.postmaster_pid()
        return pid if pid is not None and _is_live_postgres(pid) else None

    # -- internals -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with open(self.root.parent / f".{self.root.name}.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _bin(self, name: str) -> str:
        path = self.bindir / name
        if not path.is_file():
            raise DatabaseError(f"PostgreSQL program {path} not found (setting SMAPDS_PG_BINDIR)")
        return str(path)

    def _server_user(self) -> ServerUser | None:
        """None when not root: the server then runs as the calling user."""
        if os.geteuid() != 0:
            return None
        try:
            pw = pwd.getpwnam(self.run_as)
        except KeyError:
            log.info("creating system user for the embedded database", extra={"user": self.run_as})
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    self.run_as,
                ],
                check=True,
                capture_output=True,
            )
            pw = pwd.getpwnam(self.run_as)
        return ServerUser(pw.pw_name, pw.pw_uid, pw.pw_gid)

    def _run(
        self,
        user: ServerUser | None,
        args: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if user is not None:
            kwargs = {"user": user.uid, "group": user.gid, "extra_groups": []}
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(self.home)}
        proc = subprocess.run(
            list(args),
            cwd="/",
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )  # type: ignore[call-overload]
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise DatabaseError(
                f"{Path(args[0]).name} failed (exit {proc.returncode}): "
                f"{detail[-1] if detail else 'no output'}; see {self.logfile}"
            )
        return proc  # type: ignore[no-any-return]

    def _make_home(self, user: ServerUser | None) -> None:
        """Create the cluster directory, owned by the server user.

        As root, the data directory may sit below a directory the unprivileged server user cannot
        traverse (a checkout in /root, a pytest tmp dir). Then the cluster lives in
        FALLBACK_HOME/<hash of root> and ``root`` becomes a symlink to it.
        """
        if not self.root.exists():
            self.root.mkdir(mode=0o700)
        if user is None:
            return
        os.chown(self.home, user.uid, user.gid)
        if self._reachable(user, self.home):
            return
        if self.root.is_symlink() or any(self.root.iterdir()):
            raise DatabaseError(
                f"the database user {user.name} cannot write {self.home}: "
                "a parent directory is not traversable"
            )
        digest = hashlib.sha256(str(self.root.absolute()).encode()).hexdigest()[:16]
        target = FALLBACK_HOME / f"pg-{digest}"
        target.mkdir(parents=True, exist_ok=True)
        os.chmod(FALLBACK_HOME, 0o755)
        os.chown(target, user.uid, user.gid)
        os.chmod(target, 0o700)
        self.root.rmdir()
        self.root.symlink_to(target, target_is_directory=True)
        log.warning(
            "server user cannot reach the data directory; cluster kept elsewhere",
            extra={"user": user.name, "link": str(self.root), "target": str(target)},
        )

    def _reachable(self, user: ServerUser, path: Path) -> bool:
        return self._run(user, ["/usr/bin/test", "-w", str(path)], check=False).returncode == 0

    def _initdb(self, user: ServerUser | None) -> None:
        tmp = self.home / f"data.init-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        for stale in self.home.glob("data.init-*"):  # left by a killed earlier initdb
            shutil.rmtree(stale, ignore_errors=True)
        log.info("initialising embedded PostgreSQL cluster", extra={"pgdata": str(self.pgdata)})
        self._run(
            user,
            [
                self._bin("initdb"),
                "-D",
                str(tmp),
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-instructions",
            ],
        )
        with open(tmp / "postgresql.conf", "a") as fh:
            fh.write(
                "\n# smapds: per-start settings (port, socket, listen) live here\n"
                "include_if_exists = 'smapds.conf'\n"
            )
        tmp.rename(self.pgdata)

    def _prepare_socket_dir(self, user: ServerUser | None) -> None:
        sock = self.socket_dir
        sock.mkdir(parents=True, exist_ok=True)
        if user is not None:
            os.chown(sock, user.uid, user.gid)
        os.chmod(sock, 0o755)

    def _write_conf(self) -> None:
        conf = (
            f"port = {self.port}\n"
            "listen_addresses = ''\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            "unix_socket_permissions = 0770\n"
            "max_connections = 60\n"
            "shared_buffers = 256MB\n"
            "timezone = 'UTC'\n"
            "log_timezone = 'UTC'\n"
        )
        target = self.pgdata / "smapds.conf"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(conf)
        os.chmod(tmp, 0o644)
        tmp.replace(target)

    def _clear_stale_locks(self) -> None:
        """Remove lock files whose PID is dead or a zombie (left by a crashed server).

        PostgreSQL clears such files itself unless the PID still answers ``kill(pid, 0)``, which a
        zombie does.
        """
        for lock in (
            self.pgdata / "postmaster.pid",
            self.socket_dir / f".s.PGSQL.{self.port}.lock",
        ):
            pid = _pid_in(lock)
            if pid is not None and not _is_live_postgres(pid):
                log.warning("removing stale lock file", extra={"path": str(lock), "pid": pid})
                lock.unlink(missing_ok=True)

    def _start(self, user: ServerUser | None) -> None:
        args = [
            self._bin("pg_ctl"),
            "-D",
            str(self.pgdata),
            "-l",
            str(self.logfile),
            "-w",
            "-t",
            "120",
            "start",
        ]
        deadline = time.monotonic() + 60
        while True:
            proc = self._run(user, args, check=False)
            if proc.returncode == 0:
                log.info("embedded PostgreSQL started", extra={"socket": str(self.socket_dir)})
                return
            # After a kill -9 of the postmaster its backends linger for a moment holding shared
            # memory; the server refuses to start until they have gone.
            if time.monotonic() > deadline:
                tail = self._log_tail()
                raise DatabaseError(f"embedded PostgreSQL did not start: {tail}")
            time.sleep(1.0)
            self._clear_stale_locks()

    def _log_tail(self) -> str:
        try:
            lines = self.logfile.read_text(errors="replace").strip().splitlines()
        except OSError:
            return f"no log at {self.logfile}"
        return lines[-1] if lines else f"empty log {self.logfile}"


def _pid_in(lock_file: Path) -> int | None:
    try:
        return int(lock_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _is_live_postgres(pid: int) -> bool:
    """True for a running (not zombie) process whose command line names postgres."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and b"postgres" in cmdline


def find_bindir(explicit: Path | None) -> Path:
    """The PostgreSQL server binaries: the configured directory, or the newest installed major."""
    if explicit is not None:
        return explicit
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise DatabaseError(
        "no PostgreSQL server binaries found (install postgresql-15 and postgresql-15-postgis-3, "
        "or set SMAPDS_PG_BINDIR)"
    )
