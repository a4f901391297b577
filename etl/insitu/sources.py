"""Finding the in situ files to load in folders, zip archives and single files, safely.

An ISMN download arrives as a zip or as the folder it unpacks to (``NETWORK/STATION/`` subfolders,
or everything flat); the layout does not matter here, only file names do: ``*.stm`` data files and
``*_static_variables.csv``. ``Metadata.xml`` and anything else is ignored. Zip members are read
into memory, never extracted, and a member is refused (reported, not read) when its path is absolute
or climbs out of the archive (zip slip), when it is a symbolic link, when its declared or actual
decompressed size exceeds the limits, or when its compression ratio is that of a zip bomb.
Symbolic links met in folders are refused too, and never followed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Final

from etl.errors import InputError
from etl.insitu.ismn_names import DATA_SUFFIX, STATIC_SUFFIX

log = logging.getLogger(__name__)

_SMALL_BYTES: Final = 1 << 20  # below this, any compression ratio is harmless


class Kind(StrEnum):
    DATA = "data"
    STATIC = "static"
    ARCHIVE = "archive"
    OTHER = "other"


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on what we read into memory: per file (plain or zip member), per archive, and the
    compression ratio above which a member is taken for a zip bomb."""

    max_member_bytes: int = 1 << 30
    max_total_bytes: int = 16 << 30
    max_ratio: float = 1000.0
    max_members: int = 200_000


@dataclass(frozen=True)
class SourceFile:
    """One file to load: a plain file (``member`` empty) or a member of the zip at ``path``.

    ``problem`` is set when the file is refused without being read.
    """

    path: Path
    member: str
    kind: Kind
    problem: str | None = None

    @property
    def name(self) -> str:
        """The file's own name (last path component)."""
        return PurePosixPath(self.member).name if self.member else self.path.name

    @property
    def label(self) -> str:
        """How the file is named in messages: ``/x/a.zip!COSMOS/ARM-1/f.stm`` for a member."""
        return f"{self.path}!{self.member}" if self.member else str(self.path)


@dataclass(frozen=True)
class Content:
    """The bytes of a source file with their size and sha256."""

    data: bytes
    sha256: str

    @property
    def size(self) -> int:
        return len(self.data)


def plain_file(path: Path) -> SourceFile:
    """A single file named by the user (not searched for): refused when missing or a symlink."""
    path = Path(path).absolute()
    if path.is_symlink():
        return SourceFile(path, "", Kind.OTHER, "symbolic link refused")
    if not path.is_file():
        return SourceFile(path, "", Kind.OTHER, "no such file")
    return SourceFile(path, "", Kind.OTHER)


