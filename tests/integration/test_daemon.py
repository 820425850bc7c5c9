"""`edsync run` as a real subprocess: polling, signals, sd_notify, reload, metrics."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from edsync.cli import main
from edsync.config import load_config
from edsync.mirror.db import create_mirror_engine
from tests.integration.daemon import DaemonProcess

FAST = 'interval = "1s"\n'


def ledger_positions(config: Path) -> list[int]:
    engine = create_mirror_engine(load_config(config).mirror)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT position FROM events ORDER BY position").all()
    engine.dispose()
    return [r[0] for r in rows]


def test_run_follows_the_journal_idles_on_head_and_stops_cleanly(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    sim = make_simulator(events=500)
    path = write_config(sim.url, extra=FAST)
    daemon = start_daemon(path)
    daemon.wait_event("poll_done", source="dreamapply", cursor="500")

    # Idle: three more polls, each a single HEAD.
    before = len(sim.requests)
    assert sim.wait_for_requests(before + 3, timeout=10)
    assert {r.method for r in sim.requests[before:]} == {"HEAD"}

    # New events are in the mirror within one interval plus one second.
    appended = time.monotonic()
    sim.journal.append(50)
    daemon.wait_event("poll_done", source="dreamapply", cursor="550")
    assert time.monotonic() - appended <= 1.0 + 1.0

    code, elapsed = daemon.terminate()
    assert code == 0
    assert elapsed < 10

    # A restart loses and duplicates nothing.
    sim.journal.append(30)
    again = start_daemon(path)
    again.wait_event("poll_done", source="dreamapply", cursor="580")
    assert again.terminate()[0] == 0
    assert ledger_positions(path) == list(range(1, 581))


class BlackHole:
    """Accepts connections and never answers: a poll stuck in a network wait."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.accepted = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        self.conns.append(conn)
        self.accepted.set()

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.sock.close()


def test_sigterm_exits_within_10s_even_when_a_poll_hangs(
    write_config: Callable[..., Path], start_daemon: Callable[..., DaemonProcess]
) -> None:
    hole = BlackHole()
    try:
        path = write_config(hole.url, extra=FAST + 'timeout = "60s"\n')
        daemon = start_daemon(path)
        daemon.wait_event("daemon_started")
        assert hole.accepted.wait(10)
        code, elapsed = daemon.terminate(timeout=12)
        assert code == 0
        assert elapsed < 10
    finally:
        hole.close()


