"""Tenants and their API tokens in a SQL transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import attrs
from sqlalchemy import bindparam
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from pbidentity.domain import ApiToken
from pbidentity.domain import Tenant
from pbidentity.storage import _conflicts
from pbidentity.storage.sql._errors import _constraint
from pbidentity.storage.sql._errors import _is_foreign_key
from pbidentity.storage.sql._errors import _raise_missing_or_moved
from pbidentity.storage.sql._errors import _tenant_conflict
from pbidentity.storage.sql._rows import _settings
from pbidentity.storage.sql._rows import _tenant
from pbidentity.storage.sql._rows import _tenant_row
from pbidentity.storage.sql._rows import _token
from pbidentity.storage.sql._schema import _UtcText
from pbidentity.storage.sql._schema import api_tokens
from pbidentity.storage.sql._schema import tenant_counts
from pbidentity.storage.sql._schema import tenants
from pbidentity.storage.sql._statements import _COUNTED
from pbidentity.storage.sql._statements import _FIND_TOKEN
from pbidentity.storage.sql._statements import _FIND_TOKEN_WITH_TENANT
from pbidentity.storage.sql._statements import _GET_TENANT
from pbidentity.storage.sql._statements import _TOUCH_TOKEN
from pbidentity.storage.sql._unit import _guarded
from pbidentity.storage.sql._unit import _Unit
from pbidentity.storage.sql._unit import _writing


class _Tenants(_Unit):
    """Tenants and API tokens."""

    # Tenants -----------------------------------------------------------------
    @_writing
    def add_tenant(self, tenant: Tenant) -> None:
        """Insert a tenant; ``ConflictError(attribute="slug")`` if the slug is taken."""
        try:
            with self._savepoint():
                self._conn.execute(insert(tenants), [_tenant_row(tenant)])
                self._conn.execute(
                    insert(tenant_counts),
                    [{"tenant_id": tenant.id, "kind": kind, "n": 0} for kind in _COUNTED],
                )
        except IntegrityError as error:
            raise _tenant_conflict(error, tenant) from error

    @_guarded
    def get_tenant(self, tenant_id: str) -> Tenant | None:
        """The tenant with that id, or ``None``."""
        rows = self._rows(_GET_TENANT, {"b_id": tenant_id})
        return _tenant(rows[0]) if rows else None

    @_guarded
    def find_tenant(self, slug: str) -> Tenant | None:
        """The tenant with that slug (exact match), or ``None``."""
        row = self._conn.execute(select(tenants).where(tenants.c.slug == slug)).first()
        return None if row is None else _tenant(row)

    @_guarded
    def list_tenants(self) -> Sequence[Tenant]:
        """Every tenant, ordered by slug."""
        rows = self._conn.execute(select(tenants).order_by(tenants.c.slug))
        return [_tenant(row) for row in rows]

    @_writing
    def replace_tenant(self, tenant: Tenant, *, expected_version: int) -> None:
        """Overwrite a tenant whose stored version is ``expected_version``."""
        values = _tenant_row(tenant)
        del values["id"]
        statement = (
            update(tenants)
            .where(tenants.c.id == tenant.id, tenants.c.version == expected_version)
            .values(**values)
        )
        try:
            with self._savepoint():
                changed = self._conn.execute(statement).rowcount
        except IntegrityError as error:
            raise _tenant_conflict(error, tenant) from error
        if changed == 0:
            current = self._conn.execute(
                select(tenants.c.version).where(tenants.c.id == tenant.id)
            ).scalar()
            _raise_missing_or_moved("tenant", tenant.id, current, expected_version)

    # Tokens ------------------------------------------------------------------
    @_writing
    def add_token(self, token: ApiToken) -> None:
        """Insert a token; ``ConflictError(attribute="name")`` for a duplicate active name."""
        try:
            with self._savepoint():
                self._conn.execute(insert(api_tokens), [attrs.asdict(token, recurse=False)])
        except IntegrityError as error:
            constraint = _constraint(error)
            if _is_foreign_key(error):
                raise _conflicts.missing("tenant", token.tenant_id) from error
            if "digest" in constraint:
                raise _conflicts.token_digest_taken() from error
            if "name" in constraint:
                raise _conflicts.token_name_taken(token) from error
            raise _conflicts.id_taken("token", token.id) from error

    @_guarded
    def find_token(self, digest: str) -> ApiToken | None:
        """The token with that digest (revoked or not), or ``None``."""
        rows = self._rows(_FIND_TOKEN, {"b_digest": digest})
        return _token(rows[0]) if rows else None

    @_guarded
    def find_token_with_tenant(self, digest: str) -> tuple[ApiToken, Tenant] | None:
        """The token with that digest and its tenant, in one statement."""
        rows = self._rows(_FIND_TOKEN_WITH_TENANT, {"b_digest": digest})
        if not rows:
            return None
        row = rows[0]
        tenant = Tenant(
            id=row.tenant_id,
            slug=row.tenant_slug,
            name=row.tenant_name,
            scim_enabled=row.tenant_scim_enabled,
            created=row.tenant_created,
            version=row.tenant_version,
            settings=_settings(row.tenant_settings),
        )
        return _token(row), tenant

    @_guarded
    def list_tokens(self, tenant_id: str) -> Sequence[ApiToken]:
        """The tenant's tokens, revoked ones included, oldest first (then by id)."""
        statement = (
            select(api_tokens)
            .where(api_tokens.c.tenant_id == tenant_id)
            .order_by(api_tokens.c.created, api_tokens.c.id)
        )
        return [_token(row) for row in self._conn.execute(statement)]

    @_writing
    def revoke_token(self, tenant_id: str, token_id: str, when: datetime) -> None:
        """Mark a token revoked; an already revoked token keeps its first revocation time."""
        statement = (
            update(api_tokens)
            .where(api_tokens.c.tenant_id == tenant_id, api_tokens.c.id == token_id)
            .values(
                revoked=func.coalesce(api_tokens.c.revoked, bindparam("when", when, _UtcText()))
            )
        )
        if self._conn.execute(statement).rowcount == 0:
            raise _conflicts.no_such_token(tenant_id, token_id)

    @_writing
    def touch_token(self, token_id: str, when: datetime) -> None:
        """Record a use at ``when``; never moves ``last_used`` back, ignores unknown ids."""
        self._run(_TOUCH_TOKEN, {"b_id": token_id, "b_when": when})
