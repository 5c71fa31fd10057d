"""The hot path: fixed statements compiled once and run on the DB-API cursor."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy import Dialect
from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from pbidentity.storage.sql._unit import _Unit


# The hot path ------------------------------------------------------------------
#
# SQLAlchemy's per-execution bookkeeping costs about three times what SQLite
# needs to run a primary-key lookup, and every IdP request runs a handful of
# fixed statements (token, tenant, the resource, its groups). Those statements
# are compiled once per dialect (see _fast) and run on the DBAPI cursor of the same
# connection, inside the same transaction; parameters and results still go
# through the SQLAlchemy types' own bind and result processors, so values are
# exactly what a Core execution would give. When the engine has cursor
# listeners (a host app's tracing or query logging), every statement goes
# through Core instead, so that instrumentation still sees all of them; the
# test suites run on such an engine too ("sqlite-traced"). Measured on the
# Okta-like workload, this path doubles the SQLite throughput of reads and
# single-resource writes, which is why it stays.


def _row_class(keys: tuple[str, ...]) -> Any:
    # A named tuple gives the attribute and index access of SQLAlchemy's Row.
    return collections.namedtuple("Row", keys, rename=True)


class _Fast:
    """A statement compiled once for a dialect, run on the DBAPI cursor."""

    def __init__(
        self, statement: Any, dialect: Dialect, column_keys: Sequence[str] | None = None
    ) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        self.statement = statement
        self.sql = str(compiled)
        self.positional = compiled.positional
        self.names: tuple[str, ...] = tuple(
            compiled.positiontup if compiled.positional else compiled.binds
        )
        # Literal parameters SQLAlchemy adds itself (SQLite's "LIMIT -1" before
        # an OFFSET) keep the value they were compiled with.
        self.defaults = {
            name: bind.value for name, bind in compiled.binds.items() if not bind.required
        }
        self.bind_processors = {
            name: dialect.type_descriptor(bind.type).bind_processor(dialect)
            for name, bind in compiled.binds.items()
        }
        self.plan = tuple((name, self.bind_processors.get(name)) for name in self.names)
        columns: Any = getattr(statement, "selected_columns", None)
        if columns is None:
            # What an INSERT or UPDATE returns (nothing without RETURNING).
            columns = getattr(statement, "exported_columns", ())
        selected = list(columns)
        self.keys = tuple(column.key for column in selected)
        self.row: Any = _row_class(self.keys)
        self.result_processors = tuple(
            dialect.type_descriptor(column.type).result_processor(dialect, None)
            for column in selected
        )
        self.dbapi_error: type[Exception] = dialect.loaded_dbapi.Error

    def _core_values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        # Only this statement's parameters: Core derives an UPDATE's SET
        # clause from the keys it is given.
        return {name: values[name] for name in self.names if name in values}

    def _parameters(self, values: Mapping[str, Any]) -> Any:
        defaults = self.defaults
        processed = [
            (value if processor is None else processor(value))
            for name, processor in self.plan
            for value in (values[name] if name in values else defaults[name],)
        ]
        if self.positional:
            return tuple(processed)
        return dict(zip(self.names, processed, strict=True))

    def _cursor(self, tx: _Unit, values: Mapping[str, Any]) -> Any:
        parameters = self._parameters(values)
        dbapi = tx._dbapi
        cursor = dbapi.cursor()
        try:
            if tx._begin is None and not tx._queued:
                cursor.execute(self.sql, parameters)
            else:
                # The unit's BEGIN (and writes queued since, see
                # _Unit._run_many_later) and this statement in one pipeline,
                # whose end waits for all: one round trip where the driver's
                # own BEGIN would wait for its answer first. The statement's
                # result is on the cursor after that, as without a pipeline.
                begin, tx._begin = tx._begin, None
                queued, tx._queued = tx._queued, []
                with dbapi.pipeline():
                    if begin is not None:
                        dbapi.execute(begin)
                    for sql, rows in queued:
                        dbapi.cursor().executemany(sql, rows)
                    cursor.execute(self.sql, parameters)
        except self.dbapi_error as error:
            cursor.close()
            raise DBAPIError.instance(
                self.sql, parameters, error, self.dbapi_error, dialect=tx._dialect_impl
            ) from error
        return cursor

    def rows(self, tx: _Unit, values: Mapping[str, Any]) -> Sequence[Any]:
        """Run a query and return its rows, values processed as Core would.

        A unit whose statements must go through Core runs it there instead
        (see :func:`_instrumented`).
        """
        if tx._core:
            return tx._conn.execute(self.statement, self._core_values(values)).all()
        cursor = self._cursor(tx, values)
        try:
            raw = cursor.fetchall()
        finally:
            cursor.close()
        processors = self.result_processors
        make = self.row._make
        return [
            make(
                value if proc is None else proc(value)
                for proc, value in zip(processors, row, strict=True)
            )
            for row in raw
        ]

    def run_many(self, tx: _Unit, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run a write once per row of parameters (an ``executemany``); the rows matched in all.

        Both drivers (sqlite3, psycopg) sum the rows each run matched.
        """
        if tx._core:
            result = tx._conn.execute(self.statement, [self._core_values(row) for row in rows])
            return int(result.rowcount)
        parameters = [self._parameters(row) for row in rows]
        tx._send_pending()
        cursor = tx._dbapi.cursor()
        try:
            cursor.executemany(self.sql, parameters)
            return int(cursor.rowcount)
        except self.dbapi_error as error:
            raise DBAPIError.instance(
                self.sql, parameters, error, self.dbapi_error, dialect=tx._dialect_impl
            ) from error
        finally:
            cursor.close()

    def run(self, tx: _Unit, values: Mapping[str, Any]) -> int:
        """Run a write and return the number of rows it matched."""
        if tx._core:
            return int(tx._conn.execute(self.statement, self._core_values(values)).rowcount)
        cursor = self._cursor(tx, values)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()


def _instrumented(connection: Connection | Engine) -> bool:
    """Whether something listens to cursor executions on this connection or engine."""
    dispatch = connection.dispatch
    return bool(dispatch.before_cursor_execute or dispatch.after_cursor_execute)


# What the compiled form of a statement depends on besides the statement: the
# SQL dialect and its driver (the parameter style, the type processors), the
# parameter style the engine was configured with, and the server version
# (a dialect may compile differently for an older server).
_DialectKey = tuple[str, str, str, tuple[int | str, ...] | None]
_FAST: dict[tuple[Any, _DialectKey, tuple[str, ...] | None], _Fast] = {}
_FAST_CACHE_SIZE = 2048


def _dialect_key(dialect: Dialect) -> _DialectKey:
    version = dialect.server_version_info
    return (dialect.name, dialect.driver, dialect.paramstyle, None if version is None else version)


def _fast(statement: Any, dialect: Dialect, column_keys: Sequence[str] | None = None) -> _Fast:
    """The compiled form of a statement for a dialect (a benign race may compile it twice).

    The key holds the statement object itself, so it stays alive as long as
    its entry: an entry can never be found for another statement (as a
    recycled ``id()`` could be). The statements run this way are built once
    (module-level, or :func:`~pbidentity.storage.sql._compile._lookup`'s).
    """
    key = (
        statement,
        _dialect_key(dialect),
        None if column_keys is None else tuple(column_keys),
    )
    compiled = _FAST.get(key)
    if compiled is None:
        compiled = _Fast(statement, dialect, column_keys)
        # Updates are compiled per set of changed columns; clients choose
        # those sets, so the cache is bounded (past it, compile every time).
        if len(_FAST) < _FAST_CACHE_SIZE:
            _FAST[key] = compiled
    return compiled
