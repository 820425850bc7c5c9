"""DreamApply's webhooks wake the poll (issue 34): real HTTP to the daemon's
listener, the real scheduler, the simulator's journal.

Most tests run the daemon in this process (``Daemon.serve`` in a thread), so
they can wait for its gates to settle (nothing running, nothing due) instead
of sleeping; polls are counted from the simulator's request log (each poll
starts with one HEAD of the journal). The lifecycle tests (latency, SIGTERM,
logs) run ``edsync run`` as a subprocess.
"""

from __future__ import annotations

import datetime as dt
import io
import random
import socket
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from rich.console import Console

from edsync.cli import main
from edsync.config import load_config
from edsync.mirror import Mirror
from edsync.ops import status
from edsync.run.daemon import Daemon
from edsync.run.waking import Waker
from edsync.run.webhooks import MAX_BODY
from edsync_sim import Simulator
from edsync_sim.dreamapply import JOURNAL_PATH, render
from edsync_sim.server import RecordedRequest
from tests.conftest import mirror_digest, mirror_engine
from tests.integration.daemon import DaemonProcess

AUTH = "Bearer 7f3c-webhook-authorization-value"
AUTH_ENV = "DREAMAPPLY_WEBHOOK_AUTH"
HOOK_PATH = "/hooks/dreamapply"
SLOW = 'interval = "5m"\n'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hook_table(port: int, path: str = HOOK_PATH, source: str = "dreamapply") -> str:
    return textwrap.dedent(
        f"""
        [sources.{source}.webhook]
        listen = "127.0.0.1:{port}"
        path = "{path}"
        authorization_env = "{AUTH_ENV}"
        """
    )


class NoJitter(random.Random):
    """The first interval poll at once: tests wait for it, not for a random delay."""

    def uniform(self, a: float, b: float) -> float:
        return a


def polls(sim: Simulator) -> int:
    return sum(1 for r in list(sim.requests) if r.method == "HEAD" and is_journal(r))


def is_journal(request: RecordedRequest) -> bool:
    return JOURNAL_PATH.fullmatch(request.path) is not None


def raw(port: int, request: str) -> int:
    """Send ``request`` as it is (what httpx would refuse to send); the status answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request.encode())
        status_line = sock.makefile("rb").readline()
    return int(status_line.split()[1])


def eventually(done: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``done`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.01)


class Running:
    """A daemon serving in a thread of this process, with its listener's URL."""

    def __init__(self, path: Path, port: int) -> None:
        self.config = load_config(path)
        self.engine: Mirror = mirror_engine(path)
        self.daemon = Daemon(path, self.config, self.engine, rng=NoJitter())
        self.port = port
        self.url = f"http://127.0.0.1:{port}{HOOK_PATH}"
        self.thread = threading.Thread(target=self.daemon.serve, daemon=True)
        self.thread.start()
        eventually(lambda: self.daemon.scheduler.running, what="scheduler started")

    def sample(self, name: str, **labels: str) -> float:
        value = self.daemon.metrics.registry.get_sample_value(name, labels)
        return value or 0.0

    def received(self, source: str = "dreamapply") -> float:
        return self.sample("edsync_webhooks_received_total", source=source)

    def settled(self, source: str = "dreamapply") -> bool:
        """No poll of ``source`` running or due, none waiting in the scheduler."""
        waiting = [j for j in self.daemon.scheduler.get_jobs() if j.id.startswith("wake:")]
        return self.daemon.waker.wakes.settled(source) and not waiting

    def settle(self, sim: Simulator, *, received: float = 0, at_least: int = 1) -> int:
        """Wait until ``received`` webhooks were taken in and the source settled
        after ``at_least`` polls in all; the polls so far."""
        eventually(lambda: self.received() >= received, what=f"{received} webhooks received")
        eventually(lambda: polls(sim) >= at_least and self.settled(), what="settled")
        return polls(sim)

    def stop(self) -> None:
        self.daemon.request_stop()
        self.thread.join(timeout=15)
        self.engine.dispose()


