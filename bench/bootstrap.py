"""Requests a DreamApply snapshot bootstrap makes, and whether its pacing holds.

    python bench/bootstrap.py [--applicants 10000] [--paced-applicants 1000] [--rate 6000]

A new mirror of a ``snapshot = true`` source starts from DreamApply's list
endpoints (``edsync backfill`` on an empty mirror): the journal's head, every
applicant, the academic terms, each term's applications (a HEAD for its
``X-Count``, then the list with ``expand=offers,tasks,references,documents``:
each child a record of its own), the offers (embedded by that expansion, or
one request per application where the server does not embed them), the offer
types, the purged resources, then the journal after the head.
DreamApply allows 180 requests a minute per key, so the request count, not
edsync's speed, decides how long a bootstrap takes.

The simulator runs in this process and records every request; ``edsync
backfill`` runs as a separate process, as in production. The ``--applicants``
dataset is bootstrapped unpaced twice, to count requests by kind and derive
the least time each needs at 180 a minute: "before", against a server that
ignores ``expand=offer`` (one offers request per application, what every
bootstrap cost before edsync used the expansion), and "after", against one
that embeds the offers. After the "after" bootstrap the journal grows by
``--follow-events`` events and a second ``edsync backfill`` drains them: the
journal's pages, then (issue 30) one read of each resource they name, or a
batch read of applications; its requests are counted by kind and divided by
the resources it refreshed (its ``source_drained`` line). The paced run
(``--paced-applicants``, a smaller dataset to stay quick, its offers read
one request each so that there are requests enough to pace) runs at
``--rate`` requests a minute and checks the server-side arrival times against
the pacer's promise: in any window of W seconds at most rate * W + burst
requests (burst 1: one request every 60 / rate seconds). Two windows are
checked: 1 second, and "a DreamApply minute" scaled to the rate (the time in
which the rate allows 180 requests, 1.8 s at 6000 a minute).

Each mirror is checked against the simulator's oracle (``Journal.current()``):
the count is only meaningful for a bootstrap that is complete. Exits non-zero
when a bootstrap fails or is incomplete, or when a window holds more requests
than the bucket allows.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from edsync.pacing import Pacer
from edsync.sources.dreamapply.resources import SNAPSHOT_ENTITIES
from edsync_sim import dreamapply, dreamapply_lists, dreamapply_resources
from edsync_sim.dataset import Journal
from edsync_sim.server import DEFAULT_API_KEY, RecordedRequest, Simulator

KEY_ENV = "EDSYNC_BENCH_KEY"
SOURCE = "dreamapply"
ENTITIES = SNAPSHOT_ENTITIES  # applicants, applications and their children

DREAMAPPLY_PER_MINUTE = 180  # DreamApply's quota per API key
BURST = int(Pacer(DREAMAPPLY_PER_MINUTE).burst)  # the bucket every HttpClient paces with

# Fewer events than an applicant usually takes (about 25 with seed 0), so
# growing by this much per missing applicant approaches the target from below
# and overshoots by a handful at most.
EVENTS_PER_MISSING_APPLICANT = 20

# Request kinds in the order a bootstrap sends them, then the refresh's reads.
KINDS: tuple[tuple[str, re.Pattern[str], str | None], ...] = (
    ("journal HEAD", dreamapply.JOURNAL_PATH, "HEAD"),
    ("journal GET", dreamapply.JOURNAL_PATH, "GET"),
    ("applicants", dreamapply_lists.APPLICANTS_PATH, None),
    ("academic terms", dreamapply_lists.ACADEMIC_TERMS_PATH, None),
    ("applications HEAD", dreamapply_lists.APPLICATIONS_PATH, "HEAD"),
    ("applications GET", dreamapply_lists.APPLICATIONS_PATH, "GET"),
    ("offer types", dreamapply_lists.OFFER_TYPES_PATH, None),
    ("offers", dreamapply_lists.OFFERS_PATH, None),
    ("purged resources", dreamapply_lists.PURGED_PATH, None),
    ("invoices list", re.compile(dreamapply_resources.PREFIX + r"/invoices/?"), None),
    ("application reads", dreamapply_resources.APPLICATION_PATH, None),
    ("application children", dreamapply_resources.CHILDREN_PATH, None),
    ("applicant reads", dreamapply_resources.APPLICANT_PATH, None),
    ("invoice reads", dreamapply_resources.INVOICE_PATH, None),
)


@dataclass(frozen=True, slots=True)
class Bootstrap:
    seconds: float  # `edsync backfill` from process start to exit
    requests: list[RecordedRequest]
    refreshed: int = 0  # resources read again (the follow-up's refresh)


@dataclass(frozen=True, slots=True)
class Run:
    bootstrap: Bootstrap
    follow: Bootstrap | None  # the journal events after the snapshot, and their refresh


# -- the dataset --------------------------------------------------------------


def build(applicants: int, *, embed_offers: bool = True) -> Simulator:
    """A simulator whose journal has registered at least ``applicants`` applicants.

    How many events that takes is only known by generating them, so the
    journal grows in steps until the registry holds enough. ``embed_offers``
    False plays a server that ignores the applications list's ``expand=offer``.
    """
    sim = Simulator(events=0)
    sim.embed_offers = embed_offers
    grow(sim.journal, applicants)
    return sim


def grow(journal: Journal, applicants: int) -> None:
    while (missing := applicants - len(journal.registry.entities("applicant"))) > 0:
        journal.append(missing * EVENTS_PER_MISSING_APPLICANT)


def expected(sim: Simulator) -> Counter[str]:
    """Live records per entity a complete bootstrap must hold (the list endpoints' view;
    invoices are read only when the journal names them)."""
    return Counter(e for e, _ in sim.journal.current().records if e in ENTITIES)


def report_dataset(sim: Simulator, seconds: float) -> None:
    journal, live = sim.journal, expected(sim)
    registry = journal.registry
    served = len(journal) - journal.first_retained(sim.journal_window)
    print(f"dataset (built in {seconds:.1f} s)")
    for entity in ENTITIES:
        total = len(registry.entities(entity))
        print(f"  {entity + 's':<16}{total:>9,}   ({live[entity]:,} live: what the lists serve)")
    print(f"  journal events  {len(journal):>9,}   ({served:,} within the six-month window)")


# -- running a bootstrap --------------------------------------------------------


def write_config(path: Path, url: str, db: Path, per_minute: int, purges: str = "1h") -> None:
    path.write_text(
        f'[mirror]\nurl = "sqlite:///{db}"\n\n'
        '[log]\nlevel = "info"\nformat = "json"\n\n'
        f'[sources.{SOURCE}]\nkind = "dreamapply"\nbase_url = "{url}"\n'
        f'api_key_env = "{KEY_ENV}"\nmax_requests_per_minute = {per_minute}\n'
        f'snapshot = true\npurge_interval = "{purges}"\n'
    )


def backfill(config: Path) -> tuple[float, int]:
    """Wall seconds of one ``edsync backfill`` and the resources it refreshed;
    exits the benchmark if it fails."""
    env = {**os.environ, KEY_ENV: DEFAULT_API_KEY}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "edsync", "backfill", "-c", str(config), "--no-deliver"],
        env=env,
        capture_output=True,  # its progress bar would garble the report
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"edsync backfill failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    lines = [orjson.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    drained = next(line for line in lines if line.get("event") == "source_drained")
    return seconds, int(drained.get("refreshed", 0))


def mirrored(db: Path) -> Counter[str]:
    """Live (not deleted) records per entity in the mirror."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT entity, COUNT(*) FROM records WHERE source = ? AND NOT deleted GROUP BY entity",
            (SOURCE,),
        ).fetchall()
    return Counter({entity: count for entity, count in rows if entity in ENTITIES})


