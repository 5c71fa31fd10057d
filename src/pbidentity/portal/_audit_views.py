"""The audit section's view: the workspace's events, newest first, filtered and paged."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pbidentity.http import Response
from pbidentity.portal import _audit
from pbidentity.portal import _forms
from pbidentity.portal._access import PortalAccess
from pbidentity.portal._views import Context
from pbidentity.portal._views import Query
from pbidentity.portal._views import list_view

if TYPE_CHECKING:
    from pbidentity.portal._portal import Portal

__all__ = ["trail"]


def trail(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """A page of the audit trail; the filters are a GET form, so a page is a link to share."""

    def build(query: Query) -> _audit.AuditPage:
        return _audit.audit_page(
            portal.identity,
            access.workspace,
            event_type=query("type"),
            actor=query("actor"),
            since=query("from"),
            until=query("to"),
            before=query("before"),
        )

    return list_view(portal, ctx, access, "audit.html", build)
