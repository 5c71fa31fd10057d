"""PATCH (RFC 7644 §3.5.2) as the RFC examples and real IdPs send it (scim._patch)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from pbidentity.scim._patch import PatchError
from pbidentity.scim._patch import apply_patch
from pbidentity.scim._schema import CORE_USER_URN
from pbidentity.scim._schema import DEFAULT_ROLE_URN
from pbidentity.scim._schema import ENTERPRISE_URN
from pbidentity.scim._schema import ResourceSpec
from pbidentity.scim._schema import group_resource
from pbidentity.scim._schema import normalise_payload
from pbidentity.scim._schema import user_resource

DATA = Path(__file__).parent.parent / "data"
BABS = "2819c223-7f76-453a-919d-413861904646"
MANDY = "902c246b-6245-4190-8e05-00816be7344a"
JAMES = "08e1d05d-121c-4561-8b96-473d93df9210"


def load(name: str) -> Any:
    """A sample payload from tests/data, named after its source."""
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def operations(name: str) -> list[dict[str, Any]]:
    """The Operations of a sample PatchOp message."""
    body = load(name)
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]
    operations: list[dict[str, Any]] = body["Operations"]
    return operations


USERS = user_resource(DEFAULT_ROLE_URN, ("admin", "maker", "viewer"))
GROUPS = group_resource()


def babs() -> dict[str, Any]:
    """Barbara Jensen, RFC 7643 §8.3, as the canonical document the service stores."""
    return normalise_payload(load("rfc7643-8.3-enterprise-user.json"), USERS).document


def tour_guides() -> dict[str, Any]:
    """The RFC 7643 §8.4 group, members included (the engine handles any list)."""
    return normalise_payload(load("rfc7643-8.4-group.json"), GROUPS).document


def kim() -> dict[str, Any]:
    """A small user, as Entra creates one."""
    return {
        "userName": "kim@contoso.com",
        "active": True,
        "name": {"givenName": "Kim", "familyName": "Akers"},
        "emails": [{"value": "kim@contoso.com", "type": "work", "primary": True}],
    }


def patch(
    document: dict[str, Any], ops: list[dict[str, Any]], resource: ResourceSpec = USERS
) -> dict[str, Any]:
    """Apply and check that the input was left untouched."""
    before = copy.deepcopy(document)
    result = apply_patch(document, ops, resource)
    assert document == before
    return result


def failure(
    document: dict[str, Any], ops: list[dict[str, Any]], resource: ResourceSpec = USERS
) -> PatchError:
    """Apply, expecting a PatchError, and return it."""
    with pytest.raises(PatchError) as caught:
        apply_patch(document, ops, resource)
    return caught.value


def without(document: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The document without some keys, to compare what a patch must not touch."""
    return {k: v for k, v in document.items() if k not in keys}


# -- RFC 7644 §3.5.2 examples -------------------------------------------------------------


def test_rfc_add_member_appends_it() -> None:
    """§3.5.2.1: add with path members appends the new member and keeps the others.

    The member's read-only ``display`` (the service computes names itself) is dropped.
    """
    result = patch(tour_guides(), operations("rfc7644-3.5.2.1-add-member.json"), GROUPS)
    assert [m["value"] for m in result["members"]] == [BABS, MANDY, JAMES]
    assert result["members"][2] == {"$ref": f"https://example.com/v2/Users/{JAMES}", "value": JAMES}


def test_rfc_pathless_add_sets_attributes_named_in_any_case() -> None:
    """§3.5.2.1: a path-less add applies each key; the RFC's "nickname" sets nickName."""
    start = kim()
    result = patch(start, operations("rfc7644-3.5.2.1-add-pathless.json"))
    assert result["nickName"] == "Babs"
    assert result["emails"] == [*start["emails"], {"value": "babs@jensen.org", "type": "home"}]


