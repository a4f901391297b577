"""Loading in situ files into PostGIS: the reference downloads, reloads, bad files, the schema."""

from __future__ import annotations

import re
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from etl.insitu import load
from etl.insitu.model import Labels, Rows
from service.db import Database
from service.ingest import FileSummary, exit_code, ingest_ismn

DOWNLOAD = "Data_seperate_files_header_20170810_20180809"
ARM1 = "COSMOS_COSMOS_ARM-1_sm_0.000000_0.190000_Cosmic-ray-Probe_20170810_20180809.stm"
NARBONNE = "SMOSMANIA_SMOSMANIA_Narbonne_sm_0.050000_0.050000_ThetaProbe-ML2X_20070101_20070131.stm"
TABLES = (
    "ingest_files",
    "ingest_rejects",
    "stations",
    "station_attributes",
    "station_cells",
    "sensors",
    "observations",
)


@pytest.fixture
def clean(admin: Engine) -> Iterator[None]:
    """Empty in situ tables before each test (partitions stay)."""
    with admin.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join('smapds.' + t for t in TABLES)} CASCADE"))
    yield


@pytest.fixture(scope="module")
def ismn(reference_data: Path) -> Path:
    return reference_data / "ismn"


def _data_lines(path: Path) -> list[list[str]]:
    lines = [ln.split() for ln in re.split(r"\r\n|\r|\n", path.read_bytes().decode()) if ln.strip()]
    return lines if re.match(r"\d{4}/", lines[0][0]) else lines[1:]


def _snapshot(engine: Engine) -> dict[str, str]:
    """md5 of the full content of every table in schema smapds (partitions included)."""
    with engine.connect() as conn:
        names = conn.execute(
            sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'smapds' ORDER BY 1")
        ).scalars()
        return {
            name: conn.execute(
                sa.text(  # table names from pg_tables, not from input
                    f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' "  # noqa: S608
                    f"ORDER BY t::text)), '') FROM smapds.{name} t"
                )
            ).scalar_one()
            for name in names
        }


def _by_name(summaries: list[FileSummary]) -> dict[str, FileSummary]:
    return {Path(s.path.split("!")[-1]).name: s for s in summaries}


def test_the_reference_downloads_load_every_row_and_every_g_row(
    writer: Engine, admin: Engine, ismn: Path, clean: None
) -> None:
    summaries = ingest_ismn(writer, [ismn], domain="demo")
    assert exit_code(summaries) == 0
    assert {s.status for s in summaries} == {"OK"}
    assert len(summaries) == 10  # 4 files in the folder, 4 in the zip, 2 Narbonne formats
    files = {p.name: p for p in ismn.rglob("*.stm")}
    for s in summaries:
        name = Path(s.path.split("!")[-1]).name
        if name.endswith(".stm"):
            assert s.rows_read == s.rows_loaded == len(_data_lines(files[name]))
    with admin.connect() as conn:
        counts = dict(
            conn.execute(
                sa.text("""
            SELECT st.station, count(*) FROM smapds.observations o
              JOIN smapds.sensors se USING (sensor_id) JOIN smapds.stations st USING (station_id)
             GROUP BY st.station""")
            ).all()
        )
        good = dict(
            conn.execute(
                sa.text("""
            SELECT st.station, count(*) FROM smapds.observations o
              JOIN smapds.sensors se USING (sensor_id) JOIN smapds.stations st USING (station_id)
             WHERE o.quality_flag = 'G' GROUP BY st.station""")
            ).all()
        )
        combined = conn.execute(
            sa.text("SELECT count(*) FROM smapds.observations WHERE quality_flag = 'D03,D05'")
        ).scalar_one()
        attributes = conn.execute(
            sa.text("SELECT count(*) FROM smapds.station_attributes")
        ).scalar()
    for station, name in (("ARM-1", ARM1), ("Barrow-ARM", ARM1.replace("ARM-1", "Barrow-ARM"))):
        lines = _data_lines(
            files[name.replace("0.190000", "0.210000") if "Barrow" in name else name]
        )
        assert counts[station] == len(lines)
        assert good[station] == sum(line[3] == "G" for line in lines)
    assert counts["Narbonne"] == 741 and "Narbonne" not in good  # all U / D05
    assert combined == 17 + 211
    assert attributes == 30


