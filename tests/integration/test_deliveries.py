"""Deliveries outlast an outage (a sink's ``retry_for``), and webhooks are
Standard Webhooks: the ``standardwebhooks`` library verifies what edsync sends.

The retry schedule is walked on freezegun's clock against a real receiver on
127.0.0.1: each round is real HTTP, only the waits between them are skipped.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from freezegun import freeze_time
from sqlalchemy import Engine, insert, select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from edsync.backoff import BACKOFF_MAX
from edsync.cli import main
from edsync.config import load_config
from edsync.mirror.db import create_mirror_engine, ensure_schema
from edsync.mirror.schema import deliveries, signals
from edsync.publisher import Publisher
from edsync.sinks import webhook

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Received:
    at: float  # the (frozen) clock when it arrived
    headers: dict[str, str]
    body: bytes
    verified: bool


class Receiver:
    """A webhook endpoint: 503 until ``down_until`` (on the frozen clock), then
    204 if the ``standardwebhooks`` library verifies the delivery (401 if not);
    while ``redirect`` is set, that status and ``Location`` instead (a load
    balancer or an http→https hop in front of it)."""

    def __init__(self, secret: str) -> None:
        self.webhook = Webhook(secret)
        self.down_until = 0.0
        self.redirect: tuple[int, str] | None = None
        self.received: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = dict(self.headers.items())
                verified = receiver.check(body, headers)
                now = dt.datetime.now(dt.UTC).timestamp()
                with receiver.lock:
                    receiver.received.append(Received(now, headers, body, verified))
                status = 503 if now < receiver.down_until else 204 if verified else 401
                redirect = receiver.redirect
                self.send_response(redirect[0] if redirect else status)
                if redirect:
                    self.send_header("Location", redirect[1])
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def check(self, body: bytes, headers: dict[str, str]) -> bool:
        try:
            self.webhook.verify(body, headers)
        except WebhookVerificationError:
            return False
        return True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/edsync"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET)
    yield r
    r.close()


@pytest.fixture
def hook_config(
    write_config: Callable[..., Path], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Path]:
    monkeypatch.setenv("HOOK_SECRET", SECRET)

    def factory(retry_for: str | None = None) -> Path:
        budget = f'retry_for = "{retry_for}"\n' if retry_for else ""
        extra = f"""
[sinks.hook]
kind = "webhook"
base_url = "{receiver.url}"
secret_env = "HOOK_SECRET"
{budget}"""
        return write_config(receiver.url, extra=extra)

    return factory


def outbox(path: Path, signal_ids: list[str]) -> Engine:
    """The mirror of ``path`` with one pending delivery to ``hook`` per signal id."""
    engine = create_mirror_engine(load_config(path).mirror)
    ensure_schema(engine, auto_migrate=True)
    with engine.begin() as conn:
        for sid in signal_ids:
            conn.execute(
                insert(signals).values(
                    id=sid,
                    rule="closed",
                    source="dreamapply",
                    event_id=sid,
                    entity="application",
                    entity_id="42",
                    occurred_at="2026-12-01T08:59:00+00:00",
                    data={"change": {"type": "Application was closed"}},
                    created_at="2026-12-01T08:59:30+00:00",
                )
            )
            conn.execute(insert(deliveries).values(signal_id=sid, sink="hook", status="pending"))
    return engine


def delivery(engine: Engine, sid: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(deliveries).where(deliveries.c.signal_id == sid)).one()


def walk(publisher: Publisher, frozen: Any, until: Callable[[], bool], limit: int = 200) -> None:
    """Run the publisher's rounds, jumping the clock to each next due attempt."""
    for _ in range(limit):
        publisher.round()
        if until():
            return
        wait = publisher.next_due()
        assert wait is not None, "nothing pending, yet not done"
        frozen.tick(dt.timedelta(seconds=wait))
    pytest.fail(f"not done after {limit} rounds")


