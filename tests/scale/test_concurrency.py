"""Correct under concurrency: two server processes on one database, and racing requests.

Every test runs on a SQLite file and on the real PostgreSQL server (the races
between a read and a write of one unit run on PostgreSQL only: SQLite's
serialised writes cannot show them). Racing requests come from real threads, released together by a
barrier, against real ``pbidentity serve`` processes (or the WSGI app called
from threads), spread over two processes where the test has two: a race between
processes is the one no lock inside Python can hide.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from typing import cast

import attrs
import httpx
import pytest
import sqlalchemy
from sqlalchemy import insert

from pbidentity.admin import Admin
from pbidentity.domain import Member
from pbidentity.exceptions import ConflictError
from pbidentity.scim import ScimService
from pbidentity.storage import Storage
from pbidentity.storage import Transaction
from pbidentity.storage import open_storage
from pbidentity.storage.sql import members
from pbidentity.wsgi import ScimWsgiApp
from tests.conftest import BASE_URL
from tests.conftest import Workspace
from tests.conftest import wipe_database
from tests.scale import GROUP_URN
from tests.scale import TIMEOUT
from tests.scale import Running
from tests.scale import Server
from tests.scale import assert_scim_error
from tests.scale import clients
from tests.scale import count_rows
from tests.scale import patch_body
from tests.scale import provision
from tests.scale import run_at_once
from tests.scale import running_servers
from tests.scale import user_body
from tests.scale import with_application_name

#: Racing requests per race.
RACERS = 16


@attrs.frozen
class Deployment:
    """Two ``pbidentity serve`` processes on one database, and a token of its tenant."""

    database_url: str
    token: str
    servers: list[Server]

    @property
    def base_urls(self) -> list[str]:
        """The SCIM base URL of each server."""
        return [server.base_url for server in self.servers]


@pytest.fixture
def deployment(database_url: str, tmp_path: Path) -> Iterator[Deployment]:
    """A tenant with a token, then two servers on its database; their logs must stay clean."""
    token = provision(database_url)
    with running_servers([database_url, database_url], tmp_path) as servers:
        yield Deployment(database_url, token, servers)


# Helpers -------------------------------------------------------------------------------


def _user_ids(client: httpx.Client, scim_filter: str) -> list[str]:
    response = client.get("/Users", params={"filter": scim_filter, "count": 100})
    assert response.status_code == 200, response.text
    return [resource["id"] for resource in response.json()["Resources"]]


def _all_user_ids(client: httpx.Client) -> set[str]:
    response = client.get("/Users", params={"count": 1000, "attributes": "userName"})
    assert response.status_code == 200, response.text
    listing = response.json()
    assert listing["totalResults"] == len(listing["Resources"])
    return {resource["id"] for resource in listing["Resources"]}


def _group_member_ids(client: httpx.Client, group_id: str) -> set[str]:
    response = client.get(f"/Groups/{group_id}")
    assert response.status_code == 200, response.text
    return {member["value"] for member in response.json().get("members", [])}


def _create_users(client: httpx.Client, prefix: str, count: int) -> list[str]:
    ids = []
    for index in range(count):
        created = client.post("/Users", json=user_body(f"{prefix}{index}@example.com"))
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    return ids


def _create_group(client: httpx.Client, name: str, member_ids: list[str]) -> str:
    body = {
        "schemas": [GROUP_URN],
        "displayName": name,
        "members": [{"value": member_id} for member_id in member_ids],
    }
    created = client.post("/Groups", json=body)
    assert created.status_code == 201, created.text
    group_id: str = created.json()["id"]
    return group_id


def _case_variant(text: str, index: int) -> str:
    """The ``index``-th upper/lower-case spelling of ``text`` (distinct for 0 <= index < 16)."""
    letters = iter(range(len(text)))
    spelled = []
    position = 0
    for character in text:
        if character.isalpha():
            position = next(letters)
            upper = (index >> (position % 4)) & 1
            spelled.append(character.upper() if upper else character.lower())
        else:
            spelled.append(character)
    return "".join(spelled)


def _version(response: httpx.Response) -> int:
    found = re.fullmatch(r'W/"(\d+)"', response.headers["etag"])
    assert found is not None, response.headers["etag"]
    return int(found.group(1))


# 1. Two processes, one database --------------------------------------------------------


@pytest.mark.slow
def test_two_processes_see_each_others_writes_at_once(deployment: Deployment) -> None:
    """A write through one server is visible through the other on its next request.

    Creates, changes and deletes alternate between the two processes; before
    each write the other process reads the same thing (so that any cache it had
    would now be stale), and after it the read, the filter and the list through
    the other process must show the write. Group membership changed through
    one shows in the group and in the user (``groups``) through the other.
    """
    with clients(deployment.base_urls, deployment.token, 2) as (one, two):
        ids: list[str] = []
        names: list[str] = []
        for round_ in range(4):
            writer, reader = (one, two) if round_ % 2 == 0 else (two, one)
            name = f"Shared.User{round_}@Example.com"
            assert _user_ids(reader, f'userName eq "{name}"') == []
            created = writer.post("/Users", json=user_body(name, title="first"))
            assert created.status_code == 201, created.text
            user_id = created.json()["id"]
            ids.append(user_id)
            names.append(name)
            seen = reader.get(f"/Users/{user_id}")
            assert seen.status_code == 200, seen.text
            assert seen.json()["userName"] == name
            assert seen.headers["etag"] == created.headers["etag"]
            assert _user_ids(reader, f'userName eq "{name.lower()}"') == [user_id]
            assert _all_user_ids(reader) == set(ids)
            # And back: the reader changes it, the writer sees the change.
            assert sorted(_user_ids(writer, 'title eq "second"')) == sorted(ids[:-1])
            patched = reader.patch(
                f"/Users/{user_id}",
                json=patch_body({"op": "replace", "path": "title", "value": "second"}),
            )
            assert patched.status_code == 200, patched.text
            again = writer.get(f"/Users/{user_id}")
            assert again.json()["title"] == "second"
            assert again.headers["etag"] == patched.headers["etag"]
            assert sorted(_user_ids(writer, 'title eq "second"')) == sorted(ids)

        group_id = _create_group(one, "Engineering", [ids[0]])
        assert _group_member_ids(two, group_id) == {ids[0]}
        added = two.patch(
            f"/Groups/{group_id}",
            json=patch_body({"op": "add", "path": "members", "value": [{"value": ids[1]}]}),
        )
        assert added.status_code == 204, added.text
        assert _group_member_ids(one, group_id) == {ids[0], ids[1]}
        assert [g["value"] for g in one.get(f"/Users/{ids[1]}").json()["groups"]] == [group_id]
        groups = one.get("/Groups", params={"filter": f'members.value eq "{ids[1]}"'})
        assert [g["id"] for g in groups.json()["Resources"]] == [group_id]
        assert _user_ids(one, f'groups.value eq "{group_id}"') == sorted(ids[:2])
        removed = one.patch(
            f"/Groups/{group_id}",
            json=patch_body({"op": "remove", "path": f'members[value eq "{ids[0]}"]'}),
        )
        assert removed.status_code == 204, removed.text
        assert _group_member_ids(two, group_id) == {ids[1]}
        assert two.get(f"/Users/{ids[0]}").json().get("groups", []) == []

        for index, (user_id, name) in enumerate(zip(ids, names, strict=True)):
            deleter, other = (two, one) if index % 2 == 0 else (one, two)
            assert other.get(f"/Users/{user_id}").status_code == 200
            deleted = deleter.delete(f"/Users/{user_id}")
            assert deleted.status_code == 204, deleted.text
            assert_scim_error(other.get(f"/Users/{user_id}"), 404)
            assert _user_ids(other, f'userName eq "{name}"') == []
            assert _all_user_ids(other) == set(ids[index + 1 :])
        assert _group_member_ids(one, group_id) == set()
        assert _group_member_ids(two, group_id) == set()


# 2. Concurrent creates of one userName ----------------------------------------------


def _assert_one_created(
    responses: list[httpx.Response], variants: list[str]
) -> tuple[str, httpx.Response]:
    """Exactly one 201 (for its own spelling), every other a 409 uniqueness error."""
    statuses = Counter(response.status_code for response in responses)
    assert statuses == Counter({201: 1, 409: len(responses) - 1}), statuses
    winner = next(i for i, r in enumerate(responses) if r.status_code == 201)
    for response in responses:
        if response.status_code != 201:
            assert_scim_error(response, 409, "uniqueness")
    created = responses[winner]
    assert created.json()["userName"] == variants[winner]
    return variants[winner], created


@pytest.mark.slow
def test_concurrent_creates_of_one_user_name_over_http(deployment: Deployment) -> None:
    """16 simultaneous POSTs of one userName (16 spellings), over two server processes.

    Exactly one is created (201); every other answer is a 409 with scimType
    ``uniqueness``, never a 500 or a 503; the database ends with one member of
    that (case-folded) userName, the one the 201 described. Three rounds.
    """
    for round_ in range(3):
        name = f"race{round_}.user@example.com"
        variants = [_case_variant(name, i) for i in range(RACERS)]
        assert len(set(variants)) == RACERS
        with clients(deployment.base_urls, deployment.token, RACERS) as racers:
            calls = [
                partial(client.post, "/Users", json=user_body(variant))
                for client, variant in zip(racers, variants, strict=True)
            ]
            responses = run_at_once(calls)
            spelled, created = _assert_one_created(responses, variants)
            for client in racers[:2]:  # one per server
                assert _user_ids(client, f'userName eq "{name}"') == [created.json()["id"]]
        folded = "SELECT count(*) FROM members WHERE user_name_folded = :name"
        assert count_rows(deployment.database_url, folded, {"name": name}) == 1
        assert spelled.lower() == name


def test_concurrent_creates_of_one_user_name_in_process(
    app: ScimWsgiApp, acme: Workspace, database_url: str
) -> None:
    """The same race through the WSGI app called from 16 threads of one process."""
    headers = {"Authorization": f"Bearer {acme.token}", "Accept": "application/scim+json"}
    for round_ in range(3):
        name = f"inproc{round_}@example.com"
        variants = [_case_variant(name, i) for i in range(RACERS)]
        racers = [
            httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE_URL, headers=headers)
            for _ in variants
        ]
        try:
            responses = run_at_once(
                [
                    partial(client.post, "/Users", json=user_body(variant))
                    for client, variant in zip(racers, variants, strict=True)
                ]
            )
        finally:
            for client in racers:
                client.close()
        _assert_one_created(responses, variants)
        folded = "SELECT count(*) FROM members WHERE user_name_folded = :name"
        assert count_rows(database_url, folded, {"name": name}) == 1


# 3. Concurrent membership changes on one group -------------------------------------------


def _race_group_patches(
    racers: list[httpx.Client],
    observer: httpx.Client,
    group_id: str,
    operations: list[dict[str, Any]],
    effect: list[tuple[str, str]],
) -> Counter[int]:
    """Send one PATCH per operation at once, and again for those refused, until all pass.

    ``effect[i]`` is ``("add" | "remove", member id)`` for operation ``i``.
    After every round the group must hold exactly what it held before, plus the
    members of the adds that answered 204, minus those of the removes that
    answered 204: a refused PATCH changed nothing, an accepted one was not
    lost. Returns how often each status came back.
    """
    pending = list(range(len(operations)))
    statuses: Counter[int] = Counter()
    for _ in range(20):
        if not pending:
            break
        before = _group_member_ids(observer, group_id)
        responses = run_at_once(
            [
                partial(racers[i].patch, f"/Groups/{group_id}", json=patch_body(operations[i]))
                for i in pending
            ]
        )
        expected = set(before)
        still = []
        for index, response in zip(pending, responses, strict=True):
            statuses[response.status_code] += 1
            if response.status_code == 204:
                action, member_id = effect[index]
                if action == "add":
                    expected.add(member_id)
                else:
                    expected.discard(member_id)
            else:
                # The service gives up after a few version conflicts in a row
                # and says so; an IdP retries, as this loop does.
                assert_scim_error(response, 409)
                still.append(index)
        assert _group_member_ids(observer, group_id) == expected
        pending = still
    assert not pending, f"{len(pending)} PATCHes still refused after 20 rounds"
    return statuses


@pytest.mark.slow
def test_concurrent_member_adds_to_one_group_lose_nothing(deployment: Deployment) -> None:
    """16 simultaneous PATCHes, each adding a different member to one group, over two servers.

    Every PATCH answers 204 or a SCIM 409 (never a 5xx); the group holds
    exactly the members whose PATCH was accepted (no lost update, nothing of a
    refused one); retried like an IdP does, every member ends up in the group.
    """
    with clients(deployment.base_urls, deployment.token, RACERS) as racers:
        ids = _create_users(racers[0], "adder", RACERS)
        group_id = _create_group(racers[0], "Everyone", [])
        operations = [
            {"op": "add", "path": "members", "value": [{"value": member_id}]} for member_id in ids
        ]
        statuses = _race_group_patches(
            racers, racers[1], group_id, operations, [("add", i) for i in ids]
        )
        assert set(statuses) <= {204, 409}, statuses
        assert _group_member_ids(racers[0], group_id) == set(ids)
        assert _group_member_ids(racers[1], group_id) == set(ids)
    in_group = "SELECT count(*) FROM memberships WHERE group_id = :group"
    assert count_rows(deployment.database_url, in_group, {"group": group_id}) == RACERS


@pytest.mark.slow
def test_concurrent_member_removes_and_adds_on_one_group(deployment: Deployment) -> None:
    """8 PATCHes removing members and 8 adding others, all at once, on one group.

    As for adds: each accepted PATCH shows, each refused one changed nothing,
    and in the end the group holds exactly the added members.
    """
    with clients(deployment.base_urls, deployment.token, RACERS) as racers:
        ids = _create_users(racers[0], "mover", RACERS)
        leaving, joining = ids[: RACERS // 2], ids[RACERS // 2 :]
        group_id = _create_group(racers[0], "Movers", leaving)
        operations: list[dict[str, Any]] = [
            {"op": "remove", "path": f'members[value eq "{member_id}"]'} for member_id in leaving
        ] + [
            {"op": "add", "path": "members", "value": [{"value": member_id}]}
            for member_id in joining
        ]
        effect = [("remove", i) for i in leaving] + [("add", i) for i in joining]
        statuses = _race_group_patches(racers, racers[1], group_id, operations, effect)
        assert set(statuses) <= {204, 409}, statuses
        assert _group_member_ids(racers[0], group_id) == set(joining)
        for member_id in leaving:
            assert racers[1].get(f"/Users/{member_id}").json().get("groups", []) == []


# 4. A PATCH racing a PUT ---------------------------------------------------------------

_BASE = {"name": {"givenName": "Base", "familyName": "Base"}, "title": "base", "nickName": "base"}
_PUT = {
    "name": {"givenName": "Put", "familyName": "Put"},
    "title": "put",
    "nickName": "put",
    "displayName": "Put Put",
}
_PATCH = patch_body(
    {"op": "replace", "path": "title", "value": "patch"},
    {"op": "replace", "path": "nickName", "value": "patch"},
)
_Profile = tuple[object, ...]
#: The PUT's body as the user.
PUT_ONLY: _Profile = ("Put", "Put", "put", "put", "Put Put")
#: The PATCH applied on top of the PUT.
PATCH_AFTER_PUT: _Profile = ("Put", "Put", "patch", "patch", "Put Put")
#: The PATCH applied to the user as created (the PUT lost).
PATCH_ONLY: _Profile = ("Base", "Base", "patch", "patch", None)


def _profile(document: dict[str, Any]) -> _Profile:
    name = document.get("name", {})
    return (
        name.get("givenName"),
        name.get("familyName"),
        document.get("title"),
        document.get("nickName"),
        document.get("displayName"),
    )


@pytest.mark.slow
@pytest.mark.parametrize("if_match", [False, True], ids=["unconditional", "if-match"])
def test_patch_racing_put_never_mixes_them(deployment: Deployment, if_match: bool) -> None:
    """A PATCH and a PUT of one user, sent at once through two processes, 12 times.

    The user ends exactly as the PUT's body or as the PATCH applied on top of
    the PUT, never a mix (the PATCH applied to the old user over the PUT's
    fields would be a lost update). With If-Match both name the same version:
    one answers 200, the other 412, and the user is the winner's result.
    Without, each answers 200 or a SCIM 409, never a 5xx, and the user is the
    result of the 200 with the highest version.
    """
    seen: Counter[_Profile] = Counter()
    with clients(deployment.base_urls, deployment.token, 2) as (one, two):
        for round_ in range(12):
            name = f"contested{round_}@example.com"
            created = one.post("/Users", json=user_body(name, **_BASE))
            assert created.status_code == 201, created.text
            user_id = created.json()["id"]
            headers = {"If-Match": created.headers["etag"]} if if_match else {}
            patcher, putter = (one, two) if round_ % 2 == 0 else (two, one)
            patched, put = run_at_once(
                [
                    partial(patcher.patch, f"/Users/{user_id}", json=_PATCH, headers=headers),
                    partial(
                        putter.put,
                        f"/Users/{user_id}",
                        json=user_body(name, **_PUT),
                        headers=headers,
                    ),
                ]
            )
            final = one.get(f"/Users/{user_id}")
            assert final.status_code == 200, final.text
            state = _profile(final.json())
            accepted = [r for r in (patched, put) if r.status_code == 200]
            for response in (patched, put):
                if response.status_code != 200:
                    assert_scim_error(response, 412 if if_match else 409)
            if if_match:
                assert len(accepted) == 1, (patched.text, put.text)
                assert state == (PATCH_ONLY if accepted[0] is patched else PUT_ONLY)
            elif len(accepted) == 2:
                assert state in (PUT_ONLY, PATCH_AFTER_PUT), state
            else:
                assert accepted in ([put], [patched]), (patched.text, put.text)
                assert state == (PUT_ONLY if accepted[0] is put else PATCH_ONLY)
            last = max(accepted, key=_version)
            assert _profile(last.json()) == state
            assert final.headers["etag"] == last.headers["etag"]
            seen[state] += 1
    assert sum(seen.values()) == 12


# 5. The database enforces userName uniqueness --------------------------------------------


_NOW = datetime(2026, 11, 28, 20, 54, 13, tzinfo=UTC)


def _member(tenant_id: str, member_id: str, user_name: str) -> Member:
    return Member(
        tenant_id=tenant_id,
        id=member_id,
        attributes={"userName": user_name, "emails": [{"value": user_name, "primary": True}]},
        scim_managed=True,
        created=_NOW,
        last_modified=_NOW,
    )


def _wait_for_lock_wait(database_url: str, application_name: str | None = None) -> None:
    """Wait until a PostgreSQL connection (of that application, if named) waits for a lock."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    if application_name is not None:
        query += " AND application_name = :name"
    deadline = time.monotonic() + 10
    while count_rows(database_url, query, {"name": application_name}) == 0:
        assert time.monotonic() < deadline, "the second writer never waited for the first"
        time.sleep(0.02)


