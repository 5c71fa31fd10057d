"""The SQL :class:`~pbidentity.storage.Storage`: opens engines and runs transactions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextlib import suppress
from typing import Any

from sqlalchemy import Engine
from sqlalchemy import insert
from sqlalchemy.engine import Connection
from sqlalchemy.engine import RootTransaction
from sqlalchemy.exc import ArgumentError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import NoSuchModuleError

from pbidentity.exceptions import ConfigurationError
from pbidentity.exceptions import NotFoundError
from pbidentity.exceptions import StorageUnavailableError
from pbidentity.storage.sql._engine import _EXTRAS
from pbidentity.storage.sql._engine import _URL_EXAMPLES
from pbidentity.storage.sql._engine import _WRITE_OPTION
from pbidentity.storage.sql._engine import DEFAULT_BUSY_TIMEOUT_MS
from pbidentity.storage.sql._engine import _check_revision
from pbidentity.storage.sql._engine import _lock_schema
from pbidentity.storage.sql._engine import _postgres_engine
from pbidentity.storage.sql._engine import _revision
from pbidentity.storage.sql._engine import _sqlite_engine
from pbidentity.storage.sql._engine import database_url
from pbidentity.storage.sql._engine import upgrade_schema
from pbidentity.storage.sql._errors import _driver_error
from pbidentity.storage.sql._errors import _is_foreign_key
from pbidentity.storage.sql._errors import _storage_error
from pbidentity.storage.sql._execute import _fast
from pbidentity.storage.sql._execute import _instrumented
from pbidentity.storage.sql._schema import SCHEMA_REVISION
from pbidentity.storage.sql._schema import _version_metadata
from pbidentity.storage.sql._schema import alembic_version
from pbidentity.storage.sql._schema import metadata
from pbidentity.storage.sql._statements import _INSERT_EVENT
from pbidentity.storage.sql._transaction import _SqlTransaction


class SqlStorage:
    """A :class:`~pbidentity.storage.Storage` on a SQLAlchemy :class:`~sqlalchemy.Engine`.

    ``SqlStorage(engine)`` uses the host app's engine (PostgreSQL: its pool is
    shared, and left open by :meth:`close`). A SQLite engine is not used as
    is: SQLite needs per-connection settings that would change the host's own
    transactions, so pbidentity opens its own engine on the same file.
    The schema is created on first use.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        upgrade: bool = False,
    ) -> None:
        self._owns_engine = engine.dialect.name == "sqlite"
        if self._owns_engine:
            engine = _sqlite_engine(engine.url, busy_timeout_ms)
        self._engine = engine
        self._upgrade = upgrade
        self._schema_lock = threading.Lock()
        self._schema_ready = False

    @classmethod
    def from_url(
        cls, url: str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS, upgrade: bool = False
    ) -> SqlStorage:
        """Open the database a SQLAlchemy URL names (``sqlite:///file.db``, ``postgresql+psycopg://...``)."""
        parsed = database_url(url)
        shown = parsed.render_as_string(hide_password=True)
        try:
            engine = (
                _sqlite_engine(parsed, busy_timeout_ms)
                if parsed.get_backend_name() == "sqlite"
                else _postgres_engine(parsed)
            )
        except NoSuchModuleError as error:
            raise ConfigurationError(
                f"cannot use database URL {shown!r}: unknown scheme {parsed.drivername!r}; "
                f"expected {_URL_EXAMPLES}"
            ) from error
        except ImportError as error:
            extra = _EXTRAS.get(parsed.get_backend_name())
            hint = f": pip install 'pbidentity[{extra}]'" if extra else ""
            raise ConfigurationError(
                f"cannot use database URL {shown!r}: {error.name or error} is not installed{hint}"
            ) from error
        except ArgumentError as error:
            raise ConfigurationError(f"cannot use database URL {shown!r}: {error}") from error
        storage = cls.__new__(cls)
        storage._engine = engine
        storage._owns_engine = True
        storage._upgrade = upgrade
        storage._schema_lock = threading.Lock()
        storage._schema_ready = False
        return storage

    @property
    def engine(self) -> Engine:
        """The engine pbidentity uses (for the host app's health checks and tests)."""
        return self._engine

    def _ensure_schema(self) -> None:
        if not self._schema_ready:
            with self._schema_lock:
                if not self._schema_ready:
                    self._create_schema()
                    self._schema_ready = True

    def _create_schema(self) -> None:
        try:
            with self._engine.begin() as connection:
                _lock_schema(connection)
                found = _revision(connection)
                if found == "":
                    # An empty database: the current schema at once.
                    metadata.create_all(connection)
                    _version_metadata.create_all(connection)
                    connection.execute(insert(alembic_version), [{"version_num": SCHEMA_REVISION}])
                    return
                _check_revision(found, allow_older=self._upgrade)
            if found != SCHEMA_REVISION:
                upgrade_schema(self._engine)
        except DBAPIError as error:
            raise _storage_error(error) from error

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[_SqlTransaction]:
        """Open a unit of work: commits on exit, rolls back on an exception.

        ``write=False`` starts a deferred transaction on SQLite (no write
        lock); on every database the unit refuses writes
        (:class:`~pbidentity.exceptions.ReadOnlyTransactionError`).
        """
        self._ensure_schema()
        if self._engine.dialect.name == "sqlite" and not _instrumented(self._engine):
            with self._lean_transaction(write) as tx:
                yield tx
            return
        try:
            connection = self._engine.connect()
        except DBAPIError as error:
            raise _storage_error(error) from error
        if not write:
            connection.execution_options(**{_WRITE_OPTION: False})
            if (
                connection.dialect.name == "postgresql"
                and connection.default_isolation_level == "READ COMMITTED"
            ):
                # Under READ COMMITTED each statement reads its own snapshot
                # anyway, so a unit that only reads is the same without a
                # transaction around it: no BEGIN and no COMMIT, two round
                # trips of a GET's four, and of a write's first unit.
                connection.execution_options(isolation_level="AUTOCOMMIT")
        core = _instrumented(connection)
        begin = _own_begin(connection) if write and not core else None
        try:
            transaction = connection.begin()
        except DBAPIError as error:
            connection.close()
            raise _storage_error(error) from error
        tx = _SqlTransaction(self._engine, write=write, core=core, connection=connection)
        tx._pipelines = write and not core and _pipelines(tx._dbapi)
        tx._begin = begin
        try:
            try:
                yield tx
            except BaseException:
                tx._closed = True
                # The original error says more than a failed rollback; the
                # connection is discarded by close() below.
                with suppress(DBAPIError):
                    transaction.rollback()
                raise
            tx._closed = True
            last_events, tx._last_events = tx._last_events, None
            try:
                if last_events or tx._queued:
                    _commit_with_events(tx, transaction, last_events or [])
                else:
                    transaction.commit()
            except DBAPIError as error:
                if last_events and isinstance(error, IntegrityError) and _is_foreign_key(error):
                    raise NotFoundError("an event names a tenant that does not exist") from error
                # A commit that failed otherwise (the connection lost while
                # it waited) leaves the connection in no known state: it is
                # discarded, not rolled back on close, which on a lost
                # connection would fail too and hide this error behind a 500.
                with suppress(DBAPIError):
                    connection.invalidate()
                raise _storage_error(error) from error
        finally:
            connection.close()

    @contextmanager
    def _lean_transaction(self, write: bool) -> Iterator[_SqlTransaction]:
        """A SQLite unit begun and ended on the pooled DBAPI connection.

        Core's connection, begin and commit cost more than a primary-key read,
        and most units only run hot-path statements. When a Core statement
        does run, a Core connection is made over the same DBAPI connection and
        autobegins on top of the open transaction (the "begin" hook sees it
        and emits nothing); Core then ends it.
        """
        dbapi_error = self._engine.dialect.loaded_dbapi.Error
        try:
            raw = self._engine.raw_connection()
        except (DBAPIError, dbapi_error) as error:
            raise StorageUnavailableError(f"the database cannot be opened: {error}") from error
        tx = _SqlTransaction(self._engine, write=write, core=False, raw=raw)
        dbapi = tx._dbapi
        try:
            try:
                dbapi.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except dbapi_error as error:
                raise _driver_error("BEGIN", error, dbapi_error) from error
            try:
                yield tx
            except BaseException:
                tx._closed = True
                with suppress(DBAPIError, dbapi_error):
                    if tx._connection is not None and tx._connection.in_transaction():
                        tx._connection.rollback()
                    else:
                        dbapi.rollback()
                raise
            tx._closed = True
            try:
                if tx._connection is not None and tx._connection.in_transaction():
                    tx._connection.commit()
                else:
                    dbapi.commit()
            except DBAPIError as error:
                raise _storage_error(error) from error
            except dbapi_error as error:
                raise _driver_error("COMMIT", error, dbapi_error) from error
        finally:
            if tx._connection is not None:
                tx._connection.close()  # returns the DBAPI connection to the pool
            else:
                raw.close()

    def close(self) -> None:
        """Release the connections of an engine pbidentity created (not a host's)."""
        if self._owns_engine:
            self._engine.dispose()


