"""checkpoints.webhook_at: when the source's last authorized webhook arrived.

``edsync status`` reads the mirror alone, so the daemon that receives a
webhook writes its time here; on PostgreSQL it is also how a daemon that
receives a webhook for a source another daemon polls tells that daemon
(whose coordinator reads it). NULL for a source no webhook has reached.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True).with_variant(sa.Text(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("checkpoints") as batch:
        batch.add_column(sa.Column("webhook_at", Timestamp, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_column("webhook_at")