def test_rfc_pathless_add_of_an_existing_email_is_idempotent() -> None:
    """§3.5.2.1 on Babs, who already has that home email: it is not added twice."""
    start = babs()
    result = patch(start, operations("rfc7644-3.5.2.1-add-pathless.json"))
    assert result["emails"] == start["emails"]
    assert without(result, "nickName") == without(start, "nickName")


def test_rfc_remove_one_member_by_filter() -> None:
    """§3.5.2.2: remove members[value eq "..."] removes exactly that member."""
    result = patch(tour_guides(), operations("rfc7644-3.5.2.2-remove-member.json"), GROUPS)
    assert [m["value"] for m in result["members"]] == [MANDY]


def test_rfc_remove_all_members() -> None:
    """§3.5.2.2: remove with path members and no value removes the attribute."""
    result = patch(tour_guides(), operations("rfc7644-3.5.2.2-remove-all-members.json"), GROUPS)
    assert "members" not in result
    assert result["displayName"] == "Tour Guides"


def test_rfc_remove_with_a_conjunction_filter() -> None:
    """§3.5.2.2: emails[type eq "work" and value ew "example.com"] removes the work email only."""
    result = patch(babs(), operations("rfc7644-3.5.2.2-remove-emails-filter.json"))
    assert result["emails"] == [{"value": "babs@jensen.org", "type": "home"}]


def test_rfc_remove_then_add_members_in_one_request() -> None:
    """§3.5.2.2: remove all members then add one, in one request, leaves only the new one."""
    result = patch(tour_guides(), operations("rfc7644-3.5.2.2-remove-and-add-members.json"), GROUPS)
    assert [m["value"] for m in result["members"]] == [JAMES]


def test_rfc_replace_members_replaces_the_whole_list() -> None:
    """§3.5.2.3: replace members with no filter replaces every member."""
    result = patch(tour_guides(), operations("rfc7644-3.5.2.3-replace-members.json"), GROUPS)
    assert [m["value"] for m in result["members"]] == [BABS, JAMES]


def test_rfc_replace_the_work_address() -> None:
    """§3.5.2.3: replace addresses[type eq "work"] replaces only that element."""
    start = babs()
    result = patch(start, operations("rfc7644-3.5.2.3-replace-work-address.json"))
    work, home = result["addresses"]
    assert work["streetAddress"] == "911 Universal City Plaza"
    assert work["country"] == "US"
    assert work["primary"] is True
    assert home == start["addresses"][1]


def test_rfc_replace_one_sub_attribute_of_a_filtered_element() -> None:
    """§3.5.2.3: replace addresses[type eq "work"].streetAddress changes that sub-attribute only."""
    start = babs()
    result = patch(start, operations("rfc7644-3.5.2.3-replace-street-address.json"))
    assert result["addresses"][0] == {**start["addresses"][0], "streetAddress": "1010 Broadway Ave"}
    assert result["addresses"][1] == start["addresses"][1]


def test_rfc_pathless_replace() -> None:
    """§3.5.2.3: a path-less replace replaces the emails list and sets nickName."""
    start = kim()
    result = patch(start, operations("rfc7644-3.5.2.3-replace-pathless.json"))
    assert result["emails"] == [
        {"value": "bjensen@example.com", "type": "work", "primary": True},
        {"value": "babs@jensen.org", "type": "home"},
    ]
    assert result["nickName"] == "Babs"
    assert result["name"] == start["name"]


# -- what identity providers send -------------------------------------------------------


def test_okta_oin_deactivation() -> None:
    """Okta's catalogue apps deactivate with a path-less replace of active: only active changes."""
    start = babs()
    result = patch(start, operations("okta-oin-deactivate.json"))
    assert result["active"] is False
    assert without(result, "active") == without(start, "active")


def test_okta_group_rename_ignores_the_id_in_the_value() -> None:
    """Okta's rename carries the group id inside the value: it is ignored, displayName changes."""
    start = {"displayName": "Old name", "externalId": "00g1"}
    result = patch(start, operations("okta-group-rename.json"), GROUPS)
    assert result == {"displayName": "Test SCIMv2", "externalId": "00g1"}


