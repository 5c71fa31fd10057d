"""The storage contract: what every backend promises, run on each of them."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from typing import Any

import attrs
import pytest

from pbidentity.domain import ApiToken
from pbidentity.domain import Event
from pbidentity.domain import Group
from pbidentity.domain import Member
from pbidentity.domain import MemberRef
from pbidentity.domain import Tenant
from pbidentity.exceptions import ConflictError
from pbidentity.exceptions import NotFoundError
from pbidentity.exceptions import VersionMismatchError
from pbidentity.query import ENTERPRISE_URN
from pbidentity.query import GROUP_FIELDS
from pbidentity.query import USER_FIELDS
from pbidentity.query import And
from pbidentity.query import CompareOp
from pbidentity.query import Comparison
from pbidentity.query import Filter
from pbidentity.query import Not
from pbidentity.query import Or
from pbidentity.query import Present
from pbidentity.query import Query
from pbidentity.query import Sort
from pbidentity.query import ValueFilter
from pbidentity.storage import Storage
from pbidentity.storage import Transaction

NOW = datetime(2026, 11, 28, 20, 54, 13, 123456, tzinfo=UTC)
U = USER_FIELDS
G = GROUP_FIELDS


def make_tenant(tenant_id: str = "t1", slug: str | None = None) -> Tenant:
    """A tenant with a slug derived from its id unless given."""
    return Tenant(
        id=tenant_id, slug=slug or f"slug-{tenant_id}", name=f"Tenant {tenant_id}", created=NOW
    )


def make_member(
    member_id: str,
    user_name: str,
    *,
    tenant_id: str = "t1",
    created: datetime = NOW,
    enterprise: Mapping[str, Any] | None = None,
    **extra: Any,
) -> Member:
    """A member of tenant t1 with those SCIM attributes (``role`` goes beside the document)."""
    if enterprise is not None:
        extra[ENTERPRISE_URN] = enterprise
    role = extra.pop("role", None)
    return Member(
        tenant_id=tenant_id,
        id=member_id,
        attributes={"userName": user_name, **extra},
        role_attribute=role,
        created=created,
        last_modified=created,
    )


def make_group(group_id: str, display_name: str, *, tenant_id: str = "t1") -> Group:
    """A group of tenant t1."""
    return Group(
        tenant_id=tenant_id,
        id=group_id,
        attributes={"displayName": display_name},
        created=NOW,
        last_modified=NOW,
    )


def make_token(token_id: str, name: str, *, tenant_id: str = "t1", minutes: int = 0) -> ApiToken:
    """A token of tenant t1 created ``minutes`` after NOW."""
    return ApiToken(
        id=token_id,
        tenant_id=tenant_id,
        name=name,
        digest=f"digest-{token_id}",
        created=NOW + timedelta(minutes=minutes),
    )


@pytest.fixture
def store(storage: Storage) -> Storage:
    """A storage holding two tenants, t1 and t2."""
    with storage.transaction() as tx:
        tx.add_tenant(make_tenant("t1"))
        tx.add_tenant(make_tenant("t2"))
    return storage


# Tenants ------------------------------------------------------------------------


def test_tenants_are_found_by_id_and_slug_and_listed_by_slug(storage: Storage) -> None:
    """Tenants round-trip, are found by exact slug and listed in slug order."""
    with storage.transaction() as tx:
        tx.add_tenant(make_tenant("t2", "zeta"))
        tx.add_tenant(make_tenant("t1", "alpha"))
    with storage.transaction() as tx:
        assert tx.get_tenant("t1") == make_tenant("t1", "alpha")
        assert tx.get_tenant("nope") is None
        assert tx.find_tenant("zeta") == make_tenant("t2", "zeta")
        assert tx.find_tenant("ZETA") is None
        assert [t.slug for t in tx.list_tenants()] == ["alpha", "zeta"]


def test_tenant_slug_conflict(storage: Storage) -> None:
    """A taken slug is a ConflictError on slug, on insert and on replace."""
    with storage.transaction() as tx:
        tx.add_tenant(make_tenant("t1", "acme"))
        tx.add_tenant(make_tenant("t2", "other"))
        with pytest.raises(ConflictError) as caught:
            tx.add_tenant(make_tenant("t3", "acme"))
        assert caught.value.attribute == "slug"
        with pytest.raises(ConflictError) as caught:
            tx.replace_tenant(
                attrs.evolve(make_tenant("t2", "acme"), version=2), expected_version=1
            )
        assert caught.value.attribute == "slug"
    with storage.transaction() as tx:
        assert [t.id for t in tx.list_tenants()] == ["t1", "t2"]


def test_replace_tenant_checks_version_and_existence(storage: Storage) -> None:
    """replace_tenant writes on the expected version only and knows missing tenants."""
    with storage.transaction() as tx:
        tx.add_tenant(make_tenant("t1"))
        updated = attrs.evolve(make_tenant("t1"), name="New", scim_enabled=True, version=2)
        tx.replace_tenant(updated, expected_version=1)
        with pytest.raises(VersionMismatchError):
            tx.replace_tenant(attrs.evolve(updated, version=3), expected_version=1)
        with pytest.raises(NotFoundError):
            tx.replace_tenant(make_tenant("ghost"), expected_version=1)
    with storage.transaction() as tx:
        assert tx.get_tenant("t1") == updated


# Tokens -------------------------------------------------------------------------


def test_tokens_found_by_digest_and_listed_oldest_first(store: Storage) -> None:
    """find_token looks up any tenant's token by digest; list_tokens is per tenant, by age."""
    with store.transaction() as tx:
        tx.add_token(make_token("k2", "second", minutes=5))
        tx.add_token(make_token("k1", "first"))
        tx.add_token(make_token("k3", "other", tenant_id="t2"))
    with store.transaction() as tx:
        assert tx.find_token("digest-k3") == make_token("k3", "other", tenant_id="t2")
        assert tx.find_token("digest-none") is None
        assert [t.id for t in tx.list_tokens("t1")] == ["k1", "k2"]
        assert [t.id for t in tx.list_tokens("t2")] == ["k3"]


def test_token_with_tenant_in_one_lookup(store: Storage) -> None:
    """find_token_with_tenant gives the token and its own tenant, revoked tokens included."""
    with store.transaction() as tx:
        tx.add_token(make_token("k1", "first"))
        tx.add_token(make_token("k3", "other", tenant_id="t2"))
        tx.revoke_token("t2", "k3", NOW)
    with store.transaction(write=False) as tx:
        found = tx.find_token_with_tenant("digest-k1")
        assert found is not None
        assert found == (tx.find_token("digest-k1"), tx.get_tenant("t1"))
        other = tx.find_token_with_tenant("digest-k3")
        assert other is not None
        assert other[1] == tx.get_tenant("t2")
        assert other[0].revoked is not None
        assert tx.find_token_with_tenant("digest-none") is None


def test_revoke_token(store: Storage) -> None:
    """A revoked token is still found (so it can be refused) and keeps its first revocation."""
    with store.transaction() as tx:
        tx.add_token(make_token("k1", "okta"))
        tx.revoke_token("t1", "k1", NOW + timedelta(hours=1))
        tx.revoke_token("t1", "k1", NOW + timedelta(hours=2))
        with pytest.raises(NotFoundError):
            tx.revoke_token("t2", "k1", NOW)
        with pytest.raises(NotFoundError):
            tx.revoke_token("t1", "ghost", NOW)
    with store.transaction() as tx:
        token = tx.find_token("digest-k1")
        assert token is not None
        assert token.revoked == NOW + timedelta(hours=1)
        assert not token.is_active


def test_touch_token_records_the_latest_use(store: Storage) -> None:
    """touch_token sets last_used, never moves it back, and ignores unknown tokens."""
    with store.transaction() as tx:
        tx.add_token(make_token("k1", "okta"))
        tx.touch_token("k1", NOW + timedelta(minutes=2))
        tx.touch_token("k1", NOW + timedelta(minutes=1))
        tx.touch_token("ghost", NOW)
    with store.transaction() as tx:
        token = tx.find_token("digest-k1")
        assert token is not None
        assert token.last_used == NOW + timedelta(minutes=2)


def test_duplicate_active_token_name(store: Storage) -> None:
    """Two active tokens of one tenant cannot share a name; revoked ones and other tenants can."""
    with store.transaction() as tx:
        tx.add_token(make_token("k1", "okta"))
        with pytest.raises(ConflictError) as caught:
            tx.add_token(make_token("k2", "okta"))
        assert caught.value.attribute == "name"
        tx.add_token(make_token("k3", "okta", tenant_id="t2"))
        tx.revoke_token("t1", "k1", NOW)
        tx.add_token(make_token("k4", "okta"))
    with store.transaction() as tx:
        assert [t.id for t in tx.list_tokens("t1")] == ["k1", "k4"]


