"""Ids and kinds the feeds choose become text on PostgreSQL.

PostgreSQL enforces a VARCHAR's length: one over-long event id, entity id,
person id or entity kind failed its page on every attempt and stopped the
source, where SQLite keeps it whatever the declared length. VARCHAR to text
is binary coercible, so neither the tables nor their indexes are rewritten.
SQLite needs no change.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COLUMNS = {
    "records": {"entity": 100, "entity_id": 200, "last_event_id": 200, "person_id": 200},
    "events": {"event_id": 200, "entity": 100, "entity_id": 200, "person_id": 200},
    "signals": {"event_id": 200, "entity": 100, "entity_id": 200, "person_id": 200},
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in _COLUMNS.items():
        for column, length in columns.items():
            op.alter_column(table, column, type_=sa.Text(), existing_type=sa.String(length))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in _COLUMNS.items():
        for column, length in columns.items():
            op.alter_column(table, column, type_=sa.String(length), existing_type=sa.Text())