@pytest.mark.parametrize("first_ends", ["commit", "rollback"])
def test_racing_inserts_of_one_folded_user_name_are_refused_by_the_database(
    database_url: str, first_ends: str
) -> None:
    """Two units on two connections insert the same userName (two spellings) at once.

    ``add_member`` does not look before it writes, so only the database can
    refuse the second: it waits for the first unit's outcome (PostgreSQL: on
    the unique index, seen as a lock wait; SQLite: on the write lock) and
    fails with ``ConflictError(attribute="userName")`` if the first commits,
    or succeeds if the first rolls back.
    """
    first_storage = open_storage(database_url)
    second_storage = open_storage(with_application_name(database_url, "second-writer"))
    try:
        tenant = Admin(first_storage).create_tenant("acme")
        inserted, finish = threading.Event(), threading.Event()

        def first() -> None:
            with first_storage.transaction() as tx:
                tx.add_member(_member(tenant.id, "m-first", "Jane.Doe@Example.com"))
                inserted.set()
                assert finish.wait(TIMEOUT)
                if first_ends == "rollback":
                    raise LookupError("roll back")

        def second() -> str:
            try:
                with second_storage.transaction() as tx:
                    tx.add_member(_member(tenant.id, "m-second", "jane.doe@EXAMPLE.COM"))
            except ConflictError as error:
                return error.attribute
            return "committed"

        first_unit = Running(first, "first")
        assert inserted.wait(TIMEOUT)
        second_unit = Running(second, "second")
        if database_url.startswith("postgresql"):
            _wait_for_lock_wait(database_url, "second-writer")
        else:
            time.sleep(0.3)
        assert second_unit.is_alive(), "the second unit did not wait for the first"
        finish.set()
        if first_ends == "rollback":
            with pytest.raises(LookupError):
                first_unit.result()
            assert second_unit.result() == "committed"
            survivor = "m-second"
        else:
            first_unit.result()
            assert second_unit.result() == "userName"
            survivor = "m-first"
        with first_storage.transaction(write=False) as tx:
            found = tx.members_matching(tenant.id, user_name="JANE.DOE@example.com")
            assert [member.id for member in found] == [survivor]
    finally:
        first_storage.close()
        second_storage.close()
    count = "SELECT count(*) FROM members WHERE user_name_folded = 'jane.doe@example.com'"
    assert count_rows(database_url, count) == 1
    values = "SELECT count(*) FROM member_values WHERE member_id IN ('m-first', 'm-second')"
    assert count_rows(database_url, values) == 1


