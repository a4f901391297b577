"""The four downscalers of the comparison behind one interface (fit / predict on float32 features).

As in Ma et al. 2026 (Sensors 26(4):1383): random forest, XGBoost and a back-propagation network
(scikit-learn's MLP with standardised inputs); the fourth learner is scikit-learn's histogram
gradient boosting. Chosen over support vector regression because SVR's kernel fit grows with the
square of the sample count (two years of China at 36 km is ~10^6 rows, so SVR would need heavy
subsampling), while histogram boosting trains in seconds on all rows, handles missing values
natively, and is a second, independent implementation of boosting to set beside XGBoost.
Hyperparameters come from the settings; :data:`DEFAULT_PARAMS` are the defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

MODEL_NAMES: Final = ("rf", "xgb", "mlp", "hgb")
MODEL_TITLES: Final = MappingProxyType(
    {
        "rf": "random forest",
        "xgb": "XGBoost",
        "mlp": "back-propagation network (MLP)",
        "hgb": "histogram gradient boosting",
    }
)

DEFAULT_PARAMS: Final[Mapping[str, Mapping[str, Any]]] = MappingProxyType(
    {
        "rf": MappingProxyType(
            {"n_estimators": 100, "max_depth": 16, "min_samples_leaf": 5, "max_features": 0.5}
        ),
        "xgb": MappingProxyType(
            {
                "n_estimators": 600,
                "max_depth": 6,
                "learning_rate": 0.05,
                "subsample": 0.8,
                "colsample_bytree": 0.8,
                "min_child_weight": 5,
            }
        ),
        "mlp": MappingProxyType(
            {
                "hidden_layer_sizes": (64, 32),
                "alpha": 1e-4,
                "learning_rate_init": 1e-3,
                "max_iter": 400,
                "early_stopping": True,
            }
        ),
        "hgb": MappingProxyType(
            {"max_iter": 500, "learning_rate": 0.05, "max_leaf_nodes": 31, "min_samples_leaf": 20}
        ),
    }
)


class Regressor(Protocol):
    def fit(self, X: npt.NDArray[np.float32], y: npt.NDArray[np.float32]) -> Any: ...

    def predict(self, X: npt.NDArray[np.float32]) -> npt.NDArray[np.floating]: ...


def make_model(
    name: str, params: Mapping[str, Any] | None = None, *, seed: int, n_jobs: int
) -> Regressor:
    """An unfitted model: ``params`` override the defaults of ``name``."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(MODEL_NAMES)}")
    p = {**DEFAULT_PARAMS[name], **(params or {})}
    if name == "rf":
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(random_state=seed, n_jobs=n_jobs, **p)  # type: ignore[no-any-return]
    if name == "xgb":
        from xgboost import XGBRegressor

        return XGBRegressor(random_state=seed, n_jobs=n_jobs, tree_method="hist", **p)
    if name == "mlp":
        from sklearn.neural_network import MLPRegressor
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        hidden = tuple(p.pop("hidden_layer_sizes"))
        return make_pipeline(  # type: ignore[no-any-return]
            StandardScaler(), MLPRegressor(hidden_layer_sizes=hidden, random_state=seed, **p)
        )
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(random_state=seed, **p)  # type: ignore[no-any-return]
