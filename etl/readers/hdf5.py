"""Open HDF5 (and NetCDF-4) files with h5py and reach required objects with typed, named errors.

h5py never applies CF decoding: values come back exactly as stored, so each reader applies its
product's own fill, scale and range rules. String attributes in NASA HDF5 products are fixed-length
ASCII and arrive as ``bytes``; :func:`attr_text` decodes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from etl.readers.errors import CorruptFileError, SchemaDriftError

Window = tuple[slice, slice]


@contextmanager
def open_hdf5(path: Path) -> Iterator[h5py.File]:
    """Open ``path`` read-only; CorruptFileError naming the file if it is missing or not HDF5."""
    if not path.is_file():
        raise CorruptFileError(f"{path}: no such file")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise CorruptFileError(f"{path}: does not open as HDF5 ({err})") from err
    try:
        yield handle
    finally:
        handle.close()


def require_group(parent: h5py.Group, name: str, *, path: Path) -> h5py.Group:
    """The group ``name`` under ``parent``; SchemaDriftError naming file and group if absent."""
    full = _join(parent.name, name)
    obj = parent.get(name)
    if obj is None:
        raise SchemaDriftError(f"{path}: group {full} is missing")
    if not isinstance(obj, h5py.Group):
        raise SchemaDriftError(f"{path}: {full} is not a group")
    return obj


def require_dataset(
    parent: h5py.Group,
    name: str,
    *,
    path: Path,
    shape: tuple[int, ...] | None = None,
    kinds: str | None = None,
) -> h5py.Dataset:
    """The dataset ``name`` under ``parent``, checked for shape and dtype kind (numpy ``kind`` codes).

    SchemaDriftError naming the file and the variable's full path when it is missing, is not a
    dataset, or has another shape or dtype kind.
    """
    full = _join(parent.name, name)
    obj = parent.get(name)
    if obj is None:
        raise SchemaDriftError(f"{path}: variable {full} is missing")
    if not isinstance(obj, h5py.Dataset):
        raise SchemaDriftError(f"{path}: {full} is not a dataset")
    if shape is not None and tuple(obj.shape) != shape:
        raise SchemaDriftError(
            f"{path}: variable {full} has shape {tuple(obj.shape)}, expected {shape}"
        )
    if kinds is not None and obj.dtype.kind not in kinds:
        raise SchemaDriftError(
            f"{path}: variable {full} has dtype {obj.dtype}, expected kind {kinds!r}"
        )
    return obj


def read_dataset(ds: h5py.Dataset, *, path: Path, window: Window | None = None) -> npt.NDArray[Any]:
    """The stored values of ``ds`` (optionally a 2-D window), no decoding; CorruptFileError on I/O errors."""
    try:
        if window is None:
            return np.asarray(ds[()])
        return np.asarray(ds[window])
    except OSError as err:  # damaged chunk, failed decompression, truncated file
        raise CorruptFileError(f"{path}: variable {ds.name} cannot be read ({err})") from err


def attr_text(obj: h5py.HLObject, name: str) -> str | None:
    """A string attribute as ``str`` (fixed-length ASCII bytes decoded); None if absent."""
    if name not in obj.attrs:
        return None
    return to_text(obj.attrs[name])


def to_text(value: Any) -> str:
    """Attribute value as text: bytes decoded, one-element arrays unwrapped, strip NUL padding."""
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return " ".join(to_text(v) for v in value.ravel())
        value = value.ravel()[0]
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", errors="replace").rstrip("\x00")
    return str(value)


def attr_number(obj: h5py.HLObject, name: str) -> float | None:
    """A numeric scalar attribute as float; None if absent."""
    if name not in obj.attrs:
        return None
    value = np.asarray(obj.attrs[name])
    if value.size != 1 or value.dtype.kind not in "iuf":
        return None
    return float(value.ravel()[0])


def _join(parent: str | None, name: str) -> str:
    if name.startswith("/"):
        return name
    base = (parent or "/").rstrip("/")
    return f"{base}/{name}"
