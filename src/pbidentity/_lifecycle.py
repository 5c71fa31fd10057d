"""The member lifecycle inside one transaction: roles decided, admins guarded, events written.

Every change to members and groups, whether it comes from a SCIM request, the
host app or ``pbidentity link``, goes through a :class:`LifecycleWork` bound to the
open transaction, so that the same rules hold whatever the door:

* a SCIM-managed member's role is decided by the tenant's role policy each
  time what it depends on changes (the member's own values, or the
  membership, name or mapping of a group);
* linking an identity to a member never guesses (:mod:`pbidentity.linking`),
  and never links a member whose userName only looks like the identity's;
* an email or externalId that is another member's is refused;
* the admin guard refuses a change that leaves the tenant without an active
  admin;
* every change is recorded as an :class:`~pbidentity.domain.Event` in the
  same transaction (the outbox and audit trail), flushed by :meth:`LifecycleWork.finish`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs

from pbidentity._clock import Clock
from pbidentity._clock import IdFactory
from pbidentity.domain import Event
from pbidentity.domain import Group
from pbidentity.domain import Member
from pbidentity.domain import MemberRef
from pbidentity.domain import RoleDecision
from pbidentity.domain import Tenant
from pbidentity.domain import group_snapshot
from pbidentity.domain import member_snapshot
from pbidentity.exceptions import ConflictError
from pbidentity.exceptions import LastAdminError
from pbidentity.exceptions import LinkConflictError
from pbidentity.exceptions import NotFoundError
from pbidentity.identity import explain_lookalike
from pbidentity.linking import Identity
from pbidentity.linking import LinkPolicy
from pbidentity.linking import LinkStep
from pbidentity.linking import plan_links
from pbidentity.policy import TenantPolicy
from pbidentity.query import USER_FIELDS
from pbidentity.query import And
from pbidentity.query import Comparison
from pbidentity.query import Filter
from pbidentity.query import Or
from pbidentity.query import Query
from pbidentity.query import ValueFilter
from pbidentity.roles import RoleSet
from pbidentity.storage import Transaction

__all__ = [
    "LifecycleWork",
    "identity_of",
    "last_admin_refusal",
    "members_of",
    "tenant_by_slug",
]

log = logging.getLogger("pbidentity.members")

# A lookup for link candidates never needs more: more than one is a conflict.
_CANDIDATES = 20


@attrs.define
class LifecycleWork:
    """The member lifecycle's unit of work: one actor's changes to one tenant in one transaction."""

    tx: Transaction
    tenant: Tenant
    policy: TenantPolicy
    roles: RoleSet
    actor: str
    clock: Clock
    new_id: IdFactory
    #: Off for the host app's own edits while SCIM is off: the role the app
    #: gives then is not re-decided from the IdP's last values.
    decide_roles: bool = True
    _events: list[Event] = attrs.field(factory=list, init=False)
    _admin_lost: bool = attrs.field(default=False, init=False)
    #: The members the last candidates read found for an email (all of them:
    #: fewer than the limit), until the next write of this unit: a create
    #: (or link) right after it need not read them again.
    _email_owners: dict[str, Sequence[Member]] = attrs.field(factory=dict, init=False)

    @classmethod
    def open(
        cls,
        tx: Transaction,
        tenant: Tenant,
        *,
        roles: RoleSet,
        actor: str,
        clock: Clock,
        new_id: IdFactory,
    ) -> LifecycleWork:
        """The unit of work on ``tenant``, under the tenant's own policy."""
        return cls(tx, tenant, TenantPolicy.of(tenant), roles, actor, clock, new_id)

    # -- members -------------------------------------------------------------

    def decided(
        self,
        member: Member,
        *,
        before: Member | None,
        groups: Sequence[MemberRef] | None = None,
        again: bool = False,
    ) -> Member:
        """The member with its role decided by the policy (SCIM-managed members only).

        A member the host app manages keeps the role the app gave it. When
        nothing the decision reads has changed (the role attribute, core
        ``roles``, being SCIM-managed) the decision stands, unless ``again``
        (its groups or the policy changed).
        """
        if not (member.scim_managed and self.decide_roles):
            return member
        if (
            not again
            and before is not None
            and before.role is not None
            and before.scim_managed
            and member.role_attribute == before.role_attribute
            and member.attributes.get("roles") == before.attributes.get("roles")
        ):
            return attrs.evolve(
                member, role=before.role, role_source=before.role_source, role_rule=before.role_rule
            )
        if groups is None:
            groups = (
                self.tx.member_groups(self.tenant.id, [member.id])[member.id]
                if self.policy.roles.uses_groups and before is not None
                else ()
            )
        decision = self.policy.roles.decide(
            self.roles,
            attribute=member.role_attribute,
            core_roles=member.attributes.get("roles"),
            groups=groups,
            current=before.decision if before is not None else None,
        )
        return attrs.evolve(
            member, role=decision.role, role_source=decision.source, role_rule=decision.rule
        )

    def create(self, member: Member) -> Member:
        """Insert a new member (role decided); ``ConflictError`` if its userName is taken."""
        member = self.decided(member, before=None)
        try:
            self.tx.add_member(member)
        except ConflictError as error:
            raise self._taken(error, member) from None
        # After the insert, so that a taken userName (the database's own
        # check) is what a client hears about first.
        self._check_unique_keys(member, None)
        self._email_owners.clear()  # read before this write
        self._record(
            "member.created",
            member.id,
            userName=member.user_name,
            externalId=member.external_id,
            role=member.role,
            rule=member.role_rule,
            scimManaged=member.scim_managed,
            member=member_snapshot(member),
        )
        return member

    def save(
        self,
        current: Member,
        updated: Member,
        *,
        matched_by: str | None = None,
        redecide: bool = False,
        groups: Sequence[MemberRef] | None = None,
    ) -> Member:
        """Write ``updated`` over ``current`` (its role decided) and record what changed.

        Returns ``current`` itself when nothing changed, so that its version
        (and ETag) stays. ``matched_by`` says how a link found the member;
        ``redecide`` decides the role even if the member's own values did not
        change (its groups or the policy did); ``groups`` are the member's
        groups when the caller has read them already.
        """
        updated = self.decided(updated, before=current, again=redecide, groups=groups)
        if _same(current, updated):
            return current
        if updated.scim_managed and not current.scim_managed:
            self._check_lookalike_link(current, updated)
        updated = attrs.evolve(updated, version=current.version + 1, last_modified=self.clock())
        try:
            self.tx.replace_member(updated, expected_version=current.version, previous=current)
        except ConflictError as error:
            raise self._taken(error, updated) from None
        self._check_unique_keys(updated, current)
        self._email_owners.clear()  # read before this write
        self._record_saved(current, updated, matched_by)
        return updated

    def _record_saved(self, current: Member, updated: Member, matched_by: str | None) -> None:
        """Record the events of a member written over ``current``, and note a lost admin."""
        # The member as this change left it, for the events a host app syncs
        # from; not for a role re-decided alone (a group's members, in bulk).
        snapshot = member_snapshot(updated) if not _same_profile(current, updated) else None
        if updated.scim_managed and not current.scim_managed:
            self._record(
                "member.linked",
                updated.id,
                userName=updated.user_name,
                externalId=updated.external_id,
                matchedBy=matched_by,
                member=snapshot,
            )
        changed = (
            []
            if updated.attributes is current.attributes  # a role decided again
            else sorted(
                key
                for key in updated.attributes.keys() | current.attributes.keys()
                if key != "active" and updated.attributes.get(key) != current.attributes.get(key)
            )
        )
        if updated.role_attribute != current.role_attribute:
            changed.append("role")
        if changed:
            self._record("member.updated", updated.id, changed=changed, member=snapshot)
        if current.active and not updated.active:
            self._record(
                "member.deactivated", updated.id, userName=updated.user_name, member=snapshot
            )
        elif updated.active and not current.active:
            self._record(
                "member.reactivated", updated.id, userName=updated.user_name, member=snapshot
            )
        if updated.role != current.role:
            log.info(
                "role of member %s in %s: %s -> %s (%s; by %s)",
                updated.id,
                self.tenant.slug,
                current.role,
                updated.role,
                updated.role_rule,
                self.actor,
            )
            self._record(
                "member.role_changed",
                updated.id,
                old=current.role,
                new=updated.role,
                source=updated.role_source,
                rule=updated.role_rule,
            )
        self._note_admin_change(current, updated)

    def delete(self, member: Member) -> Member | None:
        """Deprovision a member as the policy says; returns it when it was only deactivated."""
        if self.policy.on_delete == "deactivate":
            attributes = {**member.attributes, "active": False}
            return self.save(member, attrs.evolve(member, attributes=attributes))
        groups = self.tx.member_groups(self.tenant.id, [member.id])[member.id]
        self.tx.delete_member(self.tenant.id, member.id)
        self._email_owners.clear()  # read before this write
        for ref in groups:
            # The groups lost a member: their version (ETag) and lastModified
            # move, or a conditional GET would answer 304 with stale members.
            group = self.tx.get_group(self.tenant.id, ref.id)
            if group is not None:
                moved = attrs.evolve(group, version=group.version + 1, last_modified=self.clock())
                self.tx.replace_group(moved, expected_version=group.version)
        self._record(
            "member.deleted",
            member.id,
            userName=member.user_name,
            externalId=member.external_id,
            groups=[g.id for g in groups],
            member=member_snapshot(member),
        )
        self._note_admin_change(member, None)
        return None

    def link_step(self, identity: Identity, *, exclude: str | None = None) -> LinkStep:
        """How an identity arriving now would link to the tenant's members."""
        candidates = [
            m
            for m in self._candidates(identity, self.policy.linking)
            if exclude is None or m.id != exclude
        ]
        (step,) = plan_links([identity], candidates, self.policy.linking).steps
        return step

    def redecide(self, member_ids: Collection[str]) -> None:
        """Decide again the role of these members (their groups or the policy changed)."""
        self.redecide_members(self.tx.get_members(self.tenant.id, member_ids))

    def redecide_members(self, members: Sequence[Member]) -> None:
        """Decide again the role of these members, as read in this unit, in bulk.

        A group change re-decides every member it adds or removes, and a new
        policy every member of the tenant: their groups are read in one
        statement, each distinct decision made once, the members whose role
        moved written together, and their events recorded as :meth:`save`
        records them, member by member in the same order. Only the role
        changes, so none of the checks of a member's own values (unique
        keys, look-alike links) applies, and the only event is
        ``member.role_changed`` (for a member whose role, not only its rule,
        moved).
        """
        now = self.clock()
        moved = self._redecided(members, stamp=now)
        if not moved:
            return
        self.tx.replace_members([(updated, current.version) for current, updated in moved])
        admin = self.roles.most_privileged
        logged = log.isEnabledFor(logging.INFO)
        for current, updated in moved:
            # What _record_saved records for a change of the role alone.
            if updated.role != current.role:
                if logged:
                    log.info(
                        "role of member %s in %s: %s -> %s (%s; by %s)",
                        updated.id,
                        self.tenant.slug,
                        current.role,
                        updated.role,
                        updated.role_rule,
                        self.actor,
                    )
                data = {
                    "new": updated.role,
                    "source": updated.role_source,
                    "rule": updated.role_rule,
                }
                self._events.append(
                    Event(
                        id=self.new_id(),
                        tenant_id=self.tenant.id,
                        type="member.role_changed",
                        subject_id=updated.id,
                        actor=self.actor,
                        occurred=now,
                        data=data if current.role is None else {"old": current.role, **data},
                    )
                )
                if current.active and current.role == admin:
                    self._admin_lost = True

    def redecisions(self, members: Sequence[Member]) -> list[tuple[Member, Member]]:
        """The members whose role the policy now decides otherwise, each with its new decision.

        It only reads (the members' groups, in one statement): a preview of a
        policy runs it in a read-only transaction, and :meth:`redecide_members`
        writes what it returns, so that what a preview shows is what applying does.
        """
        return self._redecided(members, stamp=None)

    def _redecided(
        self, members: Sequence[Member], *, stamp: datetime | None
    ) -> list[tuple[Member, Member]]:
        """The members whose decision moves, each with it (and, with ``stamp``, a new version).

        A decision reads the member's mapped groups, its own values and its
        current decision, nothing else: members alike in these (the hundred
        members a group push adds, a whole department under a new policy)
        get the same decision, made once and shared (it is immutable).
        """
        managed = [m for m in members if m.scim_managed]
        if not managed or not self.decide_roles:
            return []
        policy = self.policy.roles
        groups_of: Mapping[str, Sequence[MemberRef]] = (
            self.tx.member_groups(self.tenant.id, [m.id for m in managed])
            if policy.uses_groups
            else {}
        )
        # A group no mapping names never decides (RolePolicy._by_group skips
        # it); keys are plain tuples, cheaper to hash than the attrs values.
        is_mapped: dict[tuple[str, str | None], bool] = {}
        decisions: dict[tuple[Any, ...], RoleDecision] = {}
        moved: list[tuple[Member, Member]] = []
        for member in managed:
            mapped: list[MemberRef] = []
            for group in groups_of.get(member.id, ()):
                ref = (group.id, group.display)
                known = is_mapped.get(ref)
                if known is None:
                    known = is_mapped[ref] = bool(policy.mappings_of(group))
                if known:
                    mapped.append(group)
            core_roles = member.attributes.get("roles")
            # Core roles are lists of mappings (unhashable) and rare: decided alone.
            key = (
                None
                if core_roles
                else (
                    *[(g.id, g.display) for g in mapped],
                    member.role_attribute,
                    member.role,
                    member.role_source,
                    member.role_rule,
                )
            )
            decision = None if key is None else decisions.get(key)
            if decision is None:
                decision = policy.decide(
                    self.roles,
                    attribute=member.role_attribute,
                    core_roles=core_roles,
                    groups=mapped,
                    current=member.decision,
                )
                if key is not None:
                    decisions[key] = decision
            if (decision.role, decision.source, decision.rule) == (
                member.role,
                member.role_source,
                member.role_rule,
            ):
                continue
            decided = (
                attrs.evolve(
                    member, role=decision.role, role_source=decision.source, role_rule=decision.rule
                )
                if stamp is None
                else attrs.evolve(
                    member,
                    role=decision.role,
                    role_source=decision.source,
                    role_rule=decision.rule,
                    version=member.version + 1,
                    last_modified=stamp,
                )
            )
            moved.append((member, decided))
        return moved

    def policy_changed(self, before: TenantPolicy) -> None:
        """Record that the tenant's policy became this unit's (its members are re-decided next)."""
        self._record(
            "policy.changed",
            self.tenant.id,
            old=before.fingerprint,
            new=self.policy.fingerprint,
            policy=self.policy.settings(),
        )

    # -- groups --------------------------------------------------------------

    def group_created(self, group: Group, member_ids: Collection[str]) -> None:
        """Record a new group; its members' roles follow if it is mapped."""
        self._record(
            "group.created",
            group.id,
            displayName=group.display_name,
            members=sorted(member_ids),
            group=group_snapshot(group),
        )
        if member_ids and self._mapped(group):
            self.redecide(member_ids)

    def group_changed(
        self,
        before: Group,
        after: Group,
        *,
        added: Collection[str] = (),
        removed: Collection[str] = (),
    ) -> None:
        """Record a rename and membership changes; re-decide the roles they affect."""
        renamed = before.display_name != after.display_name
        if renamed:
            self._record(
                "group.renamed",
                after.id,
                old=before.display_name,
                new=after.display_name,
                group=group_snapshot(after),
            )
        if added or removed:
            self._record(
                "group.members_changed",
                after.id,
                displayName=after.display_name,
                added=sorted(added),
                removed=sorted(removed),
                group=group_snapshot(after),
            )
        if renamed and (self._mapped(before) or self._mapped(after)):
            # A rename can move every member in or out of a mapping by name.
            current = self.tx.group_members(self.tenant.id, [after.id])[after.id]
            self.redecide({ref.id for ref in current} | set(removed))
        elif (added or removed) and self._mapped(after):
            self.redecide(set(added) | set(removed))

    def group_deleted(self, group: Group, member_ids: Collection[str]) -> None:
        """Record a deleted group (its memberships went with it); re-decide if it was mapped."""
        self._record(
            "group.deleted",
            group.id,
            displayName=group.display_name,
            members=sorted(member_ids),
            group=group_snapshot(group),
        )
        if member_ids and self._mapped(group):
            self.redecide(member_ids)

    # -- the end of the unit ---------------------------------------------------

    def finish(self) -> list[Event]:
        """Check the admin guard and write the events; call last, inside the transaction."""
        if self._admin_lost and self.policy.roles.admin_guard:
            admin = self.roles.most_privileged
            if self.tx.count_active_members(self.tenant.id, admin) == 0:
                raise LastAdminError(last_admin_refusal(self.tenant, admin))
        events, self._events = self._events, []
        # The unit's last write: PostgreSQL sends them with the COMMIT.
        self.tx.add_events(events, last=True)
        return events

    # -- internals -------------------------------------------------------------

    def _record(self, event_type: str, subject_id: str, **data: Any) -> None:
        self._events.append(
            Event(
                id=self.new_id(),
                tenant_id=self.tenant.id,
                type=event_type,
                subject_id=subject_id,
                actor=self.actor,
                occurred=self.clock(),
                data={key: value for key, value in data.items() if value is not None},
            )
        )

    def _note_admin_change(self, before: Member, after: Member | None) -> None:
        admin = self.roles.most_privileged
        was = before.active and before.role == admin
        still = after is not None and after.active and after.role == admin
        if was and not still:
            self._admin_lost = True

    def _mapped(self, group: Group) -> bool:
        return self.policy.roles.maps_any([MemberRef(id=group.id, display=group.display_name)])

    def _taken(self, error: ConflictError, member: Member) -> Exception:
        """A taken externalId, named with the member that has it; other conflicts as they are."""
        if error.attribute != "externalId" or member.external_id is None:
            return error
        field = USER_FIELDS["externalid"]
        owners = list(self._query(Comparison(field, "eq", member.external_id)))
        owner = f"member {owners[0].id} ({owners[0].user_name})" if owners else "another member"
        return LinkConflictError(
            f"externalId {member.external_id!r} is already linked to {owner}; nothing was changed"
        )

    def _check_lookalike_link(self, current: Member, updated: Member) -> None:
        """Refuse to link a member to an identity whose userName only looks like the member's.

        An IdP finds the member to link through a ``userName eq`` filter,
        which compares with the lossy fold, and its first update links what
        it found: ``ceo@straße.test`` would take over ``ceo@strasse.test``.
        """
        policy = self.policy.linking
        ours, theirs = updated.user_name, current.user_name
        if policy.normalise(ours) == policy.normalise(theirs) and policy.exact(
            ours
        ) != policy.exact(theirs):
            raise LinkConflictError(
                f"userName {ours!r} only looks like the userName {theirs!r} of member "
                f"{current.id} ({explain_lookalike(ours, theirs)}); different addresses may "
                "belong to different people, so the member is not linked to this identity and "
                "nothing was changed. If it is the same person, spell the address the same in "
                "the identity provider and the app"
            )

    def _check_unique_keys(self, member: Member, current: Member | None) -> None:
        """Refuse a primary email that another member of the tenant has.

        It is a matching key of the linker, so a duplicate would make the
        next link ambiguous; only checked when it changes. (userName and
        externalId are unique by the database's own indexes.)
        """
        if current is not None and current.attributes.get("emails") == member.attributes.get(
            "emails"
        ):
            return  # the common update: emails untouched
        policy = self.policy.linking
        email = member.primary_email
        before = current.primary_email if current is not None else None
        if email is not None and (
            before is None or policy.normalise(before) != policy.normalise(email)
        ):
            key = policy.normalise(email)
            if policy.plus_tags == "keep":
                others = self._email_owners.get(key)
                if others is None:
                    others = self.tx.members_matching(self.tenant.id, email=key, limit=_CANDIDATES)
            else:
                others = self._query(_address_filter("emails", key, policy))
            for other in others:
                other_email = other.primary_email
                if (
                    other.id != member.id
                    and other_email is not None
                    and policy.normalise(other_email) == key
                ):
                    raise LinkConflictError(
                        f"email {email!r} is already the email of member {other.id} "
                        f"({other.user_name}); nothing was changed"
                    )

    def _candidates(self, identity: Identity, policy: LinkPolicy) -> Sequence[Member]:
        if policy.plus_tags == "keep":
            # Every SCIM create asks: indexed lookups, no filter to compile.
            email = (
                None if identity.primary_email is None else policy.normalise(identity.primary_email)
            )
            found = self.tx.members_matching(
                self.tenant.id,
                user_name=policy.normalise(identity.user_name),
                external_id=identity.external_id,
                email=email,
                limit=_CANDIDATES,
            )
            self._email_owners.clear()
            if email is not None and len(found) < _CANDIDATES:
                # Every member with that email is among them (and others).
                self._email_owners[email] = found
            return found
        parts: list[Filter] = [
            _address_filter("userName", policy.normalise(identity.user_name), policy)
        ]
        if identity.external_id is not None:
            parts.append(Comparison(USER_FIELDS["externalid"], "eq", identity.external_id))
        if identity.primary_email is not None:
            parts.append(
                _address_filter("emails", policy.normalise(identity.primary_email), policy)
            )
        found = self._query(_any_of(parts))
        return list(found)

    def _query(self, where: Filter) -> Sequence[Member]:
        query = Query(filter=where, start_index=1, count=_CANDIDATES)
        return self.tx.query_members(self.tenant.id, query).items


