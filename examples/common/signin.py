"""What the product does with a sign-in: where it starts, and what its outcome leads to.

pbidentity verifies the IdP's response and hands the app a typed outcome;
the portal answers the test sign-ins it started itself (Save & authorize),
and the app decides the rest. :func:`decide` returns one of three
instructions, and each app turns it into its own response (and, for
:class:`StartSession`, its own session cookie).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote
from urllib.parse import urlencode

from examples.common.access import member_session
from examples.common.context import PORTAL_PREFIX
from pbidentity import http
from pbidentity.saml import Authorized
from pbidentity.saml import SignIn
from pbidentity.saml import SignInFailure
from pbidentity.saml import SignInOutcome

__all__ = [
    "Instruction",
    "LoginPage",
    "Redirect",
    "ShowSignInError",
    "StartSession",
    "decide",
    "local_path",
    "respond",
    "sso_login_path",
]


@dataclass(frozen=True)
class LoginPage:
    """The sign-in page: a workspace to sign in to, and why the last sign-in was refused."""

    error: str | None = None
    suggestion: str | None = None
    workspace: str = ""
    #: Where to go once signed in (the portal page that sent the visitor here).
    next: str = "/"


def local_path(value: str | None) -> str:
    """``value`` if it is a path of this app, else ``/``: never a way to another site."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    return value


def sso_login_path(workspace: str, next_path: str = "/") -> str:
    """Where "Sign in with SSO" goes: pbidentity's login endpoint, back to ``next_path``."""
    slug = quote(workspace.strip(), safe="")
    return f"/saml/{slug}/login?{urlencode({'RelayState': local_path(next_path)})}"


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
    """The instruction for a sign-in outcome the portal did not answer itself."""
    if isinstance(outcome, SignIn):
        # A new session, never the one the browser came with: a session
        # planted before sign-in must not become signed in (session fixation).
        return StartSession(
            session=member_session(outcome.member, outcome.tenant.slug),
            location=local_path(outcome.relay_state),
        )
    if isinstance(outcome, Authorized) or (
        outcome.purpose == "authorize" and outcome.tenant is not None
    ):
        # A test sign-in started elsewhere than the portal's page (the CLI):
        # the portal's SSO page shows its result.
        slug = quote(outcome.tenant.slug, safe="") if outcome.tenant else ""
        return Redirect(f"{PORTAL_PREFIX}/w/{slug}/sso")
    return ShowSignInError(page=_refused(outcome), status=outcome.status)


def respond(
    outcome: SignInOutcome,
    *,
    login_page: Callable[[LoginPage], str],
    start_session: Callable[[dict[str, str]], Iterable[tuple[str, str]]],
) -> http.Response:
    """The app's answer to a sign-in outcome: :func:`decide`, then the page or the redirect.

    ``login_page`` renders the sign-in page with the reason of a refusal;
    ``start_session`` starts the app's session and returns the headers
    that store it (none where the framework sets its cookie itself).
    """
    instruction = decide(outcome)
    if isinstance(instruction, ShowSignInError):
        return http.Response(
            status=instruction.status,
            headers=(
                ("Content-Type", "text/html; charset=utf-8"),
                ("Cache-Control", "no-store"),
                ("X-Frame-Options", "DENY"),
            ),
            body=login_page(instruction.page).encode(),
        )
    headers = [("Location", instruction.location)]
    if isinstance(instruction, StartSession):
        headers.extend(start_session(instruction.session))
    return http.Response(status=303, headers=tuple(headers))


def _refused(failure: SignInFailure) -> LoginPage:
    finding = failure.finding
    return LoginPage(
        error=finding.message,
        suggestion=finding.suggestion or None,
        workspace=failure.tenant.slug if failure.tenant is not None else "",
    )
