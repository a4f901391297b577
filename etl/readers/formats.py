"""Recognise an input file's container format from its first bytes, not from its name."""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

import h5py

from etl.readers.errors import CorruptFileError

Format = Literal["hdf5", "hdf4", "netcdf3", "geotiff"]

_MAGIC: Final[tuple[tuple[bytes, Format], ...]] = (
    (b"\x0e\x03\x13\x01", "hdf4"),
    (b"CDF\x01", "netcdf3"),
    (b"CDF\x02", "netcdf3"),
    (b"CDF\x05", "netcdf3"),
    (b"II*\x00", "geotiff"),
    (b"MM\x00*", "geotiff"),
    (b"II+\x00", "geotiff"),  # BigTIFF
    (b"MM\x00+", "geotiff"),
)


def sniff_format(path: Path) -> Format:
    """The container format of ``path``: HDF5 (also NetCDF-4), HDF4, NetCDF-3 or (Big)TIFF.

    Raises CorruptFileError naming the file when it is missing, empty or none of these.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError as err:
        raise CorruptFileError(f"{path}: cannot be read ({err.strerror or err})") from err
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    # HDF5 allows a user block before the signature (at 512, 1024, ... bytes); h5py knows them all.
    if h5py.is_hdf5(str(path)):
        return "hdf5"
    if not head:
        raise CorruptFileError(f"{path}: file is empty")
    raise CorruptFileError(f"{path}: not an HDF5, HDF4, NetCDF or GeoTIFF file (starts {head!r})")
