"""Benchmark of one full China day of the daily product against a naive baseline, in one run.

Generates (once, cached in ``--world``) ``--train-days`` days (default 8) of the synthetic world on
the China domain (6120 x 3708 cells of 1 km, about 22 million of them land in this world), starts a
private embedded cluster, fetches the inputs, trains and freezes a random forest on the coarse
samples of those days (about 78,000 with the default: a forest of production size, about 3 million
nodes; one day's samples give a forest ten times smaller, which flatters the naive baseline), builds
the static layers (cached in operations, so not timed), then measures the last day, each in its own
fresh process so the peak memory (VmHWM) is its own:

1. ours: ``service.product.produce_day`` (inputs, predict with the packed forest engine incl. the
   per-pixel spread, correction + gap filling, COG, STAC + quicklook, registration);
2. naive: the same inputs, scikit-learn's own ``predict`` on all land pixels (the mean only, on both
   cores) and a plain rasterio write of a float32 GeoTIFF.

Prints seconds per stage, totals, the ratio naive / ours and the peak RSS of each.
Targets on this 2-core machine: ours under 60 s, at least 5x faster, peak under 6 GiB.

    .venv/bin/python scripts/bench_product.py            # make bench-product
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from etl.archive import Archive  # noqa: E402
from etl.grid import get_domain  # noqa: E402
from service.db import Database, default_sql_dir  # noqa: E402
from service.db.embedded import EmbeddedCluster, find_bindir  # noqa: E402
from service.settings import Settings  # noqa: E402

DAY = date(2024, 7, 15)
GiB = 1024**3


def _database(pg_root: Path, port: int) -> Database:
    cluster = EmbeddedCluster(root=pg_root, port=port, bindir=find_bindir(None))
    return Database(cluster=cluster, external_url=None, sql_dir=default_sql_dir())


def _peak_rss() -> int:
    """This process's peak resident set (VmHWM). Not ``getrusage``'s ``ru_maxrss``: in a spawned
    child that keeps the peak of the parent it was forked from before its exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def ours(pg_root: Path, port: int, data: Path, world: Path) -> dict[str, Any]:
    from service.product import produce_day
    from service.stacks import stack_factory
    from service.train import active_model

    settings = Settings(data_dir=data, synthetic_dir=world, domain="china")
    engine = _database(pg_root, port).engine("writer")
    factory = stack_factory(settings, engine)  # static layers from the cache
    model = active_model(engine, domain="china", data_dir=data)
    t = time.perf_counter()
    r = produce_day(engine, factory, model, data_dir=data, day=DAY, settings_hash="0" * 64)
    total = time.perf_counter() - t
    engine.dispose()
    if r.path is None:
        raise SystemExit(f"the product failed: {r.error}")
    return {"seconds": r.seconds, "total": total, "rss": _peak_rss(), "stats": r.stats}


def naive(pg_root: Path, port: int, data: Path, world: Path) -> dict[str, Any]:
    import joblib
    import numpy as np
    import rasterio

    from service.stacks import stack_factory
    from service.train import active_model

    settings = Settings(data_dir=data, synthetic_dir=world, domain="china")
    engine = _database(pg_root, port).engine("writer")
    factory = stack_factory(settings, engine)
    model = active_model(engine, domain="china", data_dir=data)  # verifies the checksums
    forest = joblib.load(model.path / "model.joblib")
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    stack = factory.build(DAY)
    seconds["inputs"] = time.perf_counter() - t
    t = time.perf_counter()
    x = stack.feature_matrix()
    valid = stack.land & np.all(np.isfinite(x), axis=-1)
    sm = np.full(valid.shape, np.nan, np.float32)
    # both cores, as in production: a pool worker is daemonic, where joblib's default backend
    # would fall back to one job
    with joblib.parallel_backend("threading", n_jobs=2):
        sm[valid] = forest.predict(x[valid])
    seconds["predict"] = time.perf_counter() - t
    t = time.perf_counter()
    out = data / "naive.tif"
    profile = {
        "driver": "GTiff",
        "width": sm.shape[1],
        "height": sm.shape[0],
        "count": 1,
        "dtype": "float32",
        "crs": "EPSG:6933",
        "transform": factory.domain.transform(1),
        "nodata": float("nan"),
    }
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(sm, 1)
    seconds["write"] = time.perf_counter() - t
    engine.dispose()
    return {
        "seconds": seconds,
        "total": sum(seconds.values()),
        "rss": _peak_rss(),
        "land": int(valid.sum()),
    }


def _in_child(fn: Any, *args: Any) -> dict[str, Any]:
    with mp.get_context("spawn").Pool(1) as pool:
        result: dict[str, Any] = pool.apply(fn, args)
    return result


