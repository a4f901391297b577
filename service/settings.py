"""The one settings object of smapds: read from SMAPDS_* variables and an optional TOML file, once.

Precedence, highest first: environment variables (``SMAPDS_<FIELD>``), the TOML file given with
``--config`` (keys are the field names, e.g. ``domain = "china"``), then the defaults below. The
object is frozen and passed down explicitly; ``etl`` and ``models`` never read the environment.
A bad value raises :class:`ConfigError` with one line naming the variable and what is allowed.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from etl.errors import ConfigError
from etl.grid import DOMAINS

ENV_PREFIX = "SMAPDS_"


class SourceConfig(BaseModel):
    """Where one input comes from. ``transport`` decides which other keys apply.

    - ``local``: ``pattern`` is a glob relative to ``root`` (default: the synthetic world), with
      ``{day:...}`` formatting, e.g. ``smap/SPL3SMP/{day:%Y.%m.%d}/SMAP_L3_SM_P_{day:%Y%m%d}_*.h5``.
    - ``cmr``: NASA CMR search + Earthdata download of collection ``product`` (default: the input's
      own name; see etl.sources.cmr.PRODUCTS).
    - ``https``: ``pattern`` is a URL with ``{day:...}`` formatting; ``*`` in the file name is
      matched against the directory index.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    transport: Literal["local", "cmr", "https"]
    root: Path | None = None
    pattern: str | None = None
    product: str | None = None
    composite_days: int | None = Field(default=None, ge=1, le=366)

    @field_validator("pattern")
    @classmethod
    def _formats(cls, value: str | None) -> str | None:
        if value is not None:
            from datetime import date

            try:
                value.format(day=date(2024, 1, 1))
            except (KeyError, IndexError, ValueError) as err:
                raise ValueError(
                    f"pattern {value!r} does not format with {{day:...}}: {err}"
                ) from None
        return value


