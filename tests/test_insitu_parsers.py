"""ISMN and generic CSV parsers on the real reference files and on broken copies of them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from etl.errors import InputError
from etl.insitu.csv_format import parse_observations_csv, parse_stations_csv
from etl.insitu.ismn_stm import parse_stm
from etl.insitu.model import Format, Reason, Rows, station_key
from etl.insitu.static_csv import parse_static_variables
from etl.insitu.text import iso_time

NARBONNE = "SMOSMANIA_SMOSMANIA_Narbonne_sm_0.050000_0.050000_ThetaProbe-ML2X_20070101_20070131.stm"
ARM1 = "COSMOS_COSMOS_ARM-1_sm_0.000000_0.190000_Cosmic-ray-Probe_20170810_20180809.stm"
HV_NAME = "NET_NET_CST-01_sm_0.050000_0.050000_ThetaProbe-ML2X_20200101_20200131.stm"
HV_HEADER = "NET        NET             CST_01             45.00000    10.00000  100.00    0.05    0.05 ThetaProbe-ML2X"


@pytest.fixture(scope="module")
def ismn(reference_data: Path) -> Path:
    return reference_data / "ismn"


def _lines(data: bytes) -> list[str]:
    return [line for line in re.split(r"\r\n|\r|\n", data.decode()) if line.strip()]


def _hv(*lines: str, header: str = HV_HEADER) -> bytes:
    return ("\r\n".join([header, *lines]) + "\r\n").encode()


def _utc(rows: Rows) -> list[str]:
    """The rows' times as ISO text to the second (UTC)."""
    return [str(t) for t in rows.times.astype("datetime64[s]")]


def test_header_values_reference_file_gives_every_row_and_flag(ismn: Path) -> None:
    path = next(ismn.rglob(ARM1))
    data = path.read_bytes()
    values = _lines(data)[1:]
    parsed = parse_stm(data, name=path.name)
    assert parsed.format is Format.ISMN_HEADER_VALUES
    assert parsed.station is not None and parsed.station.name == "ARM-1"
    assert (parsed.station.lat, parsed.station.lon, parsed.station.elevation_m) == (
        36.6054,
        -97.4878,
        322.0,
    )
    [(key, rows)] = parsed.blocks
    assert key.sensor.variable == "soil_moisture"
    assert (key.sensor.depth_from_m, key.sensor.depth_to_m) == (0.0, 0.19)
    assert key.sensor.instrument == "Cosmic-ray-Probe"
    assert parsed.rows_read == len(rows) == len(values) == 6865
    assert parsed.rejects == []
    assert rows.quality_flags.tolist().count("G") == sum(v.split()[3] == "G" for v in values)
    assert "D03,D05" in rows.quality_flags.tolist()  # combined flags kept as given
    assert _utc(rows)[0] == "2017-08-10T00:00:00" and rows.values[0] == 0.141
    assert rows.values.tolist() == [float(v.split()[2]) for v in values]


def test_ceop_and_header_values_give_the_same_station_month(ismn: Path) -> None:
    hv = parse_stm((ismn / "format_header_values/SMOSMANIA" / NARBONNE).read_bytes(), name=NARBONNE)
    ceop = parse_stm((ismn / "format_ceop_sep/SMOSMANIA" / NARBONNE).read_bytes(), name=NARBONNE)
    assert (hv.format, ceop.format) == (Format.ISMN_HEADER_VALUES, Format.ISMN_CEOP)
    assert hv.station == ceop.station
    [(hv_key, a)], [(ceop_key, b)] = hv.blocks, ceop.blocks
    assert hv_key == ceop_key
    assert len(a) == len(b) == 741
    assert (_utc(a), a.values.tolist(), a.quality_flags.tolist()) == (
        _utc(b),
        b.values.tolist(),
        b.quality_flags.tolist(),
    )
    # The one real difference: header+values omits the provider flag on 2007/01/01 22:00.
    providers = zip(_utc(a), a.provider_flags.tolist(), b.provider_flags.tolist(), strict=True)
    differ = [(t, p, q) for t, p, q in providers if p != q]
    assert differ == [("2007-01-01T22:00:00", "", "M")]


@pytest.mark.parametrize("ending", ["\r", "\n", "\r\n", "mixed"])
def test_every_line_ending_style_gives_the_same_rows(ismn: Path, ending: str) -> None:
    data = (ismn / "format_header_values/SMOSMANIA" / NARBONNE).read_bytes()
    lines = _lines(data)
    if ending == "mixed":
        text = "".join(line + ("\r\n", "\r", "\n", "\n\r")[k % 4] for k, line in enumerate(lines))
    else:
        text = ending.join(lines) + ending
    parsed = parse_stm(text.encode(), name=NARBONNE)
    reference = parse_stm(data, name=NARBONNE)
    assert _utc(parsed.blocks[0][1]) == _utc(reference.blocks[0][1])
    assert parsed.blocks[0][1].values.tolist() == reference.blocks[0][1].values.tolist()
    assert parsed.rejects == []


