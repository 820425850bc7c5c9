"""Webhooks that wake a poll (issue 34): the coalescing decision, the listener's
verdicts, the webhook table of the config, when the daemon's waker schedules a
poll (on a scheduler never started). No network, no database."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import threading
from collections.abc import Mapping
from email.message import Message
from pathlib import Path
from typing import cast

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from edsync.config import load_config, parse_config
from edsync.errors import ConfigError
from edsync.mirror import Mirror
from edsync.ops.metrics import Metrics
from edsync.run.wakes import WAKE_SPACING, Gate, Wakes, on_finish, on_start, on_wake
from edsync.run.waking import Waker
from edsync.run.webhooks import MAX_BODY, Route, Verdict, judge, read_body, routes_by_address
from edsync.settings import Config, Secret, WebhookSettings

# -- the coalescing decision -------------------------------------------------------


def test_a_wake_of_an_idle_source_asks_for_a_poll_now_then_for_nothing_more() -> None:
    gate, due = on_wake(Gate(), now=100.0)
    assert due == 100.0
    for now in (100.1, 100.5, 100.9):  # many wakes before it starts: the same poll
        gate, again = on_wake(gate, now)
        assert again is None
    gate, go = on_start(gate, now=100.95, ticket=due)
    assert go
    assert gate == Gate(running=True, started=100.95)


def test_a_woken_poll_starts_no_sooner_than_the_spacing_after_the_last_poll() -> None:
    finished, _ = on_finish(Gate(running=True, started=100.0), now=100.2)
    _, due = on_wake(finished, now=100.3)
    assert due == 100.0 + WAKE_SPACING
    _, due = on_wake(finished, now=105.0)
    assert due == 105.0


def test_a_wake_during_a_poll_makes_exactly_one_more_poll_after_it() -> None:
    gate = Gate(running=True, started=100.0)
    for now in (100.1, 100.2, 100.3):
        gate, due = on_wake(gate, now)
        assert due is None  # not now: the poll is running
    gate, due = on_finish(gate, now=100.4)
    assert due == 100.0 + WAKE_SPACING
    assert gate == Gate(due=due, started=100.0)
    gate, go = on_start(gate, now=due, ticket=due)
    assert go
    gate, due = on_finish(gate, now=due + 0.1)
    assert due is None  # no wake during the second poll: no third
    assert gate == Gate(started=100.0 + WAKE_SPACING)


def test_a_poll_that_starts_first_makes_the_woken_one_stale() -> None:
    gate, due = on_wake(Gate(), now=10.0)
    gate, go = on_start(gate, now=10.0, ticket=None)  # the interval's poll
    assert go
    gate, _ = on_finish(gate, now=10.5)
    unchanged, go = on_start(gate, now=10.6, ticket=due)
    assert not go
    assert unchanged == gate


def test_a_poll_job_while_one_runs_does_not_overlap_it_but_polls_once_more_after() -> None:
    gate = Gate(running=True, started=1.0)
    gate, go = on_start(gate, now=1.5)  # the interval's job while a woken one runs
    assert not go
    assert gate.again
    _, due = on_finish(gate, now=2.5)
    assert due == 2.5


def simulate(arrivals: list[float], poll_seconds: float) -> list[float]:
    """When polls start, for webhooks arriving at ``arrivals`` and polls taking
    ``poll_seconds``: the gate driven as the daemon drives it."""
    gate, started = Gate(), []
    events: list[tuple[float, str, float | None]] = [(t, "wake", None) for t in arrivals]
    while events:
        now, kind, ticket = events.pop(0)
        if kind == "wake":
            gate, due = on_wake(gate, now)
        elif kind == "start":
            gate, go = on_start(gate, now, ticket)
            due = None
            if go:
                started.append(now)
                events.append((now + poll_seconds, "finish", None))
        else:
            gate, due = on_finish(gate, now)
        if due is not None:
            events.append((due, "start", due))
        events.sort(key=lambda e: (e[0], e[1] != "finish"))
    return started


@pytest.mark.parametrize("poll_seconds", [0.01, 0.3, 0.99, 2.5])
def test_a_hundred_wakes_within_a_second_cost_at_most_two_polls(poll_seconds: float) -> None:
    arrivals = [i / 100 for i in range(100)]  # 100 webhooks in [0, 1)
    started = simulate(arrivals, poll_seconds)
    assert 1 <= len(started) <= 2
    assert started[0] == 0.0
    if len(started) == 2:  # the second covers the webhooks the first may have missed
        assert started[1] >= arrivals[-1]


def test_a_steady_stream_costs_one_poll_a_spacing_and_the_last_webhook_is_covered() -> None:
    arrivals = [i * 0.05 for i in range(200)]  # 20 a second for 10 s
    started = simulate(arrivals, poll_seconds=0.05)
    assert len(started) <= 10 / WAKE_SPACING + 1
    assert all(b - a >= WAKE_SPACING for a, b in itertools.pairwise(started))
    assert started[-1] >= arrivals[-1]  # nothing left unread


def test_the_table_of_gates_is_settled_only_with_nothing_running_or_due() -> None:
    clock = iter([0.0, 0.0, 0.1, 0.2]).__next__
    wakes = Wakes(clock=clock)
    assert wakes.settled("s")
    due = wakes.wake("s")
    assert due == 0.0
    assert not wakes.settled("s")
    assert wakes.start("s", due)
    assert not wakes.settled("s")
    assert wakes.finish("s") is None
    assert wakes.settled("s")


# -- the listener's verdicts ---------------------------------------------------------

ROUTES: Mapping[str, Route] = {"/hooks/da": Route("da", b"Bearer s3cret")}


@pytest.mark.parametrize(
    ("method", "target", "authorization", "length", "expected"),
    [
        ("POST", "/hooks/da", "Bearer s3cret", "12", Verdict(204, None, "da")),
        ("POST", "/hooks/da?x=1", " Bearer s3cret ", None, Verdict(204, None, "da")),
        ("POST", "/hooks/other", "Bearer s3cret", "2", Verdict(404, "not_found")),
        ("GET", "/hooks/da", "Bearer s3cret", None, Verdict(405, "method", "da")),
        ("POST", "/hooks/da", None, "2", Verdict(401, "unauthorized", "da")),
        ("POST", "/hooks/da", "Bearer s3cre", "2", Verdict(401, "unauthorized", "da")),
        ("POST", "/hooks/da", "bearer s3cret", "2", Verdict(401, "unauthorized", "da")),
        ("POST", "/hooks/da", "Bearer s3cretX", "2", Verdict(401, "unauthorized", "da")),
        ("POST", "/hooks/da", "Bearer s3cret", str(MAX_BODY), Verdict(204, None, "da")),
        ("POST", "/hooks/da", "Bearer s3cret", str(MAX_BODY + 1), Verdict(413, "too_large", "da")),
        ("POST", "/hooks/da", "Bearer s3cret", "-1", Verdict(400, "bad_request", "da")),
        ("POST", "/hooks/da", "Bearer s3crèt", "2", Verdict(401, "unauthorized", "da")),
        # Unauthorized first: a stranger learns nothing of the size limit.
        ("POST", "/hooks/da", "nope", str(MAX_BODY + 1), Verdict(401, "unauthorized", "da")),
    ],
)
def test_judge(
    method: str, target: str, authorization: str | None, length: str | None, expected: Verdict
) -> None:
    assert judge(ROUTES, method, target, authorization, length) == expected


def headers(**fields: str) -> Message:
    message = Message()
    for name, value in fields.items():
        message[name.replace("_", "-")] = value
    return message


def test_a_chunked_body_is_read_up_to_the_limit_and_no_further() -> None:
    chunk = b"x" * 65536
    body = b"".join(b"10000\r\n" + chunk + b"\r\n" for _ in range(MAX_BODY // 65536))
    fits = io.BufferedReader(io.BytesIO(body + b"0\r\n\r\nNEXT"))
    assert read_body(fits, headers(Transfer_Encoding="chunked")) is None
    assert fits.read() == b"NEXT"  # the next request is left in place
    over = io.BufferedReader(io.BytesIO(body + b"10000\r\n" + chunk))
    assert read_body(over, headers(Transfer_Encoding="chunked")) == "too_large"
    broken = io.BufferedReader(io.BytesIO(b"zz\r\n"))
    assert read_body(broken, headers(Transfer_Encoding="chunked")) == "bad_request"
    short = io.BufferedReader(io.BytesIO(b"abc"))
    assert read_body(short, headers(Content_Length="10")) == "bad_request"


# -- the webhook table --------------------------------------------------------------


def hook(listen: str = "127.0.0.1:8787", path: str = "/hooks/da") -> WebhookSettings:
    return WebhookSettings(listen=listen, path=path, authorization=Secret("W", "v"))


@pytest.mark.parametrize(
    ("listen", "address"),
    [
        ("127.0.0.1:8787", ("127.0.0.1", 8787)),
        ("localhost:80", ("localhost", 80)),
        ("[::1]:8787", ("::1", 8787)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        ("8787", None),
        (":8787", None),
        ("host:", None),
        ("host:0", None),
        ("host:65536", None),
        ("host:http", None),
    ],
)
def test_listen_is_host_colon_port(listen: str, address: tuple[str, int] | None) -> None:
    assert hook(listen).address() == address
    assert (hook(listen).check() is None) == (address is not None)


@pytest.mark.parametrize("path", ["hooks", "/a?b", "/a#b", "/a b", "/a\x00"])
def test_path_is_a_plain_url_path(path: str) -> None:
    assert hook(path=path).check() == ("path", f'{path!r} is not a URL path (e.g. "/hooks/source")')


SOURCE = """
[sources.{name}]
kind = "dreamapply"
base_url = "https://apply.example.edu"
api_key_env = "K"
"""
TABLE = """
[sources.{name}.webhook]
listen = "{listen}"
path = "{path}"
authorization_env = "W"
"""
ENV = {"K": "key", "W": "Bearer s3cret"}


def config_text(*hooks: tuple[str, str, str], metrics: str | None = None) -> str:
    text = f'[metrics]\nlisten = "{metrics}"\n' if metrics else ""
    for name, listen, path in hooks:
        text += SOURCE.format(name=name) + TABLE.format(name=name, listen=listen, path=path)
    return text


def load(text: str, env: Mapping[str, str] = ENV) -> Config:
    import tomllib

    return parse_config(tomllib.loads(text), "edsync.toml", env)


def test_the_webhook_table_loads_into_the_source_s_settings() -> None:
    config = load(config_text(("a", "127.0.0.1:8787", "/hooks/a"), ("b", "127.0.0.1:8787", "/b")))
    routes = routes_by_address(config)
    assert routes == {
        ("127.0.0.1", 8787): {
            "/hooks/a": Route("a", b"Bearer s3cret"),
            "/b": Route("b", b"Bearer s3cret"),
        }
    }
    assert "s3cret" not in repr(config)


def test_a_source_without_a_webhook_table_has_none() -> None:
    import tomllib

    config = parse_config(tomllib.loads(SOURCE.format(name="a")), "edsync.toml", ENV)
    assert config.sources["a"].hook() is None
    assert routes_by_address(config) == {}


@pytest.mark.parametrize(
    ("text", "env", "key", "words"),
    [
        (config_text(("a", "nonsense", "/h")), ENV, "sources.a.webhook.listen", "HOST:PORT"),
        (config_text(("a", "h:1", "h")), ENV, "sources.a.webhook.path", "not a URL path"),
        (config_text(("a", "h:1", "/h")), {"K": "k"}, "sources.a.webhook.authorization_env", "W"),
        (
            config_text(("a", "h:1", "/h"), ("b", "H:1", "/h")),
            ENV,
            "sources.b.webhook.path",
            "H:1/h is already source 'a'",
        ),
        (
            config_text(("a", "127.0.0.1:9464", "/h"), metrics="127.0.0.1:9464"),
            ENV,
            "sources.a.webhook.listen",
            "[metrics].listen",
        ),
        (
            SOURCE.format(name="a") + '[sources.a.webhook]\nlisten = "h:1"\n'
            'authorization_env = "W"\n',
            ENV,
            "sources.a.webhook.path",
            "required",
        ),
        (
            SOURCE.format(name="a") + TABLE.format(name="a", listen="h:1", path="/h") + "x = 1\n",
            ENV,
            "sources.a.webhook.x",
            "unknown key",
        ),
        (
            SOURCE.format(name="a") + 'webhook = "http://x"\n',
            ENV,
            "sources.a.webhook",
            "must be a table",
        ),
    ],
    ids=[
        "listen",
        "path",
        "env-unset",
        "duplicate",
        "metrics-address",
        "required",
        "unknown",
        "type",
    ],
)
def test_a_bad_webhook_table_names_the_key(
    text: str, env: Mapping[str, str], key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(text, env)
    assert f"edsync.toml: {key}: " in str(caught.value)
    assert words in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_the_authorization_may_come_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "hook-auth").write_text("Bearer from-a-file\n")
    path = tmp_path / "edsync.toml"
    path.write_text(
        config_text(("a", "127.0.0.1:8787", "/h")).replace(
            'authorization_env = "W"', 'authorization_file = "hook-auth"'
        )
    )
    config = load_config(path, env={"K": "key"})
    found = config.sources["a"].hook()
    assert found is not None
    assert found.authorization.reveal() == "Bearer from-a-file"
    assert found.authorization.origin == f"file {tmp_path / 'hook-auth'}"
    # status reads no secret: neither the variable nor the file is needed
    (tmp_path / "hook-auth").unlink()
    assert load_config(path, env={}, secrets=False).sources["a"].hook() is not None


def test_an_edlink_source_has_no_webhook_key() -> None:
    text = (
        '[sources.e]\nkind = "edlink"\nbase_url = "https://ed.link"\ntoken_env = "K"\n'
        '[sources.e.webhook]\nlisten = "h:1"\npath = "/h"\nauthorization_env = "W"\n'
    )
    with pytest.raises(ConfigError, match=r"sources\.e\.webhook: unknown key"):
        load(text)


# -- the daemon's side: when a wake schedules a poll ------------------------------------


def waker(*, holds: bool = True) -> tuple[Waker, BackgroundScheduler, threading.Event]:
    scheduler = BackgroundScheduler(timezone=dt.UTC)  # never started: its jobs wait, visible
    stop = threading.Event()
    made = Waker(
        scheduler,
        lambda *_: None,
        Metrics(),
        cast("Mirror", None),  # wake and finish never touch the mirror
        holds=lambda _: holds,
        stop=stop,
    )
    return made, scheduler, stop


def test_a_wake_schedules_one_woken_poll_with_its_ticket() -> None:
    made, scheduler, _ = waker()
    made.wake("s")
    made.wake("s")
    (job,) = scheduler.get_jobs()
    assert job.args[0] == "s"
    assert made.start("s", job.args[1])


def test_no_poll_is_woken_for_a_source_another_process_polls_or_after_a_stop() -> None:
    elsewhere, scheduler, _ = waker(holds=False)
    elsewhere.wake("s")
    assert scheduler.get_jobs() == []
    stopping, scheduler, stop = waker()
    stop.set()
    stopping.wake("s")
    assert scheduler.get_jobs() == []


def test_a_source_held_off_by_its_back_off_is_not_woken_until_a_poll_succeeds() -> None:
    made, scheduler, _ = waker()
    assert made.start("s", None)
    made.finish("s", held_for=3600.0)  # a refused key: the next poll in an hour
    made.wake("s")
    made.wake("s")
    assert scheduler.get_jobs() == []
    assert made.start("s", None)  # the back-off's poll comes
    made.finish("s")  # and succeeds
    made.wake("s")
    assert len(scheduler.get_jobs()) == 1
