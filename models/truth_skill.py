"""Skill at 1 km against a known truth (the synthetic world's OSSE): the maps a learner downscales,
and bilinear interpolation of the coarse retrieval, the baseline every downscaler has to beat.

The maps are made as the daily product makes them (:func:`models.downscale.downscale`: prediction,
correction towards the retrieval, gap filling). Scores pool every pixel of the days added where
both the truth and the map have a value, through additive sums (:mod:`models.moments`), so a day is
added and forgotten: memory does not grow with the number of days.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr
from affine import Affine

from etl.errors import InputError
from etl.grid import Domain
from etl.regrid import RasterSource, regrid
from etl.stack import DailyStack
from models.downscale import Predictor, downscale
from models.metrics import PairStats
from models.moments import WIDTH, pair_stats_from_sums, pair_sums

MIN_PAIRS = 30
_ROWS = 256  # rows of a map summed at a time (the per-pixel sums are 11 float64 each)


def learner_predictor(model: Any) -> Predictor:
    """How the product would predict with a fitted learner: a random forest through the packed
    engine (mean and spread across trees, as its frozen artifact does), any other with no spread."""
    from sklearn.ensemble import RandomForestRegressor

    if isinstance(model, RandomForestRegressor):
        from models.forest import PackedForest

        packed = PackedForest.from_sklearn(model)
        return lambda x: packed.predict(x, with_std=True)

    def predict(
        x: npt.NDArray[np.float32],
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        mean = np.asarray(model.predict(x), np.float32)
        return mean, np.zeros_like(mean)

    return predict


class Truth:
    """The daily 1 km truth of a synthetic world (``truth/truth_1km_<domain>_<start>_<end>.nc``)."""

    def __init__(self, path: Path, *, domain: Domain) -> None:
        self.path = path
        try:
            ds = xr.open_dataset(path)
        except (OSError, ValueError) as err:  # truncated, not NetCDF, unreadable
            raise InputError(f"{path}: cannot be read as the truth: {err}") from err
        with ds:
            if "soil_moisture" not in ds or ds["soil_moisture"].shape[1:] != domain.shape(1):
                raise InputError(
                    f"{path}: no soil_moisture on the 1 km grid of domain {domain.name} "
                    f"{domain.shape(1)}"
                )
            self._days = {
                date.fromisoformat(str(t)[:10]): k
                for k, t in enumerate(ds["time"].values.astype("datetime64[D]"))
            }

    @classmethod
    def of_world(cls, world: Path, *, domain: Domain) -> Truth | None:
        """The truth of the world at ``world`` for the domain, if it has one."""
        found = sorted((world / "truth").glob(f"truth_1km_{domain.name}_*.nc"))
        return cls(found[-1], domain=domain) if found else None

    def covers(self, day: date) -> bool:
        return day in self._days

    def day(self, day: date) -> npt.NDArray[np.float32]:
        """Soil moisture (m3/m3) of the day, NaN on water (the file's -9999 fill)."""
        with xr.open_dataset(self.path, mask_and_scale=False) as ds:
            values = np.asarray(ds["soil_moisture"][self._days[day]].values, np.float32)
        return np.where(values == np.float32(-9999.0), np.float32(np.nan), values)


@dataclass
class Skill:
    """Running sums of (truth, map) pairs; :meth:`stats` gives R, RMSE, bias and ubRMSE."""

    sums: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(WIDTH))

    def add(self, truth: npt.NDArray[np.floating], estimate: npt.NDArray[np.floating]) -> None:
        """Add the pairs of two maps (pixels where either is NaN are left out)."""
        for k in range(0, truth.shape[0], _ROWS):
            part = pair_sums(
                truth[k : k + _ROWS].astype(np.float64).ravel(),
                estimate[k : k + _ROWS].astype(np.float64).ravel(),
            )
            self.sums += part.sum(axis=0)

    def stats(self) -> PairStats:
        return pair_stats_from_sums(self.sums, min_n=MIN_PAIRS)


def downscaled_map(
    stack: DailyStack, predict: Predictor, *, bounds: tuple[float, float]
) -> npt.NDArray[np.float32]:
    """The 1 km map the product would make of the stack's day with this predictor."""
    out = downscale(stack, predict, bounds=bounds, interpolate_residuals=True)
    return out.soil_moisture


def bilinear_map(stack: DailyStack) -> npt.NDArray[np.float32]:
    """Bilinear interpolation of the day's 36 km retrieval to 1 km (NaN without a retrieval)."""
    domain = stack.domain
    coarse = stack.coarse36
    sm36 = (
        np.asarray(coarse["soil_moisture"].values, np.float32)
        if coarse is not None
        else np.full(domain.shape(36), np.nan, np.float32)
    )
    t = domain.transform(36)
    source = RasterSource(sm36, Affine(*t[:6]), "EPSG:6933")
    return np.asarray(regrid(source, domain, method="bilinear"), np.float32)
