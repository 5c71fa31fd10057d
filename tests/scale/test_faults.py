"""Correct under faults: a database that goes away answers 503, a killed writer leaves nothing.

PostgreSQL faults are real: the server-side backend of pbidentity's connection
is terminated (``pg_terminate_backend``) between requests, in the middle of
one and while its COMMIT waits, and a dedicated throwaway cluster is stopped
and started again under a running server. SQLite faults: the write lock held
by another connection past the busy timeout, and a database directory that
cannot be opened. A writer process killed (SIGKILL) half-way through a
multi-statement unit must leave no trace, on both backends.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from functools import partial
from pathlib import Path

import httpx
import pytest
import sqlalchemy
from sqlalchemy import text

from pbidentity.admin import Admin
from pbidentity.domain import Group
from pbidentity.domain import Member
from pbidentity.scim import ScimService
from pbidentity.storage import open_storage
from pbidentity.storage.sql import SqlStorage
from pbidentity.wsgi import ScimWsgiApp
from tests import postgres
from tests.conftest import BASE_URL
from tests.conftest import wipe_database
from tests.scale import ROOT
from tests.scale import TIMEOUT
from tests.scale import Running
from tests.scale import assert_scim_error
from tests.scale import clients
from tests.scale import count_rows
from tests.scale import patch_body
from tests.scale import provision
from tests.scale import running_servers
from tests.scale import user_body
from tests.scale import with_application_name

#: The ``application_name`` of the served process's PostgreSQL connections.
SERVED = "pbidentity-scale-serve"

_Request = Callable[[httpx.Client, str], httpx.Response]


def assert_unavailable(response: httpx.Response) -> None:
    """A 503 SCIM Error with an integer Retry-After: the client is told to come back."""
    assert_scim_error(response, 503)
    retry_after = response.headers.get("retry-after", "")
    assert retry_after.isdigit(), response.headers
    assert int(retry_after) > 0


# PostgreSQL: the connection dies -------------------------------------------------------


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    """The session's PostgreSQL database, emptied."""
    engine = sqlalchemy.create_engine(postgres_url)
    wipe_database(engine)
    engine.dispose()
    return postgres_url


def _backends(admin: sqlalchemy.Engine, *, waiting_for: str | None = None) -> list[int]:
    """The served process's backends; with ``waiting_for``, those in that wait event."""
    query = "SELECT pid FROM pg_stat_activity WHERE application_name = :name"
    if waiting_for is not None:
        query += " AND wait_event = :event"
    with admin.connect() as connection:
        rows = connection.execute(text(query), {"name": SERVED, "event": waiting_for})
        return [int(pid) for pid in rows.scalars()]


def _waiting_backends(admin: sqlalchemy.Engine, wait_event: str) -> list[int]:
    """Wait until backends of the served process wait for that event; their pids."""
    deadline = time.monotonic() + TIMEOUT
    while not (found := _backends(admin, waiting_for=wait_event)):
        assert time.monotonic() < deadline, f"no request reached the {wait_event} wait"
        time.sleep(0.02)
    return found


def _terminate(admin: sqlalchemy.Engine, pids: list[int]) -> None:
    """Terminate those backends and wait until they are gone."""
    with admin.connect() as connection:
        for pid in pids:
            assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    deadline = time.monotonic() + TIMEOUT
    while set(pids) & set(_backends(admin)):
        assert time.monotonic() < deadline, "terminated backends did not go away"
        time.sleep(0.02)


@pytest.mark.slow
def test_connections_killed_between_requests_are_replaced(pg_url: str, tmp_path: Path) -> None:
    """Every PostgreSQL backend of the server is terminated while it is idle in the pool.

    The next requests (a read, a write) succeed: the pool notices the dead
    connections (pre-ping) and opens new ones, and the client sees nothing.
    """
    token = provision(pg_url)
    admin = sqlalchemy.create_engine(pg_url)
    served = [with_application_name(pg_url, SERVED)]
    try:
        with (
            running_servers(served, tmp_path) as servers,
            clients([servers[0].base_url], token, 1) as (client,),
        ):
            created = client.post("/Users", json=user_body("idle@example.com"))
            assert created.status_code == 201, created.text
            user_id = created.json()["id"]
            for _ in range(2):
                pids = _backends(admin)
                assert pids, "the server holds no connection"
                _terminate(admin, pids)
                read = client.get(f"/Users/{user_id}")
                assert read.status_code == 200, read.text
                written = client.patch(
                    f"/Users/{user_id}",
                    json=patch_body({"op": "replace", "path": "active", "value": False}),
                )
                assert written.status_code == 200, written.text
                reactivated = client.patch(
                    f"/Users/{user_id}",
                    json=patch_body({"op": "replace", "path": "active", "value": True}),
                )
                assert reactivated.status_code == 200, reactivated.text
    finally:
        admin.dispose()


