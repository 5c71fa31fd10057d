"""The SCIM section's views: the provisioning switch, the API tokens and the requests' activity.

A new token's secret is in the answer to its creation only: the page is
rendered there and then (no redirect), and never cached.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pbidentity._front import SCIM_PREFIX
from pbidentity.exceptions import InputError
from pbidentity.http import Response
from pbidentity.portal import _activity
from pbidentity.portal import _forms
from pbidentity.portal import _pages
from pbidentity.portal._access import PortalAccess
from pbidentity.portal._views import Context
from pbidentity.portal._views import Query
from pbidentity.portal._views import list_view
from pbidentity.portal._views import origin
from pbidentity.portal._views import redirect
from pbidentity.portal._views import workspace_url

if TYPE_CHECKING:
    from pbidentity.portal._portal import Portal

__all__ = ["activity", "create_token", "provisioning", "revoke_token", "switch"]


def _page(
    portal: Portal,
    ctx: Context,
    access: PortalAccess,
    *,
    status: int = 200,
    error: str | None = None,
    new_secret: str | None = None,
    new_name: str | None = None,
) -> Response:
    """The SCIM page, with an error or a new token's secret and name."""
    # The IdP needs an absolute URL: the host's, or SCIM beside the portal.
    page = _pages.scim_page(
        portal.identity,
        access.workspace,
        base_url=portal.scim_url or origin(ctx.request.base_url) + SCIM_PREFIX,
        new_secret=new_secret,
        new_name=new_name,
        error=error,
    )
    return portal._render(ctx, "scim.html", access, page=page, status=status)


def provisioning(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """The SCIM connector's URL, the switch and the tokens."""
    return _page(portal, ctx, access)


def switch(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """Switch SCIM provisioning on or off."""
    portal.identity.admin.set_scim_enabled(access.workspace, form.get("enabled") == "on")
    return redirect(workspace_url(ctx, access.workspace, "scim"))


def create_token(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """Create a named token and show its secret, once."""
    name = form.get("name").strip()
    if any(
        t.name == name and t.is_active for t in portal.identity.admin.list_tokens(access.workspace)
    ):
        error = f"A token named {name!r} is active already: revoke it first, or pick another name."
        return _page(portal, ctx, access, status=409, error=error)
    try:
        created = portal.identity.admin.create_token(access.workspace, name)
    except InputError as failure:
        return _page(portal, ctx, access, status=400, error=str(failure))
    # The secret is in this answer only (no redirect: it would have to be
    # carried somewhere); the page is never cached (Cache-Control: no-store).
    return _page(
        portal,
        ctx,
        access,
        status=201,
        new_secret=created.secret,
        new_name=created.token.name,
    )


def revoke_token(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """Revoke the active token of the name the form gives."""
    portal.identity.admin.revoke_token(access.workspace, form.get("name"))
    return redirect(workspace_url(ctx, access.workspace, "scim"))


def activity(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """The workspace's SCIM requests, newest first, filtered."""

    def build(query: Query) -> _activity.ActivityPage:
        return _activity.activity_page(
            portal.identity,
            access.workspace,
            failures=query("failures"),
            token=query("token"),
            method=query("method"),
            status=query("status"),
            before=query("before"),
        )

    return list_view(portal, ctx, access, "activity.html", build)
