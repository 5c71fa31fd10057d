"""Bare host apps for the portal's browser tests: Flask and FastAPI, nobody signed in.

Each host is what a real one adds to mount the portal: a
:class:`~pbidentity.PbIdentity`, a :class:`~pbidentity.portal.Portal` whose
``authorize`` hook knows nobody, and the adapter's ``init_app`` with the
portal under ``/portal``. The customer's IT admin has no account here: a
set-up link is the only way in. The reference apps' Okta story
(:mod:`tests.e2e.test_browser`) runs through a host with its own sign-in;
these bare hosts let one section's browser test start from a set-up link.
Screenshots go under ``$PBIDENTITY_SCREENSHOTS`` (default ``artifacts/browser``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pbidentity.fastapi
import pbidentity.flask
from pbidentity import PbIdentity
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.portal import Portal
from pbidentity.saml import SamlConfig
from pbidentity.saml import SignInOutcome
from pbidentity.saml import default_result_page
from tests.e2e.test_browser import DEV_HOSTS
from tests.e2e.test_browser import _listening_socket
from tests.e2e.test_browser import _wait_until

__all__ = ["HOSTS", "SCREENSHOTS", "SECRET"]
SECRET = "portal-browser-test-" + "s" * 32
SCREENSHOTS = Path(
    os.environ.get("PBIDENTITY_SCREENSHOTS")
    or Path(__file__).resolve().parents[2] / "artifacts" / "browser"
)


def _identity(database_url: str, public_url: str) -> tuple[PbIdentity, Portal]:
    """What a host app builds: the identity, and the portal that answers its test sign-ins."""
    portal: Portal | None = None

    def on_result(request: Request, outcome: SignInOutcome) -> Response:
        # The portal's own test sign-ins go back to its page; the rest is the host's.
        answered = portal.sign_in_result(request, outcome) if portal else None
        return answered or default_result_page(outcome)

    identity = PbIdentity(
        database_url,
        saml=SamlConfig(public_url=public_url, dev_hosts=DEV_HOSTS),
        on_result=on_result,
    )
    identity.admin.create_tenant("demo", "Demo workspace")
    # Nobody is signed in to these hosts: the set-up link is the only way in.
    portal = Portal(identity, authorize=lambda request: None, secret=SECRET)
    return identity, portal


@contextmanager
def _serve_flask(database_url: str) -> Iterator[tuple[str, Portal]]:
    import flask
    from werkzeug.serving import WSGIRequestHandler
    from werkzeug.serving import make_server

    class Quiet(WSGIRequestHandler):
        def log(self, type: str, message: str, *args: Any) -> None:
            """Keep the test output clean."""

    sock = _listening_socket()
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    identity, portal = _identity(database_url, base_url)
    app = flask.Flask("portal_host")
    pbidentity.flask.init_app(app, identity, mounts={"/portal": portal})
    server = make_server(
        "127.0.0.1", 0, app, threaded=True, request_handler=Quiet, fd=sock.fileno()
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield base_url, portal
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        sock.close()
        identity.close()


@contextmanager
def _serve_fastapi(database_url: str) -> Iterator[tuple[str, Portal]]:
    import uvicorn
    from fastapi import FastAPI

    sock = _listening_socket()
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    identity, portal = _identity(database_url, base_url)
    app = FastAPI()
    pbidentity.fastapi.init_app(app, identity, mounts={"/portal": portal})
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        _wait_until(lambda: server.started or not thread.is_alive(), "uvicorn")
        assert thread.is_alive(), "uvicorn stopped at start-up (see the log above)"
        yield base_url, portal
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        identity.close()


HOSTS = {"flask": _serve_flask, "fastapi": _serve_fastapi}
