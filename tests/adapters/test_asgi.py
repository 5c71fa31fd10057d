"""The ASGI adapter translates only: mounting, root_path, body caps, lifespan, and no blocking."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from collections.abc import MutableMapping
from typing import Any

import attrs
import pytest

from pbidentity.asgi import AsgiApp
from pbidentity.http import Router
from pbidentity.wsgi import ScimWsgiApp
from tests.adapters.request_table import Recorder
from tests.conftest import Workspace
from tests.scim.helpers import create_user
from tests.scim.helpers import user

Message = dict[str, Any]


@attrs.frozen
class Sent:
    """What the app sent back, and how many messages it asked for."""

    messages: list[Message]
    received: int

    @property
    def status(self) -> int:
        """The response status."""
        status: int = self.messages[0]["status"]
        return status

    @property
    def headers(self) -> dict[str, str]:
        """The response headers, decoded."""
        return {k.decode(): v.decode() for k, v in self.messages[0]["headers"]}

    @property
    def body(self) -> bytes:
        """The whole response body."""
        return b"".join(m.get("body", b"") for m in self.messages[1:])


def _scope(path: str, token: str | None = None, **extra: Any) -> dict[str, Any]:
    headers = [(b"host", b"app.example")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "server": ("10.0.0.1", 8000),
    }
    scope.update(extra)
    return scope


def _call(app: Any, scope: dict[str, Any], *messages: Message) -> Sent:
    """Run one ASGI call; ``receive`` returns ``messages`` (an empty body), then a disconnect."""
    return asyncio.run(_acall(app, scope, list(messages or [{"type": "http.request"}])))


async def _acall(app: Any, scope: dict[str, Any], messages: list[Message]) -> Sent:
    sent: list[Message] = []
    received = 0

    async def receive() -> Message:
        nonlocal received
        received += 1
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return Sent(sent, received)


@pytest.fixture
def asgi(app: ScimWsgiApp) -> AsgiApp:
    """The test's SCIM service behind the ASGI adapter, under /scim/v2."""
    return AsgiApp(app.service, prefix="/scim/v2")


def test_root_path_is_part_of_the_locations(asgi: AsgiApp, acme: Workspace) -> None:
    """Mounted under a root_path, meta.location carries it; the server's path includes it."""
    created = create_user(acme.client, "mounted@example.com")
    scope = _scope(f"/identity/scim/v2/Users/{created['id']}", acme.token, root_path="/identity")
    sent = _call(asgi, scope)
    assert sent.status == 200
    assert sent.headers["content-type"] == "application/scim+json"
    assert sent.headers["content-length"] == str(len(sent.body))
    assert sent.headers["etag"] == created["meta"]["version"]
    location = f"https://app.example/identity/scim/v2/Users/{created['id']}"
    assert f'"{location}"'.encode() in sent.body


def test_without_a_host_header_the_server_address_is_used(asgi: AsgiApp, acme: Workspace) -> None:
    """No Host header: the base URL is the server's address, with its non-default port."""
    scope = _scope("/scim/v2/ServiceProviderConfig", acme.token)
    scope["headers"] = [h for h in scope["headers"] if h[0] != b"host"]
    assert b"https://10.0.0.1:8000/scim/v2/ServiceProviderConfig" in _call(asgi, scope).body


def test_oversized_declared_body_is_refused_unread(asgi: AsgiApp, acme: Workspace) -> None:
    """A Content-Length over the cap is 413 without receiving a byte of the body."""
    scope = _scope("/scim/v2/Users", acme.token, method="POST")
    scope["headers"] += [(b"content-type", b"application/scim+json"), (b"content-length", b"9" * 8)]
    sent = _call(asgi, scope)
    assert sent.received == 0
    assert sent.status == 413
    assert b'"status":"413"' in sent.body


