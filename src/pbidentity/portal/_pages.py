"""What each portal page shows, as plain values: the templates format, they never query.

Each ``*_page`` function reads what it needs through the pbidentity services
of one :class:`~pbidentity.PbIdentity` and returns a frozen value that one
template renders. Nothing here knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any

import attrs

from pbidentity._lifecycle import tenant_by_slug
from pbidentity.domain import ApiToken
from pbidentity.domain import Member
from pbidentity.domain import SamlConnection
from pbidentity.domain import fold
from pbidentity.exceptions import ManagedMemberError
from pbidentity.members import IDP_OWNED
from pbidentity.policy import TenantPolicy

if TYPE_CHECKING:
    from pbidentity._front import PbIdentity
    from pbidentity.saml import Finding
    from pbidentity.saml import Report

__all__ = [
    "AttemptView",
    "ConnectionView",
    "FindingView",
    "MemberPage",
    "MemberRow",
    "MembersPage",
    "ScimPage",
    "SpValues",
    "SsoPage",
    "TokenRow",
    "findings",
    "member_page",
    "members_page",
    "scim_page",
    "sso_page",
]

#: Members shown per page of the members list.
MEMBERS_PER_PAGE = 50
#: The longest search text accepted (a name or an address).
MAX_SEARCH = 200


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


# -- SSO ---------------------------------------------------------------------------


@attrs.frozen
class FindingView:
    """One finding of a validation report, ready to list."""

    code: str
    severity: str
    message: str
    where: str
    suggestion: str


def findings(source: Report | Mapping[str, Any] | None) -> tuple[FindingView, ...]:
    """A report's findings, errors first; ``source`` may be a Report or its ``to_dict()``."""
    from pbidentity.saml import Report

    if source is None:
        return ()
    items: Iterable[Finding | Mapping[str, Any]] = (
        source.findings if isinstance(source, Report) else source.get("findings", ())
    )
    return tuple(
        FindingView(
            code=str(_field(item, "code")),
            severity=str(_field(item, "severity")),
            message=str(_field(item, "message")),
            where=str(_field(item, "where") or ""),
            suggestion=str(_field(item, "suggestion") or ""),
        )
        for item in items
    )


def _field(item: Finding | Mapping[str, Any], name: str) -> Any:
    return item.get(name) if isinstance(item, Mapping) else getattr(item, name)


@attrs.frozen
class ConnectionView:
    """One SAML configuration (active or pending), as the status box shows it."""

    idp_entity_id: str
    sso_url: str
    since: str
    certificate_expiry: str | None
    source: str


def _connection(connection: SamlConnection | None, now: datetime) -> ConnectionView | None:
    if connection is None:
        return None
    return ConnectionView(
        idp_entity_id=connection.idp.entity_id,
        sso_url=connection.idp.sso_url,
        since=_when(connection.activated or connection.created),
        certificate_expiry=_first_expiry(connection.idp.certificates, now),
        source=connection.source,
    )


def _first_expiry(certificates: Iterable[str], now: datetime) -> str | None:
    """When the first of the IdP's signing certificates expires: sign-ins stop that day.

    An expired certificate still listed beside a valid one (a rollover the IdP
    has not cleaned up) verifies nothing, so it does not count; when every one
    has expired, the last day any was valid is shown.
    """
    from cryptography import x509

    ends = []
    for pem in certificates:
        try:
            ends.append(x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc)
        except ValueError:
            continue  # the validator reported it when the configuration was saved
    ahead = [end for end in ends if end > now]
    if ahead:
        return _when(min(ahead))
    return _when(max(ends)) if ends else None


@attrs.frozen
class SpValues:
    """What the IT admin pastes into the IdP, each with a copy button."""

    acs_url: str
    audience_uri: str
    nameid_format: str
    nameid_format_urn: str
    attribute_statements: tuple[tuple[str, str], ...]
    metadata_url: str


@attrs.frozen
class AttemptView:
    """One past test sign-in (Save & authorize): when, how it ended, and why if it failed."""

    when: str
    succeeded: bool
    #: The IdP of the configuration that was activated (successes only).
    idp: str
    #: The finding that made it fail (failures only; its message and fix may be
    #: empty for an attempt recorded before they were kept).
    finding: FindingView | None


#: How many past test sign-ins the SSO page lists.
ATTEMPTS_SHOWN = 20
_ATTEMPT_EVENTS = ("saml.activated", "saml.activation_failed")


