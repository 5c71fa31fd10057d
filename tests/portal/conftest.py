"""A portal on a real SQLite file, served through the real WSGI adapter, and its helpers.

The host app's sign-in is played by a header: ``X-Test-Admin: <workspace>``
stands for "the app's session says this admin of that workspace is signed
in". Everything else (the portal's cookie, CSRF, set-up links) is the real
thing, over HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path

import attrs
import httpx
import pytest

from pbidentity import PbIdentity
from pbidentity.http import Request
from pbidentity.portal import Portal
from pbidentity.portal import PortalAccess
from pbidentity.saml import SamlConfig
from pbidentity.wsgi import WsgiApp
from pbidentity.wsgi import make_app

ORIGIN = "https://app.example"
PORTAL = f"{ORIGIN}/portal"
SECRET = "portal-test-secret-" + "x" * 32


@attrs.define
class Clock:
    """A clock the test moves."""

    now: datetime = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        """The current (test) time."""
        return self.now

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward."""
        self.now += delta


def host_admin(request: Request) -> PortalAccess | None:
    """The host app's hook: the admin its (simulated) session names, for that workspace."""
    workspace = request.header("x-test-admin")
    if not workspace:
        return None
    name = request.header("x-test-admin-name") or "Ada Admin"
    return PortalAccess(admin_id=f"user-{workspace}", admin_name=name, workspace=workspace)


@attrs.frozen
class World:
    """The identity, its portal and a browser-like client (keeps cookies)."""

    identity: PbIdentity
    portal: Portal
    clock: Clock
    app: WsgiApp

    def client(self) -> httpx.Client:
        """A new browser: its own cookie jar."""
        return httpx.Client(
            transport=httpx.WSGITransport(app=self.app),
            base_url=ORIGIN,
            follow_redirects=False,
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """Workspaces acme and beta, a portal under /portal, SCIM and SAML beside it."""
    clock = Clock()
    identity = PbIdentity(
        f"sqlite:///{tmp_path / 'portal.db'}",
        saml=SamlConfig(public_url=ORIGIN),
        clock=clock,
    )
    identity.admin.create_tenant("acme", "Acme")
    identity.admin.create_tenant("beta", "Beta")
    portal = Portal(identity, authorize=host_admin, secret=SECRET)
    app = make_app(identity, mounts={"/portal": portal})
    yield World(identity, portal, clock, app)
    identity.close()


def csrf_of(page: httpx.Response) -> str:
    """The CSRF token the page's forms carry."""
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def admin(workspace: str = "acme") -> dict[str, str]:
    """The header that signs the host app's admin of ``workspace`` in."""
    return {"X-Test-Admin": workspace}
