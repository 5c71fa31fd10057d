"""What only the SQL store promises: schema, SQLite setup, bound parameters, statement counts."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from sqlalchemy import create_engine
from sqlalchemy import event
from sqlalchemy import text
from sqlalchemy.pool import NullPool

from pbidentity._clock import new_id
from pbidentity._lifecycle import LifecycleWork
from pbidentity.domain import Event
from pbidentity.domain import Group
from pbidentity.domain import Member
from pbidentity.domain import Tenant
from pbidentity.exceptions import ConfigurationError
from pbidentity.exceptions import ConflictError
from pbidentity.exceptions import NotFoundError
from pbidentity.exceptions import StorageUnavailableError
from pbidentity.exceptions import VersionMismatchError
from pbidentity.policy import TenantPolicy
from pbidentity.query import USER_FIELDS
from pbidentity.query import CompareOp
from pbidentity.query import Comparison
from pbidentity.query import Query
from pbidentity.roles import GroupMapping
from pbidentity.roles import RolePolicy
from pbidentity.roles import RoleSet
from pbidentity.storage import Transaction
from pbidentity.storage import open_storage
from pbidentity.storage.memory import MemoryStorage
from pbidentity.storage.sql import SqlStorage
from pbidentity.storage.sql import _engine as sql_engine
from pbidentity.storage.sql import member_values
from pbidentity.storage.sql import members
from tests.conftest import wipe_database
from tests.storage.test_properties import member_attributes

NOW = datetime(2026, 11, 28, 20, 54, 13, 123456, tzinfo=UTC)


def seed(storage: SqlStorage) -> None:
    """One tenant with one member that has an email."""
    with storage.transaction() as tx:
        tx.add_tenant(Tenant(id="t1", slug="t1", name="T", created=NOW))
        tx.add_member(
            Member(
                tenant_id="t1",
                id="m1",
                attributes={"userName": "jane@x.com", "emails": [{"value": "jane@x.com"}]},
                created=NOW,
                last_modified=NOW,
            )
        )


@contextmanager
def statements(storage: SqlStorage) -> Iterator[list[tuple[str, Any]]]:
    """Record the SQL statements (and parameters) the storage sends, minus transaction control."""
    seen: list[tuple[str, Any]] = []

    def record(*args: Any) -> None:
        statement, parameters = args[2], args[3]
        if not statement.startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")):
            seen.append((statement, parameters))

    event.listen(storage.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(storage.engine, "before_cursor_execute", record)


def test_locked_database_is_unavailable(tmp_path: Path) -> None:
    """A writer that holds the lock past busy_timeout surfaces as StorageUnavailableError."""
    path = tmp_path / "db.sqlite"
    storage = SqlStorage.from_url(f"sqlite:///{path}", busy_timeout_ms=50)
    seed(storage)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageUnavailableError, match="locked"), storage.transaction():
            pass
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    with storage.transaction() as tx:
        assert tx.get_member("t1", "m1") is not None
    storage.close()


def test_read_only_unit_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    """With write=False, SQLite reads the last commit while another unit holds the write lock."""
    storage = SqlStorage.from_url(f"sqlite:///{tmp_path / 'db.sqlite'}", busy_timeout_ms=50)
    seed(storage)
    with storage.transaction() as writer:
        writer.delete_member("t1", "m1")
        with storage.transaction(write=False) as reader:
            assert reader.get_member("t1", "m1") is not None
        with pytest.raises(StorageUnavailableError), storage.transaction():
            pass
    storage.close()


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "nonsense", "nosuchdialect://x/y"]
)
def test_unusable_urls_are_configuration_errors(url: str) -> None:
    """URLs that cannot work (in-memory SQLite, garbage, unknown dialects) say why up front."""
    with pytest.raises(ConfigurationError):
        open_storage(url)


def test_open_storage_picks_the_backend(tmp_path: Path) -> None:
    """open_storage maps memory:// and sqlite:/// URLs to their backends."""
    assert isinstance(open_storage("memory://"), MemoryStorage)
    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert isinstance(storage, SqlStorage)
    storage.close()


