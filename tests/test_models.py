"""Coarse training samples, the four learners with blocked CV, and downscaling a day (mass
conservation, gap filling, QA) on the synthetic world."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import xarray as xr
from world_catalog import world_catalog as _catalog

from etl.grid import block_mean, get_domain
from etl.stack import DailyStack, InputNames, StalenessLimits, build_stack
from etl.static import SOIL_PROPERTIES, static_layers
from models.downscale import (
    QA_CORRECTED,
    QA_DEGRADED,
    QA_GAP_FILLED,
    QA_NO_DATA,
    QA_RESIDUAL_INTERPOLATED,
    downscale,
)
from models.evaluate import block_ids, compare, temporal_split
from models.samples import CoarseSamples, coarse_samples, concat

DEMO = get_domain("demo")
DAYS = [date(2024, 4, 1) + timedelta(days=i) for i in range(8)]
TINY = {
    "rf": {"n_estimators": 20, "max_depth": 8},
    "xgb": {"n_estimators": 40},
    "mlp": {"max_iter": 60, "hidden_layer_sizes": (16,)},
    "hgb": {"max_iter": 40},
}


@pytest.fixture(scope="module")
def stacks(demo_world: Path, tmp_path_factory: pytest.TempPathFactory) -> list[DailyStack]:
    soil = {p: demo_world / "soilgrids" / p / f"{p}_0-5cm_mean.tif" for p in SOIL_PROPERTIES}
    static = static_layers(
        DEMO,
        soil=soil,
        dem=demo_world / "dem" / "synthetic_dem_0.0025deg.tif",
        cache_dir=tmp_path_factory.mktemp("static"),
    )
    catalog = _catalog(demo_world)
    return [
        build_stack(
            d,
            domain=DEMO,
            catalog=catalog,
            static=static,
            names=InputNames(),
            limits=StalenessLimits(albedo=16, et=16, precip_missing_days=7),
            on_stale="degrade",
            prefer="AM",
        )
        for d in DAYS
    ]


@pytest.fixture(scope="module")
def samples(stacks: list[DailyStack]) -> CoarseSamples:
    return concat([coarse_samples(s, min_land_fraction=0.5) for s in stacks])


def test_samples_are_land_means_of_the_features_against_valid_retrievals(
    stacks: list[DailyStack], tmp_path: Path
) -> None:
    stack = stacks[2]
    s = coarse_samples(stack, min_land_fraction=0.5)
    assert stack.coarse36 is not None and len(s) > 20
    sm = stack.coarse36["soil_moisture"].values
    np.testing.assert_array_equal(s.y, sm[s.row36, s.col36])
    i = 0
    r, c = int(s.row36[i]), int(s.col36[i])
    albedo = stack.features["albedo"].values[r * 36 : (r + 1) * 36, c * 36 : (c + 1) * 36]
    land = stack.land[r * 36 : (r + 1) * 36, c * 36 : (c + 1) * 36]
    assert s.X[i, 0] == pytest.approx(np.nanmean(albedo[land]), rel=1e-5)
    assert np.isfinite(s.X).all() and (s.day == np.datetime64(stack.day)).all()
    s.save(tmp_path / "day.npz")
    again = CoarseSamples.load(tmp_path / "day.npz")
    np.testing.assert_array_equal(again.X, s.X)
    assert again.feature_names == s.feature_names


def test_the_four_models_are_compared_with_spatially_blocked_folds(samples: CoarseSamples) -> None:
    train, hold = temporal_split(samples, holdout_fraction=0.25)
    assert train.day.max() < hold.day.min()
    scores = compare(
        samples,
        models=["rf", "xgb", "mlp", "hgb"],
        params=TINY,
        block=3,
        n_splits=4,
        holdout_fraction=0.25,
        seed=1,
        n_jobs=1,
    )
    assert [s.model for s in scores] == ["rf", "xgb", "mlp", "hgb"]
    for s in scores:
        assert s.cv.status == "OK" and s.cv.n == len(train)
        assert np.isfinite([s.cv.r, s.cv.rmse, s.holdout.rmse]).all()
    rf = scores[0]
    assert rf.cv.r > 0.4 and rf.cv.rmse < 0.08


def test_blocked_folds_keep_each_block_on_one_side(samples: CoarseSamples) -> None:
    from sklearn.model_selection import GroupKFold

    groups = block_ids(samples, block=3)
    for train, test in GroupKFold(n_splits=4).split(samples.X, samples.y, groups):
        assert not set(groups[train]) & set(groups[test])


def _forest_predictor(samples: CoarseSamples):  # type: ignore[no-untyped-def]
    from sklearn.ensemble import RandomForestRegressor

    rf = RandomForestRegressor(n_estimators=30, max_depth=10, min_samples_leaf=3, random_state=0)
    rf.fit(samples.X, samples.y)

    def predict(x: npt.NDArray[np.float32]) -> tuple[np.ndarray, np.ndarray]:
        trees = np.stack([t.predict(x) for t in rf.estimators_])
        return trees.mean(axis=0).astype(np.float32), trees.std(axis=0).astype(np.float32)

    return predict


def test_downscaling_conserves_each_valid_coarse_cell_and_marks_every_pixel(
    stacks: list[DailyStack], samples: CoarseSamples
) -> None:
    stack = stacks[-1]
    out = downscale(
        stack, _forest_predictor(samples), bounds=(0.02, 0.5), interpolate_residuals=False
    )
    sm, qa = out.soil_moisture, out.qa
    assert stack.coarse36 is not None
    coarse = stack.coarse36["soil_moisture"].values
    agg, n = block_mean(sm, 36)
    cells = np.isfinite(coarse) & (n > 0)
    assert cells.sum() > 20
    assert np.abs(agg[cells] - coarse[cells]).max() < 1e-5  # exact up to float32 rounding
    assert out.stats["conservation_max_abs_error"] < 1e-5
    has = np.isfinite(sm)
    assert np.all((qa[has] & (QA_CORRECTED | QA_GAP_FILLED)) > 0)
    assert not np.any((qa & QA_CORRECTED) & (qa & QA_GAP_FILLED))
    assert np.all(qa[~has] & QA_NO_DATA) and np.all(qa[~stack.land] & QA_NO_DATA)
    assert np.nanmin(sm) >= 0.02 and np.nanmax(sm) <= 0.5
    assert np.all(out.uncertainty[has] >= 0)
    gap_cells = ~np.isfinite(coarse)
    if gap_cells.any():
        r, c = np.argwhere(gap_cells)[0]
        block = qa[r * 36 : (r + 1) * 36, c * 36 : (c + 1) * 36]
        assert np.all((block & QA_GAP_FILLED) | (block & QA_NO_DATA))


def test_clipping_gives_the_mass_back_to_the_cell() -> None:
    from models.downscale import _clip_conserving

    sm = np.full((36, 36), 0.30)
    sm[0, :10] = 0.70  # ten pixels above the bound
    mask = np.ones_like(sm, bool)
    out = _clip_conserving(sm, mask, lo=0.02, hi=0.5, factor=36)
    assert out.max() <= 0.5 + 1e-12
    assert out.mean() == pytest.approx(sm.mean(), abs=1e-12)


def test_gap_cells_can_take_interpolated_residuals(
    stacks: list[DailyStack], samples: CoarseSamples
) -> None:
    stack = stacks[-1]
    assert stack.coarse36 is not None
    holed = stack.coarse36.copy(deep=True)
    holed["soil_moisture"].values[4:6, 5:7] = np.nan
    gappy = DailyStack(
        stack.day,
        stack.domain,
        stack.features,
        stack.land,
        holed,
        None,
        stack.inputs,
        stack.staleness_days,
        ("albedo is 20 days old (limit 16)",),
    )
    out = downscale(
        gappy, _forest_predictor(samples), bounds=(0.02, 0.5), interpolate_residuals=True
    )
    hole = out.qa[4 * 36 : 6 * 36, 5 * 36 : 7 * 36]
    has = np.isfinite(out.soil_moisture[4 * 36 : 6 * 36, 5 * 36 : 7 * 36])
    assert has.sum() > 1000 and np.all(hole[has] & QA_RESIDUAL_INTERPOLATED)
    assert np.all(out.qa[np.isfinite(out.soil_moisture)] & QA_DEGRADED)
    assert out.stats["degraded"] is True


def test_truth_is_better_matched_than_by_the_coarse_field_alone(
    demo_world: Path, stacks: list[DailyStack], samples: CoarseSamples
) -> None:
    """A smoke check of skill at 1 km on the last day (trained on all 8; the OSSE benchmark
    script measures held-out skill over a long world)."""
    stack = stacks[-1]
    out = downscale(
        stack, _forest_predictor(samples), bounds=(0.02, 0.5), interpolate_residuals=True
    )
    truth_file = next((demo_world / "truth").glob("truth_1km_*.nc"))
    with xr.open_dataset(truth_file) as t:
        var = next(v for v in t.data_vars if t[v].ndim == 3)
        truth = t[var].sel(time=np.datetime64(stack.day)).values
    assert stack.coarse36 is not None
    from etl.grid import block_expand

    flat = block_expand(stack.coarse36["soil_moisture"].values, 36)
    ok = np.isfinite(out.soil_moisture) & np.isfinite(truth) & np.isfinite(flat)
    rmse_ds = np.sqrt(np.mean((out.soil_moisture[ok] - truth[ok]) ** 2))
    rmse_flat = np.sqrt(np.mean((flat[ok] - truth[ok]) ** 2))
    assert rmse_ds < rmse_flat


def test_the_network_sees_precipitation_through_log1p_and_the_rest_unchanged() -> None:
    from etl.stack import FEATURE_NAMES
    from models.learners import make_model

    pipeline = make_model("mlp", seed=0, n_jobs=1)
    transform = pipeline.steps[0][1]  # type: ignore[attr-defined]
    x = np.arange(3 * len(FEATURE_NAMES), dtype=np.float32).reshape(3, -1)
    out = transform.fit_transform(x)
    precip = [k for k, n in enumerate(FEATURE_NAMES) if n.startswith("precip")]
    assert precip and len(precip) == 3
    others = [k for k in range(len(FEATURE_NAMES)) if k not in precip]
    np.testing.assert_array_equal(out[:, others], x[:, others])
    np.testing.assert_allclose(out[:, precip], np.log1p(x[:, precip]), rtol=1e-6)
    plain = {"log_precipitation": False, "clip_to_training_range": False}
    assert make_model("mlp", plain, seed=0, n_jobs=1).steps[0][0] == "standardscaler"  # type: ignore[attr-defined]


def test_the_network_sees_inputs_beyond_the_training_range_as_its_edge() -> None:
    """Past the training days (day of year) or beyond the wettest day seen, the network would
    extrapolate its fitted curve; clipped, it answers as at the edge of what it learned."""
    from etl.stack import FEATURE_NAMES
    from models.learners import make_model

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (400, len(FEATURE_NAMES))).astype(np.float32)
    y = (0.1 + 0.3 * x[:, 0] + 0.05 * x[:, 1]).astype(np.float32)
    model = make_model("mlp", {"max_iter": 200}, seed=0, n_jobs=1)
    model.fit(x, y)
    edge, beyond = x[:5].copy(), x[:5].copy()
    edge[:, 0], beyond[:, 0] = x[:, 0].max(), 5.0
    np.testing.assert_array_equal(model.predict(beyond), model.predict(edge))
    unclipped = make_model(
        "mlp", {"max_iter": 200, "clip_to_training_range": False}, seed=0, n_jobs=1
    )
    unclipped.fit(x, y)
    assert not np.allclose(unclipped.predict(beyond), unclipped.predict(edge), atol=1e-3)
