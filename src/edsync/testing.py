"""In-memory sources and sinks: edsync's protocols without HTTP.

``MemorySource`` is a change feed held in a list, ``MemorySink`` keeps what it
is sent (procrastinate's ``InMemoryConnector`` plays the same part). They let a
test, or someone trying a rule, drive the real apply engine and outbox
against a real mirror with no server in the way.

An event body is a mapping: ``entity``, ``op`` (created/updated/deleted/
forgotten), ``entity_id``, and optionally ``data``, ``type``, ``occurred_at``,
``person_id``; a notification feed's event also ``record: false`` and
``refresh`` (``[[entity, id], …]``: what it names, to be read again). Its
position is its place in the list, from 1. Given ``objects`` (current objects
by entity kind), the source can also snapshot them (``MemorySnapshot``), so a
new mirror bootstraps from them first; given ``resources``
(``MemoryRefresher``), it reads what its events name from there.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast, get_args

from edsync.errors import EdsyncError, InvalidEventError
from edsync.model import (
    SNAPSHOT_DONE,
    Bounds,
    Change,
    Cursor,
    Op,
    RawEvent,
    RawPage,
    Ref,
    Refreshed,
    Signal,
    SnapshotObject,
    SnapshotPage,
)

if TYPE_CHECKING:
    from edsync.sinks.base import Sink
    from edsync.sources.base import Snapshotter, Source

_OPS = frozenset(get_args(Op))


class MemorySource:
    """A feed of ``events`` (append more between drains), served ``page_size`` at a time."""

    def __init__(
        self,
        name: str = "memory",
        events: list[Mapping[str, Any]] | None = None,
        *,
        page_size: int = 100,
        person_entity: str | None = None,
        objects: Mapping[str, Sequence[SnapshotObject]] | None = None,
        kind: str = "memory",
        resources: MemoryRefresher | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.events: list[Mapping[str, Any]] = list(events or [])
        self.page_size = page_size
        self._person_entity = person_entity
        self.snapshotter = MemorySnapshot(self, objects) if objects is not None else None
        self.refresher = resources
        self.closed = False

    @property
    def person_entity(self) -> str | None:
        return self._person_entity

    @property
    def retention(self) -> float | None:
        return None  # a list forgets nothing: no gap can open

    @property
    def resync(self) -> str:
        return "manual"

    def probe(self) -> str:
        return f"{len(self.events)} events in memory"

    def _window(self, cursor: Cursor | None, bounds: Bounds) -> range:
        # ``since`` and ``until`` are positions, both kept (``backfill --since/--until``).
        start = max(cursor.position if cursor else 0, int(bounds.since or 1) - 1)
        end = min(len(self.events), int(bounds.until)) if bounds.until else len(self.events)
        return range(start + 1, end + 1)

    def pending(self, cursor: Cursor | None, bounds: Bounds) -> int | None:
        return len(self._window(cursor, bounds))

    def pages(self, cursor: Cursor | None, bounds: Bounds) -> Iterator[RawPage]:
        positions = self._window(cursor, bounds)
        for first in range(0, len(positions), self.page_size):
            chunk = positions[first : first + self.page_size]
            events = [RawEvent(str(p), p, self.events[p - 1]) for p in chunk]
            yield RawPage(events, Cursor(str(chunk[-1]), chunk[-1]))

    def normalize(self, raw: RawEvent) -> Change:
        body = raw.body
        if not isinstance(body, Mapping):
            raise InvalidEventError(f"event {raw.event_id}: not an object")
        entity, op = body.get("entity"), body.get("op")
        if not isinstance(entity, str) or not entity:
            raise InvalidEventError(f"event {raw.event_id}: no entity")
        if op not in _OPS:
            raise InvalidEventError(f"event {raw.event_id}: op {op!r} is not one of {sorted(_OPS)}")
        entity_id = body.get("entity_id")
        return Change(
            event_id=raw.event_id,
            position=raw.position,
            type=str(body.get("type") or f"{entity}.{op}"),
            entity=entity,
            entity_id=None if entity_id is None else str(entity_id),
            op=cast(Op, op),
            occurred_at=body.get("occurred_at"),
            payload=dict(body),
            data=body.get("data"),
            person_id=body.get("person_id"),
            record=bool(body.get("record", True)),
            refresh=tuple(
                Ref(str(e), str(i), body.get("person_id")) for e, i in body.get("refresh", ())
            ),
        )

    def close(self) -> None:
        self.closed = True


@dataclass
class MemoryRefresher:
    """Resources upstream has now, by (entity, id), as a notification feed's
    refresh reads them; one it does not hold answers as gone (a 404).
    ``reads`` lists every read, in order; ``purges`` the purge list's pages."""

    resources: dict[tuple[str, str], Refreshed] = field(default_factory=dict)
    purges: list[list[Refreshed]] = field(default_factory=list)
    purge_interval: float | None = None
    outlives_person: tuple[str, ...] = ()
    reads: list[Ref] = field(default_factory=list)

    def put(
        self,
        entity: str,
        id_: str,
        data: dict[str, Any],
        person_id: str | None = None,
        children: Mapping[str, Sequence[tuple[str, dict[str, Any]]]] | None = None,
    ) -> None:
        """``entity`` ``id_`` is ``data`` now; ``children``: its collections read in
        full, by child kind, each child (id, data)."""
        records = [(entity, SnapshotObject(id_, data, person_id))]
        for kind, items in (children or {}).items():
            records += [(kind, SnapshotObject(i, d, person_id, id_)) for i, d in items]
        ref = Ref(entity, id_, person_id)
        self.resources[(entity, id_)] = Refreshed(ref, tuple(records), tuple(children or ()))

    def remove(self, entity: str, id_: str) -> None:
        self.resources.pop((entity, id_), None)

    def refresh(self, refs: Sequence[Ref]) -> Iterator[Refreshed]:
        for ref in refs:
            self.reads.append(ref)
            yield self.resources.get((ref.entity, ref.id), Refreshed(ref, gone=True))

    def purged(self) -> Iterator[list[Refreshed]]:
        yield from self.purges


