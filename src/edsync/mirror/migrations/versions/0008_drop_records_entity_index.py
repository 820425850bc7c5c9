"""Drop ix_records_entity: the primary key already serves it.

The records' primary key (source, entity, entity_id) is an index whose
leading columns are ix_records_entity's (source, entity), on SQLite and
PostgreSQL alike, so every query by source and entity keeps an index. The
second copy only cost writes: a 100 000-event backfill of large expanded
events wrote 6 % fewer bytes into SQLite without it (bench/README.md).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_records_entity", "records")


def downgrade() -> None:
    op.create_index("ix_records_entity", "records", ["source", "entity"])