def _unique_indexes(connection: sqlalchemy.Connection, table: str) -> set[tuple[str, ...]]:
    """The column lists of the table's full (not partial) unique indexes, as the catalog says."""
    found = set()
    if connection.dialect.name == "sqlite":
        for row in connection.exec_driver_sql(f"PRAGMA index_list('{table}')"):
            _, name, unique, _, partial_ = row
            if unique and not partial_:
                info = connection.exec_driver_sql(f"PRAGMA index_info('{name}')").all()
                found.add(tuple(column for _, _, column in sorted(info)))
        return found
    definitions = connection.execute(
        sqlalchemy.text("SELECT indexdef FROM pg_indexes WHERE tablename = :table"),
        {"table": table},
    ).scalars()
    for definition in definitions:
        match = re.fullmatch(r"CREATE UNIQUE INDEX \S+ ON \S+ USING btree \((.*)\)", definition)
        if match:
            columns = (part.strip().split()[0] for part in match.group(1).split(","))
            found.add(tuple(column.strip('"') for column in columns))
    return found


def test_unique_index_on_folded_user_name_is_in_the_database(
    storage: Storage, database_url: str
) -> None:
    """The catalog has a unique index on members (tenant_id, user_name_folded), and it bites.

    Read from ``PRAGMA index_list`` on SQLite and ``pg_indexes`` on PostgreSQL;
    an INSERT that bypasses pbidentity entirely (Core, on a connection of its
    own) with a userName that folds to a taken one fails with an IntegrityError.
    """
    tenant = Admin(storage).create_tenant("acme")
    with storage.transaction() as tx:
        tx.add_member(_member(tenant.id, "m1", "Jane@Example.com"))
    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.connect() as connection:
            assert ("tenant_id", "user_name_folded") in _unique_indexes(connection, "members")
        row = {
            "tenant_id": tenant.id,
            "id": "m2",
            "document": "{}",
            "scim_managed": True,
            "version": 1,
            "created": _NOW,
            "last_modified": _NOW,
            "values_digest": "-",
            "user_name": "JANE@example.com",
            "user_name_folded": "jane@example.com",
        }
        with pytest.raises(sqlalchemy.exc.IntegrityError), engine.begin() as connection:
            connection.execute(insert(members), [row])
        other = Admin(storage).create_tenant("globex")
        with engine.begin() as connection:  # another tenant may have that userName
            connection.execute(insert(members), [{**row, "tenant_id": other.id}])
    finally:
        engine.dispose()


