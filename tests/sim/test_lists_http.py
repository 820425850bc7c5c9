"""The DreamApply simulator's list endpoints and forgetting journal over real HTTP:
what a mirror's bootstrap relies on."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from edsync_sim import Simulator
from edsync_sim.dataset import ACADEMIC_TERMS, EVENT_NAMES, Journal
from edsync_sim.server import RecordedRequest
from tests.sim.test_lists import expected_purges

KEY = "sim-dreamapply-key"
AUTH = {"Authorization": f'DREAM apikey="{KEY}"'}
# API v9 requires byEvents on /journal: every name, the "?" ones as wildcards.
ALL_EVENTS = {"byEvents": ",".join(EVENT_NAMES)}
EVERY_YEAR = {"byAcademicYears": ",".join(sorted({str(y) for y, _ in ACADEMIC_TERMS.values()}))}
LISTS = (
    "/api/applicants",
    "/api/applications",
    "/api/v9/purged-resources",
    "/api/v9/applications/offers/types",
    "/api/v9/applications/offers/types/1",
)
# The kinds the list endpoints serve (the others are read per application).
LISTED = ("applicant", "application", "offer")


def trailing_id(link: str) -> int:
    return int(link.rsplit("/", 1)[1])


def page_all(client: httpx.Client, path: str, limit: int = 50, **params: str) -> dict[int, Any]:
    """Every item of a list endpoint, paging with bySince on the ids until an empty page."""
    items: dict[int, Any] = {}
    since = 1
    while True:
        response = client.get(path, params={**params, "bySince": since, "limit": limit})
        response.raise_for_status()
        page = {int(key): value for key, value in response.json().items()}
        if not page:
            return items
        assert len(page) <= limit
        assert list(page) == sorted(page)
        assert not items.keys() & page.keys()
        items.update(page)
        since = max(page) + 1


def all_applications(client: httpx.Client, **params: str) -> dict[int, Any]:
    """Every live application, read term by term as the vendor documents it
    (/applications requires a term or year filter and has no id paging)."""
    terms = client.get("/api/academic-terms").json()
    items: dict[int, Any] = {}
    for term in terms:
        response = client.get("/api/applications", params={**params, "byAcademicTermID": term})
        response.raise_for_status()
        page = {int(key): value for key, value in response.json().items()}
        assert response.headers["X-Count"] == str(len(page))
        assert not items.keys() & page.keys()
        items.update(page)
    return items


def purged_entries(client: httpx.Client) -> dict[int, Any]:
    """Every purged-resources entry by list number, following the ``pages`` paginator."""
    entries: dict[int, Any] = {}
    page: int | None = 1
    while page is not None:
        body = client.get("/api/v9/purged-resources", params={"page": page}).json()
        pages = body.pop("pages")
        assert pages["current"] == page
        entries.update({int(key): value for key, value in body.items()})
        page = pages["next"]
    return entries


def offers_of(client: httpx.Client, application: int) -> dict[int, Any]:
    response = client.get(f"/api/applications/{application}/offers")
    response.raise_for_status()
    return {int(key): value for key, value in response.json().items()}


def type_titles(client: httpx.Client) -> dict[str, str]:
    """Offer type link (as the v9 pages print it) → title, as a client resolves them."""
    types = client.get("/api/v9/applications/offers/types").json()
    return {
        f"/api/v4/applications/offers/types/{key}": value["title"] for key, value in types.items()
    }


def without_id(data: dict[str, Any]) -> dict[str, Any]:
    """A list keys an application by its id; only its own endpoint prints it inside."""
    return {key: value for key, value in data.items() if key != "id"}


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(events=3000, seed=4) as simulator:
        yield simulator
    assert simulator.errors == []


@pytest.fixture
def client(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, headers=AUTH, params=ALL_EVENTS, timeout=10) as http:
        yield http


# -- the list endpoints -----------------------------------------------------------------


def test_paging_covers_every_live_applicant_exactly_once(
    sim: Simulator, client: httpx.Client
) -> None:
    applicants = page_all(client, "/api/applicants", limit=17)
    current = sim.journal.current().records
    expected = {i: data for (kind, i), data in current.items() if kind == "applicant"}
    assert applicants == expected
    head = client.head("/api/applicants", params={"limit": 1})
    assert int(head.headers["X-Count"]) == len(expected)
    assert page_all(client, "/api/v9/applicants", limit=1000) == expected


def test_applications_embed_their_applicant_on_expand(sim: Simulator, client: httpx.Client) -> None:
    applicants = page_all(client, "/api/applicants")
    plain = all_applications(client)
    expanded = all_applications(client, expand="applicant")
    current = sim.journal.current().records
    assert plain == {
        i: without_id(data) for (kind, i), data in current.items() if kind == "application"
    }
    assert plain.keys() == expanded.keys()
    for application_id, application in expanded.items():
        applicant = application.pop("applicant")
        assert applicant == applicants[trailing_id(plain[application_id]["applicant"])]
        assert application == {k: v for k, v in plain[application_id].items() if k != "applicant"}


def test_offers_and_type_titles_agree_with_the_journal(
    sim: Simulator, client: httpx.Client
) -> None:
    titles = type_titles(client)
    truth = sim.journal.truth()
    current = sim.journal.current().records
    checked = 0
    for application in all_applications(client):
        for offer_id, offer in offers_of(client, application).items():
            assert "status" not in offer
            # Offer.php: no applicant or application link.
            assert not offer.keys() & {"applicant", "application"}
            assert titles[offer["type"]] == truth[("offer", offer_id)].status
            assert {**offer, "status": titles[offer["type"]]} == current[("offer", offer_id)]
            checked += 1
    assert checked == sum(kind == "offer" for kind, _ in current)
    assert checked > 30


def test_offer_types(client: httpx.Client) -> None:
    response = client.get("/api/v9/applications/offers/types")
    assert response.headers["X-Count"] == "7"
    types = response.json()
    # help .../api_applications_offers_types (resources.OFFER_TYPES): its fields.
    fields = {
        "id", "status", "title", "colour", "ranking", "bcc", "confirm", "freeze", "decide",
        "decline", "reopen", "silence", "subject", "comments", "reasons",
    }  # fmt: skip
    assert all(t.keys() == fields for t in types.values())
    assert (types["6"]["id"], types["6"]["title"]) == (6, "Enrolled")
    assert [t["title"] for t in types.values()] == [
        "Offered", "Conditional", "Unconditional", "Accepted", "Rejected", "Enrolled",
        "Waitlisted",
    ]  # fmt: skip
    assert client.get("/api/v4/applications/offers/types/4").json() == types["4"]
    for missing in ("8", "0", "x"):
        response = client.get(f"/api/v9/applications/offers/types/{missing}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == 404


def test_offers_of_unknown_or_purged_applications_are_404(
    sim: Simulator, client: httpx.Client
) -> None:
    assert client.get("/api/applications/1/offers").status_code == 404
    assert client.get("/api/applications/99999/offers").status_code == 404
    purged = next(k for k in sim.journal.current().purged if k[0] == "application")
    assert client.get(f"/api/applications/{purged[1]}/offers").status_code == 404
    without = next(
        e.id for e in sim.journal.registry.entities("application") if e.live and not e.children
    )
    response = client.get(f"/api/applications/{without}/offers")
    assert (response.status_code, response.json(), response.headers["X-Count"]) == (200, {}, "0")


def test_purged_resources_are_the_deleted_forgotten_and_closed(
    sim: Simulator, client: httpx.Client
) -> None:
    purged = purged_entries(client)
    listed = {(p["type"].lower(), p["id"]): p for p in purged.values()}
    owners = {
        trailing_id(event["application"]): trailing_id(event["applicant"])
        for event in page_all(client, "/api/journal", limit=1024).values()
        if event["event"].startswith("Application was created")
    }
    pending = sim.journal.current().forget_requests
    expected = expected_purges(sim.journal.truth(), owners, pending)
    assert listed.keys() == expected.keys()
    assert set(expected.values()) == {"deleted", "forgotten", "closed"}
    # The documented entry: type capitalised; request_to_be_forgotten an object or null.
    for key, entry in listed.items():
        assert entry.keys() == {"id", "type", "created", "request_to_be_forgotten", "marked"}
        assert entry["type"] in ("Applicant", "Application")
        forgotten = entry["request_to_be_forgotten"]
        assert (forgotten is not None) == (expected[key] == "forgotten"), key
    stamps = [p["marked"]["at"] for p in purged.values()]
    assert stamps == sorted(stamps)


@pytest.mark.parametrize("path", [*LISTS, "/api/applications/20001/offers"])
def test_lists_require_the_api_key(sim: Simulator, path: str) -> None:
    for headers in ({}, {"Authorization": 'DREAM apikey="wrong"'}):
        response = httpx.get(f"{sim.url}{path}", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == 401
    assert httpx.post(f"{sim.url}{path}", headers=AUTH).status_code == 405


@pytest.mark.parametrize(
    ("path", "params"),
    [
        *(
            ("/api/applicants", params)
            for params in (
                {"bySince": "x"},
                {"byUntil": "2026-06-01"},
                {"limit": "0"},
                {"limit": "-1"},
            )
        ),
        ("/api/applications", {"byAcademicTermID": "1", "limit": "0"}),
        ("/api/applications", {"byAcademicTermID": "x"}),
        ("/api/applications", {"byAcademicYear": "last"}),
        ("/api/applications", {"byAcademicTermID": "1", "byApplicantIDs": "1001,me"}),
        ("/api/v9/purged-resources", {"page": "x"}),
    ],
)
def test_bad_list_parameters_are_400(
    client: httpx.Client, path: str, params: dict[str, str]
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 400


def test_limit_is_capped_silently_and_bounds_are_inclusive(
    sim: Simulator, client: httpx.Client
) -> None:
    every = page_all(client, "/api/applicants", limit=1000)
    response = client.get("/api/applicants", params={"limit": 10**9, "expand": "applicant"})
    assert response.status_code == 200
    assert len(response.json()) == len(every)
    ids = sorted(every)
    response = client.get(
        "/api/applicants", params={"bySince": ids[2], "byUntil": ids[6], "limit": 2}
    )
    assert list(response.json()) == [str(i) for i in ids[2:4]]
    assert response.headers["X-Count"] == "5"
    empty = client.get("/api/applicants", params={"bySince": ids[-1] + 1})
    assert (empty.json(), empty.headers["X-Count"]) == ({}, "0")


def test_list_faults_can_be_injected_by_route_name(make_simulator: Callable[..., Any]) -> None:
    sim: Simulator = make_simulator(events=200)
    sim.inject(503, route="dreamapply-offers")
    sim.inject(429, route="dreamapply-applicants")
    with httpx.Client(base_url=sim.url, headers=AUTH, params=ALL_EVENTS) as client:
        assert client.get("/api/journal").status_code == 200
        assert client.get("/api/applicants").status_code == 429
        assert client.get("/api/applicants").status_code == 200
        assert client.get("/api/applications/20001/offers").status_code == 503


# -- changes while serving ---------------------------------------------------------------


def closed_then_reverted(seed: int) -> tuple[int, int, int]:
    """(id of a close event, id of its revert, the application) in a seed's journal."""
    journal = Journal(20_000, seed=seed)
    closes = journal.positions_by_name["Application was closed"]
    revert = journal.positions_by_name["Application was reverted"][0]
    fragment = journal.fragments(frozenset(), [revert])[0]
    application = trailing_id(orjson.loads(b"{" + fragment + b"}")[str(revert + 1)]["application"])
    close = max(p for p in closes if p < revert)
    return close + 1, revert + 1, application


