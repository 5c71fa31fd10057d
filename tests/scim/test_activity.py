"""The provisioning activity: each SCIM request of a workspace recorded, without secrets."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from pbidentity import PbIdentity
from pbidentity.admin import Admin
from pbidentity.domain import ScimActivity
from pbidentity.scim import ActivityConfig
from pbidentity.scim import ScimConfig
from pbidentity.scim import ScimService
from pbidentity.scim._activity import redact
from pbidentity.storage import Storage
from pbidentity.wsgi import ScimWsgiApp
from tests.conftest import BASE_URL
from tests.conftest import Workspace
from tests.scim.helpers import create_user
from tests.scim.helpers import patch
from tests.scim.helpers import user

SECRET_PASSWORD = "Sup3r-secret-pa55word"


def service(app: ScimWsgiApp) -> ScimService:
    """The service behind the adapter."""
    return app.service


def client_for(service: ScimService, token: str) -> httpx.Client:
    """A client of ``service`` (behind the WSGI adapter) sending ``token``."""
    return httpx.Client(
        transport=httpx.WSGITransport(app=ScimWsgiApp(service)),
        base_url=BASE_URL,
        headers={"Authorization": f"Bearer {token}"},
    )


def recorded(service: ScimService, storage: Storage, tenant_id: str) -> Sequence[ScimActivity]:
    """A workspace's recorded requests, newest first, after writing what is buffered."""
    assert service.activity is not None
    service.activity.flush()
    with storage.transaction(write=False) as tx:
        return tx.scim_activity(tenant_id, limit=1000)


def activity(app: ScimWsgiApp, storage: Storage, admin: Admin, slug: str) -> Sequence[ScimActivity]:
    """The workspace's recorded requests, newest first, after writing what is buffered."""
    recorder = service(app).activity
    assert recorder is not None
    recorder.flush()
    tenant_id = admin.get_tenant(slug).id
    with storage.transaction(write=False) as tx:
        return tx.scim_activity(tenant_id, limit=1000)


def test_each_request_is_recorded_with_its_answer_and_request_id(
    app: ScimWsgiApp, storage: Storage, admin: Admin, acme: Workspace
) -> None:
    """Time, token, method, path with query, status, resource id and X-Request-Id, per request."""
    created = create_user(acme.client, "ada@acme.example")
    listed = acme.client.get("/Users", params={"filter": 'userName eq "ada@acme.example"'})
    assert listed.status_code == 200
    refused = acme.client.post("/Users", json=user("ada@acme.example"))
    assert refused.status_code == 409
    entries = activity(app, storage, admin, "acme")
    assert [(e.method, e.status) for e in entries] == [("POST", 409), ("GET", 200), ("POST", 201)]
    conflict, search, create = entries
    assert create.resource_id == created["id"]
    assert create.path == "/Users"
    assert search.path == '/Users?filter=userName eq "ada@acme.example"'
    assert search.resource_id is None
    assert {e.token_name for e in entries} == {"okta"}
    assert conflict.scim_type == "uniqueness"
    assert conflict.detail == refused.json()["detail"]
    assert conflict.failed
    assert not create.failed
    assert refused.headers["x-request-id"] == conflict.id
    assert listed.headers["x-request-id"] == search.id
    assert len({e.id for e in entries}) == 3
    assert all(e.duration_ms > 0 for e in entries)
    assert all(e.request_body is None and e.response_body is None for e in entries)


