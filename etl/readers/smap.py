"""Read SMAP L3 passive soil moisture granules (SPL3SMP 36 km, SPL3SMP_E 9 km) onto EASE-Grid 2.0.

Products and versions: SPL3SMP version 8 (CRID R18xxx, e.g. SMAP_L3_SM_P_20150331_R18290_002.h5) and
version 9 (R19xxx), SPL3SMP_E versions 5 and 6 on the same layouts. Each file holds one UTC day in two
groups, ``Soil_Moisture_Retrieval_Data_AM`` (descending, ~06:00 local) and
``Soil_Moisture_Retrieval_Data_PM`` (ascending, ~18:00 local), 406 x 964 (36 km) or 1624 x 3856
(9 km) cells. Traps handled:

* Every PM variable carries a ``_pm`` suffix (``soil_moisture_pm``, ``retrieval_qual_flag_pm``, ...),
  and the PM variables' ``coordinates`` attribute points at the *AM* latitude/longitude.
* Since version 8 ``soil_moisture`` is an HDF5 hard link to ``soil_moisture_dca`` (the DCA retrieval;
  the OPeNDAP DMR shows this as an ``HDF5_HARDLINK`` attribute on the second name). The reader reads
  ``soil_moisture`` and records in ``attrs['baseline_algorithm']`` whether it is the DCA dataset.
* Fill -9999 (float) and 65534 (uint16 flags); fill is tested before the flag bits because 65534 has
  bit 0 clear. Valid range 0.02-0.5 m3/m3 compared in float32. See :mod:`etl.readers.validity`.
* The per-cell overpass time is ``tb_time_seconds``: seconds since 2000-01-01T11:58:55.816Z (the J2000
  epoch, 12:00 TT, expressed in UTC), converted without leap seconds. A daily file can hold the AM
  overpass of the next local morning east of ~90 E, so the file date is not the overpass date.
* The grid comes from :mod:`etl.grid` constants; the file's latitude/longitude (-9999 where nothing was
  retrieved) are never read.
* Schema drift (missing group or variable, other shape, dtype or fill value, product or date that
  contradict the file name) raises :class:`SchemaDriftError` naming the file and what is wrong.
* Units: soil moisture is a volumetric fraction (``units = cm**3/cm**3``). Another ``units``
  attribute (``%``), or stored values whose median exceeds 1 (percent written under the old label),
  is schema drift: masking them as out of range would silently turn the day into a gap.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import h5py
import numpy as np
import numpy.typing as npt
import xarray as xr

from etl.errors import ConfigError
from etl.grid import Domain, Ease2Grid, ease2
from etl.readers.coarse import coarse_dataset, domain_window
from etl.readers.errors import SchemaDriftError
from etl.readers.hdf5 import (
    Window,
    attr_number,
    attr_text,
    open_hdf5,
    read_dataset,
    require_dataset,
    require_group,
)
from etl.readers.timecodes import offsets_to_datetime64
from etl.readers.validity import (
    SMAP_FLAG_FILL,
    SMAP_SM_FILL,
    SMAP_SM_VALID_MAX,
    SMAP_SM_VALID_MIN,
    recommended_mask,
    validity_mask,
)

logger = logging.getLogger(__name__)

GROUPS: Final[dict[str, str]] = {
    "AM": "Soil_Moisture_Retrieval_Data_AM",
    "PM": "Soil_Moisture_Retrieval_Data_PM",
}
SUFFIX: Final[dict[str, str]] = {"AM": "", "PM": "_pm"}
PRODUCT_RES_KM: Final[dict[str, int]] = {"SPL3SMP": 36, "SPL3SMP_E": 9}
J2000_EPOCH_UTC: Final = np.datetime64("2000-01-01T11:58:55.816", "ns")
"""Zero of ``tb_time_seconds``: 2000-01-01T12:00:00 TT = 11:58:55.816 UTC."""
TB_TIME_FILL: Final = -9999.0
VOLUMETRIC_UNITS: Final = frozenset(
    {"cm**3/cm**3", "cm^3/cm^3", "cm3/cm3", "m**3/m**3", "m^3/m^3", "m3/m3", "m3m-3", "m3.m-3"}
)
"""Spellings of a volumetric fraction (compared in lower case without spaces)."""

_FILE_NAME = re.compile(
    r"^SMAP_L3_SM_P_(?P<e>E_)?(?P<date>\d{8})_(?P<crid>R\d{5})_(?P<counter>\d{3})\.h5$"
)


@dataclass(frozen=True)
class GranuleId:
    """What a SMAP L3 file says it is: product, grid resolution, date and version."""

    product: str
    res_km: int
    date: dt.date
    crid: str
    product_version: str

    @property
    def version(self) -> str:
        """CRID and product (ECS) version, e.g. ``R18290/008``."""
        return f"{self.crid}/{self.product_version}"


def read_smap_l3(
    path: str | Path,
    *,
    passes: Sequence[str] = ("AM", "PM"),
    domain: Domain | None = None,
) -> xr.Dataset:
    """Read a SPL3SMP / SPL3SMP_E granule into the readers' coarse Dataset (see :mod:`etl.readers`).

    ``passes`` picks the groups (AM, PM or both, in that order in the output); ``domain`` reads only
    that window (hyperslab reads, so the 9 km product costs only the domain's cells). Variables:
    ``soil_moisture`` (float32 m3/m3, NaN unless :func:`validity_mask`), ``soil_moisture_raw`` (NaN only
    at fill), ``retrieval_qual_flag`` (uint16 as stored), ``recommended`` (flag not fill, bit 0 clear),
    ``overpass_time`` (datetime64[ns] UTC, NaT at fill).
    """
    source = Path(path)
    chosen = _check_passes(passes)
    with open_hdf5(source) as handle:
        ident = identify(handle, path=source, first_pass=chosen[0])
        grid = ease2(ident.res_km)
        window = domain_window(grid, domain)
        stored = [_read_pass(handle, p, grid=grid, window=window, path=source) for p in chosen]
        baseline = _baseline_algorithm(handle)
    sm = [s for s, _, _ in stored]
    flags = [f for _, f, _ in stored]
    seconds = [t for _, _, t in stored]
    valid = [
        validity_mask(soil_moisture=s, retrieval_qual_flag=f)
        for s, f in zip(sm, flags, strict=True)
    ]
    ds = coarse_dataset(
        grid=grid,
        window=window,
        passes=chosen,
        layers={
            "soil_moisture": (
                [
                    np.where(v, s, np.float32(np.nan)).astype(np.float32)
                    for s, v in zip(sm, valid, strict=True)
                ],
                {
                    "units": "m3/m3",
                    "long_name": "volumetric soil moisture, valid retrievals only",
                    "valid_rule": "not fill, 0.02 <= sm <= 0.5, retrieval_qual_flag bit 0 clear",
                },
            ),
            "soil_moisture_raw": (
                [np.where(s == SMAP_SM_FILL, np.float32(np.nan), s).astype(np.float32) for s in sm],
                {"units": "m3/m3", "long_name": "soil moisture as stored, NaN only where fill"},
            ),
            "retrieval_qual_flag": (
                flags,
                {
                    "fill_value_as_stored": int(SMAP_FLAG_FILL),
                    "flag_masks": "1, 2, 4, 8",
                    "flag_meanings": "Retrieval_recommended Retrieval_attempted Retrieval_success "
                    "FT_retrieval_success (bit clear = yes)",
                },
            ),
            "recommended": (
                [recommended_mask(f) for f in flags],
                {"long_name": "retrieval_qual_flag not fill and bit 0 clear"},
            ),
            "overpass_time": (
                [j2000_seconds_to_datetime64(t) for t in seconds],
                {
                    "long_name": "mean brightness-temperature time of the cell (UTC)",
                    "source": "tb_time_seconds",
                },
            ),
        },
        attrs={
            "product": ident.product,
            "version": ident.version,
            "crid": ident.crid,
            "product_version": ident.product_version,
            "date": ident.date.isoformat(),
            "source_file": str(source),
            "units": "m3/m3",
            "baseline_algorithm": baseline,
        },
    )
    logger.info(
        "smap_l3_read",
        extra={
            "source_file": str(source),
            "product": ident.product,
            "date": ident.date.isoformat(),
            "valid_cells": {p: int(v.sum()) for p, v in zip(chosen, valid, strict=True)},
        },
    )
    return ds


def j2000_seconds_to_datetime64(seconds: npt.ArrayLike) -> npt.NDArray[np.datetime64]:
    """SMAP ``tb_time_seconds`` to datetime64[ns] UTC; NaT where -9999 (fill) or not finite.

    Linear count from 2000-01-01T11:58:55.816Z without leap seconds, rounded to the microsecond (the
    float64 noise of a ~5e8 s count is ~60 ns; SMAP's tb_time_utc strings carry milliseconds).
    """
    s = np.asarray(seconds, dtype=np.float64)
    return offsets_to_datetime64(
        s, unit_ns=10**9, epoch=J2000_EPOCH_UTC, missing=s == TB_TIME_FILL, resolution_ns=1000
    )


def identify(handle: h5py.File, *, path: Path, first_pass: str = "AM") -> GranuleId:
    """Product, resolution, date and version from the file's Metadata group, checked against its name.

    Metadata (``/Metadata/DatasetIdentification`` shortName, CompositeReleaseID, ECSVersionID and
    ``/Metadata/Extent`` rangeBeginningDateTime) wins; the NSIDC file name
    (``SMAP_L3_SM_P_[E_]YYYYMMDD_Rnnnnn_nnn.h5``) fills gaps, and a contradiction is schema drift. With
    neither, the product follows from the array shape (the grid is unambiguous) and the date is unknown,
    which is an error.
    """
    meta_ident = handle.get("Metadata/DatasetIdentification")
    meta_extent = handle.get("Metadata/Extent")
    name = _FILE_NAME.match(path.name)

    meta_product = attr_text(meta_ident, "shortName") if meta_ident is not None else None
    name_product = None if name is None else ("SPL3SMP_E" if name["e"] else "SPL3SMP")
    product = _agree(meta_product, name_product, what="product", path=path)
    if product is None:
        product = _product_from_shape(handle, path=path, first_pass=first_pass)
    if product not in PRODUCT_RES_KM:
        raise SchemaDriftError(f"{path}: product {product!r} is not SPL3SMP or SPL3SMP_E")

    begin = attr_text(meta_extent, "rangeBeginningDateTime") if meta_extent is not None else None
    meta_date = _parse_date(begin[:10], path=path) if begin else None
    name_date = dt.datetime.strptime(name["date"], "%Y%m%d").date() if name else None
    date = _agree(meta_date, name_date, what="date", path=path)
    if date is None:
        raise SchemaDriftError(
            f"{path}: no date (neither /Metadata/Extent rangeBeginningDateTime nor an NSIDC file name)"
        )

    meta_crid = attr_text(meta_ident, "CompositeReleaseID") if meta_ident is not None else None
    crid = _agree(meta_crid, name["crid"] if name else None, what="CRID", path=path) or "unknown"
    ecs = attr_text(meta_ident, "ECSVersionID") if meta_ident is not None else None
    return GranuleId(
        product=product,
        res_km=PRODUCT_RES_KM[product],
        date=date,
        crid=crid,
        product_version=ecs or "unknown",
    )


def _read_pass(
    handle: h5py.File, name: str, *, grid: Ease2Grid, window: Window, path: Path
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint16], npt.NDArray[np.float64]]:
    group = require_group(handle, GROUPS[name], path=path)
    sfx = SUFFIX[name]
    sm_ds = require_dataset(group, f"soil_moisture{sfx}", path=path, shape=grid.shape, kinds="f")
    flag_ds = require_dataset(
        group, f"retrieval_qual_flag{sfx}", path=path, shape=grid.shape, kinds="u"
    )
    time_ds = require_dataset(
        group, f"tb_time_seconds{sfx}", path=path, shape=grid.shape, kinds="f"
    )
    _check_fill(sm_ds, float(SMAP_SM_FILL), path=path)
    _check_fill(flag_ds, float(SMAP_FLAG_FILL), path=path)
    _check_fill(time_ds, TB_TIME_FILL, path=path)
    _check_range(sm_ds, path=path)
    _check_units(sm_ds, path=path)
    sm = read_dataset(sm_ds, path=path, window=window).astype(np.float32, copy=False)
    _check_magnitude(sm, name=sm_ds.name, path=path)
    flags = read_dataset(flag_ds, path=path, window=window).astype(np.uint16, copy=False)
    seconds = read_dataset(time_ds, path=path, window=window).astype(np.float64, copy=False)
    return sm, flags, seconds


def _check_fill(ds: h5py.Dataset, expected: float, *, path: Path) -> None:
    found = attr_number(ds, "_FillValue")
    if found is not None and found != expected:
        raise SchemaDriftError(
            f"{path}: variable {ds.name} has _FillValue {found}, expected {expected}"
        )


def _check_range(ds: h5py.Dataset, *, path: Path) -> None:
    lo, hi = attr_number(ds, "valid_min"), attr_number(ds, "valid_max")
    if (lo is not None and np.float32(lo) != SMAP_SM_VALID_MIN) or (
        hi is not None and np.float32(hi) != SMAP_SM_VALID_MAX
    ):
        logger.warning(
            "smap_valid_range_differs",
            extra={"source_file": str(path), "variable": ds.name, "valid_min": lo, "valid_max": hi},
        )


def _check_units(ds: h5py.Dataset, *, path: Path) -> None:
    units = attr_text(ds, "units")
    if units is not None and units.lower().replace(" ", "") not in VOLUMETRIC_UNITS:
        raise SchemaDriftError(
            f"{path}: variable {ds.name} has units {units!r}, expected cm**3/cm**3 "
            "(a volumetric fraction)"
        )


def _check_magnitude(sm: npt.NDArray[np.float32], *, name: str, path: Path) -> None:
    """Volumetric soil moisture never exceeds 1: a typical stored value above it is percent."""
    stored = sm[np.isfinite(sm) & (sm != SMAP_SM_FILL)]
    if stored.size and (median := float(np.median(stored))) > 1.0:
        raise SchemaDriftError(
            f"{path}: variable {name}: the median stored value is {median:.3g}, above 1 m3/m3; "
            "the values look like percent, expected a volumetric fraction"
        )


def _baseline_algorithm(handle: h5py.File) -> str:
    group = handle.get(GROUPS["AM"])
    if group is None:
        group = handle.get(GROUPS["PM"])
    if not isinstance(group, h5py.Group):
        return "unknown"
    sfx = "" if group.name.endswith("_AM") else "_pm"
    sm, dca = group.get(f"soil_moisture{sfx}"), group.get(f"soil_moisture_dca{sfx}")
    if sm is not None and dca is not None and sm == dca:
        return "dca (soil_moisture is a hard link to soil_moisture_dca)"
    return "as labelled by the file (soil_moisture is its own dataset)"


def _product_from_shape(handle: h5py.File, *, path: Path, first_pass: str) -> str:
    ds = handle.get(f"{GROUPS[first_pass]}/soil_moisture{SUFFIX[first_pass]}")
    shape = tuple(ds.shape) if isinstance(ds, h5py.Dataset) else None
    for product, res in PRODUCT_RES_KM.items():
        if shape == ease2(res).shape:
            return product
    raise SchemaDriftError(
        f"{path}: cannot tell SPL3SMP from SPL3SMP_E: no /Metadata/DatasetIdentification shortName, "
        f"no NSIDC file name, and soil_moisture shape {shape} is neither 36 nor 9 km"
    )


def _agree(meta: Any, name: Any, *, what: str, path: Path) -> Any:
    if meta is not None and name is not None and meta != name:
        raise SchemaDriftError(
            f"{path}: {what} in metadata ({meta}) contradicts the file name ({name})"
        )
    return meta if meta is not None else name


def _parse_date(text: str, *, path: Path) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as err:
        raise SchemaDriftError(f"{path}: rangeBeginningDateTime {text!r} is not a date") from err


def _check_passes(passes: Sequence[str]) -> list[str]:
    chosen = [p.upper() for p in passes]
    if not chosen or len(set(chosen)) != len(chosen) or any(p not in GROUPS for p in chosen):
        raise ConfigError(
            f"passes must be a non-empty selection of AM, PM without repeats, got {passes!r}"
        )
    return [p for p in GROUPS if p in chosen]
