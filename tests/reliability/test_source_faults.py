"""Source faults (issue 3): the fetch stage against a fake NASA that misbehaves as real providers do.

Each test drives :func:`service.fetch.fetch_day` with the real CMR adapter and HTTP client against
``tests/fake_nasa.py`` on 127.0.0.1, then checks what the service would show: the inventory rows
(``smapds.granules``), the archive (byte for byte what the provider holds, nothing partial under a
final name), the quarantine and its ``.reason`` files, and the metrics as the service rebuilds them
from the database (:meth:`service.metrics.ServiceMetrics.refresh`, plus the fetch-failure counter it
feeds from each day's outcome). Faults covered here and not in ``tests/test_fetch_*.py``: a 5xx
storm, a stalled body and a silent host that outlast the retries (the day waits, then recovers);
a CMR search that never answers; zero-byte granules; a new CRID, a reprocessed day, a new
collection version and an unsupported layout; a four-day outage with late granules; a token that
stays refused. Backoff sleeps are injected away and read timeouts are a fraction of a second.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest
import sqlalchemy as sa
from fake_nasa import TOKEN, FakeNasa, serving
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine

from etl.archive import Archive
from etl.grid import get_domain
from etl.sources.cmr import PRODUCTS, CmrSource
from etl.sources.http import HttpClient, TokenProvider
from etl.stack import InputNames, UnreadableInputError, coarse_retrievals
from service import inventory
from service.fetch import SourceOutcome, fetch_day, quarantine_archived
from service.metrics import ServiceMetrics
from service.pipeline import DayOutcome, SourceResult
from service.settings import Settings
from service.sources import token_provider

DAYS = [date(2024, 4, 1) + timedelta(days=i) for i in range(8)]
"""The synthetic world's days (``demo_world``)."""
WINDOW = 2
"""Latency window (days) of these tests: a day older than this without a granule is a gap."""
RETRIES = 2
"""Retries of the test client: a fault that lasts RETRIES + 1 answers outlasts one run."""
READ_TIMEOUT_S = 0.3
SETTINGS = Settings(
    domain="demo", service_first_date=DAYS[0], product_lag_days=2, latency_window_days=WINDOW
)
DEMO = get_domain("demo")
AM = "Soil_Moisture_Retrieval_Data_AM"
PM = "Soil_Moisture_Retrieval_Data_PM"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


# -- the provider, the archive, the client ------------------------------------------------------


@pytest.fixture(autouse=True)
def empty_inventory(writer: Engine) -> None:
    with writer.begin() as conn:
        conn.execute(sa.text("DELETE FROM smapds.granules"))


@pytest.fixture
def nasa() -> Iterator[FakeNasa]:
    with serving(FakeNasa(files={}, cmr_short_name="SPL3SMP")) as fake:
        yield fake


@pytest.fixture
def archive(tmp_path: Path) -> Archive:
    data = tmp_path / "data"
    return Archive(root=data / "archive", quarantine=data / "quarantine")


def _name(day: date, crid: str = "R19240", counter: str = "001") -> str:
    return f"SMAP_L3_SM_P_{day:%Y%m%d}_{crid}_{counter}.h5"


def _world(world: Path, day: date) -> Path:
    return world / "smap" / "SPL3SMP" / f"{day:%Y.%m.%d}" / _name(day)


def _publish(nasa: FakeNasa, world: Path, day: date) -> bytes:
    """List the world's granule of ``day`` in CMR and serve it; its bytes."""
    body = _world(world, day).read_bytes()
    nasa.add_granule(_name(day), body, day=day.isoformat())
    return body


def _client(token: TokenProvider | None = None) -> HttpClient:
    return HttpClient(
        token=token or (lambda refresh: TOKEN),
        trusted_hosts=("127.0.0.1",),
        retries=RETRIES,
        backoff_s=0.01,
        connect_timeout_s=2,
        read_timeout_s=READ_TIMEOUT_S,
        sleep=lambda s: None,
    )


def _source(nasa: FakeNasa, token: TokenProvider | None = None) -> CmrSource:
    return CmrSource("SPL3SMP", PRODUCTS["SPL3SMP"], _client(token), DEMO.bbox_lonlat(), nasa.base)


def _fetch(
    writer: Engine, source: CmrSource, archive: Archive, day: date, *, today: date
) -> SourceOutcome:
    (outcome,) = fetch_day(writer, [source], archive, day, today=today, window_days=WINDOW)
    return outcome


