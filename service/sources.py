"""Which adapter feeds which input: built from the settings, defaulting to the synthetic world."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from etl.errors import ConfigError
from etl.grid import get_domain
from etl.sources import Source
from etl.sources.cmr import PRODUCTS, CmrSource
from etl.sources.http import HttpClient, TokenProvider
from etl.sources.https_dir import HttpsDirectorySource
from etl.sources.local import LocalDirectorySource
from service import __version__
from service.settings import Settings, SourceConfig

# The daily inputs and where the synthetic world (etl.synthetic) writes them, NSIDC/GES DISC style.
SYNTHETIC_DEFAULTS: dict[str, SourceConfig] = {
    "SPL3SMP": SourceConfig(
        transport="local", pattern="smap/SPL3SMP/{day:%Y.%m.%d}/SMAP_L3_SM_P_{day:%Y%m%d}_*.h5"
    ),
    "SPL3SMP_E": SourceConfig(
        transport="local", pattern="smap/SPL3SMP_E/{day:%Y.%m.%d}/SMAP_L3_SM_P_E_{day:%Y%m%d}_*.h5"
    ),
    "MCCA": SourceConfig(
        transport="local", pattern="mcca/{day:%Y}/MCCA_SMAP_SM_36km_{day:%Y%m%d}.nc"
    ),
    "MCD43A3": SourceConfig(
        transport="local", pattern="modis/MCD43A3/{day:%Y.%m.%d}/MCD43A3.A{day:%Y%j}.*.tif"
    ),
    "MOD16A2": SourceConfig(
        transport="local",
        pattern="modis/MOD16A2/{day:%Y.%m.%d}/MOD16A2.A{day:%Y%j}.*.tif",
        composite_days=8,
    ),
    "IMERG_E": SourceConfig(
        transport="local",
        pattern="imerg/GPM_3IMERGDE.07/{day:%Y}/{day:%m}/3B-DAY-E.MS.MRG.3IMERG.{day:%Y%m%d}-*.nc4",
    ),
}


def source_configs(settings: Settings) -> dict[str, SourceConfig]:
    """The effective per-input configuration: the settings' entries over the defaults."""
    return {**SYNTHETIC_DEFAULTS, **settings.sources}


def token_provider(settings: Settings) -> TokenProvider | None:
    """The Earthdata token: from a file (re-read after a 401, for rotation) or the setting."""
    token_file = settings.earthdata_token_file
    if token_file is not None:
        path: Path = token_file

        def from_file(refresh: bool) -> str | None:
            try:
                return path.read_text().strip() or None
            except OSError as err:
                raise ConfigError(f"SMAPDS_EARTHDATA_TOKEN_FILE {path}: {err.strerror}") from None

        return from_file
    if settings.earthdata_token is not None:
        token = settings.earthdata_token.get_secret_value()
        return lambda refresh: token
    return None  # requests then falls back to ~/.netrc for Earthdata Login


def build_sources(settings: Settings, *, only: list[str] | None = None) -> list[Source]:
    """Adapters for the configured inputs (all, or those named in ``only``), in a stable order."""
    configs = source_configs(settings)
    unknown = sorted(set(only or []) - set(configs))
    if unknown:
        raise ConfigError(f"unknown source {unknown[0]}; configured: {', '.join(sorted(configs))}")
    client = HttpClient(
        token=token_provider(settings),
        # NASA's hosts and the configured CMR endpoint (a mirror, or a fake in tests)
        trusted_hosts=(*HttpClient.trusted_hosts, urlsplit(settings.cmr_url).hostname or ""),
        user_agent=f"smapds/{__version__}",
    )
    synthetic = settings.synthetic_dir or settings.data_dir / "synthetic"
    bbox = get_domain(settings.domain).bbox_lonlat()
    out: list[Source] = []
    for name in only or sorted(configs):
        cfg = configs[name]
        if cfg.transport == "local":
            if cfg.pattern is None:
                raise ConfigError(f"sources.{name}: a local source needs a pattern")
            out.append(
                LocalDirectorySource(
                    name, cfg.root or synthetic, cfg.pattern, composite_days=cfg.composite_days
                )
            )
        elif cfg.transport == "https":
            if cfg.pattern is None:
                raise ConfigError(f"sources.{name}: an https source needs a pattern (URL)")
            out.append(HttpsDirectorySource(name, client, cfg.pattern))
        else:
            product = PRODUCTS.get(cfg.product or name)
            if product is None:
                raise ConfigError(
                    f"sources.{name}: unknown CMR product {cfg.product or name!r}; "
                    f"known: {', '.join(sorted(PRODUCTS))}"
                )
            out.append(CmrSource(name, product, client, bbox, settings.cmr_url))
    return out
