"""Alembic's entry point for pbidentity's schema migrations.

pbidentity runs Alembic programmatically (:func:`pbidentity.storage.sql.upgrade_schema`)
on a connection it opened, so this only binds that connection and the
schema's metadata; there is no ``alembic.ini``.
"""

from __future__ import annotations

from alembic import context

from pbidentity.storage.sql import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot alter constraints in place: batch mode recreates the table.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
