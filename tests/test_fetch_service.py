"""The fetch stage against real PostGIS: inventory states, idempotent reruns, late arrivals, auth."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.archive import Archive
from etl.errors import AuthenticationError
from etl.sources import Granule
from etl.sources.local import LocalDirectorySource
from service.fetch import fetch_day

PATTERN = "smap/SPL3SMP/{day:%Y.%m.%d}/SMAP_L3_SM_P_{day:%Y%m%d}_*.h5"
TODAY = date(2024, 4, 20)


def _put(root: Path, day: date, n: int = 1, *, corrupt: bool = False) -> Path:
    folder = root / "smap" / "SPL3SMP" / f"{day:%Y.%m.%d}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"SMAP_L3_SM_P_{day:%Y%m%d}_R19240_00{n}.h5"
    if corrupt:
        path.write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    else:
        with h5py.File(path, "w") as f:
            f.create_dataset("soil_moisture", data=np.full((2, 2), 0.2), track_times=False)
    return path


def _rows(writer: Engine) -> list[tuple[object, ...]]:
    with writer.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text(
                    "SELECT granule_date, granule_id, status, path, sha256, attempts, updated_at "
                    "FROM smapds.granules WHERE source = 'SPL3SMP' ORDER BY 1, 2"
                )
            )
        ]


@pytest.fixture
def world(tmp_path: Path, writer: Engine) -> tuple[LocalDirectorySource, Archive]:
    with writer.begin() as conn:
        conn.execute(sa.text("DELETE FROM smapds.granules"))
    src = LocalDirectorySource("SPL3SMP", tmp_path / "provider", PATTERN)
    archive = Archive(root=tmp_path / "data" / "archive", quarantine=tmp_path / "data" / "q")
    return src, archive


def test_a_week_is_fetched_quarantined_pending_and_gap_and_a_rerun_changes_nothing(
    world: tuple[LocalDirectorySource, Archive], writer: Engine
) -> None:
    src, archive = world
    days = [date(2024, 4, 10) + timedelta(days=i) for i in range(7)]
    for d in days[1:5]:
        _put(src.root, d)
    _put(src.root, days[2], n=2, corrupt=True)
    # days[0]: never arrived, 10 days ago -> gap; days[5], days[6]: recent -> pending
    outcomes = {}
    for d in days:
        (o,) = fetch_day(writer, [src], archive, d, today=TODAY, window_days=7)
        outcomes[d] = o
    assert outcomes[days[0]].status == "gap"
    assert [outcomes[d].status for d in days[1:5]] == ["fetched", "partial", "fetched", "fetched"]
    assert outcomes[days[2]].quarantined == 1 and outcomes[days[2]].downloaded == 1
    assert [outcomes[d].status for d in days[5:]] == ["pending", "pending"]
    first = _rows(writer)
    statuses = {(r[0], r[1]): r[2] for r in first}
    assert statuses[(days[0], "*")] == "gap"
    assert statuses[(days[2], "SMAP_L3_SM_P_20240412_R19240_002.h5")] == "quarantined"
    assert sum(s == "fetched" for s in statuses.values()) == 4
    fetched_row = next(r for r in first if r[2] == "fetched")
    assert str(fetched_row[3]).startswith("archive/SPL3SMP/2024/04/")
    assert (archive.root.parent / str(fetched_row[3])).is_file()
    assert (
        archive.quarantine / "SPL3SMP" / "2024-04-12" / "SMAP_L3_SM_P_20240412_R19240_002.h5"
    ).is_file()

    again = [fetch_day(writer, [src], archive, d, today=TODAY, window_days=7)[0] for d in days]
    assert sum(o.downloaded for o in again) == 0
    assert again[2].quarantined == 1  # not retried
    second = _rows(writer)
    # same rows and files; only the attempt counters of still-missing days move on
    strip = [(r[0], r[1], r[2], r[3], r[4]) for r in first]
    assert strip == [(r[0], r[1], r[2], r[3], r[4]) for r in second]
    unchanged = [(a, b) for a, b in zip(first, second, strict=True) if a[2] == "fetched"]
    assert all(a[6] == b[6] and a[5] == b[5] for a, b in unchanged)


def test_a_late_granule_replaces_the_pending_placeholder(
    world: tuple[LocalDirectorySource, Archive], writer: Engine
) -> None:
    src, archive = world
    day = date(2024, 4, 18)
    (o,) = fetch_day(writer, [src], archive, day, today=TODAY, window_days=7)
    assert o.status == "pending"
    _put(src.root, day)
    (o,) = fetch_day(writer, [src], archive, day, today=TODAY + timedelta(days=1), window_days=7)
    assert o.status == "fetched" and o.downloaded == 1
    assert [(r[1], r[2]) for r in _rows(writer)] == [
        ("SMAP_L3_SM_P_20240418_R19240_001.h5", "fetched")
    ]


def test_a_refused_token_is_recorded_as_an_authentication_failure(
    world: tuple[LocalDirectorySource, Archive], writer: Engine
) -> None:
    _, archive = world

    class Refused:
        source = "SPL3SMP"

        def discover(self, day: date) -> list[Granule]:
            raise AuthenticationError(
                "https://cmr.example/search: authentication failed (HTTP 401)"
            )

        def write(self, granule: Granule, out: object) -> int:
            raise AssertionError("not reached")

        def verify(self, path: Path) -> None:
            raise AssertionError("not reached")

    (o,) = fetch_day(writer, [Refused()], archive, date(2024, 4, 19), today=TODAY, window_days=7)
    assert o.status == "auth_failed"
    (row,) = _rows(writer)
    assert row[2] == "pending"  # the data is not missing: we could not ask for it
    with writer.connect() as conn:
        error = conn.execute(sa.text("SELECT error FROM smapds.granules")).scalar()
    assert str(error).startswith("authentication failed")
