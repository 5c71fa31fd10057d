"""The reference app on FastAPI: a tiny product that mounts pbidentity's set-up portal.

pbidentity serves SCIM, SAML and its set-up portal (``/portal``); the app
owns its sign-in, its session (a signed cookie) and the portal's
``authorize`` hook. The portal and the sign-in outcome are answered outside
any route, so both read the session from the request's ``Cookie`` header.
Plain ``def`` routes: pbidentity blocks on the database, FastAPI runs them
in its thread pool.
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
from fastapi import Form
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.responses import RedirectResponse
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from starlette.requests import cookie_parser

import pbidentity.fastapi
from examples.common import TEMPLATES
from examples.common import access
from examples.common import context as app_context
from examples.common import owner
from examples.common import setup_links as links
from examples.common import signin
from pbidentity import http
from pbidentity.exceptions import PbIdentityError
from pbidentity.portal import PortalAccess
from pbidentity.saml import SignInOutcome

__all__ = ["create_app"]

templates = Jinja2Templates(directory=TEMPLATES)
router = APIRouter()

#: The host's pages show a set-up link once and act on clicks: never cached, never framed.
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
    """The app on ``database_url``, as browsers and IdPs reach it at ``public_url``.

    ``owner_token`` is the token of the owner's one-time link (``/bootstrap``;
    ``demo`` makes one up, and the ``demo`` workspace); without ``secret_key``
    sessions and set-up links end with the process.
    """
    site = app_context.Site(framework="FastAPI", public_url=public_url.rstrip("/"))
    secret_key = secret_key or secrets.token_hex(32)
    cookie = access.SignedCookie(secret_key, secure=public_url.startswith("https://"))

    def authorize(request: http.Request) -> PortalAccess | None:
        # The portal's hook: the session in the request's own cookie, read as
        # Starlette reads it for the routes (a malformed neighbour spoils nothing).
        cookies = cookie_parser(request.header("cookie") or "")
        return access.portal_access(ctx.identity, cookie.load(cookies.get(cookie.name)))

    def on_result(_request: http.Request, outcome: SignInOutcome) -> http.Response:
        # A member's sign-in, answered at pbidentity's finish step, outside any route.
        return signin.respond(
            outcome,
            login_page=lambda page: templates.get_template("login.html").render(
                site=site, viewer=None, page=page
            ),
            start_session=lambda session: [("Set-Cookie", cookie.header(session))],
        )

    ctx = app_context.open_context(
        database_url,
        site=site,
        dev_hosts=dev_hosts,
        owner_token=owner_token,
        demo=demo,
        secret_key=secret_key,
        authorize=authorize,
        on_result=on_result,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        ctx.close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.context, app.state.cookie = ctx, cookie
    pbidentity.fastapi.init_app(app, ctx.identity, mounts={app_context.PORTAL_PREFIX: ctx.portal})
    app.include_router(router)
    app.add_exception_handler(access.SignInRequired, lambda _r, _e: redirect("/login"))
    app.add_exception_handler(access.Forbidden, _refused)
    app.add_exception_handler(PbIdentityError, _refused)
    return app


def context(request: Request) -> app_context.AppContext:
    """The app's services."""
    ctx: app_context.AppContext = request.app.state.context
    return ctx


def session(request: Request) -> dict[str, str]:
    """The session in the request's cookie (empty when there is none)."""
    cookie: access.SignedCookie = request.app.state.cookie
    return cookie.load(request.cookies.get(cookie.name))


Context = Annotated[app_context.AppContext, Depends(context)]
Session = Annotated[dict[str, str], Depends(session)]


def render(request: Request, template: str, page: Any, *, status: int = 200) -> HTMLResponse:
    """A page of the host's templates, for whoever is signed in."""
    viewer = access.current_viewer(context(request).identity, session(request))
    values = {"site": context(request).site, "viewer": viewer, "page": page}
    return templates.TemplateResponse(
        request, template, values, status_code=status, headers=_PAGE_HEADERS
    )


def redirect(location: str) -> RedirectResponse:
    """303 See Other: after a POST, the browser GETs the next page."""
    return RedirectResponse(location, status_code=303)


def _refused(request: Request, error: Exception) -> Response:
    page, status = access.error_page(error)
    return render(request, "error.html", page, status=status)


def admin_form(ctx: Context, session: Session, csrf: Annotated[str, Form()] = "") -> access.Viewer:
    """The signed-in admin, for a POST form whose CSRF token matches the session's."""
    viewer = access.require_admin(ctx.identity, session)
    access.check_csrf(session, csrf)
    return viewer


@router.get("/")
def home(request: Request, ctx: Context, session: Session) -> Response:
    """Signed in: the home page (the portal and set-up links, for an admin); else sign-in."""
    viewer = access.current_viewer(ctx.identity, session)
    if viewer is None:
        return redirect("/login")
    return render(request, "home.html", links.home_page(ctx, viewer))


@router.post("/setup-links")
def setup_link(
    request: Request,
    ctx: Context,
    viewer: Annotated[access.Viewer, Depends(admin_form)],
    sections: Annotated[list[str] | None, Form()] = None,
) -> Response:
    """Issue a set-up link for the admin's workspace; this answer is the only one showing it."""
    page = links.issue_setup_link(ctx, viewer, sections or [])
    return render(request, "home.html", page, status=400 if page.error else 201)


@router.post("/setup-links/revoke")
def setup_link_revoke(
    ctx: Context,
    viewer: Annotated[access.Viewer, Depends(admin_form)],
    link: Annotated[str, Form()] = "",
) -> Response:
    """Revoke a set-up link: it no longer opens, and the session it opened ends."""
    links.revoke(ctx, viewer, link)
    return redirect("/")


@router.get("/bootstrap")
def bootstrap(request: Request, ctx: Context, token: str = "", workspace: str = "") -> Response:
    """The owner link printed at start: a page whose button spends it (a GET spends nothing)."""
    if not ctx.owner_links.valid(token, workspace):
        raise access.Forbidden(owner.INVALID_LINK)
    response = render(request, "bootstrap.html", owner.OwnerSignInPage(token, workspace))
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.post("/bootstrap")
def bootstrap_redeem(
    request: Request,
    ctx: Context,
    token: Annotated[str, Form()] = "",
    workspace: Annotated[str, Form()] = "",
) -> Response:
    """Spend the owner link: the owner's session for its one workspace."""
    if not ctx.owner_links.redeem(token, workspace):
        raise access.Forbidden(owner.INVALID_LINK)
    ctx.identity.admin.get_tenant(workspace)  # 404 for a workspace deleted meanwhile
    response = redirect("/")
    response.headers.append(
        "set-cookie", request.app.state.cookie.header(access.owner_session(workspace))
    )
    return response


@router.get("/login")
def login(request: Request, next: str = "") -> Response:
    """The sign-in page; ``next`` is the portal page that sent the visitor here."""
    return render(request, "login.html", signin.LoginPage(next=signin.local_path(next)))


@router.get("/login/sso")
def login_sso(workspace: str = "", next: str = "/") -> Response:
    """Start the SSO sign-in of a workspace at its identity provider."""
    return redirect(signin.sso_login_path(workspace, next) if workspace.strip() else "/login")


@router.post("/logout")
def logout(request: Request, session: Session, csrf: Annotated[str, Form()] = "") -> Response:
    """End the session."""
    access.check_csrf(session, csrf)
    response = redirect("/login")
    response.headers.append("set-cookie", request.app.state.cookie.clear_header())
    return response
