"""Time SCIM writes through the WSGI app on PostgreSQL, and count their round trips.

What is measured
----------------
A throwaway PostgreSQL cluster (``initdb`` on PATH) with the server's default
durability (``fsync`` and ``synchronous_commit`` on: each commit waits for its
flush), or an empty database given with ``--postgres-url``. pbidentity's WSGI
app serves one tenant; the same in-process driver as the Okta workload
(``okta_workload.py``) sends, for ``--users`` users (400 by default), Okta's
``POST /Users``, then ``GET /Users/{id}``, then the path-less ``PATCH``
deactivating each. Every request is timed on its own; the table gives the
median and the 99th percentile. Targets: POST and PATCH median <= 2.5 ms.

Round trips
-----------
Then, untimed, a few more users go through the same three requests with
libpq's own trace switched on (``PQtrace`` on each pooled connection): every
message the client sends is in it, so the count is what the server saw, not
what the code meant to send. A round trip is a ``Query`` or a ``Sync``
message (the client waits for the answer of each, outside pipeline mode). Each
is put in a bucket by its SQL: ``begin``, ``commit``/``rollback``, ``auth``
(the token and its tenant), ``event`` (the outbox), ``read``, ``write``, and
``ping`` (the pool's liveness check).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import conditions
import okta_workload
from sqlalchemy import Engine
from sqlalchemy import event

from pbidentity.admin import Admin
from pbidentity.scim import ScimService
from pbidentity.storage import Storage
from pbidentity.storage import open_storage
from pbidentity.storage.sql import SqlStorage
from pbidentity.wsgi import ScimWsgiApp

TARGET_MS = 2.5
TARGETS = {"POST /Users": TARGET_MS, "PATCH deactivate": TARGET_MS}
COUNTED_USERS = 20
WARM_UP = 30
BUCKETS = ("begin", "ping", "auth", "read", "write", "event", "commit")

#: A message of libpq's trace the client sent: ``F <length> <type> <rest>``.
_SENT = re.compile(r"^F\t?\s*\d+\s+(\w+)\s*(.*)$")
#: Parse "statement" "SQL" <parameter count> <types>...
_PARSE = re.compile(r'^"([^"]*)" "(.*)" \d+(?: \d+)*$')
#: Bind "portal" "statement" ...
_BIND = re.compile(r'^"[^"]*" "([^"]*)"')


@contextmanager
def _postgres(url: str | None, *, durable: bool) -> Iterator[str]:
    if url:
        yield url
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests import postgres

    if not postgres.available():
        raise SystemExit(postgres.HOW_TO_GET_IT)
    with postgres.throwaway_cluster(durable=durable) as started:
        yield started


def _messages(trace: str) -> list[str]:
    """The trace's messages, one per item: a statement's own newlines are inside one."""
    messages: list[str] = []
    for line in trace.split("\n"):
        if line.startswith(("F\t", "B\t")) or not messages:
            messages.append(line)
        else:
            messages[-1] += " " + line
    return messages


def bucket(sql: str) -> str:
    """What a statement is for, from its text."""
    words = sql.strip().lstrip("(").upper()
    if words in ("", ";"):
        return "ping"  # psycopg's ping is an empty query
    if words.startswith(("BEGIN", "START TRANSACTION")):
        return "begin"
    if words.startswith(("COMMIT", "ROLLBACK")):
        return "commit"
    if "API_TOKENS" in words:
        return "auth"
    if words.startswith("INSERT INTO EVENTS"):
        return "event"
    if words.startswith(("SELECT", "WITH")) and " FOR UPDATE" not in words:
        return "read"
    return "write"


def batch_bucket(batch: list[str]) -> str:
    """The bucket of a round trip that sent several statements: what it waits for.

    A pipeline's round trip is filed under its COMMIT if it has one (the
    events before it are folded in), else under its last statement (the
    BEGIN sent along with a statement is folded in).
    """
    buckets = [bucket(sql) for sql in batch] or ["ping"]
    if "commit" in buckets:
        return "commit"
    return buckets[-1]


class Trace:
    """libpq's trace of every pooled connection of an engine, read request by request."""

    def __init__(self, engine: Engine, directory: Path) -> None:
        self.path = directory / "libpq.trace"
        self._file = self.path.open("w", encoding="utf-8")
        self._read = self.path.open(encoding="utf-8", errors="replace")
        self._prepared: dict[str, str] = {}
        #: Every round trip's SQL, in order (``--show-statements``).
        self.statements: list[str] = []

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            pgconn = dbapi_connection.pgconn
            pgconn.trace(self._file.fileno())
            # No timestamps: one line, one message.
            pgconn.set_trace_flags(1)

        event.listen(engine, "connect", on_connect)

    def sent(self) -> Counter[str]:
        """The round trips sent since the last call, by bucket."""
        counts: Counter[str] = Counter()
        # The statements sent since the last Sync: in pipeline mode (BEGIN
        # with the first statement, the last events with COMMIT) one Sync
        # waits for several.
        batch: list[str] = []
        pending: str | None = None
        for line in _messages(self._read.read()):
            match = _SENT.match(line)
            if match is None:
                continue
            kind, rest = match.groups()
            if kind == "Query":
                # Query "SQL" (the SQL as sent: its own quotes are not escaped).
                sql = rest.strip()[1:-1]
                counts[bucket(sql)] += 1
                self.statements.append(sql)
            elif kind == "Parse" and (parse := _PARSE.match(rest.strip())):
                # psycopg names a statement it prepares (after a few runs of
                # it), and later only binds the name.
                name, pending = parse.groups()
                if name:
                    self._prepared[name] = pending
            elif kind == "Bind":
                if pending is None and (bind := _BIND.match(rest.strip())):
                    pending = self._prepared.get(bind.group(1), "")
                batch.append(pending or "")
                pending = None
            elif kind == "Sync":
                counts[batch_bucket(batch)] += 1
                self.statements.append(" + ".join(dict.fromkeys(batch)) if batch else "")
                batch = []
        return counts

    def close(self) -> None:
        """Stop reading (the connections keep their file until they close)."""
        self._read.close()


