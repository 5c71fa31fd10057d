"""The domain values pbidentity works with: tenants, tokens, members and groups.

They are frozen attrs classes: the storage layer stores and returns them, the
policy layer decides on them and the SCIM layer renders them. They never hold a
pydantic model nor a database row.

A member's SCIM profile (everything the IdP may send for a User, core and
enterprise extension alike) is kept as one canonical SCIM document in
``Member.attributes``; the values pbidentity itself reasons about (userName,
externalId, active, the role) are read from it or kept beside it, so that the
document and the decisions never disagree.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from typing import Literal

import attrs

__all__ = [
    "ApiToken",
    "Event",
    "Group",
    "IdentityProvider",
    "Member",
    "MemberRef",
    "RoleDecision",
    "RoleSource",
    "SamlConnection",
    "SamlConnectionState",
    "SamlRequest",
    "SetupLink",
    "Tenant",
    "fold",
]

#: Where a member's role came from: the role extension attribute, core
#: ``roles``, a mapped group, the tenant's default, a role the member had in
#: the app before and kept because the IdP said nothing, or the host app
#: itself (members it manages while they are not SCIM-managed).
RoleSource = Literal["attribute", "roles", "group", "default", "kept", "app"]


def fold(value: str) -> str:
    """Return the case-insensitive comparison key of a string.

    NFKC then case folding: ``Jane@Example.COM``, the same address typed with
    full-width letters, and ``jane@example.com`` compare equal. Used for
    userName uniqueness, ``caseExact: false`` filters and every lookup that
    must ignore case.
    """
    return unicodedata.normalize("NFKC", value).casefold()


@attrs.frozen(kw_only=True)
class Tenant:
    """A workspace of the host app: the unit of isolation for everything else."""

    id: str
    slug: str
    name: str
    scim_enabled: bool = False
    created: datetime
    version: int = 1
    #: The tenant's policy as a JSON document (role mapping, linking,
    #: deprovisioning); :class:`pbidentity.policy.TenantPolicy` reads it.
    settings: Mapping[str, Any] = attrs.field(factory=dict, repr=False)


@attrs.frozen(kw_only=True)
class ApiToken:
    """A named bearer token an IdP uses to reach one tenant's SCIM endpoints.

    Only the SHA-256 digest of the secret is kept; the secret itself is shown
    once, when the token is created.
    """

    id: str
    tenant_id: str
    name: str
    digest: str
    created: datetime
    last_used: datetime | None = None
    revoked: datetime | None = None

    @property
    def is_active(self) -> bool:
        """Whether the token still grants access."""
        return self.revoked is None


@attrs.frozen(kw_only=True)
class RoleDecision:
    """A member's role and the rule that chose it."""

    role: str
    source: RoleSource
    #: One sentence an admin understands: ``group 'Engineering' (priority 10) maps to maker``.
    rule: str


@attrs.frozen(kw_only=True)
class Member:
    """A member of a tenant, the app-side face of a SCIM User.

    ``attributes`` is the canonical SCIM User document without ``id``,
    ``meta``, ``groups`` and the role extension (those are pbidentity's own).
    ``role_attribute`` is the role extension value exactly as the IdP last
    sent it (rendered back, so the IdP sees no drift); ``role`` is the role
    the app uses, decided by the tenant's role policy, and ``role_source`` and
    ``role_rule`` say how.
    """

    tenant_id: str
    id: str
    attributes: Mapping[str, Any] = attrs.field(repr=False)
    role_attribute: str | None = None
    role: str | None = None
    role_source: RoleSource | None = None
    role_rule: str | None = None
    scim_managed: bool = False
    version: int = 1
    created: datetime
    last_modified: datetime

    @property
    def decision(self) -> RoleDecision | None:
        """The role decision the member carries, if it has a role."""
        if self.role is None:
            return None
        return RoleDecision(
            role=self.role, source=self.role_source or "app", rule=self.role_rule or ""
        )

    @property
    def user_name(self) -> str:
        """The unique identifier the IdP uses: in practice, the email address."""
        return str(self.attributes["userName"])

    @property
    def external_id(self) -> str | None:
        """The IdP's own id of this person (Okta ``00u...``, an Entra object id)."""
        value = self.attributes.get("externalId")
        return None if value is None else str(value)

    @property
    def active(self) -> bool:
        """Whether the member may use the app; SCIM deactivation clears it."""
        return bool(self.attributes.get("active", True))

    @property
    def display_name(self) -> str | None:
        """The name the app shows, falling back to given and family name."""
        value = self.attributes.get("displayName")
        if value:
            return str(value)
        name = self.attributes.get("name") or {}
        parts = [name.get("givenName"), name.get("familyName")]
        joined = " ".join(str(part) for part in parts if part)
        return joined or None

    @property
    def primary_email(self) -> str | None:
        """The primary email, else the first one, else ``None``."""
        emails = self.attributes.get("emails") or []
        for email in emails:
            if email.get("primary") and email.get("value"):
                return str(email["value"])
        for email in emails:
            if email.get("value"):
                return str(email["value"])
        return None


