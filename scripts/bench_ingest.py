"""Benchmark of the in situ loader against a plain COPY of the same rows, on a private cluster.

Writes a synthetic ISMN download (header+values, Network/Station layout, CRLF, hourly readings of
``--stations`` stations over ``--days`` days in the demo domain), starts a private embedded
PostgreSQL + PostGIS cluster in a temporary directory and migrates it, then measures in the same run:

1. plain ``COPY`` of the same rows (sensor, time, value, flags, file) into a bare table without
   keys or indexes (the rows prepared as COPY text in a file beforehand, so only the COPY counts);
2. the loader, end to end: ``service.ingest.ingest_ismn`` on the folder (read, parse, validate,
   stations and sensors, partitions, binary COPY into the monthly partitions with their primary
   key, bookkeeping), with ``--workers`` files in parallel;
3. plain ``COPY`` again, to show how much the machine's speed drifted during the run.

It prints rows/s of each and the ratio loader / plain COPY (the mean of the two COPY runs), then
checks that every row arrived. Full size: ``--stations 2000 --days 365`` (17.5 million rows).

The CPU line says where the time goes: CPU per row of this process and of the database (server
processes, background work such as autovacuum included), and how many cores each phase kept busy.
The plain COPY keeps about one core busy, the loader up to two, so on a machine shared with other
work the ratio falls towards the ratio of CPU per row, and rises above it on an idle one.

    .venv/bin/python scripts/bench_ingest.py                    # quick: 100 stations x 60 days
    .venv/bin/python scripts/bench_ingest.py --stations 2000 --days 365
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from etl.grid import get_domain  # noqa: E402
from service.db import Database, default_sql_dir  # noqa: E402
from service.db.embedded import EmbeddedCluster, find_bindir  # noqa: E402
from service.ingest import exit_code, ingest_ismn  # noqa: E402

NETWORK = "BENCH"
SENSOR = "ThetaProbe-ML2X"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, default=100)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2023, 1, 1))
    parser.add_argument("--workers", type=int, default=2, help="files loaded in parallel")
    parser.add_argument("--port", type=int, default=5439)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="smapds-bench-"))
    tmp.chmod(0o755)  # the unprivileged server user must reach the cluster when run as root
    cluster = EmbeddedCluster(root=tmp / "pg", port=args.port, bindir=find_bindir(None))
    db = Database(cluster=cluster, external_url=None, sql_dir=default_sql_dir())
    try:
        t0 = time.perf_counter()
        folder, copy_file, n_rows = write_download(
            tmp, stations=args.stations, days=args.days, start=args.start, seed=args.seed
        )
        print(
            f"synthetic download: {args.stations} stations x {args.days} days = {n_rows:,} rows "
            f"({_size(folder)} MB) written in {time.perf_counter() - t0:.0f} s"
        )
        db.up()
        admin, writer = db.engine("admin"), db.engine("writer")
        try:
            cpu0 = _cpu(cluster)
            copy1 = plain_copy(admin, copy_file, n_rows)
            cpu1 = _cpu(cluster)
            started = time.perf_counter()
            summaries = ingest_ismn(writer, [folder], domain="demo", workers=args.workers)
            loader_s = time.perf_counter() - started
            cpu2 = _cpu(cluster)
            copy2 = plain_copy(admin, copy_file, n_rows)
            with admin.connect() as conn:
                stored = conn.execute(sa.text("SELECT count(*) FROM smapds.observations")).scalar()
                parts = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_inherits "
                        "WHERE inhparent = 'smapds.observations'::regclass"
                    )
                ).scalar()
        finally:
            admin.dispose()
            writer.dispose()
        loader = n_rows / loader_s
        baseline = (copy1 + copy2) / 2
        print(
            f"plain COPY into a bare table: {copy1:,.0f} rows/s (before), "
            f"{copy2:,.0f} rows/s (after)"
        )
        print(
            f"loader (ingest_ismn, {args.workers} worker(s)): {loader:,.0f} rows/s "
            f"({loader_s:.1f} s for {len(summaries)} files, {parts} monthly partitions)"
        )
        print(f"ratio loader / plain COPY: {loader / baseline:.2f} (target >= 0.50)")
        per_row = [1e6 * (b - a) / n_rows for a, b in zip((cpu0, cpu1), (cpu1, cpu2), strict=True)]
        print(
            "CPU per row (python + postgres incl. background): "
            f"plain COPY {per_row[0][0]:.2f} + {per_row[0][1]:.2f} us "
            f"({copy1 * per_row[0].sum() / 1e6:.2f} cores busy), "
            f"loader {per_row[1][0]:.2f} + {per_row[1][1]:.2f} us "
            f"({loader * per_row[1].sum() / 1e6:.2f} cores busy); "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        problems = [s for s in summaries if s.status != "OK"]
        if stored != n_rows or problems or exit_code(summaries):
            print(
                f"MISMATCH: {stored} rows stored of {n_rows}; {len(problems)} files not OK: "
                f"{problems[:3]}"
            )
            return 1
        print(f"check: all {stored:,} rows stored, every file OK")
        return 0
    finally:
        cluster.down()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(cluster.home, ignore_errors=True)
            shutil.rmtree(tmp, ignore_errors=True)


def write_download(
    tmp: Path, *, stations: int, days: int, start: dt.date, seed: int
) -> tuple[Path, Path, int]:
    """The ISMN folder, and the same rows as COPY text for the bare table; returns the row count."""
    rng = np.random.default_rng(seed)
    end = start + dt.timedelta(days=days - 1)
    folder = tmp / f"Data_seperate_files_header_{start:%Y%m%d}_{end:%Y%m%d}"
    west, south, east, north = get_domain("demo").bbox_lonlat()
    hours = np.datetime64(start, "h") + np.arange(days * 24).astype("timedelta64[h]")
    stamps = [str(t).replace("-", "/").replace("T", " ") + ":00" for t in hours]
    utc = [s.replace("/", "-") + ":00+00" for s in stamps]
    copy_file = tmp / "bare.copy"
    n_rows = 0
    with open(copy_file, "w") as copy_out:
        for k in range(stations):
            name = f"B{k + 1:04d}"
            lon, lat = rng.uniform(west + 0.1, east - 0.1), rng.uniform(south + 0.1, north - 0.1)
            values = np.clip(
                0.25
                + 0.08 * np.sin(np.arange(len(hours)) / 500.0 + k)
                + rng.normal(0, 0.01, len(hours)),
                0.01,
                0.6,
            )
            text = [f"{v:.4f}" for v in values]
            flags = np.where(rng.random(len(hours)) < 0.02, "D06", "G").tolist()
            header = (
                f"{NETWORK:<10} {NETWORK:<15} {name:<17}{lat:9.5f}{lon:12.5f}"
                f"{50.0:8.2f}{0.05:8.2f}{0.05:8.2f} {SENSOR}"
            )
            body = "".join(
                f"{s}{v:>9} {f} M\r\n" for s, v, f in zip(stamps, text, flags, strict=True)
            )
            base = folder / NETWORK / name
            base.mkdir(parents=True)
            stm = f"{NETWORK}_{NETWORK}_{name}_sm_0.050000_0.050000_{SENSOR}_{start:%Y%m%d}_{end:%Y%m%d}.stm"
            (base / stm).write_bytes((header + "\r\n" + body).encode("ascii"))
            sid = k + 1
            copy_out.write(
                "".join(
                    f"{sid}\t{u}\t{v}\t{f}\tM\t{sid}\n"
                    for u, v, f in zip(utc, text, flags, strict=True)
                )
            )
            n_rows += len(hours)
    return folder, copy_file, n_rows


def plain_copy(admin: Any, copy_file: Path, n_rows: int) -> float:
    """rows/s of one COPY of the prepared rows into a fresh bare table (no keys, no indexes)."""
    with admin.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS public.bench_bare"))
        conn.execute(
            sa.text(
                "CREATE TABLE public.bench_bare (sensor_id integer, time timestamptz, "
                "value double precision, quality_flag text, provider_flag text, file_id integer)"
            )
        )
    with open(copy_file) as fh, admin.begin() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        started = time.perf_counter()
        cursor.copy_expert("COPY public.bench_bare FROM STDIN", fh, size=1 << 20)
        cursor.close()
    seconds = time.perf_counter() - started  # includes the commit
    with admin.begin() as conn:
        conn.execute(sa.text("DROP TABLE public.bench_bare"))
    return n_rows / seconds


def _cpu(cluster: EmbeddedCluster) -> np.ndarray[Any, Any]:
    """CPU seconds used so far by this process and by the cluster (postmaster and its children)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    tick = os.sysconf("SC_CLK_TCK")
    postmaster = cluster.postmaster_pid()
    pg = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(proc.name) == postmaster or int(fields[1]) == postmaster:
            pg += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return np.array([me.ru_utime + me.ru_stime, pg / tick])


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) // (1 << 20)


if __name__ == "__main__":
    raise SystemExit(main())
