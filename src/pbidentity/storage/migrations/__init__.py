"""pbidentity's Alembic migrations; see :func:`pbidentity.storage.sql.upgrade_schema`."""
