"""Write SMAP L3 daily granules (SPL3SMP 36 km, SPL3SMP_E 9 km) in the real HDF5 layout.

Global EASE-Grid 2.0 arrays (406 x 964 or 1624 x 3856) in the groups
``Soil_Moisture_Retrieval_Data_AM`` / ``_PM`` with the real names, dtypes, fill values and
attributes (:mod:`etl.synthetic.smap_spec`); PM names carry ``_pm``; ``soil_moisture_dca`` and
``retrieval_qual_flag_dca`` are hard links as in product version 8. Only the domain was simulated:
every cell outside it is fill, and latitude/longitude hold -9999 wherever the pass saw nothing (as
in the real files). Datasets are gzip-compressed (level 6) in chunks of an eighth of the rows and
columns (36 km: 50 x 120) or a sixteenth (9 km: 101 x 241); the DMR does not record the real
chunking, so these are choices. Chunks outside the domain are never written, so a granule stays a few hundred kB.
Determinism: ``track_times=False`` on every dataset and group, fixed creation dates in Metadata.
File names follow NSIDC: ``SMAP_L3_SM_P_YYYYMMDD_R19240_001.h5`` and
``SMAP_L3_SM_P_E_YYYYMMDD_R19240_001.h5`` in ``YYYY.MM.DD`` folders.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Final

import h5py
import numpy as np
import numpy.typing as npt

from etl.grid import Domain, ease2
from etl.synthetic import smap_spec
from etl.synthetic.overpass import utc_strings
from etl.synthetic.retrieval import CoarseStatics, Retrieval

CRID: Final = "R19240"
PRODUCTS: Final[dict[int, tuple[str, str, str]]] = {
    36: ("SPL3SMP", "SMAP_L3_SM_P_{ymd}_R19240_001.h5", "L3_SM_P"),
    9: ("SPL3SMP_E", "SMAP_L3_SM_P_E_{ymd}_R19240_001.h5", "L3_SM_P_E"),
}
_CHUNK_DIVISOR: Final[dict[int, int]] = {36: 8, 9: 16}


def granule_path(out_dir: Path, *, res_km: int, day: dt.date) -> Path:
    """``smap/<short name>/YYYY.MM.DD/<file>`` as in NSIDC's data pool."""
    short, pattern, _ = PRODUCTS[res_km]
    return out_dir / "smap" / short / f"{day:%Y.%m.%d}" / pattern.format(ymd=f"{day:%Y%m%d}")


def _attrs_for(spec: smap_spec.VariableSpec, res_km: int) -> dict[str, np.generic]:
    attrs = spec.attribute_values()
    if res_km != 36 and spec.base in ("EASE_row_index", "EASE_column_index"):
        nrows, ncols = ease2(res_km).shape
        top = nrows - 1 if spec.base == "EASE_row_index" else ncols - 1
        long_name = next(text for name, _, text in spec.attrs if name == "long_name")
        text = long_name.replace("36 km", f"{res_km} km")
        attrs["long_name"] = np.bytes_(text.encode("ascii"))
        attrs["valid_max"] = np.uint16(top)
    return attrs


def _window_values(
    base: str, retrieval: Retrieval, coarse: CoarseStatics, *, noise_sd: float
) -> npt.NDArray[np.generic]:
    seen = retrieval.geometry.seen
    fill32 = np.float32(smap_spec.FLOAT_FILL)

    def where_seen(values: npt.ArrayLike, fill: np.generic, dtype: str) -> npt.NDArray[np.generic]:
        out: npt.NDArray[np.generic] = np.where(seen, values, fill).astype(dtype)
        return out

    sm = retrieval.soil_moisture
    if base == "latitude":
        return where_seen(coarse.lat, fill32, "f4")
    if base == "longitude":
        return where_seen(coarse.lon, fill32, "f4")
    if base == "soil_moisture":
        return np.where(np.isfinite(sm), sm, fill32).astype("f4")
    if base == "soil_moisture_error":
        return np.where(np.isfinite(sm), np.float32(noise_sd), fill32).astype("f4")
    if base == "retrieval_qual_flag":
        return retrieval.retrieval_flag
    if base == "surface_flag":
        return retrieval.surface_flag
    if base == "tb_time_seconds":
        t = retrieval.geometry.time_seconds
        return np.where(seen, t, smap_spec.FLOAT_FILL).astype("f8")
    if base == "tb_time_utc":
        text = utc_strings(retrieval.geometry.time_seconds)
        return np.where(seen, text, smap_spec.TIME_STRING_FILL).astype("S24")
    if base == "EASE_row_index":
        return where_seen(coarse.rows, np.uint16(smap_spec.FLAG_FILL), "u2")
    if base == "EASE_column_index":
        return where_seen(coarse.cols, np.uint16(smap_spec.FLAG_FILL), "u2")
    if base == "static_water_body_fraction":
        return where_seen(coarse.water_fraction, fill32, "f4")
    if base == "clay_fraction":
        return where_seen(np.nan_to_num(coarse.clay_fraction, nan=-9999.0), fill32, "f4")
    if base == "bulk_density":
        return where_seen(np.nan_to_num(coarse.bulk_density, nan=-9999.0), fill32, "f4")
    raise KeyError(base)


