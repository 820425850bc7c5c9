"""Rules → signals outbox → sinks, against the simulated hub (webhooks: test_deliveries)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from edsync.cli import main
from edsync.config import load_config
from edsync.mirror.db import create_mirror_engine
from edsync.normalize import utc_timestamp
from edsync.rules import signal_id
from tests.conftest import DREAMAPPLY_KEY

ENROLLED = 'Offer was edited: "Enrolled"'
HUB = """
expand = ["applicant", "application", "offer"]
snapshot = false
[sinks.hub]
kind = "learninghub"
base_url = "{url}"
program_id = "FOO"
user_id = "edsync"
api_key_env = "HUB_KEY"
retry_for = "{retry_for}"
[[rules]]
name = "offer-enrolled"
source = "dreamapply"
event = 'Offer was edited: "Enrolled"'
publish = ["hub"]
event_type = "offer.enrolled"
member = "applicant.email"
"""


@pytest.fixture
def hub_config(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Path]:
    monkeypatch.setenv("HUB_KEY", "sim-hub-key")

    def factory(url: str, retry_for: str = "2m") -> Path:
        return write_config(url, extra=HUB.format(url=url, retry_for=retry_for))

    return factory


def enrolled_events(url: str) -> dict[str, dict[str, Any]]:
    """Every 'Offer was edited: "Enrolled"' event, by id, with the applicant expanded."""
    out: dict[str, dict[str, Any]] = {}
    since = 1
    headers = {"Authorization": f'DREAM apikey="{DREAMAPPLY_KEY}"'}
    while True:
        page = httpx.get(
            f"{url}/api/journal",
            params={"bySince": str(since), "byEvents": ENROLLED, "expand": "applicant"},
            headers=headers,
        ).json()
        if not page:
            return out
        out.update(page)
        since = max(map(int, page)) + 1


def hub_id(event_id: str) -> str:
    return f"FOO-{signal_id('offer-enrolled', 'dreamapply', event_id)}"


def emails(sim: Any) -> dict[int, str]:
    """The current email of every applicant upstream still has (not purged)."""
    current = sim.journal.current()
    return {key[1]: data["email"] for key, data in current.records.items() if key[0] == "applicant"}


def deliverable(sim: Any, events: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Hub id → ProgramMemberId of each event whose applicant is still there: an
    erased applicant's event is never sent (no member, SPEC 2.3 and 5.4)."""
    live = emails(sim)
    return {
        hub_id(event_id): live[event["applicant"]["id"]]
        for event_id, event in events.items()
        if event["applicant"]["id"] in live
    }


def not_sent(path: Path) -> dict[str, str]:
    """Signal id → last_error of each delivery turned failed because its applicant was erased."""
    engine = create_mirror_engine(load_config(path).mirror)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT signal_id, last_error FROM deliveries WHERE status = 'failed'"
        ).all()
    return {sid: error for sid, error in rows if "was erased" in (error or "")}


def test_offer_enrolled_reaches_the_hub_once_per_event(
    make_simulator: Callable[..., Any], hub_config: Callable[..., Path]
) -> None:
    sim = make_simulator(events=4000)
    path = hub_config(sim.url)

    assert main(["backfill", "-c", str(path)]) == 0

    events = enrolled_events(sim.url)
    members = deliverable(sim, events)
    assert members
    assert set(sim.hub.events) == set(members)
    for event_id, event in events.items():
        if hub_id(event_id) not in members:
            continue
        body = sim.hub.events[hub_id(event_id)]
        assert body["ProgramId"] == "FOO"
        # The applicant's email as the mirror has it now, not as the event had it.
        assert body["ProgramMemberId"] == members[hub_id(event_id)]
        assert body["EventType"] == "offer.enrolled"
        assert body["EventStartUTC"] == body["EventEndUTC"] == utc_timestamp(event["logged"])
        assert body["EventData"]["event_id"] == event_id
        assert body["EventData"]["entity"] == "offer"
        assert body["EventData"]["type"] == ENROLLED
        # Scrubbed or not (an application purged before delivery, SPEC 5.4),
        # a signal keeps the status its event named.
        assert body["EventData"]["data"]["status"] == "Enrolled"
    assert {put.user for put in sim.hub.puts} == {"edsync"}
    assert all(put.body and put.body["ProgramMemberId"] for put in sim.hub.puts)
    # An erased applicant's event was not sent, and the outbox says why.
    erased = {f"FOO-{sid}" for sid in not_sent(path)}
    assert erased == {hub_id(event_id) for event_id in events} - set(members)

    puts = len(sim.hub.puts)
    assert main(["backfill", "-c", str(path)]) == 0
    assert len(sim.hub.puts) == puts


