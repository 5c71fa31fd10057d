"""What an operator or the host app's settings pages do: tenants, SCIM switch, tokens, policy.

:class:`Admin` wraps a :class:`~pbidentity.storage.Storage` with the rules of
the domain (slug shape, one active token per name, tokens shown once). The
command line and the reference apps are thin layers over it. It raises
:class:`~pbidentity.exceptions.PbIdentityError` subclasses whose message is
one sentence an operator can act on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import attrs

from pbidentity._clock import Clock
from pbidentity._clock import IdFactory
from pbidentity._clock import new_id
from pbidentity._clock import utc_now
from pbidentity._lifecycle import LifecycleWork
from pbidentity._lifecycle import members_of
from pbidentity._lifecycle import tenant_by_slug
from pbidentity.domain import ApiToken
from pbidentity.domain import Member
from pbidentity.domain import Tenant
from pbidentity.exceptions import InputError
from pbidentity.exceptions import NotFoundError
from pbidentity.exceptions import PolicyChangedError
from pbidentity.policy import TenantPolicy
from pbidentity.preview import PolicyPreview
from pbidentity.preview import preview_policy
from pbidentity.roles import RoleSet
from pbidentity.storage import Storage
from pbidentity.storage import Transaction
from pbidentity.tokens import generate_token
from pbidentity.tokens import token_digest

__all__ = ["Admin", "NewToken"]

_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_MAX_TOKEN_NAME = 100
#: Members whose role a new policy decides again per bulk pass.
_REDECIDE_BATCH = 1000


@attrs.frozen(kw_only=True)
class NewToken:
    """A token just created: the stored record and the secret, which is never shown again."""

    token: ApiToken
    secret: str = attrs.field(repr=False)


@attrs.frozen
class Admin:
    """Manage tenants, their SCIM switch, their API tokens and their member policy.

    ``roles`` is the host app's role set: :class:`~pbidentity.PbIdentity`
    gives its ``admin`` the one its SCIM and SAML services use.
    """

    storage: Storage
    clock: Clock = utc_now
    new_id: IdFactory = new_id
    roles: RoleSet = attrs.field(factory=RoleSet)

    def create_tenant(self, slug: str, name: str | None = None) -> Tenant:
        """Create a tenant; the slug is its stable, URL-safe handle (``acme-corp``)."""
        if not _SLUG.fullmatch(slug):
            raise InputError(
                f"{slug!r} is not a valid tenant slug: use 1 to 63 lower-case letters, digits "
                "and inner hyphens, e.g. acme-corp"
            )
        tenant = Tenant(id=self.new_id(), slug=slug, name=name or slug, created=self.clock())
        with self.storage.transaction() as tx:
            tx.add_tenant(tenant)
        return tenant

    def list_tenants(self) -> Sequence[Tenant]:
        """Every tenant, ordered by slug."""
        with self.storage.transaction() as tx:
            return tx.list_tenants()

    def get_tenant(self, slug: str) -> Tenant:
        """The tenant with that slug; :class:`NotFoundError` if there is none."""
        with self.storage.transaction() as tx:
            return tenant_by_slug(tx, slug)

    def set_scim_enabled(self, slug: str, enabled: bool, *, keep_links: bool = True) -> Tenant:
        """Switch SCIM provisioning on or off for a tenant; returns the updated tenant.

        Switched off, SCIM-managed members become editable in the app. With
        ``keep_links`` (the default) they stay linked to their IdP identity
        (externalId) and are managed again when SCIM comes back on; without
        it, the links are dropped: members become the app's own and the next
        push links them afresh.
        """
        with self.storage.transaction() as tx:
            tenant = tenant_by_slug(tx, slug)
            if tenant.scim_enabled != enabled:
                updated = attrs.evolve(tenant, scim_enabled=enabled, version=tenant.version + 1)
                tx.replace_tenant(updated, expected_version=tenant.version)
                tenant = updated
            if not enabled and not keep_links:
                self._unlink_all(tx, tenant)
            return tenant

    def _unlink_all(self, tx: Transaction, tenant: Tenant) -> None:
        lifecycle = self._lifecycle(tx, tenant, "app")
        lifecycle.decide_roles = False
        for member in members_of(tx, tenant.id):
            if member.scim_managed or member.external_id is not None:
                attributes = dict(member.attributes)
                attributes.pop("externalId", None)
                unlinked = attrs.evolve(
                    member,
                    attributes=attributes,
                    scim_managed=False,
                    # The role the IdP decided becomes the app's to change.
                    role_source="app" if member.role is not None else None,
                )
                lifecycle.save(member, unlinked)
        lifecycle.finish()

    def get_policy(self, slug: str) -> TenantPolicy:
        """The tenant's member policy (role mapping, linking, deprovisioning)."""
        with self.storage.transaction(write=False) as tx:
            return TenantPolicy.of(tenant_by_slug(tx, slug))

    def preview_policy(
        self, slug: str, policy: TenantPolicy, *, examples: int = 3
    ) -> PolicyPreview:
        """What :meth:`set_policy` would do to the tenant's members, without writing anything.

        How many members would change role, from what to what, with a few
        examples each and the rule that would decide them, and whether the
        admin guard would refuse it. Decided by the code applying it runs,
        in a read-only transaction, a batch of members at a time.
        """
        checked = policy.check(self.roles)
        with self.storage.transaction(write=False) as tx:
            return preview_policy(
                tx,
                tenant_by_slug(tx, slug),
                checked,
                roles=self.roles,
                clock=self.clock,
                new_id=self.new_id,
                examples=examples,
            )

    def set_policy(
        self,
        slug: str,
        policy: TenantPolicy,
        *,
        actor: str = "app",
        expected: str | None = None,
    ) -> TenantPolicy:
        """Replace the tenant's member policy and re-decide every SCIM-managed member's role.

        One transaction: the new policy and the roles it gives commit
        together (with their ``member.role_changed`` events), or, if the
        admin guard refuses the outcome, neither does. ``expected`` is the
        fingerprint of the policy a preview was made against
        (:attr:`PolicyPreview.current_fingerprint`): if the stored policy is
        another one by now, :class:`PolicyChangedError` and nothing changes.
        """
        checked = policy.check(self.roles)
        with self.storage.transaction() as tx:
            tenant = tenant_by_slug(tx, slug)
            if expected is not None and TenantPolicy.of(tenant).fingerprint != expected:
                raise PolicyChangedError(
                    f"the role policy of workspace {slug!r} changed since this preview, so "
                    "nothing was saved: preview the new policy again, then apply it"
                )
            updated = attrs.evolve(tenant, settings=checked.settings(), version=tenant.version + 1)
            tx.replace_tenant(updated, expected_version=tenant.version)
            lifecycle = self._lifecycle(tx, updated, actor)
            lifecycle.policy_changed(TenantPolicy.of(tenant))
            # Read and decided a batch at a time: memory stays bounded
            # whatever the tenant's size, and each batch costs a few statements.
            batch: list[Member] = []
            for member in members_of(tx, tenant.id):
                batch.append(member)
                if len(batch) == _REDECIDE_BATCH:
                    lifecycle.redecide_members(batch)
                    batch = []
            lifecycle.redecide_members(batch)
            lifecycle.finish()
        return checked

    def _lifecycle(self, tx: Transaction, tenant: Tenant, actor: str) -> LifecycleWork:
        return LifecycleWork.open(
            tx, tenant, roles=self.roles, actor=actor, clock=self.clock, new_id=self.new_id
        )

    def create_token(self, slug: str, name: str) -> NewToken:
        """Create a named API token for a tenant. The secret is only in the result."""
        name = name.strip()
        if not name or len(name) > _MAX_TOKEN_NAME:
            raise InputError(f"a token name needs 1 to {_MAX_TOKEN_NAME} characters")
        secret = generate_token()
        with self.storage.transaction() as tx:
            tenant = tenant_by_slug(tx, slug)
            token = ApiToken(
                id=self.new_id(),
                tenant_id=tenant.id,
                name=name,
                digest=token_digest(secret),
                created=self.clock(),
            )
            tx.add_token(token)
        return NewToken(token=token, secret=secret)

    def list_tokens(self, slug: str) -> Sequence[ApiToken]:
        """A tenant's tokens, revoked ones included, oldest first."""
        with self.storage.transaction() as tx:
            return tx.list_tokens(tenant_by_slug(tx, slug).id)

    def revoke_token(self, slug: str, name: str) -> ApiToken:
        """Revoke the tenant's active token of that name; it stops working at once."""
        with self.storage.transaction() as tx:
            tenant = tenant_by_slug(tx, slug)
            for token in tx.list_tokens(tenant.id):
                if token.name == name and token.is_active:
                    when = self.clock()
                    tx.revoke_token(tenant.id, token.id, when)
                    return attrs.evolve(token, revoked=when)
        raise NotFoundError(f"tenant {slug!r} has no active token named {name!r}")
