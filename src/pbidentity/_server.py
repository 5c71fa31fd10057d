"""``pbidentity serve``: a small threaded HTTP server for the SCIM service.

It is the embedded default for trying pbidentity and for the tests that go over
real HTTP; production deployments mount :class:`~pbidentity.wsgi.ScimWsgiApp`
(or a framework adapter) in the host app's own server instead.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler
from wsgiref.simple_server import WSGIServer
from wsgiref.simple_server import make_server

from pbidentity.admin import Admin
from pbidentity.scim import ScimService
from pbidentity.storage import Storage
from pbidentity.wsgi import DEFAULT_PREFIX
from pbidentity.wsgi import ScimWsgiApp

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment

log = logging.getLogger("pbidentity.server")

DEMO_TENANT = "demo"
DEMO_TOKEN = "demo"  # noqa: S105 - the token's name, not a secret


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        log.info("%s - %s", self.address_string(), format % args)


def _index(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO", "/") not in ("", "/"):
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"Not Found\n"]
    host = environ.get("HTTP_HOST", "localhost")
    body = (
        "pbidentity is running.\n\n"
        f"SCIM base URL: http://{host}{DEFAULT_PREFIX}\n"
        "Authenticate with: Authorization: Bearer <token from 'pbidentity tokens create'>\n"
    ).encode()
    start_response(
        "200 OK",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _demo_token(admin: Admin) -> str:
    """Make sure the demo tenant exists with SCIM on and return a fresh token for it."""
    if DEMO_TENANT not in {tenant.slug for tenant in admin.list_tenants()}:
        admin.create_tenant(DEMO_TENANT, "Demo workspace")
    admin.set_scim_enabled(DEMO_TENANT, True)
    for token in admin.list_tokens(DEMO_TENANT):
        if token.name == DEMO_TOKEN and token.is_active:
            admin.revoke_token(DEMO_TENANT, DEMO_TOKEN)
    return admin.create_token(DEMO_TENANT, DEMO_TOKEN).secret


def serve(storage: Storage, *, host: str, port: int, demo: bool = False) -> int:
    """Serve until interrupted; prints the URLs (and, with ``demo``, a token) first."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = ScimWsgiApp(ScimService(storage), fallback=_index)
    with make_server(
        host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler
    ) as server:
        actual_port = server.server_address[1]
        base = f"http://{host}:{actual_port}{DEFAULT_PREFIX}"
        print(f"SCIM base URL: {base}", flush=True)
        if demo:
            secret = _demo_token(Admin(storage))
            print(f"Demo workspace token (shown once): {secret}")
            print(f"Try: curl -H 'Authorization: Bearer {secret}' {base}/Users", flush=True)
        print("Press Ctrl+C to stop.", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
    return 0
