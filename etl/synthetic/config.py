"""The knobs of the synthetic world: one frozen dataclass whose defaults are documented physics.

Tests assert against these numbers (noise, bias, coverage, outage), so every default is named and
explained here rather than buried in the code that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from etl.errors import ConfigError

GENERATOR_VERSION = "1.0.0"
"""Version of the generator; recorded in manifest.json. Bump when the same seed gives other bytes."""


@dataclass(frozen=True, kw_only=True)
class SyntheticConfig:
    """Physics and observation parameters of the synthetic world (units in the field names).

    Soil moisture is volumetric (m3/m3) throughout. Offsets in days count from the ``start`` date
    given to :func:`etl.synthetic.generate` (0 = the first written day).
    """

    # --- land-surface model -------------------------------------------------------------------
    spinup_days: int = 14
    """Days simulated before ``start`` so the first written day has a balanced state. IMERG files
    and MOD16A2 composites are also written for spin-up days (antecedent predictors need them);
    at least 11 days make the last MOD16A2 composite before ``start`` complete."""
    layer_depth_mm: float = 50.0
    """Depth of the surface layer (the truth); with PET it sets the dry-down time scale."""
    root_zone_depth_mm: float = 300.0
    """Depth of the root-zone layer below it, which feeds transpiration and rewets the surface."""
    coupling_per_day: float = 0.25
    """Diffusive exchange rate between the two layers (fraction of the difference per day)."""
    sm_min: float = 0.02
    """Lower physical bound of the truth (m3/m3)."""
    sm_max: float = 0.55
    """Upper physical bound of the truth (m3/m3); porosity is also a cap."""

    # --- precipitation ------------------------------------------------------------------------
    wet_day_probability: float = 0.35
    """Stationary probability that a day has a rain-bearing regime over the domain (Markov chain)."""
    wet_persistence: float = 0.55
    """P(wet tomorrow | wet today); P(wet | dry) follows from the stationary probability."""
    storms_per_10k_km2: float = 2.0
    """Mean number of convective cells per 10 000 km2 on a wet day (Poisson)."""
    storm_peak_mm_h_scale: float = 6.0
    """Scale of the heavy-tailed (Pareto, shape 2.5) peak intensity of a convective cell (mm/h)."""
    orographic_gain_per_km: float = 0.6
    """Relative precipitation increase per km of elevation above the domain mean."""
    imerg_error_sd: float = 0.25
    """Multiplicative log-normal error of the 0.1 degree IMERG field relative to the 1 km truth."""

    # --- SMAP-like observations ---------------------------------------------------------------
    noise_sd_36km: float = 0.035
    """Random retrieval error of SPL3SMP (m3/m3), independent per cell and pass."""
    noise_sd_9km: float = 0.04
    """Random retrieval error of SPL3SMP_E (m3/m3)."""
    bias: float = -0.012
    """Additive retrieval bias of SMAP (m3/m3); SMAP tends to be slightly dry."""
    mcca_noise_sd: float = 0.03
    """Random error of the MCCA retrieval, independent of SMAP's (a third estimate for triple
    collocation)."""
    mcca_bias: float = 0.008
    """Additive bias of the MCCA retrieval (m3/m3)."""
    swath_coverage: float = 0.5
    """Fraction of the distance between neighbouring ground tracks covered by one pass's swath: a
    cell is seen by a given pass on about this fraction of the days."""
    not_recommended_fraction: float = 0.06
    """Fraction of observed land cells flagged 'retrieval not recommended' at random (besides the
    cells flagged for water, urban, mountains or dense vegetation)."""
    outage_start_day: int = 60
    """First day (offset from start) of a spacecraft outage: no SMAP/MCCA files for those days."""
    outage_days: int = 4
    """Length of the outage in days (0 = none)."""

    # --- covariates ---------------------------------------------------------------------------
    albedo_gap_fraction: float = 0.04
    """Fraction of MCD43A3 pixels filled per day (failed BRDF inversions), in patches."""
    static_raster_res_deg: float = 0.0025
    """Pixel size of the SoilGrids-like and DEM GeoTIFFs (EPSG:4326), about 250 m."""

    # --- stations -----------------------------------------------------------------------------
    clusters: int = 2
    """Number of dense station clusters (like a network around a validation site)."""
    stations_per_cluster: int = 12
    """Stations in each cluster, within about ``cluster_radius_km`` of its centre."""
    cluster_radius_km: float = 25.0
    sparse_stations: int = 12
    """Stations scattered over the domain (like a national network)."""
    station_noise_sd: float = 0.02
    """Representativeness error of a station reading vs its 1 km cell (m3/m3), AR(1) over days."""
    station_bias_sd: float = 0.02
    """Standard deviation of the per-station sensor bias (m3/m3)."""
    station_white_noise_sd: float = 0.004
    """Hourly instrument noise (m3/m3)."""
    station_gap_fraction: float = 0.05
    """Fraction of hours missing (blocks of hours to days)."""
    spikes_per_station: int = 3
    """Spikes (flagged D06) per station and 120 days."""

    def __post_init__(self) -> None:
        checks = {
            "spinup_days": self.spinup_days >= 0,
            "layer depths": min(self.layer_depth_mm, self.root_zone_depth_mm) > 0,
            "coupling_per_day": 0 <= self.coupling_per_day <= 1,
            "sm_min/sm_max": 0 < self.sm_min < self.sm_max <= 1,
            "wet_day_probability": 0 < self.wet_day_probability < 1,
            "wet_persistence": self.wet_day_probability <= self.wet_persistence < 1,
            "swath_coverage": 0 < self.swath_coverage <= 1,
            "not_recommended_fraction": 0 <= self.not_recommended_fraction < 1,
            "noise": min(self.noise_sd_36km, self.noise_sd_9km, self.mcca_noise_sd) >= 0,
            "outage": self.outage_days >= 0 and self.outage_start_day >= 0,
            "albedo_gap_fraction": 0 <= self.albedo_gap_fraction < 1,
            "static_raster_res_deg": 0 < self.static_raster_res_deg <= 0.1,
            "stations": min(self.clusters, self.stations_per_cluster, self.sparse_stations) >= 0,
            "station_gap_fraction": 0 <= self.station_gap_fraction < 0.5,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"SyntheticConfig: invalid value for {', '.join(bad)}")

    def in_outage(self, day_offset: int) -> bool:
        """Whether the day ``day_offset`` (from start) falls in the SMAP outage."""
        return self.outage_start_day <= day_offset < self.outage_start_day + self.outage_days
