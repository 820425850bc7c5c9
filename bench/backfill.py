"""Backfill N simulator events into a fresh SQLite mirror and compare with the raw ceiling.

    python bench/backfill.py [--events 100000] [--expand applicant,application,offer]

The simulator runs in its own process (as an upstream would), so the figures
are edsync's. The ceiling applies the same events with hand-written stdlib
``sqlite3`` executemany statements into the same schema, with no HTTP: what a
bare loop costs. The ratio says how close the whole product path comes.
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson

from edsync import logs
from edsync.backfill import run_backfill
from edsync.config import MirrorSettings
from edsync.demo import DEMO_KEY, demo_config
from edsync.mirror.db import create_mirror_engine, ensure_schema
from edsync.sources.dreamapply import parse_name, ref_id


def start_simulator(events: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "edsync", "simulate", "--port", "0", "--events", str(events)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the simulator announces its URL once it listens
    url = next(word for word in line.split() if word.startswith("http://")).rstrip(",")
    return proc, url


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_edsync(url: str, db: Path, expand: list[str], mirror: str | None = None) -> float:
    config = replace(demo_config(url, db, edlink=False), sinks={}, rules=[])
    if mirror:
        config = replace(config, mirror=MirrorSettings(url=mirror))
    logs.configure(config.log)  # warnings only: the figures are the output
    source = config.sources["dreamapply"]
    object.__setattr__(source, "expand", expand)
    engine = create_mirror_engine(config.mirror)
    ensure_schema(engine, auto_migrate=True)
    started = time.perf_counter()
    outcome = run_backfill(config, engine, ["dreamapply"])
    elapsed = time.perf_counter() - started
    assert outcome.ok, outcome.failures
    engine.dispose()
    return elapsed


def fetch_all(url: str, expand: list[str]) -> list[tuple[int, dict[str, Any]]]:
    events: list[tuple[int, dict[str, Any]]] = []
    since = 1
    with httpx.Client(base_url=url, headers={"Authorization": f'DREAM apikey="{DEMO_KEY}"'}) as c:
        while True:
            params = {"bySince": str(since), "limit": "1024"}
            if expand:
                params["expand"] = ",".join(expand)
            page = orjson.loads(c.get("/api/journal", params=params).content)
            if not page:
                return events
            events.extend((int(k), v) for k, v in page.items())
            since = events[-1][0] + 1


def run_ceiling(events: list[tuple[int, dict[str, Any]]], db: Path, page: int) -> float:
    """The same pages with bare sqlite3: ledger insert, record upsert, checkpoint."""
    engine = create_mirror_engine(MirrorSettings(url=f"sqlite:///{db}"))
    ensure_schema(engine, auto_migrate=True)
    engine.dispose()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    started = time.perf_counter()
    now = "2026-01-01T00:00:00+00:00"
    for start in range(0, len(events), page):
        chunk = events[start : start + page]
        ledger, records = [], []
        for position, body in chunk:
            parsed = parse_name(body["event"])
            entity = parsed[0].entity if parsed else "unknown"
            subject = body.get(entity)
            entity_id = ref_id(subject)
            ledger.append(
                (
                    "da",
                    str(position),
                    position,
                    body["event"],
                    entity,
                    entity_id,
                    "updated",
                    body["logged"],
                    orjson.dumps(body).decode(),
                    "applied",
                    None,
                    ref_id(body.get("applicant")),
                    now,
                )
            )
            if entity_id is not None:
                data = subject if isinstance(subject, dict) else body
                records.append(
                    (
                        "da",
                        entity,
                        entity_id,
                        orjson.dumps(data).decode(),
                        False,
                        position,
                        str(position),
                        None,
                        now,
                        body["logged"],
                        now,
                    )
                )
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO events (source, event_id, position, type, entity, entity_id, op, "
            "occurred_at, payload, status, reason, person_id, applied_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            ledger,
        )
        conn.executemany(
            "INSERT INTO records (source, entity, entity_id, data, deleted, version, "
            "last_event_id, person_id, first_seen_at, changed_at, synced_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (source, entity, entity_id) DO UPDATE "
            "SET data = excluded.data, version = excluded.version, synced_at = excluded.synced_at",
            records,
        )
        conn.execute(
            "INSERT INTO checkpoints (source, cursor, position, updated_at, events_total, "
            "consecutive_failures) VALUES ('da', ?, ?, ?, ?, 0) ON CONFLICT (source) DO UPDATE "
            "SET cursor = excluded.cursor, position = excluded.position",
            (str(chunk[-1][0]), chunk[-1][0], now, len(chunk)),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--expand", default="applicant,application,offer")
    parser.add_argument(
        "--mirror", help="a mirror URL for edsync (an empty PostgreSQL database); default SQLite"
    )
    args = parser.parse_args()
    expand = [e for e in args.expand.split(",") if e]
    page = 512 if expand else 1024
    proc, url = start_simulator(args.events)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            seconds = run_edsync(url, Path(tmp) / "edsync.db", expand, args.mirror)
            rss = peak_rss_mb()
            events = fetch_all(url, expand)
            ceiling = run_ceiling(events, Path(tmp) / "ceiling.db", page)
    finally:
        proc.terminate()
        proc.wait()
    n = len(events)
    print(f"events           {n:>12,}   (expand={args.expand or 'none'}, page={page})")
    print(f"mirror           {args.mirror or 'SQLite (temporary file)'}")
    print(
        f"edsync backfill  {seconds:>12.2f} s  {n / seconds:>12,.0f} events/s  "
        f"(HTTP + normalize + apply + checkpoint)"
    )
    print(f"peak RSS         {rss:>12.1f} MB  (edsync, before the ceiling loads its events)")
    print(
        f"sqlite3 ceiling  {ceiling:>12.2f} s  {n / ceiling:>12,.0f} events/s  "
        f"(executemany, no HTTP)"
    )
    print(f"ratio            {seconds / ceiling:>12.2f} x  (edsync time / ceiling time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
