"""The fetch stage: for one day, bring every configured input's granules into the raw archive.

Per source: discover, skip what is archived or quarantined, download and verify the rest, and
record each outcome in the inventory. Latency is normal: a day with nothing yet is *pending* and
re-checked on later runs until the window has passed, then it is a *gap*. A refused token is an
authentication failure, reported apart from missing data.

A granule that passed the structural check at fetch but that its reader refuses when a day is built
(schema drift, a damaged chunk) is quarantined then (:func:`quarantine_archived`), so it is never
used again and the inventory says why.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy.engine import Engine

from etl.archive import Archive
from etl.errors import AuthenticationError, FetchError, GranuleNotFoundError, QuarantinedError
from etl.sources import Granule, Source
from etl.stack import ArchivedFile
from service import inventory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceOutcome:
    """What fetching one source for one day came to.

    ``status``: ``fetched`` (every granule is archived), ``pending``, ``gap``, ``quarantined``
    (granules exist but none is usable), ``auth_failed``, ``partial`` (some fetched, others not).
    """

    source: str
    day: date
    status: str
    downloaded: int = 0
    already: int = 0
    quarantined: int = 0
    failed: int = 0
    detail: str | None = None


def fetch_day(
    engine: Engine,
    sources: Sequence[Source],
    archive: Archive,
    day: date,
    *,
    today: date,
    window_days: int,
    archive_prefix: str = "archive",
) -> list[SourceOutcome]:
    """Fetch ``day`` for every source; one outcome per source, in the given order."""
    return [
        _fetch_source(
            engine, src, archive, day, today=today, window_days=window_days, prefix=archive_prefix
        )
        for src in sources
    ]


def _fetch_source(
    engine: Engine,
    src: Source,
    archive: Archive,
    day: date,
    *,
    today: date,
    window_days: int,
    prefix: str,
) -> SourceOutcome:
    late = (today - day).days > window_days
    try:
        granules = src.discover(day)
    except AuthenticationError as err:
        with engine.begin() as conn:
            inventory.mark_missing(
                conn,
                source=src.source,
                day=day,
                status="pending",
                error=f"authentication failed: {err}",
            )
        return SourceOutcome(src.source, day, "auth_failed", detail=str(err))
    except FetchError as err:
        status = "gap" if late else "pending"
        with engine.begin() as conn:
            inventory.mark_missing(
                conn, source=src.source, day=day, status=status, error=f"discovery failed: {err}"
            )
        return SourceOutcome(src.source, day, status, failed=1, detail=str(err))
    if not granules:
        status = "gap" if late else "pending"
        with engine.begin() as conn:
            inventory.mark_missing(conn, source=src.source, day=day, status=status, error=None)
        return SourceOutcome(src.source, day, status)

    downloaded = already = quarantined = failed = 0
    detail: str | None = None
    for g in granules:
        with engine.begin() as conn:
            row = inventory.lookup(conn, g)
        if row is not None and row.status == "quarantined":
            quarantined += 1  # never retried, never used
            continue
        relpath = f"{prefix}/{archive.relpath(g)}"
        try:
            stored = archive.existing(g)
            fresh = stored is None
            if stored is None:
                stored = archive.store(g, functools.partial(src.write, g), verify=src.verify)
        except QuarantinedError as err:
            quarantined += 1
            detail = str(err)
            with engine.begin() as conn:
                inventory.mark_quarantined(conn, g, error=str(err))
            continue
        except AuthenticationError as err:
            with engine.begin() as conn:
                inventory.mark_granule_pending(conn, g, error=f"authentication failed: {err}")
            return SourceOutcome(
                src.source,
                day,
                "auth_failed",
                downloaded,
                already,
                quarantined,
                failed + 1,
                str(err),
            )
        except (GranuleNotFoundError, FetchError) as err:
            failed += 1
            detail = str(err)
            with engine.begin() as conn:
                inventory.mark_granule_pending(conn, g, error=str(err))
            continue
        with engine.begin() as conn:
            inventory.mark_fetched(conn, g, stored, relpath=relpath, downloaded=fresh)
        downloaded += fresh
        already += not fresh
    usable = downloaded + already
    if usable and not failed and not quarantined:
        status = "fetched"
    elif usable:
        status = "partial"
    elif failed:
        status = "gap" if late else "pending"
    else:
        status = "quarantined"
    log.log(
        logging.INFO if downloaded or quarantined or failed else logging.DEBUG,
        "fetched source",
        extra={
            "source": src.source,
            "day": str(day),
            "status": status,
            "downloaded": downloaded,
            "already": already,
            "quarantined": quarantined,
            "failed": failed,
        },
    )
    return SourceOutcome(src.source, day, status, downloaded, already, quarantined, failed, detail)


def quarantine_archived(
    engine: Engine, archive: Archive, file: ArchivedFile, *, reason: str
) -> None:
    """Set an archived granule aside after its reader refused it: the file goes to the quarantine
    with a ``.reason``, the inventory row becomes ``quarantined`` with the reason."""
    granule = Granule(file.source, file.granule_id, file.granule_date, file.path.as_uri())
    archive.set_aside(granule, file.path, reason)
    with engine.begin() as conn:
        inventory.mark_quarantined(conn, granule, error=reason)
