"""The daily product: a COG with soil moisture, uncertainty and QA, a STAC item, a quicklook, and a
registered row, written so that a kill at any moment leaves no half product registered.

The day's files carry their version in their names: ``smapds_sm_1km_<domain>_<YYYYMMDD>_<v>``
with ``<v>`` the first 8 hex digits of the COG's sha256. They are written under temporary names,
flushed and renamed; only then is the ``smapds.products`` row written (pointing at them), in the same
transaction as the run ledger's outcome, and only after that commit are the day's superseded
versions removed. So the row always names files that exist and match it, whatever moment a kill
comes: a day made again with other bytes (another model, newer inputs) writes new names beside the
registered ones and switches the row in one commit. If writing or registering fails (a full disk,
the database), the new files are removed and the day is ledgered ``FAILED`` with the reason; what a
killed writer left (temporary names, an unregistered version) is removed once the day is made
again. Running a day again rewrites the same bytes under the same names (deterministic model,
encoder and metadata; no wall-clock times inside the files) and upserts the same row. An archived granule that its reader refuses is quarantined and the day is built
without it.

Encoding: soil moisture and uncertainty as int16 with scale 1e-4 m3/m3 and nodata -32768: half the
size of float32, with a quantisation step (1e-4) a hundred times finer than the retrieval error
(~0.04 m3/m3); QA bits (models.downscale.QA_BITS) in the third band, int16 as the others (a
GeoTIFF has one data type for all bands); the model's own prediction before residual correction
and clipping in the fourth (same encoding), so collocation and validation can show what the
correction adds. ZSTD with the horizontal predictor,
256-pixel internal tiles, overviews by nearest neighbour (one method for all bands; averaging
would mix QA bits).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from time import perf_counter
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import rasterio
import rasterio.shutil
import sqlalchemy as sa
from rasterio._err import CPLE_BaseError
from rasterio.io import MemoryFile
from sqlalchemy.engine import Engine

from etl.archive import Archive
from etl.errors import InputError, SmapdsError
from etl.grid import block_mean
from etl.stack import DailyStack, UnreadableInputError
from models.artifact import FrozenModel
from models.downscale import QA_BITS, Downscaled, Runner, downscale, run_here
from models.metrics import pair_stats
from service import __version__, ledger
from service.fetch import quarantine_archived
from service.stacks import StackFactory

log = logging.getLogger(__name__)

SCALE: Final = 1e-4
NODATA: Final = -32768
BOUNDS: Final = (0.02, 0.5)
STAGE: Final = "product"
VERSION_CHARS: Final = 8
"""Hex digits of the COG's sha256 in the day's file names (its version)."""


@dataclass(frozen=True)
class ProductResult:
    day: date
    status: str
    path: Path | None
    stats: dict[str, Any]
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per stage (inputs, predict, correct, cog, stac_quicklook, register)."""


