"""The host app's typed profiles: members and groups as scim2-models resources, as SCIM has them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from scim2_models import Address
from scim2_models import Context
from scim2_models import GroupMember
from scim2_models import Manager

from pbidentity.admin import Admin
from pbidentity.domain import Event
from pbidentity.domain import Member
from pbidentity.events import EventDispatcher
from pbidentity.exceptions import ConfigurationError
from pbidentity.exceptions import InputError
from pbidentity.exceptions import NotFoundError
from pbidentity.members import Members
from pbidentity.models import EnterpriseUser
from pbidentity.models import GroupProfile
from pbidentity.models import MemberProfile
from pbidentity.models import RoleExtension
from pbidentity.models import role_extension
from pbidentity.roles import GroupMapping
from pbidentity.scim import ScimConfig
from pbidentity.scim import ScimService
from pbidentity.storage import Storage
from pbidentity.wsgi import ScimWsgiApp
from tests.conftest import BASE_URL
from tests.conftest import Workspace
from tests.scim.helpers import ENTERPRISE
from tests.scim.helpers import ROLE
from tests.scim.helpers import create_group
from tests.scim.helpers import create_user
from tests.scim.helpers import patch

DATA = Path(__file__).parent.parent / "data"
CUSTOM_URN = "urn:okta:acme_app:1.0:user:custom"


def sample(name: str, **ids: str) -> Any:
    """A recorded request body, with the recorded ids replaced (``recorded=new``)."""
    text = (DATA / name).read_text(encoding="utf-8")
    for recorded, new in ids.items():
        text = text.replace(recorded.replace("_", "-"), new)
    return json.loads(text)


def served(body: dict[str, Any]) -> dict[str, Any]:
    """A SCIM GET body less what only a request can say: its location, groups and $refs."""
    body = {key: value for key, value in body.items() if key != "groups"}
    body["meta"] = {key: value for key, value in body["meta"].items() if key != "location"}
    if "members" in body:
        body["members"] = [
            {key: value for key, value in member.items() if key != "$ref"}
            for member in body["members"]
        ]
    return body


def dumped(profile: MemberProfile | GroupProfile) -> dict[str, Any]:
    """A profile as the SCIM endpoint would serialise it."""
    document: dict[str, Any] = profile.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    return document


def assert_profile_is_served(client: httpx.Client, members: Members, slug: str, uid: str) -> None:
    """The member's profile is, attribute for attribute, what SCIM GET answers for it."""
    body = client.get(f"/Users/{uid}").json()
    assert dumped(members.get(slug, uid).profile) == served(body)


def test_okta_pushes_give_the_profile_scim_serves(acme: Workspace, storage: Storage) -> None:
    """Okta's create, its PUT echo and its deactivation: the profile follows the GET body."""
    members = Members(storage)
    created = acme.client.post("/Users", json=sample("okta-create-user.json"))
    assert created.status_code == 201, created.text
    uid = created.json()["id"]
    assert_profile_is_served(acme.client, members, "acme", uid)
    echo = sample("okta-put-user-echo.json") | {"id": uid, "userName": created.json()["userName"]}
    assert acme.client.put(f"/Users/{uid}", json=echo).status_code == 200
    assert_profile_is_served(acme.client, members, "acme", uid)
    profile = members.get("acme", uid).profile
    assert profile.name is not None
    assert (profile.name.given_name, profile.display_name) == ("Another", "Another User")
    assert profile.role_extension is not None
    assert profile.role_extension.role == "maker"
    assert profile.enterprise is None
    deactivate = sample("okta-oin-deactivate.json")
    assert acme.client.patch(f"/Users/{uid}", json=deactivate).status_code == 200
    assert_profile_is_served(acme.client, members, "acme", uid)
    assert members.get("acme", uid).profile.active is False


