"""The daily input stack: everything the model needs for one day, on the domain's 1 km grid.

One function, :func:`build_stack`, used by training and by the daily product alike, so the two can
never disagree on a feature. It returns the 1 km covariates in :data:`FEATURES` order (float32, NaN
where unknown), the land mask, the coarse retrievals on the domain's 36 km (and 9 km) window, and a
record of which granules fed the day and how stale each covariate is.

Rules (each a keyword argument with no silent default where it matters):

- Albedo (MCD43A3 white-sky shortwave, daily) and ET (MOD16A2 8-day composite, converted to mm/day)
  use the newest granule not after the day, searched back up to the covariate's staleness limit.
  Staleness is the number of days between the day and the end of the granule's period.
- Precipitation (IMERG daily, mm/day) of the day, and its sums over the 3 and 7 days ending on the
  day. A missing day inside the window is replaced by the mean of the window's available days (and
  recorded); with no precipitation at all in the window the day cannot be built.
- Coarse soil moisture: the AM retrieval where valid, else the PM one (``prefer="AM"``), with the pass
  used per cell (0 none, 1 AM, 2 PM).
- A covariate staler than its limit makes the day *degraded* (``on_stale="degrade"``) or raises
  :class:`StaleInputError` (``on_stale="refuse"``).
- Of several versions of one granule in the archive (a reprocessed day), the newest is used.
- Static layers (soil texture, bulk density, organic carbon, elevation) come from
  :func:`etl.static.static_layers`, regridded once per domain and cached.
- An archived granule that its reader refuses (corrupt, schema drift, a precipitation file that is
  not a daily total) raises :class:`UnreadableInputError` naming the granule, so the caller can set
  it aside (quarantine) and build the day again without it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Final, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import xarray as xr
from affine import Affine

from etl.errors import InputError
from etl.grid import Domain
from etl.readers import read_imerg, read_sinusoidal_tile, read_smap_l3
from etl.regrid import RasterSource, regrid

log = logging.getLogger(__name__)

STACK_VERSION: Final = "2"

# (name, units, what it is) in the order the model sees them.
FEATURES: Final[tuple[tuple[str, str, str], ...]] = (
    ("albedo", "1", "MCD43A3 white-sky shortwave albedo"),
    ("et", "mm/day", "MOD16A2 evapotranspiration, 8-day composite per day"),
    ("precip", "mm/day", "IMERG daily precipitation"),
    ("precip_3d", "mm", "IMERG precipitation summed over the 3 days ending on the day"),
    ("precip_7d", "mm", "IMERG precipitation summed over the 7 days ending on the day"),
    ("clay", "1", "SoilGrids clay fraction 0-5 cm"),
    ("sand", "1", "SoilGrids sand fraction 0-5 cm"),
    ("bdod", "g/cm3", "SoilGrids bulk density 0-5 cm"),
    ("soc", "g/kg", "SoilGrids soil organic carbon 0-5 cm"),
    ("elevation", "m", "DEM elevation"),
    ("doy_sin", "1", "sin(2 pi day-of-year / 365.25)"),
    ("doy_cos", "1", "cos(2 pi day-of-year / 365.25)"),
)
FEATURE_NAMES: Final = tuple(f[0] for f in FEATURES)

FloatArray = npt.NDArray[np.float32]
T = TypeVar("T")

DAILY_PRECIP_UNITS: Final = frozenset({"mm/day", "mm"})
"""Units of a daily IMERG total (V07 ``mm/day``, V06 ``mm``); ``mm/hr`` is a half-hourly rate."""


class StaleInputError(InputError):
    """A covariate is older than its staleness limit and the configuration refuses such days."""

    status = "DEGRADED"


@dataclass(frozen=True)
class ArchivedFile:
    """A fetched granule as the archive holds it."""

    source: str
    granule_id: str
    granule_date: date
    path: Path
    sha256: str


class UnreadableInputError(InputError):
    """An archived granule that its reader refuses; ``file`` names it, ``reason`` says why."""

    status = "QUARANTINED"

    def __init__(self, file: ArchivedFile, reason: str) -> None:
        super().__init__(
            f"{file.source} granule {file.granule_id} of {file.granule_date}: {reason}"
        )
        self.file = file
        self.reason = reason

    def __reduce__(self) -> tuple[type[UnreadableInputError], tuple[ArchivedFile, str]]:
        return type(self), (self.file, self.reason)


Catalog = Callable[[str, date], Sequence[ArchivedFile]]
"""(input name, granule date) -> the archived files of that input for that date."""


@dataclass(frozen=True)
class StalenessLimits:
    """Oldest acceptable input per covariate, in days past the end of the granule's period."""

    albedo: int
    et: int
    precip_missing_days: int