# 6. A member deleted while a group change adds it ---------------------------------------


def _group_add(client: httpx.Client, group_id: str, member_id: str) -> httpx.Response:
    operation = {"op": "add", "path": "members", "value": [{"value": member_id}]}
    return client.patch(f"/Groups/{group_id}", json=patch_body(operation))


def _group_put(client: httpx.Client, group_id: str, member_id: str) -> httpx.Response:
    body = {"schemas": [GROUP_URN], "displayName": "Team", "members": [{"value": member_id}]}
    return client.put(f"/Groups/{group_id}", json=body)


def _group_post(client: httpx.Client, _group_id: str, member_id: str) -> httpx.Response:
    body = {"schemas": [GROUP_URN], "displayName": "Other", "members": [{"value": member_id}]}
    return client.post("/Groups", json=body)


@pytest.mark.parametrize(
    "change", [_group_add, _group_put, _group_post], ids=["patch-add", "put", "post"]
)
def test_member_deleted_during_a_group_change_is_an_invalid_value(
    storage: Storage,
    app: ScimWsgiApp,
    acme: Workspace,
    database_url: str,
    change: Any,
) -> None:
    """A group write names a user that another unit deletes at that very moment.

    The deleting unit holds its (uncommitted) delete while the group request
    runs: on PostgreSQL the request sees the user, then waits on the membership
    insert's foreign key check; on SQLite it waits for the write lock. The
    delete commits. The answer must be what the same request gets a moment
    later, a 400 ``invalidValue`` naming the user, and the group must be left
    as it was: never a 404 claiming the (existing) group is gone, never a 5xx.
    """
    client = acme.client
    user_id = _create_users(client, "vanishing", 1)[0]
    group_id = _create_group(client, "Team", [])
    before = client.get(f"/Groups/{group_id}")
    tenant_id = Admin(storage).get_tenant("acme").id
    deleter_storage = open_storage(database_url)
    try:
        deleted, finish = threading.Event(), threading.Event()

        def delete() -> None:
            with deleter_storage.transaction() as tx:
                assert tx.delete_member(tenant_id, user_id)
                deleted.set()
                assert finish.wait(TIMEOUT)

        deleter = Running(delete, "deleter")
        assert deleted.wait(TIMEOUT)
        headers = {"Authorization": f"Bearer {acme.token}", "Accept": "application/scim+json"}
        with httpx.Client(
            transport=httpx.WSGITransport(app=app), base_url=BASE_URL, headers=headers
        ) as racer:
            request = Running(partial(change, racer, group_id, user_id), "group-change")
            if database_url.startswith("postgresql"):
                _wait_for_lock_wait(database_url)
            else:
                time.sleep(0.3)
            assert request.is_alive(), "the group change did not wait for the delete"
            finish.set()
            deleter.result()
            response = request.result()
    finally:
        deleter_storage.close()
    body = assert_scim_error(response, 400, "invalidValue")
    assert user_id in body["detail"]
    after = client.get(f"/Groups/{group_id}")
    assert after.status_code == 200, after.text
    assert after.headers["etag"] == before.headers["etag"]
    assert after.json().get("members", []) == []
    groups = client.get("/Groups").json()
    assert [group["id"] for group in groups["Resources"]] == [group_id]