def test_entra_pushes_give_the_profile_scim_serves(acme: Workspace, storage: Storage) -> None:
    """Entra's create, multi-valued updates, manager and string booleans: profile == GET body."""
    members = Members(storage)
    created = acme.client.post("/Users", json=sample("entra-create-user.json"))
    assert created.status_code == 201, created.text
    uid = created.json()["id"]
    assert_profile_is_served(acme.client, members, "acme", uid)
    manager = create_user(acme.client, "manager@contoso.com")
    steps = [
        sample("entra-update-multivalued.json"),
        sample("entra-add-manager.json", **{"2819c223_7f76_453a_919d_ab1234567891": manager["id"]}),
        sample("entra-aadoptscim062020-pathless-replace.json"),
        sample("entra-legacy-string-boolean.json"),
    ]
    for body in steps:
        assert acme.client.patch(f"/Users/{uid}", json=body).status_code == 200
        assert_profile_is_served(acme.client, members, "acme", uid)
    profile = members.get("acme", uid).profile
    assert profile.enterprise is not None
    assert profile.enterprise.manager is not None
    assert profile.enterprise.manager.value == manager["id"]
    assert profile.roles is not None
    assert [role.value for role in profile.roles] == ["Admin"]
    # Entra's hybrid tenants provision addresses no email validator accepts.
    assert profile.emails is not None
    assert all(email.value and "@" in email.value for email in profile.emails)


def test_the_enterprise_extension_is_typed(acme: Workspace, storage: Storage) -> None:
    """Every Enterprise User attribute reaches the host app with its type (mypy checks this)."""
    body = sample("rfc7643-8.3-enterprise-user.json")
    body[ROLE] = {"role": "Viewer"}
    created = acme.client.post("/Users", json=body)
    assert created.status_code == 201, created.text
    profile = Members(storage).get("acme", created.json()["id"]).profile
    enterprise: EnterpriseUser | None = profile.enterprise
    assert enterprise is not None
    department: str | None = enterprise.department
    employee_number: str | None = enterprise.employee_number
    cost_center: str | None = enterprise.cost_center
    organization: str | None = enterprise.organization
    division: str | None = enterprise.division
    assert (employee_number, cost_center, organization, division, department) == (
        "701984",
        "4130",
        "Universal Studios",
        "Theme Park",
        "Tour Operations",
    )
    manager: Manager | None = enterprise.manager
    assert manager is not None
    assert manager.value == "26118915-6090-4610-87e4-49d8ca9f808d"
    role: RoleExtension | None = profile.role_extension
    assert role is not None
    role_value: str | None = role.role
    assert role_value == "viewer"  # the IdP's value, canonical; member.role is the decided one
    user_name: str | None = profile.user_name
    assert user_name == "bjensen@example.com"
    assert profile.addresses is not None
    work: Address = profile.addresses[0]
    assert (work.locality, work.primary) == ("Hollywood", True)
    created_at: datetime | None = profile.meta.created if profile.meta else None
    assert created_at is not None
    assert created_at.tzinfo is not None


def test_a_profile_is_validated_once_and_kept(storage: Storage, admin: Admin) -> None:
    """Reading ``profile`` twice validates once: the same object comes back."""
    admin.create_tenant("acme", "Acme")
    member = Members(storage).add("acme", "jane@example.com", given_name="Jane")
    first = member.profile
    assert member.profile is first
    assert first.name is not None
    assert first.name.given_name == "Jane"
    # Another value (an evolved member) has its own profile.
    renamed = attrs.evolve(member, attributes={**member.attributes, "displayName": "J"})
    assert renamed.profile is not first
    assert renamed.profile.display_name == "J"
    assert first.display_name is None


@pytest.fixture
def custom_urn_client(storage: Storage, acme: Workspace) -> Iterator[httpx.Client]:
    """A SCIM service whose role extension has the app's own URN (Okta's app namespace)."""
    app = ScimWsgiApp(ScimService(storage, ScimConfig(role_urn=CUSTOM_URN)))
    with httpx.Client(
        transport=httpx.WSGITransport(app=app),
        base_url=BASE_URL,
        headers={"Authorization": f"Bearer {acme.token}"},
    ) as client:
        yield client


