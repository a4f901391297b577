"""Bad inputs (issue 10, part 4): a catalogue of malformed SMAP granules, covariates, static layers,
station files and settings. Each one is refused with an error that names it (file, line or
setting), is set aside (a quarantined granule with its ``.reason`` and inventory row, rejected
station rows or files in ``smapds.ingest_rejects`` / ``smapds.ingest_files``, a setting refused at
start-up) and the rest goes on: the day's map is still produced, the good files and rows still load.

``CATALOGUE`` is the table: one row per case with the fault and the outcome the test checks. Cases
that other test modules already cover are listed in ``COVERED_ELSEWHERE`` instead of repeated here.
A case with ``bug`` set documents a defect in code this suite may not change; its test is
``xfail(strict=True)`` and starts to fail (XPASS) as soon as the defect is fixed.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import rasterio
import sqlalchemy as sa
from produced_world import DAYS, Produced
from pyproj import Transformer
from run_cli import smapds
from sqlalchemy.engine import Engine

from etl.errors import ConfigError
from etl.grid import get_domain
from etl.sources.local import LocalDirectorySource
from service.db import Database
from service.fetch import SourceOutcome, fetch_day
from service.ingest import FileSummary, ingest_csv, ingest_ismn
from service.product import ProductResult, produce_day
from service.settings import load_settings
from service.sources import SYNTHETIC_DEFAULTS, build_sources
from service.stacks import stack_factory

DAY = DAYS[-1]
"""The day every granule case breaks one input of, and then produces."""
DEMO = get_domain("demo")
WEST, SOUTH, EAST, NORTH = DEMO.bbox_lonlat()
CENTRE = ((WEST + EAST) / 2, (SOUTH + NORTH) / 2)
PM = "Soil_Moisture_Retrieval_Data_PM"
AM = "Soil_Moisture_Retrieval_Data_AM"
HTML = (
    b"<!DOCTYPE html><html><head><title>503</title></head><body>Service Unavailable</body></html>\n"
)


@dataclass(frozen=True)
class Case:
    """One bad input: what it is, what is wrong, the outcome checked, and how it is exercised."""

    id: str
    input: str
    fault: str
    expected: str
    spec: Any = field(repr=False)
    bug: str | None = None


# -- SMAP granules and covariates: break one archived granule of DAY and produce the day ----------


@dataclass(frozen=True)
class GranuleFault:
    """Break the world's granule of ``source`` for ``granule_day`` (a copy), fetch it, produce DAY.

    ``caught``: ``fetch`` (quarantined by the archive's check), ``use`` (fetched, then refused by
    its reader when the day is built and quarantined then) or ``masked`` (a valid file whose bad
    values the reading rules mask). ``reason`` is in the quarantine ``.reason`` and the inventory.
    """

    source: str
    granule_day: date
    corrupt: Callable[[Path], None]
    caught: str
    reason: str = ""
    check: Callable[[ProductResult, dict[str, Any]], None] = lambda result, baseline: None


def _h5_edit(path: Path, edit: Callable[[h5py.File], None]) -> None:
    with h5py.File(path, "r+") as f:
        edit(f)


def _set_sm(f: h5py.File, transform: Callable[[np.ndarray], np.ndarray]) -> None:
    for group, name in ((AM, "soil_moisture"), (PM, "soil_moisture_pm")):
        ds = f[f"{group}/{name}"]
        ds[...] = transform(ds[...])


def _all_fill(path: Path) -> None:
    _h5_edit(path, lambda f: _set_sm(f, lambda a: np.full_like(a, -9999.0)))


def _out_of_range(path: Path) -> None:
    """Every other stored AM value becomes 0.75 m3/m3 (above the 0.5 valid maximum); PM is fill."""

    def edit(f: h5py.File) -> None:
        am = f[f"{AM}/soil_moisture"]
        values = am[...]
        stored = np.flatnonzero(values.ravel() != -9999.0)
        flat = values.ravel()
        flat[stored[::2]] = 0.75
        am[...] = flat.reshape(values.shape)
        pm = f[f"{PM}/soil_moisture_pm"]
        pm[...] = np.full(pm.shape, -9999.0, np.float32)

    _h5_edit(path, edit)


def _percent(relabel: bool) -> Callable[[Path], None]:
    def corrupt(path: Path) -> None:
        def edit(f: h5py.File) -> None:
            _set_sm(f, lambda a: np.where(a == -9999.0, a, a * 100).astype(np.float32))
            if relabel:
                for group, name in ((AM, "soil_moisture"), (PM, "soil_moisture_pm")):
                    f[f"{group}/{name}"].attrs["units"] = np.bytes_(b"%")

        _h5_edit(path, edit)

    return corrupt


def _rename_group(path: Path) -> None:
    _h5_edit(path, lambda f: f.move(AM, f"{AM}_v10"))


def _rename_pm_dataset(path: Path) -> None:
    _h5_edit(path, lambda f: f.move(f"{PM}/soil_moisture_pm", f"{PM}/sm_pm"))


def _rename_imerg_variable(path: Path) -> None:
    _h5_edit(path, lambda f: f.move("precipitation", "precipitation_v8"))


def _hourly_units(path: Path) -> None:
    _h5_edit(path, lambda f: f["precipitation"].attrs.__setitem__("units", np.bytes_(b"mm/hr")))


def _overwrite(start: int, length: int) -> Callable[[Path], None]:
    def corrupt(path: Path) -> None:
        with open(path, "r+b") as fh:
            fh.seek(start)
            fh.write(b"\xa5" * length)

    return corrupt


def _damaged_chunks(path: Path) -> None:
    """The AM soil moisture's compressed chunks overwritten: it opens, the data does not inflate."""
    with h5py.File(path, "r") as f:
        ds = f[f"{AM}/soil_moisture"]
        chunks = [ds.id.get_chunk_info(i) for i in range(ds.id.get_num_chunks())]
    with open(path, "r+b") as fh:
        for chunk in chunks:
            fh.seek(chunk.byte_offset)
            fh.write(b"\xa5" * chunk.size)


def _truncate(fraction: float) -> Callable[[Path], None]:
    def corrupt(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])

    return corrupt


def _html(path: Path) -> None:
    path.write_bytes(HTML)


def _metadata_says_the_day_before(path: Path) -> None:
    def edit(f: h5py.File) -> None:
        extent = f["Metadata/Extent"]
        before = (DAY - timedelta(days=1)).isoformat()
        extent.attrs["rangeBeginningDateTime"] = np.bytes_(f"{before}T00:00:00.000Z".encode())

    _h5_edit(path, edit)


def _albedo_hole(path: Path) -> None:
    """White-sky albedo set to its fill (32767) over about 120 x 120 km around the domain centre."""
    with rasterio.open(path, "r+") as ds:
        x, y = Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True).transform(*CENTRE)
        row, col = ds.index(x, y)
        half = 130  # 463 m pixels
        band = ds.read(1)
        band[max(row - half, 0) : row + half, max(col - half, 0) : col + half] = 32767
        ds.write(band, 1)


def _imerg_hole(path: Path) -> None:
    """Precipitation set to its fill (-9999.9) over 1.2 x 1.2 degrees around the domain centre."""

    def edit(f: h5py.File) -> None:
        lon, lat = f["lon"][...], f["lat"][...]
        ds = f["precipitation"]  # (time, lon, lat)
        values = ds[...]
        i = np.flatnonzero(np.abs(lon - CENTRE[0]) <= 0.6)
        j = np.flatnonzero(np.abs(lat - CENTRE[1]) <= 0.6)
        values[:, i.min() : i.max() + 1, j.min() : j.max() + 1] = np.float32(-9999.9)
        ds[...] = values

    _h5_edit(path, edit)


