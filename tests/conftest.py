"""Fixtures shared by every test: real SQLite files, tenants, tokens and the real WSGI adapter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import httpx
import pytest

from pbidentity.admin import Admin
from pbidentity.scim import ScimConfig
from pbidentity.scim import ScimService
from pbidentity.storage import Storage
from pbidentity.storage import open_storage
from pbidentity.wsgi import ScimWsgiApp

BASE_URL = "https://app.example/scim/v2"


@attrs.frozen
class Workspace:
    """A tenant with SCIM switched on, a token, and an HTTP client that sends it."""

    slug: str
    token: str
    client: httpx.Client


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """A SQLite file of its own for each test."""
    return f"sqlite:///{tmp_path / 'pbidentity.db'}"


@pytest.fixture
def storage(database_url: str) -> Iterator[Storage]:
    """The SQL store on a real SQLite file."""
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