# -- what the service would show ------------------------------------------------------------------


def _inventory(writer: Engine) -> dict[tuple[date, str], tuple[str, str | None]]:
    """(granule date, granule id) -> (status, error) of every SPL3SMP row."""
    with writer.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT granule_date, granule_id, status, error FROM smapds.granules "
                "WHERE source = 'SPL3SMP'"
            )
        )
        return {(r.granule_date, r.granule_id): (r.status, r.error) for r in rows}


def _statuses(writer: Engine) -> dict[tuple[date, str], str]:
    return {k: status for k, (status, _) in _inventory(writer).items()}


def _metrics(
    writer: Engine,
    today: date,
    outcomes: Iterable[SourceOutcome] = (),
    *,
    process: ServiceMetrics | None = None,
) -> Samples:
    """The exposition of a ``smapds serve`` process (``process``, else a freshly started one)
    after a day job: state rebuilt from the database, and the fetch-failure counter fed with the
    job's outcomes (a counter: it keeps what earlier jobs of the same process added)."""
    metrics = process or ServiceMetrics()
    assert metrics.refresh(writer, SETTINGS, today)
    fetched = tuple(
        SourceResult(o.source, o.day, o.status, o.downloaded, o.quarantined, o.failed)
        for o in outcomes
    )
    if fetched:
        metrics.observe_day(DayOutcome(today, "PENDING", fetched=fetched))
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        for s in family.samples
    }


def _granules(samples: Samples, status: str) -> float:
    """``smapds_granules{source="SPL3SMP", status=...}`` (0 when the series is absent)."""
    return samples.get(("smapds_granules", (("source", "SPL3SMP"), ("status", status))), 0.0)


def _failing(samples: Samples, reason: str) -> float:
    """``smapds_granules_failing{source="SPL3SMP", reason=...}`` (0 when absent)."""
    key = ("smapds_granules_failing", (("reason", reason), ("source", "SPL3SMP")))
    return samples.get(key, 0.0)


def _failures_total(samples: Samples, reason: str) -> float:
    """``smapds_fetch_failures_total{source="SPL3SMP", reason=...}`` (0 when absent)."""
    key = ("smapds_fetch_failures_total", (("reason", reason), ("source", "SPL3SMP")))
    return samples.get(key, 0.0)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _assert_archive_holds(archive: Archive, expected: dict[str, bytes]) -> None:
    """Exactly ``expected`` (file name -> bytes) under final names, and no temporary file left."""
    finals = {
        p.name: _sha(p.read_bytes())
        for p in archive.root.rglob("*")
        if p.is_file() and ".tmp" not in p.relative_to(archive.root).parts
    }
    assert finals == {name: _sha(body) for name, body in expected.items()}
    assert not [p for p in (archive.root / ".tmp").rglob("*") if p.is_file()]


def _quarantined(archive: Archive) -> list[str]:
    return sorted(p.name for p in archive.quarantine.rglob("*") if p.is_file())


# -- a host that keeps failing: 5xx storm, stalled body, silence -----------------------------------


@pytest.mark.parametrize(
    ("fault", "reported"),
    [
        pytest.param("fail_first", "HTTP 503", id="5xx-storm"),
        pytest.param("stall_first", "ReadTimeout", id="stalls-after-headers"),
        pytest.param("silent_first", "ReadTimeout", id="never-answers"),
    ],
)
def test_a_download_host_that_fails_past_the_retries_leaves_the_day_pending_then_recovers(
    fault: str,
    reported: str,
    nasa: FakeNasa,
    demo_world: Path,
    writer: Engine,
    archive: Archive,
) -> None:
    day = DAYS[3]
    body = _publish(nasa, demo_world, day)
    getattr(nasa, fault)[_name(day)] = RETRIES + 1  # one answer per attempt of the first run
    source = _source(nasa)

    started = time.monotonic()
    first = _fetch(writer, source, archive, day, today=day + timedelta(days=1))
    elapsed = time.monotonic() - started

    # never hangs: the stalled answers would wait 30 s; each attempt costs one read timeout
    assert elapsed < (RETRIES + 1) * READ_TIMEOUT_S + 5
    assert len(nasa.downloads()) == RETRIES + 1  # retried, then gave up
    assert (first.status, first.downloaded, first.failed) == ("pending", 0, 1)
    assert f"giving up after {RETRIES + 1} attempts ({reported})" in str(first.detail)
    assert _inventory(writer) == {(day, _name(day)): ("pending", first.detail)}
    _assert_archive_holds(archive, {})
    assert _quarantined(archive) == []  # a failing host is not a bad file
    process = ServiceMetrics()
    seen = _metrics(writer, day + timedelta(days=1), [first], process=process)
    assert _granules(seen, "pending") == 1
    assert _failing(seen, "download") == 1 and _failing(seen, "authentication") == 0
    assert _failures_total(seen, "download") == 1

    # the host is healthy again (the fault is used up): the next day's run fetches the granule
    second = _fetch(writer, source, archive, day, today=day + timedelta(days=2))
    assert (second.status, second.downloaded) == ("fetched", 1)
    assert _inventory(writer) == {(day, _name(day)): ("fetched", None)}
    _assert_archive_holds(archive, {_name(day): body})
    seen = _metrics(writer, day + timedelta(days=2), [second], process=process)
    assert _granules(seen, "fetched") == 1 and _granules(seen, "pending") == 0
    assert _failing(seen, "download") == 0
    assert _failures_total(seen, "download") == 1  # the counter keeps the failed run


