"""The reference app on FastAPI: a tiny product's admin pages over pbidentity.

pbidentity serves ``/scim/v2`` and ``/saml`` (the IdP's side); the routes
below are the product's own pages (the admin's side). Plain ``def`` routes:
pbidentity's calls block on the database, and FastAPI runs them in its
thread pool. The session is a signed cookie (:class:`SignedCookie`), so the
sign-in outcome, answered outside any route, can start one too.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated
from typing import Any

from fastapi import APIRouter
from fastapi import Depends
from fastapi import FastAPI
from fastapi import File
from fastapi import Form
from fastapi import Request
from fastapi import UploadFile
from fastapi.responses import HTMLResponse
from fastapi.responses import RedirectResponse
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

import pbidentity.fastapi
from examples.common import STATIC
from examples.common import TEMPLATES
from examples.common import pages
from examples.common.access import Forbidden
from examples.common.access import SignedCookie
from examples.common.access import SignInRequired
from examples.common.access import Viewer
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
from pbidentity.saml import ResultHandler
from pbidentity.saml import SignInOutcome

__all__ = ["create_app"]

templates = Jinja2Templates(directory=TEMPLATES)
router = APIRouter()

#: Admin pages show secrets (a new token) and act on clicks: never cached, never framed.
_PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY"}


def create_app(
    database_url: str,
    *,
    public_url: str,
    dev_hosts: frozenset[str] = frozenset(),
    owner_token: str | None = None,
    secret_key: str | None = None,
    demo: bool = False,
) -> FastAPI:
    """The app on the database at ``database_url``, as browsers and IdPs reach it at ``public_url``.

    ``owner_token`` is the token of a one-time link, ``/bootstrap?token=...``,
    that signs the owner of the ``demo`` (else the first) workspace in once,
    within 15 minutes (``demo`` makes one up if missing, and creates the
    ``demo`` workspace);
    without ``secret_key`` sessions end when the process does.
    """
    site = Site(framework="FastAPI", public_url=public_url.rstrip("/"))
    cookie = SignedCookie(
        secret_key or secrets.token_hex(32), secure=public_url.startswith("https://")
    )
    ctx = open_context(
        database_url,
        site=site,
        dev_hosts=dev_hosts,
        owner_token=owner_token,
        demo=demo,
        on_result=_on_result(site, cookie),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        ctx.close()

    app = FastAPI(
        title="Tiny product (pbidentity reference app)",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.context = ctx
    app.state.cookie = cookie
    pbidentity.fastapi.init_app(app, ctx.identity)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(router)
    app.add_exception_handler(SignInRequired, _to_login)
    app.add_exception_handler(Forbidden, _refused)
    app.add_exception_handler(PbIdentityError, _refused)
    return app


def _on_result(site: Site, cookie: SignedCookie) -> ResultHandler:
    """The sign-in outcome handler: pbidentity calls it at its finish step, outside any route."""

    def on_result(_request: http.Request, outcome: SignInOutcome) -> http.Response:
        instruction = decide(outcome)
        if isinstance(instruction, ShowSignInError):
            page = templates.get_template("login.html").render(
                site=site, viewer=None, page=instruction.page
            )
            return http.Response(
                status=instruction.status,
                headers=(("Content-Type", "text/html; charset=utf-8"), *_PAGE_HEADERS.items()),
                body=page.encode(),
            )
        headers = [("Location", instruction.location)]
        if isinstance(instruction, StartSession):
            headers.append(("Set-Cookie", cookie.header(instruction.session)))
        return http.Response(status=303, headers=tuple(headers))

    return on_result


# -- dependencies ------------------------------------------------------------------


def context(request: Request) -> AppContext:
    """The app's services."""
    ctx: AppContext = request.app.state.context
    return ctx


def session(request: Request) -> dict[str, str]:
    """The session in the request's cookie (empty when there is none)."""
    cookie: SignedCookie = request.app.state.cookie
    return cookie.load(request.cookies.get(cookie.name))


Context = Annotated[AppContext, Depends(context)]
Session = Annotated[dict[str, str], Depends(session)]


def admin(slug: str, ctx: Context, session: Session) -> Viewer:
    """The signed-in admin of the workspace in the path (else 303 /login, or 403)."""
    return require_admin(ctx, session, slug)


AdminViewer = Annotated[Viewer, Depends(admin)]


def admin_form(viewer: AdminViewer, session: Session, csrf: Annotated[str, Form()] = "") -> Viewer:
    """The admin, for a POST form whose CSRF token matches the session's."""
    check_csrf(session, csrf)
    return viewer


