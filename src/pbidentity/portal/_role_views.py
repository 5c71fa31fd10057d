"""The role policy's views: the policy, a preview of what a change would do, and applying it.

Applying saves the policy the preview was made against only: if another
admin changed it meanwhile, nothing is saved and the page says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pbidentity.exceptions import InputError
from pbidentity.http import Response
from pbidentity.portal import _forms
from pbidentity.portal import _roles
from pbidentity.portal._access import PortalAccess
from pbidentity.portal._views import Context
from pbidentity.portal._views import redirect
from pbidentity.portal._views import workspace_url

if TYPE_CHECKING:
    from pbidentity.portal._portal import Portal

__all__ = ["apply", "policy", "preview"]


def _refused(portal: Portal, ctx: Context, access: PortalAccess, error: InputError) -> Response:
    """The policy page with the sentence that says what in the form cannot be used."""
    page = _roles.roles_page(portal.identity, access.workspace, error=str(error))
    return portal._render(ctx, "roles.html", access, page=page, status=400)


def policy(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """The workspace's role policy, with a notice after it was applied."""
    applied = ctx.request.query_value("applied")
    notice = None
    if applied is not None and applied.isdigit():
        changed = int(applied)
        notice = (
            f"The role policy was saved; {changed} member{'s' if changed != 1 else ''} "
            "changed role (recorded in the audit trail)."
        )
    page = _roles.roles_page(portal.identity, access.workspace, notice=notice)
    return portal._render(ctx, "roles.html", access, page=page)


def preview(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """What the policy in the form would change, with examples; nothing is saved."""
    try:
        proposed = _roles.policy_from_form(portal.identity, access.workspace, form)
    except InputError as error:
        return _refused(portal, ctx, access, error)
    previewed = portal.identity.admin.preview_policy(
        access.workspace, proposed, examples=_roles.EXAMPLES
    )
    page = _roles.roles_page(
        portal.identity, access.workspace, proposed=previewed.policy, preview=previewed
    )
    return portal._render(ctx, "roles.html", access, page=page)


def apply(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """Save the previewed policy and re-decide the members' roles."""
    try:
        outcome = _roles.apply_policy(portal.identity, access.workspace, form, actor=access.actor)
    except InputError as error:
        return _refused(portal, ctx, access, error)
    if isinstance(outcome, _roles.NotApplied):
        return portal._render(ctx, "roles.html", access, page=outcome.page, status=outcome.status)
    here = workspace_url(ctx, access.workspace, "roles")
    return redirect(f"{here}?applied={outcome.role_changes}")
