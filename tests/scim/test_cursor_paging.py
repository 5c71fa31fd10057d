"""Cursor-based pagination (RFC 9865) next to index paging."""

from __future__ import annotations

from typing import Any

from tests.conftest import Workspace
from tests.scim.helpers import LIST
from tests.scim.helpers import assert_error
from tests.scim.helpers import create_group
from tests.scim.helpers import create_user


def _walk(acme: Workspace, path: str, **params: Any) -> list[dict[str, Any]]:
    pages = []
    cursor = ""
    for _ in range(50):
        response = acme.client.get(path, params={**params, "cursor": cursor})
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["schemas"] == [LIST]
        assert "startIndex" not in page
        pages.append(page)
        if "nextCursor" not in page:
            return pages
        cursor = page["nextCursor"]
        assert cursor
        assert all(c.isalnum() or c in "-._~" for c in cursor)
    raise AssertionError("the cursor never ended")


def test_cursor_pages_visit_every_user_once_in_order(acme: Workspace) -> None:
    """count=2 over five users: three pages, nextCursor on all but the last, same total."""
    names = [f"user{i}@example.com" for i in (3, 1, 4, 0, 2)]
    for name in names:
        create_user(acme.client, name)
    pages = _walk(acme, "/Users", count=2, sortBy="userName")
    assert [len(p["Resources"]) for p in pages] == [2, 2, 1]
    assert [p["totalResults"] for p in pages] == [5, 5, 5]
    assert [p["itemsPerPage"] for p in pages] == [2, 2, 1]
    seen = [r["userName"] for p in pages for r in p["Resources"]]
    assert seen == sorted(names)


def test_cursor_paging_with_filter_and_descending_sort(acme: Workspace) -> None:
    """The cursor keeps the filter and sort of the first request; writes between pages are fine."""
    for i in range(6):
        create_user(acme.client, f"{'a' if i % 2 else 'b'}{i}@example.com")
    first = acme.client.get(
        "/Users",
        params={
            "filter": 'userName sw "a"',
            "sortBy": "userName",
            "sortOrder": "descending",
            "count": 2,
            "cursor": "",
        },
    ).json()
    assert [r["userName"] for r in first["Resources"]] == ["a5@example.com", "a3@example.com"]
    # A user created between pages does not shift the next page.
    create_user(acme.client, "a0@example.com")
    second = acme.client.get(
        "/Users",
        params={
            "filter": 'userName sw "a"',
            "sortBy": "userName",
            "sortOrder": "descending",
            "count": 2,
            "cursor": first["nextCursor"],
        },
    ).json()
    assert [r["userName"] for r in second["Resources"]] == ["a1@example.com", "a0@example.com"]
    assert "nextCursor" not in second


def test_cursor_paging_of_groups_and_by_search(acme: Workspace) -> None:
    """Groups page by cursor too, and POST .search takes the cursor in its body."""
    for name in ("Sales", "Eng", "Ops"):
        create_group(acme.client, name)
    pages = _walk(acme, "/Groups", count=1)
    assert len(pages) == 3
    body = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "sortBy": "displayName",
        "cursor": "",
        "count": 2,
    }
    first = acme.client.post("/Groups/.search", json=body).json()
    assert [g["displayName"] for g in first["Resources"]] == ["Eng", "Ops"]
    second = acme.client.post(
        "/Groups/.search", json={**body, "cursor": first["nextCursor"]}
    ).json()
    assert [g["displayName"] for g in second["Resources"]] == ["Sales"]


def test_bad_cursors_and_counts_are_400(acme: Workspace) -> None:
    """A forged or replayed cursor is invalidCursor; count 0 is invalidCount; both methods, 400."""
    for i in range(3):
        create_user(acme.client, f"u{i}@example.com")
    first = acme.client.get("/Users", params={"count": 1, "cursor": ""}).json()
    cursor = first["nextCursor"]
    assert_error(acme.client.get("/Users", params={"cursor": "not-a-cursor"}), 400, "invalidCursor")
    # Same cursor, another filter: refused rather than silently wrong.
    other = acme.client.get("/Users", params={"cursor": cursor, "filter": "userName pr"})
    assert_error(other, 400, "invalidCursor")
    assert_error(acme.client.get("/Users", params={"cursor": "", "count": 0}), 400, "invalidCount")
    both = acme.client.get("/Users", params={"cursor": "", "startIndex": 2})
    assert_error(both, 400, "invalidValue")


def test_a_cursor_is_bound_to_its_tenant(acme: Workspace, globex: Workspace) -> None:
    """Another tenant's cursor is refused."""
    for i in range(2):
        create_user(acme.client, f"u{i}@example.com")
        create_user(globex.client, f"u{i}@example.com")
    cursor = acme.client.get("/Users", params={"count": 1, "cursor": ""}).json()["nextCursor"]
    assert_error(
        globex.client.get("/Users", params={"count": 1, "cursor": cursor}), 400, "invalidCursor"
    )


def test_index_paging_stays_the_default(acme: Workspace) -> None:
    """Without cursor, lists page by startIndex as before; the config advertises both."""
    create_user(acme.client, "u@example.com")
    page = acme.client.get("/Users").json()
    assert page["startIndex"] == 1
    assert "nextCursor" not in page
    config = acme.client.get("/ServiceProviderConfig").json()
    assert config["pagination"]["cursor"] is True
    assert config["pagination"]["index"] is True
    assert config["pagination"]["defaultPaginationMethod"] == "index"
