"""The generic CSV format end to end, the surface soil moisture rule and the analysts' queries."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.grid import get_domain
from etl.insitu.surface import DEFAULT_SURFACE_MAX_DEPTH_M, daily_surface_sm, surface_sensors
from service.ingest import exit_code, ingest_csv

DOMAIN = get_domain("demo")
WEST, SOUTH, EAST, NORTH = DOMAIN.bbox_lonlat()
S1 = (round(WEST + 1.2345, 5), round(SOUTH + 1.5432, 5))
S2 = (round(WEST + 1.2445, 5), round(SOUTH + 1.5532, 5))  # about 1.4 km from S1


def _stations_csv(s2: tuple[float, float] = S2) -> str:
    return (
        "network,station,lon,lat,elevation_m,clay_pct,land_cover_code,land_cover,climate_class\n"
        f'SYN,S-01,{S1[0]},{S1[1]},50,20.5,10,"Cropland, rainfed",Dwa\n'
        f"SYN,S-02,{s2[0]},{s2[1]},60,,,,\n"
        "SYN,FAR,10.0,45.0,100,,,,\n"
    )


def _observations_csv() -> str:
    header = "network,station,variable,depth_from_m,depth_to_m,instrument,time,value,quality_flag\n"
    rows = []
    for h in range(48):
        t = (dt.datetime(2024, 5, 1) + dt.timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ")
        flag_a = "D03" if h == 5 else "G"
        value_a = "0.9000" if h == 5 else "0.2000"
        rows += [
            f"SYN,S-01,soil_moisture,0.05,0.05,A,{t},{value_a},{flag_a}",
            f"SYN,S_01,soil_moisture,0.05,0.05,B,{t},0.3000,G",  # S_01: the same station
            f"SYN,S-01,soil_moisture,0.20,0.20,C,{t},0.4000,G",
            f"SYN,S-01,soil_temperature,0.00,0.05,T,{t},15.0,G",
            f"SYN,S-02,sm,0.10,0.10,D,{t},0.1000,G",
        ]
    rows += [
        "SYN,FAR,soil_moisture,0.0,0.05,E,2024-05-03T08:00:00+08:00,0.3300,G",
        "SYN,NOPE,soil_moisture,0.0,0.05,E,2024-05-03T00:00:00Z,0.3300,G",
        "SYN,FAR,soil_moisture,0.0,0.05,E,2024-05-03T01:00:00,0.3300,G",
    ]
    return header + "\n".join(rows) + "\n"


@pytest.fixture(scope="module")
def loaded(writer: Engine, tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    folder = tmp_path_factory.mktemp("csv")
    stations, observations = folder / "stations.csv", folder / "observations.csv"
    stations.write_text(_stations_csv())
    observations.write_text(_observations_csv())
    summaries = ingest_csv(writer, stations=stations, observations=observations, domain="demo")
    assert [(s.format, s.status) for s in summaries] == [
        ("csv_stations", "OK"),
        ("csv_observations", "DEGRADED"),
    ]
    assert summaries[1].rows_rejected == 2 and summaries[1].rows_loaded == 48 * 5 + 1
    assert "time_zone_missing 1" in (summaries[1].error or "")
    assert "unknown_station 1" in (summaries[1].error or "")
    assert exit_code(summaries) == 1
    with writer.connect() as conn:
        return dict(conn.execute(sa.text("SELECT station, station_id FROM smapds.stations")).all())


def test_csv_stations_get_their_grid_cells_in_the_domain(
    writer: Engine, loaded: dict[str, int]
) -> None:
    with writer.connect() as conn:
        cells = {
            r.station_id: r
            for r in conn.execute(
                sa.text("SELECT * FROM smapds.station_cells WHERE domain = 'demo'")
            )
        }
    for name, (lon, lat) in (("S-01", S1), ("S-02", S2)):
        c = cells[loaded[name]]
        for res in (1, 9, 36):
            row, col = DOMAIN.rowcol(res, lon, lat)
            assert (getattr(c, f"row_{res}km"), getattr(c, f"col_{res}km")) == (row, col)
    assert cells[loaded["FAR"]].row_1km is None  # outside the domain: a row of NULLs


def test_csv_attributes_and_utc_times_are_stored(writer: Engine, loaded: dict[str, int]) -> None:
    with writer.connect() as conn:
        attrs = dict(
            conn.execute(
                sa.text(
                    "SELECT quantity, value_text FROM smapds.station_attributes "
                    "WHERE station_id = :s AND source = 'csv'"
                ),
                {"s": loaded["S-01"]},
            ).all()
        )
        far = conn.execute(
            sa.text(
                "SELECT o.time FROM smapds.observations o JOIN smapds.sensors s USING (sensor_id) "
                "WHERE s.station_id = :s"
            ),
            {"s": loaded["FAR"]},
        ).scalar_one()
    assert attrs == {
        "clay fraction": "20.5",
        "land cover classification": "10",
        "climate classification": "Dwa",
    }
    assert far == dt.datetime(2024, 5, 3, 0, 0, tzinfo=dt.UTC)


def test_the_surface_sensors_are_the_shallowest_layer_within_the_depth_limit(
    writer: Engine, loaded: dict[str, int]
) -> None:
    with writer.connect() as conn:
        default = surface_sensors(conn, max_depth_from_m=DEFAULT_SURFACE_MAX_DEPTH_M)
        deeper = surface_sensors(conn, max_depth_from_m=0.10)
        shallow = surface_sensors(conn, max_depth_from_m=0.01)
        view = conn.execute(sa.text("SELECT count(*) FROM smapds.surface_sensors")).scalar()
    by_station = {s.station_id: s for s in default}
    s1 = [s for s in default if s.station_id == loaded["S-01"]]
    assert sorted(s.instrument for s in s1) == ["A", "B"]  # replicates at 0.05 m, not C at 0.20
    assert {s.replicates for s in s1} == {2}
    assert loaded["S-02"] not in by_station  # only a 0.10 m sensor
    assert by_station[loaded["FAR"]].instrument == "E"
    assert view == len(default)
    assert {s.instrument for s in deeper if s.station_id == loaded["S-02"]} == {"D"}
    assert [s.instrument for s in shallow] == ["E"]


def test_daily_means_use_good_rows_of_the_surface_sensors_only(
    writer: Engine, loaded: dict[str, int]
) -> None:
    with writer.connect() as conn:
        days = daily_surface_sm(
            conn,
            station_id=loaded["S-01"],
            start=dt.date(2024, 5, 1),
            end=dt.date(2024, 5, 31),
            max_depth_from_m=0.05,
        )
    assert [d.day for d in days] == [dt.date(2024, 5, 1), dt.date(2024, 5, 2)]
    first = days[0]
    assert first.soil_moisture == pytest.approx((0.2 + 0.3) / 2)  # the D03 spike is left out
    assert (first.n_obs, first.n_sensors) == (23 + 24, 2)
    with writer.connect() as conn:
        conn.execute(sa.text("SET LOCAL smapds.surface_max_depth_m = '0.10'"))
        s2 = conn.execute(
            sa.text(
                "SELECT day, soil_moisture, n_obs FROM smapds.station_daily_surface_sm "
                "WHERE station_id = :s ORDER BY day"
            ),
            {"s": loaded["S-02"]},
        ).all()
    assert [(pytest.approx(r.soil_moisture), r.n_obs) for r in s2] == [(0.1, 24), (0.1, 24)]


def test_stations_within_a_radius_or_a_polygon_come_with_their_latest_observation(
    writer: Engine, loaded: dict[str, int]
) -> None:
    with writer.connect() as conn:
        near = conn.execute(
            sa.text("SELECT * FROM smapds.stations_within(:lon, :lat, 1.0)"),
            {"lon": S1[0], "lat": S1[1]},
        ).all()
        wider = conn.execute(
            sa.text("SELECT station, distance_km FROM smapds.stations_within(:lon, :lat, 3.0)"),
            {"lon": S1[0], "lat": S1[1]},
        ).all()
        box = conn.execute(
            sa.text(
                "SELECT station, latest_time, latest_value FROM smapds.stations_in("
                "ST_MakeEnvelope(:w, :s, :e, :n, 4326))"
            ),
            {"w": WEST, "s": SOUTH, "e": EAST, "n": NORTH},
        ).all()
    assert [(r.station, r.distance_km) for r in near] == [("S-01", 0.0)]
    assert near[0].latest_time == dt.datetime(2024, 5, 2, 23, tzinfo=dt.UTC)
    assert near[0].latest_value == 0.2 and near[0].latest_quality_flag == "G"
    assert [r.station for r in wider] == ["S-01", "S-02"]
    assert 1.0 < wider[1].distance_km < 2.0
    assert [(r.station, r.latest_value) for r in box] == [("S-01", 0.2), ("S-02", None)]


def test_a_corrected_stations_table_moves_a_station_and_its_cells(
    writer: Engine, loaded: dict[str, int], tmp_path: Path
) -> None:
    moved = (round(S2[0] + 0.5, 5), round(S2[1] + 0.5, 5))
    stations = tmp_path / "stations.csv"
    stations.write_text(_stations_csv(s2=moved))
    [summary] = ingest_csv(writer, stations=stations, observations=None, domain="demo")
    assert summary.status == "OK"
    with writer.connect() as conn:
        where = conn.execute(
            sa.text(
                "SELECT ST_X(geom), ST_Y(geom), c.row_1km, c.col_1km FROM smapds.stations s "
                "JOIN smapds.station_cells c USING (station_id) WHERE station_id = :s"
            ),
            {"s": loaded["S-02"]},
        ).one()
        ids = dict(conn.execute(sa.text("SELECT station, station_id FROM smapds.stations")).all())
    assert (where[0], where[1]) == moved
    assert (where[2], where[3]) == tuple(int(v) for v in DOMAIN.rowcol(1, *moved))
    assert ids == loaded  # same stations, nothing added


def test_flags_with_tabs_quotes_and_backslashes_are_stored_as_given(
    writer: Engine, loaded: dict[str, int], tmp_path: Path
) -> None:
    observations = tmp_path / "flags.csv"
    observations.write_text(
        "network,station,variable,depth_from_m,depth_to_m,time,value,quality_flag,provider_flag\n"
        'SYN,S-01,soil_moisture,0.3,0.3,2024-06-01T00:00Z,0.1,"D03,D10","a\tb\\\\c"\n'
        'SYN,S-01,soil_moisture,0.3,0.3,2024-06-01T01:00Z,0.1,G\\N,""\n'
    )
    [summary] = ingest_csv(writer, stations=None, observations=observations, domain="demo")
    assert (summary.status, summary.rows_loaded) == ("OK", 2)
    with writer.connect() as conn:
        flags = conn.execute(
            sa.text(
                "SELECT quality_flag, provider_flag FROM smapds.observations o "
                "JOIN smapds.sensors s USING (sensor_id) WHERE s.depth_from_m = 0.3 ORDER BY time"
            )
        ).all()
    assert [tuple(f) for f in flags] == [("D03,D10", "a\tb\\\\c"), ("G\\N", None)]
