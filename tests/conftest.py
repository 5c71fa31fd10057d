"""Fixtures shared by every test: real SQLite files, tenants, tokens and the real WSGI adapter."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator
from collections.abc import Iterator
from pathlib import Path

import attrs
import httpx
import pytest
import sqlalchemy

from pbidentity.admin import Admin
from pbidentity.scim import ScimConfig
from pbidentity.scim import ScimService
from pbidentity.storage import Storage
from pbidentity.storage import open_storage
from pbidentity.storage.sql import metadata
from pbidentity.wsgi import ScimWsgiApp
from tests import postgres

BASE_URL = "https://app.example/scim/v2"


@attrs.frozen
class Workspace:
    """A tenant with SCIM switched on, a token, and an HTTP client that sends it."""

    slug: str
    token: str
    client: httpx.Client


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database for each test: a SQLite file, then the PostgreSQL server."""
    yield from empty_database(request, tmp_path)


def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of the backend ``request.param`` names.

    ``sqlite-traced`` is the SQLite file with a cursor listener attached to
    every engine while the test runs, as a host app's tracing would be: every
    statement then goes through SQLAlchemy Core instead of the hot path.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'pbidentity.db'}"
        return
    if request.param == "sqlite-traced":
        with traced_engines():
            yield f"sqlite:///{tmp_path / 'pbidentity.db'}"
        return
    url: str = request.getfixturevalue("postgres_url")
    engine = sqlalchemy.create_engine(url)
    wipe_database(engine)
    engine.dispose()
    yield url


def trace_statement(
    _connection: sqlalchemy.Connection,
    _cursor: object,
    statement: str,
    _parameters: object,
    _context: object,
    _executemany: bool,
) -> None:
    """A cursor listener like a tracer's: it looks at every statement."""
    assert statement


@contextlib.contextmanager
def traced_engines() -> Iterator[None]:
    """Attach :func:`trace_statement` to every engine, existing or new, for the block."""
    sqlalchemy.event.listen(sqlalchemy.Engine, "before_cursor_execute", trace_statement)
    try:
        yield
    finally:
        sqlalchemy.event.remove(sqlalchemy.Engine, "before_cursor_execute", trace_statement)


def wipe_database(engine: sqlalchemy.Engine) -> None:
    """Drop pbidentity's tables and its schema revision, leaving an empty database."""
    metadata.drop_all(engine)
    with engine.begin() as connection:
        for table in ("alembic_version", "schema_version"):
            connection.execute(sqlalchemy.text(f"DROP TABLE IF EXISTS {table}"))


@pytest.fixture
def storage(database_url: str) -> Iterator[Storage]:
    """The SQL store on the test's database."""
    store = open_storage(database_url)
    yield store
    store.close()


@pytest.fixture
def admin(storage: Storage) -> Admin:
    """The admin operations on the test's storage."""
    return Admin(storage)


@pytest.fixture
def scim_config() -> ScimConfig:
    """The service configuration; tests override this fixture to change it."""
    return ScimConfig(max_body_bytes=64 * 1024)


@pytest.fixture
def app(storage: Storage, scim_config: ScimConfig) -> ScimWsgiApp:
    """The SCIM service behind the real WSGI adapter."""
    return ScimWsgiApp(ScimService(storage, scim_config))


def make_workspace(admin: Admin, app: ScimWsgiApp, slug: str) -> Workspace:
    """Create a tenant, switch SCIM on, create a token and a client that uses it."""
    admin.create_tenant(slug, slug.title())
    admin.set_scim_enabled(slug, True)
    secret = admin.create_token(slug, "okta").secret
    client = httpx.Client(
        transport=httpx.WSGITransport(app=app),
        base_url=BASE_URL,
        headers={"Authorization": f"Bearer {secret}", "Accept": "application/scim+json"},
    )
    return Workspace(slug=slug, token=secret, client=client)


@pytest.fixture
def acme(admin: Admin, app: ScimWsgiApp) -> Iterator[Workspace]:
    """The tenant most tests act in."""
    workspace = make_workspace(admin, app, "acme")
    yield workspace
    workspace.client.close()


@pytest.fixture
def globex(admin: Admin, app: ScimWsgiApp) -> Iterator[Workspace]:
    """A second tenant, to prove isolation."""
    workspace = make_workspace(admin, app, "globex")
    yield workspace
    workspace.client.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A disposable PostgreSQL database for the whole session.

    ``PBIDENTITY_TEST_POSTGRES_URL`` wins; otherwise a throwaway cluster is
    started here. Without the server programs the tests that need it are
    skipped with a message that says how to get them, except in CI, where
    they must run.
    """
    configured = os.environ.get("PBIDENTITY_TEST_POSTGRES_URL")
    if configured:
        yield configured
        return
    if not postgres.available():
        if in_ci():
            pytest.fail(postgres.HOW_TO_GET_IT)
        pytest.skip(postgres.HOW_TO_GET_IT)
    with postgres.throwaway_cluster() as url:
        yield url


def in_ci() -> bool:
    """Whether this is a CI run (``CI`` set, as CI services and ``.ci/run`` do): all must run."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def pytest_report_header() -> str:
    """Which PostgreSQL the run uses, on the first lines of the report."""
    return f"postgresql: {postgres.describe()}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """In CI, a skipped test is a failed one: what CI cannot run, it has not proved.

    Locally a skip stays a skip, with its reason (what to install, and how) in
    the short summary.
    """
    report: pytest.TestReport = yield
    if report.skipped and in_ci() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        reason = str(reason).removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {reason}"
    return report
