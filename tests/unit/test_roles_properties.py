"""Properties of the role-mapping policy: closed, order-free, never admin by accident."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from pbidentity.domain import MemberRef
from pbidentity.domain import RoleDecision
from pbidentity.domain import RoleSource
from pbidentity.roles import GroupMapping
from pbidentity.roles import RoleMode
from pbidentity.roles import RolePolicy
from pbidentity.roles import RoleSet

# Strategies are built once, here: they draw indexes and specs that are
# resolved against the drawn role set, which keeps each test fast.

FAST = settings(max_examples=200, deadline=None)

SOURCES: tuple[RoleSource, ...] = ("attribute", "roles", "group", "default", "kept", "app")
DECIDING = {"attribute", "roles", "group", "default", "kept"}
MODES: tuple[RoleMode, ...] = ("user-personal", "group-based", "hybrid")

GROUP_IDS = ("g0", "g1", "g2", "g3", "g4")
GROUP_NAMES = ("Admins", "ENG", "sales", "Ops")
# Other groups: neither their ids nor their names are ever mapped.
UNMAPPED_IDS = ("u0", "u1", "u2")
UNMAPPED_NAMES = ("Everyone", "Guests", None)

# Ways an IdP may spell a role name: other case, surrounding spaces.
SPELLINGS: tuple[Callable[[str], str], ...] = (
    str,
    str.upper,
    str.lower,
    lambda name: f" {name.title()}  ",
    lambda name: f"{name}\t",
)
# Values no role set below knows (role names are letters only): empty,
# non-letters, broken JSON, JSON about another role, not a string at all.
UNKNOWN: tuple[Any, ...] = ("", "  ", "owner-1", "{not json", "[1, 2", '{"value":"no-1"}', None, 7)
MISSING_ATTRIBUTES = (None, "", "   ", "\t", "not-a-role")


def role_sets(min_size: int) -> st.SearchStrategy[RoleSet]:
    """Role sets of distinct letter-only names, most privileged first."""
    names = st.lists(
        st.text(alphabet="abcXYZ", min_size=1, max_size=4),
        min_size=min_size,
        max_size=5,
        unique_by=str.casefold,
    )
    return names.map(lambda names: RoleSet(tuple(names)))


ROLE_SETS = role_sets(1)
# With a single role, it is both the most and the least privileged.
SEVERAL_ROLE_SETS = role_sets(2)

# A role of the set (index modulo its size) and how it is spelled.
RoleRef = tuple[int, int]
role_refs = st.tuples(st.integers(0, 4), st.integers(0, len(SPELLINGS) - 1))


def role_of(roles: RoleSet, ref: RoleRef) -> str:
    """The role a reference names, in the app's spelling."""
    return roles.names[ref[0] % len(roles.names)]


def spell(roles: RoleSet, ref: RoleRef) -> str:
    """The role a reference names, spelled as the IdP may send it."""
    return SPELLINGS[ref[1]](role_of(roles, ref))


def _groups(ids: tuple[str, ...], names: tuple[str | None, ...]) -> st.SearchStrategy[Any]:
    group = st.builds(MemberRef, id=st.sampled_from(ids), display=st.sampled_from(names))
    return st.lists(group, max_size=5, unique_by=lambda g: g.id)


GROUPS = _groups(
    GROUP_IDS + UNMAPPED_IDS, (*GROUP_NAMES, "admins", "\uff45\uff4e\uff47", *UNMAPPED_NAMES)
)
UNMAPPED_GROUPS = _groups(UNMAPPED_IDS, UNMAPPED_NAMES)

