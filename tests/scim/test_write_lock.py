"""One tenant's computation never holds the write lock: another tenant's write commits meanwhile.

Each test pauses a request of workspace ``acme`` in the middle of its
computation (parsing and validating the body, applying the PATCH) by wrapping
the function that computes, so the pause is deterministic: a
:class:`threading.Event`, never a sleep. While it is paused, workspace
``globex`` writes, and must commit well inside SQLite's busy timeout (kept
short here, so that a write lock held by the paused request would show as a
503 rather than a hang). On PostgreSQL, row locks keep the tenants apart
anyway; there the tests also check that the paused request has written
nothing yet (no transaction id assigned), so that it holds no row lock
either. Then the paused request is released and must succeed, with the change
it was asked for, redone on fresh data when another request changed the same
resource in between.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from typing import Any

import attrs
import httpx
import pytest
import sqlalchemy

from pbidentity.admin import Admin
from pbidentity.policy import TenantPolicy
from pbidentity.roles import RolePolicy
from pbidentity.scim import ScimConfig
from pbidentity.scim import ScimService
from pbidentity.scim import _groups
from pbidentity.scim import _member_operations
from pbidentity.scim import _patch
from pbidentity.storage.sql import SqlStorage
from pbidentity.wsgi import ScimWsgiApp
from tests.conftest import BASE_URL
from tests.scim.helpers import GROUP
from tests.scim.helpers import assert_error
from tests.scim.helpers import create_group
from tests.scim.helpers import create_user
from tests.scim.helpers import patch
from tests.scim.helpers import user

#: How long a write waits for SQLite's write lock before it gives up with 503
#: (the default is 5 s; a lock held by the paused request would show at once).
BUSY_TIMEOUT_MS = 1000
#: How long a test waits for the paused request to reach its pause, or to end.
PATIENCE = 10.0


@attrs.define
class Pause:
    """Wraps a function so that its first call waits until released; later calls run at once."""

    entered: threading.Event = attrs.field(factory=threading.Event)
    released: threading.Event = attrs.field(factory=threading.Event)
    #: The thread of the request it pauses, joined when the test ends.
    thread: threading.Thread | None = None
    #: How many times the function was called (a redone computation calls it again).
    calls: int = 0
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """The paused version of ``function``."""

        def paused(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls += 1
                first = self.calls == 1
            if first:
                self.entered.set()
                assert self.released.wait(PATIENCE), "the test never released the pause"
            return function(*args, **kwargs)

        return paused


@attrs.frozen
class Deployment:
    """Two workspaces on one database, served by one service with a short busy timeout."""

    storage: SqlStorage
    admin: Admin
    acme: httpx.Client
    globex: httpx.Client


@pytest.fixture
def deployment(database_url: str) -> Iterator[Deployment]:
    """``acme`` and ``globex``, each with a token; every request records its token's use.

    Recording the use on every request (not once a minute) makes each write
    write its token's row: a write lock taken before the computation would show.
    """
    storage = SqlStorage.from_url(database_url, busy_timeout_ms=BUSY_TIMEOUT_MS)
    admin = Admin(storage)
    service = ScimService(storage, ScimConfig(token_touch_interval=timedelta(0)))
    app = ScimWsgiApp(service)
    clients = []
    for slug in ("acme", "globex"):
        admin.create_tenant(slug, slug.title())
        admin.set_scim_enabled(slug, True)
        secret = admin.create_token(slug, "okta").secret
        clients.append(
            httpx.Client(
                transport=httpx.WSGITransport(app=app),
                base_url=BASE_URL,
                headers={"Authorization": f"Bearer {secret}"},
            )
        )
    try:
        yield Deployment(storage, admin, *clients)
    finally:
        for client in clients:
            client.close()
        storage.close()


class Paused:
    """A request sent from its own thread, paused inside its computation."""

    def __init__(self, send: Callable[[], httpx.Response], pause: Pause) -> None:
        self._pause = pause
        self._result: list[httpx.Response | BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(send,), name="paused-request")
        pause.thread = self._thread
        self._thread.start()
        if not pause.entered.wait(PATIENCE):
            pause.released.set()
            self._thread.join(PATIENCE)
            pytest.fail(f"the request never reached its computation: {self._result}")

    def _run(self, send: Callable[[], httpx.Response]) -> None:
        try:
            self._result.append(send())
        except BaseException as error:
            self._result.append(error)

    def release(self) -> httpx.Response:
        """Let the request go on, and return its response."""
        self._pause.released.set()
        self._thread.join(PATIENCE)
        assert not self._thread.is_alive(), "the paused request did not finish"
        (result,) = self._result
        if isinstance(result, BaseException):
            raise result
        return result


PauseIn = Callable[[object, str], Pause]


@pytest.fixture
def pause_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[PauseIn]:
    """Pause the first call of ``owner.name`` (a function of the computation).

    Every pause is released when the test ends, failed or not, so that a
    request still paused does not outlive it.
    """
    pauses: list[Pause] = []

    def pause_in(owner: object, name: str) -> Pause:
        pause = Pause()
        monkeypatch.setattr(owner, name, pause.wrap(getattr(owner, name)))
        pauses.append(pause)
        return pause

    yield pause_in
    for pause in pauses:
        pause.released.set()
        if pause.thread is not None:
            pause.thread.join(PATIENCE)


def assert_writes_nothing_yet(deployment: Deployment) -> None:
    """On PostgreSQL: no connection has written in a still open transaction (no row lock held)."""
    engine = deployment.storage.engine
    if engine.dialect.name != "postgresql":
        return
    query = sqlalchemy.text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND backend_xid IS NOT NULL"
    )
    with engine.connect() as connection:
        assert connection.execute(query).scalar_one() == 0


def assert_other_tenant_commits(deployment: Deployment) -> None:
    """``globex`` creates a user at once, and sees it."""
    assert_writes_nothing_yet(deployment)
    started = time.monotonic()
    response = deployment.globex.post("/Users", json=user("meanwhile@globex.example"))
    waited = time.monotonic() - started
    assert response.status_code == 201, response.text
    # Well inside the busy timeout: it did not wait for a lock. (Had the
    # paused request held one, it would have been 503: the pause never ends
    # by itself.)
    assert waited < BUSY_TIMEOUT_MS / 1000 * 0.8, waited
    found = deployment.globex.get(
        "/Users", params={"filter": 'userName eq "meanwhile@globex.example"'}
    )
    assert found.json()["totalResults"] == 1


# One write of each kind, paused where it computes ------------------------------------------


def test_user_patch_paused_in_its_computation_blocks_no_other_tenant(
    deployment: Deployment, pause_in: PauseIn
) -> None:
    """A user PATCH paused while the PATCH is applied: another tenant's POST commits meanwhile."""
    user_id = create_user(deployment.acme, "slow@acme.example")["id"]
    pause = pause_in(_patch, "apply_patch")
    body = patch({"op": "replace", "path": "title", "value": "Patched"})
    paused = Paused(partial(deployment.acme.patch, f"/Users/{user_id}", json=body), pause)
    assert_other_tenant_commits(deployment)
    response = paused.release()
    assert response.status_code == 200, response.text
    assert deployment.acme.get(f"/Users/{user_id}").json()["title"] == "Patched"


