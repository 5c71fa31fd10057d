"""Engine set-up (SQLite pragmas and locking), database URLs and schema revisions."""

from __future__ import annotations

import time
from select import select as ready_to_read
from typing import Any

from sqlalchemy import Engine
from sqlalchemy import create_engine
from sqlalchemy import event
from sqlalchemy import inspect
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.engine import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import DisconnectionError

from pbidentity.exceptions import ConfigurationError
from pbidentity.exceptions import SchemaVersionError
from pbidentity.storage.sql._execute import _instrumented
from pbidentity.storage.sql._schema import _REVISIONS
from pbidentity.storage.sql._schema import SCHEMA_REVISION
from pbidentity.storage.sql._schema import _legacy_version
from pbidentity.storage.sql._schema import alembic_version
from pbidentity.storage.sql._schema import metadata

#: How long a SQLite connection waits for another writer before giving up.
DEFAULT_BUSY_TIMEOUT_MS = 5000


# The execution option that tells the SQLite "begin" hook a unit only reads.
_WRITE_OPTION = "pbidentity_write"


def _lock_schema(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Two processes starting at once must not race to CREATE or migrate.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": 7_243_501})


def _revision(connection: Connection) -> str | None:
    """The database's schema revision: ``""`` when it is empty, ``None`` when unknown."""
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" in tables:
        found = connection.execute(select(alembic_version.c.version_num)).scalar()
        return None if found is None else str(found)
    if "schema_version" in tables:
        legacy = connection.execute(select(_legacy_version.c.version)).scalar()
        return "0001" if legacy == 1 else None
    return "" if not tables & set(metadata.tables) else None


def _check_revision(found: str | None, *, allow_older: bool) -> None:
    if found is None:
        raise SchemaVersionError(
            "the database has tables but no pbidentity schema revision; point pbidentity at "
            "an empty database or one it created"
        )
    if found not in _REVISIONS:
        raise SchemaVersionError(
            f"the database schema is at revision {found}, newer than this pbidentity "
            f"understands ({SCHEMA_REVISION}); upgrade pbidentity"
        )
    if found != SCHEMA_REVISION and not allow_older:
        raise SchemaVersionError(
            f"the database schema is at revision {found}, older than this pbidentity needs "
            f"({SCHEMA_REVISION}); back it up, then run: pbidentity db upgrade"
        )


def schema_revision(engine: Engine) -> str | None:
    """The schema revision of the database behind ``engine`` (``""``: empty; ``None``: unknown)."""
    with engine.connect() as connection:
        return _revision(connection)


def upgrade_schema(engine: Engine) -> tuple[str, str]:
    """Bring the database to :data:`SCHEMA_REVISION` with Alembic; returns (from, to).

    An empty database is built by the migrations themselves; one made by the
    first release (a ``schema_version`` table) is recognised as revision
    0001. A database at an unknown, newer revision is refused. Runs in one
    transaction (PostgreSQL and SQLite both have transactional DDL), under
    an advisory lock on PostgreSQL so that two instances never migrate at once.
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "pbidentity.storage:migrations")
    with engine.begin() as connection:
        _lock_schema(connection)
        found = _revision(connection)
        if found:
            _check_revision(found, allow_older=True)
        config.attributes["connection"] = connection
        if found == "0001" and "alembic_version" not in inspect(connection).get_table_names():
            command.stamp(config, "0001")
        if found != SCHEMA_REVISION:
            try:
                command.upgrade(config, "head")
            except RuntimeError as error:
                # A migration that refuses data it cannot carry over says why;
                # the transaction rolls back and the database stays as it was.
                raise SchemaVersionError(str(error)) from error
    return found or "", SCHEMA_REVISION


def _begin_sqlite(connection: Connection, statement: str) -> None:
    dbapi_error = connection.dialect.loaded_dbapi.Error
    try:
        connection.connection.driver_connection.execute(statement)  # type: ignore[union-attr]
    except dbapi_error as error:
        raise DBAPIError.instance(
            statement, (), error, dbapi_error, dialect=connection.dialect
        ) from error


_MMAP_BYTES = 256 * 1024 * 1024
_CACHE_KIB = 32 * 1024


def _sqlite_engine(url: URL, busy_timeout_ms: int) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or "mode=memory" in database
    if in_memory or url.query.get("mode") == "memory":
        raise ConfigurationError(
            f"{url.render_as_string(hide_password=True)!r} is an in-memory SQLite database, "
            "which each connection would see empty; use memory:// or a file"
        )
    # Every unit ends with a commit or a rollback, so the pool's own rollback
    # on check-in would only repeat one.
    engine = create_engine(url, pool_reset_on_return=None)

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook emit BEGIN itself (the sqlite3
        # module's implicit BEGIN is deferred and breaks savepoints).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Reads from the operating system's page cache instead of copying
        # pages into SQLite's own, and a larger cache for the hot indexes.
        cursor.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
        cursor.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        # LIKE is then case-sensitive, as on PostgreSQL; case-insensitive
        # matching always goes through the *_folded columns.
        cursor.execute("PRAGMA case_sensitive_like=ON")
        cursor.close()

    def on_begin(connection: Connection) -> None:
        # A unit that may write takes the write lock up front: a deferred
        # transaction that reads and then writes can fail with SQLITE_BUSY
        # instead of waiting its turn. A read-only unit takes no lock at all
        # and, in WAL mode, never waits for a writer.
        statement = (
            "BEGIN IMMEDIATE"
            if connection.get_execution_options().get(_WRITE_OPTION, True)
            else "BEGIN"
        )
        if _instrumented(connection):
            connection.exec_driver_sql(statement)
        elif not connection.connection.driver_connection.in_transaction:  # type: ignore[union-attr]
            # The unit already began on the DBAPI connection (see
            # SqlStorage._lean_transaction); Core is only joining it.
            _begin_sqlite(connection, statement)

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    return engine


#: A pooled PostgreSQL connection idle for longer than this is pinged before
#: a unit uses it, even if its socket says nothing (a network may drop it).
_IDLE_BEFORE_PING_S = 5.0
_IDLE_SINCE = "pbidentity_idle_since"


def _postgres_engine(url: URL) -> Engine:
    """An engine on a server database whose pool checks a connection without a round trip.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: one more round
    trip for each unit, two for each SCIM write, whose whole budget is a few.
    A connection the server closed while it sat in the pool (a restart, a
    terminated backend, an idle timeout) has its socket readable (the
    server's goodbye, then end of file), while a live idle one has nothing
    to read: that costs one ``select`` call, and only then, or after the
    connection idled for a while (a network that dropped it says nothing),
    is it pinged, and replaced if dead, before the unit starts.
    """
    engine = create_engine(url)

    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None:
            return  # just connected
        if time.monotonic() - since < _IDLE_BEFORE_PING_S and not _readable(dbapi_connection):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool drops this connection and checks out another.
            raise DisconnectionError(f"a pooled connection is gone: {error}") from error

    event.listen(engine, "checkin", on_checkin)
    event.listen(engine, "checkout", on_checkout)
    return engine


def _readable(dbapi_connection: Any) -> bool:
    """Whether an idle connection's socket has something to read (so the server closed it)."""
    fileno = getattr(dbapi_connection, "fileno", None)
    if fileno is None:
        return True  # a driver that does not say: ping
    try:
        ready, _, _ = ready_to_read([fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


_URL_EXAMPLES = "sqlite:///FILE.db, postgresql://USER@HOST/DATABASE (postgres:// too) or memory://"

# The extra that brings a backend's driver.
_EXTRAS = {"postgresql": "postgres"}


def database_url(url: str) -> URL:
    """Parse a database URL, with the spellings hosts give PostgreSQL mapped to psycopg 3.

    ``postgres://`` is what Heroku, Render, Fly and others put in
    ``DATABASE_URL``; a bare ``postgresql://`` would pick SQLAlchemy's default
    driver (psycopg2 before SQLAlchemy 2.1), while the ``postgres`` extra
    installs psycopg 3. Raises :class:`~pbidentity.exceptions.ConfigurationError`
    for text that is not a URL at all.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise ConfigurationError(
            f"{url!r} is not a database URL; expected {_URL_EXAMPLES}"
        ) from error
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername.startswith("postgres+"):
        parsed = parsed.set(drivername="postgresql+" + parsed.drivername.split("+", 1)[1])
    return parsed
