"""MCCA SMAP reader: configured by variable names and grid, on NetCDF-4 and plain HDF5 files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import h5py
import netCDF4
import numpy as np
import pytest

from etl.errors import ConfigError
from etl.grid import get_domain
from etl.readers import MccaLayout, SchemaDriftError, read_mcca

DAY = dt.date(2020, 7, 1)
NC_LAYOUT = MccaLayout(
    res_km=36,
    soil_moisture={"AM": "SM_AM", "PM": "SM_PM"},
    fill_value=-999.0,
    valid_min=0.02,
    valid_max=0.6,
    scale_factor=1.0,
    add_offset=0.0,
    row_order="south_up",
    quality_flag={"AM": "QC_AM", "PM": "QC_PM"},
    flag_fill=255,
    bad_bits=0b0000_0011,
    overpass_time={"AM": "TIME_AM", "PM": "TIME_PM"},
)


def _netcdf(path: Path) -> Path:
    """406 x 964 stored south-up (row 0 = southernmost), float m3/m3, uint8 flags, epoch seconds."""
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("lat", 406)
        nc.createDimension("lon", 964)
        for p in ("AM", "PM"):
            sm = nc.createVariable(f"SM_{p}", "f4", ("lat", "lon"), fill_value=np.float32(-999.0))
            qc = nc.createVariable(f"QC_{p}", "u1", ("lat", "lon"), fill_value=np.uint8(255))
            t = nc.createVariable(f"TIME_{p}", "f8", ("lat", "lon"), fill_value=-1.0)
            t.units = "seconds since 1970-01-01 00:00:00 UTC"
            sm.set_auto_maskandscale(False)
            # EASE row 90 (north) is stored at row 405 - 90 = 315
            sm[315, 800] = np.float32(0.31 if p == "AM" else 0.12)
            qc[315, 800] = np.uint8(4)  # bit 2 only: not a bad bit
            t[315, 800] = 1593561600.0 + (7200.0 if p == "AM" else 50400.0)
            sm[315, 801] = np.float32(0.33)
            qc[315, 801] = np.uint8(1)  # bad bit
            sm[315, 802] = np.float32(0.7)  # out of range
            qc[315, 802] = np.uint8(0)
            sm[315, 803] = np.float32(0.2)  # flag fill
    return path


def test_a_south_up_netcdf_lands_on_the_ease2_rows_with_flags_and_times(tmp_path: Path) -> None:
    ds = read_mcca(_netcdf(tmp_path / "MCCA_SMAP_20200701.nc"), layout=NC_LAYOUT, date=DAY)
    assert ds.sizes == {"pass": 2, "y": 406, "x": 964}
    am = ds.sel({"pass": "AM"})
    rows, cols = np.nonzero(np.isfinite(am["soil_moisture"].values))
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == [(90, 800)]
    assert am["soil_moisture"].values[90, 800] == np.float32(0.31)
    assert ds.sel({"pass": "PM"})["soil_moisture"].values[90, 800] == np.float32(0.12)
    assert am["soil_moisture_raw"].values[90, 802] == np.float32(0.7)
    assert not am["recommended"].values[90, 801] and not am["recommended"].values[90, 803]
    assert am["overpass_time"].values[90, 800] == np.datetime64("2020-07-01T02:00", "ns")
    assert np.isnat(am["overpass_time"].values[0, 0])
    assert ds.attrs["product"] == "MCCA_SMAP" and ds.attrs["date"] == "2020-07-01"
    assert ds.attrs["crs_epsg"] == "EPSG:6933"


def test_packed_hdf5_on_the_9km_grid_is_unpacked_with_the_layout_not_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mcca_9km.h5"
    stored = np.full((1624, 3856), -32768, dtype=np.int16)
    stored[400, 3300] = 2500
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("retrieval/sm_am", data=stored, compression="gzip")
        ds.attrs["scale_factor"] = 1.0  # a wrong CF attribute must not matter
    layout = MccaLayout(
        res_km=9,
        soil_moisture={"AM": "/retrieval/sm_am"},
        fill_value=-32768,
        valid_min=0.02,
        valid_max=0.6,
        scale_factor=1e-4,
        add_offset=0.0,
        row_order="north_up",
    )
    china = get_domain("china")
    ds = read_mcca(path, layout=layout, date=DAY, domain=china)
    rs, cs = china.slices(9)
    sm = ds["soil_moisture"].sel({"pass": "AM"}).values
    assert sm[400 - rs.start, 3300 - cs.start] == pytest.approx(0.25)
    assert int(np.isfinite(sm).sum()) == 1
    assert list(ds["pass"].values) == ["AM"] and "overpass_time" not in ds


def test_layout_drift_and_misconfiguration_raise_typed_errors(tmp_path: Path) -> None:
    path = _netcdf(tmp_path / "MCCA_SMAP_20200701.nc")
    with pytest.raises(
        SchemaDriftError, match=r"variable /SM_AM has shape \(406, 964\), expected \(1624, 3856\)"
    ):
        read_mcca(path, layout=MccaLayout(**{**NC_LAYOUT.__dict__, "res_km": 9}), date=DAY)
    renamed = MccaLayout(**{**NC_LAYOUT.__dict__, "soil_moisture": {"AM": "sm_am", "PM": "SM_PM"}})
    with pytest.raises(SchemaDriftError, match=rf"{path}: variable /sm_am is missing"):
        read_mcca(path, layout=renamed, date=DAY)
    with pytest.raises(ConfigError, match="res_km must be 36 or 9"):
        MccaLayout(**{**NC_LAYOUT.__dict__, "res_km": 25})
    with pytest.raises(ConfigError, match="needs flag_fill and non-zero bad_bits"):
        MccaLayout(**{**NC_LAYOUT.__dict__, "bad_bits": 0})
