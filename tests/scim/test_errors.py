"""Every client error is an RFC 7644 Error body; nothing unexpected leaks a traceback."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import httpx
import pytest

from pbidentity.admin import Admin
from pbidentity.domain import Member
from pbidentity.exceptions import VersionMismatchError
from pbidentity.http import Request
from pbidentity.scim import ScimService
from pbidentity.storage import Storage
from pbidentity.storage import Transaction
from pbidentity.wsgi import ScimWsgiApp
from tests.conftest import Workspace
from tests.scim.helpers import assert_error
from tests.scim.helpers import create_user
from tests.scim.helpers import patch
from tests.scim.helpers import user


def test_invalid_json_is_400_invalid_syntax(acme: Workspace) -> None:
    """A body that is not JSON is invalidSyntax with the position of the problem."""
    response = acme.client.post(
        "/Users", content=b'{"userName": ', headers={"Content-Type": "application/scim+json"}
    )
    detail = assert_error(response, 400, "invalidSyntax")
    assert "line 1" in detail


@pytest.mark.parametrize(
    ("method", "path", "params", "body"),
    [
        ("GET", "/Users/%00", None, None),
        ("GET", "/Users", {"filter": 'userName eq "a\u0000b"'}, None),
        ("POST", "/Users", None, user("a\u0000b@example.com")),
        ("POST", "/Groups/.search", None, {"filter": 'displayName eq "\u0000"'}),
    ],
    ids=["id", "filter", "body", "search"],
)
def test_a_nul_character_is_400_invalid_value_on_every_backend(
    acme: Workspace, method: str, path: str, params: dict[str, str] | None, body: object
) -> None:
    """U+0000 in an id, a filter or a body is a 400 that names it (PostgreSQL cannot store it)."""
    response = acme.client.request(method, path, params=params, json=body)
    assert "U+0000" in assert_error(response, 400, "invalidValue")
    assert acme.client.get("/Users").json()["totalResults"] == 0


def test_a_blank_external_id_is_400_invalid_value(acme: Workspace) -> None:
    """Creating a user with an externalId of spaces is a 400 naming it (it was a 500)."""
    created = acme.client.post("/Users", json=user("a@x.test", externalId=" "))
    assert "externalId" in assert_error(created, 400, "invalidValue")
    assert acme.client.get("/Users").json()["totalResults"] == 0


def test_non_object_body_is_400(acme: Workspace) -> None:
    """A JSON array where a User is expected is invalidSyntax."""
    assert_error(acme.client.post("/Users", json=[1, 2]), 400, "invalidSyntax")


def test_wrong_content_type_is_415(acme: Workspace) -> None:
    """A form-encoded body is 415; application/json and application/scim+json are accepted."""
    response = acme.client.post(
        "/Users", content=b"userName=x", headers={"Content-Type": "text/plain"}
    )
    assert_error(response, 415)
    ok = acme.client.post(
        "/Users",
        content=httpx.Request("POST", "/", json=user("json@example.com")).content,
        headers={"Content-Type": "application/json"},
    )
    assert ok.status_code == 201
    scim = acme.client.post(
        "/Users",
        content=httpx.Request("POST", "/", json=user("scim@example.com")).content,
        headers={"Content-Type": "application/scim+json; charset=utf-8"},
    )
    assert scim.status_code == 201


def test_oversized_body_is_413(acme: Workspace) -> None:
    """A body over the configured cap is 413 and nothing is created."""
    big = user("big@example.com", displayName="x" * (70 * 1024))
    assert_error(acme.client.post("/Users", json=big), 413)
    assert acme.client.get("/Users").json()["totalResults"] == 0


def test_wrong_value_type_is_400_invalid_value(acme: Workspace) -> None:
    """A value of the wrong type (active as an object) is invalidValue naming the attribute."""
    detail = assert_error(
        acme.client.post("/Users", json=user("t@example.com", active={"x": 1})), 400, "invalidValue"
    )
    assert "active" in detail


def test_unsupported_endpoints_are_501(acme: Workspace) -> None:
    """/Bulk and /Me are not supported: 501 with a detail."""
    assert_error(acme.client.post("/Bulk", json={}), 501)
    assert_error(acme.client.get("/Me"), 501)


def test_unknown_endpoint_is_404_and_wrong_method_405(acme: Workspace) -> None:
    """An unknown path is 404; a known path with a wrong method is 405 with Allow."""
    assert_error(acme.client.get("/Widgets"), 404)
    response = acme.client.delete("/Users")
    assert_error(response, 405)
    assert response.headers["allow"] == "GET, POST"


def test_patch_without_operations_is_400(acme: Workspace) -> None:
    """A PATCH body without Operations is invalidSyntax."""
    created = create_user(acme.client, "p@example.com")
    response = acme.client.patch(f"/Users/{created['id']}", json={"schemas": []})
    assert_error(response, 400, "invalidSyntax")


class _BrokenStorage:
    """A storage whose every transaction fails with a programming error."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner

    def transaction(self, *, write: bool = True) -> object:
        raise RuntimeError("secret internal detail")

    def close(self) -> None:
        self.inner.close()


