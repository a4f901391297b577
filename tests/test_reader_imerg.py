"""IMERG reader on the real GPM_3IMERGHH subset (coordinates, time, FileHeader) with a DMR-faithful variable.

The reference ``.nc4`` holds the real /Grid coordinates, time and FileHeader but not the
precipitation array; the tests copy it and add ``precipitationCal`` exactly as the granule's DMR
describes it (float32, (time, lon, lat), _FillValue -9999.9, units mm/hr), with known values.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from etl.readers import SchemaDriftError, open_granule, read_imerg
from etl.readers.dmr import parse_dmr

BEIJING = (116.35, 39.95)  # cell centres: lon index 2963, lat index 1299 (south to north)
DRY_CELL = (-60.05, -10.05)
NEGATIVE_CELL = (0.05, 0.05)


def _index(lon: float, lat: float) -> tuple[int, int]:
    return round((lon + 179.95) / 0.1), round((lat + 89.95) / 0.1)


def _granule(reference_data: Path, tmp_path: Path, *, name: str = "precipitationCal") -> Path:
    path = tmp_path / "3B-HHR.MS.MRG.3IMERG.20200101-S120000-E122959.0720.V06B.nc4"
    shutil.copy(reference_data / "imerg" / "GPM_3IMERGHH_prefetch.nc4", path)
    spec = parse_dmr(reference_data / "imerg" / "GPM_3IMERGHH_example.dmr").variable(
        "/Grid/precipitationCal"
    )
    assert spec.shape == (1, 3600, 1800)
    fill = spec.attribute("_FillValue")
    assert fill is not None
    with netCDF4.Dataset(path, "a") as nc:
        nc.set_auto_maskandscale(False)
        var = nc["Grid"].createVariable(
            name,
            "f4",
            ("time", "lon", "lat"),
            fill_value=fill.numpy_value(),
            chunksizes=(1, 360, 180),
            zlib=True,
        )
        for attr in spec.attributes:
            if attr.name != "_FillValue":
                var.setncattr(attr.name, attr.numpy_value().decode())
        for (lon, lat), value in ((BEIJING, 2.5), (DRY_CELL, 0.0), (NEGATIVE_CELL, -1.0)):
            i, j = _index(lon, lat)
            var[0, i, j] = np.float32(value)
    return path


def test_the_time_lon_lat_array_comes_back_north_up_as_time_y_x(
    reference_data: Path, tmp_path: Path
) -> None:
    da = read_imerg(_granule(reference_data, tmp_path))
    assert da.dims == ("time", "y", "x") and da.shape == (1, 1800, 3600)
    assert da["y"].values[0] == pytest.approx(89.95) and da["y"].values[-1] == pytest.approx(-89.95)
    assert da["x"].values[0] == pytest.approx(-179.95)
    assert da.sel(x=BEIJING[0], y=BEIJING[1], method="nearest").item() == np.float32(2.5)
    row = int(np.argmin(np.abs(da["y"].values - BEIJING[1])))
    col = int(np.argmin(np.abs(da["x"].values - BEIJING[0])))
    assert (row, col) == (1800 - 1 - 1299, 2963)
    np.testing.assert_allclose(
        da.attrs["transform"], (-180.0, 0.1, 0.0, 90.0, 0.0, -0.1), atol=1e-4
    )
    assert da.attrs["units"] == "mm/hr" and da.attrs["version"] == "V06B"
    assert "4326" in da.attrs["crs"]


def test_fill_and_negative_rates_are_nan_and_zero_rain_is_kept(
    reference_data: Path, tmp_path: Path
) -> None:
    da = read_imerg(_granule(reference_data, tmp_path))
    assert da.dtype == np.float32
    assert int(np.isfinite(da).sum()) == 2
    assert da.sel(x=DRY_CELL[0], y=DRY_CELL[1], method="nearest").item() == 0.0
    assert np.isnan(da.sel(x=NEGATIVE_CELL[0], y=NEGATIVE_CELL[1], method="nearest").item())


def test_time_ignores_the_julian_label_and_matches_the_file_header(
    reference_data: Path, tmp_path: Path
) -> None:
    path = _granule(reference_data, tmp_path)
    with netCDF4.Dataset(path) as nc:
        assert nc["Grid/time"].calendar == "julian"  # the trap is in the real file
        assert "StartGranuleDateTime=2020-01-01T12:00:00.000Z" in nc.FileHeader
    da = read_imerg(path)
    assert da["time"].values.tolist() == [np.datetime64("2020-01-01T12:00", "ns").item()]
    with netCDF4.Dataset(path, "a") as nc:
        nc.FileHeader = nc.FileHeader.replace("T12:00:00.000Z", "T12:30:00.000Z")
    with pytest.raises(SchemaDriftError, match="does not match FileHeader StartGranuleDateTime"):
        read_imerg(path)


def test_version_7_files_name_the_calibrated_estimate_precipitation(
    reference_data: Path, tmp_path: Path
) -> None:
    da = open_granule(_granule(reference_data, tmp_path, name="precipitation"), product="IMERG")
    assert da.name == "precipitation" and int(np.isfinite(da).sum()) == 2


def test_the_real_subset_without_a_precipitation_array_is_schema_drift(
    reference_data: Path,
) -> None:
    path = reference_data / "imerg" / "GPM_3IMERGHH_prefetch.nc4"
    with pytest.raises(SchemaDriftError) as err:
        read_imerg(path)
    assert str(path) in str(err.value) and "/Grid/precipitationCal" in str(err.value)
