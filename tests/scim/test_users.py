"""RFC 7644 behaviour of /Users: create, read, replace, patch, delete, versions."""

from __future__ import annotations

from tests.conftest import BASE_URL
from tests.conftest import Workspace
from tests.scim.helpers import ENTERPRISE
from tests.scim.helpers import ROLE
from tests.scim.helpers import USER
from tests.scim.helpers import assert_error
from tests.scim.helpers import create_user
from tests.scim.helpers import patch
from tests.scim.helpers import user


def test_create_returns_the_full_user_with_id_and_meta(acme: Workspace) -> None:
    """POST /Users answers 201 with the whole user, its id, Location, ETag and meta."""
    response = acme.client.post("/Users", json=user("jane.doe@example.com", externalId="00u1"))
    assert response.status_code == 201
    body = response.json()
    assert body["userName"] == "jane.doe@example.com"
    assert body["externalId"] == "00u1"
    assert body["id"]
    assert body["schemas"] == [USER]
    meta = body["meta"]
    assert meta["resourceType"] == "User"
    assert meta["location"] == f"{BASE_URL}/Users/{body['id']}"
    assert response.headers["location"] == meta["location"]
    assert response.headers["etag"] == meta["version"]
    assert meta["created"] == meta["lastModified"]
    assert response.headers["content-type"] == "application/scim+json"


def test_okta_placeholder_password_and_empty_groups_are_ignored(acme: Workspace) -> None:
    """Okta's POST carries a password and groups: []; neither is stored or returned."""
    created = create_user(acme.client, "pw@example.com", password="tlpWENT2m", groups=[])
    assert "password" not in created
    fetched = acme.client.get(f"/Users/{created['id']}").json()
    assert "password" not in fetched
    assert "groups" not in fetched


def test_username_is_unique_case_insensitively(acme: Workspace) -> None:
    """A second user whose userName differs only in case is a 409 uniqueness error."""
    create_user(acme.client, "jane@example.com")
    response = acme.client.post("/Users", json=user("JANE@Example.com"))
    detail = assert_error(response, 409, "uniqueness")
    assert "userName" in detail


def test_get_unknown_user_is_404_with_detail(acme: Workspace) -> None:
    """GET of an id that does not exist is a 404 SCIM Error naming the id."""
    detail = assert_error(acme.client.get("/Users/does-not-exist"), 404)
    assert "does-not-exist" in detail


def test_missing_username_is_400(acme: Workspace) -> None:
    """A user without userName is refused with invalidValue and nothing is created."""
    response = acme.client.post("/Users", json={"schemas": [USER], "name": {"givenName": "X"}})
    assert_error(response, 400, "invalidValue")
    assert acme.client.get("/Users").json()["totalResults"] == 0


def test_role_is_matched_case_insensitively_and_returned(acme: Workspace) -> None:
    """The role extension accepts any case and returns the canonical role, listing its URN."""
    created = create_user(acme.client, "r@example.com", **{ROLE: {"role": "MAKER"}})
    assert created[ROLE] == {"role": "maker"}
    assert ROLE in created["schemas"]


def test_role_extension_accepted_without_its_urn_in_schemas(acme: Workspace) -> None:
    """Okta and Entra may omit the extension URN from schemas; the role still counts."""
    body = user("noschema@example.com", **{ROLE: {"role": "viewer"}})
    assert body["schemas"] == [USER]
    response = acme.client.post("/Users", json=body)
    assert response.status_code == 201, response.text
    assert response.json()[ROLE] == {"role": "viewer"}


def test_unknown_role_is_400_listing_the_allowed_roles(acme: Workspace) -> None:
    """An unknown role value is invalidValue and the detail lists the app's roles."""
    response = acme.client.post("/Users", json=user("x@example.com", **{ROLE: {"role": "owner"}}))
    detail = assert_error(response, 400, "invalidValue")
    for role in ("admin", "maker", "contributor", "viewer"):
        assert role in detail


def test_empty_role_is_accepted_and_means_no_role(acme: Workspace) -> None:
    """Okta may push an empty role; it is accepted and never read as admin."""
    created = create_user(acme.client, "e@example.com", **{ROLE: {"role": ""}})
    assert ROLE not in created


def test_put_with_okta_echoes_replaces_profile(acme: Workspace) -> None:
    """Okta PUTs back what it read (id, meta, groups, password): echoes ignored, rest replaced."""
    created = create_user(acme.client, "put@example.com", **{ROLE: {"role": "viewer"}})
    body = dict(created)
    body["name"] = {"givenName": "New", "familyName": "Name"}
    body["password"] = "placeholder"
    body["groups"] = []
    response = acme.client.put(f"/Users/{created['id']}", json=body)
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["name"] == {"givenName": "New", "familyName": "Name"}
    assert updated["id"] == created["id"]
    assert updated[ROLE] == {"role": "viewer"}
    assert updated["meta"]["version"] != created["meta"]["version"]
    assert updated["meta"]["created"] == created["meta"]["created"]