def produce_day(
    engine: Engine,
    factory: StackFactory,
    model: FrozenModel,
    *,
    data_dir: Path,
    day: date,
    settings_hash: str,
    tile_cells: int = 32,
    run: Runner = run_here,
) -> ProductResult:
    """Produce, write and register one day; the outcome is also in the run ledger."""
    domain = factory.domain.name
    with engine.begin() as conn:
        ledger.start(
            conn,
            domain=domain,
            run_date=day,
            stage=STAGE,
            run_id=uuid.uuid4(),
            software_version=__version__,
        )
    seconds: dict[str, float] = {}
    try:
        t = perf_counter()
        stack = _build(engine, factory, data_dir=data_dir, day=day)
        seconds["inputs"] = perf_counter() - t
        result = downscale(
            stack,
            model.predict,
            bounds=BOUNDS,
            interpolate_residuals=True,
            tile_cells=tile_cells,
            run=run,
        )
        seconds.update(result.seconds)
        t = perf_counter()
        status = "DEGRADED" if stack.degraded else "OK"
        folder = data_dir / "products" / domain / f"{day:%Y}"
        folder.mkdir(parents=True, exist_ok=True)
        base = f"smapds_sm_1km_{domain}_{day:%Y%m%d}"
        kept = _registered(engine, data_dir, domain=domain, day=day)
        tmp = folder / f".{base}.tmp-{os.getpid()}.tif"
        written: list[Path] = [tmp]
        try:
            _write_cog(tmp, result, factory, day=day, model=model)
            digest = _sha256(tmp)
            stem = f"{base}_{digest[:VERSION_CHARS]}"
            cog = folder / f"{stem}.tif"
            written.append(cog)
            os.replace(tmp, cog)
            seconds["cog"] = perf_counter() - t
            t = perf_counter()
            written.append(folder / f"{stem}.png")
            png = _write_quicklook(written[-1], result, day=day, domain=domain)
            consistency = _consistency(result, stack.coarse36)
            inputs = [
                {
                    "source": f.source,
                    "granule_id": f.granule_id,
                    "sha256": f.sha256,
                    "date": f.granule_date.isoformat(),
                }
                for f in stack.inputs
            ]
            provenance = {
                "inputs": inputs,
                "staleness_days": dict(stack.staleness_days),
                "degraded_reasons": list(stack.degraded_reasons),
            }
            written.append(folder / f"{stem}.json")
            stac = _write_stac(
                written[-1],
                cog=cog,
                digest=digest,
                png=png,
                factory=factory,
                day=day,
                model=model,
                stats={**result.stats, **consistency},
                provenance=provenance,
                settings_hash=settings_hash,
                status=status,
            )
            seconds["stac_quicklook"] = perf_counter() - t
            t = perf_counter()
            with engine.begin() as conn:
                _register(
                    conn,
                    domain=domain,
                    day=day,
                    cog=cog,
                    stac=stac,
                    digest=digest,
                    model=model,
                    status=status,
                    stats=result.stats,
                    consistency=consistency,
                    provenance=provenance,
                    data_dir=data_dir,
                    bbox=factory.domain.bbox_lonlat(),
                )
                ledger.finish(
                    conn,
                    domain=domain,
                    run_date=day,
                    stage=STAGE,
                    status=status,
                    details={**result.stats, **consistency, "path": str(cog)},
                )
        except BaseException:
            for path in written:  # new names only: the registered files are never touched
                if path not in kept:
                    path.unlink(missing_ok=True)
            raise
        seconds["register"] = perf_counter() - t
        _sweep(folder, base, keep={cog, png, stac})
        log.info("product written", extra={"day": str(day), "status": status, "path": str(cog)})
        return ProductResult(day, status, cog, {**result.stats, **consistency}, seconds=seconds)
    except SmapdsError as err:
        status = err.status if err.status in ledger.STATUSES else "FAILED"
        status = (
            "INSUFFICIENT_DATA"
            if isinstance(err, InputError) and status == "QUARANTINED"
            else status
        )
        with engine.begin() as conn:
            ledger.finish(
                conn,
                domain=domain,
                run_date=day,
                stage=STAGE,
                status=status,
                error=f"{type(err).__name__}: {err}",
            )
        log.warning(
            "product not made", extra={"day": str(day), "status": status, "error": str(err)}
        )
        return ProductResult(day, status, None, {}, str(err))
    except (OSError, CPLE_BaseError) as err:  # a full disk, a failed write: retried later
        where = data_dir / "products" / domain / f"{day:%Y}"
        error = f"{type(err).__name__}: {err} (products in {where})"
        with engine.begin() as conn:
            ledger.finish(
                conn, domain=domain, run_date=day, stage=STAGE, status="FAILED", error=error
            )
        log.error("product not written", extra={"day": str(day), "error": error})
        return ProductResult(day, "FAILED", None, {}, error)


def _build(engine: Engine, factory: StackFactory, *, data_dir: Path, day: date) -> DailyStack:
    """The day's stack; a granule its reader refuses is quarantined and the day built without it."""
    archive = Archive(root=data_dir / "archive", quarantine=data_dir / "quarantine")
    refused: set[Path] = set()
    while True:
        try:
            return factory.build(day)
        except UnreadableInputError as err:
            if err.file.path in refused:  # could not be set aside: the day cannot be built
                raise
            refused.add(err.file.path)
            log.warning("input refused by its reader", extra={"day": str(day), "error": str(err)})
            quarantine_archived(engine, archive, err.file, reason=err.reason)


def _registered(engine: Engine, data_dir: Path, *, domain: str, day: date) -> set[Path]:
    """The files of the day's registered product (none when the day has no row)."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT path, stac_path FROM smapds.products "
                "WHERE domain = :d AND product_date = :day"
            ),
            {"d": domain, "day": day},
        ).first()
    if row is None:
        return set()
    cog = data_dir / row.path
    return {cog, cog.with_suffix(".png"), data_dir / row.stac_path}


_LEFTOVER: Final = re.compile(r"\.(?:tmp|prev)-(\d+)")


def _sweep(folder: Path, base: str, *, keep: set[Path]) -> None:
    """Once the day's new row is committed: remove the day's superseded versions (files under
    final names that the row does not name) and what killed writers left under temporary names
    (``.BASE.tmp-PID...``, GDAL's ``.ovr.tmp`` beside them) of processes that are gone."""
    for path in folder.glob(f"{base}_*"):
        if path not in keep and path.suffix in (".tif", ".png", ".json"):
            path.unlink(missing_ok=True)
            log.info("superseded version removed", extra={"path": str(path)})
    for path in folder.glob(f".{base}*"):
        found = _LEFTOVER.search(path.name)
        if found is not None and not _alive(int(found.group(1))):
            path.unlink(missing_ok=True)
            log.info("leftover removed", extra={"path": str(path)})


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not: it writes nothing any more)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