def test_token_of_unknown_tenant(store: Storage) -> None:
    """A token must belong to an existing tenant."""
    with store.transaction() as tx, pytest.raises(NotFoundError):
        tx.add_token(make_token("k1", "okta", tenant_id="ghost"))


# Members ------------------------------------------------------------------------


def test_member_round_trip(store: Storage) -> None:
    """A member comes back equal, its datetimes as aware UTC whatever zone they were written in."""
    paris = timezone(timedelta(hours=1))
    member = Member(
        tenant_id="t1",
        id="m1",
        attributes={
            "userName": "jane@example.com",
            "name": {"givenName": "Jane", "familyName": "Doe"},
            "emails": [{"value": "jane@example.com", "primary": True}],
            ENTERPRISE_URN: {"department": "R&D", "manager": {"value": "m9"}},
            "x": [1, 2.5, None, "ü"],
        },
        role_attribute="Admin",
        role="admin",
        role_source="attribute",
        role_rule="role attribute admin",
        scim_managed=True,
        version=3,
        created=NOW.astimezone(paris),
        last_modified=(NOW + timedelta(seconds=1)).astimezone(paris),
    )
    with store.transaction() as tx:
        tx.add_member(member)
    with store.transaction() as tx:
        stored = tx.get_member("t1", "m1")
        assert stored == member
        assert stored is not None
        assert stored.created.tzinfo == UTC
        assert stored.last_modified.utcoffset() == timedelta(0)
        assert tx.get_member("t1", "m2") is None


def test_replace_member_versions(store: Storage) -> None:
    """replace_member needs the current version; a stale one or a missing member is refused."""
    with store.transaction() as tx:
        tx.add_member(make_member("m1", "jane@x.com"))
        updated = attrs.evolve(make_member("m1", "jane@x.com", title="CEO"), version=2)
        tx.replace_member(updated, expected_version=1)
        with pytest.raises(VersionMismatchError):
            tx.replace_member(attrs.evolve(updated, version=3), expected_version=1)
        with pytest.raises(NotFoundError):
            tx.replace_member(make_member("ghost", "g@x.com"), expected_version=1)
    with store.transaction() as tx:
        assert tx.get_member("t1", "m1") == updated


def test_replace_member_reindexes_changed_values(store: Storage) -> None:
    """After a replace, filters see the new emails and not the old, and unchanged ones stay."""
    emails = [{"value": "old@x.com", "type": "work"}]
    with store.transaction() as tx:
        tx.add_member(make_member("m1", "jane@x.com", emails=emails))
        renamed = attrs.evolve(make_member("m1", "jane@x.com", emails=emails, title="A"), version=2)
        tx.replace_member(renamed, expected_version=1)
        assert ids(tx, Comparison(U["emails.value"], "eq", "old@x.com")) == ["m1"]
        new_emails = [{"value": "new@x.com", "type": "work"}]
        changed = attrs.evolve(renamed, attributes={**renamed.attributes, "emails": new_emails})
        tx.replace_member(attrs.evolve(changed, version=3), expected_version=2)
        assert ids(tx, Comparison(U["emails.value"], "eq", "old@x.com")) == []
        assert ids(tx, Comparison(U["emails.value"], "eq", "new@x.com")) == ["m1"]
        assert ids(tx, Comparison(U["title"], "eq", "a")) == ["m1"]


def test_replace_members_writes_each_over_its_version(store: Storage) -> None:
    """replace_members writes every member, read in the unit or not, role or values changed."""
    with store.transaction() as tx:
        for i in range(5):
            tx.add_member(make_member(f"m{i}", f"u{i}@x.com", title="old"))
    with store.transaction() as tx:
        read = tx.get_members("t1", ["m0", "m1", "m2"])
        # Read in this unit, only the role moves (a group change re-decides it).
        # (At another offset: stored as UTC, as every timestamp is.)
        later = datetime(2026, 5, 6, 9, 8, 7, 654321, tzinfo=timezone(timedelta(hours=-3)))
        roles = [
            attrs.evolve(
                m,
                role="maker",
                role_source="group",
                role_rule=f"r{m.id} «ü»",
                version=2,
                last_modified=later,
            )
            for m in read
        ]
        # Not read in this unit, and a value that filters see.
        titled = [
            attrs.evolve(make_member(f"m{i}", f"u{i}@x.com", title="new"), version=2)
            for i in (3, 4)
        ]
        tx.replace_members([(m, 1) for m in [*roles, *titled]])
    with store.transaction() as tx:
        stored = {m.id: m for m in tx.get_members("t1", [f"m{i}" for i in range(5)])}
        assert [stored[m.id] for m in [*roles, *titled]] == [*roles, *titled]
        assert {stored[m.id].last_modified.utcoffset() for m in roles} == {timedelta(0)}
        assert ids(tx, Comparison(U["title"], "eq", "new")) == ["m3", "m4"]
        assert ids(tx, Comparison(U["title"], "eq", "old")) == ["m0", "m1", "m2"]
        tx.replace_members([])


def test_replace_member_given_what_an_earlier_unit_read(store: Storage) -> None:
    """``previous`` read in another unit writes the member; a move since is still refused."""
    with store.transaction() as tx:
        tx.add_member(make_member("m1", "jane@x.com", title="A"))
    with store.transaction(write=False) as tx:
        read = tx.get_member("t1", "m1")
    assert read is not None
    titled = attrs.evolve(read, attributes={**read.attributes, "title": "B"}, version=2)
    with store.transaction() as tx:
        tx.replace_member(titled, expected_version=1, previous=read)
    with store.transaction() as tx:
        assert tx.get_member("t1", "m1") == titled
        assert ids(tx, Comparison(U["title"], "eq", "b")) == ["m1"]
        # The member moved since ``read``: the version check still holds.
        with pytest.raises(VersionMismatchError):
            tx.replace_member(attrs.evolve(read, version=2), expected_version=1, previous=read)
    with store.transaction() as tx:
        tx.delete_member("t1", "m1")
    with pytest.raises(NotFoundError), store.transaction() as tx:
        tx.replace_member(attrs.evolve(titled, version=3), expected_version=2, previous=titled)


def replace_in_a_unit(store: Storage, updates: list[tuple[Member, int]], *, read: bool) -> None:
    """replace_members in a unit of its own, the members read in it first or not."""
    with store.transaction() as tx:
        if read:
            tx.get_members("t1", [m.id for m, _ in updates])
        tx.replace_members(updates)


@pytest.mark.parametrize("read", [False, True])
def test_replace_members_refuses_a_stale_or_missing_member(store: Storage, read: bool) -> None:
    """One member of the batch at another version, or gone, fails the batch as replace_member."""
    with store.transaction() as tx:
        for i in range(3):
            tx.add_member(make_member(f"m{i}", f"u{i}@x.com"))
    first = (attrs.evolve(make_member("m0", "u0@x.com"), role="maker", version=2), 1)
    stale = (attrs.evolve(make_member("m1", "u1@x.com"), role="maker", version=6), 5)
    ghost = (attrs.evolve(make_member("ghost", "g@x.com"), role="maker", version=2), 1)
    taken = (attrs.evolve(make_member("m2", "U0@x.com"), version=2), 1)
    with pytest.raises(VersionMismatchError):
        replace_in_a_unit(store, [first, stale], read=read)
    with pytest.raises(NotFoundError):
        replace_in_a_unit(store, [first, ghost], read=read)
    with pytest.raises(ConflictError) as caught:
        replace_in_a_unit(store, [taken], read=read)
    assert caught.value.attribute == "userName"
    with store.transaction() as tx:
        assert {m.version for m in tx.get_members("t1", ["m0", "m1", "m2"])} == {1}


def test_user_name_is_unique_case_insensitively(store: Storage) -> None:
    """The userName rule compares folded values, on insert and replace, and names the value."""
    with store.transaction() as tx:
        tx.add_member(make_member("m1", "Jane@X.com"))
        tx.add_member(make_member("m2", "bob@x.com"))
        for user_name in ("jane@x.com", "\uff2aANE@x.COM"):
            with pytest.raises(ConflictError) as caught:
                tx.add_member(make_member("m3", user_name))
            assert caught.value.attribute == "userName"
            assert user_name in str(caught.value)
        with pytest.raises(ConflictError) as caught:
            tx.replace_member(
                attrs.evolve(make_member("m2", "JANE@x.com"), version=2), expected_version=1
            )
        assert caught.value.attribute == "userName"
        # The failed calls left the transaction usable and unchanged.
        tx.replace_member(
            attrs.evolve(make_member("m1", "jane@x.com"), version=2), expected_version=1
        )
        tx.add_member(make_member("m3", "carol@x.com"))
    with store.transaction() as tx:
        assert tx.existing_member_ids("t1", ["m1", "m2", "m3"]) == {"m1", "m2", "m3"}
        bob = tx.get_member("t1", "m2")
        assert bob is not None
        assert bob.user_name == "bob@x.com"
        assert bob.version == 1


