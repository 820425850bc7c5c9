"""Per-source checkpoint rows: the committed cursor and the source's health."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import orjson
from sqlalchemy import Connection, Engine

from edsync.mirror.sql import adapt, execute
from edsync.mirror.timestamps import instant, stamp
from edsync.model import Cursor


@dataclass(frozen=True, slots=True)
class Checkpoint:
    source: str
    cursor: Cursor | None
    events_total: int
    last_error: str | None
    gap: str | None
    consecutive_failures: int
    last_success_at: dt.datetime | None = None

    def age(self, now: dt.datetime) -> float | None:
        """Seconds since the feed was last read successfully."""
        if self.last_success_at is None:
            return None
        return (now - self.last_success_at).total_seconds()


def now_iso() -> str:
    """This moment as the mirror writes it (``timestamps.stamp``)."""
    return stamp(dt.datetime.now(dt.UTC))


def read(conn: Connection, source: str, *, for_update: bool = False) -> Checkpoint | None:
    """``for_update``: lock the row (PostgreSQL) so writers of one source take turns."""
    lock = " FOR UPDATE" if for_update and conn.dialect.name == "postgresql" else ""
    rows = execute(
        conn,
        adapt(
            conn,
            "SELECT cursor, position, events_total, last_error, gap, consecutive_failures, "
            f"last_success_at FROM checkpoints WHERE source = ?{lock}",
        ),
        (source,),
    )
    if not rows:
        return None
    row = rows[0]
    cursor = Cursor(row[0], int(row[1])) if row[0] is not None else None
    return Checkpoint(source, cursor, int(row[2]), row[3], row[4], int(row[5]), instant(row[6]))


def load(engine: Engine, source: str) -> Checkpoint | None:
    with engine.connect() as conn:
        return read(conn, source)


_ADVANCE = """
INSERT INTO checkpoints (source, cursor, position, updated_at, events_total, last_success_at,
                         consecutive_failures)
VALUES (?, ?, ?, ?, ?, ?, 0)
ON CONFLICT (source) DO UPDATE SET
    cursor = excluded.cursor,
    position = excluded.position,
    updated_at = excluded.updated_at,
    events_total = checkpoints.events_total + excluded.events_total,
    last_success_at = excluded.last_success_at,
    consecutive_failures = 0
"""


def write_advance(conn: Connection, source: str, cursor: Cursor, added: int, now: str) -> None:
    """Inside the page transaction: the new cursor and the ledger rows it added."""
    execute(conn, adapt(conn, _ADVANCE), (source, cursor.value, cursor.position, now, added, now))


_FAILURE = """
INSERT INTO checkpoints (source, updated_at, events_total, last_error, consecutive_failures)
VALUES (?, ?, 0, ?, 1)
ON CONFLICT (source) DO UPDATE SET
    updated_at = excluded.updated_at,
    last_error = excluded.last_error,
    consecutive_failures = checkpoints.consecutive_failures + 1
"""


def record_failure(engine: Engine, source: str, error: str) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(adapt(conn, _FAILURE), (source, now_iso(), error[:2000]))


_SUCCESS = """
INSERT INTO checkpoints (source, updated_at, events_total, last_success_at, consecutive_failures,
                         lag)
VALUES (?, ?, 0, ?, 0, ?)
ON CONFLICT (source) DO UPDATE SET
    updated_at = excluded.updated_at,
    last_success_at = excluded.last_success_at,
    consecutive_failures = 0,
    last_error = NULL,
    lag = excluded.lag
"""


def record_success(engine: Engine, source: str, lag: int | None = None) -> None:
    """The end of a good poll (even one that found nothing) and the lag it left;
    the source has recovered, so the last failure's message goes."""
    now = now_iso()
    with engine.begin() as conn:
        conn.exec_driver_sql(adapt(conn, _SUCCESS), (source, now, now, lag))


_GAP = """
INSERT INTO checkpoints (source, updated_at, events_total, gap, consecutive_failures)
VALUES (?, ?, 0, ?, 0)
ON CONFLICT (source) DO UPDATE SET updated_at = excluded.updated_at, gap = excluded.gap
"""


def record_gap(engine: Engine, source: str, gap: str) -> None:
    """Events may be missing: say so where ``status`` looks, until it is resolved."""
    with engine.begin() as conn:
        conn.exec_driver_sql(adapt(conn, _GAP), (source, now_iso(), gap[:2000]))


_RESUME = """
INSERT INTO checkpoints (source, cursor, position, updated_at, events_total, consecutive_failures)
VALUES (?, ?, ?, ?, 0, 0)
ON CONFLICT (source) DO UPDATE SET
    cursor = excluded.cursor,
    position = excluded.position,
    updated_at = excluded.updated_at,
    gap = NULL,
    snapshot = NULL
"""


