"""Bearer tokens, the SCIM switch, and tenant isolation on every endpoint."""

from __future__ import annotations

import httpx
import pytest

from pbidentity.admin import Admin
from pbidentity.storage import Storage
from pbidentity.tokens import token_digest
from pbidentity.wsgi import ScimWsgiApp
from tests.conftest import BASE_URL
from tests.conftest import Workspace
from tests.scim.helpers import assert_error
from tests.scim.helpers import create_group
from tests.scim.helpers import create_user
from tests.scim.helpers import patch
from tests.scim.helpers import user


def _client(app: ScimWsgiApp, authorization: str | None) -> httpx.Client:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE_URL, headers=headers)


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Basic dXNlcjpwYXNz", "Bearer pbi_not-a-real-token", "Token abc"],
)
def test_missing_malformed_or_unknown_token_is_401(
    app: ScimWsgiApp, acme: Workspace, authorization: str | None
) -> None:
    """Every bad credential is a 401 SCIM Error with WWW-Authenticate: Bearer."""
    with _client(app, authorization) as client:
        response = client.get("/Users")
    assert_error(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_no_token_configured_means_no_access(app: ScimWsgiApp, admin: Admin) -> None:
    """A tenant with SCIM on but no token cannot be reached anonymously."""
    admin.create_tenant("lonely")
    admin.set_scim_enabled("lonely", True)
    with _client(app, None) as client:
        assert_error(client.get("/Users"), 401)


def test_bearer_scheme_is_case_insensitive(app: ScimWsgiApp, acme: Workspace) -> None:
    """'bearer <token>' works like 'Bearer <token>' (RFC 6750 schemes are case-insensitive)."""
    with _client(app, f"bearer {acme.token}") as client:
        assert client.get("/Users").status_code == 200


def test_revoked_token_is_401_at_once(app: ScimWsgiApp, admin: Admin, acme: Workspace) -> None:
    """Revoking a token makes the very next request fail, with a detail that says so."""
    assert acme.client.get("/Users").status_code == 200
    admin.revoke_token("acme", "okta")
    detail = assert_error(acme.client.get("/Users"), 401)
    assert "revoked" in detail


def test_scim_switch_off_is_403_saying_how_to_switch_it_on(admin: Admin, acme: Workspace) -> None:
    """With provisioning off, the tenant's tokens get 403 and the way to turn it on."""
    admin.set_scim_enabled("acme", False)
    detail = assert_error(acme.client.get("/Users"), 403)
    assert "pbidentity scim enable --tenant acme" in detail
    admin.set_scim_enabled("acme", True)
    assert acme.client.get("/Users").status_code == 200


def test_token_is_stored_only_as_a_digest_and_records_last_use(
    storage: Storage, acme: Workspace
) -> None:
    """The secret itself is nowhere in storage; using it records last_used."""
    with storage.transaction() as tx:
        token = tx.find_token(token_digest(acme.token))
    assert token is not None
    assert acme.token not in repr(token)
    assert token.digest != acme.token
    assert token.last_used is None
    acme.client.get("/Users")
    with storage.transaction() as tx:
        used = tx.find_token(token_digest(acme.token))
    assert used is not None
    assert used.last_used is not None


def test_tokens_are_long_and_random(admin: Admin) -> None:
    """Tokens carry at least 256 random bits and never repeat."""
    admin.create_tenant("t")
    secrets = {admin.create_token("t", f"n{i}").secret for i in range(20)}
    assert len(secrets) == 20
    assert all(len(s) >= 4 + 43 for s in secrets)


def test_tenants_are_isolated_on_every_endpoint(acme: Workspace, globex: Workspace) -> None:
    """Nothing of one tenant can be listed, read, changed or deleted with another tenant's token."""
    jane = create_user(acme.client, "jane@example.com")
    team = create_group(acme.client, "Team", jane["id"])
    other = globex.client

    assert other.get("/Users").json()["totalResults"] == 0
    assert other.get("/Groups").json()["totalResults"] == 0
    assert (
        other.get("/Users", params={"filter": 'userName eq "jane@example.com"'}).json()[
            "totalResults"
        ]
        == 0
    )
    assert other.post("/Users/.search", json={"filter": "userName pr"}).json()["totalResults"] == 0
    for path in (f"/Users/{jane['id']}", f"/Groups/{team['id']}"):
        assert_error(other.get(path), 404)
        assert_error(
            other.patch(path, json=patch({"op": "replace", "path": "displayName", "value": "x"})),
            404,
        )
        assert_error(other.delete(path), 404)
    assert_error(other.put(f"/Users/{jane['id']}", json=user("jane@example.com")), 404)
    assert_error(other.put(f"/Groups/{team['id']}", json={"displayName": "Team"}), 404)

    # A group of the other tenant cannot take this tenant's user as a member.
    own = create_group(other, "Mine")
    response = other.patch(
        f"/Groups/{own['id']}",
        json=patch({"op": "add", "path": "members", "value": [{"value": jane["id"]}]}),
    )
    assert_error(response, 400, "invalidValue")
    assert_error(
        other.post("/Groups", json={"displayName": "X", "members": [{"value": jane["id"]}]}),
        400,
        "invalidValue",
    )

    # The same userName and displayName may exist in both tenants.
    assert other.post("/Users", json=user("jane@example.com")).status_code == 201
    assert other.post("/Groups", json={"displayName": "Team"}).status_code == 201

    # And the first tenant's data is untouched.
    assert acme.client.get(f"/Users/{jane['id']}").json()["userName"] == "jane@example.com"
    assert [m["value"] for m in acme.client.get(f"/Groups/{team['id']}").json()["members"]] == [
        jane["id"]
    ]
