"""Seconds, not intervals (issue 34): how long an appended event takes to reach
the mirror when DreamApply's webhooks wake the poll.

    python bench/webhook.py                              # 200 events, interval 5m, unpaced
    python bench/webhook.py --per-minute 180             # the same at DreamApply's quota
    python bench/webhook.py --per-minute 180 --min-gap 2 --max-gap 4 --appends 60
    python bench/webhook.py --no-webhook --interval 30s --appends 10 --min-gap 2 --max-gap 5

The simulator runs in this process and plays DreamApply's webhooks: each
journal event appended is POSTed (``{"<id>": {item}}``, with the
Authorization value) to the listener of ``edsync run``, which runs as its
own process (byte-compiled first) on a SQLite mirror with ``interval`` 5
minutes and ``[sources.dreamapply.webhook]`` on. The daemon first syncs the
``--events`` initial events (its first interval poll, which ends once the
resources they name are read too), then the probe appends ``--appends``
events one at a time, every ``--min-gap`` to ``--max-gap`` seconds (uniform,
seeded), and a watcher thread reads ``MAX(position)`` of the mirror's ledger
every 5 ms: an event's latency is from just before its append to the first
read that finds its ledger row. The distribution is printed (min, median,
p90, p99, max), with the polls (HEADs of the journal) and requests while
appending, the busiest 60 s window of requests of the whole run (with
``--per-minute 180``, DreamApply's quota, it must not pass 180), and the
webhooks answered. ``--per-minute`` is 0 by default: no pacing, as the
simulator is configured everywhere else.

``--no-webhook`` runs the same without the webhook table: every event waits
for the next interval poll, up to the interval (use a shorter ``--interval``
and fewer ``--appends`` there: at 5 minutes a run of 200 takes hours).
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from _compiled import compile_edsync

from edsync.config import parse_duration
from edsync_sim import Simulator
from edsync_sim.dreamapply import JOURNAL_PATH
from edsync_sim.server import DEFAULT_API_KEY, RecordedRequest

AUTHORIZATION = "Bearer bench-webhook-authorization"
HOOK_PATH = "/hooks/dreamapply"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, sim: Simulator, args: argparse.Namespace, port: int) -> None:
    text = f"""
[mirror]
url = "sqlite:///{path.parent / "mirror.db"}"

[log]
format = "json"

[sources.dreamapply]
kind = "dreamapply"
base_url = "{sim.url}"
api_key_env = "DREAMAPPLY_API_KEY"
max_requests_per_minute = {args.per_minute}
snapshot = false
interval = "{args.interval}"
"""
    if not args.no_webhook:
        text += f"""
