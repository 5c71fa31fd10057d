"""The storage contract for SAML: connections, single-use AuthnRequests, the replay cache."""

from __future__ import annotations

import threading
from datetime import timedelta

import attrs
import pytest

from pbidentity.domain import IdentityProvider
from pbidentity.domain import SamlConnection
from pbidentity.domain import SamlRequest
from pbidentity.exceptions import ConflictError
from pbidentity.exceptions import NotFoundError
from pbidentity.exceptions import VersionMismatchError
from pbidentity.storage import Storage
from tests.storage.test_contract import NOW
from tests.storage.test_contract import store

__all__ = ["store"]

IDP = IdentityProvider(
    entity_id="http://www.okta.com/exk1",
    sso_url="https://example.okta.com/app/exk1/sso/saml",
    sso_binding="post",
    certificates=("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",),
    nameid_formats=("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",),
    attributes=("firstName",),
    valid_until=NOW + timedelta(days=365),
    cache_duration="PT1H",
)


def connection(cid: str, state: str = "pending", *, tenant: str = "t1") -> SamlConnection:
    """A connection of tenant t1 in that state."""
    return SamlConnection(
        id=cid,
        tenant_id=tenant,
        state=state,  # type: ignore[arg-type]
        idp=IDP,
        attribute_mapping={"firstName": "givenName"},
        allow_idp_initiated=True,
        unknown_members="create",
        source="https://example.okta.com/app/exk1/sso/saml/metadata",
        metadata_xml="<md:EntityDescriptor/>",
        created=NOW,
        last_attempt={"ok": False, "findings": [{"code": "response.audience"}]},
    )


def request(rid: str, cid: str = "c1", *, minutes: int = 10) -> SamlRequest:
    """An AuthnRequest of tenant t1 for connection ``cid``."""
    return SamlRequest(
        id=rid,
        tenant_id="t1",
        connection_id=cid,
        purpose="authorize",
        relay_state="/settings/sso",
        created=NOW,
        expires=NOW + timedelta(minutes=minutes),
    )


def test_connection_round_trip(store: Storage) -> None:
    with store.transaction() as tx:
        tx.add_saml_connection(connection("c1"))
    with store.transaction(write=False) as tx:
        (found,) = tx.saml_connections("t1")
        assert tx.saml_connections("t2") == []
    assert found == connection("c1")


def test_one_connection_per_state(store: Storage) -> None:
    with store.transaction() as tx:
        tx.add_saml_connection(connection("c1"))
        with pytest.raises(ConflictError) as raised:
            tx.add_saml_connection(connection("c2"))
        assert raised.value.attribute == "state"
        tx.add_saml_connection(connection("c3", "active"))
        # The same state in another tenant is fine.
        tx.add_saml_connection(connection("c4", tenant="t2"))
    with store.transaction(write=False) as tx:
        assert [c.id for c in tx.saml_connections("t1")] == ["c3", "c1"]


def test_swap_pending_to_active_in_one_transaction(store: Storage) -> None:
    with store.transaction() as tx:
        tx.add_saml_connection(connection("old", "active"))
        tx.add_saml_connection(connection("new", "pending"))
    with store.transaction() as tx:
        old, new = tx.saml_connections("t1")
        with pytest.raises(ConflictError):
            tx.replace_saml_connection(
                attrs.evolve(new, state="active", version=2), expected_version=1
            )
        tx.replace_saml_connection(
            attrs.evolve(old, state="previous", version=2), expected_version=1
        )
        tx.replace_saml_connection(
            attrs.evolve(new, state="active", activated=NOW, version=2), expected_version=1
        )
    with store.transaction(write=False) as tx:
        states = {c.id: (c.state, c.version) for c in tx.saml_connections("t1")}
    assert states == {"new": ("active", 2), "old": ("previous", 2)}


def test_replace_checks_version_and_tenant(store: Storage) -> None:
    with store.transaction() as tx:
        tx.add_saml_connection(connection("c1"))
    with store.transaction() as tx:
        with pytest.raises(VersionMismatchError):
            tx.replace_saml_connection(
                attrs.evolve(connection("c1"), version=3), expected_version=2
            )
        with pytest.raises(NotFoundError):
            tx.replace_saml_connection(
                attrs.evolve(connection("c1", tenant="t2"), version=2), expected_version=1
            )


def test_unknown_tenant(store: Storage) -> None:
    with store.transaction() as tx, pytest.raises(NotFoundError):
        tx.add_saml_connection(connection("c1", tenant="nobody"))


