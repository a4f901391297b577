"""Frozen model artifacts: round trip, tamper detection, feature and library checks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor

from etl.errors import ArtifactError
from models.artifact import freeze, load

FEATURES = [("albedo", "1"), ("et", "mm/day"), ("precip", "mm/day")]
NAMES = [n for n, _ in FEATURES]


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(2000, 3)).astype(np.float32)
    y = (0.1 + 0.3 * x[:, 0] - 0.1 * x[:, 1] + 0.05 * rng.normal(size=2000)).astype(np.float32)
    return x, y


def _freeze_rf(tmp_path: Path, name: str = "rf-test") -> Path:
    x, y = _data()
    rf = RandomForestRegressor(n_estimators=15, max_depth=8, random_state=0).fit(x, y)
    freeze(
        rf,
        out_dir=tmp_path,
        name=name,
        model="rf",
        features=FEATURES,
        training={"start": "2024-04-01", "end": "2024-07-29", "domain": "demo"},
        hyperparameters={"n_estimators": 15, "max_depth": 8},
        scores={"cv_r": 0.9},
    )
    return tmp_path / name


def test_a_frozen_forest_predicts_like_scikit_learn_with_its_spread(tmp_path: Path) -> None:
    path = _freeze_rf(tmp_path)
    model = load(path, expected_features=NAMES)
    assert sorted(p.name for p in path.iterdir()) == [
        "SHA256",
        "forest.npz",
        "manifest.json",
        "model.joblib",
    ]
    x, _ = _data()
    mean, std = model.predict(x)
    import joblib

    rf = joblib.load(path / "model.joblib")
    trees = np.stack([t.predict(x) for t in rf.estimators_])
    assert np.abs(mean - rf.predict(x)).max() < 1e-5
    assert np.abs(std - trees.std(axis=0)).max() < 1e-5
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["features"][1] == {"name": "et", "units": "mm/day"}
    assert manifest["library_versions"]["scikit-learn"]
    assert model.sha256 == hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest()


@pytest.mark.parametrize("victim", ["model.joblib", "forest.npz", "manifest.json"])
def test_one_changed_byte_is_refused(tmp_path: Path, victim: str) -> None:
    path = _freeze_rf(tmp_path)
    blob = bytearray((path / victim).read_bytes())
    blob[len(blob) // 2] ^= 0x01
    (path / victim).write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match="modified"):
        load(path, expected_features=NAMES)


def test_a_feature_mismatch_names_the_features(tmp_path: Path) -> None:
    path = _freeze_rf(tmp_path)
    with pytest.raises(ArtifactError, match=r"model needs \['precip'\].*stack has \['soc'\]"):
        load(path, expected_features=["albedo", "et", "soc"])
    with pytest.raises(ArtifactError, match="other order"):
        load(path, expected_features=["et", "albedo", "precip"])


def test_a_registered_sha256_must_match(tmp_path: Path) -> None:
    path = _freeze_rf(tmp_path)
    with pytest.raises(ArtifactError, match="not the registered"):
        load(path, expected_features=NAMES, expected_sha256="0" * 64)


def test_a_pickled_model_from_other_library_versions_is_refused(tmp_path: Path) -> None:
    x, y = _data()
    hgb = HistGradientBoostingRegressor(max_iter=20).fit(x, y)
    freeze(
        hgb,
        out_dir=tmp_path,
        name="hgb-test",
        model="hgb",
        features=FEATURES,
        training={},
        hyperparameters={},
        scores={},
    )
    path = tmp_path / "hgb-test"
    model = load(path, expected_features=NAMES)
    mean, std = model.predict(x[:10])
    assert np.allclose(mean, hgb.predict(x[:10]), atol=1e-6) and not std.any()
    # the same artifact, as if built elsewhere with another scikit-learn (checksums made consistent)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["library_versions"]["scikit-learn"] = "0.24.2"
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    (path / "manifest.json").write_bytes(body)
    (path / "SHA256").write_text(hashlib.sha256(body).hexdigest())
    with pytest.raises(ArtifactError, match=r"scikit-learn 0\.24\.2 ->"):
        load(path, expected_features=NAMES)


def test_an_existing_artifact_is_never_overwritten_and_a_missing_one_is_named(
    tmp_path: Path,
) -> None:
    _freeze_rf(tmp_path)
    with pytest.raises(ArtifactError, match="already exists"):
        _freeze_rf(tmp_path)
    with pytest.raises(ArtifactError, match="not a model artifact"):
        load(tmp_path / "nothing", expected_features=NAMES)


def test_a_missing_packed_forest_is_rebuilt_from_the_verified_model(tmp_path: Path) -> None:
    path = _freeze_rf(tmp_path)
    original = (path / "forest.npz").read_bytes()
    (path / "forest.npz").unlink()
    model = load(path, expected_features=NAMES)
    assert (path / "forest.npz").read_bytes() == original
    x, _ = _data()
    assert np.isfinite(model.predict(x[:5])[0]).all()
