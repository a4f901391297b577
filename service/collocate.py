"""Collocation: for a product day, one row per station pairing in situ and satellite values.

In situ: ``smapds.insitu_overpass_sm`` (SQL) averages the G observations of the station's surface
sensors within ``half_window_hours`` of the overpass (6:00 local solar time for the AM pass, 18:00
for PM). Satellite: the registered COG read at the station's 1 km pixel (soil moisture,
uncertainty, QA and the model's own prediction), and the day's 36 km and 9 km retrievals at the
station's cells, read from the raw archive exactly as the daily stack reads them.

Writing is idempotent: an upsert that changes a row only when a value differs (a changed row takes
a new revision, which the validation refresh follows), and stations that left the domain or lost
their surface sensor are set to NULL rather than deleted, so the change is seen downstream.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import rasterio
import sqlalchemy as sa
import xarray as xr
from rasterio.windows import Window
from sqlalchemy.engine import Engine

from etl.errors import ArtifactError
from service.settings import Settings
from service.stacks import StackFactory

log = logging.getLogger(__name__)

OVERPASS_HOUR: Final = {"AM": 6.0, "PM": 18.0}
NODATA: Final = -32768
SCALE: Final = 1e-4


@dataclass(frozen=True)
class OverpassWindow:
    """Where and how wide the in situ window sits around the overpass, and what counts as surface."""

    overpass_hour: float
    half_window_hours: float
    max_depth_from_m: float


def overpass_window(settings: Settings) -> OverpassWindow:
    return OverpassWindow(
        overpass_hour=OVERPASS_HOUR[settings.coarse_pass],
        half_window_hours=settings.overpass_half_window_hours,
        max_depth_from_m=settings.surface_max_depth_m,
    )


@dataclass(frozen=True)
class DayCollocation:
    day: date
    stations: int
    with_insitu: int
    changed: int


def collocate_day(
    engine: Engine, factory: StackFactory, *, data_dir: Path, day: date, window: OverpassWindow
) -> DayCollocation:
    """Collocate every station of the domain with the product of ``day`` (none: nothing to do)."""
    domain = factory.domain.name
    with engine.connect() as conn:
        product = conn.execute(
            sa.text(
                "SELECT path, sha256 FROM smapds.products WHERE domain = :d AND product_date = :day"
            ),
            {"d": domain, "day": day},
        ).one_or_none()
        if product is None:
            return DayCollocation(day, 0, 0, 0)
        stations = conn.execute(
            sa.text("""
            SELECT sc.station_id, sc.row_1km, sc.col_1km, sc.row_9km, sc.col_9km,
                   sc.row_36km, sc.col_36km, i.soil_moisture, i.n_obs, i.n_sensors,
                   i.window_start, i.window_end
              FROM smapds.station_cells sc
              JOIN smapds.insitu_overpass_sm(:day, :hour, :half, :depth) i
                ON i.station_id = sc.station_id
             WHERE sc.domain = :d AND sc.row_1km IS NOT NULL
               AND EXISTS (SELECT 1 FROM smapds.surface_sensors_at(:depth) ss
                            WHERE ss.station_id = sc.station_id)
             ORDER BY sc.station_id
        """),
            {
                "d": domain,
                "day": day,
                "hour": window.overpass_hour,
                "half": window.half_window_hours,
                "depth": window.max_depth_from_m,
            },
        ).all()
    cog = data_dir / product.path
    pixels = _read_pixels(cog, [(s.row_1km, s.col_1km) for s in stations])
    coarse36, coarse9, _ = factory.coarse(day)
    rows: list[dict[str, Any]] = []
    for k, s in enumerate(stations):
        rows.append(
            {
                "domain": domain,
                "day": day,
                "station_id": s.station_id,
                "insitu_sm": s.soil_moisture,
                "insitu_n": s.n_obs,
                "insitu_sensors": s.n_sensors,
                "w0": s.window_start,
                "w1": s.window_end,
                "sm_1km": _value(pixels[0, k]),
                "unc": _value(pixels[1, k]),
                "qa": None if pixels[2, k] == NODATA else int(pixels[2, k]),
                "sm_model": _value(pixels[3, k]),
                "sm_36km": _cell(coarse36, s.row_36km, s.col_36km),
                "sm_9km": _cell(coarse9, s.row_9km, s.col_9km),
            }
        )
    changed = 0
    with engine.begin() as conn:
        if rows:
            changed = conn.execute(_UPSERT, rows).rowcount
        changed += conn.execute(
            sa.text("""
            UPDATE smapds.collocations c
               SET insitu_sm = NULL, insitu_n = 0, insitu_sensors = 0, sm_1km = NULL,
                   sm_1km_uncertainty = NULL, qa_1km = NULL, sm_model = NULL, sm_36km = NULL,
                   sm_9km = NULL, revision = nextval('smapds.collocation_revision'),
                   updated_at = now()
             WHERE c.domain = :d AND c.product_date = :day
               AND NOT (c.station_id = ANY(:ids))
               AND num_nonnulls(c.insitu_sm, c.sm_1km, c.sm_36km, c.sm_9km, c.sm_model) > 0
        """),
            {"d": domain, "day": day, "ids": [s.station_id for s in stations]},
        ).rowcount
    with_insitu = sum(r["insitu_sm"] is not None for r in rows)
    log.info(
        "collocated",
        extra={"day": str(day), "stations": len(rows), "insitu": with_insitu, "changed": changed},
    )
    return DayCollocation(day, len(rows), with_insitu, changed)


_UPSERT: Final = sa.text("""
    INSERT INTO smapds.collocations AS c
        (domain, product_date, station_id, insitu_sm, insitu_n, insitu_sensors, window_start,
         window_end, sm_1km, sm_1km_uncertainty, qa_1km, sm_model, sm_36km, sm_9km)
    VALUES (:domain, :day, :station_id, :insitu_sm, :insitu_n, :insitu_sensors, :w0, :w1,
            :sm_1km, :unc, :qa, :sm_model, :sm_36km, :sm_9km)
    ON CONFLICT (domain, product_date, station_id) DO UPDATE SET
        insitu_sm = EXCLUDED.insitu_sm, insitu_n = EXCLUDED.insitu_n,
        insitu_sensors = EXCLUDED.insitu_sensors, window_start = EXCLUDED.window_start,
        window_end = EXCLUDED.window_end, sm_1km = EXCLUDED.sm_1km,
        sm_1km_uncertainty = EXCLUDED.sm_1km_uncertainty, qa_1km = EXCLUDED.qa_1km,
        sm_model = EXCLUDED.sm_model, sm_36km = EXCLUDED.sm_36km, sm_9km = EXCLUDED.sm_9km,
        revision = nextval('smapds.collocation_revision'), updated_at = now()
    WHERE (c.insitu_sm, c.insitu_n, c.insitu_sensors, c.window_start, c.window_end, c.sm_1km,
           c.sm_1km_uncertainty, c.qa_1km, c.sm_model, c.sm_36km, c.sm_9km)
          IS DISTINCT FROM
          (EXCLUDED.insitu_sm, EXCLUDED.insitu_n, EXCLUDED.insitu_sensors, EXCLUDED.window_start,
           EXCLUDED.window_end, EXCLUDED.sm_1km, EXCLUDED.sm_1km_uncertainty, EXCLUDED.qa_1km,
           EXCLUDED.sm_model, EXCLUDED.sm_36km, EXCLUDED.sm_9km)