def test_entra_pathless_replace_with_dotted_and_urn_keys() -> None:
    """Entra (aadOptscim062020) sends dotted and URN-qualified keys in one path-less replace."""
    start = {"schemas": [CORE_USER_URN], **kim()}
    result = patch(start, operations("entra-aadoptscim062020-pathless-replace.json"))
    assert result["name"] == {"givenName": "Kim", "familyName": "Akers"}
    assert result["displayName"] == "Kim Akers"
    assert result[ENTERPRISE_URN] == {"employeeNumber": "A1B2", "department": "Sales"}
    assert result["schemas"] == [CORE_USER_URN, ENTERPRISE_URN]


def test_entra_string_boolean() -> None:
    """Entra without aadOptscim062020 sends "False" for active: stored as False."""
    result = patch(kim(), operations("entra-legacy-string-boolean.json"))
    assert result["active"] is False


def test_entra_filtered_path_updates_an_existing_element() -> None:
    """emails[type eq "work"].value replaces the work email's value; name.familyName changes too."""
    result = patch(kim(), operations("entra-update-multivalued.json"))
    assert result["emails"] == [
        {"value": "updatedEmail@microsoft.com", "type": "work", "primary": True}
    ]
    assert result["name"] == {"givenName": "Kim", "familyName": "updatedFamilyName"}


def test_entra_filtered_path_creates_a_missing_element() -> None:
    """With no work email, emails[type eq "work"].value creates one (Entra)."""
    start = without(kim(), "emails")
    result = patch(start, operations("entra-update-multivalued.json"))
    assert result["emails"] == [{"type": "work", "value": "updatedEmail@microsoft.com"}]


def test_entra_manager_given_as_an_id() -> None:
    """Entra adds the enterprise manager as a plain id string: it becomes manager.value."""
    result = patch(kim(), operations("entra-add-manager.json"))
    assert result[ENTERPRISE_URN] == {"manager": {"value": "2819c223-7f76-453a-919d-ab1234567891"}}


def test_entra_remove_members_with_a_value_removes_only_those() -> None:
    """Entra's remove of members with a value list removes those members, never all of them."""
    result = patch(tour_guides(), operations("entra-legacy-remove-members.json"), GROUPS)
    assert [m["value"] for m in result["members"]] == [MANDY]


def test_entra_role_serialised_as_json_in_a_string() -> None:
    """Entra may send roles as a JSON document inside a string value: it is parsed."""
    result = patch(kim(), operations("entra-role-json-string.json"))
    assert result["roles"] == [
        {"primary": True, "type": "WindowsAzureActiveDirectoryRole", "value": "Admin"}
    ]


# -- every path form ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("title", "CEO", {"title": "CEO"}),
        ("TITLE", "CEO", {"title": "CEO"}),
        (f"{CORE_USER_URN}:title", "CEO", {"title": "CEO"}),
        ("name.givenName", "K", {"name": {"givenName": "K", "familyName": "Akers"}}),
        ("Name.GivenName", "K", {"name": {"givenName": "K", "familyName": "Akers"}}),
        (
            'emails[type eq "work"]',
            {"value": "k@contoso.com", "type": "work", "primary": True},
            {"emails": [{"value": "k@contoso.com", "type": "work", "primary": True}]},
        ),
        (
            'EMAILS[TYPE eq "WORK"].VALUE',
            "k@contoso.com",
            {"emails": [{"value": "k@contoso.com", "type": "work", "primary": True}]},
        ),
        (f"{ENTERPRISE_URN}:employeeNumber", "42", {ENTERPRISE_URN: {"employeeNumber": "42"}}),
        (
            f"{ENTERPRISE_URN.upper()}:EMPLOYEENUMBER",
            "42",
            {ENTERPRISE_URN: {"employeeNumber": "42"}},
        ),
        (f"{ENTERPRISE_URN}:manager.value", "m1", {ENTERPRISE_URN: {"manager": {"value": "m1"}}}),
        (f"{DEFAULT_ROLE_URN}:role", "maker", {DEFAULT_ROLE_URN: {"role": "maker"}}),
        (ENTERPRISE_URN, {"Department": "Ops"}, {ENTERPRISE_URN: {"department": "Ops"}}),
        ("externalId", "x-1", {"externalId": "x-1"}),
    ],
)
@pytest.mark.parametrize("op", ["replace", "Replace", "ADD"])
def test_every_path_form_writes_in_canonical_case(
    op: str, path: str, value: Any, expected: dict[str, Any]
) -> None:
    """Attribute, sub-attribute, filter (+ sub), core and extension URN paths, any case."""
    start = kim()
    result = patch(start, [{"op": op, "path": path, "value": value}])
    assert result == {**start, **expected}


