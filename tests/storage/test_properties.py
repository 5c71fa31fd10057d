"""Properties: every backend answers every filter, sort and page as the evaluator says.

The evaluator (what the memory store runs) is itself checked against an
independent oracle, ``tests.storage.oracle``, on every example.

Members are drawn from a tiny alphabet full of traps (case, sharp s/long s/Kelvin
sign/``İ``/ligature folding, LIKE's ``%`` and ``_``, the escape character
``/``), so random filters hit often. Each example runs in a transaction that is
rolled back, so one database serves the whole run.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import event
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from pbidentity.domain import Group
from pbidentity.domain import Member
from pbidentity.domain import MemberRef
from pbidentity.domain import Tenant
from pbidentity.domain import fold
from pbidentity.query import ENTERPRISE_URN
from pbidentity.query import GROUP_FIELDS
from pbidentity.query import USER_FIELDS
from pbidentity.query import And
from pbidentity.query import CompareOp
from pbidentity.query import Comparison
from pbidentity.query import Field
from pbidentity.query import Filter
from pbidentity.query import Not
from pbidentity.query import Or
from pbidentity.query import Present
from pbidentity.query import Query
from pbidentity.query import Sort
from pbidentity.query import ValueFilter
from pbidentity.storage import Storage
from pbidentity.storage import Transaction
from pbidentity.storage._evaluate import GroupView
from pbidentity.storage._evaluate import MemberView
from pbidentity.storage._evaluate import group_display
from pbidentity.storage._evaluate import matches
from pbidentity.storage._evaluate import reference_display
from pbidentity.storage._evaluate import sorted_indexes
from pbidentity.storage.memory import MemoryStorage
from pbidentity.storage.sql import SqlStorage
from tests.conftest import wipe_database
from tests.storage import oracle

TENANT = "t-prop"
NOW = datetime(2026, 11, 28, 20, 54, 13, 123456, tzinfo=UTC)
TIMES = [NOW + timedelta(hours=hours, microseconds=hours) for hours in range(4)]
ALPHABET = "aAsSß%_/\u017f\u212a\u0130\ufb01"

texts = st.text(alphabet=ALPHABET, max_size=3)
# Operands: short, so that co/sw/ew/gt/lt hit, plus ids and values that fold
# onto each other, so that eq hits.
operands = st.one_of(
    st.text(alphabet=ALPHABET, max_size=2),
    st.sampled_from(["a", "A", "ss", "SS", "ß", "s", "k", "work", "WORK"]),
    st.sampled_from(["m0", "m1", "m2", "g0", "g1"]),
)
email = st.fixed_dictionaries(
    {},
    optional={
        "value": texts,
        "type": st.sampled_from(["work", "home", "WORK"]),
        "primary": st.one_of(st.booleans(), st.just("true")),
        "display": texts,
    },
)
member_attributes = st.fixed_dictionaries(
    {"userName": st.text(alphabet=ALPHABET, min_size=1, max_size=5)},
    optional={
        "title": texts,
        "displayName": texts,
        "externalId": texts,
        "active": st.one_of(st.booleans(), st.sampled_from(["True", "false", "yes"])),
        "nickName": st.one_of(st.integers(0, 3), st.booleans(), st.just({"not": "text"})),
        "emails": st.one_of(
            st.lists(email, max_size=3),
            st.lists(st.one_of(email, texts), max_size=2),
            st.just({"value": "not a list"}),
        ),
        "phoneNumbers": st.lists(email, max_size=2),
        "name": st.fixed_dictionaries({}, optional={"givenName": texts, "familyName": texts}),
        ENTERPRISE_URN: st.fixed_dictionaries(
            {},
            optional={
                "department": texts,
                "employeeNumber": st.one_of(st.integers(0, 3), texts),
                "manager": st.fixed_dictionaries({"value": texts}),
            },
        ),
    },
)


external_ids = st.fixed_dictionaries({}, optional={"externalId": texts})


@attrs.frozen
class Scenario:
    """A tenant's members, groups and memberships."""

    members: Sequence[Member]
    groups: Sequence[Group]
    memberships: Mapping[str, Sequence[str]]  # group id -> member ids


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """Three to eight members with distinct folded userNames, two to four groups."""
    documents = draw(
        st.lists(
            member_attributes,
            min_size=3,
            max_size=8,
            unique_by=lambda doc: fold(str(doc["userName"])),
        )
    )
    # externalId is unique per tenant (it links one member): later duplicates
    # lose theirs.
    seen: set[Any] = set()
    for document in documents:
        if "externalId" in document:
            if document["externalId"] in seen:
                del document["externalId"]
            else:
                seen.add(document["externalId"])
    members = [
        Member(
            tenant_id=TENANT,
            id=f"m{index}",
            attributes=document,
            role_attribute=draw(st.sampled_from([None, "admin", "Admin", "viewer"])),
            created=draw(st.sampled_from(TIMES)),
            last_modified=draw(st.sampled_from(TIMES)),
        )
        for index, document in enumerate(documents)
    ]
    names = draw(
        st.lists(st.text(ALPHABET, min_size=1, max_size=3), min_size=2, max_size=4, unique_by=fold)
    )
    groups = [
        Group(
            tenant_id=TENANT,
            id=f"g{index}",
            attributes={"displayName": name, **draw(external_ids)},
            created=draw(st.sampled_from(TIMES)),
            last_modified=NOW,
        )
        for index, name in enumerate(names)
    ]
    member_ids = [member.id for member in members]
    memberships = {
        group.id: draw(st.lists(st.sampled_from(member_ids), unique=True)) if member_ids else []
        for group in groups
    }
    return Scenario(members, groups, memberships)


