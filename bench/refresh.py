"""Requests the refresh makes (issue 30): the journal's notifications, then each named resource.

    python bench/refresh.py [--events 10000] [--applications 3000] [--paced-events 10000]

Since issue 30 a DreamApply journal page is ledgered and the resources its
items name are queued; the same poll then reads each queued resource once:
an application with its expansions (alone, or in batches through the
applications list by academic years and ``byApplicantIDs``), an applicant, an
invoice. DreamApply allows 180 requests a minute per key, so the requests,
not edsync's speed, decide how long catching up takes.

The simulator runs in this process and records every request; each drain
runs in a child process (this script with ``--drive``), as ``edsync
backfill`` would, building the source itself so that batching can be turned
off (``source._resources.batch = False``). Two datasets: a journal of
``--events`` events, and one grown until its events name ``--applications``
applications. Each is drained twice (batching on, then off) from an empty
mirror with ``snapshot = false`` (journal and refresh only), and twice after a
snapshot: two mirrors are bootstrapped from the list endpoints, the journal
then grows by as many events again, and each mirror drains them (on / off).

Requests are counted by kind from the simulator's records. The time to catch
up at DreamApply's 180 a minute is requests / 180 minutes: the pacer starts
one request every 1/3 s and never more than 180 in any 60 s window, and each
request's own work takes less than 1/3 s (see the unpaced wall time), so
pacing alone sets the pace. The paced run proves it: it drains
``--paced-events`` events at ``max_requests_per_minute = 180`` in this
process on a fake clock (the pacer's ``clock`` and ``sleep``), recording each
request's start, and prints the busiest 60 s window and the virtual time.
"""

from __future__ import annotations

import bisect
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from _compiled import compile_edsync

from edsync.mirror.db import create_mirror_engine, ensure_schema
from edsync.ops.logs import configure
from edsync.pacing import WINDOW
from edsync.run.drain import drain
from edsync.settings import HttpUrl, LogSettings, MirrorSettings, Secret
from edsync.sources.dreamapply.journal import DreamApplySource, Settings
from edsync_sim import dreamapply, dreamapply_lists, dreamapply_resources
from edsync_sim.server import DEFAULT_API_KEY, RecordedRequest, Simulator

PER_MINUTE = 180  # DreamApply's quota per API key
JOURNAL = ("journal HEAD", "journal GET")
KINDS: tuple[tuple[str, re.Pattern[str], str | None], ...] = (
    ("journal HEAD", dreamapply.JOURNAL_PATH, "HEAD"),
    ("journal GET", dreamapply.JOURNAL_PATH, "GET"),
    ("application reads", dreamapply_resources.APPLICATION_PATH, None),
    ("batch list reads", dreamapply_lists.APPLICATIONS_PATH, "GET"),
    ("application children", dreamapply_resources.CHILDREN_PATH, None),
    ("offers lists", dreamapply_lists.OFFERS_PATH, None),
    ("applicant reads", dreamapply_resources.APPLICANT_PATH, None),
    ("invoice reads", dreamapply_resources.INVOICE_PATH, None),
    ("offer types", dreamapply_lists.OFFER_TYPES_PATH, None),
    ("academic terms", dreamapply_lists.ACADEMIC_TERMS_PATH, None),
    ("purged resources", dreamapply_lists.PURGED_PATH, None),
)


# -- the child: one drain ---------------------------------------------------------


def open_source(url: str, *, snapshot: bool, batch: bool, per_minute: int) -> DreamApplySource:
    settings = Settings(
        name="dreamapply",
        kind="dreamapply",
        base_url=HttpUrl(url),
        api_key=Secret("EDSYNC_BENCH_KEY", DEFAULT_API_KEY),
        max_requests_per_minute=per_minute,
        snapshot=snapshot,
    )
    source = DreamApplySource(settings)
    source._resources.batch = batch
    return source


