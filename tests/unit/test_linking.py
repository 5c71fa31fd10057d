"""Linking IdP identities to existing members: each matching rule, each conflict, the readers."""

from __future__ import annotations

import json
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pbidentity.domain import Member
from pbidentity.exceptions import InputError
from pbidentity.linking import Identity
from pbidentity.linking import LinkPlan
from pbidentity.linking import LinkPolicy
from pbidentity.linking import LinkStep
from pbidentity.linking import parse_identities
from pbidentity.linking import plan_links
from pbidentity.linking import read_identities

DATA = Path(__file__).parent.parent / "data"
WHEN = datetime(2026, 1, 1, tzinfo=UTC)
STRIP = LinkPolicy(plus_tags="strip")


def full_width(text: str) -> str:
    """The same ASCII text typed with full-width forms (U+FF01..U+FF5E), as some IMEs do."""
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in text)


def member(
    id_: str,
    user_name: str,
    *,
    external_id: str | None = None,
    email: str | None = None,
    active: bool = True,
    scim_managed: bool = False,
) -> Member:
    """A member of tenant t1 as the storage would return it."""
    attributes: dict[str, Any] = {"userName": user_name, "active": active}
    if external_id is not None:
        attributes["externalId"] = external_id
    if email is not None:
        attributes["emails"] = [{"value": email, "primary": True, "type": "work"}]
    return Member(
        tenant_id="t1",
        id=id_,
        attributes=attributes,
        scim_managed=scim_managed,
        created=WHEN,
        last_modified=WHEN,
    )


def only(plan: LinkPlan) -> LinkStep:
    """The single step of a plan for one identity."""
    [step] = plan.steps
    return step


# The matching rules.


def test_no_candidate_creates() -> None:
    """Nothing matches: a new member, and the reason says what was looked for."""
    jane = Identity(user_name="jane@example.com", emails=("jane@example.com",))
    step = only(plan_links([jane], [member("m1", "bob@example.com", email="bob@example.com")]))
    assert step == LinkStep(
        action="create",
        identity=jane,
        member_id=None,
        matched_by=None,
        reason=(
            "no member matches 'jane@example.com' by externalId, userName or email; "
            "a new member will be created"
        ),
    )


def test_link_by_external_id() -> None:
    """The IdP's id wins even when userName and email changed in the IdP since."""
    jane = Identity(user_name="jane.smith@example.com", external_id="00u1")
    step = only(plan_links([jane], [member("m1", "jane.doe@example.com", external_id="00u1")]))
    assert (step.action, step.member_id, step.matched_by) == ("link", "m1", "externalId")
    assert step.reason == (
        "member m1 matches 'jane.smith@example.com' (externalId '00u1') by externalId; "
        "it will be linked to this identity and managed by SCIM"
    )


def test_external_id_is_case_sensitive() -> None:
    """The externalId is the IdP's opaque id: 00U1 is not 00u1."""
    jane = Identity(user_name="jane@example.com", external_id="00U1")
    step = only(plan_links([jane], [member("m1", "someone@example.com", external_id="00u1")]))
    assert step.action == "create"


def test_link_by_user_name_ignores_case_and_whitespace() -> None:
    """The userName matches whatever its case and surrounding whitespace."""
    jane = Identity(user_name="  Jane@Example.COM ")
    step = only(plan_links([jane], [member("m1", "jane@example.com")]))
    assert (step.action, step.member_id, step.matched_by) == ("link", "m1", "userName")


def test_a_unicode_domain_links_the_member_it_spells_the_same() -> None:
    """Case in an internationalised domain is case: BÜCHER.test is bücher.test."""
    jane = Identity(user_name="Jane@BÜCHER.test")
    step = only(plan_links([jane], [member("m1", "jane@bücher.test")]))
    assert (step.action, step.member_id) == ("link", "m1")


