"""The attribute mapping: which SAML attribute holds a member's email, first and last name.

IdPs name the same value differently (Okta sends what the admin typed, Entra
the WS-Federation claim URIs, LDAP-backed IdPs OIDs or ``givenName``/``sn``),
so pbidentity knows the usual aliases, suggests a mapping from them and falls
back on them when a sign-in arrives. Names match case-insensitively because
IdPs and admins are inconsistent about case, while no two of the usual
attributes differ by case alone.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence

import attrs

from pbidentity.saml._types import EMAIL_NAMEID
from pbidentity.saml._types import Finding

__all__ = [
    "ALIASES",
    "OUR_NAMES",
    "Profile",
    "check_attributes",
    "is_email_address",
    "map_profile",
    "suggest_mapping",
]

#: pbidentity's own attribute names, in the order they are checked.
OUR_NAMES = ("email", "firstName", "lastName")

#: For each of pbidentity's names, the attribute names IdPs use for it, most
#: likely first (pbidentity's own name leads, so it wins when both are sent).
ALIASES: Mapping[str, tuple[str, ...]] = {
    "email": (
        "email",
        "mail",
        "Email",
        "emailaddress",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
        "urn:oid:0.9.2342.19200300.100.1.3",
        "user.email",
    ),
    "firstName": (
        "firstName",
        "givenName",
        "given_name",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
        "urn:oid:2.5.4.42",
    ),
    "lastName": (
        "lastName",
        "sn",
        "surname",
        "family_name",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
        "urn:oid:2.5.4.4",
    ),
}

_LABELS = {"email": "email address", "firstName": "first name", "lastName": "last name"}

# Deliberately loose: the IdP vouches for the address, this only tells an
# address from an opaque id (a NameID such as "00u1abcd" or a GUID).
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


def is_email_address(value: str | None) -> bool:
    """Whether ``value`` looks like an email address (``local@domain``, no spaces)."""
    return value is not None and _EMAIL.fullmatch(value.strip()) is not None


@attrs.frozen(kw_only=True)
class Profile:
    """What a sign-in tells of the person: the values pbidentity keeps on a member."""

    #: The address the sign-in matches: the NameID when it is an address, else
    #: the email attribute.
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    #: The first address the email attributes carry, whether or not it is
    #: ``email``: shown to the admin when it differs, never matched.
    email_attribute: str | None = attrs.field(default=None, eq=False)


def _index(names: Iterable[str]) -> dict[str, str]:
    """Case-folded name -> the name as sent; the first spelling wins."""
    index: dict[str, str] = {}
    for name in names:
        index.setdefault(name.casefold(), name)
    return index


def suggest_mapping(attribute_names: Iterable[str]) -> dict[str, str]:
    """The mapping the known aliases suggest: pbidentity's name -> the IdP's attribute name.

    Only the names found among ``attribute_names`` appear; an empty dict means
    none of them is recognised.
    """
    index = _index(attribute_names)
    suggested: dict[str, str] = {}
    for ours, aliases in ALIASES.items():
        for alias in aliases:
            found = index.get(alias.casefold())
            if found is not None:
                suggested[ours] = found
                break
    return suggested


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def check_attributes(
    attribute_names: Collection[str],
    *,
    mapping: Mapping[str, str] | None,
    name_id: str | None,
    name_id_format: str | None,
) -> tuple[dict[str, str], list[Finding]]:
    """Check that the attributes the IdP sends give a member's email and names.

    ``attribute_names`` are the names the IdP's metadata advertises (then
    ``name_id`` is ``None``) or the names a test sign-in carried (then
    ``name_id`` is the NameID it carried). ``name_id_format`` is the NameID
    format in use; without a ``name_id``, an emailAddress format counts as
    providing the email.

    Returns the mapping to use (the admin's ``mapping`` completed with the
    aliases found) and the findings.
    """
    chosen = {ours: name for ours, name in (mapping or {}).items() if ours in ALIASES}
    if not attribute_names and name_id is None:
        return chosen, [
            Finding(
                code="attributes.not_listed",
                severity="info",
                message="The IdP metadata lists no attributes, as most IdPs' metadata does: "
                "the email, first name and last name attributes are checked at the test sign-in.",
                where="attributes",
            )
        ]
    index = _index(attribute_names)
    suggested = suggest_mapping(attribute_names)
    names = sorted(attribute_names, key=str.casefold)
    sent = _quoted(names[:8]) or "none"
    if len(names) > 8:
        # Entra alone sends eight claim URIs and more: name a few, count the rest.
        sent += f" and {len(names) - 8} more"
    resolved: dict[str, str] = {}
    findings: list[Finding] = []
    for ours in OUR_NAMES:
        label = _LABELS[ours]
        if ours in chosen:
            target = chosen[ours]
            resolved[ours] = index.get(target.casefold(), target)
            if target.casefold() not in index:
                alternative = suggested.get(ours)
                findings.append(
                    Finding(
                        code="attributes.mapped_missing",
                        severity="warning",
                        message=f"The mapping reads the {label} from the attribute '{target}', "
                        f"but the IdP does not send it (it sends: {sent}).",
                        where=f"attribute {ours}",
                        suggestion=f"Map {ours} to '{alternative}' instead."
                        if alternative
                        else f"Add an attribute statement named '{target}' in the IdP app, "
                        "or change the mapping.",
                    )
                )
            continue
        found = suggested.get(ours)
        if found is not None:
            resolved[ours] = found
            if ours != "email" and found.casefold() != ours.casefold():
                findings.append(
                    Finding(
                        code="attributes.alias",
                        severity="warning",
                        message=f"The IdP sends no '{ours}' attribute, but '{found}' looks like "
                        f"the {label}.",
                        where=f"attribute {ours}",
                        suggestion=f"Save the mapping {ours} -> '{found}' (pbidentity uses it "
                        f"meanwhile), or add an attribute statement named '{ours}' in the IdP app.",
                    )
                )
            continue
        if ours == "email":
            continue
        findings.append(
            Finding(
                code="attributes.missing",
                severity="warning",
                message=f"The IdP sends no {label} (no '{ours}' attribute nor a known alias such "
                f"as {_quoted(ALIASES[ours][1:3])}; it sends: {sent}). Members it creates will "
                f"have no {label}.",
                where=f"attribute {ours}",
                suggestion=f"Add an attribute statement named '{ours}' holding the user's "
                f"{label} in the IdP app.",
            )
        )
    # A mapped attribute that is not sent gives no email, but an alias that
    # is sent does (map_profile falls back on it).
    mapped_email = chosen.get("email", "").casefold()
    if "email" not in suggested and mapped_email not in index:
        from_name_id = (
            is_email_address(name_id) if name_id is not None else name_id_format == EMAIL_NAMEID
        )
        if from_name_id:
            findings.append(
                Finding(
                    code="attributes.email_from_nameid",
                    severity="info",
                    message="The IdP sends no email attribute; the email address is taken "
                    "from the NameID.",
                    where="attribute email",
                )
            )
        else:
            what = (
                f"the NameID '{name_id}' is not an email address"
                if name_id
                else "the NameID format is not emailAddress"
            )
            findings.append(
                Finding(
                    code="attributes.no_email",
                    severity="error",
                    message=f"The IdP sends no email address: no 'email' attribute nor a known "
                    f"alias (it sends: {sent}), and {what}.",
                    where="attribute email",
                    suggestion="Add an attribute statement named 'email' holding the user's "
                    "email in the IdP app, or set its Name ID format to EmailAddress.",
                )
            )
    return resolved, findings


def map_profile(
    attributes: Mapping[str, Sequence[str]],
    *,
    mapping: Mapping[str, str] | None,
    name_id: str,
    name_id_format: str | None = None,
) -> Profile:
    """The member's profile from a sign-in's attributes.

    Each name is read from the mapped attribute, else from the first known
    alias that is present; the first non-blank value counts. The email is the
    person the IdP authenticated: the NameID when its format is emailAddress
    or it looks like an address (an email attribute naming someone else is
    only profile data and never chooses the member), else the first email
    attribute value that looks like an address.
    """
    index: dict[str, Sequence[str]] = {}
    for name, values in attributes.items():
        index.setdefault(name.casefold(), values)
    chosen = mapping or {}

    def values_of(ours: str) -> list[str]:
        names = ([chosen[ours]] if ours in chosen else []) + list(ALIASES[ours])
        found: list[str] = []
        for name in names:
            for value in index.get(name.casefold(), ()):
                if isinstance(value, str) and value.strip():
                    found.append(value.strip())
        return found

    attribute = next((v for v in values_of("email") if is_email_address(v)), None)
    email = attribute
    if is_email_address(name_id) or (name_id_format == EMAIL_NAMEID and name_id.strip()):
        # The IdP says this NameID is an address: matched as it is, even if
        # it turns out not to be one (the sign-in then says so), rather than
        # matched through an attribute the user may be able to edit.
        email = name_id.strip()
    first = values_of("firstName")
    last = values_of("lastName")
    return Profile(
        email=email,
        first_name=first[0] if first else None,
        last_name=last[0] if last else None,
        email_attribute=attribute,
    )