def test_station_identity_comes_from_the_contents_whatever_the_file_name_spelling() -> None:
    parsed = parse_stm(_hv("2020/01/01 00:00   0.2000 G M"), name=HV_NAME)
    assert parsed.station is not None
    assert parsed.station.name == "CST_01"  # the header's spelling, not the file name's CST-01
    assert station_key("CST-01") == station_key("CST_01") == station_key(" cst 01 ") == "cst_01"


def test_a_file_name_naming_another_station_is_refused() -> None:
    with pytest.raises(InputError, match=r"contents name station 'CST_01', the file name 'XYZ'"):
        parse_stm(_hv("2020/01/01 00:00   0.2 G M"), name=HV_NAME.replace("CST-01", "XYZ"))


def test_a_header_with_latitude_and_longitude_swapped_is_refused_clearly() -> None:
    header = HV_HEADER.replace("45.00000    10.00000", "116.40000    39.90000")
    with pytest.raises(InputError, match=r"line 1 \(header\): latitude 116.4 .* swapped"):
        parse_stm(_hv("2020/01/01 00:00   0.2 G M", header=header), name=HV_NAME)


def test_a_header_with_missing_fields_is_refused() -> None:
    with pytest.raises(InputError, match="not a header\\+values header"):
        parse_stm(_hv("2020/01/01 00:00   0.2 G M", header="NET NET CST_01 45.0"), name=HV_NAME)


def test_bad_rows_are_rejected_with_their_reason_and_the_rest_is_kept() -> None:
    parsed = parse_stm(
        _hv(
            "2020/01/01 00:00   0.2000 G M",
            "2020-01-01 01:00   0.2000 G M",  # another date format
            "01/01/2020 02:00   0.2000 G M",
            "2020/02/30 03:00   0.2000 G M",  # no such day
            "2020/01/01 25:00   0.2000 G M",
            "2020/01/01 04:00   n/a G M",
            "2020/01/01 05:00   0.2000 G M extra",
            "2020/01/01 00:00   0.3000 G M",  # same time again
            "2020/01/01 06:00   0.2000 D03,D10 M",
            "2020/01/01 07:00   -0.0100 C01",  # negative, no provider flag: kept
            "2020/01/01 08:00   0.2",  # truncated
        ),
        name=HV_NAME,
    )
    rows = parsed.blocks[0][1]
    assert _utc(rows) == ["2020-01-01T00:00:00", "2020-01-01T06:00:00", "2020-01-01T07:00:00"]
    assert rows.quality_flags.tolist() == ["G", "D03,D10", "C01"]
    assert rows.provider_flags.tolist() == ["M", "M", ""]
    assert rows.values.tolist() == [0.2, 0.2, -0.01]
    assert rows.line_nos.tolist() == [2, 10, 11]
    reasons = {r.line_no: r.reason for r in parsed.rejects}
    assert reasons == {
        3: Reason.UNPARSEABLE_TIME,
        4: Reason.UNPARSEABLE_TIME,
        5: Reason.UNPARSEABLE_TIME,
        6: Reason.UNPARSEABLE_TIME,
        7: Reason.NON_NUMERIC_VALUE,
        8: Reason.WRONG_COLUMN_COUNT,
        9: Reason.DUPLICATE_TIME,
        12: Reason.MISSING_FIELD,
    }
    assert parsed.rows_read == 11
    assert "not a calendar day" in next(r.detail for r in parsed.rejects if r.line_no == 5)
    assert next(r.line for r in parsed.rejects if r.line_no == 7).strip().endswith("n/a G M")


def test_ceop_rows_with_impossible_coordinates_or_another_station_are_rejected(
    ismn: Path,
) -> None:
    lines = _lines((ismn / "format_ceop_sep/SMOSMANIA" / NARBONNE).read_bytes())[:4]
    lines[1] = lines[1].replace("43.15000     2.95670", "243.15000     2.95670")
    lines[2] = lines[2].replace("Narbonne", "Other")
    parsed = parse_stm("\r".join(lines).encode(), name=NARBONNE)
    assert {r.line_no: r.reason for r in parsed.rejects} == {
        2: Reason.LAT_LON_OUT_OF_RANGE,
        3: Reason.STATION_MISMATCH,
    }
    assert len(parsed.blocks[0][1]) == 2


def test_an_empty_or_unnamed_file_is_refused() -> None:
    with pytest.raises(InputError, match="empty file"):
        parse_stm(b"\r\n\r\n", name=HV_NAME)
    with pytest.raises(InputError, match="not an ISMN data file name"):
        parse_stm(_hv("2020/01/01 00:00   0.2 G M"), name="data.stm")