def test_a_custom_role_urn_is_the_profiles_too(
    custom_urn_client: httpx.Client, storage: Storage
) -> None:
    """With the app's own URN, the profile carries the role under it, like the GET body."""
    body = sample("okta-create-user.json") | {CUSTOM_URN: {"role": "admin"}}
    created = custom_urn_client.post("/Users", json=body)
    assert created.status_code == 201, created.text
    uid = created.json()["id"]
    members = Members(storage, role_urn=CUSTOM_URN)
    assert_profile_is_served(custom_urn_client, members, "acme", uid)
    profile = members.get("acme", uid).profile
    assert profile.role_extension is not None
    assert profile.role_extension.role == "admin"
    assert type(profile.role_extension) is role_extension(CUSTOM_URN)
    assert dumped(profile)["schemas"][-1] == CUSTOM_URN
    assert [m.profile.schemas[-1] for m in members.all("acme")] == [CUSTOM_URN]


def test_a_role_urn_the_scim_service_refuses_is_refused(storage: Storage) -> None:
    """Members refuses a role URN that is no URN, or a standard one, as ScimConfig does."""
    with pytest.raises(ConfigurationError, match="invalid"):
        Members(storage, role_urn="role")
    with pytest.raises(ConfigurationError, match="standard schema URN"):
        Members(storage, role_urn=ENTERPRISE)


def test_a_group_comes_with_its_members(acme: Workspace, storage: Storage) -> None:
    """``Members.group`` is the typed Group SCIM serves, its members named."""
    jane = create_user(acme.client, "jane.doe@example.com", displayName="Jane Doe")
    bob = create_user(acme.client, "bob@example.com")
    group = create_group(acme.client, "Engineering", jane["id"], bob["id"])
    profile = Members(storage).group("acme", group["id"])
    assert profile.display_name == "Engineering"
    members: list[GroupMember] = profile.members or []
    assert {(m.value, m.display) for m in members} == {
        (jane["id"], "Jane Doe"),
        (bob["id"], "Bob Family"),  # no displayName: given and family name
    }
    body = served(acme.client.get(f"/Groups/{group['id']}").json())
    document = dumped(profile)
    # SCIM GET leaves each member's display out (RFC 7643 §8.7.1); the profile names them.
    for member in document["members"]:
        del member["display"]
    body["members"].sort(key=lambda m: m["value"])
    document["members"].sort(key=lambda m: m["value"])
    assert document == body
    with pytest.raises(NotFoundError, match="no group"):
        Members(storage).group("acme", "missing")


def test_an_app_edit_that_is_no_scim_user_is_refused(storage: Storage, admin: Admin) -> None:
    """An unknown attribute or a value of the wrong type: InputError, and nothing is written."""
    admin.create_tenant("acme", "Acme")
    members = Members(storage)
    jane = members.add("acme", "jane@example.com")
    with pytest.raises(InputError, match="not a valid SCIM User") as refused:
        members.edit("acme", jane.id, attributes={"name": "Jane"})
    assert "name" in str(refused.value)
    with pytest.raises(InputError, match="favouriteColour"):
        members.edit("acme", jane.id, attributes={"favouriteColour": "blue"})
    assert members.get("acme", jane.id).version == jane.version
    edited = members.edit("acme", jane.id, attributes={"title": "CTO"})
    assert edited.profile.title == "CTO"


def test_a_stored_document_that_is_no_user_says_which_member(storage: Storage) -> None:
    """A document written around pbidentity fails its profile with the member's id, not a 500."""
    now = datetime.now(UTC)
    member = Member(
        tenant_id="t",
        id="m-1",
        attributes={"userName": "x@example.com", "emails": "not a list of emails"},
        created=now,
        last_modified=now,
    )
    with pytest.raises(InputError, match="member m-1 is not a valid SCIM resource"):
        _ = member.profile


def delivered_events(storage: Storage, **options: Any) -> list[Event]:
    """Every pending event, as a subscribed handler receives it."""
    received: list[Event] = []
    dispatcher = EventDispatcher(storage, **options)
    dispatcher.subscribe(received.append)
    dispatcher.deliver_pending()
    return received


