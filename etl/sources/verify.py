"""Prove that a fetched file opens as what its name says: HDF5, NetCDF, GeoTIFF or HDF4.

A cheap structural check used by every adapter before a file is renamed into the archive; the
product readers do the full, product-specific validation when the file is used.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import netCDF4
import rasterio

from etl.errors import InputError

_HDF5 = (".h5", ".he5", ".hdf5")
_NETCDF = (".nc", ".nc4")
_TIFF = (".tif", ".tiff")
_HDF4 = (".hdf",)


def opens(path: Path) -> None:
    """Raise InputError naming the file when it does not open in the format of its extension."""
    suffix = path.suffix.lower()
    try:
        if suffix in _HDF5:
            with h5py.File(path, "r") as f:
                if not list(f.keys()):
                    raise InputError(f"{path}: HDF5 file has no groups or datasets")
        elif suffix in _NETCDF:
            with netCDF4.Dataset(path, "r") as nc:
                if not nc.variables and not nc.groups:
                    raise InputError(f"{path}: NetCDF file has no variables")
        elif suffix in _TIFF:
            with rasterio.open(path) as ds:
                ds.read(1, window=((0, 1), (0, 1)))
        elif suffix in _HDF4:
            from pyhdf.SD import SD, SDC

            sd = SD(str(path), SDC.READ)
            try:
                if not sd.datasets():
                    raise InputError(f"{path}: HDF4 file has no scientific datasets")
            finally:
                sd.end()
        else:
            raise InputError(f"{path}: unknown granule format {suffix!r}")
    except InputError:
        raise
    except Exception as err:  # the libraries raise OSError, RuntimeError, HDF4Error, ...
        raise InputError(f"{path}: does not open as {suffix}: {err}") from err
