"""``edsync.testing``: an in-memory feed drained by the real engine into a real SQLite mirror."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine

from edsync.errors import RetriableError
from edsync.mirror import checkpoints, reads
from edsync.mirror.db import create_mirror_engine, ensure_schema
from edsync.model import Cursor, Signal, SnapshotObject
from edsync.run.drain import drain
from edsync.settings import MirrorSettings
from edsync.testing import MemorySink, MemorySource
from tests.conftest import table_rows


def _mirror(tmp_path: Path) -> Engine:
    engine = create_mirror_engine(MirrorSettings(url=f"sqlite:///{tmp_path / 'mirror.db'}"))
    ensure_schema(engine, auto_migrate=True)
    return engine


def test_a_memory_source_drains_into_a_sqlite_mirror(tmp_path: Path) -> None:
    engine = _mirror(tmp_path)
    source = MemorySource(
        "mem",
        [
            {"entity": "person", "op": "created", "entity_id": 1, "data": {"name": "Ada"}},
            {"entity": "person", "op": "created", "entity_id": 2, "data": {"name": "Bo"}},
            {"entity": "person", "op": "updated", "entity_id": 1, "data": {"name": "Ada L."}},
            {"entity": "person", "op": "sideways", "entity_id": 3},
            {"entity": "person", "op": "deleted", "entity_id": 2},
        ],
        page_size=2,
    )
    try:
        result = drain(engine, source, prefetch=0)
        assert (result.pages, result.received, result.quarantined) == (3, 5, 1)
        assert result.cursor == Cursor("5", 5)
        rows = table_rows(engine, "records")
        # (entity, entity_id, name, deleted): Ada updated; Bo a tombstone (a delete carries no data)
        state = {(row[1], row[2], orjson.loads(row[3]).get("name"), bool(row[4])) for row in rows}
        assert state == {("person", "1", "Ada L.", False), ("person", "2", None, True)}
        (bad,) = reads.quarantined(engine, "mem")
        assert (bad.event_id, bad.position) == ("4", 4)
        assert "sideways" in (bad.reason or "")

        source.events.append({"entity": "person", "op": "created", "entity_id": 9})
        again = drain(engine, source, prefetch=0)
        assert (again.received, again.applied) == (1, 1)
        checkpoint = checkpoints.load(engine, "mem")
        assert checkpoint is not None
        assert checkpoint.cursor == Cursor("6", 6)
    finally:
        source.close()
        engine.dispose()
    assert source.closed


def test_a_memory_sink_keeps_a_signal_once_and_fails_as_told() -> None:
    sink = MemorySink(failures=[RetriableError("hub down")])
    signal = Signal("s1", "rule", "mem", "1", "person", "1", None, {"event_type": "x"})
    with pytest.raises(RetriableError, match="hub down"):
        sink.send(signal)
    sink.send(signal)
    sink.send(signal)
    assert sink.received == {"s1": signal}
    assert sink.attempts == 3


def test_a_memory_source_with_objects_bootstraps_a_new_mirror_from_them(tmp_path: Path) -> None:
    """A kind that declares a snapshotter is snapshotted first; one without is not."""
    engine = _mirror(tmp_path)
    objects = {
        "person": [SnapshotObject("1", {"name": "Ada"}), SnapshotObject("2", {"name": "Bo"})],
        "class": [SnapshotObject("c1", {"title": "Maths"})],
    }
    source = MemorySource(
        "mem",
        [{"entity": "person", "op": "created", "entity_id": 1, "data": {"name": "Ada"}}],
        objects=objects,
    )
    plain = MemorySource("plain")
    try:
        assert plain.snapshotter is None
        first = drain(engine, source, prefetch=0)
        # The stream resumes after the head noted before the snapshot: the one
        # event already in it is not applied again.
        assert first.received == 0
        assert first.cursor == Cursor("1", 1)
        rows = table_rows(engine, "records")
        names = {(row[1], row[2]): orjson.loads(row[3]) for row in rows}
        assert names == {
            ("person", "1"): {"name": "Ada"},
            ("person", "2"): {"name": "Bo"},
            ("class", "c1"): {"title": "Maths"},
        }
        source.events.append({"entity": "person", "op": "deleted", "entity_id": 2})
        again = drain(engine, source, prefetch=0)
        assert (again.received, again.applied) == (1, 1)
        deleted = {row[2]: bool(row[4]) for row in table_rows(engine, "records")}
        assert deleted == {"1": False, "2": True, "c1": False}
    finally:
        source.close()
        engine.dispose()
