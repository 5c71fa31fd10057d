"""SAML: connections (pending, active, previous), pending AuthnRequests, the replay cache.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TEXT = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
TIMESTAMP = sa.String(32).with_variant(sa.String(32, collation="C"), "postgresql")


def upgrade() -> None:
    """Add the SAML tables."""
    op.create_table(
        "saml_connections",
        sa.Column("id", TEXT, nullable=False),
        sa.Column("tenant_id", TEXT, nullable=False),
        sa.Column("state", TEXT, nullable=False),
        sa.Column("idp_entity_id", TEXT, nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("metadata_xml", sa.Text(), nullable=True),
        sa.Column("created", TIMESTAMP, nullable=False),
        sa.Column("activated", TIMESTAMP, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_saml_connections_tenant"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "state", name="uq_saml_connections_state"),
    )
    op.create_index("ix_saml_connections_entity", "saml_connections", ["idp_entity_id", "state"])
    op.create_table(
        "saml_requests",
        sa.Column("tenant_id", TEXT, nullable=False),
        sa.Column("id", TEXT, nullable=False),
        sa.Column("connection_id", TEXT, nullable=False),
        sa.Column("purpose", TEXT, nullable=False),
        sa.Column("relay_state", sa.Text(), nullable=True),
        sa.Column("created", TIMESTAMP, nullable=False),
        sa.Column("expires", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_saml_requests_tenant"),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["saml_connections.id"],
            ondelete="CASCADE",
            name="fk_saml_requests_connection",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_saml_requests"),
    )
    op.create_index("ix_saml_requests_expires", "saml_requests", ["expires"])
    op.create_table(
        "saml_assertions",
        sa.Column("tenant_id", TEXT, nullable=False),
        sa.Column("id", TEXT, nullable=False),
        sa.Column("expires", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_saml_assertions_tenant"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_saml_assertions"),
    )
    op.create_index("ix_saml_assertions_expires", "saml_assertions", ["expires"])


def downgrade() -> None:
    """Drop the SAML tables (every SAML configuration is lost)."""
    op.drop_index("ix_saml_assertions_expires", table_name="saml_assertions")
    op.drop_table("saml_assertions")
    op.drop_index("ix_saml_requests_expires", table_name="saml_requests")
    op.drop_table("saml_requests")
    op.drop_index("ix_saml_connections_entity", table_name="saml_connections")
    op.drop_table("saml_connections")