def test_host_sqlite_engine_is_left_alone(tmp_path: Path) -> None:
    """Given a host's SQLite engine, pbidentity configures its own engine on the same file."""
    host = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    storage = SqlStorage(host)
    seed(storage)
    with storage.engine.connect() as connection:
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    with host.connect() as connection:
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 0
        assert connection.execute(text("SELECT count(*) FROM members")).scalar() == 1
    storage.close()
    host.dispose()


def test_every_searchable_field_has_a_column() -> None:
    """Each single-valued user field has a typed column, case-insensitive text a folded twin."""
    own = {"id": "id", "meta.created": "created", "meta.lastModified": "last_modified"}
    names = set(members.c.keys())
    for field in USER_FIELDS.values():
        if field.multi is not None:
            continue
        matching = [name for name in names if name.replace("_", "") == _flat(field.key)]
        assert own.get(field.key) in names or matching, field.key
        if field.type == "string" and not field.case_exact and field.key != "role":
            assert f"{matching[0]}_folded" in names, field.key
    assert "role_folded" in names


def _flat(key: str) -> str:
    key = key.replace("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:", "enterprise")
    return key.replace(".", "").lower()


def test_datetimes_are_fixed_width_utc_text(sqlite_storage: SqlStorage) -> None:
    """Stored datetimes are 32-character UTC ISO text, so text order is time order."""
    seed(sqlite_storage)
    with sqlite_storage.engine.connect() as connection:
        raw = connection.execute(text("SELECT created FROM tenants")).scalar()
    assert raw == "2026-11-28T20:54:13.123456+00:00"


def test_filter_values_are_bound_parameters(sqlite_storage: SqlStorage) -> None:
    """Operands travel as parameters, never inside the SQL text."""
    seed(sqlite_storage)
    nasty = "x' OR '1'='1"
    with statements(sqlite_storage) as seen, sqlite_storage.transaction() as tx:
        cases: list[tuple[str, CompareOp]] = [
            ("title", "co"),
            ("emails.value", "sw"),
            ("userName", "gt"),
        ]
        for key, op in cases:
            filter_ = Comparison(USER_FIELDS[key.lower()], op, nasty)
            assert tx.query_members("t1", Query(filter=filter_)).total == 0
    assert seen
    assert all("OR '1'" not in statement for statement, _ in seen)
    assert all(any("1'='1" in str(value) for value in params) for _, params in seen)


def test_user_name_lookup_is_one_indexed_statement(sqlite_storage: SqlStorage) -> None:
    """The IdPs' userName eq lookup is a single statement answered from the unique index."""
    seed(sqlite_storage)
    query = Query(filter=Comparison(USER_FIELDS["username"], "eq", "JANE@x.com"), count=100)
    with statements(sqlite_storage) as seen, sqlite_storage.transaction() as tx:
        assert [m.id for m in tx.query_members("t1", query).items] == ["m1"]
    assert len(seen) == 1
    statement, params = seen[0]
    with sqlite_storage.engine.connect() as connection:
        plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
    assert "user_name_folded=?" in str(plan)


def test_replace_rewrites_values_only_when_they_change(sqlite_storage: SqlStorage) -> None:
    """A replace keeping the multi-valued attributes is one UPDATE; changing them rewrites them."""
    seed(sqlite_storage)
    # The listener is attached before the unit starts: a unit decides once
    # whether its statements go through Core (observable) or the hot path.
    with statements(sqlite_storage) as seen, sqlite_storage.transaction() as tx:
        jane = tx.get_member("t1", "m1")
        assert jane is not None
        seen.clear()
        inactive = {**jane.attributes, "active": False}
        tx.replace_member(attrs.evolve(jane, attributes=inactive, version=2), expected_version=1)
        assert [statement.split()[0] for statement, _ in seen] == ["UPDATE"]
        seen.clear()
        moved = {**inactive, "emails": [{"value": "jane@y.com"}]}
        tx.replace_member(attrs.evolve(jane, attributes=moved, version=3), expected_version=2)
        verbs = [statement.split()[0] for statement, _ in seen]
        assert verbs[-2:] == ["DELETE", "INSERT"]
    with sqlite_storage.engine.connect() as connection:
        rows = connection.execute(member_values.select()).all()
    assert [row.value for row in rows] == ["jane@y.com"]


