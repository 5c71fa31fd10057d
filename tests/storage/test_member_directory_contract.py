"""The storage contract for the members list: prefix search, filters and pages by userName."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from pbidentity.domain import Member
from pbidentity.storage import MemberSearch
from pbidentity.storage import Storage
from pbidentity.storage.sql._directory import _WINDOW
from pbidentity.storage.sql._directory import _successor
from tests.storage.test_contract import make_member
from tests.storage.test_contract import store

__all__ = ["store"]


def person(
    member_id: str,
    user_name: str,
    *,
    role: str | None = "viewer",
    managed: bool = True,
    tenant_id: str = "t1",
    **attributes: Any,
) -> Member:
    """A member with a decided role, SCIM-managed unless said otherwise."""
    member = make_member(member_id, user_name, tenant_id=tenant_id, **attributes)
    return attrs.evolve(member, role=role, scim_managed=managed)


def user_names(storage: Storage, tenant_id: str = "t1", **search: Any) -> list[str]:
    """The userNames of one page of the search, in order."""
    with storage.transaction(write=False) as tx:
        return [m.user_name for m in tx.search_members(tenant_id, MemberSearch(**search))]


@pytest.fixture
def directory(store: Storage) -> Storage:
    """Six members of t1 of every kind, and one of t2 that t1 never sees."""
    with store.transaction() as tx:
        tx.add_members(
            [
                person(
                    "m1",
                    "Zoe@example.com",
                    displayName="Zoë Quinn",
                    name={"givenName": "Zoë", "familyName": "Quinn"},
                    emails=[{"value": "zq@corp.example", "primary": True}],
                    active=True,
                ),
                person("m2", "alice@example.com", role="admin", active=True),
                person("m3", "bob@example.com", active=False, managed=False),
                # No "active": active, as Member.active says.
                person("m4", "carol@example.com", managed=False, name={"familyName": "Smith"}),
                person("m5", "dave_100%@example.com", role=None, active=True),
                person("m6", "daveX100X@example.com", role="admin", active=False),
            ]
        )
        tx.add_member(person("o1", "alice@other.example", tenant_id="t2", active=True))
    return store


def test_the_list_is_by_folded_user_name_and_per_tenant(directory: Storage) -> None:
    """Without a search or filter, every member of the tenant, by case-folded userName."""
    assert user_names(directory) == [
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
        "dave_100%@example.com",
        "daveX100X@example.com",
        "Zoe@example.com",
    ]
    assert user_names(directory, "t2") == ["alice@other.example"]
    assert user_names(directory, "nobody") == []
    assert user_names(directory, limit=0) == []


def test_each_filter_and_their_combinations(directory: Storage) -> None:
    """Role, status (a member without active is active) and SCIM-managed, alone and together."""
    assert user_names(directory, role="admin") == ["alice@example.com", "daveX100X@example.com"]
    assert user_names(directory, active=False) == ["bob@example.com", "daveX100X@example.com"]
    assert user_names(directory, active=True) == [
        "alice@example.com",
        "carol@example.com",
        "dave_100%@example.com",
        "Zoe@example.com",
    ]
    assert user_names(directory, scim_managed=False) == ["bob@example.com", "carol@example.com"]
    assert user_names(directory, role="admin", active=True) == ["alice@example.com"]
    assert user_names(directory, active=True, scim_managed=False) == ["carol@example.com"]
    assert user_names(directory, role="viewer", active=False, scim_managed=True) == []


def test_the_search_is_a_prefix_of_user_name_email_or_a_name(directory: Storage) -> None:
    """userName, an email, displayName, givenName, familyName; folded; never a substring."""
    assert user_names(directory, prefix="ALI") == ["alice@example.com"]
    assert user_names(directory, prefix="zq@") == ["Zoe@example.com"]  # an email
    assert user_names(directory, prefix="zoë q") == ["Zoe@example.com"]  # the display name
    assert user_names(directory, prefix="QUI") == ["Zoe@example.com"]  # the family name
    assert user_names(directory, prefix="smi") == ["carol@example.com"]
    assert user_names(directory, prefix="example") == []  # inside, not at the start
    assert user_names(directory, prefix="dave") == [
        "dave_100%@example.com",
        "daveX100X@example.com",
    ]
    # LIKE's wildcards are plain characters.
    assert user_names(directory, prefix="dave_") == ["dave_100%@example.com"]
    assert user_names(directory, prefix="dave_100%") == ["dave_100%@example.com"]
    assert user_names(directory, prefix="davex100x") == ["daveX100X@example.com"]
    assert user_names(directory, prefix="a", role="viewer") == []
    assert user_names(directory, prefix="alice", tenant_id="t2") == ["alice@other.example"]


def test_pages_follow_each_other_by_user_name(directory: Storage) -> None:
    """A page starts after the userName given, in any case; the pages cover the list once."""
    assert user_names(directory, limit=2) == ["alice@example.com", "bob@example.com"]
    assert user_names(directory, limit=2, after="BOB@example.com") == [
        "carol@example.com",
        "dave_100%@example.com",
    ]
    assert user_names(directory, after="daveX100X@example.com") == ["Zoe@example.com"]
    assert user_names(directory, after="zoe@example.com") == []
    assert user_names(directory, prefix="dave", after="dave_100%@example.com") == [
        "daveX100X@example.com"
    ]


@pytest.mark.parametrize("every", [1, 3, 700])
def test_a_search_beyond_a_window_finds_common_and_rare_matches_alike(
    store: Storage, every: int
) -> None:
    """More members than the window: names and emails matched 1 in 1, 3 or 700, paged alike."""
    count = _WINDOW + 500
    with store.transaction() as tx:
        tx.add_members(
            [
                person(
                    f"m{i:05d}",
                    f"u{i:05d}@example.com",
                    name={"givenName": "Ann" if i % every == 0 else "Ben", "familyName": "Roe"},
                    emails=[{"value": f"{'pager' if i % every == 0 else 'desk'}{i}@ops.example"}],
                    active=i % 2 == 0,
                )
                for i in range(count)
            ]
        )
    expected = [f"u{i:05d}@example.com" for i in range(count) if i % every == 0]
    found: list[str] = []
    after = None
    while True:
        page = user_names(store, prefix="ann", limit=50, after=after)
        found += page
        if len(page) < 50:
            break
        after = page[-1]
    assert found == expected
    deactivated = [name for name in expected if int(name[1:6]) % 2 == 1][:50]
    assert user_names(store, prefix="ann", active=False, limit=50) == deactivated
    # An address that only the emails hold, found the same ways.
    assert user_names(store, prefix="PAGER", limit=50) == expected[:50]
    assert user_names(store, prefix="pager", active=False, limit=50) == deactivated
    # userNames past the window, and nothing else, match.
    tens = (_WINDOW + 410) // 10
    past = [f"u{tens * 10 + digit:05d}@example.com" for digit in range(10)]
    assert user_names(store, prefix=f"U{tens:04d}", limit=50) == past
    last = expected[-1]
    assert user_names(store, prefix="pager", after=expected[-2]) == [last]


def test_a_prefix_ending_in_the_last_characters_has_its_bound() -> None:
    """The successor skips the surrogates and drops a trailing U+10FFFF."""
    assert _successor("ab") == "ac"
    assert _successor("a\ud7ff") == "a\ue000"
    assert _successor("a\U0010ffff") == "b"
    assert _successor("\U0010ffff") is None


def test_a_search_for_the_highest_characters(store: Storage) -> None:
    """A prefix of U+D7FF or U+10FFFF finds its member, and no other."""
    with store.transaction() as tx:
        tx.add_members(
            [
                person("m1", "x\ud7ffa@example.com"),
                person("m2", "x\ue000@example.com"),
                person("m3", "\U0010ffffz@example.com"),
            ]
        )
    assert user_names(store, prefix="x\ud7ff") == ["x\ud7ffa@example.com"]
    assert user_names(store, prefix="\U0010ffff") == ["\U0010ffffz@example.com"]
