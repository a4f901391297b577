"""A week of the synthetic world fetched from a fake NASA (CMR + download host) into the archive
and the inventory, with the faults providers really have; a second run downloads nothing."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa
from fake_nasa import TOKEN, FakeNasa, serving
from sqlalchemy.engine import Engine

from etl.archive import Archive
from etl.grid import get_domain
from etl.sources.cmr import PRODUCTS, CmrSource
from etl.sources.http import HttpClient
from service.fetch import fetch_day

DAYS = [date(2024, 4, 1) + timedelta(days=i) for i in range(8)]


def _name(day: date) -> str:
    return f"SMAP_L3_SM_P_{day:%Y%m%d}_R19240_001.h5"


def _world_file(world: Path, day: date) -> Path:
    return world / "smap" / "SPL3SMP" / f"{day:%Y.%m.%d}" / _name(day)


def test_a_week_from_a_faulty_provider_lands_exactly_right_and_twice_is_once(
    demo_world: Path, writer: Engine, tmp_path: Path
) -> None:
    fake = FakeNasa(files={}, cmr_short_name="SPL3SMP")
    with serving(fake):
        for d in DAYS:
            if d == DAYS[5]:
                continue  # outage: the day has not appeared (yet)
            body = _world_file(demo_world, d).read_bytes()
            if d == DAYS[3]:
                body = b"<!DOCTYPE html><html><body>Service Unavailable</body></html>"
            fake.add_granule(
                _name(d), body, day=d.isoformat(), md5="0" * 32 if d == DAYS[4] else None
            )
        fake.fail_first[_name(DAYS[1])] = 2
        fake.truncate_first[_name(DAYS[2])] = 1

        current = {"token": "expired-token"}

        def token(refresh: bool) -> str:
            if refresh:
                current["token"] = TOKEN  # what a rotated token file would now hold
            return current["token"]

        client = HttpClient(
            token=token,
            trusted_hosts=("127.0.0.1",),
            retries=3,
            backoff_s=0.01,
            read_timeout_s=10,
            sleep=lambda s: None,
        )
        source = CmrSource(
            "SPL3SMP", PRODUCTS["SPL3SMP"], client, get_domain("demo").bbox_lonlat(), fake.base
        )
        archive = Archive(root=tmp_path / "archive", quarantine=tmp_path / "quarantine")
        today = DAYS[-1] + timedelta(days=1)

        first = [
            fetch_day(writer, [source], archive, d, today=today, window_days=7)[0] for d in DAYS
        ]
        assert [o.status for o in first] == [
            "fetched",
            "fetched",
            "fetched",
            "quarantined",
            "quarantined",
            "pending",
            "fetched",
            "fetched",
        ]
        good = [d for d in DAYS if d not in (DAYS[3], DAYS[4], DAYS[5])]
        for d in good:
            archived = archive.root / "SPL3SMP" / f"{d:%Y/%m/%d}" / _name(d)
            assert archived.read_bytes() == _world_file(demo_world, d).read_bytes()
        archived_names = sorted(p.name for p in archive.root.rglob("*.h5"))
        assert archived_names == sorted(_name(d) for d in good)
        quarantined = sorted(p.name for p in archive.quarantine.rglob("*.h5"))
        assert quarantined == sorted([_name(DAYS[3]), _name(DAYS[4])])
        assert (
            "does not open"
            in (
                archive.quarantine / "SPL3SMP" / DAYS[3].isoformat() / f"{_name(DAYS[3])}.reason"
            ).read_text()
        )

        with writer.connect() as conn:
            rows = {
                (r.granule_date, r.granule_id): r.status
                for r in conn.execute(
                    sa.text(
                        "SELECT granule_date, granule_id, status FROM smapds.granules "
                        "WHERE source = 'SPL3SMP'"
                    )
                )
            }
        assert rows == {
            **{(d, _name(d)): "fetched" for d in good},
            (DAYS[3], _name(DAYS[3])): "quarantined",
            (DAYS[4], _name(DAYS[4])): "quarantined",
            (DAYS[5], "*"): "pending",
        }
        assert fake.auth_headers[:2] == ["Bearer expired-token", f"Bearer {TOKEN}"]

        downloads = len(fake.downloads())
        second = [
            fetch_day(writer, [source], archive, d, today=today, window_days=7)[0] for d in DAYS
        ]
        assert len(fake.downloads()) == downloads  # nothing downloaded again
        assert [o.status for o in second] == [o.status for o in first]
        assert sum(o.already for o in second) == len(good)
