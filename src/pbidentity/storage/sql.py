"""The SQL :class:`~pbidentity.storage.Storage`: SQLAlchemy Core on SQLite or PostgreSQL.

One implementation for every SQL database: portable Core statements, with the
few dialect-specific touches (SQLite pragmas and ``BEGIN IMMEDIATE``, the
PostgreSQL ``"C"`` collation and advisory lock, ``ON CONFLICT DO NOTHING``)
behind dialect checks. It must not filter in Python: a resolved
:class:`~pbidentity.query.Filter` compiles to one ``WHERE`` clause with bound
parameters only, over typed columns that hold the values
:mod:`pbidentity.storage._evaluate` extracts from the canonical document, so
that SQL answers exactly what the evaluator answers. It must not let a driver
exception out of a protocol method: they become
:mod:`pbidentity.exceptions` errors.

Schema notes:

* Every member, group and membership key, unique constraint and foreign key
  starts with ``tenant_id`` (so tables can be distributed by tenant later).
* ``members`` has one column per single-valued searchable field of
  ``USER_FIELDS`` (generated from the registry) and a ``*_folded`` twin for
  every case-insensitive string; equality, ordering and ``LIKE`` run on the
  folded twin with a folded operand, so no database collation or ``lower()``
  is involved. On PostgreSQL text columns use the ``"C"`` collation so that
  ordering is code-point order, as in Python and SQLite.
* ``member_values`` holds one row per element of each multi-valued attribute
  (except ``groups``, which comes from ``memberships``).
* Datetimes are ISO-8601 UTC text of fixed width, so text order is time order.
* The schema is versioned by Alembic migrations
  (``pbidentity/storage/migrations``, applied by :func:`upgrade_schema` and
  ``pbidentity db upgrade``). An empty database gets the current schema
  directly and is stamped with the newest revision; a database at an older
  revision is refused until it is upgraded (``serve`` upgrades SQLite files
  itself), and one at a revision this library does not know, newer, is
  refused (:class:`~pbidentity.exceptions.SchemaVersionError`).

A failed write (``ConflictError``, ``NotFoundError``) leaves the transaction
as it was before the call and still usable, on PostgreSQL (savepoints) as on
SQLite (which backs out just the failing statement). SQLite transactions all
start with ``BEGIN IMMEDIATE``: they are serialised, so a transaction never
meets a lock half-way through.
"""

from __future__ import annotations

import bisect
import collections
import functools
import hashlib
import re
import threading
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from contextlib import contextmanager
from contextlib import suppress
from datetime import datetime
from typing import Any
from typing import Concatenate
from typing import ParamSpec
from typing import TypeVar

import attrs
import orjson
from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import Column
from sqlalchemy import ColumnElement
from sqlalchemy import Dialect
from sqlalchemy import Engine
from sqlalchemy import ForeignKeyConstraint
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import MetaData
from sqlalchemy import PrimaryKeyConstraint
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy import and_
from sqlalchemy import bindparam
from sqlalchemy import case
from sqlalchemy import create_engine
from sqlalchemy import delete
from sqlalchemy import event
from sqlalchemy import false
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import inspect
from sqlalchemy import literal
from sqlalchemy import not_
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import union
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL
from sqlalchemy.engine import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import NoSuchModuleError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.types import TypeDecorator
from sqlalchemy.types import TypeEngine

from pbidentity.domain import ApiToken
from pbidentity.domain import Event
from pbidentity.domain import Group
from pbidentity.domain import IdentityProvider
from pbidentity.domain import Member
from pbidentity.domain import MemberRef
from pbidentity.domain import SamlConnection
from pbidentity.domain import SamlRequest
from pbidentity.domain import SamlRoles
from pbidentity.domain import Tenant
from pbidentity.domain import fold
from pbidentity.exceptions import ConfigurationError
from pbidentity.exceptions import ConflictError
from pbidentity.exceptions import NotFoundError
from pbidentity.exceptions import PbIdentityError
from pbidentity.exceptions import SchemaVersionError
from pbidentity.exceptions import StorageError
from pbidentity.exceptions import StorageUnavailableError
from pbidentity.exceptions import VersionMismatchError
from pbidentity.query import ENTERPRISE_URN
from pbidentity.query import GROUP_FIELDS
from pbidentity.query import USER_FIELDS
from pbidentity.query import USER_MULTI_VALUED
from pbidentity.query import And
from pbidentity.query import Comparison
from pbidentity.query import Field
from pbidentity.query import Filter
from pbidentity.query import Keyset
from pbidentity.query import Not
from pbidentity.query import Or
from pbidentity.query import Page
from pbidentity.query import Present
from pbidentity.query import Query
from pbidentity.query import Sort
from pbidentity.query import ValueFilter
from pbidentity.storage._evaluate import RELATION_ATTRIBUTES
from pbidentity.storage._evaluate import Scalar
from pbidentity.storage._evaluate import dump_document
from pbidentity.storage._evaluate import elements
from pbidentity.storage._evaluate import load_document
from pbidentity.storage._evaluate import operand
from pbidentity.storage._evaluate import reference_display
from pbidentity.storage._evaluate import registry_field
from pbidentity.storage._evaluate import scalar
from pbidentity.storage._evaluate import utc

__all__ = ["SCHEMA_REVISION", "SqlStorage", "metadata", "schema_revision", "upgrade_schema"]

#: The schema version this code writes and understands.
SCHEMA_REVISION = "0004"
#: Every revision this code can upgrade from, oldest first (the migrations'
#: own list, checked by a test, kept here so that opening a database never
#: needs to import Alembic).
_REVISIONS = ("0001", "0002", "0003", "0004")

#: How long a SQLite connection waits for another writer before giving up.
DEFAULT_BUSY_TIMEOUT_MS = 5000

# Bound parameters per IN list: far below SQLite's (32766) and PostgreSQL's
# (65535) limits, so "one statement" holds for any realistic request.
_MAX_IDS = 5000

_P = ParamSpec("_P")
_R = TypeVar("_R")

# Code-point order for every text column on PostgreSQL (its default collation
# would order "a" < "B" < "b" and disagree with Python and SQLite).
_TEXT: TypeEngine[str] = Text().with_variant(Text(collation="C"), "postgresql")


class _UtcText(TypeDecorator[datetime]):
    """An aware UTC datetime stored as fixed-width ISO-8601 text.

    ``2026-11-28T20:54:13.123456+00:00``: always 32 characters, so text order
    is time order on every backend and the value round-trips exactly.
    """

    impl = String(32)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(String(32, collation="C"))
        return dialect.type_descriptor(String(32))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> str | None:
        return None if value is None else utc(value).isoformat(timespec="microseconds")

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else datetime.fromisoformat(str(value))


# Schema ----------------------------------------------------------------------


@attrs.frozen
class _FieldColumn:
    """The column (and folded twin) that holds a single-valued searchable field."""

    field: Field
    name: str
    folded: str | None
    #: The keys leading to the value in the canonical document, split once
    #: here because every member write reads every field.
    path: tuple[str, ...] = attrs.field(init=False)

    @path.default
    def _path(self) -> tuple[str, ...]:
        key = self.field.key
        if key.startswith(ENTERPRISE_URN + ":"):
            return (ENTERPRISE_URN, *key[len(ENTERPRISE_URN) + 1 :].split("."))
        return tuple(key.split("."))


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _column_name(key: str) -> str:
    if key.startswith(ENTERPRISE_URN + ":"):
        key = "enterprise." + key[len(ENTERPRISE_URN) + 1 :]
    return "_".join(_snake(part) for part in key.split("."))


def _is_text(field: Field) -> bool:
    return field.type in ("string", "reference")


# Fields that live in dedicated columns rather than generated ones.
_OWN_COLUMNS = frozenset({"id", "meta.created", "meta.lastModified"})


def _field_columns(registry: Mapping[str, Field]) -> tuple[_FieldColumn, ...]:
    specs = []
    for field in registry.values():
        if field.multi is not None or field.key in _OWN_COLUMNS:
            continue
        name = _column_name(field.key)
        folded = f"{name}_folded" if _is_text(field) and not field.case_exact else None
        specs.append(_FieldColumn(field, name, folded))
    return tuple(specs)


_MEMBER_FIELDS = _field_columns(USER_FIELDS)
_GROUP_FIELDS = _field_columns(GROUP_FIELDS)
_VALUE_ATTRIBUTES = tuple(sorted(USER_MULTI_VALUED - RELATION_ATTRIBUTES))
_VALUE_SUBS = ("value", "display", "type")
# attribute -> sub-attribute -> field, for the rows of member_values.
_VALUE_FIELDS: Mapping[str, Mapping[str, Field]] = {
    attribute: {
        sub: USER_FIELDS[f"{attribute}.{sub}".lower()]
        for sub in (*_VALUE_SUBS, "primary")
        if f"{attribute}.{sub}".lower() in USER_FIELDS
    }
    for attribute in _VALUE_ATTRIBUTES
}


def _generated(specs: Iterable[_FieldColumn]) -> Iterator[Column[Any]]:
    for spec in specs:
        yield Column(spec.name, Boolean() if spec.field.type == "boolean" else _TEXT)
        if spec.folded is not None:
            yield Column(spec.folded, _TEXT)


metadata = MetaData()

# Alembic's table, written here too: a new database is created from the
# metadata and stamped without importing Alembic. Not part of ``metadata``, so
# that migrations never see it as the app's.
_version_metadata = MetaData()
alembic_version = Table(
    "alembic_version",
    _version_metadata,
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)
# The version table of databases created by the first release (revision 0001).
_legacy_version = Table("schema_version", MetaData(), Column("version", Integer, nullable=False))

