"""RFC 7644 behaviour of /Groups, and the membership shapes IdPs send."""

from __future__ import annotations

from tests.conftest import BASE_URL
from tests.conftest import Workspace
from tests.scim.helpers import GROUP
from tests.scim.helpers import assert_error
from tests.scim.helpers import create_group
from tests.scim.helpers import create_user
from tests.scim.helpers import patch


def _members(workspace: Workspace, group_id: str) -> set[str]:
    body = workspace.client.get(f"/Groups/{group_id}").json()
    return {m["value"] for m in body.get("members", [])}


def test_create_group_with_members(acme: Workspace) -> None:
    """POST /Groups stores members, which come back with $ref and type (RFC 7643 §8.7.1)."""
    jane = create_user(acme.client, "jane@example.com", displayName="Jane Doe")
    group = create_group(acme.client, "Makers", jane["id"])
    assert group["members"] == [
        {"value": jane["id"], "$ref": f"{BASE_URL}/Users/{jane['id']}", "type": "User"}
    ]
    assert group["meta"]["resourceType"] == "Group"


def test_okta_creates_group_with_empty_members(acme: Workspace) -> None:
    """Okta's POST /Groups carries members: [] and must succeed."""
    response = acme.client.post(
        "/Groups", json={"schemas": [GROUP], "displayName": "Empty", "members": []}
    )
    assert response.status_code == 201, response.text


def test_duplicate_display_name_is_409(acme: Workspace) -> None:
    """DisplayName is unique per tenant, case-insensitively."""
    create_group(acme.client, "Admins")
    assert_error(acme.client.post("/Groups", json={"displayName": "ADMINS"}), 409, "uniqueness")


def test_unknown_member_is_400_naming_it_and_nothing_changes(acme: Workspace) -> None:
    """One unknown member id fails the whole request with invalidValue naming the id."""
    jane = create_user(acme.client, "jane@example.com")
    group = create_group(acme.client, "Team")
    response = acme.client.patch(
        f"/Groups/{group['id']}",
        json=patch(
            {"op": "add", "path": "members", "value": [{"value": jane["id"]}, {"value": "ghost"}]}
        ),
    )
    detail = assert_error(response, 400, "invalidValue")
    assert "ghost" in detail
    assert _members(acme, group["id"]) == set()


def test_member_add_is_idempotent(acme: Workspace) -> None:
    """JumpCloud repeats adds: adding a member twice keeps one membership and one version."""
    jane = create_user(acme.client, "jane@example.com")
    group = create_group(acme.client, "Team")
    operation = patch({"op": "add", "path": "members", "value": [{"value": jane["id"]}]})
    first = acme.client.patch(f"/Groups/{group['id']}", json=operation)
    second = acme.client.patch(f"/Groups/{group['id']}", json=operation)
    assert _members(acme, group["id"]) == {jane["id"]}
    assert first.headers["etag"] == second.headers["etag"]


def test_okta_remove_by_filter_plus_add_in_one_request(acme: Workspace) -> None:
    """Okta sends remove members[value eq "id"] and add members in one PATCH."""
    a = create_user(acme.client, "a@example.com")
    b = create_user(acme.client, "b@example.com")
    c = create_user(acme.client, "c@example.com")
    group = create_group(acme.client, "Team", a["id"], b["id"])
    response = acme.client.patch(
        f"/Groups/{group['id']}",
        json=patch(
            {"op": "replace", "value": {"id": group["id"], "displayName": "Team"}},
            {"op": "remove", "path": f'members[value eq "{a["id"]}"]'},
            {"op": "add", "path": "members", "value": [{"value": c["id"]}]},
        ),
    )
    assert response.status_code == 204, response.text
    assert _members(acme, group["id"]) == {b["id"], c["id"]}


def test_entra_remove_members_with_value_list_removes_only_those(acme: Workspace) -> None:
    """Entra's remove members with a value list removes exactly those, not every member."""
    a = create_user(acme.client, "a@example.com")
    b = create_user(acme.client, "b@example.com")
    group = create_group(acme.client, "Team", a["id"], b["id"])
    response = acme.client.patch(
        f"/Groups/{group['id']}",
        json=patch({"op": "Remove", "path": "members", "value": [{"value": a["id"]}]}),
    )
    assert response.status_code == 204, response.text
    assert _members(acme, group["id"]) == {b["id"]}


