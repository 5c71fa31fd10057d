"""The set-up portal as a handler: pbidentity's own pages, served like SCIM and SAML.

:class:`Portal` answers :class:`~pbidentity.http.Request` values with
:class:`~pbidentity.http.Response` values, so every adapter serves it
(``mounts={"/portal": portal}``). It decides nothing about who the host
app's users are: the host's ``authorize`` hook does, or a set-up link's
session does (see :mod:`pbidentity.portal._access`). It renders with Jinja2
(autoescaped), answers every error with a page and a status, never a
traceback, and sends security headers with every page.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable
from datetime import timedelta
from http import HTTPStatus
from importlib import resources
from typing import TYPE_CHECKING
from typing import Any
from urllib.parse import quote
from urllib.parse import urlencode
from urllib.parse import urlsplit

import attrs

from pbidentity._front import SCIM_PREFIX
from pbidentity.exceptions import InputError
from pbidentity.exceptions import NotFoundError
from pbidentity.exceptions import PbIdentityError
from pbidentity.exceptions import StorageUnavailableError
from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.link_imports import LinkImports
from pbidentity.link_imports import import_state
from pbidentity.portal import _activity
from pbidentity.portal import _audit
from pbidentity.portal import _forms
from pbidentity.portal import _imports
from pbidentity.portal import _link_admin
from pbidentity.portal import _pages
from pbidentity.portal import _roles
from pbidentity.portal._access import SECTIONS
from pbidentity.portal._access import SESSION_LIFETIME
from pbidentity.portal._access import PortalAccess
from pbidentity.portal._access import Section
from pbidentity.portal._access import SessionCookie
from pbidentity.portal._access import Signer
from pbidentity.portal._links import SetupLinks

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

# Every page: no framing, no inline script or style, no sniffing, no
# referrer (a set-up link's token is in its URL), nothing cached (token
# secrets and CSRF tokens are in pages). form-action is left out on purpose:
# Save & authorize answers a form with a redirect to the IdP, which
# form-action 'self' would block.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_PAGE_HEADERS = (
    ("Content-Type", "text/html; charset=utf-8"),
    ("Content-Security-Policy", _CSP),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
)
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
_SEGMENT = r"[^/]+"
_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", r"/w/(?P<ws>{s})/sso", "sso"),
    ("POST", r"/w/(?P<ws>{s})/sso/metadata", "sso_metadata"),
    ("POST", r"/w/(?P<ws>{s})/sso/authorize", "sso_authorize"),
    ("POST", r"/w/(?P<ws>{s})/sso/discard", "sso_discard"),
    ("POST", r"/w/(?P<ws>{s})/sso/rollback", "sso_rollback"),
    ("POST", r"/w/(?P<ws>{s})/sso/options", "sso_options"),
    ("GET", r"/w/(?P<ws>{s})/scim", "scim"),
    ("POST", r"/w/(?P<ws>{s})/scim/switch", "scim_switch"),
    ("POST", r"/w/(?P<ws>{s})/scim/tokens", "token_create"),
    # The token's name goes in the form: a name may hold a slash, which no
    # path segment can (the adapters decode %2F before the portal sees it).
    ("POST", r"/w/(?P<ws>{s})/scim/tokens/revoke", "token_revoke"),
    ("GET", r"/w/(?P<ws>{s})/scim/import", "scim_import"),
    ("POST", r"/w/(?P<ws>{s})/scim/import", "scim_import_upload"),
    ("GET", r"/w/(?P<ws>{s})/scim/import/(?P<import_id>{s})", "scim_import_plan"),
    ("POST", r"/w/(?P<ws>{s})/scim/import/(?P<import_id>{s})/apply", "scim_import_apply"),
    ("GET", r"/w/(?P<ws>{s})/scim/import/(?P<import_id>{s})/progress", "scim_import_progress"),
    ("GET", r"/w/(?P<ws>{s})/scim/import/(?P<import_id>{s})/conflicts.csv", "scim_import_csv"),
    ("GET", r"/w/(?P<ws>{s})/scim/activity", "scim_activity"),
    ("GET", r"/w/(?P<ws>{s})/members", "members"),
    ("GET", r"/w/(?P<ws>{s})/members/(?P<member>{s})", "member"),
    ("POST", r"/w/(?P<ws>{s})/members/(?P<member>{s})", "member_edit"),
    ("GET", r"/w/(?P<ws>{s})/roles", "roles"),
    ("POST", r"/w/(?P<ws>{s})/roles/preview", "roles_preview"),
    ("POST", r"/w/(?P<ws>{s})/roles/apply", "roles_apply"),
    ("GET", r"/w/(?P<ws>{s})/audit", "audit"),
    ("GET", r"/w/(?P<ws>{s})/links", "links"),
    ("POST", r"/w/(?P<ws>{s})/links", "links_issue"),
    ("POST", r"/w/(?P<ws>{s})/links/revoke", "links_revoke"),
)
_COMPILED = tuple(
    (method, re.compile(pattern.format(s=_SEGMENT) + "/?"), name)
    for method, pattern, name in _ROUTES
)


def _section_of(view: str) -> Section | None:
    if view.startswith("links"):
        return None  # the host app's admins only, whatever their sections (see _link_admin)
    if view.startswith("sso"):
        return "sso"
    if view.startswith(("scim", "token")):
        return "scim"
    if view.startswith("roles"):
        return "roles"
    if view == "audit":
        return "audit"
    return "members"


_SECTION_OF: dict[str, Section | None] = {name: _section_of(name) for _, _, name in _ROUTES}


class _Refusal(Exception):
    """A page that ends the request early: its status and message."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


