"""The one exception hierarchy of smapds: every error the project raises derives from SmapdsError.

Each class carries a ``status`` code, the word the run ledger, the metrics and the exit code use for
it (see STYLE.md: failures are data). ``etl`` is the lowest layer, so the hierarchy lives here and
``models`` and ``service`` import it from here.
"""

from __future__ import annotations


class SmapdsError(Exception):
    """Root of all smapds errors."""

    status: str = "FAILED"


class ConfigError(SmapdsError):
    """A setting is missing, malformed or not allowed; the message names the setting."""

    status = "FAILED"


class GridError(SmapdsError):
    """A grid, resolution or domain request that cannot be satisfied (unknown name, misaligned window)."""

    status = "FAILED"


class DatabaseError(SmapdsError):
    """The database cannot be reached, started or used."""

    status = "FAILED"


class SchemaError(DatabaseError):
    """The database schema is not the one this software knows (changed, missing or newer migrations)."""

    status = "FAILED"


class InputError(SmapdsError):
    """An input file or record is unreadable or violates its format; the message names it."""

    status = "QUARANTINED"


class FetchError(SmapdsError):
    """A granule could not be fetched (network, server error after retries)."""

    status = "FAILED"


class AuthenticationError(FetchError):
    """The provider refused our credentials even after one refresh: not missing data."""

    status = "FAILED"


class GranuleNotFoundError(FetchError):
    """The provider has no such granule (yet): a latency question, not a failure of ours."""

    status = "PENDING"


class QuarantinedError(InputError):
    """A fetched file failed verification (size, checksum, does not open) and was quarantined."""

    status = "QUARANTINED"


class ArtifactError(SmapdsError):
    """A model artifact is missing, modified, or does not fit this software or input stack."""

    status = "FAILED"
