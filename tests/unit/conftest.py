"""Fixtures for the unit tests."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from ml.dbt import Target
from ml.warehouse import Warehouse


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[Warehouse]:
    """A new, empty DuckDB warehouse file."""
    target = Target("test", "duckdb", "main", path=tmp_path / "w.duckdb")
    with Warehouse.open(target, create=True) as opened:
        yield opened
