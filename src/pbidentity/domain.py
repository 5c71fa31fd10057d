"""The domain values pbidentity works with: tenants, tokens, members and groups.

They are frozen attrs classes: the storage layer stores and returns them, the
policy layer decides on them and the SCIM layer renders them. They never hold a
database row, and no pydantic model is part of their state.

A member's SCIM profile (everything the IdP may send for a User, core and
enterprise extension alike) is kept as one canonical SCIM document in
``Member.attributes``; the values pbidentity itself reasons about (userName,
externalId, active, the role) are read from it or kept beside it, so that the
document and the decisions never disagree. For the host app, ``Member.profile``
is the same document as a typed scim2-models ``User``, built on first use and
kept with the value (:mod:`pbidentity.models`); events carry the member or
group a change left (``Event.member``, ``Event.profile``, ``Event.group``).
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal

import attrs

if TYPE_CHECKING:
    from pbidentity.models import GroupProfile
    from pbidentity.models import MemberProfile

__all__ = [
    "DEFAULT_ROLE_URN",
    "ApiToken",
    "Event",
    "Group",
    "IdentityProvider",
    "LinkImport",
    "Member",
    "MemberRef",
    "RoleDecision",
    "RoleSource",
    "SamlConnection",
    "SamlConnectionState",
    "SamlRequest",
    "SamlRoles",
    "ScimActivity",
    "SetupLink",
    "Tenant",
    "fold",
    "group_snapshot",
    "member_snapshot",
]

#: The URN of the app's role extension (the SCIM schema of the ``role``
#: attribute) unless the host app chooses another (``ScimConfig.role_urn``).
DEFAULT_ROLE_URN = "urn:ietf:params:scim:schemas:extension:pbidentity:2.0:User"

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

    :attr:`profile` is the whole document as a typed scim2-models ``User``
    (:class:`pbidentity.models.MemberProfile`), validated on first use and
    kept with the value.
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
    #: The URN :attr:`profile` puts the role extension under: the app's own
    #: on the members :class:`~pbidentity.members.Members` hands out. Not
    #: stored, and not part of the member's equality.
    role_urn: str = attrs.field(default=DEFAULT_ROLE_URN, eq=False, repr=False)

    if TYPE_CHECKING:

        @property
        def profile(self) -> MemberProfile:
            """The member's whole SCIM profile, typed (see the runtime definition)."""

    else:
        # Not annotated at run time: attrs adds a cached property's return
        # annotation to the class, and cattrs would then have to resolve a
        # name this module does not import (it would import pydantic).
        @functools.cached_property
        def profile(self):
            """The member's whole SCIM profile, typed: core User, Enterprise User, role extension.

            The same document the SCIM endpoint serves for the member
            (without its groups and ``meta.location``): a
            :class:`pbidentity.models.MemberProfile`. Validated the first time
            it is read, then kept: the member is immutable, so the profile
            cannot go stale.
            """
            # Imported here: `import pbidentity` stays free of pydantic.
            from pbidentity.models import member_profile

            return member_profile(self)

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
        """Whether the member may use the app; SCIM deactivation clears it.

        A member without ``active`` (or with ``null``, which SCIM treats as
        unassigned) is active: the storage counts and lists it as such.
        """
        value = self.attributes.get("active")
        return True if value is None else bool(value)

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
    #: The URN :attr:`profile` puts the role extension under (see
    #: :attr:`Member.role_urn`): the app's own on the events the
    #: :class:`~pbidentity.events.EventDispatcher` hands out.
    role_urn: str = attrs.field(default=DEFAULT_ROLE_URN, eq=False, repr=False)

    @functools.cached_property
    def member(self) -> Member | None:
        """The member as it was right after the change, on the events that carry it.

        ``member.created``, ``member.linked``, ``member.updated``,
        ``member.deactivated`` and ``member.reactivated`` carry the member
        as the change left it; ``member.deleted`` as it was before it went.
        Other events (and events recorded before members were carried) give
        ``None``.
        """
        snapshot = self.data.get("member")
        if snapshot is None:
            return None
        return _member_from_snapshot(self.tenant_id, snapshot, self.role_urn)

    @property
    def profile(self) -> MemberProfile | None:
        """:attr:`member`'s whole profile, typed (see :attr:`Member.profile`), if it carries one."""
        member = self.member
        return None if member is None else member.profile

    if TYPE_CHECKING:

        @property
        def group(self) -> GroupProfile | None:
            """The group as the change left it, typed (see the runtime definition)."""

    else:
        # Not annotated at run time, as Member.profile.
        @functools.cached_property
        def group(self):
            """The group as the change left it, on the ``group.*`` events.

            A :class:`pbidentity.models.GroupProfile`, typed. Its ``members``
            are listed on ``group.created`` and ``group.deleted`` (their ids;
            ``display`` is not recorded) and ``None`` on the others, whose
            ``added`` and ``removed`` say what changed.
            """
            snapshot = self.data.get("group")
            if snapshot is None:
                return None
            # Imported here: `import pbidentity` stays free of pydantic.
            from pbidentity.models import group_profile

            group = _group_from_snapshot(self.tenant_id, snapshot)
            ids = self.data.get("members")
            members = None if ids is None else [MemberRef(id=str(i)) for i in ids]
            return group_profile(group, members)


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
class SamlRoles:
    """Whether a SAML sign-in gives the member a role, and from which attributes.

    For workspaces without SCIM provisioning, which before it gave members a
    default role through an attribute statement of the IdP's SAML app (Okta's
    ``role``). The values go through the workspace's role policy, as SCIM's
    do: the role attribute as the member's own value, the group names through
    its group mappings by name. Once SCIM provisioning is on for the
    workspace, SCIM sets roles and sign-ins leave them alone.
    """

    #: Off (the default): sign-ins leave members' roles as they are.
    enabled: bool = False
    #: The attribute holding the role's name; its usual aliases (Entra's
    #: role claim URI, ``roles``) are read when it is missing.
    attribute: str = "role"
    #: The attribute holding the member's group names (Okta's group attribute
    #: statement, Entra's group claim), mapped by the role policy's group
    #: mappings by name; ``None``: groups are not read.
    groups_attribute: str | None = None


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
    #: Whether and how a sign-in gives the member a role (workspaces without SCIM).
    roles: SamlRoles = attrs.field(factory=SamlRoles)
    #: Whether AuthnRequests are signed with the SP's signing key (the SP
    #: metadata then says ``AuthnRequestsSigned="true"``).
    sign_requests: bool = False
    #: ``off``: an encrypted assertion is refused. ``accept``: the SP's
    #: encryption certificate is published and encrypted assertions are
    #: decrypted; plaintext ones are still accepted. ``require``: only
    #: encrypted assertions are accepted.
    assertion_encryption: Literal["off", "accept", "require"] = "off"
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


