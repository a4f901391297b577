"""NASA CMR granule search: short name, version, temporal range and bounding box, with paging.

Uses the UMM-G JSON endpoint (``/search/granules.umm_json``) because it carries the exact size in
bytes and the provider's checksum of each file, which the archive verifies. Paging follows CMR's
``CMR-Search-After`` header (the offset-based ``page_num`` is deprecated and capped by CMR).
Reference: CMR Search API, https://cmr.earthdata.nasa.gov/search/site/docs/search/api.html
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from etl.errors import FetchError
from etl.sources import Checksum, Granule
from etl.sources.http import HttpClient
from etl.sources.verify import opens

log = logging.getLogger(__name__)

CMR_PRODUCTION = "https://cmr.earthdata.nasa.gov"


@dataclass(frozen=True)
class CmrProduct:
    """A collection as CMR knows it, and the name smapds gives the input it feeds."""

    source: str
    short_name: str
    version: str


# Collections the service knows; which one feeds which input is configuration.
PRODUCTS: dict[str, CmrProduct] = {
    p.source: p
    for p in (
        CmrProduct("SPL3SMP", "SPL3SMP", "009"),
        CmrProduct("SPL3SMP_E", "SPL3SMP_E", "006"),
        CmrProduct("IMERG_E", "GPM_3IMERGDE", "07"),
        CmrProduct("IMERG_L", "GPM_3IMERGDL", "07"),
        CmrProduct("MCD43A3", "MCD43A3", "061"),
        CmrProduct("VNP43IA3", "VNP43IA3", "002"),
        CmrProduct("MOD16A2", "MOD16A2", "061"),
        CmrProduct("VNP16A2", "VNP16A2", "002"),
    )
}


@dataclass(frozen=True)
class CmrSource:
    """An input fed by a NASA collection: CMR search, HTTPS download with the Earthdata token."""

    source: str
    product: CmrProduct
    client: HttpClient
    bbox: tuple[float, float, float, float]
    base_url: str = CMR_PRODUCTION

    def discover(self, day: date) -> list[Granule]:
        found = search(self.client, self.product, day, bbox=self.bbox, base_url=self.base_url)
        return [Granule(**{**g.__dict__, "source": self.source}) for g in found]

    def write(self, granule: Granule, out: BinaryIO) -> int:
        return self.client.download(granule.url, out)

    def verify(self, path: Path) -> None:
        opens(path)


def search(
    client: HttpClient,
    product: CmrProduct,
    day: date,
    *,
    bbox: tuple[float, float, float, float],
    base_url: str = CMR_PRODUCTION,
    page_size: int = 200,
) -> list[Granule]:
    """Granules of ``product`` whose temporal extent touches ``day`` (UTC) inside ``bbox``.

    ``bbox`` is (west, south, east, north) in degrees.
    """
    start = datetime.combine(day, time(0), tzinfo=UTC)
    end = start + timedelta(days=1) - timedelta(seconds=1)
    params = {
        "short_name": product.short_name,
        "version": product.version,
        "temporal": f"{start:%Y-%m-%dT%H:%M:%SZ},{end:%Y-%m-%dT%H:%M:%SZ}",
        "bounding_box": ",".join(f"{v:.6f}" for v in bbox),
        "page_size": str(page_size),
        "sort_key": "start_date",
    }
    return [_granule(item, product, day) for item in _pages(client, base_url, params, page_size)]


def _pages(
    client: HttpClient, base_url: str, params: dict[str, str], page_size: int
) -> Iterator[dict[str, Any]]:
    url = f"{base_url.rstrip('/')}/search/granules.umm_json"
    search_after: str | None = None
    while True:
        headers = {"CMR-Search-After": search_after} if search_after else None
        doc, response_headers = client.get_json(url, params=params, headers=headers)
        items = doc.get("items") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            raise FetchError(f"{url}: CMR answer has no 'items' list")
        yield from items
        search_after = response_headers.get("CMR-Search-After")
        if len(items) < page_size or not search_after:
            return


def _granule(item: dict[str, Any], product: CmrProduct, day: date) -> Granule:
    try:
        umm = item["umm"]
        urls = [
            u["URL"]
            for u in umm.get("RelatedUrls", [])
            if u.get("Type") == "GET DATA" and _downloadable(str(u.get("URL", "")))
        ]
        if not urls:
            raise KeyError("RelatedUrls GET DATA https")
        info = (umm.get("DataGranule", {}).get("ArchiveAndDistributionInformation") or [{}])[0]
    except (KeyError, TypeError, IndexError) as err:
        raise FetchError(
            f"CMR granule {item.get('meta', {}).get('concept-id')} lacks {err}"
        ) from err
    name = info.get("Name") or urls[0].rsplit("/", 1)[-1]
    size: int | None = None
    if "SizeInBytes" in info:
        size = int(info["SizeInBytes"])
    checksum = None
    if isinstance(info.get("Checksum"), dict):
        checksum = Checksum(str(info["Checksum"]["Algorithm"]), str(info["Checksum"]["Value"]))
    url = next((u for u in urls if u.rsplit("/", 1)[-1] == name), urls[0])
    return Granule(
        source=product.source,
        granule_id=name,
        day=_begin_day(umm) or day,
        url=url,
        size=size,
        checksum=checksum,
        version=product.version,
    )


def _begin_day(umm: dict[str, Any]) -> date | None:
    """The first day a granule covers (an 8-day composite is filed under its start)."""
    begin = umm.get("TemporalExtent", {}).get("RangeDateTime", {}).get("BeginningDateTime")
    if not isinstance(begin, str):
        return None
    try:
        return datetime.fromisoformat(begin.replace("Z", "+00:00")).astimezone(UTC).date()
    except ValueError:
        return None


def _downloadable(url: str) -> bool:
    """HTTPS, or plain HTTP to the loopback host only (a local mirror, a test double)."""
    parts = urlsplit(url)
    return parts.scheme == "https" or (
        parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
    )
