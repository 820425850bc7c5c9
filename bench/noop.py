"""A caught-up ``edsync backfill``: wall time of the whole process, requests sent.

    bench/noop.sh [--events 2000] [--runs 5]

The simulator runs in this process and records every request; ``edsync
backfill`` runs as a fresh process each time, as cron or a systemd timer
would start it. The first run catches up; the next ``--runs`` find nothing
to do and should cost one HEAD each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _compiled import compile_edsync

from edsync_sim.server import DEFAULT_API_KEY, Simulator


def backfill(config: Path) -> float:
    env = {**os.environ, "EDSYNC_BENCH_KEY": DEFAULT_API_KEY}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "edsync", "backfill", "-c", str(config), "--no-deliver"],
        env=env,
        check=True,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    compile_edsync()
    with Simulator(events=args.events) as sim, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "edsync.toml"
        config.write_text(
            f'[mirror]\nurl = "sqlite:///{tmp}/edsync.db"\n\n'
            f'[log]\nlevel = "warning"\n\n'
            f'[sources.dreamapply]\nkind = "dreamapply"\nbase_url = "{sim.url}"\n'
            'api_key_env = "EDSYNC_BENCH_KEY"\nmax_requests_per_minute = 0\n'
            'expand = ["applicant", "application", "offer"]\n'
        )
        backfill(config)  # catch up (and create the mirror)
        walls, sent = [], []
        for _ in range(args.runs):
            before = len(sim.requests)
            walls.append(backfill(config))
            sent.append([f"{r.method} {r.path}" for r in sim.requests[before:]])
    print(f"caught-up backfill, {args.runs} fresh processes")
    print(
        f"  wall median    {statistics.median(walls):.3f} s   (all: "
        + ", ".join(f"{w:.3f}" for w in walls)
        + ")"
    )
    print(f"  requests/run   {sorted({len(s) for s in sent})}   e.g. {sent[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