def _patch_title(client: httpx.Client, user_id: str) -> httpx.Response:
    return client.patch(
        f"/Users/{user_id}",
        json=patch_body({"op": "replace", "path": "title", "value": "interrupted"}),
    )


def _list(client: httpx.Client, _user_id: str) -> httpx.Response:
    return client.get("/Users", params={"filter": 'userName sw "victim"'})


@pytest.mark.slow
@pytest.mark.parametrize("request_", [_patch_title, _list], ids=["patch", "list"])
def test_connection_killed_mid_request_answers_503_then_recovers(
    pg_url: str, tmp_path: Path, request_: _Request
) -> None:
    """The backend serving a request is terminated while the request waits inside it.

    Another connection holds an exclusive lock on ``members``, so the request
    (a PATCH, a filtered list) stops half-way through its transaction; its
    backend is then terminated. The client gets 503 with an integer
    Retry-After and a SCIM Error body, never a 500 or a traceback (the server
    log is checked); the interrupted PATCH changed nothing; the next requests
    succeed.
    """
    token = provision(pg_url)
    admin = sqlalchemy.create_engine(pg_url)
    served = [with_application_name(pg_url, SERVED)]
    try:
        with (
            running_servers(served, tmp_path) as servers,
            clients([servers[0].base_url], token, 1) as (client,),
        ):
            created = client.post("/Users", json=user_body("victim@example.com", title="before"))
            assert created.status_code == 201, created.text
            user_id = created.json()["id"]
            with admin.connect() as locker:
                locker.execute(text("LOCK TABLE members IN ACCESS EXCLUSIVE MODE"))
                in_flight = Running(partial(request_, client, user_id), "in-flight")
                _terminate(admin, _waiting_backends(admin, "relation"))
                locker.rollback()
            assert_unavailable(in_flight.result())
            after = client.get(f"/Users/{user_id}")
            assert after.status_code == 200, after.text
            assert after.json()["title"] == "before"
            assert after.headers["etag"] == created.headers["etag"]
            assert _list(client, user_id).json()["totalResults"] == 1
            patched = _patch_title(client, user_id)
            assert patched.status_code == 200, patched.text
            assert patched.json()["title"] == "interrupted"
    finally:
        admin.dispose()


# PostgreSQL: the whole server goes down ---------------------------------------------------


@pytest.fixture
def own_cluster() -> Iterator[postgres.Cluster]:
    """A PostgreSQL cluster of this test alone, which it may stop."""
    if not postgres.available():
        if os.environ.get("CI"):
            pytest.fail(postgres.HOW_TO_GET_IT)
        pytest.skip(postgres.HOW_TO_GET_IT)
    with postgres.cluster() as running:
        yield running


@pytest.mark.slow
def test_database_server_down_answers_503_and_recovers(
    own_cluster: postgres.Cluster, tmp_path: Path
) -> None:
    """The PostgreSQL server is stopped under a running pbidentity server, then started again.

    While it is down, reads and writes answer 503 with Retry-After and a SCIM
    Error body (never 500); once it is back, the same server process serves
    reads and writes again, without a restart.
    """
    url = own_cluster.url
    token = provision(url)
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            settings = {
                name: str(connection.execute(text(f"SHOW {name}")).scalar_one())
                for name in ("data_directory", "port", "unix_socket_directories")
            }
    finally:
        engine.dispose()
    data = Path(settings["data_directory"])
    options = (
        f"-p {settings['port']} -k {settings['unix_socket_directories']} "
        "-c listen_addresses=127.0.0.1 -c fsync=off"
    )
    with (
        running_servers([url], tmp_path) as servers,
        clients([servers[0].base_url], token, 1) as (client,),
    ):
        created = client.post("/Users", json=user_body("steady@example.com"))
        assert created.status_code == 201, created.text
        user_id = created.json()["id"]
        own_cluster.run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop", timeout=TIMEOUT)
        try:
            assert_unavailable(client.get(f"/Users/{user_id}"))
            assert_unavailable(client.get("/Users"))
            assert_unavailable(client.post("/Users", json=user_body("during@example.com")))
            assert_unavailable(
                client.patch(
                    f"/Users/{user_id}",
                    json=patch_body({"op": "replace", "path": "title", "value": "down"}),
                )
            )
        finally:
            log = str(data.parent / "server.log")
            start = ("-D", str(data), "-l", log, "-o", options, "-w", "start")
            own_cluster.run("pg_ctl", *start, timeout=TIMEOUT)
        read = client.get(f"/Users/{user_id}")
        assert read.status_code == 200, read.text
        assert "title" not in read.json()
        after = client.post("/Users", json=user_body("during@example.com"))
        assert after.status_code == 201, after.text


