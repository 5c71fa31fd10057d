"""Roles decided in bulk are the roles decided one member at a time, with the same events.

A group change or a new policy re-decides many members at once
(``LifecycleWork.redecide_members``: one read of their groups, one pass, one
write). The reference is the one-by-one path every other change takes
(``LifecycleWork.save`` with ``redecide``, which reads each member's groups
itself): on a seeded workload of mixed mappings (by id and by name, with
priorities and ties), personal roles (the role attribute, core ``roles``),
members the app manages and the admin guard, both must leave the same members
and write the same events, or refuse with the same error, on every backend
(memory, SQLite, SQLite through Core, PostgreSQL).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import pytest

from pbidentity._lifecycle import LifecycleWork
from pbidentity.domain import Event
from pbidentity.domain import Group
from pbidentity.domain import Member
from pbidentity.domain import RoleSource
from pbidentity.domain import Tenant
from pbidentity.exceptions import LastAdminError
from pbidentity.policy import TenantPolicy
from pbidentity.roles import GroupMapping
from pbidentity.roles import RoleMode
from pbidentity.roles import RolePolicy
from pbidentity.roles import RoleSet
from pbidentity.storage import Storage
from pbidentity.storage import Transaction
from tests.storage.conftest import BACKENDS
from tests.storage.conftest import open_backend

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ROLES = RoleSet()
GROUPS = ["g-eng", "g-ops", "g-all", "g-sales", "g-none"]
MEMBERS = 60


def mappings(rng: random.Random) -> tuple[GroupMapping, ...]:
    """Mappings by id and by name (any case), with priorities that tie and that differ."""
    found = [
        GroupMapping(role="maker", group_name="G-ENG", priority=1),
        GroupMapping(role="admin", group_id="g-ops", priority=rng.choice((1, 2))),
        GroupMapping(role="contributor", group_name="g-all", priority=1),
        GroupMapping(role="viewer", group_id="g-sales", priority=rng.choice((0, 1, 3))),
        GroupMapping(role="maker", group_name="g-sales", priority=1),
    ]
    rng.shuffle(found)
    return tuple(found)


def seed(storage: Storage, rng: random.Random, policy: TenantPolicy) -> list[str]:
    """The tenant, its groups, and members with every kind of role and membership."""
    tenant = Tenant(id="t1", slug="acme", name="Acme", created=NOW, settings=policy.settings())
    sources: list[RoleSource | None] = ["app", "kept", "default", "group", "attribute", None]
    with storage.transaction() as tx:
        tx.add_tenant(tenant)
        for name in GROUPS:
            tx.add_group(
                Group(
                    tenant_id="t1",
                    id=name,
                    attributes={"displayName": name},
                    created=NOW,
                    last_modified=NOW,
                )
            )
        ids = []
        for i in range(MEMBERS):
            attributes: dict[str, Any] = {"userName": f"u{i:03d}@example.com"}
            if rng.random() < 0.2:
                attributes["roles"] = [
                    {
                        "value": rng.choice(("maker", "Viewer", "nobody")),
                        "primary": rng.random() < 0.5,
                    }
                    for _ in range(rng.randint(1, 2))
                ]
            source = rng.choice(sources)
            member = Member(
                tenant_id="t1",
                id=f"m{i:03d}",
                attributes=attributes,
                role_attribute=rng.choice((None, None, None, "Admin", "contributor", "unknown")),
                role=None if source is None else rng.choice(ROLES.names),
                role_source=source,
                role_rule=None if source is None else "as it was",
                scim_managed=rng.random() < 0.85,
                version=rng.randint(1, 4),
                created=NOW,
                last_modified=NOW,
            )
            tx.add_member(member)
            ids.append(member.id)
        for name in GROUPS:
            tx.add_memberships("t1", name, [m for m in ids if rng.random() < 0.3])
    return ids


def counter() -> Callable[[], str]:
    """Event ids in the order they are asked for."""
    numbers = itertools.count(1)
    return lambda: f"e{next(numbers):04d}"


def lifecycle(tx: Transaction) -> LifecycleWork:
    """The unit of work on tenant t1, with a fixed clock and counted ids."""
    tenant = tx.get_tenant("t1")
    assert tenant is not None
    return LifecycleWork.open(
        tx, tenant, roles=ROLES, actor="test", clock=lambda: NOW, new_id=counter()
    )


def one_by_one(tx: Transaction, ids: list[str]) -> list[Event]:
    """The reference: each member saved on its own, reading its own groups."""
    work = lifecycle(tx)
    for member in tx.get_members("t1", ids):
        if member.scim_managed:
            work.save(member, member, redecide=True)
    return work.finish()


def in_bulk(tx: Transaction, ids: list[str]) -> list[Event]:
    """The bulk path a group change and a new policy take."""
    work = lifecycle(tx)
    work.redecide(ids)
    return work.finish()


Outcome = tuple[list[Member], list[tuple[Any, ...]]] | str


def outcome(storage: Storage, ids: list[str], path: Callable[..., list[Event]]) -> Outcome:
    """The members and events a path leaves (events as stored), or the error it refused with."""
    try:
        with storage.transaction() as tx:
            path(tx, ids)
    except LastAdminError as error:
        return f"refused: {error}"
    with storage.transaction(write=False) as tx:
        members = list(tx.get_members("t1", ids))
        events = [
            (e.id, e.type, e.subject_id, e.actor, e.occurred, dict(e.data))
            for e in tx.list_events("t1", limit=10_000)
        ]
    return members, events


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Storage]]:
    """Fresh empty storages of one backend (on PostgreSQL, each one empties the database)."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else ""
    opened: list[Storage] = []

    def open_one() -> Storage:
        directory = tmp_path / f"db{len(opened)}"
        directory.mkdir()
        storage = open_backend(request.param, directory, url)
        opened.append(storage)
        return storage

    yield open_one
    for storage in opened:
        storage.close()


