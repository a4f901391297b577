"""The daily input stack on the synthetic world: features, staleness, coarse passes, static cache."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from world_catalog import world_catalog as _catalog

from etl.errors import InputError
from etl.grid import block_mean, get_domain
from etl.stack import (
    FEATURE_NAMES,
    InputNames,
    StaleInputError,
    StalenessLimits,
    build_stack,
)
from etl.static import SOIL_PROPERTIES, static_layers

DEMO = get_domain("demo")
LIMITS = StalenessLimits(albedo=16, et=16, precip_missing_days=2)


@pytest.fixture(scope="module")
def static(demo_world: Path, tmp_path_factory: pytest.TempPathFactory) -> xr.Dataset:
    soil = {p: demo_world / "soilgrids" / p / f"{p}_0-5cm_mean.tif" for p in SOIL_PROPERTIES}
    return static_layers(
        DEMO,
        soil=soil,
        dem=demo_world / "dem" / "synthetic_dem_0.0025deg.tif",
        cache_dir=tmp_path_factory.mktemp("static"),
    )


def test_static_layers_are_cached_and_match_the_truth_statics(
    demo_world: Path, static: xr.Dataset, tmp_path: Path
) -> None:
    truth = xr.open_dataset(demo_world / "truth" / "static_1km_demo.nc")
    land = static["land"].values.astype(bool)
    assert land.shape == DEMO.shape(1) and 0.9 < land.mean() <= 1.0
    for name in ("clay", "sand"):
        assert name in truth, f"truth statics lack {name}"
        diff = np.abs(static[name].values[land] - truth[name].values[land])
        # g/kg integers, then 0.0025 degree -> 1 km averaging (a little mixing at sharp edges)
        assert (
            np.nanmedian(diff) < 0.001
            and np.nanpercentile(diff, 99) < 0.01
            and np.nanmax(diff) < 0.1
        )
    soil = {p: demo_world / "soilgrids" / p / f"{p}_0-5cm_mean.tif" for p in SOIL_PROPERTIES}
    dem = demo_world / "dem" / "synthetic_dem_0.0025deg.tif"
    first = static_layers(DEMO, soil=soil, dem=dem, cache_dir=tmp_path)
    (cached,) = tmp_path.glob("static-demo-*.nc")
    stamp = cached.stat().st_mtime_ns
    again = static_layers(DEMO, soil=soil, dem=dem, cache_dir=tmp_path)
    assert cached.stat().st_mtime_ns == stamp  # read from the cache, not rebuilt
    np.testing.assert_array_equal(again["clay"].values, first["clay"].values)
    np.testing.assert_array_equal(first["clay"].values, static["clay"].values)


def test_a_day_has_every_feature_on_the_domain_and_records_its_inputs(
    demo_world: Path, static: xr.Dataset
) -> None:
    stack = build_stack(
        date(2024, 4, 5),
        domain=DEMO,
        catalog=_catalog(demo_world),
        static=static,
        names=InputNames(),
        limits=LIMITS,
        on_stale="refuse",
        prefer="AM",
    )
    x = stack.feature_matrix()
    assert x.shape == (*DEMO.shape(1), len(FEATURE_NAMES)) and x.dtype == np.float32
    land = stack.land
    assert np.isfinite(x[land]).mean() > 0.97
    assert not stack.degraded and stack.staleness_days["albedo"] == 0
    feats = stack.features
    assert 0.0 < float(feats["albedo"].where(land).mean()) < 0.5
    assert float(feats["precip_7d"].min()) >= float(feats["precip_3d"].min()) >= 0.0
    assert np.all(feats["precip_7d"].values >= feats["precip_3d"].values - 1e-4)
    assert np.all(feats["precip_3d"].values >= feats["precip"].values - 1e-4)
    sources = {f.source for f in stack.inputs}
    assert sources == {"MCD43A3", "MOD16A2", "IMERG_E", "SPL3SMP", "SPL3SMP_E"}
    assert sum(f.source == "IMERG_E" for f in stack.inputs) == 7


def test_the_coarse_retrieval_prefers_am_and_fills_with_pm(
    demo_world: Path, static: xr.Dataset
) -> None:
    stack = build_stack(
        date(2024, 4, 3),
        domain=DEMO,
        catalog=_catalog(demo_world),
        static=static,
        names=InputNames(),
        limits=LIMITS,
        on_stale="refuse",
        prefer="AM",
    )
    assert stack.coarse36 is not None and stack.coarse9 is not None
    c = stack.coarse36
    assert c["soil_moisture"].shape == DEMO.shape(36)
    used = c["pass_used"].values
    sm = c["soil_moisture"].values
    assert set(np.unique(used)) <= {0, 1, 2} and (used == 1).any()
    assert np.array_equal(np.isfinite(sm), used > 0)
    assert np.nanmin(sm) >= 0.02 and np.nanmax(sm) <= 0.5
    # coarse observations sit close to the block mean of the 1 km truth (noise ~0.03-0.04)
    truth = xr.open_dataset(next((demo_world / "truth").glob("truth_1km_*.nc")))
    var = next(v for v in truth.data_vars if truth[v].ndim == 3)
    day_truth = truth[var].sel(time=np.datetime64("2024-04-03")).values
    block, _ = block_mean(day_truth, 36)
    ok = np.isfinite(sm) & np.isfinite(block)
    assert np.sqrt(np.mean((sm[ok] - block[ok]) ** 2)) < 0.08


def test_stale_albedo_degrades_or_refuses_the_day(demo_world: Path, static: xr.Dataset) -> None:
    drop = {("MCD43A3", date(2024, 4, d)) for d in range(5, 9)}  # newest albedo: 4 April
    catalog = _catalog(demo_world, drop=drop)
    tight = StalenessLimits(albedo=2, et=16, precip_missing_days=2)
    with pytest.raises(StaleInputError, match="albedo is 4 days old"):
        build_stack(
            date(2024, 4, 8),
            domain=DEMO,
            catalog=catalog,
            static=static,
            names=InputNames(),
            limits=tight,
            on_stale="refuse",
            prefer="AM",
        )
    stack = build_stack(
        date(2024, 4, 8),
        domain=DEMO,
        catalog=catalog,
        static=static,
        names=InputNames(),
        limits=tight,
        on_stale="degrade",
        prefer="AM",
    )
    assert stack.degraded and stack.staleness_days["albedo"] == 4
    assert any(f.granule_date == date(2024, 4, 4) for f in stack.inputs if f.source == "MCD43A3")
    everything = {("MCD43A3", date(2024, 4, d)) for d in range(1, 9)}
    with pytest.raises(InputError, match="no MCD43A3 granule"):
        build_stack(
            date(2024, 4, 8),
            domain=DEMO,
            catalog=_catalog(demo_world, drop=everything),
            static=static,
            names=InputNames(),
            limits=tight,
            on_stale="degrade",
            prefer="AM",
        )


def test_missing_precipitation_days_are_filled_and_counted(
    demo_world: Path, static: xr.Dataset
) -> None:
    drop = {("IMERG_E", date(2024, 4, 4)), ("IMERG_E", date(2024, 4, 2))}
    stack = build_stack(
        date(2024, 4, 5),
        domain=DEMO,
        catalog=_catalog(demo_world, drop=drop),
        static=static,
        names=InputNames(),
        limits=StalenessLimits(albedo=16, et=16, precip_missing_days=1),
        on_stale="degrade",
        prefer="AM",
    )
    assert stack.staleness_days["precip_missing_days"] == 2
    assert stack.degraded and "precip_missing_days" in stack.degraded_reasons[0]


@pytest.mark.parametrize("gap", [None, date(2024, 4, 3)])
def test_precipitation_sums_made_on_the_native_grid_equal_the_sums_of_the_regridded_days(
    demo_world: Path, gap: date | None
) -> None:
    from datetime import timedelta

    from etl.regrid import regrid
    from etl.stack import _daily_source, _precipitation, _read, _window_sums

    drop = set() if gap is None else {("IMERG_E", gap)}
    catalog = _catalog(demo_world, drop=drop)
    day = date(2024, 4, 5)
    p, p3, p7, missing, used = _precipitation(catalog, "IMERG_E", day, DEMO)
    days = [day - timedelta(days=k) for k in range(7)]
    regridded = [
        regrid(_read(files[0], _daily_source), DEMO, method="bilinear") if files else None
        for files in (list(catalog("IMERG_E", d)) for d in days)
    ]
    expected = _window_sums(regridded)
    assert missing == (gap is not None) and len(used) == 7 - missing
    assert float(np.nanmax(expected[2])) > 1.0  # it rained in the window
    for got, want in zip((p, p3, p7), expected, strict=True):
        assert np.array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_of_several_versions_of_a_granule_the_newest_is_used() -> None:
    from etl.stack import ArchivedFile, latest_versions

    names = [
        "SMAP_L3_SM_P_20240401_R19240_001.h5",
        "SMAP_L3_SM_P_20240401_R19250_002.h5",
        "MCD43A3.A2024092.h27v05.061.2024101000000.hdf",
        "MCD43A3.A2024092.h27v05.061.2024301000000.hdf",
        "MCD43A3.A2024092.h28v05.061.2024101000000.hdf",
        "3B-DAY-E.MS.MRG.3IMERG.20240401-S000000-E235959.V06B.nc4",
        "3B-DAY-E.MS.MRG.3IMERG.20240401-S000000-E235959.V07B.nc4",
    ]
    files = [ArchivedFile("X", n, date(2024, 4, 1), Path(n), "-") for n in names]
    newest = latest_versions(lambda source, day: files)("X", date(2024, 4, 1))
    assert [f.granule_id for f in newest] == sorted(
        [
            "SMAP_L3_SM_P_20240401_R19250_002.h5",
            "MCD43A3.A2024092.h27v05.061.2024301000000.hdf",
            "MCD43A3.A2024092.h28v05.061.2024101000000.hdf",
            "3B-DAY-E.MS.MRG.3IMERG.20240401-S000000-E235959.V07B.nc4",
        ]
    )