@dataclass(frozen=True)
class InputNames:
    """Which configured inputs feed which role (names as in the settings' sources)."""

    smap36: str = "SPL3SMP"
    smap9: str | None = "SPL3SMP_E"
    albedo: str = "MCD43A3"
    et: str = "MOD16A2"
    precip: str = "IMERG_E"
    et_composite_days: int = 8


@dataclass(frozen=True)
class DailyStack:
    day: date
    domain: Domain
    features: xr.Dataset
    land: npt.NDArray[np.bool_]
    coarse36: xr.Dataset | None
    coarse9: xr.Dataset | None
    inputs: tuple[ArchivedFile, ...]
    staleness_days: Mapping[str, int]
    degraded_reasons: tuple[str, ...] = field(default=())

    @property
    def degraded(self) -> bool:
        return bool(self.degraded_reasons)

    def feature_matrix(self, rows: slice = slice(None), cols: slice = slice(None)) -> FloatArray:
        """(rows, cols, n_features) float32 in FEATURES order, of the whole domain or a window."""
        return np.stack([self.features[n].values[rows, cols] for n in FEATURE_NAMES], axis=-1)


_VERSION_TOKEN: Final = re.compile(
    r"_R\d{5}_\d{3}(?=\.)"  # SMAP: Composite Release ID and iteration, _R19240_001
    r"|\.V\d{2}[A-Z]?(?=\.)"  # IMERG: .V07B
    r"|\.\d{3}\.\d{13}(?=\.)"  # MODIS: collection and production time, .061.2024195000000
)


def latest_versions(catalog: Catalog) -> Catalog:
    """``catalog`` with one file per granule: of several versions of the same granule (a day
    reprocessed under a new CRID, collection or production time), the newest. Versions are
    told apart by the version token of the provider's file name, and the newest is the greatest
    name (R19240_001 < R19250_002, V06B < V07B, .061.2024195000000 < .061.2024301000000)."""

    def newest(source: str, day: date) -> list[ArchivedFile]:
        best: dict[str, ArchivedFile] = {}
        for f in catalog(source, day):
            key = _VERSION_TOKEN.sub("", f.granule_id)
            if key not in best or f.granule_id > best[key].granule_id:
                best[key] = f
        return sorted(best.values(), key=lambda f: f.granule_id)

    return newest


def build_stack(
    day: date,
    *,
    domain: Domain,
    catalog: Catalog,
    static: xr.Dataset,
    names: InputNames,
    limits: StalenessLimits,
    on_stale: Literal["degrade", "refuse"],
    prefer: Literal["AM", "PM"],
) -> DailyStack:
    """Assemble the day's inputs on ``domain`` (see the module docstring for the rules)."""
    catalog = latest_versions(catalog)
    used: list[ArchivedFile] = []
    stale: dict[str, int] = {}
    reasons: list[str] = []

    def note_stale(name: str, days: int, limit: int) -> None:
        stale[name] = days
        if days > limit:
            msg = f"{name} is {days} days old (limit {limit})"
            if on_stale == "refuse":
                raise StaleInputError(f"{day}: {msg}")
            reasons.append(msg)

    shape = domain.shape(1)
    albedo_files, age = _newest(catalog, names.albedo, day, limits.albedo + 30, period_days=1)
    note_stale("albedo", age, limits.albedo)
    albedo = _tiles(
        albedo_files, domain, product=names.albedo, variable="Albedo_WSA_shortwave", shape=shape
    )
    et_files, age = _newest(
        catalog, names.et, day, limits.et + 30, period_days=names.et_composite_days
    )
    note_stale("et", age, limits.et)
    et = _tiles(et_files, domain, product=names.et, variable="ET_500m", shape=shape)
    if et_files:
        et = et / np.float32(_composite_length(et_files[0].granule_date, names.et_composite_days))
    used += albedo_files + et_files

    precip, p3, p7, missing, precip_files = _precipitation(catalog, names.precip, day, domain)
    used += precip_files
    stale["precip_missing_days"] = missing
    if missing > limits.precip_missing_days:
        note_stale("precip_missing_days", missing, limits.precip_missing_days)

    doy = day.timetuple().tm_yday
    angle = 2.0 * np.pi * doy / 365.25
    layers: dict[str, FloatArray] = {
        "albedo": albedo,
        "et": et,
        "precip": precip,
        "precip_3d": p3,
        "precip_7d": p7,
        **{
            n: static[n].values.astype(np.float32)
            for n in ("clay", "sand", "bdod", "soc", "elevation")
        },
        "doy_sin": np.full(shape, np.sin(angle), np.float32),
        "doy_cos": np.full(shape, np.cos(angle), np.float32),
    }
    units = {n: u for n, u, _ in FEATURES}
    features = xr.Dataset(
        {n: (("y", "x"), layers[n], {"units": units[n]}) for n in FEATURE_NAMES},
        attrs={
            "day": day.isoformat(),
            "domain": domain.name,
            "stack_version": STACK_VERSION,
            "transform": domain.transform(1).to_gdal(),
            "crs": "EPSG:6933",
        },
    )

    coarse36, coarse9, coarse_files = coarse_retrievals(
        day, domain=domain, catalog=catalog, names=names, prefer=prefer
    )
    used += coarse_files
    land = static["land"].values.astype(bool)
    return DailyStack(
        day=day,
        domain=domain,
        features=features,
        land=land,
        coarse36=coarse36,
        coarse9=coarse9,
        inputs=tuple(used),
        staleness_days=stale,
        degraded_reasons=tuple(reasons),
    )


