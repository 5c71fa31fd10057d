"""Statements built once, with bound parameters; their compiled form is cached."""

from __future__ import annotations

import json
from collections.abc import Iterable
from collections.abc import Iterator
from typing import Any
from typing import TypeVar

from sqlalchemy import Boolean
from sqlalchemy import ColumnElement
from sqlalchemy import Dialect
from sqlalchemy import Text
from sqlalchemy import bindparam
from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import union
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import Select
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator
from sqlalchemy.types import TypeEngine

from pbidentity.storage.sql._rows import _GROUP_COLUMNS
from pbidentity.storage.sql._rows import _MEMBER_COLUMNS
from pbidentity.storage.sql._schema import _UtcText
from pbidentity.storage.sql._schema import api_tokens
from pbidentity.storage.sql._schema import events
from pbidentity.storage.sql._schema import groups
from pbidentity.storage.sql._schema import member_values
from pbidentity.storage.sql._schema import members
from pbidentity.storage.sql._schema import memberships
from pbidentity.storage.sql._schema import tenant_counts
from pbidentity.storage.sql._schema import tenants

# Ids per statement (one bound list, see _IdList): "one statement" holds for
# any realistic request, and no single list grows without bound.
_MAX_IDS = 5000


_Id = TypeVar("_Id", str, int)


def _chunks(ids: Iterable[_Id]) -> Iterator[list[_Id]]:
    unique = sorted(set(ids))
    for start in range(0, len(unique), _MAX_IDS):
        yield unique[start : start + _MAX_IDS]


# A list of ids as ONE bound parameter ---------------------------------------
#
# An expanding IN list (``IN (?, ?, ...)``) changes the SQL text with the
# number of ids, so SQLAlchemy renders it again on every execution and the
# hot path (_execute._Fast) cannot run it: a group push of 100 members paid
# that per read. A list passed whole keeps the statement's text fixed, so it
# is compiled once and runs on the DBAPI cursor like any other fixed
# statement: on SQLite as a JSON array the JSON1 table-valued function
# unrolls (``IN (SELECT value FROM json_each(?))``, built into every SQLite
# since 3.38 and into Python's own builds long before), on PostgreSQL as a
# text array (``= ANY(CAST(%(b_ids)s AS TEXT[]))``). Both still drive the
# primary-key or membership index, one probe per id.