def _encode(values: npt.NDArray[np.float32]) -> npt.NDArray[np.int16]:
    scaled = np.round(np.nan_to_num(values, nan=0.0) / SCALE)
    out = np.clip(scaled, -32767, 32767).astype(np.int16)
    out[~np.isfinite(values)] = NODATA
    return out


def _write_cog(
    tmp: Path, result: Downscaled, factory: StackFactory, *, day: date, model: FrozenModel
) -> Path:
    """The COG, written and flushed under the temporary name ``tmp`` (renamed by the caller once
    its checksum names its version)."""
    rows, cols = result.soil_moisture.shape
    profile = {
        "driver": "GTiff",
        "width": cols,
        "height": rows,
        "count": 4,
        "dtype": "int16",
        "crs": "EPSG:6933",
        "transform": factory.domain.transform(1),
        "nodata": NODATA,
    }
    try:
        source = MemoryFile()
        with source.open(**profile) as dst:
            dst.write(_encode(result.soil_moisture), 1)
            dst.write(_encode(result.uncertainty), 2)
            dst.write(result.qa.astype(np.int16), 3)
            prediction = result.prediction
            if prediction is None:
                raise ValueError("the downscaled day carries no model prediction")
            dst.write(_encode(prediction), 4)
            for band, desc, units in (
                (1, "soil_moisture", "m3/m3"),
                (2, "soil_moisture_uncertainty", "m3/m3"),
                (3, "qa_flags", "bits"),
                (4, "soil_moisture_model", "m3/m3"),
            ):
                dst.set_band_description(band, desc)
                dst.update_tags(band, units=units)
            dst.scales = (SCALE, SCALE, 1.0, SCALE)
            dst.offsets = (0.0, 0.0, 0.0, 0.0)
            dst.update_tags(3, **{f"bit_{v}": k for k, v in QA_BITS.items()})
            dst.update_tags(
                product="smapds daily 1 km surface soil moisture",
                date=day.isoformat(),
                domain=factory.domain.name,
                model=model.name,
                model_sha256=model.sha256,
                software_version=__version__,
            )
        with source, source.open() as src:
            # ZSTD level 3: as small as level 9 on these maps and 2-3 times faster to write
            rasterio.shutil.copy(
                src,
                tmp,
                driver="COG",
                compress="ZSTD",
                predictor="2",
                blocksize=256,
                overview_resampling="nearest",
                level=3,
                num_threads="ALL_CPUS",
                BIGTIFF="IF_SAFER",
            )
        _fsync(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _write_quicklook(path: Path, result: Downscaled, *, day: date, domain: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = result.soil_moisture.shape
    step = max(1, -(-cols // 1200))  # at most ~1200 pixels across: the figure has fewer anyway
    width = 8.0
    fig, ax = plt.subplots(figsize=(width, width * rows / cols + 0.8), constrained_layout=True)
    image = ax.imshow(
        result.soil_moisture[::step, ::step],
        cmap="YlGnBu",
        vmin=BOUNDS[0],
        vmax=0.45,
        interpolation="nearest",
    )
    ax.set_axis_off()
    ax.set_title(f"smapds 1 km surface soil moisture, {domain}, {day.isoformat()}")
    fig.colorbar(image, ax=ax, label="soil moisture (m3/m3)", shrink=0.8)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=90, metadata={"Software": None})
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path


def _write_stac(
    path: Path,
    *,
    cog: Path,
    digest: str,
    png: Path,
    factory: StackFactory,
    day: date,
    model: FrozenModel,
    stats: dict[str, Any],
    provenance: dict[str, Any],
    settings_hash: str,
    status: str,
) -> Path:
    import pystac
    from pystac.extensions.projection import ProjectionExtension
    from pystac.validation import validate_dict

    west, south, east, north = factory.domain.bbox_lonlat()
    start = datetime.combine(day, time(0), tzinfo=UTC)
    item = pystac.Item(
        id=f"smapds-{factory.domain.name}-{day:%Y%m%d}",
        geometry={
            "type": "Polygon",
            "coordinates": [
                [[west, south], [east, south], [east, north], [west, north], [west, south]]
            ],
        },
        bbox=[west, south, east, north],
        datetime=None,
        start_datetime=start,
        end_datetime=start.replace(hour=23, minute=59, second=59),
        properties={
            "smapds:status": status,
            "smapds:stats": _jsonable(stats),
            "smapds:model": {"name": model.name, "sha256": model.sha256},
            "smapds:software_version": __version__,
            "smapds:settings_sha256": settings_hash,
            "smapds:provenance": provenance,
            "smapds:qa_bits": dict(QA_BITS),
        },
    )
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.code = "EPSG:6933"
    proj.shape = list(factory.domain.shape(1))
    proj.transform = list(factory.domain.transform(1))[:6]
    item.add_asset(
        "data",
        pystac.Asset(
            href=cog.name,
            media_type=pystac.MediaType.COG,
            roles=["data"],
            title=(
                "soil moisture, uncertainty, QA (bits), model prediction before correction "
                "(int16, scale 1e-4 m3/m3, nodata -32768)"
            ),
            extra_fields={"file:checksum_sha256": digest},
        ),
    )
    item.add_asset(
        "quicklook",
        pystac.Asset(href=png.name, media_type=pystac.MediaType.PNG, roles=["overview"]),
    )
    doc = item.to_dict(include_self_link=False)
    validate_dict(doc, extensions=[])  # core schema, offline; extension schemas need the network
    body = json.dumps(doc, indent=2, sort_keys=True).encode()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(body)
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _consistency(result: Downscaled, coarse36: Any) -> dict[str, Any]:
    """The 1 km map aggregated back to 36 km against the retrieval (the paper's R and RMSE)."""
    if coarse36 is None:
        return {"consistency_r": None, "consistency_rmse": None, "consistency_n": 0}
    agg, _ = block_mean(result.soil_moisture, 36)
    stats = pair_stats(agg, coarse36["soil_moisture"].values, min_n=10)
    return {
        "consistency_r": _finite(stats.r),
        "consistency_rmse": _finite(stats.rmse),
        "consistency_n": stats.n,
    }


def _register(
    conn: sa.Connection,
    *,
    domain: str,
    day: date,
    cog: Path,
    stac: Path,
    digest: str,
    model: FrozenModel,
    status: str,
    stats: dict[str, Any],
    consistency: dict[str, Any],
    provenance: dict[str, Any],
    data_dir: Path,
    bbox: tuple[float, float, float, float],
) -> None:
    conn.execute(
        sa.text("""
        INSERT INTO smapds.products AS p
            (domain, product_date, path, sha256, stac_path, model_name, model_sha256, status,
             valid_fraction, gap_filled_fraction, sm_min, sm_mean, sm_max, consistency_r,
             consistency_rmse, model_r, model_rmse, unc_mean, unc_p10, unc_p50, unc_p90, footprint,
             inputs, software_version)
        VALUES (:domain, :day, :path, :sha, :stac, :model, :model_sha, :status, :valid, :gap,
                :mn, :mean, :mx, :cr, :crmse, :mr, :mrmse, :um, :u10, :u50, :u90,
                ST_MakeEnvelope(:w, :s, :e, :n, 4326), CAST(:inputs AS jsonb), :version)
        ON CONFLICT (domain, product_date) DO UPDATE SET
            path = EXCLUDED.path, sha256 = EXCLUDED.sha256, stac_path = EXCLUDED.stac_path,
            model_name = EXCLUDED.model_name, model_sha256 = EXCLUDED.model_sha256,
            status = EXCLUDED.status, valid_fraction = EXCLUDED.valid_fraction,
            gap_filled_fraction = EXCLUDED.gap_filled_fraction, sm_min = EXCLUDED.sm_min,
            sm_mean = EXCLUDED.sm_mean, sm_max = EXCLUDED.sm_max,
            consistency_r = EXCLUDED.consistency_r, consistency_rmse = EXCLUDED.consistency_rmse,
            model_r = EXCLUDED.model_r, model_rmse = EXCLUDED.model_rmse,
            unc_mean = EXCLUDED.unc_mean, unc_p10 = EXCLUDED.unc_p10,
            unc_p50 = EXCLUDED.unc_p50, unc_p90 = EXCLUDED.unc_p90,
            footprint = EXCLUDED.footprint,
            inputs = EXCLUDED.inputs, software_version = EXCLUDED.software_version
    """),
        {
            "domain": domain,
            "day": day,
            "path": str(cog.relative_to(data_dir)),
            "sha": digest,
            "stac": str(stac.relative_to(data_dir)),
            "model": model.name,
            "model_sha": model.sha256,
            "status": status,
            "valid": stats["valid_fraction"],
            "gap": stats["gap_filled_fraction"],
            "mn": stats["min"],
            "mean": stats["mean"],
            "mx": stats["max"],
            "cr": consistency["consistency_r"],
            "crmse": consistency["consistency_rmse"],
            "mr": stats.get("model_r"),
            "mrmse": stats.get("model_rmse"),
            "um": stats.get("unc_mean"),
            "u10": stats.get("unc_p10"),
            "u50": stats.get("unc_p50"),
            "u90": stats.get("unc_p90"),
            "w": bbox[0],
            "s": bbox[1],
            "e": bbox[2],
            "n": bbox[3],
            "inputs": json.dumps(provenance),
            "version": __version__,
        },
    )


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (_finite(v) if isinstance(v, float) else v) for k, v in d.items()}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
