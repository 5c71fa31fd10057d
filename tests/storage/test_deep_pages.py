"""Pages by index at any depth: exactly what a plain OFFSET returns, on SQLite and PostgreSQL.

An unsorted, unfiltered page of members skips to the segment of the id order
that holds its offset (counted in ``tenant_counts``, see ``_SEGMENT`` in
``pbidentity.storage.sql``). Segments are cut small here so that a few hundred
members make dozens of them. Every page is compared with a plain ``ORDER BY
id LIMIT OFFSET`` run on a connection of its own, or with the members the test
knows it wrote; the segment rows are checked against the members they count.
"""

from __future__ import annotations

import bisect
import random
import threading
import time
from collections.abc import Iterator
from collections.abc import Sequence
from datetime import UTC
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import event

from pbidentity.domain import Member
from pbidentity.domain import Tenant
from pbidentity.domain import fold
from pbidentity.exceptions import ConflictError
from pbidentity.query import USER_FIELDS
from pbidentity.query import Comparison
from pbidentity.query import Query
from pbidentity.query import Sort
from pbidentity.storage.sql import SqlStorage
from pbidentity.storage.sql import _segments

NOW = datetime(2026, 11, 28, 20, 54, 13, 123456, tzinfo=UTC)
TENANT = "t1"
#: Segments are cut past twice this many members.
SIZE = 4


@pytest.fixture(autouse=True)
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments of 4 to 8 members, so that a small tenant has many of them."""
    monkeypatch.setattr(_segments, "_SEGMENT_SIZE", SIZE)


@pytest.fixture
def store(database_url: str) -> Iterator[SqlStorage]:
    """The SQL store on an empty database (SQLite file, then PostgreSQL) with one tenant."""
    storage = SqlStorage.from_url(database_url)
    with storage.transaction() as tx:
        tx.add_tenant(Tenant(id=TENANT, slug="acme", name="Acme", created=NOW))
        tx.add_tenant(Tenant(id="t2", slug="globex", name="Globex", created=NOW))
    yield storage
    storage.close()


@pytest.fixture
def other(database_url: str, store: SqlStorage) -> Iterator[SqlStorage]:
    """A second store on the same database: another instance of the app."""
    storage = SqlStorage.from_url(database_url)
    yield storage
    storage.close()


def member(member_id: str, *, tenant_id: str = TENANT, active: bool = True) -> Member:
    """A member whose userName is derived from its id, to sort in another order."""
    return Member(
        tenant_id=tenant_id,
        id=member_id,
        attributes={"userName": user_name(member_id), "active": active},
        created=NOW,
        last_modified=NOW,
    )


def user_name(member_id: str) -> str:
    """Unique even case-insensitively (ids differ by case alone), and in another order."""
    return f"{member_id.encode().hex()[::-1]}@x.com"


def ids_of(count: int, seed: int, prefix: str = "") -> list[str]:
    """Distinct ids in no particular order: hex, upper case, digits and non-ASCII.

    Both databases order them by code point, as Python does: the test checks
    that the segments agree with the index about it.
    """
    rng = random.Random(seed)
    alphabet = "0123456789abcdefABCDEFZzéü€-_"
    found: set[str] = set()
    while len(found) < count:
        found.add(prefix + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))))
    return rng.sample(sorted(found), count)


def add(storage: SqlStorage, member_ids: Sequence[str], *, bulk: bool) -> None:
    """Insert members: in one ``add_members``, or one unit per member."""
    if bulk:
        with storage.transaction() as tx:
            tx.add_members([member(i) for i in member_ids])
        return
    for member_id in member_ids:
        with storage.transaction() as tx:
            tx.add_member(member(member_id))


def delete(storage: SqlStorage, member_ids: Sequence[str]) -> None:
    """Delete members, one unit each."""
    for member_id in member_ids:
        with storage.transaction() as tx:
            assert tx.delete_member(TENANT, member_id)


def page(storage: SqlStorage, offset: int, count: int | None) -> tuple[list[str], int]:
    """The ids and total of the page at ``offset`` (0-based) by startIndex."""
    with storage.transaction(write=False) as tx:
        found = tx.query_members(TENANT, Query(start_index=offset + 1, count=count))
    return [m.id for m in found.items], found.total


def plain_offset(storage: SqlStorage, offset: int, count: int) -> list[str]:
    """The same page by a plain OFFSET on a connection of its own, outside pbidentity."""
    statement = sqlalchemy.text(
        "SELECT id FROM members WHERE tenant_id = :tenant ORDER BY id LIMIT :count OFFSET :offset"
    )
    engine = sqlalchemy.create_engine(storage.engine.url)
    try:
        with engine.connect() as connection:
            parameters = {"tenant": TENANT, "count": count, "offset": offset}
            return list(connection.execute(statement, parameters).scalars())
    finally:
        engine.dispose()


def segments(storage: SqlStorage, tenant_id: str = TENANT) -> list[tuple[str, int]]:
    """The tenant's segments: (first id, members counted), in id order."""
    with storage.engine.connect() as connection:
        rows = connection.execute(
            sqlalchemy.text("SELECT kind, n FROM tenant_counts WHERE tenant_id = :tenant"),
            {"tenant": tenant_id},
        ).all()
    found = [(kind[len("members@") :], n) for kind, n in rows if kind.startswith("members@")]
    return sorted(found)