# 7. Everything at once -------------------------------------------------------------------

#: What each operation of the mixed workload may answer (groups are never deleted).
_ALLOWED = {
    "get": {200, 404},
    "patch": {200, 404, 409},
    "put": {200, 404, 409},
    "delete": {204, 404},
    "post": {201, 409},
    "group-add": {204, 400, 409},
    "group-remove": {204, 409},
    "group-put": {200, 400, 409},
}


@pytest.mark.slow
def test_mixed_workload_answers_correctly_and_stays_consistent(deployment: Deployment) -> None:
    """8 threads over two servers send 20 random user and group writes each, all at once.

    Users are created, changed, replaced, deleted and re-created while groups
    gain, lose and replace members. Every answer is one the operation allows
    (never a 5xx; a 404 only for a user, since no group is deleted) and a
    proper SCIM Error when it is one. Afterwards the directory is consistent:
    every group member exists, each user's ``groups`` are exactly the groups
    that list it, and the memberships table holds nothing else.
    """
    slots = 12
    threads = 8
    with clients(deployment.base_urls, deployment.token, threads) as racers:
        current = {slot: _create_users(racers[0], f"mix{slot}-", 1)[0] for slot in range(slots)}
        group_ids = [
            _create_group(racers[0], f"G{g}", [current[s] for s in range(g, slots, 3)])
            for g in range(3)
        ]

        def work(index: int) -> list[tuple[str, httpx.Response]]:
            chooser = random.Random(index)
            client = racers[index]
            answers = []
            for step in range(20):
                operation = chooser.choice(sorted(_ALLOWED))
                slot = chooser.randrange(slots)
                user_id, group_id = current[slot], chooser.choice(group_ids)
                user_name = f"mix{slot}-0@example.com"
                if operation == "get":
                    response = client.get(f"/Users/{user_id}")
                elif operation == "patch":
                    title = {"op": "replace", "path": "title", "value": f"t{index}.{step}"}
                    response = client.patch(f"/Users/{user_id}", json=patch_body(title))
                elif operation == "put":
                    body = user_body(user_name, title=f"put{index}.{step}")
                    response = client.put(f"/Users/{user_id}", json=body)
                elif operation == "delete":
                    response = client.delete(f"/Users/{user_id}")
                elif operation == "post":
                    response = client.post("/Users", json=user_body(user_name))
                    if response.status_code == 201:
                        current[slot] = response.json()["id"]
                elif operation == "group-add":
                    response = _group_add(client, group_id, user_id)
                elif operation == "group-remove":
                    remove = {"op": "remove", "path": f'members[value eq "{user_id}"]'}
                    response = client.patch(f"/Groups/{group_id}", json=patch_body(remove))
                else:
                    members = [{"value": current[s]} for s in chooser.sample(range(slots), 3)]
                    name = f"G{group_ids.index(group_id)}"
                    body = {"schemas": [GROUP_URN], "displayName": name, "members": members}
                    response = client.put(f"/Groups/{group_id}", json=body)
                answers.append((operation, response))
            return answers

        results = run_at_once([partial(work, i) for i in range(threads)])
        for operation, response in (answer for answers in results for answer in answers):
            assert response.status_code in _ALLOWED[operation], (operation, response.text)
            if response.status_code >= 400:
                assert_scim_error(response, response.status_code)
            if response.status_code == 400:
                assert response.json()["scimType"] == "invalidValue", response.text

        observer = racers[1]
        users = _all_user_ids(observer)
        members = {group_id: _group_member_ids(observer, group_id) for group_id in group_ids}
        for group_id, member_ids in members.items():
            assert member_ids <= users, group_id
        for user_id in users:
            groups = observer.get(f"/Users/{user_id}").json().get("groups", [])
            listed = {group_id for group_id, member_ids in members.items() if user_id in member_ids}
            assert {group["value"] for group in groups} == listed
    total = sum(len(member_ids) for member_ids in members.values())
    assert count_rows(deployment.database_url, "SELECT count(*) FROM memberships") == total


