"""manifest.json of a synthetic world: every file with its role, size and sha256, and the inputs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Final

from etl.grid import Domain
from etl.synthetic.config import GENERATOR_VERSION, SyntheticConfig

MANIFEST_NAME: Final = "manifest.json"

# First folder of a file's relative path -> role (SMAP and MODIS use the second level too).
_ROLES: Final[dict[str, str]] = {
    "smap/SPL3SMP": "smap_l3_36km",
    "smap/SPL3SMP_E": "smap_l3_9km",
    "mcca": "mcca_36km",
    "modis/MCD43A3": "albedo_mcd43a3",
    "modis/MOD16A2": "et_mod16a2",
    "imerg": "precipitation_imerg_daily",
    "soilgrids": "soil_soilgrids",
    "dem": "terrain_dem",
    "ismn": "insitu_ismn",
    "truth": "truth",
}


def role_of(relative: str) -> str:
    """The role of a file given its path relative to the world's folder."""
    parts = relative.split("/")
    if relative.startswith("ismn/") and relative.endswith(".zip"):
        return "insitu_ismn_zip"
    for key in ("/".join(parts[:2]), parts[0]):
        if key in _ROLES:
            return _ROLES[key]
    return "other"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(
    out_dir: Path, *, domain: Domain, start: dt.date, days: int, seed: int, config: SyntheticConfig
) -> Path:
    """List every file under ``out_dir`` (except the manifest) and write manifest.json."""
    files = []
    for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(out_dir).as_posix()
        if rel == MANIFEST_NAME:
            continue
        files.append(
            {
                "path": rel,
                "role": role_of(rel),
                "bytes": path.stat().st_size,
                "sha256": sha256_of(path),
            }
        )
    manifest = {
        "generator": "etl.synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "domain": dataclasses.asdict(domain),
        "start": start.isoformat(),
        "days": days,
        "config": dataclasses.asdict(config),
        "files": files,
    }
    target = out_dir / MANIFEST_NAME
    target.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return target
