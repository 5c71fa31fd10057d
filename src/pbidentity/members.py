"""The host app's side of members: its edits, the SCIM-managed guard, linking, the audit trail.

A member the identity provider manages (``scim_managed``) is read-only in the
app for what the IdP owns: its userName, names, emails, role and whether it is
active. The host app calls :meth:`Members.check_edit` before it shows an edit
form or saves one, and :meth:`Members.edit` refuses such a change with a
:class:`~pbidentity.exceptions.ManagedMemberError` that says where to make it.
While SCIM provisioning is switched off for the tenant, everything is editable
again.

Every change made here goes through the same lifecycle as a SCIM request
(role decisions, the admin guard, events in the outbox), with ``actor`` naming
who made it in the audit trail.

The members read here carry the app's role extension URN, so that
``member.profile`` (a typed scim2-models ``User``, see :mod:`pbidentity.models`)
is the document the SCIM endpoint serves; :meth:`Members.group` gives a group
and its members the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any

import attrs

from pbidentity._clock import Clock
from pbidentity._clock import IdFactory
from pbidentity._clock import new_id
from pbidentity._clock import utc_now
from pbidentity._lifecycle import LifecycleWork
from pbidentity._lifecycle import tenant_by_slug
from pbidentity.domain import DEFAULT_ROLE_URN
from pbidentity.domain import Event
from pbidentity.domain import Member
from pbidentity.domain import Tenant
from pbidentity.domain import fold
from pbidentity.exceptions import ConflictError
from pbidentity.exceptions import InputError
from pbidentity.exceptions import LinkConflictError
from pbidentity.exceptions import ManagedMemberError
from pbidentity.exceptions import NotFoundError
from pbidentity.linking import Identity
from pbidentity.linking import LinkPlan
from pbidentity.linking import LinkStep
from pbidentity.linking import plan_links
from pbidentity.policy import TenantPolicy
from pbidentity.roles import RoleSet
from pbidentity.storage import Storage
from pbidentity.storage import Transaction

if TYPE_CHECKING:
    from pbidentity.models import GroupProfile

__all__ = ["IDP_OWNED", "LinkResult", "Members"]

#: What the identity provider owns on a SCIM-managed member.
IDP_OWNED = ("userName", "name", "displayName", "emails", "role", "active")

#: Members read or written per transaction when walking a whole tenant.
_BATCH = 500

Progress = Callable[[int, int], object]


@attrs.frozen(kw_only=True)
class LinkResult:
    """What applying a link plan did."""

    created: int = 0
    linked: int = 0
    reactivated: int = 0
    #: Steps whose work was already done (a second run, or the IdP got there first).
    unchanged: int = 0
    #: Steps not applied, with the reason: the plan's conflicts and any step
    #: the members no longer fit.
    skipped: tuple[tuple[LinkStep, str], ...] = ()

    @property
    def changed(self) -> int:
        """How many members were written."""
        return self.created + self.linked + self.reactivated

    def summary(self) -> str:
        """One line for the end of a run."""
        return (
            f"{self.created} created, {self.linked} linked, {self.reactivated} reactivated, "
            f"{self.unchanged} unchanged, {len(self.skipped)} skipped"
        )


@attrs.frozen
class Members:
    """Read and change a tenant's members from the host app.

    ``role_urn`` is the app's role extension URN (``ScimConfig.role_urn``):
    the profiles of the members read here put the role under it.
    """

    storage: Storage
    roles: RoleSet = attrs.field(factory=RoleSet)
    clock: Clock = utc_now
    new_id: IdFactory = new_id
    role_urn: str = attrs.field(default=DEFAULT_ROLE_URN, kw_only=True)

    @role_urn.validator
    def _check_role_urn(self, _: object, urn: str) -> None:
        if urn == DEFAULT_ROLE_URN:
            return
        # pbidentity.models is imported when used: reading members
        # with the default URN needs no pydantic until a profile is asked for
        # (edits check theirs).
        from pbidentity.models import role_extension

        role_extension(urn)  # a ConfigurationError for a URN the SCIM service would refuse

    # -- reading ---------------------------------------------------------------

    def get(self, slug: str, member_id: str) -> Member:
        """A member of the tenant; :class:`NotFoundError` if there is none."""
        with self.storage.transaction(write=False) as tx:
            return self._ours(_member(tx, tenant_by_slug(tx, slug), member_id))

    def all(self, slug: str) -> list[Member]:
        """Every member of the tenant, ordered by id."""
        with self.storage.transaction(write=False) as tx:
            tenant = tenant_by_slug(tx, slug)
        return [self._ours(member) for member in _walk(self.storage, tenant.id)]

    def group(self, slug: str, group_id: str) -> GroupProfile:
        """A group of the tenant with its members, as a typed scim2-models ``Group``.

        Each of its ``members`` has the member's id as ``value`` and its
        display name as ``display``. :class:`NotFoundError` if there is none.
        """
        from pbidentity.models import group_profile

        with self.storage.transaction(write=False) as tx:
            tenant = tenant_by_slug(tx, slug)
            group = tx.get_group(tenant.id, group_id)
            if group is None:
                raise NotFoundError(f"workspace {slug!r} has no group {group_id!r}")
            members = tx.group_members(tenant.id, [group.id])[group.id]
        return group_profile(group, members)

    def audit_trail(
        self,
        slug: str,
        *,
        after: int = 0,
        limit: int = 100,
        before: int | None = None,
        types: Collection[str] | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        newest_first: bool = False,
    ) -> Sequence[Event]:
        """The tenant's events, oldest first: who (which token) changed what, and when.

        The filters of the portal's audit page: ``types`` (any of them, from
        :data:`~pbidentity.events.EVENT_TYPES`), ``actor`` (exactly, as events
        name it: ``token:okta``, ``portal:user-1``, ``link:<id>``), ``since``
        (at or after) and ``until`` (before), timezone-aware. ``after`` and
        ``before`` page by sequence number; ``newest_first`` walks backwards
        (then pass the last event's ``seq`` as the next ``before``).
        :class:`InputError` for an unknown type or a naive time.
        """
        from pbidentity.events import EVENT_TYPES

        unknown = sorted(set(types or ()) - EVENT_TYPES)
        if unknown:
            raise InputError(f"there is no event type {unknown[0]!r}: see pbidentity.events")
        for name, moment in (("since", since), ("until", until)):
            if moment is not None and moment.tzinfo is None:
                raise InputError(f"{name} needs a timezone (datetime.now(UTC), not datetime.now())")
        with self.storage.transaction(write=False) as tx:
            events = tx.list_events(
                tenant_by_slug(tx, slug).id,
                after=after,
                limit=limit,
                before=before,
                types=None if types is None else list(types),
                actor=actor,
                since=since,
                until=until,
                newest_first=newest_first,
            )
        # Their profiles put the role under the app's URN, as members read here do.
        return [
            e if e.role_urn == self.role_urn else attrs.evolve(e, role_urn=self.role_urn)
            for e in events
        ]

    # -- the host app's own edits ---------------------------------------------

    def check_edit(self, slug: str, member_id: str, fields: Iterable[str]) -> None:
        """Raise :class:`ManagedMemberError` if the app may not change these fields now.

        ``fields`` are SCIM attribute names (``name``, ``emails``...) and
        ``role``; anything not in :data:`IDP_OWNED` is always the app's.
        """
        with self.storage.transaction(write=False) as tx:
            tenant = tenant_by_slug(tx, slug)
            _check_edit(tenant, _member(tx, tenant, member_id), fields)

    def add(
        self,
        slug: str,
        user_name: str,
        *,
        given_name: str | None = None,
        family_name: str | None = None,
        email: str | None = None,
        role: str | None = None,
        active: bool = True,
        actor: str = "app",
    ) -> Member:
        """Create a member the app manages (an invitation, a sign-up) with a role the app gives.

        ``role`` defaults to the least privileged one. SCIM links it later
        when the IdP pushes the same person.
        """
        if not user_name.strip():
            raise InputError("a member needs a userName (usually the email address)")
        given = self._role(role) if role is not None else self.roles.least_privileged
        attributes: dict[str, Any] = {"userName": user_name.strip(), "active": active}
        name = {k: v for k, v in (("givenName", given_name), ("familyName", family_name)) if v}
        if name:
            attributes["name"] = name
        if email:
            attributes["emails"] = [{"value": email.strip(), "primary": True, "type": "work"}]
        now = self.clock()
        with self.storage.transaction() as tx:
            tenant = tenant_by_slug(tx, slug)
            member = Member(
                tenant_id=tenant.id,
                id=self.new_id(),
                attributes=attributes,
                role=given,
                role_source="app",
                role_rule=f"set in the app ({given})",
                created=now,
                last_modified=now,
                role_urn=self.role_urn,
            )
            _check_profile(member)
            lifecycle = self._lifecycle(tx, tenant, actor)
            try:
                created = lifecycle.create(member)
            except ConflictError as error:
                raise InputError(
                    f"workspace {slug!r} already has a member {user_name!r}"
                ) from error
            lifecycle.finish()
        return self._ours(created)

    def edit(
        self,
        slug: str,
        member_id: str,
        *,
        attributes: Mapping[str, Any] | None = None,
        role: str | None = None,
        active: bool | None = None,
        actor: str = "app",
    ) -> Member:
        """Change a member from the app: top-level ``attributes`` replaced, ``role``, ``active``.

        Refused with :class:`ManagedMemberError` for what the IdP owns while
        the member is SCIM-managed and the tenant's SCIM switch is on.
        """
        with self.storage.transaction() as tx:
            tenant = tenant_by_slug(tx, slug)
            current = _member(tx, tenant, member_id)
            fields = [*(attributes or {})]
            fields += ["role"] if role is not None else []
            fields += ["active"] if active is not None else []
            _check_edit(tenant, current, fields)
            document = {**current.attributes, **(attributes or {})}
            if active is not None:
                document["active"] = active
            if not str(document.get("userName") or "").strip():
                raise InputError("a member needs a userName (usually the email address)")
            updated = attrs.evolve(current, attributes=document, role_urn=self.role_urn)
            _check_profile(updated)
            if role is not None:
                given = self._role(role)
                updated = attrs.evolve(
                    updated, role=given, role_source="app", role_rule=f"set in the app ({given})"
                )
            lifecycle = self._lifecycle(tx, tenant, actor)
            lifecycle.decide_roles = tenant.scim_enabled
            try:
                saved = lifecycle.save(current, updated)
            except ConflictError as error:
                raise InputError(
                    f"workspace {slug!r} already has a member {document['userName']!r}"
                ) from error
            lifecycle.finish()
        return self._ours(saved)

    # -- linking ---------------------------------------------------------------

    def plan_links(self, slug: str, identities: Iterable[Identity]) -> LinkPlan:
        """How these IdP identities would link to the tenant's members (changes nothing)."""
        with self.storage.transaction(write=False) as tx:
            tenant = tenant_by_slug(tx, slug)
        policy = TenantPolicy.of(tenant)
        return plan_links(identities, _walk(self.storage, tenant.id), policy.linking)

    def apply_links(
        self,
        slug: str,
        plan: LinkPlan,
        *,
        actor: str = "cli",
        progress: Progress | None = None,
    ) -> LinkResult:
        """Carry out a plan's creates, links and reactivations, in batches.

        Idempotent: each step checks the member as it is now, so a step done
        before (by an earlier run, or by the IdP) is counted ``unchanged`` and
        a step the members no longer fit is skipped with the reason, never
        forced. Each batch commits on its own with its events.
        """
        created = linked = reactivated = 0
        unchanged = plan.count("unchanged")
        skipped: list[tuple[LinkStep, str]] = [(s, s.reason) for s in plan.conflicts]
        steps = plan.changes
        done = 0
        for start in range(0, len(steps), _BATCH):
            batch = steps[start : start + _BATCH]
            with self.storage.transaction() as tx:
                tenant = tenant_by_slug(tx, slug)
                result = self.apply_link_batch(tx, tenant, batch, actor=actor)
            created += result.created
            linked += result.linked
            reactivated += result.reactivated
            unchanged += result.unchanged
            skipped += result.skipped
            done += len(batch)
            if progress is not None:
                progress(done, len(steps))
        return LinkResult(
            created=created,
            linked=linked,
            reactivated=reactivated,
            unchanged=unchanged,
            skipped=tuple(skipped),
        )

    def apply_link_batch(
        self, tx: Transaction, tenant: Tenant, steps: Sequence[LinkStep], *, actor: str
    ) -> LinkResult:
        """Apply a few of a plan's creates, links and reactivations in the caller's transaction.

        What :meth:`apply_links` does for each of its batches (each step
        checked against the member as it is now, the events of the changes
        added), for a caller that keeps its own record of progress in the
        same transaction, as the portal's link import does. Conflicts are
        not steps to apply: pass :attr:`LinkPlan.changes` only.
        """
        counts = {"create": 0, "link": 0, "reactivate": 0, "unchanged": 0}
        skipped: list[tuple[LinkStep, str]] = []
        lifecycle = self._lifecycle(tx, tenant, actor)
        ids = [s.member_id for s in steps if s.member_id is not None]
        found = {m.id: m for m in tx.get_members(tenant.id, ids)}
        for step in steps:
            if step.action not in ("create", "link", "reactivate"):
                raise InputError(f"a {step.action} step is not applied; pass the plan's changes")
            outcome = self._apply(lifecycle, tenant, step, found.get(step.member_id or ""))
            if outcome in counts:
                counts[outcome] += 1
            else:
                skipped.append((step, outcome))
        lifecycle.finish()
        return LinkResult(
            created=counts["create"],
            linked=counts["link"],
            reactivated=counts["reactivate"],
            unchanged=counts["unchanged"],
            skipped=tuple(skipped),
        )

    def _apply(
        self, lifecycle: LifecycleWork, tenant: Tenant, step: LinkStep, member: Member | None
    ) -> str:
        """Apply one step; returns its action, ``unchanged``, or why it was skipped."""
        identity = step.identity
        role_attribute = self._role_attribute(identity)
        if step.action == "create":
            now = self.clock()
            new = Member(
                tenant_id=tenant.id,
                id=self.new_id(),
                attributes=identity.attributes(),
                role_attribute=role_attribute,
                scim_managed=True,
                created=now,
                last_modified=now,
            )
            try:
                lifecycle.create(new)
            except ConflictError:
                return self._already_created(lifecycle, tenant, identity)
            except LinkConflictError as error:
                return str(error)
            return "create"
        if member is None:
            return f"member {step.member_id} no longer exists"
        attributes = {**member.attributes, "userName": identity.user_name}
        if identity.external_id is not None:
            attributes["externalId"] = identity.external_id
        if step.action == "reactivate" or identity.active != member.active:
            attributes["active"] = identity.active
        linked = attrs.evolve(
            member,
            attributes=attributes,
            role_attribute=role_attribute or member.role_attribute,
            scim_managed=True,
        )
        try:
            saved = lifecycle.save(member, linked, matched_by=step.matched_by)
        except (ConflictError, LinkConflictError) as error:
            return f"{error}"
        return "unchanged" if saved is member else step.action

    def _already_created(self, lifecycle: LifecycleWork, tenant: Tenant, identity: Identity) -> str:
        # The userName is taken now: by this very identity (a second run, or
        # the IdP provisioned it meanwhile), or by someone else.
        step = lifecycle.link_step(identity)
        if step.action == "unchanged":
            return "unchanged"
        return f"userName {identity.user_name!r} is now taken ({step.reason})"

    def _role_attribute(self, identity: Identity) -> str | None:
        if identity.role is None or not identity.role.strip():
            return None
        return self.roles.canonical(identity.role)

    # -- internals -------------------------------------------------------------

    def _ours(self, member: Member) -> Member:
        """The member with this app's role extension URN, for its profile."""
        if member.role_urn == self.role_urn:
            return member
        return attrs.evolve(member, role_urn=self.role_urn)

    def _role(self, role: str) -> str:
        found = self.roles.canonical(role)
        if found is None:
            raise InputError(
                f"{role!r} is not one of the app's roles: {', '.join(self.roles.names)}"
            )
        return found

    def _lifecycle(self, tx: Transaction, tenant: Tenant, actor: str) -> LifecycleWork:
        return LifecycleWork.open(
            tx, tenant, roles=self.roles, actor=actor, clock=self.clock, new_id=self.new_id
        )


def _check_profile(member: Member) -> None:
    """Refuse, before it is stored, a member whose attributes are no valid SCIM User.

    What the app writes is read back as a typed profile, and served to the
    IdP, like what the IdP writes: an unknown attribute or a value of the
    wrong type is refused here rather than failing every later read.
    """
    from pbidentity.models import member_profile

    try:
        member_profile(member)
    except InputError as error:
        raise InputError(
            f"the attributes of {member.user_name} are not a valid SCIM User: "
            f"{error.__cause__ or error}"
        ) from error


def _check_edit(tenant: Tenant, member: Member, fields: Iterable[str]) -> None:
    if not (member.scim_managed and tenant.scim_enabled):
        return
    owned = {fold(name): name for name in IDP_OWNED}
    refused = tuple(sorted({owned[fold(f)] for f in fields if fold(f) in owned}))
    if refused:
        raise ManagedMemberError(
            f"{member.user_name} is managed by the identity provider (SCIM): change "
            f"{', '.join(refused)} there, or switch SCIM provisioning off for workspace "
            f"{tenant.slug!r} to edit members in the app again",
            fields=refused,
        )


def _walk(storage: Storage, tenant_id: str) -> Iterable[Member]:
    after: str | None = None
    while True:
        with storage.transaction(write=False) as tx:
            batch = tx.list_members(tenant_id, after=after, limit=_BATCH * 10)
        yield from batch
        if len(batch) < _BATCH * 10:
            return
        after = batch[-1].id


def _member(tx: Transaction, tenant: Tenant, member_id: str) -> Member:
    member = tx.get_member(tenant.id, member_id)
    if member is None:
        raise NotFoundError(f"workspace {tenant.slug!r} has no member {member_id!r}")
    return member
