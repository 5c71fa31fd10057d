"""The SSO section's views: the SAML settings, Save & authorize, discard, roll back, options.

A Save & authorize answers with a redirect to the IdP; the test sign-in
comes back through the host app's ``on_result`` and
:meth:`Portal.sign_in_result <pbidentity.portal.Portal.sign_in_result>`,
to this section's page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pbidentity.exceptions import InputError
from pbidentity.http import Response
from pbidentity.portal import _forms
from pbidentity.portal import _pages
from pbidentity.portal._access import PortalAccess
from pbidentity.portal._views import Context
from pbidentity.portal._views import redirect
from pbidentity.portal._views import workspace_url

if TYPE_CHECKING:
    from pbidentity.portal._portal import Portal

__all__ = ["authorize", "discard", "options", "roll_back", "save_metadata", "settings"]


def _relay(ctx: Context, workspace: str) -> str:
    """The SSO page: where a test sign-in comes back to, and where each form returns."""
    return workspace_url(ctx, workspace, "sso")


def settings(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """The SAML settings: the SP's values, the active and pending configurations."""
    page = _pages.sso_page(
        portal.identity,
        access.workspace,
        authorized=ctx.request.query_value("authorized") == "1",
    )
    return portal._render(ctx, "sso.html", access, page=page)


def save_metadata(
    portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form
) -> Response:
    """Check the IdP's metadata (a URL or a file), or save it and start Save & authorize."""
    from pbidentity.saml import AuthnRedirect

    url = form.get("metadata_url")
    outcome = _forms.submit_metadata(
        portal.identity,
        access.workspace,
        action=form.get("action", "check"),
        url=url,
        xml=form.files.get("metadata_file"),
        relay_state=_relay(ctx, access.workspace),
        actor=access.actor,
    )
    if isinstance(outcome, AuthnRedirect):
        return outcome.to_response()
    page = _pages.sso_page(portal.identity, access.workspace, report=outcome, metadata_url=url)
    status = 400 if outcome.errors else 200
    return portal._render(ctx, "sso.html", access, page=page, status=status)


def authorize(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """Start a test sign-in of the pending configuration (again)."""
    started = portal.identity.saml.begin_authorize(
        access.workspace,
        relay_state=_relay(ctx, access.workspace),
        request=ctx.request,
    )
    return started.to_response()


def discard(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """Drop the pending configuration; the active one goes on."""
    portal.identity.saml.discard_pending(access.workspace, actor=access.actor)
    return redirect(_relay(ctx, access.workspace))


def roll_back(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """Bring the previous configuration back."""
    portal.identity.saml.rollback(access.workspace, actor=access.actor)
    return redirect(_relay(ctx, access.workspace))


def options(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """Save the sign-in options: IdP-initiated sign-in, and people who are not members yet."""
    unknown = form.get("unknown_members", "refuse")
    if unknown not in ("refuse", "create"):
        raise InputError("People who are not members yet: choose refuse or create")
    portal.identity.saml.update_options(
        access.workspace,
        allow_idp_initiated=form.get("allow_idp_initiated") == "on",
        unknown_members="create" if unknown == "create" else "refuse",
        actor=access.actor,
    )
    return redirect(_relay(ctx, access.workspace))