def _world_files(world: Path, source: str, day: date) -> list[Path]:
    cfg = SYNTHETIC_DEFAULTS[source]
    src = LocalDirectorySource(source, world, cfg.pattern or "", composite_days=cfg.composite_days)
    return [Path(g.url.removeprefix("file://")) for g in src.discover(day)]


# Checks of the day's product against the same day produced from the good inputs (``baseline``).


def _provenance(result: ProductResult) -> dict[str, Any]:
    assert result.path is not None
    stac = json.loads(result.path.with_suffix(".json").read_text())
    provenance: dict[str, Any] = stac["properties"]["smapds:provenance"]
    return provenance


def _no_retrieval_used(result: ProductResult, baseline: dict[str, Any]) -> None:
    assert baseline["coarse_cells_valid"] > 0 and result.stats["coarse_cells_valid"] == 0
    assert result.stats["gap_filled_fraction"] == pytest.approx(result.stats["valid_fraction"])
    assert result.stats["valid_fraction"] == pytest.approx(baseline["valid_fraction"])


def _fewer_retrievals(result: ProductResult, baseline: dict[str, Any]) -> None:
    assert 0 < result.stats["coarse_cells_valid"] < baseline["coarse_cells_valid"]
    assert result.stats["max"] <= 0.5 and result.stats["valid_fraction"] == pytest.approx(
        baseline["valid_fraction"]
    )


def _same_map_coverage(result: ProductResult, baseline: dict[str, Any]) -> None:
    assert result.stats["valid_fraction"] == pytest.approx(baseline["valid_fraction"])
    assert result.stats["coarse_cells_valid"] == baseline["coarse_cells_valid"]


def _staleness(name: str, days: int) -> Callable[[ProductResult, dict[str, Any]], None]:
    def check(result: ProductResult, baseline: dict[str, Any]) -> None:
        assert _provenance(result)["staleness_days"][name] == days
        assert result.stats["valid_fraction"] == pytest.approx(baseline["valid_fraction"], abs=0.01)

    return check


def _hole_at_centre(result: ProductResult, baseline: dict[str, Any]) -> None:
    assert result.path is not None
    with rasterio.open(result.path) as ds:
        sm, qa = ds.read(1), ds.read(3)
    row, col = (int(v) for v in DEMO.rowcol(1, *CENTRE))
    assert sm[row, col] == -32768 and qa[row, col] & 16  # no data where the covariate is unknown
    hole = baseline["valid_fraction"] - result.stats["valid_fraction"]
    assert 0.02 < hole < 0.3  # the hole, and only the hole, is missing


GRANULE_CASES = [
    Case(
        "smap-all-fill-day",
        "SMAP L3 36 km",
        "every soil_moisture value of both passes is the -9999 fill",
        "fetched; the day is produced, every pixel gap-filled (no 36 km cell corrects it)",
        GranuleFault("SPL3SMP", DAY, _all_fill, "masked", check=_no_retrieval_used),
    ),
    Case(
        "smap-out-of-range-values",
        "SMAP L3 36 km",
        "half the AM retrievals are 0.75 m3/m3 (valid range 0.02-0.5), the PM pass is fill",
        "fetched; out-of-range cells are not used, the others still correct the map (max <= 0.5)",
        GranuleFault("SPL3SMP", DAY, _out_of_range, "masked", check=_fewer_retrievals),
    ),
    Case(
        "smap-percent-units",
        "SMAP L3 36 km",
        "soil moisture in percent (x100) with units '%'",
        "quarantined when read (schema drift: units '%'); the day is produced gap-filled",
        GranuleFault(
            "SPL3SMP", DAY, _percent(relabel=True), "use", "units '%'", _no_retrieval_used
        ),
    ),
    Case(
        "smap-percent-values-unlabelled",
        "SMAP L3 36 km",
        "soil moisture in percent (x100) still labelled cm**3/cm**3",
        "quarantined when read (values look like percent); the day is produced gap-filled",
        GranuleFault(
            "SPL3SMP", DAY, _percent(relabel=False), "use", "look like percent", _no_retrieval_used
        ),
    ),
    Case(
        "smap-renamed-group",
        "SMAP L3 36 km",
        "schema drift: group Soil_Moisture_Retrieval_Data_AM renamed ..._AM_v10",
        "quarantined when read (group ..._AM is missing); the day is produced gap-filled",
        GranuleFault(
            "SPL3SMP",
            DAY,
            _rename_group,
            "use",
            f"group /{AM} is missing",
            _no_retrieval_used,
        ),
    ),
    Case(
        "smap9-renamed-dataset",
        "SMAP L3 9 km",
        "schema drift: dataset soil_moisture_pm renamed sm_pm",
        "quarantined when read (variable .../soil_moisture_pm is missing); the day is produced",
        GranuleFault(
            "SPL3SMP_E",
            DAY,
            _rename_pm_dataset,
            "use",
            f"variable /{PM}/soil_moisture_pm is missing",
            _same_map_coverage,
        ),
    ),
    Case(
        "smap-corrupt-superblock",
        "SMAP L3 36 km",
        "bytes 8-71 (the HDF5 superblock) overwritten",
        "quarantined at fetch (does not open); the day is produced gap-filled",
        GranuleFault(
            "SPL3SMP", DAY, _overwrite(8, 64), "fetch", "does not open", _no_retrieval_used
        ),
    ),
    Case(
        "smap-corrupt-data-chunks",
        "SMAP L3 36 km",
        "the compressed chunks of soil_moisture overwritten (the file still opens)",
        "quarantined when read (cannot be read); the day is produced gap-filled",
        GranuleFault("SPL3SMP", DAY, _damaged_chunks, "use", "cannot be read", _no_retrieval_used),
    ),
    Case(
        "smap-truncated",
        "SMAP L3 36 km",
        "the granule cut at 60 % of its size",
        "quarantined at fetch (does not open); the day is produced gap-filled",
        GranuleFault("SPL3SMP", DAY, _truncate(0.6), "fetch", "does not open", _no_retrieval_used),
    ),
    Case(
        "smap9-zero-byte",
        "SMAP L3 9 km",
        "an empty file",
        "quarantined at fetch (empty file); the day is produced as before",
        GranuleFault("SPL3SMP_E", DAY, _truncate(0.0), "fetch", "empty file", _same_map_coverage),
    ),
    Case(
        "smap-date-contradicts-name",
        "SMAP L3 36 km",
        "the metadata's rangeBeginningDateTime says the day before the file name",
        "quarantined when read (date in metadata contradicts the file name); produced gap-filled",
        GranuleFault(
            "SPL3SMP",
            DAY,
            _metadata_says_the_day_before,
            "use",
            "contradicts the file name",
            _no_retrieval_used,
        ),
    ),
    Case(
        "albedo-html-error-page",
        "MCD43A3 albedo (GeoTIFF)",
        "an HTML error page saved as the .tif",
        "quarantined at fetch (does not open); the day is produced with the previous day's albedo",
        GranuleFault("MCD43A3", DAY, _html, "fetch", "does not open", _staleness("albedo", 1)),
    ),
    Case(
        "albedo-truncated",
        "MCD43A3 albedo (GeoTIFF)",
        "the tile cut at 30 % (its first pixel still reads)",
        "quarantined when read (band 1 cannot be read); produced with the previous day's albedo",
        GranuleFault(
            "MCD43A3", DAY, _truncate(0.3), "use", "cannot be read", _staleness("albedo", 1)
        ),
    ),
    Case(
        "albedo-nan-hole",
        "MCD43A3 albedo (GeoTIFF)",
        "a 120 km square of fill values (32767) over the domain centre",
        "fetched; the day is produced, pixels under the hole are no data (QA 16), the rest valid",
        GranuleFault("MCD43A3", DAY, _albedo_hole, "masked", check=_hole_at_centre),
    ),
    Case(
        "et-zero-byte",
        "MOD16A2 ET (8-day composite)",
        "the composite covering the day is an empty file",
        "quarantined at fetch (empty file); produced with the composite before (11 days old)",
        GranuleFault(
            "MOD16A2",
            date(2024, 3, 29),
            _truncate(0.0),
            "fetch",
            "empty file",
            _staleness("et", 11),
        ),
    ),
    Case(
        "imerg-html-error-page",
        "IMERG daily precipitation (NetCDF-4)",
        "an HTML error page saved as the .nc4",
        "quarantined at fetch (does not open); the missing day is filled from the 7-day window",
        GranuleFault(
            "IMERG_E", DAY, _html, "fetch", "does not open", _staleness("precip_missing_days", 1)
        ),
    ),
    Case(
        "imerg-renamed-variable",
        "IMERG daily precipitation (NetCDF-4)",
        "schema drift: variable precipitation renamed precipitation_v8",
        "quarantined when read (variable ... is missing); the day is filled from the window",
        GranuleFault(
            "IMERG_E",
            DAY,
            _rename_imerg_variable,
            "use",
            "is missing",
            _staleness("precip_missing_days", 1),
        ),
    ),
    Case(
        "imerg-hourly-units",
        "IMERG daily precipitation (NetCDF-4)",
        "wrong units: a daily file labelled mm/hr (a half-hourly rate)",
        "quarantined when read (units 'mm/hr', expected a daily total); filled from the window",
        GranuleFault(
            "IMERG_E",
            DAY,
            _hourly_units,
            "use",
            "units 'mm/hr'",
            _staleness("precip_missing_days", 1),
        ),
    ),
    Case(
        "imerg-nan-hole",
        "IMERG daily precipitation (NetCDF-4)",
        "a 1.2 degree square of fill (-9999.9) over the domain centre",
        "fetched; the day is produced, pixels under the hole are no data (QA 16), the rest valid",
        GranuleFault("IMERG_E", DAY, _imerg_hole, "masked", check=_hole_at_centre),
    ),
]