def test_a_cmr_search_that_never_answers_times_out_and_the_day_waits_then_becomes_a_gap(
    nasa: FakeNasa, demo_world: Path, writer: Engine, archive: Archive
) -> None:
    day = DAYS[3]
    body = _publish(nasa, demo_world, day)
    nasa.cmr_silent_first = 2 * (RETRIES + 1)  # two runs' worth of searches hang
    source = _source(nasa)

    started = time.monotonic()
    inside = _fetch(writer, source, archive, day, today=day + timedelta(days=1))
    assert time.monotonic() - started < (RETRIES + 1) * READ_TIMEOUT_S + 5
    assert (inside.status, inside.failed) == ("pending", 1)
    assert f"giving up after {RETRIES + 1} attempts (ReadTimeout)" in str(inside.detail)
    (error,) = [e for (_, gid), (s, e) in _inventory(writer).items() if gid == "*"]
    assert str(error).startswith("discovery failed: ")
    assert _failing(_metrics(writer, day + timedelta(days=1)), "discovery") == 1

    # still silent once the latency window has passed: given up as a gap, no longer "failing"
    late = day + timedelta(days=WINDOW + 1)
    assert _fetch(writer, source, archive, day, today=late).status == "gap"
    assert _statuses(writer) == {(day, "*"): "gap"}
    seen = _metrics(writer, late)
    assert _granules(seen, "gap") == 1 and _failing(seen, "discovery") == 0
    assert nasa.downloads() == []

    # CMR answers again: the granule replaces the gap placeholder (smapds fetch / backfill)
    assert _fetch(writer, source, archive, day, today=late).status == "fetched"
    assert _statuses(writer) == {(day, _name(day)): "fetched"}
    _assert_archive_holds(archive, {_name(day): body})


# -- zero-byte granules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cmr_says_real_size",
    [
        pytest.param(False, id="cmr-size-0-content-length-0"),
        pytest.param(True, id="cmr-size-n-empty-body"),
    ],
)
def test_a_zero_byte_granule_is_quarantined_as_empty_and_never_archived(
    cmr_says_real_size: bool,
    nasa: FakeNasa,
    demo_world: Path,
    writer: Engine,
    archive: Archive,
) -> None:
    day = DAYS[2]
    real = _world(demo_world, day).read_bytes()
    nasa.add_granule(
        _name(day),
        b"",
        day=day.isoformat(),
        size=len(real) if cmr_says_real_size else 0,
        md5=hashlib.md5(real).hexdigest() if cmr_says_real_size else None,
    )
    source = _source(nasa)

    outcome = _fetch(writer, source, archive, day, today=day + timedelta(days=1))
    assert (outcome.status, outcome.quarantined, outcome.downloaded) == ("quarantined", 1, 0)
    _assert_archive_holds(archive, {})
    folder = archive.quarantine / "SPL3SMP" / day.isoformat()
    assert (folder / _name(day)).read_bytes() == b""
    assert (folder / f"{_name(day)}.reason").read_text() == "empty file\n"
    ((status, error),) = _inventory(writer).values()
    assert status == "quarantined" and "empty file" in str(error) and _name(day) in str(error)
    assert _granules(_metrics(writer, day + timedelta(days=1)), "quarantined") == 1

    # never retried: the next run downloads nothing and keeps the verdict
    downloads = len(nasa.downloads())
    again = _fetch(writer, source, archive, day, today=day + timedelta(days=2))
    assert (again.status, again.quarantined) == ("quarantined", 1)
    assert len(nasa.downloads()) == downloads


