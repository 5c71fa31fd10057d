"""The ASGI adapter: serve pbidentity's handlers (SCIM, SAML) from any asyncio ASGI 3 server.

Like the WSGI adapter it only translates: the scope and the body messages
become a :class:`~pbidentity.http.Request`, the core answers, and the
:class:`~pbidentity.http.Response` goes back as two messages. The core is
synchronous and does database I/O, so it runs in a worker thread and the
event loop keeps serving other requests meanwhile. Standard library only::

    from pbidentity.asgi import make_app

    app = make_app(identity, fallback=host_app)  # /scim/v2 and /saml

where ``identity`` is the app's :class:`~pbidentity.PbIdentity`;
``AsgiApp(router)`` serves any :class:`~pbidentity.http.Router`.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import MutableMapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING
from typing import Any
from urllib.parse import parse_qsl

from pbidentity.http import Handler
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.http import Router

if TYPE_CHECKING:
    from pbidentity import PbIdentity

__all__ = ["AsgiApp", "make_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AsgiApp:
    """An ASGI 3 app serving a handler under ``prefix``, or the handlers of a :class:`Router`.

    Outside the prefixes, and for lifespan and websocket events, ``fallback``
    (the host app) is called if given; otherwise paths get a plain 404,
    lifespan events are acknowledged and websockets are refused. The core
    runs on ``executor`` (the event loop's default thread pool if ``None``;
    give a bounded pool the size of the database pool to queue requests
    there rather than on the database).
    """

    def __init__(
        self,
        target: Handler | Router,
        *,
        prefix: str = "",
        fallback: ASGIApp | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.router = Router.of(target, prefix)
        self.fallback = fallback
        self.executor = executor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        found = self.router.route(_route_path(scope)) if scope["type"] == "http" else None
        if found is None:
            if self.fallback is not None:
                await self.fallback(scope, receive, send)
            elif scope["type"] == "http":
                await _send_response(send, Router.not_found)
            elif scope["type"] == "lifespan":
                await _lifespan(receive, send)
            elif scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1000})
            return
        mount, path = found
        headers = tuple(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
        )
        read = await _read_body(receive, mount.handler.max_body_bytes, headers)
        if read is None:
            return  # the client went away before its body was read: nobody to answer
        body, truncated = read
        root = scope.get("root_path", "").rstrip("/")
        request = Request(
            method=scope["method"],
            path=path,
            base_url=f"{_origin(scope, headers)}{root}{mount.prefix}",
            query=tuple(
                parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            ),
            headers=headers,
            body=body,
            body_truncated=truncated,
        )
        # The context goes along so that the host app's context variables
        # (request ids, tracing) are seen by logging in the core.
        context = contextvars.copy_context()
        response = await asyncio.get_running_loop().run_in_executor(
            self.executor, context.run, mount.handler.handle, request
        )
        await _send_response(send, response)


def make_app(
    identity: PbIdentity | str,
    *,
    scim_prefix: str = "/scim/v2",
    mounts: Mapping[str, Handler] | None = None,
    fallback: ASGIApp | None = None,
    executor: Executor | None = None,
) -> AsgiApp:
    """The ASGI application of a :class:`~pbidentity.PbIdentity`: SCIM, and SAML when configured.

    SCIM is served under ``scim_prefix``, SAML under its configuration's
    prefix (``/saml``) and ``mounts`` (more handlers) under theirs; other
    paths, lifespan and websocket events go to ``fallback`` (the host app)
    if given. The core runs on ``executor`` (see :class:`AsgiApp`). A
    database URL stands for ``PbIdentity(url)``.
    """
    if isinstance(identity, str):
        from pbidentity import PbIdentity

        identity = PbIdentity(identity)
    return AsgiApp(
        identity.router(scim_prefix=scim_prefix, mounts=mounts),
        fallback=fallback,
        executor=executor,
    )


def _route_path(scope: Scope) -> str:
    # ASGI servers include root_path in path (a mount point such as
    # uvicorn's --root-path or a Starlette Mount); the router needs the rest.
    path: str = scope["path"]
    root = scope.get("root_path", "").rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root) :]
    return path


def _origin(scope: Scope, headers: tuple[tuple[str, str], ...]) -> str:
    scheme = scope.get("scheme", "http")
    host = next((value for name, value in headers if name == "host"), None)
    if not host:
        server = scope.get("server") or ("localhost", None)
        host, port = server[0], server[1]
        if port is not None and port != (443 if scheme == "https" else 80):
            host = f"{host}:{port}"
    return f"{scheme}://{host}"


async def _read_body(
    receive: Receive, limit: int, headers: tuple[tuple[str, str], ...]
) -> tuple[bytes, bool] | None:
    """The body and whether it was cut at ``limit``; ``None`` if the client disconnected."""
    declared = next((value for name, value in headers if name == "content-length"), "")
    if declared.isdigit() and int(declared) > limit:
        # Refuse without reading: a body larger than the cap is never buffered.
        return b"", True
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            chunks.append(chunk[: len(chunk) - (size - limit)])
            return b"".join(chunks), True  # the rest is left unread
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


async def _send_response(send: Send, response: Response) -> None:
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in response.headers
    ]
    if response.status not in (204, 304):
        headers.append((b"content-length", str(len(response.body)).encode("ascii")))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    # Nothing to start or stop: the services belong to the host app.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