def test_static_variables_are_read_as_given(ismn: Path) -> None:
    path = next(ismn.rglob("COSMOS_COSMOS_ARM-1_static_variables.csv"))
    parsed = parse_static_variables(path.read_bytes(), name=path.name)
    assert parsed.candidates[0] == ("COSMOS", "ARM-1")
    assert parsed.rows_read == len(parsed.attributes) == 15 and parsed.rejects == []
    by_key = {(a.quantity, a.source, a.depth_from_m): a for a in parsed.attributes}
    clay = by_key[("clay fraction", "HWSD", 0.0)]
    assert (clay.value_num, clay.unit, clay.depth_to_m) == (23.0, "% weight", 0.3)
    assert clay.details["quantity_source_resolution"] == '30"'  # a quote is just a character
    cci = by_key[("land cover classification", "CCI_landcover_2010", None)]
    assert (cci.value_text, cci.description) == ("130", "Grassland")
    assert by_key[("climate classification", "koeppen_geiger_2007", None)].value_text == "Cfa"
    assert by_key[("organic carbon", "insitu", -99.9)].value_num == 0.59  # ISMN's unknown depth


def test_static_variables_with_wrong_columns_are_refused() -> None:
    name = "NET_NET_CST-01_static_variables.csv"
    with pytest.raises(InputError, match=r"missing column\(s\) depth_from\[m\]"):
        parse_static_variables(b"quantity_name;unit;value\nclay fraction;%;3\n", name=name)
    with pytest.raises(InputError, match="empty file"):
        parse_static_variables(b"\r\n", name=name)


def test_static_file_names_with_underscores_give_candidates_in_order() -> None:
    from etl.insitu.ismn_names import static_candidates

    assert static_candidates("PBO_H2O_PBO_H2O_CST_01_static_variables.csv")[0] == (
        "PBO_H2O",
        "CST_01",
    )


def test_csv_stations_reject_impossible_coordinates_and_keep_the_rest() -> None:
    parsed = parse_stations_csv(
        b"network,station,lon,lat,elevation_m,clay_pct,land_cover_code,land_cover\n"
        b'CMA,A1,114.5,37.1,76,20.5,10,"Cropland, rainfed"\n'
        b"CMA,A2,39.9,116.4,50,,,\n"  # lat/lon swapped
        b"CMA,A3,east,37,,,,\n"
        b"CMA,a1,114.0,37.0,,,,\n",  # same key as A1
        name="stations.csv",
    )
    assert [s.station.name for s in parsed.stations] == ["A1"]
    assert {r.line_no: r.reason for r in parsed.rejects} == {
        3: Reason.LAT_LON_OUT_OF_RANGE,
        4: Reason.NON_NUMERIC_VALUE,
        5: Reason.DUPLICATE_KEY,
    }
    assert "swapped" in parsed.rejects[0].detail
    quantities = {a.quantity: a for a in parsed.stations[0].attributes}
    assert quantities["clay fraction"].value_num == 20.5
    assert quantities["land cover classification"].description == "Cropland, rainfed"


def test_csv_with_unknown_or_missing_columns_is_refused() -> None:
    with pytest.raises(
        InputError, match=r"missing column\(s\) lat; unknown column\(s\) 'latitude'"
    ):
        parse_stations_csv(b"network,station,lon,latitude\nA,B,1,2\n", name="s.csv")


def test_csv_observation_times_need_a_zone_and_are_stored_in_utc() -> None:
    parsed = parse_observations_csv(
        b"network,station,variable,depth_from_m,depth_to_m,time,value,quality_flag\n"
        b"CMA,A1,sm,0,0.1,2024-05-01T08:00:00+08:00,0.23,G\n"
        b"CMA,A1,soil_moisture,0,0.1,2024-05-01 01:00Z,0.24,G\n"
        b"CMA,A1,sm,0,0.1,2024-05-01T02:00:00,0.25,G\n"  # no zone
        b"CMA,A1,sm,0,0.1,01/05/2024 03:00 +00:00,0.25,G\n"  # another date format
        b"CMA,A1,sm,0,0.1,2024-05-01T00:00:00Z,0.26,G\n",  # same instant as line 2
        name="obs.csv",
    )
    [(key, rows)] = parsed.blocks
    assert key.sensor.variable == "soil_moisture" and key.sensor.instrument == "unknown"
    assert rows.times.tolist() == [
        np.datetime64("2024-05-01T00:00", "us").item(),
        np.datetime64("2024-05-01T01:00", "us").item(),
    ]
    assert {r.line_no: r.reason for r in parsed.rejects} == {
        4: Reason.TIME_ZONE_MISSING,
        5: Reason.UNPARSEABLE_TIME,
        6: Reason.DUPLICATE_TIME,
    }


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2024-05-01T08:00:00+08:00", "2024-05-01 00:00:00+00"),
        ("2024-05-01T08:00+0800", "2024-05-01 00:00:00+00"),
        ("2024-05-01 08:00:00.5-02", "2024-05-01 10:00:00.500000+00"),
        ("2024-12-31T23:30:00 UTC", "2024-12-31 23:30:00+00"),
    ],
)
def test_iso_times_with_offsets_become_utc(text: str, utc: str) -> None:
    assert iso_time(text)[0] == utc
