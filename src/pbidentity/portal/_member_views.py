"""The members section's views: the list, one member's page, and the edit of one.

A SCIM-managed member's profile and role are the IdP's: the edit refuses
them with the member's page and the reason (see :func:`_forms.edit_member`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pbidentity.http import Response
from pbidentity.portal import _forms
from pbidentity.portal import _pages
from pbidentity.portal._access import PortalAccess
from pbidentity.portal._views import Context
from pbidentity.portal._views import Query
from pbidentity.portal._views import list_view
from pbidentity.portal._views import quote_segment
from pbidentity.portal._views import redirect
from pbidentity.portal._views import workspace_url

if TYPE_CHECKING:
    from pbidentity.portal._portal import Portal

__all__ = ["edit_member", "member", "members"]


def members(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """A page of the workspace's members, searched and filtered."""

    def build(query: Query) -> _pages.MembersPage:
        return _pages.members_page(
            portal.identity,
            access.workspace,
            search=query("q"),
            status=query("status"),
            role=query("role"),
            managed=query("managed"),
            cursor=query("cursor") or None,
        )

    return list_view(portal, ctx, access, "members.html", build, retry="start from the first page")


def member(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """One member: profile, role and why, groups, recent events."""
    page = _pages.member_page(portal.identity, access.workspace, ctx.segments["member"])
    return portal._render(ctx, "member.html", access, page=page)


def edit_member(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """Save a member's name or role; the member's page says why when it cannot."""
    member_id = ctx.segments["member"]
    refused = _forms.edit_member(
        portal.identity,
        access.workspace,
        member_id,
        given_name=form.get("given_name"),
        family_name=form.get("family_name"),
        role=form.get("role"),
        actor=access.actor,
    )
    if refused is None:
        return redirect(workspace_url(ctx, access.workspace, f"members/{quote_segment(member_id)}"))
    page = _pages.member_page(portal.identity, access.workspace, member_id, refused=refused.reason)
    return portal._render(ctx, "member.html", access, page=page, status=refused.status)