def _pipelines(dbapi_connection: Any) -> bool:
    """Whether the driver connection has psycopg's pipeline mode (libpq 14 or later)."""
    driver = type(dbapi_connection)
    found = _PIPELINE_DRIVERS.get(driver)
    if found is None:
        found = _PIPELINE_DRIVERS[driver] = _has_pipeline(driver)
    return found


_PIPELINE_DRIVERS: dict[type, bool] = {}


def _has_pipeline(driver: type) -> bool:
    if driver.__module__.partition(".")[0] != "psycopg":
        return False  # sqlite3, psycopg2, asyncpg...: a host app's engine may be any
    import psycopg

    return issubclass(driver, psycopg.Connection) and psycopg.Pipeline.is_supported()


def _own_begin(connection: Connection) -> str | None:
    """Let the unit send its transaction's BEGIN itself, with its first statement; the BEGIN.

    psycopg sends BEGIN before a transaction's first statement, and waits for
    its answer even in pipeline mode. With the connection in autocommit mode
    (as Core sets it for this unit only, and resets it when the connection
    goes back to the pool) the driver sends none, and the unit's first
    statement takes the same BEGIN along in one round trip (see
    ``_Fast._cursor``). Commit and rollback are the driver's as before: it
    sees the transaction the server reports. ``None`` where the driver has
    no pipeline mode, or the connection is in autocommit mode already.
    """
    dbapi: Any = connection.connection.driver_connection
    if not _pipelines(dbapi) or dbapi.autocommit:
        return None
    words = ["BEGIN"]
    if dbapi.isolation_level is not None:
        words += ["ISOLATION LEVEL", dbapi.isolation_level.name.replace("_", " ")]
    if dbapi.read_only is not None:
        words.append("READ ONLY" if dbapi.read_only else "READ WRITE")
    if dbapi.deferrable is not None:
        words.append("DEFERRABLE" if dbapi.deferrable else "NOT DEFERRABLE")
    connection.execution_options(isolation_level="AUTOCOMMIT")
    return " ".join(words)


