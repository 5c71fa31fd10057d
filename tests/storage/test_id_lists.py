"""Reads and writes of a list of ids bind the list as one parameter: one SQL text, index probes."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy
from sqlalchemy.engine import Connection

from pbidentity.storage.sql import SqlStorage
from pbidentity.storage.sql import _execute
from pbidentity.storage.sql import _statements
from tests.storage.test_contract import make_group
from tests.storage.test_contract import make_member
from tests.storage.test_contract import make_tenant

# Each statement that takes a list of ids, and the index probe its plan must
# show for every id of the list (the column bound to the list, after "=?").
PROBES = {
    "_GET_MEMBERS": "(tenant_id=? AND id=?)",
    "_EXISTING_MEMBERS": "(tenant_id=? AND id=?)",
    "_GROUP_MEMBERS": "(tenant_id=? AND group_id=?)",
    "_MEMBER_GROUPS": "(tenant_id=? AND member_id=?)",
    "_MEMBERSHIPS_OF": "member_id=?",
    "_REMOVE_MEMBERSHIPS": "member_id=?",
}


@pytest.fixture
def team(sqlite_storage: SqlStorage) -> SqlStorage:
    """A tenant with 300 members and two groups, on a real SQLite file."""
    with sqlite_storage.transaction() as tx:
        tx.add_tenant(make_tenant())
        tx.add_members([make_member(f"m{i:03d}", f"user{i}@x.com") for i in range(300)])
        tx.add_group(make_group("g1", "Engineering"))
        tx.add_group(make_group("g2", "Sales"))
    return sqlite_storage


@pytest.fixture
def core_statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What runs through SQLAlchemy Core's ``Connection.execute`` (not the hot path)."""
    seen: list[str] = []
    execute = Connection.execute

    def recording(self: Connection, statement: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(str(statement))
        return execute(self, statement, *args, **kwargs)

    monkeypatch.setattr(Connection, "execute", recording)
    return seen


@pytest.mark.parametrize("name", sorted(PROBES))
def test_sqlite_probes_the_index_once_per_id_of_the_list(team: SqlStorage, name: str) -> None:
    """SQLite's plan searches the index by each id of the list, never scans the tenant's rows."""
    compiled = _execute._fast(getattr(_statements, name), team.engine.dialect)
    values = {"b_tenant_id": "t1", "b_id": "g1", "b_ids": ["m001", "m002"]}
    parameters = tuple(
        processor(values[key]) if processor else values[key] for key, processor in compiled.plan
    )
    with team.engine.connect() as connection:
        cursor = connection.connection.cursor()
        plan = [row[3] for row in cursor.execute(f"EXPLAIN QUERY PLAN {compiled.sql}", parameters)]
    assert "json_each" in compiled.sql
    assert any(line.startswith("SEARCH") and PROBES[name] in line for line in plan), plan
    assert not any(line.startswith("SCAN") and "json_each" not in line for line in plan), plan


@pytest.mark.parametrize(
    "statement",
    [
        _statements._update_members_of_rows("sqlite", ("app_role", "version")),
        _statements._ADD_MEMBERSHIPS_OF_LIST_SQLITE,
    ],
    ids=["roles-decided-again", "memberships-added"],
)
def test_sqlite_writes_the_rows_of_one_bound_list_by_primary_key(
    team: SqlStorage, statement: Any
) -> None:
    """A bulk write of a list's rows finds each by its key: a search per row, no table scan."""
    compiled = _execute._fast(statement, team.engine.dialect)
    values = {"b_tenant_id": "t1", "b_id": "g1", "b_ids": ["m001"], "b_rows": "[]"}
    parameters = tuple(
        processor(values[key]) if processor else values[key] for key, processor in compiled.plan
    )
    with team.engine.connect() as connection:
        cursor = connection.connection.cursor()
        plan = [row[3] for row in cursor.execute(f"EXPLAIN QUERY PLAN {compiled.sql}", parameters)]
    assert not any(line.startswith("SCAN") and "VIRTUAL TABLE" not in line for line in plan), plan
    if "UPDATE" in compiled.sql:
        assert any("SEARCH members" in line and "(tenant_id=? AND id=?)" in line for line in plan)


def test_a_group_push_reads_and_writes_its_members_on_the_hot_path(
    team: SqlStorage, core_statements: list[str]
) -> None:
    """Memberships added, checked and read for 1 or 300 ids never go through Core's compiler."""
    ids = [f"m{i:03d}" for i in range(300)]
    with team.transaction() as tx:
        core_statements.clear()
        assert tx.add_memberships("t1", "g1", ids[:2]) == ids[:2]
        assert tx.add_memberships("t1", "g1", ids) == ids[2:]
        assert tx.existing_member_ids("t1", [*ids[:150], "ghost"]) == set(ids[:150])
        assert [m.id for m in tx.get_members("t1", [*ids[100:], "ghost"])] == ids[100:]
        members_of = tx.group_members("t1", ["g1", "g2"])
        assert [ref.id for ref in members_of["g1"]] == ids
        assert members_of["g2"] == []
        groups_of = tx.member_groups("t1", ids[:3])
        assert {key: [ref.id for ref in refs] for key, refs in groups_of.items()} == {
            "m000": ["g1"],
            "m001": ["g1"],
            "m002": ["g1"],
        }
        assert tx.remove_memberships("t1", "g1", [*ids[:200], "ghost"]) == 200
        assert [ref.id for ref in tx.group_members("t1", ["g1"])["g1"]] == ids[200:]
        # One statement per add needs no savepoint on SQLite: nothing went through Core.
        assert core_statements == []


def test_ids_with_quotes_and_non_ascii_are_matched_exactly(sqlite_storage: SqlStorage) -> None:
    """A list bound as JSON keeps every id as given: quotes, backslashes, non-ASCII."""
    ids = ['quo"te', "back\\slash", "ünï", "it's"]
    with sqlite_storage.transaction() as tx:
        tx.add_tenant(make_tenant())
        tx.add_members([make_member(i, f"u{n}@x.com") for n, i in enumerate(ids)])
        assert tx.existing_member_ids("t1", [*ids, "uni"]) == set(ids)
        assert [m.id for m in tx.get_members("t1", ids)] == sorted(ids)
        tx.add_group(make_group("g1", "Engineering"))
        assert tx.add_memberships("t1", "g1", [*ids[:2], "it's"]) == sorted([*ids[:2], "it's"])
        assert tx.add_memberships("t1", "g1", ids) == sorted(ids[2:3])
        assert [ref.id for ref in tx.group_members("t1", ["g1"])["g1"]] == sorted(ids)


def test_the_postgresql_form_compares_with_one_array_parameter() -> None:
    """On PostgreSQL the list is one text array (``= ANY``), not a parameter per id."""
    dialect = sqlalchemy.create_engine("postgresql+psycopg://u@h/db").dialect
    compiled = _execute._fast(_statements._GET_MEMBERS, dialect)
    assert "= ANY(CAST(%(b_ids)s" in compiled.sql
    processors = dict(compiled.plan)
    assert processors["b_ids"] is None or processors["b_ids"](["a", "b"]) == ["a", "b"]
