"""The storage contract for the portal's set-up links: listed per tenant, opened once, revoked."""

from __future__ import annotations

import threading
from datetime import timedelta

import attrs
import pytest

from pbidentity.domain import SetupLink
from pbidentity.exceptions import ConflictError
from pbidentity.exceptions import NotFoundError
from pbidentity.storage import Storage
from tests.storage.test_contract import NOW
from tests.storage.test_contract import store

__all__ = ["store"]


def link(lid: str, *, tenant: str = "t1", minutes: int = 60, ago: int = 0) -> SetupLink:
    """A link of ``tenant`` for SSO and SCIM, created ``ago`` minutes before NOW."""
    return SetupLink(
        id=lid,
        tenant_id=tenant,
        sections=("sso", "scim"),
        created_by="owner-1",
        created=NOW - timedelta(minutes=ago),
        expires=NOW + timedelta(minutes=minutes),
    )


def test_links_are_kept_per_tenant_newest_first(store: Storage) -> None:
    """A link reads back as written, for its own tenant only; each lists its own, newest first."""
    with store.transaction() as tx:
        tx.add_setup_link(link("l1", ago=5))
        tx.add_setup_link(link("l2"))
        tx.add_setup_link(link("l3", tenant="t2"))
        with pytest.raises(ConflictError):
            tx.add_setup_link(link("l1"))
        with pytest.raises(NotFoundError):
            tx.add_setup_link(link("l4", tenant="nobody"))
    with store.transaction(write=False) as tx:
        assert [x.id for x in tx.setup_links("t1")] == ["l2", "l1"]
        assert [x.id for x in tx.setup_links("t2")] == ["l3"]
        assert tx.get_setup_link("t1", "l1") == link("l1", ago=5)
        assert tx.get_setup_link("t2", "l1") is None
        assert tx.get_setup_link("t1", "l3") is None


def test_a_link_opens_once_and_never_revoked_expired_or_for_another_tenant(store: Storage) -> None:
    """open_setup_link is true once; not for a revoked, expired or other tenant's link."""
    with store.transaction() as tx:
        tx.add_setup_link(link("l1"))
        tx.add_setup_link(link("l2"))
        tx.add_setup_link(link("l3", minutes=1))
    with store.transaction() as tx:
        assert not tx.open_setup_link("t2", "l1", NOW)
        assert tx.open_setup_link("t1", "l1", NOW)
        assert not tx.open_setup_link("t1", "l1", NOW)
        assert tx.revoke_setup_link("t1", "l2", NOW)
        assert not tx.revoke_setup_link("t1", "l2", NOW)
        assert not tx.open_setup_link("t1", "l2", NOW)
        assert not tx.open_setup_link("t1", "l3", NOW + timedelta(minutes=1))
        assert not tx.revoke_setup_link("t2", "l3", NOW)
    with store.transaction(write=False) as tx:
        assert tx.get_setup_link("t1", "l1") == attrs.evolve(link("l1"), opened=NOW)
        assert tx.get_setup_link("t1", "l2") == attrs.evolve(link("l2"), revoked=NOW)
        assert tx.get_setup_link("t1", "l3") == link("l3", minutes=1)


def test_an_opening_rolled_back_is_not_spent(store: Storage) -> None:
    """A transaction that fails after opening a link leaves it unopened."""
    with store.transaction() as tx:
        tx.add_setup_link(link("l1"))

    def open_then_fail() -> None:
        with store.transaction() as tx:
            assert tx.open_setup_link("t1", "l1", NOW)
            raise RuntimeError

    with pytest.raises(RuntimeError):
        open_then_fail()
    with store.transaction() as tx:
        assert tx.open_setup_link("t1", "l1", NOW)


def test_browsers_opening_one_link_at_once_get_it_once(store: Storage) -> None:
    """Six racing openings of one link: exactly one succeeds."""
    with store.transaction() as tx:
        tx.add_setup_link(link("l1"))
    got: list[bool] = []
    barrier = threading.Barrier(6)

    def open_it() -> None:
        barrier.wait()
        with store.transaction() as tx:
            got.append(tx.open_setup_link("t1", "l1", NOW))

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got) == [False] * 5 + [True]
