"""The domain's types, in one leaf module: what a feed sends (``RawEvent``,
``RawPage``, JSON kept as sent: ``RawJson``), where it was applied up to
(``Cursor``), a drain's ``Bounds``, a snapshot's objects, a normalized
``Change`` or a ``Quarantined`` event, and the ``Signal`` a sink is handed.
Frozen values; nothing here imports the rest of edsync."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

Op = Literal["created", "updated", "deleted", "forgotten"]
UNKNOWN_ENTITY = "unknown"


@dataclass(frozen=True, slots=True)
class Ref:
    """A resource upstream, by the vendor's own id: what a refresh reads.
    ``person_id``: the person it belongs to, where the event said so."""

    entity: str
    id: str
    person_id: str | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """One feed event, normalized. An event of a name its kind does not know
    is a Change too, with no ``entity_id`` and no ``op``: it reaches the ledger
    (applied) and touches no record. An event that could not be normalized is
    a ``Quarantined``, not a Change.
    """

    event_id: str
    position: int
    type: str
    entity: str
    entity_id: str | None
    op: Op | None
    occurred_at: str | None
    payload: Any
    data: Mapping[str, Any] | None = None
    status: str | None = None
    person_id: str | None = None
    revive: bool = False
    record: bool = True
    refresh: tuple[Ref, ...] = ()

    @property
    def touches_record(self) -> bool:
        """Whether the event itself writes its entity's record. A feed whose
        events are notifications (``record=False``: DreamApply's journal) has
        its records written by the refresh of what they name (``refresh``)."""
        return self.record and self.op is not None and self.entity_id is not None


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A feed event that could not be normalized, and why (``reason``).

    It still reaches the ledger (status quarantined), never dropped, and
    touches no record; ``edsync quarantine retry`` normalizes it again. The
    optional fields are what was known of it before it failed.
    """

    event_id: str
    position: int
    type: str
    entity: str
    payload: Any
    reason: str
    entity_id: str | None = None
    op: Op | None = None
    occurred_at: str | None = None
    person_id: str | None = None

    @property
    def touches_record(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class RawJson:
    """A JSON value kept as the text the feed sent: stored as it came, and
    parsed only where something needs all of it (``json_value``). A large
    expanded event built as Python objects, only to be written out again and
    freed, cost more than the rest of normalizing it (issue 23)."""

    text: str


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A feed item that is valid JSON no parser here reads (nested past its
    depth), isolated on a page of its own: ``text`` as it came, ``reason``, and
    its ``id`` where one could be read from the text. It is quarantined, its
    payload the text as a JSON string (a string nests nowhere: every database
    stores it and reads it back)."""

    text: str
    reason: str
    id: str | None = None


def json_value(value: Any) -> Any:
    """``value`` itself, or the value a ``RawJson`` holds, parsed."""
    if isinstance(value, RawJson):
        return parse_json(value.text)
    return value


def dump_json(value: Any) -> str:
    """``value`` as JSON text; an integer past 64 bits (JSON allows one,
    orjson refuses it) is written as the standard library writes it."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def parse_json(text: str | bytes) -> Any:
    """A JSON text's value, also where orjson refuses a valid one (SPEC 5.3):
    ``parse_refused``. The fast parser first: a valid text costs nothing more."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return parse_refused(text)


def parse_refused(text: str | bytes) -> Any:
    """A JSON text orjson refused, read as valid JSON where it is: a lone
    surrogate escape as U+FFFD (no value edsync builds holds a surrogate,
    which neither orjson nor a database would write), a number past a
    double's range as the standard library reads it (1e400: inf).

    Not JSON raises ValueError (``json.JSONDecodeError``, ``UnicodeDecodeError``:
    JSON on the wire is UTF-8, never guessed); nesting past the standard
    library's depth, RecursionError (``jsontext`` tells that from truncation).
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    fixed = without_lone_surrogates(text)
    if fixed is not text:
        try:
            return orjson.loads(fixed)
        except orjson.JSONDecodeError:
            pass  # not only surrogates: the standard library says what else
    return json.loads(fixed, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are JavaScript, not JSON; orjson refuses them too.
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


# Every escape, left to right, so an escaped backslash is consumed whole and
# never taken for the start of another escape; a surrogate pair first, so
# that only a lone half matches the 6-character form.
_ESCAPE = re.compile(
    r"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    r"|u[dD][89a-fA-F][0-9a-fA-F]{2}|.)",
    re.DOTALL,
)
_REPLACEMENT = "\\ufffd"  # U+FFFD as an escape: as long as the one it replaces


def _replace_lone(match: re.Match[str]) -> str:
    escape = match.group()
    return _REPLACEMENT if len(escape) == 6 else escape


def without_lone_surrogates(text: str) -> str:
    """A JSON ``text`` with each lone surrogate escape (``\\ud83d``) replaced by
    ``\\ufffd``: the same length, so an offset into one is an offset into the
    other; ``text`` itself when it holds none."""
    if "\\u" not in text:
        return text
    fixed, count = _ESCAPE.subn(_replace_lone, text)
    return text if count == 0 or fixed == text else fixed


@dataclass(frozen=True, slots=True)
class RawEvent:
    """An event as the feed sent it, with its place in the feed: ``body`` is
    its parsed value, or a ``RawJson``."""

    event_id: str
    position: int
    body: Any


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a feed was last applied up to: the stored text and its position."""

    value: str
    position: int


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
    """A resource's current state. ``parent_id``: the resource it belongs to
    (an application's offer, task, reference or document), so a child that
    left its parent's collection can be found and marked deleted."""

    entity_id: str
    data: dict[str, Any]
    person_id: str | None = None
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class Queued:
    """A resource waiting to be read again: the newest event that named it
    (its ``position``, and its time, ``changed_at``)."""

    ref: Ref
    position: int
    changed_at: str | None = None


@dataclass(frozen=True, slots=True)
class Refreshed:
    """What one read of a queued resource found (``ref``).

    ``records``: the resource and the children it embeds, each (entity,
    object). ``complete``: child kinds read in full, so a child of such a kind
    that is not in ``records`` left its parent and is marked deleted.
    ``gone``: upstream answered that the resource no longer exists.
    """

    ref: Ref
    records: tuple[tuple[str, SnapshotObject], ...] = ()
    complete: tuple[str, ...] = ()
    gone: bool = False
    forgotten: bool = False  # gone at the person's request (a purge says so)


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
    an event id of the feed, or an ISO 8601 time (``normalize.bound_time``
    tells them apart)."""

    since: str | None = None
    until: str | None = None


@dataclass(frozen=True, slots=True)
class Signal:
    """An outbox row, as the publisher hands it to a sink."""

    id: str
    rule: str
    source: str
    event_id: str
    entity: str
    entity_id: str | None
    occurred_at: str | None
    data: dict[str, Any]

    @property
    def event_type(self) -> str:
        return str(self.data.get("event_type") or self.rule)

    @property
    def member(self) -> str | None:
        member = self.data.get("member")
        return member if isinstance(member, str) else None

    @property
    def member_from(self) -> Mapping[str, Any] | None:
        """Where the member is read when the signal is delivered (the person's
        record in the mirror: ``entity``, ``id``, ``path``), or None when the
        signal carries its member (or has none) itself."""
        ref = self.data.get("member_from")
        return ref if isinstance(ref, Mapping) else None

    def with_member(self, member: str) -> Signal:
        """The signal as a sink gets it, its member read from the mirror."""
        data = {**self.data, "member": member}
        return Signal(
            self.id,
            self.rule,
            self.source,
            self.event_id,
            self.entity,
            self.entity_id,
            self.occurred_at,
            data,
        )

    @property
    def change(self) -> dict[str, Any]:
        change = self.data.get("change")
        return change if isinstance(change, dict) else {}