OPS: list[CompareOp] = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"]


def leaf(field: Field) -> st.SearchStrategy[Filter]:
    """A comparison or presence test on ``field`` with a value of its type."""
    present: st.SearchStrategy[Filter] = st.just(Present(field))
    if field.type == "boolean":
        values: st.SearchStrategy[Any] = st.one_of(st.booleans(), st.none())
        ops: st.SearchStrategy[CompareOp] = st.sampled_from(["eq", "ne"])
    elif field.type == "datetime":
        values = st.sampled_from(TIMES)
        ops = st.sampled_from(OPS)
    else:
        values = operands
        ops = st.sampled_from(OPS)
    comparison = st.builds(Comparison, st.just(field), ops, values)
    null = st.builds(Comparison, st.just(field), st.sampled_from(["eq", "ne"]), st.none())
    return st.one_of(comparison, comparison, null, present)


def combine(children: st.SearchStrategy[Filter]) -> st.SearchStrategy[Filter]:
    """And, Or and Not of smaller filters."""
    return st.one_of(
        st.builds(And, children, children),
        st.builds(Or, children, children),
        st.builds(Not, children),
    )


def filters(registry: Mapping[str, Field]) -> st.SearchStrategy[Filter]:
    """Filter trees over a registry's fields, value filters included."""
    # Fields the scenarios fill in, and one they never do (locale), so that
    # most leaves can go either way.
    # Reversed so that Hypothesis' favourite (the first) is not ``id``.
    fields = [
        field
        for field in reversed(list(registry.values()))
        if field.multi not in ("ims", "photos", "entitlements", "roles", "x509Certificates")
        and not field.key.startswith(("userType", "preferred", "timezone", "profile", "name.h"))
        and not field.key.startswith(("name.m", "name.fo", f"{ENTERPRISE_URN}:c"))
        and not field.key.startswith((f"{ENTERPRISE_URN}:o", f"{ENTERPRISE_URN}:di"))
    ]
    attributes = sorted({field.multi for field in fields if field.multi})

    def value_filter(attribute: str) -> st.SearchStrategy[Filter]:
        subs = [field for field in fields if field.multi == attribute]
        inner = st.recursive(st.sampled_from(subs).flatmap(leaf), combine, max_leaves=3)
        return st.builds(ValueFilter, st.just(attribute), inner)

    leaves = st.one_of(
        st.sampled_from(fields).flatmap(leaf),
        st.sampled_from(attributes).flatmap(value_filter),
    )
    return st.recursive(leaves, combine, max_leaves=4)


def sorts(registry: Mapping[str, Field]) -> st.SearchStrategy[Sort | None]:
    """No sort, or a sort on any field that can be a sort key."""
    keys = [field for field in registry.values() if field.multi not in ("groups", "members")]
    return st.one_of(st.none(), st.builds(Sort, st.sampled_from(keys), st.booleans()))


class Discard(Exception):
    """Raised to roll an example's writes back."""


@contextmanager
def scratch(storage: Storage, scenario: Scenario) -> Iterator[Transaction]:
    """A transaction holding the scenario, rolled back afterwards."""
    try:
        with storage.transaction() as tx:
            tx.add_tenant(Tenant(id=TENANT, slug=TENANT, name="Properties", created=NOW))
            for member in scenario.members:
                tx.add_member(member)
            for group in scenario.groups:
                tx.add_group(group)
                tx.add_memberships(TENANT, group.id, scenario.memberships[group.id])
            yield tx
            raise Discard
    except Discard:
        pass


