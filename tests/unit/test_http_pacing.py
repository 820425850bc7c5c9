"""A 429 over real HTTP (127.0.0.1) pauses the client: its retry waits for
``Retry-After`` or the quota window, not a 0.5 s backoff; requests and 429s
are counted per source (SPEC 2.1, 5.1)."""

from __future__ import annotations

import email.utils
import socket
import time
from collections.abc import Iterator

import pytest

from edsync.errors import RetriableError
from edsync.http import HttpClient, Target, on_request
from edsync.ops.metrics import Metrics
from edsync.pacing import WINDOW, Pacer
from tests.faultserver import API_KEY, FaultServer, Status, make_events
from tests.unit.test_pacer import FakeTime

JOURNAL = "/api/v9/journal"
QUERY = {"bySince": "1", "limit": "10"}


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer(make_events(20)) as running:
        yield running


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def client(server: FaultServer, fake: FakeTime) -> Iterator[HttpClient]:
    http = HttpClient(
        Target.source("a"),
        server.url,
        headers={"Authorization": f'DREAM apikey="{API_KEY}"'},
        timeout=5.0,
        per_minute=180,
    )
    http.pacer = Pacer(180, clock=fake.clock, sleep=fake.sleep)
    yield http
    http.close()


def refused(client: HttpClient) -> RetriableError:
    with pytest.raises(RetriableError) as caught:
        client.once("GET", JOURNAL, QUERY)
    return caught.value


def test_after_a_429_without_retry_after_the_retry_waits_for_the_window(
    server: FaultServer, client: HttpClient, fake: FakeTime, fast_retries: None
) -> None:
    """stamina waits nothing here (test mode): the pacer alone holds the retry."""
    for _ in range(5):  # at 0, 1/3, ... 4/3
        client.request("GET", JOURNAL, QUERY)
    server.script(Status(status=429))
    client.request("GET", JOURNAL, QUERY)  # refused at 5/3, then retried

    gets = server.journal_requests()
    assert [r.fault for r in gets] == [None] * 5 + ["Status", None]
    assert fake.now == 0.0 + WINDOW  # the first start of the window that filled, + 60 s
    assert abs(fake.slept[-1] - (WINDOW - 5 / 3)) < 1e-9  # not a 0.5 s backoff
    assert (client.requests, client.throttled) == (7, 1)


def test_the_429_asks_the_retry_to_wait_out_the_window(
    server: FaultServer, client: HttpClient, fake: FakeTime
) -> None:
    """The error carries the wait: stamina's backoff and retry_for, and the
    daemon's next poll, all count it."""
    client.once("GET", JOURNAL, QUERY)
    fake.now = 10.0
    server.script(Status(status=429))
    assert refused(client).retry_after == WINDOW - 10.0
    client.once("GET", JOURNAL, QUERY)
    assert fake.now == WINDOW


def test_after_a_429_with_retry_after_nothing_is_sent_for_that_long(
    server: FaultServer, client: HttpClient, fake: FakeTime
) -> None:
    client.once("GET", JOURNAL, QUERY)
    fake.now = 2.0
    server.script(Status(status=429, retry_after="7"))
    assert refused(client).retry_after == 7.0
    client.once("GET", JOURNAL, QUERY)
    assert fake.now == 9.0
    assert fake.slept == [7.0]


def test_a_retry_after_date_pauses_until_that_time(
    server: FaultServer, client: HttpClient, fake: FakeTime
) -> None:
    when = email.utils.formatdate(time.time() + 31, usegmt=True)  # whole seconds
    server.script(Status(status=429, retry_after=when))
    wait = refused(client).retry_after
    assert wait is not None
    assert 29.0 < wait <= 31.0
    client.once("GET", JOURNAL, QUERY)
    assert fake.now == pytest.approx(wait)


def test_an_unpaced_client_retries_a_bare_429_on_its_backoff(server: FaultServer) -> None:
    """max_requests_per_minute = 0 (the simulator): no window is known."""
    fake = FakeTime()
    client = HttpClient(Target.source("a"), server.url, per_minute=0)
    client.pacer = Pacer(0, clock=fake.clock, sleep=fake.sleep)
    try:
        server.script(Status(status=429))
        assert refused(client).retry_after is None
        server.script(Status(status=429))
        refused(client)
        assert fake.slept == []
    finally:
        client.close()


def test_requests_and_429s_are_counted_per_source(server: FaultServer, client: HttpClient) -> None:
    metrics = Metrics()
    heard: list[tuple[str, bool]] = []
    stop_metrics = on_request(metrics.count_request)
    stop_heard = on_request(lambda source, throttled: heard.append((source, throttled)))
    try:
        client.once("GET", JOURNAL, QUERY)
        server.script(Status(status=429, retry_after="0"), Status(status=503))
        refused(client)
        refused(client)
        client.once("HEAD", JOURNAL, QUERY)
    finally:
        stop_metrics()
        stop_heard()
    client.once("GET", JOURNAL, QUERY)  # no longer heard

    assert heard == [("a", False), ("a", True), ("a", False), ("a", False)]
    assert (client.requests, client.throttled) == (5, 1)
    sample = metrics.registry.get_sample_value
    assert sample("edsync_http_requests_total", {"source": "a"}) == 4.0
    assert sample("edsync_http_throttled_total", {"source": "a"}) == 1.0
    body, _ = metrics.exposition()
    assert b'edsync_http_throttled_total{source="a"} 1.0' in body


def test_an_attempt_that_gets_no_answer_is_counted_too() -> None:
    with socket.socket() as unused:  # a port nothing listens on: connection refused
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    client = HttpClient(Target.sink("hub"), f"http://127.0.0.1:{port}", timeout=1.0)
    heard: list[tuple[str, bool]] = []
    stop = on_request(lambda source, throttled: heard.append((source, throttled)))
    try:
        with pytest.raises(RetriableError):
            client.once("GET", "/")
    finally:
        stop()
        client.close()
    assert heard == [("sink:hub", False)]
    assert client.requests == 1
