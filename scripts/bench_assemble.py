"""Benchmark of assembling the coarse training samples over China: time per day and peak memory.

Training pairs every (36 km cell, day) with a good retrieval with the day's input stack averaged
over the cell's land pixels (``service.train.assemble``), one day at a time, each day's samples
cached. This measures that on the synthetic China world of ``make bench-product`` (generated there
and cached in ``var/bench/china-world-8d``; this script generates it too if it is missing, about
25 minutes): a private embedded cluster, the inputs fetched into ``var/bench/data`` (already there
after ``make bench-product``), the static layers built or read from their cache (not timed), then
each day assembled in this process from an empty sample cache. It prints seconds and samples per
day, the peak resident memory (VmHWM) after the first day and after the last (bounded memory: the
peak must not grow with the days), the time to read the whole period back from the cache, and the
time two years (730 days) would take at the measured rate.

    .venv/bin/python scripts/bench_assemble.py            # make bench-assemble
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench_product import DAY, GiB, _database, _peak_rss  # noqa: E402

from etl.archive import Archive  # noqa: E402
from etl.grid import get_domain  # noqa: E402
from service.settings import Settings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=8, help="days of the world (default 8)")
    parser.add_argument("--world", type=Path, help="default: var/bench/china-world-<N>d")
    parser.add_argument("--port", type=int, default=5445)
    args = parser.parse_args()
    world = (args.world or ROOT / "var" / "bench" / f"china-world-{args.days}d").resolve()
    data = world.parent / "data"
    first = DAY - timedelta(days=args.days - 1)
    days = [first + timedelta(days=k) for k in range(args.days)]

    from etl.synthetic import generate
    from service.fetch import fetch_day
    from service.sources import build_sources
    from service.stacks import stack_factory
    from service.train import assemble

    if not (world / "manifest.json").is_file():
        t = time.perf_counter()
        generate(world, domain=get_domain("china"), start=first, days=args.days, seed=11)
        print(f"{args.days} synthetic China days generated in {time.perf_counter() - t:.0f} s")
    tmp = Path(tempfile.mkdtemp(prefix="smapds-bench-assemble-"))
    tmp.chmod(0o755)
    db = _database(tmp / "pg", args.port)
    try:
        db.up()
        engine = db.engine("writer")
        settings = Settings(data_dir=data, synthetic_dir=world, domain="china")
        archive = Archive(root=data / "archive", quarantine=data / "quarantine")
        for back in range(args.days + 14):  # the days, their precipitation windows, ET composites
            day = DAY - timedelta(days=back)
            fetch_day(engine, build_sources(settings), archive, day, today=DAY, window_days=7)
        t = time.perf_counter()
        factory = stack_factory(settings, engine)
        print(f"static layers (cached in operations, not timed): {time.perf_counter() - t:.0f} s")
        cache = tmp / "samples"
        seconds: list[float] = []
        peaks: list[int] = []
        for day in days:
            t = time.perf_counter()
            part, skipped = assemble(factory, day, day, cache_dir=cache)
            seconds.append(time.perf_counter() - t)
            peaks.append(_peak_rss())
            note = f" (skipped: {skipped[str(day)]})" if skipped else ""
            print(
                f"{day}: {len(part):,} samples in {seconds[-1]:.1f} s, "
                f"peak RSS so far {peaks[-1] / GiB:.2f} GiB{note}"
            )
        t = time.perf_counter()
        samples, _ = assemble(factory, days[0], days[-1], cache_dir=cache)
        reread = time.perf_counter() - t
        per_day = statistics.mean(seconds[1:] if len(seconds) > 1 else seconds)
        cached = sum(p.stat().st_size for p in cache.rglob("*.npz"))
        print(
            f"\n{len(samples):,} samples of {len(days)} China days: "
            f"{per_day:.1f} s per day (after the first, {seconds[0]:.1f} s), "
            f"{cached / len(days) / 2**20:.2f} MiB of cache per day; "
            f"the whole period read back from the cache in {reread:.2f} s"
        )
        print(
            f"peak RSS {peaks[0] / GiB:.2f} GiB after the first day, {peaks[-1] / GiB:.2f} GiB "
            f"after the last (bounded: one day's stack at a time)"
        )
        print(
            f"two years (730 days) at this rate: {730 * per_day / 3600:.1f} h on this machine, "
            f"{730 * cached / len(days) / 2**30:.2f} GiB of cache, "
            f"{730 * samples.X.nbytes / len(days) / 2**30:.2f} GiB of features in memory"
        )
        engine.dispose()
    finally:
        if db.cluster is not None:
            db.cluster.down()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
