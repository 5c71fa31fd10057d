"""The role-mapping policy: the role set, each source, group priorities, modes and the fallback."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from pbidentity.domain import MemberRef
from pbidentity.domain import RoleDecision
from pbidentity.domain import RoleSource
from pbidentity.exceptions import ConfigurationError
from pbidentity.roles import DEFAULT_ROLES
from pbidentity.roles import GroupMapping
from pbidentity.roles import RoleMode
from pbidentity.roles import RolePolicy
from pbidentity.roles import RoleSet

ROLES = RoleSet()
SOURCES = {"attribute", "roles", "group", "default", "kept"}

ADMINS = MemberRef(id="g-admins", display="Admins")
MAKERS = MemberRef(id="g-makers", display="Makers")
VIEWERS = MemberRef(id="g-viewers", display="Viewers")
OTHERS = MemberRef(id="g-others", display="Others")

# Admins and Makers are mapped by name, Viewers by id; Others is not mapped.
MAPPINGS = (
    GroupMapping(role="admin", group_name="admins", priority=10),
    GroupMapping(role="maker", group_name="Makers", priority=5),
    GroupMapping(role="viewer", group_id="g-viewers", priority=1),
)


def fullwidth(text: str) -> str:
    """The text in full-width letters, which NFKC turns back into ``text``."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


def policy(mode: RoleMode = "hybrid", **kwargs: Any) -> RolePolicy:
    """A policy with the standard mappings, checked against the default roles."""
    kwargs.setdefault("mappings", MAPPINGS)
    return RolePolicy(mode=mode, **kwargs).check(ROLES)


def decide(pol: RolePolicy | None = None, **kwargs: Any) -> RoleDecision:
    """Decide with the default roles, checking what every decision must be."""
    decision = (pol or policy()).decide(ROLES, **kwargs)
    assert decision.role in ROLES.names
    assert decision.source in SOURCES
    assert decision.rule.strip()
    return decision


def current(role: str, source: RoleSource) -> RoleDecision:
    """A member's current decision."""
    return RoleDecision(role=role, source=source, rule="whatever decided it before")


# RoleSet


def test_default_roles_go_from_admin_to_viewer() -> None:
    """The default role set is admin > maker > contributor > viewer."""
    assert ROLES.names == DEFAULT_ROLES == ("admin", "maker", "contributor", "viewer")
    assert ROLES.most_privileged == "admin"
    assert ROLES.least_privileged == "viewer"
    assert [ROLES.rank(r) for r in ROLES.names] == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("admin", "admin"),
        ("Admin ", "admin"),
        ("  MAKER\t", "maker"),
        ("Contributor", "contributor"),
        (fullwidth("VIEWER"), "viewer"),
        ("owner", None),
        ("", None),
        ("   ", None),
        ("admins", None),
    ],
)
def test_canonical_ignores_case_and_spaces(value: str, expected: str | None) -> None:
    """Role names compare case-insensitively (NFKC casefold, trimmed); unknown names are None."""
    assert ROLES.canonical(value) == expected


def test_canonical_returns_the_apps_spelling() -> None:
    """A custom role set keeps its own spelling and order."""
    roles = RoleSet(("Owner", "Editor", "Reader"))
    assert roles.canonical("owner") == "Owner"
    assert roles.canonical("READER ") == "Reader"
    assert roles.canonical("admin") is None
    assert roles.most_privileged == "Owner"
    assert roles.least_privileged == "Reader"


@pytest.mark.parametrize(
    "names",
    [("admin", "Admin"), ("admin", "viewer", "VIEWER"), (fullwidth("Owner"), "owner")],
)
def test_duplicate_role_names_are_refused(names: tuple[str, ...]) -> None:
    """Two roles whose names differ only by case are a configuration error."""
    with pytest.raises(ConfigurationError):
        RoleSet(names)


def test_an_empty_role_set_is_refused() -> None:
    """An app needs at least one role."""
    with pytest.raises(ConfigurationError):
        RoleSet(())


