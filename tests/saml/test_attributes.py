"""The attribute mapping: suggestions from known aliases, the checks, and a sign-in's profile."""

from __future__ import annotations

from typing import Any

import pytest

from pbidentity.saml import EMAIL_NAMEID
from pbidentity.saml._attributes import ALIASES
from pbidentity.saml._attributes import Profile
from pbidentity.saml._attributes import check_attributes
from pbidentity.saml._attributes import is_email_address
from pbidentity.saml._attributes import map_profile
from pbidentity.saml._attributes import suggest_mapping

CLAIMS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"


def codes(names: list[str], **kwargs: Any) -> list[str]:
    """The finding codes, in order, for attributes ``names``."""
    options: dict[str, Any] = {"mapping": None, "name_id": None, "name_id_format": None}
    options.update(kwargs)
    return [f.code for f in check_attributes(names, **options)[1]]


# --- suggestions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (
            ["email", "firstName", "lastName"],
            {"email": "email", "firstName": "firstName", "lastName": "lastName"},
        ),
        (
            [f"{CLAIMS}emailaddress", f"{CLAIMS}givenname", f"{CLAIMS}surname", f"{CLAIMS}name"],
            {
                "email": f"{CLAIMS}emailaddress",
                "firstName": f"{CLAIMS}givenname",
                "lastName": f"{CLAIMS}surname",
            },
        ),
        (
            ["urn:oid:0.9.2342.19200300.100.1.3", "urn:oid:2.5.4.42", "urn:oid:2.5.4.4"],
            {
                "email": "urn:oid:0.9.2342.19200300.100.1.3",
                "firstName": "urn:oid:2.5.4.42",
                "lastName": "urn:oid:2.5.4.4",
            },
        ),
        (
            ["MAIL", "GivenName", "SN"],
            {"email": "MAIL", "firstName": "GivenName", "lastName": "SN"},
        ),
        (
            ["user.email", "given_name", "family_name"],
            {
                "email": "user.email",
                "firstName": "given_name",
                "lastName": "family_name",
            },
        ),
        (["department", "groups"], {}),
    ],
    ids=["ours", "entra-claims", "oids", "any-case", "oidc-style", "none"],
)
def test_suggest_mapping(names: list[str], expected: dict[str, str]) -> None:
    """Known aliases, matched whatever their case, give the IdP's spelling back."""
    assert suggest_mapping(names) == expected


def test_our_own_name_wins_over_an_alias() -> None:
    """When both are sent, pbidentity's own name is taken."""
    assert suggest_mapping(["givenName", "firstName", "mail", "email"]) == {
        "firstName": "firstName",
        "email": "email",
    }


def test_every_alias_is_recognised() -> None:
    """Each documented alias maps to its name."""
    for ours, aliases in ALIASES.items():
        for alias in aliases:
            assert suggest_mapping([alias]) == {ours: alias}


# --- checks ------------------------------------------------------------------------------------


def test_all_present_gives_no_finding() -> None:
    """Our own names: nothing to say, mapping is the identity."""
    mapping, findings = check_attributes(
        ["email", "firstName", "lastName"], mapping=None, name_id=None, name_id_format=None
    )
    assert findings == []
    assert mapping == {"email": "email", "firstName": "firstName", "lastName": "lastName"}


def test_alias_present_is_a_warning_with_the_suggested_mapping() -> None:
    """The aliases givenName and sn are recognised; the warning says which mapping to save."""
    mapping, findings = check_attributes(
        ["mail", "givenName", "sn"], mapping=None, name_id=None, name_id_format=None
    )
    assert [(f.code, f.severity, f.where) for f in findings] == [
        ("attributes.alias", "warning", "attribute firstName"),
        ("attributes.alias", "warning", "attribute lastName"),
    ]
    assert "firstName -> 'givenName'" in findings[0].suggestion
    assert mapping == {"email": "mail", "firstName": "givenName", "lastName": "sn"}


def test_saved_mapping_silences_the_alias_warning() -> None:
    """Once the admin saved the mapping, it is used and nothing is said."""
    mapping, findings = check_attributes(
        ["mail", "givenName", "SN"],
        mapping={"firstName": "givenName", "lastName": "sn"},
        name_id=None,
        name_id_format=None,
    )
    assert findings == []
    assert mapping == {"email": "mail", "firstName": "givenName", "lastName": "SN"}


def test_mapped_attribute_not_sent_is_a_warning() -> None:
    """A mapping to an attribute the IdP does not send, with the alias it does send."""
    mapping, findings = check_attributes(
        ["email", "givenName", "lastName"],
        mapping={"firstName": "first_name"},
        name_id=None,
        name_id_format=None,
    )
    assert [f.code for f in findings] == ["attributes.mapped_missing"]
    assert "'givenName' instead" in findings[0].suggestion
    assert mapping["firstName"] == "first_name"


