"""Draining one source: fetch a page, normalize it, apply it, repeat.

Data flows one way, source → normalize → apply; the committed checkpoint is
the only cursor, so stopping at any point and starting again is safe.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace

import structlog

from edsync import sources
from edsync.errors import AuthError, EdsyncError, FatalError, GapError
from edsync.mirror import Mirror, checkpoints
from edsync.mirror.apply import Applier
from edsync.mirror.ledger import PageResult
from edsync.model import Bounds, Change, Cursor, Quarantined, RawPage
from edsync.normalize import normalize_page
from edsync.rules import Rule
from edsync.run.prefetch import Prefetch
from edsync.run.refresh import Refreshing
from edsync.run.start import Bootstrap, Gap, plan_start
from edsync.sources.base import Refresher, Snapshotter, Source

log = structlog.get_logger("edsync.sync")

PREFETCH_PAGES = 2
"""Pages fetched and parsed ahead of the one being applied."""


class Progress:
    """Receives drain progress (a progress bar, metrics); does nothing by default."""

    def start(self, source: str, total: int | None) -> None:
        """``total``: events upstream after the cursor, when the feed can tell."""

    def advance(self, source: str, result: PageResult) -> None:
        """One page committed."""

    def snapshot(self, source: str, entity: str, objects: int) -> None:
        """One snapshot page committed: ``objects`` current records of ``entity``."""

    def refresh(self, source: str, resources: int, queued: int | None = None) -> None:
        """``resources`` read again and committed; ``queued``: how many wait, if known."""


@dataclass(slots=True)
class Stages:
    """Seconds spent in each stage of a drain. Fetch and parse run in the
    prefetch thread while pages are applied, so they overlap the rest. The
    apply is the fold (Python, per event) and the SQL: the page's reads, the
    building of its records' rows, its statements and its commit."""

    fetch: float = 0.0
    parse: float = 0.0
    normalize: float = 0.0
    apply: float = 0.0
    fold: float = 0.0
    refresh: float = 0.0  # reading again what the pages named, and its writes

    def per_event(self, events: int) -> dict[str, float]:
        """Microseconds per event by stage: the benchmark's breakdown."""
        scale = 1e6 / max(events, 1)
        return {
            "fetch": round(self.fetch * scale, 2),
            "parse": round(self.parse * scale, 2),
            "normalize": round(self.normalize * scale, 2),
            "apply": round(self.apply * scale, 2),
            "fold": round(self.fold * scale, 2),
            "sql": round((self.apply - self.fold) * scale, 2),
        }


@dataclass(slots=True)
class DrainResult:
    source: str
    pages: int = 0
    received: int = 0
    applied: int = 0
    stale: int = 0
    quarantined: int = 0
    duplicates: int = 0
    cursor: Cursor | None = None
    stopped: bool = False
    pending: int | None = None  # upstream's count past the cursor when the drain began
    refreshed: int = 0  # resources read again (Source.refresher)
    purged: int = 0  # upstream purges newly applied
    stages: Stages = field(default_factory=Stages)

    @property
    def lag(self) -> int | None:
        """Events still upstream past the cursor, as far as the feed told us."""
        if self.pending is None:
            return None
        return max(0, self.pending - self.received)

    def add(self, page: PageResult) -> None:
        self.pages += 1
        self.received += page.received
        self.applied += page.applied
        self.stale += page.stale
        self.quarantined += page.quarantined
        self.duplicates += page.duplicates
        self.cursor = page.cursor


class InvalidEventStopError(FatalError):
    """``on_invalid = "stop"`` and an event could not be normalized."""


def drain(
    engine: Mirror,
    source: Source,
    *,
    bounds: Bounds | None = None,
    on_invalid: str = "quarantine",
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    gate: AbstractContextManager[object] | None = None,
    rules: Sequence[Rule] = (),
    clock: Callable[[], float] = time.perf_counter,
    prefetch: int = PREFETCH_PAGES,
) -> DrainResult:
    """Apply every page after the committed cursor; stop early when ``stop`` is set.

    ``gate`` is held while a page is applied, so a shutdown can wait for the
    page in flight to commit and then keep any other from starting.
    ``prefetch``: pages fetched ahead in a thread (0: one page at a time).
    """
    refresher = source.refresher
    run = _Run(
        source=source,
        applier=Applier(
            engine,
            source.name,
            source.person_entity,
            rules,
            records=sources.records(source.kind),
            outlives_person=refresher.outlives_person if refresher is not None else (),
        ),
        bounds=bounds or Bounds(),
        on_invalid=on_invalid,
        progress=progress or Progress(),
        stop=stop,
        gate=gate or nullcontext(),
        clock=clock,
        prefetch=prefetch,
    )
    try:
        cursor = _starting_cursor(run)
        run.result.cursor = cursor
        try:
            _stream(run, cursor)
        except EdsyncError as exc:
            # Refused credentials would refuse every read too.
            if refresher is not None and run.result.pages and not isinstance(exc, AuthError):
                _refresh_after_failure(run, refresher)
            raise
        if refresher is not None and not run.result.stopped:
            _refresh(run, refresher)
    except _SnapshotStopped:
        run.result.stopped = True  # its progress is committed: the next run resumes it
        return run.result
    checkpoints.record_success(engine, source.name, run.result.lag)
    return run.result


