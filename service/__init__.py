"""The smapds service: settings, database, run ledger, pipeline, scheduler, HTTP, CLI, logging."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("smapds")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"