def _attempts(identity: PbIdentity, workspace: str) -> tuple[AttemptView, ...]:
    with identity.storage.transaction(write=False) as tx:
        events = tx.list_events(
            tenant_by_slug(tx, workspace).id,
            types=_ATTEMPT_EVENTS,
            newest_first=True,
            limit=ATTEMPTS_SHOWN,
        )
    attempts = []
    for event in events:
        data = event.data
        failed = event.type == "saml.activation_failed"
        finding = None
        if failed:
            finding = FindingView(
                code=str(data.get("code") or "unknown"),
                severity="error",
                message=str(data.get("message") or ""),
                where="",
                suggestion=str(data.get("suggestion") or ""),
            )
        attempts.append(
            AttemptView(
                when=_when(event.occurred),
                succeeded=not failed,
                idp=str(data.get("idp") or ""),
                finding=finding,
            )
        )
    return tuple(attempts)


def _certificate_notices(
    connection: SamlConnection | None, now: datetime
) -> tuple[FindingView, ...]:
    """The validator's expiry findings on the configuration in use, as it would say them today."""
    from pbidentity.saml._validate import certificate_findings

    if connection is None:
        return ()
    return findings(certificate_findings(connection.idp, now=now))


@attrs.frozen
class SsoPage:
    """The SSO section: the SP values, the state of the configurations, the forms."""

    workspace: str
    sp: SpValues
    #: ``active``, ``pending``, ``failed`` (the last test sign-in failed) or ``none``.
    state: str
    active: ConnectionView | None
    pending: ConnectionView | None
    can_roll_back: bool
    #: Why the last test sign-in of the pending configuration failed.
    last_attempt: tuple[FindingView, ...]
    #: The validator's report after Check or Save; ``None`` when nothing was submitted.
    report: tuple[FindingView, ...] | None
    #: Set after a successful test sign-in (``?authorized=1``), with its warnings.
    authorized: bool
    authorized_warnings: tuple[FindingView, ...]
    allow_idp_initiated: bool
    unknown_members: str
    metadata_url: str
    #: The active configuration's certificate findings that ask for action at the IdP.
    certificate_notices: tuple[FindingView, ...] = ()
    #: The last test sign-ins (Save & authorize), newest first.
    attempts: tuple[AttemptView, ...] = ()
    section: str = "sso"

    @property
    def failure(self) -> str:
        """The reason of the failed test sign-in, in one sentence."""
        errors = [f for f in self.last_attempt if f.severity == "error"]
        return errors[0].message if errors else ""


def sso_page(
    identity: PbIdentity,
    workspace: str,
    *,
    report: Report | None = None,
    authorized: bool = False,
    metadata_url: str = "",
) -> SsoPage:
    """The SSO page's values; ``report`` is the outcome of the metadata form, if submitted."""
    from pbidentity.saml import EMAIL_NAMEID

    saml = identity.saml
    sp = saml.service_provider(workspace)
    connections = saml.connections(workspace)
    active, pending = connections.active, connections.pending
    last_attempt = findings(pending.last_attempt if pending else None)
    failed = any(f.severity == "error" for f in last_attempt)
    state = "failed" if failed else "pending" if pending else "active" if active else "none"
    # The options live on both connections; the one in use is the reference.
    options = active or pending
    warnings = tuple(
        f for f in findings(active.last_attempt if active else None) if f.severity == "warning"
    )
    return SsoPage(
        workspace=workspace,
        sp=SpValues(
            acs_url=sp.acs_url,
            audience_uri=sp.entity_id,
            nameid_format="EmailAddress" if sp.nameid_format == EMAIL_NAMEID else sp.nameid_format,
            nameid_format_urn=sp.nameid_format,
            attribute_statements=sp.attribute_statements,
            metadata_url=sp.metadata_url,
        ),
        state=state,
        active=_connection(active, saml.clock()),
        pending=_connection(pending, saml.clock()),
        can_roll_back=connections.previous is not None,
        last_attempt=last_attempt,
        report=None if report is None else findings(report),
        authorized=authorized and active is not None,
        authorized_warnings=warnings if authorized else (),
        allow_idp_initiated=bool(options and options.allow_idp_initiated),
        unknown_members=options.unknown_members if options else "refuse",
        metadata_url=metadata_url,
        certificate_notices=_certificate_notices(active, saml.clock()),
        attempts=_attempts(identity, workspace),
    )


