"""What every part of a SQL transaction shares: its connection, execution and savepoints."""

from __future__ import annotations

import functools
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any
from typing import Concatenate
from typing import ParamSpec
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import PoolProxiedConnection

from pbidentity.domain import Member
from pbidentity.exceptions import StorageError
from pbidentity.storage import _conflicts
from pbidentity.storage.sql._errors import _storage_error
from pbidentity.storage.sql._execute import _fast

_P = ParamSpec("_P")
_R = TypeVar("_R")
_U = TypeVar("_U", bound="_Unit")


def _guarded(
    method: Callable[Concatenate[_U, _P], _R],
) -> Callable[Concatenate[_U, _P], _R]:
    """Turn driver errors raised by a protocol method that reads into pbidentity errors."""
    return _protocol_method(method, writes=False)


def _writing(
    method: Callable[Concatenate[_U, _P], _R],
) -> Callable[Concatenate[_U, _P], _R]:
    """As :func:`_guarded`, for a method that writes: refused in a ``write=False`` unit."""
    return _protocol_method(method, writes=True)


def _protocol_method(
    method: Callable[Concatenate[_U, _P], _R], *, writes: bool
) -> Callable[Concatenate[_U, _P], _R]:
    name = method.__name__

    @functools.wraps(method)
    def guarded(self: _U, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if self._closed:
            raise RuntimeError("the transaction is over")
        if writes and not self._write:
            # Before any statement: the unit stays as it was, usable for reads.
            raise _conflicts.read_only(name)
        try:
            return method(self, *args, **kwargs)
        except DBAPIError as error:
            raise _storage_error(error) from error
        except SQLAlchemyError as error:
            raise StorageError(f"the database layer failed: {error}") from error

    return guarded


class _Unit:
    """One unit of work on one connection: the state and execution every concern shares."""

    def __init__(
        self,
        engine: Engine,
        *,
        write: bool,
        core: bool,
        connection: Connection | None = None,
        raw: PoolProxiedConnection | None = None,
    ) -> None:
        self._engine = engine
        self._dialect_impl = engine.dialect
        self._dialect = engine.dialect.name
        self._connection = connection
        self._raw = raw
        pooled = connection.connection if connection is not None else raw
        assert pooled is not None  # noqa: S101 - one of the two is always given
        self._dbapi: Any = pooled.driver_connection
        self._closed = False
        # Whether the unit was opened to write (write=False refuses writes).
        self._write = write
        # Whether statements go through Core (see _instrumented), decided once per unit.
        self._core = core
        # Whether the unit may keep its last events for the commit's pipeline
        # (set by SqlStorage: psycopg on the hot path), and those events.
        self._pipelines = False
        self._last_events: list[dict[str, Any]] | None = None
        # The transaction's BEGIN when the unit sends it itself, with its
        # first statement (see _Fast._cursor), until it is sent.
        self._begin: str | None = None
        # Writes whose result nothing reads and which cannot fail, to send
        # with the unit's next statement (see _run_many_later): SQL and
        # processed parameter rows.
        self._queued: list[tuple[str, list[Any]]] = []
        # Members as this unit read or wrote them, so that a replace writes
        # only the columns that change.
        self._read: dict[tuple[str, str], Member] = {}

    def _send_last_events(self) -> None:
        """Write the events kept for the commit now: a statement follows them after all."""
        rows, self._last_events = self._last_events, None
        if rows:
            self._insert_events(rows)

    def _insert_events(self, rows: list[dict[str, Any]]) -> None:
        """Write event rows now (the outbox's, which every transaction is made of)."""
        raise NotImplementedError

    def _send_pending(self) -> None:
        """Send the unit's BEGIN and queued writes now: no statement follows to take them along."""
        begin, self._begin = self._begin, None
        queued, self._queued = self._queued, []
        if begin is None and not queued:
            return
        dbapi_error = self._dialect_impl.loaded_dbapi.Error
        try:
            if not queued:
                self._dbapi.execute(begin)
                return
            with self._dbapi.pipeline():
                if begin is not None:
                    self._dbapi.execute(begin)
                for sql, parameters in queued:
                    self._dbapi.cursor().executemany(sql, parameters)
        except dbapi_error as error:
            raise DBAPIError.instance(
                begin or queued[0][0], (), error, dbapi_error, dialect=self._dialect_impl
            ) from error

    @property
    def _conn(self) -> Connection:
        """The Core connection, made on first use over the unit's DBAPI connection."""
        if self._begin is not None or self._queued:
            self._send_pending()
        if self._last_events is not None:
            self._send_last_events()
        if self._connection is None:
            self._connection = Connection(self._engine, connection=self._raw)
        return self._connection

    def _rows(
        self, statement: Any, values: Mapping[str, Any], column_keys: Sequence[str] | None = None
    ) -> Sequence[Any]:
        if self._last_events is not None:
            self._send_last_events()
        return _fast(statement, self._dialect_impl, column_keys).rows(self, values)

    def _run_many(
        self,
        statement: Any,
        rows: Sequence[Mapping[str, Any]],
        column_keys: Sequence[str] | None = None,
    ) -> int:
        if self._last_events is not None:
            self._send_last_events()
        keys = sorted(rows[0]) if column_keys is None else column_keys
        return _fast(statement, self._dialect_impl, keys).run_many(self, rows)

    def _run_many_later(
        self,
        statement: Any,
        rows: Sequence[Mapping[str, Any]],
        column_keys: Sequence[str] | None = None,
    ) -> None:
        """Run a write whose row count nothing reads and which cannot fail, maybe later.

        On PostgreSQL (psycopg, the hot path) it goes with the unit's next
        statement, or its COMMIT, in one pipeline: one round trip less. Only
        for writes that no constraint can refuse (new keys under a row this
        unit just wrote): an error would come out of that next statement.
        Elsewhere it runs now.
        """
        if not self._pipelines:
            self._run_many(statement, rows, column_keys)
            return
        if self._last_events is not None:
            self._send_last_events()
        keys = sorted(rows[0]) if column_keys is None else column_keys
        fast = _fast(statement, self._dialect_impl, keys)
        self._queued.append((fast.sql, [fast._parameters(row) for row in rows]))

    def _run(
        self, statement: Any, values: Mapping[str, Any], column_keys: Sequence[str] | None = None
    ) -> int:
        if self._last_events is not None:
            self._send_last_events()
        return _fast(statement, self._dialect_impl, column_keys).run(self, values)

    @contextmanager
    def _savepoint(self, *, fallible_statements: int = 1) -> Iterator[None]:
        """Make a failed write leave the transaction as it was, and usable.

        PostgreSQL aborts the whole transaction on an error, so every write
        that may break a constraint runs in a savepoint there. SQLite backs out
        only the failing statement, so a write whose only fallible statement
        is its first needs none (and saves two round trips of SQLAlchemy
        overhead per write); several statements that may each fail do.
        """
        if fallible_statements == 0 or (self._dialect == "sqlite" and fallible_statements == 1):
            yield
            return
        with self._conn.begin_nested():
            yield