def test_refused_tokens_are_recorded_for_their_workspace_unknown_ones_nowhere(
    app: ScimWsgiApp, storage: Storage, admin: Admin, acme: Workspace, globex: Workspace
) -> None:
    """A revoked token's 401 and a switched-off SCIM's 403 show; an unknown token's 401 does not."""
    admin.revoke_token("acme", "okta")
    assert acme.client.get("/Users").status_code == 401
    admin.set_scim_enabled("globex", False)
    assert globex.client.get("/Groups").status_code == 403
    unknown = acme.client.get("/Users", headers={"Authorization": "Bearer pbi_nobody"})
    assert unknown.status_code == 401
    assert unknown.headers["x-request-id"]
    [revoked] = activity(app, storage, admin, "acme")
    assert (revoked.status, revoked.token_name) == (401, "okta")
    assert "revoked" in (revoked.detail or "")
    [off] = activity(app, storage, admin, "globex")
    assert (off.status, off.path) == (403, "/Groups")
    assert "switched off" in (off.detail or "")


def test_requests_answered_before_authentication_are_recorded_for_the_tokens_workspace(
    app: ScimWsgiApp, storage: Storage, admin: Admin, acme: Workspace
) -> None:
    """A wrong path (a base URL typed wrong), a wrong method and discovery show, with the token."""
    assert acme.client.get("/scim/v2/Users").status_code == 404
    assert acme.client.delete("/Users").status_code == 405
    assert acme.client.get("/ServiceProviderConfig").status_code == 200
    anonymous = acme.client.get("/Nothing", headers={"Authorization": ""})
    assert anonymous.status_code == 404
    entries = activity(app, storage, admin, "acme")
    assert [(e.method, e.path, e.status) for e in entries] == [
        ("GET", "/ServiceProviderConfig", 200),
        ("DELETE", "/Users", 405),
        ("GET", "/scim/v2/Users", 404),
    ]
    assert {e.token_name for e in entries} == {"okta"}
    assert "No endpoint /scim/v2/Users" in (entries[2].detail or "")


def test_a_workspace_sees_only_its_own_requests(
    app: ScimWsgiApp, storage: Storage, admin: Admin, acme: Workspace, globex: Workspace
) -> None:
    """Requests are recorded under the workspace their token belongs to, never another's."""
    create_user(acme.client, "ada@acme.example")
    create_user(globex.client, "bob@globex.example")
    globex.client.get("/Groups")
    assert [e.path for e in activity(app, storage, admin, "acme")] == ["/Users"]
    assert [e.path for e in activity(app, storage, admin, "globex")] == ["/Groups", "/Users"]


def test_no_authorization_header_or_body_is_stored_by_default(
    app: ScimWsgiApp, storage: Storage, admin: Admin, acme: Workspace
) -> None:
    """Neither the bearer token nor a password appears in anything stored."""
    create_user(acme.client, "ada@acme.example", password=SECRET_PASSWORD)
    entries = activity(app, storage, admin, "acme")
    stored = repr(entries)
    assert SECRET_PASSWORD not in stored
    assert acme.token not in stored


def test_kept_bodies_are_redacted_and_bounded(
    storage: Storage, admin: Admin, acme: Workspace
) -> None:
    """With keep_bodies, bodies are kept with passwords redacted, cut at max_body_bytes."""
    keeping = ScimService(
        storage, ScimConfig(activity=ActivityConfig(keep_bodies=True, max_body_bytes=300))
    )
    with client_for(keeping, acme.token) as client:
        created = create_user(client, "ada@acme.example", password=SECRET_PASSWORD)
        change = patch({"op": "replace", "path": "password", "value": SECRET_PASSWORD})
        assert client.patch(f"/Users/{created['id']}", json=change).status_code == 200
        big = user("bob@acme.example", title="x" * 2000)
        assert client.post("/Users", json=big).status_code == 201
    entries = recorded(keeping, storage, admin.get_tenant("acme").id)
    big_create, password_patch, create = entries
    stored = repr(entries)
    assert SECRET_PASSWORD not in stored
    assert acme.token not in stored
    assert create.request_body is not None
    assert '"password":"[redacted]"' in create.request_body
    assert '"userName":"ada@acme.example"' in create.request_body
    assert create.response_body is not None
    assert created["id"] in create.response_body
    assert password_patch.request_body is not None
    assert '"value":"[redacted]"' in password_patch.request_body
    assert password_patch.resource_id == created["id"]
    assert big_create.request_body is not None
    assert len(big_create.request_body.encode()) < 400
    assert big_create.request_body.endswith("bytes in all)")