def test_member_id_conflict_and_unknown_tenant(store: Storage) -> None:
    """A duplicate member id is a conflict on id; a member needs an existing tenant."""
    with store.transaction() as tx:
        tx.add_member(make_member("m1", "a@x.com"))
        with pytest.raises(ConflictError) as caught:
            tx.add_member(make_member("m1", "b@x.com"))
        assert caught.value.attribute == "id"
        with pytest.raises(NotFoundError):
            tx.add_member(make_member("m2", "b@x.com", tenant_id="ghost"))


def test_refused_writes_name_what_they_are_about_in_the_same_words_everywhere(
    store: Storage,
) -> None:
    """Every backend refuses a write with the same message: the kind, the id, the versions."""
    with store.transaction() as tx:
        tx.add_member(make_member("m1", "a@x.com", externalId="ext-1"))
        tx.add_group(make_group("g1", "Admins"))
        refusals: dict[str, Callable[[], object]] = {
            "tenant 'ghost' does not exist": lambda: tx.add_member(
                make_member("m2", "b@x.com", tenant_id="ghost")
            ),
            "member id 'm1' already exists": lambda: tx.add_member(make_member("m1", "c@x.com")),
            "userName 'a@x.com' is already taken in this tenant": lambda: tx.add_member(
                make_member("m3", "a@x.com")
            ),
            "externalId 'ext-1' is already linked to another member": lambda: tx.add_member(
                make_member("m4", "d@x.com", externalId="ext-1")
            ),
            "member 'm9' does not exist": lambda: tx.replace_member(
                make_member("m9", "e@x.com"), expected_version=1
            ),
            "member 'm1' is at version 1, not 5": lambda: tx.replace_member(
                make_member("m1", "a@x.com"), expected_version=5
            ),
            "group id 'g1' already exists": lambda: tx.add_group(make_group("g1", "Other")),
            "displayName 'Admins' is already taken in this tenant": lambda: tx.add_group(
                make_group("g2", "Admins")
            ),
            "no such members: 'm8', 'm9'": lambda: tx.add_memberships("t1", "g1", ["m9", "m8"]),
            "group 'g9' does not exist": lambda: tx.add_memberships("t1", "g9", ["m1"]),
            "tenant 't1' has no token 'k9'": lambda: tx.revoke_token("t1", "k9", NOW),
        }
        for message, write in refusals.items():
            with pytest.raises((ConflictError, NotFoundError, VersionMismatchError)) as caught:
                write()
            assert str(caught.value) == message


def test_delete_member(store: Storage) -> None:
    """delete_member removes the member and reports whether there was one."""
    with store.transaction() as tx:
        tx.add_member(make_member("m1", "a@x.com", emails=[{"value": "a@x.com"}]))
        assert tx.delete_member("t1", "m1") is True
        assert tx.delete_member("t1", "m1") is False
        assert tx.get_member("t1", "m1") is None
        assert ids(tx, Present(U["emails.value"])) == []
        tx.add_member(make_member("m2", "a@x.com"))


def test_existing_member_ids(store: Storage) -> None:
    """existing_member_ids returns the subset that exists in the tenant."""
    with store.transaction() as tx:
        tx.add_member(make_member("m1", "a@x.com"))
        tx.add_member(make_member("m2", "b@x.com"))
        assert tx.existing_member_ids("t1", ["m1", "m3", "m2", "m1"]) == {"m1", "m2"}
        assert tx.existing_member_ids("t1", []) == set()


# Groups -------------------------------------------------------------------------


def test_group_crud_and_versions(store: Storage) -> None:
    """Groups round-trip, replace on the expected version only, and delete."""
    with store.transaction() as tx:
        tx.add_group(make_group("g1", "Engineering"))
        assert tx.get_group("t1", "g1") == make_group("g1", "Engineering")
        renamed = attrs.evolve(make_group("g1", "R&D"), version=2)
        tx.replace_group(renamed, expected_version=1)
        with pytest.raises(VersionMismatchError):
            tx.replace_group(attrs.evolve(renamed, version=3), expected_version=1)
        with pytest.raises(NotFoundError):
            tx.replace_group(make_group("ghost", "Ghost"), expected_version=1)
        assert tx.get_group("t1", "g1") == renamed
        assert tx.delete_group("t1", "g1") is True
        assert tx.delete_group("t1", "g1") is False
        assert tx.get_group("t1", "g1") is None


def test_group_display_name_is_unique_case_insensitively(store: Storage) -> None:
    """The displayName uniqueness rule uses the folded value, on insert and replace."""
    with store.transaction() as tx:
        tx.add_group(make_group("g1", "Engineering"))
        tx.add_group(make_group("g2", "Sales"))
        with pytest.raises(ConflictError) as caught:
            tx.add_group(make_group("g3", "ENGINEERING"))
        assert caught.value.attribute == "displayName"
        assert "ENGINEERING" in str(caught.value)
        with pytest.raises(ConflictError) as caught:
            tx.replace_group(
                attrs.evolve(make_group("g2", "engineering"), version=2), expected_version=1
            )
        assert caught.value.attribute == "displayName"
        tx.replace_group(
            attrs.evolve(make_group("g1", "ENGINEERING"), version=2), expected_version=1
        )
        tx.add_group(make_group("g3", "Ops"))
        with pytest.raises(NotFoundError):
            tx.add_group(make_group("g4", "Ops", tenant_id="ghost"))


# Memberships --------------------------------------------------------------------


@pytest.fixture
def team(store: Storage) -> Storage:
    """Three members (one with a displayName, one with only a name, one bare) and two groups."""
    with store.transaction() as tx:
        tx.add_member(make_member("m1", "jane@x.com", displayName="Jane D."))
        tx.add_member(make_member("m2", "bob@x.com", name={"givenName": "Bob", "familyName": "B"}))
        tx.add_member(make_member("m3", "carol@x.com"))
        tx.add_group(make_group("g1", "Engineering"))
        tx.add_group(make_group("g2", "Sales"))
    return store


def test_add_memberships_is_idempotent(team: Storage) -> None:
    """Adding members twice keeps one membership and counts only the new ones."""
    with team.transaction() as tx:
        assert tx.add_memberships("t1", "g1", ["m2", "m1", "m1"]) == ["m1", "m2"]
        assert tx.add_memberships("t1", "g1", ["m1", "m3"]) == ["m3"]
        assert tx.add_memberships("t1", "g1", []) == []
        assert [ref.id for ref in tx.group_members("t1", ["g1"])["g1"]] == ["m1", "m2", "m3"]


def test_add_memberships_needs_existing_group_and_members(team: Storage) -> None:
    """Unknown groups or members are NotFoundError and add nothing."""
    with team.transaction() as tx:
        with pytest.raises(NotFoundError):
            tx.add_memberships("t1", "ghost", ["m1"])
        with pytest.raises(NotFoundError, match="m9"):
            tx.add_memberships("t1", "g1", ["m1", "m9"])
        assert tx.group_members("t1", ["g1"]) == {"g1": []}


def test_remove_memberships(team: Storage) -> None:
    """Removing some members, then all (None), reports how many memberships went."""
    with team.transaction() as tx:
        tx.add_memberships("t1", "g1", ["m1", "m2", "m3"])
        assert tx.remove_memberships("t1", "g1", ["m2", "m9"]) == 1
        assert [ref.id for ref in tx.group_members("t1", ["g1"])["g1"]] == ["m1", "m3"]
        assert tx.remove_memberships("t1", "g1", None) == 2
        assert tx.group_members("t1", ["g1"]) == {"g1": []}
        assert tx.remove_memberships("t1", "g1", None) == 0


def test_deleting_a_member_or_group_removes_its_memberships(team: Storage) -> None:
    """Memberships go with the member or group they refer to."""
    with team.transaction() as tx:
        tx.add_memberships("t1", "g1", ["m1", "m2"])
        tx.add_memberships("t1", "g2", ["m1"])
        tx.delete_member("t1", "m1")
        assert tx.group_members("t1", ["g1", "g2"]) == {
            "g1": [MemberRef(id="m2", display="Bob B")],
            "g2": [],
        }
        tx.delete_group("t1", "g1")
        assert tx.member_groups("t1", ["m2"]) == {"m2": []}