def test_loading_everything_again_leaves_every_table_unchanged(
    writer: Engine, admin: Engine, ismn: Path, clean: None, tmp_path: Path
) -> None:
    ingest_ismn(writer, [ismn], domain="demo")
    before = _snapshot(admin)
    again = ingest_ismn(writer, [ismn], domain="demo")
    assert {s.status for s in again} == {"SKIPPED"} and exit_code(again) == 0
    assert _snapshot(admin) == before
    # The same content under other paths: new ingest_files rows, every other table unchanged.
    # (Not the Narbonne pair: its two formats disagree on one provider flag, so the file loaded
    # last decides that row.)
    shutil.copytree(ismn / DOWNLOAD, tmp_path / "copy" / DOWNLOAD)
    shutil.copytree(ismn / "zip_archives", tmp_path / "copy" / "zip_archives")
    copies = ingest_ismn(writer, [tmp_path / "copy"], domain="demo", workers=2)
    assert {s.status for s in copies} == {"OK"}
    after = _snapshot(admin)
    changed = {t for t in after if after[t] != before.get(t)}
    assert changed == {"ingest_files"}


def test_the_same_station_month_from_both_formats_gives_the_same_values(
    writer: Engine, admin: Engine, ismn: Path, clean: None
) -> None:
    query = sa.text(
        "SELECT time, value, quality_flag, provider_flag FROM smapds.observations ORDER BY time"
    )
    ingest_ismn(writer, [ismn / "format_header_values"], domain="demo")
    with admin.connect() as conn:
        from_header_values = conn.execute(query).all()
    [summary] = ingest_ismn(writer, [ismn / "format_ceop_sep"], domain="demo")
    assert (summary.format, summary.status, summary.rows_loaded) == ("ismn_ceop", "OK", 741)
    with admin.connect() as conn:
        from_both = conn.execute(query).all()
        sensors = conn.execute(sa.text("SELECT count(*) FROM smapds.sensors")).scalar()
    assert sensors == 1 and len(from_both) == len(from_header_values) == 741
    assert [r[:3] for r in from_both] == [r[:3] for r in from_header_values]
    # header+values has no provider flag on one line; CEOP gives M there
    differ = [(a, b) for a, b in zip(from_header_values, from_both, strict=True) if a != b]
    assert [(a.provider_flag, b.provider_flag) for a, b in differ] == [(None, "M")]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())
    return path


