"""The Edlink Graph simulator over real HTTP: what edsync's Edlink source relies on."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from freezegun import freeze_time

from edsync_sim import Simulator
from tests.contract.edlink.payloads import ERRORS

TOKEN = "sim-edlink-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EVENTS = "/api/v2/graph/events"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PLURALS = {
    "district": "districts",
    "school": "schools",
    "session": "sessions",
    "course": "courses",
    "person": "people",
    "class": "classes",
    "section": "sections",
    "enrollment": "enrollments",
    "agent": "agents",
}
KINDS = tuple(PLURALS)
ISO_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

Event = dict[str, Any]


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def drain(http: httpx.Client, path: str, **params: str | int) -> list[Any]:
    """Every item of a paged endpoint, following ``$next`` until it is absent."""
    items: list[Any] = []
    url, query = path, params
    while True:
        response = http.get(url, params=query or None)
        assert response.status_code == 200, response.text
        body = response.json()
        assert uuid.UUID(body["$request"])
        items.extend(body["$data"])
        if "$next" not in body:
            return items
        url, query = body["$next"], {}


def get(http: httpx.Client, path: str, **params: str | int) -> httpx.Response:
    return http.get(path, params=params)


def error_code(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    errors = response.json()["$errors"]
    assert len(errors) == 1
    assert errors[0]["message"]
    code: str = errors[0]["code"]
    return code


def fixed(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(events=10, edlink_clock=fixed(NOW)) as simulator:
        yield simulator
    assert simulator.errors == []


@pytest.fixture
def http(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, headers=AUTH, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def events(sim: Simulator) -> list[Event]:
    with httpx.Client(base_url=sim.url, headers=AUTH, timeout=10) as client:
        return drain(client, EVENTS, **{"$first": 250})


def client_for(simulator: Simulator) -> httpx.Client:
    return httpx.Client(base_url=simulator.url, headers=AUTH, timeout=10)


# -- authentication and methods ------------------------------------------------


@pytest.mark.parametrize("path", [EVENTS, "/api/v2/graph/people"])
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"X": TOKEN}],
)
def test_requires_the_bearer_token(sim: Simulator, path: str, headers: dict[str, str]) -> None:
    # Edlink answers a wrong or missing token with 400 INVALID_TOKEN
    # (edlink/docs api/v2.0/responses/errors.md), not with a 401.
    with httpx.Client(base_url=sim.url) as client:
        response = client.get(path, headers=headers)
    assert response.status_code == 400
    assert response.json()["$errors"][0]["code"] == "INVALID_TOKEN"


def test_configurable_token() -> None:
    with Simulator(events=1, edlink_people=5, edlink_token="other") as simulator:
        assert httpx.get(simulator.url + EVENTS, headers=AUTH).status_code == 400
        good = {"Authorization": "Bearer other"}
        assert httpx.get(simulator.url + EVENTS, headers=good).status_code == 200


def test_methods_and_unknown_paths(http: httpx.Client) -> None:
    assert http.post(EVENTS, content=b"{}").status_code == 405
    head = http.head("/api/v2/graph/schools")
    assert head.status_code == 200
    assert head.content == b""
    assert http.get("/api/v2/graph/organizations").status_code == 404
    assert http.get("/api/v1/graph/events").status_code == 404


# -- the event stream ----------------------------------------------------------


def test_paging_covers_every_event_once_in_order(sim: Simulator, events: list[Event]) -> None:
    assert len(events) == sim.edlink.events_count == 1000
    assert len({event["id"] for event in events}) == len(events)
    dates = [at(event["date"]) for event in events]
    assert dates == sorted(dates)
    # The history is spread over the ten days before the simulator started.
    assert NOW - timedelta(days=10) <= dates[0] < dates[-1] < NOW
    assert dates[-1] - dates[0] > timedelta(days=9)
    for event in events:
        # The keys of edlink/docs api/v2.0/models/internal/event.md, in its order.
        assert list(event) == [
            "id",
            "date",
            "type",
            "target",
            "target_id",
            "integration_id",
            "materialization_id",
            "data",
        ]
        assert ISO_Z.fullmatch(event["date"])
        assert uuid.UUID(event["id"]).version == 4
        assert event["data"]["id"] == event["target_id"]
        assert ISO_Z.fullmatch(event["data"]["updated_date"])


def test_next_is_an_absolute_url_absent_on_the_last_page(
    sim: Simulator, http: httpx.Client
) -> None:
    page = get(http, EVENTS, **{"$first": 400}).json()
    assert len(page["$data"]) == 400
    assert page["$next"].startswith(f"{sim.url}{EVENTS}?")
    assert "$cursor=" in page["$next"]
    second = http.get(page["$next"]).json()
    assert len(second["$data"]) == 400
    third = http.get(second["$next"]).json()
    assert len(third["$data"]) == 200
    assert "$next" not in third


def test_first_defaults_to_100_and_is_bounded(http: httpx.Client) -> None:
    assert len(get(http, EVENTS).json()["$data"]) == 100
    assert len(get(http, EVENTS, **{"$first": 10000}).json()["$data"]) == 1000
    assert len(get(http, EVENTS, **{"$first": 1}).json()["$data"]) == 1
    for bad in ("0", "10001", "-1", "ten", "", "2.5"):
        assert error_code(get(http, EVENTS, **{"$first": bad})) == "BAD_REQUEST", bad
        assert error_code(get(http, "/api/v2/graph/people", **{"$first": bad})) == "BAD_REQUEST"


def test_last_one_notes_the_stream_head(
    sim: Simulator, http: httpx.Client, events: list[Event]
) -> None:
    page = get(http, EVENTS, **{"$last": 1}).json()
    assert page["$data"] == [events[-1]]
    assert "$next" not in page
    assert sim.edlink.head() == events[-1]["id"]
    assert get(http, EVENTS, **{"$last": 3}).json()["$data"] == events[-3:]
    assert error_code(get(http, EVENTS, **{"$last": 1, "$first": 5})) == "BAD_REQUEST"
    assert error_code(get(http, EVENTS, **{"$last": 0})) == "BAD_REQUEST"


def test_after_resumes_exclusively(http: httpx.Client, events: list[Event]) -> None:
    page = get(http, EVENTS, **{"$after": events[499]["id"], "$first": 5}).json()
    assert page["$data"] == events[500:505]
    rest = drain(http, EVENTS, **{"$after": events[899]["id"], "$first": 30})
    assert rest == events[900:]
    head = get(http, EVENTS, **{"$after": events[-1]["id"]}).json()
    assert head["$data"] == []
    assert "$next" not in head


def test_one_event_is_fetched_by_its_id(http: httpx.Client, events: list[Event]) -> None:
    # api/v2.0/graph/events.md, "Fetch Event": GET /events/:event_id, `$data` the event.
    for event in (events[0], events[500], events[-1]):
        body = get(http, f"{EVENTS}/{event['id']}").json()
        assert body["$data"] == event
        assert uuid.UUID(body["$request"])
    assert error_code(get(http, f"{EVENTS}/{uuid.uuid4()}")) == "NOT_FOUND"
    assert error_code(get(http, f"{EVENTS}/not-an-id")) == "INVALID_UUID"


@pytest.mark.parametrize("after", [str(uuid.uuid4()), "not-an-id", ""])
def test_unknown_after_is_an_invalid_cursor(http: httpx.Client, after: str) -> None:
    assert error_code(get(http, EVENTS, **{"$after": after})) == "INVALID_CURSOR"


def test_forged_or_foreign_cursors_are_invalid(http: httpx.Client) -> None:
    events_next = get(http, EVENTS, **{"$first": 10}).json()["$next"]
    people_next = get(http, "/api/v2/graph/people", **{"$first": 10}).json()["$next"]
    cursor = httpx.URL(events_next).params["$cursor"]
    encoded, signature = cursor.split(".")
    for forged in (f"{encoded}x.{signature}", f"{encoded}.{signature[::-1]}", "junk", "a.b"):
        assert error_code(get(http, EVENTS, **{"$cursor": forged})) == "INVALID_CURSOR"
    foreign = httpx.URL(people_next).params["$cursor"]
    assert error_code(get(http, EVENTS, **{"$cursor": foreign})) == "INVALID_CURSOR"
    assert error_code(get(http, "/api/v2/graph/schools", **{"$cursor": foreign})) == (
        "INVALID_CURSOR"
    )


def test_stream_covers_every_kind_and_change(events: list[Event]) -> None:
    seen = Counter((event["target"], event["type"]) for event in events)
    assert {(kind, op) for kind in KINDS for op in ("created", "updated", "deleted")} <= set(seen)
    assert set(seen) <= {(kind, op) for kind in KINDS for op in ("created", "updated", "deleted")}


def test_stream_is_coherent_and_deletes_carry_the_last_data(events: list[Event]) -> None:
    last: dict[str, Event] = {}
    for event in events:
        previous = last.get(event["target_id"])
        if previous is not None:
            assert previous["target"] == event["target"]
            if previous["type"] == "deleted":
                assert event["type"] == "created", (previous, event)
            else:
                assert event["type"] != "created", (previous, event)
        if event["type"] == "deleted" and previous is not None:
            assert event["data"] == previous["data"]
        if event["type"] != "deleted":
            assert event["data"]["updated_date"] == event["date"]
        last[event["target_id"]] = event


def test_default_dataset_revives_a_deleted_person() -> None:
    with Simulator(edlink_clock=fixed(NOW)) as simulator, client_for(simulator) as client:
        stream = drain(client, EVENTS, **{"$first": 10000})
        truth = simulator.edlink.graph()
    deleted: set[str] = set()
    revived: list[Event] = []
    for event in stream:
        if event["target"] != "person":
            continue
        if event["type"] == "deleted":
            deleted.add(event["target_id"])
        elif event["type"] == "created" and event["target_id"] in deleted:
            revived.append(event)
    assert revived
    for event in revived:
        later = [e for e in stream if e["target_id"] == event["target_id"]][-1]
        state = truth["person", event["target_id"]]
        assert state.deleted is (later["type"] == "deleted")
        assert state.data == later["data"]


def test_graph_oracle_matches_the_last_event_of_each_object(
    sim: Simulator, events: list[Event]
) -> None:
    truth = sim.edlink.graph()
    assert {kind for kind, _ in truth} == set(KINDS)
    last = {(event["target"], event["target_id"]): event for event in events}
    for key, event in last.items():
        assert truth[key].deleted is (event["type"] == "deleted")
        assert truth[key].data == event["data"]
    # Objects no event touched are the initial graph, still there.
    untouched = [state for key, state in truth.items() if key not in last]
    assert len(untouched) > 300
    assert not any(state.deleted for state in untouched)


# -- retention and cursor expiry, on freezegun's clock ----------------------------


def test_events_past_retention_disappear() -> None:
    with (
        freeze_time(NOW) as frozen,
        Simulator(events=1) as simulator,
        client_for(simulator) as client,
    ):
        everything = drain(client, EVENTS, **{"$first": 10000})
        assert len(everything) == 1000
        frozen.move_to(NOW + timedelta(days=25))
        cutoff = NOW + timedelta(days=25) - timedelta(days=30)
        kept = drain(client, EVENTS, **{"$first": 333})
        assert kept == [e for e in everything if at(e["date"]) >= cutoff]
        assert 300 < len(kept) < 700
        purged = everything[len(everything) - len(kept) - 1]
        response = get(client, EVENTS, **{"$after": purged["id"]})
        assert error_code(response) == "INVALID_CURSOR"
        resumed = get(client, EVENTS, **{"$after": kept[0]["id"], "$first": 2}).json()
        assert resumed["$data"] == kept[1:3]
        assert error_code(get(client, f"{EVENTS}/{purged['id']}")) == "NOT_FOUND"
        assert get(client, f"{EVENTS}/{kept[0]['id']}").json()["$data"] == kept[0]

        frozen.move_to(NOW + timedelta(days=41))
        assert get(client, EVENTS).json()["$data"] == []
        assert get(client, EVENTS, **{"$last": 1}).json()["$data"] == []
        assert error_code(get(client, EVENTS, **{"$after": kept[-1]["id"]})) == "INVALID_CURSOR"
        # The objects stay: a new consumer bootstraps from the list endpoints.
        assert len(drain(client, "/api/v2/graph/districts")) >= 2
        assert simulator.edlink.head() == everything[-1]["id"]


def test_a_cursor_whose_next_events_expired_is_invalid() -> None:
    with (
        freeze_time(NOW) as frozen,
        Simulator(events=1, edlink_people=20) as simulator,
        client_for(simulator) as client,
    ):
        page = get(client, EVENTS, **{"$first": 5}).json()
        frozen.move_to(NOW + timedelta(days=20, hours=1))
        assert error_code(client.get(page["$next"])) == "INVALID_CURSOR"


def test_next_expires_two_hours_after_it_was_issued() -> None:
    with (
        freeze_time(NOW) as frozen,
        Simulator(events=1) as simulator,
        client_for(simulator) as client,
    ):
        early = get(client, EVENTS, **{"$first": 100}).json()["$next"]
        frozen.tick(timedelta(hours=1, minutes=59))
        assert client.get(early).status_code == 200
        later = get(client, EVENTS, **{"$first": 100}).json()["$next"]
        people = get(client, "/api/v2/graph/people", **{"$first": 10}).json()["$next"]
        frozen.tick(timedelta(minutes=1))
        assert error_code(client.get(early)) == "INVALID_CURSOR"
        assert client.get(later).status_code == 200
        assert client.get(people).status_code == 200
        frozen.tick(timedelta(hours=2))
        assert error_code(client.get(later)) == "INVALID_CURSOR"
        assert error_code(client.get(people)) == "INVALID_CURSOR"
        # A stored event id still works: only $next expires.
        assert get(client, EVENTS, **{"$after": simulator.edlink.head() or ""}).is_success


def test_injected_clock_drives_growth_dates_and_expiry() -> None:
    now = [NOW]
    with (
        Simulator(events=1, edlink_people=20, edlink_clock=lambda: now[0]) as simulator,
        client_for(simulator) as client,
    ):
        page = get(client, EVENTS, **{"$first": 10}).json()
        now[0] += timedelta(hours=3)
        assert error_code(client.get(page["$next"])) == "INVALID_CURSOR"
        head = simulator.edlink.head()
        simulator.edlink.append(3)
        assert simulator.edlink.events_count == 103
        new = get(client, EVENTS, **{"$after": head or ""}).json()["$data"]
        assert [event["date"] for event in new] == ["2026-06-01T15:00:00.000Z"] * 3
        # A clock that goes back never breaks chronological order.
        now[0] -= timedelta(days=1)
        simulator.edlink.append(1)
        assert get(client, EVENTS, **{"$last": 1}).json()["$data"][0]["date"] == new[-1]["date"]


def test_rate_grows_the_stream_on_the_simulator_clock() -> None:
    ticks = [100.0]
    with (
        Simulator(
            events=1,
            rate=10,
            clock=lambda: ticks[0],
            edlink_people=20,
            edlink_clock=fixed(NOW),
        ) as simulator,
        client_for(simulator) as client,
    ):
        assert len(drain(client, EVENTS, **{"$first": 10000})) == 100
        ticks[0] += 2.55
        grown = drain(client, EVENTS, **{"$first": 10000})
        assert len(grown) == 125
        assert {event["date"] for event in grown[100:]} == {"2026-06-01T12:00:00.000Z"}


# -- list endpoints -------------------------------------------------------------


def current(simulator: Simulator, kind: str) -> dict[str, Any]:
    return {
        id_: dict(state.data)
        for (k, id_), state in simulator.edlink.graph().items()
        if k == kind and not state.deleted
    }


@pytest.mark.parametrize("kind", KINDS)
def test_lists_page_through_the_current_graph(
    sim: Simulator, http: httpx.Client, kind: str
) -> None:
    items = drain(http, f"/api/v2/graph/{PLURALS[kind]}", **{"$first": 37})
    ids = [item["id"] for item in items]
    assert ids == sorted(set(ids))
    assert {item["id"]: item for item in items} == current(sim, kind)
    for item in items:
        assert {"id", "created_date", "updated_date"} <= item.keys()
        assert at(item["created_date"]) <= at(item["updated_date"])


def test_list_shapes_link_the_graph(sim: Simulator) -> None:
    truth = sim.edlink.graph()
    ids = {kind: {i for k, i in truth if k == kind} for kind in KINDS}
    for (kind, _), state in truth.items():
        data: dict[str, Any] = dict(state.data)
        for field, target in (
            ("district_id", "district"),
            ("school_id", "school"),
            ("course_id", "course"),
            ("class_id", "class"),
            ("person_id", "person"),
            ("target_id", "person"),
            ("observer_id", "person"),
        ):
            if field in data:
                assert data[field] in ids[target], (kind, field)
        if kind == "person":
            assert data["roles"][0] in {"student", "teacher", "parent", "guardian", "administrator"}
            assert set(data["school_ids"]) <= ids["school"]
        if kind == "enrollment":
            assert data["role"] in ("student", "teacher")
            assert data["section_id"] is None or data["section_id"] in ids["section"]
        if kind == "agent":
            assert data["relationship"] in ("parent", "guardian")
        if kind == "session":
            assert at(data["start_date"]) < at(data["end_date"])


def test_snapshot_while_the_graph_changes() -> None:
    with (
        Simulator(events=1, edlink_people=100, edlink_clock=fixed(NOW)) as simulator,
        client_for(simulator) as client,
    ):
        head = get(client, EVENTS, **{"$last": 1}).json()["$data"][0]["id"]
        before = current(simulator, "person")
        snapshot: dict[tuple[str, str], Any] = {}
        for kind in KINDS:
            url, query = f"/api/v2/graph/{PLURALS[kind]}", {"$first": 20}
            while True:
                body = client.get(url, params=query or None).json()
                for item in body["$data"]:
                    assert (kind, item["id"]) not in snapshot
                    snapshot[kind, item["id"]] = item
                # Changes land while the snapshot is under way.
                simulator.edlink.append(7)
                if "$next" not in body:
                    break
                url, query = body["$next"], {}
        changes = drain(client, EVENTS, **{"$after": head, "$first": 500})
        assert len(changes) == simulator.edlink.events_count - 500 > 0
        # Whoever was never deleted during the snapshot is in it.
        deleted = {e["target_id"] for e in changes if e["type"] == "deleted"}
        assert set(before) - deleted <= {i for k, i in snapshot if k == "person"}
        # Bootstrap, as the SPEC has it: the snapshot plus the events after the noted head.
        for event in changes:
            key = (event["target"], event["target_id"])
            if event["type"] == "deleted":
                snapshot.pop(key, None)
            else:
                snapshot[key] = event["data"]
        truth = simulator.edlink.graph()
        assert snapshot == {key: dict(s.data) for key, s in truth.items() if not s.deleted}


# -- $filter --------------------------------------------------------------------


def filtered(http: httpx.Client, plural: str, spec: object, first: int = 13) -> list[Any]:
    params: dict[str, str | int] = {"$filter": orjson.dumps(spec).decode(), "$first": first}
    return drain(http, f"/api/v2/graph/{plural}", **params)


def test_filter_on_updated_date(sim: Simulator, http: httpx.Client) -> None:
    people = current(sim, "person")
    dates = sorted(at(p["updated_date"]) for p in people.values())
    pivot_dt = dates[len(dates) // 2]
    pivot = pivot_dt.isoformat().replace("+00:00", "Z")
    compare: dict[str, Callable[[datetime], bool]] = {
        "equals": lambda d: d == pivot_dt,
        "gt": lambda d: d > pivot_dt,
        "gte": lambda d: d >= pivot_dt,
        "lt": lambda d: d < pivot_dt,
        "lte": lambda d: d <= pivot_dt,
    }
    for op, test in compare.items():
        spec = {"updated_date": [{"operator": op, "value": pivot}]}
        got = {p["id"] for p in filtered(http, "people", spec)}
        assert got == {i for i, p in people.items() if test(at(p["updated_date"]))}, op
        assert got
    # Conditions on one field are ANDed; other forms of the same instant agree.
    low, high = dates[len(dates) // 4], dates[3 * len(dates) // 4]
    spec = {
        "updated_date": [
            {"operator": "gte", "value": low.isoformat()},
            {"operator": "lt", "value": high.isoformat().replace("+00:00", "Z")},
        ]
    }
    got = {p["id"] for p in filtered(http, "people", spec)}
    assert got == {i for i, p in people.items() if low <= at(p["updated_date"]) < high}
    spec = {"created_date": [{"operator": "gt", "value": "2100-01-01T00:00:00Z"}]}
    assert filtered(http, "people", spec) == []


def test_filter_on_strings(sim: Simulator, http: httpx.Client) -> None:
    people = current(sim, "person")
    sample = sorted(people.values(), key=lambda p: p["id"])[0]

    def ids(spec: object) -> set[str]:
        return {p["id"] for p in filtered(http, "people", spec)}

    def where(test: Callable[[dict[str, Any]], bool]) -> set[str]:
        found = {i for i, p in people.items() if test(p)}
        assert found
        return found

    assert ids({"email": [{"operator": "equals", "value": sample["email"]}]}) == {sample["id"]}
    assert ids({"email": [{"operator": "contains", "value": "@MAIL.example"}]}) == where(
        lambda p: "@mail.example" in p["email"]
    )
    assert ids({"first_name": [{"operator": "starts with", "value": "s"}]}) == where(
        lambda p: p["first_name"].lower().startswith("s")
    )
    # `in` / `not in` take one comma-separated string (guides/v2.0/filtering-results.md).
    names = ["Smith", "Zhang"]
    assert ids({"last_name": [{"operator": "in", "value": "Smith,Zhang"}]}) == where(
        lambda p: p["last_name"] in names
    )
    assert ids({"last_name": [{"operator": "not in", "value": "Smith,Zhang"}]}) == where(
        lambda p: p["last_name"] not in names
    )
    # A JSON list is tolerated as well (the guide is silent on it).
    assert ids({"last_name": [{"operator": "in", "value": names}]}) == where(
        lambda p: p["last_name"] in names
    )
    assert ids({"middle_name": [{"operator": "is unknown"}]}) == where(
        lambda p: p["middle_name"] is None
    )
    assert ids({"middle_name": [{"operator": "is known"}]}) == where(
        lambda p: p["middle_name"] is not None
    )
    both = {
        "first_name": [{"operator": "starts with", "value": "s"}],
        "phone": [{"operator": "is known"}],
    }
    assert ids(both) == where(
        lambda p: p["first_name"].lower().startswith("s") and p["phone"] is not None
    )
    enrollments = current(sim, "enrollment")
    teachers = filtered(http, "enrollments", {"role": [{"operator": "equals", "value": "teacher"}]})
    assert {e["id"] for e in teachers} == {
        i for i, e in enrollments.items() if e["role"] == "teacher"
    }


def test_filter_survives_next(http: httpx.Client) -> None:
    spec_json = orjson.dumps({"middle_name": [{"operator": "is known"}]}).decode()
    params: dict[str, str | int] = {"$filter": spec_json, "$first": 5}
    first = get(http, "/api/v2/graph/people", **params).json()
    second = http.get(first["$next"]).json()
    assert all(p["middle_name"] is not None for p in first["$data"] + second["$data"])
    assert first["$data"][-1]["id"] < second["$data"][0]["id"]


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        "{}",
        '{"nope": [{"operator": "equals", "value": "x"}]}',
        '{"roles": [{"operator": "equals", "value": "student"}]}',
        '{"updated_date": {"operator": "gte", "value": "2026-01-01T00:00:00Z"}}',
        '{"updated_date": []}',
        '{"updated_date": [{"operator": "contains", "value": "2026"}]}',
        '{"updated_date": [{"operator": "gte", "value": "yesterday"}]}',
        '{"updated_date": [{"operator": "gte"}]}',
        '{"updated_date": [{"value": "2026-01-01T00:00:00Z"}]}',
        '{"email": [{"operator": "in", "value": 5}]}',
        '{"email": [{"operator": "in", "value": ["a", 5]}]}',
        '{"email": [{"operator": "equals", "value": 5}]}',
        '{"email": [{"operator": "gte", "value": "a"}]}',
        '{"id": [{"operator": "contains", "value": "a"}]}',
    ],
)
def test_bad_filters_are_400(http: httpx.Client, raw: str) -> None:
    assert error_code(get(http, "/api/v2/graph/people", **{"$filter": raw})) == "BAD_REQUEST"


# -- shapes, determinism, faults --------------------------------------------------


def test_legacy_shape() -> None:
    options: dict[str, Any] = {"events": 1, "edlink_people": 30, "edlink_start": NOW}
    with (
        Simulator(**options, edlink_legacy_shape=True, edlink_clock=fixed(NOW)) as legacy,
        Simulator(**options, edlink_clock=fixed(NOW)) as modern,
        client_for(legacy) as old_client,
        client_for(modern) as new_client,
    ):
        old = drain(old_client, EVENTS, **{"$first": 1000})
        new = drain(new_client, EVENTS, **{"$first": 1000})
    assert len(old) == len(new) == 150
    for before, after in zip(old, new, strict=True):
        assert list(before) == ["id", "type", "data", "created_date"]
        assert before["id"] == after["id"]
        assert before["type"] == f"{after['target']}.{after['type']}"
        assert before["created_date"] == after["date"]
        assert before["data"] == after["data"]


def test_same_seed_same_graph_and_stream() -> None:
    def run(seed: int) -> tuple[list[Any], list[Any]]:
        with (
            Simulator(events=1, seed=seed, edlink_people=60, edlink_clock=fixed(NOW)) as simulator,
            client_for(simulator) as client,
        ):
            stream = drain(client, EVENTS, **{"$first": 77})
            return stream, drain(client, "/api/v2/graph/enrollments")

    first, again, other = run(3), run(3), run(4)
    assert first == again
    assert first[0] != other[0]
    assert first[1] != other[1]


def test_growth_continues_the_same_stream() -> None:
    def changes(simulator: Simulator) -> list[tuple[str, str, str, str]]:
        with client_for(simulator) as client:
            stream = drain(client, EVENTS, **{"$first": 10000})
        return [(e["id"], e["type"], e["target"], e["target_id"]) for e in stream]

    clock = fixed(NOW)
    with Simulator(events=1, edlink_people=40, edlink_events=300, edlink_clock=clock) as whole:
        expected = changes(whole)
    with Simulator(events=1, edlink_people=40, edlink_events=120, edlink_clock=clock) as grown:
        grown.edlink.append(180)
        assert changes(grown) == expected


def test_inject_faults_on_edlink_routes() -> None:
    with (
        Simulator(events=5, edlink_people=10) as simulator,
        client_for(simulator) as client,
    ):
        simulator.inject(503, route="edlink-events")
        simulator.inject(429, headers={"Retry-After": "3"}, route="edlink-graph")
        assert get(client, "/api/journal").status_code == 401  # the DreamApply route is untouched
        refused = get(client, EVENTS)
        assert refused.status_code == 503
        assert refused.json()["$errors"][0]["code"] == "INJECTED"
        limited = get(client, "/api/v2/graph/people")
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "3"
        assert get(client, EVENTS).status_code == 200
        assert get(client, "/api/v2/graph/people").status_code == 200

        simulator.inject(200, body=b'{"$data": [', route="edlink-events")
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(get(client, EVENTS).content)
        simulator.inject(0, route="edlink-events")
        with pytest.raises(httpx.RemoteProtocolError):
            get(client, EVENTS)
        assert get(client, EVENTS).status_code == 200
        assert simulator.errors == []


@pytest.mark.parametrize("code", [*ERRORS, "SOMETHING_NEW"])
def test_inject_answers_each_documented_error_code_as_edlink_writes_it(code: str) -> None:
    """api/v2.0/responses/errors.md: every code, with the vendor's own text;
    the body as guides/v2.0/errors-warnings.md shows it."""
    with (
        Simulator(events=1, edlink_people=5) as simulator,
        client_for(simulator) as client,
    ):
        simulator.inject(400, route="edlink-events", code=code, times=2)
        first = get(client, EVENTS)
        assert first.status_code == 400
        body = first.json()
        assert isinstance(body["$request"], str)
        assert body["$errors"] == [{"code": code, "message": ERRORS.get(code, code)}]
        assert get(client, EVENTS).status_code == 400
        simulator.clear_faults()
        assert get(client, EVENTS).status_code == 200
        assert simulator.errors == []
