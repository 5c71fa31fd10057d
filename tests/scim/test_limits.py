"""Request limits (ScimLimits): every bound refused with a 400 naming it, before any change.

The service here runs with small limits so that each test sends a request just
over one; the defaults are checked where they matter on their own (paging
integers, the 100,000-member group, the issue's 12,000-email attack).
"""

from __future__ import annotations

import json
from datetime import UTC
from datetime import datetime
from typing import Any

import attrs
import httpx
import pytest

from pbidentity.admin import Admin
from pbidentity.domain import Member
from pbidentity.scim import ScimConfig
from pbidentity.scim import ScimLimits
from pbidentity.storage import Storage
from tests.conftest import Workspace
from tests.scim.helpers import ENTERPRISE
from tests.scim.helpers import GROUP
from tests.scim.helpers import LIST
from tests.scim.helpers import assert_error
from tests.scim.helpers import create_group
from tests.scim.helpers import create_user
from tests.scim.helpers import patch
from tests.scim.helpers import user

SMALL = ScimLimits(
    patch_operations=5,
    multi_valued_elements=3,
    group_members=4,
    membership_changes=3,
    filter_terms=4,
    filter_scan_terms=2,
    filter_nesting=3,
    filter_length=300,
    string_length=100,
    profile_bytes=1000,
    json_depth=8,
    attribute_names=3,
    cursor_length=50,
)


@pytest.fixture
def scim_config() -> ScimConfig:
    """Small limits (a test marked ``DEFAULTS`` runs with ``ScimConfig()`` instead)."""
    return ScimConfig(max_body_bytes=256 * 1024, limits=SMALL)


#: Runs a test against the service with every default, ``ScimConfig()``.
DEFAULTS = pytest.mark.parametrize("scim_config", [ScimConfig()], ids=["defaults"])


def emails(count: int) -> list[dict[str, Any]]:
    """``count`` distinct work emails."""
    return [{"value": f"mail{i}@example.com", "type": "work"} for i in range(count)]


def refused(response: httpx.Response, scim_type: str, limit: str, sent: int) -> str:
    """Assert a 400 naming ``ScimLimits.<limit>`` and the value sent; return the detail."""
    detail = assert_error(response, 400, scim_type)
    assert f"(ScimLimits.{limit})" in detail, detail
    assert f" {sent} " in detail, detail
    allowed = getattr(SMALL, limit) if limit != "json_depth" or sent < 1000 else SMALL.json_depth
    assert f"at most {allowed} are allowed" in detail, detail
    return detail


def snapshot(client: httpx.Client, path: str) -> tuple[str, Any]:
    """A resource's ETag and body, to prove a refusal changed nothing."""
    response = client.get(path)
    assert response.status_code == 200, response.text
    return response.headers["etag"], response.json()


def user_names(client: httpx.Client) -> list[str]:
    """Every userName in the tenant."""
    return sorted(r["userName"] for r in client.get("/Users").json()["Resources"])


# -- PATCH ---------------------------------------------------------------------


def test_too_many_patch_operations(acme: Workspace) -> None:
    """A PATCH with one operation over patch_operations is refused whole: nothing applied."""
    created = create_user(acme.client, "jane@example.com")
    path = f"/Users/{created['id']}"
    before = snapshot(acme.client, path)
    ops = [{"op": "replace", "path": "title", "value": f"t{i}"} for i in range(6)]
    detail = refused(acme.client.patch(path, json=patch(*ops)), "tooMany", "patch_operations", 6)
    assert detail == (
        "The PATCH has 6 operations; at most 5 are allowed (ScimLimits.patch_operations)."
    )
    assert snapshot(acme.client, path) == before
    assert acme.client.patch(path, json=patch(*ops[:5])).status_code == 200


