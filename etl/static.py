"""Static layers (soil properties, terrain) regridded once per domain and cached with a version.

The cache file name carries a key over the domain, the regridding version and each source file's
sha256, so new source files, a new domain or a new method produce a new cache entry and an old one
is never used by mistake. Land is where every static layer is known (SoilGrids and the DEM are
nodata over water).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import numpy as np
import xarray as xr
from affine import Affine

from etl.archive import sha256_of
from etl.grid import Domain
from etl.readers import read_dem, read_soilgrids
from etl.regrid import RasterSource, regrid

log = logging.getLogger(__name__)

STATIC_VERSION: Final = "1"
SOIL_PROPERTIES: Final = ("clay", "sand", "silt", "bdod", "soc")


def static_layers(
    domain: Domain, *, soil: Mapping[str, Path], dem: Path, cache_dir: Path
) -> xr.Dataset:
    """Soil properties, elevation and the land mask on the domain's 1 km grid (cached)."""
    missing = [p for p in SOIL_PROPERTIES if p not in soil]
    if missing:
        raise ValueError(f"static layers need SoilGrids {', '.join(missing)}")
    digests = {name: sha256_of(path) for name, path in sorted({**soil, "dem": dem}.items())}
    key = hashlib.sha256(
        json.dumps(
            {
                "v": STATIC_VERSION,
                "domain": [domain.name, domain.row36, domain.col36, domain.nrows36, domain.ncols36],
                "files": digests,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    cached = cache_dir / f"static-{domain.name}-{key}.nc"
    if cached.is_file():
        with xr.open_dataset(cached, engine="netcdf4", mask_and_scale=False) as ds:
            return ds.load()
    layers: dict[str, np.ndarray] = {}
    units: dict[str, str] = {}
    for prop in SOIL_PROPERTIES:
        da = read_soilgrids(soil[prop], prop=prop)
        layers[prop] = regrid(_source(da), domain, method="average")
        units[prop] = str(da.attrs.get("units", ""))
    dem_da = read_dem(dem)
    layers["elevation"] = regrid(_source(dem_da), domain, method="average")
    units["elevation"] = "m"
    land = np.logical_and.reduce([np.isfinite(v) for v in layers.values()])
    ds = xr.Dataset(
        {n: (("y", "x"), v.astype(np.float32), {"units": units[n]}) for n, v in layers.items()},
        attrs={
            "domain": domain.name,
            "static_version": STATIC_VERSION,
            "key": key,
            "sources": json.dumps(digests),
        },
    )
    ds["land"] = (("y", "x"), land.astype(np.uint8), {"flag_meanings": "water land"})
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.name}.tmp-{os.getpid()}")
    ds.to_netcdf(tmp, engine="netcdf4")
    os.replace(tmp, cached)
    log.info("static layers regridded and cached", extra={"path": str(cached)})
    return ds


def _source(da: xr.DataArray) -> RasterSource:
    return RasterSource(
        data=da.values.astype(np.float32, copy=False),
        transform=Affine.from_gdal(*da.attrs["transform"]),
        crs=da.attrs["crs"],
    )
