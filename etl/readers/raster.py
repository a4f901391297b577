"""Build the readers' covariate DataArray: north-up grid, x/y cell centres, CRS WKT and GDAL transform.

Every gridded covariate leaves the readers in one shape: dims (..., ``y``, ``x``) with row 0 the
northern edge, ``x``/``y`` coordinates at cell centres in the CRS's units, and attrs ``crs`` (WKT),
``transform`` (GDAL 6-tuple: x0, dx, 0, y0, 0, -dy), ``units``, ``product`` and ``source_file``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr
from affine import Affine


def raster_dataarray(
    values: npt.NDArray[Any],
    *,
    transform: Affine,
    crs_wkt: str,
    name: str,
    attrs: Mapping[str, Any],
    leading: Sequence[tuple[str, npt.NDArray[Any]]] = (),
    companions: Mapping[str, npt.NDArray[Any]] | None = None,
) -> xr.DataArray:
    """A DataArray of ``values`` (leading dims, then y, x) georeferenced by ``transform``.

    ``transform`` must be north-up without rotation; ``companions`` are extra 2-D arrays (same y, x)
    kept as coordinates, e.g. the special code behind each NaN.
    """
    if transform.b != 0 or transform.d != 0 or transform.e >= 0:
        raise ValueError(
            f"raster_dataarray needs a north-up transform without rotation, got {transform}"
        )
    nrows, ncols = values.shape[-2:]
    x = transform.c + (np.arange(ncols) + 0.5) * transform.a
    y = transform.f + (np.arange(nrows) + 0.5) * transform.e
    coords: dict[str, Any] = {name_: (name_, vals) for name_, vals in leading}
    coords["y"] = ("y", y)
    coords["x"] = ("x", x)
    for key, arr in (companions or {}).items():
        coords[key] = (("y", "x"), arr)
    dims = (*[n for n, _ in leading], "y", "x")
    out = xr.DataArray(values, dims=dims, coords=coords, name=name, attrs=dict(attrs))
    out.attrs["crs"] = crs_wkt
    out.attrs["transform"] = tuple(transform.to_gdal())
    return out


def decimal_centres(values: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Coordinates as float64, recovering the decimals a float32 file meant (-179.95, not -179.9499969).

    Float32 stores 0.05-degree centres with ~1e-5 degree noise; the shortest decimal that round-trips
    the float32 is the value the producer wrote, so transforms built from it are exact.
    """
    a = np.asarray(values)
    if a.dtype == np.float32:
        text = [np.format_float_positional(v, unique=True) for v in a.ravel()]
        return np.array(text, dtype=np.float64).reshape(a.shape)
    return a.astype(np.float64)


def regular_axis(centres: npt.NDArray[Any], *, tolerance: float) -> tuple[float, float] | None:
    """(first centre, step) if ``centres`` are evenly spaced within ``tolerance``, else None."""
    c = np.asarray(centres, dtype=np.float64)
    if c.size < 2:
        return None
    steps = np.diff(c)
    step = float((c[-1] - c[0]) / (c.size - 1))
    if step == 0 or np.max(np.abs(steps - step)) > tolerance:
        return None
    return float(c[0]), step
