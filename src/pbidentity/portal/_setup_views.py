"""Opening a set-up link, and signing out: the doors of a link's portal session.

Opening takes two steps: the link's page (a GET, which link previews and
mail scanners may load) spends nothing; its button (a POST from that page
in the same browser) spends the link and starts a new session there.
These views come before any workspace's access is known, so the portal
calls them itself, not through its route table.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from pbidentity.http import Response
from pbidentity.portal import _forms
from pbidentity.portal import _pages
from pbidentity.portal._access import SECTIONS
from pbidentity.portal._access import SessionCookie
from pbidentity.portal._views import Context
from pbidentity.portal._views import Refusal
from pbidentity.portal._views import quote_segment
from pbidentity.portal._views import redirect

if TYPE_CHECKING:
    from pbidentity.portal._portal import Portal

__all__ = ["link_page", "open_link", "sign_out"]

_INVALID_LINK = (
    "This set-up link is not valid: it was opened already, revoked, or it expired. "
    "Ask whoever sent it for a new one."
)


def _setup_csrf(portal: Portal, ctx: Context, token: str) -> str:
    """The link page's form token: this browser's cookie and this link's token, signed."""
    return portal._signer.mac("setup", f"{ctx.cookie.nonce}\x1f{token}")


def link_page(portal: Portal, ctx: Context) -> Response:
    """The link's page: its workspace, sections and expiry, and the button that opens it."""
    token = ctx.request.query_value("token") or ""
    found = portal.links.peek(token)
    if found is None:
        raise Refusal(410, "Link not valid", _INVALID_LINK)
    workspace, link = found
    return portal._render(
        ctx,
        "setup.html",
        None,
        token=token,
        setup_csrf=_setup_csrf(portal, ctx, token),
        workspace=workspace,
        link_sections=link.sections,
        expires=_pages._when(link.expires),
    )


def open_link(portal: Portal, ctx: Context) -> Response:
    """Spend the link and start its session in this browser, on its first section."""
    try:
        form = _forms.parse_form(ctx.request.header("content-type"), ctx.request.body)
    except _forms.FormError as error:
        raise Refusal(400, "Not possible", str(error)) from None
    token = form.get("token")
    expected = _setup_csrf(portal, ctx, token)
    # Bytes: compare_digest refuses a str with non-ASCII characters.
    submitted = form.get("csrf").encode()
    if ctx.new_cookie or not hmac.compare_digest(expected.encode(), submitted):
        # Not pressed on the link's own page in this browser: another site's
        # form would sign this browser in to the sender's workspace.
        raise Refusal(
            403,
            "Not allowed",
            "Open the set-up link in this browser, then press Continue on its page.",
        )
    found = portal.links.open(token)
    if found is None:
        raise Refusal(410, "Link not valid", _INVALID_LINK)
    workspace, link = found
    # A new nonce, never the browser's old one: a cookie planted before
    # the link was opened must not become a session (session fixation).
    cookie = SessionCookie.for_link(
        link.id, workspace, link.sections, portal.links.ends(link, portal.session_lifetime)
    )
    first = next(s for s in SECTIONS if s in link.sections)
    response = redirect(f"{ctx.base}/w/{quote_segment(workspace)}/{first}")
    return portal._with_cookie(ctx, response, cookie)


def sign_out(portal: Portal, ctx: Context) -> Response:
    """End a link's session in this browser (the host app's own sign-in is its own)."""
    if ctx.cookie.link_id and ctx.cookie.workspace:
        access = portal.links.access(ctx.cookie.workspace, ctx.cookie.link_id)
        if access is not None:
            portal._checked_form(ctx, access)
    response = portal._render(ctx, "signed_out.html", None, status=200)
    return portal._with_cookie(ctx, response, SessionCookie.fresh())
