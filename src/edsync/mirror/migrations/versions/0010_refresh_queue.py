"""DreamApply's records come from its resources (SPEC 2.1): a refresh queue,
each child record's parent, when purges were last read; records keyed by
borrowed ids removed.

Earlier versions built DreamApply records from journal items and keyed the
ones without a link of their own (tasks, referees, interviews, media, an
expanded document or offer without an id) by their application's id (or
applicant's): two tasks of one application were one record. Those records
are removed here, and each application they stood for is queued, so the next
run reads it (and its offers, tasks, references and documents) again.

A DreamApply source is recognised by its records: only that kind has
``application`` records.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import sqlalchemy as sa
import structlog
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True).with_variant(sa.Text(), "sqlite")
FeedId = sa.String(200).with_variant(sa.Text(), "postgresql")
FeedName = sa.String(100).with_variant(sa.Text(), "postgresql")

# Kinds whose records were always keyed by a borrowed id or built from links
# alone: their records come from an application's read from now on.
BORROWED_KINDS = ("task", "referee", "interview", "media", "document")
_TRAILING_ID = re.compile(r"(\d+)/?$")


def upgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.add_column(sa.Column("parent_id", FeedId, nullable=True))
    op.create_index("ix_records_parent", "records", ["source", "parent_id"])
    with op.batch_alter_table("checkpoints") as batch:
        batch.add_column(sa.Column("purged_at", Timestamp, nullable=True))
    op.create_table(
        "refresh_queue",
        sa.Column("source", sa.String(100), primary_key=True),
        sa.Column("entity", FeedName, primary_key=True),
        sa.Column("entity_id", FeedId, primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("person_id", FeedId),
        sa.Column("changed_at", Timestamp),
        sa.Column("queued_at", Timestamp, nullable=False),
    )
    op.create_index("ix_refresh_queue_position", "refresh_queue", ["source", "position"])
    _remove_borrowed(op.get_bind())


def downgrade() -> None:
    op.drop_index("ix_refresh_queue_position", "refresh_queue")
    op.drop_table("refresh_queue")
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_column("purged_at")
    op.drop_index("ix_records_parent", "records")
    with op.batch_alter_table("records") as batch:
        batch.drop_column("parent_id")


def _remove_borrowed(conn: sa.Connection) -> None:
    sources = conn.execute(
        sa.text("SELECT DISTINCT source FROM records WHERE entity = 'application'")
    ).scalars()
    removed = queued = 0
    for source in list(sources):
        gone, apps = _borrowed(conn, source)
        for entity, entity_id in gone:
            conn.execute(
                sa.text("DELETE FROM records WHERE source = :s AND entity = :e AND entity_id = :i"),
                {"s": source, "e": entity, "i": entity_id},
            )
        now = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        for app_id, (position, person_id) in apps.items():
            conn.execute(
                sa.text(
                    "INSERT INTO refresh_queue (source, entity, entity_id, position, person_id, "
                    "queued_at) VALUES (:s, 'application', :i, :p, :person, :now)"
                ),
                {"s": source, "i": app_id, "p": position, "person": person_id, "now": now},
            )
        removed += len(gone)
        queued += len(apps)
    if removed:
        structlog.get_logger("edsync.mirror").warning(
            "borrowed_ids_removed",
            records=removed,
            applications_queued=queued,
            message=(
                f"removed {removed} DreamApply records keyed by another entity's id; "
                f"the next run reads their {queued} applications again"
            ),
        )


def _borrowed(
    conn: sa.Connection, source: str
) -> tuple[list[tuple[str, str]], dict[str, tuple[int, str | None]]]:
    kinds = ", ".join(f"'{kind}'" for kind in (*BORROWED_KINDS, "offer"))
    rows = conn.execute(
        sa.text(
            "SELECT entity, entity_id, data, version, person_id FROM records "
            f"WHERE source = :s AND entity IN ({kinds})"
        ),
        {"s": source},
    ).all()
    gone: list[tuple[str, str]] = []
    apps: dict[str, tuple[int, str | None]] = {}
    for entity, entity_id, raw, version, person_id in rows:
        data = json.loads(raw) if isinstance(raw, str | bytes) else raw
        data = data if isinstance(data, dict) else {}
        app_id = _link_id(data.get("application"))
        if entity == "offer" and not _borrowed_offer(entity_id, data, app_id):
            continue
        gone.append((entity, entity_id))
        if app_id is not None:
            kept = apps.get(app_id, (0, None))
            apps[app_id] = (max(kept[0], int(version)), person_id or kept[1])
    return gone, apps


def _borrowed_offer(entity_id: str, data: dict[str, Any], app_id: str | None) -> bool:
    """An offer keyed by its application's id: an expanded journal offer without one."""
    own = data.get("id")
    own_id = str(own) if own is not None else _link_id(data.get("offer"))
    return app_id == entity_id and own_id != entity_id


def _link_id(value: object) -> str | None:
    if isinstance(value, str):
        match = _TRAILING_ID.search(value)
        return match.group(1) if match else None
    if isinstance(value, dict):
        inner = value.get("id")
        return str(inner) if isinstance(inner, int | str) and inner != "" else None
    return None
