"""Who is signed in, who administers a workspace, and the CSRF check of every form.

A session is a small dict kept in a signed cookie: ``{"owner": slug}`` for
the workspace owner who came in through ``/bootstrap``, or ``{"member_id":
..., "workspace": slug}`` for a member who signed in with SSO, and in both a
``csrf`` token that every POST form sends back. Only ids are kept: the
member's role is read again on every request, so a role the IdP lowers
takes effect at once.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature
from itsdangerous import URLSafeTimedSerializer

from examples.common.context import AppContext
from pbidentity.domain import Member
from pbidentity.exceptions import NotFoundError

__all__ = [
    "ADMIN_ROLE",
    "Forbidden",
    "SignInRequired",
    "SignedCookie",
    "Viewer",
    "check_csrf",
    "current_viewer",
    "member_session",
    "owner_session",
    "require_admin",
]

#: The role that may open the workspace's settings pages.
ADMIN_ROLE = "admin"

#: How long a session lasts; a member signs in with SSO again after that.
SESSION_SECONDS = 12 * 60 * 60


class SignInRequired(Exception):
    """The page needs an admin of the workspace: the app answers 303 ``/login``."""


class Forbidden(Exception):
    """Signed in, but not allowed here (another workspace, a stale form): the app answers 403."""


@dataclass(frozen=True)
class Viewer:
    """The person behind the session, as the pages show them."""

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


def current_viewer(ctx: AppContext, session: Mapping[str, Any]) -> Viewer | None:
    """Who the session belongs to; ``None`` without one, or when the member is gone or inactive."""
    csrf = str(session.get("csrf") or "")
    owner = session.get("owner")
    if owner:
        return Viewer(workspace=owner, name="Owner", role="owner", is_admin=True, csrf=csrf)
    member_id, workspace = session.get("member_id"), session.get("workspace")
    if not member_id or not workspace:
        return None
    try:
        member = ctx.identity.members.get(workspace, member_id)
    except NotFoundError:
        return None
    if not member.active:
        # Deactivation in the IdP ends the session at the next request.
        return None
    return Viewer(
        workspace=workspace,
        name=member.display_name or member.user_name,
        role=member.role or "none",
        is_admin=member.role == ADMIN_ROLE,
        csrf=csrf,
    )


def require_admin(ctx: AppContext, session: Mapping[str, Any], workspace: str) -> Viewer:
    """The viewer if they administer ``workspace``; raises SignInRequired or Forbidden."""
    viewer = current_viewer(ctx, session)
    if viewer is None:
        raise SignInRequired
    if viewer.workspace != workspace:
        raise Forbidden(
            f"You are signed in to workspace {viewer.workspace!r}; sign out to open {workspace!r}."
        )
    if not viewer.is_admin:
        raise SignInRequired
    return viewer


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