def test_a_single_role_is_both_most_and_least_privileged() -> None:
    """With one role, every decision gives it."""
    roles = RoleSet(("member",))
    assert roles.most_privileged == roles.least_privileged == "member"
    assert RolePolicy().decide(roles).role == "member"


# GroupMapping


def test_a_mapping_names_its_group_by_id_or_name_exactly_once() -> None:
    """A mapping with neither or both of group_id and group_name is a configuration error."""
    with pytest.raises(ConfigurationError):
        GroupMapping(role="admin")
    with pytest.raises(ConfigurationError):
        GroupMapping(role="admin", group_id="g1", group_name="Admins")
    assert GroupMapping(role="admin", group_id="g1").priority == 0
    assert GroupMapping(role="admin", group_name="Admins").group_id is None


def test_group_id_matches_exactly() -> None:
    """A mapping by id matches that id only, case-sensitively, never the display name."""
    mapping = GroupMapping(role="admin", group_id="g1")
    assert mapping.matches(MemberRef(id="g1", display="Whatever"))
    assert mapping.matches(MemberRef(id="g1"))
    assert not mapping.matches(MemberRef(id="G1", display="g1"))
    assert not mapping.matches(MemberRef(id="g2", display="g1"))


@pytest.mark.parametrize("display", ["Admins", "admins", "ADMINS", fullwidth("ADMINS"), "AdMiNs"])
def test_group_name_matches_display_name_ignoring_case(display: str) -> None:
    """A mapping by name matches the displayName case-insensitively (NFKC casefold)."""
    mapping = GroupMapping(role="admin", group_name="Admins")
    assert mapping.matches(MemberRef(id="x", display=display))


def test_group_name_does_not_match_other_names_nor_the_id() -> None:
    """A mapping by name ignores groups without that displayName, or without any."""
    mapping = GroupMapping(role="admin", group_name="Admins")
    assert not mapping.matches(MemberRef(id="Admins"))
    assert not mapping.matches(MemberRef(id="Admins", display="Admin"))
    assert not mapping.matches(MemberRef(id="x", display="Admins team"))


# The role attribute


@pytest.mark.parametrize(("value", "role"), [("admin", "admin"), ("Maker ", "maker")])
def test_the_attribute_decides(value: str, role: str) -> None:
    """A known attribute gives its role, in the app's spelling, with source attribute."""
    decision = decide(attribute=value)
    assert decision.role == role
    assert decision.source == "attribute"
    assert role in decision.rule


def test_the_attribute_wins_over_core_roles() -> None:
    """The role extension attribute beats the core roles, primary or not."""
    decision = decide(attribute="viewer", core_roles=[{"value": "admin", "primary": True}])
    assert (decision.role, decision.source) == ("viewer", "attribute")


@pytest.mark.parametrize("value", [None, "", " ", "\t\n"])
def test_a_missing_or_empty_attribute_never_means_admin(value: str | None) -> None:
    """An empty or whitespace attribute is no value: a new member gets the least privileged role."""
    decision = decide(attribute=value)
    assert decision.role == "viewer"
    assert decision.role != ROLES.most_privileged
    assert decision.source == "default"


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_attribute_leaves_the_decision_to_other_sources(value: str) -> None:
    """An empty attribute does not hide the core roles nor the groups."""
    assert decide(attribute=value, core_roles=[{"value": "maker"}]).source == "roles"
    assert decide(attribute=value, groups=[MAKERS]).source == "group"


@pytest.mark.parametrize("value", ["owner", "admins", "super-admin"])
def test_an_unknown_attribute_is_no_value(value: str) -> None:
    """An attribute that is not a role is ignored: core roles, groups or the default decide."""
    assert decide(attribute=value).role == "viewer"
    by_roles = decide(attribute=value, core_roles=[{"value": "maker"}])
    assert (by_roles.role, by_roles.source) == ("maker", "roles")
    by_group = decide(attribute=value, groups=[MAKERS])
    assert (by_group.role, by_group.source) == ("maker", "group")


