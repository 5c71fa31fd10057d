"""The SCIM section's link import: upload an IdP export, see its plan, apply it, export conflicts.

Before an IdP provisions people the app already has (users assigned in Okta
before SCIM was switched on), an IT admin links them in one go: the upload
is parsed (:func:`~pbidentity.linking.parse_identities`, bounded by
:data:`MAX_UPLOAD_BYTES` and :data:`MAX_IDENTITIES`), planned and kept
server-side (:class:`~pbidentity.link_imports.LinkImports`); its plan page
changes nothing and shows the counts and the steps, a page at a time. Apply
is a form (CSRF-checked) that starts the import and applies a first batch;
the progress page then applies one batch per request and refreshes itself
(``<meta http-equiv="refresh">``, no JavaScript) until the last one. A GET of
the progress page only continues an import a form started: it never starts
one, and each batch is claimed once, so two tabs or a reload change nothing
twice. The conflicts (and steps skipped at apply) download as CSV with
formula-looking cells neutralised.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Literal

import attrs

from pbidentity.exceptions import InputError
from pbidentity.link_imports import ImportList
from pbidentity.link_imports import LinkImports
from pbidentity.link_imports import import_state
from pbidentity.linking import LinkStep
from pbidentity.linking import parse_identities

if TYPE_CHECKING:
    from pbidentity.domain import LinkImport

__all__ = [
    "MAX_IDENTITIES",
    "MAX_UPLOAD_BYTES",
    "STEPS_PER_PAGE",
    "ImportsPage",
    "PlanPage",
    "conflicts_csv",
    "imports_page",
    "plan_page",
    "source_name",
    "stage_upload",
]

#: The largest export file accepted: about 250,000 rows of an Okta users report.
MAX_UPLOAD_BYTES = 32 * 1024 * 1024
#: The most identities one import plans; a larger IdP is imported in parts.
MAX_IDENTITIES = 200_000
#: Steps on one page of a plan's list.
STEPS_PER_PAGE = 100
#: Skipped steps listed on the result (all of them are in the CSV).
SKIPPED_SHOWN = 100

_MIB = MAX_UPLOAD_BYTES // (1024 * 1024)
#: The limits as the upload page states them.
LIMITS = f"a CSV or JSON file of at most {_MIB} MiB and {MAX_IDENTITIES:,} identities"

_LIST_TITLES: dict[ImportList, str] = {
    "changes": "Changes",
    "conflicts": "Conflicts",
    "unchanged": "Unchanged",
}
# A CSV cell a spreadsheet would run as a formula (OWASP's list: = + - @,
# and tab and carriage return, which some spreadsheets strip first).
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


@attrs.frozen
class ImportRow:
    """One recent import as the upload page lists it."""

    id: str
    source: str
    created: str
    created_by: str
    state: str
    summary: str


@attrs.frozen
class ImportsPage:
    """The upload form and the workspace's recent imports."""

    workspace: str
    imports: tuple[ImportRow, ...]
    limits: str = LIMITS
    error: str | None = None
    section: str = "scim"


@attrs.frozen
class StepRow:
    """One step of a plan as its table shows it."""

    action: str
    user_name: str
    external_id: str
    email: str
    member_id: str
    matched_by: str
    reason: str
    candidates: tuple[str, ...]


@attrs.frozen
class PlanPage:
    """An import: its plan's counts and a page of one list, its progress, or its result."""

    workspace: str
    id: str
    source: str
    created: str
    created_by: str
    expires: str
    state: Literal["planned", "applying", "applied"]
    counts: dict[str, int]
    result: dict[str, int]
    #: Steps of the changes applied so far, and the changes in all.
    applied_steps: int
    total_steps: int
    list_name: ImportList
    lists: tuple[tuple[ImportList, str, int], ...]
    steps: tuple[StepRow, ...]
    page: int
    pages: int
    skipped: tuple[StepRow, ...] = ()
    #: Whether this answer refreshes itself to apply the next batch.
    refresh: bool = False
    section: str = "scim"

    @property
    def percent(self) -> int:
        """How much of the changes is applied, in percent."""
        return 100 * self.applied_steps // self.total_steps if self.total_steps else 100


def source_name(filename: str) -> str:
    """The uploaded file's name to show: no folders, no control characters, 200 characters."""
    name = re.split(r"[/\\]", filename)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:200] or "upload"


def stage_upload(
    imports: LinkImports, workspace: str, data: bytes | None, filename: str, *, actor: str
) -> LinkImport:
    """Parse, plan and keep an uploaded export; :class:`InputError` saying what is wrong."""
    if not data:
        raise InputError("Choose the export file first (CSV or JSON).")
    if len(data) > MAX_UPLOAD_BYTES:
        raise InputError(f"The file is larger than {_MIB} MiB: split the export into parts.")
    name = source_name(filename)
    suffix = name.lower().rpartition(".")[2]
    kind: Literal["csv", "json"] | None = (
        "csv" if suffix == "csv" else "json" if suffix == "json" else None
    )
    identities = parse_identities(data, name=name, kind=kind, limit=MAX_IDENTITIES)
    return imports.stage(workspace, identities, source=name, actor=actor)


