"""The storage contract for the provisioning activity: per tenant, newest first, bounded."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pbidentity.domain import ScimActivity
from pbidentity.exceptions import ConflictError
from pbidentity.exceptions import NotFoundError
from pbidentity.storage import Storage
from tests.storage.test_contract import NOW
from tests.storage.test_contract import store

__all__ = ["store"]


def request(
    rid: str,
    *,
    tenant: str = "t1",
    seconds: float = 0,
    status: int = 200,
    token: str | None = "okta",  # noqa: S107 - a token's name
    method: str = "GET",
) -> ScimActivity:
    """A SCIM request of ``tenant`` that arrived ``seconds`` after NOW."""
    failed = status >= 400
    return ScimActivity(
        tenant_id=tenant,
        id=rid,
        at=NOW + timedelta(seconds=seconds),
        token_name=token,
        method=method,
        path=f"/Users/{rid}?attributes=userName",
        status=status,
        scim_type="uniqueness" if failed else None,
        detail=f"<b>refused</b> {rid}" if failed else None,
        duration_ms=1.25,
        resource_id=rid,
        request_body='{"userName": "a@x.com", "password": "[redacted]"}' if failed else None,
    )


def ids(entries: object) -> list[str]:
    """The ids of a listing, in its order."""
    return [entry.id for entry in entries]  # type: ignore[attr-defined]


def test_requests_read_back_per_tenant_newest_first(store: Storage) -> None:
    """A batch reads back exactly, newest first (ties by id), each tenant its own only."""
    batch = [
        request("a", seconds=1),
        request("b", seconds=3, status=409),
        request("c", seconds=3),
        request("z", tenant="t2", seconds=2),
    ]
    with store.transaction() as tx:
        tx.add_scim_activity(batch)
        tx.add_scim_activity([])
    with store.transaction(write=False) as tx:
        assert ids(tx.scim_activity("t1")) == ["c", "b", "a"]
        assert ids(tx.scim_activity("t2")) == ["z"]
        assert tx.scim_activity("t1", limit=1) == [batch[2]]
        assert tx.scim_activity("t1")[1] == batch[1]
        assert tx.scim_activity("nobody") == []


def test_a_batch_with_a_missing_tenant_or_a_taken_id_keeps_nothing(store: Storage) -> None:
    """A batch naming no tenant, or an id already kept, is refused whole."""
    with store.transaction() as tx:
        tx.add_scim_activity([request("a")])
    with store.transaction() as tx:
        with pytest.raises(NotFoundError):
            tx.add_scim_activity([request("b"), request("c", tenant="nobody")])
        with pytest.raises(ConflictError):
            tx.add_scim_activity([request("d"), request("a")])
    with store.transaction(write=False) as tx:
        assert ids(tx.scim_activity("t1")) == ["a"]


def test_pages_follow_the_cursor_and_filters_combine(store: Storage) -> None:
    """before= pages on (at, id); failures, token, method and status narrow the listing."""
    with store.transaction() as tx:
        tx.add_scim_activity(
            [
                request("a", seconds=1, status=401, token=None),
                request("b", seconds=2, method="POST", status=409),
                request("c", seconds=3, method="PATCH", token="entra"),
                request("d", seconds=3, method="PATCH", status=400, token="entra"),
                request("e", seconds=4),
                request("n", seconds=0.5, status=304),
                request("f", tenant="t2", seconds=5, status=500),
            ]
        )
    with store.transaction(write=False) as tx:
        first = tx.scim_activity("t1", limit=2)
        assert ids(first) == ["e", "d"]
        last = first[-1]
        assert ids(tx.scim_activity("t1", limit=2, before=(last.at, last.id))) == ["c", "b"]
        assert ids(tx.scim_activity("t1", before=(NOW + timedelta(seconds=2), "b"))) == ["a", "n"]
        assert ids(tx.scim_activity("t1", failures_only=True)) == ["d", "b", "a"]
        # A 304 (If-None-Match) is an answer, not a failure.
        assert ids(tx.scim_activity("t1", status=304)) == ["n"]
        assert ids(tx.scim_activity("t1", token_name="entra")) == ["d", "c"]
        assert ids(tx.scim_activity("t1", token_name="entra", failures_only=True)) == ["d"]
        assert ids(tx.scim_activity("t1", method="PATCH")) == ["d", "c"]
        assert ids(tx.scim_activity("t1", status=409)) == ["b"]
        assert ids(tx.scim_activity("t2", failures_only=True)) == ["f"]
        assert tx.scim_activity("t1", limit=0) == []


def test_a_prune_keeps_the_newest_within_the_time_bound_in_short_batches(store: Storage) -> None:
    """A prune drops the oldest past keep= or before before=, limit= a call, one tenant only."""
    with store.transaction() as tx:
        tx.add_scim_activity([request(f"r{i}", seconds=i) for i in range(10)])
        tx.add_scim_activity([request(f"s{i}", tenant="t2", seconds=i) for i in range(3)])
    with store.transaction() as tx:
        # Keep 6 newest: r0..r3 go, two a call.
        assert tx.prune_scim_activity("t1", before=NOW, keep=6, limit=2) == 2
        assert ids(tx.scim_activity("t1"))[-1] == "r2"
        assert tx.prune_scim_activity("t1", before=NOW, keep=6, limit=2) == 2
        assert tx.prune_scim_activity("t1", before=NOW, keep=6, limit=2) == 0
        assert ids(tx.scim_activity("t1")) == [f"r{i}" for i in range(9, 3, -1)]
        # Older than r7: r4..r6 go, whatever keep says.
        assert tx.prune_scim_activity("t1", before=NOW + timedelta(seconds=7), keep=100) == 3
        assert ids(tx.scim_activity("t1")) == ["r9", "r8", "r7"]
        assert tx.prune_scim_activity("t1", before=NOW, keep=0) == 3
        assert tx.scim_activity("t1") == []
        assert tx.prune_scim_activity("nobody", before=NOW, keep=0) == 0
    with store.transaction(write=False) as tx:
        assert ids(tx.scim_activity("t2")) == ["s2", "s1", "s0"]


def test_a_large_batch_is_kept_whole_or_not_at_all(store: Storage) -> None:
    """A batch of several INSERT statements' worth is kept whole, or refused whole."""
    with store.transaction() as tx:
        tx.add_scim_activity([request(f"a{i:04}", seconds=i) for i in range(1500)])
    with store.transaction() as tx, pytest.raises(ConflictError):
        tx.add_scim_activity([request(f"b{i:04}") for i in range(1500)] + [request("a0000")])
    with store.transaction(write=False) as tx:
        assert len(tx.scim_activity("t1", limit=5000)) == 1500