def test_bad_files_get_clear_errors_and_nothing_of_the_good_files_is_lost(
    writer: Engine, admin: Engine, ismn: Path, clean: None, tmp_path: Path
) -> None:
    good = next(ismn.rglob(ARM1)).read_bytes().decode()
    lines = re.split(r"\r\n|\r|\n", good)
    lines = [ln for ln in lines if ln.strip()]
    header, values = lines[0], lines[1:]

    def name(station: str) -> str:
        return ARM1.replace("ARM-1", station)

    def with_station(station: str) -> str:
        return header.replace("ARM-1", station.ljust(5))

    root = tmp_path / "download" / "COSMOS"
    _write(root / "GOOD" / name("GOOD"), "\r\n".join([with_station("GOOD"), *values]) + "\r\n")
    # truncated in the middle of a line (a cut download)
    cut = "\r\n".join([with_station("CUT"), *values[:100]]) + "\r\n" + values[100][:15]
    _write(root / "CUT" / name("CUT"), cut)
    # wrong columns: CEOP-shaped rows under a header+values header
    ceop = next(ismn.rglob("format_ceop_sep/*/*.stm")).read_bytes().decode().split("\r")[:50]
    _write(root / "WIDE" / name("WIDE"), "\r\n".join([with_station("WIDE"), *ceop]))
    # mixed date formats: every other line written as DD.MM.YYYY
    mixed = [
        v if k % 2 else re.sub(r"^(\d{4})/(\d\d)/(\d\d)", r"\3.\2.\1", v)
        for k, v in enumerate(values[:200])
    ]
    _write(root / "MIXED" / name("MIXED"), "\r\n".join([with_station("MIXED"), *mixed]))
    # latitude and longitude swapped, so latitude is out of range
    swapped = header.replace("ARM-1", "SWAP ").replace(
        "36.60540   -97.48780", "-97.48780    36.60540"
    )
    _write(root / "SWAP" / name("SWAP"), "\r\n".join([swapped, *values[:10]]))
    # a zip with a zip-slip member next to a good one
    with zipfile.ZipFile(tmp_path / "download" / "slip.zip", "w") as zf:
        zf.writestr(f"COSMOS/ZIPOK/{name('ZIPOK')}", "\r\n".join([with_station("ZIPOK"), *values]))
        zf.writestr(f"../../{name('EVIL')}", "\r\n".join([with_station("EVIL"), *values]))

    summaries = _by_name(ingest_ismn(writer, [tmp_path / "download"], domain="demo"))
    assert exit_code(list(summaries.values())) == 1

    ok = summaries[name("GOOD")]
    assert (ok.status, ok.rows_loaded, ok.rows_rejected) == ("OK", len(values), 0)
    assert summaries[name("ZIPOK")].status == "OK"

    cut_s = summaries[name("CUT")]
    assert (cut_s.status, cut_s.rows_loaded, cut_s.rows_rejected) == ("DEGRADED", 100, 1)
    assert "wrong_column_count 1 (first: line 102" in (cut_s.error or "")

    wide = summaries[name("WIDE")]
    assert (wide.status, wide.rows_loaded, wide.rows_rejected) == ("QUARANTINED", 0, 50)
    assert "expected 4 or 5 fields" in (wide.error or "")

    mixed_s = summaries[name("MIXED")]
    assert (mixed_s.status, mixed_s.rows_loaded, mixed_s.rows_rejected) == ("DEGRADED", 100, 100)
    assert "unparseable_time 100 (first: line 2: date '10.08.2017' is not YYYY/MM/DD)" in (
        mixed_s.error or ""
    )

    swap = summaries[name("SWAP")]
    assert swap.status == "QUARANTINED"
    assert "latitude -97.4878 / longitude 36.6054 out of range" in (swap.error or "")

    evil = summaries[name("EVIL")]
    assert evil.status == "QUARANTINED" and "escapes the archive" in (evil.error or "")
    assert not (tmp_path / name("EVIL")).exists()

    with admin.connect() as conn:
        loaded = dict(
            conn.execute(
                sa.text("""
            SELECT st.station, count(*) FROM smapds.observations o
              JOIN smapds.sensors USING (sensor_id) JOIN smapds.stations st USING (station_id)
             GROUP BY st.station""")
            ).all()
        )
        recorded = dict(
            conn.execute(
                sa.text(
                    "SELECT regexp_replace(path || member, '.*/', ''), status "
                    "FROM smapds.ingest_files"
                )
            ).all()
        )
        rejects = conn.execute(
            sa.text("""
            SELECT r.line_no, r.reason, r.line FROM smapds.ingest_rejects r
              JOIN smapds.ingest_files f USING (file_id)
             WHERE f.path LIKE '%MIXED%' ORDER BY r.line_no LIMIT 2""")
        ).all()
    assert loaded == {"GOOD": len(values), "ZIPOK": len(values), "CUT": 100, "MIXED": 100}
    assert recorded == {n: s.status for n, s in summaries.items()}
    assert [(r.line_no, r.reason) for r in rejects] == [
        (2, "unparseable_time"),
        (4, "unparseable_time"),
    ]
    assert rejects[0].line.startswith("10.08.2017 00:00")

    # Again: the parsed files are skipped, the refused ones refused again, and no table changes.
    before = _snapshot(admin)
    again = _by_name(ingest_ismn(writer, [tmp_path / "download"], domain="demo"))
    assert {n: s.status for n, s in again.items()} == {
        n: "QUARANTINED" if n == name("EVIL") else "SKIPPED" for n in summaries
    }
    assert _snapshot(admin) == before


def test_a_changed_file_updates_its_values_and_replaces_its_rejects(
    writer: Engine, admin: Engine, ismn: Path, clean: None, tmp_path: Path
) -> None:
    source = (ismn / "format_header_values/SMOSMANIA" / NARBONNE).read_bytes().decode()
    path = tmp_path / NARBONNE
    path.write_text(source.replace("2007/01/01 03:00   0.2140", "2007/01/01 03:00   oops"))
    [first] = ingest_ismn(writer, [path], domain="demo")
    assert (first.status, first.rows_rejected) == ("DEGRADED", 1)
    path.write_text(source.replace("2007/01/01 05:00   0.2140", "2007/01/01 05:00   0.3000"))
    [second] = ingest_ismn(writer, [path], domain="demo")
    assert (second.status, second.rows_loaded, second.rows_rejected) == ("OK", 741, 0)
    with admin.connect() as conn:
        values = dict(
            conn.execute(
                sa.text(
                    "SELECT to_char(time, 'HH24'), value FROM smapds.observations "
                    "WHERE time < '2007-01-01 06:00Z'"
                )
            ).all()
        )
        files = conn.execute(sa.text("SELECT count(*) FROM smapds.ingest_files")).scalar()
        rejects = conn.execute(sa.text("SELECT count(*) FROM smapds.ingest_rejects")).scalar()
    assert values["03"] == 0.214 and values["05"] == 0.3
    assert (files, rejects) == (1, 0)