def test_group_members_and_member_groups_shapes(team: Storage) -> None:
    """Every requested id is a key; refs are ordered by id with the documented display."""
    with team.transaction() as tx:
        tx.add_memberships("t1", "g2", ["m3", "m1"])
        tx.add_memberships("t1", "g1", ["m2", "m1"])
        assert tx.group_members("t1", ["g2", "g1", "ghost"]) == {
            "g1": [MemberRef(id="m1", display="Jane D."), MemberRef(id="m2", display="Bob B")],
            "g2": [
                MemberRef(id="m1", display="Jane D."),
                MemberRef(id="m3", display="carol@x.com"),
            ],
            "ghost": [],
        }
        assert tx.member_groups("t1", ["m1", "m2", "ghost"]) == {
            "m1": [MemberRef(id="g1", display="Engineering"), MemberRef(id="g2", display="Sales")],
            "m2": [MemberRef(id="g1", display="Engineering")],
            "ghost": [],
        }
        assert tx.group_members("t1", []) == {}


# Tenant isolation ---------------------------------------------------------------


def test_tenant_isolation(team: Storage) -> None:
    """Nothing of tenant t1 can be read, found, changed or linked from tenant t2."""
    with team.transaction() as tx:
        tx.add_memberships("t1", "g1", ["m1"])
        tx.add_token(make_token("k1", "okta"))
    with team.transaction() as tx:
        assert tx.get_member("t2", "m1") is None
        assert tx.get_group("t2", "g1") is None
        assert tx.existing_member_ids("t2", ["m1", "m2"]) == set()
        assert tx.query_members("t2", Query()).total == 0
        assert tx.query_groups("t2", Query()).total == 0
        member_filter = Or(
            Comparison(U["username"], "eq", "jane@x.com"),
            Comparison(U["groups.value"], "eq", "g1"),
        )
        assert tx.query_members("t2", Query(filter=member_filter)).items == []
        group_filter = Comparison(G["members.value"], "eq", "m1")
        assert tx.query_groups("t2", Query(filter=group_filter)).items == []
        assert tx.group_members("t2", ["g1"]) == {"g1": []}
        assert tx.member_groups("t2", ["m1"]) == {"m1": []}
        assert tx.list_tokens("t2") == []
        with pytest.raises(NotFoundError):
            tx.revoke_token("t2", "k1", NOW)
        with pytest.raises(NotFoundError):
            tx.replace_member(make_member("m1", "x@x.com", tenant_id="t2"), expected_version=1)
        with pytest.raises(NotFoundError):
            tx.replace_group(make_group("g1", "Hijacked", tenant_id="t2"), expected_version=1)
        assert tx.delete_member("t2", "m1") is False
        assert tx.delete_group("t2", "g1") is False
        with pytest.raises(NotFoundError):
            tx.add_memberships("t2", "g1", ["m1"])
        assert tx.remove_memberships("t2", "g1", None) == 0
        assert tx.remove_memberships("t2", "g1", ["m1"]) == 0
        # The same userName and displayName are free in another tenant.
        tx.add_member(make_member("m1", "jane@x.com", tenant_id="t2"))
        tx.add_group(make_group("g1", "Engineering", tenant_id="t2"))
        assert tx.group_members("t2", ["g1"]) == {"g1": []}
    with team.transaction() as tx:
        assert tx.group_members("t1", ["g1"]) == {"g1": [MemberRef(id="m1", display="Jane D.")]}
        jane = tx.get_member("t1", "m1")
        assert jane is not None
        assert jane.attributes["displayName"] == "Jane D."


# Transactions -------------------------------------------------------------------


class Boom(Exception):
    """Raised to abort a transaction."""


def test_exception_rolls_everything_back(team: Storage) -> None:
    """An exception in the block undoes every write made in it."""

    def write_then_fail() -> None:
        with team.transaction() as tx:
            tx.add_tenant(make_tenant("t3"))
            tx.add_member(make_member("m4", "dave@x.com"))
            tx.replace_member(
                attrs.evolve(make_member("m1", "new@x.com"), version=2), expected_version=1
            )
            tx.delete_member("t1", "m2")
            tx.add_memberships("t1", "g1", ["m1", "m3"])
            tx.add_token(make_token("k1", "okta"))
            raise Boom

    with pytest.raises(Boom):
        write_then_fail()
    with team.transaction() as tx:
        assert tx.get_tenant("t3") is None
        assert tx.get_member("t1", "m4") is None
        m1 = tx.get_member("t1", "m1")
        assert m1 is not None
        assert m1.user_name == "jane@x.com"
        assert tx.get_member("t1", "m2") is not None
        assert tx.group_members("t1", ["g1"]) == {"g1": []}
        assert tx.find_token("digest-k1") is None
        assert ids(tx, Comparison(U["username"], "eq", "jane@x.com")) == ["m1"]
        tx.add_member(make_member("m4", "dave@x.com"))


def test_uncommitted_writes_are_invisible_to_other_transactions(store: Storage) -> None:
    """Another transaction never sees a write that is later rolled back."""
    written = threading.Event()
    seen: list[Member | None] = []

    def writer() -> None:
        with contextlib.suppress(Boom), store.transaction() as tx:
            tx.add_member(make_member("m1", "jane@x.com"))
            written.set()
            time.sleep(0.2)
            raise Boom

    def reader() -> None:
        written.wait()
        with store.transaction() as tx:
            seen.append(tx.get_member("t1", "m1"))

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [None]


def test_read_only_transactions_read(team: Storage) -> None:
    """A write=False unit sees everything committed."""
    with team.transaction(write=False) as tx:
        assert tx.existing_member_ids("t1", ["m1", "m2", "m3"]) == {"m1", "m2", "m3"}
        assert tx.query_groups("t1", Query()).total == 2


