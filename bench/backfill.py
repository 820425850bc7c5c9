"""Backfill N simulator events with ``edsync backfill`` and compare with a bare loop.

    python bench/backfill.py [--events 100000] [--expand applicant,application,offer]
                             [--shape current|heavy|both] [--runs 3]
                             [--mirror postgresql+psycopg://…] [--no-replay]

The simulator and ``edsync backfill`` each run in their own process, as in
production, so the figures are the whole product path: HTTP, parsing,
normalizing, the ledger, version-guarded upserts, the checkpoint, and the
process's start-up. Its stage breakdown comes from its own ``source_drained``
log line; its peak RSS from the kernel (``wait4``).

The bare loop (the issue's yardstick) applies the same events with
hand-written stdlib ``sqlite3`` executemany statements into the same schema,
on the stdlib's defaults (rollback journal, ``synchronous=FULL``): each page
is fetched and parsed first, untimed, then only the row building and SQL are
timed. The ratio is edsync's events/s over the bare loop's: at or over 1.0,
edsync is as fast as a loop that does no HTTP and none of edsync's
bookkeeping. The same loop is also run with edsync's SQLite settings (WAL,
``synchronous=NORMAL``), a stricter yardstick, and printed beside it, and
once more with its HTTP fetch and orjson parse timed, page after page: the
issue's "naive end to end" loop, which does none of edsync's bookkeeping
either.

Since issue 30 a journal item is a notification: a page ledgers its events and
queues the resources they name (``refresh_queue``), and after the journal the
same backfill reads each queued resource once and writes ``records``. The
source is configured ``snapshot = false`` (journal and refresh only). The
figures are given twice: **the journal alone**, events / (wall time minus the
``refresh_s`` of its ``source_drained`` line), against the loops as before,
and **the whole backfill**, the refresh included. The bare loop still writes a
record per event from the journal item (the old model): it is the yardstick
for the journal part, which now writes ledger and queue rows instead.

A second run with ``--reset`` replays every event (all already ledgered).

``--shape heavy`` serves the simulator's events reshaped as issue 23's feed
(about 1.26 KB an event, about 7.5 updates a record: see ``heavy.py``);
``--shape both`` measures both shapes, each run, in one invocation.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from _compiled import compile_edsync

from edsync.mirror.db import create_mirror_engine, ensure_schema
from edsync.settings import MirrorSettings
from edsync.sources.dreamapply.journal import EVENT_KINDS, parse_name
from edsync.sources.dreamapply.links import ref_id
from edsync_sim.server import DEFAULT_API_KEY

KEY = DEFAULT_API_KEY  # what `edsync simulate` accepts


def start_simulator(events: int, shape: str = "current") -> tuple[subprocess.Popen[str], str]:
    # `edsync simulate`, but with a journal that forgets nothing: a million
    # events span more than the six months DreamApply's journal keeps.
    if shape == "heavy":
        serve = (
            f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import heavy; sys.exit(heavy.serve_forever({events}))"
        )
    else:
        serve = (
            "import sys; from edsync_sim.server import serve_forever; "
            f"sys.exit(serve_forever(0, {events}, 0, 0.0, journal_window=None))"
        )
    proc = subprocess.Popen([sys.executable, "-c", serve], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the simulator announces its URL once it listens
    url = next(word for word in line.split() if word.startswith("http://")).rstrip(",")
    return proc, url


def write_config(path: Path, url: str, mirror: str, expand: list[str]) -> None:
    path.write_text(
        f"""
[mirror]
url = {mirror!r}

[log]
level = "info"
format = "json"

[sources.dreamapply]
kind = "dreamapply"
base_url = {url!r}
api_key_env = "EDSYNC_BENCH_KEY"
max_requests_per_minute = 0
page_size = 1024
expand = {orjson.dumps(expand).decode()}
snapshot = false
"""
    )


@dataclass(frozen=True, slots=True)
class Run:
    seconds: float
    rss_mb: float
    events: int
    stages: dict[str, float]
    refresh_s: float = 0.0  # reading the queued resources, and purges (issue 30)
    refreshed: int = 0

    @property
    def journal_s(self) -> float:
        """The run without its refresh: start-up and the journal's pages."""
        return self.seconds - self.refresh_s


