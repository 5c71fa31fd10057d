"""What a new role policy would change, worked out before it is saved.

:func:`preview_policy` decides every SCIM-managed member's role again under
the proposed policy, with the very code that applying it runs
(:meth:`LifecycleWork.redecisions <pbidentity._lifecycle.LifecycleWork.redecisions>`),
in a read-only transaction, reading the members a batch at a time: memory
stays bounded (a count per change and a few examples each) whatever the
workspace's size. :meth:`pbidentity.admin.Admin.preview_policy` is the door
the portal, the command line and host apps use.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Sequence

import attrs

from pbidentity._clock import Clock
from pbidentity._clock import IdFactory
from pbidentity._lifecycle import LifecycleWork
from pbidentity._lifecycle import last_admin_refusal
from pbidentity._lifecycle import members_of
from pbidentity.domain import Member
from pbidentity.domain import RoleSource
from pbidentity.domain import Tenant
from pbidentity.policy import TenantPolicy
from pbidentity.roles import RoleSet
from pbidentity.storage import Transaction

__all__ = ["PolicyPreview", "RoleChange", "RoleChangeExample", "preview_policy"]

#: Members read and decided per batch.
PREVIEW_BATCH = 1000


@attrs.frozen(kw_only=True)
class RoleChangeExample:
    """One member a change applies to, with the rule that decides its new role."""

    member_id: str
    user_name: str
    name: str
    #: The rule that decided the role it has now.
    rule_before: str | None
    #: The rule that would decide its new role (the decision trail's ``role_rule``).
    rule: str
    source: RoleSource


@attrs.frozen(kw_only=True)
class RoleChange:
    """Members who would go from one role to another (``old`` is ``None`` for no role yet)."""

    old: str | None
    new: str
    count: int
    #: The first few of them, in member id order.
    examples: tuple[RoleChangeExample, ...]


@attrs.frozen(kw_only=True)
class PolicyPreview:
    """The effect of saving ``policy`` on a workspace's members, computed without writing."""

    workspace: str
    #: The proposed policy, role names in the app's spelling.
    policy: TenantPolicy
    #: The fingerprint of the policy it would replace: give it back to
    #: ``Admin.set_policy(expected=...)`` so that a change made meanwhile is refused.
    current_fingerprint: str
    #: SCIM-managed members whose role was decided again (the others keep the app's role).
    members_decided: int
    #: One entry per (old, new) role pair, the most frequent first.
    changes: tuple[RoleChange, ...]
    #: Members whose role stays but would be decided by another rule.
    rule_changes: int
    #: Members with that role decided by another rule, a few examples.
    rule_examples: tuple[RoleChangeExample, ...]
    #: Active members with the most privileged role, now and after applying.
    admins_before: int
    admins_after: int
    #: Why applying would be refused (the admin guard), or ``None``.
    refusal: str | None

    @property
    def role_changes(self) -> int:
        """How many members would change role."""
        return sum(change.count for change in self.changes)

    @property
    def unchanged(self) -> bool:
        """Whether applying the policy would change no member at all."""
        return not self.changes and not self.rule_changes


def preview_policy(
    tx: Transaction,
    tenant: Tenant,
    policy: TenantPolicy,
    *,
    roles: RoleSet,
    clock: Clock,
    new_id: IdFactory,
    examples: int = 3,
) -> PolicyPreview:
    """Decide every member's role under ``policy`` (already checked) and count what would move.

    ``tx`` may be read-only: nothing is written. ``examples`` bounds the
    members kept per change.
    """
    work = LifecycleWork(tx, tenant, policy, roles, "preview", clock, new_id)
    admin = roles.most_privileged
    admins_before = tx.count_active_members(tenant.id, admin)
    admins_after = admins_before
    lost_admin = False
    counts: dict[tuple[str | None, str], int] = {}
    shown: dict[tuple[str | None, str], list[RoleChangeExample]] = {}
    rule_changes = 0
    rule_examples: list[RoleChangeExample] = []
    decided = 0
    for batch in _batches(members_of(tx, tenant.id, batch=PREVIEW_BATCH)):
        decided += sum(1 for member in batch if member.scim_managed)
        for before, after in work.redecisions(batch):
            assert after.role is not None  # noqa: S101 - a decision always gives a role
            example = RoleChangeExample(
                member_id=before.id,
                user_name=before.user_name,
                name=before.display_name or before.user_name,
                rule_before=before.role_rule,
                rule=str(after.role_rule),
                source=after.role_source or "default",
            )
            if before.role == after.role:
                rule_changes += 1
                if len(rule_examples) < examples:
                    rule_examples.append(example)
                continue
            pair = (before.role, after.role)
            counts[pair] = counts.get(pair, 0) + 1
            kept = shown.setdefault(pair, [])
            if len(kept) < examples:
                kept.append(example)
            # The admin guard counts active members only, as LifecycleWork.finish does.
            if before.active and before.role == admin:
                admins_after -= 1
                lost_admin = True
            elif after.active and after.role == admin:
                admins_after += 1
    refusal = (
        last_admin_refusal(tenant, admin)
        if policy.roles.admin_guard and lost_admin and admins_after == 0
        else None
    )
    changes = tuple(
        RoleChange(old=old, new=new, count=count, examples=tuple(shown[old, new]))
        for (old, new), count in sorted(
            counts.items(), key=lambda item: (-item[1], item[0][0] or "", item[0][1])
        )
    )
    return PolicyPreview(
        workspace=tenant.slug,
        policy=policy,
        current_fingerprint=TenantPolicy.of(tenant).fingerprint,
        members_decided=decided,
        changes=changes,
        rule_changes=rule_changes,
        rule_examples=tuple(rule_examples),
        admins_before=admins_before,
        admins_after=admins_after,
        refusal=refusal,
    )


def _batches(members: Iterator[Member]) -> Iterator[Sequence[Member]]:
    batch: list[Member] = []
    for member in members:
        batch.append(member)
        if len(batch) == PREVIEW_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