def test_memberships_of_many_ids_are_one_statement(sqlite_storage: SqlStorage) -> None:
    """group_members and member_groups answer a whole page of ids with one statement."""
    seed(sqlite_storage)
    ids = [f"g{index}" for index in range(300)]
    with statements(sqlite_storage) as seen, sqlite_storage.transaction() as tx:
        assert len(tx.group_members("t1", ids)) == 300
        assert tx.member_groups("t1", ["m1", "m2"]) == {"m1": [], "m2": []}
    assert len(seen) == 2


def test_hot_path_reads_exactly_what_core_reads(sqlite_storage: SqlStorage) -> None:
    """Hot statements run on the DBAPI cursor return the same values as through Core."""
    seed(sqlite_storage)
    query = Query(filter=Comparison(USER_FIELDS["username"], "eq", "jane@x.com"), count=10)

    def read() -> tuple[object, ...]:
        with sqlite_storage.transaction(write=False) as tx:
            member = tx.get_member("t1", "m1")
            assert member is not None
            return (
                member,
                tx.get_tenant("t1"),
                tx.member_groups("t1", ["m1"]),
                list(tx.query_members("t1", query).items),
            )

    fast = read()
    with statements(sqlite_storage) as seen:
        core = read()
    assert seen, "with a cursor listener every statement goes through Core"
    assert fast == core


def test_replace_after_a_read_writes_only_the_changed_columns(sqlite_storage: SqlStorage) -> None:
    """A member read and replaced in one unit is updated column by column, not wholesale."""
    seed(sqlite_storage)
    with statements(sqlite_storage) as seen, sqlite_storage.transaction() as tx:
        jane = tx.get_member("t1", "m1")
        assert jane is not None
        seen.clear()
        inactive = {**jane.attributes, "active": False}
        tx.replace_member(attrs.evolve(jane, attributes=inactive, version=2), expected_version=1)
        (update_sql, _), *rest = seen
        assert rest == []
        assigned = update_sql.split(" SET ", 1)[1].split(" WHERE ", 1)[0]
        assert sorted(part.split("=")[0].strip() for part in assigned.split(",")) == [
            "active",
            "document",
            "version",
        ]
    with sqlite_storage.transaction(write=False) as tx:
        stored = tx.get_member("t1", "m1")
        assert stored is not None
        assert stored.active is False
        assert stored.version == 2
        query = Query(filter=Comparison(USER_FIELDS["active"], "eq", False))
        assert [m.id for m in tx.query_members("t1", query).items] == ["m1"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    before=member_attributes,
    after=member_attributes,
    roles=st.tuples(st.sampled_from([None, "admin", "viewer"]), st.sampled_from([None, "maker"])),
)
def test_a_partial_update_leaves_exactly_the_row_a_full_write_would(
    tmp_path_factory: pytest.TempPathFactory,
    before: dict[str, Any],
    after: dict[str, Any],
    roles: tuple[str | None, str | None],
) -> None:
    """A replace of what the unit read writes only changed columns, yet the row is the same.

    The same member written whole (an insert, in another tenant) is the reference: every
    column and every member_values row must match.
    """
    path = tmp_path_factory.mktemp("partial") / "p.db"
    store = SqlStorage.from_url(f"sqlite:///{path}")
    try:
        first = Member(
            tenant_id="t1",
            id="m1",
            attributes={**before, "userName": "a@x.com"},
            role_attribute=roles[0],
            created=NOW,
            last_modified=NOW,
        )
        second = attrs.evolve(
            first,
            attributes={**after, "userName": "b@x.com"},
            role_attribute=roles[1],
            role="maker",
            role_source="attribute",
            role_rule="role attribute maker",
            scim_managed=True,
            version=2,
        )
        with store.transaction() as tx:
            for tenant in ("t1", "t2"):
                tx.add_tenant(Tenant(id=tenant, slug=tenant, name=tenant, created=NOW))
            tx.add_member(first)
            tx.add_member(attrs.evolve(second, tenant_id="t2"))
        with store.transaction() as tx:
            assert tx.get_member("t1", "m1") == first
            tx.replace_member(second, expected_version=1)
        with store.engine.connect() as connection:
            rows = connection.execute(members.select().order_by(members.c.tenant_id)).mappings()
            partial, whole = (
                {k: v for k, v in row.items() if k != "tenant_id"} for row in rows.all()
            )
            values = connection.execute(
                member_values.select().order_by(
                    member_values.c.attribute, member_values.c.position, member_values.c.tenant_id
                )
            ).mappings()
            by_tenant: dict[str, list[dict[str, Any]]] = {"t1": [], "t2": []}
            for row in values.all():
                by_tenant[row["tenant_id"]].append(
                    {k: v for k, v in row.items() if k != "tenant_id"}
                )
        assert partial == whole
        assert by_tenant["t1"] == by_tenant["t2"]
    finally:
        store.close()