mapping_specs = st.tuples(role_refs, st.booleans(), st.integers(0, 4), st.integers(0, 3))
policy_specs = st.tuples(
    st.sampled_from(MODES),
    st.lists(mapping_specs, max_size=4),
    st.none() | st.integers(0, 4),
    st.booleans(),
)
attribute_specs = st.sampled_from(MISSING_ATTRIBUTES) | role_refs
unknown_values = st.sampled_from(UNKNOWN)
primaries = st.sampled_from([True, False, "True", None])
wrappings = st.sampled_from(["plain", "object", "list"])
KNOWN_CORE = st.none() | st.lists(
    st.tuples(role_refs | unknown_values, wrappings, primaries), max_size=4
)
UNKNOWN_CORE = st.none() | st.lists(st.tuples(unknown_values, wrappings, primaries), max_size=4)
current_specs = st.none() | st.tuples(st.integers(0, 4), st.sampled_from(SOURCES))


def policy(roles: RoleSet, spec: Any) -> RolePolicy:
    """The policy a spec describes, checked against ``roles``."""
    mode, mapping_list, default, prefer_less = spec
    mappings = []
    for ref, by_id, group, priority in mapping_list:
        role = spell(roles, ref)
        if by_id:
            mappings.append(GroupMapping(role=role, group_id=GROUP_IDS[group], priority=priority))
        else:
            name = GROUP_NAMES[group % len(GROUP_NAMES)]
            mappings.append(GroupMapping(role=role, group_name=name, priority=priority))
    return RolePolicy(
        mode=mode,
        mappings=tuple(mappings),
        default_role=None if default is None else roles.names[default % len(roles.names)],
        prefer_less_privileged=prefer_less,
    ).check(roles)


def attribute(roles: RoleSet, spec: Any) -> str | None:
    """The role attribute a spec describes: missing, unknown or a role."""
    return spell(roles, spec) if isinstance(spec, tuple) else spec


def core_roles(roles: RoleSet, spec: Any) -> list[dict[str, Any]] | None:
    """Core ``roles`` elements, plain or in Entra's JSON-in-a-string forms."""
    if spec is None:
        return None
    elements = []
    for value_spec, wrapping, primary in spec:
        value = spell(roles, value_spec) if isinstance(value_spec, tuple) else value_spec
        if wrapping == "object":
            value = json.dumps({"value": value, "displayName": "Some role"})
        elif wrapping == "list":
            value = json.dumps([{"primary": True, "value": value}])
        elements.append({"value": value, "primary": primary})
    return elements


def current(roles: RoleSet, spec: Any) -> RoleDecision | None:
    """A member's current decision, or None for a new member."""
    if spec is None:
        return None
    index, source = spec
    return RoleDecision(role=roles.names[index % len(roles.names)], source=source, rule="before")


Case = tuple[RoleSet, RolePolicy, dict[str, Any]]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A role set, a policy and the keyword arguments of a decision."""
    roles = draw(ROLE_SETS)
    inputs = {
        "attribute": attribute(roles, draw(attribute_specs)),
        "core_roles": core_roles(roles, draw(KNOWN_CORE)),
        "groups": draw(GROUPS),
        "current": current(roles, draw(current_specs)),
    }
    return roles, policy(roles, draw(policy_specs)), inputs


@FAST
@given(cases())
def test_decide_stays_in_the_role_set(case: Case) -> None:
    """Whatever the inputs, the role is one of the app's roles, with a source and a rule."""
    roles, pol, inputs = case
    decision = pol.decide(roles, **inputs)
    assert decision.role in roles.names
    assert decision.source in DECIDING
    assert decision.rule.strip()


@FAST
@given(cases(), st.randoms(use_true_random=False))
def test_decide_ignores_the_order_of_groups_and_core_roles(case: Case, random: Any) -> None:
    """Shuffling the groups and the core roles gives the same decision, rule included."""
    roles, pol, inputs = case
    shuffled = dict(inputs)
    shuffled["groups"] = random.sample(inputs["groups"], len(inputs["groups"]))
    if inputs["core_roles"] is not None:
        shuffled["core_roles"] = random.sample(inputs["core_roles"], len(inputs["core_roles"]))
    assert pol.decide(roles, **shuffled) == pol.decide(roles, **inputs)


