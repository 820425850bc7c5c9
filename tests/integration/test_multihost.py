"""Several `edsync run` on one mirror (SPEC 8): one polls each source, another
takes over when it dies; on SQLite a second daemon refuses to start."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edsync.cli import main
from edsync.config import load_config
from edsync.mirror.db import create_mirror_engine
from tests.conftest import mirror_digest
from tests.integration.daemon import DaemonProcess

INTERVAL = 1.0


@pytest.mark.postgresql_only
def test_three_daemons_one_holder_takeover_within_an_interval(
    backend: str,
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    daemons: list[DaemonProcess],
) -> None:
    sim = make_simulator(events=2000)
    path = write_config(sim.url, extra=f'interval = "{INTERVAL:g}s"\n')
    daemons.extend(DaemonProcess(path) for _ in range(3))

    def holder_among(candidates: list[DaemonProcess], cursor: str) -> DaemonProcess:
        """The one that reports polling up to ``cursor``: only the lock holder does."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for daemon in candidates:
                try:
                    daemon.wait_for(
                        lambda line: (
                            line.get("event") == "poll_done" and line.get("cursor") == cursor
                        ),
                        timeout=0.2,
                    )
                except AssertionError:
                    continue
                return daemon
        raise AssertionError(f"no daemon reached cursor {cursor}")

    first = holder_among(daemons, "2000")
    others = [d for d in daemons if d is not first]
    for other in others:
        other.wait_event("source_standby", source="dreamapply", seen=True)

    first.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    first.proc.wait()
    taken = None
    deadline = killed_at + INTERVAL + 5
    while taken is None and time.monotonic() < deadline:
        for other in others:
            try:
                other.wait_event("source_lock_acquired", timeout=0.1)
            except AssertionError:
                continue
            taken = other
            break
    assert taken is not None, "no daemon took the lock over"
    assert time.monotonic() - killed_at <= INTERVAL + 1.5

    sim.journal.append(300)
    taken.wait_event("poll_done", source="dreamapply", cursor="2300")
    for daemon in others:
        assert daemon.terminate()[0] == 0

    clean = write_config(sim.url, db="clean.db", name="clean.toml")
    assert main(["backfill", "-c", str(clean)]) == 0
    shared = create_mirror_engine(load_config(path).mirror)
    alone = create_mirror_engine(load_config(clean).mirror)
    try:
        assert mirror_digest(shared) == mirror_digest(alone)
    finally:
        shared.dispose()
        alone.dispose()


@pytest.mark.sqlite_only
def test_a_second_daemon_on_one_sqlite_file_refuses_to_start(
    backend: str,
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    daemons: list[DaemonProcess],
) -> None:
    sim = make_simulator(events=10)
    path = write_config(sim.url, extra=f'interval = "{INTERVAL:g}s"\n')
    first = DaemonProcess(path)
    daemons.append(first)
    first.wait_event("daemon_started")
    second = DaemonProcess(path)
    daemons.append(second)
    assert second.proc.wait(timeout=20) == 1
    second.close()
    assert b"already using" in second.output()
    assert b"Traceback" not in second.output()
    assert first.terminate()[0] == 0
