"""Local directory source: a mirror, a drop folder, or the synthetic world, served like a provider.

Files are found with a per-day glob pattern relative to the directory, e.g.
``smap/SPL3SMP/{day:%Y.%m.%d}/SMAP_L3_SM_P_{day:%Y%m%d}_*.h5``. Fetching copies the file through
the archive (so it is verified and renamed into place like a download).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import BinaryIO

from etl.errors import GranuleNotFoundError
from etl.sources import Granule
from etl.sources.verify import opens


@dataclass(frozen=True)
class LocalDirectorySource:
    """Granules of one input in a directory tree."""

    source: str
    root: Path
    pattern: str
    version: str | None = None
    composite_days: int | None = None

    def granule_day(self, day: date) -> date:
        """The day a granule covering ``day`` is filed under: itself, or its composite's start.

        Composites (MOD16A2: 8 days) start on day of year 1, 1 + n, 1 + 2n, ... of each year.
        """
        if not self.composite_days:
            return day
        doy = day.timetuple().tm_yday
        return day - timedelta(days=(doy - 1) % self.composite_days)

    def discover(self, day: date) -> list[Granule]:
        day = self.granule_day(day)
        glob = self.pattern.format(day=day)
        return [
            Granule(
                source=self.source,
                granule_id=p.name,
                day=day,
                url=p.resolve().as_uri(),
                size=p.stat().st_size,
                version=self.version,
            )
            for p in sorted(self.root.glob(glob))
            if p.is_file()
        ]

    def write(self, granule: Granule, out: BinaryIO) -> int:
        """Copy the granule's file into ``out``; GranuleNotFoundError if it has gone."""
        path = Path(granule.url.removeprefix("file://"))
        try:
            with open(path, "rb") as src:
                shutil.copyfileobj(src, out, length=1 << 20)
        except FileNotFoundError as err:
            raise GranuleNotFoundError(f"{path}: no longer in {self.root}") from err
        return path.stat().st_size

    def verify(self, path: Path) -> None:
        opens(path)
