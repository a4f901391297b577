"""The frozen model: an artifact directory with the model, its manifest, and one sha256 over both.

Layout of ``<name>/``:

- ``model.joblib``: the fitted estimator (scikit-learn / XGBoost object; a pickle).
- ``forest.npz``: for a random forest, the packed forest of the fast engine (plain arrays, no
  pickle): production predicts from this file alone.
- ``manifest.json``: name, model kind, features in order with units, training period and domain,
  hyperparameters, scores, library versions, creation time, and the sha256 of every other file.
- ``SHA256``: the sha256 of ``manifest.json``, i.e. of everything (the manifest pins the files).

Loading verifies every checksum before anything is unpickled, refuses a library version mismatch
that would make the pickle unsafe or inexact, and refuses a feature list that differs from what
the input stack provides, naming the differing features.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from etl.errors import ArtifactError

ARTIFACT_FORMAT: Final = "1"
_PICKLE_LIBS: Final = ("scikit-learn", "xgboost", "numpy")
_DISTRIBUTIONS: Final = {
    "scikit-learn": "scikit-learn",
    "xgboost": "xgboost-cpu",
    "numpy": "numpy",
    "numba": "numba",
}


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries the artifact depends on (distribution names)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for lib, dist in _DISTRIBUTIONS.items():
        try:
            out[lib] = version(dist)
        except PackageNotFoundError:
            out[lib] = "absent"
    return out


@dataclass(frozen=True)
class FrozenModel:
    """A verified artifact, ready to predict (mean and spread across trees)."""

    path: Path
    sha256: str
    manifest: Mapping[str, Any]
    _engine: Any

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f["name"] for f in self.manifest["features"])

    def predict(
        self, x: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """(mean, standard deviation across trees) per row; std is 0 for non-ensemble models."""
        from models.forest import PackedForest

        if isinstance(self._engine, PackedForest):
            mean, std = self._engine.predict(x, with_std=True)
            return mean, std
        mean = np.asarray(self._engine.predict(x), dtype=np.float32)
        return mean, np.zeros_like(mean)


def freeze(
    estimator: Any,
    *,
    out_dir: Path,
    name: str,
    model: str,
    features: Sequence[tuple[str, str]],
    training: Mapping[str, Any],
    hyperparameters: Mapping[str, Any],
    scores: Mapping[str, Any],
) -> FrozenModel:
    """Write the artifact directory atomically (temporary name, then rename); return it loaded."""
    import joblib

    target = out_dir / name
    if target.exists():
        raise ArtifactError(f"artifact {target} already exists; choose another name")
    tmp = out_dir / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        joblib.dump(estimator, tmp / "model.joblib", compress=3)
        if model == "rf":
            from models.forest import PackedForest

            PackedForest.from_sklearn(estimator).save(tmp / "forest.npz")
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        manifest = {
            "format": ARTIFACT_FORMAT,
            "name": name,
            "model": model,
            "features": [{"name": n, "units": u} for n, u in features],
            "training": dict(training),
            "hyperparameters": plain(hyperparameters),
            "scores": plain(scores),
            "library_versions": library_versions(),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": files,
        }
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        (tmp / "manifest.json").write_bytes(body)
        (tmp / "SHA256").write_text(hashlib.sha256(body).hexdigest() + "\n")
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return load(target, expected_features=[n for n, _ in features])


def load(
    path: Path, *, expected_features: Sequence[str], expected_sha256: str | None = None
) -> FrozenModel:
    """Verify and open an artifact; ArtifactError says exactly what does not match."""
    manifest_path = path / "manifest.json"
    try:
        body = manifest_path.read_bytes()
        recorded = (path / "SHA256").read_text().strip()
    except OSError as err:
        raise ArtifactError(
            f"{path}: not a model artifact ({err.strerror}: {err.filename})"
        ) from None
    digest = hashlib.sha256(body).hexdigest()
    if digest != recorded:
        raise ArtifactError(
            f"{manifest_path}: sha256 {digest[:12]}... does not match SHA256 "
            f"{recorded[:12]}...: the artifact was modified"
        )
    if expected_sha256 is not None and digest != expected_sha256:
        raise ArtifactError(
            f"{path}: sha256 {digest[:12]}... is not the registered {expected_sha256[:12]}..."
        )
    manifest = json.loads(body)
    if "forest.npz" in manifest["files"] and not (path / "forest.npz").exists():
        _rebuild_packed(path, manifest)
    for fname, want in manifest["files"].items():
        have = _sha256(path / fname) if (path / fname).is_file() else "missing"
        if have != want:
            raise ArtifactError(
                f"{path / fname}: sha256 {have[:12]}... does not match the "
                f"manifest's {want[:12]}...: the artifact was modified"
            )
    names = [f["name"] for f in manifest["features"]]
    if names != list(expected_features):
        missing = [n for n in names if n not in expected_features]
        extra = [n for n in expected_features if n not in names]
        detail = (
            (
                f"model needs {missing} that the input stack lacks; stack has {extra} the "
                f"model does not use"
            )
            if missing or extra
            else "same features, other order"
        )
        raise ArtifactError(f"{path}: feature mismatch: {detail}")
    if "forest.npz" in manifest["files"]:
        from models.forest import PackedForest

        engine: Any = PackedForest.load(path / "forest.npz")
    else:
        now = library_versions()
        then = manifest["library_versions"]
        diff = [
            f"{lib} {then.get(lib)} -> {now.get(lib)}"
            for lib in _PICKLE_LIBS
            if then.get(lib) != now.get(lib)
        ]
        if diff:
            raise ArtifactError(
                f"{path}: built with other library versions ({', '.join(diff)}); "
                "retrain or install the recorded versions"
            )
        import joblib

        engine = joblib.load(path / "model.joblib")  # checksum verified above
    return FrozenModel(path=path, sha256=digest, manifest=manifest, _engine=engine)


def _rebuild_packed(path: Path, manifest: Mapping[str, Any]) -> None:
    """Re-pack a missing forest.npz from the verified model.joblib (the result is checked against
    the manifest's sha256 like any other file)."""
    import joblib

    from models.forest import PackedForest

    model_file = path / "model.joblib"
    if not model_file.is_file() or _sha256(model_file) != manifest["files"].get("model.joblib"):
        return  # the checksum loop reports what is missing or modified
    PackedForest.from_sklearn(joblib.load(model_file)).save(path / "forest.npz")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def plain(value: Any) -> Any:
    """JSON-safe copy (tuples -> lists, numpy scalars -> Python, NaN -> None)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
