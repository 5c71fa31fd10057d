"""Okta's side of the browser tests: its people, its SCIM requests, its users report.

What Okta sends to an app over SCIM (the people of the story, a push, the
requests it gets refused) and what its admin exports (the users report a
link import reads), shared by the Okta story (:mod:`tests.e2e.test_browser`)
and the portal's section tests, so that each tells the same story.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

import attrs
import httpx

from pbidentity.scim import DEFAULT_ROLE_URN

if TYPE_CHECKING:
    from playwright.sync_api import FilePayload

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
#: What Okta's SCIM client sends with every request (its custom SCIM app).
OKTA_HEADERS = {
    "User-Agent": "Okta SCIM Client 1.0.0",
    "Accept": "application/scim+json",
}
OKTA_JSON = {"Content-Type": "application/scim+json; charset=utf-8"}


@attrs.frozen
class Person:
    """Someone Okta provisions, with the role its admin put on the assignment (or none)."""

    email: str
    first: str
    last: str
    role: str | None
    okta_id: str


#: Grace is an admin by the role attribute; Katherine gets none (the default
#: role decides); Edsger is deactivated after provisioning.
GRACE = Person("grace.hopper@demo.test", "Grace", "Hopper", "admin", "00u1grace")
ALAN = Person("alan.turing@demo.test", "Alan", "Turing", "maker", "00u2alan")
KATHERINE = Person("katherine.johnson@demo.test", "Katherine", "Johnson", None, "00u3kath")
EDSGER = Person("edsger.dijkstra@demo.test", "Edsger", "Dijkstra", "contributor", "00u4eds")
PEOPLE = (GRACE, ALAN, KATHERINE, EDSGER)


def okta_user(person: Person) -> dict[str, Any]:
    """The body of Okta's POST /Users for an assignment, the role attribute set if any."""
    body: dict[str, Any] = {
        "schemas": [CORE_USER],
        "userName": person.email,
        "name": {"givenName": person.first, "familyName": person.last},
        "emails": [{"primary": True, "value": person.email, "type": "work"}],
        "displayName": f"{person.first} {person.last}",
        "locale": "en-US",
        "externalId": person.okta_id,
        "groups": [],
        "password": "placeholder-Okta-sends-one",
        "active": True,
    }
    if person.role is not None:
        body["schemas"].append(DEFAULT_ROLE_URN)
        body[DEFAULT_ROLE_URN] = {"role": person.role}
    return body


def provision_like_okta(scim_base_url: str, token: str) -> dict[str, str]:
    """Okta's push; returns the SCIM ids by email.

    As Okta does it: test the connection, look each person up then create
    them, push a group, deactivate one.
    """
    ids: dict[str, str] = {}
    headers = {**OKTA_HEADERS, "Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=scim_base_url, headers=headers, timeout=10) as client:
        probe = client.get("/Users", params={"startIndex": 1, "count": 2})
        assert probe.status_code == 200, probe.text
        for person in PEOPLE:
            lookup = client.get(
                "/Users",
                params={"filter": f'userName eq "{person.email}"', "startIndex": 1, "count": 100},
            )
            assert lookup.status_code == 200, lookup.text
            assert lookup.json()["Resources"] == []
            created = client.post("/Users", json=okta_user(person), headers=OKTA_JSON)
            assert created.status_code == 201, created.text
            ids[person.email] = created.json()["id"]
        group = client.post(
            "/Groups",
            json={
                "schemas": [CORE_GROUP],
                "displayName": "Engineering",
                "members": [{"value": ids[p.email], "display": p.email} for p in PEOPLE],
            },
            headers=OKTA_JSON,
        )
        assert group.status_code == 201, group.text
        deactivated = client.patch(
            f"/Users/{ids[EDSGER.email]}",
            json={
                "schemas": [PATCH_OP],
                "Operations": [{"op": "replace", "value": {"active": False}}],
            },
            headers=OKTA_JSON,
        )
        assert deactivated.status_code == 200, deactivated.text
        assert deactivated.json()["active"] is False
    return ids


def okta_assigns_again(scim_base_url: str, token: str, person: Person) -> str:
    """Okta creates a person the app already has (assigned twice): refused 409; the detail sent."""
    headers = {**OKTA_HEADERS, "Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=scim_base_url, headers=headers, timeout=10) as client:
        again = client.post("/Users", json=okta_user(person), headers=OKTA_JSON)
    assert again.status_code == 409, again.text
    detail: str = again.json()["detail"]
    return detail


def okta_patches_a_bad_path(scim_base_url: str, token: str, member_id: str) -> str:
    """A wrong attribute mapping: a PATCH whose path does not parse, refused 400; its detail."""
    headers = {**OKTA_HEADERS, "Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=scim_base_url, headers=headers, timeout=10) as client:
        bad_patch = client.patch(
            f"/Users/{member_id}",
            json={
                "schemas": [PATCH_OP],
                "Operations": [{"op": "replace", "path": "name.nickName[", "value": "Al"}],
            },
            headers=OKTA_JSON,
        )
    assert bad_patch.status_code == 400, bad_patch.text
    detail: str = bad_patch.json()["detail"]
    return detail


#: The columns of Okta's users report (Reports > Okta users), as a link import reads them.
REPORT_HEADER = ("Username", "First name", "Last name", "Primary email", "Status", "Okta ID")


def users_report(rows: Sequence[tuple[str, str, str, str, str, str]]) -> bytes:
    """Okta's users report as it downloads: CSV with CRLF line ends, one row a person."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(REPORT_HEADER)
    writer.writerows(rows)
    return out.getvalue().encode()


def picked_file(name: str, data: bytes) -> FilePayload:
    """A file for an upload input, as if picked from the disk."""
    return {"name": name, "mimeType": "text/csv", "buffer": data}