def seed_many(storage: SqlStorage, count: int) -> None:
    """One tenant with ``count`` members m000, m001..."""
    with storage.transaction() as tx:
        tx.add_tenant(Tenant(id="t1", slug="t1", name="T", created=NOW))
        tx.add_members(
            [
                Member(
                    tenant_id="t1",
                    id=f"m{i:03d}",
                    attributes={"userName": f"u{i}@x.com"},
                    created=NOW,
                    last_modified=NOW,
                )
                for i in range(count)
            ]
        )


def decide_all(tx: Transaction, count: int) -> list[Member]:
    """Read the members, then write them back with a role decided by a group, in bulk."""
    read = tx.get_members("t1", [f"m{i:03d}" for i in range(count)])
    decided = [
        attrs.evolve(m, role="maker", role_source="group", role_rule="g", version=m.version + 1)
        for m in read
    ]
    tx.replace_members([(m, m.version - 1) for m in decided])
    return decided


@pytest.mark.parametrize("listened", [False, True], ids=["hot-path", "core"])
def test_roles_decided_again_for_many_members_are_one_statement(
    database_url: str, listened: bool
) -> None:
    """replace_members of a role change to members read in the unit sends one UPDATE for all."""
    storage = SqlStorage.from_url(database_url)
    try:
        seed_many(storage, 150)
        if listened:
            with statements(storage) as seen, storage.transaction() as tx:
                decided = decide_all(tx, 150)
            assert [statement.split()[0] for statement, _ in seen] == ["SELECT", "UPDATE"]
        else:
            with storage.transaction() as tx:
                decided = decide_all(tx, 150)
        with storage.transaction(write=False) as tx:
            assert tx.get_members("t1", [m.id for m in decided]) == decided
    finally:
        storage.close()


def pushed(storage: SqlStorage, group_id: str, member_ids: list[str]) -> list[str]:
    """Add members to a mapped group as a SCIM PATCH does; the statements it sent, by kind."""
    with statements(storage) as seen, storage.transaction() as tx:
        tenant = tx.get_tenant("t1")
        assert tenant is not None
        before = tx.get_group("t1", group_id)
        assert before is not None
        added = tx.add_memberships("t1", group_id, member_ids)
        after = attrs.evolve(before, version=before.version + 1)
        tx.replace_group(after, expected_version=before.version)
        work = LifecycleWork.open(
            tx, tenant, roles=RoleSet(), actor="test", clock=lambda: NOW, new_id=new_id
        )
        work.group_changed(before, after, added=added)
        events = work.finish()
    assert len(events) == len(member_ids) + 1  # group.members_changed, then a role_changed each
    return [" ".join(statement.split()[:3]) for statement, _ in seen[1:]]


def test_a_mapped_group_push_sends_as_many_statements_for_150_members_as_for_3(
    database_url: str,
) -> None:
    """Memberships, roles decided again and their events: one statement per kind, any count."""
    storage = SqlStorage.from_url(database_url)
    policy = TenantPolicy(
        roles=RolePolicy(
            mappings=(
                GroupMapping(role="maker", group_id="g1"),
                GroupMapping(role="maker", group_id="g2"),
            )
        )
    )
    ids = [f"m{i:03d}" for i in range(153)]
    try:
        with storage.transaction() as tx:
            tx.add_tenant(
                Tenant(id="t1", slug="t1", name="T", created=NOW, settings=policy.settings())
            )
            tx.add_members(
                [
                    Member(
                        tenant_id="t1",
                        id=member_id,
                        attributes={"userName": f"{member_id}@x.com"},
                        scim_managed=True,
                        created=NOW,
                        last_modified=NOW,
                    )
                    for member_id in ids
                ]
            )
            for group_id in ("g1", "g2"):
                tx.add_group(
                    Group(
                        tenant_id="t1",
                        id=group_id,
                        attributes={"displayName": f"pushed {group_id}"},
                        created=NOW,
                        last_modified=NOW,
                    )
                )
        few = pushed(storage, "g1", ids[:3])
        many = pushed(storage, "g2", ids[3:])
        assert many == few
        # The memberships in one INSERT (SQLite reads which are there first),
        # the group's version, the members and their groups read, the roles
        # in one UPDATE, the events in one INSERT.
        kinds = [statement.split()[0] for statement in many]
        assert (kinds.count("INSERT"), kinds.count("UPDATE")) == (2, 2)
        with storage.transaction(write=False) as tx:
            assert {m.role for m in tx.get_members("t1", ids)} == {"maker"}
            trail = tx.list_events("t1", limit=1000)
        assert [e.subject_id for e in trail if e.type == "member.role_changed"] == ids
    finally:
        storage.close()


