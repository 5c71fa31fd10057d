"""SAML connections and sign-in state in a SQL transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import attrs
from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from pbidentity.domain import SamlConnection
from pbidentity.domain import SamlRequest
from pbidentity.exceptions import NotFoundError
from pbidentity.exceptions import StorageError
from pbidentity.storage import _conflicts
from pbidentity.storage.sql._errors import _is_foreign_key
from pbidentity.storage.sql._errors import _raise_missing_or_moved
from pbidentity.storage.sql._errors import _saml_conflict
from pbidentity.storage.sql._rows import _saml_connection
from pbidentity.storage.sql._rows import _saml_request
from pbidentity.storage.sql._rows import _saml_row
from pbidentity.storage.sql._schema import saml_assertions
from pbidentity.storage.sql._schema import saml_connections
from pbidentity.storage.sql._schema import saml_keys
from pbidentity.storage.sql._schema import saml_outcomes
from pbidentity.storage.sql._schema import saml_requests
from pbidentity.storage.sql._schema import saml_sp_keys
from pbidentity.storage.sql._unit import _guarded
from pbidentity.storage.sql._unit import _Unit
from pbidentity.storage.sql._unit import _writing

_SAML_STATE_ORDER = {"active": 0, "pending": 1, "previous": 2}


class _SamlState(_Unit):
    """SAML connections, requests, replay cache, signing keys and outcomes."""

    @_guarded
    def saml_connections(self, tenant_id: str) -> Sequence[SamlConnection]:
        """The tenant's SAML connections, active first."""
        rows = self._conn.execute(
            select(saml_connections).where(saml_connections.c.tenant_id == tenant_id)
        ).all()
        found = [_saml_connection(row) for row in rows]
        return sorted(found, key=lambda c: _SAML_STATE_ORDER[c.state])

    @_writing
    def add_saml_connection(self, connection: SamlConnection) -> None:
        """Insert a connection; ``ConflictError`` if the tenant has one in that state."""
        try:
            with self._savepoint():
                self._conn.execute(insert(saml_connections), [_saml_row(connection)])
        except IntegrityError as error:
            raise _saml_conflict(error, connection) from error

    @_writing
    def replace_saml_connection(self, connection: SamlConnection, *, expected_version: int) -> None:
        """Overwrite a connection whose stored version is ``expected_version``."""
        row = _saml_row(connection)
        del row["id"], row["tenant_id"]
        try:
            with self._savepoint():
                changed = self._conn.execute(
                    update(saml_connections)
                    .where(
                        saml_connections.c.id == connection.id,
                        saml_connections.c.tenant_id == connection.tenant_id,
                        saml_connections.c.version == expected_version,
                    )
                    .values(**row)
                ).rowcount
        except IntegrityError as error:
            raise _saml_conflict(error, connection) from error
        if changed == 0:
            current = self._conn.execute(
                select(saml_connections.c.version).where(
                    saml_connections.c.id == connection.id,
                    saml_connections.c.tenant_id == connection.tenant_id,
                )
            ).scalar()
            _raise_missing_or_moved("SAML connection", connection.id, current, expected_version)

    @_writing
    def delete_saml_connection(self, tenant_id: str, connection_id: str) -> bool:
        """Delete a connection and its pending requests."""
        self._conn.execute(
            delete(saml_requests).where(
                saml_requests.c.tenant_id == tenant_id,
                saml_requests.c.connection_id == connection_id,
            )
        )
        gone = self._conn.execute(
            delete(saml_connections).where(
                saml_connections.c.tenant_id == tenant_id,
                saml_connections.c.id == connection_id,
            )
        ).rowcount
        return bool(gone)

    @_guarded
    def active_saml_connections(self, idp_entity_id: str) -> Sequence[SamlConnection]:
        """Every tenant's active connection to that IdP entity."""
        rows = self._conn.execute(
            select(saml_connections).where(
                saml_connections.c.idp_entity_id == idp_entity_id,
                saml_connections.c.state == "active",
            )
        ).all()
        return [_saml_connection(row) for row in rows]

    @_writing
    def add_saml_request(self, request: SamlRequest) -> None:
        """Remember an AuthnRequest."""
        try:
            with self._savepoint():
                self._conn.execute(insert(saml_requests), [attrs.asdict(request, recurse=False)])
        except IntegrityError as error:
            if _is_foreign_key(error):
                raise NotFoundError(
                    f"tenant {request.tenant_id!r} or SAML connection "
                    f"{request.connection_id!r} does not exist"
                ) from error
            raise _conflicts.saml_request_taken(request) from error

    @_writing
    def take_saml_request(self, tenant_id: str, request_id: str) -> SamlRequest | None:
        """Remove and return a pending AuthnRequest (single use, also across instances)."""
        where = (saml_requests.c.tenant_id == tenant_id, saml_requests.c.id == request_id)
        row = self._conn.execute(select(saml_requests).where(*where)).first()
        if row is None:
            return None
        # The DELETE decides: of two instances that read the row, only the one
        # whose DELETE removed it gets the request.
        if not self._conn.execute(delete(saml_requests).where(*where)).rowcount:
            return None
        return _saml_request(row)

    @_writing
    def remember_assertion(self, tenant_id: str, assertion_id: str, expires: datetime) -> bool:
        """Record a consumed assertion id; ``False`` for a replay."""
        try:
            with self._savepoint():
                self._conn.execute(
                    insert(saml_assertions),
                    [{"tenant_id": tenant_id, "id": assertion_id, "expires": expires}],
                )
        except IntegrityError as error:
            if _is_foreign_key(error):
                raise _conflicts.missing("tenant", tenant_id) from error
            return False
        return True

    @_guarded
    def saml_signing_key(self, tenant_id: str) -> str | None:
        """The tenant's request signing key, if it has one."""
        found: str | None = self._conn.execute(
            select(saml_keys.c.secret).where(saml_keys.c.tenant_id == tenant_id)
        ).scalar()
        return found

    @_writing
    def add_saml_signing_key(self, tenant_id: str, key: str) -> str:
        """Keep the key unless the tenant has one; the key it has."""
        try:
            with self._savepoint():
                self._conn.execute(insert(saml_keys), [{"tenant_id": tenant_id, "secret": key}])
        except IntegrityError as error:
            if _is_foreign_key(error):
                raise _conflicts.missing("tenant", tenant_id) from error
            # Another instance stored its key first: that one is the key.
        stored = self.saml_signing_key(tenant_id)
        if stored is None:  # pragma: no cover - the insert or the other writer put it there
            raise StorageError(f"no SAML signing key for tenant {tenant_id!r}")
        return stored

    @_guarded
    def saml_sp_keys(self, tenant_id: str) -> str | None:
        """The tenant's SP key pairs document, if it has one."""
        found: str | None = self._conn.execute(
            select(saml_sp_keys.c.document).where(saml_sp_keys.c.tenant_id == tenant_id)
        ).scalar()
        return found

    @_writing
    def replace_saml_sp_keys(self, tenant_id: str, document: str, *, expected: str | None) -> bool:
        """Store the document if the stored one is still ``expected``."""
        if expected is None:
            try:
                with self._savepoint():
                    self._conn.execute(
                        insert(saml_sp_keys), [{"tenant_id": tenant_id, "document": document}]
                    )
            except IntegrityError as error:
                if _is_foreign_key(error):
                    raise _conflicts.missing("tenant", tenant_id) from error
                return False  # another instance stored its keys first
            return True
        changed = self._conn.execute(
            update(saml_sp_keys)
            .where(saml_sp_keys.c.tenant_id == tenant_id, saml_sp_keys.c.document == expected)
            .values(document=document)
        )
        return bool(changed.rowcount == 1)

    @_writing
    def add_saml_outcome(
        self, tenant_id: str, code_hash: str, document: str, expires: datetime
    ) -> None:
        """Keep an outcome under a code's hash."""
        row = {"tenant_id": tenant_id, "id": code_hash, "document": document, "expires": expires}
        try:
            with self._savepoint():
                self._conn.execute(insert(saml_outcomes), [row])
        except IntegrityError as error:
            if _is_foreign_key(error):
                raise _conflicts.missing("tenant", tenant_id) from error
            raise _conflicts.one_time_code_taken() from error

    @_writing
    def take_saml_outcome(self, tenant_id: str, code_hash: str, now: datetime) -> str | None:
        """Remove and return an outcome (once, also across instances)."""
        where = (saml_outcomes.c.tenant_id == tenant_id, saml_outcomes.c.id == code_hash)
        row = self._conn.execute(select(saml_outcomes).where(*where)).first()
        if row is None:
            return None
        # As for requests, the DELETE decides which of two readers gets it.
        if not self._conn.execute(delete(saml_outcomes).where(*where)).rowcount:
            return None
        if row.expires <= now:
            return None
        document: str = row.document
        return document

    @_writing
    def purge_saml_state(self, now: datetime) -> int:
        """Forget expired requests, assertion ids and outcomes."""
        gone = self._conn.execute(
            delete(saml_requests).where(saml_requests.c.expires <= now)
        ).rowcount
        gone += self._conn.execute(
            delete(saml_assertions).where(saml_assertions.c.expires <= now)
        ).rowcount
        gone += self._conn.execute(
            delete(saml_outcomes).where(saml_outcomes.c.expires <= now)
        ).rowcount
        return int(gone)