# Core roles


def test_the_entra_role_element_decides() -> None:
    """A core role element as Entra sends it gives its role, with source roles."""
    element = {"value": "Admin", "primary": True, "type": "WindowsAzureActiveDirectoryRole"}
    decision = decide(core_roles=[element])
    assert (decision.role, decision.source) == ("admin", "roles")
    assert "admin" in decision.rule


def test_the_primary_role_comes_first_even_if_less_privileged() -> None:
    """The primary element wins over a more privileged non-primary one."""
    decision = decide(core_roles=[{"value": "admin"}, {"value": "viewer", "primary": True}])
    assert (decision.role, decision.source) == ("viewer", "roles")
    assert "primary" in decision.rule


def test_the_most_privileged_of_several_primaries_wins() -> None:
    """With several primary elements, the most privileged of them wins (not of all elements)."""
    core = [
        {"value": "admin"},
        {"value": "viewer", "primary": True},
        {"value": "maker", "primary": True},
    ]
    assert decide(core_roles=core).role == "maker"


def test_without_primary_the_most_privileged_known_role_wins() -> None:
    """Without a primary element, the most privileged known role wins, whatever the order."""
    core = [{"value": "viewer"}, {"value": "Maker"}, {"value": "contributor", "primary": False}]
    decision = decide(core_roles=core)
    assert (decision.role, decision.source) == ("maker", "roles")
    assert decide(core_roles=list(reversed(core))) == decision


def test_unknown_core_roles_are_ignored() -> None:
    """Values the app does not know are ignored, even when primary."""
    core: list[Any] = [
        {"value": "Owner", "primary": True},
        {"value": "contributor"},
        {"value": None},
        {"value": 3, "primary": True},
        {"display": "no value"},
    ]
    decision = decide(core_roles=core)
    assert (decision.role, decision.source) == ("contributor", "roles")


def test_only_unknown_core_roles_are_no_value() -> None:
    """Core roles that the app does not know leave the decision to the groups or the default."""
    core = [{"value": "Owner", "primary": True}, {"value": ""}]
    assert decide(core_roles=core).source == "default"
    assert decide(core_roles=core, groups=[MAKERS]).source == "group"
    assert decide(core_roles=[]).source == "default"


def test_a_string_primary_flag_counts() -> None:
    """``primary: "True"`` (a string, as some IdPs send it) marks the primary role."""
    core = [{"value": "admin"}, {"value": "contributor", "primary": "True"}]
    assert decide(core_roles=core).role == "contributor"


def test_entra_json_string_object() -> None:
    """A value that is a JSON object serialised into a string is unwrapped."""
    core = [{"value": '{"value":"maker","displayName":"Maker"}'}, {"value": "viewer"}]
    decision = decide(core_roles=core)
    assert (decision.role, decision.source) == ("maker", "roles")


def test_entra_json_string_list_with_primary() -> None:
    """A JSON list in a string is unwrapped, with its elements' primary flags."""
    core = [{"value": '[{"primary":true,"value":"Admin"}]'}, {"value": "maker"}]
    assert decide(core_roles=[*core]).role == "admin"
    core = [
        {"value": '[{"value":"admin"},{"primary":true,"value":"contributor"}]'},
        {"value": "maker"},
    ]
    assert decide(core_roles=core).role == "contributor"


def test_the_outer_primary_flag_carries_over_to_the_json_it_wraps() -> None:
    """The primary flag of the element holding the JSON string holds for what it wraps."""
    core = [
        {"value": "admin"},
        {"value": '{"value":"viewer","displayName":"Viewer"}', "primary": True},
    ]
    decision = decide(core_roles=core)
    assert (decision.role, decision.source) == ("viewer", "roles")
    assert "primary" in decision.rule


