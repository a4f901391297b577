"""Security (issue item 7), proven against the real code paths: secrets planted in the settings
never come out of a run, hostile names and file names are stored as data and never run as SQL,
the roles keep the service and the analysts to what they need, the HTTP endpoint listens on the
loopback address by default, and paths taken from inputs stay inside the data directory.

Already proven elsewhere, and not repeated here:

- ``tests/test_migrations.py``: the writer writes rows but cannot ``CREATE TABLE`` or
  ``DROP TABLE`` in ``smapds``; the reader cannot ``INSERT`` into the run ledger nor create a
  table in ``public``.
- ``tests/test_cli_db.py``: ``config show`` hides a database URL's password (text output);
  ``db status`` on an unreachable URL names it without the password; ``db psql`` (reader) cannot
  ``DELETE``.
- ``tests/test_insitu_sources.py``: zip members escaping their archive (``../``, absolute, drive
  letter, backslashes), symbolic-link members, zip bombs and symbolic links in ISMN folders are
  refused and never followed.
- ``tests/test_fetch_http.py``: the archive refuses a granule id that is a path; the token is not
  sent across a redirect to an untrusted host; a refused token's error does not carry the token.
- ``tests/test_metrics_http.py``: the token's ``exp`` claim is read without logging the token.
- ``tests/test_deploy_grafana.py``: every dashboard query runs as the read-only role.

What this module adds:

- Secrets: whole runs of real commands with a planted Earthdata token (shaped like a real JWT)
  and a planted database password, at DEBUG: ``config show`` (text and JSON, the token from the
  environment and from a TOML file, the password in the URL and as ``password=``/``sslpassword=``
  parameters), ``fetch`` of a CMR source against the fake NASA, the same with the token refused,
  ``fetch`` and ``ingest`` against an unreachable database, ``status``, ``db url``, ``produce``
  of a day and ``serve``. The password really is in the URL of the runs that reach the module's
  database (the embedded cluster trusts its unix socket, so libpq never needs it). Every output is
  searched for the secrets, raw, URL-encoded and base64-encoded (all alignments): stdout, stderr,
  every row of every ``smapds`` table (ledger, inventory errors, ingest files, products), every
  file under the data directory (quarantine ``.reason`` files, STAC items, COGs), ``/metrics``,
  ``/healthz`` and ``/readyz``. Malformed database URLs are refused without echoing the password;
  the settings hash recorded with every product does not depend on the secrets.
- Hostile names: network, station, instrument, flag and file names carrying SQL, quotes,
  backslashes, ``%s``, ``:name``, ``$1``, CJK and Greek letters and line breaks, through
  ``ingest csv`` and ``ingest ismn``: stored verbatim where the format allows them, rejected per
  row or per file with the reason where it does not (a line break), every table intact after.
  Also CMR granule names (archived verbatim), the analysts' functions and views and Grafana's
  station picker as the reader, and the operators' ``report --stations`` and ``model activate``.
- Roles: the reader can change no row of any table or partition (catalog and real attempts) and
  cannot call the SECURITY DEFINER partition function, which pins its ``search_path``; the
  writer cannot ALTER, CREATE, DROP, COMMENT or add triggers, owns nothing and can grant nothing.
- HTTP: the listening socket of a started ``serve`` is 127.0.0.1 only (read from /proc).
- Paths: CMR granule names that are relative or absolute paths are quarantined before any
  download, nothing is written outside the data directory; symbolic links in the service's
  ingest drop folder (files, a directory, CSV pairs) are not followed by the ingest job.
- The Earthdata token goes only to NASA's hosts and the configured CMR endpoint, never to another
  source's host (an ``https`` source such as CHIRPS at UCSB), over plain http neither.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import fake_nasa
import h5py
import numpy as np
import pytest
import sqlalchemy as sa
from fake_nasa import FakeNasa, serving
from produced_world import Produced
from run_cli import smapds
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from etl.errors import ConfigError
from service import pipeline
from service.db import Database
from service.settings import Settings, load_settings

# -- the planted secrets ----------------------------------------------------------------------------

_MARK = secrets.token_hex(6)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


TOKEN_UID = f"uid-planted-{_MARK}"
"""A claim inside the token: its decoded payload must not be logged either."""
TOKEN_SIGNATURE = f"sig-planted-{_MARK}-tokensignature"
TOKEN = ".".join(
    (
        _b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode()),
        _b64url(json.dumps({"type": "User", "uid": TOKEN_UID, "exp": 1893456000}).encode()),
        TOKEN_SIGNATURE,
    )
)
"""An Earthdata token shaped like the real ones (a JWT with an ``exp`` claim)."""
PASSWORD = f"pw-planted-{_MARK}-@:/%+"
"""A database password with characters that a URL must percent-encode."""
PASSWORD_TAIL = f"tail-planted-{_MARK}"
"""What follows an '@' that an operator forgot to percent-encode in a password."""
SECRETS = {
    "token": TOKEN,
    "token signature": TOKEN_SIGNATURE,
    "token claim": TOKEN_UID,
    "password": PASSWORD,
    "password tail": PASSWORD_TAIL,
}


def _forms(secret: str) -> set[str]:
    """The secret as it could leak: raw, URL-encoded, and base64 (standard and URL-safe) at each
    of the three byte alignments it can have inside a longer encoded text (only the characters
    that depend on the secret alone)."""
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    raw = secret.encode()
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw).decode()
        core = encoded[4 if pad else 0 : -4]
        forms |= {core, core.replace("+", "-").replace("/", "_")}
    return forms


def _leaks(outputs: Mapping[str, str]) -> list[str]:
    """Where a planted secret shows, in any of its forms: ``[]`` when nowhere."""
    return [
        f"{label} ({form!r}) in {where}"
        for where, text in outputs.items()
        for label, secret in SECRETS.items()
        for form in sorted(_forms(secret))
        if form in text
    ]


def test_the_leak_search_finds_each_form_of_a_secret_inside_other_text() -> None:
    for prefix in (b"", b"a", b"ab"):  # the three alignments of base64
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            inside = encode(prefix + f"Bearer {TOKEN}!".encode()).decode()
            assert _leaks({"x": inside}), (prefix, encode)
    for text in (f"x={quote(PASSWORD, safe='')}&", f"x={quote_plus(PASSWORD)}", PASSWORD_TAIL):
        assert _leaks({"x": text})
    assert _leaks({"x": "nothing to see, ***"}) == []


def _with_password(url: str, user: str) -> str:
    """``url`` (``postgresql://user@...``) with the planted password, percent-encoded."""
    assert f"//{user}@" in url, url
    return url.replace(f"//{user}@", f"//{user}:{quote(PASSWORD, safe='')}@", 1)


def _files_text(root: Path) -> dict[str, str]:
    """Every file under ``root`` (archives, quarantine and its .reason files, products, logs)."""
    return {
        f"file {p.relative_to(root)}": p.read_bytes().decode("latin-1")
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _tables(conn: sa.Connection) -> list[str]:
    """Every table of the schema, partitions included."""
    return list(
        conn.execute(
            sa.text("""
            SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'smapds' AND c.relkind IN ('r', 'p') ORDER BY 1""")
        ).scalars()
    )


def _database_text(admin: Engine) -> dict[str, str]:
    """Every row of every ``smapds`` table as text (errors, reasons, paths, details)."""
    out: dict[str, str] = {}
    with admin.connect() as conn:
        for name in _tables(conn):
            rows = sa.select(sa.text("t::text")).select_from(
                sa.table(name, schema="smapds").alias("t")
            )
            out[f"table smapds.{name}"] = "\n".join(conn.execute(rows).scalars())
    return out


def _row_counts(conn: sa.Connection) -> dict[str, int]:
    return {
        name: int(
            conn.execute(
                sa.select(sa.func.count()).select_from(sa.table(name, schema="smapds"))
            ).scalar_one()
        )
        for name in _tables(conn)
    }


def _outputs(label: str, result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    return {f"{label} stdout": result.stdout, f"{label} stderr": result.stderr}


# -- secrets in settings, errors and `config show` ----------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://svc:{quote(PASSWORD, safe='')}@db.example:5432/smapds",
        f"postgresql://svc@db.example/smapds?password={quote(PASSWORD, safe='')}",
        f"postgresql://svc@db.example/smapds?sslmode=require&sslpassword={quote(PASSWORD, safe='')}",
    ],
    ids=["in the userinfo", "as a password parameter", "as an sslpassword parameter"],
)
def test_config_show_hides_the_password_and_the_token_in_text_and_json(
    url: str, tmp_path: Path
) -> None:
    cfg = tmp_path / "smapds.toml"
    cfg.write_text(f'earthdata_token = "{TOKEN}"\ndomain = "demo"\n')
    env = {"SMAPDS_DATABASE_URL": url, "SMAPDS_LOG_LEVEL": "DEBUG"}
    text = smapds("--config", str(cfg), "config", "show", env=env)
    as_json = smapds("config", "show", "--json", env={**env, "SMAPDS_EARTHDATA_TOKEN": TOKEN})
    assert text.returncode == 0 and as_json.returncode == 0, text.stderr + as_json.stderr
    shown = json.loads(as_json.stdout)
    assert shown["earthdata_token"] == "***"
    assert "db.example" in shown["database_url"]  # the rest of the URL is still there
    assert _leaks({**_outputs("text", text), **_outputs("json", as_json)}) == []


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://svc:{PASSWORD}@db.example/smapds",  # '@' and '/' not percent-encoded
        f"postgresql://svc:at@{PASSWORD_TAIL}@db.example/smapds",  # only an '@' not encoded
        f"postgresql://svc:{quote(PASSWORD, safe='')}",  # no host: the password looks like a port
        f"postgresql://svc:{quote(PASSWORD, safe='')}@db.example:x/smapds",
        f"mysql://svc:{quote(PASSWORD, safe='')}@db.example/smapds",
        f"postgresql://svc:{quote(PASSWORD, safe='')}@db.example/",
    ],
    ids=["unencoded", "unencoded @", "no host", "bad port", "not postgresql", "no database"],
)
def test_a_malformed_database_url_is_refused_without_echoing_the_password(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMAPDS_DATABASE_URL", url)
    with pytest.raises(ConfigError, match="SMAPDS_DATABASE_URL") as refused:
        load_settings()
    assert _leaks({"the error": str(refused.value)}) == []


def test_the_settings_hash_recorded_with_products_does_not_depend_on_the_secrets() -> None:
    from service.pipeline import settings_digest

    def hashed(password: str, token: str) -> str:
        url = f"postgresql://svc:{quote(password, safe='')}@db.example/smapds"
        return settings_digest(Settings(database_url=url, earthdata_token=token))

    assert hashed(PASSWORD, TOKEN) == hashed("another-password", "another-token")


# -- secrets through whole runs: fetch (CMR), a refused token, an unreachable database ---------------

DAY = "2024-04-03"
REFUSED_DAY = "2024-04-04"
HOSTILE_GRANULE = "SMAP_L3'; DROP TABLE smapds.granules; --\"\\%s:name$1\nΩ.h5"
"""A plain file name (no '/') full of what SQL, shells and format strings treat specially."""


def _h5(tmp: Path, value: float) -> bytes:
    path = tmp / f"g{value}.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("soil_moisture", data=np.full((4, 4), value), track_times=False)
    return path.read_bytes()


def _cmr_item(nasa: FakeNasa, *, name: str, served_as: str, body: bytes, day: str) -> None:
    """List ``name`` in CMR on ``day`` with a direct download URL (``/data/<served_as>``)."""
    nasa.files[quote(served_as, safe="")] = body
    nasa.cmr_items.append(
        {
            "meta": {"concept-id": f"G{len(nasa.cmr_items)}"},
            "umm": {
                "GranuleUR": name,
                "TemporalExtent": {"RangeDateTime": {"BeginningDateTime": f"{day}T00:00:00Z"}},
                "RelatedUrls": [
                    {"Type": "GET DATA", "URL": f"{nasa.base}/data/{quote(served_as, safe='')}"}
                ],
                "DataGranule": {
                    "ArchiveAndDistributionInformation": [{"Name": name, "SizeInBytes": len(body)}]
                },
            },
        }
    )


@dataclass(frozen=True)
class FetchRuns:
    """Real `smapds` commands run with the planted token and password, and what they left."""

    root: Path
    data: Path
    outside: Path
    escapes: dict[str, str]  # granule name that is a path -> the name it was served as
    results: dict[str, subprocess.CompletedProcess[str]]
    auth_headers: list[str | None]
    downloads: list[str]


@pytest.fixture(scope="module")
def fetch_runs(database: Database, tmp_path_factory: pytest.TempPathFactory) -> FetchRuns:
    root = tmp_path_factory.mktemp("fetch")
    data, outside = root / "data", root / "outside"
    outside.mkdir()
    (root / "provider").mkdir()
    good = _h5(root / "provider", 0.25)
    # data/archive/SPL3SMP/2024/04/03/<name>: six levels up is root, beside the data directory
    escapes = {
        "../../../../../../outside/escaped.h5": "escaped.h5",
        f"{outside}/absolute.h5": "absolute.h5",
        "..": "dotdot.h5",
    }
    nasa = FakeNasa(files={})
    with serving(nasa), pytest.MonkeyPatch.context() as mp:
        mp.setattr(fake_nasa, "TOKEN", TOKEN)  # the provider accepts the planted token
        _cmr_item(nasa, name="SMAP_L3_SM_P_20240403_001.h5", served_as="a.h5", body=good, day=DAY)
        html = b"<html><body>Earthdata Login</body></html>"
        _cmr_item(nasa, name="SMAP_L3_SM_P_20240403_002.h5", served_as="b.h5", body=html, day=DAY)
        _cmr_item(nasa, name=HOSTILE_GRANULE, served_as="hostile.h5", body=good, day=DAY)
        for name, served_as in escapes.items():
            _cmr_item(nasa, name=name, served_as=served_as, body=good, day=DAY)
        _cmr_item(
            nasa, name="SMAP_L3_SM_P_20240404_001.h5", served_as="c.h5", body=good, day=REFUSED_DAY
        )
        env = {
            "SMAPDS_DATA_DIR": str(data),
            "SMAPDS_DATABASE_URL": _with_password(database.url("writer"), "smapds_writer"),
            "SMAPDS_EARTHDATA_TOKEN": TOKEN,
            "SMAPDS_CMR_URL": nasa.base,
            "SMAPDS_SOURCES": json.dumps({"SPL3SMP": {"transport": "cmr"}}),
            "SMAPDS_LOG_LEVEL": "DEBUG",
            "SMAPDS_LOG_FORMAT": "json",
        }
        fetch = ("fetch", "--source", "SPL3SMP", "--date")
        results = {"fetch": smapds(*fetch, DAY, env=env)}
        mp.setattr(fake_nasa, "TOKEN", "the-token-the-provider-wants-now")  # revoked
        results["fetch with a refused token"] = smapds(*fetch, REFUSED_DAY, env=env)
    results["status"] = smapds("status", env=env)
    results["db url"] = smapds("db", "url", env=env)
    unreachable = {
        **env,
        "SMAPDS_DATABASE_URL": f"postgresql://svc:{quote(PASSWORD, safe='')}@127.0.0.1:1/smapds",
    }
    results["fetch with an unreachable database"] = smapds(*fetch, DAY, env=unreachable)
    results["ingest with an unreachable database"] = smapds(
        "ingest", "csv", "--stations", str(root / "none.csv"), env=unreachable
    )
    return FetchRuns(
        root, data, outside, escapes, results, list(nasa.auth_headers), nasa.downloads()
    )


def test_a_planted_token_and_password_appear_in_no_output_of_fetch_runs(
    fetch_runs: FetchRuns, admin: Engine
) -> None:
    runs = fetch_runs.results
    # the secrets were in play: the token reached the provider, the runs logged at DEBUG, the
    # refused token was an authentication failure, logged and recorded
    assert f"Bearer {TOKEN}" in fetch_runs.auth_headers
    assert runs["fetch"].returncode == 1 and '"level": "DEBUG"' in runs["fetch"].stderr
    refused = runs["fetch with a refused token"]
    assert refused.returncode == 1 and "auth_failed" in refused.stderr
    assert "refreshing credentials once" in refused.stderr
    assert "smapds_writer:***@" in runs["status"].stdout + runs["db url"].stdout
    for name in ("fetch with an unreachable database", "ingest with an unreachable database"):
        assert runs[name].returncode == 1 and "Traceback" not in runs[name].stderr
        assert "cannot reach the database at postgresql://svc:***@127.0.0.1:1/" in runs[name].stderr
    with admin.connect() as conn:
        errors = conn.execute(sa.text("SELECT status, error FROM smapds.granules")).all()
    assert any(str(e.error).startswith("authentication failed") for e in errors)
    reasons = list((fetch_runs.data / "quarantine").rglob("*.reason"))
    assert reasons, "the HTML page served as a granule was quarantined with its reason"

    outputs: dict[str, str] = {}
    for label, result in runs.items():
        outputs |= _outputs(label, result)
    outputs |= _database_text(admin) | _files_text(fetch_runs.data)
    assert _leaks(outputs) == []


def test_cmr_granule_names_that_are_paths_are_quarantined_and_nothing_lands_outside(
    fetch_runs: FetchRuns, admin: Engine
) -> None:
    with admin.connect() as conn:
        rows = {
            r.granule_id: (r.status, r.error, r.path)
            for r in conn.execute(
                sa.text("SELECT granule_id, status, error, path FROM smapds.granules")
            )
        }
    for name, served_as in fetch_runs.escapes.items():
        status, error, path = rows[name]
        assert status == "quarantined" and "not a plain file name" in str(error), name
        assert path is None
        assert f"/data/{served_as}" not in fetch_runs.downloads  # refused before any download
    provider = fetch_runs.root / "provider"  # the test's own files
    strays = [
        p
        for p in fetch_runs.root.rglob("*")
        if p.is_file() and not (p.is_relative_to(fetch_runs.data) or p.is_relative_to(provider))
    ]
    assert strays == [] and not any(fetch_runs.outside.iterdir())
    assert not [p for p in fetch_runs.data.rglob("*") if p.name in ("escaped.h5", "absolute.h5")]
    for name in fetch_runs.escapes:  # where the archive or the quarantine would have put them
        for folder in ("archive/SPL3SMP/2024/04/03", "quarantine/SPL3SMP/2024-04-03"):
            target = fetch_runs.data / folder / name
            assert name == ".." or not os.path.lexists(target), target


def test_a_hostile_granule_name_is_archived_and_inventoried_verbatim(
    fetch_runs: FetchRuns, admin: Engine
) -> None:
    with admin.connect() as conn:
        row = conn.execute(
            sa.text("SELECT status, path FROM smapds.granules WHERE granule_id = :g"),
            {"g": HOSTILE_GRANULE},
        ).one()
        assert conn.execute(sa.text("SELECT to_regclass('smapds.granules')")).scalar() is not None
    assert row.status == "fetched"
    assert row.path == f"archive/SPL3SMP/2024/04/03/{HOSTILE_GRANULE}"
    assert (fetch_runs.data / row.path).is_file()


# -- the service: its listening socket, and the secrets in its logs, health and metrics -------------


def _socket_address(hex_address: str) -> tuple[str, int]:
    """``0100007F:2580`` (/proc/net/tcp: host byte order per 32-bit word) -> (``127.0.0.1``, 9600)."""
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, words), int(port, 16)