# -- SCIM and its tokens ------------------------------------------------------------


@attrs.frozen
class TokenRow:
    """One SCIM token; its secret is never shown again."""

    name: str
    created: str
    last_used: str
    active: bool


def _token_row(token: ApiToken) -> TokenRow:
    return TokenRow(
        name=token.name,
        created=_when(token.created),
        last_used=_when(token.last_used),
        active=token.is_active,
    )


@attrs.frozen
class ScimPage:
    """The SCIM section: the switch, what the IdP's provisioning needs, the tokens."""

    workspace: str
    enabled: bool
    base_url: str
    role_urn: str
    roles: tuple[str, ...]
    tokens: tuple[TokenRow, ...]
    #: A new token's secret, in the answer to its creation only.
    new_secret: str | None = None
    new_name: str | None = None
    error: str | None = None
    section: str = "scim"


def scim_page(
    identity: PbIdentity,
    workspace: str,
    *,
    base_url: str,
    new_secret: str | None = None,
    new_name: str | None = None,
    error: str | None = None,
) -> ScimPage:
    """The SCIM page's values; ``base_url`` is the SCIM service's absolute URL."""
    tenant = identity.admin.get_tenant(workspace)
    return ScimPage(
        workspace=workspace,
        enabled=tenant.scim_enabled,
        base_url=base_url,
        role_urn=identity.scim.config.role_urn,
        roles=identity.roles.names,
        tokens=tuple(_token_row(t) for t in identity.admin.list_tokens(workspace)),
        new_secret=new_secret,
        new_name=new_name,
        error=error,
    )


# -- Members -------------------------------------------------------------------------


@attrs.frozen
class MemberRow:
    """One member as the members table and the member page show it."""

    id: str
    user_name: str
    name: str
    email: str
    given_name: str
    family_name: str
    role: str
    active: bool
    scim_managed: bool
    role_rule: str


def _member_row(member: Member) -> MemberRow:
    name = member.attributes.get("name") or {}
    return MemberRow(
        id=member.id,
        user_name=member.user_name,
        name=member.display_name or member.user_name,
        email=member.primary_email or "",
        given_name=str(name.get("givenName") or ""),
        family_name=str(name.get("familyName") or ""),
        role=member.role or "",
        active=member.active,
        scim_managed=member.scim_managed,
        role_rule=member.role_rule or "",
    )


@attrs.frozen
class MembersPage:
    """Members: one page of the workspace's members by userName, searched and filtered."""

    workspace: str
    members: tuple[MemberRow, ...]
    search: str
    #: ``""`` (everyone), ``active`` or ``deactivated``.
    status: str
    #: ``""`` (any role) or a decided role.
    role: str
    #: ``""`` (everyone), ``yes`` (SCIM-managed) or ``no`` (managed by the app).
    managed: str
    #: The roles the role filter offers.
    roles: tuple[str, ...]
    #: The cursor of the next page, ``None`` on the last one.
    next_cursor: str | None
    #: Whether this is a later page (a link back to the first is shown).
    later_page: bool
    section: str = "members"

    @property
    def filtered(self) -> bool:
        """Whether a search or a filter narrows the list."""
        return bool(self.search or self.status or self.role or self.managed)

    def query(self, **extra: str) -> dict[str, str]:
        """The page's search and filters as a link's query, with ``extra`` (the cursor)."""
        values = {"q": self.search, "status": self.status, "role": self.role}
        values["managed"] = self.managed
        return {k: v for k, v in {**values, **extra}.items() if v}


#: The longest role name the role filter accepts.
MAX_ROLE = 100