def read_file(source: SourceFile, *, limits: ReadLimits) -> Content:
    """The content of a plain file, at most ``limits.max_member_bytes``; InputError naming it."""
    if source.problem is not None:
        raise InputError(f"{source.label}: {source.problem}")
    limit = limits.max_member_bytes
    try:
        with open(source.path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as err:
        raise InputError(f"{source.label}: cannot be read: {err}") from err
    return _content(data, source=source, limit=limit)


def _content(data: bytes, *, source: SourceFile, limit: int) -> Content:
    if len(data) > limit:
        raise InputError(f"{source.label}: larger than the limit of {limit} bytes; refused")
    return Content(data=data, sha256=hashlib.sha256(data).hexdigest())


def kind_of(name: str) -> Kind:
    """What a file is, from its name alone."""
    lower = name.lower()
    if lower.endswith(DATA_SUFFIX):
        return Kind.DATA
    if lower.endswith(STATIC_SUFFIX):
        return Kind.STATIC
    if lower.endswith(".zip"):
        return Kind.ARCHIVE
    return Kind.OTHER


class Sources:
    """The files found under some paths; a context manager that keeps the zip archives open.

    ``files`` lists data files, static files and refused entries, in a stable order (by path,
    then member), each once. Archives that cannot be opened appear as one refused ``ARCHIVE`` entry.
    """

    def __init__(self, paths: Iterable[Path], *, limits: ReadLimits) -> None:
        self.limits = limits
        self._archives: dict[Path, zipfile.ZipFile] = {}
        self.files: list[SourceFile] = []
        seen: set[tuple[Path, str]] = set()
        try:
            for path in paths:  # a file named twice (say a folder and a file in it) is listed once
                for f in self._scan(Path(path).absolute()):
                    if (f.path, f.member) not in seen:
                        seen.add((f.path, f.member))
                        self.files.append(f)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Sources:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for archive in self._archives.values():
            archive.close()
        self._archives.clear()

    def read(self, source: SourceFile) -> Content:
        """The content of a file; InputError naming it when it cannot or may not be read."""
        if source.problem is not None:
            raise InputError(f"{source.label}: {source.problem}")
        if not source.member:
            return read_file(source, limits=self.limits)
        limit = self.limits.max_member_bytes
        try:
            with self._archives[source.path].open(source.member) as fh:
                data = fh.read(limit + 1)
        except (OSError, zipfile.BadZipFile, RuntimeError, EOFError, KeyError) as err:
            raise InputError(f"{source.label}: cannot be read: {err}") from err
        return _content(data, source=source, limit=limit)

    # -- discovery ---------------------------------------------------------------------------

    def _scan(self, path: Path) -> Iterator[SourceFile]:
        if path.is_symlink():
            yield SourceFile(path, "", kind_of(path.name), "symbolic link refused")
        elif path.is_dir():
            yield from self._walk(path)
        elif not path.exists():
            yield SourceFile(path, "", kind_of(path.name), "no such file or directory")
        elif kind_of(path.name) is Kind.ARCHIVE or (
            kind_of(path.name) is Kind.OTHER and zipfile.is_zipfile(path)
        ):
            yield from self._members(path)
        elif kind_of(path.name) is Kind.OTHER:
            problem = f"not an ISMN file (*{DATA_SUFFIX}, *{STATIC_SUFFIX}) nor a zip archive"
            yield SourceFile(path, "", Kind.OTHER, problem)
        else:
            yield SourceFile(path, "", kind_of(path.name))

    def _walk(self, root: Path) -> Iterator[SourceFile]:
        for folder, dirs, files in os.walk(root, followlinks=False):
            dirs.sort()
            here = Path(folder)
            for name in [d for d in dirs if (here / d).is_symlink()]:
                dirs.remove(name)
                yield SourceFile(here / name, "", Kind.OTHER, "symbolic link refused")
            for name in sorted(files):
                path = here / name
                kind = kind_of(name)
                if path.is_symlink():
                    yield SourceFile(path, "", kind, "symbolic link refused")
                elif kind is Kind.ARCHIVE:
                    yield from self._members(path)
                elif kind is not Kind.OTHER:
                    yield SourceFile(path, "", kind)
                else:
                    log.debug("ignoring file", extra={"path": str(path)})

    def _members(self, path: Path) -> Iterator[SourceFile]:
        try:
            archive = zipfile.ZipFile(path)
            infos = archive.infolist()
        except (OSError, zipfile.BadZipFile, EOFError, ValueError) as err:
            yield SourceFile(path, "", Kind.ARCHIVE, f"not a readable zip archive: {err}")
            return
        self._archives[path] = archive
        if len(infos) > self.limits.max_members:
            yield SourceFile(
                path,
                "",
                Kind.ARCHIVE,
                f"{len(infos)} members, more than the limit of {self.limits.max_members}",
            )
            return
        total = 0
        seen: set[str] = set()
        for info in sorted(infos, key=lambda i: i.filename):
            if info.is_dir():
                continue
            kind = kind_of(info.filename)
            problem = self._member_problem(info, seen)
            seen.add(info.filename)
            if problem is None and kind in (Kind.DATA, Kind.STATIC):
                total += info.file_size
                if total > self.limits.max_total_bytes:
                    problem = (
                        f"archive decompresses to more than {self.limits.max_total_bytes} bytes"
                    )
            if problem is not None:
                yield SourceFile(path, info.filename, kind, problem)
            elif kind in (Kind.DATA, Kind.STATIC):
                yield SourceFile(path, info.filename, kind)
            else:
                log.debug("ignoring zip member", extra={"path": str(path), "member": info.filename})

    def _member_problem(self, info: zipfile.ZipInfo, seen: set[str]) -> str | None:
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
            return "member path escapes the archive (absolute or '..'): refused"
        if stat.S_ISLNK(info.external_attr >> 16):
            return "member is a symbolic link: refused"
        if name in seen:
            return "member name appears twice in the archive: refused"
        if info.flag_bits & 0x1:
            return "member is encrypted: refused"
        if info.file_size > self.limits.max_member_bytes:
            return (
                f"member decompresses to {info.file_size} bytes, more than the limit of "
                f"{self.limits.max_member_bytes}: refused"
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _SMALL_BYTES and ratio > self.limits.max_ratio:
            return f"member compression ratio {ratio:.0f}:1 (a zip bomb?): refused"
        return None
