"""Benchmark of the packed-forest inference engine against scikit-learn's own ``predict``.

Builds downscaling-like covariates (10 features: albedo, ET, precipitation, 3- and 7-day antecedent
precipitation, clay, sand, elevation, sin/cos of the day of year; correlated through a synthetic
surface soil moisture that is also the target), trains ``RandomForestRegressor`` forests of two
sizes on ``--train-rows`` rows, and for each number of ``--rows`` measures in the same process:

* scikit-learn ``predict`` (``n_jobs=--threads``), and its mean + std computed from every
  estimator's predictions (``models.forest.predict_reference``, chunked);
* the packed engine, mean alone and mean + std (``PackedForest.predict``, ``--threads`` threads);
* rows/s, the ratio to scikit-learn, the max abs difference of the mean and of the std against
  scikit-learn, and the peak resident memory of the process during each step (``VmHWM`` from
  ``/proc/self/status``, reset before the step through ``/proc/self/clear_refs``; the input
  matrix itself is part of it);
* per forest: node count, depth, size of the ``.npz`` artifact, pack and load time, and accuracy
  (RMSE, bias, R) against the synthetic truth on held-out rows, so the size/accuracy trade shows.

scikit-learn runs at ~0.1 M rows/s, so it is timed on at most ``--reference-rows`` rows (the first
rows of the matrix) and its time for more rows is extrapolated linearly, as the output says; the
differences are also measured on those rows. The machine may be shared: the load average is
printed at the start and the end.

    .venv/bin/python scripts/bench_model.py --quick          # smoke run, about a minute
    .venv/bin/python scripts/bench_model.py                  # 1 M and 10 M rows, ~15 min
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numba  # noqa: E402
import sklearn  # noqa: E402
from sklearn.ensemble import RandomForestRegressor  # noqa: E402

from models.forest import PackedForest, predict_reference  # noqa: E402

FEATURES = (
    "albedo",
    "et_mm_day",
    "precip_mm",
    "api3_mm",
    "api7_mm",
    "clay_frac",
    "sand_frac",
    "elevation_m",
    "doy_sin",
    "doy_cos",
)

T = TypeVar("T")


def make_features(n: int, *, seed: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """``n`` rows of covariates (float32, columns as ``FEATURES``) and their soil moisture (m3/m3).

    Static soil (clay, sand from beta laws) and terrain (log-normal elevation) set a field
    capacity; a seasonal wet-day probability drives 7 days of zero-inflated gamma rain (0.1 mm
    steps, like IMERG), whose 3- and 7-day sums wet the soil; ET (0.1 mm/day steps, like MOD16) is
    PET limited by relative wetness, albedo (0.001 steps, like MCD43) darkens with moisture. The
    quantisation repeats values, so many split thresholds fall exactly between observed values.
    """
    rng = np.random.default_rng(seed)
    doy = rng.integers(1, 366, n)
    angle = 2.0 * np.pi * doy / 365.25
    s, c = np.sin(angle), np.cos(angle)
    elev = np.clip(rng.lognormal(6.5, 1.0, n), -150.0, 8000.0)
    clay = np.clip(rng.beta(2.0, 5.0, n), 0.02, 0.7)
    sand = np.clip((1.0 - clay) * rng.beta(3.0, 2.5, n), 0.02, 0.95)
    p_wet = np.clip(0.35 + 0.25 * s - 0.00005 * elev, 0.05, 0.9)
    rain = np.where(rng.random((n, 7)) < p_wet[:, None], rng.gamma(0.7, 8.0, (n, 7)), 0.0).round(1)
    precip, api3, api7 = rain[:, 0], rain[:, :3].sum(axis=1), rain.sum(axis=1)
    fc = 0.12 + 0.35 * clay - 0.08 * sand
    sm = fc * (0.55 + 0.35 * (1.0 - np.exp(-api7 / 25.0)) + 0.15 * (1.0 - np.exp(-api3 / 8.0))) + (
        0.03 * c - 0.00001 * elev
    )
    sm = np.clip(sm + rng.normal(0.0, 0.015, n), 0.02, 0.55)
    pet = 2.5 + 2.0 * s - 0.0003 * elev + rng.normal(0.0, 0.3, n)
    et = np.clip(pet * np.clip(sm / fc, 0.1, 1.0), 0.0, None).round(1)
    albedo = np.clip(0.3 - 0.35 * sm + 0.05 * sand + rng.normal(0.0, 0.015, n), 0.05, 0.5).round(3)
    X = np.column_stack([albedo, et, precip, api3, api7, clay, sand, elev.round(), s, c])
    return X.astype(np.float32), sm.astype(np.float32)


def make_rows(n: int, *, seed: int, chunk: int = 1_000_000) -> NDArray[np.float32]:
    """``n`` rows of covariates generated in chunks (bounded temporaries), deterministic."""
    X = np.empty((n, len(FEATURES)), np.float32)
    for i, lo in enumerate(range(0, n, chunk)):
        X[lo : lo + chunk] = make_features(min(chunk, n - lo), seed=seed * 100_003 + i)[0]
    return X


# ------------------------------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


@dataclass(frozen=True)
class Step:
    seconds: float
    cpu_seconds: float
    peak_mb: float
    start_mb: float


def measure(fn: Callable[[], T], *, repeats: int = 1) -> tuple[T, Step]:
    """Run ``fn`` ``repeats`` times: the best wall time (the machine may be shared), the CPU time
    of the process's threads in that run, and the highest peak RSS during a run (VmHWM, reset
    before each run)."""
    best, cpu, peak, start_mb = float("inf"), 0.0, -1.0, 0.0
    for _ in range(repeats):
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        except OSError:
            pass
        rss = _status_kb("VmRSS") / 1024
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        if seconds < best:
            best, cpu = seconds, cpu_seconds
        hwm = _status_kb("VmHWM") / 1024
        if peak < 0 or hwm - rss > peak - start_mb:
            peak, start_mb = hwm, rss
    return out, Step(seconds=best, cpu_seconds=cpu, peak_mb=peak, start_mb=start_mb)


def maxdiff(a: NDArray[Any], b: NDArray[Any]) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def fmt_rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds / 1e6:8.3f} M"


# ------------------------------------------------------------------------------------------------
def bench_forest(
    *,
    depth: int,
    leaf: int,
    n_trees: int,
    train: tuple[NDArray[np.float32], NDArray[np.float32]],
    test: tuple[NDArray[np.float32], NDArray[np.float32]],
    X: NDArray[np.float32],
    rows_list: list[int],
    reference_rows: int,
    threads: int,
    repeats: int,
    out_dir: Path,
) -> list[str]:
    summary: list[str] = []
    print(f"\n=== forest: {n_trees} trees, max_depth={depth}, min_samples_leaf={leaf} ===")
    rf = RandomForestRegressor(
        n_estimators=n_trees, max_depth=depth, min_samples_leaf=leaf, n_jobs=threads, random_state=0
    )
    _, fit = measure(lambda: rf.fit(*train))
    packed, pack = measure(lambda: PackedForest.from_sklearn(rf))
    path = out_dir / f"forest_d{depth}_l{leaf}.npz"
    packed.save(path)
    loaded, load = measure(lambda: PackedForest.load(path))
    size_mb = path.stat().st_size / 1e6
    print(
        f"trained in {fit.seconds:.0f} s; {packed.n_nodes:,} nodes "
        f"({packed.n_nodes / packed.n_trees / 1e3:.1f} k/tree), depth {int(packed.tree_depths.max())}; "
        f"packed in {pack.seconds:.2f} s; .npz {size_mb:.1f} MB, loaded in {load.seconds:.3f} s"
    )
    # Compile (once per process and dtype) outside the timings.
    _, compile_step = measure(lambda: loaded.predict(X[:1000], with_std=True, n_threads=threads))
    print(
        f"engine warm-up (numba compile on first use in the process): {compile_step.seconds:.1f} s"
    )

    Xt, yt = test
    pred = loaded.predict(Xt, n_threads=threads).astype(np.float64)
    err = pred - yt
    rmse, bias, r = (
        float(np.sqrt(np.mean(err**2))),
        float(err.mean()),
        float(np.corrcoef(pred, yt)[0, 1]),
    )
    print(
        f"held-out accuracy ({len(yt):,} rows vs truth): RMSE {rmse:.4f} m3/m3, bias {bias:+.5f}, R {r:.4f}"
    )

    n_ref = min(reference_rows, X.shape[0])
    Xr = X[:n_ref]
    sk_mean, sk_step = measure(
        lambda: predict_reference(rf, Xr, with_std=False, n_jobs=threads), repeats=repeats
    )
    (ref_mean, ref_std), skstd_step = measure(
        lambda: predict_reference(rf, Xr, with_std=True, n_jobs=threads), repeats=repeats
    )
    sk_rate = n_ref / sk_step.seconds

    header = (
        f"{'rows':>11}  {'engine':<44} {'rows/s':>10} {'x sklearn':>9} {'CPU s':>7} "
        f"{'x (CPU)':>7} {'max|dmean|':>10} {'max|dstd|':>10} {'peak RSS MB':>11} {'(+step)':>8}"
    )
    print(header)
    print("-" * len(header))

    def line(rows: int, name: str, step: Step, *, measured: bool, dm: str, ds: str) -> None:
        scale = 1.0 if measured else rows / n_ref
        seconds, cpu = step.seconds * scale, step.cpu_seconds * scale
        peak = (
            f"{step.peak_mb:11.0f} {step.peak_mb - step.start_mb:+8.0f}"
            if measured
            else f"{'n/a':>11} {'':>8}"
        )
        print(
            f"{rows:>11,}  {name:<44} {fmt_rate(rows, seconds):>10} "
            f"{sk_step.seconds * rows / n_ref / seconds:9.2f} {cpu:7.2f} "
            f"{sk_step.cpu_seconds * rows / n_ref / cpu:7.2f} {dm:>10} {ds:>10} {peak}"
        )

    for rows in rows_list:
        Xn = X[:rows]
        extrapolated = rows > n_ref
        sk_seconds = sk_step.seconds * rows / n_ref
        tag = f" (x{rows / n_ref:g} of {n_ref / 1e6:g} M)" if extrapolated else ""
        line(rows, "sklearn predict" + tag, sk_step, measured=not extrapolated, dm="ref", ds="-")
        line(
            rows,
            "sklearn mean+std, estimators" + tag,
            skstd_step,
            measured=not extrapolated,
            dm=f"{maxdiff(ref_mean, sk_mean):.1e}",
            ds="ref",
        )

        def engine_mean(Xn: NDArray[np.float32] = Xn) -> NDArray[np.float32]:
            return loaded.predict(Xn, n_threads=threads)

        def engine_std(Xn: NDArray[np.float32] = Xn) -> tuple[NDArray[Any], NDArray[Any]]:
            return loaded.predict(Xn, with_std=True, n_threads=threads)

        mean, m_step = measure(engine_mean, repeats=repeats)
        dm = f"{maxdiff(mean[:n_ref], sk_mean):.1e}"
        line(rows, "packed mean", m_step, measured=True, dm=dm, ds="-")
        del mean
        (mean2, std2), s_step = measure(engine_std, repeats=repeats)
        dm2 = f"{maxdiff(mean2[:n_ref], sk_mean):.1e}"
        ds2 = f"{maxdiff(std2[:n_ref], ref_std):.1e}"
        line(rows, "packed mean+std", s_step, measured=True, dm=dm2, ds=ds2)
        del mean2, std2
        summary.append(
            f"depth {depth:>2} leaf {leaf:>2} {rows:>11,} rows: sklearn {sk_rate / 1e6:.3f} M rows/s"
            f"{' (extrapolated)' if extrapolated else ''}, packed {rows / m_step.seconds / 1e6:.3f} "
            f"M rows/s = {sk_seconds / m_step.seconds:.1f}x (CPU time: "
            f"{sk_step.cpu_seconds * rows / n_ref / m_step.cpu_seconds:.1f}x), with std {rows / s_step.seconds / 1e6:.3f} "
            f"M rows/s = {s_step.seconds / m_step.seconds:.2f}x the mean alone's time "
            f"(CPU time: {s_step.cpu_seconds / m_step.cpu_seconds:.2f}x) "
            f"(sklearn's std via estimators: {skstd_step.seconds / sk_step.seconds:.2f}x); "
            f".npz {size_mb:.1f} MB; RMSE {rmse:.4f}"
        )
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1000000,10000000", help="comma-separated row counts")
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--train-rows", type=int, default=200_000)
    parser.add_argument("--test-rows", type=int, default=200_000)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--reference-rows", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--repeats", type=int, default=2, help="runs of each timed step; the best is reported"
    )
    parser.add_argument(
        "--forests",
        default="16:5,12:20",
        help="comma-separated max_depth:min_samples_leaf pairs",
    )
    parser.add_argument("--out-dir", type=Path, default=None, help="where the .npz files go")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.quick:
        rows_list = [100_000]
        args.train_rows, args.test_rows, args.trees, args.reference_rows = (
            30_000,
            20_000,
            20,
            50_000,
        )
    else:
        rows_list = [int(r) for r in args.rows.split(",")]
    forests = [tuple(int(v) for v in f.split(":")) for f in args.forests.split(",")]

    print(
        f"smapds forest inference benchmark — {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
        f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, numba {numba.__version__} "
        f"(threading layer chosen at first use); {args.threads} threads"
    )
    print(
        f"training rows {args.train_rows:,} (seed {args.seed}), held-out rows {args.test_rows:,}, "
        f"prediction rows {max(rows_list):,} float32 x {len(FEATURES)} features "
        f"({max(rows_list) * len(FEATURES) * 4 / 1e6:.0f} MB); sklearn timed on "
        f"{min(args.reference_rows, max(rows_list)):,} rows; best of {args.repeats} runs per step"
    )
    train = make_features(args.train_rows, seed=args.seed)
    test = make_features(args.test_rows, seed=args.seed + 1)
    X = make_rows(max(rows_list), seed=args.seed + 2)
    with tempfile.TemporaryDirectory(prefix="smapds-bench-model-") as tmp:
        out_dir = args.out_dir or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        summary: list[str] = []
        for depth, leaf in forests:
            summary += bench_forest(
                depth=depth,
                leaf=leaf,
                n_trees=args.trees,
                train=train,
                test=test,
                X=X,
                rows_list=rows_list,
                reference_rows=args.reference_rows,
                threads=args.threads,
                repeats=args.repeats,
                out_dir=out_dir,
            )
    layer = numba.threading_layer()  # type: ignore[attr-defined,unused-ignore]
    print(f"\nthreading layer: {layer}; load average {os.getloadavg()[0]:.2f} at end")
    print("summary:")
    for s in summary:
        print("  " + s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
