"""Read MODIS / VIIRS land tiles on the sinusoidal grid: HDF4-EOS (MODIS), HDF5-EOS (VIIRS), GeoTIFF.

Products and collections: MOD11A1/MYD11A1 (daily LST, 1 km, C6/6.1), MCD43A3 (daily albedo from a 16-day
BRDF window, 500 m, C6/6.1), MOD16A2/MYD16A2 (8-day ET, 500 m, C6/6.1), and the VIIRS continuity
products VNP43IA3 (albedo) and VNP16A2 (ET). Each product's rule is spelled out (:data:`PRODUCTS`)
and the file's own ``scale_factor`` and ``_FillValue`` must agree with it. Traps handled:

* Scale conventions differ (LST multiplies by 0.02; albedo by 0.001; ET by 0.1) and are never taken
  from the file blindly.
* MOD11A1 LST: uint16, fill 0, valid range 7500-65535 (150 K and up), scale 0.02 K.
* MCD43A3 albedo: int16, fill 32767, valid 0-32766, scale 0.001.
* MOD16A2 ET: fill 32767 and special codes 32761-32766 (water, barren, snow/ice, wetland, urban,
  unclassified) that are not evapotranspiration: NaN in the values, kept in the ``special_code``
  coordinate. Valid stored range -32767-32700, scale 0.1 (kg/m2 per 8 days).
* The tile number may be missing from the file name (renamed granules): it is taken from the
  ArchiveMetadata TILEINFO, the granule id or the HDF-EOS grid corner, and the affine transform
  computed from it with the sinusoidal constants is checked against StructMetadata.0.
* pyhdf reads HDF4 (the PyPI rasterio wheel has no HDF4 driver).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import h5py
import numpy as np
import numpy.typing as npt
import xarray as xr
from affine import Affine

from etl.errors import ConfigError
from etl.readers.errors import CorruptFileError, SchemaDriftError
from etl.readers.formats import sniff_format
from etl.readers.geotiff import band_descriptions, read_geotiff_band
from etl.readers.hdf5 import open_hdf5, read_dataset, to_text
from etl.readers.raster import raster_dataarray
from etl.readers.scaling import CodeRule, decode
from etl.readers.sinusoidal import (
    CORNER_TOLERANCE_M,
    TILE_SIZE_M,
    GridCorners,
    Tile,
    check_corners,
    parse_struct_metadata,
    parse_tile,
    sinusoidal_crs,
    tile_from_corner,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileProduct:
    """A sinusoidal-tile product: the layers that share one decoding rule, their units and the rule."""

    name: str
    variables: tuple[str, ...]
    units: str
    rule: CodeRule

    @property
    def default_variable(self) -> str:
        """The layer read when none is named."""
        return self.variables[0]


_LST = CodeRule(scale=0.02, offset=0.0, fill=(0,), valid_min=7500, valid_max=65535)
_ALBEDO = CodeRule(scale=0.001, offset=0.0, fill=(32767,), valid_min=0, valid_max=32766)
ET_SPECIAL_CODES: Final[Mapping[int, str]] = MappingProxyType(
    {
        32761: "land cover unclassified or not determined",
        32762: "urban / built-up",
        32763: "permanent wetland / inundated marshland",
        32764: "perennial snow / ice",
        32765: "barren or sparsely vegetated (rock, tundra, desert)",
        32766: "perennial salt or water body",
    }
)
_ET = CodeRule(
    scale=0.1,
    offset=0.0,
    fill=(32767,),
    valid_min=-32767,
    valid_max=32700,
    special=ET_SPECIAL_CODES,
)
_ALBEDO_LAYERS = (
    "Albedo_WSA_shortwave",
    "Albedo_BSA_shortwave",
    "Albedo_WSA_vis",
    "Albedo_BSA_vis",
    "Albedo_WSA_nir",
    "Albedo_BSA_nir",
)

PRODUCTS: Final[Mapping[str, TileProduct]] = MappingProxyType(
    {
        "MOD11A1": TileProduct("MOD11A1", ("LST_Day_1km", "LST_Night_1km"), "K", _LST),
        "MYD11A1": TileProduct("MYD11A1", ("LST_Day_1km", "LST_Night_1km"), "K", _LST),
        "MCD43A3": TileProduct("MCD43A3", _ALBEDO_LAYERS, "1", _ALBEDO),
        "VNP43IA3": TileProduct("VNP43IA3", _ALBEDO_LAYERS, "1", _ALBEDO),
        "MOD16A2": TileProduct("MOD16A2", ("ET_500m", "PET_500m"), "kg/m2/8day", _ET),
        "MYD16A2": TileProduct("MYD16A2", ("ET_500m", "PET_500m"), "kg/m2/8day", _ET),
        "VNP16A2": TileProduct("VNP16A2", ("ET_500m", "PET_500m"), "kg/m2/8day", _ET),
    }
)

_GRANULE = re.compile(
    r"(?P<short>[A-Z0-9]+)\.A(?P<year>\d{4})(?P<doy>\d{3})\.h(?P<h>\d{2})v(?P<v>\d{2})\.(?P<coll>\d{3})"
)


@dataclass(frozen=True)
class _Stored:
    values: npt.NDArray[Any]
    transform: Affine
    crs_wkt: str
    tile: Tile | None
    granule_id: str
    attrs: dict[str, Any]


def read_sinusoidal_tile(
    path: str | Path, *, product: str, variable: str | None = None
) -> xr.DataArray:
    """Read one layer of a sinusoidal tile into a float32 DataArray in physical units.

    ``product`` picks the rule (a key of :data:`PRODUCTS`); ``variable`` one of its layers (default
    the first, e.g. LST_Day_1km). The container (HDF4, HDF5, GeoTIFF) is recognised from the file's
    bytes. Attrs: units, crs (WKT), transform (GDAL), product, variable, tile, date, version,
    granule_id, source_file; ET products add a ``special_code`` coordinate (0 where none).
    """
    source = Path(path)
    spec = _product(product)
    layer = variable or spec.default_variable
    if layer not in spec.variables:
        raise ConfigError(f"{product}: layer {layer!r} is not one of {', '.join(spec.variables)}")
    kind = sniff_format(source)
    if kind == "hdf4":
        stored = _read_hdf4(source, spec=spec, layer=layer)
    elif kind == "hdf5":
        stored = _read_hdf5(source, spec=spec, layer=layer)
    elif kind == "geotiff":
        stored = _read_geotiff(source, spec=spec, layer=layer)
    else:
        raise CorruptFileError(f"{source}: is {kind}, expected HDF4, HDF5 or GeoTIFF for {product}")
    _check_rule_attrs(stored.attrs, spec=spec, layer=layer, path=source)
    decoded = decode(stored.values, spec.rule)
    ident = _GRANULE.search(stored.granule_id) or _GRANULE.search(source.name)
    if ident is not None and ident["short"] != spec.name:
        raise SchemaDriftError(f"{source}: granule is {ident['short']}, read as {spec.name}")
    date = (
        dt.date(int(ident["year"]), 1, 1) + dt.timedelta(days=int(ident["doy"]) - 1)
        if ident
        else None
    )
    companions = (
        {"special_code": decoded.special_code} if decoded.special_code is not None else None
    )
    out = raster_dataarray(
        decoded.values,
        transform=stored.transform,
        crs_wkt=stored.crs_wkt,
        name=layer,
        attrs={
            "units": spec.units,
            "product": spec.name,
            "variable": layer,
            "tile": stored.tile.name if stored.tile else "unknown",
            "date": date.isoformat() if date else "unknown",
            "version": ident["coll"] if ident else "unknown",
            "granule_id": stored.granule_id or source.name,
            "source_file": str(source),
        },
        companions=companions,
    )
    logger.info(
        "sinusoidal_tile_read",
        extra={
            "source_file": str(source),
            "product": spec.name,
            "variable": layer,
            "valid_pixels": int(np.isfinite(decoded.values).sum()),
        },
    )
    return out


def _product(name: str) -> TileProduct:
    try:
        return PRODUCTS[name]
    except KeyError:
        raise ConfigError(
            f"unknown sinusoidal product {name!r}; known: {', '.join(PRODUCTS)}"
        ) from None


def _read_hdf4(path: Path, *, spec: TileProduct, layer: str) -> _Stored:
    from pyhdf.error import HDF4Error
    from pyhdf.SD import SD, SDC

    try:
        sd = SD(str(path), SDC.READ)
    except HDF4Error as err:
        raise CorruptFileError(f"{path}: does not open as HDF4 ({err})") from err
    try:
        if layer not in sd.datasets():
            raise SchemaDriftError(f"{path}: variable {layer} is missing")
        sds = sd.select(layer)
        try:
            values = np.asarray(sds.get())
        except HDF4Error as err:
            raise CorruptFileError(f"{path}: variable {layer} cannot be read ({err})") from err
        attrs = dict(sds.attributes())
        globals_ = sd.attributes()
    finally:
        sd.end()
    struct = str(globals_.get("StructMetadata.0", ""))
    core = str(globals_.get("CoreMetadata.0", ""))
    archive = str(globals_.get("ArchiveMetadata.0", ""))
    granule_id = _odl_value(core, "LOCALGRANULEID") or ""
    short = _odl_value(core, "SHORTNAME")
    if short is not None and short != spec.name:
        raise SchemaDriftError(f"{path}: CoreMetadata SHORTNAME is {short}, read as {spec.name}")
    h, v = _odl_value(archive, "HORIZONTALTILENUMBER"), _odl_value(archive, "VERTICALTILENUMBER")
    tile = Tile(int(h), int(v)) if h and v else parse_tile(granule_id) or parse_tile(path.name)
    transform, tile = _geolocate(path, values.shape, struct=struct, layer=layer, tile=tile)
    return _Stored(values, transform, sinusoidal_crs().to_wkt(), tile, granule_id, attrs)


def _read_hdf5(path: Path, *, spec: TileProduct, layer: str) -> _Stored:
    with open_hdf5(path) as handle:
        grids = handle.get("HDFEOS/GRIDS")
        found = None
        if isinstance(grids, h5py.Group):
            for grid_name in grids:
                candidate = grids.get(f"{grid_name}/Data Fields/{layer}")
                if isinstance(candidate, h5py.Dataset):
                    found = candidate
                    break
        if found is None:
            raise SchemaDriftError(
                f"{path}: variable HDFEOS/GRIDS/*/Data Fields/{layer} is missing"
            )
        values = read_dataset(found, path=path)
        attrs = {k: _attr(v) for k, v in found.attrs.items()}
        struct_ds = handle.get("HDFEOS INFORMATION/StructMetadata.0")
        struct = to_text(struct_ds[()]) if isinstance(struct_ds, h5py.Dataset) else ""
        root = {k: _attr(v) for k, v in handle.attrs.items()}
    granule_id = str(root.get("LocalGranuleID", ""))
    short = root.get("ShortName")
    if short is not None and str(short) != spec.name:
        raise SchemaDriftError(f"{path}: ShortName is {short}, read as {spec.name}")
    h, v = root.get("HorizontalTileNumber"), root.get("VerticalTileNumber")
    tile = (
        Tile(int(h), int(v))
        if h is not None and v is not None
        else parse_tile(granule_id) or parse_tile(path.name)
    )
    transform, tile = _geolocate(path, values.shape, struct=struct, layer=layer, tile=tile)
    return _Stored(values, transform, sinusoidal_crs().to_wkt(), tile, granule_id, attrs)


def _read_geotiff(path: Path, *, spec: TileProduct, layer: str) -> _Stored:
    """Bands are found by description (the SDS name); an undescribed single band is the default layer."""
    with_names = band_descriptions(path)
    if layer in with_names:
        band = read_geotiff_band(path, band=layer)
    elif layer == spec.default_variable and not any(with_names):
        band = read_geotiff_band(path, band=1)
    else:
        raise SchemaDriftError(f"{path}: no band described as {layer} (bands: {with_names})")
    if band.values.dtype.kind not in "iu":
        raise SchemaDriftError(
            f"{path}: {spec.name} GeoTIFF holds {band.values.dtype}, expected the product's integer codes"
        )
    if band.scale not in (1.0, spec.rule.scale) or band.offset not in (0.0, spec.rule.offset):
        raise SchemaDriftError(
            f"{path}: GeoTIFF scale/offset {band.scale}/{band.offset} contradict {spec.name} "
            f"({spec.rule.scale}/{spec.rule.offset})"
        )
    if band.nodata is not None and int(band.nodata) not in spec.rule.fill:
        raise SchemaDriftError(
            f"{path}: GeoTIFF nodata {band.nodata}, {spec.name} fill is {spec.rule.fill}"
        )
    tile = parse_tile(path.name)
    t = band.transform
    if tile is not None and abs(t.a * band.values.shape[1] - TILE_SIZE_M) <= CORNER_TOLERANCE_M:
        ux, uy = tile.upper_left()
        if max(abs(t.c - ux), abs(t.f - uy)) > CORNER_TOLERANCE_M:
            raise SchemaDriftError(f"{path}: GeoTIFF corner ({t.c}, {t.f}) is not tile {tile.name}")
    return _Stored(band.values, band.transform, band.crs_wkt, tile, path.name, band.band_tags)


def _geolocate(
    path: Path, shape: tuple[int, ...], *, struct: str, layer: str, tile: Tile | None
) -> tuple[Affine, Tile]:
    grids = parse_struct_metadata(struct, path=path) if struct else ()
    grid: GridCorners | None = next(
        (g for g in grids if layer in g.fields), grids[0] if grids else None
    )
    if grid is None:
        if tile is None:
            raise SchemaDriftError(f"{path}: no StructMetadata.0 grid and no hXXvYY tile number")
        return tile.transform(shape[-1]), tile
    if (grid.ydim, grid.xdim) != tuple(shape[-2:]):
        raise SchemaDriftError(
            f"{path}: {layer} has shape {shape}, grid {grid.name} says {grid.ydim} x {grid.xdim}"
        )
    if tile is None:
        tile = tile_from_corner(*grid.upper_left, path=path)
    return check_corners(tile, grid, path=path), tile


def _check_rule_attrs(
    attrs: Mapping[str, Any], *, spec: TileProduct, layer: str, path: Path
) -> None:
    scale = _number(attrs.get("scale_factor"))
    if scale is not None and not np.isclose(scale, spec.rule.scale, rtol=1e-6):
        raise SchemaDriftError(
            f"{path}: {layer} scale_factor {scale}, {spec.name} rule is {spec.rule.scale}"
        )
    offset = _number(attrs.get("add_offset"))
    if offset is not None and not np.isclose(offset, spec.rule.offset, atol=1e-9):
        raise SchemaDriftError(
            f"{path}: {layer} add_offset {offset}, {spec.name} rule is {spec.rule.offset}"
        )
    fill = _number(attrs.get("_FillValue"))
    if fill is not None and int(fill) not in spec.rule.fill:
        raise SchemaDriftError(
            f"{path}: {layer} _FillValue {fill}, {spec.name} rule is {spec.rule.fill}"
        )


def _odl_value(text: str, key: str) -> str | None:
    match = re.search(rf"OBJECT\s*=\s*{key}\b.*?VALUE\s*=\s*\"?([^\"\n]*?)\"?\s*\n", text, re.S)
    return match[1].strip() if match else None


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):  # GeoTIFF band tags are text
        try:
            return float(value)
        except ValueError:
            return None
    arr = np.asarray(value)
    if arr.size != 1 or arr.dtype.kind not in "iuf":
        return None
    return float(arr.ravel()[0])


def _attr(value: Any) -> Any:
    if isinstance(value, bytes | np.bytes_) or (
        isinstance(value, np.ndarray) and value.dtype.kind == "S"
    ):
        return to_text(value)
    if isinstance(value, np.ndarray) and value.size == 1:
        return value.ravel()[0]
    return value
