"""Okta's SCIM 2.0 spec test (the Runscope suite Okta asks integrators to pass), step by step.

Each step is the request Okta's suite sends and the checks it makes on the answer.
"""

from __future__ import annotations

import uuid

import httpx

from pbidentity.wsgi import ScimWsgiApp
from tests.conftest import BASE_URL
from tests.conftest import Workspace
from tests.scim.helpers import LIST
from tests.scim.helpers import USER
from tests.scim.helpers import assert_error
from tests.scim.helpers import create_user

OKTA_HEADERS = {
    "Accept": "application/scim+json",
    "Content-Type": "application/scim+json; charset=utf-8",
    "User-Agent": "Okta SCIM Client 1.0.0",
}


def test_okta_spec_suite(acme: Workspace, app: ScimWsgiApp) -> None:
    """Every step of Okta's published spec test, in its order."""
    create_user(acme.client, "first.user@example.com")
    client = acme.client
    client.headers.update(OKTA_HEADERS)

    # 1. Required test: list users with count=1.
    page = client.get("/Users", params={"count": 1, "startIndex": 1})
    assert page.status_code == 200
    body = page.json()
    assert body["schemas"] == [LIST]
    assert isinstance(body["totalResults"], int)
    assert body["itemsPerPage"] == 1
    assert body["startIndex"] == 1
    assert len(body["Resources"]) == 1
    first = body["Resources"][0]
    assert first["userName"]

    # 2. Get a user by id.
    by_id = client.get(f"/Users/{first['id']}")
    assert by_id.status_code == 200
    assert by_id.json()["id"] == first["id"]
    assert by_id.json()["userName"] == first["userName"]

    # 3. An unknown userName gives an empty list, not a 404.
    unknown = client.get("/Users", params={"filter": f'userName eq "{uuid.uuid4()}@example.com"'})
    assert unknown.status_code == 200
    assert unknown.json()["totalResults"] == 0
    assert unknown.json().get("Resources", []) == []

    # 4. An unknown id gives 404 with an Error body that has a detail.
    missing_id = str(uuid.uuid4())
    missing = client.get(f"/Users/{missing_id}")
    assert missing_id in assert_error(missing, 404)

    # 5. Create a user: 201 with the user and its id.
    user_name = f"spec.{uuid.uuid4().hex[:8]}@example.com"
    new = {
        "schemas": [USER],
        "userName": user_name,
        "name": {"givenName": "Spec", "familyName": "Test"},
        "emails": [{"primary": True, "value": user_name, "type": "work"}],
        "active": True,
        "password": "t1meMa$heen",
        "groups": [],
    }
    created = client.post("/Users", json=new)
    assert created.status_code == 201, created.text
    assert created.json()["active"] is True
    assert created.json()["userName"] == user_name
    assert "password" not in created.json()

    # 6. Creating it again gives 409.
    assert_error(client.post("/Users", json=new), 409, "uniqueness")

    # 7. The upper-cased userName finds the same user (userName is case-insensitive).
    upper = client.get("/Users", params={"filter": f'userName eq "{user_name.upper()}"'})
    assert upper.status_code == 200
    assert [r["id"] for r in upper.json()["Resources"]] == [created.json()["id"]]

    # 8. Groups can be listed.
    groups = client.get("/Groups", params={"count": 100, "startIndex": 1})
    assert groups.status_code == 200
    assert groups.json()["schemas"] == [LIST]

    # 9. A wrong token gives 401 with an Error body.
    with httpx.Client(
        transport=httpx.WSGITransport(app=app),
        base_url=BASE_URL,
        headers={**OKTA_HEADERS, "Authorization": "Bearer not-the-token"},
    ) as stranger:
        assert_error(stranger.get("/Users", params={"count": 1}), 401)
