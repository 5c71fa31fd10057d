"""``pbidentity serve``: pbidentity's pages, SCIM and SAML on the embedded database.

It is the quickest way to try pbidentity and what the tests that go over
real HTTP start. From a source checkout with the ``fastapi`` extra it runs
the FastAPI reference app (``examples/fastapi_app``) under uvicorn, in this
process: a host app that serves the set-up portal (:mod:`pbidentity.portal`)
under ``/portal`` behind its own sign-in, opened by an owner sign-in link
printed at start. Otherwise (an installed package) a small threaded WSGI
server serves SCIM, SAML and the same portal (with the ``portal`` extra)
under ``/portal``, opened by a set-up link printed at start. Production
deployments mount pbidentity's handlers in the host app's own server
instead (:mod:`pbidentity.wsgi`, :mod:`pbidentity.fastapi`...).
"""

from __future__ import annotations

import copy
import errno
import importlib
import logging
import os
import secrets
import socket
import sys
from collections.abc import Callable
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler
from wsgiref.simple_server import WSGIServer
from wsgiref.simple_server import make_server

from pbidentity._front import PbIdentity
from pbidentity.admin import Admin
from pbidentity.exceptions import ConfigurationError
from pbidentity.saml import SamlConfig
from pbidentity.saml import default_result_page
from pbidentity.saml import local_dev_hosts
from pbidentity.wsgi import DEFAULT_PREFIX
from pbidentity.wsgi import make_app

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment

    from pbidentity.http import Request
    from pbidentity.http import Response
    from pbidentity.portal import Portal
    from pbidentity.saml import SignInOutcome

log = logging.getLogger("pbidentity.server")

DEMO_TENANT = "demo"
PORTAL_PREFIX = "/portal"
#: How long the set-up link printed at start can be opened.
PORTAL_LINK_LIFETIME = timedelta(hours=1)
DEMO_TOKEN = "demo"  # noqa: S105 - the token's name, not a secret
SAML_PREFIX = "/saml"


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        log.info("%s - %s", self.address_string(), format % args)


