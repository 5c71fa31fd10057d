"""A role policy's preview is what applying it then does, and it writes nothing.

``Admin.preview_policy`` decides every member again under the proposed policy,
read-only and a batch at a time; ``Admin.set_policy`` then applies it. On the
seeded workloads of the bulk-roles tests (mixed mappings by id and by name,
priorities and ties, personal roles, members the app manages, the admin
guard), the preview's counts per role change, its examples and rules, and its
refusal must be exactly what applying does.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from pbidentity import preview as preview_module
from pbidentity.admin import Admin
from pbidentity.domain import Member
from pbidentity.exceptions import LastAdminError
from pbidentity.exceptions import PolicyChangedError
from pbidentity.policy import TenantPolicy
from pbidentity.preview import PolicyPreview
from pbidentity.roles import GroupMapping
from pbidentity.roles import RolePolicy
from pbidentity.storage import Storage
from pbidentity.storage.memory import MemoryStorage
from pbidentity.storage.sql import SqlStorage
from tests.conftest import empty_database
from tests.members.test_bulk_roles import MODES
from tests.members.test_bulk_roles import NOW
from tests.members.test_bulk_roles import ROLES
from tests.members.test_bulk_roles import mappings
from tests.members.test_bulk_roles import seed


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """An empty storage of one backend."""
    if request.param == "memory":
        opened: Storage = MemoryStorage()
    else:
        opened = SqlStorage.from_url(next(empty_database(request, tmp_path)))
    yield opened
    opened.close()


def seeded(storage: Storage, case: int, policy: TenantPolicy) -> list[str]:
    """The bulk-roles workload, each member's ``active`` stated as SCIM states it, a few off."""
    ids = seed(storage, random.Random(case), policy)
    rng = random.Random(case)
    with storage.transaction() as tx:
        for member in tx.get_members("t1", ids):
            stated = attrs.evolve(
                member,
                attributes={**member.attributes, "active": rng.random() < 0.9},
                version=member.version + 1,
            )
            tx.replace_member(stated, expected_version=member.version, previous=member)
    return ids


def admin_of(storage: Storage) -> Admin:
    """The operator's API with a fixed clock."""
    return Admin(storage, clock=lambda: NOW, roles=ROLES)


def snapshot(storage: Storage) -> tuple[list[Member], int]:
    """Every member of acme, and how many events it has."""
    with storage.transaction(write=False) as tx:
        members = list(tx.list_members("t1", after=None, limit=10_000))
        return members, len(tx.list_events("t1", limit=10_000))


def proposed(case: int) -> TenantPolicy:
    """A new policy unlike the seeded one: another mode, mappings, default and tie rule."""
    rng = random.Random(1000 + case)
    return TenantPolicy(
        roles=RolePolicy(
            mode=MODES[(case + 1) % 3],
            mappings=mappings(rng),
            default_role=rng.choice((None, "maker", "Contributor")),
            prefer_less_privileged=case % 3 == 0,
            admin_guard=case % 4 in (0, 3),
        )
    )


def applied(before: list[Member], after: list[Member]) -> dict[tuple[str | None, str], list[str]]:
    """The members whose role applying changed, by (old, new), in id order."""
    old = {m.id: m for m in before}
    moved: dict[tuple[str | None, str], list[str]] = {}
    for member in sorted(after, key=lambda m: m.id):
        was = old[member.id]
        if was.role != member.role:
            assert member.role is not None
            moved.setdefault((was.role, member.role), []).append(member.id)
    return moved


def rules_moved(before: list[Member], after: list[Member]) -> int:
    """Members who kept their role with another deciding rule."""
    old = {m.id: m for m in before}
    return sum(
        1
        for m in after
        if m.role == old[m.id].role
        and (m.role_source, m.role_rule) != (old[m.id].role_source, old[m.id].role_rule)
    )


