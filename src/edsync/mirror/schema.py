"""The public tables of SPEC 4, as SQLAlchemy Core metadata.

Migrations (``mirror/migrations``) are the source of truth for the live
schema; this module mirrors it for queries and for the migration check test.
Timestamps are ISO 8601 UTC text on SQLite and ``timestamptz`` on PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

Json = JSON().with_variant(JSONB(), "postgresql")
Timestamp = DateTime(timezone=True).with_variant(Text(), "sqlite")
# Ids and kinds the feeds choose are text on PostgreSQL: it enforces a VARCHAR's
# length, so one over-long value would fail its page on every attempt and stop
# the source, where SQLite keeps it whatever the declared length.
FeedId = String(200).with_variant(Text(), "postgresql")
FeedName = String(100).with_variant(Text(), "postgresql")

records = Table(
    "records",
    metadata,
    Column("source", String(100), primary_key=True),
    Column("entity", FeedName, primary_key=True),
    Column("entity_id", FeedId, primary_key=True),
    # The views' column values, read from data when the record is written
    # (sources/fields.py): a view reads them, not data. Before data on
    # PostgreSQL, which reads a row's columns in order (migration 0009).
    Column("typed", Json),
    Column("data", Json, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("version", BigInteger, nullable=False),
    Column("last_event_id", FeedId, nullable=False),
    Column("person_id", FeedId),
    Column("first_seen_at", Timestamp, nullable=False),
    Column("changed_at", Timestamp),
    Column("synced_at", Timestamp, nullable=False),
    Column("snapshot_id", String(64)),
    # The resource a child belongs to (an application's offers, tasks,
    # references, documents): what a refresh or a purge reaches through it.
    Column("parent_id", FeedId),
    Index("ix_records_person", "source", "person_id"),
    Index("ix_records_parent", "source", "parent_id"),
    # By source and entity: the primary key's leading columns (migration 0008).
    Index("ix_records_changed_at", "changed_at"),
    Index(
        "ix_records_data",
        "data",
        postgresql_using="gin",
        postgresql_ops={"data": "jsonb_path_ops"},
    ).ddl_if(dialect="postgresql"),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(100), nullable=False),
    Column("event_id", FeedId, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("type", Text, nullable=False),
    Column("entity", FeedName, nullable=False),
    Column("entity_id", FeedId),
    Column("op", String(20)),
    Column("occurred_at", Timestamp),
    Column("payload", Json, nullable=False),
    Column("status", String(20), nullable=False),
    Column("reason", Text),
    Column("person_id", FeedId),
    Column("applied_at", Timestamp, nullable=False),
    UniqueConstraint("source", "event_id", name="uq_events_source_event_id"),
    Index("ix_events_person", "source", "person_id"),
    Index("ix_events_position", "source", "position"),
    Index(
        "ix_events_status",
        "source",
        "status",
        sqlite_where=text("status <> 'applied'"),
        postgresql_where=text("status <> 'applied'"),
    ),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("source", String(100), primary_key=True),
    Column("cursor", Text),
    Column("position", BigInteger),
    Column("updated_at", Timestamp, nullable=False),
    Column("events_total", BigInteger, nullable=False, default=0),
    Column("last_error", Text),
    Column("gap", Text),
    Column("last_success_at", Timestamp),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("lag", BigInteger),
    Column("snapshot", Text),  # a running snapshot's progress (JSON), for resuming it
    Column("purged_at", Timestamp),  # when the feed's purged resources were last read
    Column("webhook_at", Timestamp),  # when the source's last authorized webhook arrived
)

# Resources the feed's events named, to be read again (SPEC 2.1): written with
# the page that named them, deleted with the records their read wrote.
refresh_queue = Table(
    "refresh_queue",
    metadata,
    Column("source", String(100), primary_key=True),
    Column("entity", FeedName, primary_key=True),
    Column("entity_id", FeedId, primary_key=True),
    Column("position", BigInteger, nullable=False),  # the newest event that named it
    Column("person_id", FeedId),
    Column("changed_at", Timestamp),  # the newest naming event's time
    Column("queued_at", Timestamp, nullable=False),
    Index("ix_refresh_queue_position", "source", "position"),
)

signals = Table(
    "signals",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("rule", String(200), nullable=False),
    Column("source", String(100), nullable=False),
    Column("event_id", FeedId, nullable=False),
    Column("entity", FeedName, nullable=False),
    Column("entity_id", FeedId),
    Column("occurred_at", Timestamp),
    Column("data", Json, nullable=False),
    Column("person_id", FeedId),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("rule", "source", "event_id", name="uq_signals_rule_source_event"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("signal_id", String(64), primary_key=True),
    Column("sink", String(100), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("next_attempt_at", Timestamp),
    Column("delivered_at", Timestamp),
    # When the current run of failed attempts began: ``retry_for`` counts from it.
    Column("failing_since", Timestamp),
    Index("ix_deliveries_status", "status", "next_attempt_at"),
)
