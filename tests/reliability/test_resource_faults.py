"""Resource faults (issue 10, part 5): the disk fills up while a day's product is being written.

The day already has a good product (made DEGRADED under a stricter ET limit, so that the day made
again differs from it in status and QA band). Making it again on a full disk must fail cleanly: the
previous COG, quicklook and STAC item and the ``smapds.products`` row stay exactly as they were, no
temporary or partial file is left, the run ledger says ``FAILED`` with the reason, and once there is
room again the same call makes the day.

ENOSPC is injected at each write (COG, quicklook, STAC item), and, where this process may mount
file systems (root), the products folder is also put on a tiny tmpfs that really runs out of space.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import pathlib
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.figure
import pytest
import rasterio.shutil
import sqlalchemy as sa
from produced_world import DAYS, Produced
from sqlalchemy.engine import Engine

from service.product import ProductResult, produce_day

DAY = DAYS[-2]
BASE = f"smapds_sm_1km_demo_{DAY:%Y%m%d}"  # + _<version>.tif|png|json


@dataclass(frozen=True)
class Snapshot:
    """The day's product as it stands: file bytes, the products row and the ledger row."""

    files: dict[str, bytes]
    row: tuple[Any, ...] | None
    ledger: tuple[str, int, str | None]


def _folder(produced: Produced) -> Path:
    return produced.data_dir / "products" / "demo" / f"{DAY:%Y}"


def _snapshot(produced: Produced, writer: Engine) -> Snapshot:
    folder = _folder(produced)
    files = {p.name: p.read_bytes() for p in sorted(folder.glob(".*"))}  # temporary: none
    files |= {p.name: p.read_bytes() for p in sorted(folder.glob(f"{BASE}_*"))}
    with writer.connect() as conn:
        row = conn.execute(
            sa.text("SELECT * FROM smapds.products WHERE domain = 'demo' AND product_date = :d"),
            {"d": DAY},
        ).first()
        led = conn.execute(
            sa.text(
                "SELECT status, attempts, error FROM smapds.run_ledger "
                "WHERE domain = 'demo' AND run_date = :d AND stage = 'product'"
            ),
            {"d": DAY},
        ).one()
    return Snapshot(files, None if row is None else tuple(row), (led[0], led[1], led[2]))


def _produce(produced: Produced, writer: Engine, *, strict_et: bool = False) -> ProductResult:
    factory = produced.factory
    if strict_et:  # the ET composite of DAY is 2 days old: DEGRADED under a 0-day limit
        limits = dataclasses.replace(factory.limits, et=0)
        factory = dataclasses.replace(factory, limits=limits, on_stale="degrade")
    return produce_day(
        writer, factory, produced.model, data_dir=produced.data_dir, day=DAY, settings_hash="0" * 64
    )


@pytest.fixture
def previous(produced: Produced, writer: Engine) -> Snapshot:
    return _make_previous(produced, writer)


def _make_previous(produced: Produced, writer: Engine) -> Snapshot:
    """The day's good product already made (DEGRADED), as it stands before the disk fills up."""
    made = _produce(produced, writer, strict_et=True)
    assert made.status == "DEGRADED" and made.path is not None
    before = _snapshot(produced, writer)
    assert sorted(Path(f).suffix for f in before.files) == [".json", ".png", ".tif"]
    assert len({Path(f).stem for f in before.files}) == 1  # one version
    return before


def _assert_failed_and_untouched(
    result: ProductResult, before: Snapshot, after: Snapshot, *, reason: str
) -> None:
    assert result.status == "FAILED" and result.path is None
    assert reason in (result.error or ""), result.error
    assert after.files == before.files  # same names, same bytes: nothing partial, nothing left
    assert after.row == before.row
    status, attempts, error = after.ledger
    assert (status, attempts) == ("FAILED", before.ledger[1] + 1)
    assert reason in (error or "") and "products in" in (error or "")


def _assert_made_again(produced: Produced, writer: Engine, before: Snapshot) -> None:
    result = _produce(produced, writer)
    assert result.status == "OK" and result.path is not None, result.error
    after = _snapshot(produced, writer)
    # the three files of the new version (other bytes, other names), no temporary ones, and the
    # previous version removed once the new row was committed
    assert sorted(Path(f).suffix for f in after.files) == [".json", ".png", ".tif"]
    assert len({Path(f).stem for f in after.files}) == 1
    assert _cog(after) != _cog(before) and not set(after.files) & set(before.files)
    assert after.row is not None and before.row is not None and after.row != before.row
    with writer.connect() as conn:
        sha, status = conn.execute(
            sa.text("SELECT sha256, status FROM smapds.products WHERE product_date = :d"),
            {"d": DAY},
        ).one()
    assert status == "OK" and sha == hashlib.sha256(_cog(after)).hexdigest()
    assert after.ledger[0] == "OK" and after.ledger[1] == before.ledger[1] + 2