def test_user_put_paused_in_its_validation_blocks_no_other_tenant(
    deployment: Deployment, pause_in: PauseIn
) -> None:
    """A user PUT paused while its body is checked: another tenant's POST commits meanwhile."""
    user_id = create_user(deployment.acme, "slow@acme.example")["id"]
    pause = pause_in(ScimService, "_checked_profile")
    body = user("slow@acme.example", title="Replaced")
    paused = Paused(partial(deployment.acme.put, f"/Users/{user_id}", json=body), pause)
    assert_other_tenant_commits(deployment)
    response = paused.release()
    assert response.status_code == 200, response.text
    assert deployment.acme.get(f"/Users/{user_id}").json()["title"] == "Replaced"


def test_user_post_paused_in_its_validation_blocks_no_other_tenant(
    deployment: Deployment, pause_in: PauseIn
) -> None:
    """A user POST paused while its body is checked: another tenant's POST commits meanwhile."""
    pause = pause_in(ScimService, "_checked_profile")
    body = user("new@acme.example")
    paused = Paused(partial(deployment.acme.post, "/Users", json=body), pause)
    assert_other_tenant_commits(deployment)
    response = paused.release()
    assert response.status_code == 201, response.text
    assert response.json()["userName"] == "new@acme.example"


def test_group_patch_paused_in_its_computation_blocks_no_other_tenant(
    deployment: Deployment, pause_in: PauseIn
) -> None:
    """A group PATCH replacing the members, paused while the PATCH is applied."""
    ids = [create_user(deployment.acme, f"m{i}@acme.example")["id"] for i in range(3)]
    group_id = create_group(deployment.acme, "Makers", *ids)["id"]
    pause = pause_in(_patch, "apply_patch")
    keep = [{"value": ids[0]}, {"value": ids[2]}]
    body = patch({"op": "replace", "path": "members", "value": keep})
    paused = Paused(partial(deployment.acme.patch, f"/Groups/{group_id}", json=body), pause)
    assert_other_tenant_commits(deployment)
    response = paused.release()
    assert response.status_code == 204, response.text
    members = deployment.acme.get(f"/Groups/{group_id}").json()["members"]
    assert sorted(m["value"] for m in members) == sorted([ids[0], ids[2]])


