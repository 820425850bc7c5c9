"""The ledger: one page of changes folded in memory and written in one
transaction (SPEC 1, invariants of SPEC 4).

Per page: one query for the ledger ids already seen, one per entity kind for
the records touched, then batched inserts/upserts and the checkpoint. The
fold over the page happens in memory, so the cost per event is a few dict
operations, not a round trip.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import structlog
from sqlalchemy import Connection, Engine

from edsync.kinds import NO_RECORDS, Records
from edsync.mirror import checkpoints, maintenance, queue
from edsync.mirror.db import WRITE
from edsync.mirror.erasure import SIGNAL_KEEP, erase_person, scrubbed_record
from edsync.mirror.errors import transient_failures
from edsync.mirror.maintenance import ANALYZE_EVERY, NUL_ESCAPE, analyze_grown_tables, without_nul
from edsync.mirror.outbox import insert_signals, signal_data
from edsync.mirror.sql import (
    Into,
    adapt,
    dumps,
    insert_rows,
    placeholders,
    select_rows,
)
from edsync.model import Change, Cursor, Quarantined, json_value
from edsync.normalize import advance
from edsync.rules import Rule, signal_id

log = structlog.get_logger("edsync.mirror")

APPLIED = "applied"
STALE = "stale"
QUARANTINED = "quarantined"
UNKNOWN_NAME = "unknown event name"
CHUNK = 500  # bound on IN-list parameters per query

Key = tuple[str, str]

_RECORD_COLUMNS = ("entity_id", "data:json", "deleted", "version", "person_id")


@dataclass(slots=True)
class RecordState:
    data: dict[str, Any]
    deleted: bool
    version: int
    person_id: str | None
    exists: bool = True

    @property
    def forgotten(self) -> bool:
        return bool(self.data.get("forgotten"))


@dataclass(frozen=True, slots=True)
class PageResult:
    cursor: Cursor
    received: int
    applied: int = 0
    stale: int = 0
    quarantined: int = 0
    duplicates: int = 0
    fold_seconds: float = 0.0  # the page's fold in Python; the rest of its apply is SQL


@dataclass(slots=True)
class _Fold:
    """What a page does to the mirror, computed before anything is written."""

    states: dict[Key, RecordState]
    event_rows: list[tuple[Any, ...]] = field(default_factory=list)
    dirty: dict[Key, Change] = field(default_factory=dict)
    forgotten: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    signal_rows: list[tuple[Any, ...]] = field(default_factory=list)
    delivery_rows: list[tuple[Any, ...]] = field(default_factory=list)
    # Resources the page's events named, to read again.
    queue: queue.Pending = field(default_factory=dict)


def next_state(
    prev: RecordState | None, change: Change, *, records: Records, is_person: bool = False
) -> RecordState:
    """A record after ``change``; the caller has checked it is not stale.

    ``records``: the kind's (what an erasure keeps); ``is_person``: the record
    is the person's own (erasure also deletes it).
    """
    data = dict(change.data or {})
    if change.status is not None:
        data["status"] = change.status
    elif prev is not None and "status" in prev.data and "status" not in data:
        # The status an event name carried stays until another name changes it.
        data["status"] = prev.data["status"]
    if change.op == "created" or change.revive:
        deleted = False
    elif change.op == "deleted":
        deleted = True
    else:
        deleted = prev.deleted if prev is not None else False
    person_id = change.person_id or (prev.person_id if prev is not None else None)
    state = RecordState(data, deleted, change.position, person_id)
    if change.op == "forgotten":
        kept = prev.data if prev is not None else {}
        state.data = scrubbed_record({**kept, **data}, is_person=is_person, records=records)
        state.deleted = True
    elif is_person and prev is not None and prev.forgotten:
        # Erasure is for good: a later event about the person cannot bring data
        # back. (Records *about* them are scrubbed by their owner in ``_write``.)
        state.data = scrubbed_record(data, is_person=True, records=records)
        state.deleted = True
    return state


class Ledger:
    """Writes pages of one source's changes into the mirror: ledger, records,
    signals and checkpoint."""

    def __init__(
        self,
        engine: Engine,
        source: str,
        person_entity: str | None,
        rules: Sequence[Rule] = (),
        *,
        records: Records = NO_RECORDS,
        outlives_person: Sequence[str] = (),
    ) -> None:
        """``outlives_person``: record kinds upstream keeps, scrubbed, when it
        deletes the person they name (DreamApply's invoices)."""
        self.engine = engine
        self.outlives_person = tuple(outlives_person)
        self.writer = engine.execution_options(**{WRITE: True})
        self.source = source
        self.person_entity = person_entity
        self.typed = records
        self.rules = [rule for rule in rules if rule.source == source]
        self._pages = 0
        self._jsonb = engine.dialect.name == "postgresql"  # see maintenance.jsonb_storable

    def apply(
        self, changes: Sequence[Change | Quarantined], cursor: Cursor, *, ledgered: int = 0
    ) -> PageResult:
        """Ledger, records, erasures and checkpoint of one page, atomically.

        ``ledgered``: events of the page left out because the ledger holds them.
        """
        # Locked, read-only, full, or a concurrent writer got there first:
        # nothing is committed, the cursor does not move, and the next
        # attempt starts again from the same page.
        with self.transaction() as conn:
            result = self._apply(conn, changes, cursor)
        self._pages += 1
        if self._pages % ANALYZE_EVERY == 0 and self.engine.dialect.name == "postgresql":
            analyze_grown_tables(self.engine)
        if ledgered:
            result = replace(
                result,
                received=result.received + ledgered,
                duplicates=result.duplicates + ledgered,
            )
        return result

    def ledgered(self, event_ids: Sequence[str]) -> set[str]:
        """The ids the ledger already holds (a read outside any page transaction:
        once ledgered, an event stays ledgered)."""
        with self.engine.connect() as conn:
            return _ledgered(conn, self.source, event_ids)

    def reapply(self, changes: Sequence[Change | Quarantined]) -> PageResult:
        """Apply ledgered (quarantined) events again, in the order given.

        The ledger rows exist, so they are updated, not inserted; the cursor
        and events_total stay; a record newer than an event is not regressed
        (the event turns ``stale``).
        """
        with self.transaction() as conn:
            now = checkpoints.now_iso()
            fold = _Fold(self._load_states(conn, changes))
            for change in changes:
                self._fold_one(fold, change, now)
            self._write(conn, fold, now, ledger=_UPDATE_EVENT)
            counts = fold.counts
            return PageResult(
                cursor=Cursor("", -1),
                received=len(changes),
                applied=counts[APPLIED],
                stale=counts[STALE],
                quarantined=counts[QUARANTINED],
            )

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction. Its failures are ``MirrorError``: a transient
        one (locked, full, read-only, a concurrent writer) a
        ``RetriableMirrorError`` saying "not written", nothing of it committed."""
        with transient_failures("not written"), self.writer.begin() as conn:
            yield conn

    def _apply(
        self, conn: Connection, changes: Sequence[Change | Quarantined], cursor: Cursor
    ) -> PageResult:
        # The checkpoint row lock fences concurrent writers of one source: the
        # second waits, then finds the page applied or its cursor behind.
        current = checkpoints.read(conn, self.source, for_update=True)
        cursor = advance(current.cursor if current else None, cursor)
        now = checkpoints.now_iso()
        fresh = self._not_ledgered(conn, changes)
        fold = _Fold(self._load_states(conn, fresh))
        started = time.perf_counter()
        for change in fresh:
            self._fold_one(fold, change, now)
        folded = time.perf_counter() - started
        self._write(conn, fold, now)
        checkpoints.write_advance(conn, self.source, cursor, len(fold.event_rows), now)
        counts = fold.counts
        return PageResult(
            cursor=cursor,
            received=len(changes),
            applied=counts[APPLIED],
            stale=counts[STALE],
            quarantined=counts[QUARANTINED],
            duplicates=len(changes) - len(fresh),
            fold_seconds=folded,
        )

    def _not_ledgered(
        self, conn: Connection, changes: Sequence[Change | Quarantined]
    ) -> list[Change | Quarantined]:
        """Changes not yet in the ledger (replays are no-ops), first copy only."""
        seen = _ledgered(conn, self.source, [c.event_id for c in changes])
        fresh = []
        for change in changes:
            if change.event_id not in seen:
                seen.add(change.event_id)
                fresh.append(change)
        return fresh

    def _load_states(
        self, conn: Connection, changes: Iterable[Change | Quarantined]
    ) -> dict[Key, RecordState]:
        wanted: dict[str, set[str]] = defaultdict(set)
        for change in changes:
            if isinstance(change, Change) and change.touches_record and change.entity_id:
                wanted[change.entity].add(change.entity_id)
            if change.person_id is not None and self.person_entity is not None:
                wanted[self.person_entity].add(change.person_id)
        states: dict[Key, RecordState] = {}
        for entity, ids in wanted.items():
            states.update(self._load_records(conn, entity, ids))
        if self.person_entity is not None:
            # A record keeps naming its person when an event does not: that
            # person's erasure must still apply to it.
            owners = {
                state.person_id
                for state in states.values()
                if state.person_id is not None
                and (self.person_entity, state.person_id) not in states
            }
            if owners:
                states.update(self._load_records(conn, self.person_entity, owners))
        return states

    def _load_records(
        self, conn: Connection, entity: str, ids: Iterable[str]
    ) -> dict[Key, RecordState]:
        states: dict[Key, RecordState] = {}
        for chunk in _chunks(sorted(ids)):
            where, params = _key_in(conn, "source = ? AND entity = ?", "entity_id", chunk)
            rows = select_rows(
                conn, "records", _RECORD_COLUMNS, where, (self.source, entity, *params)
            )
            for entity_id, data, deleted, version, person_id in rows:
                states[(entity, entity_id)] = RecordState(
                    data, bool(deleted), int(version), person_id
                )
        return states

    def _fold_one(self, fold: _Fold, change: Change | Quarantined, now: str) -> None:
        if isinstance(change, Change) and change.refresh:
            # Before a repair may quarantine it: what it names is read all the same.
            queue.add(fold.queue, change)
        payload_json = dumps(change.payload)
        if NUL_ESCAPE in payload_json:  # rare: the exact check only then
            change = without_nul(change)
            payload_json = dumps(change.payload)
        if self._jsonb:  # JSONB refuses a lone surrogate escape SQLite keeps as sent
            payload_json = maintenance.jsonb_storable(payload_json)
        status, reason = APPLIED, None
        if isinstance(change, Quarantined):
            status, reason = QUARANTINED, change.reason
        elif change.op is None or (change.record and change.entity_id is None):
            reason = UNKNOWN_NAME
        if isinstance(change, Change) and change.touches_record:
            key = (change.entity, str(change.entity_id))
            prev = fold.states.get(key)
            if prev is not None and change.position <= prev.version:
                status = STALE
                if change.op == "forgotten" and change.entity == self.person_entity:
                    # An erasure request is honoured even when it arrives late.
                    fold.forgotten.add(key[1])
            else:
                fold.states[key] = next_state(
                    prev,
                    change,
                    records=self.typed,
                    is_person=change.entity == self.person_entity,
                )
                fold.dirty[key] = change
                if change.op == "forgotten" and change.entity == self.person_entity:
                    fold.forgotten.add(key[1])
        fold.counts[status] += 1
        forgotten = self._person_forgotten(fold, change.person_id)
        if forgotten:
            payload_json = dumps(self.typed.scrub(json_value(change.payload)))
        if status == APPLIED and self.rules and isinstance(change, Change):
            self._raise_signals(fold, change, now, forgotten=forgotten)
        fold.event_rows.append(
            (
                self.source,
                change.event_id,
                change.position,
                change.type,
                change.entity,
                change.entity_id,
                change.op,
                change.occurred_at,
                payload_json,
                status,
                reason,
                change.person_id,
                now,
            )
        )

    def _raise_signals(self, fold: _Fold, change: Change, now: str, *, forgotten: bool) -> None:
        """Signals go to the outbox in the page's transaction (SPEC 3)."""
        for rule in self.rules:
            if not rule.matches(change):
                continue
            sid = signal_id(rule.name, self.source, change.event_id)
            data = signal_data(rule, self.source, change, person_entity=self.person_entity)
            fold.signal_rows.append(
                (
                    sid,
                    rule.name,
                    self.source,
                    change.event_id,
                    change.entity,
                    change.entity_id,
                    change.occurred_at,
                    dumps(self.typed.scrub(data, SIGNAL_KEEP) if forgotten else data),
                    change.person_id,
                    now,
                )
            )
            fold.delivery_rows.extend((sid, sink, "pending", 0, now) for sink in rule.publish)

    def _person_forgotten(self, fold: _Fold, person_id: str | None) -> bool:
        if person_id is None or self.person_entity is None:
            return False
        if person_id in fold.forgotten:
            return True
        state = fold.states.get((self.person_entity, person_id))
        return state is not None and state.forgotten

    def _write(self, conn: Connection, fold: _Fold, now: str, ledger: str | None = None) -> None:
        if fold.event_rows:
            if ledger is None:
                insert_rows(conn, _INSERT_EVENT, fold.event_rows)
            else:
                # Same columns as the insert, keyed by (source, event_id) instead.
                rows = [(*row[3:], row[0], row[1]) for row in fold.event_rows]
                conn.exec_driver_sql(adapt(conn, ledger), rows)
        if fold.dirty:
            rows = []
            for key, change in fold.dirty.items():
                state = fold.states[key]
                if self._person_forgotten(fold, state.person_id):
                    is_person = key[0] == self.person_entity
                    state.data = scrubbed_record(
                        state.data, is_person=is_person, records=self.typed
                    )
                    state.deleted = state.deleted or is_person
                rows.append(
                    (
                        self.source,
                        key[0],
                        key[1],
                        dumps(state.data),
                        self.typed(key[0], state.data),
                        state.deleted,
                        state.version,
                        change.event_id,
                        state.person_id,
                        now,
                        change.occurred_at,
                        now,
                    )
                )
            insert_rows(conn, _INSERT_RECORD, rows, _ON_RECORD_CONFLICT)
        if fold.signal_rows:
            insert_signals(conn, fold.signal_rows, fold.delivery_rows)
        if fold.queue:
            queue.write(conn, self.source, fold.queue, now)
        for person_id in sorted(fold.forgotten):
            erase_person(conn, self.source, self.person_entity, person_id, self.typed)


_INSERT_EVENT = Into(
    "events",
    (
        "source",
        "event_id",
        "position",
        "type",
        "entity",
        "entity_id",
        "op",
        "occurred_at",
        "payload",
        "status",
        "reason",
        "person_id",
        "applied_at",
    ),
)

_UPDATE_EVENT = """
UPDATE events SET type = ?, entity = ?, entity_id = ?, op = ?, occurred_at = ?, payload = ?,
                  status = ?, reason = ?, person_id = ?, applied_at = ?
WHERE source = ? AND event_id = ?
"""

RECORD_ROW = (
    "source",
    "entity",
    "entity_id",
    "data",
    "typed",
    "deleted",
    "version",
    "last_event_id",
    "person_id",
    "first_seen_at",
    "changed_at",
    "synced_at",
)
_INSERT_RECORD = Into("records", RECORD_ROW)

_ON_RECORD_CONFLICT = """
ON CONFLICT (source, entity, entity_id) DO UPDATE SET
    data = excluded.data,
    typed = excluded.typed,
    deleted = excluded.deleted,
    version = excluded.version,
    last_event_id = excluded.last_event_id,
    person_id = excluded.person_id,
    changed_at = excluded.changed_at,
    synced_at = excluded.synced_at
WHERE records.version < excluded.version
"""


def _ledgered(conn: Connection, source: str, event_ids: Sequence[str]) -> set[str]:
    seen: set[str] = set()
    for chunk in _chunks(event_ids):
        where, params = _key_in(conn, "source = ?", "event_id", chunk)
        seen.update(
            row[0] for row in select_rows(conn, "events", "event_id", where, (source, *params))
        )
    return seen


def _key_in(
    conn: Connection, prefix: str, column: str, values: Sequence[str]
) -> tuple[str, tuple[Any, ...]]:
    """``prefix AND column IN values``: one array parameter on PostgreSQL, where
    the generic plan of a long IN list drifted to scanning the whole source
    (a quadratic backfill) instead of using the key."""
    if conn.dialect.name == "postgresql":
        return f"{prefix} AND {column} = ANY(?)", (list(values),)
    return f"{prefix} AND {column} IN ({placeholders(len(values))})", tuple(values)


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]