@pytest.mark.parametrize("count", [1, 2, 7, 30])
def test_events_are_written_and_counted_through_core_too(database_url: str, count: int) -> None:
    """With a cursor listener (Core's path), a batch of events is written whole and checked."""
    storage = SqlStorage.from_url(database_url)
    made = [
        Event(
            id=f"e{n:02d}",
            tenant_id="t1",
            type="member.role_changed",
            subject_id=f"m{n:02d}",
            actor="test",
            occurred=NOW,
            data={"new": "maker"},
        )
        for n in range(count)
    ]
    try:
        seed_many(storage, 1)
        with statements(storage) as seen, storage.transaction() as tx:
            tx.add_events(made)
        assert [statement.split()[0] for statement, _ in seen] == ["INSERT"]
        with pytest.raises(NotFoundError), statements(storage), storage.transaction() as tx:
            tx.add_events([*made, attrs.evolve(made[0], id="ghostly", tenant_id="ghost")])
        with storage.transaction(write=False) as tx:
            assert [e.id for e in tx.list_events("t1")] == [e.id for e in made]
    finally:
        storage.close()


def tampered_then_decided(storage: SqlStorage, tamper: str) -> None:
    """Read three members, let "another writer" run ``tamper``, then write them in bulk."""
    with storage.transaction() as tx:
        read = tx.get_members("t1", ["m000", "m001", "m002"])
        # Another writer between this unit's read and its write (on
        # PostgreSQL a concurrent commit; here the unit's own connection).
        tx._conn.execute(text(tamper))
        tx.replace_members([(attrs.evolve(m, role="maker", version=2), 1) for m in read])


@pytest.mark.parametrize("listened", [False, True], ids=["hot-path", "core"])
def test_a_member_moved_or_gone_before_a_bulk_write_fails_the_unit(
    database_url: str, listened: bool
) -> None:
    """A bulk UPDATE matching fewer rows than it sent fails the unit: conflict, or not found."""
    storage = SqlStorage.from_url(database_url)

    def core_only(*_: Any) -> None:
        """A listener whose presence sends every statement through Core."""

    if listened:
        event.listen(storage.engine, "before_cursor_execute", core_only)
    try:
        seed_many(storage, 3)
        with pytest.raises(VersionMismatchError):
            tampered_then_decided(storage, "UPDATE members SET version = 2 WHERE id = 'm001'")
        with pytest.raises(NotFoundError):
            tampered_then_decided(storage, "DELETE FROM members WHERE id = 'm002'")
        with storage.transaction(write=False) as tx:
            stored = tx.get_members("t1", ["m000", "m001", "m002"])
        assert [(m.id, m.version, m.role) for m in stored] == [
            ("m000", 1, None),
            ("m001", 1, None),
            ("m002", 1, None),
        ]
    finally:
        storage.close()


def add_then_fail(storage: SqlStorage) -> None:
    """A writing unit that adds a tenant, then fails."""
    with storage.transaction() as tx:
        tx.add_tenant(Tenant(id="t2", slug="t2", name="T2", created=NOW))
        raise RuntimeError("after the insert")


