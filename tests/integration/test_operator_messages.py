"""What an operator reads: errors that say what to fix, logs that stay JSON,
retries on /metrics, a status that forgets a failure once recovered, no lock
file left behind."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy.engine import make_url

from edsync.cli import main
from edsync.config import load_config
from edsync.mirror import checkpoints
from edsync.mirror.db import create_mirror_engine
from tests.integration.daemon import DaemonProcess
from tests.integration.test_daemon import BlackHole, metric

FAST = 'interval = "1s"\n'


def dead_url() -> str:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    return url


def json_lines(err: str) -> list[dict[str, Any]]:
    """Every log line of ``err`` (the CLI's own ``edsync: ...`` lines aside),
    each required to be JSON."""
    return [orjson.loads(line) for line in err.splitlines() if not line.startswith("edsync:")]


@pytest.mark.sqlite_only
def test_a_refused_key_names_its_environment_variable_and_source(
    backend: str,
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(events=5)
    monkeypatch.setenv("WRONG_KEY", "not-the-key")
    path = write_config(sim.url)
    path.write_text(path.read_text().replace('"DREAMAPPLY_API_KEY"', '"WRONG_KEY"'))

    assert main(["backfill", "-c", str(path)]) == 1

    err = capsys.readouterr().err
    failure = next(line for line in err.splitlines() if line.startswith("edsync: source"))
    assert "source 'dreamapply'" in failure
    assert "HTTP 401" in failure
    assert "environment variable WRONG_KEY" in failure
    assert "not-the-key" not in err


@pytest.mark.sqlite_only
def test_an_unreachable_source_names_its_url_in_each_retry_and_in_the_failure(
    backend: str,
    write_config: Callable[..., Path],
    fast_retries: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = dead_url()
    path = write_config(url)

    assert main(["backfill", "-c", str(path)]) == 1

    err = capsys.readouterr().err
    assert "<context block>" not in err
    retries = [line for line in json_lines(err) if line["event"] == "http_retry"]
    assert len(retries) == 4  # stamina's test mode: 5 attempts
    for retry in retries:
        assert retry["target"] == "source 'dreamapply'"
        assert retry["url"].startswith(f"{url}/")
        assert retry["cause"] == "connect"
    failure = next(line for line in err.splitlines() if line.startswith("edsync: source"))
    assert "connection failed" in failure
    assert f"{url}/" in failure


def test_library_warnings_come_out_as_json_lines(
    backend: str, write_config: Callable[..., Path], daemons: list[DaemonProcess]
) -> None:
    """A poll stuck past its interval makes APScheduler warn, through stdlib
    logging; that line is JSON like the rest."""
    hole = BlackHole()
    try:
        path = write_config(hole.url, extra=FAST + 'timeout = "60s"\n')
        daemon = DaemonProcess(path)
        daemons.append(daemon)
        warning = daemon.wait_for(
            lambda line: "maximum number of running instances" in str(line.get("event"))
        )
        assert warning["level"] == "warning"
        assert warning["logger"].startswith("apscheduler")
        assert "timestamp" in warning
        assert daemon.terminate()[0] == 0
    finally:
        hole.close()
    assert [line for line in daemon.seen if line["event"] == "non_json"] == []


@pytest.mark.sqlite_only
def test_retries_show_on_metrics_by_source_and_cause(
    backend: str,
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    daemons: list[DaemonProcess],
) -> None:
    sim = make_simulator(events=50)
    sim.inject(503, times=2, route="dreamapply")
    extra = FAST + '[metrics]\nlisten = "127.0.0.1:0"\n'
    daemon = DaemonProcess(write_config(sim.url, extra=extra))
    daemons.append(daemon)
    address = daemon.wait_event("metrics_listening")["address"]
    daemon.wait_event("poll_done", source="dreamapply", cursor="50")

    body = httpx.get(f"http://{address}/metrics").text
    assert metric(body, "edsync_http_retries_total", source="dreamapply", cause="http_503") == 2
    assert daemon.terminate()[0] == 0


def test_status_forgets_the_last_error_once_the_source_recovers(
    backend: str, make_simulator: Callable[..., Any], write_config: Callable[..., Path]
) -> None:
    sim = make_simulator(events=30)
    path = write_config(sim.url)
    sim.inject(401, times=1)
    assert main(["backfill", "-c", str(path)]) == 1
    engine = create_mirror_engine(load_config(path).mirror)
    failed = checkpoints.load(engine, "dreamapply")
    assert failed is not None
    assert failed.last_error is not None
    assert "401" in failed.last_error

    assert main(["backfill", "-c", str(path)]) == 0

    recovered = checkpoints.load(engine, "dreamapply")
    assert recovered is not None
    assert (recovered.consecutive_failures, recovered.last_error) == (0, None)
    engine.dispose()


@pytest.mark.sqlite_only
@pytest.mark.parametrize("stuck", [False, True], ids=["idle", "poll-stuck"])
def test_a_clean_stop_leaves_no_run_lock_file(
    backend: str,
    stuck: bool,
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    daemons: list[DaemonProcess],
) -> None:
    hole = BlackHole()
    try:
        url = hole.url if stuck else make_simulator(events=20).url
        path = write_config(url, extra=FAST + 'timeout = "60s"\n')
        database = make_url(load_config(path).mirror.url).database
        lock = Path(f"{database}.run.lock")
        daemon = DaemonProcess(path)
        daemons.append(daemon)
        if stuck:
            daemon.wait_event("daemon_started")
            assert hole.accepted.wait(10)
        else:
            daemon.wait_event("poll_done", source="dreamapply", cursor="20")
        assert lock.exists()
        assert daemon.terminate()[0] == 0
    finally:
        hole.close()
    assert not lock.exists()
