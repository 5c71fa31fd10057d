"""The link import's views (part of SCIM's set-up): upload an export, review its plan, apply it.

Applying goes one claimed batch per request: the form starts it, and the
progress page, refreshing itself without JavaScript, applies the next
batch each time it is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pbidentity.exceptions import InputError
from pbidentity.http import Response
from pbidentity.link_imports import import_state
from pbidentity.portal import _forms
from pbidentity.portal import _imports
from pbidentity.portal._access import PortalAccess
from pbidentity.portal._views import PAGE_HEADERS
from pbidentity.portal._views import Context
from pbidentity.portal._views import Query
from pbidentity.portal._views import list_view
from pbidentity.portal._views import quote_segment
from pbidentity.portal._views import redirect
from pbidentity.portal._views import workspace_url

if TYPE_CHECKING:
    from pbidentity.portal._portal import Portal

__all__ = ["apply", "conflicts_csv", "imports", "plan", "progress", "upload"]


def _import_url(ctx: Context, workspace: str, import_id: str = "") -> str:
    """The imports page, or one import's page."""
    here = workspace_url(ctx, workspace, "scim/import")
    return f"{here}/{quote_segment(import_id)}" if import_id else here


def imports(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """The upload form and the workspace's recent imports."""
    page = _imports.imports_page(portal.link_imports, access.workspace)
    return portal._render(ctx, "import.html", access, page=page)


def upload(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """Plan an uploaded IdP export and keep it; its page shows the plan."""
    try:
        record = _imports.stage_upload(
            portal.link_imports,
            access.workspace,
            form.files.get("export"),
            form.filenames.get("export", ""),
            actor=access.actor,
        )
    except InputError as error:
        page = _imports.imports_page(portal.link_imports, access.workspace, error=str(error))
        return portal._render(ctx, "import.html", access, page=page, status=400)
    return redirect(_import_url(ctx, access.workspace, record.id))


def plan(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """A page of one list of an import's plan (changes, conflicts, unchanged)."""
    import_id = ctx.segments["import_id"]

    def build(query: Query) -> _imports.PlanPage:
        return _imports.plan_page(
            portal.link_imports,
            access.workspace,
            import_id,
            list_name=query("list"),
            page=int(query("page") or "1"),
        )

    return list_view(
        portal, ctx, access, "import_plan.html", build, retry="start from the first page"
    )


def apply(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """Start applying the plan: the first batch now, the others from the progress page."""
    import_id = ctx.segments["import_id"]
    portal.link_imports.start(access.workspace, import_id)
    portal.link_imports.apply_next(access.workspace, import_id, actor=access.actor)
    return redirect(f"{_import_url(ctx, access.workspace, import_id)}/progress")


def progress(portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form) -> Response:
    """Apply the next batch and show how far it got; the import's page once it is done."""
    import_id = ctx.segments["import_id"]
    # A GET that writes, on purpose: it continues (one claimed batch) an
    # import a CSRF-checked form started, never starts one, so that the
    # page can refresh itself without JavaScript. HEAD only reads.
    if ctx.request.method == "HEAD":
        record = portal.link_imports.get(access.workspace, import_id)
    else:
        record = portal.link_imports.apply_next(access.workspace, import_id, actor=access.actor)
    if import_state(record) != "applying":
        return redirect(_import_url(ctx, access.workspace, import_id))
    page = _imports.plan_page(
        portal.link_imports, access.workspace, import_id, record=record, refresh=True
    )
    return portal._render(ctx, "import_plan.html", access, page=page)


def conflicts_csv(
    portal: Portal, ctx: Context, access: PortalAccess, form: _forms.Form
) -> Response:
    """The plan's conflicts as a CSV download, to sort out in a spreadsheet."""
    import_id = ctx.segments["import_id"]
    body = _imports.conflicts_csv(portal.link_imports, access.workspace, import_id)
    name = _imports.conflicts_filename(access.workspace, import_id)
    return Response(
        status=200,
        headers=(
            ("Content-Type", "text/csv; charset=utf-8"),
            ("Content-Disposition", f'attachment; filename="{name}"'),
            *PAGE_HEADERS[1:],
        ),
        body=body,
    )