def test_member_events_carry_the_profile_the_change_left(acme: Workspace, storage: Storage) -> None:
    """Created, updated, deactivated, reactivated, deleted: each profile is the GET body then."""
    created = acme.client.post("/Users", json=sample("entra-create-user.json"))
    assert created.status_code == 201, created.text
    uid = created.json()["id"]
    bodies = [served(created.json())]
    steps = [
        patch({"op": "replace", "path": "displayName", "value": "Ada"}),
        sample("okta-oin-deactivate.json"),
        patch({"op": "replace", "path": "active", "value": True}),
    ]
    for step in steps:
        response = acme.client.patch(f"/Users/{uid}", json=step)
        assert response.status_code == 200, response.text
        bodies.append(served(response.json()))
    assert acme.client.delete(f"/Users/{uid}").status_code == 204
    events = delivered_events(storage)
    carried = [(e.type, dumped(e.profile)) for e in events if e.profile is not None]
    assert carried == [
        ("member.created", bodies[0]),
        ("member.updated", bodies[1]),
        ("member.deactivated", bodies[2]),
        ("member.reactivated", bodies[3]),
        ("member.deleted", bodies[3]),
    ]
    deleted = events[-1]
    assert deleted.member is not None
    assert (deleted.member.id, deleted.member.role, deleted.member.active) == (uid, "maker", True)
    assert deleted.profile is deleted.profile  # validated once


def test_a_role_decided_again_carries_no_profile(acme: Workspace, storage: Storage) -> None:
    """member.role_changed (a group's members decided in bulk) carries the roles, not the member."""
    admin = Admin(storage)
    policy = admin.get_policy("acme")
    mapping = GroupMapping(role="admin", group_name="Admins", priority=1)
    admin.set_policy(
        "acme",
        attrs.evolve(policy, roles=attrs.evolve(policy.roles, mode="hybrid", mappings=(mapping,))),
    )
    jane = create_user(acme.client, "jane@example.com")
    delivered_events(storage)
    create_group(acme.client, "Admins", jane["id"])
    events = delivered_events(storage)
    changed = [e for e in events if e.type == "member.role_changed"]
    assert [(e.data["new"], e.member, e.profile) for e in changed] == [("admin", None, None)]


def test_group_events_carry_the_group(acme: Workspace, storage: Storage) -> None:
    """group.created lists its members; a rename and a membership change carry the group as left."""
    jane = create_user(acme.client, "jane@example.com")
    bob = create_user(acme.client, "bob@example.com")
    group = create_group(acme.client, "Team", jane["id"])
    url = f"/Groups/{group['id']}"
    rename = {"op": "replace", "path": "displayName", "value": "Squad"}
    assert acme.client.patch(url, json=patch(rename)).status_code == 204
    add = {"op": "add", "path": "members", "value": [{"value": bob["id"]}]}
    assert acme.client.patch(url, json=patch(add)).status_code == 204
    assert acme.client.delete(url).status_code == 204
    events = [e for e in delivered_events(storage) if e.type.startswith("group.")]
    seen = [
        (
            e.type,
            e.group.display_name,
            e.group.meta.version if e.group.meta else None,
            None if e.group.members is None else sorted(m.value or "" for m in e.group.members),
        )
        for e in events
        if e.group is not None
    ]
    assert seen == [
        ("group.created", "Team", 'W/"1"', [jane["id"]]),
        ("group.renamed", "Squad", 'W/"2"', None),
        ("group.members_changed", "Squad", 'W/"3"', None),
        ("group.deleted", "Squad", 'W/"3"', sorted([jane["id"], bob["id"]])),
    ]
    assert all(e.group is not None and e.group.id == group["id"] for e in events)


def test_the_dispatchers_role_urn_is_the_profiles(
    custom_urn_client: httpx.Client, storage: Storage
) -> None:
    """A dispatcher given the app's role URN hands out profiles with the role under it."""
    body = sample("okta-create-user.json") | {CUSTOM_URN: {"role": "viewer"}}
    created = custom_urn_client.post("/Users", json=body)
    assert created.status_code == 201, created.text
    (event,) = [e for e in delivered_events(storage, role_urn=CUSTOM_URN) if e.profile]
    assert event.profile is not None
    assert dumped(event.profile) == served(created.json())
    trail = Members(storage, role_urn=CUSTOM_URN).audit_trail("acme")
    assert trail[-1].profile is not None
    assert dumped(trail[-1].profile) == dumped(event.profile)
