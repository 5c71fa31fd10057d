"""The meaning of a resolved filter and sort, as plain Python over domain values.

This module is the reference semantics of :mod:`pbidentity.query`: the memory
store filters and sorts with it, the SQL store stores the values it extracts
(:func:`document_value`, :func:`scalar`, :func:`elements`) in its typed
columns so that its compiled SQL gives the same answers, and the property
tests use it as the oracle that both backends must agree with. It is pure: no
I/O, no storage state, no SCIM strings; it must not grow backend-specific
shortcuts, since every rule here has to be expressible in portable SQL.

Rules (both backends implement exactly these):

* A field is looked up by key in the resource's registry (``USER_FIELDS`` or
  ``GROUP_FIELDS``); type and ``caseExact`` come from the registry, and a field
  the resource does not have is a caller bug (``ValueError``).
* Stored values are normalised by :func:`scalar`: for string and reference
  fields, ``str`` as is, JSON booleans as ``"true"``/``"false"``, numbers via
  ``str()``; objects and arrays count as absent. For boolean fields, ``bool``
  as is and the strings ``"true"``/``"false"`` (any case) as booleans;
  anything else is absent. Datetimes are converted to UTC (naive ones are
  taken to be UTC). Values come from the document as stored, with no defaults:
  a member whose document has no ``active`` matches neither ``active eq true``
  nor ``active eq false`` (``Member.active``'s "absent means active" is not
  applied), just as the rendered document shows no ``active``.
* Operands are coerced by :func:`operand`; one of the wrong type (``"yes"``
  for a boolean) is a caller bug (``TypeError``).
* Multi-valued attributes: a non-list is treated as having no elements, and
  elements that are not JSON objects are skipped. ``position`` (used by sort)
  is the index among the kept elements.
* Comparisons: strings of non-``caseExact`` fields compare as ``fold(a)``
  against ``fold(b)``; ``gt/ge/lt/le`` are code-point order. Booleans answer
  only ``eq``/``ne`` (any other operator is false); datetimes answer everything
  but ``co/sw/ew`` (false).
* A missing value: ``ne x`` is true, every other operator with a non-null
  operand is false. ``eq null`` means "not present" and ``ne null`` "present",
  where present is what ``pr`` tests: not missing and not ``""`` (and, for a
  multi-valued attribute, at least one element with such a value).
  An empty string is still a value for ``eq ""``/``ne ""``.
* Outside a ``ValueFilter``, a comparison or ``pr`` on a field of a
  multi-valued attribute is true when ANY element satisfies it, so a member
  with no emails matches neither ``emails.value eq "x"`` nor
  ``emails.value ne "x"`` (write ``not (emails.value eq "x")`` for "no email
  is x"). The exception is null: ``emails.value eq null`` is
  ``not (emails.value pr)`` and ``emails.value ne null`` is
  ``emails.value pr``, at the attribute level. Inside
  ``ValueFilter(attribute, inner)`` every field of ``inner`` is read from the
  same element (there, ``eq null`` is "this element lacks the sub-attribute").
  A ``ValueFilter`` nested in another, or a field of another attribute (or a
  single-valued one) inside it, is a caller bug (``ValueError``).
* Sort: by the (folded when not ``caseExact``) value; missing values last
  ascending and first descending; ties by id ascending in both directions.
  For a field of a multi-valued attribute the key is the sub-attribute of the
  first element (by position) that is primary and has it, else of the first
  element that has it. ``groups.*`` and ``members.*`` cannot be sort keys
  (``ValueError``): RFC 7644 sorts by single values and no IdP asks for it.
* ``members.display`` of a group is the member's :attr:`Member.display_name`
  (displayName, else given and family name), else its userName: the same
  string :func:`reference_display` computes for ``group_members``.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import UTC
from datetime import datetime
from typing import Any
from typing import TypeAlias

import attrs
import orjson

from pbidentity.domain import Group
from pbidentity.domain import Member
from pbidentity.domain import MemberRef
from pbidentity.domain import fold
from pbidentity.query import ENTERPRISE_URN
from pbidentity.query import GROUP_FIELDS
from pbidentity.query import USER_FIELDS
from pbidentity.query import And
from pbidentity.query import CompareOp
from pbidentity.query import Field
from pbidentity.query import Filter
from pbidentity.query import Not
from pbidentity.query import Or
from pbidentity.query import Present
from pbidentity.query import Sort
from pbidentity.query import ValueFilter

__all__ = [
    "RELATION_ATTRIBUTES",
    "GroupView",
    "MemberView",
    "Scalar",
    "document_value",
    "dump_document",
    "elements",
    "group_display",
    "load_document",
    "matches",
    "operand",
    "present",
    "reference_display",
    "registry_field",
    "scalar",
    "sort_value",
    "sorted_indexes",
    "utc",
]

Scalar: TypeAlias = str | bool | datetime | None

#: The attributes whose elements come from memberships, not from the document.
RELATION_ATTRIBUTES = frozenset({"groups", "members"})

_SUBSTRING: frozenset[CompareOp] = frozenset({"co", "sw", "ew"})


@attrs.frozen
class MemberView:
    """A member as a filter sees it: the member and the groups it belongs to."""

    member: Member
    groups: Sequence[MemberRef] = ()


@attrs.frozen
class GroupView:
    """A group as a filter sees it: the group and its members."""

    group: Group
    members: Sequence[MemberRef] = ()


View: TypeAlias = MemberView | GroupView


def utc(value: datetime) -> datetime:
    """The same instant as an aware UTC datetime (naive values are taken to be UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def dump_document(attributes: Mapping[str, Any]) -> str:
    """The canonical JSON text of a SCIM document, as both backends store it.

    The memory store round-trips documents through this too, so that it hands
    back exactly what the SQL store would (fresh dicts, lists for tuples) and
    refuses what the SQL store could not keep.
    """
    return orjson.dumps(attributes, default=_json_default).decode()


def _json_default(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"a SCIM document cannot hold {type(value).__name__} values")


def load_document(text: str) -> dict[str, Any]:
    """The document :func:`dump_document` wrote."""
    document: dict[str, Any] = orjson.loads(text)
    return document


def group_display(group: Group) -> str | None:
    """The name shown for a group in a member's ``groups``: its displayName."""
    return _as_text(group.attributes.get("displayName"))


def reference_display(member: Member) -> str | None:
    """The name shown for a member in a group's ``members``: displayName, else userName."""
    return member.display_name or _as_text(member.attributes.get("userName"))


def registry_field(field: Field, *, group: bool) -> Field:
    """The registry's definition of ``field`` for a member or group resource."""
    registry = GROUP_FIELDS if group else USER_FIELDS
    found = registry.get(field.key.lower())
    if found is None:
        kind = "group" if group else "member"
        raise ValueError(f"{field.key!r} is not a searchable {kind} attribute")
    return found


def _as_text(raw: Any) -> str | None:
    if type(raw) is str:  # the common case, ahead of the slower ABC checks
        return raw
    if raw is None or isinstance(raw, Mapping | list | tuple):
        return None
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool):
        # JSON's spelling, so that ``"true"`` in a string field matches a JSON true.
        return "true" if raw else "false"
    return str(raw)