def test_group_put_paused_in_its_validation_blocks_no_other_tenant(
    deployment: Deployment, pause_in: PauseIn
) -> None:
    """A group PUT paused while its body is checked: another tenant's POST commits meanwhile."""
    ids = [create_user(deployment.acme, f"m{i}@acme.example")["id"] for i in range(3)]
    group_id = create_group(deployment.acme, "Makers", ids[0], ids[1])["id"]
    pause = pause_in(ScimService, "_validated")
    body = {"schemas": [GROUP], "displayName": "Builders", "members": [{"value": ids[2]}]}
    paused = Paused(partial(deployment.acme.put, f"/Groups/{group_id}", json=body), pause)
    assert_other_tenant_commits(deployment)
    response = paused.release()
    assert response.status_code == 200, response.text
    assert response.json()["displayName"] == "Builders"
    assert [m["value"] for m in response.json()["members"]] == [ids[2]]


def test_group_put_paused_while_its_response_renders_blocks_no_other_tenant(
    deployment: Deployment, pause_in: PauseIn
) -> None:
    """Rendering a group and its members happens after the write transaction has ended."""
    ids = [create_user(deployment.acme, f"m{i}@acme.example")["id"] for i in range(3)]
    group_id = create_group(deployment.acme, "Makers", ids[0])["id"]
    pause = pause_in(_groups, "render_group")
    body = {"schemas": [GROUP], "displayName": "Builders", "members": [{"value": i} for i in ids]}
    paused = Paused(partial(deployment.acme.put, f"/Groups/{group_id}", json=body), pause)
    assert_other_tenant_commits(deployment)
    response = paused.release()
    assert response.status_code == 200, response.text
    assert sorted(m["value"] for m in response.json()["members"]) == sorted(ids)


def test_group_post_paused_in_its_validation_blocks_no_other_tenant(
    deployment: Deployment, pause_in: PauseIn
) -> None:
    """A group POST paused while its body is checked: another tenant's POST commits meanwhile."""
    member_id = create_user(deployment.acme, "m@acme.example")["id"]
    pause = pause_in(ScimService, "_validated")
    body = {"schemas": [GROUP], "displayName": "Makers", "members": [{"value": member_id}]}
    paused = Paused(partial(deployment.acme.post, "/Groups", json=body), pause)
    assert_other_tenant_commits(deployment)
    response = paused.release()
    assert response.status_code == 201, response.text
    assert [m["value"] for m in response.json()["members"]] == [member_id]


# A change that lands between the computation and the write -------------------------------


def test_user_changed_during_the_computation_is_patched_again_on_fresh_data(
    deployment: Deployment, pause_in: PauseIn
) -> None:
    """The change computed on the old version is not written over the new one; it is redone.

    Both changes are kept, and each is recorded as one event (the discarded
    computation recorded nothing).
    """
    user_id = create_user(deployment.acme, "slow@acme.example")["id"]
    pause = pause_in(_patch, "apply_patch")
    body = patch({"op": "replace", "path": "title", "value": "Patched"})
    paused = Paused(partial(deployment.acme.patch, f"/Users/{user_id}", json=body), pause)
    other = {"op": "replace", "path": "nickName", "value": "Meanwhile"}
    assert deployment.acme.patch(f"/Users/{user_id}", json=patch(other)).status_code == 200
    response = paused.release()
    assert response.status_code == 200, response.text
    assert (response.json()["title"], response.json()["nickName"]) == ("Patched", "Meanwhile")
    assert pause.calls == 3  # computed, the other PATCH, computed again on fresh data
    with deployment.storage.transaction(write=False) as tx:
        tenant = tx.find_tenant("acme")
        assert tenant is not None
        updates = [
            event.data["changed"]
            for event in tx.list_events(tenant.id)
            if event.type == "member.updated" and event.subject_id == user_id
        ]
    assert sorted(updates) == [["nickName"], ["title"]]


