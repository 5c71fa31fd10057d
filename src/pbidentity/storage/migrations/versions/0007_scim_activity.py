"""The provisioning activity: the SCIM requests each workspace received, bounded.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TEXT = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
TIMESTAMP = sa.String(32).with_variant(sa.String(32, collation="C"), "postgresql")


def upgrade() -> None:
    """Add the table and its three ways in: latest first, failures only, by token."""
    op.create_table(
        "scim_activity",
        sa.Column("tenant_id", TEXT, nullable=False),
        sa.Column("id", TEXT, nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("token_name", TEXT, nullable=True),
        sa.Column("method", TEXT, nullable=False),
        sa.Column("path", TEXT, nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("scim_type", TEXT, nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("resource_id", TEXT, nullable=True),
        sa.Column("request_body", sa.Text(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_scim_activity_tenant"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_scim_activity"),
    )
    op.create_index("ix_scim_activity_latest", "scim_activity", ["tenant_id", "at", "id"])
    op.create_index(
        "ix_scim_activity_token", "scim_activity", ["tenant_id", "token_name", "at", "id"]
    )
    op.create_index(
        "ix_scim_activity_failures",
        "scim_activity",
        ["tenant_id", "at", "id"],
        sqlite_where=sa.text("status >= 400"),
        postgresql_where=sa.text("status >= 400"),
    )


def downgrade() -> None:
    """Drop it (the activity recorded so far is gone)."""
    op.drop_table("scim_activity")
