"""The scikit-learn reference path: the forest's own predictions, with the spread across trees."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray


@overload
def predict_reference(
    forest: Any, X: ArrayLike, *, with_std: Literal[False], n_jobs: int = ..., chunk_rows: int = ...
) -> NDArray[np.float64]: ...


@overload
def predict_reference(
    forest: Any, X: ArrayLike, *, with_std: Literal[True], n_jobs: int = ..., chunk_rows: int = ...
) -> tuple[NDArray[np.float64], NDArray[np.float64]]: ...


def predict_reference(
    forest: Any, X: ArrayLike, *, with_std: bool, n_jobs: int = 2, chunk_rows: int = 65_536
) -> NDArray[np.float64] | tuple[NDArray[np.float64], NDArray[np.float64]]:
    """scikit-learn's prediction of a fitted forest regressor, and optionally the trees' spread.

    Without ``with_std`` this is ``forest.predict(X)`` run with ``n_jobs`` threads. With it, each
    chunk of ``chunk_rows`` rows is predicted by every estimator (``n_jobs`` threads over trees) and
    reduced to the mean and the population standard deviation (ddof=0) across trees, so memory
    stays at ``n_trees x chunk_rows`` float64 (~50 MB for 100 trees) whatever the number of rows.
    """
    x = np.asarray(X)
    if not with_std:
        saved = forest.n_jobs
        forest.n_jobs = n_jobs
        try:
            return np.asarray(forest.predict(x), dtype=np.float64)
        finally:
            forest.n_jobs = saved
    estimators = list(forest.estimators_)
    n_rows = x.shape[0]
    mean = np.empty(n_rows, np.float64)
    std = np.empty(n_rows, np.float64)
    per_tree = np.empty((len(estimators), min(chunk_rows, n_rows)), np.float64)
    with ThreadPoolExecutor(max_workers=n_jobs) as pool:
        for lo in range(0, n_rows, chunk_rows):
            chunk = x[lo : lo + chunk_rows]
            rows = per_tree[:, : chunk.shape[0]]

            def one(i: int, chunk: NDArray[Any] = chunk, rows: NDArray[np.float64] = rows) -> None:
                rows[i] = estimators[i].predict(chunk)

            list(pool.map(one, range(len(estimators))))
            mean[lo : lo + chunk.shape[0]] = rows.mean(axis=0)
            std[lo : lo + chunk.shape[0]] = rows.std(axis=0)
    return mean, std