@pytest.mark.parametrize("outage", [15 * 60, 3 * 3600], ids=["15min", "3h"])
def test_a_receiver_down_for_a_while_gets_the_delivery_without_a_human(
    hook_config: Callable[..., Path], receiver: Receiver, outage: int
) -> None:
    path = hook_config()
    engine = outbox(path, ["sig-1"])
    publisher = Publisher(engine, load_config(path))
    back = T0.timestamp() + outage
    receiver.down_until = back
    try:
        with freeze_time(T0) as frozen:
            walk(publisher, frozen, lambda: delivery(engine, "sig-1").status != "pending")
    finally:
        publisher.close()

    row = delivery(engine, "sig-1")
    assert row.status == "delivered"
    attempts = [r.at for r in receiver.received]
    assert row.attempts == len(attempts)
    assert all(at < back for at in attempts[:-1])
    assert attempts[-1] >= back
    # Jittered doubling: the step after the last refused attempt is at most about
    # twice the time already spent trying (and never more than the cap), so the
    # delivery lands within two outages, or an hour, of the receiver's return.
    assert attempts[-1] - back <= min(2 * outage + 1, BACKOFF_MAX)
    assert all(b - a <= BACKOFF_MAX for a, b in itertools.pairwise(attempts))
    assert all(r.verified for r in receiver.received)
    assert {r.headers["webhook-id"] for r in receiver.received} == {"sig-1"}


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirecting_receiver_gets_no_delivery_counted_until_it_answers_2xx(
    hook_config: Callable[..., Path],
    receiver: Receiver,
    capsys: pytest.CaptureFixture[str],
    status: int,
) -> None:
    """SPEC 2.4: only a 2xx is a delivery; a 3xx is a failure naming its
    ``Location``, retried like a 5xx, and the redirect is never followed."""
    path = hook_config()
    engine = outbox(path, ["sig-1"])
    location = "https://hooks.example.org/edsync"
    receiver.redirect = (status, location)
    publisher = Publisher(engine, load_config(path))
    try:
        with freeze_time(T0) as frozen:
            for _ in range(3):
                publisher.round()
                row = delivery(engine, "sig-1")
                assert row.status == "pending"
                assert row.delivered_at is None
                assert f"HTTP {status}" in row.last_error
                assert location in row.last_error
                wait = publisher.next_due()
                assert wait is not None
                frozen.tick(dt.timedelta(seconds=wait))
            capsys.readouterr()
            assert main(["status", "-c", str(path), "--json"]) == 0
            (sink,) = orjson.loads(capsys.readouterr().out)["sinks"]
            assert (sink["pending"], sink["delivered"]) == (1, 0)
            assert location in sink["last_error"]
            assert f"HTTP {status}" in sink["last_error"]

            receiver.redirect = None
            walk(publisher, frozen, lambda: delivery(engine, "sig-1").status != "pending")
    finally:
        publisher.close()

    row = delivery(engine, "sig-1")
    assert row.status == "delivered"
    assert row.attempts == len(receiver.received) == 4
    assert {r.headers["webhook-id"] for r in receiver.received} == {"sig-1"}