def test_a_revert_removes_the_application_from_purged(
    make_simulator: Callable[..., Any],
) -> None:
    closed_at, reverted_at, application = closed_then_reverted(seed=9)
    sim: Simulator = make_simulator(events=closed_at, seed=9)
    with httpx.Client(base_url=sim.url, headers=AUTH, params=ALL_EVENTS) as client:
        purged = purged_entries(client)
        entries = [
            n for n, p in purged.items() if (p["type"], p["id"]) == ("Application", application)
        ]
        assert len(entries) == 1
        assert purged[entries[0]]["request_to_be_forgotten"] is None
        assert application not in all_applications(client)
        sim.journal.append(reverted_at - closed_at)
        assert entries[0] not in purged_entries(client)
        assert application in all_applications(client)


def test_a_change_made_on_request_is_in_that_response(
    make_simulator: Callable[..., Any],
) -> None:
    sim: Simulator = make_simulator(events=500, seed=2)
    offers_seen = 0
    expected: dict[int, Any] = {}

    def on_request(request: RecordedRequest) -> None:
        nonlocal offers_seen
        if request.path.endswith("/offers"):
            offers_seen += 1
            if offers_seen == 3:
                sim.journal.append(200)
        if request.path == "/api/applications":
            sim.journal.append(50)
            # What this very response must show: the state after the append.
            records = sim.journal.current().records
            expected.update(
                {i: without_id(d) for (k, i), d in records.items() if k == "application"}
            )

    sim.on_request = on_request
    with httpx.Client(base_url=sim.url, headers=AUTH, params=ALL_EVENTS) as client:
        body = client.get("/api/applications", params=EVERY_YEAR).json()
        assert {int(k): v for k, v in body.items()} == expected
        assert len(sim.journal) == 550
        for application in list(expected)[:4]:
            client.get(f"/api/applications/{application}/offers")
    assert len(sim.journal) == 750
    assert offers_seen == 4


