"""The synthetic world: a deterministic simulation of soil moisture and its drivers, written in the
real providers' formats, so the pipeline runs without an Earthdata account and its 1 km skill can be
measured exactly against a known truth (an OSSE).

``generate(out_dir, domain=..., start=..., days=..., seed=..., config=SyntheticConfig())`` writes::

    smap/SPL3SMP/YYYY.MM.DD/SMAP_L3_SM_P_YYYYMMDD_R19240_001.h5      36 km L3, real HDF5 layout
    smap/SPL3SMP_E/YYYY.MM.DD/SMAP_L3_SM_P_E_YYYYMMDD_R19240_001.h5  9 km L3
    mcca/YYYY/MCCA_SMAP_SM_36km_YYYYMMDD.nc                          MCCA-style NetCDF (etl.synthetic.mcca)
    modis/MCD43A3/YYYY.MM.DD/MCD43A3.AYYYYDDD.hXXvYY.061.<t>.tif     daily albedo, sinusoidal tiles
    modis/MOD16A2/YYYY.MM.DD/MOD16A2.AYYYYDDD.hXXvYY.061.<t>.tif     8-day ET/PET composites
    imerg/GPM_3IMERGDE.07/YYYY/MM/3B-DAY-E.MS.MRG.3IMERG.YYYYMMDD-S000000-E235959.V07B.nc4
    soilgrids/{clay,sand,silt,bdod,soc}/<prop>_0-5cm_mean.tif          SoilGrids units, EPSG:4326
    dem/synthetic_dem_0.0025deg.tif                                  float32 m, EPSG:4326
    ismn/Data_seperate_files_header_<start>_<end>/NET/STATION/*.stm  ISMN header+values download
    ismn/Data_seperate_files_header_<start>_<end>.zip                the same as the portal's zip
    truth/truth_1km_<domain>_<start>_<end>.nc                        daily 1 km soil moisture, P, PET
    truth/static_1km_<domain>.nc, truth/stations.csv                 statics, station biases
    manifest.json                                                    role, bytes, sha256 of every file

SMAP, MCCA, MCD43A3 and the truth cover [start, start + days - 1] (SMAP and MCCA miss the outage
days); IMERG also covers the spin-up days before start, and MOD16A2 every complete composite ending
no more than 8 days before start. ``truth/`` is never an input of the product pipeline.

Modules: config (the knobs), statics and pedotransfer (1 km land surface), forcing (rain, PET,
albedo), bucket (the water balance), overpass and retrieval (swaths, noise, flags), smap_spec /
smap_l3 / mcca / imerg / modis / static_rasters / ismn (the writers, with the shared helpers
geotiff and netcdf), truth, manifest, world (the daily loop).
"""

from etl.synthetic.config import GENERATOR_VERSION, SyntheticConfig
from etl.synthetic.world import generate

__all__ = ["GENERATOR_VERSION", "SyntheticConfig", "generate"]
