"""Link imports: a plan kept in storage, read in pages, applied a chunk at a time, resumably."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

import attrs
import pytest

from pbidentity import link_imports
from pbidentity.admin import Admin
from pbidentity.exceptions import NotFoundError
from pbidentity.link_imports import LinkImports
from pbidentity.link_imports import import_state
from pbidentity.linking import Identity
from pbidentity.members import Members
from pbidentity.storage import Storage

# Small chunks: the same code paths as 500 steps, with few members to create.
CHUNK = 7


@attrs.define
class Clock:
    """A clock the test moves."""

    now: datetime = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        """The current (test) time."""
        return self.now


def population(members: Members, count: int) -> list[Identity]:
    """``count`` app members and an export: each of them, 3 new hires and a conflict."""
    for i in range(count):
        members.add("acme", f"user{i:04d}@acme.test", email=f"user{i:04d}@acme.test")
    members.add("acme", "jane@acme.test")
    members.add("acme", "jd", email="jane.doe@acme.test")
    people = [
        Identity(user_name=f"USER{i:04d}@acme.test", external_id=f"00u{i}") for i in range(count)
    ]
    people += [Identity(user_name=f"new{i}@acme.test") for i in range(3)]
    # One person, two members: by userName and by email.
    people.append(Identity(user_name="jane@acme.test", emails=("jane.doe@acme.test",)))
    return people


@pytest.fixture
def imports(storage: Storage, admin: Admin) -> LinkImports:
    """The imports of a store holding workspaces acme and beta, on a clock the test moves."""
    admin.create_tenant("acme")
    admin.create_tenant("beta")
    return LinkImports(Members(storage, clock=Clock()), chunk=CHUNK)


def finish(imports: LinkImports, import_id: str, actor: str = "portal:user-1") -> int:
    """Apply every batch; how many requests it took."""
    imports.start("acme", import_id)
    requests = 0
    while import_state(imports.get("acme", import_id)) != "applied":
        imports.apply_next("acme", import_id, actor=actor)
        requests += 1
    return requests


def test_a_staged_plan_changes_nothing_and_reads_back_in_pages(imports: LinkImports) -> None:
    """The counts are the plan's; pages cross chunk boundaries; no member is written."""
    people = population(imports.members, CHUNK + 4)
    before = imports.members.all("acme")
    record = imports.stage("acme", people, source="okta.csv", actor="portal:user-1")
    assert record.counts == {
        "create": 3,
        "link": CHUNK + 4,
        "reactivate": 0,
        "unchanged": 0,
        "conflict": 1,
    }
    assert record.chunks == {"changes": 2, "conflicts": 1, "unchanged": 0, "size": CHUNK}
    assert import_state(record) == "planned"
    assert imports.members.all("acme") == before
    plan = imports.members.plan_links("acme", people)
    page = imports.steps("acme", record.id, "changes", start=CHUNK - 5, count=10)
    assert page == list(plan.changes[CHUNK - 5 : CHUNK + 5])
    assert imports.steps("acme", record.id, "changes", start=CHUNK + 4, count=50) == list(
        plan.changes[CHUNK + 4 :]
    )
    [conflict] = imports.steps("acme", record.id, "conflicts", start=0, count=100)
    assert conflict == plan.conflicts[0]
    assert len(conflict.candidates) == 2
    assert imports.steps("acme", record.id, "unchanged", start=0, count=100) == []
    # Applying without a start does nothing.
    assert imports.apply_next("acme", record.id, actor="x").applied == 0
    assert imports.members.all("acme") == before


def test_apply_goes_chunk_by_chunk_to_what_apply_links_does(imports: LinkImports) -> None:
    """Each request applies one chunk; the result is apply_links' and a second import is a no-op."""
    people = population(imports.members, CHUNK + 4)
    record = imports.stage("acme", people, source="okta.csv", actor="portal:user-1")
    imports.start("acme", record.id)
    first = imports.apply_next("acme", record.id, actor="portal:user-1")
    assert (first.applied, import_state(first)) == (1, "applying")
    assert first.result["linked"] + first.result["created"] == CHUNK
    assert finish(imports, record.id) == 1
    done = imports.get("acme", record.id)
    assert done.result == {
        "created": 3,
        "linked": CHUNK + 4,
        "reactivated": 0,
        "unchanged": 0,
        "skipped": 1,
    }
    assert done.finished is not None
    [(step, why)] = list(imports.skipped("acme", record.id))
    assert step.identity.user_name == "jane@acme.test"
    assert "merge or fix them in the app first" in why
    linked = [m for m in imports.members.all("acme") if m.scim_managed]
    assert len(linked) == CHUNK + 7
    events = imports.members.audit_trail("acme", limit=5000)
    assert {e.actor for e in events if e.type == "member.linked"} == {"portal:user-1"}
    again = imports.stage("acme", people, source="okta.csv", actor="portal:user-1")
    assert again.counts["unchanged"] == CHUNK + 7
    finish(imports, again.id)
    assert imports.get("acme", again.id).result["unchanged"] == CHUNK + 7


