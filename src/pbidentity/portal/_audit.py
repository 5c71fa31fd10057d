"""The audit section: a workspace's events, newest first, filtered and paged by sequence number.

The page reads the audit trail through :meth:`Transaction.list_events
<pbidentity.storage.EventStore.list_events>`: the workspace's events only,
walked backwards along the (tenant, seq) index, so that a later page costs
what the first does. The filters come from a GET form (no CSRF: reading
changes nothing) and a bad one is a :class:`ValueError` the handler turns
into a 400 page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from typing import TYPE_CHECKING
from typing import Any

import attrs

from pbidentity._lifecycle import tenant_by_slug
from pbidentity.events import EVENT_TYPES

if TYPE_CHECKING:
    from pbidentity._front import PbIdentity

__all__ = ["EVENTS_PER_PAGE", "AuditPage", "AuditRow", "audit_page"]

#: Events on one page of the audit section.
EVENTS_PER_PAGE = 50

#: The event types the filter offers, grouped as the events module lists them.
TYPES: tuple[str, ...] = tuple(sorted(EVENT_TYPES))

# An actor is a short name (``token:okta``, ``portal:user-1``); more is a typo.
_MAX_ACTOR = 200
# The details column shows what changed, not a whole profile.
_MAX_DETAILS = 300
# The member or group as the change left it: the member's page shows it.
_SNAPSHOTS = frozenset({"member", "group"})


@attrs.frozen
class AuditRow:
    """One event as the audit table shows it."""

    seq: int
    occurred: str
    actor: str
    type: str
    subject_id: str
    details: str
    #: The member's userName or the group's name, where known: what an admin recognises.
    subject_name: str = ""


@attrs.frozen
class AuditPage:
    """One page of the workspace's events and the filters that chose them."""

    workspace: str
    events: tuple[AuditRow, ...]
    type: str
    actor: str
    since: str
    until: str
    types: tuple[str, ...] = TYPES
    #: The ``before`` of the next (older) page, or ``None`` on the last one.
    next_before: int | None = None
    later_page: bool = False
    section: str = "audit"

    @property
    def filters(self) -> dict[str, str]:
        """The filters as query parameters, for the pager's links."""
        return {"type": self.type, "actor": self.actor, "from": self.since, "to": self.until}

    @property
    def filtered(self) -> bool:
        """Whether any filter is set."""
        return any(self.filters.values())


def _day(text: str, name: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name} {text[:40]!r} is not a date (YYYY-MM-DD)") from None


def _details(data: Mapping[str, Any]) -> str:
    shown = {key: value for key, value in data.items() if key not in _SNAPSHOTS}
    text = ", ".join(
        f"{key}: {json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)}"
        for key, value in sorted(shown.items())
    )
    return text if len(text) <= _MAX_DETAILS else text[: _MAX_DETAILS - 1] + "…"


def _recorded_name(data: Mapping[str, Any]) -> str:
    name = data.get("userName") or data.get("displayName") or ""
    return name if isinstance(name, str) else ""


def audit_page(
    identity: PbIdentity,
    workspace: str,
    *,
    event_type: str = "",
    actor: str = "",
    since: str = "",
    until: str = "",
    before: str = "",
) -> AuditPage:
    """One page of the workspace's events, newest first, matching the filters.

    ``since`` and ``until`` are days (``YYYY-MM-DD``, UTC), both included;
    ``before`` is the sequence number the page starts below (from the
    previous page's link). A filter that cannot be read is a
    :class:`ValueError` saying which.
    """
    event_type = event_type.strip()
    if event_type and event_type not in EVENT_TYPES:
        raise ValueError(f"there is no event type {event_type[:60]!r}")
    actor = actor.strip()
    if len(actor) > _MAX_ACTOR:
        raise ValueError(f"an actor is at most {_MAX_ACTOR} characters")
    first_day = _day(since.strip(), "from")
    last_day = _day(until.strip(), "to")
    if first_day and last_day and last_day < first_day:
        raise ValueError("the time range ends before it starts")
    start = None if before == "" else _position(before)
    with identity.storage.transaction(write=False) as tx:
        tenant = tenant_by_slug(tx, workspace)
        found = tx.list_events(
            tenant.id,
            limit=EVENTS_PER_PAGE + 1,
            before=start,
            types=[event_type] if event_type else None,
            actor=actor or None,
            since=None if first_day is None else datetime.combine(first_day, time(), UTC),
            until=(
                None
                if last_day is None
                else datetime.combine(last_day + timedelta(days=1), time(), UTC)
            ),
            newest_first=True,
        )
        shown = found[:EVENTS_PER_PAGE]
        # One read for the page's members (a bound list of ids); a deleted
        # member keeps the name its event recorded.
        ids = {e.subject_id for e in shown if e.type.startswith("member.") and e.subject_id}
        names = {m.id: m.user_name for m in tx.get_members(tenant.id, ids)} if ids else {}
    rows = tuple(
        AuditRow(
            seq=event.seq or 0,
            occurred=event.occurred.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            actor=event.actor,
            type=event.type,
            subject_id=event.subject_id,
            details=_details(event.data),
            subject_name=names.get(event.subject_id) or _recorded_name(event.data),
        )
        for event in shown
    )
    more = len(found) > EVENTS_PER_PAGE
    return AuditPage(
        workspace=workspace,
        events=rows,
        type=event_type,
        actor=actor,
        since="" if first_day is None else first_day.isoformat(),
        until="" if last_day is None else last_day.isoformat(),
        next_before=rows[-1].seq if more and rows else None,
        later_page=start is not None,
    )


def _position(text: str) -> int:
    """The ``before`` of a page link: a positive sequence number."""
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) < 1:
        raise ValueError("this page of the audit trail does not exist")
    return int(text)
