"""Why a second thread does not overlap edsync's apply: the GIL convoy.

    python bench/convoy.py [--events 50000]

Applies the same pre-fetched, normalized pages into a fresh SQLite mirror
twice, once alone and once beside a thread that only runs Python. SQLite
gives the GIL back at every statement; if the other thread is runnable it
takes the GIL and keeps it for a whole switch interval (5 ms), so each
statement of the apply waits that long for it back. Prints wall and CPU
seconds of both runs: the apply does not overlap the thread, it is slowed
by it.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import structlog
from _compiled import compile_edsync
from backfill import KEY, start_simulator, write_config

from edsync.config import load_config
from edsync.mirror.apply import Applier
from edsync.mirror.db import create_mirror_engine, ensure_schema
from edsync.model import Bounds, Change, Quarantined, RawPage
from edsync.normalize import normalize_page
from edsync.settings import MirrorSettings
from edsync.sources import create
from edsync.sources import records as kind_records


def apply_all(
    db: Path, pages: list[RawPage], changes: list[list[Change | Quarantined]]
) -> tuple[float, float]:
    engine = create_mirror_engine(MirrorSettings(url=f"sqlite:///{db}"))
    ensure_schema(engine, auto_migrate=True)
    applier = Applier(engine, "dreamapply", "applicant", records=kind_records("dreamapply"))
    cpu, wall = time.process_time(), time.perf_counter()
    for page, page_changes in zip(pages, changes, strict=True):
        applier.apply(page_changes, page.cursor)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    engine.dispose()
    return wall, cpu


def spin(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(1000))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    compile_edsync()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    proc, url = start_simulator(args.events)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "edsync.toml"
            expand = ["applicant", "application", "offer"]
            write_config(config, url, f"sqlite:///{tmp}/unused.db", expand)
            os.environ["EDSYNC_BENCH_KEY"] = KEY
            source = create(load_config(config).sources["dreamapply"])
            pages = list(source.pages(None, Bounds()))
            changes = [normalize_page(page.events, source.normalize) for page in pages]
            alone = apply_all(Path(tmp) / "alone.db", pages, changes)
            stop = threading.Event()
            spinner = threading.Thread(target=spin, args=(stop,))
            spinner.start()
            try:
                beside = apply_all(Path(tmp) / "beside.db", pages, changes)
            finally:
                stop.set()
                spinner.join()
    finally:
        proc.terminate()
        proc.wait()
    events = sum(len(page.events) for page in pages)
    print(f"apply of {events:,} events into SQLite, pre-fetched and normalized")
    print(f"  alone                       {alone[0]:6.2f} s wall  {alone[1]:6.2f} s CPU")
    print(f"  beside a pure-Python thread {beside[0]:6.2f} s wall  {beside[1]:6.2f} s CPU")
    print(f"  slowdown                    {beside[0] / alone[0]:6.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