@pytest.mark.parametrize(
    ("arriving", "existing", "named"),
    [
        ("ceo@straße.test", "ceo@strasse.test", "'ß' (U+00DF LATIN SMALL LETTER SHARP S)"),
        ("ceo@strasse.test", "ceo@straße.test", "'ß' (U+00DF LATIN SMALL LETTER SHARP S)"),
        ("\ufb01nance@acme.test", "finance@acme.test", "(U+FB01 LATIN SMALL LIGATURE FI)"),
        (f"{full_width('finance')}@acme.test", "finance@acme.test", "FULLWIDTH LATIN SMALL"),
        (f"  {full_width('Jane')}@Example.COM ", "jane@example.com", "FULLWIDTH LATIN CAPITAL"),
        ("οδοσ@acme.test", "οδος@acme.test", "GREEK SMALL LETTER FINAL SIGMA"),
    ],
)
def test_a_look_alike_user_name_is_a_conflict_never_a_link(
    arriving: str, existing: str, named: str
) -> None:
    """Equal only under the lossy fold: a conflict naming the characters, the member untouched."""
    step = only(plan_links([Identity(user_name=arriving)], [member("m1", existing)]))
    assert (step.action, step.member_id, step.matched_by) == ("conflict", "m1", "userName")
    assert "only looks like member m1's userName" in step.reason
    assert named in step.reason
    assert "different addresses may belong to different people" in step.reason


def test_a_look_alike_email_is_a_conflict_never_a_link() -> None:
    """Found by primary email through the fold: the same refusal."""
    ceo = Identity(user_name="jdoe", emails=("ceo@straße.test",))
    step = only(plan_links([ceo], [member("m1", "ceo", email="ceo@strasse.test")]))
    assert (step.action, step.matched_by) == ("conflict", "email")
    assert "only looks like member m1's email 'ceo@strasse.test'" in step.reason


def test_the_idps_own_id_links_a_respelt_user_name() -> None:
    """Matched by externalId, a userName the IdP respelt (ss to ß) is an update, no conflict."""
    ceo = Identity(user_name="ceo@straße.test", external_id="00u1")
    linked = member("m1", "ceo@strasse.test", external_id="00u1", scim_managed=True)
    step = only(plan_links([ceo], [linked]))
    assert (step.action, step.member_id, step.matched_by) == ("link", "m1", "externalId")


def test_link_by_email() -> None:
    """A member who signed up with another userName is found by the primary email."""
    jane = Identity(user_name="jdoe", emails=("Jane@Example.com", "other@example.com"))
    members = [member("m1", "jane", email="jane@example.com")]
    step = only(plan_links([jane], members))
    assert (step.action, step.member_id, step.matched_by) == ("link", "m1", "email")
    assert step.reason == (
        "member m1 matches 'jdoe' by email; it will be linked to this identity and managed by SCIM"
    )


def test_only_the_primary_email_matches() -> None:
    """A second address of the identity is not a matching key."""
    jane = Identity(user_name="jdoe", emails=("jane@example.com", "j@example.com"))
    step = only(plan_links([jane], [member("m1", "j", email="j@example.com")]))
    assert step.action == "create"


def test_matched_by_is_the_first_rule_that_found_the_member() -> None:
    """A member found by externalId, userName and email was found by externalId."""
    jane = Identity(user_name="jane@example.com", external_id="00u1", emails=("jane@example.com",))
    members = [member("m1", "jane@example.com", external_id="00u1", email="jane@example.com")]
    assert only(plan_links([jane], members)).matched_by == "externalId"
    members = [member("m1", "jane@example.com", email="jane@example.com")]
    assert only(plan_links([jane], members)).matched_by == "userName"


def test_unchanged_when_already_linked() -> None:
    """SCIM-managed, same externalId, same userName (case aside), same active: nothing to do."""
    jane = Identity(user_name="Jane@Example.com", external_id="00u1")
    members = [member("m1", "jane@example.com", external_id="00u1", scim_managed=True)]
    step = only(plan_links([jane], members))
    assert (step.action, step.member_id, step.matched_by) == ("unchanged", "m1", "externalId")
    assert step.reason == "member m1 is already linked to 'Jane@Example.com' (externalId '00u1')"