def test_filtered_add_merges_and_filtered_replace_replaces() -> None:
    """On attr[filter], add merges into the match; replace swaps it, keeping the eq tests."""
    value = {"value": "k@contoso.com"}
    added = patch(kim(), [{"op": "add", "path": 'emails[type eq "work"]', "value": value}])
    assert added["emails"] == [{"value": "k@contoso.com", "type": "work", "primary": True}]
    replaced = patch(kim(), [{"op": "replace", "path": 'emails[type eq "work"]', "value": value}])
    assert replaced["emails"] == [{"type": "work", "value": "k@contoso.com"}]


def test_pathless_value_with_an_extension_block_and_a_urn_key() -> None:
    """A path-less value may mix an extension block, URN-qualified and dotted keys."""
    ops = [
        {
            "op": "add",
            "value": {
                ENTERPRISE_URN.lower(): {"costCenter": "4130"},
                f"{DEFAULT_ROLE_URN}:role": "viewer",
                "name.middleName": "J",
            },
        }
    ]
    result = patch(kim(), ops)
    assert result[ENTERPRISE_URN] == {"costCenter": "4130"}
    assert result[DEFAULT_ROLE_URN] == {"role": "viewer"}
    assert result["name"]["middleName"] == "J"


def test_pathless_replace_merges_a_complex_attribute() -> None:
    """RFC 7644 §3.5.2.3: a complex value replaces the sub-attributes given and keeps the others."""
    result = patch(kim(), [{"op": "replace", "value": {"name": {"givenName": "Kimberly"}}}])
    assert result["name"] == {"givenName": "Kimberly", "familyName": "Akers"}


def test_pathless_value_ignores_id_meta_and_schemas() -> None:
    """id, meta and schemas inside a path-less value are echoes, ignored rather than refused."""
    start = {"schemas": [CORE_USER_URN], **kim()}
    ops = [{"op": "replace", "value": {"id": "x", "meta": {}, "schemas": [], "title": "T"}}]
    assert patch(start, ops) == {**start, "title": "T"}


def test_remove_an_extension_block_and_its_schema() -> None:
    """Remove with the extension URN as path drops the block and its URN from schemas."""
    start = {"schemas": [CORE_USER_URN, ENTERPRISE_URN], **kim(), ENTERPRISE_URN: {"division": "D"}}
    result = patch(start, [{"op": "remove", "path": ENTERPRISE_URN}])
    assert result == {"schemas": [CORE_USER_URN], **kim()}


def test_removing_the_last_extension_attribute_drops_the_block() -> None:
    """An extension block left empty is removed, as an unassigned attribute would be."""
    start = {**kim(), ENTERPRISE_URN: {"division": "D"}}
    assert patch(start, [{"op": "remove", "path": f"{ENTERPRISE_URN}:division"}]) == kim()


def test_sub_attribute_of_a_multi_valued_attribute_without_filter_applies_to_each() -> None:
    """emails.type with no filter sets (or removes) the sub-attribute on every element."""
    start = babs()
    result = patch(start, [{"op": "replace", "path": "emails.type", "value": "other"}])
    assert [e["type"] for e in result["emails"]] == ["other", "other"]
    removed = patch(start, [{"op": "remove", "path": "emails.type"}])
    assert all("type" not in e for e in removed["emails"])