def test_concurrent_writers_serialise(store: Storage) -> None:
    """Threads doing read-modify-write with version checks lose no update."""

    def bump() -> None:
        for _ in range(10):
            while True:
                try:
                    with store.transaction() as tx:
                        tenant = tx.get_tenant("t1")
                        assert tenant is not None
                        tx.replace_tenant(
                            attrs.evolve(tenant, version=tenant.version + 1),
                            expected_version=tenant.version,
                        )
                    break
                except VersionMismatchError:
                    continue

    threads = [threading.Thread(target=bump) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with store.transaction() as tx:
        tenant = tx.get_tenant("t1")
        assert tenant is not None
        assert tenant.version == 31


# Queries ------------------------------------------------------------------------

DAY = timedelta(days=1)


def ids(tx: Transaction, filter_: Filter | None = None, **query: Any) -> list[str]:
    """The ids of tenant t1's members that a query returns, in order."""
    return [member.id for member in tx.query_members("t1", Query(filter=filter_, **query)).items]


@pytest.fixture
def people(store: Storage) -> Iterator[Transaction]:
    """Four members and three groups chosen to tell the operators apart."""
    with store.transaction() as tx:
        tx.add_member(
            make_member(
                "m1",
                "Jane@Example.com",
                created=NOW - 3 * DAY,
                externalId="ext-1",
                displayName="Jane Doe",
                title="Engineer",
                active=True,
                name={"givenName": "Jane", "familyName": "Doe"},
                emails=[
                    {"value": "jane@example.com", "type": "work", "primary": True},
                    {"value": "jd@home.org", "type": "home"},
                ],
                role="admin",
                enterprise={
                    "department": "R&D",
                    "employeeNumber": 1001,
                    "manager": {"value": "m2"},
                },
            )
        )
        tx.add_member(
            make_member(
                "m2",
                "bob@example.com",
                created=NOW - 2 * DAY,
                externalId="EXT-2",
                displayName="Bob",
                title="",
                active=False,
                emails=[
                    {"value": "bob@work.com", "type": "home"},
                    {"value": "bob@home.org", "type": "work", "primary": False},
                ],
            )
        )
        tx.add_member(
            make_member("m3", "straße@example.com", created=NOW - DAY, name={"givenName": "Zoë"})
        )
        tx.add_member(
            make_member(
                "m4",
                "100%_sure@example.com",
                title="Senior Engineer",
                active=True,
                emails=[{"value": "x@y.z", "primary": True}],
            )
        )
        tx.add_group(make_group("g1", "Engineering"))
        tx.add_group(make_group("g2", "Sales"))
        tx.add_group(make_group("g3", "Empty"))
        tx.add_memberships("t1", "g1", ["m1", "m4"])
        tx.add_memberships("t1", "g2", ["m2"])
        yield tx


def cmp(key: str, op: CompareOp, value: str | bool | datetime | None) -> Comparison:
    """A comparison on a user field named by its canonical path."""
    return Comparison(U[key.lower()], op, value)


EMPLOYEE_NUMBER = f"{ENTERPRISE_URN}:employeeNumber"
MEMBER_CASES: list[tuple[str, Filter, list[str]]] = [
    ("eq folds case", cmp("userName", "eq", "JANE@example.COM"), ["m1"]),
    ("eq folds ß to ss", cmp("userName", "eq", "STRASSE@EXAMPLE.COM"), ["m3"]),
    ("ne", cmp("userName", "ne", "jane@example.com"), ["m2", "m3", "m4"]),
    ("co escapes LIKE wildcards", cmp("userName", "co", "%_"), ["m4"]),
    ("co with _ alone", cmp("userName", "co", "_"), ["m4"]),
    ("sw", cmp("userName", "sw", "BOB"), ["m2"]),
    ("ew", cmp("userName", "ew", "EXAMPLE.COM"), ["m1", "m2", "m3", "m4"]),
    ("co empty string", cmp("userName", "co", ""), ["m1", "m2", "m3", "m4"]),
    ("gt code points of folded", cmp("userName", "gt", "c"), ["m1", "m3"]),
    ("ge", cmp("userName", "ge", "jane@example.com"), ["m1", "m3"]),
    ("lt", cmp("userName", "lt", "BOB@EXAMPLE.COM"), ["m4"]),
    ("le", cmp("userName", "le", "BOB@EXAMPLE.COM"), ["m2", "m4"]),
    ("caseExact eq", cmp("externalId", "eq", "ext-2"), []),
    ("caseExact eq exact", cmp("externalId", "eq", "EXT-2"), ["m2"]),
    ("caseExact sw", cmp("externalId", "sw", "ext"), ["m1"]),
    ("pr skips empty and missing", Present(U["title"]), ["m1", "m4"]),
    ("eq null is not present", cmp("title", "eq", None), ["m2", "m3"]),
    ("ne null is present", cmp("title", "ne", None), ["m1", "m4"]),
    ("ne is true for missing", cmp("title", "ne", "engineer"), ["m2", "m3", "m4"]),
    ("eq empty string", cmp("title", "eq", ""), ["m2"]),
    ("co", cmp("title", "co", "ENGINEER"), ["m1", "m4"]),
    ("not co includes missing", Not(cmp("title", "co", "engineer")), ["m2", "m3"]),
    ("gt never matches missing", cmp("title", "gt", ""), ["m1", "m4"]),
    ("gt null", cmp("title", "gt", None), []),
    ("boolean eq", cmp("active", "eq", True), ["m1", "m4"]),
    ("boolean eq false", cmp("active", "eq", False), ["m2"]),
    ("boolean ne", cmp("active", "ne", True), ["m2", "m3"]),
    ("not boolean", Not(cmp("active", "eq", True)), ["m2", "m3"]),
    ("boolean pr", Present(U["active"]), ["m1", "m2", "m4"]),
    ("datetime gt", cmp("meta.created", "gt", NOW - 2 * DAY), ["m3", "m4"]),
    ("datetime ge", cmp("meta.created", "ge", NOW - 2 * DAY), ["m2", "m3", "m4"]),
    ("datetime le", cmp("meta.created", "le", NOW - 3 * DAY), ["m1"]),
    (
        "datetime eq other zone",
        cmp("meta.created", "eq", (NOW - DAY).astimezone(timezone(timedelta(hours=-5)))),
        ["m3"],
    ),
    ("datetime ne", cmp("meta.lastModified", "ne", NOW), ["m1", "m2", "m3"]),
    ("datetime co is false", cmp("meta.created", "co", NOW), []),
    ("id", cmp("id", "eq", "m3"), ["m3"]),
    ("name sub-attribute folds", cmp("name.givenName", "eq", "ZOË"), ["m3"]),
    ("missing displayName", cmp("displayName", "eq", None), ["m3", "m4"]),
    ("role", cmp("role", "eq", "ADMIN"), ["m1"]),
    ("role null", cmp("role", "eq", None), ["m2", "m3", "m4"]),
    ("enterprise", cmp(f"{ENTERPRISE_URN}:department", "eq", "r&d"), ["m1"]),
    ("number compared as text", cmp(EMPLOYEE_NUMBER, "eq", "1001"), ["m1"]),
    ("manager caseExact", cmp(f"{ENTERPRISE_URN}:manager.value", "eq", "M2"), []),
    ("manager", cmp(f"{ENTERPRISE_URN}:manager.value", "eq", "m2"), ["m1"]),
    ("multi any element", cmp("emails.value", "co", "HOME"), ["m1", "m2"]),
    ("multi ne any element", cmp("emails.value", "ne", "jane@example.com"), ["m1", "m2", "m4"]),
    ("not multi eq", Not(cmp("emails.value", "eq", "jane@example.com")), ["m2", "m3", "m4"]),
    ("multi eq null", cmp("emails.value", "eq", None), ["m3"]),
    ("multi ne null", cmp("emails.value", "ne", None), ["m1", "m2", "m4"]),
    ("multi pr", Present(U["emails.type"]), ["m1", "m2"]),
    ("multi boolean", cmp("emails.primary", "eq", True), ["m1", "m4"]),
    (
        "multi fields outside a value filter: any elements",
        And(cmp("emails.type", "eq", "work"), cmp("emails.value", "co", "work")),
        ["m2"],
    ),
    (
        "value filter: one element",
        ValueFilter(
            "emails", And(cmp("emails.type", "eq", "work"), cmp("emails.value", "co", "work"))
        ),
        [],
    ),
    (
        "value filter matches",
        ValueFilter(
            "emails", And(cmp("emails.type", "eq", "WORK"), cmp("emails.primary", "eq", True))
        ),
        ["m1"],
    ),
    ("value filter element null", ValueFilter("emails", cmp("emails.type", "eq", None)), ["m4"]),
    (
        "value filter not",
        ValueFilter("emails", Not(cmp("emails.primary", "eq", True))),
        ["m1", "m2"],
    ),
    ("groups.value", cmp("groups.value", "eq", "g1"), ["m1", "m4"]),
    ("groups.display folds", cmp("groups.display", "eq", "SALES"), ["m2"]),
    ("not groups", Not(cmp("groups.value", "eq", "g1")), ["m2", "m3"]),
    (
        "groups value filter",
        ValueFilter("groups", cmp("groups.display", "sw", "eng")),
        ["m1", "m4"],
    ),
    ("no groups", Not(Present(U["groups.value"])), ["m3"]),
    (
        "or of and",
        Or(
            And(cmp("active", "eq", True), cmp("title", "co", "senior")),
            cmp("userName", "sw", "bob"),
        ),
        ["m2", "m4"],
    ),
    (
        "and of or",
        And(
            cmp("active", "eq", True),
            Or(cmp("title", "co", "senior"), cmp("userName", "sw", "bob")),
        ),
        ["m4"],
    ),
    ("not of or", Not(Or(Present(U["title"]), cmp("active", "eq", False))), ["m3"]),
]


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [pytest.param(f, e, id=name) for name, f, e in MEMBER_CASES],
)
def test_member_filters(people: Transaction, filter_: Filter, expected: list[str]) -> None:
    """Each operator, null rule, multi-valued rule and combination selects the right members."""
    assert ids(people, filter_) == expected


GROUP_CASES: list[tuple[str, Filter, list[str]]] = [
    ("displayName folds", Comparison(G["displayname"], "eq", "engineering"), ["g1"]),
    ("members.value", Comparison(G["members.value"], "eq", "m2"), ["g2"]),
    ("members.display is displayName", Comparison(G["members.display"], "co", "jane"), ["g1"]),
    (
        "members.display falls back to userName",
        Comparison(G["members.display"], "eq", "100%_SURE@example.com"),
        ["g1"],
    ),
    ("empty group", Not(Present(G["members.value"])), ["g3"]),
    ("datetime", Comparison(G["meta.created"], "eq", NOW), ["g1", "g2", "g3"]),
    (
        "members value filter",
        ValueFilter("members", Comparison(G["members.value"], "eq", "m4")),
        ["g1"],
    ),
]


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [pytest.param(f, e, id=name) for name, f, e in GROUP_CASES],
)
def test_group_filters(people: Transaction, filter_: Filter, expected: list[str]) -> None:
    """Group filters, including members.* which come from memberships, select the right groups."""
    page = people.query_groups("t1", Query(filter=filter_))
    assert [group.id for group in page.items] == expected


