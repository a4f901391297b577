"""The synthetic world behaves physically and its observations carry the configured errors."""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import h5py
import netCDF4
import numpy as np
import numpy.typing as npt
import pytest
import rasterio

from etl.grid import block_mean, get_domain
from etl.synthetic import SyntheticConfig
from etl.synthetic.modis import tile_mapping

START = dt.date(2024, 4, 1)  # the start date build_world uses
DAYS = 30
CONFIG = {"outage_start_day": 20, "outage_days": 3}
SETTINGS = SyntheticConfig(**CONFIG)  # type: ignore[arg-type]
F = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Truth:
    days: list[dt.date]
    sm: F
    precip: F
    sand: F
    clay: F
    residual: F


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, build_world) -> Path:  # type: ignore[no-untyped-def]
    return build_world(tmp_path_factory.mktemp("physics_world"), days=DAYS, **CONFIG)


def _read(path: Path, name: str, fill: float = -9999.0) -> F:
    with netCDF4.Dataset(path) as nc:
        nc.set_auto_mask(False)
        a = np.asarray(nc[name][...], dtype=np.float64)
    return np.where(a == fill, np.nan, a)


@pytest.fixture(scope="module")
def truth(world: Path) -> Truth:
    path = next((world / "truth").glob("truth_1km_*.nc"))
    static = next((world / "truth").glob("static_1km_*.nc"))
    with netCDF4.Dataset(path) as nc:
        days = [dt.date(1970, 1, 1) + dt.timedelta(days=int(t)) for t in nc["time"][:]]
    wp = _read(static, "wilting_point")
    return Truth(
        days=days,
        sm=_read(path, "soil_moisture"),
        precip=_read(path, "precipitation"),
        sand=_read(static, "sand"),
        clay=_read(static, "clay"),
        residual=np.maximum(0.02, 0.5 * wp),
    )


def test_truth_stays_within_physical_bounds(truth: Truth) -> None:
    assert truth.days[0] == START and len(truth.days) == DAYS
    land = np.isfinite(truth.sm)
    assert land.mean() > 0.9
    assert np.nanmin(truth.sm) >= SETTINGS.sm_min - 1e-4
    assert np.nanmax(truth.sm) <= SETTINGS.sm_max + 1e-4
    assert np.nanstd(truth.sm) > 0.03, "the truth varies in space and time"


def test_precipitation_is_intermittent_with_a_heavy_tail(truth: Truth) -> None:
    p = truth.precip[np.isfinite(truth.precip)]
    assert (p == 0).mean() > 0.5, "most cell-days are dry"
    wet = p[p > 0]
    assert np.percentile(wet, 99) > 5 * np.median(wet), "heavy tail"
    domain_mean = np.nanmean(truth.precip, axis=(1, 2))
    assert (domain_mean < 0.1).sum() >= DAYS // 3, "many dry days over the whole domain"


def test_soil_moisture_rises_after_rain_and_dries_between_storms(truth: Truth) -> None:
    rises, dries = [], []
    for k in range(1, DAYS):
        change = truth.sm[k] - truth.sm[k - 1]
        wet = truth.precip[k] > 20.0
        if wet.sum() > 50:
            rises.append(np.nanmean(change[wet]))
        dry = (truth.precip[k] == 0) & (truth.precip[k - 1] == 0) & np.isfinite(change)
        if dry.sum() > 1000:
            dries.append((np.mean(change[dry]), np.mean(change[dry] > 0.002)))
    assert rises and dries
    assert np.min(rises) > 0.0 and np.mean(rises) > 0.03
    assert all(mean < 0 for mean, _ in dries)
    assert max(frac for _, frac in dries) < 0.05


def test_dry_down_is_faster_on_sand_than_on_clay(truth: Truth) -> None:
    sandy, clayey = [], []
    for k in range(1, DAYS):
        dry = (truth.precip[k] == 0) & (truth.precip[k - 1] == 0)
        above = truth.sm[k - 1] - truth.residual
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = (truth.sm[k - 1] - truth.sm[k]) / above
        ok = dry & (above > 0.02) & np.isfinite(rate)
        sandy.extend(rate[ok & (truth.sand > 0.55)])
        clayey.extend(rate[ok & (truth.clay > 0.3)])
    assert len(sandy) > 100 and len(clayey) > 100
    assert np.mean(sandy) > 1.1 * np.mean(clayey)


def _smap_differences(world: Path, truth: Truth, res: int) -> tuple[F, F]:
    """(observation - block-mean truth, AM coverage per cell) over all written granules."""
    domain = get_domain("demo")
    rows, cols = domain.slices(res)
    short = "SPL3SMP" if res == 36 else "SPL3SMP_E"
    diffs, seen_days, files = [], np.zeros(domain.shape(res)), 0
    for k, day in enumerate(truth.days):
        found = list((world / "smap" / short / f"{day:%Y.%m.%d}").glob("*.h5"))
        if not found:
            continue
        files += 1
        mean = block_mean(truth.sm[k], res)[0]
        with h5py.File(found[0], "r") as f:
            for group, sfx in (
                ("Soil_Moisture_Retrieval_Data_AM", ""),
                ("Soil_Moisture_Retrieval_Data_PM", "_pm"),
            ):
                sm = f[group]["soil_moisture" + sfx][rows, cols].astype(np.float64)
                ok = sm != -9999.0
                diffs.append((sm - mean)[ok])
                if not sfx:
                    seen_days += f[group]["tb_time_seconds"][rows, cols] != -9999.0
    return np.concatenate(diffs), seen_days / files


