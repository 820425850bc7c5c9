"""The DreamApply simulator's resource endpoints over real HTTP (issue 30): the
journal says what changed, the resources say what it is (SPEC 2.1).

Shapes are checked against the hand-written vendor payloads
(``tests/contract/dreamapply/resources.py``), which win where the two differ;
contents against ``Journal.current()``, the oracle a mirror is compared with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from edsync_sim import Simulator
from edsync_sim.dataset import (
    CHILD_KINDS,
    EVENT_NAMES,
    FIRST_IDS,
    RECORD_KINDS,
    Entity,
    Journal,
)
from tests.contract.dreamapply import resources, view_examples

KEY = "sim-dreamapply-key"
AUTH = {"Authorization": f'DREAM apikey="{KEY}"'}
ALL_EVENTS = {"byEvents": ",".join(EVENT_NAMES)}
V9 = "/api/v9"
REFRESH = ",".join(resources.REFRESH_EXPANSIONS)  # offers,tasks,references,documents,flags,courses
TASK_EVENTS = ("Task was committed as: ", "Task was resolved as: ", "Task was commented")


def trailing_id(link: str) -> int:
    return int(link.rstrip("/").rsplit("/", 1)[1])


def keys_of(example: dict[str, Any]) -> set[str]:
    """The field names of one item of a vendor example keyed by id."""
    return set(next(iter(example.values())))


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(events=3000, seed=4) as simulator:
        yield simulator
    assert simulator.errors == []


@pytest.fixture
def client(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, headers=AUTH, timeout=10) as http:
        yield http


def live(sim: Simulator, kind: str) -> list[Entity]:
    with sim.journal.locked():
        return [entity for entity in sim.journal.registry.entities(kind) if entity.live]


def busy_application(sim: Simulator) -> Entity:
    """A live application with an offer, two tasks or more and documents."""
    for application in live(sim, "application"):
        if application.children and len(application.members("task")) >= 2:
            return application
    raise AssertionError("the dataset should have a busy application")


def owner_of(entity: Entity) -> Entity:
    assert entity.owner is not None
    return entity.owner


def journal_count(client: httpx.Client) -> int:
    return int(client.head(f"{V9}/journal", params=ALL_EVENTS).headers["X-Count"])


def purged_entries(client: httpx.Client) -> dict[tuple[str, int], Any]:
    entries: dict[tuple[str, int], Any] = {}
    page: int | None = 1
    while page is not None:
        body = client.get(f"{V9}/purged-resources", params={"page": page}).json()
        page = body.pop("pages")["next"]
        entries.update({(e["type"].lower(), e["id"]): e for e in body.values()})
    return entries


def assert_404(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == 404


# -- shapes ---------------------------------------------------------------------------


def test_an_application_as_its_endpoint_serves_it(sim: Simulator, client: httpx.Client) -> None:
    application = busy_application(sim)
    response = client.get(f"{V9}/applications/{application.id}")
    assert response.status_code == 200
    body = response.json()
    assert body.keys() == resources.APPLICATION_PLAIN.keys()
    assert body["id"] == application.id  # its own endpoint prints its id
    own = f"{V9}/applications/{application.id}"
    for name in ("flags", "courses", "offers", "exports", "documents", "scores", "tasks"):
        assert body[name] == f"{own}/{name}"  # unexpanded: a link
    assert body["references"] == f"{own}/references"
    assert body["applicant"] == f"{V9}/applicants/{owner_of(application).id}"
    assert body["status"] in ("Draft", "Submitted", "Reopened", "Withdrawn", "Inactive")
    assert body == sim.journal.current().records[("application", application.id)]
    # The unversioned prefix (API v3) and other versions serve it too.
    assert client.get(f"/api/applications/{application.id}").json() == body
    assert client.head(f"/api/v4/applications/{application.id}").content == b""


def test_an_expanded_application_holds_its_collections_keyed_by_id(
    sim: Simulator, client: httpx.Client
) -> None:
    application = busy_application(sim)
    params = {"expand": f"applicant,{REFRESH}"}
    body = client.get(f"{V9}/applications/{application.id}", params=params).json()
    assert body.keys() == resources.APPLICATION_EXPANDED.keys()
    applicant = client.get(f"{V9}/applicants/{owner_of(application).id}").json()
    assert body["applicant"] == applicant
    examples = {
        "offers": resources.OFFERS,
        "tasks": resources.TASKS,
        "documents": resources.DOCUMENTS,
        "courses": resources.COURSES,
    }
    for name, example in examples.items():
        collection = body[name]
        assert collection, name
        assert isinstance(collection, dict)
        for key, item in collection.items():
            assert item.keys() == keys_of(example), name
            if name != "courses":  # associations are keyed by the course's id
                assert item["id"] == int(key)
        # The same object as the collection's own list answers.
        assert collection == client.get(f"{V9}/applications/{application.id}/{name}").json()
    assert all(isinstance(item["size"], str) for item in body["documents"].values())
    assert body["exports"] == f"{V9}/applications/{application.id}/exports"  # never expanded
    # Nothing there: PHP's empty array, as resources.APPLICATION_EMPTY prints it.
    empty = next(a for a in live(sim, "application") if not a.members("reference"))
    expanded = client.get(f"{V9}/applications/{empty.id}", params={"expand": "references"})
    assert expanded.json()["references"] == []
    assert client.get(f"{V9}/applications/{empty.id}/references").json() == {}


def test_each_collection_alone_with_its_count(sim: Simulator, client: httpx.Client) -> None:
    current = sim.journal.current()
    references = {owner: key[1] for key, owner in current.parents.items() if key[0] == "reference"}
    application = next(iter(references))
    body = client.get(f"{V9}/applications/{application}/references")
    assert body.headers["X-Count"] == str(len(body.json()))
    for key, item in body.json().items():
        assert item.keys() == keys_of(resources.REFERENCES)
        assert item == current.records[("reference", int(key))]
    for name in ("offers", "tasks", "references", "documents", "flags", "courses"):
        head = client.head(f"{V9}/applications/{application}/{name}")
        assert head.status_code == 200
        got = client.get(f"{V9}/applications/{application}/{name}").json()
        assert head.headers["X-Count"] == str(len(got))
    flagged = next(
        a for a in live(sim, "application") if a.associations("flags") != b"{}" and a.live
    )
    flags = client.get(f"{V9}/applications/{flagged.id}/flags").json()
    for key, item in flags.items():
        assert item.keys() == keys_of(resources.FLAGS)
        assert trailing_id(item["flag"]) == int(key)


def test_one_child_by_its_link(sim: Simulator, client: httpx.Client) -> None:
    application = busy_application(sim)
    task = application.members("task")[0]
    response = client.get(f"{V9}/applications/{application.id}/tasks/{task.id}")
    assert response.json() == orjson.loads(task.resource())
    offer = application.members("offer")[0]
    # The journal's offer link resolves.
    assert client.get(f"{offer.link}").json()["id"] == offer.id
    other = next(a for a in live(sim, "application") if a is not application and a.children)
    assert_404(client.get(f"{V9}/applications/{other.id}/tasks/{task.id}"))
    assert_404(client.get(f"{V9}/applications/{other.id}/offers/{offer.id}"))


def test_an_applicant_and_an_invoice(sim: Simulator, client: httpx.Client) -> None:
    applicant = live(sim, "applicant")[0]
    body = client.get(f"{V9}/applicants/{applicant.id}").json()
    assert body.keys() == view_examples.APPLICANT.keys()
    assert body["id"] == applicant.id
    assert body["applications"] == f"{V9}/applicants/{applicant.id}/applications"
    invoices = client.get(
        f"{V9}/journal", params={"byEvents": "Invoice was issued", "limit": 5}
    ).json()
    for item in invoices.values():
        # The journal item's invoice link resolves (it is unversioned: API v3 paths).
        invoice = client.get(item["invoice"])
        assert invoice.status_code == 200
        assert invoice.json().keys() == resources.INVOICE.keys()
        assert invoice.json()["id"] == trailing_id(item["invoice"])
        assert client.get(f"{V9}/invoices/{trailing_id(item['invoice'])}").json() == invoice.json()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v9/applications/20001",
        "/api/v9/applications/20001/tasks",
        "/api/v9/applications/20001/documents",
        "/api/v9/applications/20001/references",
        "/api/v9/applications/20001/offers",
        "/api/v9/applicants/1001",
        "/api/v9/invoices/150001",
    ],
)
def test_resources_require_the_api_key(sim: Simulator, path: str) -> None:
    for headers in ({}, {"Authorization": 'DREAM apikey="wrong"'}):
        response = httpx.get(f"{sim.url}{path}", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == 401
    assert httpx.post(f"{sim.url}{path}", headers=AUTH).status_code == 405


@pytest.mark.parametrize(
    "path",
    [
        "/api/v9/applications/1",
        "/api/v9/applications/99999",
        "/api/v9/applications/99999/tasks",
        "/api/v9/applicants/5",
        "/api/v9/invoices/1",
        "/api/v9/applications/20001/tasks/1",
    ],
)
def test_what_never_existed_is_404(client: httpx.Client, path: str) -> None:
    assert_404(client.get(path))


def test_what_is_purged_is_404(sim: Simulator, client: httpx.Client) -> None:
    state = sim.journal.current()
    closed = [i for (kind, i), reason in state.purged.items() if reason == "closed"]
    deleted = [
        i for (k, i), reason in state.purged.items() if k == "applicant" and reason == "deleted"
    ]
    assert closed
    assert deleted
    for application in closed:
        assert_404(client.get(f"{V9}/applications/{application}"))
        for name in ("offers", "tasks", "documents", "references"):
            assert_404(client.get(f"{V9}/applications/{application}/{name}"))
    for applicant in deleted:
        assert_404(client.get(f"{V9}/applicants/{applicant}"))
    # An offer whose application is purged is gone: no record, no link.
    with sim.journal.locked():
        gone = [
            offer
            for offer in sim.journal.registry.entities("offer")
            if offer.owner is not None and offer.owner.purge is not None
        ]
    assert gone
    for offer in gone:
        assert ("offer", offer.id) not in state.records
        assert_404(client.get(offer.link))


# -- what the journal changes -----------------------------------------------------------


def test_task_events_change_one_task_each_and_name_none(
    make_simulator: Callable[..., Any],
) -> None:
    """The journal's task events name the application only (JournalItem.php has
    no task field); each changes one of its tasks, which its tasks tell."""
    journal = Journal(3000, seed=4)
    with journal.locked():
        application = next(
            a for a in journal.registry.entities("application") if len(a.members("task")) >= 2
        )
    link = application.link
    plain = orjson.loads(b"{" + b",".join(journal.fragments(frozenset(), range(3000))) + b"}")
    moments = [
        int(event_id)
        for event_id, item in plain.items()
        if item.get("application") == link and item["event"].startswith(TASK_EVENTS)
    ]
    assert len(moments) >= 3
    sim: Simulator = make_simulator(events=moments[0] - 1, seed=4)
    tasks_path = f"{V9}/applications/{application.id}/tasks"
    with httpx.Client(base_url=sim.url, headers=AUTH, params=ALL_EVENTS) as client:
        before = client.get(tasks_path).json()
        assert before == {}  # the checklist appears with its first commit
        changes: dict[str, int] = {}
        for moment in moments:
            sim.journal.append(moment - len(sim.journal))
            item = client.get(f"{V9}/journal", params={"bySince": moment, "limit": 1}).json()
            event = item[str(moment)]
            assert event.keys() == {"logged", "event", "bind", "applicant", "application"}
            after = client.get(tasks_path).json()
            if before:
                changed = [key for key in after if after[key] != before.get(key)]
                assert len(changed) == 1, (event["event"], before, after)
                changes[changed[0]] = changes.get(changed[0], 0) + 1
                task = after[changed[0]]
                name = event["event"]
                if name.startswith(("Task was committed as: ", "Task was resolved as: ")):
                    assert task["status"] == name.split(": ", 1)[1].strip('"')
            else:  # the first commit: the checklist appears, one task committed
                committed = [key for key, task in after.items() if task["committed"]]
                assert len(after) >= 2
                assert len(committed) == 1
                changes[committed[0]] = 1
            before = after
    # Two tasks or more of one application, each its own record, each changed by
    # the journal (one event, one task), under ids of their own.
    assert len(changes) >= 2
    assert len({task["status"] for task in before.values()}) >= 1
    assert all(int(key) in journal.ids("task") for key in before)


def test_referee_and_document_events_change_the_collections(
    make_simulator: Callable[..., Any],
) -> None:
    journal = Journal(3000, seed=4)
    plain = orjson.loads(b"{" + b",".join(journal.fragments(frozenset(), range(3000))) + b"}")
    removal = next(
        int(i) for i, e in plain.items() if e["event"] == "Referee was removed from an application"
    )
    upload = next(int(i) for i, e in plain.items() if e["event"] == "Document was uploaded")
    sim: Simulator = make_simulator(events=0, seed=4)
    with httpx.Client(base_url=sim.url, headers=AUTH, params=ALL_EVENTS) as client:
        for moment, name in sorted(((removal, "references"), (upload, "documents"))):
            application = trailing_id(plain[str(moment)]["application"])
            path = f"{V9}/applications/{application}/{name}"
            sim.journal.append(moment - 1 - len(sim.journal))
            before = client.get(path).json()
            sim.journal.append(1)
            after = client.get(path).json()
            if name == "references":
                assert len(before) == 1
                assert after == {}  # removed from the application's collection
                assert int(next(iter(before))) in sim.journal.ids("reference")
            else:
                # The document the item links (under its applicant) is the one added.
                added = after.keys() - before.keys()
                assert added == {str(trailing_id(plain[str(upload)]["document"]))}


def test_the_expanded_journal_application_and_offer_have_no_id(client: httpx.Client) -> None:
    page = client.get(
        f"{V9}/journal",
        params={"byEvents": "Offer was edited: ?", "expand": "application,offer", "limit": 50},
    ).json()
    links = client.get(
        f"{V9}/journal", params={"byEvents": "Offer was edited: ?", "limit": 50}
    ).json()
    assert len(page) == 50
    for event_id, item in page.items():
        assert "id" not in item["application"]
        assert "id" not in item["offer"]
        application = trailing_id(links[event_id]["application"])
        # The application names its id in its own sub-links (SPEC 2.1).
        assert item["application"]["offers"] == f"{V9}/applications/{application}/offers"
        assert isinstance(links[event_id]["offer"], str)  # links stay as they were


# -- purges without a journal event -------------------------------------------------------


def test_a_term_purge_has_no_journal_event(make_simulator: Callable[..., Any]) -> None:
    sim: Simulator = make_simulator(events=3000, seed=4)
    with httpx.Client(base_url=sim.url, headers=AUTH, params=ALL_EVENTS, timeout=10) as client:
        count = journal_count(client)
        listed = client.get(f"{V9}/applications", params={"byAcademicTermID": 1}).json()
        assert listed
        with sim.journal.locked():
            invoices = [
                invoice
                for invoice in sim.journal.registry.entities("invoice")
                if invoice.owner is not None and str(invoice.owner.id) in listed
            ]
            applicants = {
                app.owner.id
                for app in sim.journal.registry.entities("application")
                if str(app.id) in listed and app.owner is not None
            }
        purged = sim.journal.purge_term(1)
        assert sorted(purged) == sorted(int(key) for key in listed)
        assert journal_count(client) == count  # no event
        assert client.get(f"{V9}/applications", params={"byAcademicTermID": 1}).json() == {}
        entries = purged_entries(client)
        for application in purged:
            assert entries[("application", application)]["request_to_be_forgotten"] is None
            assert_404(client.get(f"{V9}/applications/{application}"))
            assert_404(client.get(f"{V9}/applications/{application}/tasks"))
        state = sim.journal.current()
        assert {k for k, reason in state.purged.items() if reason == "term"} == {
            ("application", i) for i in purged
        }
        assert not any(owner in purged for owner in state.parents.values() if owner)
        # The applicants stay; their invoices too, detached (GDPR: accounting records).
        for applicant in applicants:
            assert client.get(f"{V9}/applicants/{applicant}").status_code == 200
        assert invoices
        for invoice in invoices:
            body = client.get(f"{V9}/invoices/{invoice.id}").json()
            assert (body["applicant"], body["application"]) == (None, None)
            assert ("invoice", invoice.id) not in state.parents
        assert sim.journal.purge_term(1) == []  # nothing left to purge
        assert journal_count(client) == count


def test_a_forget_request_then_its_confirmation(make_simulator: Callable[..., Any]) -> None:
    sim: Simulator = make_simulator(events=20_000, seed=0)
    state = sim.journal.current()
    # The demo dataset holds requests confirmed and requests still pending.
    confirmed = [
        k for k, reason in state.purged.items() if k[0] == "applicant" and reason == "forgotten"
    ]
    assert confirmed
    assert state.forget_requests
    applicant, requested = next(iter(state.forget_requests.items()))
    with httpx.Client(base_url=sim.url, headers=AUTH, params=ALL_EVENTS, timeout=10) as client:
        asked = client.get(
            f"{V9}/journal", params={"byEvents": "Applicant requested to be forgotten"}
        ).json()
        assert f"/api/applicants/{applicant}" in {item["applicant"] for item in asked.values()}
        # A request, not an erasure: still served, not purged.
        assert client.get(f"{V9}/applicants/{applicant}").status_code == 200
        assert ("applicant", applicant) not in purged_entries(client)
        count = journal_count(client)
        assert sim.journal.confirm_forget(applicant)
        assert journal_count(client) == count  # confirmed without a journal event
        assert_404(client.get(f"{V9}/applicants/{applicant}"))
        entries = purged_entries(client)
        entry = entries[("applicant", applicant)]
        assert entry["request_to_be_forgotten"] == {"at": requested}
        assert entry["marked"]["at"] >= requested
        after = sim.journal.current()
        assert applicant not in after.forget_requests
        assert after.purged[("applicant", applicant)] == "forgotten"
        with sim.journal.locked():
            person = sim.journal.registry.get("applicant", applicant)
            assert person is not None
            applications = [a.id for a in person.members("application")]
        for application in applications:
            assert ("application", application) in entries
            assert_404(client.get(f"{V9}/applications/{application}"))
        assert not sim.journal.confirm_forget(applicant)  # once


def test_the_generator_confirms_requests_later(make_simulator: Callable[..., Any]) -> None:
    sim: Simulator = make_simulator(events=20_000, seed=0)
    pending = dict(sim.journal.current().forget_requests)
    assert pending
    sim.journal.append(3000)  # longer than any review takes
    state = sim.journal.current()
    for applicant in pending:
        assert state.purged[("applicant", applicant)] == "forgotten"
        assert ("applicant", applicant) not in state.records


# -- API v3, the unversioned prefix ------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/purged-resources",
        "/api/applications/offers/types",
        "/api/applications/offers/types/1",
        "/api/v3/purged-resources",
        "/api/v3/applications/offers/types",
    ],
)
def test_v3_lacks_purged_resources_and_offer_types(client: httpx.Client, path: str) -> None:
    assert_404(client.get(path))


def test_v3_serves_everything_else(sim: Simulator, client: httpx.Client) -> None:
    application = busy_application(sim)
    assert client.get("/api/journal", params={**ALL_EVENTS, "limit": 1}).status_code == 200
    for path in (
        "/api/applicants",
        "/api/academic-terms",
        f"/api/applications/{application.id}",
        f"/api/applications/{application.id}/offers",
        f"/api/applications/{application.id}/tasks",
    ):
        assert client.get(path).status_code == 200, path
    for version in ("v4", "v9", "v12"):
        assert client.get(f"/api/{version}/purged-resources").status_code == 200
        assert client.get(f"/api/{version}/applications/offers/types").status_code == 200


# -- the lists' expansions ----------------------------------------------------------------


def test_the_applications_list_expands_as_the_application_does(
    sim: Simulator, client: httpx.Client
) -> None:
    application = busy_application(sim)
    term = application.term
    listed = client.get(
        f"{V9}/applications",
        params={"byAcademicTermID": term, "expand": "offers,tasks,references,documents"},
    ).json()
    single = client.get(
        f"{V9}/applications/{application.id}",
        params={"expand": "offers,tasks,references,documents"},
    ).json()
    item = listed[str(application.id)]
    assert "id" not in item  # the list keys it by its id
    assert {"id": application.id, **item} == single
    # byApplicantIDs and the cap with expand still hold.
    owner = application.owner
    assert owner is not None
    sliced = client.get(
        f"{V9}/applications",
        params={"byAcademicTermID": term, "byApplicantIDs": owner.id, "expand": "tasks"},
    )
    assert str(application.id) in sliced.json()
    assert all(
        value["applicant"] == f"{V9}/applicants/{owner.id}" for value in sliced.json().values()
    )
    capped = client.get(
        f"{V9}/applications", params={"byAcademicTermID": term, "expand": "tasks", "limit": 10**6}
    )
    assert capped.status_code == 200


# -- the oracle ---------------------------------------------------------------------------


def test_current_state_is_what_the_endpoints_serve(sim: Simulator, client: httpx.Client) -> None:
    state = sim.journal.current()
    assert {kind for kind, _ in state.records} == set(RECORD_KINDS)
    served: dict[tuple[str, int], Any] = {}
    parents: dict[tuple[str, int], int] = {}
    for kind in ("applicant", "invoice"):
        for key in [k for k in state.records if k[0] == kind]:
            served[key] = client.get(f"{V9}/{kind}s/{key[1]}").json()
    applications = [k[1] for k in state.records if k[0] == "application"]
    for application in applications:
        body = client.get(f"{V9}/applications/{application}").json()
        served[("application", application)] = body
        expanded = client.get(f"{V9}/applications/{application}", params={"expand": REFRESH}).json()
        for name, kind in (
            ("offers", "offer"),
            ("tasks", "task"),
            ("references", "reference"),
            ("documents", "document"),
        ):
            for key, item in (expanded[name] or {}).items():
                served[(kind, int(key))] = item
                parents[(kind, int(key))] = application
    for key, data in state.records.items():
        expected = {k: v for k, v in data.items() if not (key[0] == "offer" and k == "status")}
        assert served[key] == expected, key
    assert served.keys() == state.records.keys()
    for key, application in parents.items():
        assert state.parents[key] == application
    for (kind, id_), application in state.parents.items():
        assert kind in CHILD_KINDS
        if kind == "invoice":
            body = served[(kind, id_)]
            assert body["application"] == f"{V9}/applications/{application}"


def test_ids_are_unique_per_kind_and_never_borrowed(sim: Simulator) -> None:
    state = sim.journal.current()
    issued = {kind: sim.journal.ids(kind) for kind in FIRST_IDS}
    for kind, ids in issued.items():
        for other, others in issued.items():
            if other != kind:
                assert not ids & others, (kind, other)
    for kind, id_ in state.records:
        assert id_ in issued[kind]
    for (kind, id_), application in state.parents.items():
        assert id_ in issued[kind]
        assert application in issued["application"]
    with pytest.raises(ValueError, match="no such entity kind"):
        sim.journal.ids("referee")