def imports_page(imports: LinkImports, workspace: str, *, error: str | None = None) -> ImportsPage:
    """The upload page of a workspace."""
    rows = tuple(
        ImportRow(
            id=record.id,
            source=record.source,
            created=_when(record.created),
            created_by=record.created_by,
            state=import_state(record),
            summary=_summary(record),
        )
        for record in imports.recent(workspace)
    )
    return ImportsPage(workspace=workspace, imports=rows, error=error)


def plan_page(
    imports: LinkImports,
    workspace: str,
    import_id: str,
    *,
    list_name: str = "",
    page: int = 1,
    record: LinkImport | None = None,
    refresh: bool = False,
) -> PlanPage:
    """An import's page: a page of one list of its plan, its progress and its result."""
    record = record or imports.get(workspace, import_id)
    counts = dict(record.counts)
    sizes = {
        "changes": counts["create"] + counts["link"] + counts["reactivate"],
        "conflicts": counts["conflict"],
        "unchanged": counts["unchanged"],
    }
    chosen: ImportList
    if list_name in _LIST_TITLES:
        chosen = list_name
    else:
        # What needs the admin's eyes first: the conflicts, if there are any.
        chosen = "conflicts" if sizes["conflicts"] else "changes"
    pages = max(1, -(-sizes[chosen] // STEPS_PER_PAGE))
    if not 1 <= page <= pages:
        raise ValueError(f"this list has {pages} page{'s' if pages != 1 else ''}")
    steps = imports.steps(
        workspace,
        import_id,
        chosen,
        start=(page - 1) * STEPS_PER_PAGE,
        count=STEPS_PER_PAGE,
    )
    state = import_state(record)
    skipped: tuple[StepRow, ...] = ()
    if state == "applied":
        skipped = tuple(
            _row(step, why) for step, why in _first(imports.skipped(workspace, import_id))
        )
    size = record.chunks["size"]
    return PlanPage(
        workspace=workspace,
        id=record.id,
        source=record.source,
        created=_when(record.created),
        created_by=record.created_by,
        expires=_when(record.expires),
        state=state,
        counts=counts,
        result=dict(record.result),
        applied_steps=min(record.applied * size, sizes["changes"]),
        total_steps=sizes["changes"],
        list_name=chosen,
        lists=tuple((name, title, sizes[name]) for name, title in _LIST_TITLES.items()),
        steps=tuple(_row(step, step.reason) for step in steps),
        page=page,
        pages=pages,
        skipped=skipped,
        refresh=refresh and state == "applying",
    )


def conflicts_csv(imports: LinkImports, workspace: str, import_id: str) -> bytes:
    """The steps not applied (the conflicts, then any skipped at apply) as CSV, safe to open.

    Columns: identity (its userName), externalId, email, reason, candidates
    (member ids, space-separated). A cell that starts like a formula gets a
    leading ``'`` so that a spreadsheet shows it as text.
    """
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(["identity", "externalId", "email", "reason", "candidates"])
    for step, why in imports.skipped(workspace, import_id):
        identity = step.identity
        writer.writerow(
            _safe(cell)
            for cell in (
                identity.user_name,
                identity.external_id or "",
                identity.primary_email or "",
                why,
                " ".join(step.candidates),
            )
        )
    # A byte order mark: Excel then reads the file as UTF-8, not as ANSI.
    return "\ufeff".encode() + out.getvalue().encode("utf-8")


def conflicts_filename(workspace: str, import_id: str) -> str:
    """A download name safe in a header and on any file system."""
    safe = _UNSAFE_FILENAME.sub("_", f"{workspace}-{import_id}").strip("._")[:100]
    return f"conflicts-{safe or 'import'}.csv"


def _safe(cell: str) -> str:
    return f"'{cell}" if cell.startswith(_FORMULA) else cell


def _first(skipped: Iterable[tuple[LinkStep, str]]) -> list[tuple[LinkStep, str]]:
    found = []
    for item in skipped:
        found.append(item)
        if len(found) == SKIPPED_SHOWN:
            break
    return found


def _row(step: LinkStep, why: str) -> StepRow:
    identity = step.identity
    return StepRow(
        action=step.action,
        user_name=identity.user_name,
        external_id=identity.external_id or "",
        email=identity.primary_email or "",
        member_id=step.member_id or "",
        matched_by=step.matched_by or "",
        reason=why,
        candidates=step.candidates,
    )


def _summary(record: LinkImport) -> str:
    counts = record.counts
    conflicts = counts["conflict"]
    return (
        f"{counts['create']:,} to create, {counts['link']:,} to link, "
        f"{counts['reactivate']:,} to reactivate, {counts['unchanged']:,} unchanged, "
        f"{conflicts:,} conflict{'' if conflicts == 1 else 's'}"
    )


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")
