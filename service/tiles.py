"""Where the tiles of a day run: in this process, or on a Dask cluster (``SMAPDS_DASK_SCHEDULER``).

The downscaling step (models/downscale.py) hands every tile to a runner; the model is shipped
to each worker once per call (``scatter(..., broadcast=True)``), the tiles' arrays with the tasks.
Results come back in tile order, so the day's map is the same bytes wherever it was computed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from etl.errors import ConfigError
from models.downscale import Runner, run_here


@contextlib.contextmanager
def runner(scheduler: str | None, *, timeout_s: float = 30.0) -> Iterator[Runner]:
    """``run_here`` without a scheduler address; else a runner on that Dask cluster."""
    if scheduler is None:
        yield run_here
        return
    from distributed import Client

    try:
        client = Client(scheduler, timeout=timeout_s, set_as_default=False)
    except OSError as err:
        raise ConfigError(
            f"cannot reach the Dask scheduler {scheduler} (setting SMAPDS_DASK_SCHEDULER): {err}"
        ) from err

    def run(
        fn: Callable[..., Any], items: Iterable[tuple[Any, ...]], shared: tuple[Any, ...]
    ) -> list[Any]:
        common = [client.scatter(v, broadcast=True, hash=False) for v in shared]
        futures = [client.submit(fn, *item, *common, pure=False) for item in items]
        return list(client.gather(futures))

    try:
        yield run
    finally:
        client.close()
