"""The WSGI adapter: serve pbidentity's handlers (SCIM, SAML) from any WSGI server.

It translates and nothing else: the WSGI environ becomes a
:class:`~pbidentity.http.Request` (reading at most the handler's body cap
plus one byte), the core answers, and the :class:`~pbidentity.http.Response`
goes back through ``start_response``. It never chooses a status on its own
except 404 for paths outside its prefixes, and never parses the body.

Embedding in a host app::

    from pbidentity.wsgi import make_app
    application = make_app(identity, fallback=host_app)  # /scim/v2 and /saml

where ``identity`` is the app's :class:`~pbidentity.PbIdentity` (a database
URL builds one with the defaults). ``WsgiApp(router)`` serves any
:class:`~pbidentity.http.Router`, ``ScimWsgiApp(service)`` a SCIM service alone.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from pbidentity.http import Handler
from pbidentity.http import Mount
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.http import Router

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment

    from pbidentity import PbIdentity
    from pbidentity.scim import ScimService

__all__ = ["ScimWsgiApp", "WsgiApp", "make_app"]

DEFAULT_PREFIX = "/scim/v2"


def status_line(status: int) -> str:
    """``"404 Not Found"``: the status string WSGI wants."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def _wsgi_str(value: str) -> str:
    # PEP 3333 hands paths over as latin-1 decoded bytes; ids may be UTF-8.
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def request_path(environ: WSGIEnvironment) -> str:
    """The request path below ``SCRIPT_NAME``, decoded as UTF-8 where it is."""
    return _wsgi_str(environ.get("PATH_INFO", "") or "/")


def read_request(environ: WSGIEnvironment, router: Router) -> tuple[Mount, Request] | None:
    """The mount a WSGI call is for and its request value, or ``None`` outside every prefix.

    The body is read only once the mount is known, up to that handler's cap.
    """
    found = router.route(request_path(environ))
    if found is None:
        return None
    mount, path = found
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST")
    if not host:
        host = environ.get("SERVER_NAME", "localhost")
        port = str(environ.get("SERVER_PORT", ""))
        if port and port != ("443" if scheme == "https" else "80"):
            host = f"{host}:{port}"
    script_name = _wsgi_str(environ.get("SCRIPT_NAME", "")).rstrip("/")
    base_url = f"{scheme}://{host}{script_name}{mount.prefix}"
    headers = [
        (key[5:].replace("_", "-"), value)
        for key, value in environ.items()
        if key.startswith("HTTP_") and isinstance(value, str)
    ]
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers.append((key.replace("_", "-"), environ[key]))
    body, truncated = _read_body(environ, mount.handler.max_body_bytes)
    query = tuple(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    request = Request(
        method=environ.get("REQUEST_METHOD", "GET"),
        path=path,
        base_url=base_url,
        query=query,
        headers=tuple(headers),
        body=body,
        body_truncated=truncated,
    )
    return mount, request


def _read_body(environ: WSGIEnvironment, limit: int) -> tuple[bytes, bool]:
    stream = environ.get("wsgi.input")
    if stream is None:
        return b"", False
    try:
        length = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        length = -1
    if length == 0:
        return b"", False
    if length > limit:
        # Refuse without reading: a body larger than the cap is never buffered.
        return b"", True
    if length > 0:
        return stream.read(length), False
    if not environ.get("wsgi.input_terminated"):
        return b"", False  # no length and no terminated stream: nothing can be read safely
    data = stream.read(limit + 1)
    return data[:limit], len(data) > limit


def write_response(response: Response, start_response: StartResponse) -> Iterable[bytes]:
    """Send a response value through ``start_response``."""
    headers = list(response.headers)
    if response.status not in (204, 304):
        headers.append(("Content-Length", str(len(response.body))))
    start_response(status_line(response.status), headers)
    return [response.body] if response.body else []


class WsgiApp:
    """A WSGI application that serves a handler under ``prefix``, or a :class:`Router`'s handlers.

    ``WsgiApp(Router({"/scim/v2": scim, "/saml": saml}))`` serves both;
    ``WsgiApp(scim)`` serves one handler at the root (mount it where you
    like: ``SCRIPT_NAME`` is part of every URL it builds). Requests outside
    the prefixes get ``fallback`` if given (so a host app can chain another
    WSGI app), else a plain 404.
    """

    def __init__(
        self,
        target: Handler | Router,
        *,
        prefix: str = "",
        fallback: Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]] | None = None,
    ) -> None:
        self.router = Router.of(target, prefix)
        self.fallback = fallback

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve one WSGI request."""
        found = read_request(environ, self.router)
        if found is None:
            if self.fallback is not None:
                return self.fallback(environ, start_response)
            return write_response(Router.not_found, start_response)
        mount, request = found
        return write_response(mount.handler.handle(request), start_response)


class ScimWsgiApp(WsgiApp):
    """A WSGI application that serves a SCIM service under ``prefix`` (``/scim/v2``).

    Requests outside the prefix get ``fallback`` if given, else a plain 404.
    """

    def __init__(
        self,
        service: ScimService,
        *,
        prefix: str = DEFAULT_PREFIX,
        fallback: Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]] | None = None,
    ) -> None:
        super().__init__(service, prefix=prefix, fallback=fallback)
        self.service = service
        self.prefix = prefix.rstrip("/")


def make_app(
    identity: PbIdentity | str = "sqlite:///pbidentity.db",
    *,
    scim_prefix: str = DEFAULT_PREFIX,
    mounts: Mapping[str, Handler] | None = None,
    fallback: Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]] | None = None,
) -> WsgiApp:
    """The WSGI application of a :class:`~pbidentity.PbIdentity`: SCIM, and SAML when configured.

    SCIM is served under ``scim_prefix``, SAML under its configuration's
    prefix (``/saml``) and ``mounts`` (more handlers) under theirs; other
    paths go to ``fallback`` (the host app) or get a 404. A database URL
    stands for ``PbIdentity(url)``: SCIM alone, with the default roles, the
    schema created on first use.
    """
    if isinstance(identity, str):
        from pbidentity import PbIdentity

        identity = PbIdentity(identity)
    return WsgiApp(identity.router(scim_prefix=scim_prefix, mounts=mounts), fallback=fallback)
