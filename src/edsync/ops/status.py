"""What ``edsync status`` reports, read from the mirror alone."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import orjson

from edsync.mirror import Mirror, outbox, reads
from edsync.run.sharing import holders
from edsync.settings import Config

if TYPE_CHECKING:
    from rich.console import Console


def _text(when: dt.datetime | None) -> str | None:
    """A time as ``status`` prints it: ISO 8601 UTC, to the microsecond."""
    return None if when is None else when.isoformat(timespec="microseconds")


def _snapshot(progress: str | None) -> str | None:
    """A snapshot under way: how far it has got, in the source's own terms."""
    if not progress:
        return None
    resume = orjson.loads(progress).get("resume")
    return f"under way, read up to {resume}" if resume else "under way, just started"


def collect(config: Config, engine: Mirror) -> dict[str, Any]:
    rows = reads.progress(engine)
    quarantined = reads.events_by_status(engine, "quarantined")
    records = reads.records_by_source(engine)
    queued = reads.refresh_queued(engine)
    forget = reads.forget_requested(engine)
    deliveries = outbox.counts(engine)
    held = holders(engine, config.sources)
    report: dict[str, Any] = {"sources": [], "sinks": []}
    for name, settings in config.sources.items():
        row = rows.get(name)
        holder = held.get(name)
        report["sources"].append(
            {
                "source": name,
                "kind": settings.kind,
                "cursor": row.cursor if row else None,
                "events_total": row.events_total if row else 0,
                "lag": row.lag if row else None,
                "records": records.get(name, 0),
                "quarantined": quarantined.get(name, 0),
                "refresh_queued": queued.get(name, 0),
                "forget_requested": forget.get(name, 0),
                "last_success": _text(row.last_success_at) if row else None,
                "consecutive_failures": row.consecutive_failures if row else 0,
                "last_error": row.last_error if row else None,
                "gap": row.gap if row else None,
                "snapshot": _snapshot(row.snapshot) if row else None,
                "last_webhook": _text(row.webhook_at) if row else None,
                "holder": None if holder is None else {"host": holder.host, "pid": holder.pid},
            }
        )
    for sink in config.sinks:
        report["sinks"].append(
            {
                "sink": sink,
                "pending": deliveries.get((sink, "pending"), 0),
                "failed": deliveries.get((sink, "failed"), 0),
                "delivered": deliveries.get((sink, "delivered"), 0),
                "last_error": outbox.last_error(engine, sink),
            }
        )
    return report


def render(report: dict[str, Any], console: Console) -> None:
    """The terminal layout: a block per source, so it reads at 80 columns.

    Short counters share a line; long values (cursors, timestamps, errors) get
    a line each and fold rather than being cut, so no number is shown in part.
    """
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    for source in report["sources"]:
        failures = int(source["consecutive_failures"])
        state, style = (
            ("ok", "green") if not failures else (f"failing ({failures} in a row)", "red")
        )
        if source["gap"]:
            state, style = f"{state}, gap", "yellow" if not failures else style
        console.print(
            Text.assemble((source["source"], "bold"), f"  {source['kind']}  ", (state, style))
        )
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(overflow="fold")
        grid.add_row(
            "events",
            f"{source['events_total']}  records {source['records']}  "
            f"quarantined {source['quarantined']}  lag {_or_dash(source['lag'])}",
        )
        if source["refresh_queued"] or source["forget_requested"]:
            grid.add_row(
                "waiting",
                f"{source['refresh_queued']} to read again  "
                f"{source['forget_requested']} forget requests under review",
            )
        grid.add_row("cursor", _or_dash(source["cursor"]))
        holder = source["holder"]
        grid.add_row(
            "polled by", "-" if holder is None else f"pid {holder['pid']} on {holder['host']}"
        )
        grid.add_row("last success", _or_dash(source["last_success"]))
        if source.get("last_webhook"):
            grid.add_row("last webhook", str(source["last_webhook"]))
        for key in ("last_error", "gap", "snapshot"):
            if source.get(key):
                grid.add_row(key.replace("_", " "), str(source[key]))
        console.print(Padding(grid, (0, 0, 1, 2), expand=False))
    if report["sinks"]:
        sinks = Table(title="sinks", title_justify="left", box=None, padding=(0, 2))
        for column in ("sink", "pending", "failed", "delivered"):
            sinks.add_column(column, justify="left" if column == "sink" else "right")
        for sink in report["sinks"]:
            sinks.add_row(
                sink["sink"], str(sink["pending"]), str(sink["failed"]), str(sink["delivered"])
            )
        console.print(sinks)
        for sink in report["sinks"]:
            if sink["last_error"]:
                console.print(Text.assemble((sink["sink"], "bold"), "  last error  "), end="")
                console.print(str(sink["last_error"]), overflow="fold", markup=False)


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)