# 8. Races between a read and a write of one unit ------------------------------------------


class _PausingTransaction:
    """A unit whose calls of one storage method may pause (see :class:`_Pause`)."""

    def __init__(self, tx: Transaction, pause: _Pause) -> None:
        self._tx = tx
        self._pause = pause

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._tx, name)
        if name != self._pause.method:
            return method

        def paused(*args: Any, **kwargs: Any) -> Any:
            self._pause.here()
            return method(*args, **kwargs)

        return paused


class _Pause:
    """A storage whose next call of ``method``, once armed, waits until told to go on."""

    def __init__(self, storage: Storage, method: str) -> None:
        self._storage = storage
        self.method = method
        self.armed = False
        self.reached = threading.Event()
        self.go_on = threading.Event()

    def here(self) -> None:
        if self.armed:
            self.armed = False
            self.reached.set()
            assert self.go_on.wait(TIMEOUT)

    def wait_until_reached(self) -> None:
        if not self.reached.wait(TIMEOUT):
            raise RuntimeError(f"the request never called {self.method}")

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Transaction]:
        with self._storage.transaction(write=write) as tx:
            yield cast(Transaction, _PausingTransaction(tx, self))

    def close(self) -> None:
        self._storage.close()


def _paused_app(database_url: str, method: str) -> tuple[_Pause, str, str]:
    """A storage pausing before ``method``, a tenant's id and a token's secret."""
    pause = _Pause(open_storage(database_url), method)
    admin = Admin(pause)
    tenant = admin.create_tenant("acme")
    admin.set_scim_enabled("acme", True)
    return pause, tenant.id, admin.create_token("acme", "okta").secret


