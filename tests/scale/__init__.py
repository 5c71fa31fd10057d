"""Concurrency and fault tests with real threads, processes and databases; shared helpers.

Everything here runs against a SQLite file and the real PostgreSQL server of the
session (see ``tests/conftest.py``): ``pbidentity serve`` subprocesses on one
database, racing threads released together by a barrier, killed writers and
killed database connections. Every wait has a timeout, so that a hang fails the
test instead of blocking the run.
"""

from __future__ import annotations

import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from contextlib import ExitStack
from contextlib import contextmanager
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any
from typing import Generic
from typing import TypeVar

import attrs
import httpx
import sqlalchemy
from sqlalchemy import event

from pbidentity.admin import Admin
from pbidentity.domain import Event
from pbidentity.domain import Member
from pbidentity.storage import open_storage
from pbidentity.storage.sql import SqlStorage

__all__ = [
    "ERROR_URN",
    "GROUP_URN",
    "PATCH_URN",
    "ROOT",
    "TIMEOUT",
    "USER_URN",
    "Running",
    "Server",
    "assert_clean_logs",
    "assert_scim_error",
    "clients",
    "count_rows",
    "patch_body",
    "provision",
    "run_at_once",
    "running_servers",
    "user_body",
    "with_application_name",
    "write_and_hang",
]

#: The repository root: subprocesses run there so that ``tests`` is importable.
ROOT = Path(__file__).resolve().parents[2]

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"

#: Seconds any single wait (a server's first line, a thread, a process) may take.
TIMEOUT = 60.0

_T = TypeVar("_T")


# Tenants and servers ---------------------------------------------------------------


def provision(database_url: str, slug: str = "acme") -> str:
    """Create a tenant with SCIM on in the database and return a fresh token's secret."""
    storage = open_storage(database_url)
    try:
        admin = Admin(storage)
        admin.create_tenant(slug, slug.title())
        admin.set_scim_enabled(slug, True)
        return admin.create_token(slug, "okta").secret
    finally:
        storage.close()


def with_application_name(database_url: str, name: str) -> str:
    """The URL with a PostgreSQL ``application_name``, to find its connections; SQLite as is."""
    if not database_url.startswith("postgresql"):
        return database_url
    separator = "&" if "?" in database_url else "?"
    return f"{database_url}{separator}application_name={name}"


@attrs.frozen
class Server:
    """A running ``pbidentity serve`` process: its SCIM base URL and its log (stderr)."""

    base_url: str
    log: Path
    process: subprocess.Popen[str] = attrs.field(eq=False, repr=False)


def _first_line(process: subprocess.Popen[str], log: Path) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], TIMEOUT)
    assert ready, f"the server printed nothing in {TIMEOUT} s: {log.read_text()}"
    line = process.stdout.readline()
    assert line.startswith("SCIM base URL: "), f"{line!r}: {log.read_text()}"
    return line.removeprefix("SCIM base URL: ").strip()


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()


_SERVE = (sys.executable, "-m", "pbidentity.cli", "serve", "--port", "0")


@contextmanager
def running_servers(
    database_urls: Sequence[str], directory: Path, *, check_logs: bool = True
) -> Iterator[list[Server]]:
    """Start one ``pbidentity serve --port 0`` per URL (all at once) and stop them afterwards.

    With ``check_logs``, the servers' logs must show no traceback and no 500 once
    they are stopped.
    """
    started: list[tuple[subprocess.Popen[str], Path]] = []
    servers: list[Server] = []
    try:
        for index, url in enumerate(database_urls):
            log = directory / f"server-{index}.log"
            with log.open("w") as stderr:  # the child keeps its own copy of the descriptor
                process = subprocess.Popen(
                    [*_SERVE[:3], "--database", url, *_SERVE[3:]],
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    text=True,
                    cwd=ROOT,
                )
            started.append((process, log))
        servers = [Server(_first_line(p, log), log, p) for p, log in started]
        yield servers
    finally:
        for process, _ in started:
            _stop(process)
    if check_logs:
        assert_clean_logs(servers)


# A request line answered with a 5xx other than 503, as the server logs it.
_FAILED_REQUEST = re.compile(r'" 5(?!03)\d\d ')


def assert_clean_logs(servers: Sequence[Server]) -> None:
    """No server logged a traceback or answered a 5xx other than 503."""
    for server in servers:
        log = server.log.read_text()
        assert "Traceback" not in log, log
        assert "unexpected error" not in log, log
        assert not _FAILED_REQUEST.search(log), log