def test_unchanged_without_external_ids_needs_a_user_name_match() -> None:
    """Without externalIds on either side, only the same userName means "already linked"."""
    jane = Identity(user_name="jane@example.com", emails=("jane@example.com",))
    linked = member("m1", "jane@example.com", scim_managed=True)
    assert only(plan_links([jane], [linked])).action == "unchanged"
    by_email = member("m1", "jdoe", email="jane@example.com", scim_managed=True)
    step = only(plan_links([jane], [by_email]))
    assert (step.action, step.matched_by) == ("link", "email")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"scim_managed": False}, "link"),  # not yet under SCIM
        ({"external_id": None}, "link"),  # found by userName, the externalId is to record
        ({"user_name": "jdoe"}, "link"),  # found by externalId, the userName changes
        ({"active": False}, "reactivate"),
    ],
)
def test_any_difference_is_a_change(change: dict[str, Any], expected: str) -> None:
    """Each condition of "unchanged", broken alone, makes a change."""
    fields: dict[str, Any] = {
        "user_name": "jane@example.com",
        "external_id": "00u1",
        "active": True,
        "scim_managed": True,
    }
    fields.update(change)
    jane = Identity(user_name="jane@example.com", external_id="00u1")
    assert only(plan_links([jane], [member("m1", **fields)])).action == expected


def test_deactivated_member_is_reactivated_with_the_same_id() -> None:
    """A member deactivated earlier comes back, rather than a second one being created."""
    jane = Identity(user_name="jane@example.com")
    members = [member("m1", "jane@example.com", active=False, scim_managed=True)]
    step = only(plan_links([jane], members))
    assert (step.action, step.member_id, step.matched_by) == ("reactivate", "m1", "userName")
    assert step.reason == (
        "member m1 matches 'jane@example.com' by userName and is deactivated; "
        "it will be reactivated with the same id"
    )


def test_inactive_identity_and_member() -> None:
    """An inactive identity never reactivates; it deactivates an active member by a link."""
    jane = Identity(user_name="jane@example.com", active=False)
    inactive = member("m1", "jane@example.com", active=False, scim_managed=True)
    assert only(plan_links([jane], [inactive])).action == "unchanged"
    active = member("m1", "jane@example.com", scim_managed=True)
    assert only(plan_links([jane], [active])).action == "link"


# Conflicts.


def test_candidates_that_are_different_members_conflict() -> None:
    """Two members for one person: the admin merges them, the planner does not pick."""
    jane = Identity(user_name="jane@example.com", external_id="00u1", emails=("j@example.com",))
    members = [
        member("m2", "JANE@example.com"),
        member("m1", "old@example.com", external_id="00u1"),
        member("m3", "j", email="j@example.com"),
    ]
    step = only(plan_links([jane], members))
    assert step == LinkStep(
        action="conflict",
        identity=jane,
        member_id=None,
        matched_by=None,
        reason=(
            "'jane@example.com' (externalId '00u1') matches member m1 by externalId, "
            "member m2 by userName and member m3 by email; merge or fix them in the app first"
        ),
        candidates=("m1", "m2", "m3"),
    )


def test_members_sharing_a_value_conflict() -> None:
    """Two members with the same primary email are two candidates."""
    jane = Identity(user_name="jane", emails=("jane@example.com",))
    members = [
        member("m1", "a", email="jane@example.com"),
        member("m2", "b", email="Jane@example.com"),
    ]
    step = only(plan_links([jane], members))
    assert step.action == "conflict"
    assert step.reason == (
        "'jane' matches member m1 by email and member m2 by email; "
        "merge or fix them in the app first"
    )


def test_member_linked_to_another_identity_conflicts() -> None:
    """Same userName, different externalIds: two people, or an IdP account recreated."""
    jane = Identity(user_name="jane@example.com", external_id="00u2")
    members = [member("m1", "jane@example.com", external_id="00u1", scim_managed=True)]
    step = only(plan_links([jane], members))
    assert (step.action, step.member_id, step.matched_by) == ("conflict", "m1", "userName")
    assert step.reason == (
        "'jane@example.com' (externalId '00u2') matches member m1 by userName, but member m1 is "
        "already linked to another identity (externalId '00u1'); fix the member or the identity "
        "first"
    )


