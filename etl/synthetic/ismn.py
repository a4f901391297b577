"""Synthetic in situ stations written as an ISMN download in 'header+values' format (folder and zip).

Stations: ``clusters`` dense networks (``stations_per_cluster`` stations within about
``cluster_radius_km`` of a centre, like a validation-site network) and one sparse network scattered
over the domain, all on land, at a random point inside their 1 km cell.

Readings (UTC, hourly, 0.05 m depth): the 1 km truth of the station's cell plus a per-station
sensor bias (sd ``station_bias_sd``) plus a representativeness error (AR(1) over days, lag-1
correlation 0.8, sd ``station_noise_sd``), placed at 12:00 UTC of each day and interpolated
linearly between days, plus a small diurnal cycle (amplitude 0.003) and hourly white noise
(``station_white_noise_sd``). So the reading at 12:00 UTC of day D minus truth[D] is
bias + representativeness error + white noise + diurnal term. Gaps are missing lines (blocks of
hours to days); a few spikes are flagged ``D06``; readings above the saturation listed in the
static variables file are flagged ``C03`` (combined as ``C03,D06`` when both); the rest ``G``;
the provider flag column is always ``M``.

File layout as the ISMN portal delivers it (see ``reference-data/ismn``)::

    Data_seperate_files_header_YYYYMMDD_YYYYMMDD/      (sic, as in real downloads)
        NETWORK/STATION/NETWORK_NETWORK_STATION_sm_0.050000_0.050000_SENSOR_YYYYMMDD_YYYYMMDD.stm
        NETWORK/STATION/NETWORK_NETWORK_STATION_static_variables.csv

The header line has fixed columns (network 10 + 1, network 15 + 1, station 17, latitude 9.5f,
longitude 12.5f, elevation 8.2f, depth from 8.2f, depth to 8.2f, space, sensor); value lines are
``YYYY/MM/DD HH:MM`` + ``%9.4f`` + `` FLAG PROVIDERFLAG``; lines end in CRLF. The static
variables are semicolon-separated with the real header; their soil values are HWSD-like: means over
the 9 km cell (saturation = 0.6 x mean porosity, HWSD being coarse and biased low). The zip holds the
same tree with a fixed timestamp on every member. Metadata.xml is not written.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from pyproj import Transformer

from etl.grid import Domain, block_mean, ease2
from etl.synthetic.config import SyntheticConfig
from etl.synthetic.randomness import F32, stream
from etl.synthetic.statics import (
    BARREN,
    CROP_MOSAIC,
    CROPLAND,
    DECIDUOUS_BROADLEAF,
    EVERGREEN_NEEDLELEAF,
    GRASSLAND,
    MIXED_FOREST,
    OPEN_SHRUBLAND,
    URBAN,
    WATER,
    StaticFields,
)

F64 = npt.NDArray[np.float64]
DEPTH_M: Final = 0.05
SPARSE_NETWORK: Final = "SYN_SPARSE"
SENSORS: Final = ("ThetaProbe-ML2X", "Hydraprobe-II-Sdi-12", "5TM")
FOLDER_PREFIX: Final = "Data_seperate_files_header_"
ZIP_TIME: Final = (2024, 1, 1, 0, 0, 0)
DIURNAL_AMPLITUDE: Final = 0.003
HWSD_SATURATION_FACTOR: Final = 0.6  # HWSD-like saturation is coarse and low: C03 happens
REPR_LAG1: Final = 0.8
_CSV_HEADER: Final = (
    "quantity_name;unit;depth_from[m];depth_to[m];value;description;quantity_source_name;"
    "quantity_source_description;quantity_source_provider;quantity_source_version;"
    "quantity_source_resolution;quantity_source_timerange;quantity_source_url;"
)
_HWSD: Final = (
    'HWSD;Harmonized World Soil Database v1.1  by IIASA;IIASA;v1.1;30";;'
    "http://webarchive.iiasa.ac.at/Research/LUC/External-World-soil-database/HTML/;"
)
_CCI: Final[dict[int, tuple[int, str]]] = {
    CROPLAND: (10, "Cropland, rainfed"),
    CROP_MOSAIC: (
        30,
        "Mosaic cropland (>50%) / natural vegetation (tree, shrub, herbaceous cover)",
    ),
    DECIDUOUS_BROADLEAF: (60, "Tree cover, broadleaved, deciduous, closed to open (>15%)"),
    EVERGREEN_NEEDLELEAF: (70, "Tree cover, needleleaved, evergreen, closed to open (>15%)"),
    MIXED_FOREST: (90, "Tree cover, mixed leaf type (broadleaved and needleleaved)"),
    OPEN_SHRUBLAND: (120, "Shrubland"),
    GRASSLAND: (130, "Grassland"),
    URBAN: (190, "Urban areas"),
    BARREN: (200, "Bare areas"),
    WATER: (210, "Water"),
}


@dataclass(frozen=True)
class Station:
    """One synthetic station and its hidden truth (bias) for the skill tests."""

    network: str
    name: str
    lon: float
    lat: float
    row: int
    """Domain-relative 1 km row of the cell containing the station."""
    col: int
    elevation_m: float
    sensor: str
    bias: float
    saturation: float
    """The 'saturation' written in the static variables file (C03 threshold)."""


def _random_land_cells(
    rng: np.random.Generator,
    land: npt.NDArray[np.bool_],
    centre: tuple[float, float] | None,
    spread: float,
    n: int,
) -> list[tuple[int, int]]:
    nr, nc = land.shape
    cells: list[tuple[int, int]] = []
    tries = 0
    while len(cells) < n and tries < 10000:
        tries += 1
        if centre is None:
            r, c = int(rng.integers(4, nr - 4)), int(rng.integers(4, nc - 4))
        else:
            r = round(centre[0] + rng.normal(0.0, spread))
            c = round(centre[1] + rng.normal(0.0, spread))
        if 0 <= r < nr and 0 <= c < nc and land[r, c] and (r, c) not in cells:
            cells.append((r, c))
    return cells


def place_stations(
    statics: StaticFields, domain: Domain, *, seed: int, config: SyntheticConfig
) -> list[Station]:
    """Clustered and sparse stations on land cells of the domain."""
    rng = stream(seed, "stations")
    land = statics.land
    nr, nc = land.shape
    groups: list[tuple[str, str, list[tuple[int, int]]]] = []
    spread = config.cluster_radius_km / ease2(1).cell_size * 1000.0 / 2.0
    for k in range(config.clusters):
        margin = int(min(nr, nc) * 0.15)
        centre = (
            float(rng.integers(margin, nr - margin)),
            float(rng.integers(margin, nc - margin)),
        )
        cells = _random_land_cells(rng, land, centre, spread, config.stations_per_cluster)
        groups.append((f"SYN_CLUS{k + 1}", f"C{k + 1}-", cells))
    groups.append(
        (SPARSE_NETWORK, "S", _random_land_cells(rng, land, None, 0.0, config.sparse_stations))
    )
    r0, c0 = domain.offset(1)
    grid = ease2(1)
    to_lonlat = Transformer.from_crs(6933, 4326, always_xy=True)
    sat_9km = block_mean(np.where(land, statics.hydraulics.porosity, np.nan), 9)[0]
    stations = []
    for network, prefix, cells in groups:
        for i, (r, c) in enumerate(cells, start=1):
            x0, y0 = grid.xy(r0 + r, c0 + c)
            x = float(x0) + rng.uniform(-0.45, 0.45) * grid.cell_size
            y = float(y0) + rng.uniform(-0.45, 0.45) * grid.cell_size
            lon, lat = to_lonlat.transform(x, y)
            stations.append(
                Station(
                    network=network,
                    name=f"{prefix}{i:02d}",
                    lon=round(float(lon), 5),
                    lat=round(float(lat), 5),
                    row=r,
                    col=c,
                    elevation_m=round(float(statics.elevation_m[r, c]), 2),
                    sensor=SENSORS[int(rng.integers(len(SENSORS)))],
                    bias=float(rng.normal(0.0, config.station_bias_sd)),
                    saturation=round(HWSD_SATURATION_FACTOR * float(sat_9km[r // 9, c // 9]), 2),
                )
            )
    return stations


@dataclass(frozen=True)
class StationSeries:
    """Hourly readings of one station (NaN-free), their UTC times and ISMN quality flags."""

    times: npt.NDArray[np.datetime64]
    values: F64
    flags: list[str]


def hourly_series(
    station: Station,
    index: int,
    *,
    truth: F32,
    first_day: dt.date,
    start: dt.date,
    end: dt.date,
    seed: int,
    config: SyntheticConfig,
) -> StationSeries:
    """Hourly readings over [start, end] from the daily truth of the station's cell.

    ``truth[k]`` is the cell's truth on ``first_day + k`` days; it must cover start - 1 .. end.
    """
    rng = stream(seed, "station_series", index)
    n_days = len(truth)
    repr_err = np.zeros(n_days)
    innovation = config.station_noise_sd * np.sqrt(1.0 - REPR_LAG1**2)
    repr_err[0] = rng.normal(0.0, config.station_noise_sd)
    for k in range(1, n_days):
        repr_err[k] = REPR_LAG1 * repr_err[k - 1] + rng.normal(0.0, innovation)
    daily = truth.astype(np.float64) + station.bias + repr_err
    noon_hours = (np.arange(n_days) * 24 + 12).astype(np.float64)
    offset_h = (start - first_day).days * 24
    n_hours = ((end - start).days + 1) * 24
    hours = np.arange(n_hours, dtype=np.float64) + offset_h
    values = np.interp(hours, noon_hours, daily)
    local = np.mod(hours + station.lon / 15.0, 24.0)
    values += DIURNAL_AMPLITUDE * np.sin(2.0 * np.pi * (local - 9.0) / 24.0)
    values += rng.normal(0.0, config.station_white_noise_sd, n_hours)

    keep = np.ones(n_hours, dtype=bool)
    missing_target = int(config.station_gap_fraction * n_hours)
    while (~keep).sum() < missing_target:
        length = int(rng.integers(3, 96))
        first = int(rng.integers(0, n_hours))
        keep[first : first + length] = False
    spikes = np.zeros(n_hours, dtype=bool)
    n_spikes = max(1, round(config.spikes_per_station * n_hours / (120 * 24)))
    spikes[rng.integers(0, n_hours, n_spikes)] = True
    values = np.where(spikes, values + rng.uniform(0.08, 0.2, n_hours), values)
    values = np.round(np.clip(values, 0.0, 0.6), 4).astype(np.float64)
    over = values > station.saturation
    flags = []
    for s, o in zip(spikes, over, strict=True):
        codes = (["C03"] if o else []) + (["D06"] if s else [])
        flags.append(",".join(codes) if codes else "G")
    times = np.datetime64(start, "h") + (hours - offset_h).astype("timedelta64[h]")
    return StationSeries(
        times=times[keep],
        values=values[keep],
        flags=[f for f, k in zip(flags, keep, strict=True) if k],
    )


def header_line(station: Station) -> str:
    """The fixed-column first line of a header+values file."""
    return (
        f"{station.network:<10} {station.network:<15} {station.name:<17}"
        f"{station.lat:9.5f}{station.lon:12.5f}{station.elevation_m:8.2f}"
        f"{DEPTH_M:8.2f}{DEPTH_M:8.2f} {station.sensor}"
    )


def stm_text(station: Station, series: StationSeries) -> str:
    """The whole .stm file (CRLF line endings)."""
    stamps = np.datetime_as_string(series.times, unit="m")
    lines = [header_line(station)]
    for stamp, value, flag in zip(stamps, series.values, series.flags, strict=True):
        when = str(stamp).replace("-", "/").replace("T", " ")
        lines.append(f"{when}{value:9.4f} {flag} M")
    return "\r\n".join(lines) + "\r\n"


def static_csv_text(station: Station, statics: StaticFields) -> str:
    """The ``*_static_variables.csv`` of a station (HWSD-like soil, CCI land cover)."""
    r9, c9 = station.row // 9 * 9, station.col // 9 * 9
    block = np.s_[r9 : r9 + 9, c9 : c9 + 9]
    land = statics.land[block]

    def mean_pct(a: F32) -> float:
        return float(np.mean(a[block][land])) * 100.0

    clay, sand = mean_pct(statics.clay), mean_pct(statics.sand)
    oc = float(np.mean(statics.organic_carbon_g_kg[block][land])) / 10.0
    rows = [_CSV_HEADER]
    for d0, d1, scale in ((0.0, 0.3, 1.0), (0.3, 1.0, 0.95)):
        depth = f"{d0:.2f};{d1:.2f}"
        sat = station.saturation if d0 == 0.0 else round(station.saturation * 0.97, 2)
        rows.append(f"saturation;m^3*m^-3;{depth};{sat:.2f};;{_HWSD}")
        rows.append(f"clay fraction;% weight;{depth};{clay * scale:.2f};;{_HWSD}")
        rows.append(f"organic carbon;% weight;{depth};{oc * scale * 0.6:.2f};;{_HWSD}")
        rows.append(f"sand fraction;% weight;{depth};{sand * scale:.2f};;{_HWSD}")
        silt = 100.0 - (clay + sand) * scale
        rows.append(f"silt fraction;% weight;{depth};{silt:.2f};;{_HWSD}")
    code, text = _CCI[int(statics.landcover[station.row, station.col])]
    rows.append(
        f"land cover classification;;;;{code};{text};CCI_landcover_2010;ESA CCI Land Cover;ESA;"
        "2010-v1.6.1;300m;2008-2012;http://www.esa-landcover-cci.org/;"
    )
    rows.append(
        "climate classification;;;;Dwa;Cold - Dry winter - Hot summer;koeppen_geiger_2007;"
        "Koeppen-Geiger Climate Classification;;Peel2007;0.1\u00b0;;"
        "http://www.hydrol-earth-syst-sci.net/11/1633/2007/;"
    )
    return "\r\n".join(rows) + "\r\n"


def download_folder(out_dir: Path, *, start: dt.date, end: dt.date) -> Path:
    """``ismn/Data_seperate_files_header_<start>_<end>``."""
    return out_dir / "ismn" / f"{FOLDER_PREFIX}{start:%Y%m%d}_{end:%Y%m%d}"


def write_station(
    folder: Path,
    station: Station,
    series: StationSeries,
    statics: StaticFields,
    *,
    start: dt.date,
    end: dt.date,
) -> list[Path]:
    """Write one station's .stm and static variables files into the download folder."""
    base = folder / station.network / station.name
    base.mkdir(parents=True, exist_ok=True)
    prefix = f"{station.network}_{station.network}_{station.name}"
    stm = base / (
        f"{prefix}_sm_{DEPTH_M:.6f}_{DEPTH_M:.6f}_{station.sensor}_{start:%Y%m%d}_{end:%Y%m%d}.stm"
    )
    csv = base / f"{prefix}_static_variables.csv"
    stm.write_bytes(stm_text(station, series).encode("ascii"))
    csv.write_bytes(static_csv_text(station, statics).encode("utf-8"))
    return [stm, csv]


def write_zip(folder: Path) -> Path:
    """Zip the download folder like the portal does (directory entries, fixed timestamps)."""
    target = folder.with_suffix(".zip")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder).as_posix()
            if path.is_dir():
                info = zipfile.ZipInfo(rel + "/", date_time=ZIP_TIME)
                info.external_attr = 0o40755 << 16
                zf.writestr(info, b"")
            else:
                info = zipfile.ZipInfo(rel, date_time=ZIP_TIME)
                info.external_attr = 0o100644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())
    target.write_bytes(buffer.getvalue())
    return target


def stations_table(stations: list[Station]) -> str:
    """CSV of the stations and their hidden sensor biases (for ``truth/``, never for the pipeline)."""
    lines = ["network,station,lon,lat,row_1km,col_1km,elevation_m,sensor,bias,saturation"]
    for s in stations:
        lines.append(
            f"{s.network},{s.name},{s.lon:.5f},{s.lat:.5f},{s.row},{s.col},{s.elevation_m:.2f},"
            f"{s.sensor},{s.bias:.5f},{s.saturation:.2f}"
        )
    return "\n".join(lines) + "\n"
