"""Skill at 1 km against the synthetic truth: the running sums and the truth reader."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from etl.errors import InputError
from etl.grid import get_domain
from models.metrics import pair_stats
from models.truth_skill import Skill, Truth


def test_skill_added_day_by_day_equals_the_statistics_of_all_pixels_at_once() -> None:
    rng = np.random.default_rng(7)
    truth = rng.uniform(0.05, 0.45, (3, 300, 200)).astype(np.float32)
    estimate = (truth + rng.normal(0.01, 0.03, truth.shape)).astype(np.float32)
    truth[0, :40] = np.nan  # water
    estimate[1, 100:150, :50] = np.nan  # no value
    skill = Skill()
    for t, e in zip(truth, estimate, strict=True):
        skill.add(t, e)
    got, want = skill.stats(), pair_stats(estimate.ravel(), truth.ravel(), min_n=30)
    assert got.n == want.n == truth.size - 40 * 200 - 50 * 50
    for field in ("r", "rmse", "bias", "ubrmse"):
        assert getattr(got, field) == pytest.approx(getattr(want, field), rel=1e-9)


def test_the_truth_is_read_as_the_file_holds_it_with_water_as_nan(demo_world: Path) -> None:
    domain = get_domain("demo")
    truth = Truth.of_world(demo_world, domain=domain)
    assert truth is not None
    with xr.open_dataset(truth.path) as ds:  # CF decoding here, as an independent reading
        first = date.fromisoformat(str(ds["time"].values[0])[:10])
        expected = ds["soil_moisture"].isel(time=0).values
    got = truth.day(first)
    assert got.shape == domain.shape(1) and got.dtype == np.float32
    assert np.array_equal(np.isnan(got), np.isnan(expected)) and np.isnan(got).any()
    assert np.allclose(got, expected, equal_nan=True)
    assert truth.covers(first) and not truth.covers(date(1999, 1, 1))
    with pytest.raises(InputError, match="1 km grid of domain"):
        Truth(truth.path, domain=get_domain("china"))


def test_a_truncated_truth_file_is_refused_naming_it(demo_world: Path, tmp_path: Path) -> None:
    domain = get_domain("demo")
    truth = Truth.of_world(demo_world, domain=domain)
    assert truth is not None
    cut = tmp_path / "truth" / truth.path.name
    cut.parent.mkdir()
    cut.write_bytes(truth.path.read_bytes()[:4096])
    with pytest.raises(InputError, match=f"{cut}: cannot be read as the truth"):
        Truth.of_world(tmp_path, domain=domain)