def _index(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The root page: where SCIM and SAML are (the portal is not served)."""
    return _root_page(environ, start_response, portal=False)


def _index_with_portal(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The root page: where the portal, SCIM and SAML are."""
    return _root_page(environ, start_response, portal=True)


def _root_page(
    environ: WSGIEnvironment, start_response: StartResponse, *, portal: bool
) -> Iterable[bytes]:
    if environ.get("PATH_INFO", "/") not in ("", "/"):
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"Not Found\n"]
    host = environ.get("HTTP_HOST", "localhost")
    pages = (
        f"Set-up portal: http://{host}{PORTAL_PREFIX}/ (open the set-up link printed at start)\n"
        if portal
        else "(without the set-up portal: pip install 'pbidentity[portal]')\n"
    )
    body = (
        "pbidentity is running.\n\n"
        f"{pages}"
        f"SCIM base URL: http://{host}{DEFAULT_PREFIX}\n"
        "Authenticate with: Authorization: Bearer <token from 'pbidentity tokens create'>\n"
        f"SAML: http://{host}{SAML_PREFIX}/<workspace>/metadata, /login and /acs\n"
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


def _print_demo_token(admin: Admin, scim_base_url: str) -> None:
    secret = _demo_token(admin)
    print(f"Demo workspace token (shown once): {secret}")
    print(f"Try: curl -H 'Authorization: Bearer {secret}' {scim_base_url}/Users", flush=True)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _print_listening(host: str, port: int, public_url: str) -> None:
    local = f"http://{_url_host(host)}:{port}"
    if local != public_url:
        # Behind a proxy or a tunnel the public URL says nothing of the local port.
        print(f"Listening on: {local}", flush=True)


def reference_app() -> tuple[Callable[..., Any] | None, str]:
    """The FastAPI reference app's ``create_app``, or ``None`` and why it cannot run.

    The app lives in the source tree (``examples/``), not in the package: it
    is looked for next to this source tree only (a checkout with an editable
    install, as the README's quickstart makes), never in the current
    directory, whose code an operator did not choose to run.
    """
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        return None, f"{error.name} is not installed (pip install 'pbidentity[fastapi]')"
    import pbidentity

    root = Path(pbidentity.__file__).resolve().parents[2]
    if not (root / "examples" / "fastapi_app" / "__init__.py").is_file():
        return None, (
            "the reference app (examples/fastapi_app) is not next to pbidentity's source: "
            "run from a source checkout"
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        module = importlib.import_module("examples.fastapi_app")
    except ImportError as error:
        return None, f"the reference app needs {error.name or error} (pip install it)"
    create_app: Callable[..., Any] = module.create_app
    return create_app, ""


def serve(
    database_url: str,
    *,
    host: str,
    port: int,
    demo: bool = False,
    public_url: str | None = None,
    dev_hosts: frozenset[str] | None = None,
) -> int:
    """Serve until interrupted; prints the URLs to open (and, with ``demo``, a SCIM token) first.

    ``public_url`` is the origin browsers and IdPs use (``http://HOST:PORT``
    by default, with the port actually bound); ``dev_hosts`` the hosts SAML
    may reach over plain http (when both ``host`` and the public URL are
    loopback: ``host``, ``localhost`` and ``127.0.0.1``; else none). The
    :class:`~pbidentity.PbIdentity` on ``database_url`` is built once the
    port is bound, since its SAML configuration names the public URL: by
    the reference app, or here when the app cannot run. An embedded SQLite
    file is migrated to the library's schema on start; a shared server
    database is migrated on purpose, with ``pbidentity db upgrade``.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    hosts = local_dev_hosts(host, public_url) if dev_hosts is None else dev_hosts
    create_app, missing = reference_app()
    if create_app is not None:
        return _serve_app(create_app, database_url, host, port, public_url, hosts, demo)
    return _serve_wsgi(database_url, host, port, public_url, hosts, demo, missing)


def _cannot_listen(error: OSError, host: str, port: int) -> ConfigurationError:
    """What to do when the server cannot listen on ``host:port``, as one line."""
    where = f"{_url_host(host)}:{port}"
    if error.errno == errno.EADDRINUSE:
        return ConfigurationError(
            f"cannot listen on {where}: the port is in use; stop what listens there or "
            f"choose another with --port (--port 0 picks a free one)"
        )
    if error.errno == errno.EACCES:
        return ConfigurationError(
            f"cannot listen on {where}: not allowed (ports below 1024 need privileges); "
            "choose another with --port"
        )
    if isinstance(error, socket.gaierror) or error.errno == errno.EADDRNOTAVAIL:
        return ConfigurationError(
            f"cannot listen on {where}: {host!r} is not an address of this machine; check --host"
        )
    return ConfigurationError(f"cannot listen on {where}: {error.strerror or error}")


def _serve_app(
    create_app: Callable[..., Any],
    database_url: str,
    host: str,
    port: int,
    public_url: str | None,
    dev_hosts: frozenset[str],
    demo: bool,
) -> int:
    import uvicorn

    # Bound first, so that the public URL names the real port (--port 0).
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listener = socket.create_server((host, port), family=family)
    except OSError as error:
        raise _cannot_listen(error, host, port) from error
    with listener:
        bound = listener.getsockname()[1]
        public = (public_url or f"http://{_url_host(host)}:{bound}").rstrip("/")
        app = create_app(
            database_url,
            public_url=public,
            dev_hosts=dev_hosts,
            # A new one at each start, printed once: whoever sees it owns the app.
            owner_token=secrets.token_urlsafe(24),
            demo=demo,
        )
        context = app.state.context
        startup_lines = importlib.import_module("examples.common.run").startup_lines
        for line in startup_lines(context):
            print(line, flush=True)
        _print_listening(host, bound, public)
        if demo:
            _print_demo_token(context.identity.admin, f"{public}{DEFAULT_PREFIX}")
        print("Press Ctrl+C to stop.", flush=True)
        # stdout carries only the lines above (scripts and tests read them,
        # and may stop reading): uvicorn's access log goes to stderr too.
        log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
        log_config["handlers"]["access"]["stream"] = "ext://sys.stderr"
        config = uvicorn.Config(app, lifespan="on", log_level="info", log_config=log_config)
        uvicorn.Server(config).run(sockets=[listener])
    return 0


def _serve_wsgi(
    database_url: str,
    host: str,
    port: int,
    public_url: str | None,
    dev_hosts: frozenset[str],
    demo: bool,
    missing: str,
) -> int:
    try:
        server = make_server(
            host, port, _index, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
    except OSError as error:
        raise _cannot_listen(error, host, port) from error
    with server:
        bound = server.server_address[1]
        public = (public_url or f"http://{_url_host(host)}:{bound}").rstrip("/")
        portal: Portal | None = None

        def on_result(request: Request, outcome: SignInOutcome) -> Response:
            # The portal's test sign-ins go back to its SSO page.
            answered = portal.sign_in_result(request, outcome) if portal else None
            return answered or default_result_page(outcome)

        saml = SamlConfig(public_url=public, prefix=SAML_PREFIX, dev_hosts=dev_hosts)
        upgrade = database_url.startswith("sqlite")
        with PbIdentity(database_url, saml=saml, on_result=on_result, upgrade=upgrade) as identity:
            portal, no_portal = _portal(identity)
            mounts = {PORTAL_PREFIX: portal} if portal is not None else {}
            root = _index if portal is None else _index_with_portal
            server.set_app(make_app(identity, mounts=mounts, fallback=root))
            print(f"SCIM base URL: {public}{DEFAULT_PREFIX}", flush=True)
            print(f"SAML: {public}{SAML_PREFIX}/<workspace>/metadata")
            _print_listening(host, bound, public)
            print(f"Note: not the reference app: {missing}.", flush=True)
            if demo:
                _print_demo_token(identity.admin, f"{public}{DEFAULT_PREFIX}")
            if portal is None:
                print(f"Note: no set-up portal: {no_portal}.", flush=True)
            else:
                _print_setup_link(portal, f"{public}{PORTAL_PREFIX}")
            print("Press Ctrl+C to stop.", flush=True)
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                print("stopped", file=sys.stderr)
    return 0


def _portal(identity: PbIdentity) -> tuple[Portal | None, str]:
    """The set-up portal for this server, or ``None`` and why it cannot run.

    Nobody signs in to this server: the portal opens with set-up links only.
    Its secret is ``PBIDENTITY_PORTAL_SECRET`` when set (links and sessions
    then survive a restart), else a new one at each start.
    """
    try:
        import jinja2  # noqa: F401
    except ImportError:
        return None, "jinja2 is not installed (pip install 'pbidentity[portal]')"
    from pbidentity.portal import Portal

    secret = os.environ.get("PBIDENTITY_PORTAL_SECRET") or secrets.token_urlsafe(32)
    return Portal(identity, authorize=lambda request: None, secret=secret), ""


def _print_setup_link(portal: Portal, portal_url: str) -> None:
    """A set-up link for the demo workspace (else the first), printed once."""
    slugs = [tenant.slug for tenant in portal.identity.admin.list_tenants()]
    workspace = DEMO_TENANT if DEMO_TENANT in slugs else (slugs[0] if slugs else None)
    if workspace is None:
        print(
            "Set-up portal: no workspace yet: create one with `pbidentity tenants create SLUG`, "
            "then restart for a set-up link.",
            flush=True,
        )
        return
    issued = portal.links.issue(
        workspace,
        created_by="pbidentity serve",
        sections=("sso", "scim", "roles", "members", "audit"),
        lifetime=PORTAL_LINK_LIFETIME,
        actor="cli",
    )
    minutes = int(PORTAL_LINK_LIFETIME.total_seconds() // 60)
    print(f"Set-up portal: {issued.url(portal_url)}", flush=True)
    print(
        f"Set-up link: works once, for {workspace}, within {minutes} minutes; "
        "restart for a new one.",
        flush=True,
    )
