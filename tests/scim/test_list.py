"""Listing and searching: filters, sort, paging, attribute projection, /.search."""

from __future__ import annotations

from tests.conftest import Workspace
from tests.scim.helpers import LIST
from tests.scim.helpers import assert_error
from tests.scim.helpers import create_user


def _user_names(body: dict[str, object]) -> list[str]:
    resources = body["Resources"]
    assert isinstance(resources, list)
    return [r["userName"] for r in resources]


def test_empty_list_is_200_with_integer_fields(acme: Workspace) -> None:
    """Okta's test connector (startIndex=1&count=2, no users) gets an empty ListResponse."""
    response = acme.client.get("/Users", params={"startIndex": "1", "count": "2"})
    assert response.status_code == 200
    assert response.json() == {
        "schemas": [LIST],
        "totalResults": 0,
        "itemsPerPage": 0,
        "startIndex": 1,
        "Resources": [],
    }


def test_username_lookup_is_case_insensitive(acme: Workspace) -> None:
    """UserName eq matches whatever the case (Okta's SPEC test looks up an upper-cased name)."""
    create_user(acme.client, "jane@example.com")
    body = acme.client.get("/Users", params={"filter": 'userName eq "JANE@EXAMPLE.COM"'}).json()
    assert _user_names(body) == ["jane@example.com"]


def test_unknown_username_is_empty_list(acme: Workspace) -> None:
    """A lookup that matches nothing is 200 with totalResults 0, never 404."""
    body = acme.client.get("/Users", params={"filter": 'userName eq "nobody@example.com"'}).json()
    assert body["totalResults"] == 0
    assert body["Resources"] == []


def test_filter_with_value_path_and_logic(acme: Workspace) -> None:
    """Value paths and and/or/not filters select exactly the matching users."""
    create_user(acme.client, "a@x.example", title="Engineer")
    create_user(acme.client, "b@y.example", title="Engineer")
    create_user(acme.client, "c@x.example", title="Manager")
    body = acme.client.get(
        "/Users",
        params={"filter": 'emails[type eq "work" and value co "@x."] and not (title eq "manager")'},
    ).json()
    assert _user_names(body) == ["a@x.example"]
    either = acme.client.get(
        "/Users", params={"filter": 'title eq "Manager" or userName sw "B@"', "sortBy": "userName"}
    ).json()
    assert _user_names(either) == ["b@y.example", "c@x.example"]


def test_filter_on_unsearchable_attribute_is_invalid_filter(acme: Workspace) -> None:
    """A filter the store cannot answer is 400 invalidFilter, never a broader result."""
    response = acme.client.get("/Users", params={"filter": 'addresses.locality eq "Paris"'})
    assert_error(response, 400, "invalidFilter")
    assert_error(
        acme.client.get("/Users", params={"filter": 'userName eq "x" and'}), 400, "invalidFilter"
    )


def test_paging_is_stable_and_complete(acme: Workspace) -> None:
    """startIndex/count pages cover every user exactly once, in a stable order."""
    names = {f"user{i:02d}@example.com" for i in range(7)}
    for name in names:
        create_user(acme.client, name)
    seen: list[str] = []
    for start in (1, 4, 7):
        body = acme.client.get("/Users", params={"startIndex": start, "count": 3}).json()
        assert body["totalResults"] == 7
        assert body["startIndex"] == start
        seen.extend(_user_names(body))
    assert sorted(seen) == sorted(names)
    assert len(seen) == 7


def test_sort_descending(acme: Workspace) -> None:
    """SortBy with sortOrder=descending reverses the order."""
    for name in ("b@example.com", "a@example.com", "c@example.com"):
        create_user(acme.client, name)
    body = acme.client.get(
        "/Users", params={"sortBy": "userName", "sortOrder": "descending"}
    ).json()
    assert _user_names(body) == ["c@example.com", "b@example.com", "a@example.com"]


def test_bad_paging_values_are_400(acme: Workspace) -> None:
    """A non-integer count or an unknown sortOrder is invalidValue."""
    assert_error(acme.client.get("/Users", params={"count": "ten"}), 400, "invalidValue")
    assert_error(acme.client.get("/Users", params={"sortOrder": "sideways"}), 400, "invalidValue")


def test_count_zero_gives_only_the_total(acme: Workspace) -> None:
    """count=0 returns totalResults without resources."""
    create_user(acme.client, "a@example.com")
    body = acme.client.get("/Users", params={"count": "0"}).json()
    assert body["totalResults"] == 1
    assert body["Resources"] == []


def test_attributes_and_excluded_attributes(acme: Workspace) -> None:
    """Attributes keeps only what is asked (plus id and schemas); excludedAttributes drops."""
    created = create_user(acme.client, "p@example.com")
    only = acme.client.get(
        f"/Users/{created['id']}", params={"attributes": "userName,name.givenName"}
    ).json()
    assert set(only) == {"schemas", "id", "userName", "name"}
    assert set(only["name"]) == {"givenName"}
    without = acme.client.get(
        f"/Users/{created['id']}", params={"excludedAttributes": "emails,id"}
    ).json()
    assert "emails" not in without
    assert without["id"] == created["id"]


def test_post_search(acme: Workspace) -> None:
    """POST /Users/.search takes the query in a SearchRequest body."""
    create_user(acme.client, "a@example.com")
    create_user(acme.client, "b@example.com")
    response = acme.client.post(
        "/Users/.search",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": 'userName sw "b"',
            "attributes": ["userName"],
            "startIndex": 1,
            "count": 10,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert _user_names(body) == ["b@example.com"]
    assert set(body["Resources"][0]) == {"schemas", "id", "userName"}