def test_a_body_promised_but_never_sent_is_downloaded_again_not_archived_empty(
    nasa: FakeNasa, demo_world: Path, writer: Engine, archive: Archive
) -> None:
    day = DAYS[2]
    body = _publish(nasa, demo_world, day)
    nasa.empty_first[_name(day)] = 1  # Content-Length N, then the connection closes: 0 bytes

    outcome = _fetch(writer, _source(nasa), archive, day, today=day + timedelta(days=1))
    assert (outcome.status, outcome.downloaded) == ("fetched", 1)
    assert len(nasa.downloads()) == 2
    _assert_archive_holds(archive, {_name(day): body})
    assert _quarantined(archive) == []


# -- product versions -----------------------------------------------------------------------------


def _as_version(world: Path, day: date, tmp: Path, *, crid: str, counter: str) -> tuple[str, bytes]:
    """The world's granule of ``day`` as the provider would publish it under another CRID and
    counter: renamed, with its metadata saying the same. (name, bytes)."""
    name = _name(day, crid, counter)
    path = tmp / name
    shutil.copyfile(_world(world, day), path)
    with h5py.File(path, "r+") as f:
        ident = f["Metadata/DatasetIdentification"]
        ident.attrs["CompositeReleaseID"] = np.bytes_(crid.encode())
        ident.attrs["fileName"] = np.bytes_(name.encode())
    return name, path.read_bytes()


def _read_36km(writer: Engine, archive: Archive, day: date) -> str:
    """The ``version`` attribute of the 36 km retrieval the day's stack is built from."""
    found, _, used = coarse_retrievals(
        day,
        domain=DEMO,
        catalog=inventory.catalog(writer, data_dir=archive.root.parent),
        names=InputNames(smap9=None),
        prefer="AM",
    )
    assert found is not None and used
    return str(found.attrs["version"])


def test_a_new_crid_is_archived_under_its_own_name_and_read_and_a_new_collection_version_waits(
    nasa: FakeNasa, demo_world: Path, writer: Engine, archive: Archive, tmp_path: Path
) -> None:
    old = _publish(nasa, demo_world, DAYS[0])
    new_name, new = _as_version(demo_world, DAYS[1], tmp_path, crid="R19250", counter="002")
    nasa.add_granule(new_name, new, day=DAYS[1].isoformat(), version="009")
    # the collection itself moves on to version 010: the configured search (009) does not list it
    v10_name, v10 = _as_version(demo_world, DAYS[2], tmp_path, crid="R20000", counter="001")
    nasa.add_granule(v10_name, v10, day=DAYS[2].isoformat(), version="010")
    source = _source(nasa)

    today = DAYS[3]
    got = [_fetch(writer, source, archive, d, today=today).status for d in DAYS[:3]]
    assert got == ["fetched", "fetched", "pending"]
    assert all(q["version"] == ["009"] for q in nasa.cmr_queries)
    assert _inventory(writer) == {
        (DAYS[0], _name(DAYS[0])): ("fetched", None),
        (DAYS[1], new_name): ("fetched", None),
        (DAYS[2], "*"): ("pending", None),  # missing data, not a failure: no error
    }
    _assert_archive_holds(archive, {_name(DAYS[0]): old, new_name: new})
    assert _read_36km(writer, archive, DAYS[0]) == "R19240/009"
    assert _read_36km(writer, archive, DAYS[1]) == "R19250/009"
    assert v10_name not in "".join(nasa.downloads())


def test_a_reprocessed_day_is_archived_beside_the_first_version_which_stays_untouched(
    nasa: FakeNasa, demo_world: Path, writer: Engine, archive: Archive, tmp_path: Path
) -> None:
    day = DAYS[0]
    old = _publish(nasa, demo_world, day)
    source = _source(nasa)
    assert _fetch(writer, source, archive, day, today=DAYS[1]).status == "fetched"

    # the provider replaces the day's granule with a reprocessed one (new CRID and counter)
    nasa.withdraw(_name(day))
    new_name, new = _as_version(demo_world, day, tmp_path, crid="R19250", counter="002")
    nasa.add_granule(new_name, new, day=day.isoformat())
    again = _fetch(writer, source, archive, day, today=DAYS[3])
    assert (again.status, again.downloaded) == ("fetched", 1)
    assert _statuses(writer) == {(day, _name(day)): "fetched", (day, new_name): "fetched"}
    _assert_archive_holds(archive, {_name(day): old, new_name: new})
    assert _granules(_metrics(writer, DAYS[3]), "fetched") == 2


