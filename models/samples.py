"""Training samples at coarse scale: covariates block-averaged over each 36 km cell's land pixels,
paired with that cell's valid retrieval, from the same daily stack the product uses.

A cell enters only when its retrieval is valid (the readers' rule: not fill, in range, recommended),
enough of it is land (``min_land_fraction``), and every feature is known there. Samples of a day are
small (at most one row per 36 km cell), so a period is assembled day by day in bounded memory and
each day can be cached as a small ``.npz``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt

from etl.grid import block_mean, nesting_factor
from etl.stack import FEATURE_NAMES, DailyStack


@dataclass(frozen=True)
class CoarseSamples:
    """Rows of (features, retrieval) with the day and the domain-relative 36 km cell of each."""

    X: npt.NDArray[np.float32]
    y: npt.NDArray[np.float32]
    day: npt.NDArray[np.datetime64]
    row36: npt.NDArray[np.int32]
    col36: npt.NDArray[np.int32]
    feature_names: tuple[str, ...] = FEATURE_NAMES

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> CoarseSamples:
        return CoarseSamples(
            self.X[index],
            self.y[index],
            self.day[index],
            self.row36[index],
            self.col36[index],
            self.feature_names,
        )

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(
            tmp,
            X=self.X,
            y=self.y,
            day=self.day.astype("datetime64[D]").astype(np.int64),
            row36=self.row36,
            col36=self.col36,
            feature_names=np.array(self.feature_names),
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> CoarseSamples:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                z["X"],
                z["y"],
                z["day"].astype("datetime64[D]"),
                z["row36"],
                z["col36"],
                tuple(str(n) for n in z["feature_names"]),
            )


def coarse_samples(stack: DailyStack, *, min_land_fraction: float) -> CoarseSamples:
    """The day's samples: land-averaged features per 36 km cell against the valid retrieval."""
    if stack.coarse36 is None:
        return _empty()
    f = nesting_factor(36, 1)
    frac, _ = block_mean(stack.land.astype(np.float64), f)
    # one feature at a time keeps memory at a few layers even for the China domain
    feats = np.stack(
        [
            block_mean(np.where(stack.land, stack.features[n].values, np.nan), f)[0]
            for n in FEATURE_NAMES
        ],
        axis=-1,
    )
    y = stack.coarse36["soil_moisture"].values.astype(np.float64)
    ok = np.isfinite(y) & (frac >= min_land_fraction) & np.all(np.isfinite(feats), axis=-1)
    rows, cols = np.nonzero(ok)
    return CoarseSamples(
        X=feats[ok].astype(np.float32),
        y=y[ok].astype(np.float32),
        day=np.full(rows.size, np.datetime64(stack.day, "D")),
        row36=rows.astype(np.int32),
        col36=cols.astype(np.int32),
    )


def concat(parts: Sequence[CoarseSamples]) -> CoarseSamples:
    """Samples of many days in one table (days in the given order)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return _empty()
    names = {p.feature_names for p in parts}
    if len(names) != 1:
        raise ValueError(f"cannot join samples with different features: {sorted(names)}")
    return CoarseSamples(
        np.concatenate([p.X for p in parts]),
        np.concatenate([p.y for p in parts]),
        np.concatenate([p.day for p in parts]),
        np.concatenate([p.row36 for p in parts]),
        np.concatenate([p.col36 for p in parts]),
        parts[0].feature_names,
    )


def days_of(samples: CoarseSamples) -> list[date]:
    return sorted({d.item() for d in samples.day.astype("datetime64[D]")})


def _empty() -> CoarseSamples:
    return CoarseSamples(
        np.zeros((0, len(FEATURE_NAMES)), np.float32),
        np.zeros(0, np.float32),
        np.zeros(0, "datetime64[D]"),
        np.zeros(0, np.int32),
        np.zeros(0, np.int32),
    )
