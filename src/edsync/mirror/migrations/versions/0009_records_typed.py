"""records.typed: the views' column values, read once when a record is written.

A view used to read each column out of ``data`` on every query, with the
guards that keep a malformed value from failing it: a scan of five columns
cost up to a third more than the same JSON query by hand. Now the apply
step writes each record's column values (``sources/fields.py``) beside its
data, and the views read those.

The column starts empty: the views are outdated by the same release, and
refreshing a view (``db upgrade``, or a start that auto-migrates) computes
its records' values (``mirror.views.retype``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.add_column(sa.Column("typed", Json, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.drop_column("typed")