def _stream(run: _Run, cursor: Cursor | None) -> None:
    try:
        run.stream(cursor)
    except GapError as exc:
        # Resolve at most once per drain: a second gap right after a fresh
        # snapshot is not something to loop on.
        cursor = _resolve_gap(run, str(exc))
        run.result.cursor = cursor
        run.stream(cursor)


def _refresh_after_failure(run: _Run, refresher: Refresher) -> None:
    """The pages committed before the feed failed queued what they named: read
    it now, so a feed stuck on one page does not hold the records back too.
    The feed's failure is what the poll reports; the refresh's is logged."""
    try:
        _refresh(run, refresher)
    except EdsyncError as exc:
        log.warning("refresh_failed", source=run.source.name, error=str(exc))


def _refresh(run: _Run, refresher: Refresher) -> None:
    """Read again what the pages named, and upstream's purges when due."""
    name = run.source.name
    refreshing = Refreshing(
        run.applier,
        refresher,
        run.gate,
        run.stop,
        lambda count: run.progress.refresh(name, count),
    )
    started = run.clock()
    refreshing.purge_if_due()
    if not refreshing.drain_queue():
        run.result.stopped = True
    run.result.stages.refresh += run.clock() - started
    run.result.refreshed = refreshing.refreshed
    run.result.purged = refreshing.purged


class _SnapshotStopped(Exception):
    """A stop request arrived between two snapshot pages (never leaves ``drain``)."""


def _starting_cursor(run: _Run) -> Cursor | None:
    """The committed cursor, after a bootstrap or gap resync if one is due."""
    source, engine = run.source, run.applier.engine
    checkpoint = checkpoints.load(engine, source.name)
    start = plan_start(
        checkpoint.cursor if checkpoint else None,
        gap=checkpoint.gap if checkpoint else None,
        age=checkpoint.age(dt.datetime.now(dt.UTC)) if checkpoint else None,
        retention=source.retention,
        can_snapshot=source.snapshotter is not None,
    )
    if isinstance(start, Bootstrap):
        assert source.snapshotter is not None  # plan_start bootstraps only what can
        return bootstrap(run, source.snapshotter, start.reason)
    if isinstance(start, Gap):
        return _resolve_gap(run, start.reason)
    return start.cursor


def _resolve_gap(run: _Run, reason: str) -> Cursor:
    """Never skip silently: record the gap, then resync or stop (SPEC 2.2)."""
    source = run.source
    checkpoints.record_gap(run.applier.engine, source.name, reason)
    log.warning("gap_detected", source=source.name, gap=reason, resync=source.resync)
    if source.snapshotter is not None and source.resync == "auto":
        return bootstrap(run, source.snapshotter, f"resync after a gap: {reason}")
    raise GapError(
        f"source {source.name!r} has a gap: {reason}. It stays stopped until "
        f"`edsync backfill --source {source.name} --reset`"
    )


def bootstrap(run: _Run, snapshotter: Snapshotter, reason: str) -> Cursor:
    """Note the stream head, snapshot every list endpoint, then resume after the head.

    Changes made while the snapshot runs are in the stream after the noted
    head, so they are applied afterwards and none is lost; records the
    snapshot lacks are marked deleted. Each page commits with the snapshot's
    progress, so a snapshot cut short (a crash, or a stop request honoured
    between pages) resumes where it stopped.
    """
    source, applier = run.source, run.applier
    engine = applier.engine
    state = checkpoints.read_snapshot(engine, source.name)
    if state is None:
        state = _new_snapshot(source.name, snapshotter, applier, reason)
        log.info("snapshot_started", source=source.name, reason=reason)
    else:
        log.info("snapshot_resumed", source=source.name, reason=state.reason, at=state.resume)
    seen = 0
    for page in snapshotter.snapshot(state.resume):
        state = replace(state, resume=page.resume)
        with run.gate:
            seen += applier.apply_snapshot(page, state)
        entity, count = page.entity, len(page.objects)
        # Committed: let it go before the next page is fetched, so memory
        # holds one page, not two (issue 32: a million objects in constant RSS).
        del page
        run.progress.snapshot(source.name, entity, count)
        if run.stop is not None and run.stop.is_set():
            log.info("snapshot_paused", source=source.name, at=state.resume)
            raise _SnapshotStopped
    missing = applier.finish_snapshot(snapshotter.snapshot_entities, state.id, state.cursor)
    if source.refresher is not None:
        # The snapshot read the purges too: the next read is an interval away.
        checkpoints.record_purged(engine, source.name, dt.datetime.now(dt.UTC))
    log.info(
        "snapshot_done",
        source=source.name,
        records=seen,
        marked_deleted=missing,
        resume_after=state.cursor.value,
    )
    return state.cursor