def members_of(tx: Transaction, tenant_id: str, *, batch: int = 1000) -> Iterator[Member]:
    """Every member of a tenant, in id order, read by keyset in batches within ``tx``."""
    after: str | None = None
    while found := tx.list_members(tenant_id, after=after, limit=batch):
        yield from found
        after = found[-1].id


def last_admin_refusal(tenant: Tenant, admin: str) -> str:
    """What the admin guard says when it refuses a change (also in a policy's preview)."""
    return (
        f"this change would leave workspace {tenant.slug!r} without an active "
        f"{admin}, so it was refused and nothing changed. Give another member the "
        f"{admin} role first, or switch the admin guard off."
    )


def tenant_by_slug(tx: Transaction, slug: str) -> Tenant:
    """The tenant with that slug; :class:`NotFoundError` saying how to create it."""
    tenant = tx.find_tenant(slug)
    if tenant is None:
        raise NotFoundError(f"no tenant {slug!r}; create it with: pbidentity tenants create {slug}")
    return tenant


def identity_of(document: Mapping[str, Any]) -> Identity:
    """The identity a SCIM User document describes (for matching only)."""
    emails = [e for e in document.get("emails") or () if isinstance(e, Mapping) and e.get("value")]
    emails.sort(key=lambda e: not e.get("primary"))
    external_id = document.get("externalId")
    return Identity(
        user_name=str(document["userName"]),
        external_id=str(external_id) if external_id not in (None, "") else None,
        emails=tuple(str(e["value"]) for e in emails if str(e["value"]).strip()),
        active=bool(document.get("active", True)),
    )