def _listening(pid: int) -> set[tuple[str, int]]:
    """The TCP addresses the process ``pid`` listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # TCP_LISTEN
                found.add(_socket_address(fields[1]))
    return found


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@dataclass(frozen=True)
class ServeRun:
    """`smapds serve` started with the planted secrets and a database that does not answer."""

    listening: set[tuple[str, int]]
    port: int
    answers: dict[str, tuple[int, str]]
    exit_code: int
    stdout: str
    stderr: str
    data: Path


@pytest.fixture(scope="module")
def serve_run(tmp_path_factory: pytest.TempPathFactory) -> ServeRun:
    root = tmp_path_factory.mktemp("serve")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMAPDS_")}
    env |= {
        "SMAPDS_DATA_DIR": str(root / "data"),
        # nothing listens there: the service starts, serves its probes and waits for the database
        "SMAPDS_DATABASE_URL": f"postgresql://smapds_writer:{quote(PASSWORD, safe='')}@/smapds"
        f"?host={quote(str(root), safe='')}&port=1",
        "SMAPDS_EARTHDATA_TOKEN": TOKEN,
        "SMAPDS_LOG_LEVEL": "DEBUG",
        "SMAPDS_LOG_FORMAT": "json",
        "SMAPDS_HTTP_PORT": "0",  # any free port, on the default address
    }
    out, err = root / "stdout", root / "stderr"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + 60
            port = None
            while port is None or "waiting for the database" not in err.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
                for line in err.read_text().splitlines():
                    if '"http endpoint listening"' in line:
                        port = int(json.loads(line)["port"])
                time.sleep(0.2)
            listening = _listening(proc.pid)
            answers = {path: _get(port, path) for path in ("/metrics", "/healthz", "/readyz")}
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
    return ServeRun(listening, port, answers, code, out.read_text(), err.read_text(), root / "data")


def test_the_service_listens_on_the_loopback_address_only_by_default(serve_run: ServeRun) -> None:
    assert Settings.model_fields["http_address"].default == "127.0.0.1"
    assert serve_run.listening == {("127.0.0.1", serve_run.port)}
    assert serve_run.answers["/readyz"][0] == 503  # it answered there, still starting
    assert serve_run.exit_code == 0, serve_run.stderr


def test_the_service_keeps_the_secrets_out_of_its_logs_probes_and_metrics(
    serve_run: ServeRun,
) -> None:
    status, health = serve_run.answers["/healthz"]
    assert status == 503 and "database:" in json.loads(health)["reason"]  # the error path ran
    assert "smapds_database_up" in serve_run.answers["/metrics"][1]
    assert '"level": "DEBUG"' in serve_run.stderr
    outputs = {
        "serve stdout": serve_run.stdout,
        "serve stderr": serve_run.stderr,
        **{f"GET {path}": body for path, (_, body) in serve_run.answers.items()},
        **_files_text(serve_run.data),
    }
    assert _leaks(outputs) == []


# -- hostile names through the in situ loaders, the analysts' queries and the operators' options ----

INJECTION = "'; DROP TABLE smapds.observations; --"
CSV_NETWORK = "CSV'\";\\%s:name$1Ω"
CSV_STATION = f'{INJECTION} "q" \\ %s :name $1 站点'
ISMN_NETWORK = "ISMN'\";\\%s:name$1Ω"  # ISMN: one token, no '_' (it separates the name's fields)
ISMN_STATION = f'{INJECTION} "q" \\ %s :name $1 测站'
INSTRUMENT = "Probe'\";--%s:name$1"
PROVIDER_FLAG = "%s:name$1'\\"
GHOST_NETWORK = "NOBODY'; DELETE FROM smapds.stations; --"
FILE_PART = "'; DROP TABLE smapds.ingest_files; --\"\\%s:name$1Ω"


def _csv(*rows: tuple[object, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerows(rows)
    return buffer.getvalue()


def _ismn(network: str, station: str) -> str:
    return (
        f"{network} {network} {station} 36.20000 116.20000 50.00 0.0500 0.0500 {INSTRUMENT}\n"
        "2024/04/01 00:00   0.2100 G M\n"
        "2024/04/01 01:00   0.2200 G M\n"
    )


def _ismn_name(network: str, station_in_name: str) -> str:
    return (
        f"{network}_{network}_{station_in_name}_sm_0.050000_0.050000_{INSTRUMENT}"
        "_20240401_20240401.stm"
    )


@dataclass(frozen=True)
class HostileIngest:
    stations_csv: Path
    observations_csv: Path
    ismn_good: Path
    ismn_newline: Path
    ghost_line: str
    csv_run: subprocess.CompletedProcess[str]
    ismn_run: subprocess.CompletedProcess[str]
    counts_before: dict[str, int]
    counts_after: dict[str, int]


@pytest.fixture(scope="module")
def hostile_ingest(
    database: Database, admin: Engine, tmp_path_factory: pytest.TempPathFactory
) -> HostileIngest:
    root = tmp_path_factory.mktemp("hostile") / f"drop{FILE_PART}"
    root.mkdir()
    stations = root / f"st{FILE_PART}\nline_stations.csv"
    stations.write_text(
        _csv(
            ("network", "station", "lon", "lat", "elevation_m", "land_cover"),
            (CSV_NETWORK, CSV_STATION, 116.1, 36.1, 40, INJECTION),
            ("CMA", "broken\nrecord", 116.2, 36.2, 40, "x"),  # a line break splits the record
        ),
        encoding="utf-8",
    )
    ghost_sensor = (GHOST_NETWORK, "ghost", "soil_moisture", 0, 0.05, "x")
    ghost = (*ghost_sensor, "2024-04-01T00:00Z", 0.2, "G", "")  # a station nobody loaded
    observations = root / f"obs{FILE_PART}\nline_observations.csv"
    columns = ("network", "station", "variable", "depth_from_m", "depth_to_m", "instrument")
    header = (*columns, "time", "value", "quality_flag", "provider_flag")
    sensor = (CSV_NETWORK, CSV_STATION, "soil_moisture", 0.0, 0.05, INSTRUMENT)
    observations.write_text(
        _csv(
            header,
            (*sensor, "2024-04-01T00:00:00Z", 0.21, "G", PROVIDER_FLAG),
            (*sensor, "2024-04-01T01:00:00Z", 0.22, "G", PROVIDER_FLAG),
            ghost,
        ),
        encoding="utf-8",
    )
    ismn = root / "ismn"
    ismn.mkdir()
    good = ismn / _ismn_name(ISMN_NETWORK, ISMN_STATION)
    good.write_text(_ismn(ISMN_NETWORK, ISMN_STATION), encoding="utf-8")
    newline = ismn / _ismn_name(ISMN_NETWORK, "line\nbreak")  # same key as "line break"
    newline.write_text(_ismn(ISMN_NETWORK, "line break"), encoding="utf-8")

    env = {"SMAPDS_DATABASE_URL": database.url("writer"), "SMAPDS_DATA_DIR": str(root / "data")}
    with admin.connect() as conn:
        before = _row_counts(conn)
    csv_run = smapds(
        "ingest", "csv", "--stations", str(stations), "--observations", str(observations), env=env
    )
    ismn_run = smapds("ingest", "ismn", str(ismn), env=env)
    with admin.connect() as conn:
        after = _row_counts(conn)
    return HostileIngest(
        stations,
        observations,
        good,
        newline,
        _csv(ghost).rstrip("\n"),
        csv_run,
        ismn_run,
        before,
        after,
    )


def _station_rows(admin: Engine, network: str) -> list[sa.Row[Any]]:
    with admin.connect() as conn:
        return list(
            conn.execute(
                sa.text("""
                SELECT st.station, se.instrument, o.value, o.quality_flag, o.provider_flag
                  FROM smapds.stations st
                  JOIN smapds.sensors se ON se.station_id = st.station_id
                  JOIN smapds.observations o ON o.sensor_id = se.sensor_id
                 WHERE st.network = :n ORDER BY o.time"""),
                {"n": network},
            )
        )


def _file_rows(admin: Engine) -> dict[str, sa.Row[Any]]:
    with admin.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT file_id, path, status, rows_loaded, error FROM smapds.ingest_files")
        )
        return {r.path: r for r in rows}


def test_hostile_csv_names_are_stored_verbatim_and_bad_rows_rejected_by_line(
    hostile_ingest: HostileIngest, admin: Engine
) -> None:
    run = hostile_ingest.csv_run
    assert run.returncode == 1, run.stdout + run.stderr  # rows were rejected, none failed
    rows = _station_rows(admin, CSV_NETWORK)
    assert [(r.station, r.instrument, r.value) for r in rows] == [
        (CSV_STATION, INSTRUMENT, 0.21),
        (CSV_STATION, INSTRUMENT, 0.22),
    ]
    assert {r.provider_flag for r in rows} == {PROVIDER_FLAG}
    files = _file_rows(admin)
    stations = files[str(hostile_ingest.stations_csv)]
    observations = files[str(hostile_ingest.observations_csv)]
    assert (stations.status, stations.rows_loaded) == ("DEGRADED", 1)
    assert (observations.status, observations.rows_loaded) == ("DEGRADED", 2)
    with admin.connect() as conn:
        rejects = conn.execute(
            sa.text(
                "SELECT file_id, line_no, reason, line FROM smapds.ingest_rejects "
                "WHERE file_id IN (:s, :o) ORDER BY file_id, line_no"
            ),
            {"s": stations.file_id, "o": observations.file_id},
        ).all()
        names = set(conn.execute(sa.text("SELECT network FROM smapds.stations")).scalars())
    assert [(r.line_no, r.reason) for r in rejects if r.file_id == stations.file_id] == [
        (3, "malformed_record"),  # 'CMA,"broken': an unclosed quote
        (4, "wrong_column_count"),  # 'record",...': the rest of the record
    ]
    [ghost] = [r for r in rejects if r.file_id == observations.file_id]
    assert (ghost.line_no, ghost.reason, ghost.line) == (
        4,
        "unknown_station",
        hostile_ingest.ghost_line,
    )
    assert GHOST_NETWORK not in names and "CMA" not in names


def test_hostile_ismn_names_are_stored_verbatim_and_a_name_with_a_line_break_refused(
    hostile_ingest: HostileIngest, admin: Engine
) -> None:
    run = hostile_ingest.ismn_run
    assert run.returncode == 1, run.stdout + run.stderr  # one file refused, none failed
    rows = _station_rows(admin, ISMN_NETWORK)
    assert [(r.station, r.instrument, r.value) for r in rows] == [
        (ISMN_STATION, INSTRUMENT, 0.21),
        (ISMN_STATION, INSTRUMENT, 0.22),
    ]
    files = _file_rows(admin)
    assert files[str(hostile_ingest.ismn_good)].status == "OK"
    refused = files[str(hostile_ingest.ismn_newline)]
    assert refused.status == "QUARANTINED" and refused.rows_loaded == 0
    assert "not an ISMN data file name" in refused.error


def test_every_table_still_exists_with_its_rows_after_the_hostile_loads(
    hostile_ingest: HostileIngest,
) -> None:
    before, after = hostile_ingest.counts_before, hostile_ingest.counts_after
    assert set(before) <= set(after) and {"observations", "stations", "ingest_files"} <= set(after)
    assert all(after[t] >= n for t, n in before.items())
    assert after["observations"] >= before["observations"] + 4


GRAFANA_STATIONS = (
    Path(__file__).resolve().parents[2]
    / "deploy"
    / "grafana"
    / "dashboards"
    / "smapds-stations.json"
)


def test_hostile_strings_through_the_analysts_queries_are_data_not_sql(
    hostile_ingest: HostileIngest, database: Database
) -> None:
    reader = database.engine("reader")
    try:
        with reader.connect() as conn:
            near = conn.execute(
                sa.text("SELECT network, station FROM smapds.stations_within(116.1, 36.1, 5)")
            ).all()
            assert [tuple(r) for r in near] == [(CSV_NETWORK, CSV_STATION)]
            for network, station in ((CSV_NETWORK, CSV_STATION), (INJECTION, INJECTION)):
                conn.execute(
                    sa.text(
                        "SELECT * FROM smapds.station_vs_product "
                        "WHERE network = :n AND station = :s ORDER BY product_date"
                    ),
                    {"n": network, "s": station},
                ).all()
            stats = conn.execute(
                sa.text("SELECT * FROM smapds.stations_within_stats(116.1, 36.1, 50, 90, :e)"),
                {"e": INJECTION},
            ).all()
            assert stats == []
            # Grafana's station picker puts the id into the panels' SQL, never the name
            picker = next(
                v["query"]
                for v in json.loads(GRAFANA_STATIONS.read_text())["templating"]["list"]
                if v["name"] == "station"
            )
            choices = {r.__text: r.__value for r in conn.execute(sa.text(picker))}
            assert isinstance(choices[f"{CSV_NETWORK} / {CSV_STATION}"], int)
            assert conn.execute(sa.text("SELECT to_regclass('smapds.observations')")).scalar()
    finally:
        reader.dispose()


def test_hostile_operator_options_are_refused_in_one_line_and_change_nothing(
    hostile_ingest: HostileIngest, database: Database, admin: Engine, tmp_path: Path
) -> None:
    env = {"SMAPDS_DATABASE_URL": database.url("writer"), "SMAPDS_DATA_DIR": str(tmp_path)}
    with admin.connect() as conn:
        before = _row_counts(conn)
    report = smapds(
        "report",
        "--start",
        "2024-04-01",
        "--end",
        "2024-04-02",
        "--out",
        str(tmp_path / "r"),
        "--stations",
        f"1{INJECTION}",
        env=env,
    )
    assert report.returncode == 2
    assert report.stderr.strip().splitlines() == [
        f"smapds: --stations: not a station id: {'1' + INJECTION!r}"
    ]
    activate = smapds("model", "activate", f"x{INJECTION}", env=env)
    assert activate.returncode == 1 and "no registered model named" in activate.stderr
    with admin.connect() as conn:
        assert _row_counts(conn) == before


# -- roles ----------------------------------------------------------------------------------------

_GRANTED_TO_READER = """
    WITH rel AS (
        SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'smapds' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f'))
    SELECT rel.oid::regclass::text AS relation, p.privilege
      FROM rel, unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'])
                AS p(privilege)
     WHERE rel.relkind <> 'S' AND has_table_privilege('smapds_reader', rel.oid, p.privilege)
    UNION ALL
    SELECT rel.oid::regclass::text, p.privilege
      FROM rel, unnest(ARRAY['UPDATE', 'USAGE']) AS p(privilege)
     WHERE rel.relkind = 'S' AND has_sequence_privilege('smapds_reader', rel.oid, p.privilege)
"""
"""What the catalog says the reader may do to the relations of the schema, beyond SELECT."""

_WRITES_TO_EVERY_TABLE = """
    SELECT c.oid::regclass::text AS relation, v.verb,
           format(v.template, c.oid::regclass,
                  (SELECT a.attname FROM pg_attribute a
                    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                    ORDER BY a.attnum LIMIT 1)) AS statement
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
           (VALUES ('INSERT', 'INSERT INTO %s DEFAULT VALUES'),
                   ('UPDATE', 'UPDATE %s SET %I = DEFAULT'),
                   ('DELETE', 'DELETE FROM %s'),
                   ('TRUNCATE', 'TRUNCATE %s')) AS v(verb, template)
     WHERE n.nspname = 'smapds' AND c.relkind IN ('r', 'p')
     ORDER BY 1, 2
"""
"""Each kind of write to each table (partitions included), as a statement to try."""


def _denied(engine: Engine, statement: str) -> bool:
    """True when the role may not run ``statement`` (run in a transaction that is rolled back)."""
    with engine.connect() as conn:
        try:
            conn.exec_driver_sql(statement)
        except DBAPIError as err:
            conn.rollback()
            return "permission denied" in str(err) or "must be owner" in str(err)
        conn.rollback()
        return False


@pytest.fixture(scope="module")
def reader(database: Database, writer: Engine) -> Iterator[Engine]:
    with writer.begin() as conn:  # at least one partition of observations exists
        conn.execute(
            sa.text(
                "SELECT smapds.ensure_observation_partitions("
                "'2024-04-01T00:00Z', '2024-04-30T00:00Z')"
            )
        )
    engine = database.engine("reader")
    yield engine
    engine.dispose()


def test_the_reader_can_change_no_row_of_any_relation_in_the_schema(
    reader: Engine, writer: Engine, admin: Engine
) -> None:
    assert not _denied(writer, "DELETE FROM smapds.stations WHERE false")  # the check can tell
    with admin.connect() as conn:
        assert conn.execute(sa.text(_GRANTED_TO_READER)).all() == []
        writes = conn.execute(sa.text(_WRITES_TO_EVERY_TABLE)).all()
    tables = {w.relation for w in writes}
    assert "smapds.observations" in tables and "smapds.observations_2024_04" in tables
    assert [(w.relation, w.verb) for w in writes if not _denied(reader, w.statement)] == []
    with reader.connect() as conn:  # and it still reads
        assert conn.execute(sa.text("SELECT count(*) FROM smapds.stations")).scalar() is not None


def test_the_reader_cannot_create_partitions_through_the_security_definer_function(
    reader: Engine,
) -> None:
    assert _denied(
        reader,
        "SELECT smapds.ensure_observation_partitions('2030-01-01T00:00Z', '2030-02-01T00:00Z')",
    )


def test_every_security_definer_function_is_the_owners_and_pins_its_search_path(
    admin: Engine,
) -> None:
    with admin.connect() as conn:
        definers = conn.execute(
            sa.text("""
            SELECT p.oid::regprocedure::text AS name, pg_get_userbyid(p.proowner) AS owner,
                   coalesce(array_to_string(p.proconfig, ' '), '') AS config,
                   has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
              FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'smapds' AND p.prosecdef""")
        ).all()
    assert [d.name for d in definers] == [
        "smapds.ensure_observation_partitions(timestamp with time zone,timestamp with time zone)"
    ]
    for d in definers:
        assert d.owner == "smapds_owner" and not d.public_execute
        assert "search_path=pg_catalog, pg_temp" in d.config  # pg_temp last: no hijacking


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE smapds.observations ADD COLUMN intruder int",
        "ALTER TABLE smapds.stations DROP CONSTRAINT stations_pkey",
        "CREATE INDEX intruder ON smapds.stations (station)",
        "CREATE VIEW smapds.intruder AS SELECT 1",
        "CREATE FUNCTION smapds.intruder() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE OR REPLACE FUNCTION smapds.surface_max_depth_m() RETURNS double precision "
        "LANGUAGE sql AS 'SELECT 1.0'",
        "DROP FUNCTION smapds.stations_within(double precision, double precision, double precision)",
        "DROP VIEW smapds.station_vs_product",
        "CREATE TABLE public.intruder (x int)",
        "CREATE SCHEMA intruder",
        "COMMENT ON TABLE smapds.stations IS 'changed'",
        "CREATE TRIGGER intruder BEFORE INSERT ON smapds.stations FOR EACH ROW "
        "EXECUTE FUNCTION smapds.log_collocation_change()",
    ],
)
def test_the_services_role_cannot_change_the_schema(writer: Engine, statement: str) -> None:
    assert _denied(writer, statement)


def test_the_services_role_owns_nothing_creates_nothing_and_grants_nothing(admin: Engine) -> None:
    with admin.connect() as conn:
        owned = conn.execute(
            sa.text("""
            SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n
                ON n.oid = c.relnamespace
             WHERE n.nspname = 'smapds' AND c.relowner <> 'smapds_owner'::regrole
            UNION ALL
            SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n
                ON n.oid = p.pronamespace
             WHERE n.nspname = 'smapds' AND p.proowner <> 'smapds_owner'::regrole""")
        ).all()
        powers = conn.execute(
            sa.text("""
            SELECT pg_has_role('smapds_writer', 'smapds_owner', 'MEMBER') AS owner_member,
                   has_schema_privilege('smapds_writer', 'smapds', 'CREATE') AS create_smapds,
                   has_schema_privilege('smapds_writer', 'public', 'CREATE') AS create_public,
                   has_database_privilege('smapds_writer', current_database(), 'CREATE')
                       AS create_schema,
                   (SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls
                      FROM pg_roles WHERE rolname = 'smapds_writer') AS role_attributes,
                   EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE n.nspname = 'smapds' AND c.relkind IN ('r', 'p', 'v')
                              AND has_table_privilege('smapds_writer', c.oid,
                                                      'SELECT WITH GRANT OPTION')) AS can_grant""")
        ).one()
    assert owned == []
    assert not any(powers), powers._asdict()


# -- paths from inputs: the service's ingest drop folder --------------------------------------------


def _station_csv_pair(folder: Path, name: str, network: str) -> tuple[Path, Path]:
    stations = folder / f"{name}_stations.csv"
    stations.write_text(_csv(("network", "station", "lon", "lat"), (network, name, 116.3, 36.3)))
    observations = folder / f"{name}_observations.csv"
    header = ("network", "station", "variable", "depth_from_m", "depth_to_m", "time", "value")
    row = (network, name, "soil_moisture", 0.0, 0.05, "2024-04-02T00:00Z", 0.3)
    observations.write_text(_csv((*header, "quality_flag"), (*row, "G")))
    return stations, observations


def test_symbolic_links_in_the_drop_folder_are_not_followed_by_the_ingest_job(
    writer: Engine, admin: Engine, tmp_path: Path
) -> None:
    drop, outside = tmp_path / "drop", tmp_path / "outside"
    drop.mkdir()
    outside.mkdir()
    _station_csv_pair(drop, "inside", "DROP")
    secret_stations, secret_observations = _station_csv_pair(outside, "secret", "OUTSIDE")
    (outside / "nested").mkdir()
    _station_csv_pair(outside / "nested", "nested", "OUTSIDE")
    stm = outside / _ismn_name("OUTSIDE", "far")
    stm.write_text(_ismn("OUTSIDE", "far"))
    (drop / "leak_stations.csv").symlink_to(secret_stations)
    (drop / "leak_observations.csv").symlink_to(secret_observations)
    (drop / stm.name).symlink_to(stm)
    (drop / "linked").symlink_to(outside, target_is_directory=True)

    settings = Settings(data_dir=tmp_path / "data", domain="demo", ingest_dir=drop)
    with pipeline.supervisor(writer, settings) as sup:
        outcome = pipeline.run_ingest(sup, today=date(2024, 4, 9))

    with admin.connect() as conn:
        networks = set(conn.execute(sa.text("SELECT network FROM smapds.stations")).scalars())
        files = {
            r.path: (r.status, r.error)
            for r in conn.execute(
                sa.text("SELECT path, status, error FROM smapds.ingest_files WHERE path LIKE :p"),
                {"p": f"{tmp_path}/%"},
            )
        }
    assert outcome.rows_loaded > 0 and "DROP" in networks  # the folder itself was loaded
    assert "OUTSIDE" not in networks
    assert not [p for p in files if Path(p).is_relative_to(outside)]
    assert files[str(drop / stm.name)] == (
        "QUARANTINED",
        f"{drop / stm.name}: symbolic link refused",
    )
    assert files[str(drop / "linked")][0] == "QUARANTINED"


# -- the token and the hosts it goes to ---------------------------------------------------------------


class _RecordingProxy(ThreadingHTTPServer):
    """An HTTP proxy on 127.0.0.1 that records what each request carried and answers 404, so a
    source can name a third-party host (CHIRPS at UCSB) without leaving the machine."""

    seen: list[tuple[str, str | None]]


class _Record(BaseHTTPRequestHandler):
    server: _RecordingProxy

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_earthdata_token_is_never_sent_to_a_host_outside_nasa(
    database: Database, tmp_path: Path
) -> None:
    proxy = _RecordingProxy(("127.0.0.1", 0), _Record)
    proxy.seen = []
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        pattern = (
            "http://data.chc.ucsb.edu/products/CHIRPS-2.0/global_daily/tifs/p05/{day:%Y}/"
            "chirps-v2.0.{day:%Y.%m.%d}.tif"
        )
        address = f"http://127.0.0.1:{proxy.server_address[1]}"
        env = {
            "SMAPDS_DATA_DIR": str(tmp_path / "data"),
            "SMAPDS_DATABASE_URL": database.url("writer"),
            "SMAPDS_EARTHDATA_TOKEN": TOKEN,
            "SMAPDS_SOURCES": json.dumps({"CHIRPS": {"transport": "https", "pattern": pattern}}),
            "HTTP_PROXY": address,
            "http_proxy": address,
            "NO_PROXY": "",
            "no_proxy": "",
        }
        result = smapds("fetch", "--date", DAY, "--source", "CHIRPS", env=env)
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert result.returncode in (0, 1), result.stderr
    assert [path for path, _ in proxy.seen] == [
        "http://data.chc.ucsb.edu/products/CHIRPS-2.0/global_daily/tifs/p05/2024/"
        "chirps-v2.0.2024.04.03.tif"
    ]  # the request went to UCSB (through the recording proxy)
    assert [auth for _, auth in proxy.seen if auth and TOKEN in auth] == []


# -- a produced day: the STAC item, the product row and the run ledger ------------------------------


def test_a_day_produced_with_planted_secrets_carries_them_nowhere(
    produced: Produced, demo_world: Path, database: Database, admin: Engine
) -> None:
    env = {
        "SMAPDS_DATA_DIR": str(produced.data_dir),
        "SMAPDS_SYNTHETIC_DIR": str(demo_world),
        "SMAPDS_DATABASE_URL": _with_password(database.url("writer"), "smapds_writer"),
        "SMAPDS_EARTHDATA_TOKEN": TOKEN,
        "SMAPDS_LOG_LEVEL": "DEBUG",
        "SMAPDS_LOG_FORMAT": "json",
    }
    result = smapds("produce", "--date", "2024-04-08", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    items = list((produced.data_dir / "products").rglob("*.json"))
    assert items and all("smapds:settings_sha256" in p.read_text() for p in items)
    outputs = _outputs("produce", result) | _database_text(admin)
    outputs |= _files_text(produced.data_dir / "products")  # COGs, STAC items, quicklooks
    assert _leaks(outputs) == []


def test_the_metrics_read_the_tokens_expiry_and_expose_no_secret(
    database: Database, writer: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    from prometheus_client import generate_latest

    from service.metrics import ServiceMetrics

    settings = Settings(
        domain="demo",
        database_url=_with_password(database.url("writer"), "smapds_writer"),
        earthdata_token=TOKEN,
    )
    caplog.set_level("DEBUG")
    metrics = ServiceMetrics()
    assert metrics.refresh(writer, settings, date(2024, 4, 10))
    exposition = generate_latest(metrics.registry).decode()
    assert "smapds_earthdata_token_expiry_timestamp_seconds 1.893456e+09" in exposition
    assert _leaks({"/metrics": exposition, "logs": caplog.text}) == []
