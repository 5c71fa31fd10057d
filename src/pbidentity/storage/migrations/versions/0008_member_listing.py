"""The members list of the portal: an index per filter and per searched name.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

Each filter of the list (role, status, managed by the IdP) reads its members
in userName order from its own index, and a search's prefix is a range of
the display, given and family name indexes (userName and emails have theirs),
so that a page costs the same in a tenant of ten members as in one of a
million. Building them reads the members table once.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_INDEXES = {
    "ix_members_role_listing": ["tenant_id", "app_role", "user_name_folded"],
    "ix_members_active_listing": ["tenant_id", "active", "user_name_folded"],
    "ix_members_managed_listing": ["tenant_id", "scim_managed", "user_name_folded"],
    "ix_members_display_name": ["tenant_id", "display_name_folded", "user_name_folded"],
    "ix_members_name_given_name": ["tenant_id", "name_given_name_folded", "user_name_folded"],
    "ix_members_name_family_name": ["tenant_id", "name_family_name_folded", "user_name_folded"],
}


def upgrade() -> None:
    """Add the members list's indexes."""
    for name, columns in _INDEXES.items():
        op.create_index(name, "members", columns)


def downgrade() -> None:
    """Drop them (the members list then reads the table to filter or search)."""
    for name in _INDEXES:
        op.drop_index(name, table_name="members")
