"""The set-up portal's links: single-use and revocable.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TEXT = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
TIMESTAMP = sa.String(32).with_variant(sa.String(32, collation="C"), "postgresql")


def upgrade() -> None:
    """Add the set-up links."""
    op.create_table(
        "setup_links",
        sa.Column("tenant_id", TEXT, nullable=False),
        sa.Column("id", TEXT, nullable=False),
        sa.Column("sections", TEXT, nullable=False),
        sa.Column("created_by", TEXT, nullable=False),
        sa.Column("created", TIMESTAMP, nullable=False),
        sa.Column("expires", TIMESTAMP, nullable=False),
        sa.Column("opened", TIMESTAMP, nullable=True),
        sa.Column("revoked", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_setup_links_tenant"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_setup_links"),
    )


def downgrade() -> None:
    """Drop them (every link handed out stops working)."""
    op.drop_table("setup_links")