def _write_group(
    group: h5py.Group,
    name: str,
    retrieval: Retrieval,
    coarse: CoarseStatics,
    domain: Domain,
    *,
    noise_sd: float,
) -> None:
    res = coarse.res_km
    shape = ease2(res).shape
    chunks = (shape[0] // _CHUNK_DIVISOR[res], shape[1] // _CHUNK_DIVISOR[res])
    rows, cols = domain.slices(res)
    for spec in smap_spec.specs(name):
        fill: object
        if spec.dtype == "S24":
            fill = smap_spec.TIME_STRING_FILL
        else:
            declared = spec.fill_value()
            fill = declared if declared is not None else np.dtype(spec.dtype).type(-9999)
        ds = group.create_dataset(
            spec.name,
            shape=shape,
            dtype=np.dtype(spec.dtype),
            chunks=chunks,
            compression="gzip",
            compression_opts=6,
            fillvalue=fill,
            track_times=False,
        )
        ds[rows, cols] = _window_values(spec.base, retrieval, coarse, noise_sd=noise_sd)
        for key, value in _attrs_for(spec, res).items():
            ds.attrs[key] = value
    for link, target in smap_spec.HARD_LINKS[name]:
        group[link] = group[target]


def _ascii(text: str) -> np.bytes_:
    return np.bytes_(text.encode("ascii"))


def _write_metadata(f: h5py.File, *, res_km: int, day: dt.date, file_name: str) -> None:
    short, _, smap_short = PRODUCTS[res_km]
    nrows, ncols = ease2(res_km).shape
    produced = f"{day + dt.timedelta(days=2):%Y-%m-%d}"
    meta = f.create_group("Metadata", track_order=False)
    ident = meta.create_group("DatasetIdentification")
    for key, value in {
        "shortName": short,
        "SMAPShortName": smap_short,
        "fileName": file_name,
        "CompositeReleaseID": CRID,
        "creationDate": produced,
        "ECSVersionID": "009",
        "format": "HDF5",
        "originatorOrganizationName": "smapds synthetic world (not a NASA product)",
    }.items():
        ident.attrs[key] = _ascii(value)
    series = meta.create_group("SeriesIdentification")
    series.attrs["shortName"] = _ascii(short)
    series.attrs["mission"] = _ascii("SMAP")
    extent = meta.create_group("Extent")
    extent.attrs["rangeBeginningDateTime"] = _ascii(f"{day:%Y-%m-%d}T00:00:00.000Z")
    extent.attrs["rangeEndingDateTime"] = _ascii(f"{day:%Y-%m-%d}T23:59:59.999Z")
    extent.attrs["westBoundLongitude"] = np.float32(-180.0)
    extent.attrs["eastBoundLongitude"] = np.float32(180.0)
    extent.attrs["southBoundLatitude"] = np.float32(-85.0445)
    extent.attrs["northBoundLatitude"] = np.float32(85.0445)
    grid = meta.create_group("GridSpatialRepresentation")
    grid.attrs["numberOfDimensions"] = np.int64(2)
    for axis, size in (("Row", nrows), ("Column", ncols)):
        g = grid.create_group(axis)
        g.attrs["dimensionSize"] = np.uint32(size)
        g.attrs["resolution"] = np.float32(res_km)


def write_granule(
    path: Path,
    *,
    domain: Domain,
    coarse: CoarseStatics,
    am: Retrieval,
    pm: Retrieval,
    day: dt.date,
    noise_sd: float,
) -> None:
    """Write one daily L3 granule (AM and PM groups) to ``path`` (via a temporary name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with h5py.File(tmp, "w", libver="earliest", track_order=False) as f:
        _write_metadata(f, res_km=coarse.res_km, day=day, file_name=path.name)
        for name, retrieval in ((smap_spec.GROUP_AM, am), (smap_spec.GROUP_PM, pm)):
            group = f.create_group(name, track_order=False)
            _write_group(group, name, retrieval, coarse, domain, noise_sd=noise_sd)
    tmp.replace(path)