def test_a_read_only_unit_on_postgresql_runs_without_a_transaction(postgres_url: str) -> None:
    """Under READ COMMITTED a read-only unit sends no BEGIN or COMMIT; a writing unit does."""
    storage = SqlStorage.from_url(postgres_url)
    wipe_database(storage.engine)
    try:
        seed(storage)
        idle, in_transaction = (
            psycopg.pq.TransactionStatus.IDLE,
            psycopg.pq.TransactionStatus.INTRANS,
        )
        with storage.transaction(write=False) as tx:
            assert tx.get_member("t1", "m1") is not None
            assert tx._dbapi.info.transaction_status == idle
        with storage.transaction() as tx:
            assert tx.get_member("t1", "m1") is not None
            assert tx._dbapi.info.transaction_status == in_transaction
        # The connection went back to the pool as it came: the next writing
        # unit is a transaction again, and rolls back whole.
        with pytest.raises(RuntimeError):
            add_then_fail(storage)
        with storage.transaction(write=False) as tx:
            assert tx.get_tenant("t2") is None
    finally:
        storage.close()


def test_a_member_added_on_postgresql_takes_no_savepoint_unless_refused(
    postgres_url: str,
) -> None:
    """A create's insert needs no savepoint on PostgreSQL; a refused one is redone under one."""
    storage = SqlStorage.from_url(postgres_url)
    wipe_database(storage.engine)
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(args[2])

    try:
        seed(storage)
        event.listen(storage.engine, "before_cursor_execute", record)
        with storage.transaction() as tx:
            tx.add_member(
                Member(
                    tenant_id="t1",
                    id="m2",
                    attributes={"userName": "bob@x.com", "emails": [{"value": "bob@x.com"}]},
                    created=NOW,
                    last_modified=NOW,
                )
            )
        # Three round trips between BEGIN and COMMIT: the member's row with
        # its tenant's counter, its values, its segment; no savepoint, and no
        # recount of the segments (which a counter left behind would cause).
        assert [" ".join(s.split()[:3]) for s in sent if not s.startswith(("BEGIN", "COMMIT"))] == [
            "WITH inserted AS",
            "INSERT INTO member_values",
            "UPDATE tenant_counts SET",
        ]
        sent.clear()
        with storage.transaction() as tx:
            with pytest.raises(ConflictError) as taken:
                tx.add_member(
                    Member(
                        tenant_id="t1",
                        id="m3",
                        attributes={"userName": "BOB@x.com"},
                        created=NOW,
                        last_modified=NOW,
                    )
                )
            assert taken.value.attribute == "userName"
            # The refusal left the transaction usable.
            assert tx.get_member("t1", "m2") is not None
        assert [s.split()[0] for s in sent if s.startswith(("SAVEPOINT", "ROLLBACK TO"))] == [
            "SAVEPOINT",
            "ROLLBACK",
        ]
        with storage.transaction(write=False) as tx:
            assert tx.existing_member_ids("t1", ["m1", "m2", "m3"]) == {"m1", "m2"}
        with storage.engine.connect() as connection:
            counted = "SELECT n FROM tenant_counts WHERE tenant_id = 't1' AND kind = 'members'"
            assert connection.execute(text(counted)).scalar() == 2
    finally:
        event.remove(storage.engine, "before_cursor_execute", record)
        storage.close()


def terminate(postgres_url: str, pid: int) -> None:
    """End a server backend from another connection, and wait until it is gone."""
    other = create_engine(postgres_url, poolclass=NullPool)
    try:
        with other.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            for _ in range(200):
                alive = connection.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
                ).scalar_one()
                if not alive:
                    break
                time.sleep(0.01)
            connection.commit()
    finally:
        other.dispose()


