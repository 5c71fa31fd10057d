"""The portal through every adapter: a set-up link opened, a page read, a form sent."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

import pbidentity.asgi
import pbidentity.fastapi
import pbidentity.flask
import pbidentity.wsgi
from pbidentity import PbIdentity
from pbidentity.portal import Portal
from pbidentity.saml import SamlConfig
from tests.portal.conftest import SECRET


def _wsgi(identity: PbIdentity, portal: Portal) -> Any:
    return pbidentity.wsgi.make_app(identity, mounts={"/portal": portal})


def _flask(identity: PbIdentity, portal: Portal) -> Any:
    import flask

    app = flask.Flask("host")
    pbidentity.flask.init_app(app, identity, mounts={"/portal": portal})
    return app


def _asgi(identity: PbIdentity, portal: Portal) -> Any:
    return pbidentity.asgi.make_app(identity, mounts={"/portal": portal})


def _fastapi(identity: PbIdentity, portal: Portal) -> Any:
    from fastapi import FastAPI

    app = FastAPI()
    pbidentity.fastapi.init_app(app, identity, mounts={"/portal": portal})
    return app


@contextmanager
def _client(kind: str, app: Any) -> Iterator[Any]:
    if kind in ("wsgi", "flask"):
        transport = httpx.WSGITransport(app=app)
        with httpx.Client(transport=transport, base_url="https://app.example") as client:
            yield client
        return
    with asyncio.Runner() as runner:
        asgi = httpx.ASGITransport(app=app)
        remote = httpx.AsyncClient(transport=asgi, base_url="https://app.example")
        yield _Sync(runner, remote)
        runner.run(remote.aclose())


class _Sync:
    """An async httpx client driven from sync code, one event loop for all its requests."""

    def __init__(self, runner: asyncio.Runner, client: httpx.AsyncClient) -> None:
        self._runner = runner
        self._client = client

    def get(self, url: str, **options: Any) -> httpx.Response:
        """GET ``url``."""
        return self._runner.run(self._client.get(url, **options))

    def post(self, url: str, **options: Any) -> httpx.Response:
        """POST to ``url``."""
        return self._runner.run(self._client.post(url, **options))


ADAPTERS: dict[str, Callable[[PbIdentity, Portal], Any]] = {
    "wsgi": _wsgi,
    "flask": _flask,
    "asgi": _asgi,
    "fastapi": _fastapi,
}


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_a_set_up_link_opens_the_portal_through_the_adapter(kind: str, tmp_path: Path) -> None:
    """Link page, opening POST, the SCIM page and its switch form, each through the adapter."""
    identity = PbIdentity(
        f"sqlite:///{tmp_path / 'host.db'}", saml=SamlConfig(public_url="https://app.example")
    )
    identity.admin.create_tenant("acme")
    portal = Portal(identity, authorize=lambda request: None, secret=SECRET)
    token = portal.links.issue("acme", created_by="owner").token
    with _client(kind, ADAPTERS[kind](identity, portal)) as browser:
        shown = browser.get("/portal/setup", params={"token": token})
        assert shown.status_code == 200
        assert shown.headers["content-type"] == "text/html; charset=utf-8"
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', shown.text))
        opened = browser.post("/portal/setup", data=fields, follow_redirects=False)
        assert opened.status_code == 303
        assert opened.headers["location"] == "/portal/w/acme/sso"
        page = browser.get("/portal/w/acme/scim")
        assert page.status_code == 200
        assert '<code id="scim-base-url">https://app.example/scim/v2</code>' in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        switched = browser.post(
            "/portal/w/acme/scim/switch",
            data={"csrf": csrf.group(1), "enabled": "on"},
            follow_redirects=False,
        )
        assert switched.status_code == 303
        assert browser.get("/portal/static/portal.css").status_code == 200
    assert identity.admin.get_tenant("acme").scim_enabled
    identity.close()