def coarse_retrievals(
    day: date,
    *,
    domain: Domain,
    catalog: Catalog,
    names: InputNames,
    prefer: Literal["AM", "PM"],
) -> tuple[xr.Dataset | None, xr.Dataset | None, list[ArchivedFile]]:
    """The day's 36 km and 9 km retrievals on the domain (None where there is no granule); of
    several versions of a granule, the newest (:func:`latest_versions`)."""
    catalog = latest_versions(catalog)
    found: dict[int, xr.Dataset] = {}
    used: list[ArchivedFile] = []
    for res, name in ((36, names.smap36), (9, names.smap9)):
        files = list(catalog(name, day)) if name is not None else []
        if files:
            used.append(files[0])
            found[res] = _read(files[0], partial(_coarse, domain=domain, prefer=prefer))
    return found.get(36), found.get(9), used


def _newest(
    catalog: Catalog, source: str, day: date, search_days: int, *, period_days: int
) -> tuple[list[ArchivedFile], int]:
    """The newest granule date with files, not after ``day``; and its staleness in days."""
    for back in range(search_days + period_days):
        d = day - timedelta(days=back)
        files = list(catalog(source, d))
        if files:
            period_end = d + timedelta(days=_composite_length(d, period_days) - 1)
            return files, max(0, (day - period_end).days)
    raise InputError(f"{day}: no {source} granule in the {search_days} days before")


def _composite_length(start: date, period_days: int) -> int:
    """Days covered by a composite starting on ``start``: the last one of a year is cut at 31 Dec."""
    year_end = date(start.year, 12, 31)
    return min(period_days, (year_end - start).days + 1)


def _tiles(
    files: Sequence[ArchivedFile],
    domain: Domain,
    *,
    product: str,
    variable: str,
    shape: tuple[int, int],
) -> FloatArray:
    sources = [_read(f, partial(_tile_source, product=product, variable=variable)) for f in files]
    if not sources:
        return np.full(shape, np.nan, np.float32)
    return regrid(sources, domain, method="average")


def _precipitation(
    catalog: Catalog, source: str, day: date, domain: Domain
) -> tuple[FloatArray, FloatArray, FloatArray, int, list[ArchivedFile]]:
    """The day's precipitation and its 3- and 7-day sums on the domain, the number of missing days
    in the window and the files used. A missing day counts as the mean of the window's others.

    The sums are made on the files' own grid and then regridded (3 regrids instead of 7: bilinear
    weights are linear, so this equals summing the regridded days up to float rounding); files on
    different grids (a provider changed its grid inside the window) are regridded day by day."""
    days = [day - timedelta(days=k) for k in range(7)]  # day first
    daily: list[RasterSource | None] = []
    used: list[ArchivedFile] = []
    for d in days:
        files = list(catalog(source, d))
        if not files:
            daily.append(None)
            continue
        used.append(files[0])
        daily.append(_read(files[0], _daily_source))
    have = [f for f in daily if f is not None]
    if not have:
        raise InputError(f"{day}: no {source} precipitation in the 7 days ending on the day")
    missing = sum(f is None for f in daily)
    first = have[0]
    if all(_same_grid(f, first) for f in have):
        fields = [None if f is None else f.data for f in daily]
        p, p3, p7 = (
            regrid(RasterSource(a, first.transform, first.crs), domain, method="bilinear")
            for a in _window_sums(fields)
        )
    else:
        regridded = [None if f is None else regrid(f, domain, method="bilinear") for f in daily]
        p, p3, p7 = _window_sums(regridded)
    return p, p3, p7, missing, used


