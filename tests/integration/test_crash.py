"""SIGKILL a real `edsync backfill` at 20 seeded random points; every restart ends
with a mirror identical to a clean run's (SPEC 4, invariant 4)."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edsync.cli import main
from edsync.config import MirrorSettings
from edsync.mirror.db import create_mirror_engine
from tests.conftest import mirror_digest
from tests.integration.test_backfill import run_until_killed

EVENTS = 50_000
PAGES = EVENTS // 1024  # full pages before the last, short one
TRIALS = 20


def test_twenty_sigkills_each_rerun_equals_the_clean_run(
    make_simulator: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    sim = make_simulator(events=EVENTS, seed=11)
    clean_cfg = write_config(sim.url, db="clean.db", name="clean.toml")
    assert main(["backfill", "-c", str(clean_cfg)]) == 0
    clean = mirror_digest(
        create_mirror_engine(MirrorSettings(f"sqlite:///{tmp_path / 'clean.db'}"))
    )

    rng = random.Random(20261123)
    identical = 0
    for trial in range(TRIALS):
        cfg = write_config(sim.url, db=f"killed{trial}.db", name=f"killed{trial}.toml")
        run_until_killed(cfg, rng.randint(1, PAGES - 1))
        assert main(["backfill", "-c", str(cfg)]) == 0
        engine = create_mirror_engine(MirrorSettings(f"sqlite:///{tmp_path / f'killed{trial}.db'}"))
        if mirror_digest(engine) == clean:
            identical += 1
        engine.dispose()
        (tmp_path / f"killed{trial}.db").unlink()
    print(f"crash test: {identical}/{TRIALS} identical")
    assert identical == TRIALS
