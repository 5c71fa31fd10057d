"""SQLite's WAL checkpoints, run beside the requests instead of inside one of their commits.

In WAL mode a commit appends the pages it changed to the log, and a
checkpoint copies the log back into the database file. With
``synchronous=NORMAL`` the checkpoint is also where the syncs are (the log,
then the database file). SQLite runs one itself in the commit that takes the
log past ``wal_autocheckpoint`` pages: that commit, a SCIM write like any
other, then waits for the copy and both syncs, milliseconds against the
30 microseconds of a plain commit, and every write paid about 50 microseconds
of them on average (the Okta-like workload's PUT and PATCH).

So the storage runs passive checkpoints in a thread of its own, woken every
:data:`WRITES_PER_CHECKPOINT` write commits; its connection copies and syncs
while the request threads go on (the driver releases the GIL meanwhile).
A passive checkpoint never waits for a reader or a writer and never makes one
wait; what a concurrent write adds is copied next time. Each connection's own
automatic checkpoint stays on as a backstop, at :data:`BACKSTOP_PAGES`, in
case the thread falls behind (or another process writes the file). The
thread starts on first need, ends after :data:`IDLE_SECONDS` without writes
(so an idle or forked process keeps none), and :meth:`Checkpointer.close`
stops it. Durability is SQLite's as before: a commit survives the app
crashing; a checkpoint only moves committed pages.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

__all__ = ["BACKSTOP_PAGES", "IDLE_SECONDS", "WRITES_PER_CHECKPOINT", "Checkpointer"]

log = logging.getLogger("pbidentity.storage")

#: Write commits between two checkpoints: a SCIM write changes a few pages
#: (the member, its indexes, the event), so the log stays near the 1,000
#: pages of SQLite's own default.
WRITES_PER_CHECKPOINT = 200
#: The log size, in pages (4 KiB), past which a committing connection
#: checkpoints itself, as SQLite does at 1,000 by default.
BACKSTOP_PAGES = 10_000
#: The thread ends after this long without a write commit.
IDLE_SECONDS = 5.0


class Checkpointer:
    """Passive WAL checkpoints of one SQLite engine's database, in a thread of their own."""

    def __init__(
        self,
        engine: Engine,
        *,
        every: int = WRITES_PER_CHECKPOINT,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self._engine = engine
        self._every = every
        self._idle_seconds = idle_seconds
        # Approximate under concurrent writers, which is all a trigger needs.
        self._writes = 0
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        #: Checkpoints run so far (for tests and diagnostics).
        self.checkpoints = 0

    def wrote(self) -> None:
        """Count a committed write; every ``every``-th one wakes the thread."""
        self._writes += 1
        if self._writes >= self._every:
            self._writes = 0
            self._wake()

    def _wake(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._wanted.set()
            # A thread started before a fork is not alive in the child.
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="pbidentity-sqlite-checkpoint", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            if not self._wanted.wait(self._idle_seconds):
                with self._lock:
                    # Woken meanwhile: carry on, else end (the next write starts another).
                    if not self._wanted.is_set():
                        self._thread = None
                        return
            with self._lock:
                if self._closed:
                    return
                self._wanted.clear()
            self.checkpoint()

    def checkpoint(self) -> None:
        """Run one passive checkpoint now; a failure is logged, never raised.

        No commit failed: the next checkpoint, or a commit past the
        backstop, copies what this one could not.
        """
        try:
            connection = self._engine.raw_connection()
            try:
                cursor = connection.cursor()
                cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                cursor.fetchall()
                cursor.close()
            finally:
                connection.close()
        except Exception as error:
            log.warning("a background WAL checkpoint failed: %s", error)
            return
        self.checkpoints += 1

    def close(self) -> None:
        """Stop the thread (after the checkpoint it may be running)."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
            self._wanted.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
