"""The daily product end to end on the synthetic world: fetch, train + freeze, produce a day as
COG + STAC + quicklook + row; a second run gives the same file and row; failures are ledgered."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
import sqlalchemy as sa
from run_cli import smapds
from sqlalchemy.engine import Engine

from etl.archive import Archive
from service.db import Database
from service.fetch import fetch_day
from service.product import produce_day
from service.settings import Settings, SourceConfig
from service.sources import build_sources
from service.stacks import StackFactory, stack_factory
from service.train import active_model, train, world_truth

DAYS = [date(2024, 4, 1) + timedelta(days=i) for i in range(8)]


@pytest.fixture(scope="module")
def setup(
    demo_world: Path, writer: Engine, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, StackFactory]:
    data = tmp_path_factory.mktemp("data")
    settings = Settings(data_dir=data, synthetic_dir=demo_world, domain="demo")
    archive = Archive(root=data / "archive", quarantine=data / "quarantine")
    for d in DAYS:
        fetch_day(writer, build_sources(settings), archive, d, today=DAYS[-1], window_days=7)
    factory = stack_factory(settings, writer)
    report = train(
        writer,
        factory,
        data_dir=data,
        start=DAYS[0],
        end=DAYS[-1],
        models=["rf"],
        params={"rf": {"n_estimators": 30, "max_depth": 10}},
        freeze="rf",
        activate=True,
        seed=3,
        n_jobs=2,
    )
    assert report.frozen is not None and report.table_csv.is_file() and report.plot_png.is_file()
    return settings, factory


def test_a_day_is_written_as_cog_stac_and_quicklook_and_registered(
    setup: tuple[Settings, StackFactory], writer: Engine
) -> None:
    settings, factory = setup
    model = active_model(writer, domain="demo", data_dir=settings.data_dir)
    result = produce_day(
        writer, factory, model, data_dir=settings.data_dir, day=DAYS[-1], settings_hash="0" * 64
    )
    assert result.status == "OK" and result.path is not None
    with rasterio.open(result.path) as ds:
        assert ds.count == 4 and set(ds.dtypes) == {"int16"}
        assert ds.crs.to_epsg() == 6933 and ds.shape == factory.domain.shape(1)
        assert ds.scales[:2] == (1e-4, 1e-4) and ds.nodata == -32768
        assert ds.descriptions == (
            "soil_moisture",
            "soil_moisture_uncertainty",
            "qa_flags",
            "soil_moisture_model",
        )
        assert ds.overviews(1) and ds.profile["tiled"] and ds.profile["compress"] == "zstd"
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"  # GDAL's own COG check
        sm = ds.read(1).astype(float)
        qa = ds.read(3)
    valid = sm != -32768
    assert 0.8 < valid[factory.static["land"].values.astype(bool)].mean() <= 1.0
    assert (sm[valid] * 1e-4).min() >= 0.02 and (sm[valid] * 1e-4).max() <= 0.5
    assert np.all(qa[~valid] & 16)
    stac = json.loads(result.path.with_suffix(".json").read_text())
    assert stac["id"] == "smapds-demo-20240408"
    assert stac["properties"]["proj:code"] == "EPSG:6933"
    assert stac["properties"]["smapds:model"]["sha256"] == model.sha256
    assert {i["source"] for i in stac["properties"]["smapds:provenance"]["inputs"]} >= {
        "SPL3SMP",
        "MCD43A3",
        "IMERG_E",
    }
    assert result.path.with_suffix(".png").stat().st_size > 10_000
    assert result.stats["consistency_rmse"] < 1e-3  # residual correction: mass is conserved
    with writer.connect() as conn:
        row = conn.execute(
            sa.text("SELECT * FROM smapds.products WHERE product_date = :d"), {"d": DAYS[-1]}
        ).one()
        led = conn.execute(
            sa.text(
                "SELECT status, attempts FROM smapds.run_ledger "
                "WHERE run_date = :d AND stage = 'product'"
            ),
            {"d": DAYS[-1]},
        ).one()
    assert row.status == "OK" and row.model_name == model.name and led.status == "OK"
    assert row.model_r is not None and row.model_rmse > row.consistency_rmse
    with writer.connect() as conn:
        inside = conn.execute(
            sa.text(
                "SELECT ST_Contains(footprint, ST_SetSRID(ST_MakePoint(115.4, 34.8), 4326)) "
                "FROM smapds.products WHERE product_date = :d"
            ),
            {"d": DAYS[-1]},
        ).scalar()
    assert inside
    assert (settings.data_dir / row.path).is_file()


def test_running_a_day_again_gives_the_same_file_and_row(
    setup: tuple[Settings, StackFactory], writer: Engine
) -> None:
    settings, factory = setup
    model = active_model(writer, domain="demo", data_dir=settings.data_dir)
    first = produce_day(
        writer, factory, model, data_dir=settings.data_dir, day=DAYS[-2], settings_hash="0" * 64
    )
    assert first.path is not None
    blobs = {p.name: p.read_bytes() for p in first.path.parent.glob("*20240407*")}
    with writer.connect() as conn:
        before = conn.execute(
            sa.text("SELECT sha256, sm_mean FROM smapds.products WHERE product_date = :d"),
            {"d": DAYS[-2]},
        ).one()
    again = produce_day(
        writer, factory, model, data_dir=settings.data_dir, day=DAYS[-2], settings_hash="0" * 64
    )
    assert again.path == first.path
    assert {p.name: p.read_bytes() for p in first.path.parent.glob("*20240407*")} == blobs
    with writer.connect() as conn:
        after = conn.execute(
            sa.text("SELECT sha256, sm_mean FROM smapds.products WHERE product_date = :d"),
            {"d": DAYS[-2]},
        ).one()
        n = conn.execute(sa.text("SELECT count(*) FROM smapds.products")).scalar()
        attempts = conn.execute(
            sa.text(
                "SELECT attempts FROM smapds.run_ledger WHERE run_date = :d AND stage = 'product'"
            ),
            {"d": DAYS[-2]},
        ).scalar()
    assert tuple(after) == tuple(before) and attempts == 2
    assert n == len(list(settings.data_dir.glob("products/demo/2024/*.tif")))
    assert not list(settings.data_dir.glob("products/demo/2024/.*"))  # no temporary files left


def test_a_day_without_inputs_is_ledgered_and_registers_nothing(
    setup: tuple[Settings, StackFactory], writer: Engine
) -> None:
    settings, factory = setup
    model = active_model(writer, domain="demo", data_dir=settings.data_dir)
    day = date(2023, 1, 1)
    result = produce_day(
        writer, factory, model, data_dir=settings.data_dir, day=day, settings_hash="0" * 64
    )
    assert result.path is None and result.status == "INSUFFICIENT_DATA"
    with writer.connect() as conn:
        led = conn.execute(
            sa.text("SELECT status, error FROM smapds.run_ledger WHERE run_date = :d"), {"d": day}
        ).one()
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM smapds.products WHERE product_date = :d"), {"d": day}
            ).scalar()
            == 0
        )
    assert led.status == "INSUFFICIENT_DATA" and "no MCD43A3 granule" in led.error


def test_a_tampered_active_model_is_refused(
    setup: tuple[Settings, StackFactory], writer: Engine, tmp_path: Path
) -> None:
    from etl.errors import ArtifactError

    settings, _ = setup
    model = active_model(writer, domain="demo", data_dir=settings.data_dir)
    copy = tmp_path / "data"
    shutil.copytree(settings.data_dir / "models", copy / "models")
    victim = copy / "models" / model.name / "forest.npz"
    blob = bytearray(victim.read_bytes())
    blob[100] ^= 0xFF
    victim.write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match="modified"):
        active_model(writer, domain="demo", data_dir=copy)


def test_training_again_reuses_the_frozen_artifact(
    setup: tuple[Settings, StackFactory], writer: Engine
) -> None:
    settings, factory = setup
    before = active_model(writer, domain="demo", data_dir=settings.data_dir)
    report = train(
        writer,
        factory,
        data_dir=settings.data_dir,
        start=DAYS[0],
        end=DAYS[-1],
        models=["rf"],
        params={"rf": {"n_estimators": 30, "max_depth": 10}},
        freeze="rf",
        activate=True,
        seed=3,
        n_jobs=2,
    )
    assert report.frozen is not None and report.frozen.sha256 == before.sha256
    from etl.errors import ArtifactError

    with pytest.raises(ArtifactError, match="other samples or hyperparameters"):
        train(
            writer,
            factory,
            data_dir=settings.data_dir,
            start=DAYS[0],
            end=DAYS[-1],
            models=["rf"],
            params={"rf": {"n_estimators": 31, "max_depth": 10}},
            freeze="rf",
            activate=True,
            seed=3,
            n_jobs=2,
        )


def test_training_on_the_synthetic_world_scores_each_model_against_the_1km_truth(
    setup: tuple[Settings, StackFactory], writer: Engine
) -> None:
    settings, factory = setup
    truth = world_truth(settings, factory.domain)
    assert truth is not None and truth.covers(DAYS[-1])
    report = train(
        writer,
        factory,
        data_dir=settings.data_dir,
        start=DAYS[0],
        end=DAYS[-1],
        models=["rf", "hgb"],
        params={"rf": {"n_estimators": 30, "max_depth": 10}, "hgb": {"max_iter": 50}},
        freeze=None,
        activate=False,
        seed=3,
        n_jobs=2,
        truth=truth,
    )
    assert report.truth is not None  # the hold-out: the last 20 % of the days with samples
    assert report.truth.days == max(1, round(0.2 * report.days_used))
    baseline = report.truth.bilinear
    print(f"bilinear {baseline}")
    for s in report.scores:
        print(f"{s.model}: {s.truth_1km}\n  filled {s.truth_filled}")
        assert s.truth_1km is not None and s.truth_filled is not None
        assert s.truth_1km.n == baseline.n > 100_000  # the same pixels as the baseline
        assert s.truth_filled.n > 10_000 and s.truth_1km.status == s.truth_filled.status == "OK"
        assert s.truth_1km.r > 0.5 and s.truth_1km.rmse < 0.08
    rf = next(s for s in report.scores if s.model == "rf")
    assert rf.truth_1km is not None
    rows = list(csv.DictReader(report.table_csv.open()))
    assert [r["model"] for r in rows] == ["rf", "hgb", "bilinear"]
    assert float(rows[0]["truth_1km_rmse"]) == pytest.approx(rf.truth_1km.rmse)
    assert float(rows[2]["truth_1km_r"]) == pytest.approx(baseline.r) and rows[2]["cv_r"] == ""
    # real inputs have no truth: a source that is not the synthetic world's turns it off
    real = settings.model_copy(
        update={"sources": {"SPL3SMP": SourceConfig(transport="cmr", product="SPL3SMP")}}
    )
    assert world_truth(real, factory.domain) is None


@pytest.fixture(scope="module")
def cli_env(
    setup: tuple[Settings, StackFactory], database: Database, demo_world: Path
) -> dict[str, str]:
    """The environment an operator would have for this module's database and data directory."""
    settings, _ = setup
    return {
        "SMAPDS_DATABASE_URL": database.url("writer"),
        "SMAPDS_DATA_DIR": str(settings.data_dir),
        "SMAPDS_SYNTHETIC_DIR": str(demo_world),
        "SMAPDS_DOMAIN": "demo",
    }


