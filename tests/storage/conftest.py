"""The ``storage`` fixture: every contract test runs once per backend.

Backends: memory, SQLite (a real file in ``tmp_path``, WAL mode) and
PostgreSQL, which runs only when ``PBIDENTITY_TEST_POSTGRES_URL`` names a
disposable database (its tables are dropped before each test).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbidentity.storage import Storage
from pbidentity.storage.memory import MemoryStorage
from pbidentity.storage.sql import SqlStorage
from pbidentity.storage.sql import metadata

POSTGRES_URL = os.environ.get("PBIDENTITY_TEST_POSTGRES_URL", "")


def open_backend(name: str, directory: Path) -> Storage:
    """A fresh, empty storage of the named backend."""
    if name == "memory":
        return MemoryStorage()
    if name == "sqlite":
        return SqlStorage.from_url(f"sqlite:///{directory / 'pbidentity.db'}")
    storage = SqlStorage.from_url(POSTGRES_URL)
    metadata.drop_all(storage.engine)
    return storage


BACKENDS = [
    "memory",
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            not POSTGRES_URL, reason="set PBIDENTITY_TEST_POSTGRES_URL to run on PostgreSQL"
        ),
    ),
]


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """An empty storage, once per backend."""
    backend = open_backend(request.param, tmp_path)
    yield backend
    backend.close()


@pytest.fixture
def sqlite_storage(tmp_path: Path) -> Iterator[SqlStorage]:
    """An empty SQLite storage, for tests of SQL-only behaviour."""
    backend = SqlStorage.from_url(f"sqlite:///{tmp_path / 'pbidentity.db'}")
    yield backend
    backend.close()