def test_replace_members_overwrites(acme: Workspace) -> None:
    """Okta's Push Now: replace members with the full list is an authoritative overwrite."""
    a = create_user(acme.client, "a@example.com")
    b = create_user(acme.client, "b@example.com")
    group = create_group(acme.client, "Team", a["id"])
    acme.client.patch(
        f"/Groups/{group['id']}",
        json=patch({"op": "replace", "path": "members", "value": [{"value": b["id"]}]}),
    )
    assert _members(acme, group["id"]) == {b["id"]}


def test_remove_all_members_without_value(acme: Workspace) -> None:
    """Remove members with no value and no filter empties the group (RFC 7644 §3.5.2.2)."""
    a = create_user(acme.client, "a@example.com")
    group = create_group(acme.client, "Team", a["id"])
    acme.client.patch(f"/Groups/{group['id']}", json=patch({"op": "remove", "path": "members"}))
    assert _members(acme, group["id"]) == set()


def test_rename_by_pathless_replace(acme: Workspace) -> None:
    """Okta renames with a path-less replace carrying id and displayName; the id is ignored."""
    group = create_group(acme.client, "Old")
    response = acme.client.patch(
        f"/Groups/{group['id']}",
        json=patch({"op": "replace", "value": {"id": group["id"], "displayName": "New"}}),
    )
    assert response.status_code == 204, response.text
    assert acme.client.get(f"/Groups/{group['id']}").json()["displayName"] == "New"


def test_put_group_with_members_sets_them(acme: Workspace) -> None:
    """Okta's custom app PUTs the full group; members become exactly the given list."""
    a = create_user(acme.client, "a@example.com")
    b = create_user(acme.client, "b@example.com")
    group = create_group(acme.client, "Team", a["id"])
    response = acme.client.put(
        f"/Groups/{group['id']}",
        json={"schemas": [GROUP], "displayName": "Team 2", "members": [{"value": b["id"]}]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["displayName"] == "Team 2"
    assert _members(acme, group["id"]) == {b["id"]}


def test_put_group_without_members_keeps_them(acme: Workspace) -> None:
    """A PUT that omits members renames without dropping anyone."""
    a = create_user(acme.client, "a@example.com")
    group = create_group(acme.client, "Team", a["id"])
    acme.client.put(f"/Groups/{group['id']}", json={"schemas": [GROUP], "displayName": "Renamed"})
    assert _members(acme, group["id"]) == {a["id"]}


def test_excluded_members(acme: Workspace) -> None:
    """excludedAttributes=members leaves members out of GET and list responses."""
    a = create_user(acme.client, "a@example.com")
    group = create_group(acme.client, "Team", a["id"])
    one = acme.client.get(f"/Groups/{group['id']}", params={"excludedAttributes": "members"}).json()
    assert "members" not in one
    listed = acme.client.get(
        "/Groups", params={"filter": 'displayName eq "team"', "excludedAttributes": "members"}
    ).json()
    assert listed["totalResults"] == 1
    assert "members" not in listed["Resources"][0]


def test_delete_group_keeps_users(acme: Workspace) -> None:
    """Deleting a group removes memberships, never the users."""
    a = create_user(acme.client, "a@example.com")
    group = create_group(acme.client, "Team", a["id"])
    assert acme.client.delete(f"/Groups/{group['id']}").status_code == 204
    assert acme.client.get(f"/Users/{a['id']}").status_code == 200
    assert "groups" not in acme.client.get(f"/Users/{a['id']}").json()


def test_group_patch_is_204_with_etag_unless_attributes_are_asked(acme: Workspace) -> None:
    """A group PATCH answers 204 and the new ETag; with attributes= it returns the group."""
    a = create_user(acme.client, "a@example.com")
    group = create_group(acme.client, "Team")
    add = patch({"op": "add", "path": "members", "value": [{"value": a["id"]}]})
    response = acme.client.patch(f"/Groups/{group['id']}", json=add)
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["etag"] != group["meta"]["version"]
    assert response.headers["etag"] == acme.client.get(f"/Groups/{group['id']}").headers["etag"]
    rename = patch({"op": "replace", "path": "displayName", "value": "Team 2"})
    shown = acme.client.patch(
        f"/Groups/{group['id']}", json=rename, params={"attributes": "displayName,members"}
    )
    assert shown.status_code == 200
    assert shown.json()["displayName"] == "Team 2"
    assert [m["value"] for m in shown.json()["members"]] == [a["id"]]
