"""Covariate, in situ and truth files of the synthetic world follow their providers' conventions."""

from __future__ import annotations

import datetime as dt
import json
import re
import zipfile
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import rasterio

from etl.grid import get_domain
from etl.synthetic import GENERATOR_VERSION, SyntheticConfig
from etl.synthetic.manifest import sha256_of

DAYS = 5
START = dt.date(2024, 4, 1)
END = START + dt.timedelta(days=DAYS - 1)
SINU = {"proj": "sinu", "R": 6371007.181}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, build_world) -> Path:  # type: ignore[no-untyped-def]
    return build_world(tmp_path_factory.mktemp("covariate_world"), days=DAYS)


def test_imerg_daily_files_keep_the_gpm_layout(world: Path) -> None:
    files = sorted((world / "imerg" / "GPM_3IMERGDE.07").rglob("*.nc4"))
    assert len(files) == DAYS + SyntheticConfig().spinup_days  # spin-up days too (antecedent rain)
    path = files[-1]
    assert path.name == f"3B-DAY-E.MS.MRG.3IMERG.{END:%Y%m%d}-S000000-E235959.V07B.nc4"
    assert path.parent.parent.name == f"{END:%Y}" and path.parent.name == f"{END:%m}"
    with netCDF4.Dataset(path) as nc:
        p = nc["precipitation"]
        assert p.dimensions == ("time", "lon", "lat")
        assert p.units == "mm/day"
        assert p._FillValue == np.float32(-9999.9)
        t = nc["time"]
        assert t.calendar == "julian" and t.units.startswith("days since 1970-01-01")
        assert int(t[0]) == (END - dt.date(1970, 1, 1)).days
        lat, lon = nc["lat"][:], nc["lon"][:]
        assert np.all(np.diff(lat) > 0), "latitude ascends from the south"
        np.testing.assert_allclose((lon + 179.95) / 0.1, np.round((lon + 179.95) / 0.1), atol=1e-3)
        west, south, east, north = get_domain("demo").bbox_lonlat()
        assert lon.min() < west and lon.max() > east and lat.min() < south and lat.max() > north
        values = np.asarray(p[...])
        assert values.shape == (1, lon.size, lat.size)
        assert np.all(values >= 0)


def test_modis_tiles_sit_on_the_sinusoidal_grid_with_integer_codes(world: Path) -> None:
    albedo = sorted((world / "modis" / "MCD43A3").rglob("*.tif"))
    et = sorted((world / "modis" / "MOD16A2").rglob("*.tif"))
    assert len(albedo) == DAYS
    assert [p.name.split(".")[1] for p in et] == ["A2024081", "A2024089"]
    pattern = r"(MCD43A3|MOD16A2)\.A(\d{7})\.h27v05\.061\.\d{13}\.tif"
    for path in albedo + et:
        assert re.fullmatch(pattern, path.name), path.name
        with rasterio.open(path) as src:
            assert (src.width, src.height) == (2400, 2400)
            assert src.dtypes == ("int16", "int16") and src.nodata == 32767
            crs = src.crs.to_dict()
            assert crs["proj"] == SINU["proj"] and crs["R"] == SINU["R"]
            t = src.transform
            assert t.a == pytest.approx(463.31271653, abs=1e-6)
            assert t.c == pytest.approx(-20015109.354 + 27 * 1111950.5197665, abs=0.01)
            assert t.f == pytest.approx(10007554.677 - 5 * 1111950.5197665, abs=0.01)
            assert "TIFFTAG_DATETIME" not in src.tags()
            data = src.read()
            if path.name.startswith("MCD43A3"):
                assert src.descriptions == ("Albedo_WSA_shortwave", "Albedo_BSA_shortwave")
                assert src.tags(1)["scale_factor"] == "0.001"
                valid = data[0][data[0] != 32767] * 0.001
                assert valid.min() > 0.03 and valid.max() < 0.4
            else:
                assert src.descriptions == ("ET_500m", "PET_500m")
                assert src.tags(1)["scale_factor"] == "0.1"
                codes = set(np.unique(data[0][data[0] > 32700]).tolist())
                assert (
                    {32762, 32766, 32767}
                    <= codes
                    <= {32761, 32762, 32763, 32764, 32765, 32766, 32767}
                )
                ok = data[0] < 32700
                assert np.all(data[0][ok] <= data[1][ok]), "ET never exceeds PET"


def test_soilgrids_layers_use_soilgrids_units_and_fractions_sum_to_1000(world: Path) -> None:
    layers = {}
    for name in ("clay", "sand", "silt", "bdod", "soc"):
        with rasterio.open(world / "soilgrids" / name / f"{name}_0-5cm_mean.tif") as src:
            assert src.crs.to_epsg() == 4326 and src.dtypes == ("int16",) and src.nodata == -32768
            assert src.res == pytest.approx((0.0025, 0.0025))
            assert "TIFFTAG_DATETIME" not in src.tags()
            layers[name] = src.read(1).astype(np.int32)
    valid = layers["clay"] != -32768
    assert valid.mean() > 0.9
    assert np.all((layers["clay"] + layers["sand"] + layers["silt"])[valid] == 1000)
    assert layers["bdod"][valid].min() > 90 and layers["bdod"][valid].max() < 180
    assert layers["soc"][valid].min() > 0
    with rasterio.open(world / "dem" / "synthetic_dem_0.0025deg.tif") as src:
        assert src.dtypes == ("float32",) and src.crs.to_epsg() == 4326
        z = src.read(1)
        assert z[z != src.nodata].min() > 0 and z.max() < 5000


