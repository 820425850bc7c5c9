"""The ``Source`` contract, run over every registered feed kind and ``MemorySource``.

What the engine (drain, backfill, bootstrap, ``check``) relies on a source for,
asserted the same way for each kind: the registered kinds served over real HTTP
by the simulator on 127.0.0.1, configured through the config loader as a user
would, and ``edsync.testing.MemorySource`` as the kinds' stand-in in unit tests.
A kind added to ``edsync.sources`` without a ``CASES`` entry fails here.

Where a kind does not keep a promise yet, the point is marked
``xfail(strict=True)`` in ``DEVIATIONS`` with the reason, never loosened.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, get_args

import pytest

from edsync import sources
from edsync.config import parse_config
from edsync.errors import AuthError, InvalidEventError
from edsync.model import (
    SNAPSHOT_DONE,
    Bounds,
    Change,
    Cursor,
    Op,
    Quarantined,
    RawEvent,
    RawPage,
    SnapshotPage,
)
from edsync.normalize import normalize_page
from edsync.sources.base import Snapshotter, Source
from edsync.testing import MemorySource
from edsync_sim import Simulator

NAME = "contract"
PAGE_SIZE = 40  # several pages out of the small datasets below
MAX_PAGES = 1000  # a feed that never ends fails instead of hanging
OPS = frozenset(get_args(Op))
MEMORY = "memory"
REFUSED = "not-the-credential"


@dataclass(frozen=True, slots=True)
class Case:
    """How a registered kind is configured against the simulator: its source
    table (``table(sim, env_var)``), and the credential the simulator accepts."""

    table: Callable[[Simulator, str], dict[str, Any]]
    credential: Callable[[Simulator], str]


CASES: dict[str, Case] = {
    "dreamapply": Case(
        lambda sim, env: {
            "kind": "dreamapply",
            "base_url": sim.url,
            "api_key_env": env,
            "page_size": PAGE_SIZE,
            "max_requests_per_minute": 0,
            "snapshot": True,
        },
        lambda sim: sim.api_key,
    ),
    "edlink": Case(
        lambda sim, env: {
            "kind": "edlink",
            "base_url": sim.url,
            "token_env": env,
            "page_size": PAGE_SIZE,
        },
        lambda sim: sim.edlink_integration.token,
    ),
}

DEVIATIONS: dict[tuple[str, str], str] = {}


def kinds(point: str = "", *, memory: bool = True) -> list[Any]:
    """Every registered kind (and MemorySource), a known deviation from ``point`` xfailed."""
    params = []
    for kind in [*sources.KINDS, *([MEMORY] if memory else [])]:
        reason = DEVIATIONS.get((kind, point))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(kind, id=kind, marks=marks))
    return params


def memory_events() -> list[Mapping[str, Any]]:
    """150 events over three entities, every op, one that cannot be normalized."""
    events: list[Mapping[str, Any]] = []
    for n in range(1, 151):
        entity = ("person", "course", "enrollment")[n % 3]
        op = ("created", "updated", "updated", "deleted", "forgotten")[n % 5]
        entity_id = str(n % 17)
        events.append(
            {
                "entity": entity,
                "op": op,
                "entity_id": entity_id,
                "data": {"n": n},
                "occurred_at": f"2026-01-01T00:{n // 60:02d}:{n % 60:02d}+00:00",
                "person_id": entity_id if entity == "person" else None,
            }
        )
    events[76] = {"op": "created", "entity_id": "1"}  # no entity: quarantined
    return events


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    """One simulator for the module (the tests only read): a DreamApply journal of
    a few hundred events and a small Edlink graph with its history."""
    with Simulator(events=300, edlink_people=20) as simulator:
        yield simulator


@pytest.fixture
def open_source(sim: Simulator) -> Iterator[Callable[..., Source]]:
    """``open_source(kind, refused=False)``: a source of that kind named ``NAME``,
    closed at the end; ``refused`` gives it a credential upstream refuses."""
    opened: list[Source] = []

    def factory(kind: str, *, refused: bool = False) -> Source:
        source: Source
        if kind == MEMORY:
            source = MemorySource(
                NAME, memory_events(), page_size=PAGE_SIZE, person_entity="person"
            )
        else:
            case = CASES.get(kind)
            if case is None:
                pytest.fail(f"source kind {kind!r} is registered but has no contract case")
            env_var = f"EDSYNC_CONTRACT_{kind.upper()}_SECRET"
            env = {env_var: REFUSED if refused else case.credential(sim)}
            doc = {"sources": {NAME: case.table(sim, env_var)}}
            source = sources.create(parse_config(doc, "contract.toml", env).sources[NAME])
        opened.append(source)
        return source

    yield factory
    for source in opened:
        source.close()


def snapshotter_or_skip(source: Source, kind: str) -> Snapshotter:
    """What bootstraps a mirror for this source; the test is skipped if nothing can."""
    if source.snapshotter is None:
        pytest.skip(f"{kind} cannot snapshot")
    return source.snapshotter


def read_pages(
    source: Source, cursor: Cursor | None = None, bounds: Bounds | None = None
) -> list[RawPage]:
    pages = []
    for page in source.pages(cursor, bounds or Bounds()):
        pages.append(page)
        assert len(pages) <= MAX_PAGES, "the feed never ends"
    return pages


def events_of(pages: list[RawPage]) -> list[RawEvent]:
    return [event for page in pages for event in page.events]


def ids(events: list[RawEvent]) -> list[str]:
    return [event.event_id for event in events]


def read_snapshot(snapshotter: Snapshotter, resume: str | None = None) -> list[SnapshotPage]:
    pages = []
    for page in snapshotter.snapshot(resume):
        pages.append(page)
        assert len(pages) <= MAX_PAGES, "the snapshot never ends"
    return pages


ObjectKey = tuple[str, str, bool]


def objects_of(pages: list[SnapshotPage]) -> dict[ObjectKey, Any]:
    return {
        (page.entity, obj.entity_id, page.deleted): obj.data
        for page in pages
        for obj in page.objects
    }


# -- what a kind declares -------------------------------------------------------


def test_every_registered_kind_has_a_contract_case() -> None:
    assert set(sources.KINDS) <= set(CASES)


@pytest.mark.parametrize("kind", kinds())
def test_declared_properties_are_well_formed(kind: str, open_source: Callable[..., Source]) -> None:
    source = open_source(kind)
    assert source.name == NAME
    assert source.resync in ("auto", "manual")
    assert source.retention is None or source.retention > 0
    assert source.person_entity is None or source.person_entity
    snapshotter = source.snapshotter
    if snapshotter is None:
        # Nothing can resync a gap but a human.
        assert source.resync == "manual"
        return
    entities = snapshotter.snapshot_entities
    assert entities
    assert len(set(entities)) == len(entities)
    if source.person_entity is not None:
        assert source.person_entity in entities  # erasure reaches snapshotted people too


# -- the stream -----------------------------------------------------------------


@pytest.mark.parametrize("kind", kinds())
def test_pages_run_oldest_first_with_rising_cursors_until_drained(
    kind: str, open_source: Callable[..., Source]
) -> None:
    pages = read_pages(open_source(kind))
    assert len(pages) >= 3, "the dataset should span several pages"
    events = events_of(pages)
    assert all(event.event_id for event in events)
    assert len(set(ids(events))) == len(events), "an event id twice in one drain"
    positions = [event.position for event in events]
    assert positions == sorted(set(positions)), "positions must strictly increase"
    assert positions[0] >= 1
    previous = 0
    for page in pages:
        assert page.cursor.value, "a page's cursor must be storable text"
        assert page.cursor.position > previous
        if page.events:
            assert page.cursor.position >= page.events[-1].position
            assert page.events[0].position > previous
        previous = page.cursor.position
    # Drained: from the last cursor there is nothing more.
    assert read_pages(open_source(kind), pages[-1].cursor) == []


@pytest.mark.parametrize("kind", kinds())
def test_resuming_from_any_page_cursor_yields_exactly_the_rest(
    kind: str, open_source: Callable[..., Source]
) -> None:
    source = open_source(kind)
    pages = read_pages(source)
    everything = [(e.event_id, e.position) for e in events_of(pages)]
    done = 0
    for page in pages:
        done += len(page.events)
        rest = [(e.event_id, e.position) for e in events_of(read_pages(source, page.cursor))]
        assert rest == everything[done:], f"resuming from {page.cursor}"


@pytest.mark.parametrize("kind", kinds())
def test_pending_is_unknown_or_the_number_of_events_left(
    kind: str, open_source: Callable[..., Source]
) -> None:
    source = open_source(kind)
    pages = read_pages(source)
    total = len(events_of(pages))
    counts = [source.pending(None, Bounds())]
    left = [total]
    for page in pages:
        counts.append(source.pending(page.cursor, Bounds()))
        left.append(left[-1] - len(page.events))
    assert left[-1] == 0
    if counts[0] is None:
        assert counts == [None] * len(counts), "a feed either counts or does not"
    else:
        assert counts == left


@pytest.mark.parametrize("kind", kinds())
def test_every_event_normalizes_to_a_change_or_is_quarantined(
    kind: str, open_source: Callable[..., Source]
) -> None:
    source = open_source(kind)
    raws = events_of(read_pages(source))
    for raw in raws:
        try:
            normalized = source.normalize(raw)
        except InvalidEventError:
            continue
        assert isinstance(normalized, Change)
    changes = normalize_page(raws, source.normalize)
    assert [(c.event_id, c.position) for c in changes] == [(r.event_id, r.position) for r in raws]
    # Records change through the event itself, or through the read of what it
    # names (a notification feed: SPEC 2.1), never through neither.
    touched = [
        change
        for change in changes
        if change.touches_record or (isinstance(change, Change) and change.refresh)
    ]
    assert touched, "the dataset should change records"
    for change in changes:
        if isinstance(change, Quarantined):
            assert not change.touches_record
            assert change.reason  # why it is quarantined
            continue
        assert change.type
        if change.touches_record:
            assert change.op in OPS
            assert change.entity
            assert isinstance(change.entity_id, str)
            assert change.entity_id
        elif change.op is not None:
            assert change.op in OPS
            assert change.entity
            assert change.entity_id is None or change.entity_id  # its own id, or none
            assert change.refresh, "an event that writes no record names what to read"
        if change.touches_record and change.entity == source.person_entity:
            assert change.person_id == change.entity_id  # erasure finds the person's own events


def _middle(events: list[RawEvent]) -> RawEvent:
    return events[len(events) // 2]


@pytest.mark.parametrize("kind", kinds("since"))
def test_since_starts_the_feed_at_that_event(kind: str, open_source: Callable[..., Source]) -> None:
    source = open_source(kind)
    events = events_of(read_pages(source))
    start = _middle(events)
    bounds = Bounds(since=start.event_id)
    got = ids(events_of(read_pages(source, None, bounds)))
    assert got == ids(events[events.index(start) :])
    assert source.pending(None, bounds) in (None, len(got))


@pytest.mark.parametrize("kind", kinds("until"))
def test_until_stops_the_feed_at_that_event(kind: str, open_source: Callable[..., Source]) -> None:
    source = open_source(kind)
    pages = read_pages(source)
    events = events_of(pages)
    end = _middle(events)
    bounds = Bounds(until=end.event_id)
    got = ids(events_of(read_pages(source, None, bounds)))
    assert got == ids(events[: events.index(end) + 1])
    assert source.pending(None, bounds) in (None, len(got))
    # A cursor already past it yields nothing more.
    assert read_pages(source, pages[-1].cursor, bounds) == []


def _times(source: Source, events: list[RawEvent]) -> list[dt.datetime]:
    """When each event occurred, as the feed dates it."""
    times = []
    for raw in events:
        occurred = source.normalize(raw).occurred_at
        assert occurred is not None, f"event {raw.event_id} is not dated"
        times.append(dt.datetime.fromisoformat(occurred))
    return times


@pytest.mark.parametrize("kind", kinds("since_time", memory=False))
def test_since_a_time_starts_at_the_first_event_dated_then_or_later(
    kind: str, open_source: Callable[..., Source]
) -> None:
    source = open_source(kind)
    events = events_of(read_pages(source))
    times = _times(source, events)
    start = times[len(events) // 2]
    got = ids(events_of(read_pages(source, None, Bounds(since=start.isoformat()))))
    assert got == [e.event_id for e, when in zip(events, times, strict=True) if when >= start]
    assert got == ids(events[len(events) - len(got) :]), "not a tail of the feed"


@pytest.mark.parametrize("kind", kinds("until_time", memory=False))
def test_until_a_time_stops_before_the_first_event_dated_later(
    kind: str, open_source: Callable[..., Source]
) -> None:
    source = open_source(kind)
    pages = read_pages(source)
    events = events_of(pages)
    times = _times(source, events)
    end = times[len(events) // 2]
    bounds = Bounds(until=end.isoformat())
    bounded = read_pages(source, None, bounds)
    got = ids(events_of(bounded))
    assert got == [e.event_id for e, when in zip(events, times, strict=True) if when <= end]
    assert got == ids(events[: len(got)]), "not a head of the feed"
    # The rest follows from the bounded drain's last cursor.
    rest = ids(events_of(read_pages(source, bounded[-1].cursor)))
    assert got + rest == ids(events)


# -- the snapshot -----------------------------------------------------------------


@pytest.mark.parametrize("kind", kinds())
def test_a_snapshot_reads_every_entity_and_ends_done(
    kind: str, open_source: Callable[..., Source]
) -> None:
    source = open_source(kind)
    snapshotter = snapshotter_or_skip(source, kind)
    pages = read_snapshot(snapshotter)
    entities = set(snapshotter.snapshot_entities)
    assert {page.entity for page in pages} <= entities
    assert {page.entity for page in pages if page.objects and not page.deleted} == entities
    for page in pages:
        for obj in page.objects:
            assert obj.entity_id
            if page.entity == source.person_entity:
                assert obj.person_id == obj.entity_id
    assert pages[-1].resume == SNAPSHOT_DONE
    assert read_snapshot(snapshotter, SNAPSHOT_DONE) == []


@pytest.mark.parametrize("kind", kinds())
def test_a_snapshot_resumes_from_any_page_without_loss(
    kind: str, open_source: Callable[..., Source]
) -> None:
    snapshotter = snapshotter_or_skip(open_source(kind), kind)
    pages = read_snapshot(snapshotter)
    assert len(pages) >= 3, "the dataset should span several snapshot pages"
    everything = objects_of(pages)
    resumed: dict[str | None, dict[ObjectKey, Any]] = {}
    for index, page in enumerate(pages):
        # A run cut short after this page resumes at its token: it may read some
        # objects again (a snapshot page applies idempotently), it must miss none.
        if page.resume not in resumed:
            resumed[page.resume] = objects_of(read_snapshot(snapshotter, page.resume))
        after = resumed[page.resume]
        assert after.items() <= everything.items(), f"resuming at {page.resume!r} invents objects"
        missing = everything.keys() - objects_of(pages[: index + 1]).keys() - after.keys()
        assert not missing, f"resuming at {page.resume!r} loses {sorted(missing)[:5]}"


@pytest.mark.parametrize("kind", kinds())
def test_head_is_the_newest_event_and_the_stream_after_it_is_empty(
    kind: str, open_source: Callable[..., Source]
) -> None:
    source = open_source(kind)
    snapshotter = snapshotter_or_skip(source, kind)
    pages = read_pages(source)
    head = snapshotter.head()
    assert head is not None
    assert head == pages[-1].events[-1].event_id
    for base in (0, pages[-1].cursor.position):
        cursor = snapshotter.after_snapshot(head, base)
        assert cursor.position >= base, "positions never go back after a snapshot"
        assert read_pages(source, cursor) == []
        assert source.pending(cursor, Bounds()) in (None, 0)


# -- credentials and lifecycle ------------------------------------------------------


@pytest.mark.parametrize("kind", kinds())
def test_probe_succeeds_with_good_credentials(
    kind: str, open_source: Callable[..., Source]
) -> None:
    assert open_source(kind).probe()  # a line for `edsync check`


@pytest.mark.parametrize("kind", kinds(memory=False))
def test_refused_credentials_are_an_auth_error_naming_the_variable_never_a_gap(
    kind: str, open_source: Callable[..., Source]
) -> None:
    good = open_source(kind)
    cursor = read_pages(good)[0].cursor
    source = open_source(kind, refused=True)
    env_var = f"EDSYNC_CONTRACT_{kind.upper()}_SECRET"
    calls: dict[str, Callable[[], object]] = {
        "probe": source.probe,
        "pages": lambda: read_pages(source),
        "pages after a cursor": lambda: read_pages(source, cursor),
    }
    if good.pending(cursor, Bounds()) is not None:  # a feed that counts asks upstream
        calls["pending"] = lambda: source.pending(cursor, Bounds())
    snapshotter = source.snapshotter
    if snapshotter is not None:
        calls["head"] = snapshotter.head
        calls["snapshot"] = lambda: read_snapshot(snapshotter)
    for what, call in calls.items():
        with pytest.raises(AuthError) as refused:  # SPEC 5.2; a GapError would resync
            call()
        message = str(refused.value)
        assert repr(NAME) in message, what
        assert env_var in message, what
        assert REFUSED not in message, what


@pytest.mark.parametrize("kind", kinds())
def test_close_is_safe_unused_used_and_twice(kind: str, open_source: Callable[..., Source]) -> None:
    unused = open_source(kind)
    unused.close()
    unused.close()
    used = open_source(kind)
    read_pages(used)
    used.close()
    used.close()