def test_identity_without_external_id_links_a_member_with_one() -> None:
    """Only two different externalIds conflict; a missing one is not a difference."""
    jane = Identity(user_name="jane@example.com")
    members = [member("m1", "jane@example.com", external_id="00u1", scim_managed=True)]
    assert only(plan_links([jane], members)).action == "link"


@pytest.mark.parametrize(
    ("first", "second", "rule"),
    [
        (
            Identity(user_name="jane@example.com", external_id="00u1"),
            Identity(user_name="jdoe@example.com", external_id="00u1"),
            "externalId",
        ),
        (
            Identity(user_name="jane@example.com", external_id="00u1"),
            Identity(user_name="JANE@example.com ", external_id="00u2"),
            "userName",
        ),
        (
            Identity(user_name="jane", emails=("jane@example.com",)),
            Identity(user_name="jdoe", emails=("Jane@Example.com",)),
            "email",
        ),
    ],
)
def test_input_duplicates_all_conflict(first: Identity, second: Identity, rule: str) -> None:
    """Two identities sharing a key are both conflicts, whatever they match."""
    members = [member("m1", "jane@example.com", email="jane@example.com")]
    plan = plan_links([first, second], members)
    assert [step.action for step in plan.steps] == ["conflict", "conflict"]
    assert all(step.member_id is None and step.matched_by is None for step in plan.steps)
    assert all(
        f"appears more than once in the input (same {rule} as" in s.reason for s in plan.steps
    )


def test_input_duplicate_reason_names_the_others() -> None:
    """The reason names every other identity with the same key, sorted."""
    identities = [
        Identity(user_name="b", emails=("x@example.com",)),
        Identity(user_name="a", emails=("x@example.com",)),
        Identity(user_name="c", external_id="00u9", emails=("x@example.com",)),
    ]
    [a, _, c] = plan_links(identities, []).steps
    assert a.reason == (
        "'a' appears more than once in the input (same email as 'b' and 'c' (externalId "
        "'00u9')); keep a single identity per person in the IdP first"
    )
    assert c.reason.startswith(
        "'c' (externalId '00u9') appears more than once in the input (same email as 'a' and 'b');"
    )


def test_many_duplicates_are_named_in_part() -> None:
    """A reason stays one sentence: five names, then how many more."""
    identities = [Identity(user_name=f"u{n}", emails=("x@example.com",)) for n in range(9)]
    first = plan_links(identities, []).steps[0]
    assert first.reason == (
        "'u0' appears more than once in the input (same email as 'u1', 'u2', 'u3', 'u4', 'u5' "
        "and 3 more); keep a single identity per person in the IdP first"
    )


def test_two_identities_for_one_member_both_conflict() -> None:
    """One by userName, one by email: linking either would be a guess."""
    jane = Identity(user_name="jane@example.com")
    jdoe = Identity(user_name="jdoe", emails=("jane.doe@example.com",))
    members = [member("m1", "jane@example.com", email="jane.doe@example.com")]
    plan = plan_links([jdoe, jane], members)
    assert [(s.action, s.member_id, s.matched_by) for s in plan.steps] == [
        ("conflict", "m1", "userName"),
        ("conflict", "m1", "email"),
    ]
    assert {step.reason for step in plan.steps} == {
        "identities 'jane@example.com' and 'jdoe' both match member m1; keep one of them in "
        "the IdP or fix the member in the app first"
    }