def test_a_failing_hook_answers_500_and_is_kept(make_simulator: Callable[..., Any]) -> None:
    sim: Simulator = make_simulator(events=10)

    def on_request(request: RecordedRequest) -> None:
        raise RuntimeError("the test's hook failed")

    sim.on_request = on_request
    response = httpx.get(f"{sim.url}/api/applicants", headers=AUTH)
    assert response.status_code == 500
    assert [type(e) for e in sim.errors] == [RuntimeError]
    assert len(sim.requests) == 1


def test_bootstrap_then_journal_equals_the_current_state(
    make_simulator: Callable[..., Any],
) -> None:
    """Note the newest id, read the lists (the journal growing meanwhile), then
    fold the journal after the noted id: the result is what exists now."""
    sim: Simulator = make_simulator(events=2500, seed=6)
    offers_requests = 0

    def on_request(request: RecordedRequest) -> None:
        nonlocal offers_requests
        if request.path.endswith("/offers"):
            offers_requests += 1
            if offers_requests == 3:
                sim.journal.append(400)

    sim.on_request = on_request
    with httpx.Client(base_url=sim.url, headers=AUTH, params=ALL_EVENTS, timeout=10) as client:
        newest = client.get("/api/journal", params={"order": "newest-first", "limit": 1}).json()
        noted = int(next(iter(newest)))
        mirror = Mirror(client)
        mirror.bootstrap()
        mirror.follow(noted)
    assert offers_requests > 3
    state = sim.journal.current()
    assert mirror.live() == {key for key in state.records if key[0] in LISTED}
    for key, data in state.records.items():
        if key[0] == "offer":
            assert mirror.status[key[1]] == data["status"], key


