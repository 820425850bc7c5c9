"""A snapshot streams (issue 32): one page in memory at a time, and what it lacked
marked deleted in bounded statements. The memory itself is measured by
``bench/edlink_million.py``; these tests pin down the behaviour that keeps it flat."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from edsync import sources
from edsync.cli import main
from edsync.config import load_config
from edsync.mirror import snapshot
from edsync.mirror.sql import adapt
from edsync.model import SnapshotObject
from edsync.run.drain import drain
from edsync.sources.edlink import EdlinkSource
from tests.conftest import mirror_engine
from tests.integration.test_edlink import assert_mirror_matches_graph, mirror_records

PAGES = ("page_size = 7", 'interval = "1s"')


class _Tracked(dict[str, Any]):
    """An object's data that can be watched for its release (a plain dict cannot)."""


def test_a_snapshot_page_is_released_before_the_next_is_fetched(
    make_simulator: Callable[..., Any], edlink_config: Callable[..., Path]
) -> None:
    sim = make_simulator(events=0, edlink_people=40)
    path = edlink_config(sim.url, *PAGES)
    source = sources.create(load_config(path).sources["edlink"])
    assert isinstance(source, EdlinkSource)
    alive: list[weakref.ref[_Tracked]] = []
    held_at_fetch: list[int] = []
    read_object, fetch = source._object, source.http.fetch

    def tracked_object(entity: str, item: object) -> SnapshotObject:
        obj = read_object(entity, item)
        data = _Tracked(obj.data)
        alive.append(weakref.ref(data))
        return SnapshotObject(obj.entity_id, data, obj.person_id, obj.parent_id)

    def counting_fetch(*args: Any, **kwargs: Any) -> Any:
        held_at_fetch.append(sum(ref() is not None for ref in alive))
        return fetch(*args, **kwargs)

    source._object = tracked_object  # type: ignore[method-assign]
    source.http.fetch = counting_fetch  # type: ignore[method-assign]
    engine = mirror_engine(path)
    try:
        drain(engine, source)
    finally:
        source.close()

    # Many pages were read, and none was still held when the next was asked for.
    assert len(held_at_fetch) > 10
    assert len(alive) > 100
    assert held_at_fetch == [0] * len(held_at_fetch)
    assert_mirror_matches_graph(engine, sim, every_deleted=False)


def _add_record(engine: Engine, source: str, entity: str, entity_id: str, *, deleted: bool) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO records (source, entity, entity_id, data, deleted, version, "
            "last_event_id, first_seen_at, synced_at) VALUES "
            f"('{source}', '{entity}', '{entity_id}', '{{\"id\": \"{entity_id}\"}}', "
            f"{'TRUE' if deleted else 'FALSE'}, 0, 'old', "
            "'2020-01-01T00:00:00+00:00', '2020-01-01T00:00:00+00:00')"
        )


def test_a_resync_marks_deleted_what_it_lacked_window_by_window(
    make_simulator: Callable[..., Any],
    edlink_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = make_simulator(events=0, edlink_people=40)
    path = edlink_config(sim.url, *PAGES)
    assert main(["backfill", "-c", str(path)]) == 0
    engine = mirror_engine(path)
    before = mirror_records(engine)
    people = sorted(entity_id for entity, entity_id in before if entity == "person")
    # Records upstream no longer has, between, before and after the live ones'
    # keys and on window boundaries; one already a tombstone; another source's.
    gone = ["", "0", people[0] + "-gone", people[5] + "-gone", people[6] + "-gone", "zzzz"]
    for entity_id in gone:
        _add_record(engine, "edlink", "person", entity_id, deleted=False)
    _add_record(engine, "edlink", "enrollment", "zz-gone", deleted=False)
    _add_record(engine, "edlink", "person", people[9] + "-tombstone", deleted=True)
    _add_record(engine, "other", "person", "zz-other", deleted=False)
    monkeypatch.setattr(snapshot, "MARK_WINDOW", 3)  # many windows, some all missing

    assert main(["backfill", "-c", str(path), "--reset"]) == 0

    after = mirror_records(engine)
    assert {key: after[key] for key in before} == before  # the live records: as they were
    for entity_id in gone:
        assert after[("person", entity_id)][0] is True, entity_id
    assert after[("enrollment", "zz-gone")][0] is True
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            adapt(
                conn,
                "SELECT source, entity_id, deleted, synced_at FROM records "
                "WHERE entity_id IN ('zz-other', ?)",
            ),
            (people[9] + "-tombstone",),
        ).all()
    found = {entity_id: (source, bool(deleted), str(at)) for source, entity_id, deleted, at in rows}
    assert found["zz-other"][:2] == ("other", False)  # another source's: untouched
    tombstone = found[people[9] + "-tombstone"]
    assert tombstone[1] is True
    assert tombstone[2].startswith("2020-01-01")  # already deleted: not rewritten