def test_a_failing_hub_gets_every_delivery_retried_and_none_doubled(
    make_simulator: Callable[..., Any], hub_config: Callable[..., Path]
) -> None:
    sim = make_simulator(events=2500)
    sim.inject(500, route="learninghub", times=6)
    sim.inject(503, route="learninghub", headers={"Retry-After": "1"})
    path = hub_config(sim.url)

    assert main(["backfill", "-c", str(path)]) == 0

    expected = set(deliverable(sim, enrolled_events(sim.url)))
    assert expected
    assert set(sim.hub.events) == expected
    failed = [put for put in sim.hub.puts if put.status != 200]
    assert len(failed) == 7
    for event_id in expected:
        bodies = sim.hub.bodies(event_id)
        assert all(body == bodies[0] for body in bodies), event_id
    engine = create_mirror_engine(load_config(path).mirror)
    with engine.connect() as conn:
        statuses: dict[str, int] = dict(
            conn.exec_driver_sql("SELECT status, COUNT(*) FROM deliveries GROUP BY status").all()
        )
        retried = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM deliveries WHERE attempts > 1 AND last_error IS NOT NULL"
        ).scalar_one()
    erased = len(not_sent(path))
    assert statuses == {"delivered": len(expected)} | ({"failed": erased} if erased else {})
    assert retried >= 1


def test_deliveries_that_keep_failing_stay_in_the_outbox_until_retried(
    make_simulator: Callable[..., Any],
    hub_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = make_simulator(events=1500)
    path = hub_config(sim.url, retry_for="1s")
    monkeypatch.setenv("HUB_KEY", "revoked-key")  # the hub refuses every PUT

    assert main(["backfill", "-c", str(path)]) == 1
    assert "stay in the outbox" in capsys.readouterr().err
    assert main(["status", "-c", str(path), "--json"]) == 0
    (sink,) = orjson.loads(capsys.readouterr().out)["sinks"]
    events = enrolled_events(sim.url)
    expected = set(deliverable(sim, events))
    assert expected
    assert sink["pending"] + sink["failed"] == len(events)
    assert sink["delivered"] == 0

    assert {put.status for put in sim.hub.puts} == {401}
    assert "revoked-key" not in capsys.readouterr().err
    engine = create_mirror_engine(load_config(path).mirror)
    with engine.connect() as conn:
        errors = set(conn.exec_driver_sql("SELECT last_error FROM deliveries").scalars().all())
    refused = errors - set(not_sent(path).values())
    assert refused
    assert all("HUB_KEY" in error for error in refused)  # what to fix, never its value

    monkeypatch.setenv("HUB_KEY", "sim-hub-key")  # the key is fixed
    assert main(["deliver", "-c", str(path), "--retry-failed"]) == 0
    assert set(sim.hub.events) == expected


@pytest.mark.parametrize("status", [302, 307])
def test_a_hub_behind_a_redirect_gets_no_delivery_counted_until_it_answers_200(
    make_simulator: Callable[..., Any],
    hub_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    status: int,
) -> None:
    """SPEC 2.3/2.4: the Event Store answers 200; a 3xx (an http→https hop, a
    load balancer) is a failure naming its Location, never a delivery."""
    sim = make_simulator(events=1500)
    location = "https://hub.example.org/events/moved"
    sim.inject(status, route="learninghub", headers={"Location": location}, times=1_000_000)
    path = hub_config(sim.url, retry_for="1s")

    assert main(["backfill", "-c", str(path)]) == 1

    assert sim.hub.events == {}
    assert sim.hub.puts
    assert {put.status for put in sim.hub.puts} == {status}
    capsys.readouterr()
    assert main(["status", "-c", str(path), "--json"]) == 0
    (sink,) = orjson.loads(capsys.readouterr().out)["sinks"]
    assert sink["delivered"] == 0
    assert sink["pending"] + sink["failed"] > 0
    assert f"HTTP {status}" in sink["last_error"]
    assert location in sink["last_error"]

    sim.clear_faults()  # the redirect is gone: the hub answers 200
    assert main(["deliver", "-c", str(path), "--retry-failed"]) == 0
    expected = set(deliverable(sim, enrolled_events(sim.url)))
    assert expected
    assert set(sim.hub.events) == expected


def test_no_deliver_leaves_the_outbox_for_later(
    make_simulator: Callable[..., Any],
    hub_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(events=1500)
    path = hub_config(sim.url)
    assert main(["backfill", "-c", str(path), "--no-deliver"]) == 0
    assert sim.hub.puts == []
    capsys.readouterr()
    assert main(["deliver", "-c", str(path)]) == 0
    assert "failed 0, pending 0" in capsys.readouterr().out
    expected = set(deliverable(sim, enrolled_events(sim.url)))
    assert expected
    assert set(sim.hub.events) == expected