def _scim_client(storage: Storage, token: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/scim+json"}
    app = ScimWsgiApp(ScimService(storage))
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url=BASE_URL, headers=headers)


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    """The session's PostgreSQL database, emptied."""
    engine = sqlalchemy.create_engine(postgres_url)
    wipe_database(engine)
    engine.dispose()
    return postgres_url


def test_member_deleted_during_a_group_remove_does_not_fail_it(pg_url: str) -> None:
    """A PATCH removing one member races the deletion of another member of the group.

    Okta's membership update removes X and adds Z in one PATCH. The PATCH has
    read the group's members (X and Y) when Y is deleted and committed by
    another unit, before the PATCH checks that the members it adds exist. It
    must still remove X and add Z (204), as it would a moment earlier or later:
    Y left the group with its row. PostgreSQL only: SQLite serialises write
    units, so the delete cannot commit in between.
    """
    pause, tenant_id, token = _paused_app(pg_url, "existing_member_ids")
    try:
        with _scim_client(pause, token) as client:
            kept, deleted, added = _create_users(client, "pair", 3)
            group_id = _create_group(client, "Pair", [kept, deleted])
            pause.armed = True
            remove = {"op": "remove", "path": f'members[value eq "{kept}"]'}
            add = {"op": "add", "path": "members", "value": [{"value": added}]}
            request = Running(
                partial(client.patch, f"/Groups/{group_id}", json=patch_body(remove, add)),
                "remove and add",
            )
            pause.wait_until_reached()
            with pause.transaction() as tx:
                assert tx.delete_member(tenant_id, deleted)
            pause.go_on.set()
            response = request.result()
            assert response.status_code == 204, response.text
            assert _group_member_ids(client, group_id) == {added}
    finally:
        pause.go_on.set()
        pause.close()


def test_user_deleted_during_a_create_of_its_user_name_is_not_a_404(pg_url: str) -> None:
    """A POST of a userName that exists races the deletion of the user that has it.

    The POST has matched the existing user (so it would answer 409) when
    another unit deletes that user and commits, before the POST reads it. The
    POST must answer as a moment earlier (409) or later (201, created), never
    404 for a resource the client did not name. PostgreSQL only, as above.
    """
    pause, tenant_id, token = _paused_app(pg_url, "get_member")
    try:
        with _scim_client(pause, token) as client:
            (existing,) = _create_users(client, "again", 1)
            pause.armed = True
            body = user_body("again0@example.com")
            request = Running(partial(client.post, "/Users", json=body), "create")
            pause.wait_until_reached()
            with pause.transaction() as tx:
                assert tx.delete_member(tenant_id, existing)
            pause.go_on.set()
            response = request.result()
            assert response.status_code in (201, 409), response.text
    finally:
        pause.go_on.set()
        pause.close()
