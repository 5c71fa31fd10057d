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


def test_a_filter_few_email_matches_pass_reads_their_runs_until_a_page(store: Storage) -> None:
    """Most members an email prefix finds fail the filter: runs of them are checked until a page.

    The window holds no match, so the page comes from the values index, in
    runs four times longer each time: the matches that pass are the last 50
    of 1,350.
    """
    count = 2 * _WINDOW + 600
    with store.transaction() as tx:
        tx.add_members(
            [
                person(
                    f"m{i:05d}",
                    f"u{i:05d}@example.com",
                    emails=[{"value": f"{'team' if i % 2 or i >= count - 100 else 'desk'}{i}@x"}],
                    active=i % 2 == 0,
                )
                for i in range(count)
            ]
        )
    passing = [f"u{i:05d}@example.com" for i in range(count - 100, count, 2)]
    assert user_names(store, prefix="team", active=True, limit=50) == passing
    assert user_names(store, prefix="team", active=True, limit=20) == passing[:20]
    assert user_names(store, prefix="team", active=True, after=passing[29]) == passing[30:]


@pytest.mark.parametrize("as_read", [True, False], ids=["changed-columns", "whole-row"])
def test_an_email_search_follows_a_renamed_member(store: Storage, as_read: bool) -> None:
    """A new userName moves the member's place in an email search, on either write path."""
    count = _WINDOW + 100
    with store.transaction() as tx:
        tx.add_members(
            [person(f"m{i:05d}", f"u{i:05d}@example.com") for i in range(count)]
            + [person("pager", "zz-old@example.com", emails=[{"value": "pager@ops.example"}])]
        )
    assert user_names(store, prefix="pager") == ["zz-old@example.com"]
    with store.transaction(write=False) as tx:
        before = tx.get_member("t1", "pager")
    assert before is not None
    attributes = {**before.attributes, "userName": "a-new@example.com"}
    renamed = attrs.evolve(before, attributes=attributes, version=before.version + 1)
    # Read in another transaction: without ``previous`` the whole row is written.
    with store.transaction() as tx:
        tx.replace_member(
            renamed, expected_version=before.version, previous=before if as_read else None
        )
    assert user_names(store, prefix="pager") == ["a-new@example.com"]
    assert user_names(store, prefix="pager", after="a-new@example.com") == []
    assert user_names(store, prefix="pager", after="a-b@example.com") == ["a-new@example.com"]


def test_a_search_plans_for_its_values_and_leaves_the_connection_as_it_was(
    postgres_url: str,
) -> None:
    """On PostgreSQL a search forces plans made for its prefix, without JIT, then resets both.

    One thread reuses one pooled connection, so the next unit runs on the one
    the search used: it must find PostgreSQL's default again, which the SCIM
    hot path relies on for its prepared statements.
    """
    from sqlalchemy import event
    from sqlalchemy import text

    from pbidentity.storage.sql import SqlStorage

    storage = SqlStorage.from_url(postgres_url)
    sent: list[str] = []

    def record(_connection: object, _cursor: object, statement: str, *_: object) -> None:
        sent.append(statement)

    try:
        with storage.transaction(write=False):
            pass  # the schema's check, once
        event.listen(storage.engine, "before_cursor_execute", record)
        with storage.transaction(write=False) as tx:
            tx.search_members("nobody", MemberSearch(prefix="a"))
        event.remove(storage.engine, "before_cursor_execute", record)
        assert sent[0] == "SET plan_cache_mode = force_custom_plan; SET jit = off"
        assert any(statement.startswith("SELECT") for statement in sent[1:-1])
        assert sent[-1] == "RESET plan_cache_mode; RESET jit"
        with storage.engine.connect() as connection:
            assert connection.execute(text("SHOW plan_cache_mode")).scalar_one() == "auto"
            reset_to = text("SELECT reset_val FROM pg_settings WHERE name = 'jit'")
            assert connection.execute(text("SHOW jit")).scalar_one() == (
                connection.execute(reset_to).scalar_one()
            )
    finally:
        storage.close()


def test_a_long_user_name_is_found_by_its_email_in_its_place(store: Storage) -> None:
    """An email row carries a userName of up to 256 bytes; a longer one is still found, in order.

    The longest carried userName beside the longest address still fits a
    PostgreSQL index entry (2,704 bytes at most).
    """
    from pbidentity.storage.sql._schema import CARRIED_USER_NAME_BYTES

    count = _WINDOW + 100
    # All three after the window of members u00000..., so that the indexes answer.
    carried = "v" + "é" * 127 + "@"  # 256 bytes in UTF-8, folded as it is
    assert len(carried.encode()) == CARRIED_USER_NAME_BYTES
    # CJK characters spread over the block, which PostgreSQL cannot compress away.
    noise = "".join(chr(0x4E00 + (i * 7919) % 20_000) for i in range(681))
    longest_email = "pager" + noise[: (2048 - len("pager@x")) // 3] + "@x"
    long_name = "w" + noise[:500] + "@example.com"  # beside its address, over 2,704 bytes
    with store.transaction() as tx:
        tx.add_members(
            [person(f"m{i:05d}", f"u{i:05d}@example.com") for i in range(count)]
            + [
                person("carried", carried, emails=[{"value": longest_email}], active=True),
                person("long", long_name, emails=[{"value": longest_email}], active=False),
                person("zed", "zz@example.com", emails=[{"value": "pager@z.example"}]),
            ]
        )
    everyone = [carried, long_name, "zz@example.com"]
    assert user_names(store, prefix="pager") == everyone
    assert user_names(store, prefix="pager", limit=1) == everyone[:1]
    assert user_names(store, prefix="pager", after=carried) == everyone[1:]
    assert user_names(store, prefix="pager", active=False) == [long_name]
    assert user_names(store, prefix="pager", active=True) == [carried, "zz@example.com"]
    # A rename across the limit, both ways, keeps the member found in its place.
    with store.transaction(write=False) as tx:
        long_member = tx.get_member("t1", "long")
        short_member = tx.get_member("t1", "zed")
    assert long_member is not None
    assert short_member is not None
    with store.transaction() as tx:
        for member, name in ((long_member, "a@example.com"), (short_member, "b" + noise[:500])):
            attributes = {**member.attributes, "userName": name}
            renamed = attrs.evolve(member, attributes=attributes, version=member.version + 1)
            tx.replace_member(renamed, expected_version=member.version)
    assert user_names(store, prefix="pager") == ["a@example.com", "b" + noise[:500], carried]