def make_driver(storage: Storage, slug: str) -> okta_workload.Driver:
    """The WSGI app on ``storage``, a tenant ``slug`` with SCIM on, and a driver with its token."""
    app = ScimWsgiApp(ScimService(storage))
    admin = Admin(storage)
    admin.create_tenant(slug)
    admin.set_scim_enabled(slug, True)
    secret = admin.create_token(slug, "okta").secret
    return okta_workload.Driver(app=app, prefix=app.prefix, token=secret)


DEACTIVATE = {
    "schemas": [okta_workload.PATCH_SCHEMA],
    "Operations": [{"op": "replace", "value": {"active": False}}],
}


def requests(
    driver: okta_workload.Driver, people: list[okta_workload.Person]
) -> Iterator[tuple[str, Callable[[], Any]]]:
    """The three requests of each user, in the order a provisioning run sends them."""
    ids: list[str] = []

    def post(person: okta_workload.Person) -> Callable[[], Any]:
        def call() -> None:
            body = okta_workload.okta_user(person, with_password=True)
            created = driver.call("POST", "/Users", body=body, expect=(201,))
            assert created is not None
            ids.append(created["id"])

        return call

    def get(i: int) -> Callable[[], Any]:
        return lambda: driver.get(f"/Users/{ids[i]}")

    def deactivate(i: int) -> Callable[[], Any]:
        return lambda: driver.call("PATCH", f"/Users/{ids[i]}", body=DEACTIVATE, expect=(200, 204))

    for person in people:
        yield "POST /Users", post(person)
    for i in range(len(people)):
        yield "GET /Users/{id}", get(i)
    for i in range(len(people)):
        yield "PATCH deactivate", deactivate(i)


