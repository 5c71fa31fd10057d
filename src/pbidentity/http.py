"""The plain request and response values the framework-agnostic core speaks.

An adapter (WSGI, ASGI, a framework) builds a :class:`Request` from whatever
its framework hands it, calls the core, and writes the :class:`Response` back.
Nothing here knows about sockets, frameworks or threads.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import ClassVar
from typing import Protocol

import attrs

__all__ = ["Handler", "Mount", "Request", "Response", "Router"]


def _lower_headers(headers: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((name.lower(), value) for name, value in headers)


@attrs.frozen(kw_only=True)
class Request:
    """An HTTP request, already read.

    ``path`` is relative to the mount point of the service (``/Users/42`` for a
    SCIM service mounted at ``/scim/v2``); ``base_url`` is the absolute URL of
    that mount point as the client sees it (``https://app.example/scim/v2``),
    used for ``meta.location``. Header names are kept lower-cased.
    ``body_truncated`` tells the core that the adapter stopped reading at its
    size cap, so the real body was larger than ``body``.
    """

    method: str
    path: str
    base_url: str
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_lower_headers)
    body: bytes = b""
    body_truncated: bool = False

    def header(self, name: str) -> str | None:
        """The first value of a header, by case-insensitive name."""
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return None

    def query_value(self, name: str) -> str | None:
        """The first value of a query parameter, by case-insensitive name."""
        wanted = name.lower()
        for key, value in self.query:
            if key.lower() == wanted:
                return value
        return None


@attrs.frozen(kw_only=True)
class Response:
    """An HTTP response: status, headers and the body bytes."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of a header, by case-insensitive name."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


class Handler(Protocol):
    """A service an adapter can serve, such as :class:`~pbidentity.scim.ScimService`."""

    @property
    def max_body_bytes(self) -> int:
        """The largest request body the handler accepts.

        An adapter reads at most this many bytes (plus one, to notice more)
        and sets ``body_truncated`` beyond it; the handler answers 413 itself.
        """

    def handle(self, request: Request) -> Response:
        """Answer one request whose path is relative to the handler's prefix; never raises."""


def _prefix(value: str) -> str:
    prefix = value.rstrip("/")
    if prefix and not prefix.startswith("/"):
        raise ValueError(f"a mount prefix starts with '/': {value!r}")
    return prefix


@attrs.frozen
class Mount:
    """A handler and the path prefix it is served under (``""`` is the root)."""

    prefix: str = attrs.field(converter=_prefix)
    handler: Handler

    def strip(self, path: str) -> str | None:
        """``path`` relative to the prefix, or ``None`` if it is outside the prefix.

        ``/scim/v2/Users`` is ``/Users`` under ``/scim/v2``, the prefix itself
        is ``/``, and ``/scim/v2x`` is outside: prefixes match whole segments.
        """
        if path == self.prefix:
            return "/"
        if path.startswith(self.prefix + "/"):
            return path[len(self.prefix) :]
        return None


class Router:
    """Several handlers, each under its own path prefix.

    ``Router({"/scim/v2": scim, "/saml": saml})`` serves SCIM and SAML side by side.
    Adapters serve a router as they serve one handler: they ask :meth:`route`
    which mount a path belongs to before reading the body, so that each
    handler's own body cap applies. A router is itself a :class:`Handler`
    (:meth:`handle` takes a path relative to the router's root), so routers
    nest; nested routers are flattened into one table of full prefixes.
    """

    #: The answer outside every prefix when the host app gave no fallback.
    not_found: ClassVar[Response] = Response(
        status=404, headers=(("Content-Type", "text/plain; charset=utf-8"),), body=b"Not Found\n"
    )

    def __init__(self, mounts: Mapping[str, Handler] | Iterable[Mount]) -> None:
        given = (
            [Mount(prefix, handler) for prefix, handler in mounts.items()]
            if isinstance(mounts, Mapping)
            else list(mounts)
        )
        flat: list[Mount] = []
        for mount in given:
            if isinstance(mount.handler, Router):
                flat.extend(Mount(mount.prefix + m.prefix, m.handler) for m in mount.handler.mounts)
            else:
                flat.append(mount)
        prefixes = [mount.prefix for mount in flat]
        if len(set(prefixes)) != len(prefixes):
            raise ValueError(f"two handlers under one prefix: {sorted(prefixes)}")
        # Longest first, so that /saml/admin wins over /saml for its own paths.
        self.mounts: tuple[Mount, ...] = tuple(
            sorted(flat, key=lambda mount: len(mount.prefix), reverse=True)
        )

    @classmethod
    def of(cls, target: Handler | Router, prefix: str = "") -> Router:
        """``target`` if it is a router, else a router serving it under ``prefix``."""
        if isinstance(target, Router) and not prefix:
            return target
        return cls([Mount(prefix, target)])

    @property
    def max_body_bytes(self) -> int:
        """The largest cap of the mounted handlers; each handler still enforces its own."""
        return max((mount.handler.max_body_bytes for mount in self.mounts), default=0)

    def route(self, path: str) -> tuple[Mount, str] | None:
        """The mount that serves ``path`` and the path relative to its prefix, or ``None``."""
        for mount in self.mounts:
            rest = mount.strip(path)
            if rest is not None:
                return mount, rest
        return None

    def handle(self, request: Request) -> Response:
        """Pass a request on to the handler of its path, with the path and base URL of that mount.

        ``request.path`` is relative to the router's root and ``base_url`` is
        the root's URL. Outside every prefix the answer is :attr:`not_found`.
        """
        found = self.route(request.path)
        if found is None:
            return self.not_found
        mount, path = found
        base_url = request.base_url.rstrip("/") + mount.prefix
        return mount.handler.handle(attrs.evolve(request, path=path, base_url=base_url))