# -- static layers (settings point at them) ------------------------------------------------------

STATIC_CASES = [
    Case(
        "dem-html-error-page",
        "DEM (SMAPDS_DEM_PATH)",
        "an HTML error page saved as the DEM GeoTIFF",
        "`smapds produce` exits 1 with one line naming the file; no product row changes",
        "dem",
    ),
    Case(
        "soilgrids-nan-hole",
        "SoilGrids clay (SMAPDS_SOIL_DIR)",
        "a square of nodata in the clay layer over the domain centre",
        "the day is produced; pixels under the hole are no data (QA 16, not land), the rest valid",
        "soil",
    ),
]


# -- station files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StationFault:
    """Files to ingest (name -> bytes; names ending ``.stm``/``.zip`` go to ``ingest ismn``, a
    ``stations`` / ``observations`` pair to ``ingest csv``) and what must come of them.

    ``statuses``: file name (or zip member name) -> status; ``errors``: file name -> text in its
    error; ``rejects``: file name -> {reason: count} in ``smapds.ingest_rejects``; ``stored``:
    station -> observation rows in the database afterwards.
    """

    files: Callable[[Path], dict[str, bytes]]
    statuses: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    rejects: dict[str, dict[str, int]] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)
    extra: Callable[[Engine, Path], None] | None = None


STATIONS_CSV = (
    "network,station,lon,lat,elevation_m\n"
    f"RELY,A1,{CENTRE[0]:.5f},{CENTRE[1]:.5f},50\n"
    f"RELY,B2,{CENTRE[0] + 0.3:.5f},{CENTRE[1] + 0.2:.5f},60\n"
)
OBS_HEADER = "network,station,variable,depth_from_m,depth_to_m,time,value,quality_flag\n"


def _obs_rows(station: str, hours: int = 24, *, value: str = "0.2{h:03d}") -> list[str]:
    return [
        f"RELY,{station},soil_moisture,0.0,0.05,2024-04-05T{h:02d}:00:00Z,{value.format(h=h)},G"
        for h in range(hours)
    ]


def _csv(stations: str | bytes, observations: str | bytes) -> Callable[[Path], dict[str, bytes]]:
    def files(tmp: Path) -> dict[str, bytes]:
        def raw(v: str | bytes) -> bytes:
            return v if isinstance(v, bytes) else v.encode()

        return {"stations.csv": raw(stations), "observations.csv": raw(observations)}

    return files


def _good_obs() -> str:
    return OBS_HEADER + "\n".join(_obs_rows("A1") + _obs_rows("B2")) + "\n"


def _obs_with(bad: list[str], *, every: int = 4) -> str:
    """A1 and B2 good rows, with ``bad`` rows for A1 spliced in every ``every`` lines."""
    rows = _obs_rows("A1") + _obs_rows("B2")
    for k, row in enumerate(bad):
        rows.insert(k * (every + 1) + 1, row)
    return OBS_HEADER + "\n".join(rows) + "\n"


def _unterminated_quote() -> str:
    rows = _obs_rows("A1") + _obs_rows("B2")
    rows.insert(3, 'RELY,"A1,soil_moisture,0.0,0.05,2024-04-05T23:30:00Z,0.2,G')
    return OBS_HEADER + "\n".join(rows) + "\n"


def _huge_field() -> str:
    rows = _obs_rows("A1") + _obs_rows("B2")
    rows.insert(3, "RELY,A1,soil_moisture,0.0,0.05,2024-04-05T23:30:00Z," + "9" * 1_000_000 + ",G")
    return OBS_HEADER + "\n".join(rows) + "\n"


def _unicode_station_csv() -> Callable[[Path], dict[str, bytes]]:
    stations = STATIONS_CSV.replace("A1,", "Tōngzhōu,")
    rows = [r.replace("RELY,A1,", "RELY,Tōngzhōu,") for r in _obs_rows("A1")] + _obs_rows("B2")
    body = (OBS_HEADER + "\n".join(rows) + "\n").encode()
    stray = b"RELY,B2,soil_moisture,0.0,0.05,2024-04-05T23:30:00Z,0.2,G\xff\n"
    return _csv(stations.encode(), body + stray)


def _stm_name(station: str) -> str:
    return f"RELY_RELY_{station}_sm_0.050000_0.050000_5TM_20240401_20240408.stm"


def _stm(station: str, lines: list[str] | None = None) -> bytes:
    head = (
        f"RELY       RELY            {station}             "
        f"{CENTRE[1]:.5f}   {CENTRE[0]:.5f}  50.00    0.05    0.05 5TM"
    )
    body = lines if lines is not None else _stm_lines()
    return ("\r\n".join([head, *body]) + "\r\n").encode()


