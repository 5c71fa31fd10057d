"""The role-mapping policy driven through SCIM requests shaped like Okta's and Entra's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest

from pbidentity.admin import Admin
from pbidentity.domain import Member
from pbidentity.members import Members
from pbidentity.policy import TenantPolicy
from pbidentity.roles import GroupMapping
from pbidentity.roles import RolePolicy
from pbidentity.storage import Storage
from tests.conftest import Workspace
from tests.scim.helpers import ROLE
from tests.scim.helpers import assert_error
from tests.scim.helpers import create_group
from tests.scim.helpers import create_user
from tests.scim.helpers import patch
from tests.scim.helpers import user

DATA = Path(__file__).parent.parent / "data"


def member(storage: Storage, member_id: str) -> Member:
    """The stored member, as the host app reads it."""
    return Members(storage).get("acme", member_id)


def set_roles(admin: Admin, **policy: Any) -> None:
    """Give acme a role policy."""
    admin.set_policy("acme", TenantPolicy(roles=RolePolicy(**policy)))


MAPPINGS = (
    GroupMapping(role="admin", group_name="Admins", priority=10),
    GroupMapping(role="maker", group_name="Makers", priority=5),
    GroupMapping(role="contributor", group_name="Writers", priority=5),
)


def test_okta_role_attribute_decides_and_is_returned_as_sent(
    acme: Workspace, storage: Storage
) -> None:
    """The role extension gives the role; GET returns the value Okta sent (no drift)."""
    created = create_user(acme.client, "jane@example.com", **{ROLE: {"role": "Maker"}})
    stored = member(storage, created["id"])
    assert (stored.role, stored.role_source) == ("maker", "attribute")
    assert stored.role_rule == "role attribute maker"
    assert acme.client.get(f"/Users/{created['id']}").json()[ROLE] == {"role": "maker"}


@pytest.mark.parametrize("role_block", [None, {}, {"role": ""}, {"role": "  "}])
def test_a_missing_or_empty_role_is_the_least_privileged_never_admin(
    acme: Workspace, storage: Storage, role_block: dict[str, Any] | None
) -> None:
    """Right after provisioning is switched on, Okta pushes empty roles: they mean viewer."""
    extra = {} if role_block is None else {ROLE: role_block}
    created = create_user(acme.client, "jane@example.com", **extra)
    stored = member(storage, created["id"])
    assert (stored.role, stored.role_source) == ("viewer", "default")


def test_default_role_is_configurable(acme: Workspace, admin: Admin, storage: Storage) -> None:
    """A tenant may give members nothing decides for another default role."""
    set_roles(admin, default_role="Contributor")
    created = create_user(acme.client, "jane@example.com")
    assert member(storage, created["id"]).role == "contributor"


def test_entra_app_roles_primary_first_then_most_privileged(
    acme: Workspace, storage: Storage
) -> None:
    """Core roles: the primary one wins; without a primary, the most privileged known one."""
    primary = create_user(
        acme.client,
        "a@example.com",
        roles=[
            {"value": "Admin", "type": "WindowsAzureActiveDirectoryRole"},
            {"value": "Viewer", "primary": True, "type": "WindowsAzureActiveDirectoryRole"},
        ],
    )
    assert (member(storage, primary["id"]).role, member(storage, primary["id"]).role_source) == (
        "viewer",
        "roles",
    )
    several = create_user(
        acme.client,
        "b@example.com",
        roles=[{"value": "Contributor"}, {"value": "Maker"}, {"value": "Unknown"}],
    )
    assert member(storage, several["id"]).role == "maker"


def test_entra_role_as_a_json_string_in_a_patch(acme: Workspace, storage: Storage) -> None:
    """Entra's PATCH with the role serialised into the value string (recorded sample)."""
    created = create_user(acme.client, "jane@example.com")
    body = json.loads((DATA / "entra-role-json-string.json").read_text())
    response = acme.client.patch(f"/Users/{created['id']}", json=body)
    assert response.status_code == 200, response.text
    assert member(storage, created["id"]).role == "admin"


def test_group_based_mode_highest_priority_wins_and_ties_go_up(
    acme: Workspace, admin: Admin, storage: Storage
) -> None:
    """Group priority decides; equal priorities give the more privileged role."""
    set_roles(admin, mode="group-based", mappings=MAPPINGS)
    jane = create_user(acme.client, "jane@example.com", **{ROLE: {"role": "admin"}})
    create_group(acme.client, "Makers", jane["id"])
    stored = member(storage, jane["id"])
    # Group-based: the personal "admin" is ignored.
    assert (stored.role, stored.role_source) == ("maker", "group")
    assert stored.role_rule == "group 'Makers' (priority 5) maps to maker"
    create_group(acme.client, "Writers", jane["id"])
    assert member(storage, jane["id"]).role == "maker"
    create_group(acme.client, "Admins", jane["id"])
    assert member(storage, jane["id"]).role == "admin"