def warm_up(driver: okta_workload.Driver) -> None:
    """First-request costs (imports, the pool's connections) outside every timing."""
    for _ in range(WARM_UP):
        driver.get("/Users", okta_workload.user_filter("warm-up@example.invalid"))


def measure(url: str, users: int) -> dict[str, list[float]]:
    """Each request's duration in milliseconds, by kind."""
    storage = open_storage(url)
    driver = make_driver(storage, "timed")
    warm_up(driver)
    timings: dict[str, list[float]] = {}
    for name, call in requests(driver, okta_workload.make_people(users)):
        began = time.perf_counter()
        call()
        timings.setdefault(name, []).append((time.perf_counter() - began) * 1000)
    storage.close()
    return timings


def count(url: str, directory: Path, *, show: bool = False) -> dict[str, Counter[str]]:
    """The round trips of each kind of request, summed over ``COUNTED_USERS`` users."""
    storage = SqlStorage.from_url(url)
    trace = Trace(storage.engine, directory)
    driver = make_driver(storage, "counted")
    warm_up(driver)
    trace.sent()
    trace.statements.clear()
    people = okta_workload.make_people(COUNTED_USERS + 1)[1:]
    sent: dict[str, Counter[str]] = {}
    for name, call in requests(driver, people):
        call()
        first = name not in sent
        sent.setdefault(name, Counter()).update(trace.sent())
        if show and first:
            print(f"\n{name}:")
            for sql in trace.statements:
                print(f"  {batch_bucket(sql.split(' + ')):<7} {sql[:150]}")
        trace.statements.clear()
    trace.close()
    storage.close()
    return sent


def report(timings: dict[str, list[float]], sent: dict[str, Counter[str]]) -> bool:
    """Print both tables; whether every target is met."""
    met = True
    print(f"\n{'request':<18} {'median ms':>10} {'p99 ms':>8}  target")
    for name, ms in timings.items():
        ordered = sorted(ms)
        median = statistics.median(ordered)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        target = TARGETS.get(name)
        verdict = ""
        if target is not None:
            ok = median <= target
            met &= ok
            verdict = f"<= {target:g}: {'met' if ok else 'NOT met'}"
        print(f"{name:<18} {median:10.2f} {p99:8.2f}  {verdict}")
    print(f"\nround trips per request (mean of {COUNTED_USERS}; libpq trace):")
    print(f"{'request':<18} {'total':>6} " + " ".join(f"{b:>6}" for b in BUCKETS))
    for name, counts in sent.items():
        per = {b: counts.get(b, 0) / COUNTED_USERS for b in BUCKETS}
        total = sum(counts.values()) / COUNTED_USERS
        print(f"{name:<18} {total:6.1f} " + " ".join(f"{per[b]:6.1f}" for b in BUCKETS))
    return met


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 whatever the figures (they are printed)."""
    parser = argparse.ArgumentParser(prog="postgres.py", description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=400, metavar="N", help="default 400")
    parser.add_argument("--postgres-url", help="an empty database (default: a throwaway cluster)")
    parser.add_argument(
        "--postgres-fsync",
        choices=("on", "off"),
        default="on",
        help="the throwaway cluster's durability (default on: the server's defaults)",
    )
    parser.add_argument(
        "--show-statements",
        action="store_true",
        help="print each round trip of the first counted request of each kind",
    )
    args = parser.parse_args(argv)
    print(conditions.machine())
    with _postgres(args.postgres_url, durable=args.postgres_fsync == "on") as url:
        probe = SqlStorage.from_url(url)
        print(conditions.backend(probe))
        probe.close()
        timings = measure(url, args.users)
        with tempfile.TemporaryDirectory(prefix="pbidentity-trace-") as tmp:
            os.chmod(tmp, 0o700)
            sent = count(url, Path(tmp), show=args.show_statements)
    report(timings, sent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
