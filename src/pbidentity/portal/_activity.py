"""The provisioning activity page: a workspace's SCIM requests, newest first, filtered and paged.

It answers "why did the identity provider say the push failed?": each
request's time, token, method, path, status and the error detail the
identity provider got, in full. It reads through :meth:`Transaction.scim_activity
<pbidentity.storage.ActivityStore.scim_activity>`: the workspace's requests
only, walked backwards along its (tenant, time) index (or the failures' or a
token's), paged by the ``(time, id)`` of the last row shown, so that a later
page costs what the first does. Filters come from a GET form (reading changes
nothing, so no CSRF); a bad one is a :class:`ValueError` the handler turns
into a 400 page.
"""

from __future__ import annotations

import re
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import TYPE_CHECKING

import attrs

from pbidentity._lifecycle import tenant_by_slug
from pbidentity.domain import ScimActivity

if TYPE_CHECKING:
    from pbidentity._front import PbIdentity

__all__ = ["REQUESTS_PER_PAGE", "ActivityPage", "ActivityRow", "activity_page"]

#: Requests on one page of the activity.
REQUESTS_PER_PAGE = 50

#: The methods the filter offers: the ones SCIM clients send.
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

# A token's name is at most this long (the admin's own limit).
_MAX_TOKEN = 100
# A page link's position: the time of the last row shown, then its id.
_CURSOR = re.compile(r"(?P<at>[0-9T:.+\-]{19,40})_(?P<id>[0-9A-Za-z\-]{1,64})")


@attrs.frozen
class ActivityRow:
    """One request as the activity table shows it."""

    id: str
    at: str
    token: str
    method: str
    path: str
    status: int
    scim_type: str
    detail: str
    duration: str
    resource_id: str
    failed: bool
    request_body: str
    response_body: str


@attrs.frozen
class ActivityPage:
    """One page of the workspace's requests, the filters that chose them, and the bounds."""

    workspace: str
    rows: tuple[ActivityRow, ...]
    failures: bool
    token: str
    method: str
    status: str
    #: The workspace's tokens, for the filter.
    tokens: tuple[str, ...]
    #: How long and how many requests are kept, for the page to say
    #: (empty when the app records none).
    retention: str
    max_requests: int
    methods: tuple[str, ...] = METHODS
    #: The ``before`` of the next (older) page, or ``None`` on the last one.
    next_before: str | None = None
    later_page: bool = False
    section: str = "scim_activity"

    @property
    def filters(self) -> dict[str, str]:
        """The filters as query parameters, for the pager's links."""
        shown = {
            "failures": "on" if self.failures else "",
            "token": self.token,
            "method": self.method,
            "status": self.status,
        }
        return {key: value for key, value in shown.items() if value}

    @property
    def filtered(self) -> bool:
        """Whether any filter is set."""
        return bool(self.filters)


def _row(entry: ScimActivity) -> ActivityRow:
    return ActivityRow(
        id=entry.id,
        at=entry.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        token=entry.token_name or "",
        method=entry.method,
        path=entry.path,
        status=entry.status,
        scim_type=entry.scim_type or "",
        detail=entry.detail or "",
        duration=f"{entry.duration_ms:.1f} ms",
        # Shown when the path does not say it already (a created resource).
        resource_id=""
        if not entry.resource_id or entry.resource_id in entry.path
        else entry.resource_id,
        failed=entry.failed,
        request_body=entry.request_body or "",
        response_body=entry.response_body or "",
    )


def activity_page(
    identity: PbIdentity,
    workspace: str,
    *,
    failures: str = "",
    token: str = "",
    method: str = "",
    status: str = "",
    before: str = "",
) -> ActivityPage:
    """One page of the workspace's SCIM requests, newest first, matching the filters.

    ``failures`` (``on``) keeps the answers of status 400 and above;
    ``token`` a token's name, ``method`` an HTTP method, ``status`` one
    status; ``before`` is where the page starts (from the previous page's
    link). A filter that cannot be read is a :class:`ValueError` saying which.
    """
    failures_only = failures.strip().lower() in ("on", "1", "true", "yes")
    token = token.strip()
    if len(token) > _MAX_TOKEN:
        raise ValueError(f"a token's name is at most {_MAX_TOKEN} characters")
    method = method.strip().upper()
    if method and method not in METHODS:
        raise ValueError(f"there is no method {method[:20]!r} to filter on")
    status = status.strip()
    if status and not (status.isascii() and status.isdigit() and 100 <= int(status) <= 599):
        raise ValueError(f"status {status[:20]!r} is not an HTTP status (100 to 599)")
    start = None if before == "" else _position(before)
    recorder = identity.scim.activity
    if recorder is not None and recorder.pending():
        # What this instance still buffers: the admin looking right after a
        # push expects to see it.
        recorder.flush()
    with identity.storage.transaction(write=False) as tx:
        tenant = tenant_by_slug(tx, workspace)
        found = tx.scim_activity(
            tenant.id,
            limit=REQUESTS_PER_PAGE + 1,
            before=start,
            failures_only=failures_only,
            token_name=token or None,
            method=method or None,
            status=int(status) if status else None,
        )
        tokens = tuple(sorted({t.name for t in tx.list_tokens(tenant.id)}))
    shown = found[:REQUESTS_PER_PAGE]
    more = len(found) > REQUESTS_PER_PAGE
    last = shown[-1] if shown else None
    config = identity.scim.config.activity
    return ActivityPage(
        workspace=workspace,
        rows=tuple(_row(entry) for entry in shown),
        failures=failures_only,
        token=token,
        method=method,
        status=status,
        tokens=tokens,
        retention="" if config is None else _span(config.retention),
        max_requests=0 if config is None else config.max_per_workspace,
        next_before=(
            f"{last.at.astimezone(UTC).isoformat(timespec='microseconds')}_{last.id}"
            if more and last is not None
            else None
        ),
        later_page=start is not None,
    )


def _span(span: timedelta) -> str:
    """A retention as a person says it: ``14 days``, ``12 hours``, ``90 minutes``."""
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


def _position(text: str) -> tuple[datetime, str]:
    """The ``before`` of a page link: the time and id of the last request shown."""
    matched = _CURSOR.fullmatch(text)
    if matched is None:
        raise ValueError("this page of the activity does not exist")
    try:
        at = datetime.fromisoformat(matched["at"])
    except ValueError:
        raise ValueError("this page of the activity does not exist") from None
    if at.tzinfo is None:
        raise ValueError("this page of the activity does not exist")
    return at, matched["id"]