def _cog(snapshot: Snapshot) -> bytes:
    (cog,) = (body for name, body in snapshot.files.items() if name.endswith(".tif"))
    return cog


def _enospc(path: object) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _full_while_copying_the_cog(monkeypatch: pytest.MonkeyPatch) -> None:
    real = rasterio.shutil.copy

    def copy(src: Any, dst: Any, **kwargs: Any) -> None:
        real(src, dst, **kwargs)
        Path(dst).write_bytes(Path(dst).read_bytes()[:4096])  # what fitted before the disk filled
        raise _enospc(dst)

    monkeypatch.setattr(rasterio.shutil, "copy", copy)


def _full_while_saving_the_quicklook(monkeypatch: pytest.MonkeyPatch) -> None:
    def savefig(self: matplotlib.figure.Figure, fname: Any, **kwargs: Any) -> None:
        Path(fname).write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(1000))
        raise _enospc(fname)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)


def _full_while_writing_the_stac_item(monkeypatch: pytest.MonkeyPatch) -> None:
    real = pathlib.Path.write_bytes

    def write_bytes(self: Path, data: Any) -> int:
        if ".json.tmp-" not in self.name:
            return real(self, data)
        real(self, bytes(data)[:100])
        raise _enospc(self)

    monkeypatch.setattr(pathlib.Path, "write_bytes", write_bytes)


INJECTIONS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "cog": _full_while_copying_the_cog,
    "quicklook": _full_while_saving_the_quicklook,
    "stac-item": _full_while_writing_the_stac_item,
}


@pytest.mark.parametrize("step", list(INJECTIONS))
def test_a_full_disk_fails_the_day_cleanly_and_keeps_the_previous_product(
    step: str,
    produced: Produced,
    writer: Engine,
    previous: Snapshot,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with monkeypatch.context() as patch:
        INJECTIONS[step](patch)
        result = _produce(produced, writer)
    _assert_failed_and_untouched(
        result, previous, _snapshot(produced, writer), reason="No space left on device"
    )
    _assert_made_again(produced, writer, previous)


# -- a real full file system ---------------------------------------------------------------------


def _mounted_tmpfs(target: Path, size: int) -> bool:
    """Mount a tmpfs of ``size`` bytes on ``target``; False where this process may not mount."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(target)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture
def tiny_products(produced: Produced) -> Iterator[Path]:
    """The products folder of DAY's year on an 8 MiB tmpfs (hiding what was there meanwhile)."""
    folder = _folder(produced)
    folder.mkdir(parents=True, exist_ok=True)
    if not _mounted_tmpfs(folder, 8 << 20):
        pytest.skip("cannot mount a tmpfs here (needs root); the injected ENOSPC cases cover it")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=True)


def _fill(folder: Path, *, leave: int) -> Path:
    """A file that takes all the space of ``folder``'s file system but ``leave`` bytes."""
    st = os.statvfs(folder)
    filler = folder / "filler.bin"
    with open(filler, "wb") as fh:
        fh.write(bytes(max(st.f_bavail * st.f_frsize - leave, 0)))
    return filler


@pytest.mark.parametrize("room", ["none", "half-a-cog", "a-cog"])
def test_a_really_full_file_system_fails_the_day_cleanly_and_keeps_the_previous_product(
    room: str, produced: Produced, writer: Engine, tiny_products: Path
) -> None:
    before = _make_previous(produced, writer)
    cog = len(_cog(before))
    # GDAL fails at different points of the COG write (its overview scratch file needs room too):
    # "IO error writing tag data", "Error fetching directory count", ENOSPC
    filler = _fill(tiny_products, leave={"none": 0, "half-a-cog": cog // 2, "a-cog": cog}[room])
    result = _produce(produced, writer)
    after = _snapshot(produced, writer)
    _assert_failed_and_untouched(result, before, after, reason=f"products in {tiny_products}")
    filler.unlink()
    _assert_made_again(produced, writer, before)
