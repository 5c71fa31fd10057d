"""A resolved filter, a sort and a keyset compiled to SQL over the typed columns.

Bound parameters only, never Python-side filtering: the SQL answers exactly
what :mod:`pbidentity.storage._evaluate` answers.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

import attrs
from sqlalchemy import ColumnElement
from sqlalchemy import Table
from sqlalchemy import and_
from sqlalchemy import bindparam
from sqlalchemy import case
from sqlalchemy import false
from sqlalchemy import literal
from sqlalchemy import not_
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.sql import Select

from pbidentity.domain import fold
from pbidentity.query import And
from pbidentity.query import Comparison
from pbidentity.query import Field
from pbidentity.query import Filter
from pbidentity.query import Keyset
from pbidentity.query import Not
from pbidentity.query import Or
from pbidentity.query import Present
from pbidentity.query import Query
from pbidentity.query import Sort
from pbidentity.query import ValueFilter
from pbidentity.storage._evaluate import RELATION_ATTRIBUTES
from pbidentity.storage._evaluate import operand
from pbidentity.storage._evaluate import registry_field
from pbidentity.storage.sql._schema import _GROUP_FIELDS
from pbidentity.storage.sql._schema import _MEMBER_FIELDS
from pbidentity.storage.sql._schema import _VALUE_ATTRIBUTES
from pbidentity.storage.sql._schema import _FieldColumn
from pbidentity.storage.sql._schema import _is_text
from pbidentity.storage.sql._schema import groups
from pbidentity.storage.sql._schema import member_values
from pbidentity.storage.sql._schema import members
from pbidentity.storage.sql._schema import memberships
from pbidentity.storage.sql._statements import _T

_Col = ColumnElement[Any]
_Columns = tuple[_Col, _Col | None]  # the raw column and its folded twin, if any


class _Elements:
    """Where the elements of one multi-valued attribute live, and how to test them."""

    def __init__(
        self,
        columns: Mapping[str, _Columns],
        select_ids: Callable[[str, ColumnElement[bool]], ColumnElement[bool]],
    ) -> None:
        self.columns = columns
        self._select_ids = select_ids

    def any(self, tenant_id: str, predicate: ColumnElement[bool]) -> ColumnElement[bool]:
        """True for the resources that have an element satisfying ``predicate``."""
        return self._select_ids(tenant_id, predicate)


def _member_values(attribute: str) -> _Elements:
    mv = member_values

    def select_ids(tenant_id: str, predicate: ColumnElement[bool]) -> ColumnElement[bool]:
        # An uncorrelated IN (rather than a correlated EXISTS) lets both
        # databases drive the lookup from ix_member_values_value.
        ids = select(mv.c.member_id).where(
            mv.c.tenant_id == tenant_id, mv.c.attribute == attribute, predicate
        )
        return members.c.id.in_(ids.correlate(None))

    return _Elements(
        {
            "value": (mv.c.value, mv.c.value_folded),
            "display": (mv.c.display, mv.c.display_folded),
            "type": (mv.c.type, mv.c.type_folded),
            "primary": (mv.c.primary, None),
        },
        select_ids,
    )


def _member_groups() -> _Elements:
    ms, g = memberships, groups

    def select_ids(tenant_id: str, predicate: ColumnElement[bool]) -> ColumnElement[bool]:
        joined = ms.join(g, and_(g.c.tenant_id == ms.c.tenant_id, g.c.id == ms.c.group_id))
        ids = (
            select(ms.c.member_id).select_from(joined).where(ms.c.tenant_id == tenant_id, predicate)
        )
        return members.c.id.in_(ids.correlate(None))

    return _Elements(
        {"value": (ms.c.group_id, None), "display": (g.c.display_name, g.c.display_name_folded)},
        select_ids,
    )


def _group_members() -> _Elements:
    ms, m = memberships, members

    def select_ids(tenant_id: str, predicate: ColumnElement[bool]) -> ColumnElement[bool]:
        joined = ms.join(m, and_(m.c.tenant_id == ms.c.tenant_id, m.c.id == ms.c.member_id))
        ids = (
            select(ms.c.group_id).select_from(joined).where(ms.c.tenant_id == tenant_id, predicate)
        )
        return groups.c.id.in_(ids.correlate(None))

    return _Elements(
        {"value": (ms.c.member_id, None), "display": (m.c.ref_display, m.c.ref_display_folded)},
        select_ids,
    )


@attrs.frozen
class _Resource:
    """How the fields of members or of groups map to columns."""

    table: Table
    group: bool
    columns: Mapping[str, _Columns]
    multi: Mapping[str, _Elements]


def _single_columns(table: Table, specs: Iterable[_FieldColumn]) -> dict[str, _Columns]:
    columns: dict[str, _Columns] = {
        "id": (table.c.id, None),
        "meta.created": (table.c.created, None),
        "meta.lastModified": (table.c.last_modified, None),
    }
    for spec in specs:
        folded = None if spec.folded is None else table.c[spec.folded]
        columns[spec.field.key] = (table.c[spec.name], folded)
    return columns


_MEMBERS = _Resource(
    members,
    group=False,
    columns=_single_columns(members, _MEMBER_FIELDS),
    multi={
        **{attribute: _member_values(attribute) for attribute in _VALUE_ATTRIBUTES},
        "groups": _member_groups(),
    },
)
_GROUPS = _Resource(
    groups,
    group=True,
    columns=_single_columns(groups, _GROUP_FIELDS),
    multi={"members": _group_members()},
)


def _present(field: Field, column: _Col) -> ColumnElement[bool]:
    if _is_text(field):
        return and_(column.is_not(None), column != "")
    return column.is_not(None)


def _predicate(node: Comparison | Present, field: Field, columns: _Columns) -> ColumnElement[bool]:
    """One comparison or ``pr`` on one value; never NULL, so ``NOT`` is exact."""
    raw, folded = columns
    if isinstance(node, Present):
        return _present(field, raw)
    op = node.op
    wanted = operand(field, node.value)
    if wanted is None:
        if op == "eq":
            return not_(_present(field, raw))
        return _present(field, raw) if op == "ne" else false()
    if field.type == "boolean" and op not in ("eq", "ne"):
        return false()
    if field.type == "datetime" and op in ("co", "sw", "ew"):
        return false()
    column = raw
    if isinstance(wanted, str) and not field.case_exact and folded is not None:
        column, wanted = folded, fold(wanted)
    if op == "ne":
        # A missing value is "not equal", as in the evaluator.
        return or_(column.is_(None), column != wanted)
    comparisons: dict[str, Callable[[], ColumnElement[bool]]] = {
        "eq": lambda: column == wanted,
        "co": lambda: column.contains(wanted, autoescape=True),
        "sw": lambda: column.startswith(wanted, autoescape=True),
        "ew": lambda: column.endswith(wanted, autoescape=True),
        "gt": lambda: column > wanted,
        "ge": lambda: column >= wanted,
        "lt": lambda: column < wanted,
        "le": lambda: column <= wanted,
    }
    # ``col IS NOT NULL AND ...`` is FALSE (not NULL) for a missing value, so
    # that an enclosing NOT gives TRUE exactly where the evaluator does.
    return and_(column.is_not(None), comparisons[op]())


def _compile(
    node: Filter, resource: _Resource, tenant_id: str, scope: str | None = None
) -> ColumnElement[bool]:
    if isinstance(node, And):
        return and_(
            _compile(node.left, resource, tenant_id, scope),
            _compile(node.right, resource, tenant_id, scope),
        )
    if isinstance(node, Or):
        return or_(
            _compile(node.left, resource, tenant_id, scope),
            _compile(node.right, resource, tenant_id, scope),
        )
    if isinstance(node, Not):
        return not_(_compile(node.operand, resource, tenant_id, scope))
    if isinstance(node, ValueFilter):
        if scope is not None:
            raise ValueError("a value filter cannot be nested in another")
        source = resource.multi.get(node.attribute)
        if source is None:
            raise ValueError(
                f"{node.attribute!r} is not a multi-valued attribute one can filter on"
            )
        return source.any(tenant_id, _compile(node.filter, resource, tenant_id, node.attribute))
    field = registry_field(node.field, group=resource.group)
    if scope is not None:
        if field.multi != scope:
            raise ValueError(f"{field.key!r} is not a sub-attribute of {scope!r}")
        return _predicate(node, field, resource.multi[scope].columns[field.sub or ""])
    if field.multi is None:
        return _predicate(node, field, resource.columns[field.key])
    source = resource.multi[field.multi]
    columns = source.columns[field.sub or ""]
    if isinstance(node, Present) or node.value is None:
        any_present = source.any(tenant_id, _present(field, columns[0]))
        if isinstance(node, Present) or node.op == "ne":
            return any_present
        return not_(any_present) if node.op == "eq" else false()
    return source.any(tenant_id, _predicate(node, field, columns))


def _order_by(resource: _Resource, sort: Sort | None) -> list[Any]:
    table = resource.table
    if sort is None:
        return [table.c.id]
    missing, key = _sort_key(resource, sort)
    # Missing values last ascending, first descending, written portably (no
    # NULLS FIRST/LAST); ties by id ascending in both directions.
    if sort.descending:
        return [missing.desc(), key.desc(), table.c.id]
    return [missing, key, table.c.id]


def _after(resource: _Resource, sort: Sort | None, after: Keyset) -> ColumnElement[bool]:
    """The rows that come after ``after`` in the order of :func:`_order_by` (a keyset)."""
    table = resource.table
    missing_after, value_after, id_after = after
    later_id = table.c.id > id_after
    if sort is None:
        return later_id
    _, key = _sort_key(resource, sort)
    if missing_after:
        # Among the rows without a value: descending, every row with one follows.
        tail = and_(key.is_(None), later_id)
        return or_(key.is_not(None), tail) if sort.descending else tail
    # A bound parameter, not a literal: booleans compare too (false < true).
    bound = literal(value_after, key.type)
    beyond = key < bound if sort.descending else key > bound
    with_value = and_(key.is_not(None), or_(beyond, and_(key == bound, later_id)))
    return with_value if sort.descending else or_(key.is_(None), with_value)


def _sort_key(resource: _Resource, sort: Sort) -> tuple[_Col, _Col]:
    """The "value is missing" flag and the value a listing is sorted by."""
    table = resource.table
    field = registry_field(sort.field, group=resource.group)
    key: _Col
    if field.multi is None:
        raw, folded = resource.columns[field.key]
        key = folded if folded is not None and not field.case_exact else raw
    elif field.multi in RELATION_ATTRIBUTES:
        raise ValueError(f"cannot sort by {field.key!r}")
    else:
        # The primary element's value, else the first element's (by position)
        # among those that have one: a correlated scalar subquery.
        mv = member_values.alias("sort_values")
        sub = field.sub or ""
        raw = mv.c[sub]
        folded_name = f"{sub}_folded"
        use_folded = _is_text(field) and not field.case_exact and folded_name in mv.c
        column = mv.c[folded_name] if use_folded else raw
        key = (
            select(column)
            .where(
                mv.c.tenant_id == table.c.tenant_id,
                mv.c.member_id == table.c.id,
                mv.c.attribute == field.multi,
                raw.is_not(None),
            )
            .order_by(case((mv.c.primary.is_(True), 0), else_=1), mv.c.position)
            .limit(1)
            .scalar_subquery()
        )
    return case((key.is_(None), 1), else_=0), key


# The statements of the IdPs' hot path (``userName eq``, ``externalId eq``,
# ``displayName eq``, unsorted), built once per field with bound parameters:
# building a statement costs more than running it. Same SQL as _compile makes.
_LOOKUPS: dict[tuple[str, str, bool], Select[Any]] = {}


def _lookup(
    resource: _Resource, base: Select[Any], query: Query
) -> tuple[Select[Any], dict[str, Any]] | None:
    node = query.filter
    if not isinstance(node, Comparison) or node.op != "eq" or query.sort is not None:
        return None
    field = registry_field(node.field, group=resource.group)
    if field.multi is not None or not _is_text(field) or not isinstance(node.value, str):
        return None
    key = (resource.table.name, field.key, query.count is not None)
    statement = _LOOKUPS.get(key)
    raw, folded = resource.columns[field.key]
    column = folded if folded is not None and not field.case_exact else raw
    if statement is None:
        table = resource.table
        statement = (
            base.where(
                table.c.tenant_id == _T,
                and_(column.is_not(None), column == bindparam("b_value")),
            )
            .order_by(table.c.id)
            .offset(bindparam("b_offset"))
        )
        if query.count is not None:
            statement = statement.limit(bindparam("b_limit"))
        _LOOKUPS[key] = statement
    value = node.value if column is raw else fold(node.value)
    return statement, {"b_value": value}
