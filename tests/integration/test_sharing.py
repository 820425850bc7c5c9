"""Daemons on one PostgreSQL mirror share the sources out (SPEC 8): each holds
about N/W, a dead one's sources go to the survivors, a newcomer evens them
out, and no source is ever polled by two at once."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from edsync.cli import main
from edsync.config import load_config
from edsync.mirror.db import create_mirror_engine
from tests.integration.daemon import DaemonProcess

INTERVAL = 1.0
PER_KIND = 9  # 18 sources: 6 each for three daemons, 9 for two


def fleet_config(write_config: Callable[..., Path], url: str) -> Path:
    """PER_KIND DreamApply and PER_KIND Edlink sources on one simulator."""
    tables = [f'interval = "{INTERVAL:g}s"\n']
    for n in range(1, PER_KIND):
        tables.append(
            f'[sources.da{n}]\nkind = "dreamapply"\nbase_url = "{url}"\n'
            'api_key_env = "DREAMAPPLY_API_KEY"\nmax_requests_per_minute = 0\n'
            f'snapshot = false\ninterval = "{INTERVAL:g}s"\n'
        )
    for n in range(PER_KIND):
        tables.append(
            f'[sources.ed{n}]\nkind = "edlink"\nbase_url = "{url}"\n'
            f'token_env = "EDLINK_TOKEN"\ninterval = "{INTERVAL:g}s"\n'
        )
    return write_config(url, extra="\n".join(tables))


@dataclass(frozen=True, slots=True)
class Fleet:
    sim: Any
    path: Path
    env: dict[str, str]  # what a daemon needs beside the test's environment


@pytest.fixture
def fleet(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> Fleet:
    """The simulator and a config of PER_KIND sources of each kind on it."""
    sim = make_simulator(events=40, edlink_people=5)
    monkeypatch.setenv("EDLINK_TOKEN", sim.edlink_token)
    return Fleet(sim, fleet_config(write_config, sim.url), {"EDLINK_TOKEN": sim.edlink_token})


def status(path: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert main(["status", "-c", str(path), "--json"]) == 0
    sources: list[dict[str, Any]] = orjson.loads(capsys.readouterr().out)["sources"]
    return sources


def heads(sim: Any) -> dict[str, str]:
    """The cursor a current source has, by kind."""
    with sim.edlink.locked() as graph:
        last = orjson.loads(graph.event_bodies(graph.events_count - 1, graph.events_count)[0])
    return {"dreamapply": str(len(sim.journal)), "edlink": last["id"]}


def held_by(report: list[dict[str, Any]]) -> Counter[int]:
    return Counter(s["holder"]["pid"] for s in report if s["holder"] is not None)


def wait_until(
    sim: Any,
    path: Path,
    capsys: pytest.CaptureFixture[str],
    done: Callable[[list[dict[str, Any]]], bool],
    timeout: float,
) -> tuple[list[dict[str, Any]], float]:
    """Sample ``status`` after each batch of polls the simulator sees, until
    ``done``; the last report and the seconds it took."""
    started = time.monotonic()
    while True:
        report = status(path, capsys)
        if done(report):
            return report, time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not done within {timeout}s: {held_by(report)}")
        sim.wait_for_requests(len(sim.requests) + len(report), timeout=INTERVAL)


@pytest.mark.sqlite_only
def test_status_names_the_one_daemon_of_a_sqlite_mirror_as_every_sources_holder(
    backend: str,
    fleet: Fleet,
    daemons: list[DaemonProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = fleet.path
    daemon = DaemonProcess(path, fleet.env)
    daemons.append(daemon)
    daemon.wait_event("daemon_started")

    report = status(path, capsys)
    assert held_by(report) == {daemon.proc.pid: 2 * PER_KIND}
    assert daemon.terminate()[0] == 0
    assert {s["holder"] is None for s in status(path, capsys)} == {True}


@pytest.mark.postgresql_only
def test_daemons_share_the_sources_take_over_the_dead_and_even_out_with_a_newcomer(
    backend: str,
    fleet: Fleet,
    daemons: list[DaemonProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim, path, env = fleet.sim, fleet.path, fleet.env
    names = list(load_config(path).sources)
    assert len(names) == 2 * PER_KIND
    daemons.extend(DaemonProcess(path, env) for _ in range(3))
    pids = {d.proc.pid for d in daemons}
    for daemon in daemons:
        daemon.wait_event("daemon_started")

    def current(report: list[dict[str, Any]]) -> bool:
        want = heads(sim)
        return all(s["cursor"] == want[s["kind"]] for s in report)

    def shared(among: set[int], each: int) -> Callable[[list[dict[str, Any]]], bool]:
        def check(report: list[dict[str, Any]]) -> bool:
            counts = held_by(report)
            return set(counts) == among and set(counts.values()) == {each} and current(report)

        return check

    report, _ = wait_until(sim, path, capsys, shared(pids, 6), timeout=60)
    assert {s["holder"]["host"] for s in report} == {report[0]["holder"]["host"]}

    # kill -9: the session ends, its locks with it; the survivors take its share.
    victim = daemons[0]
    victim.signal(signal.SIGKILL)
    victim.proc.wait()
    sim.journal.append(5)
    survivors = pids - {victim.proc.pid}
    _, took = wait_until(sim, path, capsys, shared(survivors, 9), timeout=30)
    assert took <= 2 * INTERVAL + 3  # two intervals, and the sampling's own time

    # A newcomer: the others hand sources back between polls until all hold 6.
    newcomer = DaemonProcess(path, env)
    daemons.append(newcomer)
    sim.journal.append(5)
    _, took = wait_until(sim, path, capsys, shared(survivors | {newcomer.proc.pid}, 6), timeout=30)
    assert took <= 2 * INTERVAL + 5  # its start-up too

    # Never two polls at once: every event once in the ledger, and every
    # source's count there is what its checkpoint says it applied.
    engine = create_mirror_engine(load_config(path).mirror)
    try:
        with engine.connect() as conn:
            doubled = conn.exec_driver_sql(
                "SELECT source, event_id FROM events GROUP BY source, event_id HAVING COUNT(*) > 1"
            ).all()
            totals: dict[str, int] = dict(
                conn.exec_driver_sql("SELECT source, events_total FROM checkpoints").all()
            )
            counted: dict[str, int] = dict(
                conn.exec_driver_sql("SELECT source, COUNT(*) FROM events GROUP BY source").all()
            )
            connections = Counter(
                name
                for (name,) in conn.exec_driver_sql(
                    "SELECT application_name FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name LIKE 'edsync %%'"
                ).all()
            )
    finally:
        engine.dispose()
    assert doubled == []
    assert {s: totals[s] for s in counted} == counted
    assert all(totals[f"da{n}"] == 50 for n in range(1, PER_KIND))
    for daemon in daemons[1:]:
        mine = sum(n for name, n in connections.items() if f" {daemon.proc.pid}@" in name)
        assert 1 <= mine <= 10
    for daemon in daemons[1:]:
        assert daemon.terminate()[0] == 0


@pytest.mark.postgresql_only
def test_metrics_show_each_daemons_share_and_its_handovers(
    backend: str,
    fleet: Fleet,
    daemons: list[DaemonProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.integration.test_daemon import metric

    path = fleet.path
    path.write_text(path.read_text() + '\n[metrics]\nlisten = "127.0.0.1:0"\n')
    daemons.extend(DaemonProcess(path, fleet.env) for _ in range(2))
    addresses = [d.wait_event("metrics_listening")["address"] for d in daemons]
    pids = {d.proc.pid for d in daemons}

    def halves(report: list[dict[str, Any]]) -> bool:
        return held_by(report) == dict.fromkeys(pids, PER_KIND)

    wait_until(fleet.sim, path, capsys, halves, timeout=60)
    for address in addresses:
        body = httpx.get(f"http://{address}/metrics").text
        assert metric(body, "edsync_sources_held") == PER_KIND
        assert metric(body, "edsync_daemons") == 2
        acquired = metric(body, "edsync_source_handovers_total", direction="acquired")
        released = metric(body, "edsync_source_handovers_total", direction="released") or 0
        assert acquired is not None
        assert acquired - released == PER_KIND