""")


def product_days(engine: Engine, *, domain: str, first: date, last: date) -> list[date]:
    """The days in [first, last] that have a registered product, in order."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT product_date FROM smapds.products WHERE domain = :d "
                    "AND product_date BETWEEN :a AND :b ORDER BY product_date"
                ),
                {"d": domain, "a": first, "b": last},
            ).scalars()
        )


def _read_pixels(cog: Path, cells: list[tuple[int, int]]) -> npt.NDArray[np.int32]:
    """The four bands' raw values at each (row, col): shape (4, n)."""
    out = np.full((4, len(cells)), NODATA, np.int32)
    if not cells:
        return out
    if not cog.is_file():
        raise ArtifactError(f"{cog}: registered product file is missing")
    with rasterio.open(cog) as ds:
        if ds.count < 4:
            raise ArtifactError(f"{cog}: expected 4 bands, found {ds.count}")
        for k, (row, col) in enumerate(cells):
            out[:, k] = ds.read(window=Window(col, row, 1, 1))[:, 0, 0]
    return out


def _value(raw: np.int32) -> float | None:
    return None if raw == NODATA else round(float(raw) * SCALE, 6)


def _cell(ds: xr.Dataset | None, row: int, col: int) -> float | None:
    if ds is None:
        return None
    v = float(ds["soil_moisture"].values[row, col])
    return v if np.isfinite(v) else None


def collocate(engine: Engine, settings: Settings, day: date) -> None:
    """The service's hook after a product (ledger stage ``collocate``): collocate that day."""
    from service.stacks import stack_factory

    collocate_day(
        engine,
        stack_factory(settings, engine),
        data_dir=settings.data_dir,
        day=day,
        window=overpass_window(settings),
    )


def collocate_ingested(engine: Engine, settings: Settings, day: date) -> None:
    """The service's hook after an ingest (ledger stage ``collocate_ingested``): collocate again
    the product days whose overpass windows reach the observations of the files loaded and not
    yet collocated (``ingest_files.collocated_at``), then mark those files. Files are marked only
    once their days are done, so an ingest whose collocation was cut short (a kill, a crash) is
    finished by the next ingest run; so are files loaded by ``smapds ingest``."""
    from service.stacks import stack_factory

    with engine.connect() as conn:
        files = conn.execute(
            sa.text("""
            SELECT file_id, loaded_at, first_time, last_time FROM smapds.ingest_files
             WHERE collocated_at IS NULL AND status IN ('OK', 'DEGRADED')
        """)
        ).all()
    spans = [(f.first_time, f.last_time) for f in files if f.first_time is not None]
    days = (
        product_days(  # windows reach at most 12 h + 12 h of longitude offset from their UTC day
            engine,
            domain=settings.domain,
            first=(min(a for a, _ in spans) - timedelta(days=1)).date(),
            last=(max(b for _, b in spans) + timedelta(days=1)).date(),
        )
        if spans
        else []
    )
    if days:
        factory = stack_factory(settings, engine)
        for d in days:
            collocate_day(
                engine, factory, data_dir=settings.data_dir, day=d, window=overpass_window(settings)
            )
    if files:
        with engine.begin() as conn:  # a file loaded again meanwhile stays to do
            conn.execute(
                sa.text("""
                UPDATE smapds.ingest_files f SET collocated_at = now()
                  FROM unnest(CAST(:ids AS integer[]), CAST(:at AS timestamptz[])) AS d(id, at)
                 WHERE f.file_id = d.id AND f.loaded_at = d.at
            """),
                {"ids": [f.file_id for f in files], "at": [f.loaded_at for f in files]},
            )
