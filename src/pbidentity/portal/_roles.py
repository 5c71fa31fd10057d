"""The Role policy page: the workspace's role policy as a form, its preview, then applying it.

The form edits the role part of the tenant's policy only (linking and
deprovisioning are kept as they are). Saving is two steps: *Preview* decides
every member again under the proposed policy without writing
(:meth:`pbidentity.admin.Admin.preview_policy`) and shows who would change
role and by which rule; *Apply* saves it. The form carries two fingerprints:
the stored policy's when the page was drawn (so applying refuses if someone
changed it meanwhile) and the previewed policy's (so that what is applied is
what was previewed, not a form edited after the preview). Nothing here knows
about HTTP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Literal

import attrs

from pbidentity._lifecycle import tenant_by_slug
from pbidentity.exceptions import ConfigurationError
from pbidentity.exceptions import InputError
from pbidentity.exceptions import LastAdminError
from pbidentity.exceptions import PolicyChangedError
from pbidentity.policy import TenantPolicy
from pbidentity.preview import PolicyPreview
from pbidentity.query import Query
from pbidentity.roles import GroupMapping
from pbidentity.roles import RoleMode
from pbidentity.roles import RolePolicy

if TYPE_CHECKING:
    from pbidentity._front import PbIdentity
    from pbidentity.portal._forms import Form

__all__ = ["MappingRow", "RolesPage", "apply_policy", "policy_from_form", "roles_page"]

#: The most group mappings the form takes: a workspace maps a handful of groups.
MAX_MAPPINGS = 100
#: Empty rows under the mappings, to add new ones without JavaScript.
BLANK_ROWS = 3
#: The most groups offered to pick from; more can be typed by name or id.
MAX_GROUPS_LISTED = 500
#: Members shown per role change in the preview.
EXAMPLES = 5

MODES: tuple[tuple[RoleMode, str], ...] = (
    ("hybrid", "Hybrid: the member's own role value, else their groups"),
    ("group-based", "Group-based: groups only"),
    ("user-personal", "User-personal: the member's own role value only"),
)
_MODE_OF: dict[str, RoleMode] = {value: value for value, _ in MODES}
_PRIORITY_LIMIT = 1_000_000


@attrs.frozen
class MappingRow:
    """One row of the mappings table (blank rows have an empty ``group``)."""

    index: int
    group: str
    by: Literal["name", "id"]
    role: str
    priority: int | str


@attrs.frozen
class GroupOption:
    """A workspace group the admin can map."""

    id: str
    name: str


@attrs.frozen(kw_only=True)
class RolesPage:
    """The Role policy page: the policy as a form, and a preview once asked for."""

    section = "roles"
    workspace: str
    role_names: tuple[str, ...]
    modes: tuple[tuple[RoleMode, str], ...]
    groups: tuple[GroupOption, ...]
    mode: RoleMode
    default_role: str
    prefer_less_privileged: bool
    admin_guard: bool
    rows: tuple[MappingRow, ...]
    #: The fingerprint of the stored policy this form was drawn from.
    current: str
    #: The fingerprint of the proposed policy the preview shows ("" before a preview).
    previewed: str
    preview: PolicyPreview | None
    error: str | None
    notice: str | None


def roles_page(
    identity: PbIdentity,
    workspace: str,
    *,
    proposed: TenantPolicy | None = None,
    preview: PolicyPreview | None = None,
    error: str | None = None,
    notice: str | None = None,
) -> RolesPage:
    """The page for ``workspace``: its stored policy, or the ``proposed`` one with its preview."""
    with identity.storage.transaction(write=False) as tx:
        tenant = tenant_by_slug(tx, workspace)
        stored = TenantPolicy.of(tenant)
        found = tx.query_groups(tenant.id, Query(count=MAX_GROUPS_LISTED, with_total=False))
    groups = tuple(
        sorted(
            (GroupOption(id=g.id, name=g.display_name) for g in found.items),
            key=lambda g: (g.name.casefold(), g.id),
        )
    )
    shown = (proposed or stored).roles
    # Highest priority first: the order in which the mappings win.
    ordered = sorted(shown.mappings, key=lambda m: -m.priority)
    rows = [
        MappingRow(
            index=i,
            group=m.group_name if m.group_name is not None else str(m.group_id),
            by="name" if m.group_name is not None else "id",
            role=m.role,
            priority=m.priority,
        )
        for i, m in enumerate(ordered)
    ]
    rows += [
        MappingRow(index=len(rows) + i, group="", by="name", role="", priority="")
        for i in range(BLANK_ROWS)
    ]
    return RolesPage(
        workspace=workspace,
        role_names=identity.admin.roles.names,
        modes=MODES,
        groups=groups,
        mode=shown.mode,
        default_role=shown.default_role or "",
        prefer_less_privileged=shown.prefer_less_privileged,
        admin_guard=shown.admin_guard,
        rows=tuple(rows),
        current=preview.current_fingerprint if preview is not None else stored.fingerprint,
        previewed=preview.policy.fingerprint if preview is not None else "",
        preview=preview,
        error=error,
        notice=notice,
    )


def policy_from_form(identity: PbIdentity, workspace: str, form: Form) -> TenantPolicy:
    """The policy the form proposes (the stored one's linking and deprovisioning kept).

    :class:`InputError` names the first field that cannot be read.
    """
    roles = identity.admin.roles
    mode = _MODE_OF.get(form.get("mode"))
    if mode is None:
        raise InputError("Mode: choose hybrid, group-based or user-personal.")
    try:
        rows = int(form.get("rows", "0"))
    except ValueError:
        raise InputError("The form is out of date: reload the page.") from None
    if not 0 <= rows <= MAX_MAPPINGS + BLANK_ROWS:
        raise InputError(f"A policy maps at most {MAX_MAPPINGS} groups.")
    mappings: list[GroupMapping] = []
    for i in range(rows):
        group = form.get(f"group_{i}").strip()
        if not group or form.get(f"remove_{i}") == "on":
            continue
        row = i + 1
        role = roles.canonical(form.get(f"role_{i}"))
        if role is None:
            raise InputError(f"Mapping {row} ({group}): choose one of {', '.join(roles.names)}.")
        text = form.get(f"priority_{i}").strip() or "0"
        try:
            priority = int(text)
        except ValueError:
            raise InputError(
                f"Mapping {row} ({group}): the priority is a whole number, not {text!r}."
            ) from None
        if abs(priority) > _PRIORITY_LIMIT:
            raise InputError(f"Mapping {row} ({group}): keep the priority within ±1,000,000.")
        by_id = form.get(f"by_{i}") == "id"
        mappings.append(
            GroupMapping(
                role=role,
                group_id=group if by_id else None,
                group_name=None if by_id else group,
                priority=priority,
            )
        )
    if len(mappings) > MAX_MAPPINGS:
        raise InputError(f"A policy maps at most {MAX_MAPPINGS} groups.")
    default = form.get("default_role").strip()
    if default and roles.canonical(default) is None:
        raise InputError(f"Default role: choose one of {', '.join(roles.names)}.")
    proposed = RolePolicy(
        mode=mode,
        mappings=tuple(mappings),
        default_role=roles.canonical(default) if default else None,
        prefer_less_privileged=form.get("tie") == "less",
        admin_guard=form.get("admin_guard") == "on",
    )
    try:
        proposed.check(roles)
    except ConfigurationError as error:  # pragma: no cover - every role was read as canonical
        raise InputError(str(error)) from None
    stored = identity.admin.get_policy(workspace)
    return attrs.evolve(stored, roles=proposed)


@attrs.frozen
class Applied:
    """The policy was saved: how many members changed role."""

    role_changes: int


@attrs.frozen
class NotApplied:
    """Applying did not happen: the page to show again, and its status."""

    page: RolesPage
    status: int


def apply_policy(
    identity: PbIdentity, workspace: str, form: Form, *, actor: str
) -> Applied | NotApplied:
    """Apply the previewed policy, or say why not with a fresh preview.

    Refused (nothing saved) when the form changed since its preview, when
    the stored policy changed since the page was drawn, and when the admin
    guard would leave the workspace without an admin.
    """
    proposed = policy_from_form(identity, workspace, form)
    checked = proposed.check(identity.admin.roles)
    fresh = identity.admin.preview_policy(workspace, checked, examples=EXAMPLES)
    if form.get("previewed") != checked.fingerprint:
        note = "The policy in the form is not the one previewed: check this preview, then apply."
        page = roles_page(identity, workspace, proposed=checked, preview=fresh, notice=note)
        return NotApplied(page, 409)
    try:
        identity.admin.set_policy(workspace, checked, actor=actor, expected=form.get("current"))
    except PolicyChangedError:
        error = (
            "Someone changed the role policy since this preview, so nothing was saved. "
            "Here is the preview against the policy as it is now: check it, then apply."
        )
        page = roles_page(identity, workspace, proposed=checked, preview=fresh, error=error)
        return NotApplied(page, 409)
    except LastAdminError as refusal:
        message = str(refusal)
        page = roles_page(
            identity,
            workspace,
            proposed=checked,
            preview=fresh,
            error=message[:1].upper() + message[1:],
        )
        return NotApplied(page, 409)
    return Applied(fresh.role_changes)
