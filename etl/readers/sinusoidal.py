"""Geolocation of MODIS / VIIRS land tiles on the global sinusoidal grid (hXXvYY), from constants.

The MODIS land grid is a sinusoidal projection on a sphere of radius R = 6371007.181 m, cut into
36 x 18 tiles of 1111950.5197665 m (= 2 pi R / 36) with tile h00v00 at the upper left: the upper-left
corner of tile (h, v) is x = (h - 18) * T, y = (9 - v) * T. A tile holds 1200 (1 km), 2400 (500 m) or
4800 (250 m) pixels a side. Readers compute the affine transform from the tile number and check it
against the HDF-EOS ``StructMetadata.0`` corners (UpperLeftPointMtrs, LowerRightMtrs), so a file whose
grid metadata disagrees with its tile number is caught instead of silently misplaced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from affine import Affine
from pyproj import CRS

from etl.readers.errors import SchemaDriftError

SPHERE_RADIUS_M: Final = 6371007.181
TILE_SIZE_M: Final = 1111950.5197665
TILES_H: Final = 36
TILES_V: Final = 18
PROJ4: Final = f"+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R={SPHERE_RADIUS_M} +units=m +no_defs"
CORNER_TOLERANCE_M: Final = 0.01
"""StructMetadata prints corners with 6 decimals; anything beyond a centimetre is a different grid."""

_TILE = re.compile(r"h(\d{2})v(\d{2})")


def sinusoidal_crs() -> CRS:
    """The MODIS sinusoidal CRS (sphere R = 6371007.181 m)."""
    return CRS.from_proj4(PROJ4)


@dataclass(frozen=True)
class Tile:
    """One tile of the MODIS sinusoidal grid."""

    h: int
    v: int

    def __post_init__(self) -> None:
        if not (0 <= self.h < TILES_H and 0 <= self.v < TILES_V):
            raise ValueError(f"tile h{self.h:02d}v{self.v:02d} is outside the 36 x 18 MODIS grid")

    @property
    def name(self) -> str:
        """``hXXvYY``."""
        return f"h{self.h:02d}v{self.v:02d}"

    def upper_left(self) -> tuple[float, float]:
        """(x, y) of the tile's upper-left corner in metres."""
        return (self.h - TILES_H // 2) * TILE_SIZE_M, (TILES_V // 2 - self.v) * TILE_SIZE_M

    def transform(self, pixels: int) -> Affine:
        """Affine transform of a ``pixels`` x ``pixels`` array of this tile (row 0 = north)."""
        x0, y0 = self.upper_left()
        size = TILE_SIZE_M / pixels
        return Affine(size, 0.0, x0, 0.0, -size, y0)


def parse_tile(text: str) -> Tile | None:
    """The tile named ``hXXvYY`` inside ``text`` (a file name or granule id), or None."""
    match = _TILE.search(text)
    return None if match is None else Tile(int(match[1]), int(match[2]))


def tile_from_corner(x: float, y: float, *, path: Path) -> Tile:
    """The tile whose upper-left corner is (x, y); SchemaDriftError if (x, y) is not a tile corner."""
    h = round(x / TILE_SIZE_M) + TILES_H // 2
    v = TILES_V // 2 - round(y / TILE_SIZE_M)
    try:
        tile = Tile(h, v)
    except ValueError as err:
        raise SchemaDriftError(f"{path}: corner ({x}, {y}) is not on the MODIS tile grid") from err
    ux, uy = tile.upper_left()
    if abs(ux - x) > CORNER_TOLERANCE_M or abs(uy - y) > CORNER_TOLERANCE_M:
        raise SchemaDriftError(f"{path}: corner ({x}, {y}) is not a MODIS tile corner")
    return tile


@dataclass(frozen=True)
class GridCorners:
    """What an HDF-EOS StructMetadata.0 says about one grid."""

    name: str
    xdim: int
    ydim: int
    upper_left: tuple[float, float]
    lower_right: tuple[float, float]
    projection: str
    sphere_radius: float | None
    fields: tuple[str, ...]


_GRID_BLOCK = re.compile(r"GROUP=(GRID_\d+)(.*?)END_GROUP=\1", re.S)


def parse_struct_metadata(text: str, *, path: Path) -> tuple[GridCorners, ...]:
    """The grids described by an HDF-EOS ``StructMetadata.0`` (ODL text)."""
    grids = []
    for _, body in _GRID_BLOCK.findall(text):
        try:
            name = _value(r'GridName="([^"]*)"', body)
            ul = _pair(r"UpperLeftPointMtrs=\(([^)]*)\)", body)
            lr = _pair(r"LowerRightMtrs=\(([^)]*)\)", body)
            xdim = int(_value(r"\bXDim=(\d+)", body))
            ydim = int(_value(r"\bYDim=(\d+)", body))
        except (ValueError, AttributeError) as err:
            raise SchemaDriftError(
                f"{path}: StructMetadata.0 grid block is incomplete ({err})"
            ) from err
        projection = re.search(r"Projection=(\w+)", body)
        params = re.search(r"ProjParams=\(([^)]*)\)", body)
        radius = float(params[1].split(",")[0]) if params else None
        fields = tuple(re.findall(r'DataFieldName="([^"]*)"', body))
        grids.append(
            GridCorners(
                name=name,
                xdim=xdim,
                ydim=ydim,
                upper_left=ul,
                lower_right=lr,
                projection=projection[1] if projection else "",
                sphere_radius=radius,
                fields=fields,
            )
        )
    return tuple(grids)


def check_corners(tile: Tile, grid: GridCorners, *, path: Path) -> Affine:
    """The tile's transform at the grid's size, after checking projection, sphere and both corners."""
    if grid.projection != "GCTP_SNSOID":
        raise SchemaDriftError(
            f"{path}: grid {grid.name} projection is {grid.projection}, expected GCTP_SNSOID"
        )
    if grid.sphere_radius is not None and abs(grid.sphere_radius - SPHERE_RADIUS_M) > 1e-3:
        raise SchemaDriftError(
            f"{path}: grid {grid.name} sphere radius {grid.sphere_radius} m, expected {SPHERE_RADIUS_M}"
        )
    if grid.xdim != grid.ydim:
        raise SchemaDriftError(
            f"{path}: grid {grid.name} is {grid.xdim} x {grid.ydim}, expected square tiles"
        )
    transform = tile.transform(grid.xdim)
    expected_ul = (transform.c, transform.f)
    expected_lr = transform @ (grid.xdim, grid.ydim)
    for label, got, want in (
        ("upper-left", grid.upper_left, expected_ul),
        ("lower-right", grid.lower_right, expected_lr),
    ):
        if max(abs(got[0] - want[0]), abs(got[1] - want[1])) > CORNER_TOLERANCE_M:
            raise SchemaDriftError(
                f"{path}: grid {grid.name} {label} corner {got} does not match tile {tile.name} {want}"
            )
    return transform


def _value(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise ValueError(f"no match for {pattern}")
    return match[1]


def _pair(pattern: str, text: str) -> tuple[float, float]:
    a, b = _value(pattern, text).split(",")
    return float(a), float(b)
