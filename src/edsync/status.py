"""What ``edsync status`` reports, read from the mirror alone."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Engine

from edsync.config import Config
from edsync.mirror.sql import adapt


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _snapshot(progress: str | None) -> str | None:
    """A snapshot under way: how far it has got, in the source's own terms."""
    if not progress:
        return None
    resume = orjson.loads(progress).get("resume")
    return f"under way, read up to {resume}" if resume else "under way, just started"


def collect(config: Config, engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = {
            row[0]: row
            for row in conn.exec_driver_sql(
                "SELECT source, cursor, position, events_total, last_success_at, "
                "consecutive_failures, last_error, gap, updated_at, lag, snapshot FROM checkpoints"
            )
        }
        quarantined: dict[str, int] = dict(
            conn.exec_driver_sql(
                adapt(conn, "SELECT source, COUNT(*) FROM events WHERE status = ? GROUP BY source"),
                ("quarantined",),
            ).all()
        )
        records: dict[str, int] = dict(
            conn.exec_driver_sql("SELECT source, COUNT(*) FROM records GROUP BY source").all()
        )
        deliveries = {
            (sink, status): count
            for sink, status, count in conn.exec_driver_sql(
                "SELECT sink, status, COUNT(*) FROM deliveries GROUP BY sink, status"
            )
        }
    report: dict[str, Any] = {"sources": [], "sinks": []}
    for name, settings in config.sources.items():
        row = rows.get(name)
        report["sources"].append(
            {
                "source": name,
                "kind": settings.kind,
                "cursor": row[1] if row else None,
                "events_total": int(row[3]) if row else 0,
                "lag": row[9] if row else None,
                "records": int(records.get(name, 0)),
                "quarantined": int(quarantined.get(name, 0)),
                "last_success": _text(row[4]) if row else None,
                "consecutive_failures": int(row[5]) if row else 0,
                "last_error": row[6] if row else None,
                "gap": row[7] if row else None,
                "snapshot": _snapshot(row[10]) if row else None,
            }
        )
    for sink in config.sinks:
        report["sinks"].append(
            {
                "sink": sink,
                "pending": int(deliveries.get((sink, "pending"), 0)),
                "failed": int(deliveries.get((sink, "failed"), 0)),
                "delivered": int(deliveries.get((sink, "delivered"), 0)),
            }
        )
    return report
