"""`pbidentity serve` over real HTTP: from an empty directory to Okta-shaped traffic."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import httpx
import pytest


@attrs.frozen
class Server:
    """A running `pbidentity serve` and the token of its tenant."""

    base_url: str
    token: str


def _cli(database: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pbidentity.cli", "--database", database, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A tenant with SCIM on and a token, made with the CLI, then the server on a free port."""
    database = f"sqlite:///{tmp_path / 'served.db'}"
    _cli(database, "tenants", "create", "acme")
    _cli(database, "scim", "enable", "--tenant", "acme")
    token = (
        _cli(database, "tokens", "create", "--tenant", "acme", "--name", "okta")
        .strip()
        .splitlines()[-1]
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "pbidentity.cli", "--database", database, "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("SCIM base URL: "), first
        yield Server(base_url=first.removeprefix("SCIM base URL: ").strip(), token=token)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_okta_push_over_http(server: Server) -> None:
    """Lookup, create, duplicate, deactivate and read back over real HTTP, as Okta does."""
    headers = {
        "Authorization": f"Bearer {server.token}",
        "User-Agent": "Okta SCIM Client 1.0.0",
        "Accept": "application/scim+json",
    }
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=10) as client:
        probe = client.get("/Users", params={"startIndex": 1, "count": 2})
        assert probe.status_code == 200
        assert probe.json()["totalResults"] == 0
        lookup = client.get(
            "/Users", params={"filter": 'userName eq "jane@example.com"', "count": 100}
        )
        assert lookup.json()["Resources"] == []
        body = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "jane@example.com",
            "name": {"givenName": "Jane", "familyName": "Doe"},
            "emails": [{"primary": True, "value": "jane@example.com", "type": "work"}],
            "active": True,
            "externalId": "00u1abcd",
            "password": "placeholder",
            "groups": [],
        }
        created = client.post(
            "/Users", json=body, headers={"Content-Type": "application/scim+json; charset=utf-8"}
        )
        assert created.status_code == 201
        user_id = created.json()["id"]
        assert client.post("/Users", json=body).status_code == 409
        deactivated = client.patch(
            f"/Users/{user_id}",
            json={
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {"active": False}}],
            },
        )
        assert deactivated.status_code == 200
        again = client.get(f"/Users/{user_id}")
        assert again.status_code == 200
        assert again.json()["active"] is False
        unauthorised = httpx.get(
            f"{server.base_url}/Users", headers={"Authorization": "Bearer wrong"}
        )
        assert unauthorised.status_code == 401
        assert unauthorised.json()["status"] == "401"


def test_root_page_tells_where_scim_is(server: Server) -> None:
    """The server's root explains the SCIM base URL to whoever opens it in a browser."""
    root = server.base_url.removesuffix("/scim/v2") + "/"
    response = httpx.get(root, timeout=10)
    assert response.status_code == 200
    assert "/scim/v2" in response.text