@pytest.mark.slow
def test_connection_killed_while_commit_waits_answers_503(
    own_cluster: postgres.Cluster, tmp_path: Path
) -> None:
    """The backend is terminated while the request's COMMIT waits (the commit path's errors).

    The cluster is made to wait at every commit for a synchronous standby that
    does not exist, so a POST stops inside COMMIT; its backend is then
    terminated. The client gets 503 with Retry-After, not 500. PostgreSQL had
    already committed locally, so the outcome is in doubt, as for any
    connection lost during a commit: the user exists and the IdP's retry of
    the POST is a 409 uniqueness error.
    """
    token = provision(own_cluster.url)
    admin = sqlalchemy.create_engine(own_cluster.url, isolation_level="AUTOCOMMIT")

    def standby(setting: str) -> None:
        with admin.connect() as connection:
            connection.execute(text(f"ALTER SYSTEM {setting}"))
            connection.execute(text("SELECT pg_reload_conf()"))

    served = [with_application_name(own_cluster.url, SERVED)]
    body = user_body("in.doubt@example.com")
    try:
        with (
            running_servers(served, tmp_path) as servers,
            clients([servers[0].base_url], token, 1) as (client,),
        ):
            assert client.get("/Users").status_code == 200  # the token's use is recorded
            standby("SET synchronous_standby_names = 'nobody'")
            try:
                in_flight = Running(partial(client.post, "/Users", json=body), "in-flight")
                _terminate(admin, _waiting_backends(admin, "SyncRep"))
                response = in_flight.result()
            finally:
                standby("RESET synchronous_standby_names")
            assert_unavailable(response)
            found = client.get("/Users", params={"filter": 'userName eq "in.doubt@example.com"'})
            assert found.json()["totalResults"] == 1
            assert_scim_error(client.post("/Users", json=body), 409, "uniqueness")
    finally:
        admin.dispose()


# SQLite: the file is locked, or cannot be opened ----------------------------------------


def _in_process_client(storage: SqlStorage, token: str) -> httpx.Client:
    return httpx.Client(
        transport=httpx.WSGITransport(app=ScimWsgiApp(ScimService(storage))),
        base_url=BASE_URL,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/scim+json"},
    )


def test_sqlite_lock_held_past_the_busy_timeout_answers_503(tmp_path: Path) -> None:
    """Another connection holds SQLite's write lock longer than pbidentity waits (200 ms).

    Writes answer 503 with Retry-After (not 500) and change nothing; reads still
    answer 200 (WAL: readers do not wait for the writer); once the lock is
    released, writes succeed again.
    """
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    token = provision(url)
    storage = SqlStorage.from_url(url, busy_timeout_ms=200)
    try:
        with _in_process_client(storage, token) as client:
            created = client.post("/Users", json=user_body("waiting@example.com"))
            assert created.status_code == 201, created.text
            user_id = created.json()["id"]
            blocker = sqlite3.connect(path, isolation_level=None)
            try:
                blocker.execute("BEGIN IMMEDIATE")
                started = time.monotonic()
                assert_unavailable(client.post("/Users", json=user_body("queued@example.com")))
                assert time.monotonic() - started >= 0.15  # it did wait, then gave up
                assert_unavailable(
                    client.patch(
                        f"/Users/{user_id}",
                        json=patch_body({"op": "replace", "path": "title", "value": "x"}),
                    )
                )
                assert_unavailable(client.delete(f"/Users/{user_id}"))
                read = client.get(f"/Users/{user_id}")
                assert read.status_code == 200, read.text
                assert client.get("/Users").json()["totalResults"] == 1
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            assert "title" not in client.get(f"/Users/{user_id}").json()
            again = client.post("/Users", json=user_body("queued@example.com"))
            assert again.status_code == 201, again.text
    finally:
        storage.close()


def test_sqlite_database_that_cannot_be_opened_answers_503(tmp_path: Path) -> None:
    """The directory holding the database goes away (an unmounted volume), then comes back.

    New connections cannot open the file: reads and writes answer 503 with
    Retry-After, not 500. With the directory back, requests succeed again.
    """
    volume = tmp_path / "volume"
    volume.mkdir()
    url = f"sqlite:///{volume / 'pbidentity.db'}"
    token = provision(url)
    storage = SqlStorage.from_url(url)
    try:
        with _in_process_client(storage, token) as client:
            created = client.post("/Users", json=user_body("mounted@example.com"))
            assert created.status_code == 201, created.text
            user_id = created.json()["id"]
            unmounted = volume.rename(tmp_path / "unmounted")
            storage.engine.dispose()  # the pooled connections would still hold the old file
            try:
                assert_unavailable(client.get(f"/Users/{user_id}"))
                assert_unavailable(client.post("/Users", json=user_body("lost@example.com")))
            finally:
                unmounted.rename(volume)
            assert client.get(f"/Users/{user_id}").status_code == 200
            again = client.post("/Users", json=user_body("lost@example.com"))
            assert again.status_code == 201, again.text
    finally:
        storage.close()