def test_sd_notify_ready_watchdog_stopping(
    tmp_path: Path,
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    sim = make_simulator(events=10)
    path = write_config(sim.url, extra=FAST)
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(15)
        daemon = start_daemon(path, NOTIFY_SOCKET=address, WATCHDOG_USEC="400000")
        received: list[str] = []

        def receive_until(state: str) -> None:
            # WATCHDOG=1 keeps coming while the daemon lives: bound the wait, so a
            # daemon that never sends `state` fails here instead of hanging.
            deadline = time.monotonic() + 30
            while not any(state in message.splitlines() for message in received):
                assert time.monotonic() < deadline, f"no {state} in {received[-5:]}"
                received.append(sock.recv(4096).decode())

        receive_until("READY=1")
        receive_until("WATCHDOG=1")
        daemon.signal(signal.SIGTERM)
        receive_until("STOPPING=1")
        assert daemon.proc.wait(timeout=10) == 0
    assert any(m.startswith("READY=1") and "STATUS=" in m for m in received)


def test_sighup_takes_a_good_config_and_refuses_a_bad_one(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    first = make_simulator(events=100)
    second = make_simulator(events=70)
    path = write_config(first.url, extra=FAST)
    daemon = start_daemon(path)
    daemon.wait_event("poll_done", source="dreamapply", cursor="100")

    good = path.read_text() + (
        f'[sources.second]\nkind = "dreamapply"\nbase_url = "{second.url}"\n'
        'api_key_env = "DREAMAPPLY_API_KEY"\nmax_requests_per_minute = 0\nsnapshot = false\n' + FAST
    )
    path.write_text(good)
    daemon.signal(signal.SIGHUP)
    daemon.wait_event("config_reloaded")
    daemon.wait_event("poll_done", source="second", cursor="70")
    # The added source got its typed views with the reload (README, Query the mirror).
    engine = create_mirror_engine(load_config(path).mirror)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM second_applicants").scalar_one() > 0
    engine.dispose()

    path.write_text(good + "[sources.second.oops]\n")
    daemon.signal(signal.SIGHUP)
    refused = daemon.wait_event("config_reload_refused")
    assert "sources.second.oops" in refused["error"]
    # The old config keeps running: both sources still follow their journals.
    first.journal.append(5)
    second.journal.append(5)
    daemon.wait_event("poll_done", source="dreamapply", cursor="105")
    # The two sources poll independently: the second may have got there first.
    daemon.wait_event("poll_done", source="second", cursor="75", seen=True)
    assert daemon.terminate()[0] == 0


def metric(body: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in body.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key.split("{")[0] != name:
            continue
        got = key[len(name) :].strip("{}")
        if ",".join(sorted(got.split(","))) == want or (not labels and not got):
            return float(value)
    return None


def test_metrics_move_after_a_poll_and_healthz_turns_red(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    sim = make_simulator(events=300)
    # A 2 s interval: after the second 401 the auth backoff holds the next
    # poll off for 4 s, time for the scrapes below on a loaded machine too.
    extra = 'interval = "2s"\n[metrics]\nlisten = "127.0.0.1:0"\nunhealthy_after = "500ms"\n'
    path = write_config(sim.url, extra=extra)
    daemon = start_daemon(path)
    address = daemon.wait_event("metrics_listening")["address"]
    daemon.wait_event("poll_done", source="dreamapply", cursor="300")

    body = httpx.get(f"http://{address}/metrics").text
    assert metric(body, "edsync_events_applied_total", source="dreamapply", status="applied") == 300
    assert metric(body, "edsync_checkpoint_position", source="dreamapply") == 300
    assert metric(body, "edsync_lag_events", source="dreamapply") == 0
    assert (metric(body, "edsync_polls_total", source="dreamapply", outcome="ok") or 0) >= 1
    assert metric(body, "edsync_last_success_timestamp_seconds", source="dreamapply")
    assert metric(body, "edsync_page_duration_seconds_count", source="dreamapply")
    assert httpx.get(f"http://{address}/healthz").status_code == 200

    sim.inject(401, times=1000)
    daemon.wait_event("poll_failed", source="dreamapply", failures=2)
    health = httpx.get(f"http://{address}/healthz")
    assert health.status_code == 503
    assert "dreamapply" in health.json()["failing_seconds"]
    body = httpx.get(f"http://{address}/metrics").text
    assert metric(body, "edsync_errors_total", source="dreamapply", kind="auth") == 2
    assert metric(body, "edsync_source_healthy", source="dreamapply") == 0
    assert metric(body, "edsync_consecutive_failures", source="dreamapply") == 2
    assert daemon.terminate()[0] == 0


def test_check_names_the_unreachable_and_the_refused(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(events=5)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    monkeypatch.setenv("WRONG_KEY", "not-the-key")
    extra = "".join(
        f'[sources.{name}]\nkind = "dreamapply"\nbase_url = "{url}"\napi_key_env = "{var}"\n'
        for name, url, var in (
            ("unreachable", dead_url, "DREAMAPPLY_API_KEY"),
            ("refused", sim.url, "WRONG_KEY"),
        )
    )
    path = write_config(sim.url, extra=extra)

    assert main(["check", "-c", str(path)]) == 1

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "source dreamapply: ok (5 events upstream)"
    assert lines[1].startswith("source unreachable: FAILED:")
    assert "connection failed" in lines[1]
    assert lines[2].startswith("source refused: FAILED:")
    assert "401" in lines[2]
    assert "not-the-key" not in "\n".join(lines)


def test_status_json_reports_every_field(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HUB_KEY", "hub-secret")
    sim = make_simulator(events=40)
    sim.journal.append_raw({"logged": "2026-06-01T08:00:00+00:00"})
    extra = (
        '[sinks.hub]\nkind = "learninghub"\nbase_url = "https://hub.example.org"\n'
        'program_id = "FOO"\nuser_id = "edsync"\napi_key_env = "HUB_KEY"\n'
    )
    path = write_config(sim.url, extra=extra)
    assert main(["backfill", "-c", str(path)]) == 0
    capsys.readouterr()

    assert main(["status", "-c", str(path), "--json"]) == 0

    report = orjson.loads(capsys.readouterr().out)
    (source,) = report["sources"]
    assert set(source) >= {
        "source",
        "cursor",
        "events_total",
        "lag",
        "last_success",
        "consecutive_failures",
        "last_error",
        "gap",
        "quarantined",
        "holder",
    }
    assert source["holder"] is None  # no daemon runs: nobody polls it now
    assert (source["cursor"], source["events_total"], source["lag"]) == ("41", 41, 0)
    assert (source["quarantined"], source["last_error"], source["gap"]) == (1, None, None)
    assert source["last_success"] is not None
    assert source["consecutive_failures"] == 0
    (sink,) = report["sinks"]
    assert sink == {"sink": "hub", "pending": 0, "failed": 0, "delivered": 0, "last_error": None}
    assert "hub-secret" not in orjson.dumps(report).decode()


def test_backfill_sigterm_exits_0_within_10s_even_in_a_network_wait(
    write_config: Callable[..., Path],
) -> None:
    hole = BlackHole()
    try:
        path = write_config(hole.url, extra='timeout = "60s"\n')
        with subprocess.Popen(
            [sys.executable, "-m", "edsync", "backfill", "-c", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ) as proc:
            assert hole.accepted.wait(10)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=12)
        assert code == 0
        assert time.monotonic() - started < 10
    finally:
        hole.close()
