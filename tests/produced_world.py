"""A data directory with the synthetic world fetched into the raw archive and a small frozen
forest active: what the product, collocation and reliability tests start from.

Imported by the tests as a top-level module (like ``world_catalog``), never as ``conftest``: the
name ``conftest`` belongs to whichever conftest pytest imported last.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine

from etl.archive import Archive
from models.artifact import FrozenModel
from service.fetch import fetch_day
from service.settings import Settings
from service.sources import build_sources
from service.stacks import StackFactory, stack_factory
from service.train import active_model, train

DAYS = tuple(date(2024, 4, 1) + timedelta(days=i) for i in range(8))
"""The days of the session's synthetic world (``demo_world``)."""


@dataclass(frozen=True)
class Produced:
    """A data directory whose archive holds the whole synthetic world, and an active model."""

    settings: Settings
    factory: StackFactory
    model: FrozenModel
    archive: Archive

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir


def make_produced(
    world: Path, writer: Engine, data: Path, *, trees: int = 10, depth: int = 8
) -> Produced:
    """Fetch every day of ``world`` into ``data`` and freeze and activate a small forest."""
    settings = Settings(data_dir=data, synthetic_dir=world, domain="demo")
    archive = Archive(root=data / "archive", quarantine=data / "quarantine")
    for d in DAYS:
        fetch_day(writer, build_sources(settings), archive, d, today=DAYS[-1], window_days=7)
    factory = stack_factory(settings, writer)
    train(
        writer,
        factory,
        data_dir=data,
        start=DAYS[0],
        end=DAYS[-1],
        models=["rf"],
        params={"rf": {"n_estimators": trees, "max_depth": depth}},
        freeze="rf",
        activate=True,
        seed=3,
        n_jobs=2,
    )
    model = active_model(writer, domain="demo", data_dir=data)
    return Produced(settings, factory, model, archive)
