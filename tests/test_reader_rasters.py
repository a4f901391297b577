"""GeoTIFF covariates: CHIRPS precipitation, SoilGrids properties, DEM; written as the real products store them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from etl.errors import ConfigError
from etl.readers import (
    CorruptFileError,
    SchemaDriftError,
    open_granule,
    read_chirps,
    read_dem,
    read_soilgrids,
)

SOILGRIDS_CRS = "+proj=igh +lat_0=0 +lon_0=0 +datum=WGS84 +units=m +no_defs"


def _tif(
    path: Path, values: np.ndarray, *, crs: str, transform: Affine, nodata: float | None
) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=values.shape[1],
        height=values.shape[0],
        count=1,
        dtype=values.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(values, 1)
    return path


def test_chirps_minus_9999_is_nan_even_without_a_nodata_tag(tmp_path: Path) -> None:
    values = np.array([[12.5, -9999.0, 0.0], [-9999.0, 3.25, -1.0]], dtype=np.float32)
    transform = Affine(0.05, 0.0, 110.0, 0.0, -0.05, 40.0)
    path = _tif(
        tmp_path / "chirps-v2.0.2020.07.01.tif",
        values,
        crs="EPSG:4326",
        transform=transform,
        nodata=None,
    )
    da = read_chirps(path)
    np.testing.assert_array_equal(da.values, [[12.5, np.nan, 0.0], [np.nan, 3.25, np.nan]])
    assert da.attrs["units"] == "mm" and da.attrs["transform"] == tuple(transform.to_gdal())
    np.testing.assert_allclose(da["x"].values, [110.025, 110.075, 110.125])
    np.testing.assert_allclose(da["y"].values, [39.975, 39.925])
    assert "4326" in da.attrs["crs"]


@pytest.mark.parametrize(
    ("prop", "stored", "expected", "units"),
    [
        ("clay", 250, 0.25, "1"),
        ("sand", 1000, 1.0, "1"),
        ("silt", 1, 0.001, "1"),
        ("bdod", 135, 1.35, "g/cm3"),
        ("soc", 123, 12.3, "g/kg"),
    ],
)
def test_soilgrids_integers_convert_to_conventional_units(
    tmp_path: Path, prop: str, stored: int, expected: float, units: str
) -> None:
    values = np.array([[stored, -32768]], dtype=np.int16)
    transform = Affine(250.0, 0.0, 10_000_000.0, 0.0, -250.0, 4_000_000.0)
    path = _tif(
        tmp_path / f"{prop}_0-5cm_mean.tif",
        values,
        crs=SOILGRIDS_CRS,
        transform=transform,
        nodata=-32768,
    )
    da = open_granule(path, product=f"SOILGRIDS_{prop.upper()}")
    assert da.values[0, 0] == pytest.approx(expected, rel=1e-6) and np.isnan(da.values[0, 1])
    assert da.attrs["units"] == units
    assert "Interrupted_Goode_Homolosine" in da.attrs["crs"]  # the projection travels with it


def test_soilgrids_refuses_floats_that_someone_already_converted(tmp_path: Path) -> None:
    path = _tif(
        tmp_path / "clay.tif",
        np.array([[0.25]], dtype=np.float32),
        crs=SOILGRIDS_CRS,
        transform=Affine(250.0, 0.0, 0.0, 0.0, -250.0, 0.0),
        nodata=None,
    )
    with pytest.raises(SchemaDriftError, match="expected integers in mapped units"):
        read_soilgrids(path, prop="clay")
    with pytest.raises(ConfigError, match="unknown SoilGrids property 'ph'"):
        read_soilgrids(path, prop="ph")


def test_dem_voids_and_nodata_are_nan_and_heights_stay_metres(tmp_path: Path) -> None:
    transform = Affine(1 / 3600, 0.0, 116.0, 0.0, -1 / 3600, 40.0)
    srtm = _tif(
        tmp_path / "N39E116.tif",
        np.array([[43, -32768, -12]], dtype=np.int16),
        crs="EPSG:4326",
        transform=transform,
        nodata=None,
    )
    np.testing.assert_array_equal(read_dem(srtm).values, [[43.0, np.nan, -12.0]])
    cop = _tif(
        tmp_path / "Copernicus_DSM_10_N39_00_E116_00_DEM.tif",
        np.array([[43.25, -9999.0]], dtype=np.float32),
        crs="EPSG:4326",
        transform=transform,
        nodata=-9999.0,
    )
    da = open_granule(cop, product="DEM")
    np.testing.assert_array_equal(da.values, [[43.25, np.nan]])
    assert da.attrs["units"] == "m" and da.dtype == np.float32


def test_a_file_that_is_not_a_geotiff_is_a_corrupt_file_error(tmp_path: Path) -> None:
    bogus = tmp_path / "chirps-v2.0.2020.07.01.tif"
    bogus.write_text("<html>login required</html>")
    with pytest.raises(CorruptFileError, match=str(bogus)):
        read_chirps(bogus)


def test_an_unknown_product_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"MCCA: use etl\.readers\.mcca\.read_mcca"):
        open_granule(tmp_path / "x.nc", product="MCCA")
    with pytest.raises(ConfigError, match="known: CHIRPS, DEM"):
        open_granule(tmp_path / "x.nc", product="GLDAS")