def scalar(field: Field, raw: Any) -> Scalar:
    """Normalise a stored value of ``field`` to what comparisons and columns hold."""
    if field.type == "boolean":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        return None
    if field.type == "datetime":
        return utc(raw) if isinstance(raw, datetime) else None
    return _as_text(raw)


def operand(field: Field, value: Scalar) -> Scalar:
    """Coerce a filter operand to ``field``'s type (not yet folded).

    The SCIM layer already sends values of the right type; this only accepts
    the unambiguous spellings (``"true"`` for a boolean, ISO text for a
    datetime) and raises ``TypeError`` for anything else, which is a bug.
    """
    if value is None:
        return None
    if field.type == "boolean":
        coerced = scalar(field, value)
        if coerced is None:
            raise TypeError(f"{field.key} compares with a boolean, not {value!r}")
        return coerced
    if field.type == "datetime":
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise TypeError(f"{field.key} compares with a datetime, not {value!r}") from None
        if not isinstance(value, datetime):
            raise TypeError(f"{field.key} compares with a datetime, not {value!r}")
        return utc(value)
    if isinstance(value, datetime):
        return utc(value).isoformat()
    return _as_text(value)


def present(value: Scalar) -> bool:
    """What ``pr`` tests: a value that is neither missing nor the empty string."""
    return value is not None and value != ""