def test_a_member_also_wanted_by_a_conflict_is_not_linked() -> None:
    """A member that another identity matches, even in a conflict, is not taken silently."""
    jane = Identity(user_name="jane@example.com", external_id="00u1")
    other = Identity(user_name="other@example.com", emails=("jane@example.com",))
    members = [
        member("m1", "old@example.com", external_id="00u1"),
        member("m2", "jane@example.com", email="jane@example.com"),
    ]
    plan = plan_links([jane, other], members)
    assert [(s.identity, s.action, s.member_id) for s in plan.steps] == [
        (jane, "conflict", None),
        (other, "conflict", "m2"),
    ]


# The plan.


def test_steps_are_in_canonical_order() -> None:
    """Sorted by normalised userName then externalId, whatever the input order."""
    identities = [
        Identity(user_name="carl@example.com"),
        Identity(user_name="Bob@example.com", external_id="2"),
        Identity(user_name="ann@example.com"),
    ]
    plan = plan_links(identities, [])
    assert [s.identity.user_name for s in plan.steps] == [
        "ann@example.com",
        "Bob@example.com",
        "carl@example.com",
    ]
    assert plan_links(list(reversed(identities)), []) == plan


def test_counts_summary_and_views() -> None:
    """The preview line counts every action; conflicts and changes filter the steps."""
    identities = [
        Identity(user_name="new@example.com"),
        Identity(user_name="link@example.com"),
        Identity(user_name="back@example.com"),
        Identity(user_name="same@example.com"),
        Identity(user_name="dup@example.com", external_id="1"),
        Identity(user_name="DUP@example.com", external_id="2"),
    ]
    members = [
        member("m1", "link@example.com"),
        member("m2", "back@example.com", active=False),
        member("m3", "same@example.com", scim_managed=True),
    ]
    plan = plan_links(identities, members)
    assert plan.summary() == ("1 to create, 1 to link, 1 to reactivate, 1 unchanged, 2 conflicts")
    assert plan.count("conflict") == 2
    assert [s.identity.user_name for s in plan.conflicts] == ["dup@example.com", "DUP@example.com"]
    assert [s.action for s in plan.changes] == ["reactivate", "link", "create"]
    assert plan_links(identities[:1], []).summary() == (
        "1 to create, 0 to link, 0 to reactivate, 0 unchanged, 0 conflicts"
    )
    assert plan_links(
        identities[4:5], [member("m", "dup@example.com", external_id="9")]
    ).summary() == ("0 to create, 0 to link, 0 to reactivate, 0 unchanged, 1 conflict")


def test_empty_inputs() -> None:
    """No identities: an empty plan, whatever the members."""
    assert plan_links([], [member("m1", "a")]) == LinkPlan(steps=())


def test_member_ids_must_be_unique() -> None:
    """Two members with one id are a caller bug, reported rather than half-planned."""
    with pytest.raises(InputError) as caught:
        plan_links([], [member("m1", "a"), member("m1", "b"), member("m2", "c")])
    assert str(caught.value) == "member ids m1 are given more than once; pass each member once"


# Normalisation and the plus-tag policy.


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Jane@Example.COM ", "jane@example.com"),
        (full_width("Jane@Example.com"), "jane@example.com"),  # full-width @ and dot too
        ("\u3000Straße@example.com\t", "strasse@example.com"),  # ideographic space; ß folds
        ("jane+news@example.com", "jane+news@example.com"),
    ],
)
def test_normalise_keep(raw: str, expected: str) -> None:
    """The default policy folds width, case and whitespace, and keeps +tags."""
    assert LinkPolicy().normalise(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Jane+News@Example.com", "jane@example.com"),
        ("jane+a+b@example.com", "jane@example.com"),
        ("+team@example.com", "+team@example.com"),  # no local part left: kept
        ("jane+x", "jane+x"),  # not an address
        ("jane+x@", "jane+x@"),
    ],
)
def test_normalise_strip(raw: str, expected: str) -> None:
    """With plus_tags="strip", the tag of an address's local part goes."""
    assert STRIP.normalise(raw) == expected


def test_plus_tags_in_matching() -> None:
    """jane+x and jane are different people by default, the same one when stripping."""
    jane = Identity(user_name="jane+okta@example.com")
    members = [member("m1", "jane@example.com")]
    assert only(plan_links([jane], members)).action == "create"
    step = only(plan_links([jane], members, STRIP))
    assert (step.action, step.matched_by) == ("link", "userName")