@pytest.mark.parametrize(
    "value", ["{not json", '[{"value": "admin"', "{'value': 'admin'}", "[admin]", "{\ud800}"]
)
def test_invalid_json_strings_are_unknown_values(value: str) -> None:
    """A value that looks like JSON but does not parse is just an unknown value."""
    assert decide(core_roles=[{"value": value, "primary": True}]).source == "default"
    decision = decide(core_roles=[{"value": value, "primary": True}, {"value": "contributor"}])
    assert (decision.role, decision.source) == ("contributor", "roles")


def test_json_with_unknown_or_odd_values_is_ignored() -> None:
    """Parsed JSON whose values the app does not know contributes nothing."""
    core = [
        {"value": '{"value":"Owner"}', "primary": True},
        {"value": "[1, null, {}]"},
        {"value": "null"},
        {"value": "viewer"},
    ]
    assert decide(core_roles=core).role == "viewer"


# Groups


def test_a_mapped_group_decides_and_says_so() -> None:
    """A mapped group gives its role; the rule names the group display name and priority."""
    decision = decide(groups=[ADMINS])
    assert decision == RoleDecision(
        role="admin", source="group", rule="group 'Admins' (priority 10) maps to admin"
    )


def test_a_group_mapped_by_id_decides() -> None:
    """A mapping by group id applies to that group."""
    decision = decide(groups=[OTHERS, VIEWERS])
    assert decision == RoleDecision(
        role="viewer", source="group", rule="group 'Viewers' (priority 1) maps to viewer"
    )


def test_unmapped_groups_do_not_decide() -> None:
    """Groups that no mapping names leave the decision to the default."""
    assert decide(groups=[OTHERS, MemberRef(id="g-nameless")]).source == "default"


def test_the_highest_priority_wins_even_if_less_privileged() -> None:
    """The mapping with the highest priority wins, whatever its role."""
    pol = policy(
        mappings=(
            GroupMapping(role="admin", group_name="Admins", priority=1),
            GroupMapping(role="viewer", group_name="Viewers", priority=7),
        )
    )
    decision = decide(pol, groups=[ADMINS, VIEWERS])
    assert (decision.role, decision.source) == ("viewer", "group")
    assert "'Viewers'" in decision.rule
    assert "priority 7" in decision.rule


@pytest.mark.parametrize(("prefer_less", "role"), [(False, "admin"), (True, "contributor")])
def test_equal_priorities_go_to_the_more_privileged_role_unless_configured(
    prefer_less: bool, role: str
) -> None:
    """Equal priorities: the more privileged role, or the less with prefer_less_privileged."""
    pol = policy(
        mappings=(
            GroupMapping(role="maker", group_name="Makers", priority=3),
            GroupMapping(role="admin", group_name="Admins", priority=3),
            GroupMapping(role="contributor", group_id="g-others", priority=3),
            GroupMapping(role="viewer", group_name="Viewers", priority=2),
        ),
        prefer_less_privileged=prefer_less,
    )
    groups = [MAKERS, ADMINS, OTHERS, VIEWERS]
    assert decide(pol, groups=groups).role == role
    assert decide(pol, groups=list(reversed(groups))).role == role


def test_a_tie_between_groups_names_the_same_group_whatever_the_order() -> None:
    """Two groups giving the same role at the same priority: the rule is the same in any order."""
    pol = policy(
        mappings=(
            GroupMapping(role="maker", group_name="Admins", priority=2),
            GroupMapping(role="maker", group_id="g-makers", priority=2),
        )
    )
    first = decide(pol, groups=[ADMINS, MAKERS])
    assert decide(pol, groups=[MAKERS, ADMINS]) == first
    assert (first.role, first.source) == ("maker", "group")


def test_a_group_without_display_name_is_named_by_id_in_the_rule() -> None:
    """The rule names the group by id when it has no display name."""
    decision = decide(groups=[MemberRef(id="g-viewers")])
    assert decision.rule == "group 'g-viewers' (priority 1) maps to viewer"


