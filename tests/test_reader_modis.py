"""MODIS / VIIRS sinusoidal tiles: the real MOD11A1 HDF4 granule, plus HDF5 and GeoTIFF variants of it."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
from pyhdf.SD import SD, SDC
from pyproj import Transformer

from etl.errors import ConfigError
from etl.readers import SchemaDriftError, open_granule
from etl.readers.modis import read_sinusoidal_tile
from etl.readers.sinusoidal import (
    PROJ4,
    TILE_SIZE_M,
    Tile,
    check_corners,
    parse_struct_metadata,
    sinusoidal_crs,
)


@pytest.fixture(scope="module")
def mod11a1(reference_data: Path) -> Path:
    return reference_data / "modis" / "MOD11A1.hdf"


@pytest.fixture(scope="module")
def raw_lst(mod11a1: Path) -> np.ndarray:
    sd = SD(str(mod11a1), SDC.READ)
    try:
        return np.asarray(sd.select("LST_Day_1km").get())
    finally:
        sd.end()


def _global_attr(path: Path, name: str) -> str:
    sd = SD(str(path), SDC.READ)
    try:
        return str(sd.attributes()[name])
    finally:
        sd.end()


def test_tile_affine_from_h14v09_and_the_sinusoidal_constants_matches_the_struct_metadata(
    mod11a1: Path,
) -> None:
    struct = _global_attr(mod11a1, "StructMetadata.0")
    ul = tuple(float(v) for v in re.search(r"UpperLeftPointMtrs=\(([^)]*)\)", struct)[1].split(","))
    lr = tuple(float(v) for v in re.search(r"LowerRightMtrs=\(([^)]*)\)", struct)[1].split(","))
    t = Tile(14, 9).transform(1200)
    assert pytest.approx(2 * np.pi * 6371007.181 / 36, abs=1e-6) == TILE_SIZE_M
    assert (t.c, t.f) == pytest.approx(ul, abs=1e-6)
    assert t @ (1200, 1200) == pytest.approx(lr, abs=1e-6)
    assert "ProjParams=(6371007.181000," in struct and "Projection=GCTP_SNSOID" in struct


def test_corner_pixels_fall_on_the_granule_gring_points(mod11a1: Path) -> None:
    core = _global_attr(mod11a1, "CoreMetadata.0")

    def values(key: str) -> list[float]:
        block = re.search(rf"OBJECT\s*=\s*{key}.*?VALUE\s*=\s*\(([^)]*)\)", core, re.S)[1]
        return [float(v) for v in block.split(",")]

    glon, glat = values("GRINGPOINTLONGITUDE"), values("GRINGPOINTLATITUDE")
    da = read_sinusoidal_tile(mod11a1, product="MOD11A1")
    to_lonlat = Transformer.from_crs(sinusoidal_crs(), 4326, always_xy=True)
    x, y = da["x"].values, da["y"].values
    # GRing order: upper-left, upper-right, lower-right, lower-left pixel centres
    corners = [(x[0], y[0]), (x[-1], y[0]), (x[-1], y[-1]), (x[0], y[-1])]
    lon, lat = to_lonlat.transform([c[0] for c in corners], [c[1] for c in corners])
    np.testing.assert_allclose(lat, glat, atol=1e-6)  # exactly the corner pixels' centre rows
    # GRing longitudes bound the tile loosely (up to about one pixel, ~0.009 deg, outside the centres);
    # a wrong tile would be 10 degrees off
    np.testing.assert_allclose(lon, glon, atol=0.0095)


def test_mod11a1_lst_is_stored_times_0_02_kelvin_with_fill_0_as_nan(
    mod11a1: Path, raw_lst: np.ndarray
) -> None:
    da = read_sinusoidal_tile(mod11a1, product="MOD11A1")
    assert da.dtype == np.float32 and da.shape == (1200, 1200)
    fill = raw_lst == 0
    assert fill.sum() == 1106171  # cloud / no retrieval in this granule
    assert np.isnan(da.values[fill]).all()
    np.testing.assert_array_equal(
        da.values[~fill], (raw_lst[~fill].astype(np.float64) * 0.02).astype(np.float32)
    )
    assert np.nanmin(da.values) > 280 and np.nanmax(da.values) < 330
    assert da.attrs["units"] == "K" and da.attrs["product"] == "MOD11A1"
    assert da.attrs["transform"] == tuple(Tile(14, 9).transform(1200).to_gdal())


def test_the_tile_and_date_come_from_the_metadata_when_the_file_name_has_neither(
    mod11a1: Path,
) -> None:
    assert "h14v09" not in mod11a1.name
    da = open_granule(mod11a1, product="MOD11A1")
    assert da.attrs["tile"] == "h14v09"
    assert da.attrs["date"] == "2019-11-01"  # A2019305
    assert da.attrs["version"] == "006"
    assert da.attrs["granule_id"] == "MOD11A1.A2019305.h14v09.006.2019306084028.hdf"


def test_the_night_layer_follows_the_same_rule(mod11a1: Path) -> None:
    night = read_sinusoidal_tile(mod11a1, product="MOD11A1", variable="LST_Night_1km")
    assert int(np.isfinite(night).sum()) == 1200 * 1200 - 1215912
    with pytest.raises(ConfigError, match="QC_Day"):
        read_sinusoidal_tile(mod11a1, product="MOD11A1", variable="QC_Day")


def test_grid_corners_that_contradict_the_tile_number_are_schema_drift(mod11a1: Path) -> None:
    (grid,) = parse_struct_metadata(_global_attr(mod11a1, "StructMetadata.0"), path=mod11a1)
    assert check_corners(Tile(14, 9), grid, path=mod11a1) == Tile(14, 9).transform(1200)
    with pytest.raises(SchemaDriftError, match=r"upper-left corner .* does not match tile h15v09"):
        check_corners(Tile(15, 9), grid, path=mod11a1)


def test_reading_the_granule_as_another_product_is_refused(mod11a1: Path) -> None:
    with pytest.raises(SchemaDriftError, match="SHORTNAME is MOD11A1, read as MYD11A1"):
        read_sinusoidal_tile(mod11a1, product="MYD11A1")
    with pytest.raises(SchemaDriftError, match="variable Albedo_WSA_shortwave is missing"):
        read_sinusoidal_tile(mod11a1, product="MCD43A3")


def _write_tile_tif(path: Path, values: np.ndarray, *, tile: Tile, nodata: float | None) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=values.shape[1],
        height=values.shape[0],
        count=1,
        dtype=values.dtype,
        crs=PROJ4,
        transform=tile.transform(values.shape[1]),
        nodata=nodata,
    ) as dst:
        dst.write(values, 1)
    return path


def test_a_geotiff_tile_reads_like_the_hdf4_granule(
    mod11a1: Path, raw_lst: np.ndarray, tmp_path: Path
) -> None:
    tif = _write_tile_tif(
        tmp_path / "MOD11A1.A2019305.h14v09.061.tif", raw_lst, tile=Tile(14, 9), nodata=0
    )
    from_tif = read_sinusoidal_tile(tif, product="MOD11A1")
    from_hdf = read_sinusoidal_tile(mod11a1, product="MOD11A1")
    np.testing.assert_array_equal(from_tif.values, from_hdf.values)
    np.testing.assert_allclose(from_tif.attrs["transform"], from_hdf.attrs["transform"], atol=1e-6)
    assert from_tif.attrs["tile"] == "h14v09" and from_tif.attrs["date"] == "2019-11-01"


def test_a_geotiff_that_is_not_the_tile_its_name_says_is_schema_drift(
    raw_lst: np.ndarray, tmp_path: Path
) -> None:
    tif = _write_tile_tif(
        tmp_path / "MOD11A1.A2019305.h15v09.061.tif", raw_lst, tile=Tile(14, 9), nodata=0
    )
    with pytest.raises(SchemaDriftError, match="is not tile h15v09"):
        read_sinusoidal_tile(tif, product="MOD11A1")


def test_a_float_geotiff_already_in_physical_units_is_refused(tmp_path: Path) -> None:
    tif = _write_tile_tif(
        tmp_path / "MOD11A1.A2019305.h14v09.061.tif",
        np.full((1200, 1200), 300.0, dtype=np.float32),
        tile=Tile(14, 9),
        nodata=None,
    )
    with pytest.raises(SchemaDriftError, match="expected the product's integer codes"):
        read_sinusoidal_tile(tif, product="MOD11A1")


def test_mod16a2_special_codes_are_nan_and_kept_apart_from_the_fill(tmp_path: Path) -> None:
    codes = np.array([0, 123, 32700, 32701, 32761, 32762, 32763, 32764, 32765, 32766, 32767, -5])
    values = np.resize(codes, (2400, 2400)).astype(np.int16)
    tif = _write_tile_tif(
        tmp_path / "MOD16A2.A2019297.h26v05.061.tif", values, tile=Tile(26, 5), nodata=32767
    )
    da = read_sinusoidal_tile(tif, product="MOD16A2")
    first = da.values[0, : codes.size]
    np.testing.assert_allclose(first[[0, 1, 2, 11]], [0.0, 12.3, 3270.0, -0.5], rtol=1e-6)
    assert np.isnan(first[3:11]).all()  # above the valid range, special codes, fill
    special = da["special_code"].values[0, : codes.size]
    assert special.tolist() == [0, 0, 0, 0, 32761, 32762, 32763, 32764, 32765, 32766, 0, 0]
    assert da.attrs["units"] == "kg/m2/8day" and da.attrs["date"] == "2019-10-24"


VIIRS_STRUCT = """GROUP=SwathStructure
END_GROUP=SwathStructure
GROUP=GridStructure
\tGROUP=GRID_1
\t\tGridName="VIIRS_Grid_BRDF"
\t\tXDim=2400
\t\tYDim=2400
\t\tUpperLeftPointMtrs=({ulx:.6f},{uly:.6f})
\t\tLowerRightMtrs=({lrx:.6f},{lry:.6f})
\t\tProjection=GCTP_SNSOID
\t\tProjParams=(6371007.181000,0,0,0,0,0,0,0,0,0,0,0,0)
\t\tSphereCode=-1
\t\tGridOrigin=HDFE_GD_UL
\t\tGROUP=DataField
\t\t\tOBJECT=DataField_1
\t\t\t\tDataFieldName="Albedo_WSA_shortwave"
\t\t\t\tDataType=H5T_NATIVE_SHORT
\t\t\t\tDimList=("YDim","XDim")
\t\t\tEND_OBJECT=DataField_1
\t\tEND_GROUP=DataField
\tEND_GROUP=GRID_1
END_GROUP=GridStructure
END
"""


def _viirs_albedo(path: Path, values: np.ndarray, *, tile: Tile, corner_tile: Tile) -> Path:
    t = corner_tile.transform(2400)
    lrx, lry = t @ (2400, 2400)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(
            "HDFEOS/GRIDS/VIIRS_Grid_BRDF/Data Fields/Albedo_WSA_shortwave", data=values
        )
        ds.attrs["scale_factor"] = np.float64(0.001)
        ds.attrs["add_offset"] = np.float64(0.0)
        ds.attrs["_FillValue"] = np.int16(32767)
        ds.attrs["units"] = np.bytes_(b"reflectance, no units")
        text = VIIRS_STRUCT.format(ulx=t.c, uly=t.f, lrx=lrx, lry=lry).encode()
        f.create_dataset("HDFEOS INFORMATION/StructMetadata.0", data=np.bytes_(text))
        f.attrs["HorizontalTileNumber"] = np.int32(tile.h)
        f.attrs["VerticalTileNumber"] = np.int32(tile.v)
        f.attrs["ShortName"] = np.bytes_(b"VNP43IA3")
        f.attrs["LocalGranuleID"] = np.bytes_(
            f"VNP43IA3.A2019305.{tile.name}.002.2019310000000.h5".encode()
        )
    return path


def test_a_viirs_hdf5_albedo_tile_is_int16_times_0_001_with_fill_32767(tmp_path: Path) -> None:
    values = np.full((2400, 2400), 32767, dtype=np.int16)
    values[0, :4] = [0, 150, 32766, 32767]
    path = _viirs_albedo(tmp_path / "granule.h5", values, tile=Tile(26, 5), corner_tile=Tile(26, 5))
    da = read_sinusoidal_tile(path, product="VNP43IA3")
    np.testing.assert_allclose(da.values[0, :3], [0.0, 0.15, 32.766], rtol=1e-6)
    assert np.isnan(da.values[0, 3]) and int(np.isfinite(da).sum()) == 3
    assert da.attrs["tile"] == "h26v05" and da.attrs["date"] == "2019-11-01"
    assert da.attrs["transform"] == tuple(Tile(26, 5).transform(2400).to_gdal())


def test_a_viirs_tile_whose_corners_are_another_tile_is_schema_drift(tmp_path: Path) -> None:
    values = np.zeros((2400, 2400), dtype=np.int16)
    path = _viirs_albedo(tmp_path / "granule.h5", values, tile=Tile(26, 5), corner_tile=Tile(27, 5))
    with pytest.raises(SchemaDriftError, match=str(path)):
        read_sinusoidal_tile(path, product="VNP43IA3")


def test_multi_band_geotiffs_are_read_by_band_description_and_their_tags_checked(
    tmp_path: Path,
) -> None:
    tile = Tile(26, 5)
    path = tmp_path / "MCD43A3.A2020183.h26v05.061.2020192000000.tif"
    wsa = np.full((2400, 2400), 32767, dtype=np.int16)
    bsa = wsa.copy()
    wsa[10, 10], bsa[10, 10] = 180, 160
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=2400,
        height=2400,
        count=2,
        dtype="int16",
        crs=PROJ4,
        transform=tile.transform(2400),
        nodata=32767,
    ) as dst:
        dst.write(np.stack([wsa, bsa]))
        for band, name in ((1, "Albedo_WSA_shortwave"), (2, "Albedo_BSA_shortwave")):
            dst.set_band_description(band, name)
            dst.update_tags(band, scale_factor="0.001", add_offset="0", _FillValue="32767")
    bsa_da = read_sinusoidal_tile(path, product="MCD43A3", variable="Albedo_BSA_shortwave")
    assert bsa_da.values[10, 10] == np.float32(0.16) and int(np.isfinite(bsa_da).sum()) == 1
    assert read_sinusoidal_tile(path, product="MCD43A3").values[10, 10] == np.float32(0.18)
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(2, scale_factor="0.0001")
    with pytest.raises(SchemaDriftError, match=r"Albedo_BSA_shortwave scale_factor 0\.0001"):
        read_sinusoidal_tile(path, product="MCD43A3", variable="Albedo_BSA_shortwave")
    with pytest.raises(SchemaDriftError, match="no band described as Albedo_WSA_vis"):
        read_sinusoidal_tile(path, product="MCD43A3", variable="Albedo_WSA_vis")
