"""ERA5 reader on the real CDS NetCDF-3 download (swvl1 and lsm packed int16, lon 0-360, lat descending)."""

from __future__ import annotations

import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from etl.readers import open_granule, read_era5


@pytest.fixture(scope="module")
def era5(reference_data: Path) -> Path:
    return reference_data / "era5" / "example_downloaded_raw.nc"


def _raw(path: Path, name: str) -> tuple[np.ndarray, float, float]:
    with netCDF4.Dataset(path) as nc:
        nc.set_auto_maskandscale(False)
        var = nc[name]
        return var[...], float(var.scale_factor), float(var.add_offset)


def test_packed_int16_is_unpacked_by_hand_into_m3_per_m3(era5: Path) -> None:
    da = read_era5(era5, variable="swvl1")
    raw, scale, offset = _raw(era5, "swvl1")
    assert raw.dtype == np.int16 and da.dtype == np.float32
    # stored lon 185 E (index 37) is -175 E (output column 1); stored lat row 10 is 40 N
    expected = (raw[2, 10, 37].astype(np.float64) * scale + offset).astype(np.float32)
    assert da.isel(time=2).sel(x=-175.0, y=40.0).item() == expected
    assert da.attrs["units"] == "m3/m3" and da.attrs["product"] == "ERA5"


def test_longitudes_become_minus_180_to_180_ascending_and_rows_stay_north_up(era5: Path) -> None:
    da = read_era5(era5, variable="swvl1")
    np.testing.assert_array_equal(da["x"].values, np.arange(-180.0, 180.0, 5.0))
    np.testing.assert_array_equal(da["y"].values, np.arange(90.0, -90.1, -5.0))
    assert da.attrs["transform"] == (-182.5, 5.0, 0.0, 92.5, 0.0, -5.0)
    lsm = da["land_sea_mask"]
    # land where there is land once the longitudes are rolled: Germany, the US Plains; sea in the Pacific
    assert lsm.sel(x=10.0, y=50.0).item() == 1.0
    assert lsm.sel(x=-100.0, y=40.0).item() == 1.0
    assert lsm.sel(x=-150.0, y=0.0).item() == 0.0
    assert 0.05 < da.isel(time=0).sel(x=-100.0, y=40.0).item() < 0.5


def test_hours_since_1900_with_a_fractional_seconds_epoch_decode_to_six_hourly_steps(
    era5: Path,
) -> None:
    da = read_era5(era5, variable="swvl1")
    assert da["time"].values.tolist() == [
        np.datetime64(f"2010-01-01T{h:02d}:00", "ns").item() for h in (0, 6, 12, 18)
    ]


def test_the_stored_fill_becomes_nan_before_unpacking(era5: Path, tmp_path: Path) -> None:
    copy = tmp_path / "era5.nc"
    shutil.copy(era5, copy)
    with netCDF4.Dataset(copy, "a") as nc:
        nc.set_auto_maskandscale(False)
        nc["swvl1"][1, 10, 37] = np.int16(-32767)
    da = open_granule(copy, product="ERA5_SWVL1")
    assert np.isnan(da.isel(time=1).sel(x=-175.0, y=40.0).item())
    assert int(np.isnan(da).sum()) == 1
