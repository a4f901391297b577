"""Generate a synthetic world: simulate day by day and write every provider's files as it goes.

Streaming: only the current state, the statics and the running sums of the current MOD16A2
composite are held in memory, so a China day needs a few GB, not a few hundred.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from etl.errors import ConfigError
from etl.grid import Domain, block_mean
from etl.synthetic import bucket, forcing, imerg, ismn, mcca, modis, smap_l3, static_rasters, truth
from etl.synthetic.config import SyntheticConfig
from etl.synthetic.manifest import write_manifest
from etl.synthetic.overpass import pass_geometry
from etl.synthetic.randomness import F32, stream
from etl.synthetic.retrieval import CoarseStatics, Retrieval, coarse_statics, retrieve
from etl.synthetic.statics import StaticFields, build_statics

log = logging.getLogger(__name__)

PASSES = ("AM", "PM")
ALBEDO_MEMORY = 0.6  # weight of yesterday's wetness in the albedo (MCD43's multi-day window)
BSA_OVER_WSA = 0.95


@dataclass
class _Composite:
    """Running sums of the current 8-day MOD16A2 composite."""

    start: dt.date
    et: F32
    pet: F32


def _check_arguments(out_dir: Path, *, days: int, seed: int) -> None:
    if days < 1:
        raise ConfigError(f"synthetic world: days must be >= 1, got {days}")
    if seed < 0:
        raise ConfigError(f"synthetic world: seed must be >= 0, got {seed}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"synthetic world: output folder {out_dir} is not empty")


class _World:
    """The state and writers of one generation run."""

    def __init__(
        self,
        out_dir: Path,
        *,
        domain: Domain,
        start: dt.date,
        days: int,
        seed: int,
        config: SyntheticConfig,
    ) -> None:
        self.out = out_dir
        self.domain = domain
        self.start = start
        self.end = start + dt.timedelta(days=days - 1)
        self.seed = seed
        self.config = config
        self.sim_start = start - dt.timedelta(days=config.spinup_days)
        self.n_sim = config.spinup_days + days
        self.statics: StaticFields = build_statics(domain, seed=seed)
        self.climatology = forcing.Climatology.for_domain(domain)
        self.coarse: dict[int, CoarseStatics] = {
            res: coarse_statics(self.statics, domain, res_km=res) for res in (36, 9)
        }
        self.imerg_window = imerg.ImergWindow.for_domain(domain)
        self.tiles = [modis.tile_mapping(domain, h, v) for h, v in modis.tiles_for_domain(domain)]
        self.tiles = [t for t in self.tiles if (t.cells >= 0).any()]
        self.stations = ismn.place_stations(self.statics, domain, seed=seed, config=config)
        self.truth = truth.TruthWriter(
            truth.truth_path(out_dir, domain=domain, start=start, end=self.end),
            domain=domain,
            start=start,
            days=days,
        )

    def write_statics(self) -> None:
        res = self.config.static_raster_res_deg
        truth.write_static(
            truth.static_path(self.out, domain=self.domain),
            domain=self.domain,
            statics=self.statics,
        )
        static_rasters.write_soilgrids(self.out, self.statics, self.domain, res=res)
        static_rasters.write_dem(self.out, self.statics, self.domain, res=res)

    def run(self) -> None:
        cfg = self.config
        wet = forcing.wet_regimes(seed=self.seed, n_days=self.n_sim, config=cfg)
        state = bucket.initial_state(self.statics)
        params = bucket.BucketParameters.build(self.statics, cfg)
        st_rows = np.array([s.row for s in self.stations], dtype=np.int64)
        st_cols = np.array([s.col for s in self.stations], dtype=np.int64)
        station_truth = np.zeros((self.n_sim, len(self.stations)), dtype=np.float32)
        composite: _Composite | None = None
        wetness: F32 | None = None
        r = self.statics.residual_moisture
        por = self.statics.hydraulics.porosity
        for i in range(self.n_sim):
            t0 = time.perf_counter()
            day = self.sim_start + dt.timedelta(days=i)
            precip = forcing.precipitation(
                self.statics, seed=self.seed, day_index=i, day=day, wet=bool(wet[i]), config=cfg
            )
            pet = forcing.potential_et(self.statics, self.climatology, day=day, precip=precip)
            result = bucket.step(state, precip=precip, pet=pet, params=params)
            state = result.state
            sm = state.surface
            station_truth[i] = sm[st_rows, st_cols]
            composite = self._composite(composite, day, result.evapotranspiration, pet)
            imerg.write_imerg(
                imerg.imerg_path(self.out, day=day),
                window=self.imerg_window,
                precip_1km=precip,
                day=day,
                seed=self.seed,
                day_index=i,
                error_sd=cfg.imerg_error_sd,
            )
            today = ((sm - r) / (por - r)).astype(np.float32)
            wetness = (
                today
                if wetness is None
                else (np.float32(ALBEDO_MEMORY) * wetness + np.float32(1 - ALBEDO_MEMORY) * today)
            )
            if day >= self.start:
                self.truth.write_day(day, soil_moisture=sm, precipitation=precip, pet=pet)
                self._write_albedo(day, i, wetness)
                if not cfg.in_outage((day - self.start).days):
                    self._write_smap(day, sm, precip)
            log.debug(
                "synthetic day",
                extra={"date": day.isoformat(), "seconds": round(time.perf_counter() - t0, 2)},
            )
        self.truth.close()
        self._write_stations(station_truth)

    def _composite(
        self, composite: _Composite | None, day: dt.date, et: F32, pet: F32
    ) -> _Composite | None:
        """Add a day to the MOD16A2 composite; write and drop it on its last day."""
        first = modis.composite_start(day)
        if first < self.sim_start:
            return None  # a composite begun before the simulation cannot be complete
        if composite is None or composite.start != first:
            composite = _Composite(start=first, et=np.zeros_like(et), pet=np.zeros_like(pet))
        composite.et += np.nan_to_num(et)
        composite.pet += pet
        last = modis.composite_end(first)
        if day == last:
            if last >= self.start - dt.timedelta(days=8):
                for tile in self.tiles:
                    modis.write_mod16a2(
                        modis.product_path(self.out, product="MOD16A2", day=first, tile=tile),
                        tile,
                        et_sum_mm=composite.et,
                        pet_sum_mm=composite.pet,
                        landcover=self.statics.landcover,
                    )
            return None
        return composite

    def _write_albedo(self, day: dt.date, i: int, wetness: F32) -> None:
        wsa = forcing.albedo(self.statics, wetness=wetness, day=day)
        bsa = (wsa * np.float32(BSA_OVER_WSA)).astype(np.float32)
        gaps = modis.albedo_gaps(
            stream(self.seed, "albedo_gaps", i), self.statics.shape, self.config.albedo_gap_fraction
        )
        for tile in self.tiles:
            modis.write_mcd43a3(
                modis.product_path(self.out, product="MCD43A3", day=day, tile=tile),
                tile,
                albedo_wsa=wsa,
                albedo_bsa=bsa,
                gaps=gaps,
            )

    def _retrievals(
        self,
        res: int,
        day: dt.date,
        truth_mean: F32,
        precip_mean: F32,
        *,
        product: str,
        noise_sd: float,
        bias: float,
    ) -> dict[str, Retrieval]:
        coarse = self.coarse[res]
        out = {}
        for k, name in enumerate(PASSES):
            geometry = pass_geometry(
                coarse.lon,
                coarse.lat,
                file_day=day,
                pass_name=name,
                coverage=self.config.swath_coverage,
            )
            rng = stream(self.seed, product, k, day.toordinal())
            out[name] = retrieve(
                coarse,
                geometry,
                truth_mean=truth_mean,
                precip_mean=precip_mean,
                rng=rng,
                noise_sd=noise_sd,
                bias=bias,
                not_recommended_fraction=self.config.not_recommended_fraction,
            )
        return out

    def _write_smap(self, day: dt.date, sm: F32, precip: F32) -> None:
        cfg = self.config
        for res, noise in ((36, cfg.noise_sd_36km), (9, cfg.noise_sd_9km)):
            f = self.coarse[res].factor
            truth_mean = block_mean(sm, f)[0].astype(np.float32)
            precip_mean = block_mean(precip, f)[0].astype(np.float32)
            passes = self._retrievals(
                res,
                day,
                truth_mean,
                precip_mean,
                product=f"smap{res}",
                noise_sd=noise,
                bias=cfg.bias,
            )
            smap_l3.write_granule(
                smap_l3.granule_path(self.out, res_km=res, day=day),
                domain=self.domain,
                coarse=self.coarse[res],
                am=passes["AM"],
                pm=passes["PM"],
                day=day,
                noise_sd=noise,
            )
            if res == 36:
                m = self._retrievals(
                    36,
                    day,
                    truth_mean,
                    precip_mean,
                    product="mcca",
                    noise_sd=cfg.mcca_noise_sd,
                    bias=cfg.mcca_bias,
                )
                mcca.write_mcca(
                    mcca.mcca_path(self.out, day=day),
                    domain=self.domain,
                    am=m["AM"],
                    pm=m["PM"],
                    day=day,
                )

    def _write_stations(self, station_truth: F32) -> None:
        folder = ismn.download_folder(self.out, start=self.start, end=self.end)
        for k, station in enumerate(self.stations):
            series = ismn.hourly_series(
                station,
                k,
                truth=station_truth[:, k],
                first_day=self.sim_start,
                start=self.start,
                end=self.end,
                seed=self.seed,
                config=self.config,
            )
            ismn.write_station(
                folder, station, series, self.statics, start=self.start, end=self.end
            )
        ismn.write_zip(folder)
        table = self.out / "truth" / "stations.csv"
        table.write_text(ismn.stations_table(self.stations), encoding="utf-8")


def generate(
    out_dir: Path,
    *,
    domain: Domain,
    start: dt.date,
    days: int,
    seed: int,
    config: SyntheticConfig | None = None,
) -> Path:
    """Generate the synthetic world into ``out_dir`` (new or empty); returns manifest.json's path.

    The same arguments give byte-identical files. See :mod:`etl.synthetic` for the layout.
    """
    cfg = config if config is not None else SyntheticConfig()
    _check_arguments(out_dir, days=days, seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    world = _World(out_dir, domain=domain, start=start, days=days, seed=seed, config=cfg)
    world.write_statics()
    world.run()
    manifest = write_manifest(out_dir, domain=domain, start=start, days=days, seed=seed, config=cfg)
    log.info(
        "synthetic world generated",
        extra={
            "domain": domain.name,
            "start": start.isoformat(),
            "days": days,
            "seed": seed,
            "seconds": round(time.perf_counter() - t0, 1),
            "out_dir": str(out_dir),
        },
    )
    return manifest
