"""The reference apps on real servers, and a browser-like client to drive their pages.

Each app runs as a local run would: on 127.0.0.1 with its public URL and
dev host set to that address and port (uvicorn for FastAPI, werkzeug's
threaded server for Flask), on a SQLite file. The socket is bound before
the app is built, so that the public URL names the real port.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from typing import Literal
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import attrs
import httpx
import lxml.html
from examples.common.context import AppContext

from tests.saml.idp import TestIdp

AppKind = Literal["fastapi", "flask"]

OWNER_TOKEN = "owner-token-for-tests"


@attrs.frozen
class Running:
    """A reference app being served: its URL and its services (to arrange what the IdP does)."""

    kind: AppKind
    base_url: str
    ctx: AppContext
    #: Every browser handed out, closed when the app stops.
    browsers: list[httpx.Client] = attrs.field(factory=list)

    def client(self) -> httpx.Client:
        """A new browser: its own cookie jar, redirects not followed (the tests check them)."""
        browser = httpx.Client(base_url=self.base_url, timeout=10)
        self.browsers.append(browser)
        return browser

    def owner(self, workspace: str = "demo") -> httpx.Client:
        """A browser signed in as the owner of ``workspace`` through a new ``/bootstrap`` link."""
        client = self.client()
        token = self.ctx.owner_links.issue(workspace)
        answer = redeem_owner_link(client, {"token": token, "workspace": workspace})
        assert answer.status_code == 303, answer.text
        return client


def redeem_owner_link(client: httpx.Client, params: dict[str, str]) -> httpx.Response:
    """Open an owner link (its page) and press its button: the answer to the button's POST."""
    shown = client.get("/bootstrap", params=params)
    assert shown.status_code == 200, shown.text
    form = Page(shown).find("owner-sign-in")
    fields = {i.get("name"): i.get("value") for i in form.xpath(".//input[@type='hidden']")}
    return client.post(form.get("action"), data=fields)


@contextmanager
def serve(kind: AppKind, database_url: str) -> Iterator[Running]:
    """Build the app (``demo=True``) on ``database_url`` and serve it in a thread."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    options: dict[str, Any] = {
        "public_url": f"http://127.0.0.1:{port}",
        "dev_hosts": frozenset({"127.0.0.1"}),
        "owner_token": OWNER_TOKEN,
        "secret_key": "a secret key for the tests",
        "demo": True,
    }
    try:
        with (_uvicorn if kind == "fastapi" else _werkzeug)(listener, database_url, options) as ctx:
            running = Running(kind, options["public_url"], ctx)
            try:
                yield running
            finally:
                for browser in running.browsers:
                    browser.close()
    finally:
        listener.close()


@contextmanager
def _uvicorn(listener: socket.socket, database_url: str, options: Any) -> Iterator[AppContext]:
    import uvicorn
    from examples.fastapi_app import create_app

    app = create_app(database_url, **options)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield app.state.context
    finally:
        # The app's lifespan closes its storage when uvicorn shuts down.
        server.should_exit = True
        thread.join(10)


@contextmanager
def _werkzeug(listener: socket.socket, database_url: str, options: Any) -> Iterator[AppContext]:
    from examples.flask_app import EXTENSION
    from examples.flask_app import create_app
    from werkzeug.serving import make_server

    app = create_app(database_url, **options)
    server = make_server("127.0.0.1", 0, app, threaded=True, fd=listener.fileno())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ctx: AppContext = app.extensions[EXTENSION]
    try:
        yield ctx
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        ctx.close()


class Page:
    """An HTML answer, with the lookups the tests make (ids and classes of the page contract)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status = response.status_code
        self.tree = lxml.html.fromstring(response.text)

    def find(self, element_id: str) -> Any:
        """The element with that id, or ``None``."""
        found = self.tree.xpath(f'//*[@id="{element_id}"]')
        return found[0] if found else None

    def text(self, element_id: str) -> str:
        """The text of the element with that id (it must exist)."""
        element = self.find(element_id)
        assert element is not None, f"no #{element_id} in the page"
        return " ".join(str(element.text_content()).split())

    def all(self, css_class: str, within: Any | None = None) -> list[Any]:
        """The elements with that class, in the page or in ``within``."""
        root = self.tree if within is None else within
        found: list[Any] = root.xpath(
            f'.//*[contains(concat(" ", normalize-space(@class), " "), " {css_class} ")]'
        )
        return found

    @property
    def csrf(self) -> str:
        """The CSRF token the page's forms carry."""
        values = self.tree.xpath('//input[@name="csrf"]/@value')
        assert values, "no CSRF field in the page"
        return str(values[0])


def page(client: httpx.Client, path: str, status: int = 200) -> Page:
    """GET a page and check its status."""
    response = client.get(path)
    assert response.status_code == status, (response.status_code, response.text[:2000])
    return Page(response)


@attrs.frozen
class IdpRedirect:
    """Where the app sent the browser to sign in, and the AuthnRequest id it waits for."""

    url: str
    request_id: str
    relay_state: str | None


def read_redirect(response: httpx.Response, idp: TestIdp) -> IdpRedirect:
    """The app's redirect to the IdP's SSO URL (HTTP-Redirect binding), read as the IdP would."""
    assert response.status_code == 302, (response.status_code, response.text[:2000])
    location = response.headers["location"]
    assert location.startswith(idp.sso_url + "?"), location
    query = parse_qs(urlsplit(location).query)
    request = TestIdp.read_authn_request(query["SAMLRequest"][0])
    relay = query.get("RelayState", [None])[0]
    return IdpRedirect(url=location, request_id=request.id, relay_state=relay)
