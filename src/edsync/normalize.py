"""Raw feed events become ``Change`` values (or ``Quarantined`` ones); each feed
kind supplies the mapping.

Everything here is pure: no I/O, no clocks. The apply engine consumes
``Change`` and ``Quarantined`` objects and never looks at a feed's wire format.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from edsync.errors import FatalError, InvalidEventError
from edsync.jsontext import NotJsonError, TooDeepError
from edsync.model import (
    UNKNOWN_ENTITY,
    Change,
    Cursor,
    Quarantined,
    RawEvent,
    Unreadable,
    json_value,
)


class CursorRegressionError(FatalError):
    """A page would move the cursor backwards: refuse rather than re-apply."""


def advance(current: Cursor | None, new: Cursor) -> Cursor:
    """The cursor after a page; never moves backwards."""
    if current is not None and new.position < current.position:
        raise CursorRegressionError(
            f"cursor would go back from {current.value} to {new.value}; refusing"
        )
    return new


class Normalizer(Protocol):
    """The per-kind mapping from a raw event to a Change."""

    def __call__(self, raw: RawEvent) -> Change: ...


def normalize_page(raws: Iterable[RawEvent], normalizer: Normalizer) -> list[Change | Quarantined]:
    """Normalize a page; an event that cannot be normalized is kept, as Quarantined."""
    changes: list[Change | Quarantined] = []
    for raw in raws:
        if isinstance(raw.body, Unreadable):
            # No kind can map what no parser reads: kept as its text, a JSON string.
            unread = RawEvent(raw.event_id, raw.position, raw.body.text)
            changes.append(quarantined(unread, raw.body.reason))
            continue
        try:
            changes.append(normalizer(raw))
        except InvalidEventError as exc:
            changes.append(quarantined(raw, str(exc), person_id=exc.person_id))
    return changes


def quarantined(
    raw: RawEvent, reason: str, entity: str = UNKNOWN_ENTITY, *, person_id: str | None = None
) -> Quarantined:
    body, value = raw.body, _readable(raw.body)
    name = value.get("event") or value.get("type") if isinstance(value, dict) else None
    return Quarantined(
        event_id=raw.event_id,
        position=raw.position,
        type=name if isinstance(name, str) else "",
        entity=entity,
        payload=body,
        reason=reason,
        person_id=person_id,
    )


def _readable(body: object) -> object:
    """``body``'s value, or None for a text no parser here reads: a quarantined
    event is kept whatever it holds."""
    try:
        return json_value(body)
    except (NotJsonError, TooDeepError):
        return None


def utc_timestamp(value: object) -> str:
    """An ISO 8601 timestamp in UTC, or InvalidEventError."""
    if not isinstance(value, str):
        raise InvalidEventError(f"timestamp missing or not a string: {value!r}")
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEventError(f"timestamp is not ISO 8601: {value!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    elif len(value) == _CANONICAL_LENGTH and value[10] == "T" and value.endswith("+00:00"):
        # Already what isoformat() would write (feeds mostly send this): the hot path.
        return value
    return when.astimezone(dt.UTC).isoformat()


_CANONICAL_LENGTH = len("2026-01-01T00:00:00+00:00")


# Keys that identify or date a thing but say nothing about a person.
_KEEP_KEYS = frozenset({"id", "event", "logged", "type", "date", "deleted", "bind"})

Keep = Callable[[str, str], bool]
"""Whether an erasure keeps the string ``value`` found under ``key``: an id
or a link names a thing and says nothing about the person. Each feed kind
has its own (``kinds.Records.ids``)."""


def keep_no_string(key: str, value: str) -> bool:
    """The rule of a kind that declares none: no string is kept."""
    return False


def scrub(value: Any, keep: Sequence[str] = (), ids: Keep = keep_no_string) -> Any:
    """Strip personal data from a JSON value, keeping ids, the strings the
    feed kind's ``ids`` keeps (its links), and what is under ``keep``.

    Used for the right to be forgotten: what is left says *that* something
    happened and to which ids, not to whom.
    """
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in _KEEP_KEYS or key in keep:
                out[key] = item if not isinstance(item, dict | list) else scrub(item, keep, ids)
            elif isinstance(item, dict | list):
                out[key] = scrub(item, keep, ids)
            elif isinstance(item, str) and ids(key, item):
                out[key] = item
        return out
    if isinstance(value, list):
        return [scrub(item, keep, ids) for item in value]
    return value


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
    return iso_seconds(text)


def iso_seconds(text: str) -> float | None:
    """An ISO 8601 date or date-time in Unix seconds (UTC when it names no
    offset), or None when it is not one."""
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