[sources.dreamapply.webhook]
listen = "127.0.0.1:{port}"
path = "{HOOK_PATH}"
authorization_env = "DREAMAPPLY_WEBHOOK_AUTH"
"""
    path.write_text(text)


class Watcher:
    """Reads the ledger's newest position every ``period`` seconds; records
    when each position was first seen."""

    def __init__(self, db: Path, period: float = 0.005) -> None:
        self.db = db
        self.period = period
        self.seen: dict[int, float] = {}
        self.newest = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set() and not self.db.exists():
            time.sleep(self.period)
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            while not self.stop.wait(self.period):
                try:
                    row = conn.execute("SELECT MAX(position) FROM events").fetchone()
                except sqlite3.OperationalError:
                    continue  # no table yet: the daemon is migrating
                newest = int(row[0] or 0)
                now = time.monotonic()
                for position in range(self.newest + 1, newest + 1):
                    self.seen[position] = now
                self.newest = max(self.newest, newest)
        finally:
            conn.close()

    def wait_for(self, position: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.newest < position:
            if time.monotonic() > deadline:
                return False
            time.sleep(self.period)
        return True


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def busiest_minute(times: Sequence[float]) -> int:
    ordered = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= 60.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def run(args: argparse.Namespace, work: Path) -> int:
    port = free_port()
    url = None if args.no_webhook else f"http://127.0.0.1:{port}{HOOK_PATH}"
    sim = Simulator(events=args.events, webhook_url=url, webhook_authorization=AUTHORIZATION)
    sim.start()
    config = work / "edsync.toml"
    write_config(config, sim, args, port)
    env = {**os.environ, "DREAMAPPLY_API_KEY": DEFAULT_API_KEY}
    env["DREAMAPPLY_WEBHOOK_AUTH"] = AUTHORIZATION
    log = (work / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edsync", "run", "-c", str(config)], stderr=log, env=env
    )
    watcher = Watcher(work / "mirror.db")
    watcher.thread.start()
    try:
        return measure(args, sim, daemon, watcher, work)
    finally:
        watcher.stop.set()
        daemon.terminate()
        code = daemon.wait(timeout=15)
        log.close()
        print(f"edsync run stopped: exit {code}")
        sim.stop()


def measure(
    args: argparse.Namespace,
    sim: Simulator,
    daemon: subprocess.Popen[bytes],
    watcher: Watcher,
    work: Path,
) -> int:
    interval = parse_duration(args.interval)
    # The first interval poll comes within 5 s of the start (its jitter); it
    # ends once the resources its events name are read too (minutes when paced).
    log = work / "daemon.log"
    deadline = time.monotonic() + 60 + args.events
    while b'"poll_done"' not in log.read_bytes():
        if time.monotonic() > deadline or daemon.poll() is not None:
            print(log.read_text()[-3000:])
            sys.exit("the daemon did not sync the initial events")
        time.sleep(0.1)
    first_request = len(sim.requests)
    rng = random.Random(args.seed)
    appended: dict[int, float] = {}
    for _ in range(args.appends):
        before = time.monotonic()
        event_id = sim.journal.append(1)
        appended[event_id] = before
        time.sleep(rng.uniform(args.min_gap, args.max_gap))
    last = max(appended)
    if not watcher.wait_for(last, timeout=interval + 30):
        sys.exit(f"event {last} not in the mirror within {interval + 30:.0f} s")
    latencies = [watcher.seen[i] - at for i, at in appended.items()]
    report(args, sim, latencies, sim.requests[first_request:])
    return 0


def report(
    args: argparse.Namespace,
    sim: Simulator,
    latencies: Sequence[float],
    during: Sequence[RecordedRequest],
) -> None:
    """``during``: the requests the daemon made while the events were appended."""
    mode = "no webhooks" if args.no_webhook else "webhooks"
    print(
        f"{len(latencies)} events appended every {args.min_gap}-{args.max_gap} s, "
        f"interval {args.interval}, {mode}, max_requests_per_minute {args.per_minute}"
    )
    print(
        "append -> ledger row (s): "
        f"min {min(latencies):.3f}  median {statistics.median(latencies):.3f}  "
        f"p90 {quantile(latencies, 0.9):.3f}  p99 {quantile(latencies, 0.99):.3f}  "
        f"max {max(latencies):.3f}"
    )
    within = sum(1 for value in latencies if value < 2.0)
    print(f"within 2 s: {within}/{len(latencies)}")
    polls = sum(1 for r in during if r.method == "HEAD" and JOURNAL_PATH.fullmatch(r.path))
    busiest = busiest_minute([r.at for r in sim.requests])
    print(f"polls (journal HEADs): {polls}, requests: {len(during)}, busiest 60 s: {busiest}")
    if sim.webhooks is not None:
        statuses = [d.status for d in sim.webhooks.deliveries]
        print(f"webhooks: {len(statuses)} sent, {statuses.count(204)} answered 204")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=1000, help="initial journal events (1000)")
    p.add_argument("--appends", type=int, default=200, help="events appended one at a time")
    p.add_argument("--min-gap", type=float, default=0.2, help="seconds between appends, at least")
    p.add_argument("--max-gap", type=float, default=0.5, help="seconds between appends, at most")
    p.add_argument("--interval", default="5m", help="the source's polling interval (5m)")
    p.add_argument(
        "--per-minute",
        type=int,
        default=0,
        help="max_requests_per_minute: 0 (no pacing, as for the simulator), or 180 as upstream",
    )
    p.add_argument("--no-webhook", action="store_true", help="no webhooks: polling alone")
    p.add_argument("--seed", type=int, default=34)
    return p.parse_args(argv)


def main() -> int:
    args = parse_args()
    compile_edsync()
    with tempfile.TemporaryDirectory(prefix="edsync-webhook-") as tmp:
        return run(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
