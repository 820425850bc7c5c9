"""Indexes users query by: records by entity and by changed_at, events by
position, and (PostgreSQL) a GIN index on records.data for JSON lookups.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_records_entity", "records", ["source", "entity"])
    op.create_index("ix_records_changed_at", "records", ["changed_at"])
    op.create_index("ix_events_position", "events", ["source", "position"])
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_records_data",
            "records",
            ["data"],
            postgresql_using="gin",
            postgresql_ops={"data": "jsonb_path_ops"},
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_records_data", "records")
    op.drop_index("ix_events_position", "events")
    op.drop_index("ix_records_changed_at", "records")
    op.drop_index("ix_records_entity", "records")