def test_a_body_without_length_is_read_up_to_the_cap_only(asgi: AsgiApp, acme: Workspace) -> None:
    """A streamed body is read until it passes the cap, then refused; the rest stays unread."""
    cap = asgi.router.max_body_bytes
    chunk = {"type": "http.request", "body": b"x" * 1024, "more_body": True}
    scope = _scope("/scim/v2/Users", acme.token, method="POST")
    scope["headers"].append((b"content-type", b"application/scim+json"))
    sent = _call(asgi, scope, *[chunk] * (2 * cap // 1024))
    assert sent.status == 413
    assert sent.received == cap // 1024 + 1


def test_a_body_in_several_messages_is_joined(asgi: AsgiApp, acme: Workspace) -> None:
    """The body messages are joined in order before the core sees them."""
    import orjson

    body = orjson.dumps(user("pieces@example.com"))
    scope = _scope("/scim/v2/Users", acme.token, method="POST")
    scope["headers"].append((b"content-type", b"application/scim+json"))
    parts = [body[:10], body[10:20], body[20:]]
    messages = [
        {"type": "http.request", "body": part, "more_body": i < 2} for i, part in enumerate(parts)
    ]
    sent = _call(asgi, scope, *messages)
    assert sent.status == 201, sent.body
    assert sent.headers["location"].startswith("https://app.example/scim/v2/Users/")


def test_a_client_gone_before_its_body_gets_no_answer(asgi: AsgiApp, acme: Workspace) -> None:
    """A disconnect while the body is read ends the call without running the core."""
    scope = _scope("/scim/v2/Users", acme.token, method="POST")
    assert _call(asgi, scope, {"type": "http.disconnect"}).messages == []


def test_no_content_has_no_length(asgi: AsgiApp, acme: Workspace) -> None:
    """A 204 goes out with an empty body and no Content-Length."""
    created = create_user(acme.client, "gone@example.com")
    sent = _call(asgi, _scope(f"/scim/v2/Users/{created['id']}", acme.token, method="DELETE"))
    assert sent.status == 204
    assert sent.body == b""
    assert "content-length" not in sent.headers


def test_outside_the_prefix_a_404_or_the_fallback(asgi: AsgiApp) -> None:
    """Outside /scim/v2: a plain 404, or the host app for every kind of event."""
    sent = _call(asgi, _scope("/scim/v2x"))
    assert (sent.status, sent.body) == (404, b"Not Found\n")

    seen: list[str] = []

    async def host(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        seen.append(f"{scope['type']}:{scope.get('path', '')}")

    chained = AsgiApp(asgi.router, fallback=host)
    _call(chained, _scope("/dashboard"))
    _call(chained, {"type": "lifespan"})
    _call(chained, {**_scope("/scim/v2/Users"), "type": "websocket"})
    assert seen == ["http:/dashboard", "lifespan:", "websocket:/scim/v2/Users"]


def test_lifespan_and_websockets_without_a_fallback(asgi: AsgiApp) -> None:
    """Lifespan events are acknowledged; a websocket is closed (the server refuses it)."""
    sent = _call(
        asgi, {"type": "lifespan"}, {"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}
    )
    assert [m["type"] for m in sent.messages] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    closed = _call(asgi, {**_scope("/scim/v2/Users"), "type": "websocket"})
    assert closed.messages == [{"type": "websocket.close", "code": 1000}]


def test_a_router_gives_each_handler_its_path_base_url_and_cap() -> None:
    """Each mount gets paths relative to it, its own base URL and its own body cap."""
    small, large = Recorder(max_body_bytes=10), Recorder(max_body_bytes=1000)
    app = AsgiApp(Router({"/saml": small, "/saml/admin": large}))
    body = {"type": "http.request", "body": b"y" * 100}
    for path in ("/saml/acme/acs", "/saml/admin/x"):
        scope = _scope(path, method="POST", query_string=b"a=1&a=2&b")
        scope["headers"] += [(b"content-length", b"100"), (b"X-Mixed-Case", b"V")]
        assert _call(app, scope, body).status == 200
    (got_small,), (got_large,) = small.requests, large.requests
    assert (got_small.path, got_small.base_url) == ("/acme/acs", "https://app.example/saml")
    assert (got_small.body, got_small.body_truncated) == (b"", True)
    assert (got_large.path, got_large.base_url) == ("/x", "https://app.example/saml/admin")
    assert (got_large.body, got_large.body_truncated) == (b"y" * 100, False)
    assert got_large.query == (("a", "1"), ("a", "2"), ("b", ""))
    assert got_large.header("x-mixed-case") == "V"
    assert all(name == name.lower() for name, _ in got_large.headers)


async def _ticks_while(call: Awaitable[object]) -> int:
    """How often a 10 ms ticker ran on the loop while ``call`` was running."""
    task = asyncio.ensure_future(call)
    ticks = 0
    while not task.done():
        await asyncio.sleep(0.01)
        ticks += 1
    await task
    return ticks


def test_the_core_runs_off_the_event_loop() -> None:
    """While a slow core call runs, the loop keeps ticking and serves a second request."""
    slow = Recorder(max_body_bytes=10, delay=0.5)
    app = AsgiApp(Router({"/slow": slow}))

    async def two_slow_requests() -> tuple[int, float]:
        started = time.monotonic()
        ticks = await _ticks_while(
            asyncio.gather(
                _acall(app, _scope("/slow"), [{"type": "http.request"}]),
                _acall(app, _scope("/slow"), [{"type": "http.request"}]),
            )
        )
        return ticks, time.monotonic() - started

    ticks, elapsed = asyncio.run(two_slow_requests())
    assert len(slow.requests) == 2
    assert ticks >= 20  # a blocked loop would tick once or twice
    assert elapsed < 0.9  # the two calls ran side by side, not one after the other
