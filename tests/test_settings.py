"""Settings: environment and TOML, precedence, validation messages that name the setting, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.errors import ConfigError
from service.settings import load_settings


def test_defaults_without_environment_or_file() -> None:
    s = load_settings(environ={})
    assert s.domain == "demo" and s.data_dir == Path("var") and s.database_url is None


def test_environment_overrides_toml_which_overrides_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "smapds.toml"
    cfg.write_text('domain = "china"\ndata_dir = "/srv/smapds"\nlog_level = "DEBUG"\n')
    monkeypatch.setenv("SMAPDS_LOG_LEVEL", "WARNING")
    s = load_settings(cfg)
    assert s.domain == "china" and s.data_dir == Path("/srv/smapds") and s.log_level == "WARNING"


def test_settings_are_frozen() -> None:
    s = load_settings(environ={})
    with pytest.raises(ValueError):
        s.domain = "china"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        (
            "SMAPDS_DOMAIN",
            "atlantis",
            r"SMAPDS_DOMAIN: unknown domain 'atlantis'; allowed: china, demo",
        ),
        ("SMAPDS_DATABASE_URL", "not a url", r"SMAPDS_DATABASE_URL: not a URL"),
        (
            "SMAPDS_DATABASE_URL",
            "mysql://u:p@h/db",
            r"SMAPDS_DATABASE_URL: must be a postgresql://",
        ),
        ("SMAPDS_DATABASE_URL", "postgresql://u:p@h", r"SMAPDS_DATABASE_URL: names no database"),
        ("SMAPDS_LOG_LEVEL", "LOUD", r"SMAPDS_LOG_LEVEL: Input should be 'DEBUG'"),
        ("SMAPDS_DB_PORT", "80", r"SMAPDS_DB_PORT: Input should be greater than or equal to 1024"),
        ("SMAPDS_DB_PORT", "five", r"SMAPDS_DB_PORT: Input should be a valid integer"),
        ("SMAPDS_PG_BINDIR", "/nonexistent", r"SMAPDS_PG_BINDIR: /nonexistent holds no pg_ctl"),
        ("SMAPDS_DOMIAN", "demo", r"unknown setting SMAPDS_DOMIAN"),
    ],
)
def test_a_bad_setting_fails_with_one_line_naming_it(
    var: str, value: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=expected) as info:
        load_settings()
    assert "\n" not in str(info.value)


def test_a_bad_value_in_the_toml_file_names_the_file_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('domain = "mars"\n')
    with pytest.raises(ConfigError, match=r"'domain' in .*bad.toml.*unknown domain 'mars'"):
        load_settings(cfg, environ={})
    cfg.write_text('colour = "blue"\n')
    with pytest.raises(ConfigError, match=r"unknown setting 'colour' in .*bad.toml"):
        load_settings(cfg, environ={})
    cfg.write_text("domain = \n")
    with pytest.raises(ConfigError, match=r"bad.toml"):
        load_settings(cfg, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_the_database_password_never_appears_in_errors_or_redacted_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMAPDS_DATABASE_URL", "postgresql://svc:hunter2@db.example:5432/smapds")
    s = load_settings()
    shown = s.redacted()
    assert "hunter2" not in str(shown) and "svc:***@db.example:5432/smapds" in shown["database_url"]
    assert "hunter2" not in repr(s)
    monkeypatch.setenv("SMAPDS_DATABASE_URL", "postgresql://svc:hunter2@db.example:5432")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "hunter2" not in str(info.value)
