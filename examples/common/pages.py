"""What each page shows, as plain values: the templates format, they never query.

Each ``*_page`` function reads what it needs through the pbidentity services
and returns a frozen dataclass; both apps hand it to the same template.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from examples.common.access import Forbidden
from examples.common.context import AppContext
from pbidentity.domain import ApiToken
from pbidentity.domain import Member
from pbidentity.domain import SamlConnection
from pbidentity.exceptions import InputError
from pbidentity.exceptions import NotFoundError
from pbidentity.exceptions import StorageUnavailableError
from pbidentity.saml import EMAIL_NAMEID
from pbidentity.saml import Finding
from pbidentity.saml import Report

__all__ = [
    "ApiPage",
    "ErrorPage",
    "FindingView",
    "LoginPage",
    "MemberPage",
    "MembersPage",
    "OwnerSignInPage",
    "ScimPage",
    "SsoPage",
    "api_page",
    "error_page",
    "findings",
    "member_page",
    "members_page",
    "scim_page",
    "sso_page",
]


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


@dataclass(frozen=True)
class LoginPage:
    """The sign-in page, with the reason when a sign-in was refused."""

    nav: str = "login"
    error: str | None = None
    suggestion: str | None = None
    workspace: str = ""


@dataclass(frozen=True)
class OwnerSignInPage:
    """The owner link's page: a button that POSTs the token (opening the link spends nothing)."""

    token: str
    workspace: str
    minutes: int
    nav: str = "login"


@dataclass(frozen=True)
class ErrorPage:
    """A refusal (403) or a missing page (404), in a sentence."""

    title: str
    message: str
    nav: str = ""


def error_page(error: Exception) -> tuple[ErrorPage, int]:
    """The page and status for an error a route let through (a refusal, a missing workspace...)."""
    if isinstance(error, Forbidden):
        return ErrorPage("Not allowed", str(error)), 403
    if isinstance(error, NotFoundError):
        return ErrorPage("Not found", str(error)), 404
    if isinstance(error, InputError):
        return ErrorPage("Not possible", str(error)), 400
    if isinstance(error, StorageUnavailableError):
        return ErrorPage("Unavailable", "The database cannot be reached; try again soon."), 503
    # The other refusals of pbidentity (the last admin, a taken name) are conflicts.
    return ErrorPage("Not possible", str(error)), 409


# -- SSO ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FindingView:
    """One finding of a validation report, ready to list."""

    code: str
    severity: str
    message: str
    where: str
    suggestion: str


def findings(source: Report | Mapping[str, Any] | None) -> tuple[FindingView, ...]:
    """A report's findings, errors first; ``source`` may be a Report or its ``to_dict()``."""
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
    return getattr(item, name) if isinstance(item, Finding) else item.get(name)


@dataclass(frozen=True)
class ConnectionView:
    """One SAML configuration (active, pending or previous), as the status box shows it."""

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


@dataclass(frozen=True)
class SpValues:
    """What the admin pastes into the IdP, each with a copy button."""

    acs_url: str
    audience_uri: str
    nameid_format: str
    nameid_format_urn: str
    attribute_statements: tuple[tuple[str, str], ...]
    metadata_url: str


@dataclass(frozen=True)
class SsoPage:
    """Settings, SSO: the SP values, the state of the configurations, the forms."""

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
    nav: str = "sso"

    @property
    def failure(self) -> str:
        """The reason of the failed test sign-in, in one sentence."""
        errors = [f for f in self.last_attempt if f.severity == "error"]
        return errors[0].message if errors else ""


def sso_page(
    ctx: AppContext,
    workspace: str,
    *,
    report: Report | None = None,
    authorized: bool = False,
    metadata_url: str = "",
) -> SsoPage:
    """The SSO page's values; ``report`` is the outcome of the metadata form, if submitted."""
    sp = ctx.identity.saml.service_provider(workspace)
    connections = ctx.identity.saml.connections(workspace)
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
        active=_connection(active, ctx.identity.saml.clock()),
        pending=_connection(pending, ctx.identity.saml.clock()),
        can_roll_back=connections.previous is not None,
        last_attempt=last_attempt,
        report=None if report is None else findings(report),
        authorized=authorized and active is not None,
        authorized_warnings=warnings if authorized else (),
        allow_idp_initiated=bool(options and options.allow_idp_initiated),
        unknown_members=options.unknown_members if options else "refuse",
        metadata_url=metadata_url,
    )


# -- SCIM and the API tokens ---------------------------------------------------------


@dataclass(frozen=True)
class ScimPage:
    """Settings, SCIM provisioning: the switch and what the IdP's provisioning setup needs."""

    workspace: str
    enabled: bool
    base_url: str
    role_urn: str
    roles: tuple[str, ...]
    nav: str = "scim"


def scim_page(ctx: AppContext, workspace: str) -> ScimPage:
    """The SCIM page's values."""
    tenant = ctx.identity.admin.get_tenant(workspace)
    return ScimPage(
        workspace=workspace,
        enabled=tenant.scim_enabled,
        base_url=ctx.site.scim_base_url,
        role_urn=ctx.identity.scim.config.role_urn,
        roles=ctx.identity.roles.names,
    )


@dataclass(frozen=True)
class TokenRow:
    """One API token; its secret is never shown again."""

    name: str
    created: str
    last_used: str
    active: bool


@dataclass(frozen=True)
class ApiPage:
    """Integrations, Public API: the tokens, and a new token's secret once."""

    workspace: str
    tokens: tuple[TokenRow, ...]
    new_secret: str | None = None
    new_name: str | None = None
    error: str | None = None
    nav: str = "api"


def _token_row(token: ApiToken) -> TokenRow:
    return TokenRow(
        name=token.name,
        created=_when(token.created),
        last_used=_when(token.last_used),
        active=token.is_active,
    )


def api_page(
    ctx: AppContext,
    workspace: str,
    *,
    new_secret: str | None = None,
    new_name: str | None = None,
    error: str | None = None,
) -> ApiPage:
    """The API page's values; ``new_secret`` only in the answer to the creation."""
    return ApiPage(
        workspace=workspace,
        tokens=tuple(_token_row(t) for t in ctx.identity.admin.list_tokens(workspace)),
        new_secret=new_secret,
        new_name=new_name,
        error=error,
    )


# -- Members -------------------------------------------------------------------------


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class MembersPage:
    """Members: everyone in the workspace, and who manages them."""

    workspace: str
    members: tuple[MemberRow, ...]
    nav: str = "members"


def members_page(ctx: AppContext, workspace: str) -> MembersPage:
    """The members page's values, by userName."""
    rows = sorted(
        (_member_row(m) for m in ctx.identity.members.all(workspace)), key=lambda r: r.user_name
    )
    return MembersPage(workspace=workspace, members=tuple(rows))


@dataclass(frozen=True)
class MemberPage:
    """One member and the edit form; ``refused`` is why the last edit was refused."""

    workspace: str
    member: MemberRow
    roles: tuple[str, ...]
    refused: str | None = None
    nav: str = "members"


def member_page(
    ctx: AppContext, workspace: str, member_id: str, *, refused: str | None = None
) -> MemberPage:
    """The member page's values."""
    member = ctx.identity.members.get(workspace, member_id)
    return MemberPage(
        workspace=workspace,
        member=_member_row(member),
        roles=ctx.identity.roles.names,
        refused=refused,
    )
