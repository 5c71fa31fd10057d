"""The SCIM-managed lifecycle: read-only members, the SCIM switch, deprovisioning, events."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC
from datetime import datetime
from pathlib import Path

import pytest

from pbidentity._lifecycle import LifecycleWork
from pbidentity.admin import Admin
from pbidentity.domain import Event
from pbidentity.domain import Member
from pbidentity.domain import Tenant
from pbidentity.events import EventDispatcher
from pbidentity.exceptions import LinkConflictError
from pbidentity.exceptions import ManagedMemberError
from pbidentity.linking import Identity
from pbidentity.members import Members
from pbidentity.policy import TenantPolicy
from pbidentity.roles import RoleSet
from pbidentity.storage import Storage
from pbidentity.storage import open_storage
from pbidentity.storage.memory import MemoryStorage
from tests.conftest import Workspace
from tests.scim.helpers import ROLE
from tests.scim.helpers import create_group
from tests.scim.helpers import create_user
from tests.scim.helpers import patch


def test_scim_managed_members_are_read_only_for_what_the_idp_owns(
    acme: Workspace, storage: Storage
) -> None:
    """The guard names the refused fields and where to change them; the rest is the app's."""
    members = Members(storage)
    created = create_user(acme.client, "jane@example.com")
    with pytest.raises(ManagedMemberError) as refused:
        members.check_edit("acme", created["id"], ["name", "role", "nickName", "ACTIVE"])
    assert refused.value.fields == ("active", "name", "role")
    assert "managed by the identity provider" in str(refused.value)
    members.check_edit("acme", created["id"], ["nickName", "title"])
    with pytest.raises(ManagedMemberError):
        members.edit("acme", created["id"], role="admin")
    edited = members.edit("acme", created["id"], attributes={"title": "CTO"})
    assert edited.attributes["title"] == "CTO"
    app_member = members.add("acme", "bob@example.com")
    members.check_edit("acme", app_member.id, ["name", "role"])


def test_switching_scim_off_makes_members_editable_and_keeps_links(
    acme: Workspace, admin: Admin, storage: Storage
) -> None:
    """Off: editable, the app's role sticks; on again: managed again, still linked."""
    members = Members(storage)
    created = create_user(acme.client, "jane@example.com", externalId="00u1")
    admin.set_scim_enabled("acme", False)
    edited = members.edit("acme", created["id"], role="maker", attributes={"displayName": "J"})
    assert (edited.role, edited.role_source) == ("maker", "app")
    assert edited.external_id == "00u1"
    assert edited.scim_managed
    admin.set_scim_enabled("acme", True)
    with pytest.raises(ManagedMemberError):
        members.check_edit("acme", created["id"], ["role"])


def test_switching_scim_off_can_drop_the_links(
    acme: Workspace, admin: Admin, storage: Storage
) -> None:
    """Dropping links forgets the externalId; the next push links the member afresh."""
    members = Members(storage)
    created = create_user(acme.client, "jane@example.com", externalId="00u1")
    admin.set_scim_enabled("acme", False, keep_links=False)
    unlinked = members.get("acme", created["id"])
    assert not unlinked.scim_managed
    assert unlinked.external_id is None
    assert unlinked.role_source == "app"
    admin.set_scim_enabled("acme", True)
    members.check_edit("acme", created["id"], ["role"])
    again = acme.client.post("/Users", json={"userName": "jane@example.com", "externalId": "00u2"})
    assert again.status_code == 201, again.text
    assert again.json()["id"] == created["id"]
    assert members.get("acme", created["id"]).external_id == "00u2"


def test_deactivation_keeps_member_memberships_and_role(acme: Workspace, storage: Storage) -> None:
    """active:false keeps everything; active:true brings the same member back."""
    created = create_user(acme.client, "jane@example.com", **{ROLE: {"role": "maker"}})
    group = create_group(acme.client, "Team", created["id"])
    url = f"/Users/{created['id']}"
    off = acme.client.patch(url, json=patch({"op": "Replace", "path": "active", "value": "False"}))
    assert off.status_code == 200
    body = acme.client.get(url).json()
    assert body["active"] is False
    assert [g["value"] for g in body["groups"]] == [group["id"]]
    assert Members(storage).get("acme", created["id"]).role == "maker"
    on = acme.client.patch(url, json=patch({"op": "replace", "path": "active", "value": True}))
    assert on.json()["active"] is True
    types = [e.type for e in Members(storage).audit_trail("acme") if e.subject_id == created["id"]]
    assert types == ["member.created", "member.deactivated", "member.reactivated"]