def test_put_without_active_keeps_active(acme: Workspace) -> None:
    """A PUT that does not mention active never deactivates (nor reactivates) the user."""
    created = create_user(acme.client, "keep@example.com")
    body = user("keep@example.com")
    del body["active"]
    updated = acme.client.put(f"/Users/{created['id']}", json=body).json()
    assert updated["active"] is True


def test_put_without_role_keeps_role(acme: Workspace) -> None:
    """A PUT without the role extension says nothing about the role: it is kept."""
    created = create_user(acme.client, "keeprole@example.com", **{ROLE: {"role": "maker"}})
    updated = acme.client.put(f"/Users/{created['id']}", json=user("keeprole@example.com")).json()
    assert updated[ROLE] == {"role": "maker"}


def test_put_to_a_taken_username_is_409(acme: Workspace) -> None:
    """Renaming a user onto another user's userName is refused and changes nothing."""
    create_user(acme.client, "a@example.com")
    b = create_user(acme.client, "b@example.com")
    response = acme.client.put(f"/Users/{b['id']}", json=user("A@EXAMPLE.COM"))
    assert_error(response, 409, "uniqueness")
    assert acme.client.get(f"/Users/{b['id']}").json()["userName"] == "b@example.com"


def test_pathless_patch_deactivates_and_reactivates_the_same_user(acme: Workspace) -> None:
    """Okta's catalogue-app deactivation keeps the user readable; reactivation keeps the id."""
    created = create_user(acme.client, "cycle@example.com", **{ROLE: {"role": "maker"}})
    response = acme.client.patch(
        f"/Users/{created['id']}", json=patch({"op": "replace", "value": {"active": False}})
    )
    assert response.status_code == 200, response.text
    assert response.json()["active"] is False
    fetched = acme.client.get(f"/Users/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["active"] is False
    assert fetched.json()[ROLE] == {"role": "maker"}
    back = acme.client.patch(
        f"/Users/{created['id']}", json=patch({"op": "replace", "value": {"active": True}})
    )
    assert back.json()["active"] is True
    assert back.json()["id"] == created["id"]


def test_entra_capitalised_op_and_string_boolean(acme: Workspace) -> None:
    """Entra sends {"op":"Replace","path":"active","value":"False"}: it deactivates."""
    created = create_user(acme.client, "entra@example.com")
    response = acme.client.patch(
        f"/Users/{created['id']}", json=patch({"op": "Replace", "path": "active", "value": "False"})
    )
    assert response.status_code == 200, response.text
    assert response.json()["active"] is False


def test_patch_enterprise_and_role_by_urn_path(acme: Workspace) -> None:
    """URN-qualified paths reach the enterprise and role extensions."""
    created = create_user(acme.client, "urn@example.com")
    response = acme.client.patch(
        f"/Users/{created['id']}",
        json=patch(
            {"op": "add", "path": f"{ENTERPRISE}:employeeNumber", "value": "701984"},
            {"op": "replace", "path": f"{ROLE}:role", "value": "Contributor"},
        ),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body[ENTERPRISE]["employeeNumber"] == "701984"
    assert body[ROLE] == {"role": "contributor"}
    assert ENTERPRISE in body["schemas"]


def test_patch_is_atomic(acme: Workspace) -> None:
    """When one operation fails, none is applied."""
    created = create_user(acme.client, "atomic@example.com")
    response = acme.client.patch(
        f"/Users/{created['id']}",
        json=patch(
            {"op": "replace", "path": "displayName", "value": "Changed"},
            {"op": "replace", "path": f"{ROLE}:role", "value": "emperor"},
        ),
    )
    assert_error(response, 400, "invalidValue")
    fetched = acme.client.get(f"/Users/{created['id']}").json()
    assert "displayName" not in fetched
    assert fetched["meta"]["version"] == created["meta"]["version"]


def test_patch_readonly_attribute_is_mutability_error(acme: Workspace) -> None:
    """Changing id through PATCH is refused with scimType mutability."""
    created = create_user(acme.client, "ro@example.com")
    response = acme.client.patch(
        f"/Users/{created['id']}", json=patch({"op": "replace", "path": "id", "value": "x"})
    )
    assert_error(response, 400, "mutability")


def test_patch_that_changes_nothing_keeps_the_version(acme: Workspace) -> None:
    """Replaying the same PATCH does not bump meta.version: the ETag stays stable."""
    created = create_user(acme.client, "same@example.com")
    operation = patch({"op": "replace", "path": "active", "value": True})
    response = acme.client.patch(f"/Users/{created['id']}", json=operation)
    assert response.json()["meta"]["version"] == created["meta"]["version"]


def test_if_match_mismatch_is_412_and_match_succeeds(acme: Workspace) -> None:
    """If-Match with a stale version is 412 and changes nothing; the current version succeeds."""
    created = create_user(acme.client, "etag@example.com")
    version = created["meta"]["version"]
    first = acme.client.patch(
        f"/Users/{created['id']}",
        json=patch({"op": "replace", "path": "displayName", "value": "One"}),
        headers={"If-Match": version},
    )
    assert first.status_code == 200, first.text
    stale = acme.client.patch(
        f"/Users/{created['id']}",
        json=patch({"op": "replace", "path": "displayName", "value": "Two"}),
        headers={"If-Match": version},
    )
    assert_error(stale, 412)
    assert acme.client.get(f"/Users/{created['id']}").json()["displayName"] == "One"
    deleted = acme.client.delete(f"/Users/{created['id']}", headers={"If-Match": version})
    assert_error(deleted, 412)


def test_if_none_match_gives_304(acme: Workspace) -> None:
    """GET with the current ETag in If-None-Match is 304 without a body."""
    created = create_user(acme.client, "cache@example.com")
    response = acme.client.get(
        f"/Users/{created['id']}", headers={"If-None-Match": created["meta"]["version"]}
    )
    assert response.status_code == 304
    assert response.content == b""


def test_delete_removes_user_and_its_memberships(acme: Workspace) -> None:
    """DELETE answers 204; the user is gone and no group lists it any more."""
    created = create_user(acme.client, "gone@example.com")
    group = acme.client.post(
        "/Groups",
        json={"displayName": "Team", "members": [{"value": created["id"]}]},
    ).json()
    assert acme.client.delete(f"/Users/{created['id']}").status_code == 204
    assert_error(acme.client.get(f"/Users/{created['id']}"), 404)
    assert acme.client.get(f"/Groups/{group['id']}").json().get("members", []) == []
    assert_error(acme.client.delete(f"/Users/{created['id']}"), 404)


def test_user_groups_are_computed_and_read_only(acme: Workspace) -> None:
    """User.groups lists the user's groups; sending groups in PUT changes nothing."""
    created = create_user(acme.client, "member@example.com")
    group = acme.client.post(
        "/Groups", json={"displayName": "Makers", "members": [{"value": created["id"]}]}
    ).json()
    fetched = acme.client.get(f"/Users/{created['id']}").json()
    assert [g["value"] for g in fetched["groups"]] == [group["id"]]
    assert fetched["groups"][0]["display"] == "Makers"
    body = dict(fetched)
    body["groups"] = []
    acme.client.put(f"/Users/{created['id']}", json=body)
    again = acme.client.get(f"/Users/{created['id']}").json()
    assert [g["value"] for g in again["groups"]] == [group["id"]]


def test_patch_with_a_wrong_type_is_refused(acme: Workspace) -> None:
    """A PATCH value of the wrong type is invalidValue, whichever validation path it takes."""
    created = create_user(acme.client, "types@example.com")
    cases = (
        ("active", "maybe"),
        ("active", 5),
        ("displayName", 42),
        ("title", True),
        ("name.givenName", 7),
        ("name", {"familyName": ["x"]}),
    )
    for path, value in cases:
        response = acme.client.patch(
            f"/Users/{created['id']}", json=patch({"op": "replace", "path": path, "value": value})
        )
        assert_error(response, 400, "invalidValue")
    fetched = acme.client.get(f"/Users/{created['id']}").json()
    assert fetched["meta"]["version"] == created["meta"]["version"]


def test_patch_removing_username_is_refused(acme: Workspace) -> None:
    """The userName is required: removing it by PATCH is refused and the user keeps it."""
    created = create_user(acme.client, "keepname@example.com")
    response = acme.client.patch(
        f"/Users/{created['id']}", json=patch({"op": "remove", "path": "userName"})
    )
    assert response.status_code == 400
    assert acme.client.get(f"/Users/{created['id']}").json()["userName"] == "keepname@example.com"


def test_put_with_a_wrong_type_in_a_changed_attribute_is_refused(acme: Workspace) -> None:
    """A PUT whose changed name carries a number where a string belongs is invalidValue."""
    created = create_user(acme.client, "puttype@example.com")
    body = dict(created)
    body["name"] = {"givenName": 12, "familyName": "Doe"}
    assert_error(acme.client.put(f"/Users/{created['id']}", json=body), 400, "invalidValue")
    assert acme.client.get(f"/Users/{created['id']}").json()["name"] == created["name"]


def test_user_created_without_active_is_active_everywhere(acme: Workspace) -> None:
    """A POST without active creates an active user, returned and found as such."""
    response = acme.client.post("/Users", json={"schemas": [USER], "userName": "plain@example.com"})
    assert response.status_code == 201
    assert response.json()["active"] is True
    found = acme.client.get("/Users", params={"filter": "active eq true"}).json()
    assert [u["userName"] for u in found["Resources"]] == ["plain@example.com"]


def test_email_types_are_an_open_list(acme: Workspace) -> None:
    """emails.type takes any label (canonical values are suggestions, RFC 7643 §2.3.1)."""
    created = create_user(
        acme.client,
        "labels@example.com",
        emails=[{"value": "labels@corp.local", "type": "corporate", "primary": True}],
    )
    assert created["emails"] == [
        {"value": "labels@corp.local", "type": "corporate", "primary": True}
    ]
