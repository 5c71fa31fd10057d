"""Link imports: an uploaded IdP export's plan, applied batch by batch, then expired.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TEXT = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
TIMESTAMP = sa.String(32).with_variant(sa.String(32, collation="C"), "postgresql")


def upgrade() -> None:
    """Add the imports and their chunks of steps."""
    op.create_table(
        "link_imports",
        sa.Column("tenant_id", TEXT, nullable=False),
        sa.Column("id", TEXT, nullable=False),
        sa.Column("source", TEXT, nullable=False),
        sa.Column("created_by", TEXT, nullable=False),
        sa.Column("created", TIMESTAMP, nullable=False),
        sa.Column("expires", TIMESTAMP, nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("chunks", sa.Text(), nullable=False),
        sa.Column("applied", sa.Integer(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("started", TIMESTAMP, nullable=True),
        sa.Column("finished", TIMESTAMP, nullable=True),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_link_imports_tenant"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_link_imports"),
    )
    op.create_index("ix_link_imports_expires", "link_imports", ["expires"])
    op.create_table(
        "link_import_chunks",
        sa.Column("tenant_id", TEXT, nullable=False),
        sa.Column("import_id", TEXT, nullable=False),
        sa.Column("list", TEXT, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("steps", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id", "import_id"],
            ["link_imports.tenant_id", "link_imports.id"],
            name="fk_link_import_chunks_import",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "import_id", "list", "position", name="pk_link_import_chunks"
        ),
    )


def downgrade() -> None:
    """Drop them (imports not applied yet are lost; upload the file again)."""
    op.drop_table("link_import_chunks")
    op.drop_index("ix_link_imports_expires", table_name="link_imports")
    op.drop_table("link_imports")