def test_unexpected_error_is_500_with_error_id_and_no_traceback(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug becomes a 500 whose body has an error id, while the log has the traceback."""
    service = ScimService(_BrokenStorage(storage))  # type: ignore[arg-type]
    request = Request(
        method="GET",
        path="/Users",
        base_url="https://app.example/scim/v2",
        headers=(("Authorization", "Bearer x"),),
    )
    with caplog.at_level(logging.ERROR, logger="pbidentity.scim"):
        response = service.handle(request)
    assert response.status == 500
    assert b"secret internal detail" not in response.body
    assert b"error id" in response.body
    assert "secret internal detail" in caplog.text


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("active", "maybe"),
        ("displayName", 42),
        ("name", {"givenName": 3}),
        ("emails", "nope"),
        ("emails", [{"value": 5}]),
        (
            "emails",
            [{"value": "a@x.example", "primary": True}, {"value": "b@x.example", "primary": True}],
        ),
        ("userName", ""),
        ("userName", 7),
    ],
)
def test_create_with_a_wrong_type_is_400_and_creates_nothing(
    acme: Workspace, attribute: str, value: object
) -> None:
    """Every attribute of a new user is type-checked, whichever path checks it."""
    response = acme.client.post("/Users", json=user("typed@example.com", **{attribute: value}))
    detail = assert_error(response, 400, "invalidValue")
    assert attribute in detail
    assert acme.client.get("/Users").json()["totalResults"] == 0


class _RacingStorage:
    """A storage whose replace_member loses the optimistic race ``losses`` times."""

    def __init__(self, inner: Storage, losses: int) -> None:
        self.inner = inner
        self.losses = losses

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[object]:
        with self.inner.transaction(write=write) as tx:
            yield _RacingTransaction(tx, self)

    def close(self) -> None:
        self.inner.close()


class _RacingTransaction:
    def __init__(self, tx: Transaction, storage: _RacingStorage) -> None:
        self._tx = tx
        self._storage = storage

    def __getattr__(self, name: str) -> object:
        return getattr(self._tx, name)

    def replace_member(
        self, member: Member, *, expected_version: int, previous: Member | None = None
    ) -> None:
        if self._storage.losses > 0:
            self._storage.losses -= 1
            raise VersionMismatchError("another writer got there first")
        self._tx.replace_member(member, expected_version=expected_version, previous=previous)


def _racing_client(storage: Storage, losses: int) -> tuple[httpx.Client, str]:
    admin = Admin(storage)
    admin.create_tenant("race")
    admin.set_scim_enabled("race", True)
    secret = admin.create_token("race", "okta").secret
    racing = _RacingStorage(storage, losses)
    app = ScimWsgiApp(ScimService(racing))  # type: ignore[arg-type]
    client = httpx.Client(
        transport=httpx.WSGITransport(app=app),
        base_url="https://app.example/scim/v2",
        headers={"Authorization": f"Bearer {secret}"},
    )
    created = create_user(client, "race@example.com")
    return client, created["id"]


def test_lost_race_without_if_match_is_retried(storage: Storage) -> None:
    """A concurrent write without If-Match is redone on fresh data and succeeds."""
    client, user_id = _racing_client(storage, losses=2)
    response = client.patch(
        f"/Users/{user_id}", json=patch({"op": "replace", "path": "displayName", "value": "Won"})
    )
    assert response.status_code == 200, response.text
    assert client.get(f"/Users/{user_id}").json()["displayName"] == "Won"


def test_race_lost_every_time_is_409_and_with_if_match_412(storage: Storage) -> None:
    """Retries are bounded (409 conflict); with If-Match a lost race is 412 at once."""
    client, user_id = _racing_client(storage, losses=100)
    operation = patch({"op": "replace", "path": "displayName", "value": "Never"})
    assert_error(client.patch(f"/Users/{user_id}", json=operation), 409)
    version = client.get(f"/Users/{user_id}").json()["meta"]["version"]
    response = client.patch(f"/Users/{user_id}", json=operation, headers={"If-Match": version})
    assert_error(response, 412)
    assert "displayName" not in client.get(f"/Users/{user_id}").json()