@pytest.mark.parametrize("idled", [False, True], ids=["closed-by-server", "idled-long"])
def test_a_pooled_postgresql_connection_the_server_closed_is_replaced(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, idled: bool
) -> None:
    """A connection closed while it sat in the pool is replaced before a unit uses it.

    Its socket says so at once (no round trip); one that idled long is pinged anyway.
    """
    storage = SqlStorage.from_url(postgres_url)
    wipe_database(storage.engine)
    try:
        seed(storage)
        with storage.transaction(write=False) as tx:
            pid = tx._dbapi.info.backend_pid
        terminate(postgres_url, pid)
        if idled:
            # As if the connection had idled past the threshold, with a
            # socket that says nothing (a network that dropped it).
            monkeypatch.setattr(sql_engine, "_IDLE_BEFORE_PING_S", 0.0)
            monkeypatch.setattr(sql_engine, "_readable", lambda _connection: False)
        with storage.transaction(write=False) as tx:
            assert tx.get_member("t1", "m1") is not None
            assert tx._dbapi.info.backend_pid != pid
    finally:
        storage.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_tenant_read_again_shares_its_parsed_settings_until_they_change(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Unchanged settings are parsed once (the policy then found by identity); changed ones anew."""
    from pbidentity.policy import TenantPolicy
    from pbidentity.roles import GroupMapping
    from pbidentity.roles import RolePolicy

    if backend == "sqlite":
        storage = SqlStorage.from_url(f"sqlite:///{tmp_path / 'pbidentity.db'}")
    else:
        storage = SqlStorage.from_url(request.getfixturevalue("postgres_url"))
        wipe_database(storage.engine)
    mapped = RolePolicy(mappings=(GroupMapping(role="maker", group_name="Makers"),))
    try:
        seed(storage)
        with storage.transaction() as tx:
            tenant = tx.get_tenant("t1")
            assert tenant is not None
            policy = TenantPolicy(roles=mapped)
            tx.replace_tenant(
                attrs.evolve(tenant, settings=policy.settings(), version=2), expected_version=1
            )
        with storage.transaction(write=False) as tx:
            first, second = tx.get_tenant("t1"), tx.get_tenant("t1")
        assert first is not None
        assert second is not None
        assert first.settings is second.settings
        assert TenantPolicy.of(first) is TenantPolicy.of(second)
        assert TenantPolicy.of(second).roles == mapped
        with storage.transaction() as tx:
            tx.replace_tenant(
                attrs.evolve(
                    second, settings=TenantPolicy(on_delete="deactivate").settings(), version=3
                ),
                expected_version=2,
            )
        with storage.transaction(write=False) as tx:
            third = tx.get_tenant("t1")
        assert third is not None
        assert third.settings is not second.settings
        assert TenantPolicy.of(third).on_delete == "deactivate"
        assert TenantPolicy.of(third).roles == RolePolicy()
    finally:
        storage.close()


def test_events_added_last_go_with_the_commit_in_one_round_trip(
    postgres_url: str, tmp_path: Path
) -> None:
    """On PostgreSQL, a unit's last events and its COMMIT wait for one answer together.

    libpq's own trace shows what the client sent: after the member's read,
    the events' INSERT and COMMIT, then a single Sync (the client waits for
    the server only at a Sync or a simple Query).
    """
    storage = SqlStorage.from_url(postgres_url)
    wipe_database(storage.engine)
    path = tmp_path / "libpq.trace"
    try:
        seed(storage)
        with path.open("w") as trace, storage.transaction() as tx:
            assert tx.get_member("t1", "m1") is not None
            pgconn = tx._dbapi.pgconn
            pgconn.trace(trace.fileno())
            pgconn.set_trace_flags(1)  # no timestamps
            tx.add_events(
                [
                    Event(
                        id=f"e{n}",
                        tenant_id="t1",
                        type="member.updated",
                        subject_id="m1",
                        actor="token:okta",
                        occurred=NOW,
                        data={"n": n},
                    )
                    for n in range(2)
                ],
                last=True,
            )
        pgconn.untrace()
        sent = _sent(path)
        kinds = [words[0] for words in sent]
        statements = [words[1].split('"')[3] for words in sent if words[0] == "Parse"]
        assert [s.split()[0] for s in statements] == ["INSERT", "COMMIT"]
        assert "INSERT INTO events" in statements[0]
        assert kinds.count("Sync") == 1
        assert "Query" not in kinds
        assert kinds.count("Execute") == 3  # two events, then COMMIT
        with storage.transaction(write=False) as tx:
            assert [e.id for e in tx.list_events("t1")] == ["e0", "e1"]
    finally:
        storage.close()


def _sent(path: Path) -> list[list[str]]:
    """The messages the client sent, from a libpq trace: [kind, rest] (SQL newlines joined)."""
    messages: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith(("F\t", "B\t")) or not messages:
            messages.append(line)
        else:
            messages[-1] += " " + line
    return [m.split(None, 3)[2:] for m in messages if m.startswith("F\t")]


@pytest.mark.parametrize("isolation", [None, "REPEATABLE READ"])
def test_a_write_unit_sends_its_begin_with_its_first_statement(
    postgres_url: str, tmp_path: Path, isolation: str | None
) -> None:
    """On PostgreSQL a writing unit's BEGIN (at the engine's level) goes with its first statement.

    The connection goes back to the pool as it came: out of autocommit mode,
    so that the host app's own use of the pool is unchanged.
    """
    engine = (
        create_engine(postgres_url, isolation_level=isolation)
        if isolation
        else create_engine(postgres_url)
    )
    storage = SqlStorage(engine)
    wipe_database(storage.engine)
    path = tmp_path / "libpq.trace"
    try:
        seed(storage)
        with storage.transaction(write=False):
            pass  # a pooled connection, to trace from its first message
        with path.open("w") as trace:
            with storage.engine.connect() as connection:
                pgconn = connection.connection.driver_connection.pgconn  # type: ignore[union-attr]
                pgconn.trace(trace.fileno())
                pgconn.set_trace_flags(1)
            with storage.transaction() as tx:
                assert tx._dbapi.pgconn is pgconn  # the pool's one connection
                assert tx.get_member("t1", "m1") is not None
                status = tx._dbapi.info.transaction_status
                tx.touch_token("no-such-token", NOW)
            pgconn.untrace()
        assert status == psycopg.pq.TransactionStatus.INTRANS
        sent = _sent(path)
        kinds = [words[0] for words in sent]
        first_sync = kinds.index("Sync")
        parsed = [words[1] for words in sent[:first_sync] if words[0] == "Parse"]
        level = isolation or "READ COMMITTED"
        assert parsed[0].startswith(f'"" "BEGIN ISOLATION LEVEL {level}"')
        assert "SELECT members.id" in parsed[1]
        assert "Query" not in kinds[:first_sync]
        # Then the token's UPDATE, and COMMIT: three round trips in all.
        assert kinds.count("Sync") + kinds.count("Query") == 3
        with storage.engine.connect() as connection:
            dbapi = connection.connection.driver_connection
            assert dbapi is not None
            assert dbapi.autocommit is False
            assert connection.execute(text("SELECT 1")).scalar() == 1
            assert dbapi.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            connection.rollback()
    finally:
        storage.close()
        engine.dispose()


def test_a_new_members_values_go_with_its_segment_in_one_round_trip(
    postgres_url: str, tmp_path: Path
) -> None:
    """On PostgreSQL a create's values rows wait for no answer of their own, and are stored."""
    storage = SqlStorage.from_url(postgres_url)
    wipe_database(storage.engine)
    path = tmp_path / "libpq.trace"
    try:
        seed(storage)
        with storage.transaction(write=False):
            pass  # a pooled connection, to trace from its first message
        with path.open("w") as trace:
            with storage.engine.connect() as connection:
                pgconn = connection.connection.driver_connection.pgconn  # type: ignore[union-attr]
                pgconn.trace(trace.fileno())
                pgconn.set_trace_flags(1)
            with storage.transaction() as tx:
                tx.add_member(
                    Member(
                        tenant_id="t1",
                        id="m2",
                        attributes={
                            "userName": "bob@x.com",
                            "emails": [{"value": "bob@x.com"}, {"value": "b@y.org"}],
                        },
                        created=NOW,
                        last_modified=NOW,
                    )
                )
            pgconn.untrace()
        sent = _sent(path)
        kinds = [words[0] for words in sent]
        binds_per_sync: list[int] = [0]
        for kind in kinds:
            if kind == "Bind":
                binds_per_sync[-1] += 1
            elif kind == "Sync":
                binds_per_sync.append(0)
        # BEGIN with the insert; both values rows with the segment's UPDATE;
        # then COMMIT (a simple Query): three round trips.
        assert binds_per_sync[:2] == [2, 3]
        assert kinds.count("Sync") + kinds.count("Query") == 3
        with storage.transaction(write=False) as tx:
            query = Query(
                filter=Comparison(USER_FIELDS["emails.value"], "eq", "B@Y.ORG"),
                start_index=1,
                count=10,
            )
            assert [m.id for m in tx.query_members("t1", query).items] == ["m2"]
    finally:
        storage.close()