def bootstrap(sim: Simulator, per_minute: int, follow: int = 0) -> Run:
    """Bootstrap a fresh SQLite mirror from ``sim``, then drain ``follow`` more
    journal events (none: no second run); exits if the mirror is incomplete."""
    with sim, tempfile.TemporaryDirectory() as tmp:
        config, db = Path(tmp) / "edsync.toml", Path(tmp) / "edsync.db"
        write_config(config, sim.url, db, per_minute)
        first = Bootstrap(*backfill(config)[:1], list(sim.requests))
        check(db, sim, "bootstrap")
        after = None
        if follow:
            done = len(sim.requests)
            sim.journal.append(follow)
            # Purges come with no event (a confirmed forget request): read them,
            # as a run an hour after the snapshot would (the default interval).
            write_config(config, sim.url, db, per_minute, purges="1ms")
            seconds, refreshed = backfill(config)
            after = Bootstrap(seconds, sim.requests[done:], refreshed)
            check(db, sim, "the refresh after it")
    return Run(first, after)


def check(db: Path, sim: Simulator, what: str) -> None:
    held, wanted = mirrored(db), expected(sim)
    if held != wanted:
        sys.exit(f"{what} incomplete: mirror holds {dict(held)}, upstream lists {dict(wanted)}")


# -- reading the requests -------------------------------------------------------