def test_backfill_produces_missing_days_in_order_and_skips_done_ones(
    setup: tuple[Settings, StackFactory], cli_env: dict[str, str]
) -> None:
    settings, env = setup[0], cli_env
    first = smapds("backfill", "--start", "2024-04-07", "--end", "2024-04-08", env=env)
    assert first.returncode == 0, first.stderr
    result = smapds("backfill", "--start", "2024-04-06", "--end", "2024-04-08", env=env)
    assert result.returncode == 0, result.stderr
    assert "2 day(s) already produced, skipped" in result.stdout
    assert "[1/1] 2024-04-06 OK" in result.stderr
    (made,) = (settings.data_dir / "products/demo/2024").glob("smapds_sm_1km_demo_20240406_*.tif")
    assert (
        made.name
        == f"smapds_sm_1km_demo_20240406_{hashlib.sha256(made.read_bytes()).hexdigest()[:8]}.tif"
    )


def test_fetch_model_list_and_activate_from_the_command_line(cli_env: dict[str, str]) -> None:
    env = cli_env
    fetched = smapds("fetch", "--date", "2024-04-03", "--source", "SPL3SMP", env=env)
    assert fetched.returncode == 0, fetched.stderr
    assert "SPL3SMP  fetched  0    1" in fetched.stdout  # already archived, nothing new
    ranged = smapds("fetch", "--date", "2024-04-01", "--until", "2024-04-08", env=env)
    assert ranged.returncode == 0 and "fetched 8" in ranged.stdout
    listed = smapds("model", "list", env=env)
    assert listed.returncode == 0 and "rf-demo-20240401-20240408" in listed.stdout
    assert "*" in listed.stdout
    missing = smapds("model", "activate", "no-such-model", env=env)
    assert missing.returncode == 1 and "no registered model named 'no-such-model'" in missing.stderr
    again = smapds("model", "activate", "rf-demo-20240401-20240408", env=env)
    assert again.returncode == 0
