"""Collocation of stations with products on the synthetic world, checked against the files
themselves: the station's pixel read from the COG by its coordinates, the 36 km cell read from the
SMAP granule, and the in situ mean recomputed from the ISMN observations in Python."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
import sqlalchemy as sa
from produced_world import make_produced
from pyproj import Transformer
from sqlalchemy.engine import Engine

from etl.grid import ease2
from etl.readers import read_smap_l3
from models.metrics import pair_stats
from service.collocate import OverpassWindow, collocate_day, collocate_ingested, product_days
from service.ingest import ingest_ismn
from service.product import produce_day
from service.settings import Settings
from service.stacks import StackFactory
from service.validate import ValidationConfig, refresh

DAYS = [date(2024, 4, 1) + timedelta(days=i) for i in range(8)]
PRODUCED = DAYS[-3:]
AM = OverpassWindow(overpass_hour=6.0, half_window_hours=3.0, max_depth_from_m=0.05)


@pytest.fixture(scope="module")
def world(
    demo_world: Path, writer: Engine, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, StackFactory]:
    made = make_produced(demo_world, writer, tmp_path_factory.mktemp("data"), trees=20)
    settings, factory, model, data = made.settings, made.factory, made.model, made.data_dir
    for d in PRODUCED:
        assert produce_day(
            writer, factory, model, data_dir=data, day=d, settings_hash="0" * 64
        ).path
    folder = next((demo_world / "ismn").glob("Data_seperate_files_*[0-9]"))
    summaries = ingest_ismn(writer, [folder], domain="demo", workers=1)
    assert summaries and all(s.status == "OK" for s in summaries)
    return settings, factory


def _collocations(engine: Engine, day: date) -> list[sa.Row[tuple[object, ...]]]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.text("""
                SELECT c.*, ST_X(s.geom) AS lon, ST_Y(s.geom) AS lat
                  FROM smapds.collocations c JOIN smapds.stations s USING (station_id)
                 WHERE product_date = :d ORDER BY station_id
            """),
                {"d": day},
            )
        )


def test_every_station_gets_a_row_matching_the_files(
    world: tuple[Settings, StackFactory], writer: Engine
) -> None:
    settings, factory = world
    day = PRODUCED[-1]
    result = collocate_day(writer, factory, data_dir=settings.data_dir, day=day, window=AM)
    rows = _collocations(writer, day)
    with writer.connect() as conn:
        in_domain = conn.execute(
            sa.text("SELECT count(*) FROM smapds.station_cells WHERE row_1km IS NOT NULL")
        ).scalar()
        cog = (
            settings.data_dir
            / conn.execute(
                sa.text("SELECT path FROM smapds.products WHERE product_date = :d"), {"d": day}
            ).scalar_one()
        )
    assert in_domain and result.stations == len(rows) == in_domain
    assert result.with_insitu >= 0.8 * len(rows)

    # the product at each station, read by coordinates (not through station_cells)
    to_ease = Transformer.from_crs("EPSG:4326", "EPSG:6933", always_xy=True)
    granule = next((settings.data_dir / "archive").rglob(f"SMAP_L3_SM_P_{day:%Y%m%d}_*.h5"))
    smap = read_smap_l3(granule)
    with rasterio.open(cog) as ds:
        bands = ds.read().astype(np.float64)
        for r in rows:
            row, col = ds.index(*to_ease.transform(r.lon, r.lat))
            sm, unc, qa, model = bands[:, row, col]
            assert r.sm_1km == pytest.approx(sm * 1e-4, abs=1e-9)
            assert r.sm_1km_uncertainty == pytest.approx(unc * 1e-4, abs=1e-9)
            assert r.qa_1km == qa and r.sm_model == pytest.approx(model * 1e-4, abs=1e-9)
            # the 36 km cell of the global grid; AM preferred, PM where AM is missing
            grow, gcol = ease2(36).rowcol(r.lon, r.lat)
            am, pm = (
                smap["soil_moisture"].sel({"pass": p}).values[grow, gcol] for p in ("AM", "PM")
            )
            expect = am if np.isfinite(am) else pm
            if np.isfinite(expect):
                assert r.sm_36km == pytest.approx(float(expect), abs=1e-7)
            else:
                assert r.sm_36km is None


def test_insitu_values_equal_the_observations_in_the_overpass_window(
    world: tuple[Settings, StackFactory], writer: Engine
) -> None:
    settings, factory = world
    day = PRODUCED[0]
    collocate_day(writer, factory, data_dir=settings.data_dir, day=day, window=AM)
    rows = {r.station_id: r for r in _collocations(writer, day)}
    with writer.connect() as conn:
        obs = conn.execute(
            sa.text("""
            SELECT s.station_id, o.sensor_id, o.time, o.value, o.quality_flag
              FROM smapds.observations o JOIN smapds.sensors s USING (sensor_id)
             WHERE s.variable = 'soil_moisture' AND s.depth_from_m <= 0.05
               AND o.time BETWEEN :a AND :b
        """),
            {
                "a": datetime.combine(day, datetime.min.time(), UTC) - timedelta(days=1),
                "b": datetime.combine(day, datetime.min.time(), UTC) + timedelta(days=2),
            },
        ).all()
    checked = 0
    for sid, r in rows.items():
        centre = datetime.combine(day, datetime.min.time(), UTC) + timedelta(
            hours=6.0 - r.lon / 15.0
        )
        per_sensor: dict[int, list[float]] = {}
        for o in obs:
            near = abs((o.time - centre).total_seconds()) <= 3 * 3600
            if o.station_id == sid and o.quality_flag == "G" and near:
                per_sensor.setdefault(o.sensor_id, []).append(o.value)
        assert r.window_start == centre - timedelta(hours=3)
        if not per_sensor:
            assert r.insitu_sm is None and r.insitu_n == 0
            continue
        expect = np.mean([np.mean(v) for v in per_sensor.values()])
        assert r.insitu_sm == pytest.approx(expect, abs=1e-12)
        assert r.insitu_n == sum(len(v) for v in per_sensor.values())
        checked += 1
    assert checked >= 5


def test_collocating_again_changes_nothing_and_a_new_observation_changes_one_row(
    world: tuple[Settings, StackFactory], writer: Engine
) -> None:
    settings, factory = world
    day = PRODUCED[1]
    collocate_day(writer, factory, data_dir=settings.data_dir, day=day, window=AM)
    before = {r.station_id: r for r in _collocations(writer, day)}
    again = collocate_day(writer, factory, data_dir=settings.data_dir, day=day, window=AM)
    assert again.changed == 0
    assert {r.station_id: r for r in _collocations(writer, day)} == before

    sid, row = next((k, r) for k, r in before.items() if r.insitu_sm is not None)
    with writer.begin() as conn:
        sensor, file_id = conn.execute(
            sa.text("""
            SELECT o.sensor_id, o.file_id FROM smapds.observations o
              JOIN smapds.surface_sensors ss USING (sensor_id)
             WHERE ss.station_id = :s LIMIT 1
        """),
            {"s": sid},
        ).one()
        mid = row.window_start + (row.window_end - row.window_start) / 2
        t = mid.replace(minute=30, second=17)
        conn.execute(
            sa.text(
                "INSERT INTO smapds.observations (sensor_id, time, value, quality_flag, file_id) "
                "VALUES (:s, :t, 0.49, 'G', :f)"
            ),
            {"s": sensor, "t": t, "f": file_id},
        )
    third = collocate_day(writer, factory, data_dir=settings.data_dir, day=day, window=AM)
    after = {r.station_id: r for r in _collocations(writer, day)}
    diff = [k for k in before if after[k] != before[k]]
    assert third.changed == 1 and diff == [sid]
    assert after[sid].insitu_n == row.insitu_n + 1 and after[sid].revision > row.revision
    assert all(after[k] == before[k] for k in before if k != sid)


def test_days_without_a_product_are_not_collocated(
    world: tuple[Settings, StackFactory], writer: Engine
) -> None:
    settings, factory = world
    assert product_days(writer, domain="demo", first=DAYS[0], last=DAYS[-1]) == PRODUCED
    nothing = collocate_day(writer, factory, data_dir=settings.data_dir, day=DAYS[0], window=AM)
    assert nothing.stations == 0 and not _collocations(writer, DAYS[0])


def test_statistics_of_the_synthetic_world_equal_a_numpy_recomputation(
    world: tuple[Settings, StackFactory], writer: Engine
) -> None:
    settings, factory = world
    for day in PRODUCED:
        collocate_day(writer, factory, data_dir=settings.data_dir, day=day, window=AM)
    refresh(writer, domain="demo", config=ValidationConfig((30, 90, 365), 10, 100))
    with writer.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT insitu_sm, sm_1km, sm_model, sm_36km, sm_9km FROM smapds.collocations")
        ).all()
        stored = {
            r.estimate: r
            for r in conn.execute(
                sa.text(
                    "SELECT * FROM smapds.validation_stats WHERE scope = 'domain' "
                    "AND window_days = 0"
                )
            )
        }
    table = np.array(rows, dtype=np.float64)
    for k, estimate in enumerate(("product_1km", "model_1km", "coarse_36km", "coarse_9km"), 1):
        want = pair_stats(table[:, k], table[:, 0], min_n=10)
        got = stored[estimate]
        assert got.n == want.n > 20 and got.status == want.status == "OK"
        for field in ("r", "r_p", "r_ci_low", "r_ci_high", "rmse", "bias", "ubrmse"):
            assert getattr(got, field) == pytest.approx(getattr(want, field), abs=1e-9)
    # the downscaled map agrees with the stations better than the 36 km retrieval does
    assert stored["product_1km"].ubrmse < stored["coarse_36km"].ubrmse


def test_an_ingest_records_its_time_span_and_recollocates_the_days_it_touched(
    world: tuple[Settings, StackFactory], writer: Engine
) -> None:
    settings, _ = world
    with writer.begin() as conn:
        spans = conn.execute(
            sa.text("""
            SELECT f.first_time, f.last_time, min(o.time) AS lo, max(o.time) AS hi
              FROM smapds.ingest_files f JOIN smapds.observations o USING (file_id)
             GROUP BY f.file_id
        """)
        ).all()
        conn.execute(sa.text("DELETE FROM smapds.collocations"))
        conn.execute(sa.text("UPDATE smapds.ingest_files SET collocated_at = NULL"))
    assert spans and all((s.first_time, s.last_time) == (s.lo, s.hi) for s in spans)
    collocate_ingested(writer, settings, DAYS[-1])
    with writer.begin() as conn:
        days = conn.execute(
            sa.text("SELECT DISTINCT product_date FROM smapds.collocations ORDER BY 1")
        ).scalars()
        assert list(days) == PRODUCED
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM smapds.ingest_files WHERE collocated_at IS NULL")
            ).scalar()
            == 0
        )
        conn.execute(sa.text("DELETE FROM smapds.collocations"))
    collocate_ingested(writer, settings, DAYS[-1])  # marked collocated: nothing to do again
    with writer.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM smapds.collocations")).scalar() == 0
