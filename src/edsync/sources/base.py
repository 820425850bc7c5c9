"""The one small interface every feed kind implements."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from edsync.normalize import Change, Cursor, RawEvent


@dataclass(frozen=True, slots=True)
class RawPage:
    """One page as fetched, and the cursor to store once it is applied.

    ``fetch_seconds`` / ``parse_seconds``: time on the wire and parsing it.
    """

    events: list[RawEvent]
    cursor: Cursor
    fetch_seconds: float = 0.0
    parse_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class SnapshotObject:
    entity_id: str
    data: dict[str, Any]
    person_id: str | None = None


@dataclass(frozen=True, slots=True)
class SnapshotPage:
    """Current objects of one entity kind, as a list endpoint pages them.

    ``resume``: the token to pass to ``snapshot`` to go on after this page (a
    run cut short resumes there). ``deleted``: the objects are gone upstream
    (purged): tombstones, not current state.
    """

    entity: str
    objects: list[SnapshotObject]
    resume: str | None = None
    deleted: bool = False


SNAPSHOT_DONE = "done"
"""The resume token after a snapshot's last page: nothing is left to read."""


@dataclass(frozen=True, slots=True)
class Bounds:
    """Optional limits of a drain (``backfill --since/--until``), both inclusive:
    an event id of the feed, or an ISO 8601 time (``bound_time`` tells them apart)."""

    since: str | None = None
    until: str | None = None


_DIGITS = "0123456789"


def bound_time(value: str) -> float | None:
    """A ``--since``/``--until`` value as a time (Unix seconds), or None when it
    is an event id.

    One rule for every kind, DreamApply's (its server reads ``bySince`` /
    ``byUntil`` so): ASCII digits are an event id; so is anything that is not
    an ISO 8601 date or date-time (an Edlink UUID). A time without an offset is UTC.
    """
    text = value.strip()
    if not text or all(c in _DIGITS for c in text):
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    try:
        return moment.timestamp()
    except (OverflowError, ValueError):  # pragma: no cover - years 1 and 9999 at the edges
        return None


class Source(Protocol):
    """A change feed.

    ``pages`` is a lazy iterator: the caller applies (and commits) each page
    before asking for the next, so a crash never leaves the cursor past
    anything uncommitted. The source keeps no cursor of its own.
    """

    name: str

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
    def can_snapshot(self) -> bool:
        """Whether ``snapshot`` and ``head`` bootstrap a mirror (SPEC 2.2)."""
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

    @property
    def snapshot_entities(self) -> tuple[str, ...]: ...

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