def assert_segments_count(storage: SqlStorage, member_ids: Sequence[str]) -> None:
    """Every segment counts exactly the members in its range, and none is too large or empty."""
    found = segments(storage)
    assert found, "the tenant has no segments"
    assert found[0][0] == "", "the first segment does not start below every id"
    ordered = sorted(member_ids)
    bounds = [first for first, _ in found[1:]] + [None]
    for (first, n), upper in zip(found, bounds, strict=True):
        inside = [i for i in ordered if i >= first and (upper is None or i < upper)]
        assert n == len(inside), f"segment {first!r} counts {n}, holds {len(inside)}"
        assert n <= 2 * SIZE
        assert n > 0 or first == ""
    assert sum(n for _, n in found) == len(ordered)


def assert_pages_exact(
    storage: SqlStorage,
    member_ids: Sequence[str],
    counts: Sequence[int] = (1, 3, 2 * SIZE + 1, 100),
) -> None:
    """Pages at every offset (and past the end) are the known ids in id order, as OFFSET says."""
    ordered = sorted(member_ids)
    total = len(ordered)
    for count in counts:
        for offset in range(total + 3):
            expected = ordered[offset : offset + count]
            assert page(storage, offset, count) == (expected, total), (offset, count)
    for offset in (0, 1, total // 2, total - 1):
        expected = ordered[offset : offset + 7]
        assert plain_offset(storage, offset, 7) == expected
        assert page(storage, offset, 7)[0] == expected


def test_pages_at_every_depth_are_what_offset_returns(store: SqlStorage) -> None:
    """Start, middle, end and past the end, after bulk and single inserts across many segments."""
    bulk, single = ids_of(90, seed=1), ids_of(40, seed=2, prefix="s")
    add(store, bulk, bulk=True)
    add(store, single, bulk=False)
    assert len(segments(store)) > 10
    assert_segments_count(store, bulk + single)
    assert_pages_exact(store, bulk + single)


def test_a_deep_page_is_one_statement_that_starts_at_its_segment(store: SqlStorage) -> None:
    """The segment and the members come from one statement: one snapshot, even on PostgreSQL."""
    member_ids = ids_of(60, seed=17)
    add(store, member_ids, bulk=True)
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        assert page(store, 45, 10) == (sorted(member_ids)[45:55], 60)
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    reads = [statement for statement in seen if "FROM members" in statement]
    assert len(reads) == 1
    assert "tenant_counts" in reads[0]


def test_count_zero_no_count_and_the_other_tenant(store: SqlStorage) -> None:
    """count=0 gives no items and the total; no count reads to the end; tenants stay apart."""
    member_ids = ids_of(40, seed=3)
    add(store, member_ids, bulk=True)
    with store.transaction() as tx:
        tx.add_members([member(i, tenant_id="t2") for i in ids_of(25, seed=4)])
    ordered = sorted(member_ids)
    for offset in (0, 5, 39, 40, 41):
        assert page(store, offset, 0) == ([], 40)
        assert page(store, offset, None) == (ordered[offset:], 40)
    assert_pages_exact(store, member_ids)
    assert sum(n for _, n in segments(store, "t2")) == 25


def test_filtered_and_sorted_deep_pages_are_exact(store: SqlStorage) -> None:
    """Filters and sorts keep the plain skip; their deep pages match the members written."""
    member_ids = ids_of(60, seed=5)
    with store.transaction() as tx:
        tx.add_members([member(i, active=n % 3 != 0) for n, i in enumerate(member_ids)])
    active = sorted(i for n, i in enumerate(member_ids) if n % 3 != 0)
    by_user_name = sorted(member_ids, key=lambda i: (fold(user_name(i)), i))
    filtered = Comparison(USER_FIELDS["active"], "eq", True)
    sort = Sort(USER_FIELDS["username"])
    with store.transaction(write=False) as tx:
        for offset in range(0, 62, 3):
            query = Query(filter=filtered, start_index=offset + 1, count=5)
            found = tx.query_members(TENANT, query)
            assert [m.id for m in found.items] == active[offset : offset + 5]
            assert found.total == len(active)
            query = Query(sort=sort, start_index=offset + 1, count=5)
            assert [m.id for m in tx.query_members(TENANT, query).items] == (
                by_user_name[offset : offset + 5]
            )
            descending = Query(sort=Sort(sort.field, descending=True), start_index=offset + 1)
            assert [m.id for m in tx.query_members(TENANT, descending).items] == (
                by_user_name[::-1][offset:]
            )


def test_pages_stay_exact_after_another_instance_writes(
    store: SqlStorage, other: SqlStorage
) -> None:
    """Inserts and deletes by a second store on the database count at once for the first."""
    rng = random.Random(6)
    member_ids = ids_of(80, seed=7)
    add(store, member_ids, bulk=True)
    assert_pages_exact(store, member_ids)
    for round_ in range(3):
        gone = rng.sample(member_ids, 25)
        delete(other, gone)
        member_ids = [i for i in member_ids if i not in gone]
        new = ids_of(30, seed=100 + round_, prefix=str(round_))
        add(other, new[:20], bulk=True)
        add(other, new[20:], bulk=False)
        member_ids += new
        assert_segments_count(store, member_ids)
        assert_pages_exact(store, member_ids, counts=(2 * SIZE + 1,))
    # Emptied down to a few members, segments merge away and pages stay exact.
    delete(other, member_ids[3:])
    assert_segments_count(store, member_ids[:3])
    assert_pages_exact(store, member_ids[:3])


def test_members_whose_ids_start_segments_leave_and_come_back(
    store: SqlStorage, other: SqlStorage
) -> None:
    """A segment keeps its first id when that member goes; the id counts there when it returns."""
    member_ids = ids_of(60, seed=16)
    add(store, member_ids, bulk=True)
    firsts = [first for first, _ in segments(store) if first]
    delete(other, firsts[::2])
    assert_segments_count(store, [i for i in member_ids if i not in firsts[::2]])
    add(other, firsts[::4], bulk=True)
    add(other, firsts[2::4], bulk=False)
    delete(other, firsts[1::2])
    add(other, firsts[1::2], bulk=True)
    assert_segments_count(store, member_ids)
    assert_pages_exact(store, member_ids)


def test_a_unit_pages_its_own_writes_and_a_rollback_undoes_the_counts(store: SqlStorage) -> None:
    """Members added in a unit count in its own pages; rolled back, their segments are as before."""
    member_ids = ids_of(50, seed=8)
    add(store, member_ids, bulk=True)
    before = segments(store)
    new = ids_of(30, seed=9, prefix="n")
    with pytest.raises(LookupError), store.transaction() as tx:  # noqa: PT012 - the unit is the test
        tx.add_members([member(i) for i in new[:20]])
        for member_id in new[20:]:
            tx.add_member(member(member_id))
        tx.delete_member(TENANT, member_ids[0])
        expected = sorted(member_ids[1:] + new)
        for offset in range(0, 80, 9):
            found = tx.query_members(TENANT, Query(start_index=offset + 1, count=10))
            assert [m.id for m in found.items] == expected[offset : offset + 10]
        raise LookupError("roll back")
    assert segments(store) == before
    assert_pages_exact(store, member_ids)


def test_a_refused_insert_leaves_the_counts_as_they_were(store: SqlStorage) -> None:
    """An add that conflicts counts nothing, and the unit goes on paging exactly."""
    member_ids = ids_of(30, seed=10)
    add(store, member_ids, bulk=True)
    ordered = sorted(member_ids)
    with store.transaction() as tx:
        with pytest.raises(ConflictError):
            tx.add_members([member("fresh"), member(member_ids[3])])
        with pytest.raises(ConflictError):
            tx.add_member(member(member_ids[4]))
        for offset in range(0, 31, 4):
            found = tx.query_members(TENANT, Query(start_index=offset + 1, count=5))
            assert [m.id for m in found.items] == ordered[offset : offset + 5]
        tx.add_member(member("fresh"))
    assert_segments_count(store, [*member_ids, "fresh"])
    assert_pages_exact(store, [*member_ids, "fresh"])


def test_segments_are_rebuilt_for_a_tenant_written_before_they_existed(
    store: SqlStorage, database_url: str
) -> None:
    """Without segment rows pages skip the whole offset, exactly; the next write counts them all."""
    member_ids = ids_of(70, seed=11)
    add(store, member_ids, bulk=True)
    engine = sqlalchemy.create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("DELETE FROM tenant_counts WHERE kind LIKE 'members@%'"))
    engine.dispose()
    assert segments(store) == []
    assert_pages_exact(store, member_ids)
    add(store, ["late"], bulk=False)
    assert_segments_count(store, [*member_ids, "late"])
    assert_pages_exact(store, [*member_ids, "late"])
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("DELETE FROM tenant_counts WHERE kind LIKE 'members@%'"))
    engine.dispose()
    delete(store, ["late"])
    assert_segments_count(store, member_ids)
    assert_pages_exact(store, member_ids)


