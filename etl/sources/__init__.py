"""Source adapters: which granules exist for a date (discover) and how to fetch one (transports).

A :class:`Granule` is what discovery returns and what the raw archive stores: the provider's id
(file name), the day it covers, where to get it, and what the provider says about its size and
checksum so the download can be verified. Transports: NASA CMR search + HTTPS with an Earthdata
token (:mod:`etl.sources.cmr`, :mod:`etl.sources.http`) and a local directory
(:mod:`etl.sources.local`: a mirror, a drop folder, or the synthetic world).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class Checksum:
    """A provider checksum: ``algorithm`` as the provider names it (MD5, SHA256, ...) and hex value."""

    algorithm: str
    value: str


@dataclass(frozen=True)
class Granule:
    """One provider file for one day of one configured input."""

    source: str
    granule_id: str
    day: date
    url: str
    size: int | None = None
    checksum: Checksum | None = None
    version: str | None = None


class Source(Protocol):
    """What every adapter offers: the granules of a day, the bytes of one, a check that it opens."""

    @property
    def source(self) -> str:
        """The configured input name (SPL3SMP, MCD43A3, ...)."""
        ...

    def discover(self, day: date) -> list[Granule]:
        """Granules for ``day``; empty when the provider has none (yet)."""
        ...

    def write(self, granule: Granule, out: BinaryIO) -> int:
        """Write the granule's bytes into ``out``; return the count."""
        ...

    def verify(self, path: Path) -> None:
        """Raise if the file at ``path`` is not a readable granule of this source."""
        ...
