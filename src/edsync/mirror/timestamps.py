"""Timestamp columns in and out of the mirror.

SQLite stores them as ISO 8601 UTC text of a fixed width, so they compare in
time order as text; PostgreSQL as ``timestamptz``, which the driver hands back
as a datetime in the session's time zone. The mirror writes the text on both
(PostgreSQL casts it), and its readers give the rest of edsync aware UTC
datetimes on both.
"""

from __future__ import annotations

import datetime as dt


def stamp(when: dt.datetime) -> str:
    """``when`` as the mirror writes a timestamp (microseconds always: a fixed width)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).isoformat(timespec="microseconds")


def instant(value: object) -> dt.datetime | None:
    """A timestamp column's value (text on SQLite, a datetime on PostgreSQL)
    as an aware UTC datetime; None stays None."""
    if value is None:
        return None
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    if when.tzinfo is None:  # written without an offset: the mirror's times are UTC
        return when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)


def event_time(value: object) -> str | None:
    """An event's time (``occurred_at``, ``changed_at``) as the model carries it:
    the text the normalizer wrote, UTC ``isoformat()``, on either engine."""
    if value is None or isinstance(value, str):
        return value
    when = instant(value)
    return None if when is None else when.isoformat()
