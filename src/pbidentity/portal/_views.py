"""What every portal view shares: the request as a view sees it, refusals, redirects, list pages.

The views live one module per section (``_sso_views``, ``_scim_views``,
``_import_views``, ``_member_views``, ``_role_views``, ``_audit_views``,
``_link_views``, and ``_setup_views`` for opening a set-up link). A view is
a function ``(portal, ctx, access, form) -> Response``: it reads the
request, calls the library and renders a page or redirects. It never
decides who may see it nor checks a form's CSRF token: the
:class:`~pbidentity.portal._portal.Portal` did both before calling it,
and answers what a view raises (:class:`Refusal`, the library's errors)
with an error page. This module must not import the portal: the portal
imports the views.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote
from urllib.parse import urlsplit

import attrs

from pbidentity.http import Request
from pbidentity.http import Response
from pbidentity.portal._access import PortalAccess
from pbidentity.portal._access import SessionCookie

if TYPE_CHECKING:
    from pbidentity.portal._portal import Portal

__all__ = [
    "PAGE_HEADERS",
    "Context",
    "Query",
    "Redirect",
    "Refusal",
    "list_view",
    "origin",
    "quote_segment",
    "redirect",
    "workspace_url",
]

# Every page: no framing, no inline script or style, no sniffing, no
# referrer (a set-up link's token is in its URL), nothing cached (token
# secrets and CSRF tokens are in pages). form-action is left out on purpose:
# Save & authorize answers a form with a redirect to the IdP, which
# form-action 'self' would block.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = (
    ("Content-Type", "text/html; charset=utf-8"),
    ("Content-Security-Policy", _CSP),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
)

#: A list page's query: a parameter's first value, ``""`` when it is not sent.
Query = Callable[[str], str]


class Refusal(Exception):
    """A page that ends the request early: its status and message."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


class Redirect(Refusal):
    """Send the visitor elsewhere (the host app's sign-in) instead of a page."""

    def __init__(self, location: str) -> None:
        super().__init__(303, "See other", location)
        self.location = location


@attrs.frozen
class Context:
    """One request as the views see it."""

    request: Request
    #: The portal's path prefix as the browser sees it (``/portal``), no trailing slash.
    base: str
    cookie: SessionCookie
    #: Whether the cookie must be (re)sent with the answer.
    new_cookie: bool
    #: The route's named path segments but the workspace (``member``, ``import_id``).
    segments: Mapping[str, str] = attrs.field(factory=dict)


def quote_segment(value: str) -> str:
    """``value`` as one path segment: a slash in a name must not start another."""
    return quote(value, safe="")


def workspace_url(ctx: Context, workspace: str, path: str) -> str:
    """The portal's page ``path`` (``scim/import``) of ``workspace``, as the browser asks for it."""
    return f"{ctx.base}/w/{quote_segment(workspace)}/{path}"


def origin(url: str) -> str:
    """The scheme and host of ``url``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def redirect(location: str) -> Response:
    """A 303 to ``location``, with the page headers (nothing cached, no referrer)."""
    return Response(
        status=303,
        headers=(("Location", location), *PAGE_HEADERS[1:]),
    )


def list_view(
    portal: Portal,
    ctx: Context,
    access: PortalAccess,
    template: str,
    build: Callable[[Query], object],
    *,
    retry: str = "",
) -> Response:
    """A list page (members, audit, activity, an import's plan) built from the query.

    ``build`` makes the page from the query's values; a :class:`ValueError`
    it raises (a filter or page that cannot be read) is a 400 page with its
    sentence, and ``retry`` (``start from the first page``) after it.
    """

    def query(name: str) -> str:
        return ctx.request.query_value(name) or ""

    try:
        page = build(query)
    except ValueError as error:
        advice = f": {retry}" if retry else ""
        raise Refusal(400, "Not possible", f"{error}{advice}.") from None
    return portal._render(ctx, template, access, page=page)
