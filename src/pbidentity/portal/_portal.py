"""The set-up portal as a handler: pbidentity's own pages, served like SCIM and SAML.

:class:`Portal` answers :class:`~pbidentity.http.Request` values with
:class:`~pbidentity.http.Response` values, so every adapter serves it
(``mounts={"/portal": portal}``). It decides nothing about who the host
app's users are: the host's ``authorize`` hook does, or a set-up link's
session does (see :mod:`pbidentity.portal._access`). It renders with Jinja2
(autoescaped), answers every error with a page and a status, never a
traceback, and sends security headers with every page.

This module is the front door: dispatching a request to its view (the
table is :mod:`pbidentity.portal._routes`), who may see a page, the CSRF
check of a form, rendering and errors. The pages themselves are views,
one module per section (see :mod:`pbidentity.portal._views`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import timedelta
from http import HTTPStatus
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import urlencode
from urllib.parse import urlsplit

import attrs

from pbidentity.exceptions import InputError
from pbidentity.exceptions import NotFoundError
from pbidentity.exceptions import PbIdentityError
from pbidentity.exceptions import StorageUnavailableError
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.link_imports import LinkImports
from pbidentity.portal import _forms
from pbidentity.portal import _imports
from pbidentity.portal import _setup_views
from pbidentity.portal._access import SECTIONS
from pbidentity.portal._access import SESSION_LIFETIME
from pbidentity.portal._access import PortalAccess
from pbidentity.portal._access import Section
from pbidentity.portal._access import SessionCookie
from pbidentity.portal._access import Signer
from pbidentity.portal._links import SetupLinks
from pbidentity.portal._routes import find_route
from pbidentity.portal._views import PAGE_HEADERS
from pbidentity.portal._views import Context
from pbidentity.portal._views import Redirect
from pbidentity.portal._views import Refusal
from pbidentity.portal._views import origin
from pbidentity.portal._views import quote_segment
from pbidentity.portal._views import redirect

if TYPE_CHECKING:
    import jinja2

    from pbidentity._front import PbIdentity
    from pbidentity.saml import SignInOutcome

__all__ = ["COOKIE_NAME", "Authorize", "Portal"]

log = logging.getLogger("pbidentity.portal")

#: The host app's hook: who is asking (its signed-in admin and their workspace), or ``None``.
Authorize = Callable[[Request], "PortalAccess | None"]

#: The portal's cookie: a CSRF nonce, and the set-up link session if one was opened.
COOKIE_NAME = "pbidentity_portal"

#: The largest body a portal form sends: an upload (link import or metadata) and its form.
_MAX_BODY = max(_forms.MAX_METADATA_BYTES, _imports.MAX_UPLOAD_BYTES) + 64 * 1024

_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


class Portal:
    """The set-up portal: SSO, SCIM and members pages for one :class:`~pbidentity.PbIdentity`.

    ``authorize`` is the host app's hook: given a request, it returns the
    signed-in admin as a :class:`PortalAccess` (their id and name, the
    workspace, the sections), or ``None``; the portal never invents users.
    ``secret`` (at least 32 bytes, the same on every instance of the app)
    signs set-up links, sessions and CSRF tokens. ``sign_in_url``, if given,
    is where a visitor with no access is sent (with ``next=``), else they
    get a 403 page. ``scim_url`` is the SCIM service's absolute URL when it
    is not ``/scim/v2`` on the portal's origin. ``home_url``, if given, is
    the host app's page the header links back to, for the host's admins (a
    set-up link's holder has no account there). Serve it under a prefix,
    through any adapter::

        portal = Portal(identity, authorize=current_admin, secret=PORTAL_SECRET)
        pbidentity.flask.init_app(app, identity, mounts={"/portal": portal})
    """

    def __init__(
        self,
        identity: PbIdentity,
        *,
        authorize: Authorize,
        secret: str | bytes,
        sign_in_url: str | None = None,
        scim_url: str | None = None,
        session_lifetime: timedelta = SESSION_LIFETIME,
        title: str = "Identity set-up",
        home_url: str | None = None,
    ) -> None:
        self.identity = identity
        self.authorize = authorize
        self.sign_in_url = sign_in_url
        self.scim_url = scim_url
        self.session_lifetime = session_lifetime
        self.title = title
        self.home_url = home_url
        self._signer = Signer(secret)
        #: The workspace's set-up links: issue them from the host app's own admin pages.
        self.links = SetupLinks(
            identity.storage, self._signer, clock=identity.clock, new_id=identity.new_id
        )
        #: The SCIM section's link imports (kept a day, five per workspace).
        self.link_imports = LinkImports(identity.members)

    @property
    def max_body_bytes(self) -> int:
        """The largest form the portal reads: the metadata upload."""
        return _MAX_BODY

    # -- the host app's sign-in outcomes ------------------------------------------------

    def sign_in_result(self, request: Request, outcome: SignInOutcome) -> Response | None:
        """The answer to a test sign-in the portal started, else ``None`` (the host decides).

        Call it first in the host app's ``on_result``: a Save & authorize
        started on the portal's SSO page comes back there, with the outcome.
        """
        from pbidentity.saml import Authorized
        from pbidentity.saml import SignInFailure

        relay = outcome.relay_state or ""
        if outcome.tenant is None or not relay.endswith(
            f"/w/{quote_segment(outcome.tenant.slug)}/sso"
        ):
            return None
        if isinstance(outcome, Authorized):
            return redirect(f"{relay}?authorized=1")
        if isinstance(outcome, SignInFailure) and outcome.purpose == "authorize":
            # The findings are kept on the pending configuration; the page shows them.
            return redirect(f"{relay}?failed=1")
        return None

    # -- the handler ----------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer one request whose path is relative to the portal's prefix; never raises."""
        base = urlsplit(request.base_url).path.rstrip("/")
        try:
            return self._dispatch(request, base)
        except Redirect as moved:
            return redirect(moved.location)
        except Refusal as refusal:
            return self._error(request, base, refusal.status, refusal.title, refusal.message)
        except NotFoundError as error:
            return self._error(request, base, 404, "Not found", str(error))
        except InputError as error:
            return self._error(request, base, 400, "Not possible", str(error))
        except StorageUnavailableError:
            return self._error(
                request, base, 503, "Unavailable", "The database cannot be reached; try again soon."
            )
        except PbIdentityError as error:
            # The other refusals (the last admin, a taken name) are conflicts.
            return self._error(request, base, 409, "Not possible", str(error))
        except Exception:
            log.exception("portal: unexpected error for %s %s", request.method, request.path)
            return self._error(
                request, base, 500, "Something went wrong", "The error was logged; try again."
            )

    def _dispatch(self, request: Request, base: str) -> Response:
        if request.body_truncated:
            raise Refusal(
                413,
                "Too large",
                "The form is larger than the portal accepts "
                f"(an import takes {_imports.LIMITS}; IdP metadata, 1 MiB).",
            )
        path = request.path
        if "\x00" in path:
            raise Refusal(404, "Not found", "There is no such page.")
        method = "GET" if request.method == "HEAD" else request.method
        if path.startswith("/static/") and method == "GET":
            return _static(path.removeprefix("/static/"))
        ctx = self._context(request, base)
        if path == "/setup":
            if method == "GET":
                return _setup_views.link_page(self, ctx)
            if method == "POST":
                return _setup_views.open_link(self, ctx)
            raise Refusal(405, "Not allowed", "Open the link, then press the button.")
        if path == "/signout" and method == "POST":
            return _setup_views.sign_out(self, ctx)
        if path in ("", "/") and method == "GET":
            access = self._access(ctx)
            first = next(s for s in SECTIONS if access.may(s))
            return redirect(f"{base}/w/{quote_segment(access.workspace)}/{first}")
        route = find_route(method, path)
        if route is None:
            raise Refusal(404, "Not found", "There is no such page.")
        access = self._access(ctx, route.workspace, route.section)
        form = _forms.Form()
        if method == "POST":
            form = self._checked_form(ctx, access)
        return route.view(self, attrs.evolve(ctx, segments=route.segments), access, form)

    # -- who is asking --------------------------------------------------------------

    def _context(self, request: Request, base: str) -> Context:
        cookie = SessionCookie.load(self._signer, _cookie(request), self.identity.clock())
        if cookie is None:
            return Context(request, base, SessionCookie.fresh(), new_cookie=True)
        return Context(request, base, cookie, new_cookie=False)

    def _access(
        self, ctx: Context, workspace: str | None = None, section: Section | None = None
    ) -> PortalAccess:
        """Who may see this page; a refusal (or the host's sign-in) for anyone else."""
        access = self.authorize(ctx.request)
        if access is None and ctx.cookie.link_id and ctx.cookie.workspace:
            access = self.links.access(ctx.cookie.workspace, ctx.cookie.link_id)
        if access is None:
            if self.sign_in_url and ctx.request.method in ("GET", "HEAD"):
                target = ctx.base + ctx.request.path
                raise Redirect(f"{self.sign_in_url}?{urlencode({'next': target})}")
            raise Refusal(
                403,
                "Sign in first",
                "This page is for the workspace's administrators: sign in to the app, or open "
                "your set-up link again (a link works once, and its session ends).",
            )
        if not self.identity.saml_enabled and "sso" in access.sections:
            # An app without SAML has no SSO section to show.
            rest = access.sections - {"sso"}
            if not rest:
                raise Refusal(403, "Not available", "Single sign-on is not configured in this app.")
            access = attrs.evolve(access, sections=rest)
        if workspace is not None and workspace != access.workspace:
            raise Refusal(
                403,
                "Not allowed",
                f"Your access is for the workspace {access.workspace!r}, not this one.",
            )
        if section == "sso" and not self.identity.saml_enabled:
            raise Refusal(403, "Not available", "Single sign-on is not configured in this app.")
        if section is not None and not access.may(section):
            raise Refusal(403, "Not allowed", "Your access does not include this section.")
        return access

    def _checked_form(self, ctx: Context, access: PortalAccess) -> _forms.Form:
        """The POSTed form, once its CSRF token is this browser's, person's and workspace's."""
        sent_from = ctx.request.header("origin")
        # The portal's own pages send "null" (their Referrer-Policy is
        # no-referrer); another site's page sends its own origin. The CSRF
        # token below is the defence; this refuses the obvious case early.
        if sent_from not in (None, "null") and sent_from != origin(ctx.request.base_url):
            raise Refusal(403, "Not allowed", "This form was sent from another site.")
        try:
            form = _forms.parse_form(ctx.request.header("content-type"), ctx.request.body)
        except _forms.FormError as error:
            raise Refusal(400, "Not possible", str(error)) from None
        if ctx.new_cookie or not self._signer.csrf_ok(ctx.cookie.nonce, access, form.get("csrf")):
            raise Refusal(
                403,
                "Not allowed",
                "This form was not sent from this portal's page, or the page is out of date. "
                "Reload the page and try again.",
            )
        return form

    # -- rendering ------------------------------------------------------------------

    def _render(
        self,
        ctx: Context,
        template: str,
        access: PortalAccess | None,
        *,
        status: int = 200,
        **values: object,
    ) -> Response:
        csrf = self._signer.csrf(ctx.cookie.nonce, access) if access is not None else ""
        body = (
            _templates()
            .get_template(template)
            .render(
                base=ctx.base,
                title=self.title,
                home_url=self.home_url,
                access=access,
                sections=SECTIONS,
                csrf=csrf,
                **values,
            )
        )
        response = Response(status=status, headers=PAGE_HEADERS, body=body.encode())
        if ctx.new_cookie:
            return self._with_cookie(ctx, response, ctx.cookie)
        return response

    def _with_cookie(self, ctx: Context, response: Response, cookie: SessionCookie) -> Response:
        secure = "; Secure" if ctx.request.base_url.startswith("https:") else ""
        lifetime = int(self.session_lifetime.total_seconds())
        if cookie.link_id:
            lifetime = max(0, cookie.ends - int(self.identity.clock().timestamp()))
        value = (
            f"{COOKIE_NAME}={cookie.dump(self._signer)}; Path={ctx.base or '/'}; "
            f"Max-Age={lifetime}; HttpOnly; SameSite=Lax{secure}"
        )
        headers = [(k, v) for k, v in response.headers if k.lower() != "set-cookie"]
        return attrs.evolve(response, headers=(*headers, ("Set-Cookie", value)))

    def _error(
        self, request: Request, base: str, status: int, title: str, message: str
    ) -> Response:
        try:
            ctx = Context(request, base, SessionCookie.fresh(), new_cookie=False)
            return self._render(
                ctx, "error.html", None, status=status, heading=title, message=message
            )
        except Exception:  # the templates themselves failed: a plain page still says why
            log.exception("portal: the error page could not be rendered")
            text = f"{status} {HTTPStatus(status).phrase}: {message}\n"
            return Response(
                status=status,
                headers=(("Content-Type", "text/plain; charset=utf-8"), *PAGE_HEADERS[1:]),
                body=text.encode(),
            )


@functools.cache
def _templates() -> jinja2.Environment:
    """The portal's templates, loaded once: every portal renders the same ones."""
    try:
        import jinja2
    except ImportError:  # pragma: no cover - the portal extra brings it
        from pbidentity.exceptions import ConfigurationError

        raise ConfigurationError(
            "the portal renders with Jinja2: pip install 'pbidentity[portal]'"
        ) from None
    return jinja2.Environment(
        loader=jinja2.PackageLoader("pbidentity.portal", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def _cookie(request: Request) -> str | None:
    for name, value in request.headers:
        if name != "cookie":
            continue
        for item in value.split(";"):
            key, _, found = item.strip().partition("=")
            if key == COOKIE_NAME:
                return found
    return None


def _static(name: str) -> Response:
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or suffix not in _STATIC_TYPES:
        raise Refusal(404, "Not found", "There is no such file.")
    try:
        data = resources.files("pbidentity.portal").joinpath("static", name).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise Refusal(404, "Not found", "There is no such file.") from None
    return Response(
        status=200,
        headers=(
            ("Content-Type", _STATIC_TYPES[suffix]),
            ("X-Content-Type-Options", "nosniff"),
            ("Cache-Control", "public, max-age=3600"),
        ),
        body=data,
    )