tenants = Table(
    "tenants",
    metadata,
    Column("id", _TEXT, primary_key=True),
    Column("slug", _TEXT, nullable=False),
    Column("name", _TEXT, nullable=False),
    Column("scim_enabled", Boolean, nullable=False),
    Column("created", _UtcText, nullable=False),
    Column("version", Integer, nullable=False),
    # The tenant's policy (pbidentity.policy.TenantPolicy) as JSON.
    Column("settings", Text, nullable=False),
    UniqueConstraint("slug", name="uq_tenants_slug"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", _TEXT, primary_key=True),
    Column("tenant_id", _TEXT, nullable=False),
    Column("name", _TEXT, nullable=False),
    Column("digest", _TEXT, nullable=False),
    Column("created", _UtcText, nullable=False),
    Column("last_used", _UtcText),
    Column("revoked", _UtcText),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_api_tokens_tenant"),
    UniqueConstraint("digest", name="uq_api_tokens_digest"),
    Index("ix_api_tokens_tenant", "tenant_id", "created"),
)
# One active token per name and tenant, enforced by the database so that two
# concurrent "create token" calls cannot both win; revoked tokens free the name.
Index(
    "uq_api_tokens_active_name",
    api_tokens.c.tenant_id,
    api_tokens.c.name,
    unique=True,
    sqlite_where=api_tokens.c.revoked.is_(None),
    postgresql_where=api_tokens.c.revoked.is_(None),
)

members = Table(
    "members",
    metadata,
    Column("tenant_id", _TEXT, nullable=False),
    Column("id", _TEXT, nullable=False),
    Column("document", Text, nullable=False),
    Column("scim_managed", Boolean, nullable=False),
    # The decided role (the generated "role" column holds the role attribute
    # as the IdP sent it) and how it was decided.
    Column("app_role", _TEXT),
    Column("role_source", _TEXT),
    Column("role_rule", _TEXT),
    Column("version", Integer, nullable=False),
    Column("created", _UtcText, nullable=False),
    Column("last_modified", _UtcText, nullable=False),
    # What group_members shows and members.display filters on.
    Column("ref_display", _TEXT),
    Column("ref_display_folded", _TEXT),
    # Lets replace_member skip rewriting member_values when they did not change.
    Column("values_digest", _TEXT, nullable=False),
    *_generated(_MEMBER_FIELDS),
    PrimaryKeyConstraint("tenant_id", "id", name="pk_members"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_members_tenant"),
    UniqueConstraint("tenant_id", "user_name_folded", name="uq_members_user_name"),
    # The IdP's id of a person links one member only (pbidentity.linking);
    # the database enforces it, so concurrent links cannot both win.
    Index("uq_members_external_id", "tenant_id", "external_id", unique=True),
    # The admin guard counts a tenant's active admins on every risky write.
    Index("ix_members_app_role", "tenant_id", "app_role", "active"),
)

member_values = Table(
    "member_values",
    metadata,
    Column("tenant_id", _TEXT, nullable=False),
    Column("member_id", _TEXT, nullable=False),
    Column("attribute", _TEXT, nullable=False),
    Column("position", Integer, nullable=False),
    Column("value", _TEXT),
    Column("value_folded", _TEXT),
    Column("display", _TEXT),
    Column("display_folded", _TEXT),
    Column("type", _TEXT),
    Column("type_folded", _TEXT),
    Column("primary", Boolean),
    PrimaryKeyConstraint(
        "tenant_id", "member_id", "attribute", "position", name="pk_member_values"
    ),
    ForeignKeyConstraint(
        ["tenant_id", "member_id"],
        ["members.tenant_id", "members.id"],
        ondelete="CASCADE",
        name="fk_member_values_member",
    ),
    Index("ix_member_values_value", "tenant_id", "attribute", "value_folded", "member_id"),
)

groups = Table(
    "groups",
    metadata,
    Column("tenant_id", _TEXT, nullable=False),
    Column("id", _TEXT, nullable=False),
    Column("document", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created", _UtcText, nullable=False),
    Column("last_modified", _UtcText, nullable=False),
    *_generated(_GROUP_FIELDS),
    PrimaryKeyConstraint("tenant_id", "id", name="pk_groups"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_groups_tenant"),
    UniqueConstraint("tenant_id", "display_name_folded", name="uq_groups_display_name"),
    Index("ix_groups_external_id", "tenant_id", "external_id", "id"),
)

# How many members and groups each tenant has, kept with every insert and
# delete: an unfiltered listing reads its totalResults here instead of
# counting a million rows on every page. One row per tenant and kind, so that
# member and group writes never wait on each other's counter. The rows of kind
# "members@<id>" count the members of a segment of the tenant's id order (see
# _SEGMENT): they let a page at any offset skip to its segment.
tenant_counts = Table(
    "tenant_counts",
    metadata,
    Column("tenant_id", _TEXT, nullable=False),
    Column("kind", _TEXT, nullable=False),
    Column("n", Integer, nullable=False),
    PrimaryKeyConstraint("tenant_id", "kind", name="pk_tenant_counts"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_tenant_counts_tenant"),
)

# The outbox and audit trail: one row per event, written with the change.
events = Table(
    "events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", _TEXT, nullable=False),
    Column("tenant_id", _TEXT, nullable=False),
    Column("type", _TEXT, nullable=False),
    Column("subject_id", _TEXT, nullable=False),
    Column("actor", _TEXT, nullable=False),
    Column("occurred", _UtcText, nullable=False),
    Column("data", Text, nullable=False),
    Column("delivered", _UtcText),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_events_tenant"),
    # No unique index on id: ids are random UUIDs made by pbidentity, and one
    # more random-key index costs every write a tenth of its time.
    Index("ix_events_tenant", "tenant_id", "seq"),
)
# Only undelivered events are indexed for the dispatcher, so the index stays
# small however long the audit trail grows.
Index(
    "ix_events_pending",
    events.c.seq,
    sqlite_where=events.c.delivered.is_(None),
    postgresql_where=events.c.delivered.is_(None),
)

memberships = Table(
    "memberships",
    metadata,
    Column("tenant_id", _TEXT, nullable=False),
    Column("group_id", _TEXT, nullable=False),
    Column("member_id", _TEXT, nullable=False),
    PrimaryKeyConstraint("tenant_id", "group_id", "member_id", name="pk_memberships"),
    ForeignKeyConstraint(
        ["tenant_id", "group_id"],
        ["groups.tenant_id", "groups.id"],
        ondelete="CASCADE",
        name="fk_memberships_group",
    ),
    ForeignKeyConstraint(
        ["tenant_id", "member_id"],
        ["members.tenant_id", "members.id"],
        ondelete="CASCADE",
        name="fk_memberships_member",
    ),
    Index("ix_memberships_member", "tenant_id", "member_id", "group_id"),
)

# A tenant's SAML connections: at most one per state (pending, active,
# previous), enforced by the database so that two concurrent "Save &
# authorize" swaps cannot both win. The configuration is one JSON document.
saml_connections = Table(
    "saml_connections",
    metadata,
    Column("id", _TEXT, primary_key=True),
    Column("tenant_id", _TEXT, nullable=False),
    Column("state", _TEXT, nullable=False),
    Column("idp_entity_id", _TEXT, nullable=False),
    Column("document", Text, nullable=False),
    Column("metadata_xml", Text),
    Column("created", _UtcText, nullable=False),
    Column("activated", _UtcText),
    Column("version", Integer, nullable=False),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_saml_connections_tenant"),
    UniqueConstraint("tenant_id", "state", name="uq_saml_connections_state"),
    Index("ix_saml_connections_entity", "idp_entity_id", "state"),
)

# AuthnRequests waiting for their response: deleted when answered (single
# use) or purged when expired.
saml_requests = Table(
    "saml_requests",
    metadata,
    Column("tenant_id", _TEXT, nullable=False),
    Column("id", _TEXT, nullable=False),
    Column("connection_id", _TEXT, nullable=False),
    Column("purpose", _TEXT, nullable=False),
    Column("relay_state", Text),
    Column("created", _UtcText, nullable=False),
    Column("expires", _UtcText, nullable=False),
    PrimaryKeyConstraint("tenant_id", "id", name="pk_saml_requests"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_saml_requests_tenant"),
    ForeignKeyConstraint(
        ["connection_id"],
        ["saml_connections.id"],
        ondelete="CASCADE",
        name="fk_saml_requests_connection",
    ),
    Index("ix_saml_requests_expires", "expires"),
)

# The replay cache: ids of consumed assertions, shared by every app instance.
saml_assertions = Table(
    "saml_assertions",
    metadata,
    Column("tenant_id", _TEXT, nullable=False),
    Column("id", _TEXT, nullable=False),
    Column("expires", _UtcText, nullable=False),
    PrimaryKeyConstraint("tenant_id", "id", name="pk_saml_assertions"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_saml_assertions_tenant"),
    Index("ix_saml_assertions_expires", "expires"),
)

# Each tenant's key for signing its sign-in request ids (which are then
# stateless: starting a sign-in writes nothing).
saml_keys = Table(
    "saml_keys",
    metadata,
    Column("tenant_id", _TEXT, nullable=False),
    Column("secret", _TEXT, nullable=False),
    PrimaryKeyConstraint("tenant_id", name="pk_saml_keys"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_saml_keys_tenant"),
)

# Verified sign-ins waiting for their browser at the finish step, under the
# hash of a one-time code: deleted when taken or purged when expired.
saml_outcomes = Table(
    "saml_outcomes",
    metadata,
    Column("tenant_id", _TEXT, nullable=False),
    Column("id", _TEXT, nullable=False),
    Column("document", Text, nullable=False),
    Column("expires", _UtcText, nullable=False),
    PrimaryKeyConstraint("tenant_id", "id", name="pk_saml_outcomes"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_saml_outcomes_tenant"),
    Index("ix_saml_outcomes_expires", "expires"),
)


# Rows --------------------------------------------------------------------------


def _text_pair(name: str, value: Scalar) -> dict[str, Any]:
    return {name: value, f"{name}_folded": fold(value) if isinstance(value, str) else None}


def _field_values(
    specs: Iterable[_FieldColumn], attributes: Mapping[str, Any], role: str | None
) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for spec in specs:
        if spec.field.key == "role":
            found: Any = role
        else:
            found = attributes
            for part in spec.path:
                # dict first: documents are plain dicts, and ABC checks are slow.
                found = found.get(part) if isinstance(found, dict | Mapping) else None
        if found is None:
            # Most of a profile's searchable fields are absent: skip the
            # conversion and the folding for them.
            row[spec.name] = None
            if spec.folded is not None:
                row[spec.folded] = None
            continue
        value = scalar(spec.field, found)
        row[spec.name] = value
        if spec.folded is not None:
            row[spec.folded] = fold(value) if isinstance(value, str) else None
    return row


def _value_rows(member: Member) -> list[dict[str, Any]]:
    rows = []
    for attribute, subs in _VALUE_FIELDS.items():
        for position, element in enumerate(elements(member.attributes, attribute)):
            row: dict[str, Any] = {"attribute": attribute, "position": position}
            for sub in _VALUE_SUBS:
                field = subs.get(sub)
                row.update(
                    _text_pair(sub, None if field is None else scalar(field, element.get(sub)))
                )
            primary = subs.get("primary")
            row["primary"] = None if primary is None else scalar(primary, element.get("primary"))
            rows.append(row)
    return rows


def _digest(rows: list[dict[str, Any]]) -> str:
    return hashlib.sha256(orjson.dumps(rows, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def _member_row(member: Member, values: list[dict[str, Any]]) -> dict[str, Any]:
    display = reference_display(member)
    return {
        "document": dump_document(member.attributes),
        "scim_managed": member.scim_managed,
        "version": member.version,
        "created": member.created,
        "last_modified": member.last_modified,
        "values_digest": _digest(values),
        **_text_pair("ref_display", display),
        "app_role": member.role,
        "role_source": member.role_source,
        "role_rule": member.role_rule,
        **_field_values(_MEMBER_FIELDS, member.attributes, member.role_attribute),
    }


#: The members columns a unique constraint covers.
_UNIQUE_MEMBER_COLUMNS = frozenset({"tenant_id", "id", "user_name_folded", "external_id"})


def _changed_columns(
    previous: Member, member: Member
) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """The columns of ``member`` that differ from ``previous``, and its new values rows.

    ``previous`` is the member as stored; the ``member_values`` rows are
    ``None`` when they did not change. Only the columns fed by a changed
    top-level attribute are computed: a link or a deactivation touches two or
    three of the dozens of field columns, and computing every one twice was
    most of the cost of a write.
    """
    before, after = previous.attributes, member.attributes
    # Compared as JSON, not with ==: True == 1 in Python, but not in a column.
    keys = {
        k
        for k in before.keys() | after.keys()
        if (old := before.get(k)) is not (new := after.get(k))
        and (old != new or _json(old) != _json(new))
    }
    row: dict[str, Any] = {}
    if keys:
        row["document"] = dump_document(after)
    for name, old, new in (
        ("scim_managed", previous.scim_managed, member.scim_managed),
        ("app_role", previous.role, member.role),
        ("role_source", previous.role_source, member.role_source),
        ("role_rule", previous.role_rule, member.role_rule),
        ("version", previous.version, member.version),
        ("created", previous.created, member.created),
        ("last_modified", previous.last_modified, member.last_modified),
    ):
        if old != new:
            row[name] = new
    if keys & _DISPLAY_SOURCES:
        display = reference_display(member)
        if display != reference_display(previous):
            row.update(_text_pair("ref_display", display))
    role_changed = previous.role_attribute != member.role_attribute
    specs = [
        spec
        for spec in _MEMBER_FIELDS
        if (spec.field.key == "role" and role_changed) or spec.path[0] in keys
    ]
    if specs:
        row.update(_field_values(specs, after, member.role_attribute))
    values = None
    if keys.intersection(_VALUE_ATTRIBUTES):
        new_values = _value_rows(member)
        digest = _digest(new_values)
        if digest != _digest(_value_rows(previous)):
            row["values_digest"] = digest
            values = new_values
    return row, values


# The attributes a member's reference display is made of.
_DISPLAY_SOURCES = frozenset({"displayName", "name", "userName"})


def _json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _group_row(group: Group) -> dict[str, Any]:
    return {
        "document": dump_document(group.attributes),
        "version": group.version,
        "created": group.created,
        "last_modified": group.last_modified,
        **_field_values(_GROUP_FIELDS, group.attributes, None),
    }


_MEMBER_COLUMNS = (
    members.c.id,
    members.c.document,
    members.c.role,
    members.c.app_role,
    members.c.role_source,
    members.c.role_rule,
    members.c.scim_managed,
    members.c.version,
    members.c.created,
    members.c.last_modified,
)
_GROUP_COLUMNS = (
    groups.c.id,
    groups.c.document,
    groups.c.version,
    groups.c.created,
    groups.c.last_modified,
)


def _member(tenant_id: str, row: Any) -> Member:
    return Member(
        tenant_id=tenant_id,
        id=row.id,
        attributes=load_document(row.document),
        role_attribute=row.role,
        role=row.app_role,
        role_source=row.role_source,
        role_rule=row.role_rule,
        scim_managed=row.scim_managed,
        version=row.version,
        created=row.created,
        last_modified=row.last_modified,
    )


def _group(tenant_id: str, row: Any) -> Group:
    return Group(
        tenant_id=tenant_id,
        id=row.id,
        attributes=load_document(row.document),
        version=row.version,
        created=row.created,
        last_modified=row.last_modified,
    )


def _tenant(row: Any) -> Tenant:
    return Tenant(
        id=row.id,
        slug=row.slug,
        name=row.name,
        scim_enabled=row.scim_enabled,
        created=row.created,
        version=row.version,
        settings=load_document(row.settings),
    )


def _tenant_row(tenant: Tenant) -> dict[str, Any]:
    values = attrs.asdict(tenant, recurse=False)
    values["settings"] = dump_document(tenant.settings)
    return values


def _event(row: Any) -> Event:
    return Event(
        id=row.id,
        tenant_id=row.tenant_id,
        type=row.type,
        subject_id=row.subject_id,
        actor=row.actor,
        occurred=row.occurred,
        data=load_document(row.data),
        seq=row.seq,
        delivered=row.delivered,
    )


def _saml_row(connection: SamlConnection) -> dict[str, Any]:
    idp = connection.idp
    document = {
        "idp": {
            "entity_id": idp.entity_id,
            "sso_url": idp.sso_url,
            "sso_binding": idp.sso_binding,
            "certificates": list(idp.certificates),
            "nameid_formats": list(idp.nameid_formats),
            "attributes": list(idp.attributes),
            "valid_until": None
            if idp.valid_until is None
            else utc(idp.valid_until).isoformat(timespec="microseconds"),
            "cache_duration": idp.cache_duration,
        },
        "attribute_mapping": dict(connection.attribute_mapping),
        "allow_idp_initiated": connection.allow_idp_initiated,
        "unknown_members": connection.unknown_members,
        "roles": {
            "enabled": connection.roles.enabled,
            "attribute": connection.roles.attribute,
            "groups_attribute": connection.roles.groups_attribute,
        },
        "source": connection.source,
        "last_attempt": connection.last_attempt,
    }
    return {
        "id": connection.id,
        "tenant_id": connection.tenant_id,
        "state": connection.state,
        "idp_entity_id": idp.entity_id,
        "document": dump_document(document),
        "metadata_xml": connection.metadata_xml,
        "created": connection.created,
        "activated": connection.activated,
        "version": connection.version,
    }


def _saml_connection(row: Any) -> SamlConnection:
    document = load_document(row.document)
    idp = document["idp"]
    return SamlConnection(
        id=row.id,
        tenant_id=row.tenant_id,
        state=row.state,
        idp=IdentityProvider(
            entity_id=idp["entity_id"],
            sso_url=idp["sso_url"],
            sso_binding=idp["sso_binding"],
            certificates=tuple(idp["certificates"]),
            nameid_formats=tuple(idp["nameid_formats"]),
            attributes=tuple(idp["attributes"]),
            valid_until=None
            if idp["valid_until"] is None
            else datetime.fromisoformat(idp["valid_until"]),
            cache_duration=idp["cache_duration"],
        ),
        attribute_mapping=document["attribute_mapping"],
        allow_idp_initiated=document["allow_idp_initiated"],
        unknown_members=document["unknown_members"],
        # Connections saved before roles came from sign-ins have none: off.
        roles=SamlRoles(**document["roles"]) if "roles" in document else SamlRoles(),
        source=document["source"],
        metadata_xml=row.metadata_xml,
        created=row.created,
        activated=row.activated,
        last_attempt=document["last_attempt"],
        version=row.version,
    )


def _saml_request(row: Any) -> SamlRequest:
    return SamlRequest(
        id=row.id,
        tenant_id=row.tenant_id,
        connection_id=row.connection_id,
        purpose=row.purpose,
        relay_state=row.relay_state,
        created=row.created,
        expires=row.expires,
    )


def _token(row: Any) -> ApiToken:
    return ApiToken(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        digest=row.digest,
        created=row.created,
        last_used=row.last_used,
        revoked=row.revoked,
    )


# Filter compilation -------------------------------------------------------------

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


# Errors ------------------------------------------------------------------------

# SQLite reports schema and statement problems as OperationalError too; those
# are bugs or a damaged database, not an outage worth retrying.
_NOT_AN_OUTAGE = ("no such table", "no such column", "syntax error", "too complex", "has no column")


def _storage_error(error: DBAPIError) -> StorageError:
    message = str(error.orig).splitlines()[0] if error.orig is not None else str(error)
    outage = error.connection_invalidated or (
        isinstance(error, OperationalError)
        and not any(marker in message.lower() for marker in _NOT_AN_OUTAGE)
    )
    if outage:
        return StorageUnavailableError(f"the database is unavailable: {message}")
    return StorageError(f"the database refused the operation: {message}")


def _constraint(error: IntegrityError) -> str:
    """The violated constraint's name (PostgreSQL) or message (SQLite), lower-cased."""
    diag = getattr(error.orig, "diag", None)
    name = getattr(diag, "constraint_name", None)
    if isinstance(name, str):
        return name.lower()
    return str(error.orig).splitlines()[0].lower()


def _is_foreign_key(error: IntegrityError) -> bool:
    text_ = _constraint(error)
    return "foreign key" in text_ or text_.startswith("fk_")


def _guarded(
    method: Callable[Concatenate[_SqlTransaction, _P], _R],
) -> Callable[Concatenate[_SqlTransaction, _P], _R]:
    """Turn driver errors raised by a protocol method into pbidentity errors."""

    @functools.wraps(method)
    def guarded(self: _SqlTransaction, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if self._closed:
            raise RuntimeError("the transaction is over")
        try:
            return method(self, *args, **kwargs)
        except DBAPIError as error:
            raise _storage_error(error) from error
        except SQLAlchemyError as error:
            raise StorageError(f"the database layer failed: {error}") from error

    return guarded


_Id = TypeVar("_Id", str, int)


def _chunks(ids: Iterable[_Id]) -> Iterator[list[_Id]]:
    unique = sorted(set(ids))
    for start in range(0, len(unique), _MAX_IDS):
        yield unique[start : start + _MAX_IDS]


# Statements built once; SQLAlchemy caches their compiled form.

_T: BindParameter[str] = bindparam("b_tenant_id")
_ID: BindParameter[str] = bindparam("b_id")
_IDS: BindParameter[list[str]] = bindparam("b_ids", expanding=True)

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
_GET_MEMBERS = _SELECT_MEMBERS.where(members.c.tenant_id == _T, members.c.id.in_(_IDS)).order_by(
    members.c.id
)
_EXISTING_MEMBERS = select(members.c.id).where(members.c.tenant_id == _T, members.c.id.in_(_IDS))
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
    .where(memberships.c.tenant_id == _T, memberships.c.group_id.in_(_IDS))
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
    .where(memberships.c.tenant_id == _T, memberships.c.member_id.in_(_IDS))
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

# Segments: a tenant's members in id order (the order of an unsorted listing)
# cut into runs of consecutive ids, each counted in a row of tenant_counts.
# The row of kind "members@" + X counts the members whose id is X or above and
# below the next segment's X; "members@" alone starts below every id, so each
# id falls in exactly one segment. The counts move in the transaction of
# every member insert and delete, right after the tenant's member counter,
# whose row lock puts those transactions in one order: they are exact in
# every snapshot. A page at offset k then reads, in its one statement (one
# snapshot, even under READ COMMITTED), where the segment holding position k
# starts and how many members precede it, and skips fewer than a segment's
# ids in the index instead of k. Nothing is cached in the process, so
# another instance's writes count as soon as they commit.
_SEGMENT = "members@"
# Every "members@..." kind sorts below this one (in code-point order "A"
# follows "@"), so the two bound a range scan of the primary key.
_PAST_SEGMENTS = "membersA"
# A segment grown past twice this many members is cut into segments of this
# size (the last keeps the rest): a page skips fewer than 2 x 2,000 ids, and
# a million members make about 500 segment rows for a page to add up. (On
# PostgreSQL, segments of 5,000 made the last page 2 ms slower, and 1,000
# gained nothing.)
_SEGMENT_SIZE = 2_000

_IN_SEGMENTS = and_(tenant_counts.c.kind >= _SEGMENT, tenant_counts.c.kind < _PAST_SEGMENTS)
# The segments add up to the member counter. Every pbidentity takes the
# counter's lock to insert or delete members, but one from before segments (an
# instance not yet upgraded, mid-rollout) moves the counter only: a page that
# finds the two apart skips the plain way, and the next write counts again.
_other_counts = tenant_counts.alias("other_counts")
_SEGMENTED = (
    select(func.sum(_other_counts.c.n))
    .where(
        _other_counts.c.tenant_id == _T,
        _other_counts.c.kind >= _SEGMENT,
        _other_counts.c.kind < _PAST_SEGMENTS,
    )
    .scalar_subquery()
)
_MEMBERS_COUNTED = (
    select(_other_counts.c.n)
    .where(_other_counts.c.tenant_id == _T, _other_counts.c.kind == "members")
    .scalar_subquery()
)
_SEGMENTS = (
    select(tenant_counts.c.kind, tenant_counts.c.n, _MEMBERS_COUNTED.label("counted"))
    .where(tenant_counts.c.tenant_id == _T, _IN_SEGMENTS)
    .order_by(tenant_counts.c.kind)
)
# The segment of one id: the last one that starts at or below it (b_kind is
# "members@" + the id). SQLite reads it, then moves it; PostgreSQL does both
# in one statement (_MOVE_SEGMENT).
_SEGMENT_OF = (
    select(
        tenant_counts.c.kind,
        tenant_counts.c.n,
        _SEGMENTED.label("segmented"),
        _MEMBERS_COUNTED.label("counted"),
    )
    .where(
        tenant_counts.c.tenant_id == _T,
        tenant_counts.c.kind >= _SEGMENT,
        tenant_counts.c.kind <= bindparam("b_kind"),
    )
    .order_by(tenant_counts.c.kind.desc())
    .limit(1)
)
# PostgreSQL moves the segment of one id in one round trip: the UPDATE finds
# it, and says what it holds now. It changes nothing (and returns no row) when
# the segments, before this change, do not add up to the counter, which has
# it already. Safe as one statement only because the member counter's lock is
# held: no other unit moves a segment meanwhile.
_DELTA = bindparam("b_delta", type_=Integer)
_containing = tenant_counts.alias("containing")
_MOVE_SEGMENT = (
    update(tenant_counts)
    .where(
        tenant_counts.c.tenant_id == _T,
        tenant_counts.c.kind
        == select(func.max(_containing.c.kind))
        .where(
            _containing.c.tenant_id == _T,
            _containing.c.kind >= _SEGMENT,
            _containing.c.kind <= bindparam("b_key"),
        )
        .scalar_subquery(),
        _SEGMENTED + _DELTA == _MEMBERS_COUNTED,
    )
    .values(n=tenant_counts.c.n + _DELTA)
    .returning(tenant_counts.c.kind, tenant_counts.c.n)
)
_SET_COUNT = (
    update(tenant_counts)
    .where(tenant_counts.c.tenant_id == _T, tenant_counts.c.kind == bindparam("b_kind"))
    .values(n=bindparam("b_n"))
)
_INSERT_COUNTS = insert(tenant_counts)
_DROP_COUNT = delete(tenant_counts).where(
    tenant_counts.c.tenant_id == _T, tenant_counts.c.kind == bindparam("b_kind")
)
_DROP_SEGMENTS = delete(tenant_counts).where(tenant_counts.c.tenant_id == _T, _IN_SEGMENTS)
_MEMBER_COUNT = select(func.count()).select_from(members).where(members.c.tenant_id == _T)
# The id b_skip places after b_from in id order (b_skip 0: b_from itself, if
# a member has it): where a segment is cut.
_MEMBER_AT = (
    select(members.c.id)
    .where(members.c.tenant_id == _T, members.c.id >= bindparam("b_from"))
    .order_by(members.c.id)
    .limit(1)
    .offset(bindparam("b_skip"))
)


def _segmented_page() -> Select[Any]:
    """The unsorted, unfiltered page of ``b_limit`` members at offset ``b_offset``."""
    offset = bindparam("b_offset", type_=BigInteger)
    limit = bindparam("b_limit", type_=BigInteger)
    ranked = (
        select(
            tenant_counts.c.kind,
            (
                func.sum(tenant_counts.c.n).over(order_by=tenant_counts.c.kind) - tenant_counts.c.n
            ).label("before"),
        )
        .where(tenant_counts.c.tenant_id == _T, _IN_SEGMENTS, _SEGMENTED == _MEMBERS_COUNTED)
        .cte("ranked")
    )
    # The last segment with at most b_offset members before it: the one that
    # holds the offset (or an empty one right before it, which holds nothing).
    held = (
        select(ranked.c.kind, ranked.c.before)
        .where(ranked.c.before <= offset)
        .order_by(ranked.c.kind.desc())
        .limit(1)
        .cte("held")
    )
    start = len(_SEGMENT) + 1
    # A tenant without segments (no member written since they were
    # introduced), or whose segments do not add up, is read from its first
    # id, skipping the whole offset.
    first = func.coalesce(
        select(func.substr(held.c.kind, start)).scalar_subquery(), literal("", _TEXT)
    )
    before = func.coalesce(select(held.c.before).scalar_subquery(), 0)
    # The page ends below the first segment that starts past it, else at the
    # tenant's last id. Bounding the range keeps a plan made without
    # statistics (a fresh bulk load: a bitmap scan and a sort of the whole
    # range) to a few segments instead of every member from the offset on.
    past = select(func.min(ranked.c.kind)).where(ranked.c.before >= offset + limit)
    # (Not correlated: the tenant's last id, not the row's.)
    last_id = select(func.max(members.c.id)).where(members.c.tenant_id == _T).correlate(None)
    last = func.coalesce(func.substr(past.scalar_subquery(), start), last_id.scalar_subquery())
    page_ids = (
        select(members.c.id)
        .where(members.c.tenant_id == _T, members.c.id >= first, members.c.id <= last)
        .order_by(members.c.id)
        .limit(limit)
        .offset(offset - before)
    )
    return _SELECT_MEMBERS.where(members.c.tenant_id == _T, members.c.id.in_(page_ids)).order_by(
        members.c.id
    )


_SEGMENTED_PAGE = _segmented_page()
_INSERT_MEMBER = insert(members)
_INSERT_EVENT = insert(events)
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
_MEMBERSHIPS_OF = select(memberships.c.member_id).where(
    memberships.c.tenant_id == _T,
    memberships.c.group_id == _ID,
    memberships.c.member_id.in_(_IDS),
)


# The hot path ------------------------------------------------------------------
#
# SQLAlchemy's per-execution bookkeeping costs about three times what SQLite
# needs to run a primary-key lookup, and every IdP request runs a handful of
# fixed statements (token, tenant, the resource, its groups). Those statements
# are compiled once per dialect and run on the DBAPI cursor of the same
# connection, inside the same transaction; parameters and results still go
# through the SQLAlchemy types' own bind and result processors, so values are
# exactly what a Core execution would give. When the engine has cursor
# listeners (a host app's tracing or query logging), every statement goes
# through Core instead, so that instrumentation still sees all of them.


def _row_class(keys: tuple[str, ...]) -> Any:
    # A named tuple gives the attribute and index access of SQLAlchemy's Row.
    return collections.namedtuple("Row", keys, rename=True)


class _Fast:
    """A statement compiled once for a dialect, run on the DBAPI cursor."""

    def __init__(
        self, statement: Any, dialect: Dialect, column_keys: Sequence[str] | None = None
    ) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        self.statement = statement
        self.sql = str(compiled)
        self.positional = compiled.positional
        self.names: tuple[str, ...] = tuple(
            compiled.positiontup if compiled.positional else compiled.binds
        )
        # Literal parameters SQLAlchemy adds itself (SQLite's "LIMIT -1" before
        # an OFFSET) keep the value they were compiled with.
        self.defaults = {
            name: bind.value for name, bind in compiled.binds.items() if not bind.required
        }
        self.bind_processors = {
            name: dialect.type_descriptor(bind.type).bind_processor(dialect)
            for name, bind in compiled.binds.items()
        }
        self.plan = tuple((name, self.bind_processors.get(name)) for name in self.names)
        columns: Any = getattr(statement, "selected_columns", None)
        if columns is None:
            # What an INSERT or UPDATE returns (nothing without RETURNING).
            columns = getattr(statement, "exported_columns", ())
        selected = list(columns)
        self.keys = tuple(column.key for column in selected)
        self.row: Any = _row_class(self.keys)
        self.result_processors = tuple(
            dialect.type_descriptor(column.type).result_processor(dialect, None)
            for column in selected
        )
        self.dbapi_error: type[Exception] = dialect.loaded_dbapi.Error

    def _core_values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        # Only this statement's parameters: Core derives an UPDATE's SET
        # clause from the keys it is given.
        return {name: values[name] for name in self.names if name in values}

    def _parameters(self, values: Mapping[str, Any]) -> Any:
        defaults = self.defaults
        processed = [
            (value if processor is None else processor(value))
            for name, processor in self.plan
            for value in (values[name] if name in values else defaults[name],)
        ]
        if self.positional:
            return tuple(processed)
        return dict(zip(self.names, processed, strict=True))

    def _cursor(self, tx: _SqlTransaction, values: Mapping[str, Any]) -> Any:
        parameters = self._parameters(values)
        cursor = tx._dbapi.cursor()
        try:
            cursor.execute(self.sql, parameters)
        except self.dbapi_error as error:
            cursor.close()
            raise DBAPIError.instance(
                self.sql, parameters, error, self.dbapi_error, dialect=tx._dialect_impl
            ) from error
        return cursor

    def rows(self, tx: _SqlTransaction, values: Mapping[str, Any]) -> Sequence[Any]:
        """Run a query and return its rows, values processed as Core would.

        A unit whose statements must go through Core runs it there instead
        (see :func:`_instrumented`).
        """
        if tx._core:
            return tx._conn.execute(self.statement, self._core_values(values)).all()
        cursor = self._cursor(tx, values)
        try:
            raw = cursor.fetchall()
        finally:
            cursor.close()
        processors = self.result_processors
        make = self.row._make
        return [
            make(
                value if proc is None else proc(value)
                for proc, value in zip(processors, row, strict=True)
            )
            for row in raw
        ]

    def run_many(self, tx: _SqlTransaction, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run a write once per row of parameters (an ``executemany``)."""
        if tx._core:
            tx._conn.execute(self.statement, [self._core_values(row) for row in rows])
            return
        parameters = [self._parameters(row) for row in rows]
        cursor = tx._dbapi.cursor()
        try:
            cursor.executemany(self.sql, parameters)
        except self.dbapi_error as error:
            raise DBAPIError.instance(
                self.sql, parameters, error, self.dbapi_error, dialect=tx._dialect_impl
            ) from error
        finally:
            cursor.close()

    def run(self, tx: _SqlTransaction, values: Mapping[str, Any]) -> int:
        """Run a write and return the number of rows it matched."""
        if tx._core:
            return int(tx._conn.execute(self.statement, self._core_values(values)).rowcount)
        cursor = self._cursor(tx, values)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()


def _instrumented(connection: Connection | Engine) -> bool:
    """Whether something listens to cursor executions on this connection or engine."""
    dispatch = connection.dispatch
    return bool(dispatch.before_cursor_execute or dispatch.after_cursor_execute)


_FAST: dict[tuple[int, str, tuple[str, ...] | None], _Fast] = {}
_FAST_CACHE_SIZE = 2048


def _fast(statement: Any, dialect: Dialect, column_keys: Sequence[str] | None = None) -> _Fast:
    """The compiled form of a module-level statement (a benign race may compile it twice)."""
    key = (id(statement), dialect.name, None if column_keys is None else tuple(column_keys))
    compiled = _FAST.get(key)
    if compiled is None:
        compiled = _Fast(statement, dialect, column_keys)
        # Updates are compiled per set of changed columns; clients choose
        # those sets, so the cache is bounded (past it, compile every time).
        if len(_FAST) < _FAST_CACHE_SIZE:
            _FAST[key] = compiled
    return compiled


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


# Transaction -------------------------------------------------------------------


class _SqlTransaction:
    """One unit of work on one connection; see :class:`~pbidentity.storage.Transaction`."""

    def __init__(
        self,
        engine: Engine,
        *,
        core: bool,
        connection: Connection | None = None,
        raw: PoolProxiedConnection | None = None,
    ) -> None:
        self._engine = engine
        self._dialect_impl = engine.dialect
        self._dialect = engine.dialect.name
        self._connection = connection
        self._raw = raw
        pooled = connection.connection if connection is not None else raw
        assert pooled is not None  # noqa: S101 - one of the two is always given
        self._dbapi: Any = pooled.driver_connection
        self._closed = False
        # Whether statements go through Core (see _instrumented), decided once per unit.
        self._core = core
        # Members as this unit read or wrote them, so that a replace writes
        # only the columns that change.
        self._read: dict[tuple[str, str], Member] = {}

    @property
    def _conn(self) -> Connection:
        """The Core connection, made on first use over the unit's DBAPI connection."""
        if self._connection is None:
            self._connection = Connection(self._engine, connection=self._raw)
        return self._connection

    def _rows(
        self, statement: Any, values: Mapping[str, Any], column_keys: Sequence[str] | None = None
    ) -> Sequence[Any]:
        return _fast(statement, self._dialect_impl, column_keys).rows(self, values)

    def _run_many(self, statement: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        _fast(statement, self._dialect_impl, sorted(rows[0])).run_many(self, rows)

    def _run(
        self, statement: Any, values: Mapping[str, Any], column_keys: Sequence[str] | None = None
    ) -> int:
        return _fast(statement, self._dialect_impl, column_keys).run(self, values)

    @contextmanager
    def _savepoint(self, *, fallible_statements: int = 1) -> Iterator[None]:
        """Make a failed write leave the transaction as it was, and usable.

        PostgreSQL aborts the whole transaction on an error, so every write
        that may break a constraint runs in a savepoint there. SQLite backs out
        only the failing statement, so a write whose only fallible statement
        is its first needs none (and saves two round trips of SQLAlchemy
        overhead per write); several statements that may each fail do.
        """
        if fallible_statements == 0 or (self._dialect == "sqlite" and fallible_statements == 1):
            yield
            return
        with self._conn.begin_nested():
            yield

    # Tenants -----------------------------------------------------------------
    @_guarded
    def add_tenant(self, tenant: Tenant) -> None:
        """Insert a tenant; ``ConflictError(attribute="slug")`` if the slug is taken."""
        try:
            with self._savepoint():
                self._conn.execute(insert(tenants), [_tenant_row(tenant)])
                self._conn.execute(
                    insert(tenant_counts),
                    [{"tenant_id": tenant.id, "kind": kind, "n": 0} for kind in _COUNTED],
                )
        except IntegrityError as error:
            raise _tenant_conflict(error, tenant) from error

    @_guarded
    def get_tenant(self, tenant_id: str) -> Tenant | None:
        """The tenant with that id, or ``None``."""
        rows = self._rows(_GET_TENANT, {"b_id": tenant_id})
        return _tenant(rows[0]) if rows else None

    @_guarded
    def find_tenant(self, slug: str) -> Tenant | None:
        """The tenant with that slug (exact match), or ``None``."""
        row = self._conn.execute(select(tenants).where(tenants.c.slug == slug)).first()
        return None if row is None else _tenant(row)

    @_guarded
    def list_tenants(self) -> Sequence[Tenant]:
        """Every tenant, ordered by slug."""
        rows = self._conn.execute(select(tenants).order_by(tenants.c.slug))
        return [_tenant(row) for row in rows]

    @_guarded
    def replace_tenant(self, tenant: Tenant, *, expected_version: int) -> None:
        """Overwrite a tenant whose stored version is ``expected_version``."""
        values = _tenant_row(tenant)
        del values["id"]
        statement = (
            update(tenants)
            .where(tenants.c.id == tenant.id, tenants.c.version == expected_version)
            .values(**values)
        )
        try:
            with self._savepoint():
                changed = self._conn.execute(statement).rowcount
        except IntegrityError as error:
            raise _tenant_conflict(error, tenant) from error
        if changed == 0:
            current = self._conn.execute(
                select(tenants.c.version).where(tenants.c.id == tenant.id)
            ).scalar()
            _raise_missing_or_moved("tenant", tenant.id, current, expected_version)

    # Tokens ------------------------------------------------------------------
    @_guarded
    def add_token(self, token: ApiToken) -> None:
        """Insert a token; ``ConflictError(attribute="name")`` for a duplicate active name."""
        try:
            with self._savepoint():
                self._conn.execute(insert(api_tokens), [attrs.asdict(token, recurse=False)])
        except IntegrityError as error:
            constraint = _constraint(error)
            if _is_foreign_key(error):
                raise NotFoundError(f"tenant {token.tenant_id!r} does not exist") from error
            if "digest" in constraint:
                raise ConflictError(
                    "a token with that digest already exists", attribute="digest"
                ) from error
            if "name" in constraint:
                raise ConflictError(
                    f"the tenant already has an active token named {token.name!r}",
                    attribute="name",
                ) from error
            raise ConflictError(f"token id {token.id!r} already exists", attribute="id") from error

    @_guarded
    def find_token(self, digest: str) -> ApiToken | None:
        """The token with that digest (revoked or not), or ``None``."""
        rows = self._rows(_FIND_TOKEN, {"b_digest": digest})
        return _token(rows[0]) if rows else None

    @_guarded
    def find_token_with_tenant(self, digest: str) -> tuple[ApiToken, Tenant] | None:
        """The token with that digest and its tenant, in one statement."""
        rows = self._rows(_FIND_TOKEN_WITH_TENANT, {"b_digest": digest})
        if not rows:
            return None
        row = rows[0]
        tenant = Tenant(
            id=row.tenant_id,
            slug=row.tenant_slug,
            name=row.tenant_name,
            scim_enabled=row.tenant_scim_enabled,
            created=row.tenant_created,
            version=row.tenant_version,
            settings=load_document(row.tenant_settings),
        )
        return _token(row), tenant

    @_guarded
    def list_tokens(self, tenant_id: str) -> Sequence[ApiToken]:
        """The tenant's tokens, revoked ones included, oldest first (then by id)."""
        statement = (
            select(api_tokens)
            .where(api_tokens.c.tenant_id == tenant_id)
            .order_by(api_tokens.c.created, api_tokens.c.id)
        )
        return [_token(row) for row in self._conn.execute(statement)]

    @_guarded
    def revoke_token(self, tenant_id: str, token_id: str, when: datetime) -> None:
        """Mark a token revoked; an already revoked token keeps its first revocation time."""
        statement = (
            update(api_tokens)
            .where(api_tokens.c.tenant_id == tenant_id, api_tokens.c.id == token_id)
            .values(
                revoked=func.coalesce(api_tokens.c.revoked, bindparam("when", when, _UtcText()))
            )
        )
        if self._conn.execute(statement).rowcount == 0:
            raise NotFoundError(f"tenant {tenant_id!r} has no token {token_id!r}")

    @_guarded
    def touch_token(self, token_id: str, when: datetime) -> None:
        """Record a use at ``when``; never moves ``last_used`` back, ignores unknown ids."""
        self._run(_TOUCH_TOKEN, {"b_id": token_id, "b_when": when})

    # Members -----------------------------------------------------------------
    @_guarded
    def add_member(self, member: Member) -> None:
        """Insert a member; ``ConflictError(attribute="userName")`` if userName is taken."""
        values = _value_rows(member)
        row = _member_row(member, values)
        keys = {"tenant_id": member.tenant_id, "member_id": member.id}
        try:
            with self._savepoint():
                record = {"tenant_id": member.tenant_id, "id": member.id, **row}
                self._run(_INSERT_MEMBER, record, sorted(record))
                if values:
                    self._run_many(_INSERT_VALUES, [{**keys, **v} for v in values])
                self._count(member.tenant_id, "members", 1)
                self._move_segments(member.tenant_id, [member.id], 1)
        except IntegrityError as error:
            if _is_foreign_key(error):
                raise NotFoundError(f"tenant {member.tenant_id!r} does not exist") from error
            if "user_name" in _constraint(error):
                raise _user_name_taken(member) from error
            if "external_id" in _constraint(error):
                raise _external_id_taken(member) from error
            raise ConflictError(
                f"member id {member.id!r} already exists", attribute="id"
            ) from error

    @_guarded
    def add_members(self, members: Sequence[Member]) -> None:
        """Insert many members at once (all or none): two executemany statements."""
        if not members:
            return
        rows: list[dict[str, Any]] = []
        values: list[dict[str, Any]] = []
        for member in members:
            member_values_rows = _value_rows(member)
            row = _member_row(member, member_values_rows)
            rows.append({"tenant_id": member.tenant_id, "id": member.id, **row})
            keys = {"tenant_id": member.tenant_id, "member_id": member.id}
            values.extend({**keys, **v} for v in member_values_rows)
        try:
            with self._savepoint(fallible_statements=2):
                self._run_many(_INSERT_MEMBER, rows)
                if values:
                    self._run_many(_INSERT_VALUES, values)
                by_tenant: dict[str, list[str]] = collections.defaultdict(list)
                for member in members:
                    by_tenant[member.tenant_id].append(member.id)
                # Tenants in one order, so that two imports lock their counters alike.
                for tenant_id, ids in sorted(by_tenant.items()):
                    self._count(tenant_id, "members", len(ids))
                    self._move_segments(tenant_id, ids, 1)
        except IntegrityError as error:
            constraint = _constraint(error)
            if _is_foreign_key(error):
                raise NotFoundError("a member names a tenant that does not exist") from error
            if "user_name" in constraint:
                raise ConflictError(
                    "a userName of these members is already taken in the tenant",
                    attribute="userName",
                ) from error
            if "external_id" in constraint:
                raise ConflictError(
                    "an externalId of these members is already linked to another member",
                    attribute="externalId",
                ) from error
            raise ConflictError("a member id is given twice or exists", attribute="id") from error

    @_guarded
    def get_member(self, tenant_id: str, member_id: str) -> Member | None:
        """The member, or ``None``."""
        where = {"b_tenant_id": tenant_id, "b_id": member_id}
        rows = self._rows(_GET_MEMBER, where)
        if not rows:
            return None
        member = _member(tenant_id, rows[0])
        self._read[(tenant_id, member_id)] = member
        return member

    @_guarded
    def replace_member(self, member: Member, *, expected_version: int) -> None:
        """Overwrite a member whose stored version is ``expected_version``."""
        where = {"b_tenant_id": member.tenant_id, "b_id": member.id, "b_expected": expected_version}
        key = (member.tenant_id, member.id)
        previous = self._read.pop(key, None)
        if previous is not None and previous.version == expected_version:
            # The row as this unit read it: if its version still matches when
            # the UPDATE runs, it is exactly what is stored (every write bumps
            # the version), so only the columns that differ need computing
            # and writing. An UPDATE of every column costs ten times more on
            # SQLite, because each indexed column's entry is rewritten.
            self._update_changed(member, previous, where)
            self._read[key] = member
            return
        values = _value_rows(member)
        row = _member_row(member, values)
        try:
            with self._savepoint():
                same = {**row, **where, "b_digest": row["values_digest"]}
                if self._run(_UPDATE_MEMBER_SAME_VALUES, same, sorted(row)) == 1:
                    return
                if self._conn.execute(_UPDATE_MEMBER, {**row, **where}).rowcount == 0:
                    current = self._conn.execute(_MEMBER_VERSION, where).scalar()
                    _raise_missing_or_moved("member", member.id, current, expected_version)
                self._conn.execute(_DELETE_VALUES, where)
                if values:
                    keys = {"tenant_id": member.tenant_id, "member_id": member.id}
                    self._run_many(_INSERT_VALUES, [{**keys, **v} for v in values])
        except IntegrityError as error:
            if "user_name" in _constraint(error):
                raise _user_name_taken(member) from error
            if "external_id" in _constraint(error):
                raise _external_id_taken(member) from error
            raise

    def _update_changed(self, member: Member, previous: Member, where: dict[str, Any]) -> None:
        row, values = _changed_columns(previous, member)
        # The version check needs a SET clause even when nothing else moved.
        row.setdefault("version", member.version)
        changed = sorted(row)
        # A change of neither unique column nor values rows (a role decided
        # again, a deactivation) cannot break a constraint: no savepoint, which
        # is two round trips on PostgreSQL for every member a group change
        # re-decides.
        fallible = int(values is not None or not _UNIQUE_MEMBER_COLUMNS.isdisjoint(row))
        try:
            with self._savepoint(fallible_statements=fallible):
                if self._run(_UPDATE_MEMBER, {**row, **where}, changed) == 0:
                    current = self._conn.execute(_MEMBER_VERSION, where).scalar()
                    _raise_missing_or_moved("member", member.id, current, where["b_expected"])
                if values is not None:
                    self._conn.execute(_DELETE_VALUES, where)
                    if values:
                        keys = {"tenant_id": member.tenant_id, "member_id": member.id}
                        self._run_many(_INSERT_VALUES, [{**keys, **v} for v in values])
        except IntegrityError as error:
            if "user_name" in _constraint(error):
                raise _user_name_taken(member) from error
            if "external_id" in _constraint(error):
                raise _external_id_taken(member) from error
            raise

    @_guarded
    def delete_member(self, tenant_id: str, member_id: str) -> bool:
        """Delete a member and its memberships; ``False`` if it did not exist."""
        statement = delete(members).where(
            members.c.tenant_id == tenant_id, members.c.id == member_id
        )
        deleted = bool(self._conn.execute(statement).rowcount)
        if deleted:
            self._count(tenant_id, "members", -1)
            self._move_segments(tenant_id, [member_id], -1)
        return deleted

    @_guarded
    def get_members(self, tenant_id: str, member_ids: Collection[str]) -> Sequence[Member]:
        """The members with those ids that exist, ordered by id."""
        found: list[Member] = []
        for chunk in _chunks(sorted(set(member_ids))):
            rows = self._conn.execute(_GET_MEMBERS, {"b_tenant_id": tenant_id, "b_ids": chunk})
            found.extend(_member(tenant_id, row) for row in rows)
        for member in found:
            # As get_member: a replace of what this unit read writes only
            # the columns that changed.
            self._read[(tenant_id, member.id)] = member
        return found

    @_guarded
    def list_members(
        self, tenant_id: str, *, after: str | None = None, limit: int = 1000
    ) -> Sequence[Member]:
        """Up to ``limit`` members whose id sorts after ``after``, ordered by id."""
        statement = _SELECT_MEMBERS.where(members.c.tenant_id == tenant_id)
        if after is not None:
            statement = statement.where(members.c.id > after)
        rows = self._conn.execute(statement.order_by(members.c.id).limit(limit))
        return [_member(tenant_id, row) for row in rows]

    @_guarded
    def members_matching(
        self,
        tenant_id: str,
        *,
        user_name: str | None = None,
        external_id: str | None = None,
        email: str | None = None,
        limit: int = 20,
    ) -> Sequence[Member]:
        """Members whose userName, externalId or one of whose emails is the given one."""
        values = {
            "b_tenant_id": tenant_id,
            "b_user_name": None if user_name is None else fold(user_name),
            "b_external_id": external_id,
            "b_email": None if email is None else fold(email),
            "b_limit": limit,
        }
        return [_member(tenant_id, row) for row in self._rows(_MATCHING, values)]

    @_guarded
    def count_active_members(self, tenant_id: str, role: str) -> int:
        """How many active members have that role."""
        statement = select(func.count()).where(
            members.c.tenant_id == tenant_id,
            members.c.app_role == role,
            members.c.active.is_(True),
        )
        return int(self._conn.execute(statement).scalar_one())

    @_guarded
    def query_members(self, tenant_id: str, query: Query) -> Page[Member]:
        """A page of the tenant's members matching ``query``."""
        rows, total, last, more = self._query(_MEMBERS, _SELECT_MEMBERS, tenant_id, query)
        members = [_member(tenant_id, row) for row in rows]
        return Page(items=members, total=total, last=last, more=more)

    @_guarded
    def existing_member_ids(self, tenant_id: str, member_ids: Collection[str]) -> set[str]:
        """The subset of ``member_ids`` that are members of the tenant."""
        found: set[str] = set()
        for chunk in _chunks(member_ids):
            found.update(
                self._conn.execute(
                    _EXISTING_MEMBERS, {"b_tenant_id": tenant_id, "b_ids": chunk}
                ).scalars()
            )
        return found

    # Groups ------------------------------------------------------------------
    @_guarded
    def add_group(self, group: Group) -> None:
        """Insert a group; ``ConflictError(attribute="displayName")`` if the name is taken."""
        row = {"tenant_id": group.tenant_id, "id": group.id, **_group_row(group)}
        try:
            with self._savepoint():
                self._conn.execute(insert(groups), [row])
                self._count(group.tenant_id, "groups", 1)
        except IntegrityError as error:
            if _is_foreign_key(error):
                raise NotFoundError(f"tenant {group.tenant_id!r} does not exist") from error
            if "display_name" in _constraint(error):
                raise _display_name_taken(group) from error
            raise ConflictError(f"group id {group.id!r} already exists", attribute="id") from error

    @_guarded
    def get_group(self, tenant_id: str, group_id: str) -> Group | None:
        """The group, or ``None``."""
        where = {"b_tenant_id": tenant_id, "b_id": group_id}
        rows = self._rows(_GET_GROUP, where)
        return _group(tenant_id, rows[0]) if rows else None

    @_guarded
    def replace_group(self, group: Group, *, expected_version: int) -> None:
        """As :meth:`replace_member`, for groups (conflicts on ``displayName``)."""
        where = {"b_tenant_id": group.tenant_id, "b_id": group.id, "b_expected": expected_version}
        row = _group_row(group)
        if self._dialect == "postgresql" and row["display_name_folded"] is not None:
            # A savepoint costs PostgreSQL two round trips; SQLite takes none.
            same = {**row, **where, "b_display_name": row["display_name_folded"]}
            if self._run(_UPDATE_GROUP_SAME_NAME, same, sorted(row)) == 1:
                return
        try:
            with self._savepoint():
                changed = self._conn.execute(_UPDATE_GROUP, {**row, **where}).rowcount
        except IntegrityError as error:
            if "display_name" in _constraint(error):
                raise _display_name_taken(group) from error
            raise
        if changed == 0:
            current = self._conn.execute(_GROUP_VERSION, where).scalar()
            _raise_missing_or_moved("group", group.id, current, expected_version)

    @_guarded
    def delete_group(self, tenant_id: str, group_id: str) -> bool:
        """Delete a group and its memberships; ``False`` if it did not exist."""
        statement = delete(groups).where(groups.c.tenant_id == tenant_id, groups.c.id == group_id)
        deleted = bool(self._conn.execute(statement).rowcount)
        if deleted:
            self._count(tenant_id, "groups", -1)
        return deleted

    def _count(self, tenant_id: str, kind: str, delta: int) -> None:
        self._run(_COUNT_CHANGE, {"b_tenant_id": tenant_id, "b_kind": kind, "b_delta": delta})

    def _move_segments(self, tenant_id: str, member_ids: Sequence[str], delta: int) -> None:
        """Count members just added (``delta`` 1) or deleted (-1) in their segments.

        Called right after the tenant's member counter moved in this unit:
        that row stays locked until the unit ends, so no other unit moves a
        segment of the tenant meanwhile, and on PostgreSQL the statements
        below already see every segment change committed before.
        """
        if len(member_ids) == 1 and self._dialect == "postgresql":
            key = {"b_tenant_id": tenant_id, "b_key": _SEGMENT + member_ids[0], "b_delta": delta}
            moved_one = self._rows(_MOVE_SEGMENT, key)
            if not moved_one:
                self._build_segments(tenant_id)
                return
            self._settle_segment(tenant_id, moved_one[0].kind, moved_one[0].n)
            return
        if len(member_ids) == 1:
            key = {"b_tenant_id": tenant_id, "b_kind": _SEGMENT + member_ids[0]}
            rows = self._rows(_SEGMENT_OF, key)
            segmented = rows[0].segmented if rows else 0
        else:
            rows = self._rows(_SEGMENTS, {"b_tenant_id": tenant_id})
            segmented = sum(row.n for row in rows)
        # The counter has this unit's change already; the segments not yet.
        apart = not rows or segmented + delta * len(member_ids) != rows[0].counted
        if apart or (len(member_ids) > 1 and rows[0].kind != _SEGMENT):
            # A tenant written before segments existed has none, and one
            # written by such a pbidentity since does not add up.
            self._build_segments(tenant_id)
            return
        kinds = [row.kind for row in rows]
        counts = {row.kind: row.n for row in rows}
        moved: collections.Counter[str] = collections.Counter()
        for member_id in member_ids:
            # Code-point order, as both databases compare these columns.
            moved[kinds[bisect.bisect_right(kinds, _SEGMENT + member_id) - 1]] += delta
        for kind, change in sorted(moved.items()):
            self._count(tenant_id, kind, change)
            if not self._settle_segment(tenant_id, kind, counts[kind] + change):
                return

    def _settle_segment(self, tenant_id: str, kind: str, n: int) -> bool:
        """Cut a segment that grew too long, drop one left empty; ``n`` is its new count.

        ``False`` when the count cannot be right and the segments were counted again.
        """
        if n < 0 or (n > 2 * _SEGMENT_SIZE and not self._cut_segment(tenant_id, kind, n)):
            # Only rows written behind pbidentity's back lead here; a recount
            # from the members themselves is exact again.
            self._build_segments(tenant_id)
            return False
        if n == 0 and kind != _SEGMENT:
            # Its ids now belong to the segment before it, which gains no
            # member: fewer rows for every page to add up.
            self._run(_DROP_COUNT, {"b_tenant_id": tenant_id, "b_kind": kind})
        return True

    def _cut_segment(self, tenant_id: str, kind: str, n: int) -> bool:
        """Cut a segment of ``n`` members into ``_SEGMENT_SIZE`` ones; the last keeps the rest.

        One skip of ``_SEGMENT_SIZE`` ids in the index per cut. ``False``
        (nothing written) if the members are fewer than ``n`` says.
        """
        size = _SEGMENT_SIZE
        cuts: list[str] = []
        lower = kind[len(_SEGMENT) :]
        while n - size * len(cuts) > 2 * size:
            found = self._rows(
                _MEMBER_AT, {"b_tenant_id": tenant_id, "b_from": lower, "b_skip": size}
            )
            if not found:
                return False
            lower = found[0].id
            cuts.append(lower)
        self._run(_SET_COUNT, {"b_tenant_id": tenant_id, "b_kind": kind, "b_n": size})
        sizes = [size] * (len(cuts) - 1) + [n - size * len(cuts)]
        self._run_many(
            _INSERT_COUNTS,
            [
                {"tenant_id": tenant_id, "kind": _SEGMENT + cut, "n": count}
                for cut, count in zip(cuts, sizes, strict=True)
            ],
        )
        return True

    def _build_segments(self, tenant_id: str) -> None:
        """Count the tenant's members into segments from scratch: one walk of its ids.

        The member counter is set to the same count: the two add up again
        even if rows were written behind pbidentity's back.
        """
        self._run(_DROP_SEGMENTS, {"b_tenant_id": tenant_id})
        n = int(self._rows(_MEMBER_COUNT, {"b_tenant_id": tenant_id})[0][0])
        self._run(_SET_COUNT, {"b_tenant_id": tenant_id, "b_kind": "members", "b_n": n})
        self._run_many(_INSERT_COUNTS, [{"tenant_id": tenant_id, "kind": _SEGMENT, "n": n}])
        # The count and the walk see the same members: their inserts and
        # deletes wait for this unit's lock on the member counter.
        if n > 2 * _SEGMENT_SIZE and not self._cut_segment(tenant_id, _SEGMENT, n):
            raise StorageError(f"the members of tenant {tenant_id!r} changed while counted")

    def _total(self, resource: _Resource, tenant_id: str, where: list[Any], query: Query) -> int:
        """The number of matches: the tenant's counter when nothing filters, else a COUNT."""
        if query.filter is None:
            rows = self._rows(_COUNT_OF, {"b_tenant_id": tenant_id, "b_kind": resource.table.name})
            if rows:
                return int(rows[0][0])
        table = resource.table
        counted = select(func.count()).select_from(table).where(*where)
        return int(self._conn.execute(counted).scalar() or 0)

    @_guarded
    def query_groups(self, tenant_id: str, query: Query) -> Page[Group]:
        """A page of the tenant's groups matching ``query``."""
        rows, total, last, more = self._query(_GROUPS, _SELECT_GROUPS, tenant_id, query)
        groups = [_group(tenant_id, row) for row in rows]
        return Page(items=groups, total=total, last=last, more=more)

    def _query(
        self,
        resource: _Resource,
        base: Select[Any],
        tenant_id: str,
        query: Query,
    ) -> tuple[Sequence[Any], int, Keyset | None, bool]:
        if query.keyset:
            return self._keyset_query(resource, base, tenant_id, query)
        table = resource.table
        offset = max(query.start_index, 1) - 1
        count = query.count
        rows: Sequence[Any] = []
        lookup = _lookup(resource, base, query)
        if lookup is not None and (count is None or count > 0):
            statement, params = lookup
            params.update(b_tenant_id=tenant_id, b_offset=offset, b_limit=count)
            rows = self._rows(statement, params)
            if (count is None or len(rows) < count) and (rows or offset == 0):
                return rows, offset + len(rows), None, False
        where = [table.c.tenant_id == tenant_id]
        if query.filter is not None:
            where.append(_compile(query.filter, resource, tenant_id))
        if lookup is None and (count is None or count > 0):
            unordered = query.filter is None and query.sort is None
            if offset and count is not None and unordered and resource is _MEMBERS:
                # The listing IdP imports walk page by page: skip to the
                # segment that holds the offset, then within it (see _SEGMENT).
                values = {"b_tenant_id": tenant_id, "b_offset": offset, "b_limit": count}
                rows = self._rows(_SEGMENTED_PAGE, values)
            else:
                order = _order_by(resource, query.sort)
                if offset:
                    # Skip by ids only (an index scan), then read just the page's
                    # rows: skipping whole rows reads every skipped document.
                    page_ids = select(table.c.id).where(*where).order_by(*order).offset(offset)
                    if count is not None:
                        page_ids = page_ids.limit(count)
                    statement = base.where(
                        table.c.tenant_id == tenant_id, table.c.id.in_(page_ids)
                    ).order_by(*order)
                else:
                    statement = base.where(*where).order_by(*order)
                    if count is not None:
                        statement = statement.limit(count)
                rows = self._conn.execute(statement).all()
            # A short page tells the total without a COUNT, which makes the
            # IdPs' favourite query (userName eq ...) a single statement.
            if (count is None or len(rows) < count) and (rows or offset == 0):
                return rows, offset + len(rows), None, False
        if not query.with_total:
            return rows, -1, None, False
        return rows, self._total(resource, tenant_id, where, query), None, False

    def _keyset_query(
        self, resource: _Resource, base: Select[Any], tenant_id: str, query: Query
    ) -> tuple[Sequence[Any], int, Keyset | None, bool]:
        """A page that starts after a keyset: the same cost at any depth (RFC 9865 cursors)."""
        table = resource.table
        where = [table.c.tenant_id == tenant_id]
        if query.filter is not None:
            where.append(_compile(query.filter, resource, tenant_id))
        total = self._total(resource, tenant_id, where, query) if query.with_total else -1
        if query.after is not None:
            where.append(_after(resource, query.sort, query.after))
        statement = base.where(*where).order_by(*_order_by(resource, query.sort))
        if query.sort is not None:
            missing, key = _sort_key(resource, query.sort)
            statement = statement.add_columns(missing.label("sort_missing"), key.label("sort_key"))
        if query.count is not None:
            # One more than asked: whether it exists says if another page follows.
            statement = statement.limit(max(query.count, 0) + 1)
        rows = self._conn.execute(statement).all()
        more = query.count is not None and len(rows) > query.count
        rows = rows[: query.count] if query.count is not None else rows
        last: Keyset | None = None
        if rows:
            row = rows[-1]
            last = (
                (True, None, row.id)
                if query.sort is None
                else (bool(row.sort_missing), row.sort_key, row.id)
            )
        return rows, total, last, more

    # Memberships -------------------------------------------------------------
    @_guarded
    def add_memberships(
        self, tenant_id: str, group_id: str, member_ids: Iterable[str]
    ) -> list[str]:
        """Add members to a group; returns the ids that were not in it yet, sorted.

        ``NotFoundError`` if the group or one of the members is not the tenant's.
        """
        wanted = sorted(set(member_ids))
        if not wanted:
            return []
        added: list[str] = []
        try:
            # One savepoint around every chunk: a missing member in the last
            # chunk must not leave the first ones added.
            with self._savepoint(fallible_statements=2):
                for chunk in _chunks(wanted):
                    rows = [
                        {"tenant_id": tenant_id, "group_id": group_id, "member_id": member_id}
                        for member_id in chunk
                    ]
                    insert_ = self._insert_memberships()
                    if self._dialect == "postgresql":
                        # One round trip instead of two: the pairs already
                        # there are skipped, and only the new ones come back.
                        # (SQLite before 3.35 has no RETURNING, and its
                        # statements cost no round trip.)
                        returning = insert_.returning(memberships.c.member_id)
                        added.extend(self._conn.execute(returning, rows).scalars())
                        continue
                    where = {"b_tenant_id": tenant_id, "b_id": group_id, "b_ids": chunk}
                    present = set(self._conn.execute(_MEMBERSHIPS_OF, where).scalars())
                    new = [row for row in rows if row["member_id"] not in present]
                    if new:
                        self._conn.execute(insert_, new)
                        added.extend(row["member_id"] for row in new)
        except IntegrityError as error:
            raise self._missing_memberships(tenant_id, group_id, wanted) from error
        return sorted(added)

    def _insert_memberships(self) -> Any:
        # A concurrent add of the same pair must not fail the transaction.
        if self._dialect == "sqlite":
            return sqlite_insert(memberships).on_conflict_do_nothing()
        if self._dialect == "postgresql":
            return pg_insert(memberships).on_conflict_do_nothing()
        return insert(memberships)

    def _missing_memberships(
        self, tenant_id: str, group_id: str, member_ids: list[str]
    ) -> NotFoundError:
        if self.get_group(tenant_id, group_id) is None:
            return NotFoundError(f"group {group_id!r} does not exist")
        unknown = sorted(set(member_ids) - self.existing_member_ids(tenant_id, member_ids))
        return NotFoundError(f"no such members: {', '.join(map(repr, unknown))}")

    @_guarded
    def remove_memberships(
        self, tenant_id: str, group_id: str, member_ids: Iterable[str] | None
    ) -> int:
        """Remove those members from the group (``None``: every member); returns how many went."""
        ms = memberships
        base = delete(ms).where(ms.c.tenant_id == tenant_id, ms.c.group_id == group_id)
        if member_ids is None:
            return int(self._conn.execute(base).rowcount)
        removed = 0
        for chunk in _chunks(member_ids):
            removed += self._conn.execute(base.where(ms.c.member_id.in_(chunk))).rowcount
        return removed

    @_guarded
    def group_members(
        self, tenant_id: str, group_ids: Collection[str]
    ) -> Mapping[str, Sequence[MemberRef]]:
        """The members of each group, ordered by member id."""
        return self._related(tenant_id, group_ids, _GROUP_MEMBERS_OF_ONE, _GROUP_MEMBERS)

    @_guarded
    def member_groups(
        self, tenant_id: str, member_ids: Collection[str]
    ) -> Mapping[str, Sequence[MemberRef]]:
        """The groups of each member, ordered by group id."""
        return self._related(tenant_id, member_ids, _GROUPS_OF_ONE_MEMBER, _MEMBER_GROUPS)

    def _related(
        self, tenant_id: str, ids: Collection[str], of_one: Select[Any], of_many: Select[Any]
    ) -> dict[str, list[MemberRef]]:
        """The memberships of some groups or members, as references to the other side.

        One id (a GET, a write's response) takes the hot path; a page of ids
        takes one statement per chunk.
        """
        result: dict[str, list[MemberRef]] = {key: [] for key in ids}
        if len(result) == 1:
            (key,) = result
            rows = self._rows(of_one, {"b_tenant_id": tenant_id, "b_id": key})
            result[key] = [MemberRef(id=other, display=display) for other, display in rows]
            return result
        for chunk in _chunks(ids):
            for key, other, display in self._conn.execute(
                of_many, {"b_tenant_id": tenant_id, "b_ids": chunk}
            ):
                result[key].append(MemberRef(id=other, display=display))
        return result

    # Events ------------------------------------------------------------------
    @_guarded
    def add_events(self, events: Sequence[Event]) -> None:
        """Append events to the outbox and audit trail, in order."""
        if not events:
            return
        rows = [
            {
                "id": e.id,
                "tenant_id": e.tenant_id,
                "type": e.type,
                "subject_id": e.subject_id,
                "actor": e.actor,
                "occurred": e.occurred,
                "data": dump_document(e.data),
                "delivered": None,
            }
            for e in events
        ]
        try:
            # Each row of an executemany may fail on its own (SQLite keeps the
            # rows before a failing one): several rows need a real savepoint.
            with self._savepoint(fallible_statements=len(rows)):
                # executemany runs one INSERT per row, in order, so seq
                # follows the order given (a multi-row VALUES would not
                # promise it).
                self._run_many(_INSERT_EVENT, rows)
        except IntegrityError as error:
            raise NotFoundError("an event names a tenant that does not exist") from error

    @_guarded
    def pending_events(self, limit: int = 100) -> Sequence[Event]:
        """The oldest undelivered events of every tenant, in ``seq`` order."""
        statement = (
            select(events).where(events.c.delivered.is_(None)).order_by(events.c.seq).limit(limit)
        )
        return [_event(row) for row in self._conn.execute(statement)]

    @_guarded
    def mark_delivered(self, seqs: Collection[int], when: datetime) -> None:
        """Record that these events were handed to every handler."""
        for chunk in _chunks(seqs):
            self._conn.execute(
                update(events)
                .where(events.c.seq.in_(chunk), events.c.delivered.is_(None))
                .values(delivered=when)
            )

    @_guarded
    def list_events(self, tenant_id: str, *, after: int = 0, limit: int = 100) -> Sequence[Event]:
        """The tenant's events with ``seq`` above ``after``, oldest first."""
        statement = (
            select(events)
            .where(events.c.tenant_id == tenant_id, events.c.seq > after)
            .order_by(events.c.seq)
            .limit(limit)
        )
        return [_event(row) for row in self._conn.execute(statement)]

    # SAML --------------------------------------------------------------------
    @_guarded
    def saml_connections(self, tenant_id: str) -> Sequence[SamlConnection]:
        """The tenant's SAML connections, active first."""
        rows = self._conn.execute(
            select(saml_connections).where(saml_connections.c.tenant_id == tenant_id)
        ).all()
        found = [_saml_connection(row) for row in rows]
        return sorted(found, key=lambda c: _SAML_STATE_ORDER[c.state])

    @_guarded
    def add_saml_connection(self, connection: SamlConnection) -> None:
        """Insert a connection; ``ConflictError`` if the tenant has one in that state."""
        try:
            with self._savepoint():
                self._conn.execute(insert(saml_connections), [_saml_row(connection)])
        except IntegrityError as error:
            raise _saml_conflict(error, connection) from error

    @_guarded
    def replace_saml_connection(self, connection: SamlConnection, *, expected_version: int) -> None:
        """Overwrite a connection whose stored version is ``expected_version``."""
        row = _saml_row(connection)
        del row["id"], row["tenant_id"]
        try:
            with self._savepoint():
                changed = self._conn.execute(
                    update(saml_connections)
                    .where(
                        saml_connections.c.id == connection.id,
                        saml_connections.c.tenant_id == connection.tenant_id,
                        saml_connections.c.version == expected_version,
                    )
                    .values(**row)
                ).rowcount
        except IntegrityError as error:
            raise _saml_conflict(error, connection) from error
        if changed == 0:
            current = self._conn.execute(
                select(saml_connections.c.version).where(
                    saml_connections.c.id == connection.id,
                    saml_connections.c.tenant_id == connection.tenant_id,
                )
            ).scalar()
            _raise_missing_or_moved("SAML connection", connection.id, current, expected_version)

    @_guarded
    def delete_saml_connection(self, tenant_id: str, connection_id: str) -> bool:
        """Delete a connection and its pending requests."""
        self._conn.execute(
            delete(saml_requests).where(
                saml_requests.c.tenant_id == tenant_id,
                saml_requests.c.connection_id == connection_id,
            )
        )
        gone = self._conn.execute(
            delete(saml_connections).where(
                saml_connections.c.tenant_id == tenant_id,
                saml_connections.c.id == connection_id,
            )
        ).rowcount
        return bool(gone)

    @_guarded
    def active_saml_connections(self, idp_entity_id: str) -> Sequence[SamlConnection]:
        """Every tenant's active connection to that IdP entity."""
        rows = self._conn.execute(
            select(saml_connections).where(
                saml_connections.c.idp_entity_id == idp_entity_id,
                saml_connections.c.state == "active",
            )
        ).all()
        return [_saml_connection(row) for row in rows]

    @_guarded
    def add_saml_request(self, request: SamlRequest) -> None:
        """Remember an AuthnRequest."""
        try:
            with self._savepoint():
                self._conn.execute(insert(saml_requests), [attrs.asdict(request, recurse=False)])
        except IntegrityError as error:
            if _is_foreign_key(error):
                raise NotFoundError(
                    f"tenant {request.tenant_id!r} or SAML connection "
                    f"{request.connection_id!r} does not exist"
                ) from error
            raise ConflictError(
                f"SAML request {request.id!r} already exists", attribute="id"
            ) from error

    @_guarded
    def take_saml_request(self, tenant_id: str, request_id: str) -> SamlRequest | None:
        """Remove and return a pending AuthnRequest (single use, also across instances)."""
        where = (saml_requests.c.tenant_id == tenant_id, saml_requests.c.id == request_id)
        row = self._conn.execute(select(saml_requests).where(*where)).first()
        if row is None:
            return None
        # The DELETE decides: of two instances that read the row, only the one
        # whose DELETE removed it gets the request.
        if not self._conn.execute(delete(saml_requests).where(*where)).rowcount:
            return None
        return _saml_request(row)

    @_guarded
    def remember_assertion(self, tenant_id: str, assertion_id: str, expires: datetime) -> bool:
        """Record a consumed assertion id; ``False`` for a replay."""
        try:
            with self._savepoint():
                self._conn.execute(
                    insert(saml_assertions),
                    [{"tenant_id": tenant_id, "id": assertion_id, "expires": expires}],
                )
        except IntegrityError as error:
            if _is_foreign_key(error):
                raise NotFoundError(f"tenant {tenant_id!r} does not exist") from error
            return False
        return True

    @_guarded
    def saml_signing_key(self, tenant_id: str) -> str | None:
        """The tenant's request signing key, if it has one."""
        found: str | None = self._conn.execute(
            select(saml_keys.c.secret).where(saml_keys.c.tenant_id == tenant_id)
        ).scalar()
        return found

    @_guarded
    def add_saml_signing_key(self, tenant_id: str, key: str) -> str:
        """Keep the key unless the tenant has one; the key it has."""
        try:
            with self._savepoint():
                self._conn.execute(insert(saml_keys), [{"tenant_id": tenant_id, "secret": key}])
        except IntegrityError as error:
            if _is_foreign_key(error):
                raise NotFoundError(f"tenant {tenant_id!r} does not exist") from error
            # Another instance stored its key first: that one is the key.
        stored = self.saml_signing_key(tenant_id)
        if stored is None:  # pragma: no cover - the insert or the other writer put it there
            raise StorageError(f"no SAML signing key for tenant {tenant_id!r}")
        return stored

    @_guarded
    def add_saml_outcome(
        self, tenant_id: str, code_hash: str, document: str, expires: datetime
    ) -> None:
        """Keep an outcome under a code's hash."""
        row = {"tenant_id": tenant_id, "id": code_hash, "document": document, "expires": expires}
        try:
            with self._savepoint():
                self._conn.execute(insert(saml_outcomes), [row])
        except IntegrityError as error:
            if _is_foreign_key(error):
                raise NotFoundError(f"tenant {tenant_id!r} does not exist") from error
            raise ConflictError("that one-time code is taken", attribute="id") from error

    @_guarded
    def take_saml_outcome(self, tenant_id: str, code_hash: str, now: datetime) -> str | None:
        """Remove and return an outcome (once, also across instances)."""
        where = (saml_outcomes.c.tenant_id == tenant_id, saml_outcomes.c.id == code_hash)
        row = self._conn.execute(select(saml_outcomes).where(*where)).first()
        if row is None:
            return None
        # As for requests, the DELETE decides which of two readers gets it.
        if not self._conn.execute(delete(saml_outcomes).where(*where)).rowcount:
            return None
        if row.expires <= now:
            return None
        document: str = row.document
        return document

    @_guarded
    def purge_saml_state(self, now: datetime) -> int:
        """Forget expired requests, assertion ids and outcomes."""
        gone = self._conn.execute(
            delete(saml_requests).where(saml_requests.c.expires <= now)
        ).rowcount
        gone += self._conn.execute(
            delete(saml_assertions).where(saml_assertions.c.expires <= now)
        ).rowcount
        gone += self._conn.execute(
            delete(saml_outcomes).where(saml_outcomes.c.expires <= now)
        ).rowcount
        return int(gone)


_SAML_STATE_ORDER = {"active": 0, "pending": 1, "previous": 2}


def _saml_conflict(error: IntegrityError, connection: SamlConnection) -> PbIdentityError:
    if _is_foreign_key(error):
        return NotFoundError(f"tenant {connection.tenant_id!r} does not exist")
    if "state" in _constraint(error):
        return ConflictError(
            f"the tenant already has a {connection.state} SAML connection", attribute="state"
        )
    return ConflictError(f"SAML connection id {connection.id!r} already exists", attribute="id")


def _raise_missing_or_moved(
    kind: str, resource_id: str, current: int | None, expected: int
) -> None:
    if current is None:
        raise NotFoundError(f"{kind} {resource_id!r} does not exist")
    raise VersionMismatchError(f"{kind} {resource_id!r} is at version {current}, not {expected}")


def _tenant_conflict(error: IntegrityError, tenant: Tenant) -> ConflictError:
    if "slug" in _constraint(error):
        return ConflictError(f"tenant slug {tenant.slug!r} is already taken", attribute="slug")
    return ConflictError(f"tenant id {tenant.id!r} already exists", attribute="id")


def _external_id_taken(member: Member) -> ConflictError:
    return ConflictError(
        f"externalId {member.external_id!r} is already linked to another member",
        attribute="externalId",
    )


def _user_name_taken(member: Member) -> ConflictError:
    return ConflictError(
        f"userName {member.attributes.get('userName')!r} is already taken in this tenant",
        attribute="userName",
    )


def _display_name_taken(group: Group) -> ConflictError:
    return ConflictError(
        f"displayName {group.attributes.get('displayName')!r} is already taken in this tenant",
        attribute="displayName",
    )


# Storage -----------------------------------------------------------------------


# The execution option that tells the SQLite "begin" hook a unit only reads.
_WRITE_OPTION = "pbidentity_write"


def _driver_error(statement: str, error: Exception, base: type[Exception]) -> StorageError:
    """A pbidentity error for a DBAPI error raised outside of Core."""
    wrapped = DBAPIError.instance(statement, (), error, base)
    if isinstance(wrapped, DBAPIError):
        return _storage_error(wrapped)
    return StorageError(f"the database failed: {error}")


def _lock_schema(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Two processes starting at once must not race to CREATE or migrate.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": 7_243_501})


def _revision(connection: Connection) -> str | None:
    """The database's schema revision: ``""`` when it is empty, ``None`` when unknown."""
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" in tables:
        found = connection.execute(select(alembic_version.c.version_num)).scalar()
        return None if found is None else str(found)
    if "schema_version" in tables:
        legacy = connection.execute(select(_legacy_version.c.version)).scalar()
        return "0001" if legacy == 1 else None
    return "" if not tables & set(metadata.tables) else None


def _check_revision(found: str | None, *, allow_older: bool) -> None:
    if found is None:
        raise SchemaVersionError(
            "the database has tables but no pbidentity schema revision; point pbidentity at "
            "an empty database or one it created"
        )
    if found not in _REVISIONS:
        raise SchemaVersionError(
            f"the database schema is at revision {found}, newer than this pbidentity "
            f"understands ({SCHEMA_REVISION}); upgrade pbidentity"
        )
    if found != SCHEMA_REVISION and not allow_older:
        raise SchemaVersionError(
            f"the database schema is at revision {found}, older than this pbidentity needs "
            f"({SCHEMA_REVISION}); back it up, then run: pbidentity db upgrade"
        )


def schema_revision(engine: Engine) -> str | None:
    """The schema revision of the database behind ``engine`` (``""``: empty; ``None``: unknown)."""
    with engine.connect() as connection:
        return _revision(connection)


def upgrade_schema(engine: Engine) -> tuple[str, str]:
    """Bring the database to :data:`SCHEMA_REVISION` with Alembic; returns (from, to).

    An empty database is built by the migrations themselves; one made by the
    first release (a ``schema_version`` table) is recognised as revision
    0001. A database at an unknown, newer revision is refused. Runs in one
    transaction (PostgreSQL and SQLite both have transactional DDL), under
    an advisory lock on PostgreSQL so that two instances never migrate at once.
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "pbidentity.storage:migrations")
    with engine.begin() as connection:
        _lock_schema(connection)
        found = _revision(connection)
        if found:
            _check_revision(found, allow_older=True)
        config.attributes["connection"] = connection
        if found == "0001" and "alembic_version" not in inspect(connection).get_table_names():
            command.stamp(config, "0001")
        if found != SCHEMA_REVISION:
            try:
                command.upgrade(config, "head")
            except RuntimeError as error:
                # A migration that refuses data it cannot carry over says why;
                # the transaction rolls back and the database stays as it was.
                raise SchemaVersionError(str(error)) from error
    return found or "", SCHEMA_REVISION


def _begin_sqlite(connection: Connection, statement: str) -> None:
    dbapi_error = connection.dialect.loaded_dbapi.Error
    try:
        connection.connection.driver_connection.execute(statement)  # type: ignore[union-attr]
    except dbapi_error as error:
        raise DBAPIError.instance(
            statement, (), error, dbapi_error, dialect=connection.dialect
        ) from error


_MMAP_BYTES = 256 * 1024 * 1024
_CACHE_KIB = 32 * 1024


def _sqlite_engine(url: URL, busy_timeout_ms: int) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or "mode=memory" in database
    if in_memory or url.query.get("mode") == "memory":
        raise ConfigurationError(
            f"{url.render_as_string(hide_password=True)!r} is an in-memory SQLite database, "
            "which each connection would see empty; use memory:// or a file"
        )
    # Every unit ends with a commit or a rollback, so the pool's own rollback
    # on check-in would only repeat one.
    engine = create_engine(url, pool_reset_on_return=None)

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook emit BEGIN itself (the sqlite3
        # module's implicit BEGIN is deferred and breaks savepoints).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Reads from the operating system's page cache instead of copying
        # pages into SQLite's own, and a larger cache for the hot indexes.
        cursor.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
        cursor.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        # LIKE is then case-sensitive, as on PostgreSQL; case-insensitive
        # matching always goes through the *_folded columns.
        cursor.execute("PRAGMA case_sensitive_like=ON")
        cursor.close()

    def on_begin(connection: Connection) -> None:
        # A unit that may write takes the write lock up front: a deferred
        # transaction that reads and then writes can fail with SQLITE_BUSY
        # instead of waiting its turn. A read-only unit takes no lock at all
        # and, in WAL mode, never waits for a writer.
        statement = (
            "BEGIN IMMEDIATE"
            if connection.get_execution_options().get(_WRITE_OPTION, True)
            else "BEGIN"
        )
        if _instrumented(connection):
            connection.exec_driver_sql(statement)
        elif not connection.connection.driver_connection.in_transaction:  # type: ignore[union-attr]
            # The unit already began on the DBAPI connection (see
            # SqlStorage._lean_transaction); Core is only joining it.
            _begin_sqlite(connection, statement)

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    return engine


_URL_EXAMPLES = "sqlite:///FILE.db, postgresql://USER@HOST/DATABASE (postgres:// too) or memory://"

# The extra that brings a backend's driver.
_EXTRAS = {"postgresql": "postgres"}


def database_url(url: str) -> URL:
    """Parse a database URL, with the spellings hosts give PostgreSQL mapped to psycopg 3.

    ``postgres://`` is what Heroku, Render, Fly and others put in
    ``DATABASE_URL``; a bare ``postgresql://`` would pick SQLAlchemy's default
    driver (psycopg2 before SQLAlchemy 2.1), while the ``postgres`` extra
    installs psycopg 3. Raises :class:`~pbidentity.exceptions.ConfigurationError`
    for text that is not a URL at all.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise ConfigurationError(
            f"{url!r} is not a database URL; expected {_URL_EXAMPLES}"
        ) from error
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername.startswith("postgres+"):
        parsed = parsed.set(drivername="postgresql+" + parsed.drivername.split("+", 1)[1])
    return parsed


class SqlStorage:
    """A :class:`~pbidentity.storage.Storage` on a SQLAlchemy :class:`~sqlalchemy.Engine`.

    ``SqlStorage(engine)`` uses the host app's engine (PostgreSQL: its pool is
    shared, and left open by :meth:`close`). A SQLite engine is not used as
    is: SQLite needs per-connection settings that would change the host's own
    transactions, so pbidentity opens its own engine on the same file.
    The schema is created on first use.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        upgrade: bool = False,
    ) -> None:
        self._owns_engine = engine.dialect.name == "sqlite"
        if self._owns_engine:
            engine = _sqlite_engine(engine.url, busy_timeout_ms)
        self._engine = engine
        self._upgrade = upgrade
        self._schema_lock = threading.Lock()
        self._schema_ready = False

    @classmethod
    def from_url(
        cls, url: str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS, upgrade: bool = False
    ) -> SqlStorage:
        """Open the database a SQLAlchemy URL names (``sqlite:///file.db``, ``postgresql+psycopg://...``)."""
        parsed = database_url(url)
        shown = parsed.render_as_string(hide_password=True)
        try:
            engine = (
                _sqlite_engine(parsed, busy_timeout_ms)
                if parsed.get_backend_name() == "sqlite"
                else create_engine(parsed, pool_pre_ping=True)
            )
        except NoSuchModuleError as error:
            raise ConfigurationError(
                f"cannot use database URL {shown!r}: unknown scheme {parsed.drivername!r}; "
                f"expected {_URL_EXAMPLES}"
            ) from error
        except ImportError as error:
            extra = _EXTRAS.get(parsed.get_backend_name())
            hint = f": pip install 'pbidentity[{extra}]'" if extra else ""
            raise ConfigurationError(
                f"cannot use database URL {shown!r}: {error.name or error} is not installed{hint}"
            ) from error
        except ArgumentError as error:
            raise ConfigurationError(f"cannot use database URL {shown!r}: {error}") from error
        storage = cls.__new__(cls)
        storage._engine = engine
        storage._owns_engine = True
        storage._upgrade = upgrade
        storage._schema_lock = threading.Lock()
        storage._schema_ready = False
        return storage

    @property
    def engine(self) -> Engine:
        """The engine pbidentity uses (for the host app's health checks and tests)."""
        return self._engine

    def _ensure_schema(self) -> None:
        if not self._schema_ready:
            with self._schema_lock:
                if not self._schema_ready:
                    self._create_schema()
                    self._schema_ready = True

    def _create_schema(self) -> None:
        try:
            with self._engine.begin() as connection:
                _lock_schema(connection)
                found = _revision(connection)
                if found == "":
                    # An empty database: the current schema at once.
                    metadata.create_all(connection)
                    _version_metadata.create_all(connection)
                    connection.execute(insert(alembic_version), [{"version_num": SCHEMA_REVISION}])
                    return
                _check_revision(found, allow_older=self._upgrade)
            if found != SCHEMA_REVISION:
                upgrade_schema(self._engine)
        except DBAPIError as error:
            raise _storage_error(error) from error

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[_SqlTransaction]:
        """Open a unit of work: commits on exit, rolls back on an exception.

        ``write=False`` starts a deferred transaction on SQLite (no write
        lock); elsewhere it changes nothing.
        """
        self._ensure_schema()
        if self._engine.dialect.name == "sqlite" and not _instrumented(self._engine):
            with self._lean_transaction(write) as tx:
                yield tx
            return
        try:
            connection = self._engine.connect()
        except DBAPIError as error:
            raise _storage_error(error) from error
        if not write:
            connection.execution_options(**{_WRITE_OPTION: False})
        core = _instrumented(connection)
        try:
            transaction = connection.begin()
        except DBAPIError as error:
            connection.close()
            raise _storage_error(error) from error
        tx = _SqlTransaction(self._engine, core=core, connection=connection)
        try:
            try:
                yield tx
            except BaseException:
                tx._closed = True
                # The original error says more than a failed rollback; the
                # connection is discarded by close() below.
                with suppress(DBAPIError):
                    transaction.rollback()
                raise
            tx._closed = True
            try:
                transaction.commit()
            except DBAPIError as error:
                raise _storage_error(error) from error
        finally:
            connection.close()

    @contextmanager
    def _lean_transaction(self, write: bool) -> Iterator[_SqlTransaction]:
        """A SQLite unit begun and ended on the pooled DBAPI connection.

        Core's connection, begin and commit cost more than a primary-key read,
        and most units only run hot-path statements. When a Core statement
        does run, a Core connection is made over the same DBAPI connection and
        autobegins on top of the open transaction (the "begin" hook sees it
        and emits nothing); Core then ends it.
        """
        dbapi_error = self._engine.dialect.loaded_dbapi.Error
        try:
            raw = self._engine.raw_connection()
        except (DBAPIError, dbapi_error) as error:
            raise StorageUnavailableError(f"the database cannot be opened: {error}") from error
        tx = _SqlTransaction(self._engine, core=False, raw=raw)
        dbapi = tx._dbapi
        try:
            try:
                dbapi.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except dbapi_error as error:
                raise _driver_error("BEGIN", error, dbapi_error) from error
            try:
                yield tx
            except BaseException:
                tx._closed = True
                with suppress(DBAPIError, dbapi_error):
                    if tx._connection is not None and tx._connection.in_transaction():
                        tx._connection.rollback()
                    else:
                        dbapi.rollback()
                raise
            tx._closed = True
            try:
                if tx._connection is not None and tx._connection.in_transaction():
                    tx._connection.commit()
                else:
                    dbapi.commit()
            except DBAPIError as error:
                raise _storage_error(error) from error
            except dbapi_error as error:
                raise _driver_error("COMMIT", error, dbapi_error) from error
        finally:
            if tx._connection is not None:
                tx._connection.close()  # returns the DBAPI connection to the pool
            else:
                raw.close()

    def close(self) -> None:
        """Release the connections of an engine pbidentity created (not a host's)."""
        if self._owns_engine:
            self._engine.dispose()
