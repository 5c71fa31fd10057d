"""Linking IdP identities to the members the app already had, through SCIM."""

from __future__ import annotations

from pbidentity.admin import Admin
from pbidentity.linking import LinkPolicy
from pbidentity.members import Members
from pbidentity.policy import TenantPolicy
from pbidentity.storage import Storage
from tests.conftest import Workspace
from tests.scim.helpers import assert_error
from tests.scim.helpers import create_user
from tests.scim.helpers import patch
from tests.scim.helpers import user


def test_entra_post_links_an_app_member_with_the_same_id(acme: Workspace, storage: Storage) -> None:
    """A POST for a person the app already has links that member instead of a 409."""
    members = Members(storage)
    jane = members.add("acme", "Jane@Example.com", email="jane@example.com", role="maker")
    body = user("jane@example.com", externalId="e1b2c3")
    response = acme.client.post("/Users", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["id"] == jane.id
    linked = members.get("acme", jane.id)
    assert linked.scim_managed
    assert linked.external_id == "e1b2c3"
    assert linked.user_name == "jane@example.com"
    assert (linked.role, linked.role_source) == ("maker", "kept")
    events = [e for e in members.audit_trail("acme") if e.subject_id == jane.id]
    assert [e.type for e in events][-2:] == ["member.linked", "member.updated"]
    assert events[-2].data["matchedBy"] == "userName"
    assert events[-2].actor == "token:okta"


def test_post_links_by_primary_email_when_usernames_differ(
    acme: Workspace, storage: Storage
) -> None:
    """An app member known by a short name is found by its email."""
    members = Members(storage)
    jdoe = members.add("acme", "jdoe", email="Jane.Doe@Example.com")
    response = acme.client.post("/Users", json=user("jane.doe@example.com"))
    assert response.status_code == 201, response.text
    assert response.json()["id"] == jdoe.id
    assert members.get("acme", jdoe.id).user_name == "jane.doe@example.com"


def test_post_of_a_deactivated_member_reactivates_the_same_one(acme: Workspace) -> None:
    """Reassigning someone brings back the same member, with its memberships."""
    created = create_user(acme.client, "jane@example.com", externalId="00u1")
    group = acme.client.post(
        "/Groups", json={"displayName": "Team", "members": [{"value": created["id"]}]}
    ).json()
    deactivate = patch({"op": "replace", "value": {"active": False}})
    assert acme.client.patch(f"/Users/{created['id']}", json=deactivate).status_code == 200
    again = acme.client.post("/Users", json=user("jane@example.com", externalId="00u1"))
    assert again.status_code == 201, again.text
    assert again.json()["id"] == created["id"]
    assert again.json()["active"] is True
    members = acme.client.get(f"/Groups/{group['id']}").json()["members"]
    assert [m["value"] for m in members] == [created["id"]]


def test_post_of_a_provisioned_user_is_409(acme: Workspace) -> None:
    """Okta's SPEC test: creating the same user twice gives 409 uniqueness."""
    create_user(acme.client, "jane@example.com")
    detail = assert_error(
        acme.client.post("/Users", json=user("JANE@example.com")), 409, "uniqueness"
    )
    assert "already provisioned" in detail


def test_two_members_matching_one_identity_is_a_conflict(acme: Workspace, storage: Storage) -> None:
    """One member by userName, another by email: the admin decides, nothing changes."""
    members = Members(storage)
    a = members.add("acme", "jane@example.com")
    b = members.add("acme", "jd", email="jane.doe@example.com")
    body = user("jane@example.com", emails=[{"value": "jane.doe@example.com", "primary": True}])
    detail = assert_error(acme.client.post("/Users", json=body), 409)
    assert a.id in detail
    assert b.id in detail
    assert not members.get("acme", a.id).scim_managed
    assert not members.get("acme", b.id).scim_managed


def test_an_externalid_linked_to_another_member_is_a_conflict(acme: Workspace) -> None:
    """A PATCH that gives a member another member's externalId is refused."""
    create_user(acme.client, "a@example.com", externalId="00uA")
    b = create_user(acme.client, "b@example.com", externalId="00uB")
    response = acme.client.patch(
        f"/Users/{b['id']}", json=patch({"op": "replace", "path": "externalId", "value": "00uA"})
    )
    detail = assert_error(response, 409, "uniqueness")
    assert "00uA" in detail
    assert acme.client.get(f"/Users/{b['id']}").json()["externalId"] == "00uB"


def test_an_email_change_onto_another_members_email_is_a_conflict(acme: Workspace) -> None:
    """Two members never share a primary email: the next link would be ambiguous."""
    create_user(acme.client, "a@example.com")
    b = create_user(acme.client, "b@example.com")
    response = acme.client.put(
        f"/Users/{b['id']}",
        json=user("b@example.com", emails=[{"value": "A@Example.com", "primary": True}]),
    )
    detail = assert_error(response, 409, "uniqueness")
    assert "A@Example.com" in detail
    assert acme.client.get(f"/Users/{b['id']}").json()["emails"][0]["value"] == "b@example.com"


def test_plus_tags_can_be_ignored_when_matching(
    acme: Workspace, admin: Admin, storage: Storage
) -> None:
    """With plus_tags="strip", jane+okta@ finds the app's jane@ member."""
    admin.set_policy("acme", TenantPolicy(linking=LinkPolicy(plus_tags="strip")))
    jane = Members(storage).add("acme", "jane@example.com", email="jane@example.com")
    response = acme.client.post("/Users", json=user("jane+okta@example.com"))
    assert response.status_code == 201, response.text
    assert response.json()["id"] == jane.id


def test_linking_is_per_tenant(acme: Workspace, globex: Workspace, storage: Storage) -> None:
    """Another tenant's member with the same email is never linked."""
    other = Members(storage).add("globex", "jane@example.com", email="jane@example.com")
    created = create_user(acme.client, "jane@example.com")
    assert created["id"] != other.id
    assert not Members(storage).get("globex", other.id).scim_managed