def test_each_attribute_of_an_object_value_counts_as_an_operation(acme: Workspace) -> None:
    """Keys of a path-less value (case variants too) and of extension blocks count as operations."""
    created = create_user(acme.client, "jane@example.com")
    path = f"/Users/{created['id']}"
    before = snapshot(acme.client, path)
    value = dict.fromkeys(("title", "Title", "TITLE", "tItle", "titLe", "TitlE"), "x")
    response = acme.client.patch(path, json=patch({"op": "replace", "value": value}))
    detail = refused(response, "tooMany", "patch_operations", 6)
    assert detail == (
        "The PATCH has 6 operations (each attribute of an object value counts as one); "
        "at most 5 are allowed (ScimLimits.patch_operations)."
    )
    enterprise = {
        ENTERPRISE: {"department": "d", "division": "v", "costCenter": "c", "organization": "o"}
    }
    response = acme.client.patch(
        path,
        json=patch(
            {"op": "replace", "value": {"title": "x", "nickName": "n", **enterprise}},
        ),
    )
    refused(response, "tooMany", "patch_operations", 6)
    assert snapshot(acme.client, path) == before
    within = patch({"op": "replace", "value": {"title": "x", "nickName": "n", "locale": "fr"}})
    assert acme.client.patch(path, json=within).status_code == 200


def test_patch_value_with_too_many_elements(acme: Workspace) -> None:
    """One PATCH value with more elements than multi_valued_elements is refused."""
    created = create_user(acme.client, "jane@example.com")
    path = f"/Users/{created['id']}"
    before = snapshot(acme.client, path)
    response = acme.client.patch(
        path, json=patch({"op": "add", "path": "emails", "value": emails(4)})
    )
    detail = refused(response, "tooMany", "multi_valued_elements", 4)
    assert "emails has 4 elements" in detail
    assert snapshot(acme.client, path) == before


def test_small_patches_cannot_grow_a_profile_past_the_limit(acme: Workspace) -> None:
    """The element limit applies to the result of each operation: many small adds stop at it."""
    created = create_user(acme.client, "jane@example.com", emails=emails(2))
    path = f"/Users/{created['id']}"
    extra = {"value": "third@example.com", "type": "home"}
    ok = acme.client.patch(path, json=patch({"op": "add", "path": "emails", "value": [extra]}))
    assert ok.status_code == 200, ok.text
    before = snapshot(acme.client, path)
    fourth = {"value": "fourth@example.com"}
    response = acme.client.patch(path, json=patch({"op": "add", "path": "emails", "value": fourth}))
    detail = refused(response, "tooMany", "multi_valued_elements", 4)
    assert "The attribute emails after this operation has 4 elements" in detail
    assert snapshot(acme.client, path) == before
    # A filtered path that creates an element counts as well.
    created_by_filter = patch(
        {"op": "add", "path": 'emails[type eq "other"].value', "value": "o@x"}
    )
    refused(acme.client.patch(path, json=created_by_filter), "tooMany", "multi_valued_elements", 4)
    # Removing one first makes room within the same request.
    swap = patch(
        {"op": "remove", "path": 'emails[value eq "third@example.com"]'},
        {"op": "add", "path": "emails", "value": [fourth]},
    )
    assert acme.client.patch(path, json=swap).status_code == 200
    values = [e["value"] for e in acme.client.get(path).json()["emails"]]
    assert values == ["mail0@example.com", "mail1@example.com", "fourth@example.com"]


def test_patch_path_filters_share_one_term_budget(acme: Workspace) -> None:
    """The terms of every path filter of one PATCH count together against filter_terms."""
    created = create_user(acme.client, "jane@example.com", emails=emails(3))
    path = f"/Users/{created['id']}"
    before = snapshot(acme.client, path)
    two = 'emails[value co "q0" or value co "q1"]'
    three = 'emails[value co "q2" or value co "q3" or value co "q4"]'
    response = acme.client.patch(
        path, json=patch({"op": "remove", "path": two}, {"op": "remove", "path": three})
    )
    detail = refused(response, "tooMany", "filter_terms", 5)
    assert "The PATCH (its path filters together) has 5 terms" in detail
    assert detail.startswith("Operations[1] (remove emails[")
    assert snapshot(acme.client, path) == before
    ok = acme.client.patch(
        path, json=patch({"op": "remove", "path": two}, {"op": "remove", "path": two})
    )
    assert ok.status_code == 200, ok.text


def test_patch_path_filter_nesting_and_length(acme: Workspace) -> None:
    """A PATCH path nested deeper than filter_nesting, or longer than filter_length, is refused."""
    created = create_user(acme.client, "jane@example.com")
    path = f"/Users/{created['id']}"
    deep = 'emails[(((value eq "a")))]'
    response = acme.client.patch(path, json=patch({"op": "remove", "path": deep}))
    refused(response, "tooMany", "filter_nesting", 4)
    long_path = 'emails[value eq "' + "a" * 300 + '"]'
    response = acme.client.patch(path, json=patch({"op": "remove", "path": long_path}))
    refused(response, "invalidValue", "filter_length", len(long_path))


