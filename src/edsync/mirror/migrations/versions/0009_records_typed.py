"""records.typed: the views' column values, read once when a record is written.

A view used to read each column out of ``data`` on every query, with the
guards that keep a malformed value from failing it: a scan of five columns
cost up to a third more than the same JSON query by hand. Now the apply
step writes each record's column values (``sources/fields.py``) beside its
data, and the views read those. ``db upgrade`` (or a start that
auto-migrates) replaces the views and computes the values of the records
already there (``mirror.views.retype``).

On PostgreSQL the column goes before ``data``, so the table is rebuilt:
PostgreSQL reads a row's columns in order, and a ``typed`` after ``data``
and the timestamps cost a view's filter a quarter to a half more than
reading ``data`` itself (bench/README.md). A rebuild would drop what others
hang on the table (their views, grants, triggers, publications, indexes
of their own…): when there is any, the column is appended instead, and a
warning says so. SQLite finds a column as fast wherever it is: appended.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
import structlog
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")

_EDSYNC_VIEW = "edsync view of %"  # the comment mirror/views.py puts on its views
_OWN_INDEXES = ("records_pkey", "ix_records_person", "ix_records_changed_at", "ix_records_data")

# What a rebuild of records would drop or fail on, each a query counting it.
_HELD_BY_OTHERS = {
    "views": (
        "SELECT count(DISTINCT v.oid) FROM pg_depend d "
        "JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid "
        "JOIN pg_class v ON v.oid = r.ev_class "
        "WHERE d.refobjid = 'records'::regclass AND v.oid <> 'records'::regclass "
        "AND coalesce(obj_description(v.oid, 'pg_class'), '') NOT LIKE :edsync"
    ),
    "grants": (
        "SELECT count(*) FROM pg_class WHERE oid = 'records'::regclass AND relacl IS NOT NULL"
    ),
    "triggers": (
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'records'::regclass AND NOT tgisinternal"
    ),
    "foreign keys": "SELECT count(*) FROM pg_constraint WHERE confrelid = 'records'::regclass",
    "indexes": (
        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = 'records'::regclass AND c.relname <> ALL(:own)"
    ),
    "policies": "SELECT count(*) FROM pg_policy WHERE polrelid = 'records'::regclass",
    "publications": "SELECT count(*) FROM pg_publication_rel WHERE prrelid = 'records'::regclass",
    "statistics": "SELECT count(*) FROM pg_statistic_ext WHERE stxrelid = 'records'::regclass",
    "inheritance": (
        "SELECT count(*) FROM pg_inherits "
        "WHERE inhrelid = 'records'::regclass OR inhparent = 'records'::regclass"
    ),
}


def _held_by_others(bind: sa.Connection) -> list[str]:
    params = {"edsync": _EDSYNC_VIEW, "own": list(_OWN_INDEXES)}
    return [
        what
        for what, query in _HELD_BY_OTHERS.items()
        if bind.execute(sa.text(query), params).scalar()
    ]


def _drop_edsync_views(bind: sa.Connection) -> None:
    query = (
        "SELECT c.relname FROM pg_class c WHERE c.relkind = 'v' "
        "AND c.relnamespace = current_schema()::regnamespace "
        "AND obj_description(c.oid, 'pg_class') LIKE :edsync"
    )
    for (name,) in bind.execute(sa.text(query), {"edsync": _EDSYNC_VIEW}).all():
        bind.exec_driver_sql(f'DROP VIEW "{name}"')


def upgrade() -> None:
    bind = op.get_bind()
    column = sa.Column("typed", Json, nullable=True)
    held = _held_by_others(bind) if bind.dialect.name == "postgresql" else []
    if bind.dialect.name != "postgresql" or held:
        if held:
            structlog.get_logger("edsync.mirror").warning(
                "records_typed_appended",
                why="records has objects a rebuild would drop: " + ", ".join(held),
                cost="the views read typed more slowly after data than before it",
            )
        with op.batch_alter_table("records") as batch:
            batch.add_column(column)
        return
    _drop_edsync_views(bind)  # created again after the migration, reading typed
    with op.batch_alter_table("records", recreate="always") as batch:
        batch.add_column(column, insert_after="entity_id")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        _drop_edsync_views(bind)
    with op.batch_alter_table("records") as batch:
        batch.drop_column("typed")