@pytest.mark.parametrize("case", range(12))
def test_the_preview_is_what_applying_does(storage: Storage, case: int) -> None:
    """Counts per (old, new), examples, rules and the guard's refusal match the applied outcome."""
    seed_policy = TenantPolicy(
        roles=RolePolicy(mode=MODES[case % 3], mappings=mappings(random.Random(case)))
    ).check(ROLES)
    seeded(storage, case, seed_policy)
    admin = admin_of(storage)
    before, events_before = snapshot(storage)

    shown = admin.preview_policy("acme", proposed(case), examples=2)

    assert snapshot(storage) == (before, events_before), "the preview wrote something"
    assert shown.members_decided == sum(1 for m in before if m.scim_managed)
    if shown.refusal is not None:
        with pytest.raises(LastAdminError) as refused:
            admin.set_policy("acme", proposed(case), expected=shown.current_fingerprint)
        assert str(refused.value) == shown.refusal
        assert snapshot(storage) == (before, events_before)
        return
    admin.set_policy("acme", proposed(case), expected=shown.current_fingerprint)
    after, events_after = snapshot(storage)
    moved = applied(before, after)
    assert {(c.old, c.new): c.count for c in shown.changes} == {
        pair: len(ids) for pair, ids in moved.items()
    }
    with storage.transaction(write=False) as tx:
        recorded = [
            e for e in tx.list_events("t1", limit=10_000) if e.type == "member.role_changed"
        ]
        (changed,) = [e for e in tx.list_events("t1", limit=10_000) if e.type == "policy.changed"]
    # One event for the policy, then one per member whose role moved.
    assert shown.role_changes == len(recorded) == events_after - events_before - 1
    assert changed.data["old"] == shown.current_fingerprint
    assert changed.data["new"] == shown.policy.fingerprint
    assert changed.seq is not None
    assert all(changed.seq < e.seq for e in recorded if e.seq is not None)
    decided = {m.id: m for m in after}
    for change in shown.changes:
        assert [e.member_id for e in change.examples] == moved[change.old, change.new][:2]
        for example in change.examples:
            assert example.rule == decided[example.member_id].role_rule
            assert example.source == decided[example.member_id].role_source
    assert shown.rule_changes == rules_moved(before, after)
    admins = sum(1 for m in after if m.active and m.role == "admin")
    assert shown.admins_after == admins
    # The workload is not trivial: roles move.
    assert shown.role_changes > 0


def test_the_preview_reads_in_batches_and_counts_the_same(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read 7 members at a time, the preview is the one read all at once."""
    seeded(storage, 3, TenantPolicy().check(ROLES))
    admin = admin_of(storage)
    whole = admin.preview_policy("acme", proposed(3))
    monkeypatch.setattr(preview_module, "PREVIEW_BATCH", 7)
    assert admin.preview_policy("acme", proposed(3)) == whole


def test_applying_refuses_when_the_policy_changed_since_the_preview(storage: Storage) -> None:
    """Another admin saving a policy in between makes the preview stale: nothing is applied."""
    seeded(storage, 5, TenantPolicy().check(ROLES))
    admin = admin_of(storage)
    shown: PolicyPreview = admin.preview_policy("acme", proposed(5))
    other = TenantPolicy(roles=RolePolicy(default_role="maker"))
    admin.set_policy("acme", other)
    state = snapshot(storage)
    with pytest.raises(PolicyChangedError, match="changed since this preview"):
        admin.set_policy("acme", proposed(5), expected=shown.current_fingerprint)
    assert snapshot(storage) == state
    assert admin.get_policy("acme") == other.check(ROLES)


def test_the_preview_says_when_the_guard_refuses(storage: Storage) -> None:
    """Guard on, all viewers: refused by the preview as by applying, unless one admin stays."""
    ids = seeded(storage, 0, TenantPolicy().check(ROLES))
    with storage.transaction() as tx:
        tx.add_memberships("t1", "g-none", ids)
        for member in tx.get_members("t1", ids):
            if not member.scim_managed:
                app_viewer = attrs.evolve(
                    member, role="viewer", role_source="app", version=member.version + 1
                )
                tx.replace_member(app_viewer, expected_version=member.version, previous=member)
    guard = TenantPolicy(
        roles=RolePolicy(
            mode="group-based",
            mappings=(GroupMapping(role="viewer", group_name="G-NONE", priority=99),),
            admin_guard=True,
        )
    )
    admin = admin_of(storage)
    shown = admin.preview_policy("acme", guard)
    assert shown.admins_before > 0
    assert shown.admins_after == 0
    assert shown.refusal is not None
    assert "without an active admin" in shown.refusal
    unguarded = admin.preview_policy(
        "acme", attrs.evolve(guard, roles=attrs.evolve(guard.roles, admin_guard=False))
    )
    assert (unguarded.admins_after, unguarded.refusal) == (0, None)
    state = snapshot(storage)
    with pytest.raises(LastAdminError) as refused:
        admin.set_policy("acme", guard)
    assert str(refused.value) == shown.refusal
    assert snapshot(storage) == state

    with storage.transaction() as tx:
        (kept,) = [m for m in tx.get_members("t1", ids) if not m.scim_managed and m.active][:1]
        promoted = attrs.evolve(kept, role="admin", version=kept.version + 1)
        tx.replace_member(promoted, expected_version=kept.version, previous=kept)
    shown = admin.preview_policy("acme", guard)
    assert (shown.admins_after, shown.refusal) == (1, None)
    admin.set_policy("acme", guard, expected=shown.current_fingerprint)
    assert sum(1 for m in snapshot(storage)[0] if m.active and m.role == "admin") == 1


def test_an_unknown_role_is_refused_before_anything_is_read(storage: Storage) -> None:
    """A mapping to a role the app does not have is a configuration error, as in set_policy."""
    seeded(storage, 1, TenantPolicy().check(ROLES))
    bad = TenantPolicy(roles=RolePolicy(mappings=(GroupMapping(role="owner", group_id="g-eng"),)))
    with pytest.raises(Exception, match="'owner' is not one of the app's roles"):
        admin_of(storage).preview_policy("acme", bad)
