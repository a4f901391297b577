"""A Catalog over a synthetic world's folder, as the inventory would give it after fetching."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

from etl.sources.local import LocalDirectorySource
from etl.stack import ArchivedFile
from service.sources import SYNTHETIC_DEFAULTS


def world_catalog(
    world: Path,
    *,
    drop: set[tuple[str, date]] = frozenset(),  # type: ignore[assignment]
) -> Callable[[str, date], Sequence[ArchivedFile]]:
    sources = {
        n: LocalDirectorySource(n, world, c.pattern or "", composite_days=c.composite_days)
        for n, c in SYNTHETIC_DEFAULTS.items()
    }

    def catalog(source: str, day: date) -> list[ArchivedFile]:
        if (source, day) in drop:
            return []
        return [
            ArchivedFile(source, g.granule_id, g.day, Path(g.url.removeprefix("file://")), "0" * 64)
            for g in sources[source].discover(day)
            if g.day == day
        ]

    return catalog
