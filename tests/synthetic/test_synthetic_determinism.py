"""The same seed and arguments give byte-identical worlds; another seed gives another world."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from etl.errors import ConfigError
from etl.grid import get_domain
from etl.synthetic import generate

SHORT = {"days": 8, "spinup_days": 5}


def checksums(world: Path) -> dict[str, str]:
    manifest = json.loads((world / "manifest.json").read_text())
    return {f["path"]: f["sha256"] for f in manifest["files"]}


def test_generating_the_demo_world_twice_gives_identical_files(
    tmp_path: Path,
    build_world,  # type: ignore[no-untyped-def]
) -> None:
    first = build_world(tmp_path / "a", **SHORT)
    second = build_world(tmp_path / "b", **SHORT)
    assert checksums(first) == checksums(second)
    assert (first / "manifest.json").read_bytes() == (second / "manifest.json").read_bytes()
    other = build_world(tmp_path / "c", seed=8, days=2, spinup_days=1)
    for same_name in ("truth/static_1km_demo.nc", "dem/synthetic_dem_0.0025deg.tif"):
        assert checksums(other)[same_name] != checksums(first)[same_name]


def test_generate_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("x")
    with pytest.raises(ConfigError):
        generate(tmp_path, domain=get_domain("demo"), start=dt.date(2024, 4, 1), days=1, seed=1)