@pytest.fixture
def hooked(
    make_simulator: Callable[..., Simulator],
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Simulator, Running]]:
    """A simulator of 50 events and an in-process daemon (5 min interval) that
    has polled it once and listens for its webhooks."""
    monkeypatch.setenv(AUTH_ENV, AUTH)
    port = free_port()
    sim = make_simulator(events=50)
    running = Running(write_config(sim.url, extra=SLOW + hook_table(port)), port)
    running.settle(sim)
    try:
        yield sim, running
    finally:
        running.stop()


def test_a_webhook_is_answered_204_and_wakes_one_poll_that_reads_the_new_event(
    hooked: tuple[Simulator, Running],
) -> None:
    sim, running = hooked
    before = polls(sim)
    sim.journal.append(1)

    reply = httpx.post(running.url, content=b'{"51": {}}', headers={"Authorization": AUTH})

    assert (reply.status_code, reply.content) == (204, b"")
    after = running.settle(sim, received=1, at_least=before + 1)
    assert after == before + 1
    assert running.sample("edsync_polls_woken_total", source="dreamapply") == 1
    with running.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT MAX(position) FROM events").scalar() == 51


def test_a_wrong_or_missing_authorization_is_401_and_polls_nothing(
    hooked: tuple[Simulator, Running],
) -> None:
    sim, running = hooked
    before = polls(sim)
    refused = [{}, {"Authorization": "Bearer wrong"}, {"Authorization": AUTH[:-1]}]
    refused += [{"Authorization": ""}, {"Authorization": AUTH + "x"}]

    for headers in refused:
        reply = httpx.post(running.url, content=b"{}", headers=headers)
        assert reply.status_code == 401, headers

    labels = {"source": "dreamapply", "reason": "unauthorized"}
    eventually(lambda: running.sample("edsync_webhooks_rejected_total", **labels) == 5)
    assert running.settled()
    assert polls(sim) == before
    assert running.received() == 0