# -- filtered paths that match nothing ----------------------------------------------------


def test_filter_of_eq_tests_creates_the_element() -> None:
    """A conjunction of eq tests builds the new element, booleans included."""
    path = 'phoneNumbers[type eq "mobile" and primary eq true].value'
    result = patch(kim(), [{"op": "add", "path": path, "value": "+1 555"}])
    assert result["phoneNumbers"] == [{"type": "mobile", "primary": True, "value": "+1 555"}]


@pytest.mark.parametrize(
    "path",
    [
        'emails[type co "home"].value',
        'emails[type eq "home" or type eq "other"].value',
        'emails[not (type eq "work")].value',
        'emails[type eq "home" and type eq "other"].value',
    ],
)
def test_filter_that_cannot_describe_an_element_is_no_target(path: str) -> None:
    """Without a pure eq conjunction nothing can be created: noTarget, naming the attribute."""
    error = failure(kim(), [{"op": "replace", "path": path, "value": "x@y.com"}])
    assert error.scim_type == "noTarget"
    assert "emails" in error.detail


def test_filtered_write_with_a_null_value_creates_nothing() -> None:
    """A filtered replace with null, on no match, leaves the document as it was."""
    start = kim()
    ops = [{"op": "replace", "path": 'emails[type eq "home"].value', "value": None}]
    assert patch(start, ops) == start


# -- idempotence and no-ops -----------------------------------------------------------------


def test_repeated_adds_are_idempotent() -> None:
    """The same element added twice (JumpCloud repeats member adds) is stored once."""
    op = {"op": "add", "path": "members", "value": [{"value": JAMES}]}
    result = patch({"displayName": "G"}, [op, op, op], GROUPS)
    assert result["members"] == [{"value": JAMES}]


@pytest.mark.parametrize(
    "path",
    [
        'emails[type eq "home"]',
        'emails[type eq "home"].value',
        "nickName",
        "phoneNumbers",
        f"{ENTERPRISE_URN}:department",
        f"{ENTERPRISE_URN}:manager.value",
        ENTERPRISE_URN,
        "name.middleName",
    ],
)
def test_removing_what_is_not_there_succeeds(path: str) -> None:
    """Removing what is absent is a no-op (Okta and JumpCloud repeat removals)."""
    start = kim()
    assert patch(start, [{"op": "remove", "path": path}]) == start


def test_remove_with_a_value_that_matches_nothing_is_a_no_op() -> None:
    """Removing members described by a value that matches none changes nothing."""
    start = tour_guides()
    ops = [{"op": "remove", "path": "members", "value": [{"value": "unknown"}]}]
    assert patch(start, ops, GROUPS) == start


# -- values: booleans, empties, nulls, primary -----------------------------------------------


@pytest.mark.parametrize(("given", "stored"), [("True", True), ("false", False), ("TRUE", True)])
def test_string_booleans_become_booleans(given: str, stored: bool) -> None:
    """Boolean attributes and sub-attributes given as strings are stored as booleans."""
    ops: list[dict[str, Any]] = [
        {"op": "replace", "value": {"active": given}},
        {"op": "replace", "path": 'emails[type eq "work"].primary', "value": given},
    ]
    result = patch(kim(), ops)
    assert result["active"] is stored
    assert result["emails"][0]["primary"] is stored


@pytest.mark.parametrize("empty", ["", None])
def test_empty_strings_and_nulls_unset(empty: Any) -> None:
    """An empty string or null unsets; a complex attribute left empty goes too."""
    start = {**kim(), "title": "CEO"}
    result = patch(
        start,
        [
            {"op": "replace", "path": "title", "value": empty},
            {"op": "replace", "value": {"name.givenName": empty}},
            {"op": "replace", "path": "name", "value": {"familyName": empty}},
        ],
    )
    assert result == without(kim(), "name")