def document_value(field: Field, attributes: Mapping[str, Any]) -> Scalar:
    """The value of a single-valued field as stored in a canonical SCIM document."""
    key = field.key
    container: Any = attributes
    if key.startswith(ENTERPRISE_URN + ":"):
        container = attributes.get(ENTERPRISE_URN)
        key = key[len(ENTERPRISE_URN) + 1 :]
    for part in key.split("."):
        if not isinstance(container, Mapping):
            return None
        container = container.get(part)
    return scalar(field, container)


def elements(attributes: Mapping[str, Any], attribute: str) -> list[Mapping[str, Any]]:
    """The elements of a multi-valued attribute of a document, in order."""
    raw = attributes.get(attribute)
    if not isinstance(raw, list | tuple):
        return []
    return [element for element in raw if isinstance(element, dict | Mapping)]


def _refs(refs: Iterable[MemberRef]) -> list[Mapping[str, Any]]:
    return [{"value": ref.id, "display": ref.display} for ref in refs]


def _view_elements(view: View, attribute: str) -> list[Mapping[str, Any]]:
    if isinstance(view, MemberView):
        if attribute == "groups":
            return _refs(view.groups)
        return elements(view.member.attributes, attribute)
    if attribute == "members":
        return _refs(view.members)
    return elements(view.group.attributes, attribute)


def _single_value(field: Field, view: View) -> Scalar:
    resource: Member | Group = view.member if isinstance(view, MemberView) else view.group
    key = field.key
    if key == "id":
        return resource.id
    if key == "meta.created":
        return utc(resource.created)
    if key == "meta.lastModified":
        return utc(resource.last_modified)
    if key == "role" and isinstance(resource, Member):
        return scalar(field, resource.role_attribute)
    return document_value(field, resource.attributes)


def _element_value(field: Field, element: Mapping[str, Any]) -> Scalar:
    return scalar(field, element.get(field.sub or ""))


def _compare(field: Field, op: CompareOp, actual: Scalar, wanted: Scalar) -> bool:
    """``actual op wanted`` for one value, ``wanted`` already coerced."""
    if wanted is None:
        if op == "eq":
            return not present(actual)
        if op == "ne":
            return present(actual)
        return False
    if actual is None:
        return op == "ne"
    if field.type == "boolean":
        if op == "eq":
            return actual == wanted
        if op == "ne":
            return actual != wanted
        return False
    if field.type == "datetime" and op in _SUBSTRING:
        return False
    if isinstance(actual, str) and isinstance(wanted, str) and not field.case_exact:
        actual, wanted = fold(actual), fold(wanted)
    return _apply(op, actual, wanted)


def _apply(op: CompareOp, actual: Any, wanted: Any) -> bool:
    # ``Any`` because the pair is either two strings or two datetimes; the
    # callers guarantee they are of one type.
    result: bool
    if op == "eq":
        result = actual == wanted
    elif op == "ne":
        result = actual != wanted
    elif op == "co":
        result = wanted in actual
    elif op == "sw":
        result = actual.startswith(wanted)
    elif op == "ew":
        result = actual.endswith(wanted)
    elif op == "gt":
        result = actual > wanted
    elif op == "ge":
        result = actual >= wanted
    elif op == "lt":
        result = actual < wanted
    else:
        result = actual <= wanted
    return result