def test_other_paths_methods_and_bodies_are_refused(hooked: tuple[Simulator, Running]) -> None:
    sim, running = hooked
    before = polls(sim)
    auth = {"Authorization": AUTH}
    base = running.url.removesuffix(HOOK_PATH)

    assert httpx.post(f"{base}/hooks/other", headers=auth).status_code == 404
    assert httpx.get(running.url, headers=auth).status_code == 405
    too_large = httpx.post(running.url, content=b"x" * (MAX_BODY + 1), headers=auth)
    assert too_large.status_code == 413
    chunks = (b"x" * 65536 for _ in range(MAX_BODY // 65536 + 1))
    assert httpx.post(running.url, content=chunks, headers=auth).status_code == 413
    head = f"POST {HOOK_PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n"
    assert raw(running.port, f"{head}Content-Length: -1\r\n\r\n") == 400

    reasons = ("not_found", "method", "too_large", "bad_request")
    sources = {"not_found": ""}

    def counted(reason: str) -> float:
        labels = {"source": sources.get(reason, "dreamapply"), "reason": reason}
        return running.sample("edsync_webhooks_rejected_total", **labels)

    eventually(lambda: [counted(r) for r in reasons] == [1, 1, 2, 1])
    assert polls(sim) == before
    # A body at the limit, in one piece or in chunks, is fine.
    assert httpx.post(running.url, content=b"x" * MAX_BODY, headers=auth).status_code == 204
    chunked = (b"x" * 1024 for _ in range(8))
    assert httpx.post(running.url, content=chunked, headers=auth).status_code == 204


def test_a_hundred_webhooks_in_a_second_cause_at_most_two_polls(
    hooked: tuple[Simulator, Running],
) -> None:
    sim, running = hooked
    before = polls(sim)
    sim.journal.append(100)
    started = time.monotonic()
    with httpx.Client(headers={"Authorization": AUTH}) as client:
        codes = {client.post(running.url, content=b"{}").status_code for _ in range(100)}
    elapsed = time.monotonic() - started

    assert codes == {204}
    assert elapsed < 1.0, f"the burst took {elapsed:.2f}s"
    after = running.settle(sim, received=100, at_least=before + 1)
    assert 1 <= after - before <= 2
    with running.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT MAX(position) FROM events").scalar() == 150


def test_a_webhook_during_a_poll_causes_exactly_one_more_poll_after_it(
    hooked: tuple[Simulator, Running],
) -> None:
    sim, running = hooked
    before = polls(sim)
    inside, release = threading.Event(), threading.Event()

    def hold_the_poll(request: RecordedRequest) -> None:
        if request.method == "HEAD" and is_journal(request) and not inside.is_set():
            inside.set()
            release.wait(10)

    sim.on_request = hold_the_poll
    auth = {"Authorization": AUTH}
    assert httpx.post(running.url, headers=auth).status_code == 204
    assert inside.wait(10)  # the woken poll is in its HEAD
    sim.journal.append(1)  # written after the poll began: it may not see it
    for _ in range(5):
        assert httpx.post(running.url, headers=auth).status_code == 204
    eventually(lambda: running.received() == 6)
    released = time.monotonic()
    release.set()

    after = running.settle(sim, received=6, at_least=before + 2)
    assert after == before + 2
    heads = [r for r in sim.requests if r.method == "HEAD" and is_journal(r)]
    assert heads[-1].at > released  # after the held poll, not beside it
    with running.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT MAX(position) FROM events").scalar() == 51


def test_a_replayed_or_forged_payload_changes_nothing_but_timing(
    hooked: tuple[Simulator, Running],
) -> None:
    sim, running = hooked
    before = polls(sim)
    digest = mirror_digest(running.engine)
    replayed = render(sim.journal, [6], frozenset())  # event 7, applied long ago
    forged = orjson.dumps(
        {"999": {"event": "Applicant was deleted", "applicant": "/api/v9/applicants/1"}}
    )
    auth = {"Authorization": AUTH}
    for body in (replayed, replayed, forged):
        assert httpx.post(running.url, content=body, headers=auth).status_code == 204

    after = running.settle(sim, received=3, at_least=before + 1)
    assert 1 <= after - before <= 2  # the webhooks moved a poll earlier, no more
    assert mirror_digest(running.engine) == digest


def test_status_shows_the_last_webhook(
    hooked: tuple[Simulator, Running], capsys: pytest.CaptureFixture[str]
) -> None:
    sim, running = hooked
    sent = dt.datetime.now(dt.UTC)
    assert httpx.post(running.url, headers={"Authorization": AUTH}).status_code == 204
    running.settle(sim, received=1)
    path = Path(running.config.path)

    capsys.readouterr()
    assert main(["status", "-c", str(path), "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    (source,) = report["sources"]
    assert dt.datetime.fromisoformat(source["last_webhook"]) >= sent - dt.timedelta(seconds=1)
    screen = io.StringIO()
    status.render(report, Console(file=screen, width=80))
    assert f"last webhook  {source['last_webhook']}" in screen.getvalue()


def test_sources_share_an_address_each_under_its_own_path(
    make_simulator: Callable[..., Simulator],
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(AUTH_ENV, AUTH)
    port = free_port()
    sim = make_simulator(events=20)
    second = textwrap.dedent(
        f"""
        [sources.second]
        kind = "dreamapply"
        base_url = "{sim.url}"
        api_key_env = "DREAMAPPLY_API_KEY"
        max_requests_per_minute = 0
        snapshot = false
        interval = "5m"
        """
    )
    extra = SLOW + hook_table(port) + second + hook_table(port, "/hooks/second", "second")
    running = Running(write_config(sim.url, extra=extra), port)
    try:
        eventually(lambda: polls(sim) >= 2 and running.settled() and running.settled("second"))
        reply = httpx.post(
            running.url.replace(HOOK_PATH, "/hooks/second"), headers={"Authorization": AUTH}
        )
        assert reply.status_code == 204
        eventually(lambda: running.received("second") == 1)
        assert running.received("dreamapply") == 0
        eventually(lambda: running.sample("edsync_polls_woken_total", source="second") == 1)
    finally:
        running.stop()


# -- across processes: the mirror carries the webhook to the poller -------------------


def test_a_webhook_received_by_a_process_that_does_not_poll_wakes_the_one_that_does(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the proxy may hand the webhook to any daemon: the one that
    receives it writes its time, the one that polls the source reads it on its
    coordination round and wakes its poll."""
    from apscheduler.schedulers.background import BackgroundScheduler

    from edsync.ops.metrics import Metrics

    monkeypatch.setenv(AUTH_ENV, AUTH)
    path = write_config("https://apply.example.edu", extra=hook_table(free_port()))
    config = load_config(path)
    engine = mirror_engine(path)
    stop = threading.Event()

    def waker(holds: bool) -> tuple[Waker, BackgroundScheduler]:
        scheduler = BackgroundScheduler(timezone=dt.UTC)  # not started: its jobs wait
        made = Waker(
            scheduler, lambda *_: None, Metrics(), engine, holds=lambda _: holds, stop=stop
        )
        return made, scheduler

    receiver, receiver_jobs = waker(holds=False)
    poller, poller_jobs = waker(holds=True)
    poller.from_mirror(config)  # what the mirror says now: nothing to wake

    receiver.accepted("dreamapply")
    assert receiver_jobs.get_jobs() == []  # it does not poll the source
    poller.from_mirror(config)
    (job,) = poller_jobs.get_jobs()
    assert job.args[0] == "dreamapply"
    poller.from_mirror(config)  # read again: nothing new, nothing more
    assert len(poller_jobs.get_jobs()) == 1
    engine.dispose()


# -- the daemon as a process ------------------------------------------------------------


@pytest.mark.sqlite_only
def test_an_appended_event_is_in_the_mirror_within_2s_though_the_interval_is_5m(
    backend: str,
    make_simulator: Callable[..., Simulator],
    write_config: Callable[..., Path],
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}{HOOK_PATH}"
    sim = make_simulator(events=30, webhook_url=url, webhook_authorization=AUTH)
    daemon = start_daemon(write_config(sim.url, extra=SLOW + hook_table(port)), **{AUTH_ENV: AUTH})
    daemon.wait_event("daemon_started")

    # The first webhook wakes the first poll too (the interval's may be 5 s away).
    for event_id in range(31, 35):
        appended = time.monotonic()
        sim.journal.append(1)
        daemon.wait_event("poll_done", cursor=str(event_id), timeout=2.0)
        assert time.monotonic() - appended < 2.0
    assert sim.webhooks is not None
    assert {d.status for d in sim.webhooks.deliveries} == {204}
    assert daemon.terminate()[0] == 0


@pytest.mark.sqlite_only
def test_sigterm_exits_0_within_10s_with_the_listener_busy_and_the_value_never_logged(
    backend: str,
    make_simulator: Callable[..., Simulator],
    write_config: Callable[..., Path],
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    port = free_port()
    sim = make_simulator(events=10)
    path = write_config(sim.url, extra=SLOW + hook_table(port))
    path.write_text(path.read_text().replace('format = "json"', 'format = "json"\nlevel = "debug"'))
    daemon = start_daemon(path, **{AUTH_ENV: AUTH})
    daemon.wait_event("webhooks_listening")
    daemon.wait_event("daemon_started", seen=True)
    url = f"http://127.0.0.1:{port}{HOOK_PATH}"
    wrong = "Bearer not-the-value-but-close-7f3c"
    assert httpx.post(url, headers={"Authorization": wrong}).status_code == 401
    assert httpx.post(url, headers={"Authorization": AUTH}).status_code == 204
    daemon.wait_event("webhook_rejected", reason="unauthorized", seen=True)
    daemon.wait_event("webhook_received", seen=True)
    # A client that never finishes its request, and one idle on keep-alive.
    stalled = socket.create_connection(("127.0.0.1", port))
    stalled.sendall(f"POST {HOOK_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n".encode())
    idle = httpx.Client()
    assert idle.post(url, headers={"Authorization": AUTH}).status_code == 204

    code, elapsed = daemon.terminate()

    assert (code, elapsed < 10) == (0, True)
    logged = daemon.output()
    assert AUTH.encode() not in logged
    assert AUTH.split()[1].encode() not in logged
    assert wrong.split()[1].encode() not in logged
    stalled.close()
    idle.close()


# -- configuration errors -----------------------------------------------------------------


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("table", "set_auth", "key"),
    [
        (hook_table(8787).replace("127.0.0.1:8787", "nonsense"), True, "webhook.listen"),
        (hook_table(8787).replace("127.0.0.1:8787", "127.0.0.1:99999"), True, "webhook.listen"),
        (hook_table(8787).replace(HOOK_PATH, "hooks"), True, "webhook.path"),
        (hook_table(8787), False, "webhook.authorization_env"),
        (hook_table(8787) + 'extra = "x"\n', True, "webhook.extra"),
    ],
    ids=["listen-not-host-port", "listen-bad-port", "path-relative", "env-unset", "unknown-key"],
)
def test_a_bad_webhook_table_exits_78_naming_key_and_file(
    backend: str,
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    table: str,
    set_auth: bool,
    key: str,
) -> None:
    if set_auth:
        monkeypatch.setenv(AUTH_ENV, AUTH)
    else:
        monkeypatch.delenv(AUTH_ENV, raising=False)
    path = write_config("https://apply.example.edu", extra=table)

    assert main(["run", "-c", str(path)]) == 78

    err = capsys.readouterr().err
    assert str(path) in err
    assert f"sources.dreamapply.{key}" in err
    assert AUTH not in err


@pytest.mark.sqlite_only
def test_two_sources_on_one_address_and_path_exit_78_naming_the_second_s_file(
    backend: str,
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(AUTH_ENV, AUTH)
    path = write_config("https://apply.example.edu", extra=hook_table(8787))
    fragments = path.parent / "sources.d"
    fragments.mkdir()
    fragment = fragments / "other.toml"
    fragment.write_text(
        '[sources.other]\nkind = "dreamapply"\nbase_url = "https://other.example.edu"\n'
        'api_key_env = "DREAMAPPLY_API_KEY"\n' + hook_table(8787, source="other")
    )

    assert main(["run", "-c", str(path)]) == 78

    err = capsys.readouterr().err
    assert f"{fragment}: sources.other.webhook.path" in err
    assert "'dreamapply'" in err


@pytest.mark.sqlite_only
def test_an_address_already_taken_fails_the_start_naming_it(
    backend: str,
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(AUTH_ENV, AUTH)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write_config("https://apply.example.edu", extra=SLOW + hook_table(port))

        assert main(["run", "-c", str(path)]) == 1

    err = capsys.readouterr().err
    assert f"cannot listen for webhooks on 127.0.0.1:{port}" in err
    assert not Path(f"{path.parent / 'mirror.db'}.run.lock").exists()


def test_a_reload_moves_the_webhook_to_its_new_path(hooked: tuple[Simulator, Running]) -> None:
    _, running = hooked
    path = Path(running.config.path)
    path.write_text(path.read_text().replace(HOOK_PATH, "/hooks/moved"))
    auth = {"Authorization": AUTH}

    assert running.daemon.reload_config()

    assert httpx.post(running.url, headers=auth).status_code == 404
    moved = running.url.replace(HOOK_PATH, "/hooks/moved")
    assert httpx.post(moved, headers=auth).status_code == 204
    eventually(lambda: running.received() == 1)