def test_partitions_are_monthly_owned_by_the_owner_commented_and_without_default(
    writer: Engine, admin: Engine, ismn: Path, clean: None
) -> None:
    ingest_ismn(writer, [ismn / DOWNLOAD], domain="demo")
    with admin.connect() as conn:
        parts = conn.execute(
            sa.text("""
            SELECT c.relname, pg_get_userbyid(c.relowner) AS owner,
                   obj_description(c.oid, 'pg_class') AS comment,
                   pg_get_expr(c.relpartbound, c.oid) AS bound
              FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'smapds.observations'::regclass ORDER BY c.relname""")
        ).all()
        default = conn.execute(
            sa.text(
                "SELECT partdefid FROM pg_partitioned_table "
                "WHERE partrelid = 'smapds.observations'::regclass"
            )
        ).scalar()
    months = [f"observations_2017_{m:02d}" for m in range(8, 13)] + [
        f"observations_2018_{m:02d}" for m in range(1, 9)
    ]
    assert set(months) <= {p.relname for p in parts}
    assert {p.owner for p in parts} == {"smapds_owner"}
    assert all(p.comment and p.relname[13:20].replace("_", "-") in p.comment for p in parts)
    bounds = {p.relname: p.bound for p in parts}
    assert bounds["observations_2017_08"] == (
        "FOR VALUES FROM ('2017-08-01 00:00:00+00') TO ('2017-09-01 00:00:00+00')"
    )
    assert default == 0


def test_the_writer_creates_partitions_only_through_the_function(writer: Engine) -> None:
    with writer.begin() as conn:
        created = conn.execute(
            sa.text(
                "SELECT smapds.ensure_observation_partitions("
                "'1999-12-31 23:00+00', '2000-01-01 01:00+00')"
            )
        ).scalar()
        again = conn.execute(
            sa.text(
                "SELECT smapds.ensure_observation_partitions("
                "'1999-12-15 00:00+00', '2000-01-20 00:00+00')"
            )
        ).scalar()
    assert (created, again) == (2, 0)
    with pytest.raises(DBAPIError, match="permission denied"), writer.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE smapds.observations_1999_01 PARTITION OF smapds.observations "
                "FOR VALUES FROM ('1999-01-01') TO ('1999-02-01')"
            )
        )
    with pytest.raises(DBAPIError, match="outside 1900-2100"), writer.begin() as conn:
        conn.execute(sa.text("SELECT smapds.ensure_observation_partitions('1850-01-01Z', now())"))
    with pytest.raises(DBAPIError, match="no partition"), writer.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO smapds.observations VALUES (1, '1890-01-01Z', 0.1, 'G', NULL, 1)")
        )


def test_the_reader_sees_stations_and_views_but_writes_nothing(
    database: Database, writer: Engine, ismn: Path, clean: None
) -> None:
    ingest_ismn(writer, [ismn / "format_ceop_sep"], domain="demo")
    reader = database.engine("reader")
    try:
        with reader.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM smapds.observations")).scalar() == 741
            near = conn.execute(
                sa.text("SELECT * FROM smapds.stations_within(2.95, 43.15, 5)")
            ).all()
            assert [r.station for r in near] == ["Narbonne"]
        with pytest.raises(DBAPIError, match="permission denied"), reader.begin() as conn:
            conn.execute(sa.text("DELETE FROM smapds.stations"))
        with pytest.raises(DBAPIError, match="permission denied"), reader.begin() as conn:
            conn.execute(sa.text("SELECT smapds.ensure_observation_partitions(now(), now())"))
    finally:
        reader.dispose()


