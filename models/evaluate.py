"""Comparing the learners: spatially blocked cross-validation and a temporal hold-out at coarse scale.

Folds are blocks of ``block`` x ``block`` 36 km cells (GroupKFold over block ids), never random rows:
neighbouring cells and the same cell on other days are strongly correlated, and random folds would
let a model score on what it has in effect already seen (Roberts et al. 2017, "Cross-validation
strategies for data with temporal, spatial, hierarchical, or phylogenetic structure", Ecography
40:913-929). The temporal hold-out keeps the last ``holdout_fraction`` of the days out of training.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from models.learners import MODEL_NAMES, make_model
from models.metrics import PairStats, pair_stats
from models.samples import CoarseSamples, days_of

log = logging.getLogger(__name__)

MIN_PAIRS = 30


@dataclass(frozen=True)
class ModelScore:
    """One learner's scores: blocked CV (all training days) and the temporal hold-out at coarse
    scale, and (given a truth) its downscaled maps of the hold-out days against the 1 km truth."""

    model: str
    cv: PairStats
    holdout: PairStats
    fit_seconds: float
    truth_1km: PairStats | None = None
    """Against the 1 km truth, on the pixels bilinear interpolation of the retrieval covers too."""
    truth_filled: PairStats | None = None
    """Against the 1 km truth, on the gap-filled pixels (no retrieval that day)."""

    def row(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "fit_s": round(self.fit_seconds, 2)}
        scored = [("cv", self.cv), ("holdout", self.holdout)]
        if self.truth_1km is not None:
            scored.append(("truth_1km", self.truth_1km))
        if self.truth_filled is not None:
            scored.append(("truth_filled", self.truth_filled))
        for tag, s in scored:
            out.update(
                {
                    f"{tag}_n": s.n,
                    f"{tag}_r": s.r,
                    f"{tag}_rmse": s.rmse,
                    f"{tag}_bias": s.bias,
                    f"{tag}_ubrmse": s.ubrmse,
                }
            )
        return out


def block_ids(samples: CoarseSamples, *, block: int) -> npt.NDArray[np.int64]:
    """Id of the ``block`` x ``block`` group of 36 km cells each sample belongs to."""
    return (samples.row36.astype(np.int64) // block) * 100_000 + samples.col36 // block


def temporal_split(
    samples: CoarseSamples, *, holdout_fraction: float
) -> tuple[CoarseSamples, CoarseSamples]:
    """(training, hold-out): the hold-out is the last ``holdout_fraction`` of the days."""
    days = days_of(samples)
    n_hold = max(1, round(len(days) * holdout_fraction)) if holdout_fraction > 0 else 0
    if n_hold >= len(days):
        raise ValueError(f"{len(days)} days cannot keep {n_hold} for the hold-out")
    cut = np.datetime64(days[-n_hold], "D") if n_hold else np.datetime64("9999-12-31", "D")
    late = samples.day >= cut
    return samples.subset(~late), samples.subset(late)


def blocked_cv_predictions(
    name: str,
    params: Mapping[str, Any] | None,
    samples: CoarseSamples,
    *,
    block: int,
    n_splits: int,
    seed: int,
    n_jobs: int,
) -> npt.NDArray[np.float32]:
    """Out-of-fold predictions for every sample, folds by spatial blocks."""
    from sklearn.model_selection import GroupKFold

    groups = block_ids(samples, block=block)
    if np.unique(groups).size < n_splits:
        raise ValueError(
            f"only {np.unique(groups).size} spatial blocks for {n_splits} folds; "
            "use a smaller block or fewer folds"
        )
    out = np.full(len(samples), np.nan, np.float32)
    for train, test in GroupKFold(n_splits=n_splits).split(samples.X, samples.y, groups):
        model = make_model(name, params, seed=seed, n_jobs=n_jobs)
        model.fit(samples.X[train], samples.y[train])
        out[test] = model.predict(samples.X[test])
    return out


def compare(
    samples: CoarseSamples,
    *,
    models: Sequence[str],
    params: Mapping[str, Mapping[str, Any]],
    block: int,
    n_splits: int,
    holdout_fraction: float,
    seed: int,
    n_jobs: int,
    on_fit: Callable[[str, Any], None] | None = None,
) -> list[ModelScore]:
    """Score each learner: blocked CV on the training days, then fit there and score the hold-out;
    ``on_fit(name, model)`` receives each model fitted on the training days."""
    unknown = [m for m in models if m not in MODEL_NAMES]
    if unknown:
        raise ValueError(f"unknown models {unknown}; allowed: {', '.join(MODEL_NAMES)}")
    train, hold = temporal_split(samples, holdout_fraction=holdout_fraction)
    scores = []
    for name in models:
        t0 = time.perf_counter()
        oof = blocked_cv_predictions(
            name, params.get(name), train, block=block, n_splits=n_splits, seed=seed, n_jobs=n_jobs
        )
        cv = pair_stats(oof, train.y, min_n=MIN_PAIRS)
        model = make_model(name, params.get(name), seed=seed, n_jobs=n_jobs)
        model.fit(train.X, train.y)
        if on_fit is not None:
            on_fit(name, model)
        hold_stats = (
            pair_stats(model.predict(hold.X), hold.y, min_n=MIN_PAIRS)
            if len(hold)
            else pair_stats(np.zeros(0), np.zeros(0), min_n=MIN_PAIRS)
        )
        seconds = time.perf_counter() - t0
        log.info(
            "model scored",
            extra={
                "model": name,
                "cv_r": cv.r,
                "cv_rmse": cv.rmse,
                "holdout_r": hold_stats.r,
                "seconds": round(seconds, 1),
            },
        )
        scores.append(ModelScore(name, cv, hold_stats, seconds))
    return scores


def best(scores: Sequence[ModelScore]) -> str:
    """The model with the lowest blocked-CV RMSE (ties: highest R)."""
    ranked = sorted(
        scores,
        key=lambda s: (np.nan_to_num(s.cv.rmse, nan=np.inf), -np.nan_to_num(s.cv.r, nan=-1.0)),
    )
    return ranked[0].model
