"""Members: the tenant policy, decided roles, unique externalIds, the events outbox, counts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

Existing members keep their role attribute (the ``role`` column); their
decided role (``app_role``) starts empty and is decided on their next change,
or for a whole tenant at once by saving its policy (``pbidentity policy set``).
Two members of a tenant sharing an externalId cannot both stay linked: the
upgrade stops and names them, so that an admin decides.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TEXT = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
TIMESTAMP = sa.String(32).with_variant(sa.String(32, collation="C"), "postgresql")


def upgrade() -> None:
    """Add the member policy, decided roles, unique externalIds and events."""
    duplicates = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT tenant_id, external_id, COUNT(*) FROM members "
                "WHERE external_id IS NOT NULL GROUP BY tenant_id, external_id "
                "HAVING COUNT(*) > 1 ORDER BY tenant_id, external_id"
            )
        )
        .all()
    )
    if duplicates:
        shown = "; ".join(f"tenant {t}: externalId {e!r} on {n} members" for t, e, n in duplicates)
        raise RuntimeError(
            "cannot upgrade: an externalId must link one member only, but "
            f"{shown}. Remove the externalId from all but one of them and upgrade again."
        )
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("settings", sa.Text(), nullable=False, server_default="{}"))
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("app_role", TEXT, nullable=True))
        batch.add_column(sa.Column("role_source", TEXT, nullable=True))
        batch.add_column(sa.Column("role_rule", TEXT, nullable=True))
    op.drop_index("ix_members_external_id", table_name="members")
    op.create_index("uq_members_external_id", "members", ["tenant_id", "external_id"], unique=True)
    op.create_index("ix_members_app_role", "members", ["tenant_id", "app_role", "active"])
    op.create_table(
        "events",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", TEXT, nullable=False),
        sa.Column("tenant_id", TEXT, nullable=False),
        sa.Column("type", TEXT, nullable=False),
        sa.Column("subject_id", TEXT, nullable=False),
        sa.Column("actor", TEXT, nullable=False),
        sa.Column("occurred", TIMESTAMP, nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("delivered", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_events_tenant"),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_events_tenant", "events", ["tenant_id", "seq"])
    op.create_index(
        "ix_events_pending",
        "events",
        ["seq"],
        sqlite_where=sa.text("delivered IS NULL"),
        postgresql_where=sa.text("delivered IS NULL"),
    )
    op.create_table(
        "tenant_counts",
        sa.Column("tenant_id", TEXT, nullable=False),
        sa.Column("kind", TEXT, nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_tenant_counts_tenant"),
        sa.PrimaryKeyConstraint("tenant_id", "kind", name="pk_tenant_counts"),
    )
    for kind in ("members", "groups"):
        # kind is one of two table names written here, never input.
        op.execute(
            f"INSERT INTO tenant_counts (tenant_id, kind, n) SELECT tenants.id, '{kind}', "  # noqa: S608
            f"(SELECT COUNT(*) FROM {kind} WHERE {kind}.tenant_id = tenants.id) FROM tenants"
        )
    # Alembic's own table now says which revision a database is at.
    op.drop_table("schema_version")


def downgrade() -> None:
    """Go back to the foundation schema (events are lost)."""
    op.create_table("schema_version", sa.Column("version", sa.Integer(), nullable=False))
    op.execute("INSERT INTO schema_version (version) VALUES (1)")
    op.drop_table("tenant_counts")
    op.drop_index("ix_events_pending", table_name="events")
    op.drop_index("ix_events_tenant", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_members_app_role", table_name="members")
    op.drop_index("uq_members_external_id", table_name="members")
    op.create_index("ix_members_external_id", "members", ["tenant_id", "external_id", "id"])
    with op.batch_alter_table("members") as batch:
        batch.drop_column("role_rule")
        batch.drop_column("role_source")
        batch.drop_column("app_role")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("settings")