def matches(filter: Filter, view: MemberView | GroupView) -> bool:
    """Whether the member or group ``view`` satisfies ``filter``."""
    return _match(filter, view, None)


def _match(node: Filter, view: View, scope: tuple[str, Mapping[str, Any]] | None) -> bool:
    group = isinstance(view, GroupView)
    if isinstance(node, And):
        return _match(node.left, view, scope) and _match(node.right, view, scope)
    if isinstance(node, Or):
        return _match(node.left, view, scope) or _match(node.right, view, scope)
    if isinstance(node, Not):
        return not _match(node.operand, view, scope)
    if isinstance(node, ValueFilter):
        if scope is not None:
            raise ValueError("a value filter cannot be nested in another")
        _check_attribute(node.attribute, group=group)
        return any(
            _match(node.filter, view, (node.attribute, element))
            for element in _view_elements(view, node.attribute)
        )
    field = registry_field(node.field, group=group)
    if scope is not None:
        attribute, element = scope
        if field.multi != attribute:
            raise ValueError(f"{field.key!r} is not a sub-attribute of {attribute!r}")
        value = _element_value(field, element)
        if isinstance(node, Present):
            return present(value)
        return _compare(field, node.op, value, operand(field, node.value))
    if field.multi is None:
        value = _single_value(field, view)
        if isinstance(node, Present):
            return present(value)
        return _compare(field, node.op, value, operand(field, node.value))
    values = [_element_value(field, element) for element in _view_elements(view, field.multi)]
    if isinstance(node, Present) or node.value is None:
        any_present = any(present(value) for value in values)
        if isinstance(node, Present) or node.op == "ne":
            return any_present
        return not any_present if node.op == "eq" else False
    wanted = operand(field, node.value)
    return any(_compare(field, node.op, value, wanted) for value in values)


def _check_attribute(attribute: str, *, group: bool) -> None:
    registry = GROUP_FIELDS if group else USER_FIELDS
    if not any(field.multi == attribute for field in registry.values()):
        raise ValueError(f"{attribute!r} is not a multi-valued attribute one can filter on")


def sort_value(field: Field, view: MemberView | GroupView) -> Scalar:
    """The value ``view`` is ordered by for ``field`` (folded when not caseExact)."""
    field = registry_field(field, group=isinstance(view, GroupView))
    if field.multi is None:
        value = _single_value(field, view)
    elif field.multi in RELATION_ATTRIBUTES:
        raise ValueError(f"cannot sort by {field.key!r}")
    else:
        candidates = [
            (element, _element_value(field, element))
            for element in _view_elements(view, field.multi)
        ]
        candidates = [(element, value) for element, value in candidates if value is not None]
        primary = USER_FIELDS[f"{field.multi}.primary".lower()]
        value = next(
            (value for element, value in candidates if _element_value(primary, element) is True),
            candidates[0][1] if candidates else None,
        )
    if isinstance(value, str) and not field.case_exact:
        return fold(value)
    return value


def sorted_indexes(sort: Sort | None, views: Sequence[View]) -> list[int]:
    """The order of ``views`` (as indexes) under ``sort``, ties broken by id."""

    def resource_id(index: int) -> str:
        view = views[index]
        return view.member.id if isinstance(view, MemberView) else view.group.id

    order = sorted(range(len(views)), key=resource_id)
    if sort is None:
        return order
    values = [sort_value(sort.field, view) for view in views]
    # Two stable sorts: by id, then by value; ``reverse`` keeps equal keys in
    # their (id) order, so ties stay ascending by id in both directions. The
    # leading flag puts missing values last ascending, first descending.
    return sorted(
        order,
        key=lambda index: (values[index] is None, _Orderable(values[index])),
        reverse=sort.descending,
    )


@attrs.frozen(order=False)
class _Orderable:
    """A sort value that compares only with values of the same field (all one type)."""

    value: Scalar

    def __lt__(self, other: _Orderable) -> bool:
        if self.value is None or other.value is None:
            return False
        return bool(self.value < other.value)  # type: ignore[operator]