SORT_CASES: list[tuple[str, Sort, list[str]]] = [
    ("by folded userName", Sort(U["username"]), ["m4", "m2", "m1", "m3"]),
    ("missing last ascending", Sort(U["title"]), ["m2", "m1", "m4", "m3"]),
    ("missing first descending", Sort(U["title"], descending=True), ["m3", "m4", "m1", "m2"]),
    ("boolean ties by id", Sort(U["active"]), ["m2", "m1", "m4", "m3"]),
    ("ties by id descending too", Sort(U["active"], descending=True), ["m3", "m1", "m4", "m2"]),
    ("datetime descending", Sort(U["meta.created"], descending=True), ["m4", "m3", "m2", "m1"]),
    ("multi-valued: primary, else first", Sort(U["emails.value"]), ["m2", "m1", "m4", "m3"]),
    ("caseExact", Sort(U["externalid"]), ["m2", "m1", "m3", "m4"]),
]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [pytest.param(s, e, id=name) for name, s, e in SORT_CASES],
)
def test_sort(people: Transaction, sort: Sort, expected: list[str]) -> None:
    """Sorting orders by the (folded) value, puts missing values at the end, breaks ties by id."""
    assert ids(people, sort=sort) == expected


def test_paging_and_total(people: Transaction) -> None:
    """start_index is 1-based, count limits, total counts every match."""

    def page(filter_: Filter | None = None, **query: Any) -> tuple[list[str], int]:
        result = people.query_members("t1", Query(filter=filter_, **query))
        return [member.id for member in result.items], result.total

    assert page() == (["m1", "m2", "m3", "m4"], 4)
    assert page(start_index=2, count=2) == (["m2", "m3"], 4)
    assert page(start_index=4, count=10) == (["m4"], 4)
    assert page(start_index=5, count=10) == ([], 4)
    assert page(start_index=9) == ([], 4)
    assert page(count=0) == ([], 4)
    assert page(start_index=0, count=1) == (["m1"], 4)
    assert page(cmp("userName", "ew", ".com"), start_index=2, count=1) == (["m2"], 4)
    assert page(cmp("active", "eq", True), sort=Sort(U["title"], descending=True)) == (
        ["m4", "m1"],
        2,
    )
    groups = people.query_groups("t1", Query(sort=Sort(G["displayname"]), count=2))
    assert ([g.id for g in groups.items], groups.total) == (["g3", "g1"], 3)


def test_queries_return_whole_members(people: Transaction) -> None:
    """Query results are the same values get_member returns."""
    page = people.query_members("t1", Query(filter=cmp("id", "eq", "m1")))
    assert list(page.items) == [people.get_member("t1", "m1")]


def test_unknown_fields_are_refused(people: Transaction) -> None:
    """A field the resource does not have is a caller bug, not an empty result."""
    with pytest.raises(ValueError, match=r"members\.value"):
        people.query_members("t1", Query(filter=Comparison(G["members.value"], "eq", "m1")))
    with pytest.raises(ValueError, match="cannot sort"):
        people.query_members("t1", Query(sort=Sort(U["groups.value"])))


def _attributes(member: Member | None) -> Mapping[str, Any]:
    assert member is not None
    return member.attributes


def test_documents_are_copies(store: Storage) -> None:
    """Mutating a document after writing or reading it does not change what is stored."""
    attributes: dict[str, Any] = {"userName": "a@x.com", "emails": [{"value": "a@x.com"}]}
    with store.transaction() as tx:
        tx.add_member(make_member("m1", "a@x.com", emails=attributes["emails"]))
        attributes["emails"].append({"value": "b@x.com"})
        read = _attributes(tx.get_member("t1", "m1"))
        read["emails"].append({"value": "c@x.com"})
        assert _attributes(tx.get_member("t1", "m1"))["emails"] == [{"value": "a@x.com"}]


# Members in bulk, the admin count, tenant settings ------------------------------


def test_get_and_list_members_in_id_order(team: Storage) -> None:
    """get_members skips unknown ids; list_members walks the tenant by keyset."""
    with team.transaction(write=False) as tx:
        assert [m.id for m in tx.get_members("t1", ["m3", "m1", "ghost", "m1"])] == ["m1", "m3"]
        assert tx.get_members("t2", ["m1"]) == []
        assert [m.id for m in tx.list_members("t1", limit=2)] == ["m1", "m2"]
        assert [m.id for m in tx.list_members("t1", after="m2", limit=2)] == ["m3"]
        assert tx.list_members("t1", after="m3") == []
        assert tx.list_members("t2") == []


def test_count_active_members_counts_the_decided_role_of_active_members(team: Storage) -> None:
    """Only active members whose decided role matches count; the role attribute does not."""
    with team.transaction() as tx:
        for member_id, role, active in (("m1", "admin", True), ("m2", "admin", False)):
            member = tx.get_member("t1", member_id)
            assert member is not None
            updated = attrs.evolve(
                member,
                attributes={**member.attributes, "active": active},
                role=role,
                role_source="app",
                version=member.version + 1,
            )
            tx.replace_member(updated, expected_version=member.version)
        third = tx.get_member("t1", "m3")
        assert third is not None
        tx.replace_member(
            attrs.evolve(third, role_attribute="admin", version=2), expected_version=1
        )
    with team.transaction(write=False) as tx:
        assert tx.count_active_members("t1", "admin") == 1
        assert tx.count_active_members("t1", "viewer") == 0
        assert tx.count_active_members("t2", "admin") == 0


def test_a_member_without_active_counts_as_active(store: Storage) -> None:
    """No "active", or a null one, is active for Member.active and for the admin guard's count."""
    with store.transaction() as tx:
        tx.add_member(attrs.evolve(make_member("m1", "ann@example.com"), role="admin"))
        tx.add_member(attrs.evolve(make_member("m2", "bo@example.com", active=None), role="admin"))
        tx.add_member(attrs.evolve(make_member("m3", "cy@example.com", active=False), role="admin"))
    with store.transaction(write=False) as tx:
        found = {m.id: m.active for m in tx.get_members("t1", ["m1", "m2", "m3"])}
        assert found == {"m1": True, "m2": True, "m3": False}
        assert tx.count_active_members("t1", "admin") == 2


def test_tenant_settings_round_trip(store: Storage) -> None:
    """A tenant's settings document comes back equal, also through the token lookup."""
    settings = {"roles": {"mode": "group-based", "mappings": [{"role": "admin", "priority": 2}]}}
    with store.transaction() as tx:
        tenant = tx.get_tenant("t1")
        assert tenant is not None
        assert tenant.settings == {}
        tx.replace_tenant(attrs.evolve(tenant, settings=settings, version=2), expected_version=1)
        tx.add_token(ApiToken(id="k1", tenant_id="t1", name="okta", digest="d1", created=NOW))
    with store.transaction(write=False) as tx:
        stored = tx.get_tenant("t1")
        assert stored is not None
        assert stored.settings == settings
        found = tx.find_token_with_tenant("d1")
        assert found is not None
        assert found[1] == stored


# Events: the outbox and the audit trail -----------------------------------------


def make_event(event_id: str, tenant_id: str = "t1", **extra: Any) -> Event:
    """An event about member m1."""
    return Event(
        id=event_id,
        tenant_id=tenant_id,
        type="member.updated",
        subject_id="m1",
        actor="token:okta",
        occurred=NOW,
        data={"changed": ["name"], **extra},
    )


def test_events_are_numbered_in_order_and_delivered_once(store: Storage) -> None:
    """Events are numbered in insertion order, seen as pending and in the audit trail."""
    with store.transaction() as tx:
        tx.add_events([make_event("e1"), make_event("e2", n=2)])
        tx.add_events([make_event("e3")])
    with store.transaction(write=False) as tx:
        pending = tx.pending_events(10)
        assert [e.id for e in pending] == ["e1", "e2", "e3"]
        seqs = [e.seq or 0 for e in pending]
        assert all(seq > 0 for seq in seqs)
        assert seqs == sorted(seqs)
        assert pending[1].data == {"changed": ["name"], "n": 2}
        assert pending[0].occurred == NOW
        assert pending[0].delivered is None
        assert [e.id for e in tx.pending_events(2)] == ["e1", "e2"]
    with store.transaction() as tx:
        tx.mark_delivered(seqs[:2], NOW)
    with store.transaction(write=False) as tx:
        assert [e.id for e in tx.pending_events(10)] == ["e3"]
        trail = tx.list_events("t1")
        assert [e.id for e in trail] == ["e1", "e2", "e3"]
        assert trail[0].delivered == NOW
        assert [e.id for e in tx.list_events("t1", after=trail[0].seq or 0, limit=1)] == ["e2"]


def test_events_vanish_with_a_rolled_back_transaction(store: Storage) -> None:
    """Events commit or roll back with the change they describe."""
    with contextlib.suppress(RuntimeError), store.transaction() as tx:
        tx.add_events([make_event("e1")])
        raise RuntimeError("the change failed")
    with store.transaction(write=False) as tx:
        assert tx.pending_events(10) == []
        assert tx.list_events("t1") == []