def test_the_stack_reads_the_newer_version_of_a_reprocessed_day(
    nasa: FakeNasa, demo_world: Path, writer: Engine, archive: Archive, tmp_path: Path
) -> None:
    day = DAYS[0]
    _publish(nasa, demo_world, day)
    source = _source(nasa)
    assert _fetch(writer, source, archive, day, today=DAYS[1]).status == "fetched"
    nasa.withdraw(_name(day))
    new_name, new = _as_version(demo_world, day, tmp_path, crid="R19250", counter="002")
    nasa.add_granule(new_name, new, day=day.isoformat())
    assert _fetch(writer, source, archive, day, today=DAYS[3]).status == "fetched"
    assert _read_36km(writer, archive, day) == "R19250/009"


def test_an_unsupported_layout_under_a_new_crid_is_quarantined_when_read_with_a_reason_naming_it(
    nasa: FakeNasa, demo_world: Path, writer: Engine, archive: Archive, tmp_path: Path
) -> None:
    day = DAYS[4]
    name, _ = _as_version(demo_world, day, tmp_path, crid="R20000", counter="001")
    with h5py.File(tmp_path / name, "r+") as f:  # a layout this reader does not know
        f.move(AM, f"{AM}_v10")
        f.move(PM, f"{PM}_v10")
    nasa.add_granule(name, (tmp_path / name).read_bytes(), day=day.isoformat())
    source = _source(nasa)

    # it opens, so the structural check at fetch archives it ...
    assert _fetch(writer, source, archive, day, today=DAYS[5]).status == "fetched"
    # ... and its reader refuses it when the day is built: the product job sets it aside
    with pytest.raises(UnreadableInputError) as refused:
        _read_36km(writer, archive, day)
    assert refused.value.file.granule_id == name
    quarantine_archived(writer, archive, refused.value.file, reason=refused.value.reason)

    reason = (archive.quarantine / "SPL3SMP" / day.isoformat() / f"{name}.reason").read_text()
    assert name in reason and f"group /{AM} is missing" in reason
    ((status, error),) = _inventory(writer).values()
    assert status == "quarantined" and name in str(error)
    _assert_archive_holds(archive, {})
    assert _quarantined(archive) == sorted([name, f"{name}.reason"])
    assert _granules(_metrics(writer, DAYS[5]), "quarantined") == 1
    # never fetched again
    downloads = len(nasa.downloads())
    assert _fetch(writer, source, archive, day, today=DAYS[6]).status == "quarantined"
    assert len(nasa.downloads()) == downloads


# -- a multi-day outage, late granules, recovery ----------------------------------------------------


