"""SAML sign-ins bound to their browser: request signing keys, outcomes under one-time codes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TEXT = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
TIMESTAMP = sa.String(32).with_variant(sa.String(32, collation="C"), "postgresql")


def upgrade() -> None:
    """Add the signing keys and the outcomes waiting for their browser."""
    op.create_table(
        "saml_keys",
        sa.Column("tenant_id", TEXT, nullable=False),
        sa.Column("secret", TEXT, nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_saml_keys_tenant"),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_saml_keys"),
    )
    op.create_table(
        "saml_outcomes",
        sa.Column("tenant_id", TEXT, nullable=False),
        sa.Column("id", TEXT, nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("expires", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_saml_outcomes_tenant"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_saml_outcomes"),
    )
    op.create_index("ix_saml_outcomes_expires", "saml_outcomes", ["expires"])


def downgrade() -> None:
    """Drop them (sign-ins under way must start again)."""
    op.drop_index("ix_saml_outcomes_expires", table_name="saml_outcomes")
    op.drop_table("saml_outcomes")
    op.drop_table("saml_keys")