def test_a_static_file_before_its_station_fails_and_loads_on_the_next_run(
    writer: Engine, admin: Engine, ismn: Path, clean: None
) -> None:
    static = next(ismn.rglob("COSMOS_COSMOS_ARM-1_static_variables.csv"))
    [first] = ingest_ismn(writer, [static], domain="demo")
    assert first.status == "FAILED" and "no station COSMOS/ARM-1" in (first.error or "")
    assert exit_code([first]) == 2
    summaries = _by_name(ingest_ismn(writer, [static.parent], domain="demo"))
    assert summaries[static.name].status == "OK"
    assert summaries[ARM1].status == "OK"


def test_a_missing_path_fails_without_stopping_the_others(
    writer: Engine, ismn: Path, clean: None, tmp_path: Path
) -> None:
    summaries = ingest_ismn(writer, [tmp_path / "nope", ismn / "format_ceop_sep"], domain="demo")
    assert [s.status for s in summaries] == ["FAILED", "OK"]
    assert "no such file" in (summaries[0].error or "")


def test_rows_out_of_time_order_across_months_land_in_their_partitions(
    writer: Engine, admin: Engine, clean: None, tmp_path: Path
) -> None:
    header = "NET        NET             CST_01             45.00000    10.00000  100.00    0.05    0.05 ThetaProbe-ML2X"
    lines = [
        "2021/03/01 00:00   0.3000 G M",
        "2021/01/31 23:00   0.1000 G M",
        "2021/02/15 12:00   0.2000 D03,D10 M",
        "2021/01/01 00:00   0.0500 G",
    ]
    path = tmp_path / "NET_NET_CST-01_sm_0.050000_0.050000_ThetaProbe-ML2X_20210101_20210331.stm"
    path.write_text("\r".join([header, *lines]) + "\r")
    [summary] = ingest_ismn(writer, [path], domain="demo")
    assert (summary.status, summary.rows_loaded) == ("OK", 4)
    with admin.connect() as conn:
        where = conn.execute(
            sa.text(
                "SELECT tableoid::regclass::text AS part, value, quality_flag, provider_flag "
                "FROM smapds.observations ORDER BY time"
            )
        ).all()
    assert [tuple(r) for r in where] == [
        ("smapds.observations_2021_01", 0.05, "G", None),
        ("smapds.observations_2021_01", 0.1, "G", "M"),
        ("smapds.observations_2021_02", 0.2, "D03,D10", "M"),
        ("smapds.observations_2021_03", 0.3, "G", "M"),
    ]


def test_a_database_refusal_fails_each_file_with_its_reason_and_exit_code_2(
    database: Database, ismn: Path, clean: None
) -> None:
    reader = database.engine("reader")  # may not write: every write is refused
    try:
        summaries = ingest_ismn(reader, [ismn / "format_ceop_sep"], domain="demo")
    finally:
        reader.dispose()
    [summary] = summaries
    assert summary.status == "FAILED" and exit_code(summaries) == 2
    assert "permission denied" in (summary.error or "")