def test_events_are_per_tenant_in_the_audit_trail(store: Storage) -> None:
    """A tenant's audit trail never shows another tenant's events."""
    with store.transaction() as tx:
        tx.add_events([make_event("e1"), make_event("e2", tenant_id="t2")])
    with store.transaction(write=False) as tx:
        assert [e.id for e in tx.list_events("t1")] == ["e1"]
        assert [e.id for e in tx.list_events("t2")] == ["e2"]
        assert [e.id for e in tx.pending_events(10)] == ["e1", "e2"]


def test_event_for_unknown_tenant_is_refused(store: Storage) -> None:
    """An event must name a tenant; a refused batch adds nothing."""
    with store.transaction() as tx:
        tx.add_events([make_event("e1")])
        with pytest.raises(NotFoundError):
            tx.add_events([make_event("e2"), make_event("e3", tenant_id="ghost")])
    with store.transaction(write=False) as tx:
        assert [e.id for e in tx.list_events("t1")] == ["e1"]


@pytest.mark.parametrize("count", [1, 7, 8, 150])
def test_a_batch_of_events_keeps_its_order_and_values(store: Storage, count: int) -> None:
    """Few events or many (a group change's, inserted in one statement): order and values kept."""
    occurred = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    made = [
        attrs.evolve(
            make_event(
                f"e{n:03d}",
                tenant_id=f"t{1 + n % 2}",
                n=n,
                rule=f"group 'Ünïcode \"{n}\"' (priority 1) maps to maker",
                nested={"list": [1, 2.5, None, True], "empty": {}},
            ),
            type="member.role_changed",
            subject_id=f"m{count - n:03d}",
            # Not sorted by id: seq must follow the order given.
            id=f"e{(n * 37) % count:03d}-{n}",
            occurred=occurred + timedelta(microseconds=n),
        )
        for n in range(count)
    ]
    with store.transaction() as tx:
        tx.add_events(made[:1])
        tx.add_events(made[1:])
    with store.transaction(write=False) as tx:
        pending = tx.pending_events(count + 1)
    assert [e.id for e in pending] == [e.id for e in made]
    seqs = [e.seq or 0 for e in pending]
    assert seqs == sorted(set(seqs))
    for stored, sent in zip(pending, made, strict=True):
        assert stored.occurred == sent.occurred
        assert stored.occurred.utcoffset() == timedelta(0)
        assert (stored.tenant_id, stored.type, stored.subject_id, stored.actor) == (
            sent.tenant_id,
            sent.type,
            sent.subject_id,
            sent.actor,
        )
        assert stored.data == sent.data
        assert stored.delivered is None