def test_active_connections_across_tenants(store: Storage) -> None:
    with store.transaction() as tx:
        tx.add_saml_connection(connection("c1", "active"))
        tx.add_saml_connection(connection("c2", "active", tenant="t2"))
        tx.add_saml_connection(connection("c3", "pending"))
    with store.transaction(write=False) as tx:
        found = tx.active_saml_connections(IDP.entity_id)
        assert tx.active_saml_connections("http://other") == []
    assert sorted(c.id for c in found) == ["c1", "c2"]


def test_requests_are_single_use(store: Storage) -> None:
    with store.transaction() as tx:
        tx.add_saml_connection(connection("c1"))
        tx.add_saml_request(request("r1"))
        with pytest.raises(ConflictError):
            tx.add_saml_request(request("r1"))
    with store.transaction() as tx:
        assert tx.take_saml_request("t2", "r1") is None  # another tenant's id
        assert tx.take_saml_request("t1", "r1") == request("r1")
        assert tx.take_saml_request("t1", "r1") is None


def test_request_needs_its_connection_and_goes_with_it(store: Storage) -> None:
    with store.transaction() as tx:
        with pytest.raises(NotFoundError):
            tx.add_saml_request(request("r1", "missing"))
        tx.add_saml_connection(connection("c1"))
        tx.add_saml_request(request("r1"))
        assert tx.delete_saml_connection("t2", "c1") is False
        assert tx.delete_saml_connection("t1", "c1") is True
        assert tx.delete_saml_connection("t1", "c1") is False
    with store.transaction() as tx:
        assert tx.take_saml_request("t1", "r1") is None


def test_replay_cache(store: Storage) -> None:
    with store.transaction() as tx:
        assert tx.remember_assertion("t1", "a1", NOW + timedelta(minutes=5)) is True
        assert tx.remember_assertion("t1", "a1", NOW + timedelta(minutes=5)) is False
        # Another tenant's ids are its own.
        assert tx.remember_assertion("t2", "a1", NOW + timedelta(minutes=5)) is True
    with store.transaction() as tx:
        assert tx.remember_assertion("t1", "a1", NOW + timedelta(minutes=5)) is False


def test_purge_forgets_only_what_expired(store: Storage) -> None:
    with store.transaction() as tx:
        tx.add_saml_connection(connection("c1"))
        tx.add_saml_request(request("r1", minutes=1))
        tx.add_saml_request(request("r2", minutes=20))
        tx.remember_assertion("t1", "a1", NOW + timedelta(minutes=1))
        tx.remember_assertion("t1", "a2", NOW + timedelta(minutes=20))
    with store.transaction() as tx:
        assert tx.purge_saml_state(NOW + timedelta(minutes=5)) == 2
    with store.transaction() as tx:
        assert tx.take_saml_request("t1", "r1") is None
        assert tx.take_saml_request("t1", "r2") is not None
        assert tx.remember_assertion("t1", "a1", NOW + timedelta(minutes=30)) is True
        assert tx.remember_assertion("t1", "a2", NOW + timedelta(minutes=30)) is False


