"""Who is signed in, who administers a workspace, the CSRF check, and the portal's hook.

A session is a small dict kept in a signed cookie: ``{"owner": slug}`` for
the workspace owner who came in through ``/bootstrap``, or ``{"member_id":
..., "workspace": slug}`` for a member who signed in with SSO, and in both a
``csrf`` token that every POST form of the host's own pages sends back. Only
ids are kept: the member's role is read again on every request, so a role
the IdP lowers takes effect at once, in the portal too (:func:`portal_access`
is the portal's ``authorize`` hook, given the session).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature
from itsdangerous import URLSafeTimedSerializer

from pbidentity import PbIdentity
from pbidentity.domain import Member
from pbidentity.exceptions import NotFoundError
from pbidentity.exceptions import PbIdentityError
from pbidentity.portal import PortalAccess

__all__ = [
    "ADMIN_ROLE",
    "ErrorPage",
    "Forbidden",
    "SignInRequired",
    "SignedCookie",
    "Viewer",
    "check_csrf",
    "current_viewer",
    "error_page",
    "member_session",
    "owner_session",
    "portal_access",
    "require_admin",
]

#: The role that may open the set-up portal.
ADMIN_ROLE = "admin"

#: How long a session lasts; a member signs in with SSO again after that.
SESSION_SECONDS = 12 * 60 * 60


class SignInRequired(Exception):
    """The page needs an admin of the workspace: the app answers 303 ``/login``."""


class Forbidden(Exception):
    """Signed in, but not allowed here (another workspace, a stale form): the app answers 403."""


@dataclass(frozen=True)
class ErrorPage:
    """What a refused request shows."""

    title: str
    message: str


def error_page(error: Exception) -> tuple[ErrorPage, int]:
    """The page and status for an error a route let through (a refusal, a missing workspace)."""
    if isinstance(error, Forbidden):
        return ErrorPage("Not allowed", str(error)), 403
    if isinstance(error, NotFoundError):
        return ErrorPage("Not found", str(error)), 404
    if isinstance(error, PbIdentityError):
        return ErrorPage("Not possible", str(error)), 409
    raise error


@dataclass(frozen=True)
class Viewer:
    """The person behind the session, as the pages show them."""

    #: ``owner`` for the bootstrap session, else the member's id.
    id: str
    workspace: str
    name: str
    #: ``owner`` for the bootstrap session, else the member's decided role.
    role: str
    is_admin: bool
    csrf: str


def _new_csrf() -> str:
    return secrets.token_urlsafe(32)


def owner_session(workspace: str) -> dict[str, str]:
    """A fresh session for the workspace owner (a new CSRF token too)."""
    return {"owner": workspace, "csrf": _new_csrf()}


def member_session(member: Member, workspace: str) -> dict[str, str]:
    """A fresh session for a member who just signed in with SSO."""
    return {"member_id": member.id, "workspace": workspace, "csrf": _new_csrf()}


def current_viewer(identity: PbIdentity, session: Mapping[str, Any]) -> Viewer | None:
    """Who the session belongs to; ``None`` without one, or when the member is gone or inactive."""
    csrf = str(session.get("csrf") or "")
    owner = session.get("owner")
    if owner:
        return Viewer(
            id="owner", workspace=owner, name="Owner", role="owner", is_admin=True, csrf=csrf
        )
    member_id, workspace = session.get("member_id"), session.get("workspace")
    if not member_id or not workspace:
        return None
    try:
        member = identity.members.get(workspace, member_id)
    except NotFoundError:
        return None
    if not member.active:
        # Deactivation in the IdP ends the session at the next request.
        return None
    return Viewer(
        id=member.id,
        workspace=workspace,
        name=member.display_name or member.user_name,
        role=member.role or "none",
        is_admin=member.role == ADMIN_ROLE,
        csrf=csrf,
    )


def require_admin(identity: PbIdentity, session: Mapping[str, Any]) -> Viewer:
    """The signed-in admin; raises SignInRequired for anyone else."""
    viewer = current_viewer(identity, session)
    if viewer is None or not viewer.is_admin:
        raise SignInRequired
    return viewer


def portal_access(identity: PbIdentity, session: Mapping[str, Any]) -> PortalAccess | None:
    """The portal's ``authorize`` hook: the signed-in admin, for their own workspace only.

    A member who is no admin (or no longer one: the role is read again on
    every request) gets ``None``, and the portal sends them to ``/login``.
    """
    viewer = current_viewer(identity, session)
    if viewer is None or not viewer.is_admin:
        return None
    return PortalAccess(admin_id=viewer.id, admin_name=viewer.name, workspace=viewer.workspace)


def check_csrf(session: Mapping[str, Any], submitted: str | None) -> None:
    """Raise Forbidden unless the form's ``csrf`` field is the session's token."""
    expected = str(session.get("csrf") or "")
    if not expected or not hmac.compare_digest(expected.encode(), (submitted or "").encode()):
        raise Forbidden(
            "This form was not sent from this app's page, or the page is out of date. "
            "Reload the page and try again."
        )


class SignedCookie:
    """The session in a signed cookie: readable by its holder, not forgeable.

    Signing (itsdangerous) is enough because the session holds ids, never
    secrets. ``header`` gives a whole ``Set-Cookie`` value, so that a
    response built outside the framework (the ACS outcome) can start a
    session too.
    """

    def __init__(self, secret_key: str, *, name: str = "session", secure: bool = False) -> None:
        self.name = name
        self._serializer = URLSafeTimedSerializer(secret_key, salt="session")
        # Lax: sent on top-level navigation (the redirect after the IdP's
        # POST), never on another site's forms or fetches.
        self._attributes = "; Path=/; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")

    def load(self, value: str | None) -> dict[str, str]:
        """The session in a cookie value; empty if missing, tampered with or expired."""
        if not value:
            return {}
        try:
            data = self._serializer.loads(value, max_age=SESSION_SECONDS)
        except BadSignature:
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(key): str(item) for key, item in data.items()}

    def header(self, session: Mapping[str, str]) -> str:
        """The ``Set-Cookie`` value that stores ``session``."""
        value = self._serializer.dumps(dict(session))
        return f"{self.name}={value}; Max-Age={SESSION_SECONDS}{self._attributes}"

    def clear_header(self) -> str:
        """The ``Set-Cookie`` value that ends the session."""
        return f"{self.name}=; Max-Age=0{self._attributes}"