def _same_grid(a: RasterSource, b: RasterSource) -> bool:
    return a.data.shape == b.data.shape and a.transform == b.transform and a.crs == b.crs


def _window_sums(
    fields: Sequence[npt.NDArray[np.floating] | None],
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(first field, sum of the first 3, sum of all); a missing field is the mean of the others."""
    have = [f for f in fields if f is not None]
    fill = np.mean(np.stack(have), axis=0).astype(np.float32)
    full = [fill if f is None else f.astype(np.float32, copy=False) for f in fields]
    p3: FloatArray = np.stack(full[:3]).sum(axis=0, dtype=np.float32)
    p7: FloatArray = np.stack(full).sum(axis=0, dtype=np.float32)
    return full[0], p3, p7


def _read(file: ArchivedFile, read: Callable[[Path], T]) -> T:
    """``read(path)`` of an archived granule; a refusal by its reader names the granule."""
    try:
        return read(file.path)
    except UnreadableInputError:
        raise
    except InputError as err:
        raise UnreadableInputError(file, str(err)) from err


def _tile_source(path: Path, *, product: str, variable: str) -> RasterSource:
    return _as_source(read_sinusoidal_tile(path, product=product, variable=variable))


def _daily_source(path: Path) -> RasterSource:
    return _as_source(_daily_total(read_imerg(path)))


def _daily_total(da: xr.DataArray) -> xr.DataArray:
    """A daily precipitation total as IMERG daily files give it; a rate in mm/hr is refused (it
    is a half-hourly file, or a file whose units changed: summing it as mm/day would be wrong)."""
    units = str(da.attrs.get("units", ""))
    if units not in DAILY_PRECIP_UNITS:
        raise InputError(
            f"{da.attrs.get('source_file')}: precipitation units {units!r}, expected a daily "
            f"total in {' or '.join(sorted(DAILY_PRECIP_UNITS))}"
        )
    return da


def _as_source(da: xr.DataArray) -> RasterSource:
    data = da.values
    if data.ndim == 3:
        if data.shape[0] != 1:
            raise InputError(
                f"{da.attrs.get('source_file')}: expected one time step, got {data.shape[0]}"
            )
        data = data[0]
    return RasterSource(
        data=data.astype(np.float32, copy=False),
        transform=Affine.from_gdal(*da.attrs["transform"]),
        crs=da.attrs["crs"],
    )


def _coarse(path: Path, domain: Domain, *, prefer: Literal["AM", "PM"]) -> xr.Dataset:
    """The coarse retrieval on the domain window: ``prefer`` where valid, the other pass elsewhere."""
    ds = read_smap_l3(path, domain=domain)
    other = "PM" if prefer == "AM" else "AM"
    first = ds["soil_moisture"].sel({"pass": prefer}).values
    second = ds["soil_moisture"].sel({"pass": other}).values
    take_first = np.isfinite(first)
    take_second = ~take_first & np.isfinite(second)
    sm = np.where(take_first, first, np.where(take_second, second, np.nan)).astype(np.float32)
    code = {"AM": 1, "PM": 2}
    pass_used = np.where(take_first, code[prefer], np.where(take_second, code[other], 0))
    return xr.Dataset(
        {
            "soil_moisture": (("y", "x"), sm, {"units": "m3/m3"}),
            "pass_used": (
                ("y", "x"),
                pass_used.astype(np.uint8),
                {"flag_values": "0 1 2", "flag_meanings": "none AM PM"},
            ),
        },
        coords={"y": ds["y"].values, "x": ds["x"].values},
        attrs={
            k: ds.attrs[k]
            for k in ("product", "version", "date", "source_file", "res_km", "transform")
            if k in ds.attrs
        },
    )
