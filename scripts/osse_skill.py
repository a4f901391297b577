"""OSSE skill at 1 km on the synthetic world: the downscaler against the known truth.

Trains the four learners on the first days of a synthetic world (coarse samples, as `smapds train`
does), downscales the held-out last days with each (residual correction + gap filling, as
`smapds produce` does), and prints, against the 1 km truth: RMSE, R, bias, ubRMSE of the downscaled
map, of bilinear interpolation of the coarse retrieval, and of the flat coarse retrieval. Also the
ceiling of any model's R against the noisy retrieval at 36 km (R of the truth's block mean against
the retrieval itself).

With ``--lag`` it also measures a random forest with one more predictor, the soil moisture memory:
the latest valid 36 km retrieval of the pixel's cell in the 5 days before the day (the domain mean
where there is none), and reports the skill separately on pixels whose cell had a valid retrieval
that day (corrected) and on gap-filled pixels, where memory can matter.

    .venv/bin/python scripts/osse_skill.py --world var/synthetic --train-days 90 [--models rf] [--lag]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import xarray as xr

from etl.errors import SmapdsError
from etl.grid import block_expand, block_mean, get_domain
from etl.sources.local import LocalDirectorySource
from etl.stack import ArchivedFile, DailyStack, InputNames, StalenessLimits, build_stack
from etl.static import SOIL_PROPERTIES, static_layers
from models.downscale import downscale
from models.learners import MODEL_NAMES, make_model
from models.metrics import pair_stats
from models.samples import coarse_samples, concat
from models.truth_skill import bilinear_map, learner_predictor
from service.sources import SYNTHETIC_DEFAULTS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=Path, required=True)
    ap.add_argument("--train-days", type=int, default=90)
    ap.add_argument("--models", default=",".join(MODEL_NAMES))
    ap.add_argument("--lag", action="store_true", help="also an RF with the lagged retrieval")
    args = ap.parse_args()
    meta = json.loads((args.world / "manifest.json").read_text())
    domain = get_domain(meta["domain"]["name"])
    start = date.fromisoformat(meta["start"])
    days = [start + timedelta(days=i) for i in range(int(meta["days"]))]
    sources = {
        n: LocalDirectorySource(n, args.world, c.pattern or "", composite_days=c.composite_days)
        for n, c in SYNTHETIC_DEFAULTS.items()
    }

    def catalog(source: str, day: date) -> list[ArchivedFile]:
        return [
            ArchivedFile(source, g.granule_id, g.day, Path(g.url.removeprefix("file://")), "-")
            for g in sources[source].discover(day)
            if g.day == day
        ]

    soil = {p: args.world / "soilgrids" / p / f"{p}_0-5cm_mean.tif" for p in SOIL_PROPERTIES}
    static = static_layers(
        domain,
        soil=soil,
        dem=args.world / "dem" / "synthetic_dem_0.0025deg.tif",
        cache_dir=args.world.parent / "osse-cache",
    )
    t0 = time.perf_counter()
    stacks = {}
    for d in days:
        try:
            stacks[d] = build_stack(
                d,
                domain=domain,
                catalog=catalog,
                static=static,
                names=InputNames(),
                limits=StalenessLimits(16, 16, 7),
                on_stale="degrade",
                prefer="AM",
            )
        except SmapdsError as err:  # a day that cannot be built is reported
            print(f"{d}: skipped ({err})")
    print(f"built {len(stacks)} stacks in {time.perf_counter() - t0:.0f} s")
    train_days = [d for d in days[: args.train_days] if d in stacks]
    test_days = [d for d in days[args.train_days :] if d in stacks]
    samples = concat([coarse_samples(stacks[d], min_land_fraction=0.5) for d in train_days])
    truth_file = next((args.world / "truth").glob("truth_1km_*.nc"))
    truth = xr.open_dataset(truth_file)
    var = next(v for v in truth.data_vars if truth[v].ndim == 3)

    # ceiling: R of the 36 km truth against the retrieval itself (noise limits every model)
    obs, ref = [], []
    for d in train_days:
        c = stacks[d].coarse36
        if c is None:
            continue
        t36, _ = block_mean(truth[var].sel(time=np.datetime64(d)).values, 36)
        obs.append(c["soil_moisture"].values.ravel())
        ref.append(t36.ravel())
    ceiling = pair_stats(np.concatenate(obs), np.concatenate(ref), min_n=30)
    print(
        f"{len(samples)} training samples; retrieval vs 36 km truth: R {ceiling.r:.3f}, "
        f"RMSE {ceiling.rmse:.4f} (the ceiling of R against the retrieval)"
    )

    results: dict[str, list[np.ndarray]] = {}
    truths: list[np.ndarray] = []
    for name in args.models.split(","):
        model = make_model(name, None, seed=0, n_jobs=2)
        model.fit(samples.X, samples.y)
        predict = learner_predictor(model)
        results[name] = []
        for d in test_days:
            out = downscale(stacks[d], predict, bounds=(0.02, 0.5), interpolate_residuals=True)
            results[name].append(out.soil_moisture)
    if args.lag:
        lags = {d: _lag_field(stacks, d, domain) for d in days if d in stacks}
        lag_x = np.concatenate(
            [
                lags[d][
                    samples.row36[samples.day == np.datetime64(d)],
                    samples.col36[samples.day == np.datetime64(d)],
                ]
                for d in train_days
            ]
        )
        order = np.concatenate(
            [np.flatnonzero(samples.day == np.datetime64(d)) for d in train_days]
        )
        x_lag = np.column_stack([samples.X[order], lag_x]).astype(np.float32)
        model = make_model("rf", None, seed=0, n_jobs=2)
        model.fit(x_lag, samples.y[order])
        from models.forest import PackedForest

        packed = PackedForest.from_sklearn(model)
        results["rf + lag"] = []
        for d in test_days:
            stack = _WithLag(
                **{f.name: getattr(stacks[d], f.name) for f in dataclasses.fields(DailyStack)}
            )
            object.__setattr__(stack, "lag", block_expand(lags[d], 36).astype(np.float32))
            out = downscale(
                stack,
                lambda x, p=packed: p.predict(x, with_std=True),
                bounds=(0.02, 0.5),
                interpolate_residuals=True,
            )
            results["rf + lag"].append(out.soil_moisture)
    gap_cells = []
    for d in test_days:
        truths.append(truth[var].sel(time=np.datetime64(d)).values)
        c = stacks[d].coarse36
        valid36 = (
            np.isfinite(c["soil_moisture"].values)
            if c is not None
            else np.zeros(domain.shape(36), bool)
        )
        gap_cells.append(~block_expand(valid36, 36).astype(bool))
    baselines: dict[str, list[np.ndarray]] = {"coarse, bilinear": [], "coarse, flat": []}
    for d in test_days:
        c = stacks[d].coarse36
        sm36 = (
            c["soil_moisture"].values if c is not None else np.full(domain.shape(36), np.nan)
        ).astype(np.float32)
        baselines["coarse, flat"].append(block_expand(sm36, 36).astype(np.float32))
        baselines["coarse, bilinear"].append(bilinear_map(stacks[d]))
    print(
        f"\nheld-out days {test_days[0]}..{test_days[-1]} ({len(test_days)}), against the "
        "1 km truth, pixels where every method has a value:"
    )
    maps = {**{f"downscaled {k}": v for k, v in results.items()}, **baselines}
    common = [
        np.all([np.isfinite(m[i]) for m in maps.values()], axis=0) & np.isfinite(truths[i])
        for i in range(len(test_days))
    ]
    downscaled = {k: v for k, v in maps.items() if k.startswith("downscaled")}
    filled = [
        np.all([np.isfinite(m[i]) for m in downscaled.values()], axis=0)
        & np.isfinite(truths[i])
        & gap_cells[i]
        for i in range(len(test_days))
    ]
    for part, select, shown in (
        ("cells with a valid retrieval (every method has a value)", lambda i: common[i], maps),
        (
            "cells without one: gap-filled (no coarse value to compare)",
            lambda i: filled[i],
            downscaled,
        ),
    ):
        print(f"\n{part}")
        print(f"{'method':<22}{'n':>10}{'R':>8}{'RMSE':>9}{'bias':>9}{'ubRMSE':>9}")
        for label, series in shown.items():
            est = np.concatenate([series[i][select(i)] for i in range(len(test_days))])
            ref_ = np.concatenate([truths[i][select(i)] for i in range(len(test_days))])
            s = pair_stats(est, ref_, min_n=30)
            print(f"{label:<22}{s.n:>10}{s.r:>8.3f}{s.rmse:>9.4f}{s.bias:>+9.4f}{s.ubrmse:>9.4f}")


@dataclasses.dataclass(frozen=True)
class _WithLag(DailyStack):
    """A day's stack with the lagged retrieval as a thirteenth predictor (the experiment only)."""

    def feature_matrix(self, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        lag: np.ndarray = object.__getattribute__(self, "lag")
        return np.concatenate([super().feature_matrix(rows, cols), lag[rows, cols, None]], axis=-1)


def _lag_field(stacks: dict[date, DailyStack], day: date, domain: object) -> np.ndarray:
    """The latest valid 36 km retrieval of each cell in the 5 days before ``day``; the mean of
    those values where a cell has none (and 0.25 if the whole window is empty)."""
    out: np.ndarray | None = None
    for back in range(5, 0, -1):  # oldest first, newer values overwrite
        s = stacks.get(day - timedelta(days=back))
        if s is None or s.coarse36 is None:
            continue
        v = s.coarse36["soil_moisture"].values.astype(np.float64)
        out = v.copy() if out is None else np.where(np.isfinite(v), v, out)
    if out is None:
        shape = next(iter(stacks.values())).domain.shape(36)
        return np.full(shape, 0.25)
    fill = np.nanmean(out) if np.isfinite(out).any() else 0.25
    return np.where(np.isfinite(out), out, fill)


if __name__ == "__main__":
    main()
