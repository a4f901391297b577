"""SMAP L3 reader on files built with the complete real layout of SMAP_L3_SM_P_20150331_R18290_002.h5.

Each test file is written with h5py from the granule's OPeNDAP DMR (every group, variable, dtype,
shape and attribute; the DMR's HDF5_HARDLINK attributes become real hard links), filled with fill
values except a set of known cells whose values and flags decide validity, so the tests can say
exactly which cells the reader must return, where, and when they were observed.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

from etl.grid import ease2, get_domain
from etl.readers import CorruptFileError, SchemaDriftError, open_granule, validity_mask
from etl.readers.coarse import cut_domain
from etl.readers.dmr import NUMPY_TYPES, Dmr, DmrAttribute, parse_dmr
from etl.readers.smap import read_smap_l3

J2000_UTC = dt.datetime(2000, 1, 1, 11, 58, 55, 816000)
NAME_V8 = "SMAP_L3_SM_P_20150331_R18290_002.h5"
SHAPE_36 = (406, 964)
SHAPE_9 = (1624, 3856)
F32 = np.float32


@dataclass(frozen=True)
class Cell:
    """One known cell: stored values and what the reader must make of them."""

    row: int
    col: int
    sm: float
    flag: int
    when: dt.datetime | None  # None: tb_time_seconds stays at its fill
    valid: bool
    recommended: bool

    @property
    def seconds(self) -> float:
        assert self.when is not None
        return (self.when - J2000_UTC).total_seconds()


CHINA_ROW, CHINA_COL = 90, 800  # a 36 km cell inside the China domain (North China Plain)
AM_CELLS = (
    Cell(0, 0, 0.25, 0, dt.datetime(2015, 3, 31, 0, 1, 2, 250000), True, True),  # north-west corner
    Cell(
        405, 963, 0.30, 8, dt.datetime(2015, 3, 31, 23, 59, 0), True, True
    ),  # FT bit only: still valid
    Cell(CHINA_ROW, CHINA_COL, 0.2125, 0, dt.datetime(2015, 3, 30, 22, 3, 15, 500000), True, True),
    Cell(
        100, 200, float(F32(0.02)), 0, dt.datetime(2015, 3, 31, 6, 0), True, True
    ),  # valid_min exactly
    Cell(101, 200, 0.5, 0, dt.datetime(2015, 3, 31, 6, 0), True, True),  # valid_max exactly
    Cell(102, 200, 0.0199, 0, dt.datetime(2015, 3, 31, 6, 0), False, True),  # below range
    Cell(103, 200, 0.5001, 0, dt.datetime(2015, 3, 31, 6, 0), False, True),  # above range
    Cell(104, 200, 0.35, 1, dt.datetime(2015, 3, 31, 6, 0), False, False),  # not recommended
    Cell(105, 200, 0.35, 7, dt.datetime(2015, 3, 31, 6, 0), False, False),  # bits 0-2 set
    Cell(106, 200, 0.35, 65534, None, False, False),  # flag fill (bit 0 clear!)
    Cell(107, 200, -9999.0, 0, None, False, True),  # soil moisture fill under a clean flag
)
PM_CELLS = (
    Cell(CHINA_ROW, CHINA_COL, 0.41, 0, dt.datetime(2015, 3, 31, 10, 30, 0, 125000), True, True),
    Cell(CHINA_ROW, CHINA_COL + 1, 0.15, 5, dt.datetime(2015, 3, 31, 10, 31), False, False),
    Cell(300, 50, 0.05, 0, dt.datetime(2015, 3, 31, 17, 45), True, True),
)


@pytest.fixture(scope="module")
def dmr(reference_data: Path) -> Dmr:
    return parse_dmr(reference_data / "smap" / "SC_SPL3SMP_008.dmr")


def write_granule(
    path: Path,
    dmr: Dmr,
    *,
    shape: tuple[int, int] = SHAPE_36,
    cells: dict[str, tuple[Cell, ...]] | None = None,
    drop: frozenset[str] = frozenset(),
    links: bool = True,
    attrs: dict[tuple[str, str], object] | None = None,
    reshape: dict[str, tuple[int, ...]] | None = None,
    extra: Callable[[h5py.File], None] | None = None,
) -> Path:
    """Write a granule with the DMR's complete layout; ``drop`` omits groups/variables by path."""
    cells = {"AM": AM_CELLS, "PM": PM_CELLS} if cells is None else cells
    overrides = attrs or {}

    def dropped(p: str) -> bool:
        return any(p == d or p.startswith(d + "/") for d in drop)

    def set_attrs(obj: h5py.HLObject, owner: str, items: tuple[DmrAttribute, ...]) -> None:
        for a in items:
            obj.attrs[a.name] = overrides.get((owner, a.name), a.numpy_value())

    with h5py.File(path, "w") as f:
        for group in dmr.groups:
            if dropped(group.path):
                continue
            g = f if group.path == "/" else f.require_group(group.path)
            set_attrs(g, group.path, group.attributes)
        pending = []
        for var in dmr.variables:
            if dropped(var.path) or dropped(var.group):
                continue
            if links and var.hardlink and not dropped(var.hardlink):
                pending.append(var)
                continue
            dims = (reshape or {}).get(var.path) or tuple(
                {406: shape[0], 964: shape[1]}.get(n, n) for n in var.shape
            )
            fill = var.attribute("_FillValue")
            dtype = "S24" if var.type == "String" else NUMPY_TYPES[var.type]
            ds = f.create_dataset(
                var.path,
                shape=dims,
                dtype=dtype,
                chunks=True,
                compression="gzip",
                fillvalue=b"N/A" if var.type == "String" else (fill.numpy_value() if fill else 0),
            )
            set_attrs(ds, var.path, var.attributes)
        for var in pending:  # a hard link is a second name of the same object
            f[var.path] = f[var.hardlink]
        for pass_, known in cells.items():
            group = f"/Soil_Moisture_Retrieval_Data_{pass_}"
            sfx = "" if pass_ == "AM" else "_pm"
            if dropped(group):
                continue
            for c in known:
                for name, value in (
                    (f"soil_moisture{sfx}", F32(c.sm)),
                    (f"retrieval_qual_flag{sfx}", np.uint16(c.flag)),
                    (f"tb_time_seconds{sfx}", c.seconds if c.when else None),
                    (
                        f"tb_time_utc{sfx}",
                        c.when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z" if c.when else None,
                    ),
                ):
                    target = f.get(f"{group}/{name}")
                    if (
                        value is not None
                        and isinstance(target, h5py.Dataset)
                        and target.ndim == 2
                        and c.row < target.shape[0]
                        and c.col < target.shape[1]
                    ):
                        target[c.row, c.col] = value
        if extra is not None:
            extra(f)
    return path


