"""`smapds inspect` and `smapds convert` on synthetic SMAP granules, checked against the raw HDF5."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import rasterio
from run_cli import smapds

from etl.grid import ease2

GROUP = "Soil_Moisture_Retrieval_Data_AM"


def _granule(world: Path, res: str = "SPL3SMP") -> Path:
    return next((world / "smap" / res / "2024.04.03").glob("*.h5"))


def test_convert_writes_exactly_the_valid_observations_on_the_right_cells(
    demo_world: Path, tmp_path: Path
) -> None:
    src = _granule(demo_world)
    out = tmp_path / "am.tif"
    result = smapds("convert", str(src), str(out), "--pass", "AM")
    assert result.returncode == 0, result.stderr
    with h5py.File(src, "r") as f:
        sm = f[GROUP]["soil_moisture"][:]
        flag = f[GROUP]["retrieval_qual_flag"][:]
        lat = f[GROUP]["latitude"][:]
        lon = f[GROUP]["longitude"][:]
    valid = (
        (sm != -9999)
        & (sm >= np.float32(0.02))
        & (sm <= np.float32(0.5))
        & (flag != 65534)
        & ((flag & 1) == 0)
    )
    assert valid.sum() > 10
    with rasterio.open(out) as ds:
        data = ds.read(1)
        assert ds.crs.to_epsg() == 6933 and ds.transform == ease2(36).transform
        assert (ds.height, ds.width) == (406, 964)
    np.testing.assert_array_equal(np.isfinite(data), valid)
    np.testing.assert_array_equal(data[valid], sm[valid])
    # the cells are where the file's own coordinates say they are
    rows, cols = np.nonzero(valid)
    glon, glat = ease2(36).lonlat(rows, cols)
    assert np.abs(glon - lon[valid]).max() < 1e-4 and np.abs(glat - lat[valid]).max() < 1e-4
    assert f"{int(valid.sum())} valid cells" in result.stdout


def test_convert_raw_keeps_everything_but_fill(demo_world: Path, tmp_path: Path) -> None:
    src = _granule(demo_world)
    out = tmp_path / "raw.tif"
    assert smapds("convert", str(src), str(out), "--raw").returncode == 0
    with h5py.File(src, "r") as f:
        sm = f[GROUP]["soil_moisture"][:]
    with rasterio.open(out) as ds:
        data = ds.read(1)
    np.testing.assert_array_equal(np.isfinite(data), sm != -9999)


def test_inspect_summarises_a_granule(demo_world: Path) -> None:
    result = smapds("inspect", str(_granule(demo_world, "SPL3SMP_E")), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["product"] == "SPL3SMP_E" and report["date"] == "2024-04-03"
    am = report["passes"]["AM"]
    assert 0 < am["valid_cells"] <= am["recommended_cells"] + am["not_recommended_cells"]
    assert 0.02 <= am["min"] <= am["max"] <= 0.5
    assert am["overpass_utc"][0].startswith("2024-04-0")


def test_inspect_and_convert_name_the_problem_with_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "SMAP_L3_SM_P_20240403_R19240_001.h5"
    bad.write_bytes(b"<html>not hdf5</html>")
    result = smapds("inspect", str(bad))
    assert result.returncode == 1 and str(bad) in result.stderr and "Traceback" not in result.stderr
    unknown = tmp_path / "mystery.dat"
    unknown.write_bytes(b"x")
    result = smapds("convert", str(unknown), str(tmp_path / "o.tif"))
    assert result.returncode == 1 and "cannot tell the product" in result.stderr