def member_snapshot(member: Member) -> dict[str, Any]:
    """A member as JSON data, for the events that carry it (:attr:`Event.member`)."""
    snapshot: dict[str, Any] = {
        "id": member.id,
        "attributes": dict(member.attributes),
        "version": member.version,
        "created": member.created.isoformat(),
        "lastModified": member.last_modified.isoformat(),
        "scimManaged": member.scim_managed,
    }
    for key, value in (
        ("roleAttribute", member.role_attribute),
        ("role", member.role),
        ("roleSource", member.role_source),
        ("roleRule", member.role_rule),
    ):
        if value is not None:
            snapshot[key] = value
    return snapshot


def group_snapshot(group: Group) -> dict[str, Any]:
    """A group (without its members) as JSON data, for the events that carry it."""
    return {
        "id": group.id,
        "attributes": dict(group.attributes),
        "version": group.version,
        "created": group.created.isoformat(),
        "lastModified": group.last_modified.isoformat(),
    }


def _member_from_snapshot(tenant_id: str, snapshot: Mapping[str, Any], role_urn: str) -> Member:
    return Member(
        tenant_id=tenant_id,
        id=snapshot["id"],
        attributes=snapshot["attributes"],
        role_attribute=snapshot.get("roleAttribute"),
        role=snapshot.get("role"),
        role_source=snapshot.get("roleSource"),
        role_rule=snapshot.get("roleRule"),
        scim_managed=snapshot["scimManaged"],
        version=snapshot["version"],
        created=datetime.fromisoformat(snapshot["created"]),
        last_modified=datetime.fromisoformat(snapshot["lastModified"]),
        role_urn=role_urn,
    )


