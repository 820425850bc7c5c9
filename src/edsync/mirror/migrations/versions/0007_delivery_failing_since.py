"""deliveries.failing_since: when the current run of failed attempts began.

A sink's ``retry_for`` is a budget in time, counted from the first failed
attempt (not from the signal, which may wait in the outbox while edsync is
stopped): the publisher needs that moment to survive a restart. NULL while a
delivery has not failed, and again once ``deliver --retry-failed`` queues it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True).with_variant(sa.Text(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("failing_since", Timestamp, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("failing_since")
