"""The WSGI adapter translates only: mounting, fallbacks and body caps at the WSGI level."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable
from typing import Any

from pbidentity.wsgi import ScimWsgiApp
from tests.conftest import Workspace


class _Unreadable(io.RawIOBase):
    """A request body that fails the test if anyone reads it."""

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the adapter read a body it should have refused")


def _call(app: Any, environ: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append((status, headers))
        return lambda data: None

    body = b"".join(app(environ, start_response))
    status, headers = started[-1]
    return status, {name.lower(): value for name, value in headers}, body


def _environ(path: str, token: str, **extra: Any) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "app.example",
        "SERVER_PORT": "443",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
    }
    environ.update(extra)
    return environ


def test_paths_outside_the_prefix_go_to_the_fallback(app: ScimWsgiApp, acme: Workspace) -> None:
    """Outside /scim/v2 the adapter answers a plain 404, or calls the host app's fallback."""
    status, _, body = _call(app, _environ("/dashboard", acme.token))
    assert status == "404 Not Found"
    assert body == b"Not Found\n"

    def host_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"host:" + environ["PATH_INFO"].encode()]

    chained = ScimWsgiApp(app.service, fallback=host_app)
    assert _call(chained, _environ("/dashboard", acme.token))[2] == b"host:/dashboard"
    assert _call(chained, _environ("/scim/v2x", acme.token))[2] == b"host:/scim/v2x"


def test_script_name_is_part_of_the_locations(app: ScimWsgiApp, acme: Workspace) -> None:
    """Mounted under a SCRIPT_NAME, meta.location and Location carry it, without a default port."""
    created = acme.client.post("/Users", json={"userName": "mounted@example.com"}).json()
    environ = _environ(f"/scim/v2/Users/{created['id']}", acme.token, SCRIPT_NAME="/identity")
    status, headers, body = _call(app, environ)
    assert status == "200 OK"
    assert headers["content-type"] == "application/scim+json"
    assert headers["content-length"] == str(len(body))
    assert f'"https://app.example/identity/scim/v2/Users/{created["id"]}"'.encode() in body


def test_oversized_body_is_refused_unread(app: ScimWsgiApp, acme: Workspace) -> None:
    """A Content-Length over the cap is 413 without reading a byte of the body."""
    environ = _environ(
        "/scim/v2/Users",
        acme.token,
        REQUEST_METHOD="POST",
        CONTENT_TYPE="application/scim+json",
        CONTENT_LENGTH=str(10 * 1024 * 1024),
        **{"wsgi.input": _Unreadable()},
    )
    status, headers, body = _call(app, environ)
    assert status.startswith("413")
    assert headers["content-type"] == "application/scim+json"
    assert b'"status":"413"' in body


def test_no_content_has_no_body_and_no_length(app: ScimWsgiApp, acme: Workspace) -> None:
    """A 204 goes out with neither a body nor a Content-Length."""
    created = acme.client.post("/Users", json={"userName": "gone@example.com"}).json()
    environ = _environ(f"/scim/v2/Users/{created['id']}", acme.token, REQUEST_METHOD="DELETE")
    status, headers, body = _call(app, environ)
    assert status == "204 No Content"
    assert body == b""
    assert "content-length" not in headers
