"""A small SCIM client on the standard library that sends exactly what an IdP sends.

The simulator must not add a runtime dependency, and it must control every
header: Entra ID sends no ``User-Agent``, which :mod:`urllib.request` always
adds, so this speaks :mod:`http.client` directly. It never raises for an HTTP
status (judging statuses is the checks' job) and turns every transport fault
into :class:`TransportError` with a sentence an operator can act on. It knows
nothing about steps, profiles or checks.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote
from urllib.parse import quote_plus
from urllib.parse import urlencode
from urllib.parse import urlsplit

import attrs

__all__ = ["Client", "Endpoint", "Response", "TransportError", "Unreachable", "parse_base_url"]

EXCERPT_CHARS = 200


class TransportError(Exception):
    """No HTTP answer came back: the request timed out or the connection broke."""


class Unreachable(TransportError):
    """The server cannot be reached at all (refused, unknown host, TLS failure).

    Every later request would fail the same way, so the run stops here.
    """


@attrs.frozen
class Endpoint:
    """Where the SCIM service is: scheme, host, port and the base path (no trailing slash)."""

    scheme: str
    host: str
    port: int
    path: str

    @property
    def origin(self) -> str:
        """``host:port``, for messages."""
        return f"{self.host}:{self.port}"


def parse_base_url(url: str) -> Endpoint:
    """Parse a SCIM base URL such as ``https://app.example/scim/v2``.

    :raises ValueError: with a sentence saying what is wrong with the URL.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        raise ValueError(f"the SCIM base URL {url!r} is not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(
            f"the SCIM base URL {url!r} must start with http:// or https://, "
            "e.g. https://app.example/scim/v2"
        )
    if not parts.hostname:
        raise ValueError(f"the SCIM base URL {url!r} has no host")
    if parts.query or parts.fragment:
        raise ValueError(f"the SCIM base URL {url!r} must not carry a query or a fragment")
    default_port = 443 if parts.scheme == "https" else 80
    return Endpoint(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port or default_port,
        path=parts.path.rstrip("/"),
    )


@attrs.frozen
class Response:
    """What the server answered to one request, with the request line for messages."""

    method: str
    target: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    #: The body parsed as JSON, or ``None`` when it is empty or not JSON.
    document: Any

    @property
    def media_type(self) -> str:
        """The Content-Type without parameters, lower-cased (``""`` when absent)."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def excerpt(self, limit: int = EXCERPT_CHARS) -> str:
        """The start of the body on one line, for a failure message."""
        text = " ".join(self.body.decode("utf-8", "replace").split())
        if not text:
            return "(empty body)"
        return text if len(text) <= limit else text[: limit - 3] + "..."


def _decode(body: bytes) -> Any:
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


class Client:
    """Send SCIM requests to one base URL with one IdP's headers.

    ``headers`` are sent on every request, as given and nothing more (the
    standard library adds only ``Host`` and ``Content-Length``). Bodies are
    JSON, sent with ``content_type``. Query strings are URL-encoded with
    ``%20`` for spaces, or ``+`` with ``plus_for_spaces``, as IdPs differ.
    One connection per request: IdPs do not rely on keep-alive, and a server
    that closes after each answer (HTTP/1.0) must work too.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        token: str,
        *,
        headers: Mapping[str, str],
        content_type: str,
        timeout: float,
        plus_for_spaces: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.token = token
        self.headers = dict(headers)
        self.content_type = content_type
        self.timeout = timeout
        self.plus_for_spaces = plus_for_spaces
        #: How many requests were sent, answered or not.
        self.requests = 0

    def get(self, path: str, query: Sequence[tuple[str, str]] = ()) -> Response:
        """``GET`` a path below the base URL, with query parameters."""
        return self.send("GET", path, query=query)

    def send(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        token: str | None = None,
    ) -> Response:
        """Send one request and return the answer, whatever its status.

        ``token`` replaces the bearer token for this request only.

        :raises Unreachable: when no connection can be made.
        :raises TransportError: when the request times out or the connection breaks.
        """
        target = self.endpoint.path + path
        if query:
            target += "?" + urlencode(
                query, quote_via=quote_plus if self.plus_for_spaces else quote
            )
        headers = {**self.headers, "Authorization": f"Bearer {token or self.token}"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = self.content_type
        self.requests += 1
        connection = self._connect()
        try:
            connection.request(method, target, body=payload, headers=headers)
            answer = connection.getresponse()
            data = answer.read()
        except TimeoutError:
            raise TransportError(
                f"{method} {target}: no answer within {self.timeout:g} s"
            ) from None
        except ConnectionRefusedError as error:
            raise Unreachable(
                f"cannot connect to {self.endpoint.origin}: {error.strerror or error}"
            ) from None
        except socket.gaierror as error:
            raise Unreachable(
                f"cannot resolve {self.endpoint.host}: {error.strerror or error}"
            ) from None
        except ssl.SSLError as error:
            raise Unreachable(f"TLS with {self.endpoint.origin} failed: {error}") from None
        except (OSError, http.client.HTTPException) as error:
            reason = str(error) or type(error).__name__
            raise TransportError(f"{method} {target}: the connection failed: {reason}") from None
        finally:
            connection.close()
        return Response(
            method=method,
            target=target,
            status=answer.status,
            headers={name.lower(): value for name, value in answer.getheaders()},
            body=data,
            document=_decode(data),
        )

    def _connect(self) -> http.client.HTTPConnection:
        endpoint = self.endpoint
        if endpoint.scheme == "https":
            return http.client.HTTPSConnection(
                endpoint.host,
                endpoint.port,
                timeout=self.timeout,
                context=ssl.create_default_context(),
            )
        return http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=self.timeout)
