"""The reference app on Flask: a tiny product's admin pages over pbidentity.

pbidentity serves ``/scim/v2`` and ``/saml`` (the IdP's side); the views of
the ``pages`` blueprint are the product's own pages (the admin's side). The
session is Flask's signed cookie: a sign-in's outcome is handled inside
pbidentity's view of the finish step, in the same request context (the
browser's own cookies included), so it starts the session with
``flask.session`` like any view.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from typing import ParamSpec

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask.typing import ResponseReturnValue

import pbidentity.flask
from examples.common import STATIC
from examples.common import TEMPLATES
from examples.common import pages
from examples.common.access import SESSION_SECONDS
from examples.common.access import Forbidden
from examples.common.access import SignInRequired
from examples.common.access import check_csrf
from examples.common.access import current_viewer
from examples.common.access import owner_session
from examples.common.access import require_admin
from examples.common.context import AppContext
from examples.common.context import Site
from examples.common.context import open_context
from examples.common.forms import MAX_METADATA_BYTES
from examples.common.forms import edit_member
from examples.common.forms import submit_metadata
from examples.common.owner import INVALID_LINK
from examples.common.owner import LINK_LIFETIME
from examples.common.signin import ShowSignInError
from examples.common.signin import StartSession
from examples.common.signin import decide
from examples.common.signin import sso_login_path
from pbidentity import http
from pbidentity.exceptions import PbIdentityError
from pbidentity.saml import AuthnRedirect
from pbidentity.saml import SignInOutcome

__all__ = ["create_app"]

P = ParamSpec("P")

#: Where the app keeps its services, in ``app.extensions``.
EXTENSION = "reference_app"

#: Admin pages show secrets (a new token) and act on clicks: never cached, never framed.
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
    """The app on the database at ``database_url``, as browsers and IdPs reach it at ``public_url``.

    ``owner_token`` is the token of a one-time link, ``/bootstrap?token=...``,
    that signs the owner of the ``demo`` (else the first) workspace in once,
    within 15 minutes (``demo`` makes one up if missing, and creates the
    ``demo`` workspace);
    without ``secret_key`` sessions end when the process does.
    """
    app = Flask(__name__, template_folder=TEMPLATES, static_folder=STATIC)
    app.config.update(
        SECRET_KEY=secret_key or secrets.token_hex(32),
        SESSION_COOKIE_HTTPONLY=True,
        # Lax: sent on top-level navigation (the redirect after the IdP's
        # POST), never on another site's forms or fetches.
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=public_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=SESSION_SECONDS),
        MAX_CONTENT_LENGTH=2 * MAX_METADATA_BYTES,
    )
    ctx = open_context(
        database_url,
        site=Site(framework="Flask", public_url=public_url.rstrip("/")),
        dev_hosts=dev_hosts,
        owner_token=owner_token,
        demo=demo,
        on_result=on_result,
    )
    app.extensions[EXTENSION] = ctx
    pbidentity.flask.init_app(app, ctx.identity)
    app.register_blueprint(bp)
    return app


def on_result(_request: http.Request, outcome: SignInOutcome) -> http.Response:
    """The sign-in outcome handler: pbidentity calls it inside its own Flask view (finish)."""
    instruction = decide(outcome)
    if isinstance(instruction, ShowSignInError):
        page = render_template("login.html", site=_ctx().site, viewer=None, page=instruction.page)
        return http.Response(
            status=instruction.status,
            headers=(("Content-Type", "text/html; charset=utf-8"), *_PAGE_HEADERS.items()),
            body=page.encode(),
        )
    if isinstance(instruction, StartSession):
        session.clear()
        session.update(instruction.session)
    return http.Response(status=303, headers=(("Location", instruction.location),))


def _ctx() -> AppContext:
    ctx: AppContext = current_app.extensions[EXTENSION]
    return ctx


def admin_page(view: Callable[P, ResponseReturnValue]) -> Callable[P, ResponseReturnValue]:
    """Only for the admins of the workspace in the URL; a POST must carry the CSRF token."""

    @functools.wraps(view)
    def checked(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
        g.viewer = require_admin(_ctx(), session, str(kwargs["slug"]))
        if request.method == "POST":
            check_csrf(session, request.form.get("csrf"))
        return view(*args, **kwargs)

    return checked


def render(template: str, page: Any, status: int = 200) -> Response:
    """A page of the shared templates, for whoever is signed in."""
    viewer = g.viewer if "viewer" in g else current_viewer(_ctx(), session)
    html = render_template(template, site=_ctx().site, viewer=viewer, page=page)
    return Response(html, status=status, headers=_PAGE_HEADERS)


def see_other(location: str) -> ResponseReturnValue:
    """303 See Other: after a POST, the browser GETs the next page."""
    return redirect(location, code=303)


def send(response: http.Response) -> Response:
    """A pbidentity response (the redirect to the IdP) as a Flask one."""
    return Response(response.body, status=response.status, headers=list(response.headers))


@bp.app_errorhandler(SignInRequired)
def _to_login(_error: SignInRequired) -> ResponseReturnValue:
    return see_other("/login")


@bp.app_errorhandler(Forbidden)
@bp.app_errorhandler(PbIdentityError)
def _refused(error: Exception) -> ResponseReturnValue:
    page, status = pages.error_page(error)
    return render("error.html", page, status)


# -- signing in ------------------------------------------------------------------------


@bp.get("/")
def home() -> ResponseReturnValue:
    """Signed in: the members page; else the sign-in page."""
    viewer = current_viewer(_ctx(), session)
    return see_other(f"/w/{viewer.workspace}/members" if viewer else "/login")


@bp.get("/bootstrap")
def bootstrap() -> ResponseReturnValue:
    """The owner link printed at start: a page whose button spends it (a GET spends nothing)."""
    token, workspace = request.args.get("token", ""), request.args.get("workspace", "")
    if not _ctx().owner_links.valid(token, workspace):
        raise Forbidden(INVALID_LINK)
    minutes = int(LINK_LIFETIME.total_seconds() // 60)
    page = pages.OwnerSignInPage(token=token, workspace=workspace, minutes=minutes)
    response = render("bootstrap.html", page)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.post("/bootstrap")
def bootstrap_redeem() -> ResponseReturnValue:
    """Spend the owner link: the owner's session for its one workspace."""
    ctx = _ctx()
    workspace = request.form.get("workspace", "")
    if not ctx.owner_links.redeem(request.form.get("token"), workspace):
        raise Forbidden(INVALID_LINK)
    ctx.identity.admin.get_tenant(workspace)  # 404 for a workspace deleted meanwhile
    session.clear()
    session.update(owner_session(workspace))
    return see_other(f"/w/{workspace}/settings/sso")


