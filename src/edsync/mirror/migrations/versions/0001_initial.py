"""The mirror tables of SPEC 4.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True).with_variant(sa.Text(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("source", sa.String(100), primary_key=True),
        sa.Column("entity", sa.String(100), primary_key=True),
        sa.Column("entity_id", sa.String(200), primary_key=True),
        sa.Column("data", Json, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("last_event_id", sa.String(200), nullable=False),
        sa.Column("person_id", sa.String(200)),
        sa.Column("first_seen_at", Timestamp, nullable=False),
        sa.Column("changed_at", Timestamp),
        sa.Column("synced_at", Timestamp, nullable=False),
    )
    op.create_index("ix_records_person", "records", ["source", "person_id"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("entity_id", sa.String(200)),
        sa.Column("op", sa.String(20)),
        sa.Column("occurred_at", Timestamp),
        sa.Column("payload", Json, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("person_id", sa.String(200)),
        sa.Column("applied_at", Timestamp, nullable=False),
        sa.UniqueConstraint("source", "event_id", name="uq_events_source_event_id"),
    )
    op.create_index("ix_events_person", "events", ["source", "person_id"])
    # Partial: only the rare rows `status` and `quarantine` look for.
    not_applied = sa.text("status <> 'applied'")
    op.create_index(
        "ix_events_status",
        "events",
        ["source", "status"],
        sqlite_where=not_applied,
        postgresql_where=not_applied,
    )
    op.create_table(
        "checkpoints",
        sa.Column("source", sa.String(100), primary_key=True),
        sa.Column("cursor", sa.Text),
        sa.Column("position", sa.BigInteger),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("events_total", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("gap", sa.Text),
        sa.Column("last_success_at", Timestamp),
        sa.Column("consecutive_failures", sa.Integer, nullable=False),
    )
    op.create_table(
        "signals",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("entity_id", sa.String(200)),
        sa.Column("occurred_at", Timestamp),
        sa.Column("data", Json, nullable=False),
        sa.Column("person_id", sa.String(200)),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.UniqueConstraint("rule", "source", "event_id", name="uq_signals_rule_source_event"),
    )
    op.create_table(
        "deliveries",
        sa.Column("signal_id", sa.String(64), primary_key=True),
        sa.Column("sink", sa.String(100), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("next_attempt_at", Timestamp),
        sa.Column("delivered_at", Timestamp),
    )
    op.create_index("ix_deliveries_status", "deliveries", ["status", "next_attempt_at"])


def downgrade() -> None:
    for table in ("deliveries", "signals", "checkpoints", "events", "records"):
        op.drop_table(table)