def test_two_mappings_for_one_group_take_the_highest_priority() -> None:
    """A group mapped twice (by id and by name) is decided by its higher-priority mapping."""
    pol = policy(
        mappings=(
            GroupMapping(role="admin", group_id="g-makers", priority=1),
            GroupMapping(role="maker", group_name="makers", priority=2),
        )
    )
    assert decide(pol, groups=[MAKERS]).role == "maker"


# Modes


def test_hybrid_is_the_default_mode() -> None:
    """Without a mode the policy is hybrid."""
    assert RolePolicy().mode == "hybrid"


def test_user_personal_mode_ignores_groups() -> None:
    """In user-personal mode only the attribute and core roles count."""
    pol = policy("user-personal")
    assert decide(pol, groups=[ADMINS]).source == "default"
    assert decide(pol, groups=[ADMINS]).role == "viewer"
    assert decide(pol, attribute="maker", groups=[ADMINS]).role == "maker"
    by_roles = decide(pol, core_roles=[{"value": "contributor"}], groups=[ADMINS])
    assert (by_roles.role, by_roles.source) == ("contributor", "roles")


def test_group_based_mode_ignores_personal_values() -> None:
    """In group-based mode only the groups count: the attribute and core roles are ignored."""
    pol = policy("group-based")
    personal: dict[str, Any] = {
        "attribute": "admin",
        "core_roles": [{"value": "admin", "primary": True}],
    }
    assert decide(pol, **personal) == decide(pol)
    assert decide(pol, **personal).source == "default"
    by_group = decide(pol, groups=[MAKERS], **personal)
    assert (by_group.role, by_group.source) == ("maker", "group")


def test_hybrid_personal_value_overrides_groups() -> None:
    """In hybrid mode a personal value, when present, beats the groups."""
    by_attribute = decide(attribute="viewer", groups=[ADMINS])
    assert (by_attribute.role, by_attribute.source) == ("viewer", "attribute")
    by_roles = decide(core_roles=[{"value": "contributor"}], groups=[ADMINS])
    assert (by_roles.role, by_roles.source) == ("contributor", "roles")


def test_hybrid_groups_decide_without_personal_value() -> None:
    """In hybrid mode the groups decide when there is no (known, non-empty) personal value."""
    for attribute in (None, "", "owner"):
        decision = decide(attribute=attribute, core_roles=[{"value": "owner"}], groups=[MAKERS])
        assert (decision.role, decision.source) == ("maker", "group")


# The fallback


@pytest.mark.parametrize("source", ["app", "kept"])
@pytest.mark.parametrize("mode", ["user-personal", "group-based", "hybrid"])
def test_a_member_with_an_app_role_keeps_it(source: RoleSource, mode: RoleMode) -> None:
    """When nothing decides, a member whose role came from the app keeps it (source kept)."""
    pol = policy(mode, default_role="contributor")
    decision = decide(pol, attribute=" ", groups=[OTHERS], current=current("admin", source))
    assert (decision.role, decision.source) == ("admin", "kept")
    assert "admin" in decision.rule


@pytest.mark.parametrize("source", ["attribute", "roles", "group", "default"])
def test_a_role_from_the_idp_is_not_kept(source: RoleSource) -> None:
    """When nothing decides, a role the IdP gave before is not kept: the default applies."""
    decision = decide(current=current("admin", source))
    assert (decision.role, decision.source) == ("viewer", "default")


def test_a_kept_role_yields_to_a_decision() -> None:
    """The app role is kept only when nothing decides; any source that decides wins."""
    was = current("admin", "app")
    assert decide(attribute="viewer", current=was).role == "viewer"
    assert decide(core_roles=[{"value": "viewer"}], current=was).role == "viewer"
    assert decide(groups=[VIEWERS], current=was).role == "viewer"


