"""The Learning Hub Event Store simulator over real HTTP: what edsync's sink relies on."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from edsync_sim import HubPut, Simulator

USER = "edsync"
KEY = "sim-hub-key"
AUTH = (USER, KEY)
EVENT = {
    "ProgramId": "FOO",
    "ProgramMemberId": "joebob@example.com",
    "EventType": "offer.enrolled",
    "EventStartUTC": "2026-03-01T10:00:00Z",
    "EventEndUTC": "2026-03-01T10:00:00Z",
    "EventData": {"applicant": 7, "status": "Enrolled"},
    "ReferenceEventId": None,
}

Event = dict[str, Any]


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(events=1, edlink_people=1) as simulator:
        yield simulator
    assert simulator.errors == []


@pytest.fixture
def http(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, auth=AUTH, timeout=10) as client:
        yield client


def event(**changes: Any) -> Event:
    body = {**EVENT, **changes}
    return {name: value for name, value in body.items() if value is not ...}


def put(http: httpx.Client, event_id: str, body: object = EVENT, **kwargs: Any) -> httpx.Response:
    return http.put(f"/events/{event_id}", content=orjson.dumps(body), **kwargs)


def message(response: httpx.Response) -> str:
    error = response.json()["error"]
    assert error["code"] == response.status_code
    text: str = error["message"]
    assert text
    return text


def basic(value: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(value.encode()).decode()}


# -- creating and replacing -----------------------------------------------------


def test_put_creates_the_event(sim: Simulator, http: httpx.Client) -> None:
    response = put(http, "FOO-ABC123", headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.headers["Location"] == "/events/FOO-ABC123"
    assert response.json()["EventId"] == "FOO-ABC123"
    assert sim.hub.events == {"FOO-ABC123": EVENT}
    assert sim.hub.puts == [HubPut("FOO-ABC123", EVENT, 200, USER)]
    assert sim.hub.bodies("FOO-ABC123") == [EVENT]
    assert sim.hub.bodies("FOO-other") == []


def test_only_the_required_fields(sim: Simulator, http: httpx.Client) -> None:
    minimal = {"ProgramId": "FOO", "EventType": "x", "EventStartUTC": "2026-03-01T10:00:00"}
    assert put(http, "FOO-1", minimal).status_code == 200
    # Fields the seed does not list are kept as sent.
    extra = {**minimal, "ReferenceEventId": "FOO-1", "Custom": [1, 2]}
    assert put(http, "FOO-2", extra).status_code == 200
    assert sim.hub.events == {"FOO-1": minimal, "FOO-2": extra}


def test_same_id_replaces_the_event(sim: Simulator, http: httpx.Client) -> None:
    first = event(EventData={"n": 1})
    second = event(EventData={"n": 2}, ReferenceEventId="FOO-0")
    assert put(http, "FOO-1", first).status_code == 200
    assert put(http, "FOO-1", second).status_code == 200
    assert put(http, "FOO-2", first).status_code == 200
    assert sim.hub.events == {"FOO-1": second, "FOO-2": first}
    assert sim.hub.bodies("FOO-1") == [first, second]
    assert [p.status for p in sim.hub.puts] == [200, 200, 200]
    assert http.get("/events/FOO-1").json() == second


def test_get_returns_the_stored_event_or_404(sim: Simulator, http: httpx.Client) -> None:
    # The tests' read-back (the Event Store documents no GET; edsync never sends one).
    missing = http.get("/events/FOO-edsync-check")
    assert missing.status_code == 404
    assert "FOO-edsync-check" in message(missing)
    assert put(http, "FOO-7").status_code == 200
    found = http.get("/events/FOO-7")
    assert found.status_code == 200
    assert found.headers["Content-Type"] == "application/json"
    assert found.json() == EVENT
    head = http.head("/events/FOO-7")
    assert head.status_code == 200
    assert head.content == b""
    assert sim.hub.puts == [HubPut("FOO-7", EVENT, 200, USER)]  # GETs are not PUTs


def test_percent_encoded_id(sim: Simulator, http: httpx.Client) -> None:
    response = http.put("/events/FOO-a%20b", content=orjson.dumps(EVENT))
    assert response.status_code == 200
    assert response.headers["Location"] == "/events/FOO-a%20b"
    assert response.json()["EventId"] == "FOO-a b"
    assert list(sim.hub.events) == ["FOO-a b"]
    assert http.get("/events/FOO-a%20b").json() == EVENT


def test_chunked_body(sim: Simulator, http: httpx.Client) -> None:
    raw = orjson.dumps(EVENT)
    parts = iter([raw[:10], raw[10:]])
    response = http.put("/events/FOO-chunked", content=parts)
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == 200, response.text
    assert sim.hub.events == {"FOO-chunked": EVENT}
    # The connection stays usable after a chunked body.
    assert http.get("/events/FOO-chunked").json() == EVENT


def test_other_methods_are_refused(http: httpx.Client) -> None:
    for method in ("POST", "DELETE", "PATCH"):
        response = http.request(method, "/events/FOO-1", content=orjson.dumps(EVENT))
        assert response.status_code == 405
        assert response.headers["Allow"] == "GET, HEAD, PUT"


def test_events_without_an_id_are_not_routed(http: httpx.Client) -> None:
    assert put(http, "").status_code == 404
    assert http.put("/events/FOO-1/x", content=orjson.dumps(EVENT)).status_code == 404


# -- authentication and programs ------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "user"),
    [
        ({}, None),
        (basic(f"{USER}:wrong"), USER),
        (basic(f"someone:{KEY}"), "someone"),
        (basic(f"{USER}{KEY}"), None),  # no colon
        ({"Authorization": "Basic not base64!"}, None),
        ({"Authorization": f"Bearer {KEY}"}, None),
    ],
)
def test_put_requires_basic_credentials(
    sim: Simulator, headers: dict[str, str], user: str | None
) -> None:
    with httpx.Client(base_url=sim.url, timeout=10) as client:
        response = put(client, "FOO-1", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")
        message(response)
        assert client.get("/events/FOO-edsync-check", headers=headers).status_code == 401
    assert sim.hub.events == {}
    assert sim.hub.puts == [HubPut("FOO-1", EVENT, 401, user)]


def test_basic_scheme_is_case_insensitive(sim: Simulator) -> None:
    headers = {"Authorization": basic(f"{USER}:{KEY}")["Authorization"].replace("Basic", "basic")}
    with httpx.Client(base_url=sim.url, timeout=10) as client:
        assert put(client, "FOO-1", headers=headers).status_code == 200


@pytest.mark.parametrize("event_id", ["BAR-1", "FOO1", "FOOBAR-1", "foo-1", "XFOO-1", "-FOO-1"])
def test_id_must_start_with_a_permitted_program(
    sim: Simulator, http: httpx.Client, event_id: str
) -> None:
    response = put(http, event_id, event(ProgramId=event_id.partition("-")[0] or "FOO"))
    assert response.status_code == 403
    message(response)
    assert http.get(f"/events/{event_id}").status_code == 403
    assert sim.hub.events == {}
    assert [p.status for p in sim.hub.puts] == [403]


def test_empty_id_after_the_prefix(sim: Simulator, http: httpx.Client) -> None:
    response = put(http, "FOO-")
    assert response.status_code == 400
    assert "no id" in message(response)
    assert sim.hub.events == {}


def test_body_program_must_match_the_prefix() -> None:
    with Simulator(events=1, edlink_people=1, hub_programs=("FOO", "BAR")) as sim:
        with httpx.Client(base_url=sim.url, auth=AUTH, timeout=10) as http:
            # Both programs are permitted, but the body names the other one.
            mismatch = put(http, "FOO-1", event(ProgramId="BAR"))
            assert mismatch.status_code == 403
            assert "BAR" in message(mismatch)
            assert put(http, "FOO-1", event(ProgramId="QUX")).status_code == 403
            assert put(http, "BAR-1", event(ProgramId="BAR")).status_code == 200
            assert put(http, "FOO-1", event(ProgramId="FOO")).status_code == 200
        assert sorted(sim.hub.events) == ["BAR-1", "FOO-1"]
        assert [p.status for p in sim.hub.puts] == [403, 403, 200, 200]
        assert sim.errors == []


def test_configurable_credentials_and_programs() -> None:
    with Simulator(
        events=1, edlink_people=1, hub_user="u", hub_key="k", hub_programs=("P-Q",)
    ) as sim:
        assert (sim.hub.user, sim.hub.key, sim.hub.programs) == ("u", "k", ("P-Q",))
        with httpx.Client(base_url=sim.url, timeout=10) as http:
            assert put(http, "P-Q-1", event(ProgramId="P-Q"), auth=AUTH).status_code == 401
            response = put(http, "P-Q-1", event(ProgramId="P-Q"), auth=("u", "k"))
            assert response.status_code == 200
            assert put(http, "FOO-1", auth=("u", "k")).status_code == 403
            assert put(http, "P-1", event(ProgramId="P"), auth=("u", "k")).status_code == 403
        assert list(sim.hub.events) == ["P-Q-1"]
        assert sim.errors == []


# -- bad bodies -----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b'{"ProgramId": "FOO",', b"[]", b'"FOO"', b"null", b"\xff\xfe"],
)
def test_body_must_be_a_json_object(sim: Simulator, http: httpx.Client, raw: bytes) -> None:
    response = http.put("/events/FOO-1", content=raw)
    assert response.status_code == 400
    assert "JSON object" in message(response)
    assert sim.hub.puts == [HubPut("FOO-1", None, 400, USER)]
    assert sim.hub.bodies("FOO-1") == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ProgramId": ...}, "ProgramId"),
        ({"EventType": ...}, "EventType"),
        ({"EventStartUTC": ...}, "EventStartUTC"),
        ({"ProgramId": None}, "ProgramId"),
        ({"EventType": ""}, "EventType"),
        ({"EventType": 3}, "EventType"),
        ({"EventStartUTC": None}, "EventStartUTC"),
        ({"EventStartUTC": "yesterday"}, "EventStartUTC"),
        ({"EventStartUTC": "2026-03-01T10:00:00+02:00"}, "EventStartUTC"),
        ({"ProgramMemberId": 42}, "ProgramMemberId"),
        ({"ProgramMemberId": None}, "ProgramMemberId"),
        ({"EventEndUTC": 1700000000}, "EventEndUTC"),
        ({"EventEndUTC": "soon"}, "EventEndUTC"),
        ({"EventData": "{}"}, "EventData"),
        ({"EventData": [1]}, "EventData"),
        ({"ReferenceEventId": 5}, "ReferenceEventId"),
        ({"ReferenceEventId": {"id": "FOO-1"}}, "ReferenceEventId"),
    ],
)
def test_bad_fields(sim: Simulator, http: httpx.Client, changes: Event, field: str) -> None:
    body = event(**changes)
    response = put(http, "FOO-1", body)
    assert response.status_code == 400
    assert field in message(response)
    assert sim.hub.events == {}
    assert sim.hub.puts == [HubPut("FOO-1", body, 400, USER)]
    # The refused body is still on record for the oracle.
    assert sim.hub.bodies("FOO-1") == [body]


# -- faults and the oracle ------------------------------------------------------


def test_injected_faults_then_success(sim: Simulator, http: httpx.Client) -> None:
    sim.inject(500, route="learninghub", times=2)
    statuses = [put(http, "FOO-retry").status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert [p.status for p in sim.hub.puts] == [500, 500, 200]
    # Every attempt is on record, so a test can check the retries carried the same body.
    assert sim.hub.bodies("FOO-retry") == [EVENT, EVENT, EVENT]
    assert sim.hub.events == {"FOO-retry": EVENT}


def test_faults_stay_on_their_route(sim: Simulator, http: httpx.Client) -> None:
    sim.inject(503, route="learninghub")
    journal = sim.url + "/api/journal?byEvents=Applicant%20registered"  # required (API v9)
    dreamapply = {"Authorization": f'DREAM apikey="{sim.api_key}"'}
    assert httpx.get(journal, headers=dreamapply).status_code == 200
    assert put(http, "FOO-1").status_code == 503
    sim.inject(503, route="dreamapply")
    assert put(http, "FOO-1").status_code == 200
    assert httpx.get(journal, headers=dreamapply).status_code == 503
    assert [p.status for p in sim.hub.puts] == [503, 200]


def test_dropped_connection_is_recorded(sim: Simulator, http: httpx.Client) -> None:
    sim.inject(0, route="learninghub")
    with pytest.raises(httpx.TransportError):
        put(http, "FOO-1")
    assert sim.hub.puts == [HubPut("FOO-1", EVENT, 0, USER)]
    assert sim.hub.events == {}
    assert put(http, "FOO-1").status_code == 200
    assert sim.hub.events == {"FOO-1": EVENT}


def test_injected_200_stores_nothing(sim: Simulator, http: httpx.Client) -> None:
    """A fault answers for the hub: the client sees success, the hub keeps nothing."""
    sim.inject(200, body=b"{}", route="learninghub")
    assert put(http, "FOO-lost").status_code == 200
    assert sim.hub.events == {}
    assert sim.hub.puts == [HubPut("FOO-lost", EVENT, 200, USER)]
    assert http.get("/events/FOO-lost").status_code == 404


def test_wait_for_puts(sim: Simulator) -> None:
    assert not sim.hub.wait_for_puts(1, timeout=0.01)
    ids = [f"FOO-{n}" for n in range(5)]

    def publish() -> None:
        with httpx.Client(base_url=sim.url, auth=AUTH, timeout=10) as client:
            for event_id in ids:
                put(client, event_id)

    worker = threading.Thread(target=publish)
    worker.start()
    try:
        assert sim.hub.wait_for_puts(len(ids), timeout=10)
    finally:
        worker.join()
    assert sorted(p.event_id for p in sim.hub.puts) == ids
    assert sorted(sim.hub.events) == ids
    assert not sim.hub.wait_for_puts(len(ids) + 1, timeout=0.01)


def test_concurrent_puts(sim: Simulator) -> None:
    """Threaded server: parallel PUTs of one id all land; the last one answered wins."""
    bodies = [event(EventData={"n": n}) for n in range(8)]
    barrier = threading.Barrier(len(bodies))
    statuses: list[int] = []

    def publish(body: Event) -> None:
        with httpx.Client(base_url=sim.url, auth=AUTH, timeout=10) as client:
            barrier.wait()
            statuses.append(put(client, "FOO-race", body).status_code)

    workers = [threading.Thread(target=publish, args=(body,)) for body in bodies]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert statuses == [200] * len(bodies)
    assert sim.hub.wait_for_puts(len(bodies), timeout=0)
    received = sim.hub.bodies("FOO-race")
    assert sorted(b["EventData"]["n"] for b in received) == list(range(len(bodies)))
    assert sim.hub.events["FOO-race"] == received[-1]
