"""Payload builders and assertions shared by the SCIM tests."""

from __future__ import annotations

from typing import Any

import httpx

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
ROLE = "urn:ietf:params:scim:schemas:extension:pbidentity:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


def user(user_name: str, **extra: Any) -> dict[str, Any]:
    """A User body as Okta pushes it: name, primary work email, active."""
    given, _, family = user_name.partition("@")[0].partition(".")
    body: dict[str, Any] = {
        "schemas": [USER],
        "userName": user_name,
        "name": {"givenName": given.title() or "Given", "familyName": family.title() or "Family"},
        "emails": [{"value": user_name, "primary": True, "type": "work"}],
        "active": True,
    }
    body.update(extra)
    return body


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    """A PatchOp message."""
    return {"schemas": [PATCH], "Operations": list(operations)}


def create_user(client: httpx.Client, user_name: str, **extra: Any) -> dict[str, Any]:
    """POST a user and return the created resource."""
    response = client.post("/Users", json=user(user_name, **extra))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def create_group(client: httpx.Client, name: str, *member_ids: str) -> dict[str, Any]:
    """POST a group with members and return the created resource."""
    body = {"schemas": [GROUP], "displayName": name, "members": [{"value": i} for i in member_ids]}
    response = client.post("/Groups", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def assert_error(response: httpx.Response, status: int, scim_type: str | None = None) -> str:
    """Assert an RFC 7644 Error response and return its detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/scim+json")
    body = response.json()
    assert body["schemas"] == [ERROR]
    assert body["status"] == str(status)
    assert body.get("scimType") == scim_type
    assert body["detail"]
    assert "Traceback" not in body["detail"]
    detail: str = body["detail"]
    return detail