@attrs.frozen(kw_only=True)
class Group:
    """A SCIM Group of a tenant. Its members are kept as memberships, not here."""

    tenant_id: str
    id: str
    attributes: Mapping[str, Any] = attrs.field(repr=False)
    version: int = 1
    created: datetime
    last_modified: datetime

    @property
    def display_name(self) -> str:
        """The group's name, unique in its tenant (case-insensitively)."""
        return str(self.attributes["displayName"])

    @property
    def external_id(self) -> str | None:
        """The IdP's own id of this group."""
        value = self.attributes.get("externalId")
        return None if value is None else str(value)


@attrs.frozen(kw_only=True)
class MemberRef:
    """A reference from one resource to another, with the name to show for it."""

    id: str
    display: str | None = None


@attrs.frozen(kw_only=True)
class Event:
    """Something that happened to a tenant's members or groups.

    Events are written in the same transaction as the change they describe
    (an outbox) and kept as the tenant's audit trail. ``seq`` is assigned by
    the storage and orders them; ``id`` is unique, so a handler that is given
    an event twice (delivery is at least once) can tell.
    """

    id: str
    tenant_id: str
    #: ``member.created``, ``member.role_changed``, ``group.renamed``...
    type: str
    #: The member or group the event is about.
    subject_id: str
    #: Who made the change: ``token:<name>``, ``app`` or ``cli``.
    actor: str
    occurred: datetime
    data: Mapping[str, Any] = attrs.field(factory=dict)
    seq: int | None = None
    delivered: datetime | None = None


#: The SAML binding of the IdP's single sign-on endpoint that pbidentity uses.
SsoBinding = Literal["redirect", "post"]

#: ``pending`` waits for its test sign-in (Save & authorize), ``active``
#: serves sign-ins, ``previous`` is the one it replaced, kept for rollback.
SamlConnectionState = Literal["pending", "active", "previous"]


@attrs.frozen(kw_only=True)
class IdentityProvider:
    """What pbidentity knows of a tenant's SAML identity provider.

    Read from the IdP's metadata (or typed by hand). ``certificates`` are
    PEM-encoded signing certificates; several of them mean a rollover, and a
    response signed by any of them is accepted.
    """

    entity_id: str
    sso_url: str
    sso_binding: SsoBinding = "redirect"
    certificates: tuple[str, ...] = ()
    #: The NameID formats the IdP advertises, in its order.
    nameid_formats: tuple[str, ...] = ()
    #: The attribute names the IdP advertises (few IdPs list any).
    attributes: tuple[str, ...] = ()
    #: The metadata's ``validUntil``, if any.
    valid_until: datetime | None = None
    #: The metadata's ``cacheDuration`` (an ISO 8601 duration), if any.
    cache_duration: str | None = None


@attrs.frozen(kw_only=True)
class SamlConnection:
    """A tenant's SAML sign-in configuration, in one of its three states.

    A tenant has at most one connection per state. Saving a configuration
    creates a ``pending`` one; a successful test sign-in with it makes it
    ``active`` and the active one ``previous`` (kept for rollback).
    """

    id: str
    tenant_id: str
    state: SamlConnectionState
    idp: IdentityProvider
    #: pbidentity's attribute names (``email``, ``firstName``, ``lastName``)
    #: to the attribute names the IdP sends.
    attribute_mapping: Mapping[str, str] = attrs.field(factory=dict)
    #: Whether sign-ins the IdP starts (an Okta tile) are accepted.
    allow_idp_initiated: bool = False
    #: What a sign-in of a person who is no member does: ``refuse`` or
    #: ``create`` the member just in time.
    unknown_members: Literal["refuse", "create"] = "refuse"
    #: Where the configuration came from: the metadata URL, ``upload`` or ``manual``.
    source: str = "manual"
    #: The metadata document as imported, if it came from one.
    metadata_xml: str | None = attrs.field(default=None, repr=False)
    created: datetime
    #: When it became active (``None`` while pending).
    activated: datetime | None = None
    #: The outcome of the last test sign-in of a pending connection: the
    #: findings of the validation report, as plain data, for the admin page.
    last_attempt: Mapping[str, Any] | None = attrs.field(default=None, repr=False)
    version: int = 1


@attrs.frozen(kw_only=True)
class SamlRequest:
    """An AuthnRequest pbidentity sent and the response it waits for.

    Its id must come back as the response's ``InResponseTo``, once: the
    storage hands it out a single time (:meth:`take_saml_request`), so a
    response cannot be replayed against the same request. ``purpose`` tells
    a member's sign-in from the admin's test sign-in of a pending connection
    (Save & authorize), which is bound to that connection.
    """

    id: str
    tenant_id: str
    connection_id: str
    purpose: Literal["sign_in", "authorize"]
    #: Where to send the member after signing in (a path of the host app).
    relay_state: str | None = None
    created: datetime
    expires: datetime


@attrs.frozen(kw_only=True)
class SetupLink:
    """A set-up link the host app handed to a customer's IT admin (the portal's way in).

    The link's token is signed, never stored; this record is what makes it
    revocable and single-use: it opens once (``opened`` is then set), and
    not at all once ``revoked`` or past ``expires``.
    """

    id: str
    tenant_id: str
    #: The portal sections it opens (``sso``, ``scim``, ``members``).
    sections: tuple[str, ...]
    #: Who issued it, as the host app named them.
    created_by: str
    created: datetime
    expires: datetime
    opened: datetime | None = None
    revoked: datetime | None = None
