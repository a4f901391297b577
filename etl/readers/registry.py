"""Dispatch a granule to its reader by product name: ``open_granule(path, product=...)``.

Only readers that need no further configuration are listed; MCCA needs a layout and is read with
:func:`etl.readers.mcca.read_mcca` directly. For SMAP the product named must match the one the file
says it is, so a 9 km file filed as SPL3SMP is quarantined rather than read onto the wrong grid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Final

import xarray as xr

from etl.errors import ConfigError
from etl.readers.chirps import read_chirps
from etl.readers.dem import read_dem
from etl.readers.era5 import read_era5
from etl.readers.errors import SchemaDriftError
from etl.readers.imerg import read_imerg
from etl.readers.modis import PRODUCTS as SINUSOIDAL_PRODUCTS
from etl.readers.modis import read_sinusoidal_tile
from etl.readers.smap import read_smap_l3
from etl.readers.soilgrids import PROPERTIES, read_soilgrids

Reader = Callable[[Path], xr.Dataset | xr.DataArray]


def _smap(path: Path, *, product: str) -> xr.Dataset:
    ds = read_smap_l3(path)
    if ds.attrs["product"] != product:
        raise SchemaDriftError(f"{path}: file is {ds.attrs['product']}, expected {product}")
    return ds


def _readers() -> dict[str, Reader]:
    table: dict[str, Reader] = {
        "SPL3SMP": partial(_smap, product="SPL3SMP"),
        "SPL3SMP_E": partial(_smap, product="SPL3SMP_E"),
        "IMERG": read_imerg,
        "CHIRPS": read_chirps,
        "ERA5_SWVL1": partial(read_era5, variable="swvl1"),
        "DEM": read_dem,
    }
    for name in SINUSOIDAL_PRODUCTS:
        table[name] = partial(read_sinusoidal_tile, product=name)
    for prop in PROPERTIES:
        table[f"SOILGRIDS_{prop.upper()}"] = partial(read_soilgrids, prop=prop)
    return table


READERS: Final[Mapping[str, Reader]] = MappingProxyType(_readers())
"""Product name -> reader taking the path."""


def open_granule(path: str | Path, *, product: str) -> xr.Dataset | xr.DataArray:
    """Read ``path`` with the reader registered for ``product`` (see :data:`READERS`)."""
    try:
        reader = READERS[product]
    except KeyError:
        hint = (
            " (MCCA: use etl.readers.mcca.read_mcca with a layout)"
            if product.upper().startswith("MCCA")
            else ""
        )
        raise ConfigError(
            f"no reader for product {product!r}{hint}; known: {', '.join(sorted(READERS))}"
        ) from None
    return reader(Path(path))
