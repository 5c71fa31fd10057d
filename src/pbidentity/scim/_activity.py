"""The provisioning activity: every SCIM request a workspace received, recorded cheaply.

What an IT admin needs to answer "why did Okta say the push failed?": each
request's time, token, method, path, status and the error detail the identity
provider got (:class:`~pbidentity.domain.ScimActivity`). Never the
Authorization header, never a body unless the host app asks
(``ActivityConfig(keep_bodies=True)``), and then bounded with passwords and
other secrets redacted.

Recording must cost a SCIM request next to nothing and must never fail it.
A request appends its record to :class:`ActivityRecorder`'s bounded
in-process buffer; the request that finds the buffer due (a second since the
last write, a full batch, or a failure, which an admin is waiting to see)
writes all of it as one batch (one statement executed for every row) in one
short transaction of its own, after its answer was computed, and prunes a
workspace past its bounds once a tenth of them came in. The write happens
in the request's thread, between its own transactions, so that it never
competes with them for SQLite's write lock. A write that fails is logged
and the batch dropped; a full buffer drops new requests (counted in the
log). Each app instance writes its own rows, so several instances need no
coordination. :meth:`ActivityRecorder.prune` sweeps every workspace (idle
ones too) in short batches, hourly in a thread of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from datetime import datetime
from datetime import timedelta
from typing import Any

import attrs
import orjson

from pbidentity._clock import Clock
from pbidentity._clock import utc_now
from pbidentity.domain import ScimActivity
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.storage import Storage

__all__ = ["DEFAULT_ACTIVITY_RETENTION", "ActivityConfig", "ActivityRecorder", "activity_entry"]

log = logging.getLogger("pbidentity.scim.activity")

#: How long a workspace's SCIM requests are kept unless the host app says:
#: two weeks covers "the push failed last week" and a weekly review.
DEFAULT_ACTIVITY_RETENTION = timedelta(days=14)

# What one recorded request may hold: a path (with its query, a filter is
# not a secret but may be long), an error detail.
_MAX_PATH = 1000
_MAX_DETAIL = 4000
# Keys whose values are never kept, whatever the body (case-insensitive, as a
# substring: "password", "newPassword", "clientSecret", "accessToken").
_SECRET_KEYS = ("password", "secret", "token", "credential")
_REDACTED = "[redacted]"
# Rows deleted per write when pruning, as the event trail's prune does.
_PRUNE_BATCH = 1000


def _positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"ActivityConfig.{attribute.name} must be positive, not {value!r}")


def _positive_span(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise ValueError(f"ActivityConfig.{attribute.name} must be a positive timedelta")


@attrs.frozen(kw_only=True)
class ActivityConfig:
    """What the host app decides about the provisioning activity (``ScimConfig.activity``).

    A workspace keeps its requests for ``retention`` and at most
    ``max_per_workspace`` of them (about 550 bytes each without bodies, so
    10,000 requests take about 5.5 MB). Requests are buffered in process and
    written together once ``flush_interval`` seconds have passed or
    ``flush_size`` wait, failures at once. ``keep_bodies`` also keeps each
    request's and response's body, redacted and cut at ``max_body_bytes``:
    for a connection being debugged, not for every day.
    """

    retention: timedelta = attrs.field(default=DEFAULT_ACTIVITY_RETENTION, validator=_positive_span)
    max_per_workspace: int = attrs.field(default=10_000, validator=_positive)
    keep_bodies: bool = False
    max_body_bytes: int = attrs.field(default=8 * 1024, validator=_positive)
    flush_interval: float = attrs.field(default=1.0, validator=_positive)
    flush_size: int = attrs.field(default=1000, validator=_positive)
    #: Requests waiting in the buffer at most (when the database is down);
    #: beyond it new ones are dropped rather than grow the process.
    max_buffered: int = attrs.field(default=10_000, validator=_positive)


@attrs.define
class Trace:
    """What the service learns about a request while serving it: whose it was."""

    request_id: str
    tenant_id: str | None = None
    token_name: str | None = None


def activity_entry(
    config: ActivityConfig,
    request: Request,
    response: Response,
    trace: Trace,
    *,
    at: datetime,
    duration: float,
    target: str | None,
) -> ScimActivity | None:
    """The record of one answered request, or ``None`` when no workspace is known for it."""
    if trace.tenant_id is None:
        return None
    scim_type = detail = None
    if response.status >= 400:
        scim_type, detail = _error_of(response.body)
    resource_id = target
    if resource_id is None and response.status == 201:
        location = response.header("location")
        if location:
            resource_id = location.rstrip("/").rsplit("/", 1)[-1] or None
    request_body = response_body = None
    if config.keep_bodies:
        request_body = _kept_body(request.body, config.max_body_bytes)
        response_body = _kept_body(response.body, config.max_body_bytes)
    return ScimActivity(
        tenant_id=trace.tenant_id,
        id=trace.request_id,
        at=at,
        token_name=trace.token_name,
        method=request.method.upper()[:16],
        path=_shown_path(request),
        status=response.status,
        scim_type=scim_type,
        detail=detail,
        duration_ms=round(duration * 1000, 3),
        resource_id=None if resource_id is None else resource_id[:200],
        request_body=request_body,
        response_body=response_body,
    )


def _shown_path(request: Request) -> str:
    # Decoded, as a person reads it (a filter with its quotes and spaces):
    # it is shown, never requested again.
    path = request.path or "/"
    if request.query:
        path += "?" + "&".join(f"{name}={value}" for name, value in request.query)
    return path if len(path) <= _MAX_PATH else path[: _MAX_PATH - 1] + "…"


def _error_of(body: bytes) -> tuple[str | None, str | None]:
    """The ``scimType`` and ``detail`` of an RFC 7644 Error body (the service's own)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(document, dict):
        return None, None
    scim_type = document.get("scimType")
    detail = document.get("detail")
    return (
        scim_type[:100] if isinstance(scim_type, str) else None,
        detail[:_MAX_DETAIL] if isinstance(detail, str) else None,
    )


def redact(document: Any, *, secret_value: bool = False) -> Any:
    """The document with every secret-looking value replaced, however deep.

    A value goes when its key names a secret (``password``, ``*Secret``,
    ``*Token``, ``credential*``), and so does a PATCH operation's ``value``
    when its ``path`` does.
    """
    if secret_value:
        return _REDACTED
    if isinstance(document, list):
        return [redact(item) for item in document]
    if not isinstance(document, dict):
        return document
    path = document.get("path")
    patch_secret = isinstance(path, str) and _is_secret(path)
    return {
        key: redact(value, secret_value=_is_secret(key) or (patch_secret and key == "value"))
        for key, value in document.items()
    }


def _is_secret(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_KEYS)


def _kept_body(body: bytes, limit: int) -> str | None:
    if not body:
        return None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        # Not JSON: nothing to redact reliably, so nothing is kept.
        return f"({len(body)} bytes, not JSON: not kept)"
    text = orjson.dumps(redact(document)).decode()
    if len(text.encode()) <= limit:
        return text
    cut = text.encode()[:limit].decode(errors="ignore")
    return f"{cut}… ({len(body)} bytes in all)"


class ActivityRecorder:
    """Buffers the SCIM requests of this app instance and writes them in batches.

    :meth:`record` appends to the buffer; the request that finds the buffer
    due (``flush_interval`` seconds since the last write, ``flush_size``
    requests waiting, or a failure, which an admin is waiting to see) writes
    it, after its own answer was computed, in one short transaction of its
    own. :meth:`flush` writes it now; :meth:`close` (which
    :meth:`PbIdentity.close <pbidentity.PbIdentity.close>` calls) writes
    what is left. Every ``prune_every`` seconds a write also starts a sweep
    of every workspace past its bounds (:meth:`prune`) in a thread of its
    own, for the idle workspaces no write prunes.
    """

    def __init__(
        self,
        storage: Storage,
        config: ActivityConfig,
        *,
        clock: Clock = utc_now,
        prune_every: float = 3600.0,
    ) -> None:
        self.storage = storage
        self.config = config
        self.clock = clock
        self.prune_every = prune_every
        self._buffer: list[ScimActivity] = []
        self._lock = threading.Lock()
        # One batch written at a time: a request finding another one writing
        # goes on (its record waits for the next batch) rather than wait.
        self._writing = threading.Lock()
        self._last_flush = time.monotonic()
        self._last_sweep = time.monotonic()
        self._sweeper: threading.Thread | None = None
        self._dropped = 0
        # Rows written per workspace since it was last pruned.
        self._unpruned: Counter[str] = Counter()

    def record(self, entry: ScimActivity) -> None:
        """Keep one request; write the buffer when it is due. Never raises."""
        with self._lock:
            if len(self._buffer) >= self.config.max_buffered:
                self._dropped += 1
                return
            self._buffer.append(entry)
            # A failure is written at once, for the admin waiting to see it;
            # but not a 503: the database failed that request, and a batch
            # written now would wait on it too (a commit stuck there holds
            # the answer back), so it goes with the next batch.
            due = (
                (entry.status >= 400 and entry.status != 503)
                or len(self._buffer) >= self.config.flush_size
                or time.monotonic() - self._last_flush >= self.config.flush_interval
            )
        if due and self._writing.acquire(blocking=False):
            try:
                self._flush()
            finally:
                self._writing.release()

    def flush(self) -> int:
        """Write every buffered request now (before a page reads them); returns how many."""
        with self._writing:
            return self._flush()

    def pending(self) -> int:
        """How many requests wait in the buffer."""
        with self._lock:
            return len(self._buffer)

    def close(self) -> None:
        """Write what is buffered, and wait for a sweep under way."""
        self.flush()
        sweeper = self._sweeper
        if sweeper is not None:
            sweeper.join(timeout=30)

    def _sweep_in_background(self) -> None:
        if self._sweeper is not None and self._sweeper.is_alive():
            return
        self._last_sweep = time.monotonic()

        def sweep() -> None:
            try:
                self.prune()
            except Exception:
                log.exception("pruning the SCIM activity failed; retried later")

        self._sweeper = threading.Thread(
            target=sweep, name="pbidentity-activity-sweep", daemon=True
        )
        self._sweeper.start()

    def _flush(self) -> int:
        with self._lock:
            batch, self._buffer = self._buffer, []
            self._last_flush = time.monotonic()
            dropped, self._dropped = self._dropped, 0
        if dropped:
            log.warning("the activity buffer was full: %d SCIM requests were not recorded", dropped)
        if not batch:
            return 0
        self._unpruned.update(entry.tenant_id for entry in batch)
        # A workspace is pruned once a tenth of its bound came in (at most
        # 1,000 rows): finding where the bound falls walks the bound's rows
        # of an index, once for many rows deleted; never far past the bound.
        due = max(1, min(_PRUNE_BATCH, self.config.max_per_workspace // 10))
        cutoff = self.clock() - self.config.retention
        try:
            with self.storage.transaction() as tx:
                tx.add_scim_activity(batch)
                for tenant_id, count in list(self._unpruned.items()):
                    if count < due:
                        continue
                    # Twice what came in: catches up after the bounds were lowered.
                    tx.prune_scim_activity(
                        tenant_id,
                        before=cutoff,
                        keep=self.config.max_per_workspace,
                        limit=min(2 * count, 2 * _PRUNE_BATCH),
                    )
                    del self._unpruned[tenant_id]
        except Exception as error:
            # The requests were answered already; their record is not worth
            # failing or slowing anything for.
            log.warning("could not record %d SCIM requests: %s", len(batch), error)
            return 0
        if time.monotonic() - self._last_sweep >= self.prune_every:
            self._sweep_in_background()
        return len(batch)

    def prune(self, *, batch: int = _PRUNE_BATCH, pause: float | None = None) -> int:
        """Delete every workspace's requests past the bounds; returns how many.

        For idle workspaces, which no flush prunes: one short write
        transaction per ``batch`` rows, then a ``pause`` (by default as long
        as the batch took, at least 10 ms) so that SCIM writes waiting for
        SQLite's write lock get it between two batches.
        """
        with self.storage.transaction(write=False) as tx:
            tenant_ids = [tenant.id for tenant in tx.list_tenants()]
        cutoff = self.clock() - self.config.retention
        pruned = 0
        for tenant_id in tenant_ids:
            while True:
                started = time.monotonic()
                with self.storage.transaction() as tx:
                    deleted = tx.prune_scim_activity(
                        tenant_id, before=cutoff, keep=self.config.max_per_workspace, limit=batch
                    )
                pruned += deleted
                if deleted < batch:
                    break
                time.sleep(max(time.monotonic() - started, 0.01) if pause is None else pause)
        return pruned
