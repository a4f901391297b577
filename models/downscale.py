"""Downscaling a day: predict 1 km soil moisture, correct it to the coarse retrieval, fill the gaps.

1. The frozen model predicts every land pixel whose covariates are all known (mean and the spread
   of the trees as per-pixel uncertainty).
2. Residual correction (mass conservation): in each 36 km cell with a valid retrieval, the cell's
   residual ``retrieval - mean(prediction over the cell's predicted pixels)`` is added to its pixels,
   so the mean of the 1 km map over the cell equals the retrieval (up to float rounding). Water and
   pixels without covariates are outside the mean on both sides. This is the standard correction of
   the downscaling literature (e.g. Merlin et al. 2008; the "residual correction" step of RF
   downscaling studies such as Ma et al. 2026).
3. Clipping to the physical bounds, then the clipped mass is given back to the cell's unclipped
   pixels (a few passes), so conservation survives clipping wherever it is possible at all.
4. Gap filling: where the retrieval is missing or flagged, the model's prediction stands; with
   ``interpolate_residuals`` the residual is interpolated from the nearest valid cells
   (inverse-distance over up to 8 cells within ``max_distance_cells``) and added.

The QA band says which case each pixel is (bits below).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from etl.grid import block_expand, block_mean, nesting_factor
from etl.stack import DailyStack
from models.metrics import pair_stats

QA_CORRECTED: Final = 1  # corrected to a valid coarse retrieval
QA_GAP_FILLED: Final = 2  # no valid retrieval in the 36 km cell: model prediction
QA_CLIPPED: Final = 4  # value was clipped to the physical bounds
QA_DEGRADED: Final = 8  # an input was staler than its limit
QA_NO_DATA: Final = 16  # water, or a covariate is unknown: no value
QA_RESIDUAL_INTERPOLATED: Final = 32  # gap filled with a residual interpolated from neighbours
QA_BITS: Final = {
    "corrected": QA_CORRECTED,
    "gap_filled": QA_GAP_FILLED,
    "clipped": QA_CLIPPED,
    "degraded": QA_DEGRADED,
    "no_data": QA_NO_DATA,
    "residual_interpolated": QA_RESIDUAL_INTERPOLATED,
}

FloatMap = npt.NDArray[np.float32]
Predictor = Callable[
    [npt.NDArray[np.float32]], tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]
]
"""Features (n, F) float32 -> (mean, standard deviation across trees), both (n,) float32."""


@dataclass(frozen=True)
class Downscaled:
    soil_moisture: FloatMap
    uncertainty: FloatMap
    qa: npt.NDArray[np.uint8]
    stats: dict[str, Any] = field(default_factory=dict)
    prediction: FloatMap | None = None
    """The model's own prediction before correction and clipping (NaN where no value)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of the steps (predict, correct); kept out of ``stats``, which go into files."""


Runner = Callable[[Callable[..., Any], Iterable[tuple[Any, ...]], tuple[Any, ...]], list[Any]]
"""Runs ``fn(*item, *shared)`` for every item and returns the results in order: in this process
(:func:`run_here`) or on a Dask cluster (service/tiles.py). ``shared`` is the same for every call
(the model), so a cluster can ship it to each worker once."""


def run_here(
    fn: Callable[..., Any], items: Iterable[tuple[Any, ...]], shared: tuple[Any, ...]
) -> list[Any]:
    return [fn(*item, *shared) for item in items]


def tiles(shape: tuple[int, int], factor: int, tile_cells: int) -> list[tuple[slice, slice]]:
    """Pixel windows of ``tile_cells`` x ``tile_cells`` coarse cells covering ``shape`` (the last
    row and column of tiles may be smaller); edges fall on coarse cell edges."""
    if tile_cells < 1:
        raise ValueError(f"tile_cells must be at least 1, got {tile_cells}")
    step = tile_cells * factor
    return [
        (slice(r, min(r + step, shape[0])), slice(c, min(c + step, shape[1])))
        for r in range(0, shape[0], step)
        for c in range(0, shape[1], step)
    ]