@attrs.frozen
class _Context:
    """One request as the views see it."""

    request: Request
    #: The portal's path prefix as the browser sees it (``/portal``), no trailing slash.
    base: str
    cookie: SessionCookie
    #: Whether the cookie must be (re)sent with the answer.
    new_cookie: bool


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
        self.links = SetupLinks(identity.storage, self._signer, clock=identity.clock)
        #: The SCIM section's link imports (kept a day, five per workspace).
        self.link_imports = LinkImports(identity.members)
        self._templates: jinja2.Environment | None = None

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
        if outcome.tenant is None or not relay.endswith(f"/w/{_quote(outcome.tenant.slug)}/sso"):
            return None
        if isinstance(outcome, Authorized):
            return _redirect(f"{relay}?authorized=1")
        if isinstance(outcome, SignInFailure) and outcome.purpose == "authorize":
            # The findings are kept on the pending configuration; the page shows them.
            return _redirect(f"{relay}?failed=1")
        return None

    # -- the handler ----------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer one request whose path is relative to the portal's prefix; never raises."""
        base = urlsplit(request.base_url).path.rstrip("/")
        try:
            return self._dispatch(request, base)
        except _Redirect as redirect:
            return _redirect(redirect.location)
        except _Refusal as refusal:
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
            raise _Refusal(
                413,
                "Too large",
                "The form is larger than the portal accepts "
                f"(an import takes {_imports.LIMITS}; IdP metadata, 1 MiB).",
            )
        path = request.path
        if "\x00" in path:
            raise _Refusal(404, "Not found", "There is no such page.")
        method = "GET" if request.method == "HEAD" else request.method
        if path.startswith("/static/") and method == "GET":
            return _static(path.removeprefix("/static/"))
        ctx = self._context(request, base)
        if path == "/setup":
            if method == "GET":
                return self._setup_page(ctx)
            if method == "POST":
                return self._setup_open(ctx)
            raise _Refusal(405, "Not allowed", "Open the link, then press the button.")
        if path == "/signout" and method == "POST":
            return self._sign_out(ctx)
        if path in ("", "/") and method == "GET":
            access = self._access(ctx)
            first = next(s for s in SECTIONS if access.may(s))
            return _redirect(f"{base}/w/{_quote(access.workspace)}/{first}")
        matched = [
            (name, match)
            for route_method, pattern, name in _COMPILED
            if (match := pattern.fullmatch(path)) is not None and route_method == method
        ]
        if not matched and any(pattern.fullmatch(path) for _, pattern, _ in _COMPILED):
            raise _Refusal(405, "Not allowed", "This page does not take that method.")
        for name, match in matched:
            # The adapters decoded the path already: decoding again would let
            # %252F pass for a slash.
            args = dict(match.groupdict())
            workspace = args.pop("ws")
            access = self._access(ctx, workspace, _SECTION_OF[name])
            form = _forms.Form()
            if method == "POST":
                form = self._checked_form(ctx, access)
            view: Callable[..., Response] = getattr(self, f"_view_{name}")
            return view(ctx, access, form, **args)
        raise _Refusal(404, "Not found", "There is no such page.")

    # -- who is asking --------------------------------------------------------------

    def _context(self, request: Request, base: str) -> _Context:
        cookie = SessionCookie.load(self._signer, _cookie(request), self.identity.clock())
        if cookie is None:
            return _Context(request, base, SessionCookie.fresh(), new_cookie=True)
        return _Context(request, base, cookie, new_cookie=False)

    def _access(
        self, ctx: _Context, workspace: str | None = None, section: Section | None = None
    ) -> PortalAccess:
        """Who may see this page; a refusal (or the host's sign-in) for anyone else."""
        access = self.authorize(ctx.request)
        if access is None and ctx.cookie.link_id and ctx.cookie.workspace:
            access = self.links.access(ctx.cookie.workspace, ctx.cookie.link_id)
        if access is None:
            if self.sign_in_url and ctx.request.method in ("GET", "HEAD"):
                target = ctx.base + ctx.request.path
                raise _Redirect(f"{self.sign_in_url}?{urlencode({'next': target})}")
            raise _Refusal(
                403,
                "Sign in first",
                "This page is for the workspace's administrators: sign in to the app, or open "
                "your set-up link again (a link works once, and its session ends).",
            )
        if not self.identity.saml_enabled and "sso" in access.sections:
            # An app without SAML has no SSO section to show.
            rest = access.sections - {"sso"}
            if not rest:
                raise _Refusal(
                    403, "Not available", "Single sign-on is not configured in this app."
                )
            access = attrs.evolve(access, sections=rest)
        if workspace is not None and workspace != access.workspace:
            raise _Refusal(
                403,
                "Not allowed",
                f"Your access is for the workspace {access.workspace!r}, not this one.",
            )
        if section == "sso" and not self.identity.saml_enabled:
            raise _Refusal(403, "Not available", "Single sign-on is not configured in this app.")
        if section is not None and not access.may(section):
            raise _Refusal(403, "Not allowed", "Your access does not include this section.")
        return access

    def _checked_form(self, ctx: _Context, access: PortalAccess) -> _forms.Form:
        """The POSTed form, once its CSRF token is this browser's, person's and workspace's."""
        origin = ctx.request.header("origin")
        # The portal's own pages send "null" (their Referrer-Policy is
        # no-referrer); another site's page sends its own origin. The CSRF
        # token below is the defence; this refuses the obvious case early.
        if origin not in (None, "null") and origin != _origin(ctx.request.base_url):
            raise _Refusal(403, "Not allowed", "This form was sent from another site.")
        try:
            form = _forms.parse_form(ctx.request.header("content-type"), ctx.request.body)
        except _forms.FormError as error:
            raise _Refusal(400, "Not possible", str(error)) from None
        if ctx.new_cookie or not self._signer.csrf_ok(ctx.cookie.nonce, access, form.get("csrf")):
            raise _Refusal(
                403,
                "Not allowed",
                "This form was not sent from this portal's page, or the page is out of date. "
                "Reload the page and try again.",
            )
        return form

    # -- set-up links ---------------------------------------------------------------

    def _setup_page(self, ctx: _Context) -> Response:
        token = ctx.request.query_value("token") or ""
        found = self.links.peek(token)
        if found is None:
            raise _Refusal(410, "Link not valid", _INVALID_LINK)
        workspace, link = found
        return self._render(
            ctx,
            "setup.html",
            None,
            token=token,
            setup_csrf=self._signer.mac("setup", f"{ctx.cookie.nonce}\x1f{token}"),
            workspace=workspace,
            link_sections=link.sections,
            expires=_pages._when(link.expires),
        )

    def _setup_open(self, ctx: _Context) -> Response:
        try:
            form = _forms.parse_form(ctx.request.header("content-type"), ctx.request.body)
        except _forms.FormError as error:
            raise _Refusal(400, "Not possible", str(error)) from None
        token = form.get("token")
        expected = self._signer.mac("setup", f"{ctx.cookie.nonce}\x1f{token}")
        # Bytes: compare_digest refuses a str with non-ASCII characters.
        submitted = form.get("csrf").encode()
        if ctx.new_cookie or not hmac.compare_digest(expected.encode(), submitted):
            # Not pressed on the link's own page in this browser: another site's
            # form would sign this browser in to the sender's workspace.
            raise _Refusal(
                403,
                "Not allowed",
                "Open the set-up link in this browser, then press Continue on its page.",
            )
        found = self.links.open(token)
        if found is None:
            raise _Refusal(410, "Link not valid", _INVALID_LINK)
        workspace, link = found
        # A new nonce, never the browser's old one: a cookie planted before
        # the link was opened must not become a session (session fixation).
        cookie = SessionCookie.for_link(
            link.id, workspace, link.sections, self.links.ends(link, self.session_lifetime)
        )
        first = next(s for s in SECTIONS if s in link.sections)
        response = _redirect(f"{ctx.base}/w/{_quote(workspace)}/{first}")
        return self._with_cookie(ctx, response, cookie)

    def _sign_out(self, ctx: _Context) -> Response:
        # Signing out ends a link's session; the host app's own sign-in is its own.
        if ctx.cookie.link_id and ctx.cookie.workspace:
            access = self.links.access(ctx.cookie.workspace, ctx.cookie.link_id)
            if access is not None:
                self._checked_form(ctx, access)
        response = self._render(ctx, "signed_out.html", None, status=200)
        return self._with_cookie(ctx, response, SessionCookie.fresh())

    # -- SSO ------------------------------------------------------------------------

    def _sso_relay(self, ctx: _Context, workspace: str) -> str:
        return f"{ctx.base}/w/{_quote(workspace)}/sso"

    def _view_sso(self, ctx: _Context, access: PortalAccess, form: _forms.Form) -> Response:
        query = ctx.request.query_value
        page = _pages.sso_page(
            self.identity, access.workspace, authorized=query("authorized") == "1"
        )
        return self._render(ctx, "sso.html", access, page=page)

    def _view_sso_metadata(
        self, ctx: _Context, access: PortalAccess, form: _forms.Form
    ) -> Response:
        from pbidentity.saml import AuthnRedirect

        url = form.get("metadata_url")
        outcome = _forms.submit_metadata(
            self.identity,
            access.workspace,
            action=form.get("action", "check"),
            url=url,
            xml=form.files.get("metadata_file"),
            relay_state=self._sso_relay(ctx, access.workspace),
            actor=access.actor,
        )
        if isinstance(outcome, AuthnRedirect):
            return outcome.to_response()
        page = _pages.sso_page(self.identity, access.workspace, report=outcome, metadata_url=url)
        status = 400 if outcome.errors else 200
        return self._render(ctx, "sso.html", access, page=page, status=status)

    def _view_sso_authorize(
        self, ctx: _Context, access: PortalAccess, form: _forms.Form
    ) -> Response:
        redirect = self.identity.saml.begin_authorize(
            access.workspace,
            relay_state=self._sso_relay(ctx, access.workspace),
            request=ctx.request,
        )
        return redirect.to_response()

    def _view_sso_discard(self, ctx: _Context, access: PortalAccess, form: _forms.Form) -> Response:
        self.identity.saml.discard_pending(access.workspace, actor=access.actor)
        return _redirect(self._sso_relay(ctx, access.workspace))

    def _view_sso_rollback(
        self, ctx: _Context, access: PortalAccess, form: _forms.Form
    ) -> Response:
        self.identity.saml.rollback(access.workspace, actor=access.actor)
        return _redirect(self._sso_relay(ctx, access.workspace))

    def _view_sso_options(self, ctx: _Context, access: PortalAccess, form: _forms.Form) -> Response:
        unknown = form.get("unknown_members", "refuse")
        if unknown not in ("refuse", "create"):
            raise InputError("People who are not members yet: choose refuse or create")
        self.identity.saml.update_options(
            access.workspace,
            allow_idp_initiated=form.get("allow_idp_initiated") == "on",
            unknown_members="create" if unknown == "create" else "refuse",
            actor=access.actor,
        )
        return _redirect(self._sso_relay(ctx, access.workspace))

    # -- SCIM -----------------------------------------------------------------------

    def _scim_url(self, ctx: _Context) -> str:
        return self.scim_url or _origin(ctx.request.base_url) + SCIM_PREFIX

    def _scim_path(self, ctx: _Context, workspace: str) -> str:
        return f"{ctx.base}/w/{_quote(workspace)}/scim"

    def _view_scim(self, ctx: _Context, access: PortalAccess, form: _forms.Form) -> Response:
        page = _pages.scim_page(self.identity, access.workspace, base_url=self._scim_url(ctx))
        return self._render(ctx, "scim.html", access, page=page)

    def _view_scim_switch(self, ctx: _Context, access: PortalAccess, form: _forms.Form) -> Response:
        self.identity.admin.set_scim_enabled(access.workspace, form.get("enabled") == "on")
        return _redirect(self._scim_path(ctx, access.workspace))

    def _view_token_create(
        self, ctx: _Context, access: PortalAccess, form: _forms.Form
    ) -> Response:
        name = form.get("name").strip()
        if any(
            t.name == name and t.is_active
            for t in self.identity.admin.list_tokens(access.workspace)
        ):
            error = (
                f"A token named {name!r} is active already: revoke it first, or pick another name."
            )
            page = _pages.scim_page(
                self.identity, access.workspace, base_url=self._scim_url(ctx), error=error
            )
            return self._render(ctx, "scim.html", access, page=page, status=409)
        try:
            created = self.identity.admin.create_token(access.workspace, name)
        except InputError as failure:
            page = _pages.scim_page(
                self.identity, access.workspace, base_url=self._scim_url(ctx), error=str(failure)
            )
            return self._render(ctx, "scim.html", access, page=page, status=400)
        # The secret is in this answer only (no redirect: it would have to be
        # carried somewhere); the page is never cached (Cache-Control: no-store).
        page = _pages.scim_page(
            self.identity,
            access.workspace,
            base_url=self._scim_url(ctx),
            new_secret=created.secret,
            new_name=created.token.name,
        )
        return self._render(ctx, "scim.html", access, page=page, status=201)

    def _view_token_revoke(
        self, ctx: _Context, access: PortalAccess, form: _forms.Form
    ) -> Response:
        self.identity.admin.revoke_token(access.workspace, form.get("name"))
        return _redirect(self._scim_path(ctx, access.workspace))

    # -- link import (part of SCIM's set-up) -------------------------------------------

    def _import_path(self, ctx: _Context, workspace: str, import_id: str = "") -> str:
        here = f"{ctx.base}/w/{_quote(workspace)}/scim/import"
        return f"{here}/{_quote(import_id)}" if import_id else here

    def _view_scim_import(self, ctx: _Context, access: PortalAccess, form: _forms.Form) -> Response:
        page = _imports.imports_page(self.link_imports, access.workspace)
        return self._render(ctx, "import.html", access, page=page)

    def _view_scim_import_upload(
        self, ctx: _Context, access: PortalAccess, form: _forms.Form
    ) -> Response:
        try:
            record = _imports.stage_upload(
                self.link_imports,
                access.workspace,
                form.files.get("export"),
                form.filenames.get("export", ""),
                actor=access.actor,
            )
        except InputError as error:
            page = _imports.imports_page(self.link_imports, access.workspace, error=str(error))
            return self._render(ctx, "import.html", access, page=page, status=400)
        return _redirect(self._import_path(ctx, access.workspace, record.id))

    def _view_scim_import_plan(
        self, ctx: _Context, access: PortalAccess, form: _forms.Form, import_id: str
    ) -> Response:
        query = ctx.request.query_value
        try:
            page = _imports.plan_page(
                self.link_imports,
                access.workspace,
                import_id,
                list_name=query("list") or "",
                page=int(query("page") or "1"),
            )
        except ValueError as error:
            raise _Refusal(400, "Not possible", f"{error}: start from the first page.") from None
        return self._render(ctx, "import_plan.html", access, page=page)

    def _view_scim_import_apply(
        self, ctx: _Context, access: PortalAccess, form: _forms.Form, import_id: str
    ) -> Response:
        self.link_imports.start(access.workspace, import_id)
        self.link_imports.apply_next(access.workspace, import_id, actor=access.actor)
        return _redirect(f"{self._import_path(ctx, access.workspace, import_id)}/progress")

    def _view_scim_import_progress(
        self, ctx: _Context, access: PortalAccess, form: _forms.Form, import_id: str
    ) -> Response:
        # A GET that writes, on purpose: it continues (one claimed batch) an
        # import a CSRF-checked form started, never starts one, so that the
        # page can refresh itself without JavaScript. HEAD only reads.
        if ctx.request.method == "HEAD":
            record = self.link_imports.get(access.workspace, import_id)
        else:
            record = self.link_imports.apply_next(access.workspace, import_id, actor=access.actor)
        here = self._import_path(ctx, access.workspace, import_id)
        if import_state(record) != "applying":
            return _redirect(here)
        page = _imports.plan_page(
            self.link_imports, access.workspace, import_id, record=record, refresh=True
        )
        return self._render(ctx, "import_plan.html", access, page=page)

    def _view_scim_import_csv(
        self, ctx: _Context, access: PortalAccess, form: _forms.Form, import_id: str
    ) -> Response:
        body = _imports.conflicts_csv(self.link_imports, access.workspace, import_id)
        name = _imports.conflicts_filename(access.workspace, import_id)
        return Response(
            status=200,
            headers=(
                ("Content-Type", "text/csv; charset=utf-8"),
                ("Content-Disposition", f'attachment; filename="{name}"'),
                *_PAGE_HEADERS[1:],
            ),
            body=body,
        )

    # -- members --------------------------------------------------------------------

    def _view_members(self, ctx: _Context, access: PortalAccess, form: _forms.Form) -> Response:
        query = ctx.request.query_value
        try:
            page = _pages.members_page(
                self.identity,
                access.workspace,
                search=query("q") or "",
                status=query("status") or "",
                role=query("role") or "",
                managed=query("managed") or "",
                cursor=query("cursor") or None,
            )
        except ValueError as error:
            raise _Refusal(400, "Not possible", f"{error}: start from the first page.") from None
        return self._render(ctx, "members.html", access, page=page)

    def _view_member(
        self, ctx: _Context, access: PortalAccess, form: _forms.Form, member: str
    ) -> Response:
        page = _pages.member_page(self.identity, access.workspace, member)
        return self._render(ctx, "member.html", access, page=page)

    def _view_member_edit(
        self, ctx: _Context, access: PortalAccess, form: _forms.Form, member: str
    ) -> Response:
        refused = _forms.edit_member(
            self.identity,
            access.workspace,
            member,
            given_name=form.get("given_name"),
            family_name=form.get("family_name"),
            role=form.get("role"),
            actor=access.actor,
        )
        if refused is None:
            return _redirect(f"{ctx.base}/w/{_quote(access.workspace)}/members/{_quote(member)}")
        page = _pages.member_page(self.identity, access.workspace, member, refused=refused.reason)
        return self._render(ctx, "member.html", access, page=page, status=refused.status)

    # -- role policy ----------------------------------------------------------------

    def _view_roles(self, ctx: _Context, access: PortalAccess, form: _forms.Form) -> Response:
        applied = ctx.request.query_value("applied")
        notice = None
        if applied is not None and applied.isdigit():
            changed = int(applied)
            notice = (
                f"The role policy was saved; {changed} member{'s' if changed != 1 else ''} "
                "changed role (recorded in the audit trail)."
            )
        page = _roles.roles_page(self.identity, access.workspace, notice=notice)
        return self._render(ctx, "roles.html", access, page=page)

    def _view_roles_preview(
        self, ctx: _Context, access: PortalAccess, form: _forms.Form
    ) -> Response:
        try:
            proposed = _roles.policy_from_form(self.identity, access.workspace, form)
        except InputError as error:
            page = _roles.roles_page(self.identity, access.workspace, error=str(error))
            return self._render(ctx, "roles.html", access, page=page, status=400)
        preview = self.identity.admin.preview_policy(
            access.workspace, proposed, examples=_roles.EXAMPLES
        )
        page = _roles.roles_page(
            self.identity, access.workspace, proposed=preview.policy, preview=preview
        )
        return self._render(ctx, "roles.html", access, page=page)

    def _view_roles_apply(self, ctx: _Context, access: PortalAccess, form: _forms.Form) -> Response:
        try:
            outcome = _roles.apply_policy(self.identity, access.workspace, form, actor=access.actor)
        except InputError as error:
            page = _roles.roles_page(self.identity, access.workspace, error=str(error))
            return self._render(ctx, "roles.html", access, page=page, status=400)
        if isinstance(outcome, _roles.NotApplied):
            return self._render(ctx, "roles.html", access, page=outcome.page, status=outcome.status)
        here = f"{ctx.base}/w/{_quote(access.workspace)}/roles"
        return _redirect(f"{here}?applied={outcome.role_changes}")

    # -- audit ----------------------------------------------------------------------

    def _view_audit(self, ctx: _Context, access: PortalAccess, form: _forms.Form) -> Response:
        query = ctx.request.query_value
        try:
            page = _audit.audit_page(
                self.identity,
                access.workspace,
                event_type=query("type") or "",
                actor=query("actor") or "",
                since=query("from") or "",
                until=query("to") or "",
                before=query("before") or "",
            )
        except ValueError as error:
            raise _Refusal(400, "Not possible", f"{error}.") from None
        return self._render(ctx, "audit.html", access, page=page)

    # -- set-up links (the host app's admins only) ------------------------------------

    def _links_page(self, access: PortalAccess, **values: Any) -> _link_admin.LinksPage:
        _host_admin(access)
        return _link_admin.links_page(self.links, access, self.identity.clock(), **values)

    def _view_links(self, ctx: _Context, access: PortalAccess, form: _forms.Form) -> Response:
        notice = None
        if ctx.request.query_value("revoked") == "1":
            notice = "The link was revoked: it no longer opens, and a session it opened has ended."
        page = self._links_page(access, notice=notice)
        return self._render(ctx, "links.html", access, page=page)

    def _view_links_issue(self, ctx: _Context, access: PortalAccess, form: _forms.Form) -> Response:
        _host_admin(access)
        chosen = [s for s in SECTIONS if form.get(f"section_{s}") == "on"]
        lifetime = form.get("lifetime")
        try:
            issued = _link_admin.issue_link(self.links, access, chosen, lifetime)
        except InputError as error:
            page = self._links_page(access, error=str(error), chosen=chosen, lifetime=lifetime)
            return self._render(ctx, "links.html", access, page=page, status=400)
        page = self._links_page(access, issued=issued, portal_url=ctx.request.base_url)
        return self._render(ctx, "links.html", access, page=page, status=201)

    def _view_links_revoke(
        self, ctx: _Context, access: PortalAccess, form: _forms.Form
    ) -> Response:
        _host_admin(access)
        self.links.revoke(access.workspace, form.get("link"))
        return _redirect(f"{ctx.base}/w/{_quote(access.workspace)}/links?revoked=1")

    def _view_scim_activity(
        self, ctx: _Context, access: PortalAccess, form: _forms.Form
    ) -> Response:
        query = ctx.request.query_value
        try:
            page = _activity.activity_page(
                self.identity,
                access.workspace,
                failures=query("failures") or "",
                token=query("token") or "",
                method=query("method") or "",
                status=query("status") or "",
                before=query("before") or "",
            )
        except ValueError as error:
            raise _Refusal(400, "Not possible", f"{error}.") from None
        return self._render(ctx, "activity.html", access, page=page)

    # -- rendering ------------------------------------------------------------------

    def _environment(self) -> jinja2.Environment:
        if self._templates is None:
            try:
                import jinja2
            except ImportError:  # pragma: no cover - the portal extra brings it
                from pbidentity.exceptions import ConfigurationError

                raise ConfigurationError(
                    "the portal renders with Jinja2: pip install 'pbidentity[portal]'"
                ) from None
            self._templates = jinja2.Environment(
                loader=jinja2.PackageLoader("pbidentity.portal", "templates"),
                autoescape=True,
                undefined=jinja2.StrictUndefined,
            )
        return self._templates

    def _render(
        self,
        ctx: _Context,
        template: str,
        access: PortalAccess | None,
        *,
        status: int = 200,
        **values: Any,
    ) -> Response:
        csrf = self._signer.csrf(ctx.cookie.nonce, access) if access is not None else ""
        body = (
            self._environment()
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
        response = Response(status=status, headers=_PAGE_HEADERS, body=body.encode())
        if ctx.new_cookie:
            return self._with_cookie(ctx, response, ctx.cookie)
        return response

    def _with_cookie(self, ctx: _Context, response: Response, cookie: SessionCookie) -> Response:
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
            ctx = _Context(request, base, SessionCookie.fresh(), new_cookie=False)
            return self._render(
                ctx, "error.html", None, status=status, heading=title, message=message
            )
        except Exception:  # the templates themselves failed: a plain page still says why
            log.exception("portal: the error page could not be rendered")
            text = f"{status} {HTTPStatus(status).phrase}: {message}\n"
            return Response(
                status=status,
                headers=(("Content-Type", "text/plain; charset=utf-8"), *_PAGE_HEADERS[1:]),
                body=text.encode(),
            )


class _Redirect(_Refusal):
    """Send the visitor elsewhere (the host app's sign-in) instead of a page."""

    def __init__(self, location: str) -> None:
        super().__init__(303, "See other", location)
        self.location = location


_INVALID_LINK = (
    "This set-up link is not valid: it was opened already, revoked, or it expired. "
    "Ask whoever sent it for a new one."
)


def _host_admin(access: PortalAccess) -> None:
    """Refuse a set-up link's session the set-up links page (see _link_admin)."""
    try:
        _link_admin.host_only(access)
    except PermissionError as error:
        raise _Refusal(403, "Not allowed", str(error)) from None


def _quote(value: str) -> str:
    return quote(value, safe="")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _cookie(request: Request) -> str | None:
    for name, value in request.headers:
        if name != "cookie":
            continue
        for item in value.split(";"):
            key, _, found = item.strip().partition("=")
            if key == COOKIE_NAME:
                return found
    return None


def _redirect(location: str) -> Response:
    return Response(
        status=303,
        headers=(("Location", location), *_PAGE_HEADERS[1:]),
    )


def _static(name: str) -> Response:
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or suffix not in _STATIC_TYPES:
        raise _Refusal(404, "Not found", "There is no such file.")
    try:
        data = resources.files("pbidentity.portal").joinpath("static", name).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise _Refusal(404, "Not found", "There is no such file.") from None
    return Response(
        status=200,
        headers=(
            ("Content-Type", _STATIC_TYPES[suffix]),
            ("X-Content-Type-Options", "nosniff"),
            ("Cache-Control", "public, max-age=3600"),
        ),
        body=data,
    )