@pytest.fixture(scope="module")
def backends(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[list[Storage]]:
    """SQLite (one file for the whole module), memory and PostgreSQL, side by side.

    Without PostgreSQL the module is skipped with the session's how-to (a
    failure in CI), rather than comparing fewer backends unnoticed.
    """
    postgres_url: str = request.getfixturevalue("postgres_url")
    path: Path = tmp_path_factory.mktemp("properties") / "pbidentity.db"
    sql = [SqlStorage.from_url(f"sqlite:///{path}"), SqlStorage.from_url(postgres_url)]
    wipe_database(sql[-1].engine)
    yield [*sql, MemoryStorage()]
    for storage in sql:
        storage.close()


def member_views(scenario: Scenario) -> list[MemberView]:
    """The evaluator's view of every member, groups included."""
    displays = {group.id: group_display(group) for group in scenario.groups}
    groups_of: dict[str, list[MemberRef]] = {}
    for group_id, member_ids in sorted(scenario.memberships.items()):
        for member_id in member_ids:
            ref = MemberRef(id=group_id, display=displays[group_id])
            groups_of.setdefault(member_id, []).append(ref)
    return [MemberView(member, groups_of.get(member.id, [])) for member in scenario.members]


def group_views(scenario: Scenario) -> list[GroupView]:
    """The evaluator's view of every group, members included."""
    by_id = {member.id: member for member in scenario.members}
    return [
        GroupView(
            group,
            [
                MemberRef(id=member_id, display=reference_display(by_id[member_id]))
                for member_id in sorted(scenario.memberships[group.id])
            ],
        )
        for group in scenario.groups
    ]


def expected_page(
    views: Sequence[MemberView | GroupView], filter_: Filter | None, query: Query
) -> tuple[list[str], int]:
    """The page the evaluator says ``query`` (with ``filter_``) returns."""
    selected = [view for view in views if filter_ is None or matches(filter_, view)]
    # Shown by --hypothesis-show-statistics: most examples must select some
    # but not all, or the property proves little.
    share = "none" if not selected else "all" if len(selected) == len(views) else "some"
    event(f"selects {share}")
    ordered = [selected[index] for index in sorted_indexes(query.sort, selected)]
    ids = [view.member.id if isinstance(view, MemberView) else view.group.id for view in ordered]
    # The evaluator is what the memory store runs: it must itself agree with
    # the independent oracle, or the memory store would be checked against itself.
    assert ids == oracle_ids(views, filter_, query), "the evaluator disagrees with the oracle"
    start = query.start_index - 1
    stop = None if query.count is None else start + query.count
    return ids[start:stop], len(ids)


def oracle_ids(
    views: Sequence[MemberView | GroupView], filter_: Filter | None, query: Query
) -> list[str]:
    """The ids the independent oracle (``tests.storage.oracle``) selects and orders."""
    ids: list[str] = []
    tables: list[oracle.Table] = []
    for view in views:
        if isinstance(view, MemberView):
            resource_id, table = view.member.id, oracle.member_table(view.member, view.groups)
        else:
            resource_id, table = view.group.id, oracle.group_table(view.group, view.members)
        if filter_ is None or oracle.holds(filter_, table):
            ids.append(resource_id)
            tables.append(table)
    return oracle.ordered(ids, tables, query.sort)


@settings(max_examples=100, deadline=None)
@given(
    scenario=scenarios(),
    filter_=filters(USER_FIELDS),
    sort=sorts(USER_FIELDS),
    start_index=st.integers(1, 6),
    count=st.one_of(st.none(), st.integers(0, 4)),
)
def test_member_queries_match_the_evaluator(
    backends: list[Storage],
    scenario: Scenario,
    filter_: Filter,
    sort: Sort | None,
    start_index: int,
    count: int | None,
) -> None:
    """Every backend returns exactly the members, order and total the evaluator defines."""
    query = Query(filter=filter_, sort=sort, start_index=start_index, count=count)
    expected = expected_page(member_views(scenario), filter_, query)
    for storage in backends:
        with scratch(storage, scenario) as tx:
            page = tx.query_members(TENANT, query)
            assert ([member.id for member in page.items], page.total) == expected
            for member in scenario.members:
                assert tx.get_member(TENANT, member.id) == member


# userName twice: every member has one, so most examples cut from a real value.
STRING_FIELDS = ["username", "username", "displayname", "emails.value", "name.givenname"]


@settings(max_examples=100, deadline=None)
@given(scenario=scenarios(), data=st.data())
def test_string_operators_on_values_the_members_hold(
    backends: list[Storage], scenario: Scenario, data: st.DataObject
) -> None:
    """Operands cut from the members' own values: every operator, so co, sw, ew and order differ."""
    field = USER_FIELDS[data.draw(st.sampled_from(STRING_FIELDS), label="field")]
    holder = data.draw(st.sampled_from(list(scenario.members)), label="holder")
    held = [v for _, v in oracle.member_table(holder, ())[field.key] if isinstance(v, str)]
    value = data.draw(st.sampled_from(held), label="value") if held else "a"
    # Cuts from inside the value tell co from sw and ew; whole values tell eq from co.
    start = data.draw(st.integers(0, len(value)), label="start")
    stop = data.draw(st.integers(start, len(value)), label="stop")
    in_value_filter = field.multi is not None and data.draw(st.booleans(), label="value filter")
    filters_ = []
    for op in OPS:
        filter_: Filter = Comparison(field, op, value[start:stop])
        if in_value_filter:
            assert field.multi is not None
            filter_ = ValueFilter(field.multi, filter_)
        filters_.append(filter_)
    expected = [expected_page(member_views(scenario), one, Query(filter=one)) for one in filters_]
    for storage in backends:
        with scratch(storage, scenario) as tx:
            pages = [tx.query_members(TENANT, Query(filter=one)) for one in filters_]
            assert [([m.id for m in page.items], page.total) for page in pages] == expected


@settings(max_examples=60, deadline=None)
@given(
    scenario=scenarios(),
    filter_=filters(GROUP_FIELDS),
    sort=sorts(GROUP_FIELDS),
    start_index=st.integers(1, 4),
    count=st.one_of(st.none(), st.integers(0, 3)),
)
def test_group_queries_match_the_evaluator(
    backends: list[Storage],
    scenario: Scenario,
    filter_: Filter,
    sort: Sort | None,
    start_index: int,
    count: int | None,
) -> None:
    """Every backend returns exactly the groups, order and total the evaluator defines."""
    query = Query(filter=filter_, sort=sort, start_index=start_index, count=count)
    expected = expected_page(group_views(scenario), filter_, query)
    for storage in backends:
        with scratch(storage, scenario) as tx:
            page = tx.query_groups(TENANT, query)
            assert ([group.id for group in page.items], page.total) == expected


@settings(max_examples=80, deadline=None)
@given(
    scenario=scenarios(),
    filter_=filters(USER_FIELDS),
    sort=sorts(USER_FIELDS),
    size=st.integers(1, 3),
)
def test_keyset_pages_walk_the_whole_listing_once(
    backends: list[Storage],
    scenario: Scenario,
    filter_: Filter,
    sort: Sort | None,
    size: int,
) -> None:
    """Following each page's keyset visits exactly the ordered listing, each member once."""
    everything = Query(filter=filter_, sort=sort)
    expected, total = expected_page(member_views(scenario), filter_, everything)
    for storage in backends:
        with scratch(storage, scenario) as tx:
            seen: list[str] = []
            after = None
            for _ in range(len(expected) + 2):
                query = Query(filter=filter_, sort=sort, count=size, keyset=True, after=after)
                page = tx.query_members(TENANT, query)
                assert page.total == total
                seen.extend(member.id for member in page.items)
                assert page.more == (len(seen) < len(expected))
                if not page.more:
                    break
                assert page.last is not None
                assert page.last[2] == page.items[-1].id
                after = page.last
            assert seen == expected


@settings(max_examples=40, deadline=None)
@given(scenario=scenarios(), sort=sorts(GROUP_FIELDS))
def test_keyset_pages_of_groups(
    backends: list[Storage], scenario: Scenario, sort: Sort | None
) -> None:
    """Groups page by keyset too, one at a time, without a total when not asked."""
    expected, _ = expected_page(group_views(scenario), None, Query(sort=sort))
    for storage in backends:
        with scratch(storage, scenario) as tx:
            seen: list[str] = []
            after = None
            while True:
                query = Query(sort=sort, count=1, keyset=True, after=after, with_total=False)
                page = tx.query_groups(TENANT, query)
                assert page.total == -1
                seen.extend(group.id for group in page.items)
                if not page.more:
                    break
                after = page.last
            assert seen == expected