@dataclass
class MemorySnapshot:
    """A ``MemorySource``'s current ``objects``, one page per entity kind, as a
    list endpoint would serve them; the stream resumes after the feed's head."""

    source: MemorySource
    objects: Mapping[str, Sequence[SnapshotObject]]

    @property
    def snapshot_entities(self) -> tuple[str, ...]:
        return tuple(self.objects)

    def head(self) -> str | None:
        return str(len(self.source.events)) if self.source.events else None

    def after_snapshot(self, head: str | None, base: int) -> Cursor:
        position = max(int(head), base) if head else base
        return Cursor(str(position), position)

    def snapshot(self, resume: str | None = None) -> Iterator[SnapshotPage]:
        kinds = list(self.objects)
        start = len(kinds) if resume == SNAPSHOT_DONE else 0
        if resume is not None and resume in kinds:
            start = kinds.index(resume)
        for index, entity in enumerate(kinds[start:], start):
            following = kinds[index + 1] if index + 1 < len(kinds) else SNAPSHOT_DONE
            yield SnapshotPage(entity, list(self.objects[entity]), resume=following)


@dataclass
class MemorySink:
    """Keeps each signal once by id, as a real sink is idempotent per signal id.

    ``failures``: errors to raise, one per send, before sends succeed again
    (a ``RetriableError`` to see a retry, any other ``EdsyncError`` a refusal).
    """

    name: str = "memory"
    received: dict[str, Signal] = field(default_factory=dict)
    failures: list[EdsyncError] = field(default_factory=list)
    attempts: int = 0
    closed: bool = False

    def send(self, signal: Signal) -> None:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        self.received.setdefault(signal.id, signal)

    def close(self) -> None:
        self.closed = True


if TYPE_CHECKING:
    # mypy checks here that the doubles still satisfy the protocols they stand in for.
    _SOURCE: Source = MemorySource()
    _SNAPSHOTTER: Snapshotter = MemorySnapshot(MemorySource(), {})
    _SINK: Sink = MemorySink()
