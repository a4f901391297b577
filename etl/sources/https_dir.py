"""A plain HTTPS directory (CHIRPS, SoilGrids files, a mirror): one URL pattern per day.

The pattern is formatted with the day, e.g.
``https://data.chc.ucsb.edu/products/CHIRPS-2.0/global_daily/tifs/p05/{day:%Y}/chirps-v2.0.{day:%Y.%m.%d}.tif``.
A file name containing ``*`` is matched against the links of the directory's index page.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urljoin

from etl.errors import GranuleNotFoundError
from etl.sources import Granule
from etl.sources.http import HttpClient
from etl.sources.verify import opens

_HREF = re.compile(r"""href\\s*=\\s*["']([^"'#?]+)["']""", re.IGNORECASE)


@dataclass(frozen=True)
class HttpsDirectorySource:
    source: str
    client: HttpClient
    pattern: str
    version: str | None = None

    def discover(self, day: date) -> list[Granule]:
        url = self.pattern.format(day=day)
        directory, name = url.rsplit("/", 1)
        if "*" not in name:
            return [Granule(self.source, name, day, url, version=self.version)]
        try:
            page = self.client.get_text(directory + "/")
        except GranuleNotFoundError:
            return []
        names = sorted({unquote(h.rsplit("/", 1)[-1]) for h in _HREF.findall(page)})
        return [
            Granule(self.source, n, day, urljoin(directory + "/", n), version=self.version)
            for n in names
            if fnmatch.fnmatchcase(n, name)
        ]

    def write(self, granule: Granule, out: BinaryIO) -> int:
        return self.client.download(granule.url, out)

    def verify(self, path: Path) -> None:
        opens(path)
