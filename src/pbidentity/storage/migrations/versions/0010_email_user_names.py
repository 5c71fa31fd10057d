"""Each email row carries its member's userName: an email search pages from one index.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08

The members list orders by userName. A search whose prefix many addresses
start with (a tenth of a million members) used to join each matching email
to its member to learn that order, one lookup per match (117 ms on SQLite,
2.2 s on PostgreSQL at a million members). With the folded userName in the
email rows and at the end of ix_member_values_value, the page is read from
the index alone. A userName over 256 bytes is not carried (PostgreSQL
refuses an index entry over 2,704 bytes, and an address may take 2,048):
the search looks those up in their members' rows.
The upgrade fills the column from the members table, one statement, and
rebuilds the index.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TEXT = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")

_BEFORE = ["tenant_id", "attribute", "value_folded", "member_id"]
# Keep in step with pbidentity.storage.sql._schema.CARRIED_USER_NAME_BYTES
# (a migration is history: it does not import what the code may change).
_CARRIED_USER_NAME_BYTES = 256


def upgrade() -> None:
    """Add and fill member_values.user_name_folded; widen the values index with it."""
    op.add_column("member_values", sa.Column("user_name_folded", TEXT, nullable=True))
    op.execute(
        "UPDATE member_values SET user_name_folded = ("
        "SELECT members.user_name_folded FROM members"
        " WHERE members.tenant_id = member_values.tenant_id"
        " AND members.id = member_values.member_id"
        ") WHERE attribute = 'emails'"
    )
    # The size in UTF-8 bytes, as the code counts it.
    long_ones = (
        "UPDATE member_values SET user_name_folded = NULL WHERE attribute = 'emails' "
        "AND octet_length(user_name_folded) > :most"
        if op.get_bind().dialect.name == "postgresql"
        else "UPDATE member_values SET user_name_folded = NULL WHERE attribute = 'emails' "
        "AND length(CAST(user_name_folded AS BLOB)) > :most"
    )
    op.get_bind().execute(sa.text(long_ones), {"most": _CARRIED_USER_NAME_BYTES})
    op.drop_index("ix_member_values_value", table_name="member_values")
    op.create_index("ix_member_values_value", "member_values", [*_BEFORE, "user_name_folded"])


def downgrade() -> None:
    """Drop the column and give the index its former columns."""
    op.drop_index("ix_member_values_value", table_name="member_values")
    op.create_index("ix_member_values_value", "member_values", _BEFORE)
    with op.batch_alter_table("member_values") as batch:
        batch.drop_column("user_name_folded")
