"""Fixtures of the reliability suite (see ``produced_world``).

Each test module gets its own database (``database`` in ``tests/conftest.py``) and so its own data
directory and model; a forest of 10 shallow trees is enough to produce a day.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from produced_world import Produced, make_produced
from sqlalchemy.engine import Engine


@pytest.fixture(scope="module")
def produced(
    demo_world: Path, writer: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Produced:
    """The module's data directory: the synthetic world fetched, a forest frozen and active."""
    return make_produced(demo_world, writer, tmp_path_factory.mktemp("data"))
