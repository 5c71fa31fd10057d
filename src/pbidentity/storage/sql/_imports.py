"""Link imports in a SQL transaction: a plan in chunks, claimed and applied one chunk at a time."""

from __future__ import annotations

import json
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from pbidentity.domain import LinkImport
from pbidentity.storage import _conflicts
from pbidentity.storage.sql._errors import _is_foreign_key
from pbidentity.storage.sql._schema import link_import_chunks
from pbidentity.storage.sql._schema import link_imports
from pbidentity.storage.sql._unit import _guarded
from pbidentity.storage.sql._unit import _Unit
from pbidentity.storage.sql._unit import _writing


def _import(row: Any) -> LinkImport:
    return LinkImport(
        id=row.id,
        tenant_id=row.tenant_id,
        source=row.source,
        created_by=row.created_by,
        created=row.created,
        expires=row.expires,
        counts=json.loads(row.counts),
        chunks=json.loads(row.chunks),
        applied=row.applied,
        result=json.loads(row.result),
        started=row.started,
        finished=row.finished,
        complete=row.complete,
    )


def _counts(values: Mapping[str, int]) -> str:
    return json.dumps(dict(values), sort_keys=True)


class _LinkImports(_Unit):
    """Link imports: added with their chunks, listed, claimed chunk by chunk, purged."""

    @_writing
    def add_link_import(self, record: LinkImport) -> None:
        """Insert a link import."""
        row = {
            "tenant_id": record.tenant_id,
            "id": record.id,
            "source": record.source,
            "created_by": record.created_by,
            "created": record.created,
            "expires": record.expires,
            "counts": _counts(record.counts),
            "chunks": _counts(record.chunks),
            "applied": record.applied,
            "result": _counts(record.result),
            "started": record.started,
            "finished": record.finished,
            "complete": record.complete,
        }
        try:
            with self._savepoint():
                self._conn.execute(insert(link_imports), [row])
        except IntegrityError as error:
            if _is_foreign_key(error):
                raise _conflicts.missing("tenant", record.tenant_id) from error
            raise _conflicts.id_taken("link import", record.id) from error

    @_writing
    def add_link_import_chunks(
        self, tenant_id: str, import_id: str, chunks: Sequence[tuple[str, int, str]]
    ) -> None:
        """Store chunks of an import's plan."""
        if not chunks:
            return
        rows = [
            {
                "tenant_id": tenant_id,
                "import_id": import_id,
                "list": name,
                "position": position,
                "steps": steps,
                "outcome": None,
            }
            for name, position, steps in chunks
        ]
        try:
            with self._savepoint():
                self._conn.execute(insert(link_import_chunks), rows)
        except IntegrityError as error:
            if _is_foreign_key(error):
                raise _conflicts.missing("link import", import_id) from error
            raise _conflicts.id_taken("link import chunk", import_id) from error

    @_guarded
    def link_imports(self, tenant_id: str) -> Sequence[LinkImport]:
        """The tenant's imports, newest first."""
        rows = self._conn.execute(
            select(link_imports)
            .where(link_imports.c.tenant_id == tenant_id)
            .order_by(link_imports.c.created.desc(), link_imports.c.id)
        ).all()
        return [_import(row) for row in rows]

    @_guarded
    def get_link_import(self, tenant_id: str, import_id: str) -> LinkImport | None:
        """One of the tenant's imports."""
        row = self._conn.execute(
            select(link_imports).where(
                link_imports.c.tenant_id == tenant_id, link_imports.c.id == import_id
            )
        ).first()
        return None if row is None else _import(row)

    @_guarded
    def link_import_chunk(
        self, tenant_id: str, import_id: str, list_name: str, position: int
    ) -> tuple[str, str | None] | None:
        """A chunk's steps and outcome."""
        c = link_import_chunks.c
        row = self._conn.execute(
            select(c.steps, c.outcome).where(
                c.tenant_id == tenant_id,
                c.import_id == import_id,
                c.list == list_name,
                c.position == position,
            )
        ).first()
        return None if row is None else (row.steps, row.outcome)

    @_writing
    def start_link_import(self, tenant_id: str, import_id: str, when: datetime) -> bool:
        """Record when applying was asked for; true the first time."""
        changed = self._conn.execute(
            update(link_imports)
            .where(
                link_imports.c.tenant_id == tenant_id,
                link_imports.c.id == import_id,
                link_imports.c.started.is_(None),
            )
            .values(started=when)
        ).rowcount
        return bool(changed)

    @_writing
    def claim_link_import_chunk(self, tenant_id: str, import_id: str, position: int) -> bool:
        """Move ``applied`` past ``position`` if it is there."""
        # One conditional UPDATE: of two units claiming the same chunk, the
        # second waits for the first's row lock (PostgreSQL) or write lock
        # (SQLite), then finds ``applied`` moved on and changes nothing.
        changed = self._conn.execute(
            update(link_imports)
            .where(
                link_imports.c.tenant_id == tenant_id,
                link_imports.c.id == import_id,
                link_imports.c.applied == position,
            )
            .values(applied=position + 1)
        ).rowcount
        return bool(changed)

    @_writing
    def record_link_import_chunk(
        self,
        tenant_id: str,
        import_id: str,
        position: int,
        *,
        outcome: str,
        result: Mapping[str, int],
        finished: datetime | None,
    ) -> None:
        """Keep a change chunk's outcome and the import's result."""
        c = link_import_chunks.c
        changed = self._conn.execute(
            update(link_import_chunks)
            .where(
                c.tenant_id == tenant_id,
                c.import_id == import_id,
                c.list == "changes",
                c.position == position,
            )
            .values(outcome=outcome)
        ).rowcount
        if not changed:
            raise _conflicts.missing("link import chunk", f"{import_id}/{position}")
        values: dict[str, Any] = {"result": _counts(result)}
        if finished is not None:
            values["finished"] = finished
        self._conn.execute(
            update(link_imports)
            .where(link_imports.c.tenant_id == tenant_id, link_imports.c.id == import_id)
            .values(**values)
        )

    @_writing
    def complete_link_import(self, tenant_id: str, import_id: str) -> bool:
        """Mark the import complete."""
        changed = self._conn.execute(
            update(link_imports)
            .where(link_imports.c.tenant_id == tenant_id, link_imports.c.id == import_id)
            .values(complete=True)
        ).rowcount
        return bool(changed)

    @_writing
    def delete_link_import(self, tenant_id: str, import_id: str) -> bool:
        """Delete an import and its chunks."""
        self._conn.execute(
            delete(link_import_chunks).where(
                link_import_chunks.c.tenant_id == tenant_id,
                link_import_chunks.c.import_id == import_id,
            )
        )
        gone = self._conn.execute(
            delete(link_imports).where(
                link_imports.c.tenant_id == tenant_id, link_imports.c.id == import_id
            )
        ).rowcount
        return bool(gone)

    @_writing
    def purge_link_imports(self, now: datetime) -> int:
        """Delete every expired import with its chunks."""
        expired = self._conn.execute(
            select(link_imports.c.tenant_id, link_imports.c.id).where(link_imports.c.expires <= now)
        ).all()
        for tenant_id, import_id in expired:
            self.delete_link_import(tenant_id, import_id)
        return len(expired)
