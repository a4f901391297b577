"""The day's map does not depend on how it is tiled or where the tiles run: one tile, 3 x 3 tiles
in this process and 3 x 3 tiles on a two-worker Dask LocalCluster give byte-identical COGs."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from produced_world import make_produced
from sqlalchemy.engine import Engine

from models.downscale import tiles
from service.product import produce_day
from service.settings import Settings
from service.stacks import StackFactory
from service.tiles import runner
from service.train import active_model

DAYS = [date(2024, 4, 1) + timedelta(days=i) for i in range(8)]


@pytest.fixture(scope="module")
def world(
    demo_world: Path, writer: Engine, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, StackFactory]:
    made = make_produced(demo_world, writer, tmp_path_factory.mktemp("data"), trees=20)
    settings, factory = made.settings, made.factory
    return settings, factory


def _produce(
    settings: Settings, factory: StackFactory, engine: Engine, *, tile_cells: int, **kw: object
) -> str:
    model = active_model(engine, domain="demo", data_dir=settings.data_dir)
    r = produce_day(
        engine,
        factory,
        model,
        data_dir=settings.data_dir,
        day=DAYS[-1],
        settings_hash="0" * 64,
        tile_cells=tile_cells,
        **kw,  # type: ignore[arg-type]
    )
    assert r.path is not None, r.error
    return hashlib.sha256(r.path.read_bytes()).hexdigest()


def test_tiles_cover_the_domain_once_on_coarse_cell_edges() -> None:
    windows = tiles((360, 432), 36, 4)
    assert len(windows) == 3 * 3
    cover = np.zeros((360, 432), int)
    for rows, cols in windows:
        assert rows.start % 36 == 0 and cols.start % 36 == 0
        cover[rows, cols] += 1
    assert np.all(cover == 1)


def test_the_same_bytes_in_one_tile_in_nine_tiles_and_on_a_dask_cluster(
    world: tuple[Settings, StackFactory], writer: Engine
) -> None:
    from distributed import LocalCluster as _LocalCluster

    local_cluster: Any = _LocalCluster  # not annotated
    settings, factory = world
    whole = _produce(settings, factory, writer, tile_cells=1000)
    nine = _produce(settings, factory, writer, tile_cells=4)
    assert nine == whole
    with (
        local_cluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        runner(cluster.scheduler_address) as run,
    ):
        on_cluster = _produce(settings, factory, writer, tile_cells=4, run=run)
    assert on_cluster == whole