def layout(header: str) -> tuple[list[int], list[int]]:
    """Start columns of the three names and end columns of the five right-aligned numbers."""
    spans = [m.span() for m in re.finditer(r"\S+", header)]
    return [a for a, _ in spans[:3]], [b for _, b in spans[3:8]]


def test_ismn_download_copies_the_portal_layout(world: Path, reference_data: Path) -> None:
    folder = world / "ismn" / f"Data_seperate_files_header_{START:%Y%m%d}_{END:%Y%m%d}"
    stms = sorted(folder.rglob("*.stm"))
    assert len(stms) == 36
    ref_header = next((reference_data / "ismn" / "format_header_values").rglob("*.stm"))
    ref_first = ref_header.read_bytes().split(b"\r")[0].decode()
    ref_fields = layout(ref_first)
    ref_csv = next((reference_data / "ismn").rglob("*_static_variables.csv")).read_bytes()
    flags: set[str] = set()
    for stm in stms:
        network, station = stm.parent.parent.name, stm.parent.name
        assert re.fullmatch(
            rf"{network}_{network}_{station}_sm_0\.050000_0\.050000_[\w-]+_"
            rf"{START:%Y%m%d}_{END:%Y%m%d}\.stm",
            stm.name,
        )
        text = stm.read_bytes().decode("ascii")
        assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
        lines = text.split("\r\n")[:-1]
        assert layout(lines[0]) == ref_fields, "header columns line up with the real format"
        assert lines[0].split()[:3] == [network, network, station]
        for line in lines[1:]:
            assert re.fullmatch(r"\d{4}/\d\d/\d\d \d\d:\d\d +\d\.\d{4} [A-Z0-9,]+ M", line), line
            assert len(line.split()[2]) == 6 and line[16:25].strip() == line.split()[2]
            flags.add(line.split()[3])
        csv = stm.parent / f"{network}_{network}_{station}_static_variables.csv"
        assert csv.read_bytes().split(b"\r\n")[0] == ref_csv.split(b"\r\n")[0]
    assert flags <= {"G", "C03", "D06", "C03,D06"}
    assert {"G", "D06"} <= flags and any("C03" in f for f in flags)


def test_ismn_zip_holds_the_same_files_with_fixed_timestamps(world: Path) -> None:
    folder = world / "ismn" / f"Data_seperate_files_header_{START:%Y%m%d}_{END:%Y%m%d}"
    with zipfile.ZipFile(folder.with_suffix(".zip")) as zf:
        members = {i.filename: i for i in zf.infolist()}
        files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
        assert {n for n in members if not n.endswith("/")} == set(files)
        assert all(i.date_time == (2024, 1, 1, 0, 0, 0) for i in members.values())
        for name, path in files.items():
            assert zf.read(name) == path.read_bytes()


def test_truth_is_on_the_domain_ease2_grid(world: Path) -> None:
    domain = get_domain("demo")
    path = world / "truth" / f"truth_1km_demo_{START:%Y%m%d}_{END:%Y%m%d}.nc"
    with netCDF4.Dataset(path) as nc:
        assert nc["soil_moisture"].dimensions == ("time", "y", "x")
        assert nc["soil_moisture"].shape == (DAYS, *domain.shape(1))
        t = domain.transform(1)
        assert nc["x"][0] == pytest.approx(t.c + 0.5 * t.a)
        assert nc["y"][0] == pytest.approx(t.f + 0.5 * t.e)
        assert "6933" in nc["crs"].crs_wkt and nc["soil_moisture"].grid_mapping == "crs"
        assert "history" not in nc.ncattrs()


def test_manifest_lists_every_file_with_role_and_checksum(world: Path) -> None:
    manifest = json.loads((world / "manifest.json").read_text())
    assert manifest["seed"] == 7 and manifest["generator_version"] == GENERATOR_VERSION
    assert manifest["start"] == START.isoformat() and manifest["days"] == DAYS
    listed = {f["path"]: f for f in manifest["files"]}
    on_disk = {p.relative_to(world).as_posix() for p in world.rglob("*") if p.is_file()} - {
        "manifest.json"
    }
    assert set(listed) == on_disk
    assert not any(name.endswith(".part") for name in on_disk)
    roles = {f["role"] for f in manifest["files"]}
    assert roles == {
        "smap_l3_36km",
        "smap_l3_9km",
        "mcca_36km",
        "albedo_mcd43a3",
        "et_mod16a2",
        "precipitation_imerg_daily",
        "soil_soilgrids",
        "terrain_dem",
        "insitu_ismn",
        "insitu_ismn_zip",
        "truth",
    }
    for rel, entry in list(listed.items())[:40]:
        assert entry["sha256"] == sha256_of(world / rel)