def test_ties_may_go_to_the_less_privileged_role(
    acme: Workspace, admin: Admin, storage: Storage
) -> None:
    """A tenant can prefer the less privileged role on equal priorities."""
    set_roles(admin, mode="group-based", mappings=MAPPINGS, prefer_less_privileged=True)
    jane = create_user(acme.client, "jane@example.com")
    create_group(acme.client, "Makers", jane["id"])
    create_group(acme.client, "Writers", jane["id"])
    assert member(storage, jane["id"]).role == "contributor"


def test_hybrid_personal_value_overrides_groups(
    acme: Workspace, admin: Admin, storage: Storage
) -> None:
    """Hybrid (the default mode): a personal value wins; without one, groups decide."""
    set_roles(admin, mappings=MAPPINGS)
    jane = create_user(acme.client, "jane@example.com", **{ROLE: {"role": "viewer"}})
    bob = create_user(acme.client, "bob@example.com")
    create_group(acme.client, "Admins", jane["id"], bob["id"])
    assert member(storage, jane["id"]).role == "viewer"
    assert member(storage, bob["id"]).role == "admin"
    # Dropping the personal value lets the group decide.
    response = acme.client.patch(
        f"/Users/{jane['id']}", json=patch({"op": "remove", "path": f"{ROLE}:role"})
    )
    assert response.status_code == 200, response.text
    assert member(storage, jane["id"]).role == "admin"


def test_user_personal_mode_ignores_groups(acme: Workspace, admin: Admin, storage: Storage) -> None:
    """User-personal: group mappings never count."""
    set_roles(admin, mode="user-personal", mappings=MAPPINGS)
    bob = create_user(acme.client, "bob@example.com")
    create_group(acme.client, "Admins", bob["id"])
    assert member(storage, bob["id"]).role == "viewer"


def test_group_changes_redecide_roles(acme: Workspace, admin: Admin, storage: Storage) -> None:
    """Adding, removing, renaming and deleting a mapped group re-decide its members' roles."""
    set_roles(admin, mode="group-based", mappings=MAPPINGS)
    bob = create_user(acme.client, "bob@example.com")
    group = create_group(acme.client, "Staff")
    url = f"/Groups/{group['id']}"
    assert member(storage, bob["id"]).role == "viewer"
    # Okta's rename, with the id inside the value, into a mapped name.
    rename = {"op": "replace", "value": {"id": group["id"], "displayName": "Makers"}}
    add = {"op": "add", "path": "members", "value": [{"value": bob["id"]}]}
    assert acme.client.patch(url, json=patch(rename, add)).status_code == 204
    assert member(storage, bob["id"]).role == "maker"
    remove = {"op": "remove", "path": f'members[value eq "{bob["id"]}"]'}
    assert acme.client.patch(url, json=patch(remove)).status_code == 204
    assert member(storage, bob["id"]).role == "viewer"
    assert acme.client.patch(url, json=patch(add)).status_code == 204
    assert member(storage, bob["id"]).role == "maker"
    assert acme.client.delete(url).status_code == 204
    stored = member(storage, bob["id"])
    assert (stored.role, stored.role_source) == ("viewer", "default")


def test_changing_the_policy_redecides_every_member(
    acme: Workspace, admin: Admin, storage: Storage
) -> None:
    """A new mapping applies at once, with a role_changed event per member it moves."""
    bob = create_user(acme.client, "bob@example.com")
    create_group(acme.client, "Engineering", bob["id"])
    assert member(storage, bob["id"]).role == "viewer"
    set_roles(admin, mappings=(GroupMapping(role="maker", group_name="engineering"),))
    assert member(storage, bob["id"]).role == "maker"
    events = [e for e in Members(storage).audit_trail("acme") if e.type == "member.role_changed"]
    assert events[-1].subject_id == bob["id"]
    assert (events[-1].data["old"], events[-1].data["new"]) == ("viewer", "maker")
    assert events[-1].actor == "app"


