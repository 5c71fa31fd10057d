"""A second, independent reading of the filter and sort rules, for the property tests.

``pbidentity.storage._evaluate`` is what the memory store runs, so checking the
memory store against it proves nothing. This module restates the rules written
in that module's docstring from scratch, in another shape: every resource is
first flattened into a table ``field key -> list of (element number, value)``,
and filters are then answered over that table. It shares no code with the
evaluator but the domain values and ``fold`` (whose meaning is the rule itself).
Keep it plain: it is the specification, not a second optimised engine.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import UTC
from datetime import datetime
from typing import Any

from pbidentity.domain import Group
from pbidentity.domain import Member
from pbidentity.domain import MemberRef
from pbidentity.domain import fold
from pbidentity.query import ENTERPRISE_URN
from pbidentity.query import GROUP_FIELDS
from pbidentity.query import USER_FIELDS
from pbidentity.query import And
from pbidentity.query import Field
from pbidentity.query import Filter
from pbidentity.query import Not
from pbidentity.query import Or
from pbidentity.query import Present
from pbidentity.query import Sort
from pbidentity.query import ValueFilter

#: One resource as the oracle sees it: for each field key, the values it holds,
#: each with the number of the element it came from (0 for a single value).
Table = dict[str, list[tuple[int, Any]]]


def _to_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _normal(field: Field, raw: Any) -> Any:
    """A stored value as the rules read it; ``None`` when the rules say "absent"."""
    if field.type == "boolean":
        if raw is True or raw is False:
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        return None
    if field.type == "datetime":
        return _to_utc(raw) if isinstance(raw, datetime) else None
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if raw is None or isinstance(raw, dict | list | tuple | Mapping):
        return None
    return raw if isinstance(raw, str) else str(raw)


def _wanted(field: Field, value: Any) -> Any:
    """A filter operand as the rules read it."""
    if value is None:
        return None
    if field.type == "boolean":
        return _normal(field, value)
    if field.type == "datetime":
        return _to_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)
    if isinstance(value, datetime):
        return _to_utc(value).isoformat()
    return _normal(field, value)


def _elements(raw: Any) -> list[Mapping[str, Any]]:
    if not isinstance(raw, list | tuple):
        return []
    return [element for element in raw if isinstance(element, Mapping)]


def _path(document: Mapping[str, Any], key: str) -> Any:
    if key.startswith(ENTERPRISE_URN + ":"):
        document = document.get(ENTERPRISE_URN)  # type: ignore[assignment]
        key = key[len(ENTERPRISE_URN) + 1 :]
    value: Any = document
    for part in key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def member_table(member: Member, groups: Sequence[MemberRef]) -> Table:
    """The member flattened over every searchable user field."""
    refs = [{"value": ref.id, "display": ref.display} for ref in groups]
    return _table(member, USER_FIELDS, {"groups": refs}, role=member.role_attribute)


def group_table(group: Group, members: Sequence[MemberRef]) -> Table:
    """The group flattened over every searchable group field."""
    refs = [{"value": ref.id, "display": ref.display} for ref in members]
    return _table(group, GROUP_FIELDS, {"members": refs}, role=None)


def _table(
    resource: Member | Group,
    registry: Mapping[str, Field],
    relations: Mapping[str, list[dict[str, Any]]],
    role: str | None,
) -> Table:
    table: Table = {}
    for field in registry.values():
        if field.multi is None:
            if field.key == "id":
                raw: Any = resource.id
            elif field.key == "meta.created":
                raw = resource.created
            elif field.key == "meta.lastModified":
                raw = resource.last_modified
            elif field.key == "role":
                raw = role
            else:
                raw = _path(resource.attributes, field.key)
            table[field.key] = [(0, _normal(field, raw))]
        else:
            source = relations.get(field.multi)
            kept = source if source is not None else _elements(resource.attributes.get(field.multi))
            sub = field.key.rpartition(".")[2]
            table[field.key] = [
                (number, _normal(field, element.get(sub))) for number, element in enumerate(kept)
            ]
    return table


def _has(value: Any) -> bool:
    return value is not None and value != ""


def _holds(field: Field, op: str, actual: Any, wanted: Any) -> bool:
    if wanted is None:
        return {"eq": not _has(actual), "ne": _has(actual)}.get(op, False)
    if actual is None:
        return op == "ne"
    if field.type == "boolean" and op not in ("eq", "ne"):
        return False
    if field.type == "datetime" and op in ("co", "sw", "ew"):
        return False
    if field.type in ("string", "reference") and not field.case_exact:
        actual, wanted = fold(actual), fold(wanted)
    if op == "co":
        return bool(wanted in actual)
    if op == "sw":
        return bool(actual.startswith(wanted))
    if op == "ew":
        return bool(actual.endswith(wanted))
    order = {"eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "ge": operator.ge}
    order |= {"lt": operator.lt, "le": operator.le}
    return bool(order[op](actual, wanted))


def _registry(table: Table) -> Mapping[str, Field]:
    return USER_FIELDS if "userName" in table else GROUP_FIELDS


def holds(node: Filter, table: Table, element: int | None = None) -> bool:
    """Whether the flattened resource satisfies ``node`` (within one element, if given)."""
    if isinstance(node, And):
        return holds(node.left, table, element) and holds(node.right, table, element)
    if isinstance(node, Or):
        return holds(node.left, table, element) or holds(node.right, table, element)
    if isinstance(node, Not):
        return not holds(node.operand, table, element)
    if isinstance(node, ValueFilter):
        registry = _registry(table)
        keys = [field.key for field in registry.values() if field.multi == node.attribute]
        numbers = {number for key in keys for number, _ in table[key]}
        return any(holds(node.filter, table, number) for number in sorted(numbers))
    field = _registry(table)[node.field.key.lower()]
    values = [value for number, value in table[field.key] if element in (None, number)]
    if element is not None or field.multi is None:
        # One value: the element's own, or the single-valued field's.
        value = values[0] if values else None
        if isinstance(node, Present):
            return _has(value)
        return _holds(field, node.op, value, _wanted(field, node.value))
    if isinstance(node, Present) or (node.value is None and node.op == "ne"):
        return any(_has(value) for value in values)
    if node.value is None:
        return node.op == "eq" and not any(_has(value) for value in values)
    wanted = _wanted(field, node.value)
    return any(_holds(field, node.op, value, wanted) for value in values)


def _sort_key(field: Field, table: Table) -> Any:
    registry = _registry(table)
    field = registry[field.key.lower()]
    if field.multi is None:
        value = table[field.key][0][1]
    else:
        having = [(number, value) for number, value in table[field.key] if value is not None]
        primary = dict(table[f"{field.multi}.primary"])
        first_primary = [value for number, value in having if primary.get(number) is True]
        value = (first_primary or [value for _, value in having] or [None])[0]
    if isinstance(value, str) and not field.case_exact:
        value = fold(value)
    return value


def ordered(ids: Sequence[str], tables: Sequence[Table], sort: Sort | None) -> list[str]:
    """The ids in listing order: by the sort value (missing last ascending), then by id."""
    rows = sorted(zip(ids, tables, strict=True), key=lambda row: row[0])
    if sort is None:
        return [row[0] for row in rows]
    keyed = [(_sort_key(sort.field, table), resource_id) for resource_id, table in rows]
    present = [row for row in keyed if row[0] is not None]
    missing = [row[1] for row in keyed if row[0] is None]
    by_value = _ties_by_id(present, sort.descending)
    return missing + by_value if sort.descending else by_value + missing


def _ties_by_id(present: list[tuple[Any, str]], descending: bool) -> list[str]:
    """Ids by value (in the asked direction), equal values by id ascending."""
    groups: dict[Any, list[str]] = {}
    for value, resource_id in present:
        groups.setdefault(value, []).append(resource_id)
    return [
        resource_id
        for value in sorted(groups, reverse=descending)
        for resource_id in sorted(groups[value])
    ]
