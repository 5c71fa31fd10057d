"""The tables and their columns: what the SQL backend stores and how.

One column per single-valued searchable field of the registries (generated),
``*_folded`` twins for case-insensitive strings, the schema revision this
code writes. See the package docstring for the schema notes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs
from sqlalchemy import Boolean
from sqlalchemy import Column
from sqlalchemy import Dialect
from sqlalchemy import Float
from sqlalchemy import ForeignKeyConstraint
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import MetaData
from sqlalchemy import PrimaryKeyConstraint
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy import text
from sqlalchemy.types import TypeDecorator
from sqlalchemy.types import TypeEngine

from pbidentity.query import ENTERPRISE_URN
from pbidentity.query import GROUP_FIELDS
from pbidentity.query import USER_FIELDS
from pbidentity.query import USER_MULTI_VALUED
from pbidentity.query import Field
from pbidentity.storage._evaluate import RELATION_ATTRIBUTES
from pbidentity.storage._evaluate import utc

#: The schema version this code writes and understands.
SCHEMA_REVISION = "0010"
#: Every revision this code can upgrade from, oldest first (the migrations'
#: own list, checked by a test, kept here so that opening a database never
#: needs to import Alembic).
_REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010")


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


@functools.lru_cache(maxsize=256)
def _utc_text(value: datetime) -> str:
    """A datetime as :class:`_UtcText` stores it, for rows bound as JSON.

    Cached: a bulk write stamps its hundreds of rows with the same instant.
    """
    return utc(value).isoformat(timespec="microseconds")


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
    # The members list of the portal (search_members): each filter's members
    # in userName order, and each searched name column's prefix ranges. The
    # name indexes hold the userName only, not the filtered columns: a role
    # or status change then moves one entry of its own index, not one in each
    # name index too (a group push re-decides a hundred members at once).
    Index("ix_members_role_listing", "tenant_id", "app_role", "user_name_folded"),
    Index("ix_members_active_listing", "tenant_id", "active", "user_name_folded"),
    Index("ix_members_managed_listing", "tenant_id", "scim_managed", "user_name_folded"),
    *(
        Index(f"ix_members_{name}", "tenant_id", f"{name}_folded", "user_name_folded")
        for name in ("display_name", "name_given_name", "name_family_name")
    ),
)

#: The longest folded userName (in UTF-8 bytes) an email row carries.
CARRIED_USER_NAME_BYTES = 256

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
    # An email row carries its member's folded userName (other rows hold
    # NULL): the members list's search reads the members whose email starts
    # with a prefix, in userName order, from ix_member_values_value alone,
    # without joining each of its matches to its member. Only a userName of
    # up to CARRIED_USER_NAME_BYTES: PostgreSQL refuses an index entry over
    # 2,704 bytes, and a value may take 2,048 of them already (the search
    # looks a longer one up in its member's row).
    Column("user_name_folded", _TEXT),
    PrimaryKeyConstraint(
        "tenant_id", "member_id", "attribute", "position", name="pk_member_values"
    ),
    ForeignKeyConstraint(
        ["tenant_id", "member_id"],
        ["members.tenant_id", "members.id"],
        ondelete="CASCADE",
        name="fk_member_values_member",
    ),
    Index(
        "ix_member_values_value",
        "tenant_id",
        "attribute",
        "value_folded",
        "member_id",
        "user_name_folded",
    ),
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

# The SP's own key pairs (encryption and request signing) pbidentity made for
# a tenant: one document per tenant, replaced whole (compare and set).
saml_sp_keys = Table(
    "saml_sp_keys",
    metadata,
    Column("tenant_id", _TEXT, nullable=False),
    Column("document", Text, nullable=False),
    PrimaryKeyConstraint("tenant_id", name="pk_saml_sp_keys"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_saml_sp_keys_tenant"),
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

# The portal's set-up links: the token is signed, not stored; the row makes
# it single-use (opened) and revocable, and lists what a workspace handed out.
setup_links = Table(
    "setup_links",
    metadata,
    Column("tenant_id", _TEXT, nullable=False),
    Column("id", _TEXT, nullable=False),
    Column("sections", _TEXT, nullable=False),
    Column("created_by", _TEXT, nullable=False),
    Column("created", _UtcText, nullable=False),
    Column("expires", _UtcText, nullable=False),
    Column("opened", _UtcText, nullable=True),
    Column("revoked", _UtcText, nullable=True),
    PrimaryKeyConstraint("tenant_id", "id", name="pk_setup_links"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_setup_links_tenant"),
)

# Link imports: an uploaded IdP export's plan, kept (in chunks of steps as
# JSON) between the upload and the batches that apply it; purged on expiry.
link_imports = Table(
    "link_imports",
    metadata,
    Column("tenant_id", _TEXT, nullable=False),
    Column("id", _TEXT, nullable=False),
    Column("source", _TEXT, nullable=False),
    Column("created_by", _TEXT, nullable=False),
    Column("created", _UtcText, nullable=False),
    Column("expires", _UtcText, nullable=False),
    Column("counts", Text, nullable=False),
    Column("chunks", Text, nullable=False),
    Column("applied", Integer, nullable=False),
    Column("result", Text, nullable=False),
    Column("started", _UtcText, nullable=True),
    Column("finished", _UtcText, nullable=True),
    Column("complete", Boolean, nullable=False),
    PrimaryKeyConstraint("tenant_id", "id", name="pk_link_imports"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_link_imports_tenant"),
    Index("ix_link_imports_expires", "expires"),
)

link_import_chunks = Table(
    "link_import_chunks",
    metadata,
    Column("tenant_id", _TEXT, nullable=False),
    Column("import_id", _TEXT, nullable=False),
    Column("list", _TEXT, nullable=False),
    Column("position", Integer, nullable=False),
    Column("steps", Text, nullable=False),
    Column("outcome", Text, nullable=True),
    PrimaryKeyConstraint(
        "tenant_id", "import_id", "list", "position", name="pk_link_import_chunks"
    ),
    ForeignKeyConstraint(
        ["tenant_id", "import_id"],
        ["link_imports.tenant_id", "link_imports.id"],
        name="fk_link_import_chunks_import",
    ),
)

# The SCIM requests each workspace received (its provisioning activity),
# bounded per workspace in time and rows. Read newest first per workspace,
# failures only, or one token's; written in batches, never in a SCIM
# request's own transaction.
scim_activity = Table(
    "scim_activity",
    metadata,
    Column("tenant_id", _TEXT, nullable=False),
    Column("id", _TEXT, nullable=False),
    Column("at", _UtcText, nullable=False),
    Column("token_name", _TEXT, nullable=True),
    Column("method", _TEXT, nullable=False),
    Column("path", _TEXT, nullable=False),
    Column("status", Integer, nullable=False),
    Column("scim_type", _TEXT, nullable=True),
    Column("detail", Text, nullable=True),
    Column("duration_ms", Float, nullable=False),
    Column("resource_id", _TEXT, nullable=True),
    Column("request_body", Text, nullable=True),
    Column("response_body", Text, nullable=True),
    PrimaryKeyConstraint("tenant_id", "id", name="pk_scim_activity"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_scim_activity_tenant"),
    Index("ix_scim_activity_latest", "tenant_id", "at", "id"),
    Index("ix_scim_activity_token", "tenant_id", "token_name", "at", "id"),
    # Failures only: a partial index, a small fraction of the rows.
    Index(
        "ix_scim_activity_failures",
        "tenant_id",
        "at",
        "id",
        sqlite_where=text("status >= 400"),
        postgresql_where=text("status >= 400"),
    ),
)