def test_a_four_day_outage_is_pending_then_gap_and_late_granules_catch_everything_up(
    nasa: FakeNasa, demo_world: Path, writer: Engine, archive: Archive
) -> None:
    """Runs on DAYS[1] .. DAYS[7], each fetching every day from DAYS[0] to the day before (as
    ``smapds fetch --date DAYS[0] --until yesterday`` would). The provider publishes a day the day
    after, except DAYS[1..4]: nothing appears until the run of DAYS[6], then all of them at once."""
    outage = DAYS[1:5]
    source = _source(nasa)
    bodies: dict[str, bytes] = {}
    history: dict[date, list[str]] = {d: [] for d in DAYS[:7]}
    peak: Samples = {}
    for today in DAYS[1:]:
        newest = today - timedelta(days=1)
        late = outage if today == DAYS[6] else []
        for d in [*late, *([] if newest in outage else [newest])]:
            bodies[_name(d)] = _publish(nasa, demo_world, d)
        for d in DAYS[: DAYS.index(today)]:
            history[d].append(_fetch(writer, source, archive, d, today=today).status)
        if today == DAYS[5]:
            peak = _metrics(writer, today)
            assert _statuses(writer) == {
                (DAYS[0], _name(DAYS[0])): "fetched",
                (DAYS[1], "*"): "gap",
                (DAYS[2], "*"): "gap",
                (DAYS[3], "*"): "pending",
                (DAYS[4], "*"): "pending",
            }

    # one column per run (today = DAYS[1] .. DAYS[7]); a day's first run is the day after it
    assert history == {
        DAYS[0]: ["fetched"] * 7,
        DAYS[1]: ["pending", "pending", "gap", "gap", "fetched", "fetched"],
        DAYS[2]: ["pending", "pending", "gap", "fetched", "fetched"],
        DAYS[3]: ["pending", "pending", "fetched", "fetched"],
        DAYS[4]: ["pending", "fetched", "fetched"],
        DAYS[5]: ["fetched", "fetched"],
        DAYS[6]: ["fetched"],
    }
    assert (_granules(peak, "fetched"), _granules(peak, "gap"), _granules(peak, "pending")) == (
        1,
        2,
        2,
    )
    # every day that has a granule is fetched, no placeholder is left, the bytes are the provider's
    assert _statuses(writer) == {(d, _name(d)): "fetched" for d in DAYS[:7]}
    _assert_archive_holds(archive, bodies)
    assert _quarantined(archive) == []
    seen = _metrics(writer, DAYS[7])
    assert _granules(seen, "fetched") == 7
    assert _granules(seen, "pending") == 0 and _granules(seen, "gap") == 0
    assert len(nasa.downloads()) == 7

    # a rerun downloads nothing and changes nothing
    rerun = [_fetch(writer, source, archive, d, today=DAYS[7]) for d in DAYS[:7]]
    assert len(nasa.downloads()) == 7
    assert [(o.status, o.already, o.downloaded) for o in rerun] == [("fetched", 1, 0)] * 7


# -- an expired token that stays refused -----------------------------------------------------------


@pytest.mark.parametrize("refused_by", ["download", "search"])
def test_a_token_that_stays_refused_is_an_authentication_failure_until_a_good_one_is_back(
    refused_by: str,
    nasa: FakeNasa,
    demo_world: Path,
    writer: Engine,
    archive: Archive,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token_file = tmp_path / "earthdata_token"
    token_file.write_text("expired-token\n")
    # the service's own provider: the file is re-read after a 401 (it still holds the old token)
    source = _source(nasa, token_provider(Settings(earthdata_token_file=token_file)))
    nasa.cmr_requires_token = refused_by == "search"
    today = DAYS[7]
    days = [DAYS[2], DAYS[6]]  # one past the latency window, one inside it
    bodies = {_name(d): _publish(nasa, demo_world, d) for d in days}

    outcomes = [_fetch(writer, source, archive, d, today=today) for d in days]
    assert [o.status for o in outcomes] == ["auth_failed", "auth_failed"]
    sent = nasa.auth_headers if refused_by == "download" else nasa.cmr_auth_headers
    # per day: the token, then the file read again once; no retry storm against the provider
    assert sent == ["Bearer expired-token"] * 4
    rows = _inventory(writer)
    # a refused search leaves the day's placeholder, a refused download the listed granule
    assert set(rows) == {(d, _name(d) if refused_by == "download" else "*") for d in days}
    for status, error in rows.values():
        # not a gap, even past the window: the data may well be there, we could not ask
        assert status == "pending"
        assert str(error).startswith("authentication failed") and "expired-token" not in str(error)
    _assert_archive_holds(archive, {})
    assert _quarantined(archive) == []
    process = ServiceMetrics()
    seen = _metrics(writer, today, outcomes, process=process)
    assert _failing(seen, "authentication") == 2
    assert _failing(seen, "download") == 0 and _failing(seen, "discovery") == 0
    assert _failures_total(seen, "authentication") == 2 and _failures_total(seen, "download") == 0
    assert _granules(seen, "gap") == 0
    assert not [r for r in caplog.records if "expired-token" in repr(r.__dict__)]

    # the operator puts a valid token in the file: the next run fetches both days
    token_file.write_text(TOKEN + "\n")
    again = [_fetch(writer, source, archive, d, today=today) for d in days]
    assert [(o.status, o.downloaded) for o in again] == [("fetched", 1)] * 2
    assert _statuses(writer) == {(d, _name(d)): "fetched" for d in days}
    _assert_archive_holds(archive, bodies)
    seen = _metrics(writer, today, again, process=process)
    # the gauge from the database clears; the process's counter keeps what it counted
    assert _failing(seen, "authentication") == 0
    assert _failures_total(seen, "authentication") == 2
    assert _granules(seen, "fetched") == 2 and _granules(seen, "pending") == 0
