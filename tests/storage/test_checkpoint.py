"""SQLite's WAL checkpoints run in the storage's own thread, not inside a write's commit."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy

from pbidentity.domain import Tenant
from pbidentity.storage.sql import SqlStorage
from pbidentity.storage.sql import _checkpoint
from pbidentity.storage.sql._checkpoint import Checkpointer
from tests.conftest import trace_statement

NOW = datetime(2026, 12, 7, 22, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "sqlite-traced"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStorage]:
    """A SQLite storage, on the hot path and through Core (a cursor listener attached)."""
    backend = SqlStorage.from_url(f"sqlite:///{tmp_path / 'pbidentity.db'}")
    if request.param == "sqlite-traced":
        sqlalchemy.event.listen(backend.engine, "before_cursor_execute", trace_statement)
    yield backend
    backend.close()


def _checkpointer(storage: SqlStorage) -> Checkpointer:
    found = storage._checkpointer
    assert found is not None
    return found


def _write(storage: SqlStorage, n: int, prefix: str = "t") -> None:
    """``n`` write commits, each adding a tenant ``<prefix><i>``."""
    for i in range(n):
        with storage.transaction() as tx:
            tx.add_tenant(Tenant(id=f"{prefix}{i}", slug=f"{prefix}{i}", name="T", created=NOW))


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("timed out")
        time.sleep(0.01)


def test_every_connection_checkpoints_itself_only_past_the_backstop(storage: SqlStorage) -> None:
    """A commit checkpoints the log itself only past BACKSTOP_PAGES, not SQLite's 1,000."""
    with storage.engine.connect() as connection:
        pages = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
    assert pages == _checkpoint.BACKSTOP_PAGES
    assert _checkpoint.BACKSTOP_PAGES > 1000


def test_write_commits_wake_the_checkpoint_thread(storage: SqlStorage) -> None:
    """Every WRITES_PER_CHECKPOINT write commits, a checkpoint runs beside them."""
    checkpointer = _checkpointer(storage)
    _write(storage, _checkpoint.WRITES_PER_CHECKPOINT - 1)
    assert checkpointer.checkpoints == 0
    with storage.transaction(write=False) as tx:
        tx.get_tenant("t0")  # reads are not counted
    assert checkpointer.checkpoints == 0
    _write(storage, 1, prefix="last")
    _wait_for(lambda: checkpointer.checkpoints == 1)
    thread = checkpointer._thread
    assert thread is not None
    assert thread is not threading.current_thread()
    assert thread.daemon


def test_a_background_checkpoint_copies_the_log_into_the_database(
    storage: SqlStorage, tmp_path: Path
) -> None:
    """After the thread's checkpoint, every frame of the log is in the database file."""
    checkpointer = _checkpointer(storage)
    _write(storage, _checkpoint.WRITES_PER_CHECKPOINT)
    _wait_for(lambda: checkpointer.checkpoints == 1)
    # The database file itself, read without the log, holds the tenants.
    path = tmp_path / "pbidentity.db"
    copy = tmp_path / "copy.db"
    copy.write_bytes(path.read_bytes())
    reader = sqlite3.connect(copy)
    try:
        count = reader.execute("SELECT count(*) FROM tenants").fetchone()[0]
    finally:
        reader.close()
    assert count == _checkpoint.WRITES_PER_CHECKPOINT


def test_the_thread_ends_when_idle_and_comes_back(tmp_path: Path) -> None:
    """Idle for idle_seconds, the thread ends; the next checkpoint starts another."""
    storage = SqlStorage.from_url(f"sqlite:///{tmp_path / 'pbidentity.db'}")
    try:
        checkpointer = Checkpointer(storage.engine, every=2, idle_seconds=0.05)
        storage._checkpointer = checkpointer
        _write(storage, 2)
        _wait_for(lambda: checkpointer.checkpoints == 1)
        _wait_for(lambda: checkpointer._thread is None)
        with storage.transaction() as tx:
            tx.add_tenant(Tenant(id="a", slug="a", name="T", created=NOW))
            tx.add_tenant(Tenant(id="b", slug="b", name="T", created=NOW))
        assert checkpointer.checkpoints == 1  # one commit, however many statements
        _write(storage, 1, prefix="again")
        _wait_for(lambda: checkpointer.checkpoints == 2)
    finally:
        storage.close()


def test_close_stops_the_thread(tmp_path: Path) -> None:
    """close() joins the thread; a write commit after it starts none."""
    storage = SqlStorage.from_url(f"sqlite:///{tmp_path / 'pbidentity.db'}")
    checkpointer = Checkpointer(storage.engine, every=1, idle_seconds=60)
    storage._checkpointer = checkpointer
    _write(storage, 1)
    _wait_for(lambda: checkpointer.checkpoints == 1)
    thread = checkpointer._thread
    assert thread is not None
    storage.close()
    assert not thread.is_alive()
    checkpointer.wrote()
    assert checkpointer._thread is None


def test_a_failed_checkpoint_is_logged_and_the_writes_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint that cannot run is a warning in the log; commits never fail for it."""
    storage = SqlStorage.from_url(f"sqlite:///{tmp_path / 'pbidentity.db'}")
    try:
        broken = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
        checkpointer = Checkpointer(broken, every=1, idle_seconds=60)
        storage._checkpointer = checkpointer
        with caplog.at_level(logging.WARNING, logger="pbidentity.storage"):
            _write(storage, 3)
            _wait_for(lambda: "background WAL checkpoint failed" in caplog.text)
        assert checkpointer.checkpoints == 0
        with storage.transaction(write=False) as tx:
            assert tx.get_tenant("t2") is not None
        checkpointer.close()
        broken.dispose()
    finally:
        storage.close()


def test_postgresql_has_no_checkpointer(postgres_url: str) -> None:
    """The server checkpoints PostgreSQL itself."""
    storage = SqlStorage.from_url(postgres_url)
    try:
        assert storage._checkpointer is None
    finally:
        storage.close()