MODES: list[RoleMode] = ["hybrid", "group-based", "user-personal"]


@pytest.mark.parametrize("case", range(12))
def test_bulk_decisions_and_events_are_the_one_by_one_ones(
    backend: Callable[[], Storage], case: int
) -> None:
    """Every seeded policy and workload: same members, same events, or the same refusal."""
    rng = random.Random(case)
    policy = TenantPolicy(
        roles=RolePolicy(
            mode=MODES[case % 3],
            mappings=mappings(rng),
            default_role=rng.choice((None, "contributor")),
            prefer_less_privileged=case % 2 == 1,
            admin_guard=case % 4 < 2,
        )
    ).check(ROLES)
    results = []
    for path in (one_by_one, in_bulk):
        storage = backend()
        ids = seed(storage, random.Random(case), policy)
        results.append(outcome(storage, ids, path))
    reference, bulk = results
    assert bulk == reference
    if not isinstance(reference, str):
        members, events = reference
        # The workload is not trivial: roles move, by group and otherwise.
        assert any(e[1] == "member.role_changed" for e in events)
        if policy.roles.mode != "user-personal":
            assert any(m.role_source == "group" for m in members)


def test_the_admin_guard_refuses_a_bulk_change_as_it_does_one_by_one(
    backend: Callable[[], Storage],
) -> None:
    """The last admin losing the role through a group change is refused whichever the path."""
    policy = TenantPolicy(
        roles=RolePolicy(
            mappings=(GroupMapping(role="viewer", group_id="g-all"),), admin_guard=True
        )
    ).check(ROLES)
    results = []
    for path in (one_by_one, in_bulk):
        storage = backend()
        ids = seed(storage, random.Random(0), policy)
        with storage.transaction() as tx:
            for member in tx.get_members("t1", ids):
                demoted = attrs.evolve(
                    member,
                    role="viewer" if member.id != ids[0] else "admin",
                    role_source="group",
                    role_attribute=None,
                    attributes={"userName": member.user_name},
                    scim_managed=True,
                    version=member.version + 1,
                )
                tx.replace_member(demoted, expected_version=member.version)
            tx.add_memberships("t1", "g-all", ids)
        results.append(outcome(storage, ids, path))
    assert results[0] == results[1]
    assert isinstance(results[0], str)
    assert "without an active admin" in results[0]
