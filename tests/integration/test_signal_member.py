"""A signal's member comes from the mirror when it is delivered (SPEC 2.3, 3):
a DreamApply journal item carries a link to its applicant, not their email,
so an ``offer.enrolled`` signal raised before the refresh has written the
applicant's record waits in the outbox, and goes to the Learning Hub with the
applicant's current email once the record is there.

A real mirror (SQLite and PostgreSQL), the real apply and refresh paths
(``drain`` over an in-memory feed whose events are notifications), and the
simulator's Learning Hub over HTTP; time moves on freezegun's clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import Engine

from edsync.cli import main
from edsync.config import load_config
from edsync.publisher import WAIT_MIN, Publisher
from edsync.rules import signal_id
from edsync.run.drain import drain
from edsync.settings import Config
from edsync.testing import MemoryRefresher, MemorySource

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
RULE = "offer-enrolled"
HUB = """
[sinks.hub]
kind = "learninghub"
base_url = "{url}"
program_id = "FOO"
user_id = "edsync"
api_key_env = "HUB_KEY"
[[rules]]
name = "offer-enrolled"
source = "dreamapply"
match = {{ entity = "offer", op = "updated" }}
publish = ["hub"]
event_type = "offer.enrolled"
{member}
"""


def enrolled(offer: int, applicant: int) -> dict[str, Any]:
    """The journal item as DreamApply's notification feed has it: links, no objects."""
    return {
        "entity": "offer",
        "op": "updated",
        "entity_id": str(offer),
        "type": 'Offer was edited: "Enrolled"',
        "occurred_at": "2026-12-01T08:00:00+00:00",
        "person_id": str(applicant),
        "applicant": f"/api/v9/applicants/{applicant}",
        "record": False,
    }


def email_changed(applicant: int) -> dict[str, Any]:
    """A later journal item that names the applicant: the refresh reads them."""
    return {
        "entity": "applicant",
        "op": "updated",
        "entity_id": str(applicant),
        "type": "Applicant email was changed",
        "occurred_at": "2026-12-01T08:30:00+00:00",
        "person_id": str(applicant),
        "record": False,
        "refresh": [["applicant", str(applicant)]],
    }


class World:
    """The mirror, the feed and the hub of one test."""

    def __init__(self, engine: Engine, config: Config, hub: Any) -> None:
        self.engine = engine
        self.config = config
        self.hub = hub
        self.upstream = MemoryRefresher()
        self.feed = MemorySource(
            "dreamapply", person_entity="applicant", kind="dreamapply", resources=self.upstream
        )

    def poll(self, *events: dict[str, Any]) -> None:
        self.feed.events.extend(events)
        drain(self.engine, self.feed, rules=self.config.compiled_rules, prefetch=0)

    def delivery(self, event_id: str) -> Any:
        sid = signal_id(RULE, "dreamapply", event_id)
        with self.engine.connect() as conn:
            return conn.exec_driver_sql(
                "SELECT status, attempts, last_error, next_attempt_at, failing_since "
                f"FROM deliveries WHERE signal_id = '{sid}' AND sink = 'hub'"
            ).one()

    def put(self, event_id: str) -> dict[str, Any] | None:
        body: dict[str, Any] | None = self.hub.events.get(
            f"FOO-{signal_id(RULE, 'dreamapply', event_id)}"
        )
        return body


@pytest.fixture
def world(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    make_engine: Callable[..., Engine],
    monkeypatch: pytest.MonkeyPatch,
) -> World:
    monkeypatch.setenv("HUB_KEY", "sim-hub-key")
    sim = make_simulator(events=10)  # its Learning Hub; the feed is in memory
    path = write_config(sim.url, extra=HUB.format(url=sim.url, member='member = "applicant.email"'))
    return World(make_engine(), load_config(path), sim.hub)


def at(value: Any) -> float:
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    return when.timestamp()