def test_replacing_a_list_with_an_empty_list_unsets_it() -> None:
    """RFC 7643 §2.5: an empty array is unassigned, so the attribute is removed."""
    assert "emails" not in patch(kim(), [{"op": "replace", "path": "emails", "value": []}])


def test_a_new_primary_clears_the_old_one() -> None:
    """RFC 7643 §2.4: adding a primary email makes the previous primary non-primary."""
    ops = [{"op": "add", "path": "emails", "value": [{"value": "k@home.example", "primary": True}]}]
    result = patch(kim(), ops)
    assert [e.get("primary") for e in result["emails"]] == [False, True]


def test_primary_set_through_a_filter_clears_the_others() -> None:
    """Setting primary on one filtered element clears it on the others."""
    start = babs()
    ops = [{"op": "replace", "path": 'emails[type eq "home"].primary', "value": True}]
    result = patch(start, ops)
    assert [e.get("primary") for e in result["emails"]] == [False, True]


def test_a_list_with_two_primaries_keeps_the_first() -> None:
    """Within one written list, the first element marked primary keeps it."""
    value = [{"value": "a@x.example", "primary": True}, {"value": "b@x.example", "primary": True}]
    result = patch(kim(), [{"op": "replace", "path": "emails", "value": value}])
    assert [e["primary"] for e in result["emails"]] == [True, False]


def test_password_is_never_stored() -> None:
    """Password is writeOnly and pbidentity never stores it: a PATCH of it changes nothing."""
    start = kim()
    ops = [{"op": "replace", "path": "password", "value": "s3cret"}]
    assert patch(start, ops) == start
    assert patch(start, [{"op": "replace", "value": {"password": "x"}}]) == start


# -- mutability ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "path"),
    [
        ("replace", "id"),
        ("replace", "meta.created"),
        ("add", "groups"),
        ("remove", "groups"),
        ("replace", f"{ENTERPRISE_URN}:manager.displayName"),
    ],
)
def test_read_only_targets_are_refused(op: str, path: str) -> None:
    """Targeting id, meta, groups or another readOnly attribute fails with mutability."""
    error = failure(kim(), [{"op": op, "path": path, "value": "x"}])
    assert error.scim_type == "mutability"
    assert "read-only" in error.detail
    assert path.rpartition(":")[2].split(".")[0] in error.detail


def test_read_only_key_in_a_pathless_value_is_refused() -> None:
    """Other than id/meta/schemas, a readOnly key in a path-less value is refused."""
    error = failure(kim(), [{"op": "replace", "value": {"groups": []}}])
    assert error.scim_type == "mutability"


