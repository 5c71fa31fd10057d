"""The ``storage`` fixture: every contract test runs once per backend.

Backends: memory, SQLite (a real file in ``tmp_path``, WAL mode), the same
with a cursor listener attached (``sqlite-traced``: every statement then goes
through SQLAlchemy Core, as under a host app's tracing, instead of the hot
path) and a real PostgreSQL server (the session's ``postgres_url``: a throwaway cluster, or
``PBIDENTITY_TEST_POSTGRES_URL``; its tables are dropped before each test).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from pbidentity.storage import Storage
from pbidentity.storage.memory import MemoryStorage
from pbidentity.storage.sql import SqlStorage
from tests.conftest import empty_database
from tests.conftest import trace_statement
from tests.conftest import wipe_database


def open_backend(name: str, directory: Path, postgres_url: str = "") -> Storage:
    """A fresh, empty storage of the named backend."""
    if name == "memory":
        return MemoryStorage()
    if name == "sqlite":
        return SqlStorage.from_url(f"sqlite:///{directory / 'pbidentity.db'}")
    if name == "sqlite-traced":
        storage = SqlStorage.from_url(f"sqlite:///{directory / 'pbidentity.db'}")
        sqlalchemy.event.listen(storage.engine, "before_cursor_execute", trace_statement)
        return storage
    storage = SqlStorage.from_url(postgres_url)
    wipe_database(storage.engine)
    return storage


BACKENDS = ["memory", "sqlite", "sqlite-traced", "postgresql"]


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """An empty storage, once per backend."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else ""
    backend = open_backend(request.param, tmp_path, url)
    yield backend
    backend.close()


@pytest.fixture
def sqlite_storage(tmp_path: Path) -> Iterator[SqlStorage]:
    """An empty SQLite storage, for tests of SQL-only behaviour."""
    backend = SqlStorage.from_url(f"sqlite:///{tmp_path / 'pbidentity.db'}")
    yield backend
    backend.close()


@pytest.fixture(params=["sqlite", "sqlite-traced", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty SQL database: a SQLite file, the same traced, then the PostgreSQL server."""
    yield from empty_database(request, tmp_path)