def drive(url: str, db: str, snapshot: str, batch: str) -> int:
    """``--drive``: drain once, unpaced; print the result as one JSON line."""
    configure(LogSettings(level="warning", format="json"))
    engine = create_mirror_engine(MirrorSettings(url=f"sqlite:///{db}"))
    ensure_schema(engine, auto_migrate=True)
    source = open_source(url, snapshot=snapshot == "1", batch=batch == "1", per_minute=0)
    started = time.perf_counter()
    try:
        result = drain(engine, source)
    finally:
        source.close()
    seconds = time.perf_counter() - started
    figures = {"seconds": seconds, "refresh_s": result.stages.refresh}
    figures |= {"received": result.received, "refreshed": result.refreshed}
    print(json.dumps({**figures, "requests": source.http.requests}))
    return 0


# -- the parent: datasets, runs, counts ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Drained:
    label: str
    seconds: float  # the drain call, unpaced (no process start-up)
    refresh_s: float
    received: int
    refreshed: int
    requests: list[RecordedRequest]


def run(sim: Simulator, db: Path, label: str, *, snapshot: bool, batch: bool) -> Drained:
    first = len(sim.requests)
    flags = ["1" if snapshot else "0", "1" if batch else "0"]
    command = [sys.executable, __file__, "--drive", sim.url, str(db), *flags]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"drain failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    requests = sim.requests[first:]
    if out["requests"] != len(requests):
        sys.exit(f"the client sent {out['requests']} requests, the simulator saw {len(requests)}")
    return Drained(
        label, out["seconds"], out["refresh_s"], out["received"], out["refreshed"], requests
    )


def named(sim: Simulator, start: int, stop: int) -> Counter[str]:
    """Distinct applications, applicants and invoices the events at ``start:stop`` link to."""
    ids: dict[str, set[str]] = {"application": set(), "applicant": set(), "invoice": set()}
    for fragment in sim.journal.fragments(frozenset(), range(start, stop)):
        item = orjson.loads(fragment.partition(b":")[2])
        for field, seen in ids.items():
            link = item.get(field)
            if isinstance(link, str):
                seen.add(link.rpartition("/")[2])
    return Counter({field: len(seen) for field, seen in ids.items()})


def build(events: int, applications: int) -> Simulator:
    """``events`` events, grown until they name at least ``applications`` applications."""
    sim = Simulator(events=events, journal_window=None)
    while (missing := applications - named(sim, 0, len(sim.journal))["application"]) > 0:
        sim.journal.append(max(missing * 15, 100))  # about 19 events an application
    return sim


def describe(sim: Simulator, start: int, stop: int) -> str:
    counts = named(sim, start, stop)
    return (
        f"{stop - start:,} journal events naming {counts['application']:,} applications, "
        f"{counts['applicant']:,} applicants, {counts['invoice']:,} invoices"
    )


def kind(request: RecordedRequest) -> str:
    for name, pattern, method in KINDS:
        if pattern.fullmatch(request.path) and method in (None, request.method):
            return name
    return f"other ({request.method} {request.path})"


def report(title: str, runs: Sequence[Drained]) -> None:
    counts = [Counter(kind(r) for r in drained.requests) for drained in runs]
    names = [name for name, _, _ in KINDS]
    names += sorted({n for c in counts for n in c} - set(names))
    print(f"  {title}")
    print(f"    {'':<34}" + "".join(f"{d.label:>16}" for d in runs))

    def row(label: str, values: Sequence[str]) -> None:
        print(f"    {label:<34}" + "".join(f"{v:>16}" for v in values))

    for name in names:
        if any(c[name] for c in counts):
            row(name, [f"{c[name]:,}" for c in counts])
    totals = [len(d.requests) for d in runs]
    reads = [t - sum(c[k] for k in JOURNAL) for t, c in zip(totals, counts, strict=True)]
    row("total requests", [f"{t:,}" for t in totals])
    row("resources refreshed", [f"{d.refreshed:,}" for d in runs])
    per = [max(d.refreshed, 1) for d in runs]
    row("requests / resource", [f"{t / n:.3f}" for t, n in zip(totals, per, strict=True)])
    row("  refresh reads / resource", [f"{r / n:.3f}" for r, n in zip(reads, per, strict=True)])
    row(f"catch-up at {PER_MINUTE}/min (min)", [f"{t / PER_MINUTE:.1f}" for t in totals])
    row("wall unpaced (s)", [f"{d.seconds:.2f}" for d in runs])
    row("  of which refresh (s)", [f"{d.refresh_s:.2f}" for d in runs])


