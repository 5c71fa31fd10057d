"""The storage contract for link imports: kept per tenant in chunks, each chunk claimed once."""

from __future__ import annotations

import threading
from datetime import timedelta

import attrs
import pytest

from pbidentity.domain import LinkImport
from pbidentity.exceptions import ConflictError
from pbidentity.exceptions import NotFoundError
from pbidentity.storage import Storage
from tests.storage.test_contract import NOW
from tests.storage.test_contract import store

__all__ = ["store"]


def record(iid: str, *, tenant: str = "t1", ago: int = 0, hours: int = 24) -> LinkImport:
    """An import of ``tenant`` with two change chunks, uploaded ``ago`` minutes before NOW."""
    return LinkImport(
        id=iid,
        tenant_id=tenant,
        source="okta-users.csv",
        created_by="portal:user-1",
        created=NOW - timedelta(minutes=ago),
        expires=NOW + timedelta(hours=hours),
        counts={"create": 600, "link": 2, "reactivate": 0, "unchanged": 1, "conflict": 1},
        chunks={"changes": 2, "conflicts": 1, "unchanged": 1},
    )


def test_imports_and_chunks_are_kept_per_tenant(store: Storage) -> None:
    """An import and its chunks read back as written, for their own tenant only, newest first."""
    with store.transaction() as tx:
        tx.add_link_import(record("i1", ago=5))
        tx.add_link_import(record("i2"))
        tx.add_link_import(record("i3", tenant="t2"))
        tx.add_link_import_chunks(
            "t1", "i1", [("changes", 0, '["a"]'), ("changes", 1, '["b"]'), ("conflicts", 0, "[]")]
        )
        with pytest.raises(ConflictError):
            tx.add_link_import(record("i1"))
        with pytest.raises(NotFoundError):
            tx.add_link_import(record("i4", tenant="nobody"))
    with pytest.raises(ConflictError), store.transaction() as tx:
        tx.add_link_import_chunks("t1", "i1", [("changes", 1, '["again"]')])
    with pytest.raises(NotFoundError), store.transaction() as tx:
        tx.add_link_import_chunks("t2", "i1", [("changes", 0, "[]")])
    with store.transaction(write=False) as tx:
        assert [x.id for x in tx.link_imports("t1")] == ["i2", "i1"]
        assert [x.id for x in tx.link_imports("t2")] == ["i3"]
        assert tx.get_link_import("t1", "i1") == record("i1", ago=5)
        assert tx.get_link_import("t2", "i1") is None
        assert tx.link_import_chunk("t1", "i1", "changes", 1) == ('["b"]', None)
        assert tx.link_import_chunk("t1", "i1", "conflicts", 0) == ("[]", None)
        assert tx.link_import_chunk("t1", "i1", "changes", 2) is None
        assert tx.link_import_chunk("t2", "i1", "changes", 0) is None


def test_applying_claims_each_change_chunk_once_and_records_its_outcome(store: Storage) -> None:
    """A start counts once; chunks are claimed in order, once; outcome and result are kept."""
    with store.transaction() as tx:
        tx.add_link_import(record("i1"))
        tx.add_link_import_chunks("t1", "i1", [("changes", 0, "[1]"), ("changes", 1, "[2]")])
    with store.transaction() as tx:
        assert tx.start_link_import("t1", "i1", NOW)
        assert not tx.start_link_import("t1", "i1", NOW + timedelta(minutes=1))
        assert not tx.start_link_import("t2", "i1", NOW)
        assert not tx.claim_link_import_chunk("t1", "i1", 1)
        assert not tx.claim_link_import_chunk("t2", "i1", 0)
        assert tx.claim_link_import_chunk("t1", "i1", 0)
        assert not tx.claim_link_import_chunk("t1", "i1", 0)
        tx.record_link_import_chunk(
            "t1", "i1", 0, outcome='{"skipped": []}', result={"created": 500}, finished=None
        )
    with store.transaction() as tx:
        assert tx.claim_link_import_chunk("t1", "i1", 1)
        tx.record_link_import_chunk(
            "t1", "i1", 1, outcome="{}", result={"created": 600}, finished=NOW
        )
        with pytest.raises(NotFoundError):
            tx.record_link_import_chunk("t1", "i1", 2, outcome="{}", result={}, finished=None)
    with store.transaction(write=False) as tx:
        assert tx.get_link_import("t1", "i1") == attrs.evolve(
            record("i1"), started=NOW, applied=2, result={"created": 600}, finished=NOW
        )
        assert tx.link_import_chunk("t1", "i1", "changes", 0) == ("[1]", '{"skipped": []}')


def test_a_claim_rolled_back_is_not_spent(store: Storage) -> None:
    """A unit that fails after claiming a chunk leaves it to the next one."""
    with store.transaction() as tx:
        tx.add_link_import(record("i1"))
        tx.add_link_import_chunks("t1", "i1", [("changes", 0, "[]")])

    def claim_then_fail() -> None:
        with store.transaction() as tx:
            assert tx.claim_link_import_chunk("t1", "i1", 0)
            raise RuntimeError

    with pytest.raises(RuntimeError):
        claim_then_fail()
    with store.transaction() as tx:
        assert tx.claim_link_import_chunk("t1", "i1", 0)


def test_two_tabs_claiming_one_chunk_at_once_get_it_once(store: Storage) -> None:
    """Six racing claims of the next chunk: exactly one succeeds."""
    with store.transaction() as tx:
        tx.add_link_import(record("i1"))
    got: list[bool] = []
    barrier = threading.Barrier(6)

    def claim() -> None:
        barrier.wait()
        with store.transaction() as tx:
            got.append(tx.claim_link_import_chunk("t1", "i1", 0))

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got) == [False] * 5 + [True]


def test_expired_imports_are_purged_with_their_chunks(store: Storage) -> None:
    """purge_link_imports removes the expired imports of every tenant, and only those."""
    with store.transaction() as tx:
        tx.add_link_import(record("old", hours=1))
        tx.add_link_import(record("new", hours=48))
        tx.add_link_import(record("other", tenant="t2", hours=1))
        tx.add_link_import_chunks("t1", "old", [("changes", 0, "[]")])
        tx.add_link_import_chunks("t1", "new", [("changes", 0, "[]")])
    with store.transaction() as tx:
        assert tx.purge_link_imports(NOW + timedelta(hours=1)) == 2
        assert tx.purge_link_imports(NOW + timedelta(hours=1)) == 0
    with store.transaction() as tx:
        assert [x.id for x in tx.link_imports("t1")] == ["new"]
        assert tx.link_imports("t2") == []
        assert tx.link_import_chunk("t1", "old", "changes", 0) is None
        assert tx.link_import_chunk("t1", "new", "changes", 0) == ("[]", None)
        assert not tx.delete_link_import("t2", "new")
        assert tx.delete_link_import("t1", "new")
        assert tx.link_import_chunk("t1", "new", "changes", 0) is None
        assert tx.get_link_import("t1", "new") is None


def test_an_import_stored_in_parts_is_marked_complete_once_whole(store: Storage) -> None:
    """An import written incomplete reads so until completed, by its own tenant only."""
    with store.transaction() as tx:
        tx.add_link_import(attrs.evolve(record("i1"), complete=False))
    with store.transaction() as tx:
        assert tx.get_link_import("t1", "i1") == attrs.evolve(record("i1"), complete=False)
        assert not tx.complete_link_import("t2", "i1")
        assert tx.complete_link_import("t1", "i1")
        assert not tx.complete_link_import("t1", "nothing")
    with store.transaction(write=False) as tx:
        assert tx.get_link_import("t1", "i1") == record("i1")
