"""Names, types and attributes of the SMAP L3 variables the synthetic world writes, as in the real granule.

Transcribed from the complete metadata (OPeNDAP DMR) of the real SPL3SMP granule
SMAP_L3_SM_P_20150331_R18290_002.h5 (product version 8), kept in the repository as
``reference-data/smap/SC_SPL3SMP_008.dmr``; the tests parse that DMR and check every file written
against it. Only the variables below are written; each keeps the DMR's name, group, dtype, fill
value and attributes verbatim (note the AM and PM groups differ in small ways, e.g. the PM latitude
carries valid_min/max and _FillValue while the AM one does not, and a few long names differ).
String attributes are fixed-length ASCII as in the real HDF5 files (h5py reads them as bytes).

The 9 km product (SPL3SMP_E) uses the same groups, names and attributes on 1624 x 3856 cells; there
only the EASE row/column index long names say "9 km" and their valid_max is 1623 / 3855.

Hard links: since product version 8, ``soil_moisture`` and ``soil_moisture_dca`` are one dataset
(the DMR's HDF5_HARDLINK attribute), as are ``retrieval_qual_flag`` and ``retrieval_qual_flag_dca``;
:data:`HARD_LINKS` lists them per group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

GROUP_AM: Final = "Soil_Moisture_Retrieval_Data_AM"
GROUP_PM: Final = "Soil_Moisture_Retrieval_Data_PM"
FLOAT_FILL: Final = -9999.0
FLAG_FILL: Final = 65534
TIME_STRING_FILL: Final = b"N/A"
TIME_STRING_LENGTH: Final = 24  # "2024-04-01T22:03:15.123Z"


@dataclass(frozen=True)
class VariableSpec:
    """One variable of a SMAP L3 group: name, numpy dtype code and DMR attributes (name, type, text)."""

    name: str
    dtype: str
    attrs: tuple[tuple[str, str, str], ...]

    @property
    def base(self) -> str:
        """The name without the PM group's ``_pm`` suffix."""
        return self.name.removesuffix("_pm")

    def attribute_values(self) -> dict[str, np.generic]:
        """Attributes as the numpy scalars h5py writes (fixed-length ASCII for strings)."""
        return {name: attribute_value(kind, text) for name, kind, text in self.attrs}

    def fill_value(self) -> np.generic | None:
        """The _FillValue attribute, if the DMR gives one."""
        return self.attribute_values().get("_FillValue")


_NUMPY_TYPES: Final[dict[str, type[np.generic]]] = {
    "Float32": np.float32,
    "Float64": np.float64,
    "UInt16": np.uint16,
    "Int32": np.int32,
    "Int64": np.int64,
    "UInt32": np.uint32,
}


def attribute_value(kind: str, text: str) -> np.generic:
    """A DMR attribute (type name and value text) as a numpy scalar."""
    if kind == "String":
        return np.bytes_(text.encode("ascii"))
    return _NUMPY_TYPES[kind](text)


def specs(group: str) -> tuple[VariableSpec, ...]:
    """The variables written in ``group`` (AM or PM)."""
    return _SPECS[group]


HARD_LINKS: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    GROUP_AM: (
        ("soil_moisture_dca", "soil_moisture"),
        ("retrieval_qual_flag_dca", "retrieval_qual_flag"),
    ),
    GROUP_PM: (
        ("soil_moisture_dca_pm", "soil_moisture_pm"),
        ("retrieval_qual_flag_dca_pm", "retrieval_qual_flag_pm"),
    ),
}
"""(link name, existing dataset) pairs: the link is a second name of the same HDF5 object."""