def run_edsync(config: Path, *extra: str) -> Run:
    env = {**os.environ, "EDSYNC_BENCH_KEY": KEY}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edsync", "backfill", "-c", str(config), "--no-deliver", *extra],
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stderr is not None
    log = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"edsync backfill failed ({proc.returncode}):\n{log.decode()[-2000:]}")
    drained = next(
        orjson.loads(line)
        for line in log.splitlines()
        if line.startswith(b"{") and orjson.loads(line).get("event") == "source_drained"
    )
    events = drained["applied"] + drained["stale"] + drained["quarantined"] + drained["duplicates"]
    return Run(
        seconds,
        usage.ru_maxrss / 1024,
        events,
        drained["us_per_event"],
        drained.get("refresh_s", 0.0),
        drained.get("refreshed", 0),
    )


def pages(url: str, expand: list[str]) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    since = 1
    with httpx.Client(base_url=url, headers={"Authorization": f'DREAM apikey="{KEY}"'}) as c:
        while True:
            # API v9 requires byEvents: all 48 names, as edsync sends them.
            params = {"byEvents": ",".join(EVENT_KINDS), "bySince": str(since), "limit": "1024"}
            if expand:
                params["expand"] = ",".join(expand)
            page = orjson.loads(c.get("/api/journal", params=params).content)
            if not page:
                return
            events = [(int(k), v) for k, v in page.items()]
            yield events
            since = events[-1][0] + 1


def run_loop(
    url: str, expand: list[str], db: Path, *, tuned: bool, naive: bool = False
) -> tuple[float, int]:
    """The same pages with bare sqlite3: ledger insert, record upsert, checkpoint.

    ``tuned``: with edsync's WAL and ``synchronous=NORMAL``; otherwise on the
    stdlib's defaults, as the issue's bare loop. ``naive``: the fetching and
    parsing are timed too, page after page (the issue's "naive end to end")."""
    engine = create_mirror_engine(MirrorSettings(url=f"sqlite:///{db}"))
    ensure_schema(engine, auto_migrate=True)
    engine.dispose()
    conn = sqlite3.connect(db, isolation_level=None)
    if tuned:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    else:
        # edsync's engine left the file in WAL mode (it persists): back to the default.
        conn.execute("PRAGMA journal_mode=DELETE")
    elapsed, count = 0.0, 0
    begun = time.perf_counter()
    for chunk in pages(url, expand):
        started = time.perf_counter()
        bare_page(conn, chunk)
        elapsed += time.perf_counter() - started
        count += len(chunk)
    if naive:
        elapsed = time.perf_counter() - begun
    conn.close()
    return elapsed, count


def bare_page(conn: sqlite3.Connection, chunk: list[tuple[int, dict[str, Any]]]) -> None:
    """One page of the bare loop: build the rows, then one transaction."""
    now = "2026-01-01T00:00:00+00:00"
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--expand", default="applicant,application,offer")
    parser.add_argument(
        "--shape",
        choices=("current", "heavy", "both"),
        default="current",
        help="the simulator's journal as it is, issue 23's heavy feed (heavy.py), or both",
    )
    parser.add_argument(
        "--mirror", help="a mirror URL for edsync (an empty PostgreSQL database); default SQLite"
    )
    parser.add_argument("--no-replay", action="store_true", help="skip the --reset replay run")
    parser.add_argument(
        "--runs", type=int, default=1, help="repeat the measurement (SQLite only), new files each"
    )
    args = parser.parse_args()
    compile_edsync()
    if args.runs > 1 and args.mirror:
        parser.error("--runs needs the default SQLite mirror: each run starts from an empty one")
    if args.shape != "current" and args.expand != "applicant,application,offer":
        parser.error("the heavy shape is defined with the default --expand")
    expand = [e for e in args.expand.split(",") if e]
    shapes = ("current", "heavy") if args.shape == "both" else (args.shape,)
    ratios: dict[str, list[tuple[float, float, float]]] = {shape: [] for shape in shapes}
    simulators = {shape: start_simulator(args.events, shape) for shape in shapes}
    try:
        for run in range(1, args.runs + 1):
            for shape, (_, url) in simulators.items():
                print(f"-- run {run} of {args.runs}, {shape} shape")
                ratios[shape].append(measure(args, url, expand))
    finally:
        for proc, _ in simulators.values():
            proc.terminate()
            proc.wait()
    for shape, runs in ratios.items():
        figures = ", ".join(" / ".join(f"{r:.2f}" for r in run) for run in runs)
        print(
            f"ratios of the journal part, {shape} shape "
            f"(against the bare loop / the tuned / the naive): {figures}"
        )
    return 0