AdminPost = Annotated[Viewer, Depends(admin_form)]


# -- answers ---------------------------------------------------------------------------


def render(
    request: Request, template: str, page: Any, viewer: Viewer | None, *, status: int = 200
) -> HTMLResponse:
    """A page of the shared templates."""
    return templates.TemplateResponse(
        request,
        template,
        {"site": context(request).site, "viewer": viewer, "page": page},
        status_code=status,
        headers=_PAGE_HEADERS,
    )


def redirect(location: str) -> RedirectResponse:
    """303 See Other: after a POST, the browser GETs the next page."""
    return RedirectResponse(location, status_code=303)


def send(response: http.Response) -> Response:
    """A pbidentity response (the redirect to the IdP) as a FastAPI one."""
    return Response(response.body, status_code=response.status, headers=dict(response.headers))


def _to_login(_request: Request, _error: Exception) -> Response:
    return redirect("/login")


def _refused(request: Request, error: Exception) -> Response:
    page, status = pages.error_page(error)
    viewer = current_viewer(context(request), session(request))
    return render(request, "error.html", page, viewer, status=status)


# -- signing in ------------------------------------------------------------------------


@router.get("/")
def home(ctx: Context, session: Session) -> RedirectResponse:
    """Signed in: the members page; else the sign-in page."""
    viewer = current_viewer(ctx, session)
    return redirect(f"/w/{viewer.workspace}/members" if viewer else "/login")