def test_a_linked_members_app_role_is_never_raised_nor_dropped_by_silence(
    acme: Workspace, admin: Admin, storage: Storage
) -> None:
    """Linking keeps the role the member had in the app when the IdP sends none."""
    members = Members(storage)
    set_roles(admin, default_role="maker")
    viewer = members.add("acme", "v@example.com", email="v@example.com", role="viewer")
    boss = members.add("acme", "boss@example.com", email="boss@example.com", role="admin")
    for existing in (viewer, boss):
        found = acme.client.get(
            "/Users", params={"filter": f'userName eq "{existing.user_name}"'}
        ).json()["Resources"]
        assert [r["id"] for r in found] == [existing.id]
        body = user(existing.user_name, externalId=f"00u{existing.id[:8]}")
        assert acme.client.put(f"/Users/{existing.id}", json=body).status_code == 200
    linked_viewer, linked_boss = member(storage, viewer.id), member(storage, boss.id)
    assert (linked_viewer.role, linked_viewer.role_source) == ("viewer", "kept")
    assert (linked_boss.role, linked_boss.role_source) == ("admin", "kept")
    assert linked_boss.scim_managed
    # An explicit value from the IdP does change it.
    response = acme.client.patch(
        f"/Users/{boss.id}",
        json=patch({"op": "replace", "path": f"{ROLE}:role", "value": "contributor"}),
    )
    assert response.status_code == 200
    assert member(storage, boss.id).role == "contributor"


def test_an_unknown_role_value_is_a_400_and_changes_nothing(
    acme: Workspace, storage: Storage
) -> None:
    """The role extension only takes the app's roles."""
    created = create_user(acme.client, "jane@example.com")
    response = acme.client.patch(
        f"/Users/{created['id']}",
        json=patch({"op": "replace", "path": f"{ROLE}:role", "value": "owner"}),
    )
    detail = assert_error(response, 400, "invalidValue")
    assert "owner" in detail
    assert member(storage, created["id"]).role == "viewer"


# The admin guard -----------------------------------------------------------------


@pytest.fixture
def guarded(acme: Workspace, admin: Admin) -> Workspace:
    """Acme with the admin guard on and group mappings."""
    policy = TenantPolicy(roles=RolePolicy(mappings=MAPPINGS, admin_guard=True))
    admin.set_policy("acme", policy)
    return acme


def test_guard_refuses_deactivating_the_last_admin(guarded: Workspace, storage: Storage) -> None:
    """The last active admin cannot be deactivated; with a second admin it can."""
    boss = create_user(guarded.client, "boss@example.com", **{ROLE: {"role": "admin"}})
    deactivate = patch({"op": "replace", "path": "active", "value": False})
    detail = assert_error(guarded.client.patch(f"/Users/{boss['id']}", json=deactivate), 409)
    assert "without an active admin" in detail
    assert member(storage, boss["id"]).active
    create_user(guarded.client, "deputy@example.com", **{ROLE: {"role": "admin"}})
    assert guarded.client.patch(f"/Users/{boss['id']}", json=deactivate).status_code == 200
    assert not member(storage, boss["id"]).active


def test_guard_refuses_demotion_and_deletion_of_the_last_admin(
    guarded: Workspace, storage: Storage
) -> None:
    """A role change, a group removal or a DELETE that leaves no admin is refused whole."""
    bob = create_user(guarded.client, "bob@example.com")
    admins = create_group(guarded.client, "Admins", bob["id"])
    assert member(storage, bob["id"]).role == "admin"
    remove = patch({"op": "remove", "path": "members"})
    assert_error(guarded.client.patch(f"/Groups/{admins['id']}", json=remove), 409)
    assert [
        m["value"] for m in guarded.client.get(f"/Groups/{admins['id']}").json()["members"]
    ] == [bob["id"]]
    demote = patch({"op": "replace", "path": f"{ROLE}:role", "value": "viewer"})
    assert_error(guarded.client.patch(f"/Users/{bob['id']}", json=demote), 409)
    assert_error(guarded.client.delete(f"/Users/{bob['id']}"), 409)
    assert member(storage, bob["id"]).role == "admin"


def test_without_the_guard_the_last_admin_can_go(acme: Workspace, storage: Storage) -> None:
    """The guard is optional and off by default."""
    boss = create_user(acme.client, "boss@example.com", **{ROLE: {"role": "admin"}})
    assert acme.client.delete(f"/Users/{boss['id']}").status_code == 204


def test_policy_with_unknown_role_is_refused(admin: Admin, acme: Workspace) -> None:
    """A mapping to a role the app does not have is a clear configuration error."""
    from pbidentity.exceptions import ConfigurationError

    bad = TenantPolicy(roles=RolePolicy(mappings=(GroupMapping(role="owner", group_name="X"),)))
    with pytest.raises(ConfigurationError, match="'owner' is not one of the app's roles"):
        admin.set_policy("acme", bad)
    assert admin.get_policy("acme") == TenantPolicy()
    assert attrs.evolve(admin.get_policy("acme"), on_delete="deactivate") != TenantPolicy()
