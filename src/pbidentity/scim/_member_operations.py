"""The members of a group PATCH: which operations touch them, and the ids they name.

Pure functions of a PatchOp's operations, shared by the request machinery
(which bounds the member values one PATCH may name) and the group endpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

from scim2_models import InvalidFilterException
from scim2_models import InvalidPathException
from scim2_models import InvalidValueException

from pbidentity.domain import MemberRef
from pbidentity.scim import _filter
from pbidentity.scim._limits import ScimLimits
from pbidentity.scim._render import GROUP_URN

if TYPE_CHECKING:
    from pbidentity.scim._calls import _shown


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _member_ids(members: Any) -> list[str]:
    if not isinstance(members, list):
        raise InvalidValueException(
            detail='members must be a list of {"value": "<user id>"} objects.'
        )
    ids: list[str] = []
    for index, member in enumerate(members):
        value = member.get("value") if isinstance(member, Mapping) else None
        if not isinstance(value, str) or not value:
            raise InvalidValueException(
                detail=f"members[{index}] needs a 'value' with the user's id."
            )
        for key in ("display", "$ref", "type"):
            if member.get(key) is not None and not isinstance(member[key], str):
                raise InvalidValueException(detail=f"members[{index}].{key} must be a string.")
        kind = member.get("type")
        if isinstance(kind, str) and kind.lower() == "group":
            raise InvalidValueException(
                detail=f"members[{index}]: nested groups are not supported."
            )
        ids.append(value)
    return ids


def _op_name(operation: Mapping[str, Any]) -> str:
    return str(operation.get("op", "")).lower()


def _targets_members(path: Any) -> bool:
    if not isinstance(path, str):
        return False
    lowered = path.strip().lower()
    if lowered.startswith(GROUP_URN.lower() + ":"):
        lowered = lowered[len(GROUP_URN) + 1 :]
    return lowered == "members" or lowered.startswith(("members[", "members."))


def _split_member_operations(
    operations: Sequence[Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """Separate what changes memberships from what changes the group's own attributes.

    A path-less value object carrying ``members`` (Okta, Entra) is split in two
    operations so each half goes where it belongs.
    """
    member_ops: list[Mapping[str, Any]] = []
    other_ops: list[Mapping[str, Any]] = []
    for operation in operations:
        path = operation.get("path")
        value = operation.get("value")
        if _targets_members(path):
            member_ops.append(operation)
        elif (
            path in (None, "")
            and isinstance(value, dict)
            and any(k.lower() == "members" for k in value)
        ):
            rest = {k: v for k, v in value.items() if k.lower() != "members"}
            members = next(v for k, v in value.items() if k.lower() == "members")
            member_ops.append({"op": operation.get("op"), "path": "members", "value": members})
            if rest:
                other_ops.append({**operation, "value": rest})
        else:
            other_ops.append(operation)
    return member_ops, other_ops


def _named_member_changes(
    operations: Sequence[Mapping[str, Any]], limits: ScimLimits
) -> dict[str, bool] | None:
    """Whether each member an add or remove *by id* names ends in the group, in request order.

    ``None`` when an operation replaces the members or removes them all:
    those compare the whole member list (their size is bounded by the
    membership changes they make). Any other operation names members by
    id: an ``add`` of ``members``, a ``remove`` with a value listing them
    (Entra; the id decides, as it does for adds: a ``display`` sent along
    is not compared), or a remove of ``members[value eq "id" or ...]``
    (Okta). The last operation naming an id decides, as applying them in
    order would.

    :raises InvalidFilterException: for any other filter on members: it
        would be tested against every member of a group of any size.
    """
    changes: dict[str, bool] = {}
    generic = False
    for operation in operations:
        op = _op_name(operation)
        path = operation.get("path")
        if _is_plain_member_add(operation):
            changes.update((i, True) for i in _member_ids(_as_list(operation.get("value"))))
        elif op == "remove" and _is_plain_members_path(path) and "value" in operation:
            changes.update((i, False) for i in _member_ids(_as_list(operation.get("value"))))
        elif _is_plain_members_path(path) and op in ("replace", "remove"):
            generic = True
        elif op == "remove" and isinstance(path, str):
            changes.update((i, False) for i in _ids_of_member_filter(path, limits))
        else:
            raise InvalidFilterException(
                detail=f"{op} {_shown(path)}: a filter on members can only name members by id, to "
                'remove them (members[value eq "<id>" or value eq "<id>"]); add or replace '
                "members with a value listing their ids."
            )
    return None if generic else changes


def _is_plain_members_path(path: Any) -> bool:
    return isinstance(path, str) and path.strip().lower() in (
        "members",
        f"{GROUP_URN.lower()}:members",
    )


def _ids_of_member_filter(path: str, limits: ScimLimits) -> list[str]:
    """The ids of ``members[value eq "a" or value eq "b"]``; ``InvalidFilterException`` else."""
    try:
        parsed = _filter.parse_path(path, limits)
    except _filter.PathError as error:
        raise InvalidPathException(detail=f"remove {_shown(path)}: {error.detail}") from None
    ids: list[str] = []
    stack: list[_filter.RawFilter] = [parsed.value_filter] if parsed.value_filter else []
    while stack:
        node = stack.pop()
        if isinstance(node, _filter.RawOr):
            stack.extend((node.right, node.left))
        elif (
            isinstance(node, _filter.RawComparison)
            and node.attribute.lower() == "value"
            and node.op == "eq"
            and isinstance(node.value, str)
            and node.value
        ):
            ids.append(node.value)
        else:
            ids = []
            break
    if not ids or parsed.sub_attribute is not None or parsed.urn is not None:
        raise InvalidFilterException(
            detail=f"remove {_shown(path)}: a filter on members can only name members by id "
            '(members[value eq "<id>" or value eq "<id>"]).'
        )
    return ids


def _is_plain_member_add(operation: Mapping[str, Any]) -> bool:
    path = operation.get("path")
    return (
        _op_name(operation) == "add"
        and isinstance(path, str)
        and path.strip().lower()
        in (
            "members",
            f"{GROUP_URN.lower()}:members",
        )
    )


def _membership_diff(
    refs: Sequence[MemberRef], member_ids: Sequence[str]
) -> tuple[list[str], list[str]]:
    """The (added, removed) ids that make a group's members, read as ``refs``, exactly these.

    The caller passes the members as it read them, with the group's version:
    reading them twice could see a concurrent change in between and take a
    member that left meanwhile for one to add.
    """
    wanted, current = set(member_ids), {ref.id for ref in refs}
    return sorted(wanted - current), sorted(current - wanted)