def test_policy_rejects_unknown_plus_tag_mode() -> None:
    """A typo in the policy is caught when it is built."""
    with pytest.raises(ValueError, match="plus_tags"):
        LinkPolicy(plus_tags="drop")  # type: ignore[arg-type]


# Identity.


def test_identity_attributes_is_a_canonical_scim_user() -> None:
    """The SCIM document of a member created from the identity."""
    jane = Identity(
        user_name="jane@example.com",
        external_id="00u1",
        emails=("jane@example.com", "jd@example.com"),
        active=False,
        given_name="Jane",
        display_name="Jane Doe",
        role="admin",
    )
    assert jane.primary_email == "jane@example.com"
    assert jane.attributes() == {
        "userName": "jane@example.com",
        "externalId": "00u1",
        "active": False,
        "name": {"givenName": "Jane"},
        "displayName": "Jane Doe",
        "emails": [
            {"value": "jane@example.com", "primary": True, "type": "work"},
            {"value": "jd@example.com", "type": "work"},
        ],
    }


def test_minimal_identity_attributes() -> None:
    """Nothing absent appears, not even as None."""
    jane = Identity(user_name="jane")
    assert jane.primary_email is None
    assert jane.attributes() == {"userName": "jane", "active": True}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"user_name": " "}, "an identity needs a non-empty userName"),
        (
            {"user_name": "jane", "external_id": ""},
            "identity 'jane' has a blank externalId; leave it out instead",
        ),
        ({"user_name": "jane", "emails": ("",)}, "identity 'jane' has a blank email address"),
    ],
)
def test_identity_rejects_blank_values(fields: dict[str, Any], message: str) -> None:
    """Blank keys would all match each other; they are refused at the source."""
    with pytest.raises(InputError) as caught:
        Identity(**fields)
    assert str(caught.value) == message


# Reading export files.


def test_read_okta_csv_export() -> None:
    """An Okta users export: statuses, secondary emails, Okta ids, the role column."""
    identities = read_identities(DATA / "okta-export-users.csv")
    assert [i.user_name for i in identities] == [
        "jane.doe@example.com",
        "Raj.Patel@Example.com",
        "li.wei@example.com",
        "ana.garcia@example.com",
        "tom.baker@example.com",
        "noor.haddad@example.com",
    ]
    assert identities[0] == Identity(
        user_name="jane.doe@example.com",
        external_id="00u1abcd2EFGH3ijk4x7",
        emails=("jane.doe@example.com",),
        given_name="Jane",
        family_name="Doe",
        role="admin",
    )
    assert identities[1].emails == ("raj.patel@example.com", "raj.p@example.com")
    assert [i.active for i in identities] == [True, True, False, True, True, True]
    assert [i.role for i in identities] == ["admin", "maker", None, "viewer", None, "maker"]
    assert identities[3].family_name == "García"


def test_read_json_users() -> None:
    """SCIM documents (the primary email first, role extension, roles) and a flat object."""
    jane, raj, li = read_identities(DATA / "identities.json")
    assert jane == Identity(
        user_name="jane.doe@example.com",
        external_id="00u1abcd2EFGH3ijk4x7",  # the SCIM "id" is someone else's id: ignored
        emails=("jane.doe@example.com", "jdoe@example.com"),
        given_name="Jane",
        family_name="Doe",
        display_name="Jane Doe",
        role="admin",
    )
    assert (raj.active, raj.role, raj.emails) == (False, "maker", ("raj.patel@example.com",))
    assert li == Identity(
        user_name="li.wei@example.com",
        external_id="00u3cdef4GHIJ5klm6z9",
        emails=("li.wei@example.com",),
        active=False,
        given_name="Li",
        family_name="Wei",
        role="viewer",
    )


