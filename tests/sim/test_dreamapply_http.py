"""The DreamApply simulator over real HTTP: what edsync's tests and benchmarks rely on."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from edsync_sim import Simulator
from edsync_sim.dataset import EVENT_NAMES, JOURNAL_LINKS, Journal

KEY = "sim-dreamapply-key"
AUTH = {"Authorization": f'DREAM apikey="{KEY}"'}
# API v9 requires byEvents on /journal: every name, the "?" ones as wildcards.
ALL_EVENTS = {"byEvents": ",".join(EVENT_NAMES)}
STATUS_NAME = re.compile(r'^(.*?: )"(.*)"$')

# The DreamApply journal's list of events, from the seed document.
ALL_48 = [
    "Applicant registered",
    "Applicant was deleted",
    "Applicant decision: ?",
    "Applicant requested to be forgotten",
    "Applicant email was changed",
    "Applicant was transferred to another DreamID identity",
    "Application was created",
    "Application was created by cloning",
    "Application was edited",
    "Course was added to application",
    "Course was removed from application",
    "Application was submitted",
    "Application was re-submitted",
    "Application was flagged",
    "Application was un-flagged",
    "Application was reopened",
    "Application was silenced",
    "Application was un-silenced",
    "Application was frozen",
    "Application was defrosted",
    "Application was migrated",
    "Application was withdrawn",
    "Application was closed",
    "Application was reverted",
    "Application was marked as inactive",
    "Referee was added to an application",
    "Referee was removed from an application",
    "Application was shared with: ?",
    "Application share was revoked",
    "Offer was edited: ?",
    "Offer was confirmed: ?",
    "Document was uploaded",
    "Document was uploaded to a task",
    "Media was uploaded",
    "Media was added",
    "Media was removed",
    "Interview was started",
    "Interview was completed",
    "Interview was evaluated",
    "Referee was invited",
    "Referee was reminded",
    "Referee committed reference",
    "Invoice was issued",
    "Invoice was reminded",
    "Invoice was marked as paid",
    "Task was committed as: ?",
    "Task was resolved as: ?",
    "Task was commented",
]


def template(name: str) -> str:
    """``Offer was edited: "Enrolled"`` → ``Offer was edited: ?``."""
    match = STATUS_NAME.match(name)
    return f"{match.group(1)}?" if match else name


def status_of(name: str) -> str | None:
    match = STATUS_NAME.match(name)
    return match.group(2) if match else None


def trailing_id(link: str) -> int:
    return int(link.rsplit("/", 1)[1])


def fetch_all(client: httpx.Client, **params: str | int) -> dict[int, Any]:
    """Every event matching ``params``, paging with bySince until an empty page."""
    events: dict[int, Any] = {}
    since = 1
    while True:
        response = client.get("/api/journal", params={**params, "bySince": since})
        response.raise_for_status()
        page = {int(key): value for key, value in response.json().items()}
        if not page:
            return events
        assert not events.keys() & page.keys()
        assert list(page) == sorted(page)
        events.update(page)
        since = max(page) + 1


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(events=2000) as simulator:
        yield simulator
    assert simulator.errors == []


@pytest.fixture
def client(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, headers=AUTH, params=ALL_EVENTS, timeout=10) as http:
        yield http


@pytest.fixture(scope="module")
def everything(sim: Simulator) -> dict[int, Any]:
    with httpx.Client(base_url=sim.url, headers=AUTH, params=ALL_EVENTS, timeout=10) as http:
        return fetch_all(http)


@pytest.fixture(scope="module")
def expanded(sim: Simulator) -> dict[int, Any]:
    with httpx.Client(base_url=sim.url, headers=AUTH, params=ALL_EVENTS, timeout=10) as http:
        return fetch_all(http, expand="applicant,application,offer,invoice,document")


# -- the dataset --------------------------------------------------------------


def test_same_seed_gives_identical_bodies() -> None:
    bodies = []
    for seed in (7, 7, 8):
        with (
            Simulator(events=1500, seed=seed) as simulator,
            httpx.Client(base_url=simulator.url, headers=AUTH, params=ALL_EVENTS) as http,
        ):
            plain = http.get("/api/journal", params={"bySince": 400}).content
            rich = http.get("/api/journal", params={"expand": "applicant,offer"}).content
            bodies.append((plain, rich))
    assert bodies[0] == bodies[1]
    assert bodies[0][0] != bodies[2][0]


def test_default_dataset_holds_all_48_names(everything: dict[int, Any]) -> None:
    assert len(ALL_48) == 48
    seen = {template(event["event"]) for event in everything.values()}
    assert sorted(set(ALL_48) - seen) == []
    assert seen <= set(ALL_48)


def test_paging_returns_every_id_once_in_order(everything: dict[int, Any]) -> None:
    assert list(everything) == list(range(1, 2001))
    logged = [datetime.fromisoformat(event["logged"]) for event in everything.values()]
    assert logged == sorted(logged)
    assert logged[0] == datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    assert all(event["logged"].endswith("+00:00") for event in everything.values())
    assert all(event["bind"] == [] for event in everything.values())


def test_link_conventions(everything: dict[int, Any]) -> None:
    # Only the link fields JournalItem.php knows: media, interview, referee and
    # task events carry none of their own, only their application's.
    own_field = {"Document": "document", "Invoice": "invoice", "Offer": "offer"}
    for event in everything.values():
        assert event.keys() <= {"logged", "event", "bind"} | JOURNAL_LINKS, event
        assert re.fullmatch(r"/api/applicants/\d+", event["applicant"])
        if event["event"].startswith(("Application", "Course", "Media", "Interview", "Task")):
            assert re.fullmatch(r"/api/applications/\d+", event["application"])
        field = own_field.get(event["event"].split(" ", 1)[0])
        if field == "offer":
            assert re.fullmatch(r"/api/applications/\d+/offers/\d+", event["offer"])
            assert event["offer"].startswith(event["application"] + "/")
        elif field == "document":
            # As the journal's documentation prints it (payloads.DOCUMENT_LINK).
            assert re.fullmatch(rf"{event['applicant']}/documents/\d+", event["document"])
        elif field is not None:
            assert re.fullmatch(rf"/api/{field}s/\d+", event[field]), event


def test_story_is_coherent(everything: dict[int, Any]) -> None:
    registered: set[int] = set()
    created: set[int] = set()
    gone: set[int] = set()
    for event in everything.values():
        name = event["event"]
        applicant = trailing_id(event["applicant"])
        assert applicant not in gone, f"event after forgetting/deleting: {event}"
        if name == "Applicant registered":
            registered.add(applicant)
        assert applicant in registered
        if "application" in event:
            application = trailing_id(event["application"])
            if name.startswith("Application was created"):
                created.add(application)
            assert application in created
        if name in ("Applicant requested to be forgotten", "Applicant was deleted"):
            gone.add(applicant)
    forgotten = sum(
        event["event"] == "Applicant requested to be forgotten" for event in everything.values()
    )
    assert 1 <= forgotten <= 20


def test_offers_end_in_various_statuses_many_enrolled(everything: dict[int, Any]) -> None:
    last: dict[str, str] = {}
    for event in everything.values():
        if event["event"].startswith("Offer was edited: "):
            last[event["offer"]] = status_of(event["event"]) or ""
    finals = list(last.values())
    assert len(set(finals)) >= 3
    assert finals.count("Enrolled") >= len(finals) // 4


# -- expansion ----------------------------------------------------------------


def test_expanded_offer_type_title_matches_event_name(
    sim: Simulator, expanded: dict[int, Any], everything: dict[int, Any]
) -> None:
    # An offer has no status field, only a type whose title the event names carry.
    with httpx.Client(base_url=sim.url, headers=AUTH, params=ALL_EVENTS, timeout=10) as http:
        types = http.get("/api/v9/applications/offers/types").json()
    # As the v9 pages print type links (resources.OFFER_TYPE_LINK).
    titles = {f"/api/v4/applications/offers/types/{tid}": t["title"] for tid, t in types.items()}
    checked = 0
    for event_id, event in expanded.items():
        if event["event"].startswith(("Offer was edited: ", "Offer was confirmed: ")):
            offer = event["offer"]
            assert "status" not in offer
            assert titles[offer["type"]] == status_of(event["event"])
            # No application link on an offer (Offer.php), no id expanded: the
            # item's links name both; the simulator's registry knows the owner.
            links = everything[event_id]
            entity = sim.journal.registry.get("offer", trailing_id(links["offer"]))
            assert entity is not None
            owner = entity.owner
            assert owner is not None
            assert trailing_id(links["application"]) == owner.id
            checked += 1
    assert checked > 50


def test_expanded_objects_carry_ids_where_the_vendor_prints_them(
    expanded: dict[int, Any], everything: dict[int, Any]
) -> None:
    # Issue 30: an expanded application or offer has no id (the vendor's
    # examples have none); an application names it in its own sub-links.
    for event_id, event in expanded.items():
        links = everything[event_id]
        applicant = event["applicant"]
        assert applicant["id"] == trailing_id(links["applicant"])
        assert re.fullmatch(
            rf"[a-z]+\.[a-z]+\.{applicant['id']}(\.[0-9a-f]{{4}})?@([a-z]+\.)?example\.org",
            applicant["email"],
        )
        assert {"type", "registered", "name", "email", "phone", "citizenship"} <= applicant.keys()
        if "application" in event:
            application = event["application"]
            assert "id" not in application
            assert application["applicant"] == f"/api/v9/applicants/{applicant['id']}"
            own = f"/api/v9/applications/{trailing_id(links['application'])}"
            assert application["offers"] == f"{own}/offers"
            assert application["tasks"] == f"{own}/tasks"
        if "offer" in event:
            assert "id" not in event["offer"]
        if "invoice" in event:
            assert event["invoice"]["id"] == trailing_id(links["invoice"])
        if "document" in event:
            # An expanded document is file metadata (BinaryRecord): no id.
            assert event["document"].keys() == {"uploaded", "name", "mime", "size", "expires"}


def test_expansion_shows_the_entity_as_it_was(expanded: dict[int, Any]) -> None:
    emails: dict[int, list[str]] = {}
    for event in expanded.values():
        emails.setdefault(event["applicant"]["id"], []).append(event["applicant"]["email"])
    changed = [seq for seq in emails.values() if len(set(seq)) > 1]
    assert changed
    for seq in changed:
        assert seq[0].endswith("@example.org")
        # Changed, or another DreamID identity's sign-in address.
        assert seq[-1].endswith(("@mail.example.org", "@dreamid.example.org"))


def test_unknown_expansions_stay_links(client: httpx.Client) -> None:
    page = client.get("/api/journal", params={"expand": "course,flag,tracker", "limit": 2000})
    assert page.status_code == 200
    assert len(page.json()) == 512
    plain = client.get("/api/journal", params={"limit": 512})
    assert page.json() == plain.json()


# -- parameters -----------------------------------------------------------------


def test_limit_is_capped_silently(client: httpx.Client) -> None:
    cases: list[tuple[dict[str, str | int], int]] = [
        ({}, 1024),
        ({"limit": 5000}, 1024),
        ({"limit": 700}, 700),
        ({"limit": 5000, "expand": "applicant"}, 512),
        ({"expand": "offer"}, 512),
    ]
    for params, expected in cases:
        response = client.get("/api/journal", params=params)
        assert len(response.json()) == expected, params
        assert response.headers["X-Count"] == "2000"
        assert response.headers["Content-Type"] == "application/json"


def test_x_count_on_head_and_get(client: httpx.Client) -> None:
    params: dict[str, str | int] = {"byEvents": "Offer was edited: ?", "bySince": 100, "limit": 3}
    head = client.head("/api/journal", params=params)
    get = client.get("/api/journal", params=params)
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["X-Count"] == get.headers["X-Count"]
    assert int(head.headers["X-Count"]) > 3
    assert len(get.json()) == 3


def test_by_events_wildcard_and_status(client: httpx.Client, everything: dict[int, Any]) -> None:
    def ids(by_events: str) -> list[int]:
        response = client.get("/api/journal", params={"byEvents": by_events})
        found = [int(key) for key in response.json()]
        assert response.headers["X-Count"] == str(len(found))
        return found

    edited = [i for i, e in everything.items() if e["event"].startswith("Offer was edited: ")]
    enrolled = [i for i, e in everything.items() if e["event"] == 'Offer was edited: "Enrolled"']
    created = [i for i, e in everything.items() if e["event"] == "Application was created"]
    assert enrolled
    assert ids("Offer was edited: ?") == edited
    assert ids('Offer was edited: "Enrolled"') == enrolled
    assert ids("Offer was edited: Enrolled") == enrolled
    both = ids('Application was created, Offer was edited: "Enrolled"')
    assert both == sorted(created + enrolled)
    assert ids("No such event") == []


def test_by_until_and_iso_bounds(client: httpx.Client, everything: dict[int, Any]) -> None:
    page = client.get("/api/journal", params={"bySince": 10, "byUntil": 20})
    assert [int(k) for k in page.json()] == list(range(10, 21))
    assert page.headers["X-Count"] == "11"

    logged = everything[500]["logged"]
    first = min(i for i, e in everything.items() if e["logged"] == logged)
    last = max(i for i, e in everything.items() if e["logged"] == logged)
    since = client.get("/api/journal", params={"bySince": logged, "limit": 1})
    assert list(since.json()) == [str(first)]
    until = client.get("/api/journal", params={"byUntil": logged, "order": "newest-first"})
    assert next(iter(until.json())) == str(last)
    assert until.headers["X-Count"] == str(last)
    naive = client.get("/api/journal", params={"bySince": logged[:-6], "limit": 1})
    assert naive.json() == since.json()


def test_newest_first(client: httpx.Client) -> None:
    newest = client.get("/api/journal", params={"order": "newest-first", "limit": 1})
    assert list(newest.json()) == ["2000"]
    page = client.get("/api/journal", params={"order": "newest-first", "byUntil": 1500})
    assert [int(k) for k in page.json()] == list(range(1500, 476, -1))
    odd = client.get("/api/journal", params={"order": "sideways", "limit": 2})
    assert list(odd.json()) == ["1", "2"]


def test_api_version_prefix(client: httpx.Client) -> None:
    v9 = client.get("/api/v9/journal", params={"limit": 5})
    assert v9.status_code == 200
    assert v9.json() == client.get("/api/journal", params={"limit": 5}).json()
    missing = client.get("/api/vx/journal")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == 404


def test_requires_the_api_key(sim: Simulator) -> None:
    with httpx.Client(base_url=sim.url) as http:
        for headers in ({}, {"Authorization": 'DREAM apikey="wrong"'}, {"Authorization": KEY}):
            response = http.get("/api/journal", headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == 401
            assert http.head("/api/journal", headers=headers).status_code == 401


@pytest.mark.parametrize(
    "params",
    [
        {"bySince": "yesterday"},
        {"byUntil": "2026-13-01"},
        {"limit": "ten"},
        {"limit": "0"},
        {"limit": "-5"},
    ],
)
def test_bad_parameters_are_400(client: httpx.Client, params: dict[str, str]) -> None:
    response = client.get("/api/journal", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 400


def test_other_methods_and_paths(client: httpx.Client) -> None:
    assert client.post("/api/journal", content=b"{}").status_code == 405
    unknown = client.get("/api/nothing-here")
    assert unknown.status_code == 404
    assert unknown.json() == {
        "error": {"code": 404, "message": "no such resource: /api/nothing-here"}
    }


# -- test hooks -----------------------------------------------------------------


def test_inject_faults_then_recover() -> None:
    with (
        Simulator(events=50) as simulator,
        httpx.Client(base_url=simulator.url, headers=AUTH, params=ALL_EVENTS) as http,
    ):
        simulator.inject(429, headers={"Retry-After": "7"})
        simulator.inject(503, times=2)
        simulator.inject(200, body=b'{"1": {"logged": "2026-')
        limited = http.get("/api/journal")
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "7"
        assert [http.get("/api/journal").status_code for _ in range(2)] == [503, 503]
        truncated = http.get("/api/journal")
        assert truncated.status_code == 200
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(truncated.content)
        assert len(http.get("/api/journal").json()) == 50

        simulator.inject(0)
        with pytest.raises(httpx.RemoteProtocolError):
            http.get("/api/journal")
        assert http.get("/api/journal").status_code == 200

        simulator.inject(500, route="edlink")
        assert http.get("/api/journal").status_code == 200
        assert simulator.errors == []


def test_requests_are_recorded() -> None:
    with (
        Simulator(events=10) as simulator,
        httpx.Client(base_url=simulator.url, headers=AUTH, params=ALL_EVENTS) as http,
    ):
        http.head("/api/v9/journal", params={"bySince": 3, "byEvents": "Applicant registered"})
        http.get("/api/journal")
        assert simulator.wait_for_requests(2, timeout=5)
        first, second = simulator.requests
        assert (first.method, first.path) == ("HEAD", "/api/v9/journal")
        assert first.query == {"bySince": "3", "byEvents": "Applicant registered"}
        assert first.headers["authorization"] == AUTH["Authorization"]
        assert first.at <= second.at
        assert not simulator.wait_for_requests(3, timeout=0)


def test_append_raw_serves_anything() -> None:
    with (
        # The raw events are logged years later: keep the whole journal served.
        Simulator(events=5, journal_window=None) as simulator,
        httpx.Client(base_url=simulator.url, headers=AUTH, params=ALL_EVENTS) as http,
    ):
        journal = simulator.journal
        assert journal.append_raw([1, 2]) == 6
        assert journal.append_raw({"event": "Something new", "logged": "2030-01-01T00:00:00Z"}) == 7
        assert journal.append_raw({"logged": "2030-01-01T00:00:00+00:00"}) == 8
        assert journal.append(2) == 10
        body = http.get("/api/journal", params={"bySince": 6}).json()
        # "Something new" is not among the names asked for: the ids jump over it.
        # Nameless events are faults planted on purpose: served whatever the filter.
        assert list(body) == ["6", "8", "9", "10"]
        assert body["6"] == [1, 2]
        assert body["8"] == {"logged": "2030-01-01T00:00:00+00:00"}
        assert body["9"]["logged"] >= "2030-01-01T00:00:00+00:00"
        unknown = http.get("/api/journal", params={"byEvents": "Something new"})
        assert list(unknown.json()) == ["6", "7", "8"]  # the name, and the nameless faults
        since = http.get(
            "/api/journal", params={"bySince": "2030-01-01T00:00:00Z", "byEvents": "Something new"}
        )
        assert next(iter(since.json())) == "7"


def test_rate_grows_the_journal_on_a_fake_clock() -> None:
    now = [1000.0]
    with (
        Simulator(events=100, rate=10, clock=lambda: now[0]) as simulator,
        httpx.Client(base_url=simulator.url, headers=AUTH, params=ALL_EVENTS) as http,
    ):

        def count() -> int:
            return int(http.head("/api/journal").headers["X-Count"])

        assert count() == 100
        now[0] += 2.55
        assert count() == 125
        assert count() == 125
        now[0] += 100
        newest = http.get("/api/journal", params={"order": "newest-first", "limit": 1})
        assert list(newest.json()) == ["1125"]
    # Growth continues the same story a bigger journal tells from the start.
    grown = simulator.journal.fragments(frozenset(), range(1125))
    assert grown == Journal(1125).fragments(frozenset(), range(1125))


# -- the oracle -------------------------------------------------------------------


def test_truth_matches_the_events(sim: Simulator, everything: dict[int, Any]) -> None:
    truth = sim.journal.truth()
    closed: dict[int, bool] = {}
    offer_status: dict[int, str] = {}
    decisions: dict[int, str] = {}
    forgotten: set[int] = set()
    deleted: set[int] = set()
    for event in everything.values():
        name = event["event"]
        if name in ("Application was closed", "Application was reverted"):
            closed[trailing_id(event["application"])] = name == "Application was closed"
        if name.startswith(("Offer was edited: ", "Offer was confirmed: ")):
            offer_status[trailing_id(event["offer"])] = status_of(name) or ""
        if name.startswith("Applicant decision: "):
            decisions[trailing_id(event["applicant"])] = status_of(name) or ""
        if name == "Applicant requested to be forgotten":
            forgotten.add(trailing_id(event["applicant"]))
        if name == "Applicant was deleted":
            deleted.add(trailing_id(event["applicant"]))

    assert any(closed.values())
    assert not all(closed.values())
    for application, is_closed in closed.items():
        assert truth["application", application].deleted is is_closed
    for offer, status in offer_status.items():
        assert truth["offer", offer].status == status
    for applicant, status in decisions.items():
        assert truth["applicant", applicant].status == status
    assert forgotten
    assert {i for (kind, i), t in truth.items() if kind == "applicant" and t.forgotten} == forgotten
    assert {i for (kind, i), t in truth.items() if kind == "applicant" and t.deleted} == deleted
    assert {kind for kind, _ in truth} == {"applicant", "application", "offer"}


# -- the CLI entry point ------------------------------------------------------------


def test_serve_forever_until_sigterm() -> None:
    code = (
        "import sys; from edsync_sim import serve_forever; "
        "sys.exit(serve_forever(port=0, events=20, seed=1, rate=0.0))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, env=env, text=True
    ) as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)\S* .*sim-dreamapply-key", line)
        assert match, line
        response = httpx.get(f"{match.group(1)}/api/journal", headers=AUTH, params=ALL_EVENTS)
        assert len(response.json()) == 20
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


@pytest.mark.parametrize("by_events", [None, "", " , "])
def test_journal_without_by_events_is_400_on_get_and_head(
    sim: Simulator, by_events: str | None
) -> None:
    # API v9 documents byEvents as Required on /journal (help.dreamapply.com/api).
    params = {} if by_events is None else {"byEvents": by_events}
    with httpx.Client(base_url=sim.url, headers=AUTH, timeout=10) as http:
        response = http.get("/api/journal", params=params)
        assert response.status_code == 400
        assert "byEvents" in response.json()["error"]["message"]
        assert http.head("/api/journal", params=params).status_code == 400