def kind(request: RecordedRequest) -> str:
    for name, pattern, method in KINDS:
        if pattern.fullmatch(request.path) and method in (None, request.method):
            return name
    return f"other ({request.method} {request.path})"


def busiest(times: Sequence[float], window: float) -> int:
    """The most requests that arrived within any ``window`` seconds (two pointers
    over sorted times: each window starts at a request, as a worst case does)."""
    ordered = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(ordered):
        while at - ordered[first] > window:
            first += 1
        most = max(most, last - first + 1)
    return most


def report_counts(run: Bootstrap, label: str) -> int:
    counts = Counter(kind(request) for request in run.requests)
    total = len(run.requests)
    print(f"unpaced {label} (max_requests_per_minute = 0)")
    for name in [name for name, _, _ in KINDS] + sorted(set(counts) - {k[0] for k in KINDS}):
        if counts[name]:
            print(f"  {name:<18}{counts[name]:>9,}")
    print(f"  {'total':<18}{total:>9,}")
    print(f"  wall time       {run.seconds:>11.1f} s  (process start to exit)")
    per_second = DREAMAPPLY_PER_MINUTE / 60
    print(
        f"  at DreamApply's {DREAMAPPLY_PER_MINUTE}/minute: at least "
        f"{total / per_second / 60:,.1f} minutes  ({total:,} requests / {per_second:g} per second)"
    )
    return total


def check_window(times: Sequence[float], label: str, window: float, per_minute: int) -> bool:
    """Print the busiest ``window`` next to what the bucket allows; True if within it."""
    # A token bucket lets at most `burst` through at once, then `rate` a second.
    allowed = math.floor(per_minute / 60 * window + 1e-9) + BURST
    seen = busiest(times, window)
    verdict = "OK" if seen <= allowed else "EXCEEDED"
    print(f"  {label:<38}{seen:>6} requests   allowed {allowed:>5}   {verdict}")
    return seen <= allowed


def report_pacing(run: Bootstrap, per_minute: int) -> bool:
    times = [request.at for request in run.requests]
    span = max(times) - min(times)
    mean = (len(times) - 1) / span * 60 if span > 0 else math.inf
    # The time in which the rate allows DreamApply's 180: its minute, scaled.
    scaled = 60 * DREAMAPPLY_PER_MINUTE / per_minute
    print(f"paced bootstrap (max_requests_per_minute = {per_minute}, burst {BURST})")
    print(f"  requests        {len(times):>11,}   wall time {run.seconds:.1f} s")
    print(f"  mean rate       {mean:>11,.0f} /minute over {span:.1f} s  (limit {per_minute:,})")
    ok = check_window(times, "busiest 1 s window", 1.0, per_minute)
    label = f"busiest {scaled:g} s window (scaled minute)"
    return check_window(times, label, scaled, per_minute) and ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--applicants", type=int, default=10_000)
    parser.add_argument("--paced-applicants", type=int, default=1_000)
    parser.add_argument("--rate", type=int, default=6000, help="requests a minute, paced run")
    parser.add_argument(
        "--follow-events", type=int, default=10_000, help="journal events after the snapshot"
    )
    args = parser.parse_args()
    if args.rate <= 0:
        parser.error("--rate must be positive: 0 turns pacing off")

    started = time.perf_counter()
    sim = build(args.applicants, embed_offers=False)
    report_dataset(sim, time.perf_counter() - started)
    before = report_counts(
        bootstrap(sim, per_minute=0).bootstrap,
        "bootstrap, before: offers read one request per application",
    )
    del sim  # its journal is large: the same dataset is built again for the next run
    print()
    run = bootstrap(build(args.applicants), per_minute=0, follow=args.follow_events)
    after = report_counts(
        run.bootstrap, "bootstrap, after: offers embedded by the applications list (expand=offers)"
    )
    print(f"\nrequests before {before:,}, after {after:,}: {before / after:,.1f} times fewer")
    if run.follow is not None:
        print()
        label = f"backfill of the {args.follow_events:,} journal events after the snapshot"
        total = report_counts(run.follow, label)
        refreshed = max(run.follow.refreshed, 1)
        print(f"  resources refreshed {run.follow.refreshed:>7,}")
        print(f"  requests / resource {total / refreshed:>9.3f}  (the journal's pages included)")

    print()
    started = time.perf_counter()
    # Offers one request each: enough requests for the windows to mean something.
    sim = build(args.paced_applicants, embed_offers=False)
    report_dataset(sim, time.perf_counter() - started)
    held = report_pacing(bootstrap(sim, per_minute=args.rate).bootstrap, args.rate)
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