_SPECS: Final[dict[str, tuple[VariableSpec, ...]]] = {
    "Soil_Moisture_Retrieval_Data_AM": (
        VariableSpec(
            name="latitude",
            dtype="f4",
            attrs=(
                ("long_name", "String", "Latitude of the center of the Earth based grid cell."),
                ("units", "String", "degrees_north"),
            ),
        ),
        VariableSpec(
            name="longitude",
            dtype="f4",
            attrs=(
                ("long_name", "String", "Longitude of the center of the Earth based grid cell."),
                ("units", "String", "degrees_east"),
            ),
        ),
        VariableSpec(
            name="soil_moisture",
            dtype="f4",
            attrs=(
                (
                    "long_name",
                    "String",
                    "Representative DCA soil moisture measurement for the Earth based grid cell.",
                ),
                ("units", "String", "cm**3/cm**3"),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
                ("valid_min", "Float32", "0.01999999955"),
                ("valid_max", "Float32", "0.5"),
                ("_FillValue", "Float32", "-9999."),
            ),
        ),
        VariableSpec(
            name="soil_moisture_error",
            dtype="f4",
            attrs=(
                (
                    "long_name",
                    "String",
                    "Net uncertainty measure of soil moisture measure for the Earth based "
                    "grid cell. - Calculation method is TBD.",
                ),
                ("units", "String", "cm**3/cm**3"),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
                ("valid_min", "Float32", "0."),
                ("valid_max", "Float32", "0.200000003"),
                ("_FillValue", "Float32", "-9999."),
            ),
        ),
        VariableSpec(
            name="retrieval_qual_flag",
            dtype="u2",
            attrs=(
                ("_FillValue", "UInt16", "65534"),
                ("flag_masks", "String", "1s, 2s, 4s, 8s"),
                (
                    "long_name",
                    "String",
                    "Bit flags that record the conditions and the quality of the DCA "
                    "retrieval algorithms that generate soil moisture for the grid cell.",
                ),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
                (
                    "flag_meanings",
                    "String",
                    "Retrieval_recommended Retrieval_attempted Retrieval_success "
                    "FT_retrieval_success",
                ),
            ),
        ),
        VariableSpec(
            name="surface_flag",
            dtype="u2",
            attrs=(
                (
                    "long_name",
                    "String",
                    "Bit flags that record ambient surface conditions for the grid cell",
                ),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
                ("_FillValue", "UInt16", "65534"),
                (
                    "flag_masks",
                    "String",
                    "1s, 2s, 4s, 8s, 16s, 32s, 64s, 128s, 256s, 512s, 1024s, 2048s",
                ),
                (
                    "flag_meanings",
                    "String",
                    "36_km_static_water_body 36_km_radar_water_body_detection "
                    "36_km_coastal_proximity 36_km_urban_area 36_km_precipitation "
                    "36_km_snow_or_ice 36_km_permanent_snow_or_ice "
                    "36_km_radiometer_frozen_ground 36_km_model_frozen_ground "
                    "36_km_mountainous_terrain 36_km_dense_vegetation 36_km_nadir_region",
                ),
            ),
        ),
        VariableSpec(
            name="tb_time_seconds",
            dtype="f8",
            attrs=(
                (
                    "long_name",
                    "String",
                    "Arithmetic average of the acquisition time of all of the brightness "
                    "temperature footprints with a center that falls within the EASE grid "
                    "cell in seconds since noon on January 1, 2000 UTC.",
                ),
                ("units", "String", "seconds"),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
                ("valid_min", "Float64", "-999999.90000000002"),
                ("valid_max", "Float64", "940000000."),
                ("_FillValue", "Float64", "-9999."),
            ),
        ),
        VariableSpec(
            name="tb_time_utc",
            dtype="S24",
            attrs=(
                (
                    "long_name",
                    "String",
                    "Arithmetic average of the acquisition time of all of the brightness "
                    "temperature footprints with a center that falls within the EASE grid "
                    "cell in UTC.",
                ),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
            ),
        ),
        VariableSpec(
            name="EASE_row_index",
            dtype="u2",
            attrs=(
                (
                    "long_name",
                    "String",
                    "The row index of the 36 km EASE grid cell that contains the associated data.",
                ),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
                ("valid_min", "UInt16", "0"),
                ("valid_max", "UInt16", "405"),
                ("_FillValue", "UInt16", "65534"),
            ),
        ),
        VariableSpec(
            name="EASE_column_index",
            dtype="u2",
            attrs=(
                (
                    "long_name",
                    "String",
                    "The column index of the 36 km EASE grid cell that contains the "
                    "associated data.",
                ),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
                ("valid_min", "UInt16", "0"),
                ("valid_max", "UInt16", "963"),
                ("_FillValue", "UInt16", "65534"),
            ),
        ),
        VariableSpec(
            name="static_water_body_fraction",
            dtype="f4",
            attrs=(
                ("valid_min", "Float32", "0."),
                (
                    "long_name",
                    "String",
                    "The fraction of the area of the 36 km grid cell that is covered by "
                    "static water based on a Digital Elevation Map.",
                ),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
                ("valid_max", "Float32", "1."),
                ("_FillValue", "Float32", "-9999."),
            ),
        ),
        VariableSpec(
            name="clay_fraction",
            dtype="f4",
            attrs=(
                (
                    "long_name",
                    "String",
                    "A unitless value that is indicative of aggregated clay fraction within "
                    "the 36 km grid cell.",
                ),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
                ("valid_min", "Float32", "0."),
                ("valid_max", "Float32", "1."),
                ("_FillValue", "Float32", "-9999."),
            ),
        ),
        VariableSpec(
            name="bulk_density",
            dtype="f4",
            attrs=(
                (
                    "long_name",
                    "String",
                    "A unitless value that is indicative of aggregated bulk_density within "
                    "the 36 km grid cell.",
                ),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
                ("valid_min", "Float32", "0."),
                ("valid_max", "Float32", "2.650000095"),
                ("_FillValue", "Float32", "-9999."),
            ),
        ),
    ),
    "Soil_Moisture_Retrieval_Data_PM": (
        VariableSpec(
            name="latitude_pm",
            dtype="f4",
            attrs=(
                ("long_name", "String", "Latitude of the center of the Earth based grid cell."),
                ("units", "String", "degrees_north"),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
                ("valid_min", "Float32", "-90."),
                ("valid_max", "Float32", "90."),
                ("_FillValue", "Float32", "-9999."),
            ),
        ),
        VariableSpec(
            name="longitude_pm",
            dtype="f4",
            attrs=(
                ("long_name", "String", "Longitude of the center of the Earth based grid cell."),
                ("units", "String", "degrees_east"),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
                ("valid_min", "Float32", "-180."),
                ("valid_max", "Float32", "179.9989929"),
                ("_FillValue", "Float32", "-9999."),
            ),
        ),
        VariableSpec(
            name="soil_moisture_pm",
            dtype="f4",
            attrs=(
                (
                    "long_name",
                    "String",
                    "Representative DCA soil moisture measurement for the Earth based grid cell.",
                ),
                ("units", "String", "cm**3/cm**3"),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
                ("valid_min", "Float32", "0.01999999955"),
                ("valid_max", "Float32", "0.5"),
                ("_FillValue", "Float32", "-9999."),
            ),
        ),
        VariableSpec(
            name="soil_moisture_error_pm",
            dtype="f4",
            attrs=(
                (
                    "long_name",
                    "String",
                    "Net uncertainty measure of soil moisture measure for the Earth based "
                    "grid cell. - Calculation method is TBD.",
                ),
                ("units", "String", "cm**3/cm**3"),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
                ("valid_min", "Float32", "0."),
                ("valid_max", "Float32", "0.200000003"),
                ("_FillValue", "Float32", "-9999."),
            ),
        ),
        VariableSpec(
            name="retrieval_qual_flag_pm",
            dtype="u2",
            attrs=(
                ("_FillValue", "UInt16", "65534"),
                ("flag_masks", "String", "1s, 2s, 4s, 8s"),
                (
                    "long_name",
                    "String",
                    "Bit flags that record the conditions and the quality of the DCA "
                    "retrieval algorithms that generate soil moisture for the grid cell.",
                ),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
                (
                    "flag_meanings",
                    "String",
                    "Retrieval_recommended Retrieval_attempted Retrieval_success "
                    "FT_retrieval_success",
                ),
            ),
        ),
        VariableSpec(
            name="surface_flag_pm",
            dtype="u2",
            attrs=(
                (
                    "long_name",
                    "String",
                    "Bit flags that record ambient surface conditions for the grid cell",
                ),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
                ("_FillValue", "UInt16", "65534"),
                (
                    "flag_masks",
                    "String",
                    "1s, 2s, 4s, 8s, 16s, 32s, 64s, 128s, 256s, 512s, 1024s, 2048s",
                ),
                (
                    "flag_meanings",
                    "String",
                    "36_km_static_water_body 36_km_radar_water_body_detection "
                    "36_km_coastal_proximity 36_km_urban_area 36_km_precipitation "
                    "36_km_snow_or_ice 36_km_permanent_snow_or_ice 36_km_radar_frozen_ground "
                    "36_km_model_frozen_ground 36_km_mountainous_terrain "
                    "36_km_dense_vegetation 36_km_nadir_region",
                ),
            ),
        ),
        VariableSpec(
            name="tb_time_seconds_pm",
            dtype="f8",
            attrs=(
                (
                    "long_name",
                    "String",
                    "Arithmetic average of the acquisition time of all of the brightness "
                    "temperature footprints with a center that falls within the EASE grid "
                    "cell in seconds since noon on January 1, 2000 UTC.",
                ),
                ("units", "String", "seconds"),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
                ("valid_min", "Float64", "-999999.90000000002"),
                ("valid_max", "Float64", "940000000."),
                ("_FillValue", "Float64", "-9999."),
            ),
        ),
        VariableSpec(
            name="tb_time_utc_pm",
            dtype="S24",
            attrs=(
                (
                    "long_name",
                    "String",
                    "Arithmetic average of the acquisition time of all of the brightness "
                    "temperature footprints with a center that falls within the EASE grid "
                    "cell in UTC.",
                ),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
            ),
        ),
        VariableSpec(
            name="EASE_row_index_pm",
            dtype="u2",
            attrs=(
                (
                    "long_name",
                    "String",
                    "The row index of the 36 km EASE grid cell that contains the associated data.",
                ),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
                ("valid_min", "UInt16", "0"),
                ("valid_max", "UInt16", "405"),
                ("_FillValue", "UInt16", "65534"),
            ),
        ),
        VariableSpec(
            name="EASE_column_index_pm",
            dtype="u2",
            attrs=(
                (
                    "long_name",
                    "String",
                    "The column index of the 36 km EASE grid cell that contains the "
                    "associated data.",
                ),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
                ("valid_min", "UInt16", "0"),
                ("valid_max", "UInt16", "963"),
                ("_FillValue", "UInt16", "65534"),
            ),
        ),
        VariableSpec(
            name="static_water_body_fraction_pm",
            dtype="f4",
            attrs=(
                (
                    "long_name",
                    "String",
                    "The fraction of the area of the 36 km grid cell that is covered by "
                    "static water based on a Digital Elevation Map.",
                ),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
                ("valid_min", "Float32", "0."),
                ("valid_max", "Float32", "1."),
                ("_FillValue", "Float32", "-9999."),
            ),
        ),
        VariableSpec(
            name="clay_fraction_pm",
            dtype="f4",
            attrs=(
                (
                    "long_name",
                    "String",
                    "A unitless value that is indicative of aggregated clay fraction within "
                    "the 36 km grid cell.",
                ),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
                ("valid_min", "Float32", "0."),
                ("valid_max", "Float32", "1."),
                ("_FillValue", "Float32", "-9999."),
            ),
        ),
        VariableSpec(
            name="bulk_density_pm",
            dtype="f4",
            attrs=(
                (
                    "long_name",
                    "String",
                    "A unitless value that is indicative of aggregated bulk density within "
                    "the 36 km grid cell.",
                ),
                (
                    "coordinates",
                    "String",
                    "/Soil_Moisture_Retrieval_Data_AM/latitude "
                    "/Soil_Moisture_Retrieval_Data_AM/longitude",
                ),
                ("valid_min", "Float32", "0."),
                ("valid_max", "Float32", "2.650000095"),
                ("_FillValue", "Float32", "-9999."),
            ),
        ),
    ),
}