def write_resume(conn: Connection, source: str, cursor: Cursor, now: str) -> None:
    """After a snapshot: stream from the id noted before it; the gap is closed and
    the snapshot's progress forgotten."""
    conn.exec_driver_sql(adapt(conn, _RESUME), (source, cursor.value, cursor.position, now))


def reset(engine: Engine, source: str) -> None:
    """Forget the cursor and any snapshot under way (``backfill --reset``); the
    ledger keeps deduplicating."""
    with engine.begin() as conn:
        conn.exec_driver_sql(
            adapt(
                conn,
                "UPDATE checkpoints SET cursor = NULL, position = NULL, gap = NULL, "
                "snapshot = NULL WHERE source = ?",
            ),
            (source,),
        )


@dataclass(frozen=True, slots=True)
class SnapshotProgress:
    """A snapshot under way: committed with each of its pages, so a run cut short
    resumes it. ``head`` and ``cursor_*`` are where the stream resumes after it;
    ``resume`` is the source's own token for the next page to read."""

    id: str
    reason: str
    cursor_value: str
    cursor_position: int
    resume: str | None = None

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.cursor_value, self.cursor_position)


def read_snapshot(engine: Engine, source: str) -> SnapshotProgress | None:
    with engine.connect() as conn:
        value = conn.exec_driver_sql(
            adapt(conn, "SELECT snapshot FROM checkpoints WHERE source = ?"), (source,)
        ).scalar()
    return parse_progress(value) if value else None


PROGRESS_VERSION = 1
"""The shape ``write_snapshot`` stores; a reader of this version reads it."""


def parse_progress(text: str | bytes) -> SnapshotProgress | None:
    """A stored snapshot progress, tolerant of the edsync that wrote it: fields it
    does not know are ignored, and one it cannot read (a newer version, a field
    missing, not JSON) is None: the snapshot starts over, which loses no record
    (a snapshot's rows are upserts, and what it lacks is marked only at its end)."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("version", 1) > PROGRESS_VERSION:
        return None
    try:
        return SnapshotProgress(
            id=str(data["id"]),
            reason=str(data["reason"]),
            cursor_value=str(data["cursor_value"]),
            cursor_position=int(data["cursor_position"]),
            resume=None if data.get("resume") is None else str(data["resume"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


_SNAPSHOT = """
INSERT INTO checkpoints (source, updated_at, events_total, consecutive_failures, snapshot)
VALUES (?, ?, 0, 0, ?)
ON CONFLICT (source) DO UPDATE SET updated_at = excluded.updated_at, snapshot = excluded.snapshot
"""


def write_snapshot(conn: Connection, source: str, progress: SnapshotProgress) -> None:
    """In the transaction of the snapshot page it follows."""
    conn.exec_driver_sql(
        adapt(conn, _SNAPSHOT),
        (
            source,
            now_iso(),
            orjson.dumps({"version": PROGRESS_VERSION, **asdict(progress)}).decode(),
        ),
    )


def last_position(engine: Engine, source: str) -> int:
    """The highest position the ledger holds for ``source`` (0 if none): after
    ``--reset`` forgot the cursor, positions still continue past the ledger."""
    with engine.connect() as conn:
        value = conn.exec_driver_sql(
            adapt(conn, "SELECT MAX(position) FROM events WHERE source = ?"), (source,)
        ).scalar()
    return int(value or 0)


def purged_at(engine: Engine, source: str) -> dt.datetime | None:
    """When the source's purges were last read in full, if ever."""
    with engine.connect() as conn:
        rows = execute(
            conn, adapt(conn, "SELECT purged_at FROM checkpoints WHERE source = ?"), (source,)
        )
    return instant(rows[0][0]) if rows else None


def record_purged(engine: Engine, source: str, when: dt.datetime) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(
            adapt(conn, "UPDATE checkpoints SET purged_at = ? WHERE source = ?"),
            (stamp(when), source),
        )


_WEBHOOK = """
INSERT INTO checkpoints (source, updated_at, events_total, consecutive_failures, webhook_at)
VALUES (?, ?, 0, 0, ?)
ON CONFLICT (source) DO UPDATE SET webhook_at = excluded.webhook_at
"""


def record_webhook(engine: Engine, source: str, when: dt.datetime) -> None:
    """An authorized webhook for ``source`` arrived at ``when``: for ``status``,
    and for the daemon that polls the source if another one received it."""
    at = stamp(when)
    with engine.begin() as conn:
        conn.exec_driver_sql(adapt(conn, _WEBHOOK), (source, at, at))


def webhook_times(engine: Engine) -> dict[str, dt.datetime]:
    """Each source's last webhook, for the sources any webhook has reached."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT source, webhook_at FROM checkpoints WHERE webhook_at IS NOT NULL"
        ).all()
    found = {source: instant(value) for source, value in rows}
    return {source: when for source, when in found.items() if when is not None}
