"""ETag preconditions on Groups and Users, and the token's last-use bookkeeping.

Each test states one behaviour a client relies on; each was written against a
change that broke it while the rest of the suite stayed green (a dropped
If-Match check on groups, ``If-Match: *`` no longer matching, the last use of a
token written on every request, a read failing because its last-use write could
not take the lock).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from pbidentity.admin import Admin
from pbidentity.http import Request
from pbidentity.scim import ScimService
from pbidentity.storage import Storage
from pbidentity.storage.sql import SqlStorage
from pbidentity.tokens import token_digest
from pbidentity.wsgi import ScimWsgiApp
from tests.conftest import BASE_URL
from tests.conftest import Workspace
from tests.scim.helpers import GROUP
from tests.scim.helpers import assert_error
from tests.scim.helpers import create_group
from tests.scim.helpers import create_user
from tests.scim.helpers import patch


def _rename(name: str) -> dict[str, object]:
    return patch({"op": "replace", "path": "displayName", "value": name})


def test_group_if_match_stale_is_412_on_patch_put_and_delete(acme: Workspace) -> None:
    """A group write with a stale If-Match is 412 and changes nothing, whatever the method."""
    created = create_group(acme.client, "Designers")
    stale = created["meta"]["version"]
    renamed = acme.client.patch(
        f"/Groups/{created['id']}", json=_rename("Design"), headers={"If-Match": stale}
    )
    assert renamed.status_code in (200, 204), renamed.text
    assert renamed.headers["etag"] != stale

    refused_patch = acme.client.patch(
        f"/Groups/{created['id']}", json=_rename("Lost"), headers={"If-Match": stale}
    )
    assert_error(refused_patch, 412)
    refused_put = acme.client.put(
        f"/Groups/{created['id']}",
        json={"schemas": [GROUP], "displayName": "Lost too"},
        headers={"If-Match": stale},
    )
    assert_error(refused_put, 412)
    refused_delete = acme.client.delete(f"/Groups/{created['id']}", headers={"If-Match": stale})
    assert_error(refused_delete, 412)

    current = acme.client.get(f"/Groups/{created['id']}")
    assert current.status_code == 200
    assert current.json()["displayName"] == "Design"


def test_group_membership_patch_with_stale_if_match_is_412(acme: Workspace) -> None:
    """Adding a member under a stale If-Match is refused: the member list stays as it was."""
    member = create_user(acme.client, "ann@example.com")
    created = create_group(acme.client, "Makers")
    stale = created["meta"]["version"]
    assert acme.client.patch(f"/Groups/{created['id']}", json=_rename("Makers!")).status_code in (
        200,
        204,
    )
    add = patch({"op": "add", "path": "members", "value": [{"value": member["id"]}]})
    refused = acme.client.patch(f"/Groups/{created['id']}", json=add, headers={"If-Match": stale})
    assert_error(refused, 412)
    assert acme.client.get(f"/Groups/{created['id']}").json().get("members", []) == []


def test_if_match_star_matches_any_version_of_users_and_groups(acme: Workspace) -> None:
    """``If-Match: *`` means "whatever the current version is" (RFC 7232 §3.1)."""
    person = create_user(acme.client, "star@example.com")
    group = create_group(acme.client, "Stars")
    for round_ in range(2):  # also after the version has moved on
        user_write = acme.client.patch(
            f"/Users/{person['id']}",
            json=patch({"op": "replace", "path": "displayName", "value": f"S{round_}"}),
            headers={"If-Match": "*"},
        )
        assert user_write.status_code == 200, user_write.text
        group_write = acme.client.patch(
            f"/Groups/{group['id']}", json=_rename(f"Stars {round_}"), headers={"If-Match": "*"}
        )
        assert group_write.status_code in (200, 204), group_write.text
    deleted = acme.client.delete(f"/Groups/{group['id']}", headers={"If-Match": "*"})
    assert deleted.status_code == 204


def test_if_match_list_with_the_current_weak_or_strong_tag_matches(acme: Workspace) -> None:
    """A list naming the current ETag (weak or without W/) anywhere matches; others do not."""
    person = create_user(acme.client, "list@example.com")
    current = person["meta"]["version"]
    assert current.startswith('W/"')
    for weak in (True, False):
        tag = current if weak else current.removeprefix("W/")
        header = f'W/"nope", {tag}'
        response = acme.client.patch(
            f"/Users/{person['id']}",
            json=patch({"op": "replace", "path": "displayName", "value": header}),
            headers={"If-Match": header},
        )
        assert response.status_code == 200, response.text
        current = response.headers["etag"]
    assert_error(
        acme.client.patch(
            f"/Users/{person['id']}",
            json=patch({"op": "replace", "path": "displayName", "value": "x"}),
            headers={"If-Match": 'W/"nope", "nope"'},
        ),
        412,
    )


class _Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _last_used(storage: Storage, secret: str) -> datetime | None:
    with storage.transaction(write=False) as tx:
        token = tx.find_token(token_digest(secret))
    assert token is not None
    return token.last_used


def _get(service: ScimService, secret: str) -> int:
    request = Request(
        method="GET",
        path="/Users",
        base_url=BASE_URL,
        headers=(("authorization", f"Bearer {secret}"),),
    )
    return service.handle(request).status


def test_last_use_is_written_at_most_once_per_interval(admin: Admin, storage: Storage) -> None:
    """Reads and writes inside the interval leave last_used alone; the next one moves it."""
    admin.create_tenant("acme")
    admin.set_scim_enabled("acme", True)
    secret = admin.create_token("acme", "okta").secret
    clock = _Clock()
    service = ScimService(storage, clock=clock)
    client = httpx.Client(
        transport=httpx.WSGITransport(app=ScimWsgiApp(service)),
        base_url=BASE_URL,
        headers={"Authorization": f"Bearer {secret}"},
    )
    first = clock.now
    assert _get(service, secret) == 200
    assert _last_used(storage, secret) == first

    clock.now = first + timedelta(seconds=59)
    assert _get(service, secret) == 200
    created = create_user(client, "quiet@example.com")
    response = client.patch(
        f"/Users/{created['id']}",
        json=patch({"op": "replace", "path": "displayName", "value": "Q"}),
    )
    assert response.status_code == 200
    assert _last_used(storage, secret) == first

    clock.now = first + timedelta(seconds=61)
    assert _get(service, secret) == 200
    assert _last_used(storage, secret) == clock.now
    client.close()


@pytest.fixture
def locked_sqlite(tmp_path: Path) -> Iterator[tuple[SqlStorage, threading.Event]]:
    """A SQLite store with a short busy timeout, and a switch that holds its write lock."""
    path = tmp_path / "locked.db"
    store = SqlStorage.from_url(f"sqlite:///{path}", busy_timeout_ms=50)
    hold = threading.Event()
    yield store, hold
    hold.set()
    store.close()


def test_a_read_succeeds_when_its_last_use_write_cannot_take_the_lock(
    locked_sqlite: tuple[SqlStorage, threading.Event],
) -> None:
    """Another writer holding SQLite's lock costs a read nothing: 200, last use left for later."""
    store, _ = locked_sqlite
    admin = Admin(store)
    admin.create_tenant("acme")
    admin.set_scim_enabled("acme", True)
    secret = admin.create_token("acme", "okta").secret
    service = ScimService(store)
    assert _last_used(store, secret) is None

    path = store.engine.url.database
    assert path is not None
    blocker = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        assert _get(service, secret) == 200
        assert _last_used(store, secret) is None
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert _get(service, secret) == 200
    assert _last_used(store, secret) is not None
