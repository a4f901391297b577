"""The raw archive: immutable, verified copies of input granules, written atomically.

A granule is written under ``<root>/.tmp/<unique>/``, flushed to disk, checked (size and checksum
where the provider gives them, then opened once by a product-specific ``verify`` callable), and only
then renamed to ``<root>/<source>/<YYYY>/<MM>/<DD>/<granule_id>``. A file that fails a check is moved
to ``<quarantine>/<source>/<YYYY-MM-DD>/`` beside a ``.reason`` file and never used; a kill at any
moment leaves at most a stray temporary directory, never a partial file under a final name. The
structural check cannot see everything (a renamed HDF5 group opens fine): a granule that its reader
refuses when the day is built is set aside the same way (:meth:`Archive.set_aside`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from etl.errors import QuarantinedError, SmapdsError
from etl.sources import Granule

log = logging.getLogger(__name__)

Writer = Callable[[BinaryIO], object]
Verifier = Callable[[Path], None]

_HASHES = {"MD5": "md5", "SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512"}


@dataclass(frozen=True)
class Stored:
    """A granule in the archive: absolute path, path relative to the archive root, size, sha256."""

    path: Path
    relpath: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Archive:
    """The raw archive rooted at ``root``; rejected files go to ``quarantine``."""

    root: Path
    quarantine: Path

    def relpath(self, granule: Granule) -> str:
        d = granule.day
        return f"{granule.source}/{d:%Y}/{d:%m}/{d:%d}/{granule.granule_id}"

    def path_for(self, granule: Granule) -> Path:
        if "/" in granule.granule_id or granule.granule_id in ("", ".", ".."):
            raise QuarantinedError(f"granule id {granule.granule_id!r} is not a plain file name")
        return self.root / self.relpath(granule)

    def existing(self, granule: Granule) -> Stored | None:
        """The archived copy, if present (files under final names are verified by construction)."""
        path = self.path_for(granule)
        if not path.is_file():
            return None
        return Stored(path, self.relpath(granule), path.stat().st_size, sha256_of(path))

    def store(self, granule: Granule, write: Writer, *, verify: Verifier) -> Stored:
        """Write, verify and rename a granule into place; quarantine it if a check fails.

        ``write`` receives a binary file object and fills it (a download, a copy). Errors raised by
        ``write`` other than verification (network failures) propagate unchanged and leave nothing.
        """
        final = self.path_for(granule)
        tmpdir = self.root / ".tmp" / uuid.uuid4().hex
        tmpdir.mkdir(parents=True)
        tmp = tmpdir / granule.granule_id
        try:
            with open(tmp, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            size = tmp.stat().st_size
            digest = sha256_of(tmp)
            problem = _check(granule, tmp, size, digest, verify)
            if problem is not None:
                self._quarantine(granule, tmp, problem)
                raise QuarantinedError(f"{granule.source} {granule.granule_id}: {problem}")
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
            log.info(
                "archived granule",
                extra={"source": granule.source, "granule": granule.granule_id, "bytes": size},
            )
            return Stored(final, self.relpath(granule), size, digest)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def set_aside(self, granule: Granule, path: Path, reason: str) -> None:
        """Move an archived granule that its reader refused when it was used to the quarantine,
        beside a ``.reason`` file, like one that failed verification; nothing if it is gone."""
        if path.is_file():
            self._quarantine(granule, path, reason)
            _fsync_dir(path.parent)

    def _quarantine(self, granule: Granule, tmp: Path, reason: str) -> None:
        target_dir = self.quarantine / granule.source / granule.day.isoformat()
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / granule.granule_id
        os.replace(tmp, target) if _same_fs(tmp, target_dir) else shutil.move(tmp, target)
        (target_dir / f"{granule.granule_id}.reason").write_text(reason + "\n")
        log.warning(
            "quarantined granule",
            extra={"source": granule.source, "granule": granule.granule_id, "reason": reason},
        )


def _check(granule: Granule, tmp: Path, size: int, sha256: str, verify: Verifier) -> str | None:
    if size == 0:
        return "empty file"
    if granule.size is not None and size != granule.size:
        return f"size {size} bytes, provider says {granule.size}"
    if granule.checksum is not None:
        algo = _HASHES.get(granule.checksum.algorithm.upper().replace("-", ""))
        if algo is None:
            log.warning(
                "unknown checksum algorithm; size checked only",
                extra={"algorithm": granule.checksum.algorithm},
            )
        else:
            actual = sha256 if algo == "sha256" else _digest(tmp, algo)
            if actual.lower() != granule.checksum.value.lower():
                return (
                    f"{granule.checksum.algorithm} {actual} does not match provider's "
                    f"{granule.checksum.value}"
                )
    try:
        verify(tmp)
    except SmapdsError as err:
        return f"does not open: {err}"
    except Exception as err:  # any failure to open means the file is unusable
        return f"does not open: {type(err).__name__}: {err}"
    return None


def sha256_of(path: Path) -> str:
    return _digest(path, "sha256")


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _same_fs(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