class _IdList(TypeDecorator[list[str]]):
    """A list of ids bound as one parameter: a JSON array, or a PostgreSQL array."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(ARRAY(Text()))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: list[str] | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "postgresql":
            return list(value)
        return json.dumps(list(value))


class _InIdList(ColumnElement[bool]):
    """``column IN <the ids of one bound list>``, spelled as each dialect unrolls a list."""

    inherit_cache = True
    type = Boolean()
    # A comparison already: SQLite must not get "... = 1" appended to it
    # (which hides the IN from its planner and scans the tenant's rows).
    _is_implicitly_boolean = True
    # SQLAlchemy's cache key walks these (its own constructs declare a list).
    _traverse_internals = [  # noqa: RUF012
        ("column", InternalTraversal.dp_clauseelement),
        ("ids", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: ColumnElement[Any], ids: BindParameter[list[str]]) -> None:
        self.column = column
        self.ids = ids


@compiles(_InIdList)
def _in_json_array(element: _InIdList, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    ids = compiler.process(element.ids, **kw)
    # Both parts are compiled SQL (a column, a bound parameter), never values.
    return f"{column} IN (SELECT value FROM json_each({ids}))"  # noqa: S608


@compiles(_InIdList, "postgresql")
def _in_array(element: _InIdList, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    ids = compiler.process(element.ids, **kw)
    return f"{column} = ANY(CAST({ids} AS TEXT[]))"


# Statements built once; SQLAlchemy caches their compiled form.

_T: BindParameter[str] = bindparam("b_tenant_id")
_ID: BindParameter[str] = bindparam("b_id")
_IDS: BindParameter[list[str]] = bindparam("b_ids", type_=_IdList())

_SELECT_MEMBERS: Select[Any] = select(*_MEMBER_COLUMNS)
_SELECT_GROUPS: Select[Any] = select(*_GROUP_COLUMNS)
_GET_MEMBER = _SELECT_MEMBERS.where(members.c.tenant_id == _T, members.c.id == _ID)
_GET_GROUP = _SELECT_GROUPS.where(groups.c.tenant_id == _T, groups.c.id == _ID)
_MEMBER_VERSION = select(members.c.version).where(members.c.tenant_id == _T, members.c.id == _ID)
_GROUP_VERSION = select(groups.c.version).where(groups.c.tenant_id == _T, groups.c.id == _ID)
_UPDATE_MEMBER = update(members).where(
    members.c.tenant_id == _T, members.c.id == _ID, members.c.version == bindparam("b_expected")
)
# The common replace (a PATCH of active, a name): the multi-valued attributes
# are unchanged, so one UPDATE is the whole write.
_UPDATE_MEMBER_SAME_VALUES = _UPDATE_MEMBER.where(members.c.values_digest == bindparam("b_digest"))
_UPDATE_GROUP = update(groups).where(
    groups.c.tenant_id == _T, groups.c.id == _ID, groups.c.version == bindparam("b_expected")
)
# The common replace of a group (a membership change moves its version) keeps
# its displayName: the unique index cannot refuse it, so it needs no savepoint.
_UPDATE_GROUP_SAME_NAME = _UPDATE_GROUP.where(
    groups.c.display_name_folded == bindparam("b_display_name")
)
_DELETE_VALUES = delete(member_values).where(
    member_values.c.tenant_id == _T, member_values.c.member_id == _ID
)
_GET_MEMBERS = _SELECT_MEMBERS.where(
    members.c.tenant_id == _T, _InIdList(members.c.id, _IDS)
).order_by(members.c.id)
_EXISTING_MEMBERS = select(members.c.id).where(
    members.c.tenant_id == _T, _InIdList(members.c.id, _IDS)
)
_GROUP_MEMBERS = (
    # Driven by memberships (its primary key starts with tenant and group),
    # the member's name read by primary key: a join would let a planner with
    # statistics loop over every member of the tenant instead.
    select(
        memberships.c.group_id,
        memberships.c.member_id,
        select(members.c.ref_display)
        .where(
            members.c.tenant_id == memberships.c.tenant_id,
            members.c.id == memberships.c.member_id,
        )
        .scalar_subquery(),
    )
    .where(memberships.c.tenant_id == _T, _InIdList(memberships.c.group_id, _IDS))
    .order_by(memberships.c.group_id, memberships.c.member_id)
)
_MEMBER_GROUPS = (
    # Driven by ix_memberships_member; see _GROUP_MEMBERS.
    select(
        memberships.c.member_id,
        memberships.c.group_id,
        select(groups.c.display_name)
        .where(
            groups.c.tenant_id == memberships.c.tenant_id,
            groups.c.id == memberships.c.group_id,
        )
        .scalar_subquery(),
    )
    .where(memberships.c.tenant_id == _T, _InIdList(memberships.c.member_id, _IDS))
    .order_by(memberships.c.member_id, memberships.c.group_id)
)
# Who an arriving identity could be: one indexed lookup per key, joined by id.
_MATCHING_IDS = union(
    select(members.c.id.label("id")).where(
        members.c.tenant_id == _T, members.c.user_name_folded == bindparam("b_user_name")
    ),
    select(members.c.id.label("id")).where(
        members.c.tenant_id == _T, members.c.external_id == bindparam("b_external_id")
    ),
    select(member_values.c.member_id.label("id")).where(
        member_values.c.tenant_id == _T,
        member_values.c.attribute == "emails",
        member_values.c.value_folded == bindparam("b_email"),
    ),
).subquery()
_MATCHING = (
    _SELECT_MEMBERS.where(members.c.tenant_id == _T, members.c.id.in_(select(_MATCHING_IDS.c.id)))
    .order_by(members.c.id)
    .limit(bindparam("b_limit"))
)
_COUNTED = ("members", "groups")
_COUNT_CHANGE = (
    update(tenant_counts)
    .where(tenant_counts.c.tenant_id == _T, tenant_counts.c.kind == bindparam("b_kind"))
    .values(n=tenant_counts.c.n + bindparam("b_delta"))
)
_COUNT_OF = select(tenant_counts.c.n).where(
    tenant_counts.c.tenant_id == _T, tenant_counts.c.kind == bindparam("b_kind")
)


_INSERT_MEMBER = insert(members)
_EVENT_FIELDS = ("id", "tenant_id", "type", "subject_id", "actor", "occurred", "data", "delivered")
_EVENT_VALUES = {name: bindparam(name, type_=events.c[name].type) for name in _EVENT_FIELDS}
# An event of a tenant that does not exist is skipped, not refused by the
# foreign key: the caller sees fewer rows than it sent, and no error aborts
# the transaction, so no savepoint (two round trips on PostgreSQL) is needed
# around the outbox write that ends every change.
_INSERT_EVENT_IF_TENANT = insert(events).from_select(
    list(_EVENT_FIELDS),
    select(*_EVENT_VALUES.values()).where(
        select(tenants.c.id).where(tenants.c.id == _EVENT_VALUES["tenant_id"]).exists()
    ),
)
# Many events (a group change re-decides a hundred members, each with its
# event) in ONE statement: their values bound as one JSON array of rows,
# inserted in the array's order so that seq follows the order given, and, as
# above, skipped when their tenant does not exist. Every value is text
# (occurred as _UtcText writes it, data as dump_document does).
_INSERT_EVENTS_SQLITE = text(
    "INSERT INTO events (id, tenant_id, type, subject_id, actor, occurred, data, delivered) "
    "SELECT json_extract(e.value, '$[0]'), json_extract(e.value, '$[1]'), "
    "json_extract(e.value, '$[2]'), json_extract(e.value, '$[3]'), "
    "json_extract(e.value, '$[4]'), json_extract(e.value, '$[5]'), "
    "json_extract(e.value, '$[6]'), NULL "
    "FROM json_each(:b_rows) AS e "
    "WHERE EXISTS (SELECT 1 FROM tenants WHERE tenants.id = json_extract(e.value, '$[1]')) "
    "ORDER BY e.key"
)
_INSERT_EVENTS_POSTGRESQL = text(
    "INSERT INTO events (id, tenant_id, type, subject_id, actor, occurred, data, delivered) "
    "SELECT e.value ->> 0, e.value ->> 1, e.value ->> 2, e.value ->> 3, e.value ->> 4, "
    "e.value ->> 5, e.value ->> 6, NULL "
    "FROM json_array_elements(CAST(:b_rows AS json)) WITH ORDINALITY AS e(value, n) "
    "WHERE EXISTS (SELECT 1 FROM tenants WHERE tenants.id = e.value ->> 1) "
    "ORDER BY e.n"
)
# The columns a role decided again moves: a group change or a new policy
# writes them for up to thousands of members at once.
_REDECISION_COLUMNS = frozenset(
    {"app_role", "role_source", "role_rule", "version", "last_modified"}
)
_UPDATES_OF_ROWS: dict[tuple[str, tuple[str, ...]], TextClause] = {}


def _update_members_of_rows(dialect: str, columns: tuple[str, ...]) -> TextClause:
    """ONE UPDATE of these columns (of ``_REDECISION_COLUMNS``) for many members.

    The members come as one JSON array of rows bound to ``b_rows``: tenant id,
    member id, the version the member must still have, then the new value of
    each column, as the column holds it (text, or the version's number). A
    member no longer at that version is not written: the statement's row count
    tells. Built once per dialect and set of columns, so that the hot path
    compiles each once.
    """
    key = (dialect, columns)
    found = _UPDATES_OF_ROWS.get(key)
    if found is not None:
        return found
    if not _REDECISION_COLUMNS.issuperset(columns):
        raise ValueError(f"not columns a redecision writes: {columns}")

    def value(position: int, column: str) -> str:
        if dialect != "postgresql":
            return f"json_extract(u.value, '$[{position}]')"
        if column == "version":
            return f"CAST(u.value ->> {position} AS INTEGER)"
        # The key columns compare in their own collation, so that the
        # primary key is what finds each member.
        return f'(u.value ->> {position}) COLLATE "C"'

    rows = (
        "json_array_elements(CAST(:b_rows AS json)) AS u(value)"
        if dialect == "postgresql"
        else "json_each(:b_rows) AS u"
    )
    assignments = ", ".join(
        f"{column} = {value(position, column)}" for position, column in enumerate(columns, 3)
    )
    found = _UPDATES_OF_ROWS[key] = text(
        f"UPDATE members SET {assignments} FROM {rows} "  # noqa: S608 - column names, not values
        f"WHERE members.tenant_id = {value(0, 'tenant_id')} "
        f"AND members.id = {value(1, 'id')} AND members.version = {value(2, 'version')}"
    )
    return found


# The events a unit writes last, sent with its COMMIT on PostgreSQL (see
# _Outbox.add_events): nothing can be checked between the two, so here the
# foreign key refuses an event of a missing tenant, which aborts the commit.
_INSERT_EVENT = insert(events).values(_EVENT_VALUES)
# A member inserted on PostgreSQL, where an error aborts the whole
# transaction: a userName, externalId or id already taken, or a tenant that
# does not exist, inserts no row instead of raising, so that no savepoint (two
# round trips) is needed around the insert that every create makes. The rare
# miss is redone under a savepoint, whose error names the constraint.
# The tenant's parameter is not named tenant_id: Core would take a parameter
# named after a column of tenant_counts as a column for the UPDATE below to set.
_MEMBER_INSERT_VALUES = {
    c.key: bindparam("b_tenant_id" if c.key == "tenant_id" else c.key, type_=c.type)
    for c in members.c
}
_INSERTED_MEMBER = (
    postgresql_insert(members)
    .from_select(
        list(_MEMBER_INSERT_VALUES),
        select(*_MEMBER_INSERT_VALUES.values()).where(
            select(tenants.c.id).where(tenants.c.id == _MEMBER_INSERT_VALUES["tenant_id"]).exists()
        ),
    )
    .on_conflict_do_nothing()
    .returning(members.c.id)
    .cte("inserted")
)
# The tenant's member counter moves in the same statement, only if the row
# went in: one round trip less. The counter row stays locked from here to the
# unit's end, so the segment move that follows (its own statement, with a
# snapshot taken after the lock) sees every segment change committed before.
_COUNT_INSERTED_MEMBER = (
    update(tenant_counts)
    .where(
        tenant_counts.c.tenant_id == _MEMBER_INSERT_VALUES["tenant_id"],
        tenant_counts.c.kind == "members",
        select(_INSERTED_MEMBER.c.id).exists(),
    )
    .values(n=tenant_counts.c.n + 1)
    .cte("counted")
)
_INSERT_MEMBER_UNLESS_TAKEN = select(_INSERTED_MEMBER.c.id).add_cte(_COUNT_INSERTED_MEMBER)
_INSERT_VALUES = insert(member_values)
_FIND_TOKEN = select(api_tokens).where(api_tokens.c.digest == bindparam("b_digest"))
_GET_TENANT = select(tenants).where(tenants.c.id == _ID)
_FIND_TOKEN_WITH_TENANT = (
    select(
        api_tokens,
        tenants.c.slug.label("tenant_slug"),
        tenants.c.name.label("tenant_name"),
        tenants.c.scim_enabled.label("tenant_scim_enabled"),
        tenants.c.created.label("tenant_created"),
        tenants.c.version.label("tenant_version"),
        tenants.c.settings.label("tenant_settings"),
    )
    .join(tenants, tenants.c.id == api_tokens.c.tenant_id)
    .where(api_tokens.c.digest == bindparam("b_digest"))
)
_TOUCH_TOKEN = (
    update(api_tokens)
    .where(
        api_tokens.c.id == _ID,
        or_(
            api_tokens.c.last_used.is_(None),
            api_tokens.c.last_used < bindparam("b_when", type_=_UtcText()),
        ),
    )
    .values(last_used=bindparam("b_when", type_=_UtcText()))
)
_GROUP_MEMBERS_OF_ONE = (
    select(
        memberships.c.member_id,
        select(members.c.ref_display)
        .where(
            members.c.tenant_id == memberships.c.tenant_id,
            members.c.id == memberships.c.member_id,
        )
        .scalar_subquery(),
    )
    .where(memberships.c.tenant_id == _T, memberships.c.group_id == _ID)
    .order_by(memberships.c.member_id)
)
_GROUPS_OF_ONE_MEMBER = (
    select(
        memberships.c.group_id,
        select(groups.c.display_name)
        .where(
            groups.c.tenant_id == memberships.c.tenant_id,
            groups.c.id == memberships.c.group_id,
        )
        .scalar_subquery(),
    )
    .where(memberships.c.tenant_id == _T, memberships.c.member_id == _ID)
    .order_by(memberships.c.group_id)
)
_REMOVE_MEMBERSHIPS = delete(memberships).where(
    memberships.c.tenant_id == _T,
    memberships.c.group_id == _ID,
    _InIdList(memberships.c.member_id, _IDS),
)
# A group push's members added in ONE statement, whatever their number: the
# ids as one bound list, unrolled into rows (see _IdList). A pair already
# there is skipped (a concurrent add of the same member must not fail the
# unit); a member that does not exist is refused by the foreign key. On
# PostgreSQL the ids that went in come back (SQLite reads them before).
_ADD_MEMBERSHIPS_OF_LIST_SQLITE = text(
    "INSERT INTO memberships (tenant_id, group_id, member_id) "
    # "WHERE true" tells SQLite's parser that ON CONFLICT is no join's ON.
    "SELECT :b_tenant_id, :b_id, value FROM json_each(:b_ids) WHERE true "
    "ON CONFLICT DO NOTHING"
).bindparams(_IDS)
_ADD_MEMBERSHIPS_OF_LIST_POSTGRESQL = (
    text(
        "INSERT INTO memberships (tenant_id, group_id, member_id) "
        "SELECT :b_tenant_id, :b_id, unnest(CAST(:b_ids AS TEXT[])) "
        "ON CONFLICT DO NOTHING RETURNING member_id"
    )
    .bindparams(_IDS)
    .columns(memberships.c.member_id)
)
_MEMBERSHIPS_OF = select(memberships.c.member_id).where(
    memberships.c.tenant_id == _T,
    memberships.c.group_id == _ID,
    _InIdList(memberships.c.member_id, _IDS),
)