def members_page(
    identity: PbIdentity,
    workspace: str,
    *,
    search: str = "",
    status: str = "",
    role: str = "",
    managed: str = "",
    cursor: str | None = None,
) -> MembersPage:
    """One page of members matching ``search`` and the filters, by userName.

    The search is a prefix of the email, the userName, or the display, given
    or family name (see :class:`~pbidentity.storage.MemberSearch`), so that
    an index answers it. Keyset paging: a later page costs what the first
    one does, however many members the workspace has. A cursor from another
    search is refused (:class:`ValueError`) rather than silently wrong.
    """
    from pbidentity.scim import cursor as _cursor
    from pbidentity.storage import MemberSearch

    search = search.strip()[:MAX_SEARCH]
    status = status if status in ("active", "deactivated") else ""
    managed = managed if managed in ("yes", "no") else ""
    role = role.strip()[:MAX_ROLE]
    with identity.storage.transaction(write=False) as tx:
        tenant = tenant_by_slug(tx, workspace)
        bound = _cursor.fingerprint(
            tenant.id, "portal-members", fold(search), status, role, managed
        )
        after = None
        if cursor:
            try:
                (_, after, _), _ = _cursor.decode(cursor, bound)
            except _cursor.InvalidCursorException:
                after = None
            if not isinstance(after, str):
                raise ValueError("this page of members belongs to another search")
        found = tx.search_members(
            tenant.id,
            MemberSearch(
                prefix=search,
                role=role or None,
                active=None if not status else status == "active",
                scim_managed=None if not managed else managed == "yes",
                after=after,
                # One more than shown: whether it exists says if another page follows.
                limit=MEMBERS_PER_PAGE + 1,
            ),
        )
    shown = found[:MEMBERS_PER_PAGE]
    next_cursor = None
    if len(found) > MEMBERS_PER_PAGE:
        last = shown[-1]
        next_cursor = _cursor.encode(bound, (False, last.user_name, last.id), -1)
    roles = identity.roles.names
    return MembersPage(
        workspace=workspace,
        members=tuple(_member_row(m) for m in shown),
        search=search,
        status=status,
        role=role,
        managed=managed,
        roles=roles if not role or role in roles else (*roles, role),
        next_cursor=next_cursor,
        later_page=bool(cursor),
    )


@attrs.frozen
class MemberPage:
    """One member: the role decision and what went into it, why it is locked, the edit form."""

    workspace: str
    member: MemberRow
    roles: tuple[str, ...]
    #: The role decision, step by step, in sentences an admin follows.
    trail: tuple[str, ...]
    #: Why the app may not edit this member's profile, role or status (``""``: it may).
    lock_reason: str
    refused: str | None = None
    section: str = "members"


_MODES = {
    "user-personal": "the role the identity provider sends for each person, else the default role",
    "group-based": "the role mapped to the person's groups, else the default role",
    "hybrid": "the role the identity provider sends for the person, else the role mapped "
    "to their groups, else the default role",
}


def _trail(
    member: Member, policy: TenantPolicy, groups: Sequence[str], mapped: Sequence[str]
) -> tuple[str, ...]:
    roles = policy.roles
    steps = [f"The workspace's role policy is {roles.mode}: {_MODES.get(roles.mode, roles.mode)}."]
    if member.role_attribute:
        steps.append(f"The identity provider sent the role attribute {member.role_attribute!r}.")
    else:
        steps.append("The identity provider sent no role attribute.")
    if groups:
        listed = ", ".join(repr(g) for g in groups)
        steps.append(
            f"Member of {listed}"
            + (f"; mapped to a role: {', '.join(repr(g) for g in mapped)}." if mapped else ".")
        )
    else:
        steps.append("Member of no group.")
    if member.role:
        steps.append(
            f"Decided: {member.role}, by {member.role_rule or member.role_source or 'the app'}."
        )
    else:
        steps.append("No role decided yet.")
    return tuple(steps)


def member_page(
    identity: PbIdentity, workspace: str, member_id: str, *, refused: str | None = None
) -> MemberPage:
    """The member page's values."""
    member = identity.members.get(workspace, member_id)
    with identity.storage.transaction(write=False) as tx:
        tenant = tenant_by_slug(tx, workspace)
        refs = tx.member_groups(tenant.id, [member.id]).get(member.id, ())
    policy = TenantPolicy.of(tenant)
    groups = [ref.display or ref.id for ref in refs]
    mapped = [
        ref.display or ref.id
        for ref in refs
        if policy.roles.uses_groups and any(m.matches(ref) for m in policy.roles.mappings)
    ]
    try:
        identity.members.check_edit(workspace, member.id, IDP_OWNED)
        lock_reason = ""
    except ManagedMemberError as error:
        lock_reason = str(error)
    return MemberPage(
        workspace=workspace,
        member=_member_row(member),
        roles=identity.roles.names,
        trail=_trail(member, policy, groups, mapped),
        lock_reason=lock_reason,
        refused=refused,
    )
