"""Assemble per-pass coarse soil-moisture layers into the readers' common Dataset on EASE-Grid 2.0.

SMAP L3 and MCCA both come out of this one function, so the pipeline sees one layout: dims
(``pass``, ``y``, ``x``), ``x``/``y`` = projected cell centres (EPSG:6933 metres) from
:mod:`etl.grid` constants, integer ``row``/``col`` = global grid indices, and attrs with the CRS WKT,
the GDAL geotransform of the (possibly windowed) array and the resolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr
from affine import Affine

from etl.errors import GridError
from etl.grid import Domain, Ease2Grid, ease2
from etl.readers.hdf5 import Window


def full_window(grid: Ease2Grid) -> Window:
    """The window covering the whole global grid."""
    return slice(0, grid.nrows), slice(0, grid.ncols)


def domain_window(grid: Ease2Grid, domain: Domain | None) -> Window:
    """Rows/cols of ``domain`` on ``grid`` (the whole grid when None)."""
    if domain is None:
        return full_window(grid)
    return domain.slices(grid.res_km)


def coarse_dataset(
    *,
    grid: Ease2Grid,
    window: Window,
    passes: Sequence[str],
    layers: Mapping[str, tuple[Sequence[npt.NDArray[Any]], Mapping[str, Any]]],
    attrs: Mapping[str, Any],
) -> xr.Dataset:
    """A Dataset of per-pass 2-D layers: ``layers[name] = ([array per pass], variable attrs)``."""
    rows = np.arange(window[0].start, window[0].stop, dtype=np.int64)
    cols = np.arange(window[1].start, window[1].stop, dtype=np.int64)
    x, _ = grid.xy(np.zeros_like(cols), cols)
    _, y = grid.xy(rows, np.zeros_like(rows))
    data_vars = {
        name: (("pass", "y", "x"), np.stack(list(arrays)), dict(var_attrs))
        for name, (arrays, var_attrs) in layers.items()
    }
    ds = xr.Dataset(
        data_vars,
        coords={
            "pass": ("pass", list(passes)),
            "y": ("y", y, {"units": "m", "long_name": "cell-centre y (EASE-Grid 2.0, EPSG:6933)"}),
            "x": ("x", x, {"units": "m", "long_name": "cell-centre x (EASE-Grid 2.0, EPSG:6933)"}),
            "row": ("y", rows, {"long_name": "global grid row (0 = north)"}),
            "col": ("x", cols, {"long_name": "global grid column (0 = west)"}),
        },
        attrs=dict(attrs),
    )
    ds.attrs.update(_grid_attrs(grid, window))
    return ds


def cut_domain(ds: xr.Dataset, domain: Domain) -> xr.Dataset:
    """The part of a coarse Dataset (global or already windowed) that covers ``domain``.

    Uses the global ``row``/``col`` coordinates, so it works on any window that contains the domain;
    GridError if it does not. The ``transform`` attribute is updated to the cut.
    """
    grid = ease2(int(ds.attrs["res_km"]))
    rs, cs = domain.slices(grid.res_km)
    r0, c0 = int(ds["row"][0]), int(ds["col"][0])
    if (
        rs.start < r0
        or cs.start < c0
        or rs.stop > r0 + ds.sizes["y"]
        or cs.stop > c0 + ds.sizes["x"]
    ):
        raise GridError(f"domain {domain.name!r} is not inside this dataset's window")
    out = ds.isel(y=slice(rs.start - r0, rs.stop - r0), x=slice(cs.start - c0, cs.stop - c0))
    out.attrs.update(_grid_attrs(grid, (rs, cs)))
    return out


def _grid_attrs(grid: Ease2Grid, window: Window) -> dict[str, Any]:
    transform = grid.transform @ Affine.translation(window[1].start, window[0].start)
    return {
        "crs": grid.crs.to_wkt(),
        "crs_epsg": "EPSG:6933",
        "transform": tuple(transform.to_gdal()),
        "res_km": grid.res_km,
    }