def _stm_lines(hours: int = 48, *, value: str = "0.2{h:03d}") -> list[str]:
    start = date(2024, 4, 1)
    out = []
    for h in range(hours):
        day = start + timedelta(days=h // 24)
        out.append(f"{day:%Y/%m/%d} {h % 24:02d}:00   {value.format(h=h)} G M")
    return out


def _ismn(**members: bytes) -> Callable[[Path], dict[str, bytes]]:
    def files(tmp: Path) -> dict[str, bytes]:
        return {_stm_name("GOOD"): _stm("GOOD"), **members}

    return files


def _zip_claiming(size: int) -> Callable[[Path], dict[str, bytes]]:
    """A zip with a good member and one whose central directory claims ``size`` bytes: only the
    header says so (the member holds a few bytes), so no test ever writes or inflates gigabytes."""

    def files(tmp: Path) -> dict[str, bytes]:
        path = tmp / "build.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"RELY/ZOK/{_stm_name('ZOK')}", _stm("ZOK"))
            zf.writestr(f"RELY/BOMB/{_stm_name('BOMB')}", _stm("BOMB"))
            # the central directory is written at close: it will claim ``size`` (zip64 field)
            zf.getinfo(f"RELY/BOMB/{_stm_name('BOMB')}").file_size = size
        data = path.read_bytes()
        path.unlink()
        assert struct.pack("<Q", size) in data  # the zip64 extra field carries the claim
        return {"download.zip": data}

    return files


def _zip_understating() -> Callable[[Path], dict[str, bytes]]:
    """A member whose header claims 1 KiB but that inflates to 20 MiB (a bomb hiding its size)."""

    def files(tmp: Path) -> dict[str, bytes]:
        path = tmp / "build.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"RELY/ZOK/{_stm_name('ZOK')}", _stm("ZOK"))
            zf.writestr(f"RELY/BOMB/{_stm_name('BOMB')}", _stm("BOMB") + b" " * (20 << 20))
            zf.getinfo(f"RELY/BOMB/{_stm_name('BOMB')}").file_size = 1024
        data = path.read_bytes()
        path.unlink()
        return {"download.zip": data}

    return files


def _zip_slip_in_folder() -> Callable[[Path], dict[str, bytes]]:
    def files(tmp: Path) -> dict[str, bytes]:
        path = tmp / "build.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(f"RELY/ZOK/{_stm_name('ZOK')}", _stm("ZOK"))
            zf.writestr(f"../../../../{_stm_name('SLIP')}", _stm("SLIP"))
        data = path.read_bytes()
        path.unlink()
        return {"deep/er/download.zip": data}

    return files


def _nothing_escaped(engine: Engine, tmp: Path) -> None:
    assert not list(tmp.parent.rglob(_stm_name("SLIP")))


def _first_values_kept(engine: Engine, tmp: Path) -> None:
    with engine.connect() as conn:
        values = conn.execute(
            sa.text("""
            SELECT o.value FROM smapds.observations o
              JOIN smapds.sensors USING (sensor_id) JOIN smapds.stations st USING (station_id)
             WHERE st.station = 'DUP' ORDER BY o.time""")
        ).scalars()
        assert max(values) < 0.3  # the repeated hours (0.9) did not replace the first ones


def _details_are_short(engine: Engine, tmp: Path) -> None:
    with engine.connect() as conn:
        longest = conn.execute(
            sa.text(
                "SELECT max(length(r.detail)), max(length(f.error)) FROM smapds.ingest_rejects r "
                "JOIN smapds.ingest_files f USING (file_id)"
            )
        ).one()
    assert longest[0] < 2000 and longest[1] < 4000, longest


def _no_percent_values(engine: Engine, tmp: Path) -> None:
    with engine.connect() as conn:
        top = conn.execute(sa.text("SELECT max(value) FROM smapds.observations")).scalar()
    assert top <= 1.0, f"soil moisture {top} m3/m3 stored"


STATION_CASES = [
    Case(
        "csv-mixed-date-formats",
        "CSV observations",
        "rows written as DD/MM/YYYY, YYYY/MM/DD and 'April 5 2024' between ISO rows",
        "those rows rejected (unparseable_time, with their line numbers); the rest loads",
        StationFault(
            _csv(
                STATIONS_CSV,
                _obs_with(
                    [
                        "RELY,A1,soil_moisture,0.0,0.05,05/04/2024 23:10Z,0.2,G",
                        "RELY,A1,soil_moisture,0.0,0.05,2024/04/05 23:20Z,0.2,G",
                        "RELY,A1,soil_moisture,0.0,0.05,April 5 2024 23:30 UTC,0.2,G",
                    ]
                ),
            ),
            statuses={"stations.csv": "OK", "observations.csv": "DEGRADED"},
            errors={"observations.csv": "unparseable_time 3 (first: line 3"},
            rejects={"observations.csv": {"unparseable_time": 3}},
            stored={"A1": 24, "B2": 24},
        ),
    ),
    Case(
        "csv-duplicate-timestamps",
        "CSV observations",
        "three A1 hours given again later with other values, one of them in +08:00",
        "the repeats rejected (duplicate_time); the first values are kept",
        StationFault(
            _csv(
                STATIONS_CSV,
                _good_obs()
                + "RELY,A1,soil_moisture,0.0,0.05,2024-04-05T01:00:00Z,0.9,G\n"
                + "RELY,A1,soil_moisture,0.0,0.05,2024-04-05T10:00:00+08:00,0.9,G\n"
                + "RELY,A1,soil_moisture,0.0,0.05,2024-04-05T05:00:00Z,0.9,G\n",
            ),
            statuses={"stations.csv": "OK", "observations.csv": "DEGRADED"},
            errors={"observations.csv": "duplicate_time 3"},
            rejects={"observations.csv": {"duplicate_time": 3}},
            stored={"A1": 24, "B2": 24},
        ),
    ),
    Case(
        "csv-local-times-without-zone",
        "CSV observations",
        "non-UTC times: a whole file in local time with no zone",
        "file QUARANTINED (every row time_zone_missing); the stations table still loads",
        StationFault(
            _csv(STATIONS_CSV, _good_obs().replace(":00:00Z,", ":00:00,")),
            statuses={"stations.csv": "OK", "observations.csv": "QUARANTINED"},
            errors={"observations.csv": "time_zone_missing 48"},
            rejects={"observations.csv": {"time_zone_missing": 48}},
            stored={},
        ),
    ),
    Case(
        "csv-swapped-lat-lon",
        "CSV stations",
        "station B2 with latitude and longitude swapped",
        "B2 rejected (lat_lon_out_of_range, the message suggests the swap), its rows "
        "unknown_station; A1 and its rows load",
        StationFault(
            _csv(
                STATIONS_CSV.replace(
                    f"B2,{CENTRE[0] + 0.3:.5f},{CENTRE[1] + 0.2:.5f}",
                    f"B2,{CENTRE[1] + 0.2:.5f},{CENTRE[0] + 0.3:.5f}",
                ),
                _good_obs(),
            ),
            statuses={"stations.csv": "DEGRADED", "observations.csv": "DEGRADED"},
            errors={"stations.csv": "swapped?", "observations.csv": "unknown_station 24"},
            rejects={
                "stations.csv": {"lat_lon_out_of_range": 1},
                "observations.csv": {"unknown_station": 24},
            },
            stored={"A1": 24},
        ),
    ),
    Case(
        "csv-nan-and-infinite-values",
        "CSV observations",
        "values 'NaN', 'inf' and '-' between good rows",
        "those rows rejected (non_numeric_value); the rest loads",
        StationFault(
            _csv(
                STATIONS_CSV,
                _obs_with(
                    [
                        "RELY,A1,soil_moisture,0.0,0.05,2024-04-05T23:10:00Z,NaN,G",
                        "RELY,A1,soil_moisture,0.0,0.05,2024-04-05T23:20:00Z,inf,G",
                        "RELY,A1,soil_moisture,0.0,0.05,2024-04-05T23:30:00Z,-,G",
                    ]
                ),
            ),
            statuses={"stations.csv": "OK", "observations.csv": "DEGRADED"},
            errors={"observations.csv": "non_numeric_value 3"},
            rejects={"observations.csv": {"non_numeric_value": 3}},
            stored={"A1": 24, "B2": 24},
        ),
    ),
    Case(
        "csv-impossible-times",
        "CSV observations",
        "times in 1850 and 2150 and on 30 February",
        "rejected (time_out_of_range, unparseable_time); the rest loads",
        StationFault(
            _csv(
                STATIONS_CSV,
                _obs_with(
                    [
                        "RELY,A1,soil_moisture,0.0,0.05,1850-04-05T23:10:00Z,0.2,G",
                        "RELY,A1,soil_moisture,0.0,0.05,2150-04-05T23:20:00Z,0.2,G",
                        "RELY,A1,soil_moisture,0.0,0.05,2024-02-30T23:30:00Z,0.2,G",
                    ]
                ),
            ),
            statuses={"stations.csv": "OK", "observations.csv": "DEGRADED"},
            rejects={"observations.csv": {"time_out_of_range": 2, "unparseable_time": 1}},
            stored={"A1": 24, "B2": 24},
        ),
    ),
    Case(
        "csv-nul-bytes",
        "CSV observations",
        "a row with NUL bytes in its value",
        "that row rejected (non_numeric_value, stored with the NULs removed); the rest loads",
        StationFault(
            _csv(
                STATIONS_CSV,
                _obs_with(["RELY,A1,soil_moisture,0.0,0.05,2024-04-05T23:10:00Z,0.2\x00\x00,G"]),
            ),
            statuses={"stations.csv": "OK", "observations.csv": "DEGRADED"},
            rejects={"observations.csv": {"non_numeric_value": 1}},
            stored={"A1": 24, "B2": 24},
        ),
    ),
    Case(
        "csv-zero-byte-observations",
        "CSV observations",
        "a zero-byte observations file",
        "file QUARANTINED (empty file, a header row is required); the stations table loads",
        StationFault(
            _csv(STATIONS_CSV, b""),
            statuses={"stations.csv": "OK", "observations.csv": "QUARANTINED"},
            errors={"observations.csv": "empty file"},
            stored={},
        ),
    ),
    Case(
        "csv-html-error-page",
        "CSV observations",
        "an HTML error page saved as observations.csv",
        "file QUARANTINED naming the missing columns; the stations table loads",
        StationFault(
            _csv(STATIONS_CSV, HTML),
            statuses={"stations.csv": "OK", "observations.csv": "QUARANTINED"},
            errors={"observations.csv": "missing column(s) network"},
            stored={},
        ),
    ),
    Case(
        "csv-percent-units",
        "CSV observations",
        "wrong units: station B2's soil moisture in percent (20.0 for 0.20)",
        "B2's rows rejected as out of range for m3/m3; A1 loads",
        StationFault(
            _csv(
                STATIONS_CSV,
                OBS_HEADER
                + "\n".join(_obs_rows("A1") + _obs_rows("B2", value="20.{h:02d}"))
                + "\n",
            ),
            statuses={"stations.csv": "OK", "observations.csv": "DEGRADED"},
            stored={"A1": 24},
            extra=_no_percent_values,
        ),
    ),
    Case(
        "csv-huge-field",
        "CSV observations",
        "a huge line: one value of 1,000,000 characters",
        "that row rejected; the rest loads",
        StationFault(
            _csv(STATIONS_CSV, _huge_field()),
            statuses={"stations.csv": "OK", "observations.csv": "DEGRADED"},
            stored={"A1": 24, "B2": 24},
        ),
    ),
    Case(
        "csv-unterminated-quote",
        "CSV observations",
        'a field opened with " and never closed on line 5',
        "that row rejected (naming line 5); the rows after it load",
        StationFault(
            _csv(STATIONS_CSV, _unterminated_quote()),
            statuses={"stations.csv": "OK", "observations.csv": "DEGRADED"},
            errors={"observations.csv": "line 5"},
            stored={"A1": 24, "B2": 24},
        ),
    ),
    Case(
        "csv-invalid-utf8",
        "CSV observations",
        "invalid UTF-8: one stray 0xff byte in a file whose station names are UTF-8 (Tōngzhōu)",
        "the line with the bad byte is rejected; Tōngzhōu's rows (valid UTF-8) load",
        StationFault(
            _unicode_station_csv(),
            statuses={"stations.csv": "OK", "observations.csv": "DEGRADED"},
            stored={"Tōngzhōu": 24, "B2": 24},
        ),
    ),
    Case(
        "ismn-zip-bomb-header",
        "ISMN zip",
        "a member whose central directory claims 10 GiB (zip64; the member holds 5 KB)",
        "member QUARANTINED (decompresses to 10737418240 bytes, over the limit) without "
        "being read; the other member loads",
        StationFault(
            _zip_claiming(10 << 30),
            statuses={_stm_name("ZOK"): "OK", _stm_name("BOMB"): "QUARANTINED"},
            errors={_stm_name("BOMB"): "decompresses to 10737418240 bytes"},
            stored={"ZOK": 48},
        ),
    ),
    Case(
        "ismn-zip-bomb-understated",
        "ISMN zip",
        "a member whose header claims 1 KiB but that inflates to 20 MiB",
        "member QUARANTINED (cannot be read: size/CRC check fails after 1 KiB); the other loads",
        StationFault(
            _zip_understating(),
            statuses={_stm_name("ZOK"): "OK", _stm_name("BOMB"): "QUARANTINED"},
            errors={_stm_name("BOMB"): "cannot be read"},
            stored={"ZOK": 48},
        ),
    ),
    Case(
        "ismn-zip-slip-in-a-folder",
        "ISMN zip",
        "a zip two folders down a drop folder with a member ../../../../x.stm",
        "member QUARANTINED (escapes the archive), nothing written outside; the other loads",
        StationFault(
            _zip_slip_in_folder(),
            statuses={_stm_name("ZOK"): "OK", _stm_name("SLIP"): "QUARANTINED"},
            errors={_stm_name("SLIP"): "escapes the archive"},
            stored={"ZOK": 48},
            extra=_nothing_escaped,
        ),
    ),
    Case(
        "ismn-duplicate-timestamps",
        "ISMN header+values",
        "a logger that repeats six hours (clock reset) with other values",
        "the repeats rejected (duplicate_time); the first values are kept",
        StationFault(
            _ismn(**{_stm_name("DUP"): _stm("DUP", _stm_lines() + _stm_lines(6, value="0.9000"))}),
            statuses={_stm_name("GOOD"): "OK", _stm_name("DUP"): "DEGRADED"},
            rejects={_stm_name("DUP"): {"duplicate_time": 6}},
            stored={"GOOD": 48, "DUP": 48},
            extra=_first_values_kept,
        ),
    ),
    Case(
        "ismn-zero-byte-file",
        "ISMN header+values",
        "a zero-byte .stm in the download",
        "file QUARANTINED (empty file); the other file loads",
        StationFault(
            _ismn(**{_stm_name("EMPTY"): b""}),
            statuses={_stm_name("GOOD"): "OK", _stm_name("EMPTY"): "QUARANTINED"},
            errors={_stm_name("EMPTY"): "empty"},
            stored={"GOOD": 48},
        ),
    ),
    Case(
        "ismn-html-error-page",
        "ISMN header+values",
        "an HTML error page saved as a .stm",
        "file QUARANTINED (not a header+values header, naming the file); the other file loads",
        StationFault(
            _ismn(**{_stm_name("HTML"): HTML}),
            statuses={_stm_name("GOOD"): "OK", _stm_name("HTML"): "QUARANTINED"},
            errors={_stm_name("HTML"): _stm_name("HTML")},
            stored={"GOOD": 48},
        ),
    ),
    Case(
        "ismn-zip-is-html",
        "ISMN zip",
        "an HTML error page saved as the download .zip",
        "archive QUARANTINED (not a readable zip archive); the other file loads",
        StationFault(
            _ismn(**{"download.zip": HTML}),
            statuses={_stm_name("GOOD"): "OK", "download.zip": "QUARANTINED"},
            errors={"download.zip": "not a readable zip archive"},
            stored={"GOOD": 48},
        ),
    ),
    Case(
        "ismn-future-dates",
        "ISMN header+values",
        "rows dated 2150",
        "those rows rejected (time_out_of_range); the rest loads",
        StationFault(
            _ismn(
                **{_stm_name("FUT"): _stm("FUT", [*_stm_lines(), "2150/01/01 00:00   0.2000 G M"])}
            ),
            statuses={_stm_name("GOOD"): "OK", _stm_name("FUT"): "DEGRADED"},
            rejects={_stm_name("FUT"): {"time_out_of_range": 1}},
            stored={"GOOD": 48, "FUT": 48},
        ),
    ),
    Case(
        "ismn-invalid-utf8-value",
        "ISMN header+values",
        "invalid UTF-8: a value '0.2\\xff' in one line",
        "that line rejected (non_numeric_value); the rest loads",
        StationFault(
            _ismn(
                **{
                    _stm_name("UTF"): _stm("UTF").replace(
                        b"2024/04/01 03:00   0.2003", b"2024/04/01 03:00   0.2\xff"
                    )
                }
            ),
            statuses={_stm_name("GOOD"): "OK", _stm_name("UTF"): "DEGRADED"},
            rejects={_stm_name("UTF"): {"non_numeric_value": 1}},
            stored={"GOOD": 48, "UTF": 47},
        ),
    ),
    Case(
        "ismn-huge-line",
        "ISMN header+values",
        "a huge line: a value of 10,000,000 digits",
        "that line rejected; the reject's detail and the file's error stay short",
        StationFault(
            _ismn(
                **{
                    _stm_name("HUGE"): _stm(
                        "HUGE", [*_stm_lines()[:3], "2024/04/09 00:00   " + "9" * 10_000_000 + " G"]
                    )
                }
            ),
            statuses={_stm_name("GOOD"): "OK", _stm_name("HUGE"): "DEGRADED"},
            rejects={_stm_name("HUGE"): {"non_numeric_value": 1}},
            stored={"GOOD": 48, "HUGE": 3},
            extra=_details_are_short,
        ),
    ),
    Case(
        "ismn-percent-units",
        "ISMN header+values",
        "wrong units: soil moisture in percent (20.0 for 0.20)",
        "the rows rejected as out of range for m3/m3; the other file loads",
        StationFault(
            _ismn(**{_stm_name("PCT"): _stm("PCT", _stm_lines(value="20.{h:02d}"))}),
            statuses={_stm_name("GOOD"): "OK", _stm_name("PCT"): "QUARANTINED"},
            stored={"GOOD": 48},
            extra=_no_percent_values,
        ),
    ),
]


# -- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingFault:
    """Environment (and optionally a TOML file's bytes) and the one-line message expected."""

    env: dict[str, str]
    message: str
    toml: bytes | None = None


SETTING_CASES = [
    Case(
        "setting-sources-not-json",
        "SMAPDS_SOURCES",
        "not JSON",
        "refused at start-up with one line naming SMAPDS_SOURCES",
        SettingFault({"SMAPDS_SOURCES": "SPL3SMP=cmr"}, "invalid setting SMAPDS_SOURCES"),
    ),
    Case(
        "setting-sources-unknown-transport",
        "SMAPDS_SOURCES",
        'transport "ftp"',
        "refused at start-up naming SMAPDS_SOURCES and the allowed transports",
        SettingFault(
            {"SMAPDS_SOURCES": '{"SPL3SMP": {"transport": "ftp"}}'},
            r"invalid setting SMAPDS_SOURCES: Input should be 'local', 'cmr' or 'https'",
        ),
    ),
    Case(
        "setting-sources-bad-pattern",
        "SMAPDS_SOURCES",
        "a pattern with {date:%Y} instead of {day:%Y}",
        "refused at start-up naming SMAPDS_SOURCES and the pattern",
        SettingFault(
            {"SMAPDS_SOURCES": '{"MCCA": {"transport": "local", "pattern": "mcca/{date:%Y}.nc"}}'},
            r"invalid setting SMAPDS_SOURCES: pattern 'mcca/\{date:%Y\}.nc' does not format",
        ),
    ),
    Case(
        "setting-on-stale-unknown",
        "SMAPDS_ON_STALE",
        "'maybe'",
        "refused naming SMAPDS_ON_STALE and 'degrade' or 'refuse'",
        SettingFault(
            {"SMAPDS_ON_STALE": "maybe"},
            r"invalid setting SMAPDS_ON_STALE: Input should be 'degrade' or 'refuse'",
        ),
    ),
    Case(
        "setting-precip-missing-days-too-large",
        "SMAPDS_PRECIP_MISSING_DAYS",
        "8 (the window has 7 days)",
        "refused naming SMAPDS_PRECIP_MISSING_DAYS and the bound",
        SettingFault(
            {"SMAPDS_PRECIP_MISSING_DAYS": "8"},
            r"invalid setting SMAPDS_PRECIP_MISSING_DAYS: Input should be less than or equal to 7",
        ),
    ),
    Case(
        "setting-tile-cells-zero",
        "SMAPDS_TILE_CELLS",
        "0",
        "refused naming SMAPDS_TILE_CELLS",
        SettingFault(
            {"SMAPDS_TILE_CELLS": "0"},
            r"invalid setting SMAPDS_TILE_CELLS: Input should be greater than or equal to 1",
        ),
    ),
    Case(
        "setting-latency-window-negative",
        "SMAPDS_LATENCY_WINDOW_DAYS",
        "-3",
        "refused naming SMAPDS_LATENCY_WINDOW_DAYS",
        SettingFault(
            {"SMAPDS_LATENCY_WINDOW_DAYS": "-3"},
            r"invalid setting SMAPDS_LATENCY_WINDOW_DAYS: Input should be greater than or equal",
        ),
    ),
    Case(
        "setting-http-address-hostname",
        "SMAPDS_HTTP_ADDRESS",
        "'localhost' (a name, not an IP address)",
        "refused naming SMAPDS_HTTP_ADDRESS",
        SettingFault(
            {"SMAPDS_HTTP_ADDRESS": "localhost"},
            r"invalid setting SMAPDS_HTTP_ADDRESS: not an IP address: 'localhost'",
        ),
    ),
    Case(
        "setting-cron-garbage",
        "SMAPDS_PRODUCT_CRON",
        "'every day at 3'",
        "refused naming SMAPDS_PRODUCT_CRON",
        SettingFault(
            {"SMAPDS_PRODUCT_CRON": "every day at 3"},
            r"invalid setting SMAPDS_PRODUCT_CRON: not a crontab expression",
        ),
    ),
    Case(
        "setting-sim-epoch-without-zone",
        "SMAPDS_SIM_EPOCH_UTC",
        "a naive time 2024-04-01T00:00:00",
        "refused naming SMAPDS_SIM_EPOCH_UTC (needs a time zone)",
        SettingFault(
            {
                "SMAPDS_SIM_EPOCH_DATE": "2024-04-01",
                "SMAPDS_SIM_EPOCH_UTC": "2024-04-01T00:00:00",
                "SMAPDS_SIM_DAY_SECONDS": "5",
            },
            r"invalid setting SMAPDS_SIM_EPOCH_UTC: needs a time zone",
        ),
    ),
    Case(
        "setting-stage-timeout-negative",
        "SMAPDS_STAGE_TIMEOUT_SECONDS",
        '{"product": -5}',
        "refused naming SMAPDS_STAGE_TIMEOUT_SECONDS",
        SettingFault(
            {"SMAPDS_STAGE_TIMEOUT_SECONDS": '{"product": -5}'},
            r"SMAPDS_STAGE_TIMEOUT_SECONDS",
        ),
    ),
    Case(
        "setting-unknown-lower-case",
        "smapds_latency_window",
        "an unknown variable in lower case (missing _DAYS)",
        "refused naming the variable",
        SettingFault({"smapds_latency_window": "7"}, r"unknown setting smapds_latency_window"),
    ),
    Case(
        "setting-toml-invalid-utf8",
        "--config FILE",
        "a TOML file with an invalid UTF-8 byte",
        "refused with one line naming the file",
        SettingFault(
            {}, r"config file .*smapds.toml: 'utf-8' codec can't decode", b'domain = "d\xffemo"\n'
        ),
    ),
]

CLI_SETTING_CASES = [
    Case(
        "cli-domain-invalid-utf8",
        "SMAPDS_DOMAIN",
        "invalid UTF-8 bytes in the environment",
        "`smapds config show` exits 2 with one line naming SMAPDS_DOMAIN, no traceback",
        ({"SMAPDS_DOMAIN": "d\udcffmo"}, "invalid setting SMAPDS_DOMAIN: unknown domain"),
    ),
]

CATALOGUE: list[Case] = [
    *GRANULE_CASES,
    *STATIC_CASES,
    *STATION_CASES,
    *SETTING_CASES,
    *CLI_SETTING_CASES,
]
"""Every bad input this module exercises, with the outcome its test checks."""

COVERED_ELSEWHERE: list[tuple[str, str]] = [
    ("SMAP HTML error page as .h5 from CMR, md5 mismatch", "tests/test_fetch_synthetic.py"),
    ("truncated download retried, 401 then token refresh", "tests/test_fetch_synthetic.py"),
    ("a corrupt HDF5 stub quarantined and never retried", "tests/test_fetch_service.py"),
    ("SMAP missing group/variable, transposed shape, changed fill", "tests/test_reader_smap.py"),
    ("SMAP date in metadata vs name, truncated granule (reader)", "tests/test_reader_smap.py"),
    ("a 36 km file filed as SPL3SMP_E", "tests/test_reader_smap.py"),
    ("IMERG subset without precipitation (schema drift)", "tests/test_reader_imerg.py"),
    (
        "MODIS tile of another product/tile, float GeoTIFF in physical units",
        "tests/test_reader_modis.py",
    ),
    ("SoilGrids floats already converted, not a GeoTIFF", "tests/test_reader_rasters.py"),
    ("stale albedo degrades or refuses the day, missing precipitation days", "tests/test_stack.py"),
    ("a day without inputs is ledgered INSUFFICIENT_DATA", "tests/test_product.py"),
    (
        "ISMN truncated line, CEOP rows under a header, mixed date formats, swapped header "
        "lat/lon, zip slip '../../'",
        "tests/test_insitu_load.py",
    ),
    (
        "zip members: absolute/drive/backslash paths, symlink, ratio bomb, damaged data, "
        "truncated zip",
        "tests/test_insitu_sources.py",
    ),
    (
        "CSV unknown/missing columns, time without zone, same instant twice, swapped station "
        "coordinates (parser)",
        "tests/test_insitu_parsers.py",
    ),
    (
        "bad domain, URL, log level, port, bindir, unknown SMAPDS_DOMIAN, bad TOML",
        "tests/test_settings.py",
    ),
]
"""Bad inputs already exercised by other modules (not repeated here)."""


def _params(cases: list[Case]) -> list[Any]:
    return [
        pytest.param(
            c,
            id=c.id,
            marks=[pytest.mark.xfail(strict=True, reason=c.bug)] if c.bug else [],
        )
        for c in cases
    ]


def test_the_catalogue_has_at_least_30_distinct_cases() -> None:
    ids = [c.id for c in CATALOGUE]
    assert len(ids) == len(set(ids)) >= 30
    assert all(c.fault and c.expected for c in CATALOGUE)


# -- granule cases -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def baseline(produced: Produced, writer: Engine) -> dict[str, Any]:
    """DAY produced from the good inputs: the figures a broken input is compared with.

    The ET composite before the one covering DAY is fetched too, for the case that loses that one.
    """
    sources = build_sources(produced.settings, only=["MOD16A2"])
    (older,) = fetch_day(
        writer, sources, produced.archive, date(2024, 3, 21), today=DAY, window_days=7
    )
    assert older.status == "fetched"
    result = produce_day(
        writer,
        produced.factory,
        produced.model,
        data_dir=produced.data_dir,
        day=DAY,
        settings_hash="0" * 64,
    )
    assert result.status == "OK" and result.path is not None
    return dict(result.stats)


def _forget(writer: Engine, produced: Produced, source: str, day: date) -> None:
    """Drop what the archive, the quarantine and the inventory hold for (source, day)."""
    with writer.begin() as conn:
        conn.execute(
            sa.text("DELETE FROM smapds.granules WHERE source = :s AND granule_date = :d"),
            {"s": source, "d": day},
        )
    shutil.rmtree(produced.archive.root / source / f"{day:%Y/%m/%d}", ignore_errors=True)
    shutil.rmtree(produced.archive.quarantine / source / day.isoformat(), ignore_errors=True)


@pytest.fixture
def swap(
    produced: Produced, writer: Engine, demo_world: Path, tmp_path: Path
) -> Iterator[Callable[[str, date, Callable[[Path], None]], tuple[SourceOutcome, Path]]]:
    """Put a broken copy of a world granule where the good one was fetched; put it back after."""
    swapped: list[tuple[str, date]] = []

    def put(source: str, day: date, corrupt: Callable[[Path], None]) -> tuple[SourceOutcome, Path]:
        swapped.append((source, day))
        _forget(writer, produced, source, day)
        (good,) = _world_files(demo_world, source, day)
        provider = tmp_path / "provider"
        bad = provider / good.relative_to(demo_world)
        bad.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(good, bad)
        corrupt(bad)
        cfg = SYNTHETIC_DEFAULTS[source]
        src = LocalDirectorySource(
            source, provider, cfg.pattern or "", composite_days=cfg.composite_days
        )
        (outcome,) = fetch_day(writer, [src], produced.archive, day, today=DAY, window_days=7)
        return outcome, bad

    yield put
    for source, day in swapped:
        _forget(writer, produced, source, day)
        sources = build_sources(produced.settings, only=[source])
        (outcome,) = fetch_day(writer, sources, produced.archive, day, today=DAY, window_days=7)
        assert outcome.status == "fetched"


def _inventory(writer: Engine, source: str, day: date) -> list[tuple[str, str, str | None]]:
    with writer.connect() as conn:
        return [
            (r.granule_id, r.status, r.error)
            for r in conn.execute(
                sa.text(
                    "SELECT granule_id, status, error FROM smapds.granules "
                    "WHERE source = :s AND granule_date = :d"
                ),
                {"s": source, "d": day},
            )
        ]


@pytest.mark.parametrize("case", _params(GRANULE_CASES))
def test_a_bad_granule_is_set_aside_by_name_and_the_day_is_still_produced(
    case: Case,
    produced: Produced,
    writer: Engine,
    baseline: dict[str, Any],
    swap: Callable[[str, date, Callable[[Path], None]], tuple[SourceOutcome, Path]],
) -> None:
    fault: GranuleFault = case.spec
    outcome, bad = swap(fault.source, fault.granule_day, fault.corrupt)
    granule = bad.name
    reason_file = (
        produced.archive.quarantine / fault.source / fault.granule_day.isoformat()
    ) / f"{granule}.reason"
    archived = produced.archive.root / fault.source / f"{fault.granule_day:%Y/%m/%d}" / granule

    assert outcome.status == ("quarantined" if fault.caught == "fetch" else "fetched"), outcome
    result = produce_day(
        writer,
        produced.factory,
        produced.model,
        data_dir=produced.data_dir,
        day=DAY,
        settings_hash="0" * 64,
    )

    rows = _inventory(writer, fault.source, fault.granule_day)
    if fault.caught == "masked":
        assert rows == [(granule, "fetched", None)] and archived.is_file()
        assert not reason_file.exists()
    else:
        [(gid, status, error)] = rows
        assert (gid, status) == (granule, "quarantined")
        assert fault.reason in (error or "") and fault.reason in reason_file.read_text()
        assert granule in (error or "")  # the message names the file
        assert reason_file.with_suffix("").is_file() and not archived.exists()

    assert result.status == "OK" and result.path is not None, result.error
    with writer.connect() as conn:
        row = conn.execute(
            sa.text("SELECT status, sha256, inputs FROM smapds.products WHERE product_date = :d"),
            {"d": DAY},
        ).one()
        ledger = conn.execute(
            sa.text(
                "SELECT status, error FROM smapds.run_ledger "
                "WHERE run_date = :d AND stage = 'product'"
            ),
            {"d": DAY},
        ).one()
    assert (row.status, ledger.status) == ("OK", "OK")
    used = {i["granule_id"] for i in row.inputs["inputs"] if i["source"] == fault.source}
    assert (granule in used) == (fault.caught == "masked")  # a set-aside granule is not used
    fault.check(result, baseline)


# -- static layers -------------------------------------------------------------------------------


def test_a_dem_that_is_an_html_page_stops_produce_with_one_line_naming_it(
    produced: Produced, database: Database, demo_world: Path, writer: Engine, tmp_path: Path
) -> None:
    bad = tmp_path / "dem.tif"
    bad.write_bytes(HTML)
    with writer.connect() as conn:
        before = conn.execute(sa.text("SELECT * FROM smapds.products ORDER BY 1, 2")).all()
    env = {
        "SMAPDS_DATABASE_URL": database.url("writer"),
        "SMAPDS_DATA_DIR": str(produced.data_dir),
        "SMAPDS_SYNTHETIC_DIR": str(demo_world),
        "SMAPDS_DEM_PATH": str(bad),
    }
    result = smapds("produce", "--date", DAY.isoformat(), env=env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    [line] = [ln for ln in result.stderr.splitlines() if ln.startswith("smapds:")]
    assert str(bad) in line and "smapds: error:" in line
    with writer.connect() as conn:
        assert conn.execute(sa.text("SELECT * FROM smapds.products ORDER BY 1, 2")).all() == before


def test_a_hole_in_a_soilgrids_layer_is_no_data_and_the_rest_is_produced(
    produced: Produced, writer: Engine, baseline: dict[str, Any], demo_world: Path, tmp_path: Path
) -> None:
    soil = tmp_path / "soilgrids"
    shutil.copytree(demo_world / "soilgrids", soil)
    clay = soil / "clay" / "clay_0-5cm_mean.tif"
    with rasterio.open(clay, "r+") as ds:
        row, col = ds.index(
            *Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True).transform(*CENTRE)
        )
        band = ds.read(1)
        half = int(0.5 / abs(ds.transform.e))  # half a degree
        band[row - half : row + half, col - half : col + half] = (
            -32768 if ds.nodata is None else ds.nodata
        )
        ds.write(band, 1)
    settings = produced.settings.model_copy(update={"soil_dir": soil})
    factory = stack_factory(settings, writer)
    result = produce_day(
        writer, factory, produced.model, data_dir=produced.data_dir, day=DAY, settings_hash="1" * 64
    )
    assert result.status == "OK" and result.path is not None
    with rasterio.open(result.path) as ds:
        sm, qa = ds.read(1), ds.read(3)
    r, c = (int(v) for v in DEMO.rowcol(1, *CENTRE))
    assert sm[r, c] == -32768 and qa[r, c] & 16
    assert int(factory.static["land"].values.sum()) < baseline["land_pixels"]  # the hole
    assert result.stats["valid_fraction"] == pytest.approx(baseline["valid_fraction"], abs=0.01)


# -- station files -------------------------------------------------------------------------------

INSITU_TABLES = (
    "ingest_files",
    "ingest_rejects",
    "stations",
    "station_attributes",
    "station_cells",
    "sensors",
    "observations",
)


@pytest.fixture
def no_stations(admin: Engine) -> None:
    with admin.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join('smapds.' + t for t in INSITU_TABLES)} CASCADE"))