def test_immutable_sub_attribute_cannot_change_once_set() -> None:
    """members.value is immutable: changing it is refused, restating it is fine."""
    path = f'members[value eq "{BABS}"].value'
    error = failure(tour_guides(), [{"op": "replace", "path": path, "value": JAMES}], GROUPS)
    assert error.scim_type == "mutability"
    assert "immutable" in error.detail
    same = patch(tour_guides(), [{"op": "replace", "path": path, "value": BABS}], GROUPS)
    assert same == tour_guides()


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "scim_type", "mentions"),
    [
        ({"op": "merge", "path": "title", "value": "x"}, "invalidSyntax", "merge"),
        ({"op": 3, "path": "title", "value": "x"}, "invalidSyntax", "add, replace or remove"),
        ({"path": "title", "value": "x"}, "invalidSyntax", "op"),
        ({"op": "replace", "path": "title"}, "invalidValue", "needs a value"),
        ({"op": "add", "path": "emails"}, "invalidValue", "needs a value"),
        ({"op": "remove"}, "noTarget", "needs a path"),
        ({"op": "replace", "path": "nickname2", "value": "x"}, "invalidPath", "nickname2"),
        ({"op": "replace", "path": "name.first", "value": "x"}, "invalidPath", "first"),
        (
            {"op": "replace", "path": "urn:example:x:2.0:User:a", "value": "x"},
            "invalidPath",
            "urn:example:x:2.0:User",
        ),
        ({"op": "replace", "path": CORE_USER_URN, "value": {}}, "invalidPath", "whole resource"),
        (
            {"op": "replace", "path": 'emails[type eq "work"', "value": "x"},
            "invalidPath",
            "not valid",
        ),
        (
            {"op": "replace", "path": 'name[givenName eq "K"]', "value": "x"},
            "invalidPath",
            "multi-valued",
        ),
        ({"op": "replace", "path": 'emails[kind eq "work"]', "value": {}}, "invalidPath", "kind"),
        ({"op": "replace", "path": 7, "value": "x"}, "invalidPath", "string"),
        ({"op": "replace", "path": "name", "value": "Kim Akers"}, "invalidValue", "object"),
        ({"op": "replace", "path": "userName", "value": {"a": 1}}, "invalidValue", "single"),
        ({"op": "replace", "value": ["title"]}, "invalidValue", "without a path"),
        ({"op": "replace", "value": "Kim"}, "invalidValue", "without a path"),
        (
            {"op": "add", "path": "emails", "value": [{"value": "a@b.c", "label": "x"}]},
            "invalidValue",
            "label",
        ),
        ({"op": "add", "path": ENTERPRISE_URN, "value": "x"}, "invalidValue", ENTERPRISE_URN),
    ],
)
def test_errors_name_the_operation_and_what_is_wrong(
    operation: dict[str, Any], scim_type: str, mentions: str
) -> None:
    """Each mistake has its scimType; the detail names the operation and the culprit."""
    ops = [{"op": "replace", "path": "title", "value": "ok"}, operation]
    error = failure(kim(), ops)
    assert error.scim_type == scim_type
    assert error.detail.startswith("Operations[1]")
    assert mentions in error.detail
    assert error.index == 1
    assert error.status == 400


def test_an_operation_that_is_not_an_object_is_invalid_syntax() -> None:
    """Operations must hold objects."""
    error = failure(kim(), ["replace title"])  # type: ignore[list-item]
    assert error.scim_type == "invalidSyntax"
    assert error.detail.startswith("Operations[0]")


def test_operation_keys_are_read_in_any_case() -> None:
    """Op, Path and Value keys in any case are accepted."""
    result = patch(kim(), [{"Op": "Replace", "Path": "title", "Value": "CTO"}])
    assert result["title"] == "CTO"


def test_group_attributes_patch() -> None:
    """On a Group, displayName and externalId are patched like any attribute."""
    start = {"displayName": "Ops"}
    ops = [
        {"op": "REPLACE", "path": "displayname", "value": "Operations"},
        {"op": "add", "path": "externalId", "value": "00g42"},
    ]
    assert patch(start, ops, GROUPS) == {"displayName": "Operations", "externalId": "00g42"}


# -- atomicity ----------------------------------------------------------------------------------


def test_a_failing_operation_applies_nothing() -> None:
    """When operation 3 fails, the error names it, the input is untouched and no result exists."""
    start = babs()
    before = copy.deepcopy(start)
    ops: list[dict[str, Any]] = [
        {"op": "replace", "path": "title", "value": "Head Guide"},
        {"op": "remove", "path": 'emails[type eq "work"]'},
        {"op": "add", "path": "members", "value": [{"value": "x"}]},
    ]
    result: dict[str, Any] | None = None
    with pytest.raises(PatchError) as caught:
        result = apply_patch(start, ops, USERS)
    assert result is None
    assert start == before
    assert caught.value.index == 2
    assert caught.value.scim_type == "invalidPath"
    assert caught.value.path == "members"


def test_the_input_is_never_shared_with_the_result() -> None:
    """The result is a new dict: changing it does not change the input document."""
    start = kim()
    result = patch(start, [{"op": "replace", "path": "title", "value": "x"}])
    result["emails"][0]["value"] = "changed@example.com"
    assert start["emails"][0]["value"] == "kim@contoso.com"
