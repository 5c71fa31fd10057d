"""What an operator or the host app's settings pages do: tenants, the SCIM switch, tokens.

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
from pbidentity.domain import ApiToken
from pbidentity.domain import Tenant
from pbidentity.exceptions import InputError
from pbidentity.exceptions import NotFoundError
from pbidentity.storage import Storage
from pbidentity.storage import Transaction
from pbidentity.tokens import generate_token
from pbidentity.tokens import token_digest

__all__ = ["Admin", "NewToken"]

_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_MAX_TOKEN_NAME = 100


@attrs.frozen(kw_only=True)
class NewToken:
    """A token just created: the stored record and the secret, which is never shown again."""

    token: ApiToken
    secret: str = attrs.field(repr=False)


@attrs.frozen
class Admin:
    """Manage tenants, their SCIM switch and their API tokens."""

    storage: Storage
    clock: Clock = utc_now
    new_id: IdFactory = new_id

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
            return _tenant(tx, slug)

    def set_scim_enabled(self, slug: str, enabled: bool) -> Tenant:
        """Switch SCIM provisioning on or off for a tenant; returns the updated tenant."""
        with self.storage.transaction() as tx:
            tenant = _tenant(tx, slug)
            if tenant.scim_enabled == enabled:
                return tenant
            updated = attrs.evolve(tenant, scim_enabled=enabled, version=tenant.version + 1)
            tx.replace_tenant(updated, expected_version=tenant.version)
            return updated

    def create_token(self, slug: str, name: str) -> NewToken:
        """Create a named API token for a tenant. The secret is only in the result."""
        name = name.strip()
        if not name or len(name) > _MAX_TOKEN_NAME:
            raise InputError(f"a token name needs 1 to {_MAX_TOKEN_NAME} characters")
        secret = generate_token()
        with self.storage.transaction() as tx:
            tenant = _tenant(tx, slug)
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
            return tx.list_tokens(_tenant(tx, slug).id)

    def revoke_token(self, slug: str, name: str) -> ApiToken:
        """Revoke the tenant's active token of that name; it stops working at once."""
        with self.storage.transaction() as tx:
            tenant = _tenant(tx, slug)
            for token in tx.list_tokens(tenant.id):
                if token.name == name and token.is_active:
                    when = self.clock()
                    tx.revoke_token(tenant.id, token.id, when)
                    return attrs.evolve(token, revoked=when)
        raise NotFoundError(f"tenant {slug!r} has no active token named {name!r}")


def _tenant(tx: Transaction, slug: str) -> Tenant:
    tenant = tx.find_tenant(slug)
    if tenant is None:
        raise NotFoundError(f"no tenant {slug!r}; create it with: pbidentity tenants create {slug}")
    return tenant
