"""Benchmark of the validation refresh: a full recompute against the incremental refresh after one
new day, at ``--years`` years x ``--stations`` stations of collocations, on a private cluster.

Builds the history server-side (stations in 20 networks and 8 land cover classes, a product per
day, one collocation per station and day with gaps like real data: in situ missing 10 %, the 36 km
retrieval missing 40 %), runs a full refresh, then for each of ``--new-days`` days adds the day's
products and collocations and times the incremental refresh; then revises the in situ values of
the latest day for every station (late observations) and times that refresh too. Prints the
figures and the ratio full / incremental (target: at least 20 at 10 years).

    .venv/bin/python scripts/bench_validate.py                              # 2 years x 500
    .venv/bin/python scripts/bench_validate.py --years 10 --stations 2000   # the issue's size
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from service.db import Database, default_sql_dir  # noqa: E402
from service.db.embedded import EmbeddedCluster, find_bindir  # noqa: E402
from service.validate import ValidationConfig, refresh  # noqa: E402

CONFIG = ValidationConfig(windows_days=(30, 90, 365), min_pairs=10, min_triplets=100)
START = date(2015, 1, 1)

_PRODUCTS = sa.text("""
    INSERT INTO smapds.products (domain, product_date, path, sha256, stac_path, model_name,
        model_sha256, status, valid_fraction, gap_filled_fraction, footprint, inputs,
        software_version)
    SELECT 'demo', d::date, 'p', repeat('0', 64), 's', 'm', repeat('0', 64), 'OK', 1, 0,
           ST_MakeEnvelope(110, 30, 120, 40, 4326), '{}', 'bench'
      FROM generate_series(CAST(:a AS date), CAST(:b AS date), interval '1 day') d
""")

_COLLOCATIONS = sa.text("""
    INSERT INTO smapds.collocations (domain, product_date, station_id, insitu_sm, insitu_n,
        window_start, window_end, sm_1km, sm_1km_uncertainty, sm_model, sm_36km, sm_9km)
    SELECT 'demo', d, s, CASE WHEN g < 0.1 THEN NULL ELSE t + 0.02 * (random() - 0.5) END,
           CASE WHEN g < 0.1 THEN 0 ELSE 4 END, d - interval '3 hours', d + interval '3 hours',
           t + 0.05 * (random() - 0.5), 0.03, t + 0.06 * (random() - 0.5),
           CASE WHEN g > 0.6 THEN NULL ELSE 0.8 * t + 0.05 + 0.07 * (random() - 0.5) END,
           CASE WHEN g > 0.7 THEN NULL ELSE 0.9 * t + 0.03 + 0.07 * (random() - 0.5) END
      FROM (SELECT d::date AS d, s, random() AS g,
                   0.25 + 0.1 * sin((d::date - DATE '2015-01-01') / 58.0 + s) AS t
              FROM generate_series(CAST(:a AS date), CAST(:b AS date), interval '1 day') d,
                   generate_series(1, :n) s) x
""")


def build_history(admin: Engine, *, stations: int, days: int) -> None:
    last = START + timedelta(days=days - 1)
    with admin.begin() as conn:
        conn.execute(sa.text("SELECT setseed(0.42)"))
        conn.execute(
            sa.text("""
            INSERT INTO smapds.models (name, kind, path, sha256, domain, train_start, train_end,
                                       features)
            VALUES ('m', 'rf', 'm', repeat('0', 64), 'demo', '2014-01-01', '2014-12-31', '[]')
        """)
        )
        conn.execute(
            sa.text("""
            INSERT INTO smapds.stations (network, station, station_key, geom)
            SELECT 'NET_' || (s % 20), 'st' || s, 'st' || s,
                   ST_SetSRID(ST_MakePoint(110 + (s % 50) * 0.2, 30 + (s / 50) * 0.2), 4326)
              FROM generate_series(1, :n) s ORDER BY s
        """),
            {"n": stations},
        )
        conn.execute(
            sa.text("""
            INSERT INTO smapds.station_attributes (station_id, quantity, source, value_text,
                                                  description)
            SELECT station_id, 'land cover classification', 'CCI_landcover_2010',
                   (station_id % 8)::text, 'class ' || (station_id % 8)
              FROM smapds.stations
        """)
        )
        conn.execute(_PRODUCTS, {"a": START, "b": last})
        # the history is loaded with the change log off: it is what a full refresh reads anyway
        conn.execute(sa.text("ALTER TABLE smapds.collocations DISABLE TRIGGER collocations_log"))
        conn.execute(_COLLOCATIONS, {"a": START, "b": last, "n": stations})
        conn.execute(sa.text("ALTER TABLE smapds.collocations ENABLE TRIGGER collocations_log"))
    with admin.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            sa.text("VACUUM ANALYZE smapds.collocations")
        )


def add_day(admin: Engine, day: date, stations: int) -> None:
    with admin.begin() as conn:
        conn.execute(_PRODUCTS, {"a": day, "b": day})
        conn.execute(_COLLOCATIONS, {"a": day, "b": day, "n": stations})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--years", type=int, default=2)
    parser.add_argument("--stations", type=int, default=500)
    parser.add_argument("--new-days", type=int, default=3)
    parser.add_argument("--port", type=int, default=5441)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="smapds-bench-validate-"))
    tmp.chmod(0o755)
    cluster = EmbeddedCluster(root=tmp / "pg", port=args.port, bindir=find_bindir(None))
    db = Database(cluster=cluster, external_url=None, sql_dir=default_sql_dir())
    days = 365 * args.years
    try:
        db.up()
        admin, writer = db.engine("admin"), db.engine("writer")
        t0 = time.perf_counter()
        build_history(admin, stations=args.stations, days=days)
        print(
            f"history: {args.years} years x {args.stations} stations = "
            f"{days * args.stations:,} collocations, built in {time.perf_counter() - t0:.0f} s"
        )
        full = refresh(writer, domain="demo", config=CONFIG, full=True)
        print(f"full recompute:        {full.seconds:8.2f} s ({full.rows_read:,} rows read)")
        incremental: list[float] = []
        for k in range(args.new_days):
            add_day(admin, START + timedelta(days=days + k), args.stations)
            r = refresh(writer, domain="demo", config=CONFIG)
            assert r.mode == "incremental", r
            incremental.append(r.seconds)
            print(
                f"incremental, new day {k + 1}: {r.seconds:8.2f} s ({r.rows_read:,} rows read, "
                f"{r.changes:,} changes)"
            )
        with admin.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE smapds.collocations SET insitu_sm = coalesce(insitu_sm, 0.2) + 0.01, "
                    "insitu_n = 5 WHERE product_date = :d"
                ),
                {"d": START + timedelta(days=days + args.new_days - 1)},
            )
        late = refresh(writer, domain="demo", config=CONFIG)
        print(
            f"incremental, late in situ for the latest day: {late.seconds:.2f} s "
            f"({late.changes:,} changes)"
        )
        again = refresh(writer, domain="demo", config=CONFIG, full=True)
        median = statistics.median(incremental)
        print(f"full recompute again:  {again.seconds:8.2f} s")
        ratio = min(full.seconds, again.seconds) / median
        print(
            f"ratio full / incremental (median of {len(incremental)} new days): {ratio:.1f}x "
            f"(target >= 20x at 10 years)"
        )
        admin.dispose()
        writer.dispose()
    finally:
        cluster.down()
        shutil.rmtree(cluster.home, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