# -- bodies --------------------------------------------------------------------


def test_post_with_too_many_elements_creates_nothing(acme: Workspace) -> None:
    """A POST /Users with more emails than allowed is refused and creates no user."""
    response = acme.client.post("/Users", json=user("jane@example.com", emails=emails(4)))
    detail = refused(response, "tooMany", "multi_valued_elements", 4)
    assert (
        detail == "emails has 4 elements; at most 3 are allowed (ScimLimits.multi_valued_elements)."
    )
    assert user_names(acme.client) == []


def test_put_with_too_many_elements_changes_nothing(acme: Workspace) -> None:
    """A PUT /Users with more elements than allowed leaves the user as it was."""
    created = create_user(acme.client, "jane@example.com")
    path = f"/Users/{created['id']}"
    before = snapshot(acme.client, path)
    body = user("jane@example.com", phoneNumbers=[{"value": str(n)} for n in range(4)])
    refused(acme.client.put(path, json=body), "tooMany", "multi_valued_elements", 4)
    assert snapshot(acme.client, path) == before


def test_string_too_long(acme: Workspace) -> None:
    """A string longer than string_length is refused in a POST, a PUT and a PATCH."""
    long_name = "j" * 90 + "@example.com"
    detail = refused(
        acme.client.post("/Users", json=user(long_name)), "invalidValue", "string_length", 102
    )
    assert detail == (
        "userName is 102 bytes long in UTF-8; at most 100 are allowed (ScimLimits.string_length)."
    )
    assert user_names(acme.client) == []
    created = create_user(acme.client, "jane@example.com")
    path = f"/Users/{created['id']}"
    before = snapshot(acme.client, path)
    body = user("jane@example.com", title="t" * 101)
    refused(acme.client.put(path, json=body), "invalidValue", "string_length", 101)
    op = {"op": "replace", "path": 'emails[type eq "work"].value', "value": "e" * 101}
    refused(acme.client.patch(path, json=patch(op)), "invalidValue", "string_length", 101)
    assert snapshot(acme.client, path) == before