def _address_filter(attribute: str, key: str, policy: LinkPolicy) -> Filter:
    """Members whose userName (or an email) normalises to ``key``.

    Equality is case-insensitive in storage already; with ``+tags`` stripped,
    ``jane@a.com`` must also find ``jane+x@a.com``: a prefix and suffix test
    that the caller narrows with the exact normalised comparison.
    """
    if attribute == "userName":
        field = USER_FIELDS["username"]

        def wrap(inner: Filter) -> Filter:
            return inner
    else:
        field = USER_FIELDS["emails.value"]

        def wrap(inner: Filter) -> Filter:
            return ValueFilter("emails", inner)

    exact: Filter = wrap(Comparison(field, "eq", key))
    local, at, domain = key.rpartition("@")
    if policy.plus_tags != "strip" or not at or not local:
        return exact
    tagged = wrap(And(Comparison(field, "sw", f"{local}+"), Comparison(field, "ew", f"@{domain}")))
    return Or(exact, tagged)


def _any_of(parts: Iterable[Filter]) -> Filter:
    result: Filter | None = None
    for part in parts:
        result = part if result is None else Or(result, part)
    assert result is not None  # noqa: S101 - userName is always one part
    return result


def _same_profile(a: Member, b: Member) -> bool:
    return (a.attributes, a.role_attribute, a.scim_managed) == (
        b.attributes,
        b.role_attribute,
        b.scim_managed,
    )


def _same(a: Member, b: Member) -> bool:
    return (
        a.attributes,
        a.role_attribute,
        a.role,
        a.role_source,
        a.role_rule,
        a.scim_managed,
    ) == (b.attributes, b.role_attribute, b.role, b.role_source, b.role_rule, b.scim_managed)
