"""The set-up links page's views: the host app's own admins issue, list and revoke links.

A set-up link's session never gets here (403): a link must not hand out
links. Each view refuses it first, so that the page's own check
(:func:`_link_admin.host_only`) never has to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pbidentity.exceptions import InputError
from pbidentity.http import Response
from pbidentity.portal import _forms
from pbidentity.portal import _link_admin
from pbidentity.portal._access import SECTIONS
from pbidentity.portal._access import PortalAccess
from pbidentity.portal._views import Context
from pbidentity.portal._views import Refusal
from pbidentity.portal._views import redirect
from pbidentity.portal._views import workspace_url

if TYPE_CHECKING:
    from pbidentity.portal._portal import Portal

__all__ = ["issue", "links", "revoke"]


def _host_admin(access: PortalAccess) -> None:
    """Refuse a set-up link's session the set-up links page (see _link_admin)."""
    try:
        _link_admin.host_only(access)
    except PermissionError as error:
        raise Refusal(403, "Not allowed", str(error)) from None


def links(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """The form that issues a link, and the workspace's links."""
    _host_admin(access)
    notice = None
    if ctx.request.query_value("revoked") == "1":
        notice = "The link was revoked: it no longer opens, and a session it opened has ended."
    page = _link_admin.links_page(portal.links, access, portal.identity.clock(), notice=notice)
    return portal._render(ctx, "links.html", access, page=page)


def issue(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """Issue a link for the sections ticked; its URL is in this answer only."""
    _host_admin(access)
    chosen = [s for s in SECTIONS if form.get(f"section_{s}") == "on"]
    lifetime = form.get("lifetime")
    try:
        issued = _link_admin.issue_link(portal.links, access, chosen, lifetime)
    except InputError as error:
        page = _link_admin.links_page(
            portal.links,
            access,
            portal.identity.clock(),
            error=str(error),
            chosen=chosen,
            lifetime=lifetime,
        )
        return portal._render(ctx, "links.html", access, page=page, status=400)
    page = _link_admin.links_page(
        portal.links,
        access,
        portal.identity.clock(),
        issued=issued,
        portal_url=ctx.request.base_url,
    )
    return portal._render(ctx, "links.html", access, page=page, status=201)


def revoke(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """Revoke a link: it no longer opens, and the session it opened ends."""
    _host_admin(access)
    portal.links.revoke(access.workspace, form.get("link"), actor=access.actor)
    return redirect(f"{workspace_url(ctx, access.workspace, 'links')}?revoked=1")