@bp.get("/login")
def login() -> ResponseReturnValue:
    """The sign-in page."""
    return render("login.html", pages.LoginPage())


@bp.get("/login/sso")
def login_sso() -> ResponseReturnValue:
    """Start the SSO sign-in of a workspace at its identity provider."""
    workspace = request.args.get("workspace", "")
    return see_other(sso_login_path(workspace) if workspace.strip() else "/login")


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End the session."""
    check_csrf(session, request.form.get("csrf"))
    session.clear()
    return see_other("/login")


# -- Settings: SSO ---------------------------------------------------------------------


@bp.get("/w/<slug>/settings/sso")
@admin_page
def sso(slug: str) -> ResponseReturnValue:
    """The SSO page."""
    authorized = request.args.get("authorized") == "1"
    return render("sso.html", pages.sso_page(_ctx(), slug, authorized=authorized))


@bp.post("/w/<slug>/settings/sso/metadata")
@admin_page
def sso_metadata(slug: str) -> ResponseReturnValue:
    """Check the IdP metadata, or save it and start the test sign-in."""
    upload = request.files.get("metadata_file")
    xml = upload.stream.read(MAX_METADATA_BYTES + 1) if upload and upload.filename else None
    action = request.form.get("action", "check")
    url = request.form.get("metadata_url", "")
    outcome = submit_metadata(_ctx(), slug, action=action, url=url, xml=xml)
    if isinstance(outcome, AuthnRedirect):
        return send(outcome.to_response())
    page = pages.sso_page(_ctx(), slug, report=outcome, metadata_url=url)
    return render("sso.html", page, 422 if action == "save" else 200)


@bp.post("/w/<slug>/settings/sso/authorize")
@admin_page
def sso_authorize(slug: str) -> ResponseReturnValue:
    """Start the test sign-in of the pending configuration again."""
    relay_state = f"/w/{slug}/settings/sso"
    return send(
        pbidentity.flask.get_identity()
        .saml.begin_authorize(slug, relay_state=relay_state)
        .to_response()
    )


@bp.post("/w/<slug>/settings/sso/discard")
@admin_page
def sso_discard(slug: str) -> ResponseReturnValue:
    """Drop the pending configuration."""
    pbidentity.flask.get_identity().saml.discard_pending(slug)
    return see_other(f"/w/{slug}/settings/sso")


@bp.post("/w/<slug>/settings/sso/rollback")
@admin_page
def sso_rollback(slug: str) -> ResponseReturnValue:
    """Make the previous configuration active again."""
    pbidentity.flask.get_identity().saml.rollback(slug)
    return see_other(f"/w/{slug}/settings/sso")


@bp.post("/w/<slug>/settings/sso/options")
@admin_page
def sso_options(slug: str) -> ResponseReturnValue:
    """Change what happens after a verified sign-in."""
    pbidentity.flask.get_identity().saml.update_options(
        slug,
        allow_idp_initiated=request.form.get("allow_idp_initiated") == "on",
        unknown_members="create" if request.form.get("unknown_members") == "create" else "refuse",
    )
    return see_other(f"/w/{slug}/settings/sso")


# -- Settings: SCIM, Integrations: Public API ----------------------------------------


@bp.get("/w/<slug>/settings/scim")
@admin_page
def scim(slug: str) -> ResponseReturnValue:
    """The SCIM page."""
    return render("scim.html", pages.scim_page(_ctx(), slug))


@bp.post("/w/<slug>/settings/scim")
@admin_page
def scim_switch(slug: str) -> ResponseReturnValue:
    """Turn provisioning on or off."""
    pbidentity.flask.get_identity().admin.set_scim_enabled(
        slug, request.form.get("enabled") == "on"
    )
    return see_other(f"/w/{slug}/settings/scim")


@bp.get("/w/<slug>/integrations/api")
@admin_page
def api(slug: str) -> ResponseReturnValue:
    """The API tokens page."""
    return render("api.html", pages.api_page(_ctx(), slug))


@bp.post("/w/<slug>/integrations/api/tokens")
@admin_page
def api_create(slug: str) -> ResponseReturnValue:
    """Create a token; the answer is the only page that shows its secret."""
    try:
        new = pbidentity.flask.get_identity().admin.create_token(slug, request.form.get("name", ""))
    except PbIdentityError as error:
        return render("api.html", pages.api_page(_ctx(), slug, error=str(error)), 400)
    page = pages.api_page(_ctx(), slug, new_secret=new.secret, new_name=new.token.name)
    return render("api.html", page)


@bp.post("/w/<slug>/integrations/api/tokens/<path:name>/revoke")
@admin_page
def api_revoke(slug: str, name: str) -> ResponseReturnValue:
    """Revoke a token: it stops working at once."""
    pbidentity.flask.get_identity().admin.revoke_token(slug, name)
    return see_other(f"/w/{slug}/integrations/api")


# -- Members -------------------------------------------------------------------------


@bp.get("/w/<slug>/members")
@admin_page
def members(slug: str) -> ResponseReturnValue:
    """The members page."""
    return render("members.html", pages.members_page(_ctx(), slug))


@bp.route("/w/<slug>/members/<member_id>", methods=["GET", "POST"])
@admin_page
def member(slug: str, member_id: str) -> ResponseReturnValue:
    """One member and the edit form; a member the IdP manages is refused with the reason (409)."""
    if request.method == "POST":
        refused = edit_member(
            _ctx(),
            slug,
            member_id,
            given_name=request.form.get("given_name", ""),
            family_name=request.form.get("family_name", ""),
            role=request.form.get("role", ""),
        )
        if refused is not None:
            page = pages.member_page(_ctx(), slug, member_id, refused=refused.reason)
            return render("member.html", page, refused.status)
        return see_other(f"/w/{slug}/members/{member_id}")
    return render("member.html", pages.member_page(_ctx(), slug, member_id))
