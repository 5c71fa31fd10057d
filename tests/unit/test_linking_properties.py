"""Properties of link plans, on small random worlds where names collide often."""

from __future__ import annotations

from collections import Counter
from datetime import UTC
from datetime import datetime
from typing import Any

import attrs
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from pbidentity.domain import Member
from pbidentity.linking import Identity
from pbidentity.linking import LinkPlan
from pbidentity.linking import LinkPolicy
from pbidentity.linking import plan_links

WHEN = datetime(2026, 1, 1, tzinfo=UTC)

# A handful of values that collide under case folding, NFKC or +tag stripping,
# so that duplicates, shared members and multi-member conflicts are common.
ADDRESSES = (
    "ann@example.com",
    "Ann@Example.com",
    "ann+x@example.com",
    "bob@example.com",
    "\uff42\uff4f\uff42@example.com",  # bob, full-width
    "carl",
    "dana@example.com",
    "erin@example.com",
    "finn@example.com",
)
EXTERNAL_IDS = ("00u1", "00u2", "00U1")

addresses = st.sampled_from(ADDRESSES)
external_ids = st.none() | st.sampled_from(EXTERNAL_IDS)
policies = st.builds(LinkPolicy, plus_tags=st.sampled_from(["keep", "strip"]))
identities = st.builds(
    Identity,
    user_name=addresses,
    external_id=external_ids,
    emails=st.lists(addresses, max_size=2, unique=True).map(tuple),
    active=st.booleans(),
)


@st.composite
def member_lists(draw: st.DrawFn) -> list[Member]:
    """Up to six members of one tenant with unique ids and colliding values."""
    members = []
    for index in range(draw(st.integers(0, 6))):
        attributes: dict[str, Any] = {"userName": draw(addresses), "active": draw(st.booleans())}
        external_id = draw(external_ids)
        if external_id is not None:
            attributes["externalId"] = external_id
        email = draw(st.none() | addresses)
        if email is not None:
            attributes["emails"] = [{"value": email, "primary": True, "type": "work"}]
        members.append(
            Member(
                tenant_id="t1",
                id=f"m{index}",
                attributes=attributes,
                scim_managed=draw(st.booleans()),
                created=WHEN,
                last_modified=WHEN,
            )
        )
    return members


worlds = st.tuples(st.lists(identities, max_size=5), member_lists(), policies)


def _apply(members: list[Member], plan: LinkPlan) -> list[Member]:
    """Apply a plan's changes the way the storage layer will, purely."""
    by_id = {member.id: member for member in members}
    for step in plan.steps:
        identity = step.identity
        if step.action == "create":
            new_id = f"new{len(by_id)}"
            by_id[new_id] = Member(
                tenant_id="t1",
                id=new_id,
                attributes=identity.attributes(),
                scim_managed=True,
                created=WHEN,
                last_modified=WHEN,
            )
        elif step.action in ("link", "reactivate"):
            assert step.member_id is not None
            member = by_id[step.member_id]
            attributes = dict(member.attributes)
            attributes["userName"] = identity.user_name
            attributes["active"] = identity.active
            if identity.external_id is None:
                attributes.pop("externalId", None)
            else:
                attributes["externalId"] = identity.external_id
            by_id[member.id] = attrs.evolve(member, attributes=attributes, scim_managed=True)
    return list(by_id.values())


@settings(max_examples=300)
@given(worlds)
def test_every_identity_has_exactly_one_step(
    world: tuple[list[Identity], list[Member], LinkPolicy],
) -> None:
    """The plan's identities are the input's, as a multiset."""
    people, members, policy = world
    plan = plan_links(people, members, policy)
    assert Counter(step.identity for step in plan.steps) == Counter(people)


@settings(max_examples=300)
@given(worlds, st.data())
def test_plan_ignores_input_order(
    world: tuple[list[Identity], list[Member], LinkPolicy], data: st.DataObject
) -> None:
    """Shuffling identities and members gives an equal plan, reasons included."""
    people, members, policy = world
    shuffled_people = data.draw(st.permutations(people))
    shuffled_members = data.draw(st.permutations(members))
    assert plan_links(shuffled_people, shuffled_members, policy) == plan_links(
        people, members, policy
    )


@settings(max_examples=300)
@given(worlds)
def test_no_member_is_taken_twice(world: tuple[list[Identity], list[Member], LinkPolicy]) -> None:
    """A member appears in at most one step that is not a conflict; steps name real members."""
    people, members, policy = world
    plan = plan_links(people, members, policy)
    taken = [s.member_id for s in plan.steps if s.action != "conflict" and s.member_id]
    assert len(taken) == len(set(taken))
    ids = {member.id for member in members}
    for step in plan.steps:
        assert (step.member_id is None) == (step.action == "create" or step.matched_by is None)
        assert step.member_id is None or step.member_id in ids
        assert step.reason


@settings(max_examples=300)
@given(worlds)
def test_applying_a_plan_makes_it_a_no_op(
    world: tuple[list[Identity], list[Member], LinkPolicy],
) -> None:
    """After the changes, planning again changes nothing and keeps the very same conflicts."""
    people, members, policy = world
    plan = plan_links(people, members, policy)
    applied = _apply(members, plan)
    again = plan_links(people, applied, policy)
    assert {step.action for step in again.steps} <= {"unchanged", "conflict"}
    assert again.conflicts == plan.conflicts
    assert again.count("unchanged") == len(plan.steps) - len(plan.conflicts)
    assert _apply(applied, again) == applied