def test_a_closed_tab_resumes_and_two_tabs_never_create_twice(imports: LinkImports) -> None:
    """A new LinkImports (another request) continues; racing applies create each member once."""
    people = population(imports.members, 3 * CHUNK)
    record = imports.stage("acme", people, source="okta.csv", actor="portal:user-1")
    imports.start("acme", record.id)
    imports.apply_next("acme", record.id, actor="portal:user-1")
    later = LinkImports(imports.members)  # the chunk size is the import's own
    assert later.get("acme", record.id).applied == 1
    barrier = threading.Barrier(4)

    def tab() -> None:
        barrier.wait()
        while import_state(later.get("acme", record.id)) != "applied":
            later.apply_next("acme", record.id, actor="portal:user-1")

    threads = [threading.Thread(target=tab) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = later.get("acme", record.id)
    assert done.result["created"] == 3
    assert done.result["linked"] == 3 * CHUNK
    names = [m.user_name for m in imports.members.all("acme")]
    assert len(names) == len(set(names)) == 3 * CHUNK + 5


def test_a_step_the_members_no_longer_fit_is_skipped_with_why(imports: LinkImports) -> None:
    """Planned, then the app creates the same userName: the create is skipped, named, not forced."""
    record = imports.stage(
        "acme", [Identity(user_name="new@acme.test")], source="x.json", actor="portal:u"
    )
    imports.members.add("acme", "NEW@acme.test")
    finish(imports, record.id)
    done = imports.get("acme", record.id)
    assert (done.result["created"], done.result["skipped"]) == (0, 1)
    [(step, why)] = list(imports.skipped("acme", record.id))
    assert step.identity.user_name == "new@acme.test"
    assert "now taken" in why


def test_an_empty_plan_applies_in_one_request(imports: LinkImports) -> None:
    """No change to make: one request records the end."""
    record = imports.stage("acme", [], source="empty.csv", actor="portal:u")
    assert record.chunks["changes"] == 1
    assert finish(imports, record.id) == 1


def test_imports_expire_are_bounded_and_stay_in_their_workspace(imports: LinkImports) -> None:
    """Another workspace never sees an import; an expired one is gone; a workspace keeps five."""
    clock = imports.members.clock
    assert isinstance(clock, Clock)
    people = [Identity(user_name="a@acme.test")]
    first = imports.stage("acme", people, source="1.csv", actor="portal:u")
    with pytest.raises(NotFoundError):
        imports.get("beta", first.id)
    with pytest.raises(NotFoundError):
        imports.start("beta", first.id)
    with pytest.raises(NotFoundError):
        imports.apply_next("beta", first.id, actor="portal:u")
    for n in range(2, 8):
        clock.now += timedelta(minutes=1)
        imports.stage("acme", people, source=f"{n}.csv", actor="portal:u")
    assert [r.source for r in imports.recent("acme")] == [f"{n}.csv" for n in range(7, 2, -1)]
    with pytest.raises(NotFoundError, match="upload the file again"):
        imports.get("acme", first.id)
    clock.now += timedelta(days=1)
    assert imports.recent("acme") == []
    with pytest.raises(NotFoundError, match="kept for 1 day"):
        imports.steps("acme", imports.members.new_id(), "changes", start=0, count=1)


class _FailingChunks:
    """A storage whose second write of chunks fails, as a crash half-way through an upload."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.writes = 0

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Any]:
        """The real transaction, with add_link_import_chunks failing on its second call."""
        with self.storage.transaction(write=write) as tx:
            outer = self

            class Tx:
                def __getattr__(self, name: str) -> Any:
                    return getattr(tx, name)

                def add_link_import_chunks(self, *args: Any) -> None:
                    outer.writes += 1
                    if outer.writes == 2:
                        raise RuntimeError("the process stopped")
                    tx.add_link_import_chunks(*args)

            yield Tx()

    def close(self) -> None:
        """Nothing of its own to close."""


def test_an_upload_is_shown_only_once_whole(
    imports: LinkImports, storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks are stored a few per transaction; a failure half-way leaves no import behind."""
    monkeypatch.setattr(link_imports, "_CHUNKS_PER_WRITE", 1)
    people = population(imports.members, 3 * CHUNK)
    failing = LinkImports(
        attrs.evolve(imports.members, storage=_FailingChunks(storage)), chunk=CHUNK
    )
    with pytest.raises(RuntimeError):
        failing.stage("acme", people, source="okta.csv", actor="portal:u")
    assert imports.recent("acme") == []
    with storage.transaction(write=False) as tx:
        assert tx.link_imports(tx.find_tenant("acme").id) == []  # type: ignore[union-attr]
    record = imports.stage("acme", people, source="okta.csv", actor="portal:u")
    assert record.complete
    assert record.chunks["changes"] == 4
    # One stored but not yet complete is neither listed nor readable.
    with storage.transaction() as tx:
        tx.add_link_import(attrs.evolve(record, id="half", complete=False))
    assert [r.id for r in imports.recent("acme")] == [record.id]
    with pytest.raises(NotFoundError):
        imports.get("acme", "half")
