"""The one small interface every feed kind implements (``Source``), and the
optional one a kind that can snapshot offers beside it (``Snapshotter``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from edsync.model import Bounds, Change, Cursor, RawEvent, RawPage, Ref, Refreshed, SnapshotPage


class Snapshotter(Protocol):
    """What a source kind that can snapshot provides: its current objects, and
    where its stream resumes after them. Optional, as a kind declares it
    (``Source.snapshotter``), instead of every kind stubbing it."""

    @property
    def snapshot_entities(self) -> tuple[str, ...]:
        """The entity kinds ``snapshot`` reads, in order."""
        ...

    def head(self) -> str | None:
        """The newest event id upstream now: where to stream from after a snapshot."""
        ...

    def after_snapshot(self, head: str | None, base: int) -> Cursor:
        """The cursor to stream from after a snapshot noted at ``head``; ``base`` is
        the position the feed had reached before it."""
        ...

    def snapshot(self, resume: str | None = None) -> Iterator[SnapshotPage]:
        """Every current object, kind by kind (``snapshot_entities`` lists them),
        from the start or from a page's ``resume`` token."""
        ...


class Refresher(Protocol):
    """What a kind whose events are notifications provides (SPEC 2.1): its
    records are read from the resources the events name (``Change.refresh``),
    and deletions it makes without an event come from a list of purges."""

    @property
    def purge_interval(self) -> float | None:
        """Seconds between two reads of the purges in steady state (None: never)."""
        ...

    @property
    def outlives_person(self) -> tuple[str, ...]:
        """Record kinds upstream keeps, detached and scrubbed, when it deletes
        the person they name."""
        ...

    def refresh(self, refs: Sequence[Ref]) -> Iterator[Refreshed]:
        """Each resource of ``refs`` as upstream has it now, one result each, in order."""
        ...

    def purged(self) -> Iterator[list[Refreshed]]:
        """Every purge upstream lists, a page at a time, as deletions."""
        ...


class Source(Protocol):
    """A change feed.

    ``pages`` is a lazy iterator: the caller applies (and commits) each page
    before asking for the next, so a crash never leaves the cursor past
    anything uncommitted. The source keeps no cursor of its own.
    """

    name: str
    kind: str  # the feed kind (its key in the registry): which views its records have

    @property
    def person_entity(self) -> str | None:
        """The entity whose records hold a person's data (for erasure), if any."""
        ...

    @property
    def retention(self) -> float | None:
        """Seconds upstream keeps events; a checkpoint older than this is a gap."""
        ...

    @property
    def resync(self) -> str:
        """On a gap, "auto" re-runs the snapshot; "manual" stops the source until --reset."""
        ...

    @property
    def snapshotter(self) -> Snapshotter | None:
        """How the kind bootstraps a mirror from its current objects (SPEC 2.2),
        or None if it cannot: then a new mirror starts from the feed alone and
        a gap waits for ``--reset``."""
        ...

    @property
    def refresher(self) -> Refresher | None:
        """How the kind reads its records from the resources its events name,
        or None when its events carry the objects themselves."""
        ...

    def probe(self) -> str:
        """One request with the credentials, no retries, no writes: for ``check``."""
        ...

    def pending(self, cursor: Cursor | None, bounds: Bounds) -> int | None:
        """Events after ``cursor`` upstream, or None if the feed cannot tell."""
        ...

    def pages(self, cursor: Cursor | None, bounds: Bounds) -> Iterator[RawPage]:
        """Pages after ``cursor``, oldest first, until the feed is drained."""
        ...

    def normalize(self, raw: RawEvent) -> Change:
        """Map one raw event; raise InvalidEventError if it cannot be."""
        ...

    def close(self) -> None: ...
