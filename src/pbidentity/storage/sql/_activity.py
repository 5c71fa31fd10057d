"""The provisioning activity (SCIM requests received) in a SQL transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_
from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from pbidentity.domain import ScimActivity
from pbidentity.storage import _conflicts
from pbidentity.storage.sql._errors import _is_foreign_key
from pbidentity.storage.sql._schema import scim_activity
from pbidentity.storage.sql._unit import _guarded
from pbidentity.storage.sql._unit import _Unit
from pbidentity.storage.sql._unit import _writing

_c = scim_activity.c
_COLUMNS = tuple(column.name for column in scim_activity.columns)
# Built once: the hot path compiles a statement once per statement object.
_INSERT = insert(scim_activity)


def _row(entry: ScimActivity) -> dict[str, Any]:
    return {
        "tenant_id": entry.tenant_id,
        "id": entry.id,
        "at": entry.at,
        "token_name": entry.token_name,
        "method": entry.method,
        "path": entry.path,
        "status": entry.status,
        "scim_type": entry.scim_type,
        "detail": entry.detail,
        "duration_ms": entry.duration_ms,
        "resource_id": entry.resource_id,
        "request_body": entry.request_body,
        "response_body": entry.response_body,
    }


def _entry(row: Any) -> ScimActivity:
    return ScimActivity(
        tenant_id=row.tenant_id,
        id=row.id,
        at=row.at,
        token_name=row.token_name,
        method=row.method,
        path=row.path,
        status=row.status,
        scim_type=row.scim_type,
        detail=row.detail,
        duration_ms=row.duration_ms,
        resource_id=row.resource_id,
        request_body=row.request_body,
        response_body=row.response_body,
    )


class _Activity(_Unit):
    """SCIM requests: added in batches, read newest first, pruned in short batches."""

    @_writing
    def add_scim_activity(self, entries: Sequence[ScimActivity]) -> None:
        """Insert a batch of requests in one statement."""
        if not entries:
            return
        rows = [_row(entry) for entry in entries]
        # One statement executed for many rows (the driver's executemany, one
        # cached compilation whatever the batch size); inside a savepoint when
        # there are several, so that a batch is all in or all out.
        try:
            with self._savepoint(fallible_statements=len(rows)):
                self._run_many(_INSERT, rows, _COLUMNS)
        except IntegrityError as error:
            if _is_foreign_key(error):
                tenants = sorted({entry.tenant_id for entry in entries})
                raise _conflicts.missing("tenant", ", ".join(tenants)) from error
            raise _conflicts.id_taken("SCIM request", entries[0].id) from error

    @_guarded
    def scim_activity(
        self,
        tenant_id: str,
        *,
        limit: int = 50,
        before: tuple[datetime, str] | None = None,
        failures_only: bool = False,
        token_name: str | None = None,
        method: str | None = None,
        status: int | None = None,
    ) -> Sequence[ScimActivity]:
        """The tenant's requests, newest first, along one of the table's indexes."""
        query = select(scim_activity).where(_c.tenant_id == tenant_id)
        if before is not None:
            at, request_id = before
            query = query.where(or_(_c.at < at, and_(_c.at == at, _c.id < request_id)))
        if failures_only:
            # Written as the partial index's predicate, so that the planner uses it.
            query = query.where(_c.status >= 400)
        if token_name is not None:
            query = query.where(_c.token_name == token_name)
        if method is not None:
            query = query.where(_c.method == method)
        if status is not None:
            query = query.where(_c.status == status)
        query = query.order_by(_c.at.desc(), _c.id.desc()).limit(max(limit, 0))
        return [_entry(row) for row in self._conn.execute(query)]

    @_writing
    def prune_scim_activity(
        self, tenant_id: str, *, before: datetime, keep: int, limit: int = 1000
    ) -> int:
        """Delete up to ``limit`` of the tenant's oldest requests past its time or size bound."""
        # The newest request past the size bound: a walk of ``keep`` index
        # entries, bounded by the bound itself.
        boundary = self._conn.execute(
            select(_c.at, _c.id)
            .where(_c.tenant_id == tenant_id)
            .order_by(_c.at.desc(), _c.id.desc())
            .offset(max(keep, 0))
            .limit(1)
        ).first()
        expired = _c.at < before
        if boundary is not None:
            expired = or_(
                expired,
                _c.at < boundary.at,
                and_(_c.at == boundary.at, _c.id <= boundary.id),
            )
        window = (
            select(_c.id)
            .where(_c.tenant_id == tenant_id, expired)
            .order_by(_c.at, _c.id)
            .limit(max(limit, 0))
        )
        result = self._conn.execute(
            delete(scim_activity).where(
                _c.tenant_id == tenant_id, _c.id.in_(window.scalar_subquery())
            )
        )
        return int(result.rowcount)