class Settings(BaseSettings):
    """Effective configuration of one smapds process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="forbid", case_sensitive=False
    )

    data_dir: Path = Field(
        default=Path("var"),
        description="Root of the raw archive, the products and the embedded database.",
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL+PostGIS URL (postgresql://user:pass@host:port/db). "
        "Unset: run the embedded cluster under data_dir/pg.",
    )
    domain: str = Field(
        default="demo", description=f"Product domain: {', '.join(sorted(DOMAINS))}."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", description="json for journald, text for people; auto picks by terminal."
    )
    db_port: int = Field(
        default=5432,
        ge=1024,
        le=65535,
        description="Port of the embedded cluster; it names the unix socket (no TCP listener).",
    )
    db_run_as: str = Field(
        default="smapds",
        pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
        description="Unprivileged system user that runs the embedded server when started as root.",
    )
    synthetic_dir: Path | None = Field(
        default=None,
        description="The synthetic world served as the default local sources; default "
        "data_dir/synthetic.",
    )
    sources: dict[str, SourceConfig] = Field(
        default_factory=dict,
        description="Per input, where it comes from (TOML [sources.NAME] tables or JSON); inputs "
        "not named keep the synthetic-world default.",
    )
    latency_window_days: int = Field(
        default=7,
        ge=0,
        le=90,
        description="A day with no granule stays pending this long, then becomes a gap.",
    )
    earthdata_token: SecretStr | None = Field(
        default=None, description="Earthdata Login bearer token (also read from EARTHDATA_TOKEN)."
    )
    earthdata_token_file: Path | None = Field(
        default=None, description="File holding the token, re-read after a 401 (for rotation)."
    )
    cmr_url: str = Field(
        default="https://cmr.earthdata.nasa.gov",
        pattern=r"^https?://",
        description="NASA CMR search endpoint (a mirror, or a fake one in tests).",
    )
    soil_dir: Path | None = Field(
        default=None,
        description="SoilGrids layers as <prop>/<prop>_0-5cm_mean.tif; default the synthetic world's.",
    )
    dem_path: Path | None = Field(
        default=None, description="DEM GeoTIFF; default the synthetic world's."
    )
    stale_albedo_days: int = Field(
        default=16, ge=0, description="Albedo older than this: degraded."
    )
    stale_et_days: int = Field(default=16, ge=0, description="ET older than this: degraded.")
    precip_missing_days: int = Field(
        default=2, ge=0, le=7, description="Missing IMERG days in the 7-day window before degraded."
    )
    on_stale: Literal["degrade", "refuse"] = Field(
        default="degrade", description="A stale day is produced as degraded, or refused."
    )
    coarse_pass: Literal["AM", "PM"] = Field(
        default="AM", description="Preferred SMAP pass; the other fills where it is missing."
    )
    overpass_half_window_hours: float = Field(
        default=3.0,
        gt=0,
        le=12,
        description="In situ values count within this many hours of the overpass (6:00 local "
        "solar time for AM, 18:00 for PM).",
    )
    surface_max_depth_m: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Deepest sensor top (m) that counts as surface soil moisture.",
    )
    tile_cells: int = Field(
        default=32,
        ge=1,
        le=1000,
        description="The day is downscaled in tiles of this many 36 km cells square.",
    )
    dask_scheduler: str | None = Field(
        default=None,
        description="Address of a Dask scheduler (tcp://host:8786) to run the tiles on; unset "
        "runs them in the service's own process.",
    )
    validation_min_pairs: int = Field(
        default=10, ge=4, description="Fewer pairs than this: INSUFFICIENT_DATA."
    )
    validation_min_triplets: int = Field(
        default=100,
        ge=10,
        description="Fewer triplets than this: triple collocation INSUFFICIENT_DATA.",
    )
    validation_windows_days: tuple[int, ...] = Field(
        default=(30, 90, 365),
        description="Rolling windows (days, ending on the latest product day) of the statistics; "
        "all time is always kept too.",
    )
    model_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Hyperparameters per model (rf, xgb, mlp, hgb) over models.learners defaults.",
    )
    pg_bindir: Path | None = Field(
        default=None,
        description="Directory of initdb/pg_ctl/postgres; default: newest /usr/lib/postgresql/*/bin.",
    )

    # -- the service (`smapds serve`) --------------------------------------------------------------
    service_first_date: date | None = Field(
        default=None,
        description="First product day the service is responsible for (catch-up starts here); "
        "unset: the latency window before the newest due day, so a fresh install does not backfill.",
    )
    product_lag_days: int = Field(
        default=2,
        ge=0,
        le=60,
        description="The product job works on days up to today minus this (SMAP L3 comes ~2 days late).",
    )
    product_cron: str = Field(
        default="30 3 * * *", description="When the daily product job runs (crontab fields, UTC)."
    )
    ingest_cron: str = Field(
        default="15 * * * *", description="When the in situ ingest job runs (crontab fields, UTC)."
    )
    ingest_dir: Path | None = Field(
        default=None,
        description="Drop folder of the ingest job: ISMN zips, folders and files, and CSV pairs "
        "NAME_stations.csv + NAME_observations.csv; unset: no ingest job.",
    )
    http_address: str = Field(
        default="127.0.0.1", description="IP address of the /metrics, /healthz, /readyz endpoint."
    )
    http_port: int = Field(
        default=9640, ge=0, le=65535, description="Port of that endpoint (0: any free port)."
    )
    stage_timeout_seconds: dict[str, float] = Field(
        default_factory=dict,
        description="Per stage (fetch, product, ingest, hook, or a hook's own name), the seconds "
        "after which it is stopped; over the defaults in service/pipeline.py.",
    )

    @field_validator("stage_timeout_seconds")
    @classmethod
    def _positive_timeouts(cls, value: dict[str, float]) -> dict[str, float]:
        bad = sorted(k for k, v in value.items() if not v > 0)
        if bad:
            raise ValueError(f"timeouts must be positive seconds; not for {', '.join(bad)}")
        return value

    stale_running_seconds: float = Field(
        default=600,
        gt=0,
        description="A RUNNING ledger row whose heartbeat is older than this was left by a dead "
        "process; its day is run again.",
    )
    stop_grace_seconds: float = Field(
        default=60,
        ge=0,
        description="On SIGTERM, how long the current stage may run on before it is stopped.",
    )
    sim_epoch_date: date | None = Field(
        default=None,
        description="Accelerated clock (tests, demos): the simulated day at sim_epoch_utc.",
    )
    sim_epoch_utc: datetime | None = Field(
        default=None, description="Accelerated clock: the wall time (with zone) of sim_epoch_date."
    )
    sim_day_seconds: float | None = Field(
        default=None,
        gt=0,
        validate_default=True,
        description="Accelerated clock: wall seconds per simulated day.",
    )

    @field_validator("domain")
    @classmethod
    def _known_domain(cls, value: str) -> str:
        if value not in DOMAINS:
            raise ValueError(f"unknown domain {value!r}; allowed: {', '.join(sorted(DOMAINS))}")
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        try:
            url = make_url(value.get_secret_value())
        except (ArgumentError, ValueError):  # never the parser's message: it can quote the password
            raise ValueError(
                "not a URL; expected postgresql://user:password@host:port/dbname "
                "(percent-encode special characters of the password)"
            ) from None
        if url.get_backend_name() != "postgresql" or url.get_driver_name() not in ("psycopg2", ""):
            raise ValueError("must be a postgresql:// (or postgresql+psycopg2://) URL")
        if "@" in (url.host or ""):  # a password with an unencoded '@': its tail became the host
            raise ValueError("the password must be percent-encoded ('@' as %40)")
        if not url.database:
            raise ValueError("names no database; expected postgresql://user@host:port/dbname")
        return value

    @field_validator("pg_bindir")
    @classmethod
    def _bindir_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not (value / "pg_ctl").is_file():
            raise ValueError(f"{value} holds no pg_ctl")
        return value

    @field_validator("product_cron", "ingest_cron")
    @classmethod
    def _crontab(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone=UTC)
        except ValueError as err:
            raise ValueError(f"not a crontab expression ({err}): {value!r}") from None
        return value

    @field_validator("http_address")
    @classmethod
    def _ip_address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"not an IP address: {value!r}") from None
        return value

    @field_validator("sim_epoch_utc")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2024-04-06T00:00:00Z")
        return None if value is None else value.astimezone(UTC)

    @field_validator("sim_day_seconds")
    @classmethod
    def _simulation_complete(cls, value: float | None, info: ValidationInfo) -> float | None:
        given = [info.data.get("sim_epoch_date"), info.data.get("sim_epoch_utc"), value]
        if any(v is not None for v in given) and any(v is None for v in given):
            raise ValueError(
                "sim_epoch_date, sim_epoch_utc and sim_day_seconds go together: set all or none"
            )
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_file = _CONFIG_FILE.get("path")
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    def redacted(self) -> dict[str, Any]:
        """The effective settings as plain values, with secrets replaced by '***'."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                secret = value.get_secret_value()
                value = redact_url(secret) if "://" in secret else "***"
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, dict):
                value = {
                    k: v.model_dump(exclude_none=True) if isinstance(v, BaseModel) else v
                    for k, v in value.items()
                }
            out[name] = value
        return out