@DEFAULTS
def test_longest_strings_fit_the_database_indexes(acme: Workspace) -> None:
    """Values just within string_length are stored on every backend; one byte more is a 400.

    Counted in UTF-8 bytes, folded too: 682 CJK characters (2,046 bytes) fit a
    PostgreSQL index entry; 63 U+FDFA ligatures are 189 bytes but fold to 2,079.
    """
    limit = ScimLimits().string_length
    cjk = "".join(chr(0x4E00 + (i * 7919) % 20_000) for i in range(limit // 3))
    body = user(
        cjk,
        externalId=cjk[::-1],
        emails=[{"value": cjk[1:] + "x", "type": "work"}],
        name={"givenName": "Long", "familyName": "Name"},
    )
    created = acme.client.post("/Users", json=body)
    assert created.status_code == 201, created.text
    found = acme.client.get("/Users", params={"filter": f'userName eq "{cjk}"'}).json()
    assert found["totalResults"] == 1
    over = cjk + "一"
    response = acme.client.post("/Users", json=user(over))
    assert "is 2049 bytes long in UTF-8" in assert_error(response, 400, "invalidValue")
    response = acme.client.post("/Users", json=user("\ufdfa" * 63))
    assert "is 2079 bytes long in UTF-8" in assert_error(response, 400, "invalidValue")
    assert user_names(acme.client) == [cjk]


def big_values(prefix: str) -> list[dict[str, str]]:
    """Three elements of 90 characters each."""
    return [{"value": f"{prefix}{i}" + "v" * 88} for i in range(3)]


def test_profile_size(acme: Workspace) -> None:
    """A profile over profile_bytes is refused, whether it comes in one POST or grows by PATCH."""
    body = user("jane@example.com", phoneNumbers=big_values("p"), ims=big_values("i"))
    response = acme.client.post("/Users", json={**body, "entitlements": big_values("e")})
    detail = assert_error(response, 400, "invalidValue")
    assert detail.startswith("The user's profile is ")
    assert "bytes as JSON; at most 1000 are allowed (ScimLimits.profile_bytes)." in detail
    assert user_names(acme.client) == []
    created = acme.client.post("/Users", json=body)
    assert created.status_code == 201, created.text
    path = f"/Users/{created.json()['id']}"
    before = snapshot(acme.client, path)
    grow = patch({"op": "add", "path": "entitlements", "value": big_values("e")})
    assert "(ScimLimits.profile_bytes)" in assert_error(
        acme.client.patch(path, json=grow), 400, "invalidValue"
    )
    assert snapshot(acme.client, path) == before


def test_a_profile_stored_over_the_limits_can_still_shrink(
    acme: Workspace, admin: Admin, storage: Storage
) -> None:
    """A member stored before the limits were lowered can be deactivated and trimmed, not grown."""
    tenant = admin.get_tenant("acme")
    now = datetime.now(UTC)
    stored = {
        "userName": "old@example.com",
        "active": True,
        "emails": [{"value": f"old{i}@example.com" + "x" * 50} for i in range(40)],
    }
    with storage.transaction() as tx:
        tx.add_members(
            [
                Member(
                    tenant_id=tenant.id,
                    id="legacy",
                    attributes=stored,
                    scim_managed=True,
                    created=now,
                    last_modified=now,
                )
            ]
        )
    path = "/Users/legacy"
    deactivate = patch({"op": "replace", "value": {"active": False}})
    assert acme.client.patch(path, json=deactivate).status_code == 200
    trim = patch({"op": "remove", "path": 'emails[value sw "old1"]'})
    assert acme.client.patch(path, json=trim).status_code == 200
    assert len(acme.client.get(path).json()["emails"]) == 29
    grow = patch({"op": "add", "path": "emails", "value": {"value": "new@example.com"}})
    detail = assert_error(acme.client.patch(path, json=grow), 400, "tooMany")
    assert "emails after this operation has 30 elements" in detail


def nested(depth: int) -> Any:
    """A JSON value ``depth`` levels deep (lists in lists)."""
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def test_json_nested_too_deep(acme: Workspace) -> None:
    """A body nested deeper than json_depth is refused before it is read, however deep."""
    body = user("jane@example.com", title=nested(8))  # the body object adds one level
    response = acme.client.post("/Users", json=body)
    detail = refused(response, "invalidValue", "json_depth", 9)
    assert (
        detail == "The JSON body is 9 levels deep; at most 8 are allowed (ScimLimits.json_depth)."
    )
    raw = '{"userName": "jane@example.com", "title": ' + "[" * 5000 + "]" * 5000 + "}"
    response = acme.client.post(
        "/Users", content=raw, headers={"Content-Type": "application/scim+json"}
    )
    refused(response, "invalidValue", "json_depth", 1024)
    assert user_names(acme.client) == []


# -- groups --------------------------------------------------------------------


def test_group_members_per_request(acme: Workspace) -> None:
    """POST, PUT and PATCH naming more members than group_members are refused, nothing changed."""
    ids = [create_user(acme.client, f"u{i}@example.com")["id"] for i in range(5)]
    body = {"schemas": [GROUP], "displayName": "Big", "members": [{"value": i} for i in ids]}
    detail = refused(acme.client.post("/Groups", json=body), "tooMany", "group_members", 5)
    assert detail == "members has 5 values; at most 4 are allowed (ScimLimits.group_members)."
    assert acme.client.get("/Groups").json()["totalResults"] == 0

    group = create_group(acme.client, "Team", *ids[:2])
    path = f"/Groups/{group['id']}"
    before = snapshot(acme.client, path)
    refused(
        acme.client.put(path, json={**body, "displayName": "Team"}), "tooMany", "group_members", 5
    )
    # PATCH member values are counted across operations, path-less ones included.
    split = patch(
        {"op": "add", "path": "members", "value": [{"value": i} for i in ids[2:]]},
        {"op": "remove", "path": "members", "value": [{"value": ids[0]}]},
        {"op": "add", "value": {"members": [{"value": ids[1]}]}},
    )
    detail = refused(acme.client.patch(path, json=split), "tooMany", "group_members", 5)
    assert (
        detail == "The PATCH has 5 member values; at most 4 are allowed (ScimLimits.group_members)."
    )
    assert snapshot(acme.client, path) == before


def test_membership_changes_per_request(acme: Workspace) -> None:
    """A PUT, replace or remove-all changing more memberships than membership_changes is refused."""
    ids = [create_user(acme.client, f"u{i}@example.com")["id"] for i in range(6)]
    group = create_group(acme.client, "Team", *ids[:3])
    path = f"/Groups/{group['id']}"
    for added in ids[3:5]:
        response = acme.client.patch(
            path, json=patch({"op": "add", "path": "members", "value": [{"value": added}]})
        )
        assert response.status_code == 204
    before = snapshot(acme.client, path)
    # One member named, but one to add and five to remove: six changes.
    replace = {"schemas": [GROUP], "displayName": "Team", "members": [{"value": ids[5]}]}
    detail = refused(acme.client.put(path, json=replace), "tooMany", "membership_changes", 6)
    assert "6 membership changes (1 to add, 5 to remove)" in detail
    response = acme.client.patch(path, json=patch({"op": "remove", "path": "members"}))
    refused(response, "tooMany", "membership_changes", 5)
    response = acme.client.patch(
        path, json=patch({"op": "replace", "path": "members", "value": [{"value": ids[5]}]})
    )
    refused(response, "tooMany", "membership_changes", 6)
    assert snapshot(acme.client, path) == before
    # A PUT naming more members than membership_changes (as Okta's custom
    # apps send the whole group) changes only those that differ: one here.
    within = {**replace, "members": [{"value": i} for i in ids[1:5]]}
    assert acme.client.put(path, json=within).status_code == 200
    members = acme.client.get(path).json()["members"]
    assert sorted(m["value"] for m in members) == sorted(ids[1:5])


def test_member_adds_and_removes_by_id_in_order(acme: Workspace) -> None:
    """Adds and removes by id (Okta's filter, Entra's value list) apply in order, idempotently."""
    ids = [create_user(acme.client, f"u{i}@example.com")["id"] for i in range(4)]
    group = create_group(acme.client, "Team", ids[0], ids[1])
    path = f"/Groups/{group['id']}"
    ops = patch(
        {"op": "add", "path": "members", "value": [{"value": ids[2]}]},
        {"op": "Remove", "path": f'members[value eq "{ids[0]}"]'},
        {"op": "remove", "path": "members", "value": [{"value": ids[2]}, {"value": ids[3]}]},
        {"op": "add", "path": "members", "value": [{"value": ids[3]}]},
    )
    assert acme.client.patch(path, json=ops).status_code == 204
    members = acme.client.get(path).json()["members"]
    assert sorted(m["value"] for m in members) == sorted([ids[1], ids[3]])
    again = acme.client.patch(
        path, json=patch({"op": "remove", "path": f'members[value eq "{ids[0]}"]'})
    )
    assert again.status_code == 204
    unknown = acme.client.patch(
        path, json=patch({"op": "add", "path": "members", "value": [{"value": "nobody"}]})
    )
    assert "no user with id 'nobody'" in assert_error(unknown, 400, "invalidValue")


def load_members(storage: Storage, tenant_id: str, count: int) -> list[str]:
    """Insert ``count`` members straight into the storage (setup, not under test)."""
    now = datetime.now(UTC)
    ids = [f"m{i:06d}" for i in range(count)]
    for first in range(0, count, 10_000):
        with storage.transaction() as tx:
            tx.add_members(
                [
                    Member(
                        tenant_id=tenant_id,
                        id=member_id,
                        attributes={"userName": f"{member_id}@example.com", "active": True},
                        scim_managed=True,
                        created=now,
                        last_modified=now,
                    )
                    for member_id in ids[first : first + 10_000]
                ]
            )
    return ids


@DEFAULTS
# Proved on SQLite; the abuse benchmark times both databases.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_group_of_100000_members_is_built_in_chunks(
    acme: Workspace, admin: Admin, storage: Storage
) -> None:
    """With the default limits, 100,000 members join one group in chunks, and leave it by id."""
    tenant = admin.get_tenant("acme")
    ids = load_members(storage, tenant.id, 100_000)
    group = create_group(acme.client, "Everyone")
    path = f"/Groups/{group['id']}"
    chunk = min(ScimLimits().group_members, ScimLimits().membership_changes)
    for first in range(0, len(ids), chunk):
        values = [{"value": i} for i in ids[first : first + chunk]]
        response = acme.client.patch(
            path, json=patch({"op": "add", "path": "members", "value": values})
        )
        assert response.status_code == 204, response.text
    with storage.transaction(write=False) as tx:
        assert len(tx.group_members(tenant.id, [group["id"]])[group["id"]]) == 100_000
    removal = patch(
        {"op": "remove", "path": f'members[value eq "{ids[0]}" or value eq "{ids[1]}"]'},
        {"op": "remove", "path": "members", "value": [{"value": ids[2]}]},
    )
    assert acme.client.patch(path, json=removal).status_code == 204
    with storage.transaction(write=False) as tx:
        left = tx.group_members(tenant.id, [group["id"]])[group["id"]]
    assert len(left) == 99_997
    assert left[0].id == ids[3]


# -- filters, projections, cursors ---------------------------------------------


@pytest.mark.parametrize("search", [False, True], ids=["GET", ".search"])
def test_filter_terms_and_nesting(acme: Workspace, search: bool) -> None:
    """A list filter with too many terms or too deep a nesting is refused, by GET and .search."""

    def listing(text: str) -> httpx.Response:
        if search:
            return acme.client.post("/Users/.search", json={"filter": text})
        return acme.client.get("/Users", params={"filter": text})

    five = " or ".join(f'userName eq "u{i}"' for i in range(5))
    detail = refused(listing(five), "tooMany", "filter_terms", 5)
    assert detail == (
        "The filter has 5 terms (comparisons); at most 4 are allowed (ScimLimits.filter_terms)."
    )
    assert listing(" or ".join(f'userName eq "u{i}"' for i in range(4))).status_code == 200
    refused(listing('((((userName eq "a"))))'), "tooMany", "filter_nesting", 4)
    # Terms no index answers have their own, smaller bound; eq does not count.
    scans = 'userName co "a" or title pr or not (userName eq "b")'
    detail = refused(listing(scans), "tooMany", "filter_scan_terms", 3)
    assert "The filter has 3 terms that no index answers" in detail
    assert listing('userName co "a" or emails.value eq null').status_code == 200
    assert listing('userName co "a" or userName sw "b" or userName eq "c"').status_code == 200
    assert listing('(((userName eq "a")))').status_code == 200
    refused(listing('userName eq "' + "a" * 300 + '"'), "invalidValue", "filter_length", 314)
    refused(
        acme.client.get("/Groups", params={"filter": five.replace("userName", "displayName")}),
        "tooMany",
        "filter_terms",
        5,
    )


def test_attribute_lists_and_cursor(acme: Workspace) -> None:
    """attributes/excludedAttributes with too many names, or too long a cursor, are refused."""
    created = create_user(acme.client, "jane@example.com")
    names = "userName,name,emails,title"
    for params in ({"attributes": names}, {"excludedAttributes": names}):
        refused(acme.client.get("/Users", params=params), "tooMany", "attribute_names", 4)
        refused(
            acme.client.get(f"/Users/{created['id']}", params=params),
            "tooMany",
            "attribute_names",
            4,
        )
    search = {"attributes": ["userName", "name", "emails", "title"]}
    refused(acme.client.post("/Users/.search", json=search), "tooMany", "attribute_names", 4)
    assert (
        acme.client.get("/Users", params={"attributes": "userName,name,emails"}).status_code == 200
    )
    response = acme.client.get("/Users", params={"cursor": "c" * 51})
    refused(response, "invalidValue", "cursor_length", 51)


# -- paging integers, with the default limits ------------------------------------

HUGE = "1" + "0" * 30


@DEFAULTS
@pytest.mark.parametrize(
    ("start_index", "count", "expected_start", "expected_items"),
    [
        (HUGE, "10", 2**31 - 1, 0),
        ("-" + HUGE, "10", 1, 2),
        ("1", HUGE, 1, 2),
        ("1", "-" + HUGE, 1, 0),
        ("0", "-5", 1, 0),
        ("9" * 5000, "9" * 5000, 2**31 - 1, 0),
        ("2", "1", 2, 1),
    ],
)
def test_paging_integers_of_any_size(
    acme: Workspace, start_index: str, count: str, expected_start: int, expected_items: int
) -> None:
    """Paging integers of any size or sign are answered (RFC 7644 §3.4.2.4), never a 5xx."""
    create_user(acme.client, "ann@example.com")
    create_user(acme.client, "bob@example.com")
    for method in ("GET", "POST"):
        if method == "GET":
            response = acme.client.get("/Users", params={"startIndex": start_index, "count": count})
        else:
            raw = f'{{"startIndex": {start_index}, "count": {count}}}'
            response = acme.client.post(
                "/Users/.search", content=raw, headers={"Content-Type": "application/scim+json"}
            )
            if len(start_index) > 400:
                # Beyond a double, the JSON parser itself refuses the number.
                assert_error(response, 400, "invalidSyntax")
                continue
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["schemas"] == [LIST]
        assert body["totalResults"] == 2
        assert body["startIndex"] == expected_start
        assert len(body["Resources"]) == expected_items
    groups = acme.client.get("/Groups", params={"startIndex": start_index, "count": count})
    assert groups.status_code == 200, groups.text


@DEFAULTS
def test_paging_values_that_are_not_integers(acme: Workspace) -> None:
    """A startIndex that is no integer is a 400 with a short detail, never a 5xx."""
    for value in ("1.5", "1e400", "--3", "x" * 10_000, "٣"):
        detail = assert_error(
            acme.client.get("/Users", params={"startIndex": value}), 400, "invalidValue"
        )
        assert detail.startswith("startIndex must be an integer")
        assert len(detail) < 120
    raw = '{"count": 1e400}'
    response = acme.client.post(
        "/Users/.search", content=raw, headers={"Content-Type": "application/scim+json"}
    )
    assert response.status_code == 400, response.text


# -- configuration and discovery -------------------------------------------------


def test_limits_are_validated() -> None:
    """Every limit must be a positive integer; a mistake fails at start-up, not per request."""
    for name in attrs.fields_dict(ScimLimits):
        wrongs: tuple[Any, ...] = (0, -1, True, 1.5)
        for wrong in wrongs:
            with pytest.raises(ValueError, match=f"ScimLimits.{name} must be a positive integer"):
                ScimLimits(**{name: wrong})


def test_defaults_are_documented_values() -> None:
    """The defaults are the ones the reference documents (docs/reference/limits.md)."""
    assert ScimConfig().limits == ScimLimits()
    defaults = {name: field.default for name, field in attrs.fields_dict(ScimLimits).items()}
    assert defaults == {
        "patch_operations": 100,
        "multi_valued_elements": 100,
        "group_members": 10_000,
        "membership_changes": 100,
        "filter_terms": 50,
        "filter_scan_terms": 4,
        "filter_nesting": 8,
        "filter_length": 8192,
        "string_length": 2048,
        "profile_bytes": 8 * 1024,
        "json_depth": 16,
        "attribute_names": 100,
        "cursor_length": 1024,
        "max_start_index": 2**31 - 1,
    }


def test_service_provider_config_publishes_the_rfc_limits(acme: Workspace) -> None:
    """/ServiceProviderConfig announces maxResults and the payload size; bulk stays off."""
    document = acme.client.get("/ServiceProviderConfig").json()
    assert document["filter"] == {"supported": True, "maxResults": ScimConfig().max_results}
    assert document["bulk"] == {
        "supported": False,
        "maxOperations": 0,
        "maxPayloadSize": 256 * 1024,
    }
    assert "limits" not in json.dumps(document).lower()


# -- the attack, with the default limits ----------------------------------


@DEFAULTS
def test_the_12000_email_attack_is_refused(acme: Workspace) -> None:
    """12,000 emails cannot be stored, in one request or many; a 40-term remove is accepted."""
    created = create_user(acme.client, "jane@example.com")
    path = f"/Users/{created['id']}"
    limit = ScimLimits().multi_valued_elements
    many = [{"value": f"e{i}@example.com"} for i in range(12_000)]
    response = acme.client.patch(path, json=patch({"op": "add", "path": "emails", "value": many}))
    assert "(ScimLimits.multi_valued_elements)" in assert_error(response, 400, "tooMany")
    stored = 1
    for first in range(0, 12_000, 60):
        chunk = many[first : first + 60]
        response = acme.client.patch(
            path, json=patch({"op": "add", "path": "emails", "value": chunk})
        )
        if response.status_code != 200:
            assert "(ScimLimits.multi_valued_elements)" in assert_error(response, 400, "tooMany")
            break
        stored += len(chunk)
    assert stored <= limit
    assert len(acme.client.get(path).json()["emails"]) == stored
    terms = " or ".join(f'value co "q{i}"' for i in range(40))
    ops = [{"op": "remove", "path": f"emails[{terms}]"}]
    assert acme.client.patch(path, json=patch(*ops)).status_code == 200
    too_many = patch(*ops, *ops)
    assert "(ScimLimits.filter_terms)" in assert_error(
        acme.client.patch(path, json=too_many), 400, "tooMany"
    )