def test_a_file_the_database_refuses_fails_alone_and_the_rest_of_its_group_loads(
    writer: Engine, admin: Engine, clean: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Small files are written a group per transaction; a refusal of one file by the database (a
    constraint a DBA added) rolls the group back and its files are written again one by one."""
    folder = tmp_path / "NET"
    for k in (1, 2, 3):
        header = (
            f"NET        NET             CST_0{k}             45.00000    1{k}.00000  100.00"
            "    0.05    0.05 ThetaProbe-ML2X"
        )
        lines = [f"2021/0{m}/0{d} 06:00   0.{k}{m}{d}0 G M" for m in (1, 2) for d in (1, 2)]
        _write(
            folder / f"CST_0{k}" / f"NET_NET_CST-0{k}_sm_0.050000_0.050000_ThetaProbe-ML2X_"
            "20210101_20210202.stm",
            "\r\n".join([header, *lines]) + "\r\n",
        )
    with admin.begin() as conn:
        conn.execute(
            sa.text(
                "ALTER TABLE smapds.stations ADD CONSTRAINT test_refused "
                "CHECK (station <> 'CST_02')"
            )
        )
    try:
        summaries = ingest_ismn(writer, [folder], domain="demo")
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text("ALTER TABLE smapds.stations DROP CONSTRAINT test_refused"))
    assert [(s.path.split("_sm_")[0][-6:], s.status, s.rows_loaded) for s in summaries] == [
        ("CST-01", "OK", 4),
        ("CST-02", "FAILED", 0),
        ("CST-03", "OK", 4),
    ]
    assert "test_refused" in (summaries[1].error or "") and exit_code(summaries) == 2
    assert any(r.msg == "group of files failed, loading them one by one" for r in caplog.records)
    with admin.connect() as conn:
        stored = conn.execute(
            sa.text(
                "SELECT s.station, count(*) FROM smapds.observations o "
                "JOIN smapds.sensors USING (sensor_id) JOIN smapds.stations s USING (station_id) "
                "GROUP BY 1 ORDER BY 1"
            )
        ).all()
    assert [tuple(r) for r in stored] == [("CST_01", 4), ("CST_03", 4)]
    again = ingest_ismn(writer, [folder], domain="demo")
    assert [s.status for s in again] == ["SKIPPED", "OK", "SKIPPED"]


def test_two_files_of_one_sensor_in_one_group_give_what_loading_them_apart_gives(
    writer: Engine, admin: Engine, clean: None, tmp_path: Path
) -> None:
    """The second file's rows overlap the first's, whose rows are held for the group's COPY: they
    are written first, so the second file updates the times both have (the later file wins)."""
    header = (
        "NET        NET             CST_01             45.00000    10.00000  100.00"
        "    0.05    0.05 ThetaProbe-ML2X"
    )
    name = "NET_NET_CST-01_sm_0.050000_0.050000_ThetaProbe-ML2X_{}.stm"
    first = [f"2021/01/0{d} 06:00   0.1000 G M" for d in (1, 2, 3, 4)]
    second = [f"2021/{m}/0{d} 06:00   0.2000 G" for m, d in (("01", 3), ("01", 4), ("02", 1))]
    _write(tmp_path / "both" / name.format("20210101_20210104"), "\n".join([header, *first]))
    _write(tmp_path / "both" / name.format("20210103_20210201"), "\n".join([header, *second]))
    query = sa.text(
        "SELECT to_char(time, 'MM-DD'), value, provider_flag FROM smapds.observations ORDER BY time"
    )
    together = ingest_ismn(writer, [tmp_path / "both"], domain="demo")
    with admin.connect() as conn:
        rows = [tuple(r) for r in conn.execute(query)]
    assert [(s.status, s.rows_loaded) for s in together] == [("OK", 4), ("OK", 3)]
    assert rows == [
        ("01-01", 0.1, "M"),
        ("01-02", 0.1, "M"),
        ("01-03", 0.2, None),
        ("01-04", 0.2, None),
        ("02-01", 0.2, None),
    ]
    with admin.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join('smapds.' + t for t in TABLES)} CASCADE"))
    for path in sorted((tmp_path / "both").iterdir()):
        ingest_ismn(writer, [path], domain="demo")
    with admin.connect() as conn:
        assert [tuple(r) for r in conn.execute(query)] == rows


def test_new_rows_held_for_a_group_are_copied_once_they_pass_the_bound(
    admin: Engine, clean: None
) -> None:
    """Memory stays bounded however big a file is: past ``flush_rows`` the held rows are copied
    (in the caller's transaction) and forgotten."""
    times = np.arange("2021-01-31T22", "2021-02-01T03", dtype="datetime64[h]").astype(
        "datetime64[us]"
    )
    rows = Rows(
        times=times,
        values=np.linspace(0.1, 0.5, len(times)),
        quality_flags=Labels.of(["G"] * len(times)),
        provider_flags=Labels.of([""] * len(times)),
        line_nos=np.arange(1, len(times) + 1),
    )
    count = sa.text("SELECT count(*) FROM smapds.observations")
    with admin.begin() as conn:
        load.ensure_partitions(conn, first=times[0], last=times[-1])
        held = load.NewRows(conn, flush_rows=8)

        def add(sensor_id: int) -> None:
            records = load.copy_records(rows, sensor_id=sensor_id, file_id=1, encoding="utf-8")
            held.add(sensor_id, records, load.month_slices(rows.times))

        add(1)  # 5 rows over two months: held
        assert 1 in held and conn.execute(count).scalar_one() == 0
        add(2)  # 10 rows: past the bound, copied
        assert 1 not in held and 2 not in held and conn.execute(count).scalar_one() == 10
        held.flush()  # nothing held: no COPY
        assert conn.execute(count).scalar_one() == 10