# The TOML path is handed to settings_customise_sources through this one-slot holder, which only
# load_settings() writes, so the source list stays a classmethod as pydantic-settings wants it.
_CONFIG_FILE: dict[str, Path | None] = {}


_SECRET_URL_PARAMETERS = frozenset({"password", "sslpassword"})
"""libpq connection parameters that carry a secret when given in the URL's query string."""


def redact_url(url: str) -> str:
    """A database URL with its password (also a ``password=`` parameter) replaced by '***'
    (safe for logs and `config show`)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "***"
    hidden = {k: "***" for k in parsed.query if k.lower() in _SECRET_URL_PARAMETERS}
    text = parsed.update_query_dict(hidden).render_as_string(hide_password=True)
    return text.replace("=%2A%2A%2A", "=***")


def load_settings(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build the settings once, or raise ConfigError naming the offending setting."""
    env = os.environ if environ is None else environ
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    unknown = sorted(k for k in env if k.upper().startswith(ENV_PREFIX) and k.upper() not in known)
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]}; known: {', '.join(sorted(known))}")
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {config_file} does not exist")
    _CONFIG_FILE["path"] = config_file
    init: dict[str, Any] = {}
    if "SMAPDS_EARTHDATA_TOKEN" not in env and env.get("EARTHDATA_TOKEN"):
        init["earthdata_token"] = env["EARTHDATA_TOKEN"]
    try:
        return Settings(**init)
    except ValidationError as err:
        raise ConfigError(_describe(err, config_file)) from None
    except ValueError as err:  # a TOML syntax error, or a variable that is not valid JSON
        field = re.search(r'error parsing value for field "(\w+)"', str(err))
        if field is not None:
            name = field.group(1)
            raise ConfigError(
                f"invalid setting {ENV_PREFIX}{name.upper()}: not valid JSON ({err})"
            ) from None
        raise ConfigError(f"config file {config_file}: {err}") from None
    finally:
        _CONFIG_FILE.pop("path", None)


def _describe(err: ValidationError, config_file: Path | None) -> str:
    first = err.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    where = f"{ENV_PREFIX}{field.upper()}"
    if config_file is not None:
        where += f" (or '{field}' in {config_file})"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"unknown setting '{field}' in {config_file}"
    return f"invalid setting {where}: {message}"
