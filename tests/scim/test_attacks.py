"""Identities an IdP would push to take over a member the app already has: each is refused.

Where an IdP lets a user hold an address of their choosing (a domain they
control, a username they type), that address may fold to an existing
member's: ``ceo@straße.test`` to ``ceo@strasse.test``, a ligature or
full-width letters to ``finance@acme.test``. SCIM's folded uniqueness may
refuse such a look-alike, but must never link it to the member it imitates,
neither by a POST nor by Okta's lookup-then-update. Every case runs on SQLite
and PostgreSQL, through the WSGI adapter.
"""

from __future__ import annotations

from typing import Any

import pytest

from pbidentity.members import Members
from pbidentity.storage import Storage
from tests.conftest import Workspace
from tests.scim.helpers import assert_error
from tests.scim.helpers import create_user
from tests.scim.helpers import patch
from tests.scim.helpers import user


def full_width(text: str) -> str:
    """The same ASCII text typed with full-width forms (U+FF01..U+FF5E)."""
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in text)


#: (the IdP user's address, the existing member's, a character the refusal names)
LOOKALIKES = [
    pytest.param("ceo@straße.test", "ceo@strasse.test", "U+00DF", id="sharp-s"),
    pytest.param("ceo@strasse.test", "ceo@straße.test", "U+00DF", id="sharp-s-reversed"),
    pytest.param("\ufb01nance@acme.test", "finance@acme.test", "U+FB01", id="ligature"),
    pytest.param(f"{full_width('finance')}@acme.test", "finance@acme.test", "U+FF46", id="wide"),
]


def untouched(storage: Storage, member_id: str, user_name: str) -> None:
    """The member is as the app made it: its userName, not SCIM-managed, no externalId."""
    member = Members(storage).get("acme", member_id)
    assert member.user_name == user_name
    assert not member.scim_managed
    assert member.external_id is None


@pytest.mark.parametrize(("attacker", "victim", "named"), LOOKALIKES)
def test_a_post_never_links_a_look_alike(
    acme: Workspace, storage: Storage, attacker: str, victim: str, named: str
) -> None:
    """POST /Users for a look-alike of an app member: 409 naming the characters, nothing changed."""
    member = Members(storage).add("acme", victim, email=victim, role="admin")
    response = acme.client.post("/Users", json=user(attacker, externalId="00uEVIL"))
    detail = assert_error(response, 409)
    assert "only looks like" in detail
    assert named in detail
    untouched(storage, member.id, victim)


def test_a_post_never_links_a_look_alike_email(acme: Workspace, storage: Storage) -> None:
    """Found by its primary email through the fold: the same refusal."""
    member = Members(storage).add("acme", "ceo", email="ceo@strasse.test", role="admin")
    body = user("mallory", emails=[{"value": "ceo@straße.test", "primary": True}])
    detail = assert_error(acme.client.post("/Users", json=body), 409)
    assert "only looks like member" in detail
    assert "email 'ceo@strasse.test'" in detail
    untouched(storage, member.id, "ceo")


@pytest.mark.parametrize(("attacker", "victim", "named"), LOOKALIKES)
@pytest.mark.parametrize("method", ["put", "patch"])
def test_lookup_then_update_never_links_a_look_alike(
    acme: Workspace, storage: Storage, attacker: str, victim: str, named: str, method: str
) -> None:
    """Okta's filter finds the member through the fold; the update that would link it is a 409."""
    member = Members(storage).add("acme", victim, email=victim, role="admin")
    found = acme.client.get("/Users", params={"filter": f'userName eq "{attacker}"'}).json()
    # The filter is case-insensitive through the fold (RFC 7643 userName is
    # caseExact false), so the IdP sees the member it imitates...
    assert [r["id"] for r in found["Resources"]] == [member.id]
    body: dict[str, Any]
    if method == "put":
        body = user(attacker, externalId="00uEVIL")
    else:
        body = patch(
            {"op": "replace", "value": {"userName": attacker, "externalId": "00uEVIL"}},
        )
    response = getattr(acme.client, method)(f"/Users/{member.id}", json=body)
    # ...but its first update, which would link the member to the IdP user, is refused.
    detail = assert_error(response, 409, "uniqueness")
    assert "only looks like the userName" in detail
    assert named in detail
    untouched(storage, member.id, victim)


def test_a_look_alike_is_not_created_beside_the_member_either(
    acme: Workspace, storage: Storage
) -> None:
    """No second member that only looks like the first: userNames stay unique under the fold."""
    Members(storage).add("acme", "ceo@strasse.test")
    create_user(acme.client, "someone@acme.test")
    assert_error(acme.client.post("/Users", json=user("ceo@straße.test")), 409)
    listed = acme.client.get("/Users").json()
    assert sorted(r["userName"] for r in listed["Resources"]) == [
        "ceo@strasse.test",
        "someone@acme.test",
    ]


def test_the_same_address_still_links(acme: Workspace, storage: Storage) -> None:
    """The exact rule keeps what must match: case and the U-label or A-label domain spelling."""
    members = Members(storage)
    jane = members.add("acme", "jane@bücher.test", email="jane@bücher.test")
    response = acme.client.post("/Users", json=user("Jane@BÜCHER.test", externalId="00u1"))
    assert response.status_code == 201, response.text
    assert response.json()["id"] == jane.id
    assert members.get("acme", jane.id).scim_managed


def test_an_idp_may_respell_the_user_it_already_manages(acme: Workspace) -> None:
    """The IdP renaming its own linked user (ss to ß) is an update, not a take-over."""
    created = create_user(acme.client, "ceo@strasse.test", externalId="00u1")
    response = acme.client.patch(
        f"/Users/{created['id']}",
        json=patch({"op": "replace", "path": "userName", "value": "ceo@straße.test"}),
    )
    assert response.status_code == 200, response.text
    assert response.json()["userName"] == "ceo@straße.test"
