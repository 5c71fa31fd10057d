"""The event outbox in a SQL transaction."""

from __future__ import annotations

from collections.abc import Collection
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from typing import NoReturn

import orjson
from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.sql.elements import TextClause

from pbidentity.domain import Event
from pbidentity.exceptions import NotFoundError
from pbidentity.storage._evaluate import dump_document
from pbidentity.storage.sql._rows import _event
from pbidentity.storage.sql._schema import _utc_text
from pbidentity.storage.sql._schema import events
from pbidentity.storage.sql._statements import _INSERT_EVENT_IF_TENANT
from pbidentity.storage.sql._statements import _INSERT_EVENTS_POSTGRESQL
from pbidentity.storage.sql._statements import _INSERT_EVENTS_SQLITE
from pbidentity.storage.sql._statements import _chunks
from pbidentity.storage.sql._unit import _guarded
from pbidentity.storage.sql._unit import _Unit
from pbidentity.storage.sql._unit import _writing

# The table, under a name the protocol's ``events`` parameter does not hide.
_EVENTS = events

# From this many events, one statement inserts them all (a group change's
# member.role_changed events); fewer, the common write's one or two, take an
# executemany on SQLite, a little cheaper there. PostgreSQL always takes the
# one statement: a round trip either way, and through Core (a host app's
# cursor listeners) psycopg's executemany reports no row count to check.
_BULK_EVENTS = 8


def _event_rows(events: Sequence[Event]) -> str:
    """The events' column values as one JSON array of rows, each value as its column holds it."""
    return orjson.dumps(
        [
            (
                e.id,
                e.tenant_id,
                e.type,
                e.subject_id,
                e.actor,
                _utc_text(e.occurred),
                dump_document(e.data),
            )
            for e in events
        ]
    ).decode()


def _event_dicts(events: Sequence[Event]) -> list[dict[str, Any]]:
    """The events' rows as executemany binds them, one mapping per event."""
    return [
        {
            "id": e.id,
            "tenant_id": e.tenant_id,
            "type": e.type,
            "subject_id": e.subject_id,
            "actor": e.actor,
            "occurred": e.occurred,
            "data": dump_document(e.data),
            "delivered": None,
        }
        for e in events
    ]


class _Outbox(_Unit):
    """Events appended with the change that made them, delivered later."""

    @_writing
    def add_events(self, events: Sequence[Event], *, last: bool = False) -> None:
        """Append events to the outbox and audit trail, in order.

        With ``last``, on PostgreSQL (psycopg, statements on the hot path),
        they are kept until the commit, which sends them and COMMIT in one
        pipeline (see SqlStorage.transaction): the outbox write that ends
        every change costs no round trip of its own.
        """
        if not events:
            return
        if last and self._pipelines:
            self._last_events = [*(self._last_events or ()), *_event_dicts(events)]
            return
        if len(events) >= _BULK_EVENTS or self._dialect == "postgresql":
            # One statement whatever their number; through Core too, where
            # psycopg's executemany reports no row count to check.
            inserted = self._run(self._bulk_insert_events(), {"b_rows": _event_rows(events)})
            if inserted != len(events):
                self._refuse_events([e.id for e in events])
            return
        self._insert_events(_event_dicts(events))

    def _insert_events(self, rows: list[dict[str, Any]]) -> None:
        """Write event rows now; ``NotFoundError`` (and none written) for a missing tenant."""
        # executemany runs one INSERT per row, in order, so seq follows the
        # order given (a multi-row VALUES would not promise it).
        if self._run_many(_INSERT_EVENT_IF_TENANT, rows) != len(rows):
            self._refuse_events([row["id"] for row in rows])

    def _refuse_events(self, ids: list[str]) -> NoReturn:
        """Take back the events of a refused batch and say why."""
        for chunk in _chunks(ids):
            self._conn.execute(delete(_EVENTS).where(_EVENTS.c.id.in_(chunk)))
        raise NotFoundError("an event names a tenant that does not exist")

    def _bulk_insert_events(self) -> TextClause:
        if self._dialect == "postgresql":
            return _INSERT_EVENTS_POSTGRESQL
        return _INSERT_EVENTS_SQLITE

    @_guarded
    def pending_events(self, limit: int = 100) -> Sequence[Event]:
        """The oldest undelivered events of every tenant, in ``seq`` order."""
        statement = (
            select(events).where(events.c.delivered.is_(None)).order_by(events.c.seq).limit(limit)
        )
        return [_event(row) for row in self._conn.execute(statement)]

    @_writing
    def mark_delivered(self, seqs: Collection[int], when: datetime) -> None:
        """Record that these events were handed to every handler."""
        for chunk in _chunks(seqs):
            self._conn.execute(
                update(events)
                .where(events.c.seq.in_(chunk), events.c.delivered.is_(None))
                .values(delivered=when)
            )

    @_guarded
    def list_events(
        self,
        tenant_id: str,
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
        """The tenant's events with ``seq`` above ``after``, oldest first, filtered."""
        # Every filter narrows a walk of ix_events_tenant (tenant, seq) in
        # page order: a page reads its rows and the ones the filters skip.
        statement = select(events).where(events.c.tenant_id == tenant_id, events.c.seq > after)
        if before is not None:
            statement = statement.where(events.c.seq < before)
        if types is not None:
            statement = statement.where(events.c.type.in_(sorted(types)))
        if actor is not None:
            statement = statement.where(events.c.actor == actor)
        if since is not None:
            statement = statement.where(events.c.occurred >= since)
        if until is not None:
            statement = statement.where(events.c.occurred < until)
        order = events.c.seq.desc() if newest_first else events.c.seq
        statement = statement.order_by(order).limit(limit)
        return [_event(row) for row in self._conn.execute(statement)]

    @_writing
    def prune_events(self, delivered_before: datetime, *, limit: int = 1000) -> int:
        """Delete delivered events delivered before ``delivered_before``; returns how many."""
        # The window is the oldest delivered rows by primary key: a short
        # range read, however long the trail, and no index on ``delivered``
        # to keep up on every delivery.
        window = (
            select(events.c.seq)
            .where(events.c.delivered.is_not(None))
            .order_by(events.c.seq)
            .limit(limit)
        )
        result = self._conn.execute(
            delete(events).where(
                events.c.seq.in_(window.scalar_subquery()),
                events.c.delivered < delivered_before,
            )
        )
        return int(result.rowcount)