@FAST
@given(st.data())
def test_no_value_never_means_the_most_privileged_role(data: st.DataObject) -> None:
    """With nothing from the IdP, admin only comes from default_role or an app/kept admin."""
    roles = data.draw(SEVERAL_ROLE_SETS)
    pol = policy(roles, data.draw(policy_specs))
    was = current(roles, data.draw(current_specs))
    decision = pol.decide(
        roles,
        attribute=data.draw(st.sampled_from(MISSING_ATTRIBUTES)),
        core_roles=core_roles(roles, data.draw(UNKNOWN_CORE)),
        groups=data.draw(UNMAPPED_GROUPS),
        current=was,
    )
    kept = was is not None and was.source in ("app", "kept")
    assert decision.source == ("kept" if kept else "default")
    if decision.role == roles.most_privileged:
        assert pol.default_role == roles.most_privileged or (
            was is not None and kept and was.role == roles.most_privileged
        )


@FAST
@given(st.data())
def test_hybrid_known_attribute_decides(data: st.DataObject) -> None:
    """In hybrid mode a known attribute is the role, whatever the core roles and groups."""
    roles = data.draw(ROLE_SETS)
    pol = attrs.evolve(policy(roles, data.draw(policy_specs)), mode="hybrid")
    ref = data.draw(role_refs)
    decision = pol.decide(
        roles,
        attribute=spell(roles, ref),
        core_roles=core_roles(roles, data.draw(KNOWN_CORE)),
        groups=data.draw(GROUPS),
        current=current(roles, data.draw(current_specs)),
    )
    assert (decision.role, decision.source) == (role_of(roles, ref), "attribute")


@FAST
@given(st.data())
def test_group_based_ignores_personal_values(data: st.DataObject) -> None:
    """In group-based mode the attribute and core roles never change the decision."""
    roles = data.draw(ROLE_SETS)
    pol = attrs.evolve(policy(roles, data.draw(policy_specs)), mode="group-based")
    groups = data.draw(GROUPS)
    was = current(roles, data.draw(current_specs))
    first, second = (
        pol.decide(
            roles,
            attribute=attribute(roles, data.draw(attribute_specs)),
            core_roles=core_roles(roles, data.draw(KNOWN_CORE)),
            groups=groups,
            current=was,
        )
        for _ in range(2)
    )
    assert first == second == pol.decide(roles, groups=groups, current=was)
    assert first.source not in ("attribute", "roles")


@FAST
@given(st.data())
def test_a_strictly_higher_priority_mapping_wins(data: st.DataObject) -> None:
    """Adding a group whose mapping outranks all others by priority gives that mapping's role."""
    roles = data.draw(ROLE_SETS)
    pol = policy(roles, data.draw(policy_specs))
    mode: RoleMode = data.draw(st.sampled_from(["group-based", "hybrid"]))
    ref = data.draw(role_refs)
    priority = max((m.priority for m in pol.mappings), default=0) + data.draw(st.integers(1, 3))
    if data.draw(st.booleans()):
        mapping = GroupMapping(role=spell(roles, ref), group_id="winner", priority=priority)
    else:
        mapping = GroupMapping(role=spell(roles, ref), group_name="Winners", priority=priority)
    better = attrs.evolve(pol, mode=mode, mappings=(*pol.mappings, mapping)).check(roles)
    groups = data.draw(GROUPS)
    groups.insert(data.draw(st.integers(0, len(groups))), MemberRef(id="winner", display="WINNERS"))
    # In hybrid mode a personal value overrides the groups, so give none.
    personal: dict[str, Any] = {}
    if mode == "group-based":
        personal = {
            "attribute": attribute(roles, data.draw(attribute_specs)),
            "core_roles": core_roles(roles, data.draw(KNOWN_CORE)),
        }
    was = current(roles, data.draw(current_specs))
    decision = better.decide(roles, groups=groups, current=was, **personal)
    role = role_of(roles, ref)
    assert decision == RoleDecision(
        role=role, source="group", rule=f"group 'WINNERS' (priority {priority}) maps to {role}"
    )