def test_lists_stay_whole_while_the_journal_grows(make_simulator: Callable[..., Any]) -> None:
    sim: Simulator = make_simulator(events=1000, seed=8)
    done = threading.Event()

    def grow() -> None:
        while not done.is_set() and len(sim.journal) < 60_000:
            sim.journal.append(100)

    grower = threading.Thread(target=grow)
    grower.start()
    try:
        with httpx.Client(base_url=sim.url, headers=AUTH, params=ALL_EVENTS, timeout=10) as client:
            for _ in range(30):
                response = client.get(
                    "/api/applications", params={"expand": "applicant", **EVERY_YEAR}
                )
                assert response.status_code == 200
                assert response.headers["X-Count"] == str(len(response.json()))
                purged = client.get("/api/v9/purged-resources")
                pages = purged.json().pop("pages")
                assert purged.headers["X-Count"] == str(pages["items"]["total"])
    finally:
        done.set()
        grower.join()
    assert sim.errors == []


class Mirror:
    """Just enough of a DreamApply mirror to check the simulator's bootstrap story."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.applicants: set[int] = set()
        self.applications: dict[int, int] = {}  # → its applicant
        self.removed: set[tuple[str, int]] = set()
        self.offers: dict[int, int] = {}  # → its application
        self.status: dict[int, str] = {}

    def bootstrap(self) -> None:
        titles = type_titles(self.client)
        self.applicants = set(page_all(self.client, "/api/applicants", limit=100))
        for app_id, app in all_applications(self.client).items():
            self.applications[app_id] = trailing_id(app["applicant"])
            response = self.client.get(f"/api/applications/{app_id}/offers")
            if response.status_code == 404:  # purged since it was listed
                continue
            for offer_id, offer in response.json().items():
                self.offers[int(offer_id)] = app_id
                self.status[int(offer_id)] = titles[offer["type"]]
        for entry in purged_entries(self.client).values():
            self.removed.add((entry["type"].lower(), entry["id"]))

    def follow(self, noted: int) -> None:
        events = page_all(self.client, "/api/journal", limit=1024)
        for event_id in sorted(events):
            if event_id > noted:
                self.apply(events[event_id])
        # Confirmed requests to be forgotten have no journal event: purged-resources says.
        for entry in purged_entries(self.client).values():
            self.removed.add((entry["type"].lower(), entry["id"]))

    def apply(self, event: dict[str, Any]) -> None:
        name = event["event"]
        applicant = trailing_id(event["applicant"])
        self.applicants.add(applicant)
        if "application" in event:
            self.applications[trailing_id(event["application"])] = applicant
        application = trailing_id(event["application"]) if "application" in event else None
        # A request to be forgotten is not an erasure (until confirmed, without an event).
        if name == "Applicant was deleted":
            self.removed.add(("applicant", applicant))
        elif name == "Application was closed":
            self.removed.add(("application", application or 0))
        elif name == "Application was reverted":
            self.removed.discard(("application", application or 0))
        if "offer" in event and application is not None:
            offer = trailing_id(event["offer"])
            self.offers[offer] = application
            if name.startswith(("Offer was edited: ", "Offer was confirmed: ")):
                self.status[offer] = name.split(": ", 1)[1].strip('"')

    def live(self) -> set[tuple[str, int]]:
        applicants = {a for a in self.applicants if ("applicant", a) not in self.removed}
        applications = {
            a
            for a, owner in self.applications.items()
            if owner in applicants and ("application", a) not in self.removed
        }
        offers = {o for o, a in self.offers.items() if a in applications}
        return {
            *(("applicant", a) for a in applicants),
            *(("application", a) for a in applications),
            *(("offer", o) for o in offers),
        }


# -- the forgetting journal ----------------------------------------------------------------


def test_the_journal_forgets_what_is_older_than_its_window(
    make_simulator: Callable[..., Any],
) -> None:
    day = 86400
    sim: Simulator = make_simulator(events=10_000, seed=7, journal_window=2 * day)
    stamps = sim.journal.timestamps
    assert stamps[-1] - stamps[0] > 3 * day
    kept = [i + 1 for i, t in enumerate(stamps) if t >= stamps[-1] - 2 * day]
    with httpx.Client(base_url=sim.url, headers=AUTH, params=ALL_EVENTS) as client:
        assert client.head("/api/journal").headers["X-Count"] == str(len(kept))
        first = client.get("/api/journal", params={"bySince": 1, "limit": 3})
        assert list(first.json()) == [str(i) for i in kept[:3]]
        assert first.headers["X-Count"] == str(len(kept))
        newest = client.get("/api/journal", params={"order": "newest-first", "limit": 1})
        assert list(newest.json()) == ["10000"]
        old = client.get("/api/journal", params={"bySince": 1, "byUntil": kept[0] - 1})
        assert (old.json(), old.headers["X-Count"]) == ({}, "0")
        edited = client.head("/api/journal", params={"byEvents": "Application was edited"})
        positions = sim.journal.positions_by_name["Application was edited"]
        assert edited.headers["X-Count"] == str(sum(p + 1 >= kept[0] for p in positions))
        assert len(page_all(client, "/api/journal", limit=1024)) == len(kept)
        sim.journal_window = None
        assert client.head("/api/journal").headers["X-Count"] == "10000"


def test_the_default_window_is_six_months(make_simulator: Callable[..., Any]) -> None:
    sim: Simulator = make_simulator(events=100)
    assert sim.journal_window == 183 * 86400
    journal = sim.journal
    journal.append_raw({"logged": "2027-06-01T00:00:00+00:00", "event": "Application was edited"})
    with httpx.Client(base_url=sim.url, headers=AUTH, params=ALL_EVENTS) as client:
        response = client.get("/api/journal", params={"bySince": 1})
    assert list(response.json()) == ["101"]
    with pytest.raises(ValueError, match="journal_window"):
        Simulator(events=1, journal_window=-1)


# -- strict where the vendor says Required ----------------------------------------------


@pytest.mark.parametrize("params", [{}, {"bySince": "1"}, {"byAcademicTermID": ""}])
def test_applications_without_a_term_or_year_filter_are_400(
    client: httpx.Client, params: dict[str, str]
) -> None:
    # docs.dreamapply.com api:api_applications: byAcademicTermID, byAcademicYear or
    # byAcademicYears is Required (either one).
    for method in ("GET", "HEAD"):
        response = client.request(method, "/api/applications", params=params)
        assert response.status_code == 400


def test_applications_have_no_id_paging_only_their_term(client: httpx.Client) -> None:
    term = next(iter(client.get("/api/academic-terms").json()))
    whole = client.get("/api/applications", params={"byAcademicTermID": term}).json()
    assert len(whole) > 2
    ids = sorted(int(key) for key in whole)
    # bySince is not a parameter of /applications: ignored, as upstream ignores unknown ones.
    after = client.get("/api/applications", params={"byAcademicTermID": term, "bySince": ids[-1]})
    assert after.json() == whole


def test_applications_of_some_applicants(client: httpx.Client) -> None:
    every = all_applications(client)
    owners = {app_id: trailing_id(app["applicant"]) for app_id, app in every.items()}
    chosen = sorted(set(owners.values()))[:5]
    sliced: dict[int, Any] = {}
    for term in client.get("/api/academic-terms").json():
        params = {"byAcademicTermID": term, "byApplicantIDs": " ".join(map(str, chosen))}
        sliced.update(
            {int(k): v for k, v in client.get("/api/applications", params=params).json().items()}
        )
    assert sliced.keys() == {app_id for app_id, owner in owners.items() if owner in chosen}


def test_academic_terms_are_served_keyed_by_id(sim: Simulator, client: httpx.Client) -> None:
    response = client.get("/api/v9/academic-terms")
    terms = response.json()
    assert response.headers["X-Count"] == str(len(terms)) == str(len(ACADEMIC_TERMS))
    for term in terms.values():  # AcademicTerm.php's fields
        assert term.keys() == {"name", "start", "grace", "finish", "year", "type"}
    by_year = client.get("/api/applications", params=EVERY_YEAR).json()
    assert by_year.keys() == {str(i) for i in all_applications(client)}


def test_the_applications_list_embeds_offers_on_expand(client: httpx.Client) -> None:
    expanded = all_applications(client, expand="applicant,offer")
    assert any(application["offers"] for application in expanded.values())
    for app_id, application in expanded.items():
        assert isinstance(application["applicant"], dict)
        listed = {int(k): v for k, v in (application["offers"] or {}).items()}
        assert listed == offers_of(client, app_id)


def test_journal_items_carry_only_documented_link_fields(client: httpx.Client) -> None:
    documented = {
        "applicant", "application", "course", "institution", "invoice", "offer",
        "document", "flag", "tracker", "administrator",
    }  # fmt: skip
    events = page_all(client, "/api/journal", limit=1024)
    assert len(events) == 3000
    for event in events.values():
        assert event.keys() - {"logged", "event", "bind"} <= documented, event
