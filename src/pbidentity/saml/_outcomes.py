"""What the SAML service hands back: saved configurations and sign-in outcomes.

Values only, shared by the configuration, sign-in and HTTP parts of
:class:`~pbidentity.saml.SamlService`; :class:`Refused` is the internal
signal of a failed sign-in check, which the sign-in part turns into a
:class:`SignInFailure`.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import Literal

import attrs

from pbidentity.domain import Member
from pbidentity.domain import SamlConnection
from pbidentity.domain import Tenant
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.saml._types import Finding
from pbidentity.saml._types import Report

__all__ = [
    "Authorized",
    "Refused",
    "ResultHandler",
    "SamlConnections",
    "SaveResult",
    "SignIn",
    "SignInFailure",
    "SignInOutcome",
    "error_finding",
]


@attrs.frozen(kw_only=True)
class SamlConnections:
    """A tenant's connections by state (each may be missing)."""

    active: SamlConnection | None = None
    pending: SamlConnection | None = None
    previous: SamlConnection | None = None


@attrs.frozen(kw_only=True)
class SaveResult:
    """The outcome of saving a configuration: the report, and the pending connection if saved."""

    report: Report
    connection: SamlConnection | None = None

    @property
    def saved(self) -> bool:
        """Whether a pending connection was created (no error in the report)."""
        return self.connection is not None


@attrs.frozen(kw_only=True)
class SignIn:
    """A member signed in: the host app starts its session for ``member``."""

    tenant: Tenant
    member: Member
    #: Whether the member was created just now (the tenant creates unknown members).
    created: bool
    name_id: str
    session_index: str | None
    attributes: Mapping[str, tuple[str, ...]]
    #: The path of the app the member wanted (checked to be a local path).
    relay_state: str | None
    #: Whether the IdP started it (an Okta tile) rather than this app.
    idp_initiated: bool
    #: What was checked and decided, one sentence each.
    trail: tuple[str, ...]
    #: The AuthnRequest this answers (``None`` when the IdP started it).
    #: Through :meth:`SamlService.handle` a sign-in that answers a request
    #: reaches ``on_result`` only in the browser that started it.
    request_id: str | None = None


@attrs.frozen(kw_only=True)
class Authorized:
    """The admin's test sign-in succeeded: the pending configuration is now active."""

    tenant: Tenant
    connection: SamlConnection
    previous: SamlConnection | None
    #: What the test sign-in found (warnings and information; no errors).
    report: Report
    name_id: str
    #: The member the admin's identity matched, if any.
    member: Member | None
    relay_state: str | None
    #: The test sign-in's AuthnRequest (see :attr:`SignIn.request_id`).
    request_id: str | None = None


@attrs.frozen(kw_only=True)
class SignInFailure:
    """A sign-in or test sign-in was refused; nothing changed.

    ``report`` says which check failed, what was received and what was
    expected, in words an admin can act on. A member sees only
    :attr:`message`; the details go to the admin page and the log.
    """

    tenant: Tenant | None
    purpose: Literal["sign_in", "authorize"]
    report: Report
    relay_state: str | None = None
    #: The HTTP status the default page answers with.
    status: int = 403

    @property
    def finding(self) -> Finding:
        """The first error: the reason."""
        return self.report.errors[0]

    @property
    def message(self) -> str:
        """The reason in one sentence."""
        return self.finding.message


#: What a POST to the ACS gives the host app.
SignInOutcome = SignIn | Authorized | SignInFailure

#: The host app's answer to a sign-in outcome: it starts the session (or
#: shows the failure) and returns the response for the browser.
ResultHandler = Callable[[Request, SignInOutcome], Response]


class Refused(Exception):
    """A sign-in check failed; carries the finding (internal control flow)."""

    def __init__(self, finding: Finding, *, status: int = 403) -> None:
        super().__init__(finding.message)
        self.finding = finding
        self.status = status


def error_finding(code: str, message: str, *, where: str = "", suggestion: str = "") -> Finding:
    """An error finding: what a refusal tells the admin."""
    return Finding(code=code, severity="error", message=message, where=where, suggestion=suggestion)