def prepare(
    world: Path, data: Path, db: Database, *, trees: int, depth: int, train_days: int
) -> None:
    from etl.stack import FEATURES
    from etl.synthetic import generate
    from models import artifact
    from models.learners import DEFAULT_PARAMS, make_model
    from service.fetch import fetch_day
    from service.sources import build_sources
    from service.stacks import stack_factory
    from service.train import assemble, register

    if not (world / "manifest.json").is_file():
        t = time.perf_counter()
        first = DAY - timedelta(days=train_days - 1)
        generate(world, domain=get_domain("china"), start=first, days=train_days, seed=11)
        print(f"{train_days} synthetic China days generated in {time.perf_counter() - t:.0f} s")
    settings = Settings(data_dir=data, synthetic_dir=world, domain="china")
    engine = db.engine("writer")
    archive = Archive(root=data / "archive", quarantine=data / "quarantine")
    for back in range(train_days + 14):  # the days, their precipitation windows, ET composites
        fetch_day(
            engine,
            build_sources(settings),
            archive,
            DAY - timedelta(days=back),
            today=DAY,
            window_days=7,
        )
    t = time.perf_counter()
    factory = stack_factory(settings, engine)
    print(f"static layers (cached for later days, not timed): {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    samples, _ = assemble(
        factory, DAY - timedelta(days=train_days - 1), DAY, cache_dir=data / "cache" / "samples"
    )
    hyper = {**DEFAULT_PARAMS["rf"], "n_estimators": trees, "max_depth": depth}
    forest = make_model("rf", hyper, seed=1, n_jobs=2)
    forest.fit(samples.X, samples.y)
    frozen = artifact.freeze(
        forest,
        out_dir=data / "models",
        name="rf-china-bench",
        model="rf",
        features=[(n, u) for n, u, _ in FEATURES],
        training={
            "start": str(DAY - timedelta(days=train_days - 1)),
            "end": str(DAY),
            "domain": "china",
            "samples": len(samples),
        },
        hyperparameters=hyper,
        scores={},
    )
    register(engine, frozen, data_dir=data, activate=True)
    nodes = sum(e.tree_.node_count for e in getattr(forest, "estimators_", []))
    print(
        f"trained and froze RF ({trees} trees, depth {depth}, {nodes:,} nodes) on "
        f"{len(samples):,} coarse samples of {train_days} days in {time.perf_counter() - t:.0f} s"
    )
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-days", type=int, default=8, help="days the forest learns from")
    parser.add_argument("--world", type=Path, help="default: var/bench/china-world-<N>d")
    parser.add_argument("--port", type=int, default=5443)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--depth", type=int, default=16)
    args = parser.parse_args()
    args.world = args.world or ROOT / "var" / "bench" / f"china-world-{args.train_days}d"

    tmp = Path(tempfile.mkdtemp(prefix="smapds-bench-product-"))
    tmp.chmod(0o755)
    pg_root = tmp / "pg"
    data = args.world.resolve().parent / "data"  # keeps the static layers' cache between runs
    for stale in ("models", "products", "cache"):
        shutil.rmtree(data / stale, ignore_errors=True)
    cluster = EmbeddedCluster(root=pg_root, port=args.port, bindir=find_bindir(None))
    db = Database(cluster=cluster, external_url=None, sql_dir=default_sql_dir())
    try:
        db.up()
        prepare(
            args.world.resolve(),
            data,
            db,
            trees=args.trees,
            depth=args.depth,
            train_days=args.train_days,
        )
        a = _in_child(ours, pg_root, args.port, data, args.world.resolve())
        b = _in_child(naive, pg_root, args.port, data, args.world.resolve())
    finally:
        cluster.down()
        shutil.rmtree(cluster.home, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nChina day {DAY}: {b['land']:,} land pixels predicted\n")
    print(f"{'stage':<16}{'ours (s)':>10}{'naive (s)':>11}")
    stages = ["inputs", "predict", "correct", "cog", "stac_quicklook", "register", "write"]
    for stage in stages:
        if stage in a["seconds"] or stage in b["seconds"]:
            ours_s = a["seconds"].get(stage)
            naive_s = b["seconds"].get(stage)
            print(
                f"{stage:<16}{'' if ours_s is None else f'{ours_s:10.1f}':>10}"
                f"{'' if naive_s is None else f'{naive_s:11.1f}':>11}"
            )
    print(f"{'total':<16}{a['total']:10.1f}{b['total']:11.1f}")
    print(f"\nratio naive / ours: {b['total'] / a['total']:.1f}x (target >= 5x)")
    print(
        f"ours: {a['total']:.1f} s (target < 60 s), peak RSS {a['rss'] / GiB:.2f} GiB (target < 6)"
    )
    print(f"naive: peak RSS {b['rss'] / GiB:.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