def test_redaction_reaches_every_depth_and_every_secret_name() -> None:
    """Nested and listed secrets, PATCH values of secret paths: all redacted, the rest kept."""
    document = {
        "userName": "ada",
        "Password": "p1",
        "Operations": [
            {"op": "add", "path": "password", "value": "p2"},
            {"op": "replace", "value": {"password": "p3", "title": "Engineer"}},
            {"op": "replace", "path": "title", "value": "kept"},
        ],
        "urn:x": {"clientSecret": "s", "accessToken": "t", "credentials": ["c"]},
    }
    assert redact(document) == {
        "userName": "ada",
        "Password": "[redacted]",
        "Operations": [
            {"op": "add", "path": "password", "value": "[redacted]"},
            {"op": "replace", "value": {"password": "[redacted]", "title": "Engineer"}},
            {"op": "replace", "path": "title", "value": "kept"},
        ],
        "urn:x": {
            "clientSecret": "[redacted]",
            "accessToken": "[redacted]",
            "credentials": "[redacted]",
        },
    }


def test_successes_are_buffered_and_written_as_one_batch(
    app: ScimWsgiApp, storage: Storage, admin: Admin, acme: Workspace
) -> None:
    """Successes wait in the buffer (no write per request); a failure writes them all at once."""
    recorder = service(app).activity
    assert recorder is not None
    recorder.flush()
    for _ in range(5):
        assert acme.client.get("/Users").status_code == 200
    assert recorder.pending() == 5
    tenant_id = admin.get_tenant("acme").id
    with storage.transaction(write=False) as tx:
        assert tx.scim_activity(tenant_id) == []
    assert acme.client.get("/Users/nobody").status_code == 404
    assert recorder.pending() == 0
    with storage.transaction(write=False) as tx:
        assert len(tx.scim_activity(tenant_id)) == 6