def test_read_json_list_response(tmp_path: Path) -> None:
    """A SCIM ListResponse from another service provider; an empty one may omit Resources."""
    path = tmp_path / "users.json"
    urn = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
    document = {
        "schemas": [urn],
        "totalResults": 1,
        "Resources": [
            {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "jane@example.com",
                "externalId": "00u1",
                "active": "False",  # Entra's string booleans
            }
        ],
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    assert read_identities(path) == [
        Identity(user_name="jane@example.com", external_id="00u1", active=False)
    ]
    path.write_text(json.dumps({"schemas": [urn], "totalResults": 0}), encoding="utf-8")
    assert read_identities(path) == []


def test_read_csv_without_user_name_column(tmp_path: Path) -> None:
    """A hand-written file: the email is the userName; headers in any case and spacing."""
    path = tmp_path / "people.csv"
    path.write_text(
        "\ufeffEMAIL,first_name,Surname,Active,Object ID\n"
        "jane@example.com,Jane,Doe,no,a1b2\n"
        "\n"
        "bob@example.com,,,,\n",
        encoding="utf-8",
    )
    assert read_identities(path) == [
        Identity(
            user_name="jane@example.com",
            external_id="a1b2",
            emails=("jane@example.com",),
            active=False,
            given_name="Jane",
            family_name="Doe",
        ),
        Identity(user_name="bob@example.com", emails=("bob@example.com",)),
    ]


def test_read_csv_prefers_user_name_over_login(tmp_path: Path) -> None:
    """Two columns for one field: the first non-empty one in alias order wins."""
    path = tmp_path / "people.csv"
    path.write_text("login,userName\nlogin@example.com,user@example.com\nonly@example.com,\n")
    assert [i.user_name for i in read_identities(path)] == ["user@example.com", "only@example.com"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("users.xlsx", "", "cannot read identities from a '.xlsx' file; use a .csv or .json file"),
        ("users", "", "cannot read identities from a 'suffix-less' file; use a .csv or .json file"),
        (
            "users.csv",
            "userName,Status\njane@example.com,ACTIVE\nbob@example.com,GONE\n",
            "line 3: unknown status 'GONE'; use an Okta status (ACTIVE, PROVISIONED, STAGED, "
            "RECOVERY, PASSWORD_EXPIRED, LOCKED_OUT, SUSPENDED, DEPROVISIONED) or true/false",
        ),
        (
            "users.csv",
            'userName,email,note\njane@example.com,,"two\nlines"\n,,x\n',
            "line 4: no userName and no email",
        ),
        (
            "users.csv",
            "Full name,Department\nJane Doe,Sales\n",
            "no userName or email column (found columns: 'Full name', 'Department'); "
            "name one of them 'userName' or 'email'",
        ),
        (
            "users.csv",
            "",
            "no userName or email column (found columns: none); "
            "name one of them 'userName' or 'email'",
        ),
        (
            "users.json",
            "[{",
            "not valid JSON (Expecting property name enclosed in double quotes at line 1, "
            "column 3)",
        ),
        (
            "users.json",
            '{"users": []}',
            'expected a list of users or a SCIM ListResponse with "Resources"',
        ),
        ("users.json", '[{"userName": "a"}, "b"]', "index 1: expected an object, not str"),
        ("users.json", '[{"displayName": "A"}]', "index 0: no userName and no email"),
        ("users.json", '[{"userName": ["a"]}]', "index 0: userName must be a string, not list"),
        (
            "users.json",
            '[{"userName": "a", "active": 1}]',
            "index 0: unknown status 1; use an Okta status (ACTIVE, PROVISIONED, STAGED, "
            "RECOVERY, PASSWORD_EXPIRED, LOCKED_OUT, SUSPENDED, DEPROVISIONED) or true/false",
        ),
    ],
)
def test_bad_files(tmp_path: Path, name: str, content: str, message: str) -> None:
    """Each error names the file, where in it, and what is wrong."""
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_identities(path)
    assert str(caught.value) == f"{path}: {message}"


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    """A Windows-1252 export is refused with a hint rather than read as mojibake."""
    path = tmp_path / "users.csv"
    path.write_bytes("userName\nGarcía@example.com\n".encode("cp1252"))
    with pytest.raises(InputError) as caught:
        read_identities(path)
    assert str(caught.value) == f"{path}: not UTF-8 text (byte 13); save it as UTF-8"