@pytest.fixture(scope="module")
def granule(dmr: Dmr, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_granule(tmp_path_factory.mktemp("smap") / NAME_V8, dmr)


@pytest.fixture(scope="module")
def ds(granule: Path) -> xr.Dataset:
    return read_smap_l3(granule)


def test_the_test_granule_has_every_group_variable_attribute_and_hard_link_of_the_real_dmr(
    granule: Path, dmr: Dmr
) -> None:
    with h5py.File(granule, "r") as f:
        for group in dmr.groups:
            obj = f[group.path]
            assert {a.name for a in group.attributes} <= set(obj.attrs)
        for var in dmr.variables:
            obj = f[var.path]
            assert isinstance(obj, h5py.Dataset), var.path
            assert obj.shape == var.shape, var.path
            if var.type != "String":
                assert obj.dtype == np.dtype(NUMPY_TYPES[var.type]), var.path
            for a in var.attributes:
                np.testing.assert_array_equal(obj.attrs[a.name], a.numpy_value())
            if var.hardlink:
                assert f[var.path] == f[var.hardlink], f"{var.path} is not the same object"
        assert (
            f["Soil_Moisture_Retrieval_Data_AM/soil_moisture"]
            == f["Soil_Moisture_Retrieval_Data_AM/soil_moisture_dca"]
        )
        assert (
            f["Soil_Moisture_Retrieval_Data_PM/soil_moisture_pm"]
            == f["Soil_Moisture_Retrieval_Data_PM/soil_moisture_dca_pm"]
        )


def test_reader_returns_exactly_the_valid_cells_on_their_ease2_rows_and_cols(
    ds: xr.Dataset,
) -> None:
    assert ds.sizes == {"pass": 2, "y": 406, "x": 964}
    assert list(ds["pass"].values) == ["AM", "PM"]
    for pass_, cells in (("AM", AM_CELLS), ("PM", PM_CELLS)):
        sm = ds["soil_moisture"].sel({"pass": pass_}).values
        assert sm.dtype == np.float32
        rows, cols = np.nonzero(np.isfinite(sm))
        expected = sorted((c.row, c.col) for c in cells if c.valid)
        assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == expected
        for c in cells:
            if c.valid:
                assert sm[c.row, c.col] == F32(c.sm)
                assert ds["row"].values[c.row] == c.row and ds["col"].values[c.col] == c.col


def test_fill_65534_is_not_mistaken_for_a_recommended_retrieval(ds: xr.Dataset) -> None:
    am = ds.sel({"pass": "AM"})
    assert np.uint16(65534) & 1 == 0  # the trap: fill has bit 0 clear
    assert am["retrieval_qual_flag"].values[106, 200] == 65534
    assert not bool(am["recommended"].values[106, 200])
    assert np.isnan(am["soil_moisture"].values[106, 200])
    assert am["soil_moisture_raw"].values[106, 200] == F32(0.35)
    # the untouched rest of the globe is flag fill too, and none of it is recommended
    assert int(am["recommended"].sum()) == sum(c.recommended for c in AM_CELLS)


def test_out_of_range_values_are_masked_but_kept_in_raw_and_the_float32_bounds_are_valid(
    ds: xr.Dataset,
) -> None:
    am = ds.sel({"pass": "AM"})
    for row, stored, valid in (
        (100, F32(0.02), True),
        (101, F32(0.5), True),
        (102, F32(0.0199), False),
        (103, F32(0.5001), False),
    ):
        assert am["soil_moisture_raw"].values[row, 200] == stored
        assert np.isfinite(am["soil_moisture"].values[row, 200]) == valid
    assert np.isnan(am["soil_moisture_raw"].values[107, 200])  # fill is NaN in raw too
    assert np.isnan(am["soil_moisture_raw"].values[200, 500])  # never-written cell = fill


def test_quality_bit_0_masks_a_retrieval_and_the_other_bits_do_not(ds: xr.Dataset) -> None:
    am = ds.sel({"pass": "AM"})
    assert np.isnan(am["soil_moisture"].values[104, 200]) and np.isnan(
        am["soil_moisture"].values[105, 200]
    )
    assert am["soil_moisture"].values[405, 963] == F32(0.30)  # flag 8: freeze/thaw bit only
    assert am["retrieval_qual_flag"].dtype == np.uint16


def test_overpass_time_counts_seconds_from_j2000_in_utc_exactly(ds: xr.Dataset) -> None:
    times = ds["overpass_time"]
    assert times.dtype == np.dtype("datetime64[ns]")
    for pass_, cells in (("AM", AM_CELLS), ("PM", PM_CELLS)):
        t = times.sel({"pass": pass_}).values
        for c in cells:
            if c.when is None:
                assert np.isnat(t[c.row, c.col])
            else:
                assert t[c.row, c.col] == np.datetime64(c.when, "ns"), (pass_, c)
    # the previous UTC day's AM overpass east of 90 E belongs to this file: not the file date
    assert times.sel({"pass": "AM"}).values[CHINA_ROW, CHINA_COL] == np.datetime64(
        "2015-03-30T22:03:15.500"
    )
    assert np.isnat(times.values[:, 250, 250]).all()


def test_zero_seconds_is_the_j2000_epoch_in_utc() -> None:
    from etl.readers.smap import j2000_seconds_to_datetime64

    got = j2000_seconds_to_datetime64([0.0, -9999.0, 86400.0 * 5000 + 4.184, np.nan])
    assert got[0] == np.datetime64("2000-01-01T11:58:55.816")
    assert np.isnat(got[1]) and np.isnat(got[3])
    assert got[2] == np.datetime64("2013-09-09T11:59:00")  # .816 + 4.184 s: microsecond-exact


def test_pm_values_come_from_the_pm_group_and_its_pm_suffixed_names(ds: xr.Dataset) -> None:
    am, pm = ds.sel({"pass": "AM"}), ds.sel({"pass": "PM"})
    assert am["soil_moisture"].values[CHINA_ROW, CHINA_COL] == F32(0.2125)
    assert pm["soil_moisture"].values[CHINA_ROW, CHINA_COL] == F32(0.41)
    assert pm["retrieval_qual_flag"].values[CHINA_ROW, CHINA_COL + 1] == 5
    assert np.isnan(pm["soil_moisture"].values[0, 0])


def test_grid_and_identity_come_from_constants_and_metadata(
    ds: xr.Dataset, reference_data: Path
) -> None:
    g = ease2(36)
    assert ds.attrs["product"] == "SPL3SMP"
    assert ds.attrs["version"] == "R18290/008"
    assert ds.attrs["date"] == "2015-03-31"
    assert ds.attrs["units"] == "m3/m3"
    assert "6933" in ds.attrs["crs"] and ds.attrs["crs_epsg"] == "EPSG:6933"
    assert ds.attrs["transform"] == tuple(g.transform.to_gdal())
    assert ds.attrs["baseline_algorithm"].startswith("dca")
    x, y = g.xy(np.arange(406), np.arange(964)[:406])
    np.testing.assert_array_equal(ds["x"].values[:406], x)
    np.testing.assert_array_equal(ds["y"].values, y)
    # cross-check the grid against the real granule's lat/lon where it holds any (-9999 elsewhere)
    with h5py.File(reference_data / "smap" / "SC_SPL3SMP_008_prefetch.nc4", "r") as f:
        lat = f["Soil_Moisture_Retrieval_Data_AM/latitude"][()]
        lon = f["Soil_Moisture_Retrieval_Data_AM/longitude"][()]
    seen = lat != -9999
    assert seen.sum() > 50_000
    rows, cols = np.nonzero(seen)
    glon, glat = g.lonlat(ds["row"].values[rows], ds["col"].values[cols])
    assert np.abs(glat - lat[seen]).max() < 1e-4 and np.abs(glon - lon[seen]).max() < 1e-4


def test_a_domain_read_equals_the_domain_cut_of_the_global_read(
    granule: Path, ds: xr.Dataset
) -> None:
    china = get_domain("china")
    part = read_smap_l3(granule, domain=china)
    rs, cs = china.slices(36)
    assert part.sizes["y"] == rs.stop - rs.start and part.sizes["x"] == cs.stop - cs.start
    cut = cut_domain(ds, china)
    for name in ("soil_moisture", "soil_moisture_raw", "retrieval_qual_flag", "overpass_time"):
        np.testing.assert_array_equal(part[name].values, cut[name].values)
    np.testing.assert_array_equal(
        part["soil_moisture"].values, ds["soil_moisture"].isel(y=rs, x=cs).values
    )
    assert part.attrs["transform"] == cut.attrs["transform"] == tuple(china.transform(36).to_gdal())
    assert part["soil_moisture"].sel({"pass": "AM"}).values[
        CHINA_ROW - rs.start, CHINA_COL - cs.start
    ] == F32(0.2125)


def test_one_pass_can_be_read_alone(granule: Path) -> None:
    pm = read_smap_l3(granule, passes=("PM",))
    assert list(pm["pass"].values) == ["PM"]
    assert int(np.isfinite(pm["soil_moisture"]).sum()) == sum(c.valid for c in PM_CELLS)


def test_a_version_9_layout_with_new_groups_and_variables_reads_the_same(
    dmr: Dmr, tmp_path: Path
) -> None:
    def add_v9_content(f: h5py.File) -> None:
        for pass_, sfx in (("AM", ""), ("PM", "_pm")):
            polar = f.create_group(f"Soil_Moisture_Retrieval_Data_Polar_{pass_}")
            polar.create_dataset(
                f"soil_moisture{sfx}", shape=(500, 500), dtype="f4", fillvalue=-9999.0
            )
            grp = f[f"Soil_Moisture_Retrieval_Data_{pass_}"]
            grp.create_dataset(
                f"soil_moisture_dca_error{sfx}", shape=SHAPE_36, dtype="f4", fillvalue=-9999.0
            )

    path = write_granule(
        tmp_path / "SMAP_L3_SM_P_20150331_R19240_001.h5",
        dmr,
        links=False,  # hard links or copies: the reader must not care
        attrs={
            ("/Metadata/DatasetIdentification", "CompositeReleaseID"): np.bytes_(b"R19240"),
            ("/Metadata/DatasetIdentification", "ECSVersionID"): np.bytes_(b"009"),
        },
        extra=add_v9_content,
    )
    v9 = read_smap_l3(path)
    assert v9.attrs["version"] == "R19240/009"
    assert v9.attrs["baseline_algorithm"].startswith("as labelled")
    assert int(np.isfinite(v9["soil_moisture"].sel({"pass": "AM"})).sum()) == sum(
        c.valid for c in AM_CELLS
    )
    assert v9["soil_moisture"].sel({"pass": "PM"}).values[300, 50] == F32(0.05)


def test_a_9km_spl3smp_e_granule_lands_on_the_9km_grid(dmr: Dmr, tmp_path: Path) -> None:
    cells = {
        "AM": (
            Cell(1623, 3855, 0.33, 0, dt.datetime(2015, 3, 31, 5, 0), True, True),
            Cell(400, 3300, 0.22, 0, dt.datetime(2015, 3, 30, 22, 0), True, True),
        ),
        "PM": (Cell(400, 3300, 0.44, 1, dt.datetime(2015, 3, 31, 10, 0), False, False),),
    }
    path = write_granule(
        tmp_path / "SMAP_L3_SM_P_E_20150331_R18290_001.h5",
        dmr,
        shape=SHAPE_9,
        cells=cells,
        attrs={("/Metadata/DatasetIdentification", "shortName"): np.bytes_(b"SPL3SMP_E")},
    )
    e = read_smap_l3(path, domain=get_domain("china"))
    assert e.attrs["product"] == "SPL3SMP_E" and e.attrs["res_km"] == 9
    rs, cs = get_domain("china").slices(9)
    assert e.sizes == {"pass": 2, "y": rs.stop - rs.start, "x": cs.stop - cs.start}
    am = e["soil_moisture"].sel({"pass": "AM"}).values
    assert am[400 - rs.start, 3300 - cs.start] == F32(0.22)
    assert (
        int(np.isfinite(am).sum()) == 1
        and int(np.isfinite(e["soil_moisture"].sel({"pass": "PM"})).sum()) == 0
    )
    assert e["x"].values[0] == ease2(9).xy(0, cs.start)[0]


@pytest.mark.parametrize(
    ("drop", "reshape", "message"),
    [
        (
            frozenset({"/Soil_Moisture_Retrieval_Data_PM"}),
            None,
            "group /Soil_Moisture_Retrieval_Data_PM is missing",
        ),
        (
            frozenset({"/Soil_Moisture_Retrieval_Data_PM/tb_time_seconds_pm"}),
            None,
            "variable /Soil_Moisture_Retrieval_Data_PM/tb_time_seconds_pm is missing",
        ),
        (
            frozenset({"/Soil_Moisture_Retrieval_Data_AM/retrieval_qual_flag"}),
            None,
            "variable /Soil_Moisture_Retrieval_Data_AM/retrieval_qual_flag is missing",
        ),
        (
            frozenset(),
            {"/Soil_Moisture_Retrieval_Data_AM/soil_moisture": (964, 406)},
            "soil_moisture has shape (964, 406), expected (406, 964)",
        ),
    ],
    ids=["missing-pm-group", "missing-variable", "missing-linked-flag", "transposed-shape"],
)
def test_schema_drift_raises_a_typed_error_naming_the_file_and_what_is_wrong(
    dmr: Dmr,
    tmp_path: Path,
    drop: frozenset[str],
    reshape: dict[str, tuple[int, ...]] | None,
    message: str,
) -> None:
    # "missing-linked-flag": the retrieval_qual_flag name is gone, only its _dca twin remains
    path = write_granule(tmp_path / NAME_V8, dmr, drop=drop, reshape=reshape, cells={})
    with pytest.raises(SchemaDriftError) as err:
        read_smap_l3(path)
    assert str(path) in str(err.value) and message in str(err.value)
    assert err.value.status == "QUARANTINED"


def test_a_missing_pm_group_still_allows_reading_the_am_pass(dmr: Dmr, tmp_path: Path) -> None:
    path = write_granule(
        tmp_path / NAME_V8, dmr, drop=frozenset({"/Soil_Moisture_Retrieval_Data_PM"})
    )
    am = read_smap_l3(path, passes=("AM",))
    assert int(np.isfinite(am["soil_moisture"]).sum()) == sum(c.valid for c in AM_CELLS)


def test_a_changed_fill_value_is_schema_drift(dmr: Dmr, tmp_path: Path) -> None:
    path = write_granule(
        tmp_path / NAME_V8,
        dmr,
        cells={},
        attrs={
            ("/Soil_Moisture_Retrieval_Data_AM/retrieval_qual_flag_dca", "_FillValue"): np.uint16(
                65535
            )
        },
    )
    with pytest.raises(
        SchemaDriftError, match=r"retrieval_qual_flag has _FillValue 65535.0, expected 65534"
    ):
        read_smap_l3(path)


def test_a_file_name_that_contradicts_the_metadata_date_is_schema_drift(
    granule: Path, tmp_path: Path
) -> None:
    renamed = tmp_path / "SMAP_L3_SM_P_20150401_R18290_002.h5"
    shutil.copy(granule, renamed)
    with pytest.raises(
        SchemaDriftError,
        match=r"date in metadata \(2015-03-31\) contradicts the file name \(2015-04-01\)",
    ):
        read_smap_l3(renamed)


def test_a_truncated_file_is_a_corrupt_file_error(granule: Path, tmp_path: Path) -> None:
    broken = tmp_path / NAME_V8
    broken.write_bytes(granule.read_bytes()[:4096])
    with pytest.raises(CorruptFileError, match=str(broken)):
        read_smap_l3(broken)
    with pytest.raises(CorruptFileError, match="no such file"):
        read_smap_l3(tmp_path / "absent.h5")


def test_open_granule_refuses_a_36km_file_filed_as_spl3smp_e(granule: Path) -> None:
    assert open_granule(granule, product="SPL3SMP").attrs["product"] == "SPL3SMP"
    with pytest.raises(SchemaDriftError, match="file is SPL3SMP, expected SPL3SMP_E"):
        open_granule(granule, product="SPL3SMP_E")


def test_validity_mask_is_one_rule_for_fill_range_and_bit_0() -> None:
    sm = np.array(
        [0.25, 0.25, 0.25, 0.25, -9999.0, 0.0199, F32(0.02), 0.5, 0.5001, np.nan], dtype=np.float32
    )
    flag = np.array([0, 1, 65534, 14, 0, 0, 0, 0, 0, 0], dtype=np.uint16)
    got = validity_mask(soil_moisture=sm, retrieval_qual_flag=flag)
    assert got.tolist() == [True, False, False, True, False, False, True, True, False, False]
