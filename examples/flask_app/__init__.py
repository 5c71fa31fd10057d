"""The reference app on Flask: a tiny product that mounts pbidentity's set-up portal.

pbidentity serves ``/scim/v2`` and ``/saml`` (the IdP's side) and its
set-up portal under ``/portal`` (the IT admin's side). The app owns only
what a host app owns: its sign-in (SSO for members, a one-time owner link
before SSO exists), its session (Flask's signed cookie), and the hook that
tells the portal who its signed-in admin is. The portal and the sign-in
outcome run inside pbidentity's Flask views, in the request context, so
both read and start the session with ``flask.session`` like any view.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask.typing import ResponseReturnValue

import pbidentity.flask
from examples.common import TEMPLATES
from examples.common import access
from examples.common import context as app_context
from examples.common import owner
from examples.common import setup_links as links
from examples.common import signin
from pbidentity import http
from pbidentity.exceptions import PbIdentityError
from pbidentity.saml import SignInOutcome

__all__ = ["create_app"]

#: Where the app keeps its services, in ``app.extensions``.
EXTENSION = "reference_app"

#: The host's pages show a set-up link once and act on clicks: never cached, never framed.
_PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY"}

bp = Blueprint("pages", __name__)


def create_app(
    database_url: str,
    *,
    public_url: str,
    dev_hosts: frozenset[str] = frozenset(),
    owner_token: str | None = None,
    secret_key: str | None = None,
    demo: bool = False,
) -> Flask:
    """The app on ``database_url``, as browsers and IdPs reach it at ``public_url``.

    ``owner_token`` is the token of the owner's one-time link (``/bootstrap``;
    ``demo`` makes one up, and the ``demo`` workspace); without ``secret_key``
    sessions and set-up links end with the process.
    """
    app = Flask(__name__, template_folder=TEMPLATES, static_folder=None)
    secret_key = secret_key or secrets.token_hex(32)
    app.config.update(
        SECRET_KEY=secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        # Lax: sent on top-level navigation (the redirect after the IdP's
        # POST), never on another site's forms or fetches.
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=public_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=access.SESSION_SECONDS),
        # The host's own forms are small; the portal reads its uploads itself.
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    app.extensions[EXTENSION] = ctx = app_context.open_context(
        database_url,
        site=app_context.Site(framework="Flask", public_url=public_url.rstrip("/")),
        dev_hosts=dev_hosts,
        owner_token=owner_token,
        demo=demo,
        secret_key=secret_key,
        authorize=lambda _request: access.portal_access(_ctx().identity, session),
        on_result=on_result,
    )
    pbidentity.flask.init_app(app, ctx.identity, mounts={app_context.PORTAL_PREFIX: ctx.portal})
    app.register_blueprint(bp)
    return app


def on_result(_request: http.Request, outcome: SignInOutcome) -> http.Response:
    """A member's sign-in outcome: pbidentity calls it inside its own Flask view (finish)."""
    return signin.respond(
        outcome,
        login_page=lambda page: render_template(
            "login.html", site=_ctx().site, viewer=None, page=page
        ),
        start_session=_start_session,
    )


def _start_session(values: dict[str, str]) -> list[tuple[str, str]]:
    # A new session, never the browser's old one (session fixation); Flask sets the cookie.
    session.clear()
    session.update(values)
    return []


def _ctx() -> app_context.AppContext:
    ctx: app_context.AppContext = current_app.extensions[EXTENSION]
    return ctx


def render(template: str, page: Any, status: int = 200) -> Response:
    """A page of the host's templates, for whoever is signed in."""
    viewer = access.current_viewer(_ctx().identity, session)
    html = render_template(template, site=_ctx().site, viewer=viewer, page=page)
    return Response(html, status=status, headers=_PAGE_HEADERS)


def see_other(location: str) -> ResponseReturnValue:
    """303 See Other: after a POST, the browser GETs the next page."""
    return redirect(location, code=303)


@bp.app_errorhandler(access.SignInRequired)
def _to_login(_error: access.SignInRequired) -> ResponseReturnValue:
    return see_other("/login")


@bp.app_errorhandler(access.Forbidden)
@bp.app_errorhandler(PbIdentityError)
def _refused(error: access.Forbidden | PbIdentityError) -> ResponseReturnValue:
    page, status = access.error_page(error)
    return render("error.html", page, status)


@bp.get("/")
def home() -> ResponseReturnValue:
    """Signed in: the home page (the portal and set-up links, for an admin); else sign-in."""
    viewer = access.current_viewer(_ctx().identity, session)
    if viewer is None:
        return see_other("/login")
    return render("home.html", links.home_page(_ctx(), viewer))


@bp.post("/setup-links")
def setup_link() -> ResponseReturnValue:
    """Issue a set-up link for the admin's workspace; this answer is the only one showing it."""
    viewer = access.require_admin(_ctx().identity, session)
    access.check_csrf(session, request.form.get("csrf"))
    page = links.issue_setup_link(_ctx(), viewer, request.form.getlist("sections"))
    return render("home.html", page, 400 if page.error else 201)


@bp.post("/setup-links/revoke")
def setup_link_revoke() -> ResponseReturnValue:
    """Revoke a set-up link: it no longer opens, and the session it opened ends."""
    viewer = access.require_admin(_ctx().identity, session)
    access.check_csrf(session, request.form.get("csrf"))
    links.revoke(_ctx(), viewer, request.form.get("link", ""))
    return see_other("/")


@bp.get("/bootstrap")
def bootstrap() -> ResponseReturnValue:
    """The owner link printed at start: a page whose button spends it (a GET spends nothing)."""
    token, workspace = request.args.get("token", ""), request.args.get("workspace", "")
    if not _ctx().owner_links.valid(token, workspace):
        raise access.Forbidden(owner.INVALID_LINK)
    response = render("bootstrap.html", owner.OwnerSignInPage(token=token, workspace=workspace))
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.post("/bootstrap")
def bootstrap_redeem() -> ResponseReturnValue:
    """Spend the owner link: the owner's session for its one workspace."""
    ctx, workspace = _ctx(), request.form.get("workspace", "")
    if not ctx.owner_links.redeem(request.form.get("token"), workspace):
        raise access.Forbidden(owner.INVALID_LINK)
    ctx.identity.admin.get_tenant(workspace)  # 404 for a workspace deleted meanwhile
    session.clear()
    session.update(access.owner_session(workspace))
    return see_other("/")


@bp.get("/login")
def login() -> ResponseReturnValue:
    """The sign-in page; ``next`` is the portal page that sent the visitor here."""
    page = signin.LoginPage(next=signin.local_path(request.args.get("next")))
    return render("login.html", page)


@bp.get("/login/sso")
def login_sso() -> ResponseReturnValue:
    """Start the SSO sign-in of a workspace at its identity provider."""
    workspace = request.args.get("workspace", "")
    if not workspace.strip():
        return see_other("/login")
    return see_other(signin.sso_login_path(workspace, request.args.get("next", "/")))


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End the session."""
    access.check_csrf(session, request.form.get("csrf"))
    session.clear()
    return see_other("/login")
