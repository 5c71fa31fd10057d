"""What the product does with a sign-in's outcome: the decision, apart from each framework's answer.

pbidentity verifies the IdP's response and hands the app a typed outcome;
the app decides. :func:`decide` returns one of three instructions, and each
app turns it into its own response (and, for :class:`StartSession`, its
own session cookie).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from examples.common.access import member_session
from examples.common.pages import LoginPage
from pbidentity.saml import Authorized
from pbidentity.saml import SignIn
from pbidentity.saml import SignInFailure
from pbidentity.saml import SignInOutcome

__all__ = [
    "Instruction",
    "Redirect",
    "ShowSignInError",
    "StartSession",
    "decide",
    "sso_login_path",
]


def sso_login_path(workspace: str) -> str:
    """Where "Sign in with SSO" goes: pbidentity's login endpoint, back to the members page."""
    slug = quote(workspace.strip(), safe="")
    return f"/saml/{slug}/login?RelayState=/w/{slug}/members"


@dataclass(frozen=True)
class Redirect:
    """Answer 303 to ``location``; the session is left alone."""

    location: str


@dataclass(frozen=True)
class StartSession:
    """Replace the session with ``session`` (a new cookie), then answer 303 to ``location``."""

    session: dict[str, str]
    location: str


@dataclass(frozen=True)
class ShowSignInError:
    """Render the login page with the reason, with ``status``."""

    page: LoginPage
    status: int


Instruction = Redirect | StartSession | ShowSignInError


def decide(outcome: SignInOutcome) -> Instruction:
    """The instruction for one sign-in outcome (handed over at pbidentity's finish step)."""
    if isinstance(outcome, Authorized):
        # The admin's test sign-in: the admin's own session stays as it was.
        return Redirect(f"/w/{outcome.tenant.slug}/settings/sso?authorized=1")
    if isinstance(outcome, SignIn):
        slug = outcome.tenant.slug
        # A new session, never the one the browser came with: a session
        # planted before sign-in must not become signed in (session fixation).
        return StartSession(
            session=member_session(outcome.member, slug),
            location=outcome.relay_state or f"/w/{slug}/members",
        )
    if outcome.purpose == "authorize" and outcome.tenant is not None:
        # The findings are kept on the pending configuration; the page shows them.
        return Redirect(f"/w/{outcome.tenant.slug}/settings/sso?failed=1")
    return ShowSignInError(page=_refused(outcome), status=outcome.status)


def _refused(failure: SignInFailure) -> LoginPage:
    finding = failure.finding
    return LoginPage(
        error=finding.message,
        suggestion=finding.suggestion or None,
        workspace=failure.tenant.slug if failure.tenant is not None else "",
    )