def _new_snapshot(
    name: str, snapshotter: Snapshotter, applier: Applier, reason: str
) -> checkpoints.SnapshotProgress:
    checkpoint = checkpoints.load(applier.engine, name)
    base = checkpoint.cursor.position if checkpoint and checkpoint.cursor else 0
    if checkpoint is not None and checkpoint.cursor is None and checkpoint.events_total:
        base = checkpoints.last_position(applier.engine, name)
    cursor = snapshotter.after_snapshot(snapshotter.head(), base)
    return checkpoints.SnapshotProgress(uuid.uuid4().hex, reason, cursor.value, cursor.position)


@dataclass(slots=True)
class _Run:
    """One drain's collaborators, so the page loop reads as the flow it is."""

    source: Source
    applier: Applier
    bounds: Bounds
    on_invalid: str
    progress: Progress
    stop: threading.Event | None
    gate: AbstractContextManager[object]
    clock: Callable[[], float]
    prefetch: int = PREFETCH_PAGES
    replaying: bool = False
    result: DrainResult = field(init=False)

    def __post_init__(self) -> None:
        self.result = DrainResult(self.source.name)

    def stream(self, cursor: Cursor | None) -> None:
        source, result = self.source, self.result
        total = result.pending = source.pending(cursor, self.bounds)
        self.progress.start(source.name, total)
        if total == 0:
            return
        # Fetching and parsing run ahead in a thread, mostly waiting on the
        # network; normalizing and applying stay here, in feed order. (Moving
        # normalize there too measured slower: each statement's return to
        # Python then waits for that thread to give the GIL back.)
        with Prefetch(
            lambda: source.pages(cursor, self.bounds),
            depth=self.prefetch,
            stop=self.stop,
            name=f"edsync-fetch-{source.name}",
        ) as pages:
            for page in pages:
                bad = self._apply(page)
                if bad is not None:
                    raise InvalidEventStopError(
                        f"source {source.name!r} stopped at event {bad.event_id}: "
                        f'{bad.reason} (on_invalid = "stop"; fix it upstream or set '
                        'on_invalid = "quarantine")'
                    )
                if self.stop is not None and self.stop.is_set():
                    result.stopped = True
                    return

    def _apply(self, page: RawPage) -> Quarantined | None:
        """Normalize and apply one page; returns the event ``on_invalid = "stop"``
        stops at, the events before it applied."""
        stages, clock = self.result.stages, self.clock
        stages.fetch += page.fetch_seconds
        stages.parse += page.parse_seconds
        started = clock()
        page, ledgered = self._skip_ledgered(page)
        changes, cursor, bad = _cut(page, self.on_invalid, self.source)
        normalized = clock()
        stages.normalize += normalized - started
        # Nothing to apply, unless the page was all replays: its cursor still moves.
        if not changes and (bad is not None or not ledgered):
            return bad
        with self.gate:
            applied = self.applier.apply(changes, cursor, ledgered=ledgered)
        seconds = clock() - normalized
        stages.apply += seconds
        stages.fold += applied.fold_seconds
        # A page of replayed events makes the next one likely replayed too.
        self.replaying = applied.duplicates > 0
        self.result.add(applied)
        self.progress.advance(self.source.name, applied)
        _log_page(self.source.name, applied, seconds)
        return bad

    def _skip_ledgered(self, page: RawPage) -> tuple[RawPage, int]:
        """While replaying (after ``--reset``), drop events the ledger holds
        before normalizing them: a replay costs a lookup, not a normalize and fold."""
        if not self.replaying:
            return page, 0
        ledgered = self.applier.ledgered([raw.event_id for raw in page.events])
        if not ledgered:
            return page, 0
        fresh = [raw for raw in page.events if raw.event_id not in ledgered]
        skipped = len(page.events) - len(fresh)
        return RawPage(fresh, page.cursor, page.fetch_seconds, page.parse_seconds), skipped


def _cut(
    page: RawPage, on_invalid: str, source: Source
) -> tuple[list[Change | Quarantined], Cursor, Quarantined | None]:
    changes = normalize_page(page.events, source.normalize)
    if on_invalid != "stop":
        return changes, page.cursor, None
    for index, change in enumerate(changes):
        if isinstance(change, Quarantined):
            if index == 0:
                return [], page.cursor, change
            before = changes[index - 1]
            return changes[:index], Cursor(before.event_id, before.position), change
    return changes, page.cursor, None


def _log_page(source: str, page: PageResult, seconds: float) -> None:
    log.info(
        "page_applied",
        source=source,
        count=page.received,
        applied=page.applied,
        stale=page.stale,
        quarantined=page.quarantined,
        duplicates=page.duplicates,
        cursor=page.cursor.value,
        duration_ms=round(seconds * 1000, 1),
    )
