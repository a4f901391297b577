"""Building a day's input stack from the settings and the inventory (shared by training and the
daily product, so the two can never disagree on a feature)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

import xarray as xr
from sqlalchemy.engine import Engine

from etl.errors import ConfigError
from etl.grid import Domain, get_domain
from etl.stack import (
    ArchivedFile,
    DailyStack,
    InputNames,
    StalenessLimits,
    build_stack,
    coarse_retrievals,
)
from etl.static import SOIL_PROPERTIES, static_layers
from service.inventory import catalog
from service.settings import Settings


@dataclass(frozen=True)
class StackFactory:
    """Everything needed to build any day's stack for one domain."""

    domain: Domain
    engine: Engine
    data_dir: Path
    static: xr.Dataset
    limits: StalenessLimits
    on_stale: Literal["degrade", "refuse"]
    prefer: Literal["AM", "PM"]

    def build(self, day: date) -> DailyStack:
        return build_stack(
            day,
            domain=self.domain,
            catalog=catalog(self.engine, data_dir=self.data_dir),
            static=self.static,
            names=InputNames(),
            limits=self.limits,
            on_stale=self.on_stale,
            prefer=self.prefer,
        )

    def coarse(self, day: date) -> tuple[xr.Dataset | None, xr.Dataset | None, list[ArchivedFile]]:
        """Only the day's 36 km and 9 km retrievals (what collocation needs), as the stack has them."""
        return coarse_retrievals(
            day,
            domain=self.domain,
            catalog=catalog(self.engine, data_dir=self.data_dir),
            names=InputNames(),
            prefer=self.prefer,
        )


def stack_factory(settings: Settings, engine: Engine) -> StackFactory:
    domain = get_domain(settings.domain)
    synthetic = settings.synthetic_dir or settings.data_dir / "synthetic"
    soil_dir = settings.soil_dir or synthetic / "soilgrids"
    dem = settings.dem_path or synthetic / "dem" / "synthetic_dem_0.0025deg.tif"
    soil = {p: soil_dir / p / f"{p}_0-5cm_mean.tif" for p in SOIL_PROPERTIES}
    missing = [str(p) for p in (*soil.values(), dem) if not p.is_file()]
    if missing:
        raise ConfigError(
            f"static layers missing: {', '.join(missing)} (settings SMAPDS_SOIL_DIR, "
            "SMAPDS_DEM_PATH; or generate the synthetic world)"
        )
    static = static_layers(domain, soil=soil, dem=dem, cache_dir=settings.data_dir / "static")
    limits = StalenessLimits(
        albedo=settings.stale_albedo_days,
        et=settings.stale_et_days,
        precip_missing_days=settings.precip_missing_days,
    )
    return StackFactory(
        domain, engine, settings.data_dir, static, limits, settings.on_stale, settings.coarse_pass
    )