def test_user_changed_during_the_computation_with_if_match_is_412(
    deployment: Deployment, pause_in: PauseIn
) -> None:
    """With If-Match, a change landing before the write refuses the request and changes nothing."""
    created = create_user(deployment.acme, "slow@acme.example")
    user_id = created["id"]
    pause = pause_in(_patch, "apply_patch")
    body = patch({"op": "replace", "path": "title", "value": "Patched"})
    send = partial(
        deployment.acme.patch,
        f"/Users/{user_id}",
        json=body,
        headers={"If-Match": created["meta"]["version"]},
    )
    paused = Paused(send, pause)
    other = {"op": "replace", "path": "nickName", "value": "Meanwhile"}
    assert deployment.acme.patch(f"/Users/{user_id}", json=patch(other)).status_code == 200
    assert_error(paused.release(), 412)
    assert "title" not in deployment.acme.get(f"/Users/{user_id}").json()


def test_user_deleted_during_the_computation_is_404(
    deployment: Deployment, pause_in: PauseIn
) -> None:
    """A user deleted while its PATCH computes: the PATCH answers 404 and creates nothing."""
    user_id = create_user(deployment.acme, "gone@acme.example")["id"]
    pause = pause_in(_patch, "apply_patch")
    body = patch({"op": "replace", "path": "title", "value": "Patched"})
    paused = Paused(partial(deployment.acme.patch, f"/Users/{user_id}", json=body), pause)
    assert deployment.acme.delete(f"/Users/{user_id}").status_code == 204
    assert_error(paused.release(), 404)
    assert deployment.acme.get("/Users").json()["totalResults"] == 0


def test_group_members_changed_during_the_computation_are_kept(
    deployment: Deployment, pause_in: PauseIn
) -> None:
    """A member added while a removal by id computes stays: the removal names only its id."""
    ids = [create_user(deployment.acme, f"m{i}@acme.example")["id"] for i in range(3)]
    group_id = create_group(deployment.acme, "Makers", ids[0], ids[1])["id"]
    pause = pause_in(_groups, "_named_member_changes")
    body = patch({"op": "remove", "path": f'members[value eq "{ids[0]}"]'})
    paused = Paused(partial(deployment.acme.patch, f"/Groups/{group_id}", json=body), pause)
    add = {"op": "add", "path": "members", "value": [{"value": ids[2]}]}
    assert deployment.acme.patch(f"/Groups/{group_id}", json=patch(add)).status_code == 204
    assert paused.release().status_code == 204
    members = deployment.acme.get(f"/Groups/{group_id}").json()["members"]
    assert sorted(m["value"] for m in members) == sorted([ids[1], ids[2]])


def test_group_members_replaced_on_members_changed_meanwhile_are_exactly_those_asked(
    deployment: Deployment, pause_in: PauseIn
) -> None:
    """A replace of the members computed on the old members is computed again on the new ones.

    A member added while the replace computes is not kept: the group ends with
    exactly the members the replace names.
    """
    ids = [create_user(deployment.acme, f"m{i}@acme.example")["id"] for i in range(3)]
    group_id = create_group(deployment.acme, "Makers", ids[0], ids[1])["id"]
    pause = pause_in(_patch, "apply_patch")
    body = patch({"op": "replace", "path": "members", "value": [{"value": ids[1]}]})
    paused = Paused(partial(deployment.acme.patch, f"/Groups/{group_id}", json=body), pause)
    add = {"op": "add", "path": "members", "value": [{"value": ids[2]}]}
    assert deployment.acme.patch(f"/Groups/{group_id}", json=patch(add)).status_code == 204
    assert paused.release().status_code == 204
    assert pause.calls == 2  # computed again on the fresh members
    members = deployment.acme.get(f"/Groups/{group_id}").json()["members"]
    assert [m["value"] for m in members] == [ids[1]]


