"""The simulator plays DreamApply's webhooks: a journal-shaped POST for each
appended event, sent from its own thread, over real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import orjson
import pytest

from edsync_sim import Simulator

AUTHORIZATION = "Bearer sim-webhook"
KEY = {"Authorization": 'DREAM apikey="sim-dreamapply-key"'}


class Receiver:
    """An endpoint recording each POST (its Authorization and JSON body);
    ``gate`` cleared holds every answer until it is set again."""

    def __init__(self) -> None:
        self.received: list[tuple[str | None, dict[str, object]]] = []
        self.first = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.gate.wait(10)
                receiver.received.append((self.headers["Authorization"], orjson.loads(body)))
                receiver.first.set()
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/da"

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


def test_each_appended_event_is_posted_as_a_journal_page_of_one(receiver: Receiver) -> None:
    with Simulator(events=10, webhook_url=receiver.url, webhook_authorization=AUTHORIZATION) as sim:
        assert sim.webhooks is not None
        sim.journal.append(3)
        assert sim.webhooks.wait_for(3)
        journal = httpx.get(
            f"{sim.url}/api/v9/journal",
            params={"bySince": 11, "byEvents": ",".join(_names(sim)), "limit": 10},
            headers=KEY,
        ).json()

    assert [d.status for d in sim.webhooks.deliveries] == [204, 204, 204]
    assert [auth for auth, _ in receiver.received] == [AUTHORIZATION] * 3
    assert [body for _, body in receiver.received] == [{key: item} for key, item in journal.items()]
    assert list(journal) == ["11", "12", "13"]  # the initial ten were never posted


def test_an_append_never_waits_for_the_receiver(receiver: Receiver) -> None:
    receiver.gate.clear()  # the receiver answers nothing for now
    with Simulator(events=5, webhook_url=receiver.url, webhook_authorization="x") as sim:
        assert sim.webhooks is not None
        started = time.monotonic()
        for _ in range(20):
            sim.journal.append(1)
        assert time.monotonic() - started < 1.0
        receiver.gate.set()
        assert sim.webhooks.wait_for(20)
    assert [d.event_id for d in sim.webhooks.deliveries] == list(range(6, 26))


def test_a_rewind_resends_old_events_and_a_dead_endpoint_is_recorded() -> None:
    with Simulator(events=5, webhook_url="http://127.0.0.1:9/nowhere") as sim:
        assert sim.webhooks is not None
        sim.webhooks.send(2, 3)  # as DreamApply's "rewind by event ID 1"
        assert sim.webhooks.wait_for(2)
    assert [(d.event_id, d.status) for d in sim.webhooks.deliveries] == [(2, None), (3, None)]
    assert all(d.error for d in sim.webhooks.deliveries)


def test_with_a_rate_the_journal_grows_and_posts_without_being_polled(
    receiver: Receiver,
) -> None:
    with Simulator(events=5, rate=50.0, webhook_url=receiver.url) as sim:
        assert sim.webhooks is not None
        assert sim.webhooks.wait_for(5)
        assert not sim.requests  # nobody asked for the journal


def _names(sim: Simulator) -> list[str]:
    with sim.journal.locked() as journal:
        return sorted(journal.positions_by_name)


def test_the_simulate_command_posts_webhooks_as_readme_shows(receiver: Receiver) -> None:
    """README: ``EDSYNC_SIM_WEBHOOK_AUTHORIZATION=... edsync simulate --webhook-url URL``
    (with ``--rate``, the journal grows on its own)."""
    env = {**os.environ, "EDSYNC_SIM_WEBHOOK_AUTHORIZATION": AUTHORIZATION}
    command = [sys.executable, "-m", "edsync", "simulate", "--port", "0", "--events", "5"]
    command += ["--rate", "20", "--webhook-url", receiver.url]
    with subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL) as proc:
        try:
            assert receiver.first.wait(30), "no webhook from `edsync simulate`"
        finally:
            proc.terminate()
            proc.wait(10)
    authorization, body = receiver.received[0]
    assert authorization == AUTHORIZATION
    [(event_id, item)] = body.items()
    assert int(event_id) > 5
    assert isinstance(item, dict)
    assert "event" in item