def test_delete_removes_or_only_deactivates_per_tenant(
    acme: Workspace, admin: Admin, storage: Storage
) -> None:
    """DELETE removes by default; with on_delete=deactivate the member stays, inactive."""
    gone = create_user(acme.client, "gone@example.com")
    assert acme.client.delete(f"/Users/{gone['id']}").status_code == 204
    assert acme.client.get(f"/Users/{gone['id']}").status_code == 404
    admin.set_policy("acme", TenantPolicy(on_delete="deactivate"))
    kept = create_user(acme.client, "kept@example.com")
    group = create_group(acme.client, "Team", kept["id"])
    assert acme.client.delete(f"/Users/{kept['id']}").status_code == 204
    body = acme.client.get(f"/Users/{kept['id']}").json()
    assert body["active"] is False
    assert [g["value"] for g in body["groups"]] == [group["id"]]
    back = acme.client.post("/Users", json={"userName": "kept@example.com"})
    assert back.json()["id"] == kept["id"]
    trail = [e.type for e in Members(storage).audit_trail("acme")]
    assert "member.deleted" in trail
    assert trail[-1] == "member.reactivated"


def test_events_record_who_changed_what(acme: Workspace, storage: Storage) -> None:
    """Every change is an event with the token that made it, in order."""
    created = create_user(acme.client, "jane@example.com")
    group = create_group(acme.client, "Team", created["id"])
    rename = {"op": "replace", "value": {"id": group["id"], "displayName": "Squad"}}
    assert acme.client.patch(f"/Groups/{group['id']}", json=patch(rename)).status_code == 204
    assert acme.client.delete(f"/Groups/{group['id']}").status_code == 204
    trail = Members(storage).audit_trail("acme")
    assert [(e.type, e.subject_id) for e in trail] == [
        ("member.created", created["id"]),
        ("group.created", group["id"]),
        ("group.renamed", group["id"]),
        ("group.deleted", group["id"]),
    ]
    assert {e.actor for e in trail} == {"token:okta"}
    assert trail[1].data.items() >= {"displayName": "Team", "members": [created["id"]]}.items()
    assert trail[2].data.items() >= {"old": "Team", "new": "Squad"}.items()
    assert trail[2].group is not None
    assert trail[2].group.display_name == "Squad"
    seqs = [e.seq or 0 for e in trail]
    assert seqs == sorted(seqs)


def test_a_refused_request_leaves_no_event(acme: Workspace, storage: Storage) -> None:
    """Events are written with the change: a failed write has none."""
    create_user(acme.client, "jane@example.com")
    assert acme.client.post("/Users", json={"userName": "JANE@example.com"}).status_code == 409
    assert [e.type for e in Members(storage).audit_trail("acme")] == ["member.created"]


def test_dispatcher_delivers_in_order_and_retries_a_failed_handler(
    acme: Workspace, storage: Storage
) -> None:
    """A handler that raises leaves the event pending; the next round delivers it again."""
    seen: list[str] = []
    failures = iter([True, False])

    def flaky(event: Event) -> None:
        if event.type == "group.created" and next(failures):
            raise RuntimeError("the host app's queue is down")
        seen.append(event.type)

    dispatcher = EventDispatcher(storage, batch=2)
    dispatcher.subscribe(flaky)
    roles_seen: list[Event] = []
    dispatcher.subscribe(roles_seen.append, types={"member.created"})
    created = create_user(acme.client, "jane@example.com")
    create_group(acme.client, "Team", created["id"])
    create_user(acme.client, "bob@example.com")
    assert dispatcher.deliver_pending() == 1
    assert seen == ["member.created"]
    assert dispatcher.deliver_pending() == 2
    assert seen == ["member.created", "group.created", "member.created"]
    assert dispatcher.deliver_pending() == 0
    assert [e.type for e in roles_seen] == ["member.created", "member.created"]
    assert roles_seen[0].subject_id == created["id"]
    with pytest.raises(ValueError, match="unknown event types"):
        dispatcher.subscribe(roles_seen.append, types={"member.exploded"})