def test_plain_member_adds_are_written_over_a_group_changed_meanwhile(
    deployment: Deployment, pause_in: PauseIn
) -> None:
    """Adds alone depend on no version of the group: written at once, without computing again."""
    ids = [create_user(deployment.acme, f"m{i}@acme.example")["id"] for i in range(3)]
    group_id = create_group(deployment.acme, "Makers", ids[0])["id"]
    pause = pause_in(_member_operations, "_is_plain_member_add")
    body = patch({"op": "add", "path": "members", "value": [{"value": ids[1]}]})
    paused = Paused(partial(deployment.acme.patch, f"/Groups/{group_id}", json=body), pause)
    add = {"op": "add", "path": "members", "value": [{"value": ids[2]}]}
    assert deployment.acme.patch(f"/Groups/{group_id}", json=patch(add)).status_code == 204
    assert paused.release().status_code == 204
    assert pause.calls == 2  # its own computation, and the other PATCH's: none redone
    members = deployment.acme.get(f"/Groups/{group_id}").json()["members"]
    assert sorted(m["value"] for m in members) == sorted(ids)


def test_plain_member_adds_with_if_match_on_a_group_changed_meanwhile_are_412(
    deployment: Deployment, pause_in: PauseIn
) -> None:
    """With If-Match even plain adds ask for one version of the group: changed meanwhile, 412."""
    ids = [create_user(deployment.acme, f"m{i}@acme.example")["id"] for i in range(3)]
    group = create_group(deployment.acme, "Makers", ids[0])
    pause = pause_in(_member_operations, "_is_plain_member_add")
    body = patch({"op": "add", "path": "members", "value": [{"value": ids[1]}]})
    send = partial(
        deployment.acme.patch,
        f"/Groups/{group['id']}",
        json=body,
        headers={"If-Match": group["meta"]["version"]},
    )
    paused = Paused(send, pause)
    add = {"op": "add", "path": "members", "value": [{"value": ids[2]}]}
    assert deployment.acme.patch(f"/Groups/{group['id']}", json=patch(add)).status_code == 204
    assert_error(paused.release(), 412)
    members = deployment.acme.get(f"/Groups/{group['id']}").json()["members"]
    assert sorted(m["value"] for m in members) == sorted([ids[0], ids[2]])


def test_member_deleted_during_a_group_computation_is_not_added(
    deployment: Deployment, pause_in: PauseIn
) -> None:
    """A user deleted while a group naming it is checked: 400, and no group is created."""
    member_id = create_user(deployment.acme, "gone@acme.example")["id"]
    pause = pause_in(ScimService, "_validated")
    body = {"schemas": [GROUP], "displayName": "Makers", "members": [{"value": member_id}]}
    paused = Paused(partial(deployment.acme.post, "/Groups", json=body), pause)
    assert deployment.acme.delete(f"/Users/{member_id}").status_code == 204
    detail = assert_error(paused.release(), 400, "invalidValue")
    assert member_id in detail
    assert deployment.acme.get("/Groups").json()["totalResults"] == 0


def test_token_revoked_during_the_computation_is_401(
    deployment: Deployment, pause_in: PauseIn
) -> None:
    """The token is checked again when the change is written: revoked meanwhile, nothing is kept."""
    user_id = create_user(deployment.acme, "slow@acme.example")["id"]
    pause = pause_in(_patch, "apply_patch")
    body = patch({"op": "replace", "path": "title", "value": "Patched"})
    paused = Paused(partial(deployment.acme.patch, f"/Users/{user_id}", json=body), pause)
    deployment.admin.revoke_token("acme", "okta")
    assert_error(paused.release(), 401)
    with deployment.storage.transaction(write=False) as tx:
        tenant = tx.find_tenant("acme")
        assert tenant is not None
        member = tx.get_member(tenant.id, user_id)
    assert member is not None
    assert "title" not in member.attributes


def test_role_policy_changed_during_the_computation_decides_the_role(
    deployment: Deployment, pause_in: PauseIn
) -> None:
    """The role is decided when the change is written, by the workspace's policy at that time.

    A policy change re-decides every member in its own transaction; a user
    computed before it and written after it must not keep a role decided by
    the old policy.
    """
    pause = pause_in(ScimService, "_checked_profile")
    paused = Paused(partial(deployment.acme.post, "/Users", json=user("new@acme.example")), pause)
    deployment.admin.set_policy("acme", TenantPolicy(roles=RolePolicy(default_role="maker")))
    response = paused.release()
    assert response.status_code == 201, response.text
    with deployment.storage.transaction(write=False) as tx:
        tenant = tx.find_tenant("acme")
        assert tenant is not None
        member = tx.get_member(tenant.id, response.json()["id"])
    assert member is not None
    assert (member.role, member.role_source) == ("maker", "default")