def test_a_new_member_gets_the_default_role() -> None:
    """A new member nothing decides for gets default_role, else the least privileged role."""
    assert decide() == RoleDecision(
        role="viewer",
        source="default",
        rule="no role from the identity provider; the default role viewer",
    )
    decision = decide(policy(default_role="Contributor"))
    assert (decision.role, decision.source) == ("contributor", "default")
    assert "contributor" in decision.rule


def test_the_default_is_the_least_privileged_of_a_custom_role_set() -> None:
    """With custom roles and no default_role, the fallback is the app's least privileged role."""
    roles = RoleSet(("Owner", "Reader"))
    decision = RolePolicy().decide(roles, attribute="", core_roles=[{"value": "admin"}])
    assert (decision.role, decision.source) == ("Reader", "default")


# check, uses_groups, maps_any


def test_check_spells_roles_as_the_app_does() -> None:
    """check() rewrites mapping roles and default_role in the app's spelling, keeping the rest."""
    raw = RolePolicy(
        mode="group-based",
        mappings=(
            GroupMapping(role="ADMIN", group_name="Admins", priority=4),
            GroupMapping(role=" Viewer", group_id="g1"),
        ),
        default_role="Maker",
        prefer_less_privileged=True,
        admin_guard=True,
    )
    checked = raw.check(ROLES)
    assert checked == RolePolicy(
        mode="group-based",
        mappings=(
            GroupMapping(role="admin", group_name="Admins", priority=4),
            GroupMapping(role="viewer", group_id="g1"),
        ),
        default_role="maker",
        prefer_less_privileged=True,
        admin_guard=True,
    )
    assert raw.mappings[0].role == "ADMIN"
    assert checked.check(ROLES) == checked
    assert RolePolicy().check(ROLES) == RolePolicy()


def test_check_refuses_an_unknown_mapping_role() -> None:
    """A mapping to a role the app does not have is a configuration error naming it."""
    pol = RolePolicy(mappings=(GroupMapping(role="superuser", group_name="Admins"),))
    with pytest.raises(ConfigurationError, match="superuser"):
        pol.check(ROLES)


def test_check_refuses_an_unknown_default_role() -> None:
    """A default role the app does not have is a configuration error naming it."""
    with pytest.raises(ConfigurationError, match="owner"):
        RolePolicy(default_role="owner").check(ROLES)


@pytest.mark.parametrize(
    ("mode", "mappings", "expected"),
    [
        ("hybrid", MAPPINGS, True),
        ("group-based", MAPPINGS, True),
        ("user-personal", MAPPINGS, False),
        ("hybrid", (), False),
        ("group-based", (), False),
    ],
)
def test_uses_groups(mode: RoleMode, mappings: tuple[GroupMapping, ...], expected: bool) -> None:
    """Groups matter unless the mode is user-personal or there is no mapping."""
    assert RolePolicy(mode=mode, mappings=mappings).uses_groups is expected


def test_maps_any_tells_whether_a_group_is_mapped() -> None:
    """maps_any is true when a mapping names one of the groups (by id or by name)."""
    pol = policy()
    assert pol.maps_any([OTHERS, MemberRef(id="x", display="ADMINS")])
    assert pol.maps_any([VIEWERS])
    assert pol.maps_any(iter([OTHERS, MAKERS]))
    assert not pol.maps_any([OTHERS])
    assert not pol.maps_any([])
    assert not policy(mappings=()).maps_any([ADMINS])


def test_maps_any_is_false_when_groups_are_ignored() -> None:
    """In user-personal mode no group can change a decision, so none counts as mapped."""
    assert not policy("user-personal").maps_any([ADMINS])


def test_decide_is_pure() -> None:
    """Deciding twice gives the same decision and changes neither the policy nor the inputs."""
    pol = policy()
    core = [{"value": '[{"value":"maker"}]', "primary": True}]
    before = attrs.evolve(pol)
    first = decide(pol, core_roles=core, groups=[ADMINS])
    assert decide(pol, core_roles=core, groups=[ADMINS]) == first
    assert pol == before
    assert core == [{"value": '[{"value":"maker"}]', "primary": True}]