@pytest.mark.parametrize("bulk", [False, True], ids=["one", "bulk"])
def test_segments_that_an_older_instance_left_behind_are_not_trusted(
    store: SqlStorage, other: SqlStorage, monkeypatch: pytest.MonkeyPatch, bulk: bool
) -> None:
    """An instance from before segments moves the member counter only, mid-rollout.

    The segments then no longer add up to the counter: pages skip the plain
    way, exactly, and the next write counts the segments (and the counter) again.
    """
    member_ids = ids_of(60, seed=18)
    add(store, member_ids, bulk=True)
    with monkeypatch.context() as older:
        older.setattr(_segments._Counting, "_move_segments", lambda *_: None)
        add(other, ["old-1", "old-2"], bulk=bulk)
        delete(other, member_ids[:1])
    member_ids = [*member_ids[1:], "old-1", "old-2"]
    assert_pages_exact(store, member_ids, counts=(1, 2 * SIZE + 1))
    add(store, ["new-1", "new-2"], bulk=bulk)
    member_ids += ["new-1", "new-2"]
    assert_segments_count(store, member_ids)
    assert_pages_exact(store, member_ids)


def test_pages_are_exact_while_another_instance_writes(
    store: SqlStorage, other: SqlStorage
) -> None:
    """Pages never move while the other instance moves a member to just ahead of them and back.

    The other's units alternate: delete an early member and add one right
    before the paged member ``x``, then the reverse. As many members precede
    ``x`` in every committed state, so the pages from ``x`` on must always be
    the same. The added member falls in the segment that holds ``x``, the
    deleted one in an earlier segment: a page that took its segment from one
    moment and the index from the next would start one member off.
    """
    ahead = [f"a{n:03d}" for n in range(40)]
    paged = [f"x{n:03d}" for n in range(60)]
    add(store, ahead + paged, bulk=True)
    found = segments(store)
    starts = [first for first, _ in found]
    # A paged member inside its segment (not its first), in a segment with
    # room for one more, and an early member whose segment keeps one when it goes.
    at = next(
        i
        for i, member_id in enumerate(paged)
        if i > 0
        and member_id not in starts
        and found[bisect.bisect(starts, member_id) - 1][1] < 2 * SIZE
    )
    early = next(
        member_id for member_id in ahead[1:] if found[bisect.bisect(starts, member_id) - 1][1] > 1
    )
    moved = paged[at - 1] + "m"
    assert paged[at - 1] < moved < paged[at]
    stop = threading.Event()
    failures: list[BaseException] = []
    written = [0]

    def churn() -> None:
        try:
            while not stop.is_set():
                gone, back = (early, moved) if written[0] % 2 == 0 else (moved, early)
                with other.transaction() as tx:
                    assert tx.delete_member(TENANT, gone)
                    tx.add_member(member(back))
                written[0] += 1
        except BaseException as error:
            failures.append(error)

    writer = threading.Thread(target=churn)
    writer.start()
    checked = 0
    try:
        deadline = time.monotonic() + 2.0
        while (time.monotonic() < deadline or written[0] < 50) and not failures:
            for skip in (0, 1, 2):
                ids, total = page(store, len(ahead) + at + skip, 5)
                assert ids == paged[at + skip : at + skip + 5]
                assert total == len(ahead) + len(paged)
                checked += 1
            assert time.monotonic() < deadline + 30, "the writer made no progress"
    finally:
        stop.set()
        writer.join(30)
    assert not failures, failures
    assert checked > 50
    assert written[0] >= 50
    # No cut and no merge: after an even number of moves, the very same segments.
    if written[0] % 2 == 0:
        assert segments(store) == found