def test_a_delivery_failing_for_retry_for_turns_failed_and_retry_failed_resends(
    hook_config: Callable[..., Path],
    receiver: Receiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = hook_config()  # retry_for: the default, a day
    assert load_config(path).sinks["hook"].retry_for == DAY
    engine = outbox(path, ["sig-1"])
    publisher = Publisher(engine, load_config(path))
    receiver.down_until = math.inf
    try:
        with freeze_time(T0) as frozen:
            walk(publisher, frozen, lambda: delivery(engine, "sig-1").status != "pending")
    finally:
        publisher.close()

    row = delivery(engine, "sig-1")
    assert row.status == "failed"
    attempts = [r.at - T0.timestamp() for r in receiver.received]
    assert row.attempts == len(attempts)
    # Retried for a day from the first failure, the last attempt when the day ends.
    assert attempts[0] == 0
    assert attempts[-2] < DAY
    assert attempts[-1] == DAY
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert max(gaps) <= BACKOFF_MAX
    assert gaps[0] < 1.0  # the first retry comes quickly
    assert 24 <= len(attempts) <= 80  # capped at an hour: not a busy loop either

    receiver.down_until = 0.0
    capsys.readouterr()
    assert main(["deliver", "-c", str(path), "--retry-failed"]) == 0
    assert "delivered 1" in capsys.readouterr().out
    row = delivery(engine, "sig-1")
    assert row.status == "delivered"
    assert row.failing_since is None
    last = receiver.received[-1]
    assert last.verified
    assert last.headers["webhook-id"] == "sig-1"


def test_a_retry_after_is_honoured_and_the_budget_survives_a_restart(
    hook_config: Callable[..., Path], receiver: Receiver
) -> None:
    """The budget counts from the first failure, kept in the mirror: a new
    Publisher (a restarted daemon) does not start it over."""
    path = hook_config(retry_for="10m")
    engine = outbox(path, ["sig-1"])
    receiver.down_until = math.inf
    with freeze_time(T0) as frozen:
        first = Publisher(engine, load_config(path))
        try:
            first.round()
        finally:
            first.close()
        frozen.tick(dt.timedelta(minutes=9))
        second = Publisher(engine, load_config(path))
        try:
            walk(second, frozen, lambda: delivery(engine, "sig-1").status != "pending")
        finally:
            second.close()
    assert delivery(engine, "sig-1").status == "failed"
    assert receiver.received[-1].at - T0.timestamp() == 600.0


def test_standardwebhooks_verifies_real_deliveries_from_a_backfill(
    make_simulator: Callable[..., Any], hook_config: Callable[..., Path], receiver: Receiver
) -> None:
    sim = make_simulator(events=1500)
    path = hook_config()
    text = path.read_text().replace(f'base_url = "{receiver.url}"', f'base_url = "{sim.url}"', 1)
    # The journal from its start (write_config: no snapshot first): every
    # closed application fires.
    text += """
[[rules]]
name = "closed"
source = "dreamapply"
event = "Application was closed"
publish = ["hook"]
"""
    path.write_text(text)

    assert main(["backfill", "-c", str(path)]) == 0

    assert receiver.received
    assert all(r.verified for r in receiver.received)
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == len(set(ids))
    first = receiver.received[0]
    payload = receiver.webhook.verify(first.body, first.headers)
    assert payload["id"] == first.headers["webhook-id"]
    assert payload["change"]["type"] == "Application was closed"
    assert first.headers["webhook-signature"].startswith("v1,")
    # Tampering is caught, by the library and by the README's stdlib recipe.
    tampered = first.body.replace(b'"closed"', b'"opened"')
    assert tampered != first.body
    with pytest.raises(WebhookVerificationError):
        receiver.webhook.verify(tampered, first.headers)
    other = "whsec_" + base64.b64encode(b"another key, 24 bytes or more").decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(first.body, first.headers)
    readme = readme_verify()
    for verify in (webhook.verify, readme):
        assert verify(SECRET, first.headers, first.body)
        assert verify(SECRET.removeprefix("whsec_").rstrip("="), first.headers, first.body)
        assert not verify(SECRET, first.headers, tampered)
        assert not verify(other, first.headers, first.body)


def readme_verify() -> Callable[[str, dict[str, str], bytes], bool]:
    """The README's verify recipe without the library, run as written."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    after = readme.split("Without the library", 1)[1]
    code = after.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    verify: Callable[[str, dict[str, str], bytes], bool] = namespace["verify"]
    return verify


def test_a_secret_without_the_prefix_is_read_as_the_libraries_read_it() -> None:
    bare = SECRET.removeprefix("whsec_")
    assert webhook.signing_key(bare) == webhook.signing_key(SECRET) == bytes(range(32))
    body = orjson.dumps({"id": "x"})
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(dt.datetime.now(dt.UTC).timestamp())),
    }
    headers["webhook-signature"] = webhook.sign(
        webhook.signing_key(bare), "msg_1", headers["webhook-timestamp"], body
    )
    assert Webhook(bare).verify(body, headers) == {"id": "x"}
    assert Webhook(SECRET).verify(body, headers) == {"id": "x"}
