"""Read MCCA SMAP soil moisture (the multi-channel collaborative algorithm retrieval) on EASE-Grid 2.0.

MCCA granules are distributed in more than one layout (NetCDF-4 or HDF5, one or two passes, packed
or float), so the reader is configured, not guessed: a :class:`MccaLayout` names each pass's soil
moisture variable (and optionally a quality flag and an overpass-time variable), the grid (36 or 9 km
EASE-Grid 2.0 global), the stored fill, the valid range, the packing and the row order. Nothing is
read from the file's own latitude/longitude. The output is the same coarse Dataset as
:func:`etl.readers.smap.read_smap_l3`, so the model treats MCCA and SMAP alike (MCCA is also the third
estimate for triple collocation). Traps handled: south-up files are flipped to north-up, packed
integers are unpacked with the layout's (not the file's CF) scale and offset, and the flag fill is
tested before the flag bits.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import xarray as xr

from etl.errors import ConfigError
from etl.grid import Domain, ease2
from etl.readers.coarse import coarse_dataset, domain_window
from etl.readers.errors import SchemaDriftError
from etl.readers.timecodes import offsets_to_datetime64, parse_since
from etl.readers.validity import flags_clear, in_valid_range
from etl.readers.variables import RawVariable, read_variables

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class MccaLayout:
    """How one MCCA distribution stores its data. All science-relevant fields are required."""

    res_km: int
    """36 or 9: the global EASE-Grid 2.0 grid the arrays are on (full 406x964 or 1624x3856)."""
    soil_moisture: Mapping[str, str]
    """Pass name -> variable path, e.g. ``{"AM": "/SM_AM", "PM": "/SM_PM"}`` (one or two passes)."""
    fill_value: float
    """Stored value meaning "no retrieval" (compared before scaling)."""
    valid_min: float
    """Lowest valid soil moisture after unpacking (m3/m3)."""
    valid_max: float
    """Highest valid soil moisture after unpacking (m3/m3)."""
    scale_factor: float
    """Multiply stored values by this to get m3/m3 (1.0 for float m3/m3, 0.01 for percent)."""
    add_offset: float
    """Add this after scaling."""
    row_order: Literal["north_up", "south_up"]
    """Whether array row 0 is the northern (EASE-Grid 2.0 order) or the southern edge."""
    quality_flag: Mapping[str, str] = field(default_factory=dict)
    """Optional pass -> integer quality-flag variable; a retrieval is good if its bad bits are clear."""
    flag_fill: int | None = None
    """Stored fill of the quality flag (required when ``quality_flag`` is given)."""
    bad_bits: int = 0
    """Bit mask of flag bits that make a retrieval unusable (required non-zero with a flag)."""
    overpass_time: Mapping[str, str] = field(default_factory=dict)
    """Optional pass -> time variable with CF-style ``units`` ("seconds since ...", UTC)."""
    product: str = "MCCA_SMAP"

    def __post_init__(self) -> None:
        if self.res_km not in (36, 9):
            raise ConfigError(f"MCCA layout: res_km must be 36 or 9, got {self.res_km}")
        if not self.soil_moisture or any(p not in ("AM", "PM") for p in self.soil_moisture):
            raise ConfigError(
                f"MCCA layout: soil_moisture must map AM and/or PM to variables, got {dict(self.soil_moisture)}"
            )
        if self.quality_flag and (self.flag_fill is None or self.bad_bits == 0):
            raise ConfigError("MCCA layout: a quality_flag needs flag_fill and non-zero bad_bits")
        for name, mapping in (
            ("quality_flag", self.quality_flag),
            ("overpass_time", self.overpass_time),
        ):
            if mapping and set(mapping) != set(self.soil_moisture):
                raise ConfigError(
                    f"MCCA layout: {name} must name a variable for every pass or for none"
                )
        if not self.valid_min < self.valid_max:
            raise ConfigError("MCCA layout: valid_min must be below valid_max")


def read_mcca(
    path: str | Path, *, layout: MccaLayout, date: dt.date, domain: Domain | None = None
) -> xr.Dataset:
    """Read an MCCA granule of ``date`` into the coarse Dataset described in :mod:`etl.readers`.

    Variables: ``soil_moisture`` (float32 m3/m3, NaN unless not fill, in range and, with a flag, good),
    ``soil_moisture_raw`` (unpacked, NaN only at fill), ``recommended`` (bool), and when configured
    ``quality_flag`` (as stored) and ``overpass_time`` (datetime64[ns] UTC).
    """
    source = Path(path)
    grid = ease2(layout.res_km)
    window = domain_window(grid, domain)
    passes = [p for p in ("AM", "PM") if p in layout.soil_moisture]
    wanted = [layout.soil_moisture[p] for p in passes]
    optional = [layout.quality_flag[p] for p in passes if p in layout.quality_flag]
    optional += [layout.overpass_time[p] for p in passes if p in layout.overpass_time]
    found = read_variables(source, wanted + optional)

    def grid_array(var: RawVariable) -> npt.NDArray[Any]:
        values = var.values
        if values.ndim == 3 and values.shape[0] == 1:  # a length-1 time axis
            values = values[0]
        if values.shape != grid.shape:
            raise SchemaDriftError(
                f"{source}: variable {var.path} has shape {var.values.shape}, expected {grid.shape} "
                f"(EASE-Grid 2.0 {layout.res_km} km)"
            )
        if layout.row_order == "south_up":
            values = values[::-1]
        return values[window]

    raw_sm, valid, recommended, flags, times = [], [], [], [], []
    for p in passes:
        stored = grid_array(found[layout.soil_moisture[p]])
        fill = stored == np.asarray(layout.fill_value, dtype=stored.dtype)
        value = (stored.astype(np.float64) * layout.scale_factor + layout.add_offset).astype(
            np.float32
        )
        value[fill] = np.nan
        ok = in_valid_range(
            value, fill=np.nan, valid_min=layout.valid_min, valid_max=layout.valid_max
        )
        good = np.ones_like(ok)
        if p in layout.quality_flag:
            flag = grid_array(found[layout.quality_flag[p]])
            if flag.dtype.kind not in "iu":
                raise SchemaDriftError(
                    f"{source}: quality flag /{layout.quality_flag[p].lstrip('/')} is {flag.dtype}, expected integers"
                )
            assert layout.flag_fill is not None  # checked in MccaLayout
            good = flags_clear(flag, fill=layout.flag_fill, mask=layout.bad_bits)
            flags.append(flag)
        if p in layout.overpass_time:
            tvar = found[layout.overpass_time[p]]
            unit_ns, epoch = parse_since(tvar.text("units") or "", path=source, variable=tvar.name)
            tvals = grid_array(tvar)
            tfill = tvar.number("_FillValue")
            missing = tvals == tfill if tfill is not None else np.zeros(tvals.shape, dtype=bool)
            times.append(
                offsets_to_datetime64(tvals, unit_ns=unit_ns, epoch=epoch, missing=missing)
            )
        raw_sm.append(value)
        valid.append(ok & good)
        recommended.append(good & ~fill)

    layers: dict[str, tuple[list[npt.NDArray[Any]], dict[str, Any]]] = {
        "soil_moisture": (
            [np.where(v, s, np.float32(np.nan)) for s, v in zip(raw_sm, valid, strict=True)],
            {"units": "m3/m3", "long_name": "volumetric soil moisture, valid retrievals only"},
        ),
        "soil_moisture_raw": (
            raw_sm,
            {"units": "m3/m3", "long_name": "unpacked soil moisture, NaN only where fill"},
        ),
        "recommended": (recommended, {"long_name": "not fill and no bad quality bit"}),
    }
    if flags:
        layers["quality_flag"] = (
            flags,
            {"bad_bits": layout.bad_bits, "fill_value_as_stored": layout.flag_fill},
        )
    if times:
        layers["overpass_time"] = (times, {"long_name": "overpass time (UTC)"})
    ds = coarse_dataset(
        grid=grid,
        window=window,
        passes=passes,
        layers=layers,
        attrs={
            "product": layout.product,
            "version": "unknown",
            "date": date.isoformat(),
            "source_file": str(source),
            "units": "m3/m3",
        },
    )
    logger.info(
        "mcca_read",
        extra={
            "source_file": str(source),
            "date": date.isoformat(),
            "valid_cells": int(sum(v.sum() for v in valid)),
        },
    )
    return ds
