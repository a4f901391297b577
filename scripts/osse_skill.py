"""OSSE skill at 1 km on the synthetic world: the downscaler against the known truth.

Trains the four learners on the first days of a synthetic world (coarse samples, as `smapds train`
does), downscales the held-out last days with each (residual correction + gap filling, as
`smapds produce` does), and prints, against the 1 km truth: RMSE, R, bias, ubRMSE of the downscaled
map, of bilinear interpolation of the coarse retrieval, and of the flat coarse retrieval. Also the
ceiling of any model's R against the noisy retrieval at 36 km (R of the truth's block mean against
the retrieval itself).

    .venv/bin/python scripts/osse_skill.py --world var/synthetic --train-days 90 [--models rf]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import xarray as xr
from affine import Affine

from etl.errors import SmapdsError
from etl.grid import block_expand, block_mean, get_domain
from etl.regrid import RasterSource, regrid
from etl.sources.local import LocalDirectorySource
from etl.stack import ArchivedFile, InputNames, StalenessLimits, build_stack
from etl.static import SOIL_PROPERTIES, static_layers
from models.downscale import downscale
from models.learners import MODEL_NAMES, make_model
from models.metrics import pair_stats
from models.samples import coarse_samples, concat
from service.sources import SYNTHETIC_DEFAULTS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=Path, required=True)
    ap.add_argument("--train-days", type=int, default=90)
    ap.add_argument("--models", default=",".join(MODEL_NAMES))
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
        trees = getattr(model, "estimators_", None)

        def predict(x: np.ndarray, model=model, trees=trees) -> tuple[np.ndarray, np.ndarray]:
            if trees is not None:
                from models.forest import PackedForest

                return PackedForest.from_sklearn(model).predict(x, with_std=True)
            m = np.asarray(model.predict(x), np.float32)
            return m, np.zeros_like(m)

        results[name] = []
        for d in test_days:
            out = downscale(stacks[d], predict, bounds=(0.02, 0.5), interpolate_residuals=True)
            results[name].append(out.soil_moisture)
    for d in test_days:
        truths.append(truth[var].sel(time=np.datetime64(d)).values)
    baselines: dict[str, list[np.ndarray]] = {"coarse, bilinear": [], "coarse, flat": []}
    for d in test_days:
        c = stacks[d].coarse36
        sm36 = (
            c["soil_moisture"].values if c is not None else np.full(domain.shape(36), np.nan)
        ).astype(np.float32)
        baselines["coarse, flat"].append(block_expand(sm36, 36).astype(np.float32))
        t36 = domain.transform(36)
        baselines["coarse, bilinear"].append(
            regrid(RasterSource(sm36, Affine(*t36[:6]), "EPSG:6933"), domain, method="bilinear")
        )
    print(
        f"\nheld-out days {test_days[0]}..{test_days[-1]} ({len(test_days)}), against the "
        "1 km truth, pixels where every method has a value:"
    )
    maps = {**{f"downscaled {k}": v for k, v in results.items()}, **baselines}
    common = [
        np.all([np.isfinite(m[i]) for m in maps.values()], axis=0) & np.isfinite(truths[i])
        for i in range(len(test_days))
    ]
    print(f"{'method':<22}{'n':>10}{'R':>8}{'RMSE':>9}{'bias':>9}{'ubRMSE':>9}")
    for label, series in maps.items():
        est = np.concatenate([series[i][common[i]] for i in range(len(test_days))])
        ref_ = np.concatenate([truths[i][common[i]] for i in range(len(test_days))])
        s = pair_stats(est, ref_, min_n=30)
        print(f"{label:<22}{s.n:>10}{s.r:>8.3f}{s.rmse:>9.4f}{s.bias:>+9.4f}{s.ubrmse:>9.4f}")


if __name__ == "__main__":
    main()