def test_a_request_is_taken_once_under_concurrency(store: Storage) -> None:
    # On the memory store the threads are serialised; on SQL they race.
    with store.transaction() as tx:
        tx.add_saml_connection(connection("c1"))
        tx.add_saml_request(request("r1"))
    winners: list[bool] = []
    barrier = threading.Barrier(6)

    def take() -> None:
        barrier.wait()
        with store.transaction() as tx:
            winners.append(tx.take_saml_request("t1", "r1") is not None)

    threads = [threading.Thread(target=take) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(winners) == [False] * 5 + [True]


def test_a_tenant_keeps_its_first_signing_key(store: Storage) -> None:
    """The first key stored is the tenant's for good; a later one is ignored, tenants apart."""
    with store.transaction(write=False) as tx:
        assert tx.saml_signing_key("t1") is None
    with store.transaction() as tx:
        assert tx.add_saml_signing_key("t1", "k1") == "k1"
        assert tx.add_saml_signing_key("t1", "k2") == "k1"
    with store.transaction() as tx:
        assert tx.add_saml_signing_key("t1", "k3") == "k1"
        assert tx.saml_signing_key("t1") == "k1"
        assert tx.saml_signing_key("t2") is None
        with pytest.raises(NotFoundError):
            tx.add_saml_signing_key("nobody", "k4")


def test_instances_creating_a_signing_key_at_once_agree(store: Storage) -> None:
    """Six racing first keys: every caller gets the one that was stored."""
    got: list[str] = []
    barrier = threading.Barrier(6)

    def create(index: int) -> None:
        barrier.wait()
        with store.transaction() as tx:
            got.append(tx.add_saml_signing_key("t1", f"k{index}"))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with store.transaction(write=False) as tx:
        assert got == [tx.saml_signing_key("t1")] * 6


def test_an_outcome_is_taken_once_and_never_after_it_expired(store: Storage) -> None:
    """A code's outcome comes out once, for its own tenant, and not at all once expired."""
    with store.transaction() as tx:
        tx.add_saml_outcome("t1", "h1", '{"kind": "sign_in"}', NOW + timedelta(minutes=2))
        tx.add_saml_outcome("t1", "h2", "{}", NOW + timedelta(minutes=2))
        with pytest.raises(ConflictError):
            tx.add_saml_outcome("t1", "h1", "{}", NOW + timedelta(minutes=2))
        with pytest.raises(NotFoundError):
            tx.add_saml_outcome("nobody", "h3", "{}", NOW + timedelta(minutes=2))
    with store.transaction() as tx:
        assert tx.take_saml_outcome("t2", "h1", NOW) is None
        assert tx.take_saml_outcome("t1", "h1", NOW) == '{"kind": "sign_in"}'
        assert tx.take_saml_outcome("t1", "h1", NOW) is None
        assert tx.take_saml_outcome("t1", "h2", NOW + timedelta(minutes=3)) is None
    with store.transaction() as tx:
        # An expired one is gone even though it was never handed out.
        assert tx.take_saml_outcome("t1", "h2", NOW) is None


def test_purge_forgets_expired_outcomes(store: Storage) -> None:
    """Outcomes nobody came back for are swept with the rest of the SAML state."""
    with store.transaction() as tx:
        tx.add_saml_outcome("t1", "old", "{}", NOW + timedelta(minutes=1))
        tx.add_saml_outcome("t1", "new", "{}", NOW + timedelta(minutes=20))
    with store.transaction() as tx:
        assert tx.purge_saml_state(NOW + timedelta(minutes=5)) == 1
    with store.transaction() as tx:
        assert tx.take_saml_outcome("t1", "old", NOW) is None
        assert tx.take_saml_outcome("t1", "new", NOW) == "{}"


def test_an_outcome_is_taken_once_under_concurrency(store: Storage) -> None:
    """Six instances following the same finish link: one gets the outcome."""
    with store.transaction() as tx:
        tx.add_saml_outcome("t1", "h1", "{}", NOW + timedelta(minutes=2))
    winners: list[bool] = []
    barrier = threading.Barrier(6)

    def take() -> None:
        barrier.wait()
        with store.transaction() as tx:
            winners.append(tx.take_saml_outcome("t1", "h1", NOW) is not None)

    threads = [threading.Thread(target=take) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(winners) == [False] * 5 + [True]


def test_sp_keys_are_replaced_only_when_unchanged(store: Storage) -> None:
    """Compare and set: the first document is stored once; a stale expectation changes nothing."""
    with store.transaction(write=False) as tx:
        assert tx.saml_sp_keys("t1") is None
    with store.transaction() as tx:
        assert tx.replace_saml_sp_keys("t1", "first", expected=None)
        assert not tx.replace_saml_sp_keys("t1", "rival", expected=None)
        assert tx.saml_sp_keys("t1") == "first"
    with store.transaction() as tx:
        assert not tx.replace_saml_sp_keys("t1", "stale", expected="something else")
        assert tx.replace_saml_sp_keys("t1", "second", expected="first")
    with store.transaction(write=False) as tx:
        assert tx.saml_sp_keys("t1") == "second"
        assert tx.saml_sp_keys("t2") is None
    with store.transaction() as tx, pytest.raises(NotFoundError):
        tx.replace_saml_sp_keys("nobody", "x", expected=None)


def test_instances_storing_the_first_sp_keys_at_once_agree(store: Storage) -> None:
    """Six instances store their first keys at once: one wins, the others read its keys."""
    winners: list[bool] = []
    barrier = threading.Barrier(6)

    def store_keys(number: int) -> None:
        barrier.wait()
        with store.transaction() as tx:
            winners.append(tx.replace_saml_sp_keys("t1", f"keys {number}", expected=None))

    threads = [threading.Thread(target=store_keys, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(winners) == [False] * 5 + [True]
    with store.transaction(write=False) as tx:
        assert (tx.saml_sp_keys("t1") or "").startswith("keys ")
