"""Readers: turn each input format into an xarray object with CRS, units, fill and quality made explicit.

No reader relies on CF decoding. HDF5 and NetCDF-4 are read with h5py, NetCDF-3 with netCDF4 with
auto mask/scale off, HDF4 with pyhdf, GeoTIFF with rasterio; each product's fill values, scale
factors, special codes, valid ranges, axis orders and time epochs are applied by hand in its module,
whose docstring names the product, version and the traps it handles. Files that do not open raise
:class:`~etl.readers.errors.CorruptFileError`; files whose layout has drifted raise
:class:`~etl.readers.errors.SchemaDriftError`; both are ``InputError`` (status QUARANTINED) and name
the file and what is wrong.

Output conventions (the rest of the pipeline relies on them)
------------------------------------------------------------

Coarse soil moisture (:func:`read_smap_l3`, :func:`read_mcca`) -> ``xarray.Dataset``

* On the global EASE-Grid 2.0 grid of the file (36 km: 406 x 964, 9 km: 1624 x 3856), or the window of
  a :class:`etl.grid.Domain` when one is given. Dims ``pass`` ("AM", "PM"), ``y``, ``x``; coordinates
  ``x``/``y`` = projected cell centres in metres (EPSG:6933, from etl.grid constants, never from the
  file's lat/lon), ``row``/``col`` = integer global grid indices (row 0 = north).
* Variables: ``soil_moisture`` float32 m3/m3, NaN unless valid (:func:`validity_mask`: not fill,
  0.02-0.5, retrieval_qual_flag bit 0 clear); ``soil_moisture_raw`` float32, NaN only at fill;
  ``retrieval_qual_flag`` uint16 as stored (SMAP; MCCA: ``quality_flag`` if configured);
  ``recommended`` bool (flag not fill and bit 0 clear); ``overpass_time`` datetime64[ns] UTC, NaT at
  fill (SMAP tb_time_seconds from 2000-01-01T11:58:55.816Z).
* Attrs: ``crs`` (EPSG:6933 WKT), ``crs_epsg`` ("EPSG:6933"), ``transform`` (GDAL 6-tuple of the
  array), ``res_km``, ``product`` (SPL3SMP / SPL3SMP_E / MCCA_SMAP), ``version`` ("R18290/008": CRID /
  product version; also ``crid`` and ``product_version``), ``date`` (ISO), ``source_file``, ``units``.
* :func:`cut_domain` cuts a Domain window out of it (``ds.isel(y=rs, x=cs)`` with
  ``domain.slices(res_km)`` also works on a global Dataset).

Covariates -> ``xarray.DataArray``

* float32 in physical units, NaN at fill and special codes; dims (``time``,) ``y``, ``x``, north-up
  (row 0 = north), ``x``/``y`` = cell centres in the CRS's units.
* Attrs: ``units``, ``crs`` (WKT), ``transform`` (GDAL 6-tuple), ``product``, ``source_file`` (and
  ``date``, ``tile``, ``version`` where the file says).
* Companion coordinates when cheap: ``special_code`` (MOD16A2/VNP16A2: 32761-32766, 0 elsewhere),
  ``land_sea_mask`` (ERA5 with ``lsm``).

:func:`open_granule` dispatches by product name (see :data:`etl.readers.registry.READERS`).
"""

from __future__ import annotations

from etl.readers.chirps import read_chirps
from etl.readers.coarse import cut_domain
from etl.readers.dem import read_dem
from etl.readers.era5 import read_era5
from etl.readers.errors import CorruptFileError, SchemaDriftError
from etl.readers.imerg import read_imerg
from etl.readers.mcca import MccaLayout, read_mcca
from etl.readers.modis import read_sinusoidal_tile
from etl.readers.registry import open_granule
from etl.readers.smap import read_smap_l3
from etl.readers.soilgrids import read_soilgrids
from etl.readers.validity import recommended_mask, validity_mask

__all__ = [
    "CorruptFileError",
    "MccaLayout",
    "SchemaDriftError",
    "cut_domain",
    "open_granule",
    "read_chirps",
    "read_dem",
    "read_era5",
    "read_imerg",
    "read_mcca",
    "read_sinusoidal_tile",
    "read_smap_l3",
    "read_soilgrids",
    "recommended_mask",
    "validity_mask",
]