def test_recording_that_fails_never_fails_the_request(
    app: ScimWsgiApp,
    storage: Storage,
    admin: Admin,
    acme: Workspace,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A write of the activity that breaks is logged and dropped; the SCIM answer stands."""
    recorder = service(app).activity
    assert recorder is not None
    recorder.storage = _Broken(storage)  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="pbidentity.scim.activity"):
        response = acme.client.get("/Users/nobody")
    assert response.status_code == 404
    assert "could not record 1 SCIM requests" in caplog.text
    assert recorder.pending() == 0


class _Broken:
    """A storage whose transactions fail (as a full disk would)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def transaction(self, *, write: bool = True) -> object:
        raise RuntimeError("the disk is full")


def test_each_flush_keeps_a_workspace_within_its_bounds(
    storage: Storage, admin: Admin, acme: Workspace
) -> None:
    """max_per_workspace=3 keeps 3; past the retention, each flush drops twice what it wrote."""
    now = [admin.get_tenant("acme").created + timedelta(days=1)]
    bounded = ScimService(
        storage,
        ScimConfig(activity=ActivityConfig(max_per_workspace=3, flush_size=1)),
        clock=lambda: now[0],
    )
    tenant_id = admin.get_tenant("acme").id
    with client_for(bounded, acme.token) as client:
        for _ in range(5):
            assert client.get("/Users").status_code == 200
        assert len(recorded(bounded, storage, tenant_id)) == 3
        now[0] += timedelta(days=15)
        assert client.get("/Groups").status_code == 200
        assert [e.path for e in recorded(bounded, storage, tenant_id)] == ["/Groups", "/Users"]
        assert client.get("/Groups").status_code == 200
    assert [e.path for e in recorded(bounded, storage, tenant_id)] == ["/Groups", "/Groups"]


def test_the_sweep_prunes_idle_workspaces(
    app: ScimWsgiApp, storage: Storage, admin: Admin, acme: Workspace, globex: Workspace
) -> None:
    """prune() drops every workspace's requests past the retention, in batches."""
    create_user(acme.client, "ada@acme.example")
    for _ in range(3):
        globex.client.get("/Users")
    recorder = service(app).activity
    assert recorder is not None
    recorder.flush()
    assert recorder.prune() == 0
    recorder.clock = lambda: admin.get_tenant("acme").created + timedelta(days=30)
    assert recorder.prune(batch=2, pause=0) == 4
    assert activity(app, storage, admin, "acme") == []
    assert activity(app, storage, admin, "globex") == []


def test_the_config_refuses_bounds_that_cannot_work() -> None:
    """Zero or negative bounds are refused when the config is built, naming the field."""
    with pytest.raises(ValueError, match="max_per_workspace"):
        ActivityConfig(max_per_workspace=0)
    with pytest.raises(ValueError, match="retention"):
        ActivityConfig(retention=timedelta(0))
    with pytest.raises(ValueError, match="flush_interval"):
        ActivityConfig(flush_interval=-1)


def test_switched_off_nothing_is_recorded(storage: Storage, admin: Admin, acme: Workspace) -> None:
    """ScimConfig(activity=None) records nothing but still answers with X-Request-Id."""
    quiet = ScimService(storage, ScimConfig(activity=None))
    assert quiet.activity is None
    with client_for(quiet, acme.token) as client:
        response = client.get("/Users/nobody")
    assert response.status_code == 404
    assert response.headers["x-request-id"]
    with storage.transaction(write=False) as tx:
        assert tx.scim_activity(admin.get_tenant("acme").id) == []


def test_closing_the_front_door_writes_what_is_buffered(tmp_path: Path) -> None:
    """PbIdentity.close() writes the requests still in the buffer before releasing the storage."""
    url = f"sqlite:///{tmp_path / 'activity.db'}"
    identity = PbIdentity(url)
    identity.admin.create_tenant("acme")
    identity.admin.set_scim_enabled("acme", True)
    token = identity.admin.create_token("acme", "okta").secret
    with client_for(identity.scim, token) as client:
        assert client.get("/Users").status_code == 200
    assert identity.scim.activity is not None
    assert identity.scim.activity.pending() == 1
    identity.close()
    with PbIdentity(url) as reopened:
        tenant_id = reopened.admin.get_tenant("acme").id
        with reopened.storage.transaction(write=False) as tx:
            assert [e.path for e in tx.scim_activity(tenant_id)] == ["/Users"]


def test_a_workspace_stays_near_its_bound_and_idle_ones_are_swept(
    storage: Storage, admin: Admin, acme: Workspace, globex: Workspace
) -> None:
    """Past max_per_workspace, a write prunes once a tenth came in; a sweep prunes idle ones."""
    bounded = ScimService(
        storage, ScimConfig(activity=ActivityConfig(max_per_workspace=20, flush_size=1))
    )
    assert bounded.activity is not None
    acme_id, globex_id = admin.get_tenant("acme").id, admin.get_tenant("globex").id
    with client_for(bounded, globex.token) as client:
        for _ in range(30):
            assert client.get("/Groups").status_code == 200
    # Pruned once 2 (a tenth of 20) came in since the last prune: never past 21.
    assert 20 <= len(recorded(bounded, storage, globex_id)) <= 21
    # globex falls idle; acme's writes start an hourly sweep (here: at once).
    sweeping = ScimService(
        storage,
        ScimConfig(activity=ActivityConfig(max_per_workspace=5, flush_size=1)),
    )
    assert sweeping.activity is not None
    sweeping.activity.prune_every = 0
    with client_for(sweeping, acme.token) as client:
        assert client.get("/Users").status_code == 200
    sweeping.activity.close()
    assert len(recorded(sweeping, storage, globex_id)) == 5
    assert len(recorded(sweeping, storage, acme_id)) == 1