def _predict_tile(
    x: npt.NDArray[np.float32], land: npt.NDArray[np.bool_], factor: int, predict: Predictor
) -> tuple[FloatMap, FloatMap, npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Prediction and spread of a tile's land pixels, and its coarse cell means and counts."""
    valid = land & np.all(np.isfinite(x), axis=-1)
    pred = np.full(land.shape, np.nan, np.float32)
    unc = np.full(land.shape, np.nan, np.float32)
    if valid.any():
        mean, std = predict(np.ascontiguousarray(x[valid]))
        pred[valid], unc[valid] = mean, std
    cell_mean, count = block_mean(pred.astype(np.float64), factor)
    return pred, unc, cell_mean, count


def _correct_tile(
    pred: FloatMap,
    residual: npt.NDArray[np.float64],
    has_obs: npt.NDArray[np.bool_],
    interp: npt.NDArray[np.bool_],
    factor: int,
    bounds: tuple[float, float],
    degraded: bool,
) -> tuple[FloatMap, npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """Residual correction, gap filling, conserving clipping and QA of one tile."""
    valid = np.isfinite(pred)
    qa = np.zeros(pred.shape, np.uint8)
    corrected = block_expand(has_obs, factor) & valid
    qa[block_expand(interp, factor) & valid] |= QA_RESIDUAL_INTERPOLATED
    sm = pred.astype(np.float64) + np.nan_to_num(block_expand(residual, factor), nan=0.0)
    qa[corrected] |= QA_CORRECTED
    qa[valid & ~corrected] |= QA_GAP_FILLED
    lo, hi = bounds
    clipped = valid & ((sm < lo) | (sm > hi))
    sm = _clip_conserving(sm, valid & corrected, lo=lo, hi=hi, factor=factor)
    sm = np.clip(sm, lo, hi)  # gap-filled pixels: plain clipping (no retrieval to conserve)
    qa[clipped] |= QA_CLIPPED
    if degraded:
        qa[valid] |= QA_DEGRADED
    qa[~valid] |= QA_NO_DATA
    sm[~valid] = np.nan
    return sm.astype(np.float32), qa, valid


def downscale(
    stack: DailyStack,
    predict: Predictor,
    *,
    bounds: tuple[float, float],
    interpolate_residuals: bool,
    max_distance_cells: float = 3.0,
    tile_cells: int = 32,
    run: Runner = run_here,
) -> Downscaled:
    """The 1 km map of the stack's day (see the module docstring), tile by tile.

    Tiles are ``tile_cells`` coarse cells square, so a cell never straddles two; prediction and
    correction run per tile through ``run`` (here, or on a cluster), and only the coarse residual
    field (interpolated across tiles) is computed whole. The result does not depend on the tiling.
    """
    t0 = time.perf_counter()
    f = nesting_factor(36, 1)
    shape = stack.land.shape
    windows = tiles(shape, f, tile_cells)
    # one tile's features at a time (a generator): the whole matrix would double the memory
    parts = run(
        _predict_tile,
        ((stack.feature_matrix(rows, cols), stack.land[rows, cols], f) for rows, cols in windows),
        (predict,),
    )
    pred = np.full(shape, np.nan, np.float32)
    unc = np.full(shape, np.nan, np.float32)
    cell_mean = np.full(stack.domain.shape(36), np.nan)
    count = np.zeros(stack.domain.shape(36), np.int64)
    for (rows, cols), (p, u, m, n) in zip(windows, parts, strict=True):
        pred[rows, cols], unc[rows, cols] = p, u
        crows = slice(rows.start // f, rows.stop // f)
        ccols = slice(cols.start // f, cols.stop // f)
        cell_mean[crows, ccols], count[crows, ccols] = m, n
    del parts
    t1 = time.perf_counter()

    coarse = (
        stack.coarse36["soil_moisture"].values.astype(np.float64)
        if stack.coarse36 is not None
        else np.full(stack.domain.shape(36), np.nan)
    )
    has_obs = np.isfinite(coarse) & (count > 0)
    model_skill = pair_stats(cell_mean[has_obs], coarse[has_obs], min_n=10)
    residual = np.where(has_obs, coarse - cell_mean, np.nan)
    interp = np.zeros_like(has_obs)
    if interpolate_residuals and has_obs.any():
        filled = _interpolate(residual, has_obs, max_distance_cells=max_distance_cells)
        interp = ~has_obs & np.isfinite(filled)
        residual = np.where(interp, filled, residual)
    items = []
    for rows, cols in windows:
        crows = slice(rows.start // f, rows.stop // f)
        ccols = slice(cols.start // f, cols.stop // f)
        items.append(
            (pred[rows, cols], residual[crows, ccols], has_obs[crows, ccols], interp[crows, ccols])
        )
    corrected_parts = run(_correct_tile, items, (f, bounds, stack.degraded))
    out = np.full(shape, np.nan, np.float32)
    qa = np.full(shape, QA_NO_DATA, np.uint8)
    valid = np.zeros(shape, bool)
    for (rows, cols), (sm_t, qa_t, valid_t) in zip(windows, corrected_parts, strict=True):
        out[rows, cols], qa[rows, cols], valid[rows, cols] = sm_t, qa_t, valid_t
    stats = _stats(out, qa, stack, coarse, has_obs, f)
    stats.update(_uncertainty_summary(unc[valid]))
    # the honest skill figure: the model's own prediction, before correction, at 36 km
    stats.update(
        model_r=_finite(model_skill.r),
        model_rmse=_finite(model_skill.rmse),
        model_bias=_finite(model_skill.bias),
        model_n=model_skill.n,
    )
    seconds = {"predict": t1 - t0, "correct": time.perf_counter() - t1}
    return Downscaled(out, unc, qa, stats, prediction=pred, seconds=seconds)


def _clip_conserving(
    sm: npt.NDArray[np.float64],
    mask: npt.NDArray[np.bool_],
    *,
    lo: float,
    hi: float,
    factor: int,
    passes: int = 8,
) -> npt.NDArray[np.float64]:
    """Clip ``sm`` where ``mask``, giving each cell's clipped mass back to its unclipped pixels."""
    out = sm.copy()
    for _ in range(passes):
        before = np.where(mask, out, np.nan)
        after = np.clip(before, lo, hi)
        lost_sum, _ = block_mean(before - after, factor)  # mean over the cell's masked pixels
        if not np.any(np.nan_to_num(lost_sum) != 0.0):  # per cell: independent of tiling
            break
        free = mask & (after > lo) & (after < hi)
        n_all = block_mean(np.where(mask, 1.0, np.nan), factor)[1]
        n_free = block_mean(np.where(free, 1.0, np.nan), factor)[1]
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(n_free > 0, np.nan_to_num(lost_sum) * n_all / n_free, 0.0)
        out = np.where(mask, after, out) + np.where(free, block_expand(share, factor), 0.0)
    return out


def _interpolate(
    residual: npt.NDArray[np.float64], known: npt.NDArray[np.bool_], *, max_distance_cells: float
) -> npt.NDArray[np.float64]:
    """Inverse-distance residuals at unknown cells from up to 8 known cells nearby (else NaN)."""
    from scipy.spatial import cKDTree

    src = np.argwhere(known)
    dst = np.argwhere(~known)
    out = np.full(residual.shape, np.nan)
    if not len(src) or not len(dst):
        return out
    k = min(8, len(src))
    dist, idx = cKDTree(src).query(dst, k=k, distance_upper_bound=max_distance_cells)
    dist, idx = np.atleast_2d(dist.T).T, np.atleast_2d(idx.T).T
    values = residual[known]
    ok = np.isfinite(dist)
    w = np.where(ok, 1.0 / np.maximum(dist, 1e-6) ** 2, 0.0)
    v = np.where(ok, values[np.minimum(idx, len(values) - 1)], 0.0)
    wsum = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        est = np.where(wsum > 0, (w * v).sum(axis=1) / wsum, np.nan)
    out[dst[:, 0], dst[:, 1]] = est
    return out


def _uncertainty_summary(unc: FloatMap) -> dict[str, float | None]:
    """Distribution of the per-pixel uncertainty (m3/m3) over the predicted pixels."""
    unc = unc[np.isfinite(unc)]
    if not unc.size:
        return {"unc_mean": None, "unc_p10": None, "unc_p50": None, "unc_p90": None}
    p10, p50, p90 = np.percentile(unc.astype(np.float64), [10, 50, 90])
    return {
        "unc_mean": float(unc.mean(dtype=np.float64)),
        "unc_p10": float(p10),
        "unc_p50": float(p50),
        "unc_p90": float(p90),
    }


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _stats(
    sm: FloatMap,
    qa: npt.NDArray[np.uint8],
    stack: DailyStack,
    coarse: npt.NDArray[np.float64],
    has_obs: npt.NDArray[np.bool_],
    f: int,
) -> dict[str, Any]:
    land = int(stack.land.sum())
    has = np.isfinite(sm)
    values = sm[has]
    agg, _ = block_mean(sm, f)
    both = has_obs & np.isfinite(agg)
    diff = agg[both] - coarse[both]
    return {
        "land_pixels": land,
        "valid_fraction": float(has.sum() / land) if land else 0.0,
        "gap_filled_fraction": float(((qa & QA_GAP_FILLED) > 0).sum() / land) if land else 0.0,
        "clipped_fraction": float(((qa & QA_CLIPPED) > 0).sum() / land) if land else 0.0,
        "min": float(values.min()) if values.size else None,
        "mean": float(values.mean()) if values.size else None,
        "max": float(values.max()) if values.size else None,
        "coarse_cells_valid": int(has_obs.sum()),
        "conservation_max_abs_error": float(np.abs(diff).max()) if diff.size else None,
        "degraded": stack.degraded,
    }