def measure(args: argparse.Namespace, url: str, expand: list[str]) -> tuple[float, float, float]:
    """One run: edsync, its replay, then both loops; prints the figures, returns the ratios."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "edsync.toml"
        write_config(config, url, args.mirror or f"sqlite:///{tmp}/edsync.db", expand)
        first = run_edsync(config)
        shape = None if args.mirror else mirror_shape(Path(tmp) / "edsync.db")
        replay = None if args.no_replay else run_edsync(config, "--reset")
        bare, n = run_loop(url, expand, Path(tmp) / "bare.db", tuned=False)
        tuned, _ = run_loop(url, expand, Path(tmp) / "tuned.db", tuned=True)
        naive, _ = run_loop(url, expand, Path(tmp) / "naive.db", tuned=False, naive=True)
    report(args, first, replay, (bare, tuned, naive), n, shape=shape)
    return bare / first.journal_s, tuned / first.journal_s, naive / first.journal_s


def mirror_shape(db: Path) -> str:
    """Records, and the average bytes of a record's data and of a ledger payload."""
    conn = sqlite3.connect(db)
    try:
        records, data = conn.execute("SELECT count(*), avg(length(data)) FROM records").fetchone()
        events, payload = conn.execute(
            "SELECT count(*), avg(length(payload)) FROM events"
        ).fetchone()
    finally:
        conn.close()
    return (
        f"{records:,} records ({events / max(records, 1):.1f} events a record), "
        f"data {data or 0:.0f} B, payload {payload or 0:.0f} B on average"
    )


def report(
    args: argparse.Namespace,
    first: Run,
    replay: Run | None,
    loops: tuple[float, float, float],
    n: int,
    *,
    shape: str | None,
) -> None:
    bare, tuned, naive = loops
    page = 512 if args.expand else 1024
    print(f"events           {n:>12,}   (expand={args.expand or 'none'}, page={page})")
    print(f"mirror           {args.mirror or 'SQLite (temporary file)'}")
    if shape is not None:
        print(f"  shape          {shape}")
    print(
        f"edsync journal   {first.journal_s:>12.2f} s  {n / first.journal_s:>12,.0f} events/s  "
        "(process start to exit, less the refresh: HTTP + parse + normalize + apply)"
    )
    print(
        f"  whole backfill {first.seconds:>12.2f} s  {n / first.seconds:>12,.0f} events/s  "
        f"(the refresh included: {first.refreshed:,} resources read in {first.refresh_s:.2f} s)"
    )
    stages = "  ".join(f"{name} {value:.1f}" for name, value in first.stages.items())
    print(f"  µs/event       {stages}  (fetch and parse overlap the rest; apply = fold + sql)")
    bare_us = bare / n * 1e6
    sql = first.stages.get("sql")
    if sql is not None:
        print(
            f"  sql / bare     {sql / bare_us:>12.2f}    (the SQL stage over the bare loop's "
            f"whole time, {bare_us:.1f} µs an event)"
        )
    print(f"  peak RSS       {first.rss_mb:>12.1f} MB")
    if replay is not None:
        print(
            f"replay --reset   {replay.journal_s:>12.2f} s  {n / replay.journal_s:>12,.0f} "
            f"events/s  ({first.journal_s / replay.journal_s:.1f}x faster than the first "
            f"journal; refresh {replay.refresh_s:.2f} s, {replay.refreshed:,} read)"
        )
    print(
        f"bare loop        {bare:>12.2f} s  {n / bare:>12,.0f} events/s  "
        "(stdlib sqlite3 executemany, its defaults, on pre-fetched pages, no HTTP; "
        "a record per event from the item: the journal part's yardstick)"
    )
    print(
        f"  tuned          {tuned:>12.2f} s  {n / tuned:>12,.0f} events/s  (the same, WAL + NORMAL)"
    )
    print(
        f"  naive          {naive:>12.2f} s  {n / naive:>12,.0f} events/s  "
        "(the bare loop with its httpx fetch and orjson parse timed, page after page)"
    )
    journal = first.journal_s
    print(
        f"ratio, journal   {bare / journal:>12.2f}    (edsync's journal events/s / bare loop's; "
        f"target >= 1.0; {tuned / journal:.2f} against the tuned loop, "
        f"{naive / journal:.2f} against the naive one)"
    )
    print(
        f"ratio, whole     {bare / first.seconds:>12.2f}    (the refresh included; "
        f"{tuned / first.seconds:.2f} against the tuned loop)"
    )


if __name__ == "__main__":
    sys.exit(main())