@pytest.mark.parametrize(
    ("res", "noise_sd"), [(36, SETTINGS.noise_sd_36km), (9, SETTINGS.noise_sd_9km)]
)
def test_observation_minus_block_mean_truth_has_the_configured_noise_and_bias(
    world: Path, truth: Truth, res: int, noise_sd: float
) -> None:
    diff, _ = _smap_differences(world, truth, res)
    assert diff.size > 1000
    assert abs(diff.mean() - SETTINGS.bias) < 0.003
    assert abs(diff.std() / noise_sd - 1.0) < 0.08


def test_each_cell_is_seen_on_about_half_the_days(world: Path, truth: Truth) -> None:
    _, coverage = _smap_differences(world, truth, 36)
    assert abs(coverage.mean() - SETTINGS.swath_coverage) < 0.1
    assert coverage.min() > 0.25 and coverage.max() < 0.75


def test_the_outage_leaves_no_smap_or_mcca_files(world: Path, truth: Truth) -> None:
    for k, day in enumerate(truth.days):
        expected = not SETTINGS.in_outage(k)
        for short in ("SPL3SMP", "SPL3SMP_E"):
            assert (world / "smap" / short / f"{day:%Y.%m.%d}").is_dir() == expected, (short, day)
        assert (
            world / "mcca" / f"{day:%Y}" / f"MCCA_SMAP_SM_36km_{day:%Y%m%d}.nc"
        ).exists() == expected
    assert sum(SETTINGS.in_outage(k) for k in range(DAYS)) == 3


def test_mcca_has_its_own_bias_and_noise(world: Path, truth: Truth) -> None:
    rows, cols = get_domain("demo").slices(36)
    diffs = []
    for k, day in enumerate(truth.days):
        path = world / "mcca" / f"{day:%Y}" / f"MCCA_SMAP_SM_36km_{day:%Y%m%d}.nc"
        if not path.exists():
            continue
        mean = block_mean(truth.sm[k], 36)[0]
        for name in ("SM_D", "SM_A"):
            sm = _read(path, name, fill=-999.0)[rows, cols]
            diffs.append((sm - mean)[np.isfinite(sm)])
    diff = np.concatenate(diffs)
    assert abs(diff.mean() - SETTINGS.mcca_bias) < 0.004
    assert abs(diff.std() / SETTINGS.mcca_noise_sd - 1.0) < 0.1


def test_stations_track_the_truth_of_their_cell_with_the_configured_noise(
    world: Path, truth: Truth
) -> None:
    table = list(csv.DictReader((world / "truth" / "stations.csv").open()))
    assert len(table) == 2 * SETTINGS.stations_per_cluster + SETTINGS.sparse_stations
    residuals, estimated, hidden = [], [], []
    for s in table:
        stm = next((world / "ismn").glob(f"*/{s['network']}/{s['station']}/*.stm"))
        lines = stm.read_bytes().decode("ascii").split("\r\n")[1:-1]
        noon = {}
        for line in lines:
            when = dt.datetime.strptime(line[:16], "%Y/%m/%d %H:%M")
            if when.hour == 12 and line[26:].split()[0] == "G":
                noon[when.date()] = float(line[16:25])
        r, c = int(s["row_1km"]), int(s["col_1km"])
        diff = np.array(
            [noon[d] - truth.sm[k, r, c] for k, d in enumerate(truth.days) if d in noon]
        )
        assert diff.size > DAYS // 2
        estimated.append(diff.mean())
        hidden.append(float(s["bias"]))
        residuals.extend(diff - float(s["bias"]))
    res = np.array(residuals)
    expected_sd = np.hypot(SETTINGS.station_noise_sd, SETTINGS.station_white_noise_sd)
    assert abs(res.mean()) < 0.006
    assert abs(res.std() / expected_sd - 1.0) < 0.25
    assert np.corrcoef(estimated, hidden)[0, 1] > 0.6


def test_rain_increases_with_elevation_and_pet_follows_the_season(
    world: Path, truth: Truth
) -> None:
    static = next((world / "truth").glob("static_1km_*.nc"))
    z = _read(static, "elevation")
    total = np.nansum(truth.precip, axis=0)
    land = np.isfinite(z) & np.isfinite(truth.sm[0])
    assert np.corrcoef(z[land], total[land])[0, 1] > 0.1, "orographic enhancement"
    path = next((world / "truth").glob("truth_1km_*.nc"))
    pet = np.nanmean(_read(path, "pet"), axis=(1, 2))
    assert np.polyfit(np.arange(DAYS), pet, 1)[0] > 0.02, "PET rises through April"


def test_albedo_darkens_when_the_soil_is_wet(world: Path, truth: Truth) -> None:
    domain = get_domain("demo")
    tile = tile_mapping(domain, 27, 5)
    inside = tile.cells >= 0
    cells = tile.cells[inside]
    static = next((world / "truth").glob("static_1km_*.nc"))
    landcover = _read(static, "landcover", fill=-1).ravel()[cells]
    correlations = []
    for k in (DAYS // 2, DAYS - 1):
        day = truth.days[k]
        path = next((world / "modis" / "MCD43A3" / f"{day:%Y.%m.%d}").glob("*.tif"))
        with rasterio.open(path) as src:
            wsa = src.read(1)[inside].astype(np.float64)
        ok = (wsa != 32767) & (landcover == 12)  # cropland
        sm = truth.sm[k].ravel()[cells]
        ok &= np.isfinite(sm)
        correlations.append(np.corrcoef(wsa[ok], sm[ok])[0, 1])
    assert max(correlations) < -0.3
