"""Delivering the outbox: the host app's handlers get every event at least once.

Events are written in the transaction of the change they describe (see
:class:`~pbidentity.domain.Event`), so a committed change always has its
events, and a rolled-back one never has. :class:`EventDispatcher` hands the
undelivered ones to the registered handlers, oldest first, and marks them
delivered only after every handler returned. A crash between the commit and
the delivery, or a handler that raises, leaves them pending: the next
:meth:`~EventDispatcher.deliver_pending` delivers them again. Handlers must
therefore tolerate seeing an event twice (``Event.id`` tells).

Delivered events stay as the audit trail for :data:`DEFAULT_EVENT_RETENTION`
(the dispatcher's ``retention``; ``None`` keeps them forever), then
:meth:`~EventDispatcher.prune` deletes them in short batches; undelivered ones
are never pruned.

Event types, and what their ``data`` holds:

* ``member.created``: ``userName``, ``role`` and the ``rule`` that chose it;
* ``member.linked``: an existing member became SCIM-managed (``matchedBy``);
* ``member.updated``: profile attributes changed (``changed``: their names);
* ``member.role_changed``: ``old``, ``new``, ``source`` and ``rule``;
* ``member.deactivated``: end the member's sessions;
* ``member.reactivated``: the same member is back;
* ``member.deleted``: the member is gone (``groups`` it was in);
* ``group.created``: ``displayName``, ``members``;
* ``group.renamed``: ``old``, ``new``;
* ``group.members_changed``: ``added``, ``removed``;
* ``group.deleted``: ``displayName``, ``members``;

The ``member.*`` events above but ``member.role_changed`` also carry the
member as the change left it (the one deleted, as it was):
:attr:`Event.member <pbidentity.domain.Event.member>` is that member and
:attr:`Event.profile <pbidentity.domain.Event.profile>` its whole SCIM profile,
typed (a scim2-models ``User``, see :mod:`pbidentity.models`). The ``group.*``
events carry the group: :attr:`Event.group <pbidentity.domain.Event.group>`,
a typed scim2-models ``Group``, with its ``members`` on ``group.created`` and
``group.deleted``. The dispatcher's ``role_urn`` (the app's
``ScimConfig.role_urn``) is the one the profiles put the role under.

* ``member.signed_in``: a SAML sign-in (``idp_initiated``, ``created`` just in time);
* ``saml.saved``, ``saml.activated``, ``saml.activation_failed``, ``saml.rolled_back``,
  ``saml.discarded``, ``saml.options_changed``: the workspace's SAML configuration moved
  (``idp``: the IdP's entity ID; ``code``, ``message`` and ``suggestion``: the finding
  that made a test sign-in fail).
* ``policy.changed``: the workspace's member policy was replaced (``old`` and ``new``:
  the fingerprints; ``policy``: the new document); the ``member.role_changed`` events
  of the members it moved follow it in the same transaction.
* ``setup_link.issued``: a set-up link was issued (``sections`` it opens, ``expires``,
  ``created_by`` as the host app named who issued it); ``setup_link.revoked``: one was
  revoked (``sections``). The event's subject is the link's id; its token is never recorded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from collections.abc import Collection
from datetime import timedelta

import attrs

from pbidentity._clock import Clock
from pbidentity._clock import utc_now
from pbidentity.domain import DEFAULT_ROLE_URN
from pbidentity.domain import Event
from pbidentity.storage import Storage

__all__ = ["DEFAULT_EVENT_RETENTION", "EVENT_TYPES", "EventDispatcher", "EventHandler"]

log = logging.getLogger("pbidentity.events")

EventHandler = Callable[[Event], object]

# How long a delivered event stays in the audit trail unless the app says:
# a quarter covers most "who changed this last month?" questions.
DEFAULT_EVENT_RETENTION = timedelta(days=90)

# Rows deleted per write transaction when pruning: on SQLite one batch holds
# the write lock for milliseconds, so provisioning waits no longer than that.
PRUNE_BATCH = 1000

EVENT_TYPES = frozenset(
    {
        "member.created",
        "member.linked",
        "member.updated",
        "member.role_changed",
        "member.deactivated",
        "member.reactivated",
        "member.deleted",
        "group.created",
        "group.renamed",
        "group.members_changed",
        "group.deleted",
        "member.signed_in",
        "saml.saved",
        "saml.activated",
        "saml.activation_failed",
        "saml.rolled_back",
        "saml.discarded",
        "saml.options_changed",
        "policy.changed",
        "setup_link.issued",
        "setup_link.revoked",
    }
)


@attrs.frozen
class _Subscription:
    handler: EventHandler
    types: frozenset[str] | None


class EventDispatcher:
    """Hands the outbox's events to the host app's handlers, at least once, in order."""

    def __init__(
        self,
        storage: Storage,
        *,
        clock: Clock = utc_now,
        batch: int = 100,
        role_urn: str = DEFAULT_ROLE_URN,
        retention: timedelta | None = DEFAULT_EVENT_RETENTION,
        prune_every: float = 300.0,
    ) -> None:
        if retention is not None and retention <= timedelta(0):
            raise ValueError(f"retention must be positive or None, not {retention}")
        self.storage = storage
        self.clock = clock
        self.batch = batch
        self.role_urn = role_urn
        self.retention = retention
        self.prune_every = prune_every
        self._subscriptions: list[_Subscription] = []
        # One delivery at a time per process: two threads delivering the same
        # batch would only duplicate work.
        self._lock = threading.Lock()

    def subscribe(
        self, handler: EventHandler, *, types: Collection[str] | None = None
    ) -> EventHandler:
        """Call ``handler`` for every event (or only ``types``); returns it, for decorators."""
        if types is not None:
            unknown = sorted(set(types) - EVENT_TYPES)
            if unknown:
                raise ValueError(f"unknown event types {unknown}; known: {sorted(EVENT_TYPES)}")
        self._subscriptions.append(
            _Subscription(handler, None if types is None else frozenset(types))
        )
        return handler

    def deliver_pending(self) -> int:
        """Deliver every pending event; returns how many were delivered.

        Stops at the first event a handler fails on (logged): it and the ones
        after it stay pending, so that order holds when they are retried.
        """
        delivered = 0
        with self._lock:
            while True:
                with self.storage.transaction(write=False) as tx:
                    pending = tx.pending_events(self.batch)
                if not pending:
                    return delivered
                done: list[int] = []
                failed = False
                for event in pending:
                    if not self._deliver(event):
                        failed = True
                        break
                    assert event.seq is not None  # noqa: S101 - stored events have one
                    done.append(event.seq)
                if done:
                    with self.storage.transaction() as tx:
                        tx.mark_delivered(done, self.clock())
                    delivered += len(done)
                if failed or len(pending) < self.batch:
                    return delivered

    def _deliver(self, event: Event) -> bool:
        if event.role_urn != self.role_urn:
            event = attrs.evolve(event, role_urn=self.role_urn)
        for subscription in self._subscriptions:
            if subscription.types is not None and event.type not in subscription.types:
                continue
            try:
                subscription.handler(event)
            except Exception:
                log.exception(
                    "event handler %r failed on %s %s; it will be retried",
                    subscription.handler,
                    event.type,
                    event.id,
                )
                return False
        return True

    def prune(self, *, batch: int = PRUNE_BATCH, pause: float | None = None) -> int:
        """Delete delivered events older than ``retention``; returns how many.

        One short write transaction per ``batch`` rows, then a ``pause``
        (by default as long as the batch took, at least 10 ms) before the
        next, so that SCIM writes waiting for SQLite's write lock get it
        between two batches rather than after the whole prune. Does nothing
        when ``retention`` is ``None``.
        """
        if self.retention is None:
            return 0
        cutoff = self.clock() - self.retention
        pruned = 0
        while True:
            started = time.monotonic()
            with self.storage.transaction() as tx:
                deleted = tx.prune_events(cutoff, limit=batch)
            pruned += deleted
            if deleted == 0:
                return pruned
            # A waiting writer polls for the lock now and then (SQLite's busy
            # handler): taking it back at once could starve it.
            time.sleep(max(time.monotonic() - started, 0.01) if pause is None else pause)

    def run(self, stop: threading.Event, *, interval: float = 1.0) -> None:
        """Deliver pending events every ``interval`` seconds until ``stop`` is set.

        Prunes the trail past ``retention`` at most every ``prune_every``
        seconds (first on the first round). For a background thread of the
        host app; storage errors are logged and retried on the next round.
        """
        next_prune = time.monotonic()
        while not stop.is_set():
            try:
                self.deliver_pending()
            except Exception:
                log.exception("delivering events failed; retrying in %.1f s", interval)
            if self.retention is not None and time.monotonic() >= next_prune:
                next_prune = time.monotonic() + self.prune_every
                try:
                    pruned = self.prune()
                except Exception:
                    log.exception("pruning events failed; retrying in %.0f s", self.prune_every)
                else:
                    if pruned:
                        log.info("pruned %d events delivered before the retention", pruned)
            stop.wait(interval)
