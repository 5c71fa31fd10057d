"""The SCIM suite runs on SQLite, SQLite under a cursor listener (Core statements), PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import empty_database


@pytest.fixture(params=["sqlite", "sqlite-traced", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, the same traced, then the PostgreSQL server."""
    yield from empty_database(request, tmp_path)
