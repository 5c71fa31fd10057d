"""The foundation schema: tenants, API tokens, members with their values, groups, memberships.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

The schema of the first release. Databases it created carry a
``schema_version`` table (version 1) instead of Alembic's; pbidentity
recognises them as this revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Text in code-point order on PostgreSQL, as in Python and SQLite.
TEXT = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
# Fixed-width ISO-8601 UTC text, so text order is time order.
TIMESTAMP = sa.String(32).with_variant(sa.String(32, collation="C"), "postgresql")


def upgrade() -> None:
    """Create the foundation schema."""
    op.create_table("schema_version", sa.Column("version", sa.Integer(), nullable=False))
    op.create_table(
        "tenants",
        sa.Column("id", TEXT, nullable=False),
        sa.Column("slug", TEXT, nullable=False),
        sa.Column("name", TEXT, nullable=False),
        sa.Column("scim_enabled", sa.Boolean(), nullable=False),
        sa.Column("created", TIMESTAMP, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slug", name="uq_tenants_slug"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", TEXT, nullable=False),
        sa.Column("tenant_id", TEXT, nullable=False),
        sa.Column("name", TEXT, nullable=False),
        sa.Column("digest", TEXT, nullable=False),
        sa.Column("created", TIMESTAMP, nullable=False),
        sa.Column("last_used", TIMESTAMP, nullable=True),
        sa.Column("revoked", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_api_tokens_tenant"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("digest", name="uq_api_tokens_digest"),
    )
    op.create_index("ix_api_tokens_tenant", "api_tokens", ["tenant_id", "created"], unique=False)
    op.create_index(
        "uq_api_tokens_active_name",
        "api_tokens",
        ["tenant_id", "name"],
        unique=True,
        sqlite_where=sa.text("revoked IS NULL"),
        postgresql_where=sa.text("revoked IS NULL"),
    )
    op.create_table(
        "groups",
        sa.Column("tenant_id", TEXT, nullable=False),
        sa.Column("id", TEXT, nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created", TIMESTAMP, nullable=False),
        sa.Column("last_modified", TIMESTAMP, nullable=False),
        sa.Column("external_id", TEXT, nullable=True),
        sa.Column("display_name", TEXT, nullable=True),
        sa.Column("display_name_folded", TEXT, nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_groups_tenant"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_groups"),
        sa.UniqueConstraint("tenant_id", "display_name_folded", name="uq_groups_display_name"),
    )
    op.create_index(
        "ix_groups_external_id", "groups", ["tenant_id", "external_id", "id"], unique=False
    )
    op.create_table(
        "members",
        sa.Column("tenant_id", TEXT, nullable=False),
        sa.Column("id", TEXT, nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("scim_managed", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created", TIMESTAMP, nullable=False),
        sa.Column("last_modified", TIMESTAMP, nullable=False),
        sa.Column("ref_display", TEXT, nullable=True),
        sa.Column("ref_display_folded", TEXT, nullable=True),
        sa.Column("values_digest", TEXT, nullable=False),
        sa.Column("external_id", TEXT, nullable=True),
        sa.Column("user_name", TEXT, nullable=True),
        sa.Column("user_name_folded", TEXT, nullable=True),
        sa.Column("display_name", TEXT, nullable=True),
        sa.Column("display_name_folded", TEXT, nullable=True),
        sa.Column("nick_name", TEXT, nullable=True),
        sa.Column("nick_name_folded", TEXT, nullable=True),
        sa.Column("title", TEXT, nullable=True),
        sa.Column("title_folded", TEXT, nullable=True),
        sa.Column("user_type", TEXT, nullable=True),
        sa.Column("user_type_folded", TEXT, nullable=True),
        sa.Column("preferred_language", TEXT, nullable=True),
        sa.Column("preferred_language_folded", TEXT, nullable=True),
        sa.Column("locale", TEXT, nullable=True),
        sa.Column("locale_folded", TEXT, nullable=True),
        sa.Column("timezone", TEXT, nullable=True),
        sa.Column("timezone_folded", TEXT, nullable=True),
        sa.Column("profile_url", TEXT, nullable=True),
        sa.Column("active", sa.Boolean(), nullable=True),
        sa.Column("name_formatted", TEXT, nullable=True),
        sa.Column("name_formatted_folded", TEXT, nullable=True),
        sa.Column("name_family_name", TEXT, nullable=True),
        sa.Column("name_family_name_folded", TEXT, nullable=True),
        sa.Column("name_given_name", TEXT, nullable=True),
        sa.Column("name_given_name_folded", TEXT, nullable=True),
        sa.Column("name_middle_name", TEXT, nullable=True),
        sa.Column("name_middle_name_folded", TEXT, nullable=True),
        sa.Column("name_honorific_prefix", TEXT, nullable=True),
        sa.Column("name_honorific_prefix_folded", TEXT, nullable=True),
        sa.Column("name_honorific_suffix", TEXT, nullable=True),
        sa.Column("name_honorific_suffix_folded", TEXT, nullable=True),
        sa.Column("role", TEXT, nullable=True),
        sa.Column("role_folded", TEXT, nullable=True),
        sa.Column("enterprise_employee_number", TEXT, nullable=True),
        sa.Column("enterprise_employee_number_folded", TEXT, nullable=True),
        sa.Column("enterprise_cost_center", TEXT, nullable=True),
        sa.Column("enterprise_cost_center_folded", TEXT, nullable=True),
        sa.Column("enterprise_organization", TEXT, nullable=True),
        sa.Column("enterprise_organization_folded", TEXT, nullable=True),
        sa.Column("enterprise_division", TEXT, nullable=True),
        sa.Column("enterprise_division_folded", TEXT, nullable=True),
        sa.Column("enterprise_department", TEXT, nullable=True),
        sa.Column("enterprise_department_folded", TEXT, nullable=True),
        sa.Column("enterprise_manager_value", TEXT, nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_members_tenant"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_members"),
        sa.UniqueConstraint("tenant_id", "user_name_folded", name="uq_members_user_name"),
    )
    op.create_index(
        "ix_members_external_id", "members", ["tenant_id", "external_id", "id"], unique=False
    )
    op.create_table(
        "member_values",
        sa.Column("tenant_id", TEXT, nullable=False),
        sa.Column("member_id", TEXT, nullable=False),
        sa.Column("attribute", TEXT, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("value", TEXT, nullable=True),
        sa.Column("value_folded", TEXT, nullable=True),
        sa.Column("display", TEXT, nullable=True),
        sa.Column("display_folded", TEXT, nullable=True),
        sa.Column("type", TEXT, nullable=True),
        sa.Column("type_folded", TEXT, nullable=True),
        sa.Column("primary", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id", "member_id"],
            ["members.tenant_id", "members.id"],
            name="fk_member_values_member",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "member_id", "attribute", "position", name="pk_member_values"
        ),
    )
    op.create_index(
        "ix_member_values_value",
        "member_values",
        ["tenant_id", "attribute", "value_folded", "member_id"],
        unique=False,
    )
    op.create_table(
        "memberships",
        sa.Column("tenant_id", TEXT, nullable=False),
        sa.Column("group_id", TEXT, nullable=False),
        sa.Column("member_id", TEXT, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "group_id"],
            ["groups.tenant_id", "groups.id"],
            name="fk_memberships_group",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "member_id"],
            ["members.tenant_id", "members.id"],
            name="fk_memberships_member",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "group_id", "member_id", name="pk_memberships"),
    )
    op.create_index(
        "ix_memberships_member", "memberships", ["tenant_id", "member_id", "group_id"], unique=False
    )


def downgrade() -> None:
    """Remove every table."""
    for table in ("memberships", "member_values", "members", "groups", "api_tokens", "tenants"):
        op.drop_table(table)
    op.drop_table("schema_version")
