"""Read named variables exactly as stored from NetCDF-3, NetCDF-4 or plain HDF5 files.

One entry point for the gridded NetCDF/HDF5 inputs (IMERG, ERA5, MCCA): HDF5-based files (NetCDF-4
included) go through h5py, NetCDF-3 files through netCDF4 with automatic masking and scaling switched
off. Either way the caller gets the raw array, its attributes (text decoded) and, when the file says,
its dimension names; fill values, packing and calendars are left to the product's reader.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import netCDF4
import numpy as np
import numpy.typing as npt

from etl.readers.errors import CorruptFileError, SchemaDriftError
from etl.readers.formats import sniff_format
from etl.readers.hdf5 import open_hdf5, read_dataset, to_text


@dataclass(frozen=True)
class RawVariable:
    """One variable as stored: values, attributes and dimension names (None where the file is silent)."""

    name: str
    values: npt.NDArray[Any]
    attrs: dict[str, Any] = field(default_factory=dict)
    dims: tuple[str, ...] | None = None

    @property
    def path(self) -> str:
        """The variable's path with a leading slash, for messages."""
        return _slash(self.name)

    def text(self, key: str) -> str | None:
        """A string attribute, or None."""
        value = self.attrs.get(key)
        return None if value is None else to_text(value)

    def number(self, key: str) -> float | None:
        """A numeric scalar attribute as float, or None."""
        value = self.attrs.get(key)
        if value is None:
            return None
        arr = np.asarray(value)
        if arr.size != 1 or arr.dtype.kind not in "iuf":
            return None
        return float(arr.ravel()[0])


def read_variables(
    path: Path, names: Sequence[str], *, optional: Sequence[str] = ()
) -> dict[str, RawVariable]:
    """Read ``names`` (required) and ``optional`` variables; paths like ``/Grid/lat`` reach into groups.

    Raises CorruptFileError if the file does not open, SchemaDriftError naming the file and the first
    missing required variable.
    """
    kind = sniff_format(path)
    if kind == "hdf5":
        return _read_hdf5(path, names, optional)
    if kind == "netcdf3":
        return _read_netcdf3(path, names, optional)
    raise CorruptFileError(f"{path}: is {kind}, expected NetCDF or HDF5")


def file_attrs(path: Path, *, group: str = "/") -> dict[str, Any]:
    """Attributes of the root (or another) group, text decoded; {} if the group is absent."""
    kind = sniff_format(path)
    if kind == "hdf5":
        with open_hdf5(path) as handle:
            obj = handle.get(group)
            if obj is None:
                return {}
            return {k: _decode(v) for k, v in obj.attrs.items()}
    if kind == "netcdf3":
        with _open_netcdf(path) as ds:
            return {k: _decode(ds.getncattr(k)) for k in ds.ncattrs()}
    raise CorruptFileError(f"{path}: is {kind}, expected NetCDF or HDF5")


def _read_hdf5(path: Path, names: Sequence[str], optional: Sequence[str]) -> dict[str, RawVariable]:
    out: dict[str, RawVariable] = {}
    with open_hdf5(path) as handle:
        for name, required in [(n, True) for n in names] + [(n, False) for n in optional]:
            obj = handle.get(name)
            if obj is None or not isinstance(obj, h5py.Dataset):
                if required:
                    what = "is missing" if obj is None else "is not a dataset"
                    raise SchemaDriftError(f"{path}: variable {_slash(name)} {what}")
                continue
            out[name] = RawVariable(
                name=name,
                values=read_dataset(obj, path=path),
                attrs={k: _decode(v) for k, v in obj.attrs.items() if k not in _H5_INTERNAL},
                dims=_h5_dims(obj),
            )
    return out


def _read_netcdf3(
    path: Path, names: Sequence[str], optional: Sequence[str]
) -> dict[str, RawVariable]:
    out: dict[str, RawVariable] = {}
    with _open_netcdf(path) as ds:
        for name, required in [(n, True) for n in names] + [(n, False) for n in optional]:
            key = name.lstrip("/")
            if key not in ds.variables:
                if required:
                    raise SchemaDriftError(f"{path}: variable {_slash(name)} is missing")
                continue
            var = ds.variables[key]
            try:
                values = np.asarray(var[...])
            except (OSError, RuntimeError) as err:
                raise CorruptFileError(f"{path}: variable {key} cannot be read ({err})") from err
            out[name] = RawVariable(
                name=name,
                values=values,
                attrs={k: _decode(var.getncattr(k)) for k in var.ncattrs()},
                dims=tuple(var.dimensions),
            )
    return out


@contextmanager
def _open_netcdf(path: Path) -> Iterator[Any]:
    """netCDF4.Dataset with CF decoding (masking, scaling) switched off; typed error if it fails."""
    try:
        ds = netCDF4.Dataset(path, "r")
    except OSError as err:
        raise CorruptFileError(f"{path}: does not open as NetCDF ({err})") from err
    try:
        ds.set_auto_maskandscale(False)
        ds.set_always_mask(False)
        yield ds
    finally:
        ds.close()


_H5_INTERNAL = frozenset(
    {"DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME", "_Netcdf4Dimid", "_Netcdf4Coordinates"}
)


def _h5_dims(ds: h5py.Dataset) -> tuple[str, ...] | None:
    """Dimension names from attached dimension scales (NetCDF-4), else a DimensionNames attribute."""
    names: list[str] = []
    for dim in ds.dims:
        if len(dim) == 0:
            names = []
            break
        scale_name = dim[0].name or ""
        names.append(scale_name.rsplit("/", 1)[-1])
    if len(names) == ds.ndim:
        return tuple(names)
    listed = ds.attrs.get("DimensionNames")
    if listed is not None:
        parts = tuple(p.strip() for p in to_text(listed).split(","))
        if len(parts) == ds.ndim:
            return parts
    return None


def _decode(value: Any) -> Any:
    if isinstance(value, bytes | np.bytes_ | str):
        return to_text(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "SO":
        return to_text(value)
    return value


def _slash(name: str) -> str:
    return name if name.startswith("/") else f"/{name}"
