"""The shipped migrations build exactly the schema the code queries."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from edsync.mirror.db import current_revision, head_revision, upgrade
from edsync.mirror.schema import metadata


def test_migrated_database_matches_the_metadata(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()

    def for_this_dialect(obj: Any, _name: Any, _type: str, _reflected: bool, _other: Any) -> bool:
        # Indexes declared for one dialect only (the GIN index) exist only there.
        ddl_if = getattr(obj, "_ddl_if", None)
        return ddl_if is None or ddl_if.dialect in (None, engine.dialect.name)

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": for_this_dialect})
        diff = compare_metadata(context, metadata)
    assert diff == []
    assert current_revision(engine) == head_revision()


def test_upgrade_is_idempotent(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= {
        "records",
        "events",
        "checkpoints",
        "signals",
        "deliveries",
    }


@pytest.mark.sqlite_only  # file modes and the journal mode of the SQLite file
def test_sqlite_mirror_is_private_and_in_wal_mode(make_engine: Callable[..., Engine]) -> None:
    # edsync creates the file, never its directory (issue 21: a typo'd directory
    # is refused, see test_read_only_commands), so only the file's mode is its own.
    engine = make_engine("mirror.db")
    path = engine.url.database
    assert path is not None
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_the_fast_schema_check_knows_the_newest_migration() -> None:
    # ensure_schema trusts SCHEMA_HEAD to skip importing Alembic on a current mirror.
    from edsync.mirror.db import SCHEMA_HEAD

    assert head_revision() == SCHEMA_HEAD


@pytest.mark.sqlite_only  # the query plan's wording is SQLite's
def test_records_by_source_and_entity_use_the_primary_key(
    make_engine: Callable[..., Engine],
) -> None:
    # Migration 0008 dropped ix_records_entity: the primary key's leading
    # columns serve the same queries.
    engine = make_engine()
    assert "ix_records_entity" not in {ix["name"] for ix in inspect(engine).get_indexes("records")}
    with engine.connect() as conn:
        plan = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT entity_id FROM records WHERE source = 'da' AND entity = 'x'"
        ).all()
    assert any("USING COVERING INDEX sqlite_autoindex_records_1" in row[-1] for row in plan), plan


def test_records_keyed_by_borrowed_ids_are_removed_and_their_applications_queued(
    mirror_url: Callable[[str], str],
) -> None:
    """An earlier edsync keyed a task, referee, interview, media or expanded
    document (and an offer without an id) by its application's id; migration
    0010 removes them and queues the application, whose read brings them
    back under their own ids. Another kind's records are left alone."""
    from alembic import command
    from structlog.testing import capture_logs

    from edsync.mirror.db import _alembic_config, create_mirror_engine
    from edsync.settings import MirrorSettings

    engine = create_mirror_engine(MirrorSettings(url=mirror_url("old.db")))
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0009")
    app = "/api/applications/21"
    old = [
        ("da", "application", "21", {"id": 21, "applicant": "/api/applicants/7"}),
        ("da", "task", "21", {"application": app, "applicant": "/api/applicants/7"}),
        ("da", "referee", "21", {"application": app}),
        ("da", "offer", "21", {"priority": 1, "application": app}),  # borrowed
        ("da", "offer", "3", {"id": 3, "application": app}),  # its own id
        ("da", "applicant", "7", {"id": 7, "email": "ada@example.org"}),
        ("ed", "task", "21", {"title": "an Edlink-like kind's own task"}),
    ]
    with engine.begin() as conn:
        for source, entity, entity_id, data in old:
            conn.exec_driver_sql(
                "INSERT INTO records (source, entity, entity_id, data, deleted, version, "
                "last_event_id, person_id, first_seen_at, synced_at) VALUES "
                + (
                    "(%s, %s, %s, %s, false, 5, '5', '7', '2026-01-01', '2026-01-01')"
                    if engine.dialect.name == "postgresql"
                    else "(?, ?, ?, ?, 0, 5, '5', '7', '2026-01-01', '2026-01-01')"
                ),
                (source, entity, entity_id, json.dumps(data)),
            )
    with capture_logs() as logs:
        upgrade(engine)
    with engine.connect() as conn:
        kept = set(conn.exec_driver_sql("SELECT source, entity, entity_id FROM records").all())
        queued = conn.exec_driver_sql(
            "SELECT source, entity, entity_id, position, person_id FROM refresh_queue"
        ).all()
    assert kept == {
        ("da", "application", "21"),
        ("da", "offer", "3"),
        ("da", "applicant", "7"),
        ("ed", "task", "21"),
    }
    assert queued == [("da", "application", "21", 5, "7")]
    [said] = [entry for entry in logs if entry["event"] == "borrowed_ids_removed"]
    assert said["records"] == 3
    assert "the next run reads their 1 applications again" in said["message"]
