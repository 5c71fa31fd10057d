"""The plain request and response values the sans-I/O core speaks.

An adapter (WSGI, ASGI, a framework) builds a :class:`Request` from whatever
its framework hands it, calls the core, and writes the :class:`Response` back.
Nothing here knows about sockets, frameworks or threads.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

__all__ = ["Request", "Response"]


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
