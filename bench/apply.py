"""Time ``Applier.apply`` alone, in-process, on pages fetched and normalized beforehand.

    python bench/apply.py [--events 100000] [--shape current|heavy] [--rounds 3]
                          [--profile FILE]

No other thread runs while the pages are applied, so the figures are the
apply's own (fold and SQL), without the prefetch thread's GIL contention or
process start-up. Each round applies every page into a new SQLite mirror,
then runs the bare loop (``backfill.bare_page``, the issue's yardstick, on its
stdlib defaults) over the same pages into another: the two alternate, so a
busy moment of this shared machine slows both. The median round is printed.
``--profile`` writes a cProfile of the last round's apply.
"""

from __future__ import annotations

import argparse
import cProfile
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _compiled import compile_edsync
from backfill import KEY, bare_page, write_config

from edsync.config import load_config
from edsync.mirror.apply import Applier
from edsync.mirror.db import create_mirror_engine, ensure_schema
from edsync.model import Bounds, Change, Cursor, Quarantined, json_value
from edsync.normalize import normalize_page
from edsync.settings import MirrorSettings
from edsync.sources import create
from edsync.sources import records as kind_records
from edsync_sim.server import Simulator


def pages(events: int, shape: str) -> list[tuple[list[Change | Quarantined], Cursor]]:
    with Simulator(events=events, journal_window=None, edlink_people=1) as sim:
        if shape == "heavy":
            import heavy

            heavy.install(sim.journal, events)
        with tempfile.TemporaryDirectory() as tmp:
            config_path = Path(tmp) / "edsync.toml"
            write_config(config_path, sim.url, "sqlite://", ["applicant", "application", "offer"])
            config = load_config(config_path, {"EDSYNC_BENCH_KEY": KEY})
        source = create(config.sources["dreamapply"])
        out = []
        for page in source.pages(None, Bounds()):
            out.append((normalize_page(page.events, source.normalize), page.cursor))
    return out


def apply_all(
    pages_: list[tuple[list[Change | Quarantined], Cursor]], db: Path, profile: str | None
) -> tuple[float, float]:
    engine = create_mirror_engine(MirrorSettings(url=f"sqlite:///{db}"))
    ensure_schema(engine, auto_migrate=True)
    applier = Applier(engine, "dreamapply", "applicant", records=kind_records("dreamapply"))
    profiler = cProfile.Profile() if profile else None
    fold = 0.0
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    for changes, cursor in pages_:
        fold += applier.apply(changes, cursor).fold_seconds
    if profiler is not None:
        profiler.disable()
        assert profile is not None  # the profiler runs only when asked for a file
        profiler.dump_stats(profile)
    total = time.perf_counter() - started
    engine.dispose()
    return total, fold


def bare(pages_: list[tuple[list[Change | Quarantined], Cursor]], db: Path) -> float:
    engine = create_mirror_engine(MirrorSettings(url=f"sqlite:///{db}"))
    ensure_schema(engine, auto_migrate=True)
    engine.dispose()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=DELETE")  # the stdlib's default, as the loop
    chunks = [[(c.position, json_value(c.payload)) for c in changes] for changes, _ in pages_]
    started = time.perf_counter()
    for chunk in chunks:
        bare_page(conn, chunk)
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--shape", choices=("current", "heavy"), default="heavy")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile")
    args = parser.parse_args()
    compile_edsync()
    fetched = pages(args.events, args.shape)
    n = sum(len(changes) for changes, _ in fetched)
    rounds = []
    for round_ in range(args.rounds):
        last = round_ == args.rounds - 1
        with tempfile.TemporaryDirectory() as tmp:
            total, fold = apply_all(fetched, Path(tmp) / "m.db", args.profile if last else None)
            loop = bare(fetched, Path(tmp) / "bare.db")
        figures = (total / n * 1e6, fold / n * 1e6, (total - fold) / n * 1e6, loop / n * 1e6)
        rounds.append(figures)
        print(describe(f"round {round_ + 1}", figures), flush=True)
    median = tuple(statistics.median(r[i] for r in rounds) for i in range(4))
    print(describe(f"median of {len(rounds)}", median))
    return 0


def describe(label: str, figures: tuple[float, ...]) -> str:
    apply, fold, sql, loop = figures
    return (
        f"{label}: apply {apply:.1f} µs an event (fold {fold:.1f}, sql {sql:.1f}); "
        f"bare loop {loop:.1f}; sql / bare {sql / loop:.2f}, apply / bare {apply / loop:.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