def test_a_signal_waits_for_its_applicant_and_goes_out_once_the_refresh_brings_them(
    world: World,
) -> None:
    with freeze_time(T0) as frozen:
        world.poll(enrolled(offer=50, applicant=7))  # event 1: no record of applicant 7 yet
        publisher = Publisher(world.engine, world.config)
        try:
            report = publisher.round()
            assert (report.waiting, report.delivered, report.retried, report.failed) == (1, 0, 0, 0)
            assert world.hub.puts == []  # the hub is never asked without ProgramMemberId
            row = world.delivery("1")
            assert row.status == "pending"
            assert row.attempts == 0  # not a failed attempt against the sink
            assert row.failing_since is None  # nor any of its retry_for spent
            assert row.last_error == "waiting for applicant 7's email (not in the mirror yet)"
            assert at(row.next_attempt_at) == T0.timestamp() + WAIT_MIN

            assert publisher.round().waiting == 0  # not due again yet
            frozen.tick(dt.timedelta(minutes=1))
            assert publisher.round().waiting == 1  # still no applicant: waits longer,
            # half the signal's age (backoff without counting attempts).
            assert at(world.delivery("1").next_attempt_at) == T0.timestamp() + 60 + 30
            assert world.delivery("1").attempts == 0
            assert world.hub.puts == []

            # A later journal item names the applicant; the refresh writes their record.
            world.upstream.put("applicant", "7", {"id": 7, "email": "ada@example.org"}, "7")
            world.poll(email_changed(7))
            assert publisher.round().delivered == 0  # the wait is not over yet
            frozen.tick(dt.timedelta(seconds=publisher.next_due() or 0.0))
            report = publisher.round()
        finally:
            publisher.close()

    assert (report.delivered, report.waiting, report.pending) == (1, 0, 0)
    assert len(world.hub.puts) == 1
    body = world.put("1")
    assert body is not None
    assert body["ProgramMemberId"] == "ada@example.org"
    assert body["EventType"] == "offer.enrolled"
    assert body["EventData"]["entity_id"] == "50"
    row = world.delivery("1")
    assert (row.status, row.attempts) == ("delivered", 1)


def test_the_member_is_the_applicants_email_when_the_delivery_is_made(world: World) -> None:
    world.upstream.put("applicant", "8", {"id": 8, "email": "old@example.org"}, "8")
    world.poll(email_changed(8), enrolled(offer=51, applicant=8))
    world.upstream.put("applicant", "8", {"id": 8, "email": "new@example.org"}, "8")
    world.poll(email_changed(8))

    publisher = Publisher(world.engine, world.config)
    try:
        assert publisher.round().delivered == 1
    finally:
        publisher.close()
    body = world.put("2")
    assert body is not None
    assert body["ProgramMemberId"] == "new@example.org"


def test_an_applicant_erased_before_the_delivery_is_never_sent(world: World) -> None:
    # Upstream has no applicant 9 any more: its refresh answers "gone", the
    # mirror erases them (SPEC 5.4), and their signal has no member ever again.
    world.poll(enrolled(offer=52, applicant=9), email_changed(9))

    publisher = Publisher(world.engine, world.config)
    try:
        report = publisher.deliver(budget=120.0)
    finally:
        publisher.close()

    assert (report.erased, report.failed, report.pending, report.delivered) == (1, 0, 0, 0)
    assert world.hub.puts == []
    row = world.delivery("1")
    assert (row.status, row.attempts) == ("failed", 0)
    assert "applicant 9 was erased" in row.last_error


def test_a_backfill_does_not_wait_on_members_no_poll_will_bring(world: World) -> None:
    with freeze_time(T0):
        world.poll(enrolled(offer=53, applicant=10))
        publisher = Publisher(world.engine, world.config)
        try:
            # Frozen time: a drain that waited for the next round would never return.
            report = publisher.deliver(budget=120.0)
        finally:
            publisher.close()
    assert (report.waiting, report.pending, report.delivered) == (1, 1, 0)
    assert world.hub.puts == []


def test_a_rule_publishing_to_the_learning_hub_without_a_member_is_a_config_error(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HUB_KEY", "sim-hub-key")
    sim = make_simulator(events=10)
    path = write_config(sim.url, extra=HUB.format(url=sim.url, member=""))

    assert main(["backfill", "-c", str(path)]) == 78
    err = capsys.readouterr().err
    assert "rules[0] ('offer-enrolled').member" in err
    assert "'hub'" in err
    assert sim.hub.puts == []
