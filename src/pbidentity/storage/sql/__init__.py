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

Where things are:

* ``_schema``: the tables and the schema revision; ``_rows``: domain values
  to rows and back; ``_compile``: filters, sorts and keysets to SQL;
  ``_statements``: statements built once; ``_segments``: the tenant counters
  and the segment counts behind deep paging; ``_errors``: driver errors and
  constraint violations to :mod:`pbidentity.exceptions`.
* ``_execute``: the hot path on the DB-API cursor; ``_unit``: what every part
  of a transaction shares (connection, execution, savepoints); one part per
  concern (``_tenants``, ``_members``, ``_groups``, ``_outbox``, ``_saml``,
  with ``_query`` for pages), composed in ``_transaction``.
* ``_engine``: engine set-up, database URLs, revisions and migrations;
  ``_storage``: :class:`SqlStorage`, which opens transactions.
"""

from __future__ import annotations

# The tables, the URL parser and the revisions are re-exported for the host
# app's tests and the migrations, as when this was one module.
from pbidentity.storage.sql._engine import DEFAULT_BUSY_TIMEOUT_MS as DEFAULT_BUSY_TIMEOUT_MS
from pbidentity.storage.sql._engine import database_url as database_url
from pbidentity.storage.sql._engine import schema_revision
from pbidentity.storage.sql._engine import upgrade_schema
from pbidentity.storage.sql._schema import _REVISIONS as _REVISIONS
from pbidentity.storage.sql._schema import SCHEMA_REVISION
from pbidentity.storage.sql._schema import alembic_version as alembic_version
from pbidentity.storage.sql._schema import api_tokens as api_tokens
from pbidentity.storage.sql._schema import events as events
from pbidentity.storage.sql._schema import groups as groups
from pbidentity.storage.sql._schema import link_import_chunks as link_import_chunks
from pbidentity.storage.sql._schema import link_imports as link_imports
from pbidentity.storage.sql._schema import member_values as member_values
from pbidentity.storage.sql._schema import members as members
from pbidentity.storage.sql._schema import memberships as memberships
from pbidentity.storage.sql._schema import metadata
from pbidentity.storage.sql._schema import saml_assertions as saml_assertions
from pbidentity.storage.sql._schema import saml_connections as saml_connections
from pbidentity.storage.sql._schema import saml_keys as saml_keys
from pbidentity.storage.sql._schema import saml_outcomes as saml_outcomes
from pbidentity.storage.sql._schema import saml_requests as saml_requests
from pbidentity.storage.sql._schema import saml_sp_keys as saml_sp_keys
from pbidentity.storage.sql._schema import scim_activity as scim_activity
from pbidentity.storage.sql._schema import setup_links as setup_links
from pbidentity.storage.sql._schema import tenant_counts as tenant_counts
from pbidentity.storage.sql._schema import tenants as tenants
from pbidentity.storage.sql._storage import SqlStorage

__all__ = ["SCHEMA_REVISION", "SqlStorage", "metadata", "schema_revision", "upgrade_schema"]