def test_mapped_email_not_sent_is_no_email() -> None:
    """A mapping to an email attribute that is not sent does not count as an email."""
    assert codes(["firstName", "lastName"], mapping={"email": "mail"}, name_id="00u1") == [
        "attributes.mapped_missing",
        "attributes.no_email",
    ]
    alias_sent = codes(["Email", "firstName", "lastName"], mapping={"email": "mail"}, name_id="x")
    assert alias_sent == ["attributes.mapped_missing"]


def test_missing_names_are_warnings() -> None:
    """No first or last name at all: members are created without them."""
    assert codes(["email"]) == ["attributes.missing", "attributes.missing"]


def test_no_email_is_an_error() -> None:
    """No email attribute, NameID not an address: nothing to identify the member by."""
    assert codes(["firstName", "lastName"], name_id="00u1abcd", name_id_format=PERSISTENT) == [
        "attributes.no_email"
    ]
    _, findings = check_attributes(
        ["firstName", "lastName"], mapping=None, name_id="00u1abcd", name_id_format=None
    )
    assert findings[0].severity == "error"
    assert "'00u1abcd' is not an email address" in findings[0].message


def test_email_nameid_stands_in_for_the_email_attribute() -> None:
    """An address as NameID (or, before a sign-in, the emailAddress format) is enough."""
    signed_in = codes(["firstName", "lastName"], name_id="ada@acme.test")
    assert signed_in == ["attributes.email_from_nameid"]
    from_metadata = codes(["firstName", "lastName"], name_id_format=EMAIL_NAMEID)
    assert from_metadata == ["attributes.email_from_nameid"]
    assert codes(["firstName", "lastName"]) == ["attributes.no_email"]


def test_metadata_listing_no_attributes_is_information() -> None:
    """Most metadata lists none: the checks wait for the test sign-in."""
    mapping, findings = check_attributes(
        [], mapping={"email": "mail", "bogus": "x"}, name_id=None, name_id_format=None
    )
    assert [(f.code, f.severity) for f in findings] == [("attributes.not_listed", "info")]
    assert "test sign-in" in findings[0].message
    assert mapping == {"email": "mail"}


def test_sign_in_without_attributes_is_checked_fully() -> None:
    """A test sign-in that carried no attributes is not "not listed": it lacks them."""
    assert codes([], name_id="ada@acme.test") == [
        "attributes.missing",
        "attributes.missing",
        "attributes.email_from_nameid",
    ]


# --- a sign-in's profile ----------------------------------------------------------------------


def test_profile_from_our_names() -> None:
    """The first non-blank value counts."""
    profile = map_profile(
        {"email": ["ada@acme.test"], "firstName": ["", " Ada "], "lastName": ["Lovelace"]},
        mapping=None,
        name_id="00u1",
    )
    assert profile == Profile(email="ada@acme.test", first_name="Ada", last_name="Lovelace")


def test_profile_from_aliases_and_mapping() -> None:
    """The mapping first, then known aliases, matched case-insensitively."""
    attributes = {
        f"{CLAIMS}EmailAddress": ["ada@acme.test"],
        "nickname": ["Countess"],
        "givenName": ["Augusta"],
        "SN": ["Lovelace"],
    }
    assert map_profile(attributes, mapping={"firstName": "NICKNAME"}, name_id="x") == Profile(
        email="ada@acme.test", first_name="Countess", last_name="Lovelace"
    )
    assert map_profile(attributes, mapping=None, name_id="x").first_name == "Augusta"


def test_profile_email_falls_back_to_the_nameid() -> None:
    """No email attribute (or one that is no address): the NameID if it is an address."""
    assert map_profile({}, mapping=None, name_id=" ada@acme.test ") == Profile(
        email="ada@acme.test"
    )
    assert (
        map_profile({"email": ["Ada Lovelace"]}, mapping=None, name_id="ada@acme.test").email
        == "ada@acme.test"
    )
    assert map_profile({}, mapping=None, name_id="00u1abcd") == Profile()


def test_profile_email_is_the_name_id_when_that_is_an_address() -> None:
    """The person the IdP authenticated: an email attribute naming someone else never wins."""
    attributes = {"email": ["ceo@acme.test"]}
    assert map_profile(attributes, mapping=None, name_id="owner@acme.test").email == (
        "owner@acme.test"
    )
    # Declared an address by its format, it stays the identity even when it is
    # none (the sign-in then refuses it) rather than falling back on the attribute.
    declared = map_profile(attributes, mapping=None, name_id="00u1", name_id_format=EMAIL_NAMEID)
    assert declared.email == "00u1"
    # An opaque NameID of another format: the attribute is the identity.
    assert map_profile(attributes, mapping=None, name_id="00u1").email == "ceo@acme.test"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ada@acme.test", True),
        ("ada+tag@sub.acme.test", True),
        ("ada", False),
        ("ada@", False),
        ("@acme.test", False),
        ("a b@acme.test", False),
        ("a@b@c", False),
        (None, False),
    ],
)
def test_is_email_address(value: str | None, expected: bool) -> None:
    """Loose on purpose: an address from an opaque id."""
    assert is_email_address(value) is expected