@pytest.mark.parametrize("count", [2, 40])
def test_a_batch_of_events_naming_an_unknown_tenant_is_refused_whole(
    store: Storage, count: int
) -> None:
    """However many events a batch has, one naming no tenant refuses it all; the unit goes on."""
    with store.transaction() as tx:
        tx.add_events([make_event("e0")])
        batch = [make_event(f"e{n}") for n in range(1, count)]
        with pytest.raises(NotFoundError):
            tx.add_events([*batch[: count // 2], make_event("ghostly", tenant_id="ghost"), *batch])
        tx.add_events([make_event("last")])
    with store.transaction(write=False) as tx:
        assert [e.id for e in tx.list_events("t1")] == ["e0", "last"]


def test_events_added_last_commit_with_the_unit_in_order(store: Storage) -> None:
    """Events added ``last`` are stored with the unit's change, after the events before them."""
    with store.transaction() as tx:
        tx.add_events([make_event("e1")])
        tx.add_events([make_event("e2"), make_event("e3", n=3)], last=True)
    with store.transaction(write=False) as tx:
        trail = tx.list_events("t1")
        assert [e.id for e in trail] == ["e1", "e2", "e3"]
        assert trail[2].data == {"changed": ["name"], "n": 3}
        assert trail[2].occurred == NOW
        seqs = [e.seq or 0 for e in trail]
        assert seqs == sorted(seqs)
    with contextlib.suppress(RuntimeError), store.transaction() as tx:
        tx.add_events([make_event("e4")], last=True)
        raise RuntimeError("the change failed")
    with store.transaction(write=False) as tx:
        assert [e.id for e in tx.pending_events(10)] == ["e1", "e2", "e3"]


def test_a_statement_after_events_added_last_finds_them_written(store: Storage) -> None:
    """A read or write after ``last`` events sees them, in order, before its own."""
    with store.transaction() as tx:
        tx.add_events([make_event("e1")], last=True)
        assert [e.id for e in tx.list_events("t1")] == ["e1"]
        tx.add_events([make_event("e2")], last=True)
        tx.add_events([make_event("e3")], last=True)
        tx.touch_token("no-such-token", NOW)
        tx.add_events([make_event("e4")])
    with store.transaction(write=False) as tx:
        assert [e.id for e in tx.list_events("t1")] == ["e1", "e2", "e3", "e4"]


def test_events_added_last_for_an_unknown_tenant_keep_nothing_of_the_unit(store: Storage) -> None:
    """A ``last`` batch naming a missing tenant is refused; nothing of the unit stays.

    The refusal may come from the call or from the commit that sends the
    events (PostgreSQL); either way nothing of the unit is stored.
    """

    def unit() -> None:
        with store.transaction() as tx:
            tx.add_events([make_event("e1")])
            tx.add_events([make_event("e2"), make_event("e3", tenant_id="ghost")], last=True)

    with pytest.raises(NotFoundError):
        unit()
    with store.transaction(write=False) as tx:
        assert tx.list_events("t1") == []
        assert tx.pending_events(10) == []


def test_events_added_last_then_a_statement_are_refused_there(store: Storage) -> None:
    """Sent before a later statement, a refused ``last`` batch fails there, and the unit goes on."""
    with store.transaction() as tx:
        tx.add_events([make_event("e1")])
        try:
            tx.add_events([make_event("e2", tenant_id="ghost")], last=True)
        except NotFoundError:
            pass  # refused at once (memory, SQLite)
        else:
            with pytest.raises(NotFoundError):
                tx.list_events("t1")  # sends them first (PostgreSQL)
        assert [e.id for e in tx.list_events("t1")] == ["e1"]
    with store.transaction(write=False) as tx:
        assert [e.id for e in tx.list_events("t1")] == ["e1"]


def test_prune_deletes_only_delivered_events_older_than_the_cutoff(store: Storage) -> None:
    """Pruning deletes delivered events delivered before the cutoff, never the outbox."""
    with store.transaction() as tx:
        tx.add_events([make_event(f"e{n}") for n in range(1, 6)])
        seqs = [e.seq or 0 for e in tx.pending_events(10)]
        tx.mark_delivered(seqs[:2], NOW)  # e1, e2: old
        tx.mark_delivered(seqs[3:4], NOW + timedelta(days=10))  # e4: young
    # e3 and e5 are undelivered (e3 older than every delivered one).
    with store.transaction() as tx:
        assert tx.prune_events(NOW + timedelta(days=1)) == 2
    with store.transaction(write=False) as tx:
        assert [e.id for e in tx.list_events("t1")] == ["e3", "e4", "e5"]
        assert [e.id for e in tx.pending_events(10)] == ["e3", "e5"]
    with store.transaction() as tx:
        # The cutoff is exclusive: delivered exactly then stays.
        assert tx.prune_events(NOW + timedelta(days=10)) == 0
        assert tx.prune_events(NOW + timedelta(days=10, microseconds=1)) == 1
    with store.transaction(write=False) as tx:
        assert [e.id for e in tx.list_events("t1")] == ["e3", "e5"]


def test_prune_looks_at_no_more_than_its_limit_and_rolls_back(store: Storage) -> None:
    """One prune deletes at most ``limit`` rows, oldest first; a rolled-back one deletes none."""
    with store.transaction() as tx:
        tx.add_events([make_event(f"e{n}", tenant_id=f"t{1 + n % 2}") for n in range(1, 8)])
        tx.mark_delivered([e.seq or 0 for e in tx.pending_events(10)], NOW)
        tx.add_events([make_event("e8")])
    later = NOW + timedelta(days=1)
    with contextlib.suppress(RuntimeError), store.transaction() as tx:
        assert tx.prune_events(later, limit=3) == 3
        raise RuntimeError("the unit failed")
    with store.transaction(write=False) as tx:
        assert len(tx.list_events("t1")) + len(tx.list_events("t2")) == 8
        assert [e.id for e in tx.pending_events(10)] == ["e8"]
    with store.transaction() as tx:
        assert tx.prune_events(later, limit=3) == 3
    with store.transaction(write=False) as tx:
        # e1, e2, e3 went first: the oldest delivered by seq, of every tenant.
        assert [e.id for e in tx.list_events("t1")] == ["e4", "e6", "e8"]
        assert [e.id for e in tx.list_events("t2")] == ["e5", "e7"]
    with store.transaction() as tx:
        assert tx.prune_events(later, limit=3) == 3
        assert tx.prune_events(later, limit=3) == 1
        assert tx.prune_events(later, limit=3) == 0
    with store.transaction(write=False) as tx:
        assert [e.id for e in tx.list_events("t1")] == ["e8"]
        assert [e.id for e in tx.pending_events(10)] == ["e8"]


def test_a_stuck_outbox_does_not_stall_pruning(store: Storage) -> None:
    """Undelivered events before the delivered ones take no room in a prune's window."""
    with store.transaction() as tx:
        tx.add_events([make_event(f"e{n}") for n in range(1, 7)])
        seqs = [e.seq or 0 for e in tx.pending_events(10)]
        tx.mark_delivered(seqs[3:], NOW)  # e1..e3 stay pending: a handler keeps failing
    with store.transaction() as tx:
        assert tx.prune_events(NOW + timedelta(days=1), limit=2) == 2
        assert tx.prune_events(NOW + timedelta(days=1), limit=2) == 1
    with store.transaction(write=False) as tx:
        assert [e.id for e in tx.list_events("t1")] == ["e1", "e2", "e3"]


def test_audit_trail_filters_by_type_actor_and_time_newest_first(store: Storage) -> None:
    """The audit trail filters by types, actor and occurred range, and pages backwards by seq."""
    made = [
        attrs.evolve(make_event("e1"), type="member.created", occurred=NOW),
        attrs.evolve(make_event("e2"), actor="admin:ann", occurred=NOW + timedelta(hours=1)),
        attrs.evolve(make_event("e3"), type="group.created", occurred=NOW + timedelta(hours=2)),
        attrs.evolve(make_event("e4", tenant_id="t2"), occurred=NOW + timedelta(hours=2)),
        attrs.evolve(make_event("e5"), occurred=NOW + timedelta(hours=3)),
    ]
    with store.transaction() as tx:
        tx.add_events(made)
    with store.transaction(write=False) as tx:

        def ids(**filters: Any) -> list[str]:
            return [e.id for e in tx.list_events("t1", **filters)]

        assert ids(newest_first=True) == ["e5", "e3", "e2", "e1"]
        assert ids(newest_first=True, limit=2) == ["e5", "e3"]
        seq_e3 = tx.list_events("t1", newest_first=True, limit=2)[-1].seq
        assert ids(newest_first=True, before=seq_e3) == ["e2", "e1"]
        assert ids(types=["member.updated"]) == ["e2", "e5"]
        assert ids(types=["member.created", "group.created"]) == ["e1", "e3"]
        assert ids(types=[]) == []
        assert ids(actor="admin:ann") == ["e2"]
        assert ids(actor="admin") == []
        assert ids(since=NOW + timedelta(hours=1)) == ["e2", "e3", "e5"]
        assert ids(until=NOW + timedelta(hours=2)) == ["e1", "e2"]
        assert ids(since=NOW + timedelta(hours=1), until=NOW + timedelta(hours=3)) == ["e2", "e3"]
        # Another offset, the same instants.
        plus_two = timezone(timedelta(hours=2))
        assert ids(since=(NOW + timedelta(hours=3)).astimezone(plus_two)) == ["e5"]
        assert [e.id for e in tx.list_events("t2", newest_first=True)] == ["e4"]


def test_external_id_links_one_member_per_tenant(store: Storage) -> None:
    """A second member with the same externalId is refused by the store itself."""
    with store.transaction() as tx:
        tx.add_member(make_member("m1", "a@x.com", externalId="00u1"))
        tx.add_member(make_member("m1", "a@x.com", externalId="00u1", tenant_id="t2"))
        with pytest.raises(ConflictError) as taken:
            tx.add_member(make_member("m2", "b@x.com", externalId="00u1"))
        assert taken.value.attribute == "externalId"
        tx.add_member(make_member("m2", "b@x.com", externalId="00u2"))
        tx.add_member(make_member("m3", "c@x.com"))
        tx.add_member(make_member("m4", "d@x.com"))
        second = tx.get_member("t1", "m2")
        assert second is not None
        moved = attrs.evolve(
            second, attributes={**second.attributes, "externalId": "00u1"}, version=2
        )
        with pytest.raises(ConflictError) as again:
            tx.replace_member(moved, expected_version=1)
        assert again.value.attribute == "externalId"
    with store.transaction() as tx:
        first = tx.get_member("t1", "m1")
        assert first is not None
        freed = attrs.evolve(first, attributes={"userName": "a@x.com"}, version=2)
        tx.replace_member(freed, expected_version=1)
        tx.replace_member(moved, expected_version=1)
        stored = tx.get_member("t1", "m2")
        assert stored is not None
        assert stored.external_id == "00u1"


def test_members_matching_finds_each_key(store: Storage) -> None:
    """Matches userName and emails ignoring case, externalId exactly; None matches nothing."""
    with store.transaction() as tx:
        tx.add_member(make_member("m1", "Jane@X.com", externalId="00u1"))
        tx.add_member(
            make_member("m2", "jd", emails=[{"value": "home@y.org"}, {"value": "JANE@x.com"}])
        )
        tx.add_member(make_member("m3", "bob@x.com", externalId="00U1"))
        tx.add_member(make_member("m1", "jane@x.com", externalId="00u1", tenant_id="t2"))
    with store.transaction(write=False) as tx:

        def ids(**keys: Any) -> list[str]:
            return [m.id for m in tx.members_matching("t1", **keys)]

        assert ids(user_name="jane@x.com") == ["m1"]
        assert ids(email="jane@X.COM") == ["m2"]
        assert ids(external_id="00u1") == ["m1"]
        assert ids(user_name="jane@x.com", email="jane@x.com", external_id="00U1") == [
            "m1",
            "m2",
            "m3",
        ]
        assert ids(user_name="jane@x.com", email="jane@x.com", limit=1) == ["m1"]
        assert ids() == []
        assert ids(user_name="nobody") == []


def test_add_members_inserts_all_or_none(store: Storage) -> None:
    """A bulk insert stores every member with its values; one conflict stores none of them."""
    batch = [
        make_member(f"m{i}", f"u{i}@x.com", emails=[{"value": f"u{i}@x.com", "primary": True}])
        for i in range(5)
    ]
    with store.transaction() as tx:
        tx.add_members(batch)
        tx.add_members([])
    with store.transaction(write=False) as tx:
        assert [m.id for m in tx.list_members("t1")] == [f"m{i}" for i in range(5)]
        assert [m.id for m in tx.members_matching("t1", email="U3@X.COM")] == ["m3"]
    with store.transaction() as tx:
        clash = [make_member("m8", "new@x.com"), make_member("m9", "U1@x.com")]
        with pytest.raises(ConflictError) as taken:
            tx.add_members(clash)
        assert taken.value.attribute == "userName"
        assert tx.get_member("t1", "m8") is None
        tx.add_member(make_member("m8", "new@x.com"))
    with store.transaction(write=False) as tx:
        assert tx.get_member("t1", "m8") is not None


def test_unfiltered_totals_follow_every_insert_and_delete(store: Storage) -> None:
    """An unfiltered listing's total stays exact through adds, deletes and rollbacks."""

    def totals() -> tuple[int, int]:
        with store.transaction(write=False) as tx:
            members = tx.query_members("t1", Query(count=1)).total
            groups = tx.query_groups("t1", Query(count=0)).total
            return members, groups

    assert totals() == (0, 0)
    with store.transaction() as tx:
        tx.add_members([make_member(f"m{i}", f"u{i}@x.com") for i in range(4)])
        tx.add_member(make_member("m9", "nine@x.com"))
        tx.add_group(make_group("g1", "One"))
        tx.add_group(make_group("g2", "Two"))
        tx.add_member(make_member("m1", "other@x.com", tenant_id="t2"))
    assert totals() == (5, 2)
    with store.transaction() as tx:
        assert tx.delete_member("t1", "m0")
        assert not tx.delete_member("t1", "m0")
        assert tx.delete_group("t1", "g2")
        with pytest.raises(ConflictError):
            tx.add_member(make_member("m8", "U1@x.com"))
    assert totals() == (4, 1)
    with contextlib.suppress(RuntimeError), store.transaction() as tx:
        tx.add_member(make_member("m7", "seven@x.com"))
        raise RuntimeError("rolled back")
    assert totals() == (4, 1)
    with store.transaction(write=False) as tx:
        page = tx.query_members("t1", Query(count=2, keyset=True))
        assert page.total == 4
        filtered = Comparison(U["username"], "sw", "u")
        assert tx.query_members("t1", Query(filter=filtered, count=1)).total == 3