def _ingest(writer: Engine, root: Path, names: list[str]) -> list[FileSummary]:
    if "stations.csv" in names:
        return ingest_csv(
            writer,
            stations=root / "stations.csv",
            observations=root / "observations.csv",
            domain="demo",
        )
    return ingest_ismn(writer, [root], domain="demo")


@pytest.mark.parametrize("case", _params(STATION_CASES))
def test_a_bad_station_file_is_rejected_by_name_and_the_good_rows_load(
    case: Case, writer: Engine, no_stations: None, tmp_path: Path
) -> None:
    fault: StationFault = case.spec
    root = tmp_path / "drop"
    files = fault.files(tmp_path)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    summaries = _ingest(writer, root, list(files))
    got = {Path(s.path.split("!")[-1]).name: s for s in summaries}
    assert {n: s.status for n, s in got.items()} == fault.statuses, {
        n: (s.status, (s.error or "")[:300]) for n, s in got.items()
    }
    for name, text in fault.errors.items():
        assert text in (got[name].error or ""), got[name].error
        assert str(root) in got[name].path  # the summary names the file where it lies
    with writer.connect() as conn:
        recorded = {
            Path(r.member or r.path).name: (r.status, r.error)
            for r in conn.execute(
                sa.text("SELECT path, member, status, error FROM smapds.ingest_files")
            )
        }
        rejects: dict[str, dict[str, int]] = {}
        for r in conn.execute(
            sa.text("""
            SELECT coalesce(nullif(f.member, ''), f.path) AS name, r.reason, count(*) AS n
              FROM smapds.ingest_rejects r JOIN smapds.ingest_files f USING (file_id)
             GROUP BY 1, 2""")
        ):
            rejects.setdefault(Path(r.name).name, {})[r.reason] = r.n
        stored = dict(
            conn.execute(
                sa.text("""
            SELECT st.station, count(*) FROM smapds.observations o
              JOIN smapds.sensors USING (sensor_id) JOIN smapds.stations st USING (station_id)
             GROUP BY st.station""")
            ).all()
        )
    assert {n: s for n, (s, _) in recorded.items()} == fault.statuses
    assert {n: r for n, r in rejects.items() if n in fault.rejects} == fault.rejects
    assert stored == fault.stored
    if fault.extra is not None:
        fault.extra(writer, tmp_path)


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", _params(SETTING_CASES))
def test_a_bad_setting_is_refused_with_one_line_naming_it(
    case: Case, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fault: SettingFault = case.spec
    for name in list(os.environ):
        if name.upper().startswith("SMAPDS_"):
            monkeypatch.delenv(name)
    for name, value in fault.env.items():
        monkeypatch.setenv(name, value)
    config = None
    if fault.toml is not None:
        config = tmp_path / "smapds.toml"
        config.write_bytes(fault.toml)
    with pytest.raises(ConfigError, match=fault.message) as info:
        load_settings(config)
    assert "\n" not in str(info.value) and "None" not in str(info.value)


@pytest.mark.parametrize("case", _params(CLI_SETTING_CASES))
def test_the_command_line_refuses_a_bad_environment_with_exit_code_2(case: Case) -> None:
    env, message = case.spec
    result = smapds("config", "show", env=env, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