@router.get("/bootstrap")
def bootstrap(request: Request, ctx: Context, token: str = "", workspace: str = "") -> HTMLResponse:
    """The owner link printed at start: a page whose button spends it (a GET spends nothing)."""
    if not ctx.owner_links.valid(token, workspace):
        raise Forbidden(INVALID_LINK)
    minutes = int(LINK_LIFETIME.total_seconds() // 60)
    page = pages.OwnerSignInPage(token=token, workspace=workspace, minutes=minutes)
    response = render(request, "bootstrap.html", page, None)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.post("/bootstrap")
def bootstrap_redeem(
    request: Request,
    ctx: Context,
    token: Annotated[str, Form()] = "",
    workspace: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Spend the owner link: the owner's session for its one workspace."""
    if not ctx.owner_links.redeem(token, workspace):
        raise Forbidden(INVALID_LINK)
    ctx.identity.admin.get_tenant(workspace)  # 404 for a workspace deleted meanwhile
    response = redirect(f"/w/{workspace}/settings/sso")
    response.headers.append("set-cookie", request.app.state.cookie.header(owner_session(workspace)))
    return response


@router.get("/login")
def login(request: Request, ctx: Context, session: Session) -> HTMLResponse:
    """The sign-in page."""
    return render(request, "login.html", pages.LoginPage(), current_viewer(ctx, session))


@router.get("/login/sso")
def login_sso(workspace: str = "") -> RedirectResponse:
    """Start the SSO sign-in of a workspace at its identity provider."""
    return redirect(sso_login_path(workspace) if workspace.strip() else "/login")


@router.post("/logout")
def logout(request: Request, session: Session, csrf: Annotated[str, Form()] = "") -> Response:
    """End the session."""
    check_csrf(session, csrf)
    response = redirect("/login")
    response.headers.append("set-cookie", request.app.state.cookie.clear_header())
    return response


# -- Settings: SSO ---------------------------------------------------------------------


@router.get("/w/{slug}/settings/sso")
def sso(
    request: Request, slug: str, viewer: AdminViewer, ctx: Context, authorized: str = ""
) -> Response:
    """The SSO page."""
    page = pages.sso_page(ctx, slug, authorized=authorized == "1")
    return render(request, "sso.html", page, viewer)


@router.post("/w/{slug}/settings/sso/metadata")
def sso_metadata(
    request: Request,
    slug: str,
    viewer: AdminPost,
    ctx: Context,
    action: Annotated[str, Form()] = "check",
    metadata_url: Annotated[str, Form()] = "",
    metadata_file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Check the IdP metadata, or save it and start the test sign-in."""
    xml = None
    if metadata_file is not None and metadata_file.filename:
        xml = metadata_file.file.read(MAX_METADATA_BYTES + 1)
    outcome = submit_metadata(ctx, slug, action=action, url=metadata_url, xml=xml)
    if isinstance(outcome, AuthnRedirect):
        return send(outcome.to_response())
    page = pages.sso_page(ctx, slug, report=outcome, metadata_url=metadata_url)
    return render(request, "sso.html", page, viewer, status=422 if action == "save" else 200)


@router.post("/w/{slug}/settings/sso/authorize")
def sso_authorize(slug: str, viewer: AdminPost, ctx: Context) -> Response:
    """Start the test sign-in of the pending configuration again."""
    return send(
        ctx.identity.saml.begin_authorize(slug, relay_state=f"/w/{slug}/settings/sso").to_response()
    )


@router.post("/w/{slug}/settings/sso/discard")
def sso_discard(slug: str, viewer: AdminPost, ctx: Context) -> Response:
    """Drop the pending configuration."""
    ctx.identity.saml.discard_pending(slug)
    return redirect(f"/w/{slug}/settings/sso")


@router.post("/w/{slug}/settings/sso/rollback")
def sso_rollback(slug: str, viewer: AdminPost, ctx: Context) -> Response:
    """Make the previous configuration active again."""
    ctx.identity.saml.rollback(slug)
    return redirect(f"/w/{slug}/settings/sso")


@router.post("/w/{slug}/settings/sso/options")
def sso_options(
    slug: str,
    viewer: AdminPost,
    ctx: Context,
    allow_idp_initiated: Annotated[str, Form()] = "",
    unknown_members: Annotated[str, Form()] = "refuse",
) -> Response:
    """Change what happens after a verified sign-in."""
    ctx.identity.saml.update_options(
        slug,
        allow_idp_initiated=allow_idp_initiated == "on",
        unknown_members="create" if unknown_members == "create" else "refuse",
    )
    return redirect(f"/w/{slug}/settings/sso")


# -- Settings: SCIM, Integrations: Public API ----------------------------------------


@router.get("/w/{slug}/settings/scim")
def scim(request: Request, slug: str, viewer: AdminViewer, ctx: Context) -> Response:
    """The SCIM page."""
    return render(request, "scim.html", pages.scim_page(ctx, slug), viewer)


@router.post("/w/{slug}/settings/scim")
def scim_switch(
    slug: str, viewer: AdminPost, ctx: Context, enabled: Annotated[str, Form()] = ""
) -> Response:
    """Turn provisioning on or off."""
    ctx.identity.admin.set_scim_enabled(slug, enabled == "on")
    return redirect(f"/w/{slug}/settings/scim")


@router.get("/w/{slug}/integrations/api")
def api(request: Request, slug: str, viewer: AdminViewer, ctx: Context) -> Response:
    """The API tokens page."""
    return render(request, "api.html", pages.api_page(ctx, slug), viewer)


@router.post("/w/{slug}/integrations/api/tokens")
def api_create(
    request: Request, slug: str, viewer: AdminPost, ctx: Context, name: Annotated[str, Form()] = ""
) -> Response:
    """Create a token; the answer is the only page that shows its secret."""
    try:
        new = ctx.identity.admin.create_token(slug, name)
    except PbIdentityError as error:
        page = pages.api_page(ctx, slug, error=str(error))
        return render(request, "api.html", page, viewer, status=400)
    page = pages.api_page(ctx, slug, new_secret=new.secret, new_name=new.token.name)
    return render(request, "api.html", page, viewer)


@router.post("/w/{slug}/integrations/api/tokens/{name:path}/revoke")
def api_revoke(slug: str, name: str, viewer: AdminPost, ctx: Context) -> Response:
    """Revoke a token: it stops working at once."""
    ctx.identity.admin.revoke_token(slug, name)
    return redirect(f"/w/{slug}/integrations/api")


# -- Members -------------------------------------------------------------------------


@router.get("/w/{slug}/members")
def members(request: Request, slug: str, viewer: AdminViewer, ctx: Context) -> Response:
    """The members page."""
    return render(request, "members.html", pages.members_page(ctx, slug), viewer)


@router.get("/w/{slug}/members/{member_id}")
def member(
    request: Request, slug: str, member_id: str, viewer: AdminViewer, ctx: Context
) -> Response:
    """One member and the edit form."""
    return render(request, "member.html", pages.member_page(ctx, slug, member_id), viewer)


@router.post("/w/{slug}/members/{member_id}")
def member_save(
    request: Request,
    slug: str,
    member_id: str,
    viewer: AdminPost,
    ctx: Context,
    given_name: Annotated[str, Form()] = "",
    family_name: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
) -> Response:
    """Save the member form; a member the IdP manages is refused with the reason (409)."""
    refused = edit_member(
        ctx, slug, member_id, given_name=given_name, family_name=family_name, role=role
    )
    if refused is None:
        return redirect(f"/w/{slug}/members/{member_id}")
    page = pages.member_page(ctx, slug, member_id, refused=refused.reason)
    return render(request, "member.html", page, viewer, status=refused.status)