# A writer killed half-way ----------------------------------------------------------------

_NOW = datetime(2026, 11, 28, 20, 54, 13, tzinfo=UTC)

_LEFTOVERS = {
    "members": "SELECT count(*) FROM members WHERE id LIKE 'doomed%'",
    "member_values": "SELECT count(*) FROM member_values WHERE member_id LIKE 'doomed%'",
    "memberships": "SELECT count(*) FROM memberships WHERE member_id LIKE 'doomed%'",
    "events": "SELECT count(*) FROM events WHERE subject_id LIKE 'doomed%'",
}


def _leftovers(database_url: str) -> dict[str, int]:
    return {table: count_rows(database_url, sql) for table, sql in _LEFTOVERS.items()}


@pytest.mark.slow
def test_writer_killed_mid_transaction_leaves_nothing_half_written(
    database_url: str, tmp_path: Path
) -> None:
    """A process writing a member, its values, memberships and events is SIGKILLed before commit.

    The writer (``tests.scale.write_and_hang``) adds a member with three emails
    and a phone number, puts it in two groups, records an event and adds 150
    more members, then hangs inside the unit; on SQLite it has spilled the
    uncommitted pages into the write-ahead log by then, so half a transaction
    really is on disk. After the kill: no member, no member_values row, no
    membership, no event of it; the groups are intact; the database takes the
    same write again at once (no lock left behind), whole.
    """
    storage = open_storage(database_url)
    try:
        tenant = Admin(storage).create_tenant("acme")
        with storage.transaction() as tx:
            for group_id in ("g1", "g2"):
                tx.add_group(
                    Group(
                        tenant_id=tenant.id,
                        id=group_id,
                        attributes={"displayName": group_id},
                        created=_NOW,
                        last_modified=_NOW,
                    )
                )
    finally:
        storage.close()
    on_sqlite = database_url.startswith("sqlite")
    sqlite_path = Path(database_url.removeprefix("sqlite:///"))
    wal = sqlite_path.with_name(sqlite_path.name + "-wal")
    wal_before = wal.stat().st_size if on_sqlite and wal.exists() else 0

    with (tmp_path / "writer.log").open("w") as log:
        writer = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from tests.scale import write_and_hang; write_and_hang(*sys.argv[1:])",
                database_url,
                tenant.id,
                "doomed",
                "g1,g2",
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=ROOT,
        )
    try:
        assert writer.stdout is not None
        line = Running(writer.stdout.readline, "writer-output").result()
        assert line == "WRITTEN\n", (tmp_path / "writer.log").read_text()
        # Mid-transaction: others do not see it, and (SQLite) it holds the write lock
        # with pages of it already in the write-ahead log.
        assert _leftovers(database_url) == dict.fromkeys(_LEFTOVERS, 0)
        if on_sqlite:
            assert wal.stat().st_size > wal_before + 100_000
            probe = sqlite3.connect(sqlite_path, isolation_level=None, timeout=0.05)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    probe.execute("BEGIN IMMEDIATE")
            finally:
                probe.close()
        os.kill(writer.pid, signal.SIGKILL)
        assert writer.wait(timeout=TIMEOUT) == -signal.SIGKILL
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(timeout=TIMEOUT)
        if writer.stdout is not None:
            writer.stdout.close()

    assert _leftovers(database_url) == dict.fromkeys(_LEFTOVERS, 0)
    assert count_rows(database_url, "SELECT count(*) FROM groups") == 2
    # Usable at once: on SQLite a lock left behind would fail within 1 s.
    storage = (
        SqlStorage.from_url(database_url, busy_timeout_ms=1000)
        if on_sqlite
        else open_storage(database_url)
    )
    try:
        with storage.transaction() as tx:
            tx.add_member(
                Member(
                    tenant_id=tenant.id,
                    id="doomed",
                    attributes={
                        "userName": "doomed@example.com",
                        "emails": [{"value": "doomed@example.com"}, {"value": "d@example.com"}],
                    },
                    created=_NOW,
                    last_modified=_NOW,
                )
            )
            assert tx.add_memberships(tenant.id, "g1", ["doomed"]) == ["doomed"]
        with storage.transaction(write=False) as tx:
            refs = tx.group_members(tenant.id, ["g1", "g2"])
            assert [ref.id for ref in refs["g1"]] == ["doomed"]
            assert list(refs["g2"]) == []
    finally:
        storage.close()
    assert _leftovers(database_url) == {
        "members": 1,
        "member_values": 2,
        "memberships": 1,
        "events": 0,
    }
