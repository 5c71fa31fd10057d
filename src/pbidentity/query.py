"""What a storage backend is asked to find: resolved filters, sort and paging.

The SCIM layer parses a filter string, resolves every attribute name against
the field registry below (case-insensitively, failing with ``invalidFilter``
on anything the store cannot answer) and hands the storage a tree of these
values. A backend therefore never sees a raw SCIM string, and every backend
answers exactly the same set of fields: the in-memory one by reading the
canonical document, the SQL one through indexed columns.

The registry is the single place that says which attributes are searchable and
how they compare (type and ``caseExact``, from RFC 7643).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from typing import Generic
from typing import Literal
from typing import TypeAlias
from typing import TypeVar

import attrs

__all__ = [
    "GROUP_FIELDS",
    "USER_FIELDS",
    "And",
    "CompareOp",
    "Comparison",
    "Field",
    "FieldType",
    "Filter",
    "Keyset",
    "Not",
    "Or",
    "Page",
    "Present",
    "Query",
    "Sort",
    "ValueFilter",
    "gather_element_tests",
]

ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

FieldType = Literal["string", "boolean", "datetime", "reference"]
CompareOp = Literal["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"]


@attrs.frozen
class Field:
    """A searchable attribute.

    ``key`` is the canonical SCIM path (``name.givenName``, ``emails.value``,
    the full URN path for extension attributes, and ``role`` for the app's
    role extension whose URN the host app chooses). ``multi`` names the
    multi-valued attribute the field is a sub-attribute of (``emails`` for
    ``emails.value``), ``None`` for a single-valued field.
    """

    key: str
    type: FieldType = "string"
    case_exact: bool = False
    multi: str | None = None

    @property
    def sub(self) -> str | None:
        """The sub-attribute name of a field of a multi-valued attribute."""
        return self.key.rpartition(".")[2] if self.multi else None


FilterValue: TypeAlias = str | bool | datetime | None


@attrs.frozen
class Comparison:
    """``field op value``; for ``eq``/``ne`` the value may be ``None`` (null)."""

    field: Field
    op: CompareOp
    value: FilterValue


@attrs.frozen
class Present:
    """``field pr``: the field has a non-empty value."""

    field: Field


@attrs.frozen
class And:
    """Both operands hold."""

    left: Filter
    right: Filter


@attrs.frozen
class Or:
    """At least one operand holds."""

    left: Filter
    right: Filter


@attrs.frozen
class Not:
    """The operand does not hold."""

    operand: Filter


@attrs.frozen
class ValueFilter:
    """``attribute[filter]``: one element of a multi-valued attribute satisfies ``filter``.

    Every field inside ``filter`` belongs to ``attribute`` (``field.multi ==
    attribute``), and all of them are tested against the *same* element.
    """

    attribute: str
    filter: Filter


Filter: TypeAlias = Comparison | Present | And | Or | Not | ValueFilter


@attrs.frozen
class Sort:
    """Order by a single-valued field; ties are broken by id, so paging is stable."""

    field: Field
    descending: bool = False


#: A position in a sorted listing, as the storage compares it: whether the
#: sort value is missing, the sort value (folded for a case-insensitive
#: string) and the id, of the last resource seen. ``(True, None, id)`` when
#: the listing is not sorted (id order).
Keyset: TypeAlias = tuple[bool, Any, str]


@attrs.frozen
class Query:
    """A filtered, sorted page of a tenant's members or groups.

    ``start_index`` is 1-based as in SCIM; ``count`` ``None`` means no limit
    (the SCIM layer always applies its own maximum).

    ``keyset`` asks for cursor paging (RFC 9865): the page starts right after
    ``after`` (from the start when ``None``) instead of at ``start_index``,
    costs the same at any depth, and the returned page says where it ended
    and whether more follow. ``with_total`` ``False`` skips counting.
    """

    filter: Filter | None = None
    sort: Sort | None = None
    start_index: int = 1
    count: int | None = None
    keyset: bool = False
    after: Keyset | None = None
    with_total: bool = True


T = TypeVar("T")


@attrs.frozen
class Page(Generic[T]):
    """One page of results and the number of matches across all pages.

    For a keyset query, ``last`` is the position of the page's last item and
    ``more`` whether any item follows it; ``total`` is ``-1`` when the query
    did not ask for it.
    """

    items: Sequence[T]
    total: int
    last: Keyset | None = None
    more: bool = False


def _fields(*fields: Field) -> Mapping[str, Field]:
    return {field.key.lower(): field for field in fields}


def _multi(attribute: str, *subs: tuple[str, FieldType, bool]) -> list[Field]:
    return [
        Field(f"{attribute}.{sub}", type_, case_exact, multi=attribute)
        for sub, type_, case_exact in subs
    ]


_VALUE_TYPE_PRIMARY: tuple[tuple[str, FieldType, bool], ...] = (
    ("value", "string", False),
    ("display", "string", False),
    ("type", "string", False),
    ("primary", "boolean", False),
)

#: Every searchable attribute of a User, by lower-cased canonical path.
USER_FIELDS: Mapping[str, Field] = _fields(
    Field("id", case_exact=True),
    Field("externalId", case_exact=True),
    Field("userName"),
    Field("displayName"),
    Field("nickName"),
    Field("title"),
    Field("userType"),
    Field("preferredLanguage"),
    Field("locale"),
    Field("timezone"),
    Field("profileUrl", "reference", case_exact=True),
    Field("active", "boolean"),
    Field("name.formatted"),
    Field("name.familyName"),
    Field("name.givenName"),
    Field("name.middleName"),
    Field("name.honorificPrefix"),
    Field("name.honorificSuffix"),
    Field("meta.created", "datetime"),
    Field("meta.lastModified", "datetime"),
    Field("role"),
    Field(f"{ENTERPRISE_URN}:employeeNumber"),
    Field(f"{ENTERPRISE_URN}:costCenter"),
    Field(f"{ENTERPRISE_URN}:organization"),
    Field(f"{ENTERPRISE_URN}:division"),
    Field(f"{ENTERPRISE_URN}:department"),
    Field(f"{ENTERPRISE_URN}:manager.value", case_exact=True),
    *_multi("emails", *_VALUE_TYPE_PRIMARY),
    *_multi("phoneNumbers", *_VALUE_TYPE_PRIMARY),
    *_multi("ims", *_VALUE_TYPE_PRIMARY),
    *_multi("photos", ("value", "reference", True), *_VALUE_TYPE_PRIMARY[1:]),
    *_multi("entitlements", *_VALUE_TYPE_PRIMARY),
    *_multi("roles", *_VALUE_TYPE_PRIMARY),
    *_multi("x509Certificates", ("value", "string", True), *_VALUE_TYPE_PRIMARY[1:]),
    *_multi("groups", ("value", "string", True), ("display", "string", False)),
)

#: Every searchable attribute of a Group, by lower-cased canonical path.
GROUP_FIELDS: Mapping[str, Field] = _fields(
    Field("id", case_exact=True),
    Field("externalId", case_exact=True),
    Field("displayName"),
    Field("meta.created", "datetime"),
    Field("meta.lastModified", "datetime"),
    *_multi("members", ("value", "string", True), ("display", "string", False)),
)

#: The multi-valued attributes of a user whose elements the stores index.
USER_MULTI_VALUED = frozenset(f.multi for f in USER_FIELDS.values() if f.multi)


#: Comparisons that mean "some element satisfies this" at the top level as
#: inside ``attr[...]`` (``ne`` and ``null`` tests are about all elements),
#: and that no index answers: ``eq`` tests stay apart, each an index lookup,
#: rather than joining a pass over every element.
_GATHERED_OPS = frozenset(("co", "sw", "ew", "gt", "ge", "lt", "le"))


def gather_element_tests(node: Filter) -> Filter:
    """The same filter, with or-ed tests of a multi-valued attribute gathered in one ``attr[...]``.

    ``emails.value co "a" or emails.value co "b"`` holds exactly when
    ``emails[value co "a" or value co "b"]`` does (some element satisfies one
    or the other), and a backend answers the second with one pass over the
    elements instead of one pass per term: a filter of many substring tests
    costs one scan, not one each. Tests joined by ``and`` stay apart (two
    elements may satisfy them), and so do ``ne``, ``null`` and ``eq`` tests.
    """
    if isinstance(node, And):
        return And(gather_element_tests(node.left), gather_element_tests(node.right))
    if isinstance(node, Not):
        return Not(gather_element_tests(node.operand))
    if not isinstance(node, Or):
        return node
    disjuncts: list[Filter] = []
    pending: list[Filter] = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, Or):
            pending.extend((current.right, current.left))
        else:
            disjuncts.append(current)
    gathered: dict[str, list[Filter]] = {}
    kept: list[Filter | str] = []
    for disjunct in disjuncts:
        attribute = _element_attribute(disjunct)
        if attribute is None:
            kept.append(gather_element_tests(disjunct))
            continue
        inner = disjunct.filter if isinstance(disjunct, ValueFilter) else disjunct
        if attribute not in gathered:
            gathered[attribute] = []
            kept.append(attribute)
        gathered[attribute].append(inner)
    parts = [
        ValueFilter(part, _any_of(gathered[part])) if isinstance(part, str) else part
        for part in kept
    ]
    return _any_of(parts)


def _element_attribute(node: Filter) -> str | None:
    """The multi-valued attribute ``node`` asks "some element satisfies" about, if it does."""
    if isinstance(node, ValueFilter):
        return node.attribute
    if (
        isinstance(node, Comparison)
        and node.field.multi is not None
        and node.op in _GATHERED_OPS
        and node.value is not None
    ):
        return node.field.multi
    return None


def _any_of(nodes: Sequence[Filter]) -> Filter:
    result = nodes[0]
    for node in nodes[1:]:
        result = Or(result, node)
    return result
