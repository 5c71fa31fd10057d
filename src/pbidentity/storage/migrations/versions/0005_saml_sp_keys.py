"""The SP's own key pairs per tenant: encrypted assertions and signed AuthnRequests.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TEXT = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    """Add the table of SP key pairs pbidentity makes for a tenant."""
    op.create_table(
        "saml_sp_keys",
        sa.Column("tenant_id", TEXT, nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_saml_sp_keys_tenant"),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_saml_sp_keys"),
    )


def downgrade() -> None:
    """Drop it: workspaces then get new keys, which their IdPs must be given again."""
    op.drop_table("saml_sp_keys")