# Reading an upload held in memory.


def test_parse_identities_reads_bytes_and_text_as_the_file_reader_does() -> None:
    """Bytes (with a byte order mark) and text give what read_identities gives for the file."""
    path = DATA / "okta-export-users.csv"
    expected = read_identities(path)
    data = path.read_bytes()
    assert parse_identities(b"\xef\xbb\xbf" + data, kind="csv") == expected
    assert parse_identities(data.decode("utf-8"), kind="csv") == expected
    assert parse_identities("\ufeff" + data.decode("utf-8")) == expected


def test_parse_identities_tells_json_from_csv_by_the_first_character() -> None:
    """Without a kind, a file starting with [ or { (after blanks) is JSON; anything else CSV."""
    assert parse_identities(b' \n[{"userName": "a@x.test"}]') == [Identity(user_name="a@x.test")]
    listed = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "Resources": []}
    assert parse_identities(json.dumps(listed)) == []
    assert parse_identities(b"userName\n[a]@x.test\n") == [Identity(user_name="[a]@x.test")]


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("csv", "userName\na\nb\n\nc\n"),
        ("json", '[{"userName": "a"}, {"userName": "b"}, {"userName": "c"}]'),
    ],
)
def test_parse_identities_refuses_more_than_its_limit(kind: str, data: str) -> None:
    """One identity past the limit is refused, saying what to do; at the limit is fine."""
    with pytest.raises(InputError) as caught:
        parse_identities(data, name="users", limit=2)
    assert str(caught.value) == (
        "users: more than 2 identities; split the export into files of at most 2 and import "
        "them one after the other"
    )
    assert len(parse_identities(data, limit=3)) == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"userName\nok\n" + b"x" * 200_000 + b"\n",
            "up.csv: line 3: not a CSV row (field larger than field limit (131072))",
        ),
        (
            b"userName,First name\nok,A\nb@x.test,B\x00\n",
            "up.csv: line 3: givenName holds the control character U+0000; remove it",
        ),
        (
            b'[{"userName": "a\\u001bb"}]',
            "up.csv: index 0: userName holds the control character U+001B; remove it",
        ),
        (b"userName\n\xff\n", "up.csv: not UTF-8 text (byte 9); save it as UTF-8"),
        (
            b"[" * 100_000,
            "up.csv: not a list of users (arrays or objects nested too deeply)",
        ),
        (
            b'[{"userName": "a@x.test", "name": {"familyName": "\\ud800"}}]',
            "up.csv: index 0: familyName holds the surrogate U+D800; remove it",
        ),
    ],
)
def test_parse_identities_names_the_line_and_the_problem(data: bytes, message: str) -> None:
    """A field too large for csv, a control character or a surrogate: refused with the line."""
    with pytest.raises(InputError) as caught:
        parse_identities(data, name="up.csv")
    assert str(caught.value) == message


def test_a_step_lists_its_candidates() -> None:
    """Every step names the members it matched, sorted; a create has none."""
    people = [
        Identity(user_name="new@x.test"),
        Identity(user_name="jane@x.test", external_id="00u1"),
        Identity(user_name="dup@x.test"),
        Identity(user_name="DUP@x.test", external_id="00u9"),
    ]
    members = [
        member("m9", "jane@x.test"),
        member("m2", "dup@x.test"),
    ]
    steps = {step.identity.user_name: step for step in plan_links(people, members).steps}
    assert steps["new@x.test"].candidates == ()
    assert steps["jane@x.test"].candidates == ("m9",)
    assert steps["dup@x.test"].action == "conflict"
    assert steps["dup@x.test"].candidates == ("m2",)
    assert steps["DUP@x.test"].candidates == ("m2",)