def _commit_with_events(
    tx: _SqlTransaction, transaction: RootTransaction, rows: list[dict[str, Any]]
) -> None:
    """Send the unit's last events (and queued writes) and COMMIT in one pipeline: one round trip.

    An event of a missing tenant breaks the foreign key, which aborts the
    pipeline: COMMIT is skipped, the transaction rolls back whole, and the
    error comes out of the commit.
    """
    fast = _fast(_INSERT_EVENT, tx._dialect_impl)
    parameters = [fast._parameters(row) for row in rows]
    dbapi = tx._dbapi
    dbapi_error = tx._dialect_impl.loaded_dbapi.Error
    queued, tx._queued = tx._queued, []
    try:
        with dbapi.pipeline():
            cursor = dbapi.cursor()
            try:
                # Writes queued since the last statement go first (see
                # _Unit._run_many_later); a unit that queued any has begun.
                for sql, queued_rows in queued:
                    cursor.executemany(sql, queued_rows)
                if parameters:
                    cursor.executemany(fast.sql, parameters)
                # As a statement of the pipeline, not the driver's commit(),
                # which would wait for it and then for the pipeline's end:
                # the end's one sync waits for both.
                cursor.execute("COMMIT")
            finally:
                cursor.close()
    except dbapi_error as error:
        raise DBAPIError.instance(
            fast.sql, parameters, error, dbapi_error, dialect=tx._dialect_impl
        ) from error
    # Core's bookkeeping; the driver sees the transaction over and sends nothing.
    transaction.commit()