def measure(sim: Simulator, tmp: Path, name: str) -> None:
    size = len(sim.journal)
    print(f"\n{name}: {describe(sim, 0, size)}")
    empty = [
        run(sim, tmp / f"{name}-{label}.db", label, snapshot=False, batch=batch)
        for label, batch in (("batch on", True), ("batch off", False))
    ]
    report("empty mirror, snapshot = false (journal + refresh)", empty)
    snapped = [
        run(sim, tmp / f"{name}-snap-{label}.db", "snapshot", snapshot=True, batch=True)
        for label in ("on", "off")
    ]
    print(f"  snapshot (list endpoints): {len(snapped[0].requests):,} requests")
    sim.journal.append(size)
    print(f"  then {describe(sim, size, len(sim.journal))}")
    after = [
        run(sim, tmp / f"{name}-snap-{label}.db", f"batch {label}", snapshot=True, batch=batch)
        for label, batch in (("on", True), ("off", False))
    ]
    report("after the snapshot: the journal that follows it + refresh", after)


# -- the paced run ------------------------------------------------------------------


class FakeTime:
    """The pacer's clock and sleep: sleeping moves the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def busiest(starts: Sequence[float], window: float) -> int:
    """The most starts in any half-open window [t, t + window) (it opens at a start)."""
    ordered = sorted(starts)
    return max(bisect.bisect_left(ordered, s + window) - i for i, s in enumerate(ordered))


def paced(events: int, tmp: Path) -> None:
    with Simulator(events=events, journal_window=None) as sim:
        engine = create_mirror_engine(MirrorSettings(url=f"sqlite:///{tmp}/paced.db"))
        ensure_schema(engine, auto_migrate=True)
        source = open_source(sim.url, snapshot=False, batch=True, per_minute=PER_MINUTE)
        pacer, fake, starts = source.http.pacer, FakeTime(), []
        pacer.clock, pacer.sleep = fake.clock, fake.sleep
        acquire = pacer.acquire

        def counted() -> float:
            slept = acquire()
            starts.append(fake.now)
            return slept

        pacer.acquire = counted  # type: ignore[method-assign]
        started = time.perf_counter()
        result = drain(engine, source, prefetch=0)
        wall = time.perf_counter() - started
        source.close()
        engine.dispose()
    n, span = len(starts), max(starts) - min(starts)
    print(f"\npaced run: {events:,} events, max_requests_per_minute = {PER_MINUTE}, fake clock")
    print(f"  requests started    {n:>9,}   ({result.refreshed:,} resources refreshed)")
    print(
        f"  busiest 60 s window {busiest(starts, WINDOW):>9}   (half-open [t, t + 60), limit 180)"
    )
    print(f"  closed [t, t + 60]  {busiest(starts, WINDOW + 1e-9):>9}")
    print(f"  virtual time        {span / 60:>9.2f} min  (first start to last)")
    print(f"  (requests - 1)/180  {(n - 1) / PER_MINUTE:>9.2f} min  (the pacing's promise)")
    print(f"  real time           {wall:>9.2f} s")


def main() -> int:
    if sys.argv[1:2] == ["--drive"]:
        return drive(*sys.argv[2:6])
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--applications", type=int, default=3_000, help="0: skip that dataset")
    parser.add_argument("--paced-events", type=int, default=10_000)
    args = parser.parse_args()
    compile_edsync()
    configure(LogSettings(level="warning", format="json"))
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        with build(args.events, 0) as sim:
            measure(sim, tmp, "events")
        if args.applications:
            with build(args.events, args.applications) as sim:
                measure(sim, tmp, "applications")
        paced(args.paced_events, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