@contextmanager
def clients(base_urls: Sequence[str], token: str, count: int) -> Iterator[list[httpx.Client]]:
    """``count`` HTTP clients with the bearer token, spread round-robin over the servers."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/scim+json"}
    with ExitStack() as stack:
        yield [
            stack.enter_context(
                httpx.Client(base_url=base_urls[i % len(base_urls)], headers=headers, timeout=30)
            )
            for i in range(count)
        ]


# Racing ------------------------------------------------------------------------------


def run_at_once(calls: Sequence[Callable[[], _T]], *, timeout: float = TIMEOUT) -> list[_T]:
    """Run each call in its own thread, all released together; their results, in order.

    A call that raises makes this raise; a thread still running after
    ``timeout`` seconds fails the test rather than hanging it.
    """
    barrier = threading.Barrier(len(calls), timeout=timeout)
    results: dict[int, _T] = {}
    errors: dict[int, BaseException] = {}

    def work(index: int) -> None:
        try:
            barrier.wait()
            results[index] = calls[index]()
        except BaseException as error:  # reported in the test's thread
            errors[index] = error

    threads = [
        threading.Thread(target=work, args=(i,), name=f"racer-{i}", daemon=True)
        for i in range(len(calls))
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    hung = [thread.name for thread in threads if thread.is_alive()]
    assert not hung, f"still running after {timeout} s: {hung}"
    for index in sorted(errors):
        raise AssertionError(f"racer {index} failed: {errors[index]!r}") from errors[index]
    return [results[i] for i in range(len(calls))]


class Running(Generic[_T]):
    """A call running in a thread of its own; :meth:`result` waits for it, with a timeout."""

    def __init__(self, call: Callable[[], _T], name: str = "background") -> None:
        self._call = call
        self._value: list[_T] = []
        self._error: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value.append(self._call())
        except BaseException as error:  # re-raised by result()
            self._error.append(error)

    def is_alive(self) -> bool:
        """Whether the call is still running."""
        return self._thread.is_alive()

    def result(self, timeout: float = TIMEOUT) -> _T:
        """What the call returned (or raise what it raised); fail if it runs past ``timeout``."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"{self._thread.name} still running after {timeout} s"
        if self._error:
            raise self._error[0]
        return self._value[0]


# SCIM bodies and answers ----------------------------------------------------------------


def user_body(user_name: str, **attributes: Any) -> dict[str, Any]:
    """A User resource body."""
    return {"schemas": [USER_URN], "userName": user_name, **attributes}


def patch_body(*operations: Mapping[str, Any]) -> dict[str, Any]:
    """A PatchOp message."""
    return {"schemas": [PATCH_URN], "Operations": list(operations)}


def assert_scim_error(
    response: httpx.Response, status: int, scim_type: str | None = None
) -> dict[str, Any]:
    """The response is an RFC 7644 §3.12 Error with that status (and scimType); its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/scim+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["schemas"] == [ERROR_URN], body
    assert body["status"] == str(status), body
    assert isinstance(body.get("detail"), str), body
    assert body["detail"], body
    assert "Traceback" not in body["detail"], body
    if scim_type is not None:
        assert body.get("scimType") == scim_type, body
    return body


# The database, read directly -----------------------------------------------------------


def count_rows(database_url: str, sql: str, parameters: Mapping[str, Any] | None = None) -> int:
    """Run a ``SELECT count(*)`` on a connection of its own, outside pbidentity."""
    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.connect() as connection:
            found = connection.execute(sqlalchemy.text(sql), dict(parameters or {})).scalar_one()
            return int(found)
    finally:
        engine.dispose()


# A writer to kill ----------------------------------------------------------------------

#: Members the hanging writer adds besides the watched one, so that a SQLite
#: transaction spills uncommitted pages into the write-ahead log.
FILLER_MEMBERS = 150


def write_and_hang(database_url: str, tenant_id: str, member_id: str, group_ids: str) -> None:
    """Write a member, its values, memberships and an event in one unit, then hang before commit.

    Run in a subprocess that the test kills. ``group_ids`` is comma-separated.
    On SQLite the page cache is made tiny, so that the unit's pages are
    written to the write-ahead log (uncommitted) before it hangs: the kill
    then really leaves half a transaction on disk.
    """
    storage = SqlStorage.from_url(database_url)
    if storage.engine.dialect.name == "sqlite":

        def small_cache(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA cache_size=8")

        event.listen(storage.engine, "connect", small_cache)
    now = datetime.now(UTC)

    def member(identifier: str, user_name: str) -> Member:
        emails = [
            {"value": f"{user_name}", "type": "work", "primary": True},
            {"value": f"home.{user_name}", "type": "home"},
            {"value": f"other.{user_name}", "type": "other"},
        ]
        return Member(
            tenant_id=tenant_id,
            id=identifier,
            attributes={
                "userName": user_name,
                "emails": emails,
                "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}],
                "active": True,
            },
            scim_managed=True,
            created=now,
            last_modified=now,
        )

    with storage.transaction() as tx:
        tx.add_member(member(member_id, "doomed@example.com"))
        for group_id in group_ids.split(","):
            tx.add_memberships(tenant_id, group_id, [member_id])
        tx.add_events(
            [
                Event(
                    id=f"event-{member_id}",
                    tenant_id=tenant_id,
                    type="member.created",
                    subject_id=member_id,
                    actor="test",
                    occurred=now,
                )
            ]
        )
        for index in range(FILLER_MEMBERS):
            tx.add_member(member(f"{member_id}-filler-{index}", f"filler{index}@example.com"))
        print("WRITTEN", flush=True)
        time.sleep(10 * TIMEOUT)
