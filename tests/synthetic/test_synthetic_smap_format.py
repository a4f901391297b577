"""The synthetic SMAP L3 granules match the real granule's metadata (the DMR of SPL3SMP v8)."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from etl.grid import ease2, get_domain
from etl.synthetic.overpass import J2000_UTC

NS = {"d": "http://xml.opendap.org/ns/DAP/4.0#"}
GROUPS = ("Soil_Moisture_Retrieval_Data_AM", "Soil_Moisture_Retrieval_Data_PM")
REQUIRED = (
    "soil_moisture",
    "soil_moisture_error",
    "retrieval_qual_flag",
    "surface_flag",
    "tb_time_seconds",
    "tb_time_utc",
    "latitude",
    "longitude",
    "EASE_row_index",
    "EASE_column_index",
)
DTYPES = {"Float32": "float32", "Float64": "float64", "UInt16": "uint16"}


@dataclass(frozen=True)
class DmrVariable:
    type: str
    dims: tuple[int, ...]
    attrs: dict[str, tuple[str, str]]


def parse_dmr(path: Path) -> dict[str, dict[str, DmrVariable]]:
    """Group name -> variable name -> type, dimensions and attributes (type, text)."""
    root = ET.parse(path).getroot()
    groups: dict[str, dict[str, DmrVariable]] = {}
    for group in root.findall("d:Group", NS):
        variables = {}
        for var in group:
            name = var.get("name")
            if name is None or var.tag.endswith("Group") or var.tag.endswith("Attribute"):
                continue
            attrs = {}
            for a in var.findall("d:Attribute", NS):
                values = [v.text or "" for v in a.findall("d:Value", NS)]
                attrs[a.get("name", "")] = (a.get("type", ""), values[0] if values else "")
            dims = tuple(int(d.get("size", "0")) for d in var.findall("d:Dim", NS))
            variables[name] = DmrVariable(var.tag.split("}")[1], dims, attrs)
        groups[group.get("name", "")] = variables
    return groups


@pytest.fixture(scope="module")
def dmr(reference_data: Path) -> dict[str, dict[str, DmrVariable]]:
    return parse_dmr(reference_data / "smap" / "SC_SPL3SMP_008.dmr")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, build_world) -> Path:  # type: ignore[no-untyped-def]
    return build_world(tmp_path_factory.mktemp("smap_world"), days=3, spinup_days=3)


def granules(world: Path) -> list[tuple[int, Path]]:
    found = [(36, p) for p in sorted((world / "smap" / "SPL3SMP").rglob("*.h5"))]
    found += [(9, p) for p in sorted((world / "smap" / "SPL3SMP_E").rglob("*.h5"))]
    return found


def expected_attr(value: tuple[str, str]) -> object:
    kind, text = value
    if kind == "String":
        return text
    return np.dtype(DTYPES.get(kind, "float64")).type(text)


def test_granules_have_nsidc_names_and_folders(world: Path) -> None:
    found = granules(world)
    assert len(found) == 6
    for res, path in found:
        pattern = (
            r"SMAP_L3_SM_P_(\d{8})_R19240_001\.h5"
            if res == 36
            else (r"SMAP_L3_SM_P_E_(\d{8})_R19240_001\.h5")
        )
        m = re.fullmatch(pattern, path.name)
        assert m, path.name
        day = dt.datetime.strptime(m.group(1), "%Y%m%d").date()
        assert path.parent.name == f"{day:%Y.%m.%d}"


def test_every_written_variable_matches_the_real_granule_metadata(
    world: Path, dmr: dict[str, dict[str, DmrVariable]]
) -> None:
    for res, path in granules(world):
        shape = ease2(res).shape
        with h5py.File(path, "r") as f:
            assert set(GROUPS) <= set(f.keys())
            assert set(f.keys()) <= {*GROUPS, "Metadata"}
            for group in GROUPS:
                suffix = "" if group.endswith("AM") else "_pm"
                names = set(f[group].keys())
                assert {n + suffix for n in REQUIRED} <= names
                for name in names:
                    ref = dmr[group][name]  # KeyError = a variable the real product lacks
                    ds = f[group][name]
                    assert ds.shape == shape, name
                    if res == 36:
                        assert ds.shape == ref.dims, name
                    if ref.type == "String":
                        assert ds.dtype.kind == "S", name
                    else:
                        assert ds.dtype == np.dtype(DTYPES[ref.type]), name
                    ref_attrs = {k: v for k, v in ref.attrs.items() if k != "HDF5_HARDLINK"}
                    assert set(ds.attrs.keys()) == set(ref_attrs), name
                    for key, value in ref_attrs.items():
                        got = ds.attrs[key]
                        want = expected_attr(value)
                        if (
                            res == 9
                            and name.startswith("EASE_")
                            and key in ("long_name", "valid_max")
                        ):
                            continue
                        if isinstance(want, str):
                            assert isinstance(got, bytes), (name, key)  # fixed-length ASCII
                            assert got.decode("ascii") == want, (name, key)
                        else:
                            assert got.dtype == want.dtype and got == want, (name, key)
                    if "_FillValue" in ref_attrs:
                        assert ds.fillvalue == expected_attr(ref_attrs["_FillValue"]), name
                    assert ds.compression == "gzip" and ds.chunks is not None


def test_nine_km_index_attributes_describe_the_nine_km_grid(world: Path) -> None:
    path = next(p for r, p in granules(world) if r == 9)
    with h5py.File(path, "r") as f:
        rows = f["Soil_Moisture_Retrieval_Data_AM/EASE_row_index"]
        cols = f["Soil_Moisture_Retrieval_Data_PM/EASE_column_index_pm"]
        assert rows.attrs["valid_max"] == np.uint16(1623)
        assert cols.attrs["valid_max"] == np.uint16(3855)
        assert b"9 km" in rows.attrs["long_name"]


def test_soil_moisture_dca_is_a_hard_link_as_in_version_8(world: Path) -> None:
    _, path = granules(world)[0]
    with h5py.File(path, "r") as f:
        am = f["Soil_Moisture_Retrieval_Data_AM"]
        pm = f["Soil_Moisture_Retrieval_Data_PM"]
        assert am["soil_moisture_dca"].id == am["soil_moisture"].id
        assert am["retrieval_qual_flag_dca"].id == am["retrieval_qual_flag"].id
        assert pm["soil_moisture_dca_pm"].id == pm["soil_moisture_pm"].id
        assert pm["retrieval_qual_flag_dca_pm"].id == pm["retrieval_qual_flag_pm"].id


def test_fill_conventions_and_geolocation_follow_the_real_files(world: Path) -> None:
    domain = get_domain("demo")
    passes_with_data = 0
    not_recommended = 0
    for res, path in granules(world):
        rows, cols = domain.slices(res)
        with h5py.File(path, "r") as f:
            for group, sfx in zip(GROUPS, ("", "_pm"), strict=True):
                g = f[group]
                t = g["tb_time_seconds" + sfx][...]
                seen = t != -9999.0
                lat = g["latitude" + sfx][...]
                lon = g["longitude" + sfx][...]
                # latitude/longitude hold -9999 wherever nothing was observed
                assert np.all(lat[~seen] == -9999.0) and np.all(lon[~seen] == -9999.0)
                assert seen.sum() == seen[rows, cols].sum(), "data only inside the domain"
                if not seen.any():
                    continue  # the swath missed the demo domain on this pass
                passes_with_data += 1
                r, c = np.nonzero(seen)
                grid_lon, grid_lat = ease2(res).lonlat(r, c)
                np.testing.assert_allclose(lat[seen], grid_lat, atol=1e-4)
                np.testing.assert_allclose(lon[seen], grid_lon, atol=1e-4)
                assert np.all(g["EASE_row_index" + sfx][...][seen] == r)
                assert np.all(g["EASE_column_index" + sfx][...][seen] == c)
                flag = g["retrieval_qual_flag" + sfx][...]
                assert np.all(flag[~seen] == 65534)
                sm = g["soil_moisture" + sfx][...]
                assert np.all(sm[flag == 65534] == -9999.0)
                # not-attempted / failed retrievals have a flag but no value
                assert np.all(sm[(flag & 0b110) > 0] == -9999.0)
                not_recommended += int(np.sum((flag[seen] & 1) == 1))
                strings = g["tb_time_utc" + sfx][...]
                assert np.all(strings[~seen] == b"N/A")
                k = np.flatnonzero(seen.ravel())[0]
                moment = J2000_UTC + dt.timedelta(seconds=float(t.ravel()[k]))
                text = strings.ravel()[k].decode("ascii")
                assert (
                    text
                    == moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
                )
    assert passes_with_data >= 4
    assert not_recommended > 0, "some cells are flagged not recommended"


def test_overpasses_happen_at_six_am_and_six_pm_local_solar_time(world: Path) -> None:
    checked = 0
    for _, path in granules(world):
        with h5py.File(path, "r") as f:
            for group, sfx, hour in zip(GROUPS, ("", "_pm"), (6.0, 18.0), strict=True):
                t = f[group]["tb_time_seconds" + sfx][...]
                lon = f[group]["longitude" + sfx][...]
                seen = t != -9999.0
                utc_hours = ((t[seen] + 11 * 3600 + 58 * 60 + 55.816) / 3600.0) % 24.0
                local = (utc_hours + lon[seen] / 15.0) % 24.0
                assert np.all(np.abs(local - hour) < 0.5)
                checked += int(seen.sum())
    assert checked > 0


def metadata_attribute_types(path: Path) -> dict[str, str]:
    """'Group/Sub/attr' -> DMR type, for every attribute under /Metadata of the DMR."""
    root = ET.parse(path).getroot()
    out: dict[str, str] = {}

    def walk(group: ET.Element, prefix: str) -> None:
        for a in group.findall("d:Attribute", NS):
            out[f"{prefix}/{a.get('name')}"] = a.get("type", "")
        for sub in group.findall("d:Group", NS):
            walk(sub, f"{prefix}/{sub.get('name')}")

    meta = next(g for g in root.findall("d:Group", NS) if g.get("name") == "Metadata")
    walk(meta, "Metadata")
    return out


def test_metadata_attributes_exist_in_the_real_granule_with_the_same_types(
    world: Path, reference_data: Path
) -> None:
    types = metadata_attribute_types(reference_data / "smap" / "SC_SPL3SMP_008.dmr")
    numpy_types = {**DTYPES, "Int64": "int64", "UInt32": "uint32", "Int32": "int32"}
    written: list[str] = []
    for _, path in granules(world):
        with h5py.File(path, "r") as f:

            def visit(name: str, obj: object) -> None:
                for key, value in getattr(obj, "attrs", {}).items():
                    full = f"Metadata/{name}/{key}"
                    written.append(full)
                    kind = types[full]
                    if kind == "String":
                        assert isinstance(value, bytes), full
                    else:
                        assert value.dtype == np.dtype(numpy_types[kind]), full

            f["Metadata"].visititems(visit)
    assert "Metadata/DatasetIdentification/shortName" in written
