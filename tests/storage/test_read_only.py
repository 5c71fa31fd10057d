"""``write=False`` means the same on every backend: each write is refused before it does anything.

The write methods are read from the protocol (:data:`pbidentity.storage.WRITE_METHODS`,
the methods marked ``@writes``), so a new one that a backend does not guard
fails here; every method of the protocol needs a sample call below.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import attrs
import pytest

from pbidentity.domain import Event
from pbidentity.domain import LinkImport
from pbidentity.domain import ScimActivity
from pbidentity.domain import SetupLink
from pbidentity.exceptions import ReadOnlyTransactionError
from pbidentity.query import Query
from pbidentity.storage import WRITE_METHODS
from pbidentity.storage import MemberSearch
from pbidentity.storage import Storage
from pbidentity.storage import Transaction
from tests.storage.test_contract import NOW
from tests.storage.test_contract import make_group
from tests.storage.test_contract import make_member
from tests.storage.test_contract import make_tenant
from tests.storage.test_contract import make_token
from tests.storage.test_saml_contract import connection
from tests.storage.test_saml_contract import request

LATER = NOW + timedelta(minutes=5)


def event(event_id: str) -> Event:
    """A member.created event of tenant t1."""
    return Event(
        id=event_id,
        tenant_id="t1",
        type="member.created",
        subject_id="m1",
        actor="test",
        occurred=NOW,
    )


def link_import(import_id: str) -> LinkImport:
    """A link import of tenant t1 with one change chunk, kept for a day."""
    return LinkImport(
        id=import_id,
        tenant_id="t1",
        source="okta.csv",
        created_by="admin-1",
        created=NOW,
        expires=NOW + timedelta(days=1),
        counts={"create": 1},
        chunks={"changes": 1},
    )


def scim_request(request_id: str) -> ScimActivity:
    """A SCIM request tenant t1 received, refused."""
    return ScimActivity(
        tenant_id="t1",
        id=request_id,
        at=NOW,
        token_name="first",
        method="POST",
        path="/Users",
        status=409,
        scim_type="uniqueness",
        detail="taken",
    )


#: One call per protocol method, each of which succeeds in a writing unit on
#: the world ``populated`` builds (so that a refused write is refused for
#: being a write, not for its arguments).
def setup_link(link_id: str) -> SetupLink:
    """A set-up link of tenant t1, open for a week."""
    return SetupLink(
        id=link_id,
        tenant_id="t1",
        sections=("sso", "scim"),
        created_by="admin-1",
        created=NOW,
        expires=NOW + timedelta(days=7),
    )


SAMPLES: dict[str, Callable[[Transaction], object]] = {
    # Tenants
    "add_tenant": lambda tx: tx.add_tenant(make_tenant("t3")),
    "get_tenant": lambda tx: tx.get_tenant("t1"),
    "find_tenant": lambda tx: tx.find_tenant("slug-t1"),
    "list_tenants": lambda tx: tx.list_tenants(),
    "replace_tenant": lambda tx: tx.replace_tenant(
        attrs.evolve(make_tenant("t1"), name="Renamed", version=2), expected_version=1
    ),
    # Tokens
    "add_token": lambda tx: tx.add_token(make_token("k2", "second")),
    "find_token": lambda tx: tx.find_token("digest-k1"),
    "find_token_with_tenant": lambda tx: tx.find_token_with_tenant("digest-k1"),
    "list_tokens": lambda tx: tx.list_tokens("t1"),
    "revoke_token": lambda tx: tx.revoke_token("t1", "k1", LATER),
    "touch_token": lambda tx: tx.touch_token("k1", LATER),
    # Members
    "add_member": lambda tx: tx.add_member(make_member("m3", "c@x.com")),
    "add_members": lambda tx: tx.add_members([make_member("m3", "c@x.com")]),
    "get_member": lambda tx: tx.get_member("t1", "m1"),
    "replace_member": lambda tx: tx.replace_member(
        attrs.evolve(make_member("m1", "a@x.com", displayName="A"), version=2),
        expected_version=1,
    ),
    "replace_members": lambda tx: tx.replace_members(
        [(attrs.evolve(make_member("m2", "b@x.com", displayName="B"), version=2), 1)]
    ),
    "delete_member": lambda tx: tx.delete_member("t1", "m2"),
    "get_members": lambda tx: tx.get_members("t1", ["m1", "m2"]),
    "list_members": lambda tx: tx.list_members("t1"),
    "members_matching": lambda tx: tx.members_matching("t1", user_name="a@x.com"),
    "count_active_members": lambda tx: tx.count_active_members("t1", "member"),
    "query_members": lambda tx: tx.query_members("t1", Query()),
    "search_members": lambda tx: tx.search_members("t1", MemberSearch(prefix="a", active=True)),
    "existing_member_ids": lambda tx: tx.existing_member_ids("t1", ["m1", "m9"]),
    # Groups
    "add_group": lambda tx: tx.add_group(make_group("g2", "Others")),
    "get_group": lambda tx: tx.get_group("t1", "g1"),
    "replace_group": lambda tx: tx.replace_group(
        attrs.evolve(make_group("g1", "Renamed"), version=2), expected_version=1
    ),
    "delete_group": lambda tx: tx.delete_group("t1", "g1"),
    "query_groups": lambda tx: tx.query_groups("t1", Query()),
    # Memberships
    "add_memberships": lambda tx: tx.add_memberships("t1", "g1", ["m2"]),
    "remove_memberships": lambda tx: tx.remove_memberships("t1", "g1", ["m1"]),
    "group_members": lambda tx: tx.group_members("t1", ["g1"]),
    "member_groups": lambda tx: tx.member_groups("t1", ["m1"]),
    # Events
    "add_events": lambda tx: tx.add_events([event("e2")]),
    "pending_events": lambda tx: tx.pending_events(),
    "mark_delivered": lambda tx: tx.mark_delivered(
        [e.seq for e in tx.pending_events() if e.seq], LATER
    ),
    "list_events": lambda tx: tx.list_events("t1"),
    "prune_events": lambda tx: tx.prune_events(LATER),
    # SAML
    "saml_connections": lambda tx: tx.saml_connections("t1"),
    "add_saml_connection": lambda tx: tx.add_saml_connection(connection("c2", "active")),
    "replace_saml_connection": lambda tx: tx.replace_saml_connection(
        attrs.evolve(connection("c1"), allow_idp_initiated=False, version=2),
        expected_version=1,
    ),
    "delete_saml_connection": lambda tx: tx.delete_saml_connection("t1", "c1"),
    "active_saml_connections": lambda tx: tx.active_saml_connections("http://www.okta.com/exk1"),
    "add_saml_request": lambda tx: tx.add_saml_request(request("r2")),
    "take_saml_request": lambda tx: tx.take_saml_request("t1", "r1"),
    "remember_assertion": lambda tx: tx.remember_assertion("t1", "a2", LATER),
    "saml_signing_key": lambda tx: tx.saml_signing_key("t1"),
    "add_saml_signing_key": lambda tx: tx.add_saml_signing_key("t1", "a-new-key"),
    "saml_sp_keys": lambda tx: tx.saml_sp_keys("t1"),
    "replace_saml_sp_keys": lambda tx: tx.replace_saml_sp_keys("t1", "{}", expected=None),
    "add_setup_link": lambda tx: tx.add_setup_link(setup_link("l2")),
    "setup_links": lambda tx: tx.setup_links("t1"),
    "get_setup_link": lambda tx: tx.get_setup_link("t1", "l1"),
    "add_link_import": lambda tx: tx.add_link_import(link_import("i2")),
    "add_link_import_chunks": lambda tx: tx.add_link_import_chunks(
        "t1", "i1", [("conflicts", 0, "[]")]
    ),
    "link_imports": lambda tx: tx.link_imports("t1"),
    "get_link_import": lambda tx: tx.get_link_import("t1", "i1"),
    "link_import_chunk": lambda tx: tx.link_import_chunk("t1", "i1", "changes", 0),
    "start_link_import": lambda tx: tx.start_link_import("t1", "i1", NOW),
    "claim_link_import_chunk": lambda tx: tx.claim_link_import_chunk("t1", "i1", 0),
    "record_link_import_chunk": lambda tx: tx.record_link_import_chunk(
        "t1", "i1", 0, outcome="{}", result={"created": 1}, finished=NOW
    ),
    "complete_link_import": lambda tx: tx.complete_link_import("t1", "i1"),
    "delete_link_import": lambda tx: tx.delete_link_import("t1", "i1"),
    "purge_link_imports": lambda tx: tx.purge_link_imports(NOW + timedelta(days=2)),
    "open_setup_link": lambda tx: tx.open_setup_link("t1", "l1", NOW),
    "revoke_setup_link": lambda tx: tx.revoke_setup_link("t1", "l1", NOW),
    "add_saml_outcome": lambda tx: tx.add_saml_outcome("t1", "hash-2", "{}", LATER),
    "take_saml_outcome": lambda tx: tx.take_saml_outcome("t1", "hash-1", NOW),
    "purge_saml_state": lambda tx: tx.purge_saml_state(NOW + timedelta(days=1)),
    "add_scim_activity": lambda tx: tx.add_scim_activity([scim_request("q2")]),
    "scim_activity": lambda tx: tx.scim_activity("t1"),
    "prune_scim_activity": lambda tx: tx.prune_scim_activity("t1", before=NOW, keep=0),
}

PROTOCOL_METHODS = frozenset(name for name in dir(Transaction) if not name.startswith("_"))
READ_METHODS = PROTOCOL_METHODS - WRITE_METHODS


@pytest.fixture
def populated(storage: Storage) -> Storage:
    """A tenant with a token, two members, a group, an event and SAML state of each kind."""
    with storage.transaction() as tx:
        tx.add_tenant(make_tenant("t1"))
        tx.add_tenant(make_tenant("t2"))
        tx.add_token(make_token("k1", "first"))
        tx.add_member(make_member("m1", "a@x.com"))
        tx.add_member(make_member("m2", "b@x.com"))
        tx.add_group(make_group("g1", "Admins"))
        tx.add_memberships("t1", "g1", ["m1"])
        tx.add_events([event("e1")])
        tx.add_saml_connection(connection("c1"))
        tx.add_saml_request(request("r1"))
        tx.remember_assertion("t1", "a1", LATER)
        tx.add_saml_outcome("t1", "hash-1", "{}", LATER)
        tx.add_setup_link(setup_link("l1"))
        tx.add_link_import(link_import("i1"))
        tx.add_link_import_chunks("t1", "i1", [("changes", 0, "[]")])
        tx.add_scim_activity([scim_request("q1")])
    return storage


def snapshot(storage: Storage) -> dict[str, Any]:
    """What is stored, as far as reads show it."""
    with storage.transaction(write=False) as tx:
        return {
            "tenants": tx.list_tenants(),
            "tokens": tx.list_tokens("t1"),
            "members": tx.list_members("t1"),
            "groups": tx.query_groups("t1", Query()).items,
            "memberships": tx.group_members("t1", ["g1"]),
            "events": tx.list_events("t1"),
            "connections": tx.saml_connections("t1"),
            "key": tx.saml_signing_key("t1"),
            "sp_keys": tx.saml_sp_keys("t1"),
            "links": tx.setup_links("t1"),
            "imports": tx.link_imports("t1"),
            "chunk": tx.link_import_chunk("t1", "i1", "changes", 0),
            "activity": tx.scim_activity("t1"),
        }


def test_every_protocol_method_has_a_sample_call() -> None:
    """The samples cover the protocol exactly: a new method needs one (and a write, its mark)."""
    assert set(SAMPLES) == PROTOCOL_METHODS
    assert WRITE_METHODS < PROTOCOL_METHODS
    assert {"add_member", "touch_token", "take_saml_request", "purge_saml_state"} <= WRITE_METHODS
    assert {"get_member", "find_token_with_tenant", "saml_signing_key"} <= READ_METHODS


@pytest.mark.parametrize("method", sorted(WRITE_METHODS))
def test_a_write_in_a_read_only_unit_is_refused_before_it_does_anything(
    populated: Storage, method: str
) -> None:
    """Each write method raises ReadOnlyTransactionError in a write=False unit, changing nothing.

    The unit stays usable for reads, and the same call works in a writing unit.
    """
    before = snapshot(populated)
    with populated.transaction(write=False) as tx:
        with pytest.raises(ReadOnlyTransactionError, match=f"^{method} writes"):
            SAMPLES[method](tx)
        assert tx.get_tenant("t1") is not None
    assert snapshot(populated) == before
    with populated.transaction() as tx:
        SAMPLES[method](tx)


@pytest.mark.parametrize("method", sorted(READ_METHODS))
def test_a_read_works_in_a_read_only_unit(populated: Storage, method: str) -> None:
    """Each method not marked as a write runs in a write=False unit."""
    with populated.transaction(write=False) as tx:
        SAMPLES[method](tx)


def test_a_refused_write_is_a_runtime_error_too(populated: Storage) -> None:
    """Calling a write in a read-only unit is a bug in the caller: also a RuntimeError."""
    with populated.transaction(write=False) as tx, pytest.raises(RuntimeError):
        tx.add_tenant(make_tenant("t9"))