_CRASHING_WRITER = """
import os, sys
import httpx
from pbidentity.scim import ScimService
from pbidentity.storage import open_storage
from pbidentity.storage.memory import MemoryStorage
from pbidentity.wsgi import ScimWsgiApp

service = ScimService(open_storage(sys.argv[1]))
# The process dies right after the commit, before any delivery.
service.after_commit = lambda: os._exit(3)
client = httpx.Client(
    transport=httpx.WSGITransport(app=ScimWsgiApp(service)),
    base_url="https://app.example.com/scim/v2",
    headers={"Authorization": f"Bearer {sys.argv[2]}"},
)
client.post("/Users", json={"userName": "crash@example.com"})
sys.exit(0)
"""


def test_an_event_survives_a_crash_between_commit_and_delivery(
    tmp_path: Path, admin: Admin, database_url: str
) -> None:
    """A process killed after committing leaves its events pending; another delivers them."""
    admin.create_tenant("acme")
    admin.set_scim_enabled("acme", True)
    secret = admin.create_token("acme", "okta").secret
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(_CRASHING_WRITER))
    done = subprocess.run(
        [sys.executable, str(script), database_url, secret],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    storage = open_storage(database_url)
    try:
        delivered: list[Event] = []
        dispatcher = EventDispatcher(storage)
        dispatcher.subscribe(delivered.append)
        assert dispatcher.deliver_pending() == 1
        assert [(e.type, e.data["userName"]) for e in delivered] == [
            ("member.created", "crash@example.com")
        ]
        assert dispatcher.deliver_pending() == 0
    finally:
        storage.close()


def test_deleting_a_member_moves_its_groups_etag(acme: Workspace) -> None:
    """A group that lost a member to a DELETE has a new ETag: no stale 304."""
    created = create_user(acme.client, "jane@example.com")
    group = create_group(acme.client, "Team", created["id"])
    etag = acme.client.get(f"/Groups/{group['id']}").headers["etag"]
    assert acme.client.delete(f"/Users/{created['id']}").status_code == 204
    again = acme.client.get(f"/Groups/{group['id']}", headers={"If-None-Match": etag})
    assert again.status_code == 200
    assert again.headers["etag"] != etag
    assert again.json()["members"] == []
    assert again.json()["meta"]["lastModified"] != group["meta"]["lastModified"]


def test_an_email_read_before_a_write_is_read_again_after_it() -> None:
    """A create reuses the candidates its link step read, never once the unit has written."""
    storage = MemoryStorage()
    now = datetime(2026, 1, 2, tzinfo=UTC)
    ids = iter(f"id{i}" for i in range(100))
    with storage.transaction() as tx:
        tx.add_tenant(Tenant(id="t1", slug="acme", name="Acme", created=now, scim_enabled=True))
    with storage.transaction() as tx:
        tenant = tx.get_tenant("t1")
        assert tenant is not None
        work = LifecycleWork.open(
            tx, tenant, roles=RoleSet(), actor="test", clock=lambda: now, new_id=lambda: next(ids)
        )

        def member(member_id: str, user_name: str) -> Member:
            emails = [{"value": "shared@example.com", "primary": True}]
            attributes = {"userName": user_name, "emails": emails}
            return Member(
                tenant_id="t1",
                id=member_id,
                attributes=attributes,
                scim_managed=True,
                created=now,
                last_modified=now,
            )

        step = work.link_step(Identity(user_name="a@example.com", emails=("shared@example.com",)))
        assert step.action == "create"
        work.create(member("m1", "a@example.com"))
        with pytest.raises(LinkConflictError, match="already the email of member m1"):
            work.create(member("m2", "b@example.com"))
