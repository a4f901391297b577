"""The validation refresh on a collocations table with known errors: stored statistics equal a
numpy recomputation from the table, the incremental refresh equals a full one after new days,
revised and deleted rows, triple collocation recovers the error standard deviations put in."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from models.metrics import pair_stats
from service.validate import ESTIMATES, ValidationConfig, refresh

START = date(2020, 1, 1)
CONFIG = ValidationConfig(windows_days=(30, 90, 365), min_pairs=10, min_triplets=100)
ERR = {"insitu": 0.02, "product": 0.03, "coarse": 0.04}
N_STATIONS = 14
FIELDS = ("n", "r", "r_p", "r_ci_low", "r_ci_high", "rmse", "bias", "ubrmse", "coverage_90")


def _truth(rng: np.random.Generator, days: int) -> np.ndarray:
    seasonal = 0.22 + 0.08 * np.sin(np.arange(days) / 58.0)
    return np.clip(seasonal + rng.normal(0, 0.05, days), 0.1, 0.45)


def _rows(station: int, first: int, days: int, seed: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed * 1000 + station)
    t = _truth(rng, days)
    insitu = t + rng.normal(0, ERR["insitu"], days)
    if station == 1:  # a constant in situ series: DEGENERATE, not a correlation
        insitu = np.full(days, 0.25)
    product = t + rng.normal(0, ERR["product"], days)
    coarse = 0.8 * t + 0.05 + rng.normal(0, ERR["coarse"], days)
    rows = []
    for k in range(days):
        day = START + timedelta(days=first + k)
        gap = rng.random()
        rows.append(
            {
                "d": day,
                "s": station,
                "insitu": None if (gap < 0.1 or (station == 2 and k % 40)) else float(insitu[k]),
                "sm": float(product[k]),
                "unc": float(abs(rng.normal(0.03, 0.005))),
                "model": float(product[k] + rng.normal(0, 0.01)),
                "c36": None if gap > 0.6 else float(coarse[k]),
                "c9": None if gap > 0.7 else float(coarse[k] + rng.normal(0, 0.01)),
            }
        )
    return rows


@pytest.fixture(scope="module")
def db(writer: Engine) -> Iterator[Engine]:
    with writer.begin() as conn:
        conn.execute(
            sa.text("""
            INSERT INTO smapds.models (name, kind, path, sha256, domain, train_start, train_end,
                                       features)
            VALUES ('m', 'rf', 'models/m', repeat('0', 64), 'demo', '2019-01-01', '2019-12-31',
                    '[]')
        """)
        )
        for k in range(N_STATIONS):
            sid = conn.execute(
                sa.text("""
                INSERT INTO smapds.stations (network, station, station_key, geom)
                VALUES (:n, :s, :s, ST_SetSRID(ST_MakePoint(115 + :k * 0.1, 35), 4326))
                RETURNING station_id
            """),
                {"n": "NET_A" if k % 2 else "NET_B", "s": f"st{k}", "k": k},
            ).scalar_one()
            assert sid == k + 1
            conn.execute(
                sa.text("""
                INSERT INTO smapds.station_attributes (station_id, quantity, source, value_text,
                                                      description)
                VALUES (:s, 'land cover classification', 'CCI_landcover_2010', :v, :desc)
            """),
                {"s": sid, "v": "10" if k % 3 else "50", "desc": "cropland" if k % 3 else "forest"},
            )
    add_days(writer, 0, 400, seed=1)
    yield writer


def add_days(engine: Engine, first: int, days: int, *, seed: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("""
            INSERT INTO smapds.products (domain, product_date, path, sha256, stac_path,
                model_name, model_sha256, status, valid_fraction, gap_filled_fraction,
                footprint, inputs, software_version)
            SELECT 'demo', d::date, 'p', repeat('0', 64), 's', 'm', repeat('0', 64), 'OK', 1, 0,
                   ST_MakeEnvelope(110, 30, 120, 40, 4326), '{}', 'test'
              FROM generate_series(CAST(:a AS date), CAST(:b AS date), interval '1 day') d
        """),
            {"a": START + timedelta(days=first), "b": START + timedelta(days=first + days - 1)},
        )
        rows = [
            r
            for s in range(1, N_STATIONS + 1)
            for r in _rows(s, first, days if s != 3 else min(days, 5), seed)
        ]
        conn.execute(
            sa.text("""
            INSERT INTO smapds.collocations (domain, product_date, station_id, insitu_sm,
                insitu_n, window_start, window_end, sm_1km, sm_1km_uncertainty, sm_model,
                sm_36km, sm_9km)
            VALUES ('demo', :d, :s, :insitu, CASE WHEN :insitu IS NULL THEN 0 ELSE 4 END,
                    :d - interval '3 hours', :d + interval '3 hours', :sm, :unc, :model,
                    :c36, :c9)
        """),
            rows,
        )


def _stored(engine: Engine) -> dict[tuple[str, str, int, str], sa.Row[tuple[object, ...]]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM smapds.validation_stats")).all()
    return {(r.scope, r.scope_key, r.window_days, r.estimate): r for r in rows}


def _table(engine: Engine) -> dict[str, np.ndarray]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("""
            SELECT c.station_id, s.network, a.description AS land_cover,
                   c.product_date - DATE '2000-01-01' AS day, c.insitu_sm, c.sm_1km,
                   c.sm_1km_uncertainty, c.sm_model, c.sm_36km, c.sm_9km
              FROM smapds.collocations c JOIN smapds.stations s USING (station_id)
              JOIN smapds.station_attributes a USING (station_id)
        """)
        ).all()
    cols = list(zip(*rows, strict=True))
    names = ("station", "network", "land_cover", "day", "insitu", "sm", "unc", "model", "c36", "c9")
    out = {n: np.array(c) for n, c in zip(names, cols, strict=True)}
    for n in names[4:]:
        out[n] = np.array(out[n], dtype=np.float64)
    return out


def _check_against_numpy(engine: Engine) -> int:
    t = _table(engine)
    anchor = int(t["day"].max())
    stored = _stored(engine)
    est = {"product_1km": "sm", "model_1km": "model", "coarse_36km": "c36", "coarse_9km": "c9"}
    scopes = [("domain", "demo", np.ones(t["day"].size, bool))]
    scopes += [("station", str(s), t["station"] == s) for s in np.unique(t["station"])]
    scopes += [("network", n, t["network"] == n) for n in np.unique(t["network"])]
    scopes += [("land_cover", c, t["land_cover"] == c) for c in np.unique(t["land_cover"])]
    checked = 0
    for scope, key, member in scopes:
        for window in (*CONFIG.windows_days, 0):
            inside = member & (t["day"] <= anchor)
            if window:
                inside &= t["day"] > anchor - window
            for estimate in ESTIMATES:
                x, ref = t[est[estimate]][inside], t["insitu"][inside]
                want = pair_stats(x, ref, min_n=CONFIG.min_pairs)
                got = stored[(scope, key, window, estimate)]
                assert got.n == want.n and got.status == want.status, (scope, key, window)
                for field in ("r", "r_p", "r_ci_low", "r_ci_high", "rmse", "bias", "ubrmse"):
                    w, g = getattr(want, field), getattr(got, field)
                    if math.isnan(w):
                        assert g is None, (scope, key, window, estimate, field)
                    else:
                        assert g == pytest.approx(w, abs=1e-9), (scope, key, window, field)
                if estimate == "product_1km" and want.n:
                    ok = np.isfinite(x) & np.isfinite(ref)
                    u = t["unc"][inside][ok]
                    inside90 = np.abs(ref[ok] - x[ok]) <= 1.6448536269514722 * u
                    assert got.coverage_90 == pytest.approx(inside90.mean(), abs=1e-12)
                checked += 1
    assert len(stored) == checked
    return checked


def test_stored_statistics_equal_a_numpy_recomputation_from_the_table(db: Engine) -> None:
    report = refresh(db, domain="demo", config=CONFIG)
    assert report.mode == "full" and report.rows_read == 13 * 400 + 5
    assert _check_against_numpy(db) == (1 + N_STATIONS + 2 + 2) * 4 * len(ESTIMATES)
    stored = _stored(db)
    few = stored[("station", "3", 0, "product_1km")]
    assert (few.n, few.status, few.r, few.rmse) == (5, "INSUFFICIENT_DATA", None, None)
    flat = stored[("station", "1", 0, "product_1km")]
    assert flat.status == "DEGENERATE" and flat.r is None and flat.rmse is not None
    assert flat.reason == "reference has zero variance"


def test_triple_collocation_recovers_the_error_standard_deviations_put_in(db: Engine) -> None:
    refresh(db, domain="demo", config=CONFIG)
    with db.connect() as conn:
        tc = conn.execute(
            sa.text(
                "SELECT * FROM smapds.validation_tc WHERE scope = 'station' AND scope_key = '5' "
                "AND window_days = 0"
            )
        ).one()
        few = conn.execute(
            sa.text(
                "SELECT status, n FROM smapds.validation_tc WHERE scope = 'station' "
                "AND scope_key = '5' AND window_days = 30"
            )
        ).one()
    # ~240 triplets of one station: the sampling error of a TC error std is roughly 10-15 %
    assert tc.status == "OK" and tc.n > 200
    assert tc.err_std_insitu == pytest.approx(ERR["insitu"], rel=0.35)
    assert tc.err_std_product == pytest.approx(ERR["product"], rel=0.2)
    assert tc.err_std_coarse == pytest.approx(ERR["coarse"], rel=0.2)
    assert few.status == "INSUFFICIENT_DATA" and few.n < 100


def test_the_incremental_refresh_equals_a_full_one(db: Engine) -> None:
    refresh(db, domain="demo", config=CONFIG)
    for k in range(3):  # three new days, one refresh each
        add_days(db, 400 + k, 1, seed=10 + k)
        report = refresh(db, domain="demo", config=CONFIG)
        assert report.mode == "incremental" and report.changes == N_STATIONS
    # late in situ values and a reprocessed old day, a product deleted, a catch-up of 40 days
    with db.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE smapds.collocations SET insitu_sm = insitu_sm + 0.05 "
                "WHERE product_date IN ('2020-03-01', '2021-01-30') AND station_id < 6"
            )
        )
        conn.execute(sa.text("DELETE FROM smapds.products WHERE product_date = DATE '2021-01-20'"))
    add_days(db, 403, 40, seed=20)
    report = refresh(db, domain="demo", config=CONFIG)
    assert report.mode == "incremental"
    incremental = _stored(db)
    _check_against_numpy(db)
    assert refresh(db, domain="demo", config=CONFIG, full=True).mode == "full"
    full = _stored(db)
    assert incremental.keys() == full.keys()
    for key, row in full.items():
        for field in FIELDS:
            a, b = getattr(row, field), getattr(incremental[key], field)
            assert (a is None) == (b is None), (key, field)
            if a is not None:
                assert b == pytest.approx(a, abs=1e-9), (key, field)


def test_refreshing_without_changes_reads_nothing_and_keeps_the_numbers(db: Engine) -> None:
    refresh(db, domain="demo", config=CONFIG)
    before = _stored(db)
    report = refresh(db, domain="demo", config=CONFIG)
    assert report.mode == "incremental" and report.changes == 0 and report.rows_read == 0
    assert _stored(db) == before
