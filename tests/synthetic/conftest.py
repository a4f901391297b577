"""Fixtures for the synthetic-world tests: where the reference data lives and how to build a world."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from etl.grid import get_domain
from etl.synthetic import SyntheticConfig, generate

START = dt.date(2024, 4, 1)

WorldFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def build_world() -> WorldFactory:
    """Generate a demo-domain world into a folder; returns the world's folder."""

    def build(out: Path, *, days: int, seed: int = 7, **config: object) -> Path:
        generate(
            out,
            domain=get_domain("demo"),
            start=START,
            days=days,
            seed=seed,
            config=SyntheticConfig(**config),  # type: ignore[arg-type]
        )
        return out

    return build
