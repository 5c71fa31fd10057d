"""Event retention: the dispatcher prunes delivered events past it, in short batches."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from contextlib import contextmanager
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest

from pbidentity.domain import Event
from pbidentity.events import DEFAULT_EVENT_RETENTION
from pbidentity.events import EventDispatcher
from pbidentity.members import Members
from pbidentity.storage import Storage
from pbidentity.storage import Transaction
from tests.conftest import Workspace
from tests.scim.helpers import create_user

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        """The time the test set."""
        return self.now


class CountingStorage:
    """The real storage, counting the write transactions opened on it."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.writes = 0

    def transaction(self, *, write: bool = True) -> AbstractContextManager[Transaction]:
        """A transaction of the real storage, counted if it writes."""
        if write:
            self.writes += 1
        return self.storage.transaction(write=write)


def add_delivered(storage: Storage, tenant_id: str, count: int, delivered: datetime) -> None:
    """Append ``count`` events of the tenant and mark them delivered at ``delivered``."""
    made = [
        Event(
            id=f"bulk-{delivered:%j%H%M}-{n}",
            tenant_id=tenant_id,
            type="member.updated",
            subject_id="m1",
            actor="token:okta",
            occurred=delivered,
            data={"changed": ["name"]},
        )
        for n in range(count)
    ]
    with storage.transaction() as tx:
        tx.add_events(made)
        pending = [e.seq or 0 for e in tx.pending_events(count + 10) if e.id.startswith("bulk-")]
        tx.mark_delivered(pending, delivered)


def tenant_id(storage: Storage, slug: str) -> str:
    """The id of the workspace named ``slug``."""
    with storage.transaction(write=False) as tx:
        tenant = tx.find_tenant(slug)
    assert tenant is not None
    return tenant.id


@contextmanager
def running(dispatcher: EventDispatcher) -> Iterator[threading.Event]:
    """The dispatcher's loop in a thread, stopped at the end."""
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.run, args=(stop,), kwargs={"interval": 0.01})
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=10)


def test_prune_deletes_delivered_events_past_the_retention_in_batches(
    acme: Workspace, storage: Storage
) -> None:
    """Delivered events older than the retention go, one short transaction per batch."""
    acme_id = tenant_id(storage, "acme")
    add_delivered(storage, acme_id, 25, START - timedelta(days=40))
    add_delivered(storage, acme_id, 3, START - timedelta(days=5))
    clock = Clock()
    counting = CountingStorage(storage)
    # The dispatcher only opens transactions: the counting wrapper is enough.
    dispatcher = EventDispatcher(
        counting,  # type: ignore[arg-type]
        clock=clock,
        retention=timedelta(days=30),
    )
    assert dispatcher.prune(batch=10) == 25
    # 10 + 10 + 5, then one that finds nothing left.
    assert counting.writes == 4
    trail = Members(storage).audit_trail("acme")
    assert len(trail) == 3
    assert all(e.delivered == START - timedelta(days=5) for e in trail)
    clock.now += timedelta(days=26)
    assert dispatcher.prune(batch=10) == 3
    assert Members(storage).audit_trail("acme") == []


def test_undelivered_events_outlive_any_retention(acme: Workspace, storage: Storage) -> None:
    """An event no handler took yet stays in the outbox however old it is, then is delivered."""
    clock = Clock()
    create_user(acme.client, "jane@example.com")
    dispatcher = EventDispatcher(storage, clock=clock, retention=timedelta(days=1))
    failing = True

    def handler(event: Event) -> None:
        if failing:
            raise RuntimeError("the host app's queue is down")

    dispatcher.subscribe(handler)
    assert dispatcher.deliver_pending() == 0
    clock.now += timedelta(days=365)
    assert dispatcher.prune() == 0
    failing = False
    assert dispatcher.deliver_pending() == 1
    # Delivered now: the retention counts from the delivery.
    clock.now += timedelta(hours=23)
    assert dispatcher.prune() == 0
    clock.now += timedelta(hours=2)
    assert dispatcher.prune() == 1
    assert Members(storage).audit_trail("acme") == []


def test_no_retention_keeps_every_event(acme: Workspace, storage: Storage) -> None:
    """``retention=None`` keeps the trail forever; a retention of zero or less is refused."""
    acme_id = tenant_id(storage, "acme")
    add_delivered(storage, acme_id, 5, START - timedelta(days=4000))
    assert EventDispatcher(storage, retention=None).prune() == 0
    assert len(Members(storage).audit_trail("acme")) == 5
    assert EventDispatcher(storage).retention == DEFAULT_EVENT_RETENTION == timedelta(days=90)
    with pytest.raises(ValueError, match="retention must be positive"):
        EventDispatcher(storage, retention=timedelta(0))


def test_the_dispatcher_loop_delivers_then_prunes(
    acme: Workspace, storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """``run`` prunes on its first round, then waits ``prune_every`` before pruning again."""
    caplog.set_level(logging.INFO, logger="pbidentity.events")
    acme_id = tenant_id(storage, "acme")
    add_delivered(storage, acme_id, 4, START - timedelta(days=100))
    create_user(acme.client, "jane@example.com")
    delivered: list[Event] = []
    dispatcher = EventDispatcher(storage, clock=Clock(), prune_every=3600)
    dispatcher.subscribe(delivered.append)
    said = "pruned 4 events delivered before the retention"
    with running(dispatcher):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and said not in caplog.messages:
            time.sleep(0.01)
        assert said in caplog.messages
        trail = Members(storage).audit_trail("acme")
        assert [e.type for e in trail] == ["member.created"]
        assert [e.type for e in delivered] == ["member.created"]
        # Aged past the retention now, but the next prune is an hour away.
        add_delivered(storage, acme_id, 2, START - timedelta(days=100))
        time.sleep(0.2)
        assert len(Members(storage).audit_trail("acme")) == 3


def test_prune_pauses_between_batches(acme: Workspace, storage: Storage) -> None:
    """Each batch that deleted rows is followed by a pause, so waiting writers get the lock."""
    acme_id = tenant_id(storage, "acme")
    add_delivered(storage, acme_id, 25, START - timedelta(days=40))
    dispatcher = EventDispatcher(storage, clock=Clock(), retention=timedelta(days=30))
    started = time.monotonic()
    assert dispatcher.prune(batch=10, pause=0.05) == 25
    # Three batches deleted rows; the fourth found none and returned at once.
    assert time.monotonic() - started >= 0.15
    add_delivered(storage, acme_id, 25, START - timedelta(days=35))
    started = time.monotonic()
    assert dispatcher.prune(batch=10) == 25
    # By default the pause is at least 10 ms.
    assert time.monotonic() - started >= 0.03
