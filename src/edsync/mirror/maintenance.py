"""Keeping the mirror storable and well planned: the NUL repair PostgreSQL
needs before it stores an event or a snapshot object, the lone surrogate
escape its JSONB refuses in a ledger text, and the ANALYZE of tables a
backfill has outgrown the statistics of."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from edsync import jsontext
from edsync.model import Change, Quarantined, json_value

NUL_ESCAPE = "\\u0000"  # how orjson writes U+0000 inside a JSON string


NUL_REASON = (
    "holds U+0000 (NUL), which PostgreSQL cannot store in text or JSON; "
    "its payload keeps U+FFFD in its place"
)


def without_nul(change: Change | Quarantined) -> Change | Quarantined:
    """``change`` quarantined, with U+FFFD for U+0000 in every string, if any
    string of it holds U+0000; otherwise ``change`` itself.

    PostgreSQL refuses U+0000 in text and JSONB, so such an event would fail
    its page on every attempt and stop the source. It reaches the ledger
    quarantined instead, on every backend alike, and its record is left as
    it was.
    """
    # Not the event id: it is the ledger's key, and must match the next fetch's.
    repair = nul_repair(
        json_value(change.payload), (change.type, change.entity_id, change.person_id)
    )
    if repair is None:
        return change
    payload, (type_, entity_id, person_id) = repair
    return Quarantined(
        event_id=change.event_id,
        position=change.position,
        type=type_,
        entity=change.entity,
        payload=payload,
        reason=change.reason if isinstance(change, Quarantined) else NUL_REASON,
        entity_id=entity_id,
        op=change.op,
        occurred_at=change.occurred_at,
        person_id=person_id,
    )


def jsonb_storable(text: str) -> str:
    """A ledger's JSON text as PostgreSQL's JSONB takes it: a lone surrogate
    escape (``\\ud83d``, valid JSON kept as sent, SPEC 5.3) refused there, so
    U+FFFD in its place; the text itself when it holds none (the check is a
    substring search: a surrogate escape starts ``\\ud``)."""
    if "\\ud" not in text and "\\uD" not in text:
        return text
    return jsontext.scrub(text)


def nul_repair(value: Any, fields: tuple[str | None, ...]) -> tuple[Any, tuple[Any, ...]] | None:
    """``value`` and ``fields`` with U+FFFD for U+0000, or None if none holds U+0000
    (a JSON text can hold the escape as text: a literal backslash before "u0000")."""
    repaired = _replace_nul(value)
    if repaired == value and not any(f is not None and "\x00" in f for f in fields):
        return None
    return repaired, tuple(_replace_nul(f) for f in fields)


def _replace_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_replace_nul(key): _replace_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_nul(item) for item in value]
    return value


ANALYZE_EVERY = 8
"""Pages between checks that PostgreSQL's statistics still describe the tables."""


def analyze_grown_tables(engine: Engine) -> None:
    """ANALYZE the mirror's tables that have more than doubled since last analyzed.

    A backfill into a new mirror outgrows its statistics within seconds, long
    before autovacuum looks (once a minute); planned on "empty" statistics,
    each per-page lookup scanned a whole source and the backfill went
    quadratic. Outside the page transaction; ANALYZE samples, so it stays
    cheap however large the table.
    """
    with engine.connect() as conn:
        grown = (
            conn.exec_driver_sql(
                "SELECT relname FROM pg_stat_user_tables WHERE relname IN ('events', 'records') "
                "AND n_mod_since_analyze > GREATEST(n_live_tup, 1000)"
            )
            .scalars()
            .all()
        )
        for table in grown:
            conn.exec_driver_sql(f"ANALYZE {table}")
        conn.commit()