def _group_from_snapshot(tenant_id: str, snapshot: Mapping[str, Any]) -> Group:
    return Group(
        tenant_id=tenant_id,
        id=snapshot["id"],
        attributes=snapshot["attributes"],
        version=snapshot["version"],
        created=datetime.fromisoformat(snapshot["created"]),
        last_modified=datetime.fromisoformat(snapshot["lastModified"]),
    )


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


@attrs.frozen(kw_only=True)
class LinkImport:
    """An IdP export's link plan, kept until it is applied batch by batch (the portal's import).

    The plan's steps are stored beside it in numbered chunks of three lists:
    ``changes`` (the creates, links and reactivations, applied in order),
    ``conflicts`` and ``unchanged``. ``applied`` counts the change chunks
    done; each one is claimed, applied and recorded in one transaction, so
    a chunk is never applied twice. The record and its chunks go when it
    ``expires``.
    """

    id: str
    tenant_id: str
    #: The uploaded file's name, as its browser sent it.
    source: str
    #: Who uploaded it (the portal's actor, e.g. ``portal:user-1``).
    created_by: str
    created: datetime
    expires: datetime
    #: Steps per action of the plan: create, link, reactivate, unchanged, conflict.
    counts: Mapping[str, int]
    #: Chunks per list (changes, conflicts, unchanged), and ``size``: steps per chunk.
    chunks: Mapping[str, int]
    #: Change chunks applied so far.
    applied: int = 0
    #: What applying did so far: created, linked, reactivated, unchanged, skipped.
    result: Mapping[str, int] = attrs.field(factory=dict)
    #: When someone asked to apply it (batches then follow until it is done).
    started: datetime | None = None
    #: When its last change chunk was applied.
    finished: datetime | None = None
    #: False while its chunks are being stored (a few per transaction): it is
    #: then neither shown nor applied.
    complete: bool = True


@attrs.frozen(kw_only=True)
class ScimActivity:
    """One SCIM request a workspace's identity provider sent, as its activity page shows it.

    What an IT admin needs to answer "why did the push fail?": when, which
    token, what was asked, the answer's status and the error ``detail`` the
    identity provider was sent. Never a secret: no header, no password, and
    no body unless the host app keeps them (then redacted and bounded, see
    :class:`~pbidentity.scim.ActivityConfig`).
    """

    tenant_id: str
    #: The request id, also sent to the client as ``X-Request-Id``.
    id: str
    #: When the request arrived.
    at: datetime
    #: The name of the API token that authenticated it (or was refused:
    #: revoked, or its workspace's SCIM switched off); ``None`` without one.
    token_name: str | None
    method: str
    #: The path under the SCIM base URL with the query string, bounded.
    path: str
    status: int
    #: The RFC 7644 ``scimType`` of an error answer.
    scim_type: str | None = None
    #: The ``detail`` of an error answer, as the identity provider got it.
    detail: str | None = None
    #: Server time spent on the request, in milliseconds.
    duration_ms: float = 0.0
    #: The User or Group the request was about (created, read or changed).
    resource_id: str | None = None
    #: The request and response bodies, redacted and bounded, only when the
    #: host app keeps them (``ActivityConfig(keep_bodies=True)``).
    request_body: str | None = None
    response_body: str | None = None

    @property
    def failed(self) -> bool:
        """Whether the answer was an error (status 400 or above)."""
        return self.status >= 400
