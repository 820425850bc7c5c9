"""The list endpoints' documented shapes (terms, applications per term, their
offers, tasks, references and documents embedded or not, offer types, purged
resources) through edsync's snapshot, over a real HTTP server that answers
exactly the hand-written payloads, under API v9's prefix."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from edsync.model import Ref, Refreshed, SnapshotPage
from edsync.settings import HttpUrl, Secret
from edsync.sources.dreamapply import snapshot as dreamapply_snapshot
from edsync.sources.dreamapply.journal import DreamApplySource, Settings
from edsync.sources.dreamapply.snapshot import SnapshotTooLargeError
from tests.contract.dreamapply import payloads, resources

_VERSION = re.compile(r"^/api/v9(?=/)")
_CHILDREN = ("offers", "tasks", "references", "documents")

Answer = tuple[int, dict[str, str], Any]


class ListServer:
    """Answers GET/HEAD from ``routes``: path → a function of the query."""

    def __init__(self) -> None:
        self.embeds = True
        self.term_count: dict[str, int] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer("GET")

            def do_HEAD(self) -> None:
                self._answer("HEAD")

            def _answer(self, method: str) -> None:
                url = urlsplit(self.path)
                query = dict(parse_qsl(url.query))
                owner.requests.append((method, url.path, query))
                status, headers, body = owner.route(url.path, query)
                data = orjson.dumps(body)
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if method == "GET":
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def route(self, path: str, query: dict[str, str]) -> Answer:
        if not _VERSION.match(path):  # unversioned may mean v3 (help.dreamapply.com/api)
            return 404, {}, {"error": {"code": 404, "message": path}}
        path = _VERSION.sub("/api", path)
        single = re.fullmatch(r"/api/(applications|applicants|invoices)/(\d+)", path)
        if single is not None:
            return self._single(single[1], single[2], query)
        child = re.fullmatch(r"/api/applications/60/(\w+)", path)
        if child is not None and child[1] in _CHILDREN:
            collection = resources.application(expand=_CHILDREN)[child[1]]
            return 200, {}, collection
        if path == "/api/applicants":
            since = int(query.get("bySince", "1"))
            applicants = {"123": payloads.APPLICANT} if since <= 123 else {}
            return 200, {"X-Count": str(len(applicants))}, applicants
        if path == "/api/academic-terms":
            return 200, {}, payloads.ACADEMIC_TERMS
        if path == "/api/applications":
            return self._applications(query)
        if path == "/api/invoices":  # help.dreamapply.com/api/api_invoices, keyed by id
            return 200, {}, resources.APPLICANT_INVOICES
        if path == "/api/applications/offers/types":
            return 200, {}, resources.OFFER_TYPES
        if path == "/api/purged-resources":  # API v9 only
            return 200, {}, payloads.PURGED_RESOURCES
        return 404, {}, {"error": {"code": 404, "message": path}}

    def _single(self, kind: str, id_: str, query: dict[str, str]) -> Answer:
        """One resource by its URL (help.dreamapply.com/api/api_{kind}_id); 404
        for one DreamApply no longer has."""
        gone: Answer = 404, {}, {"error": {"code": 404, "message": f"no such {kind}"}}
        if kind == "applications" and id_ == "60":
            asked = query.get("expand", "").split(",") if self.embeds else []
            return 200, {}, resources.application(expand=asked)
        if kind == "applicants" and id_ == "123":
            return 200, {}, resources.APPLICANT
        if kind == "invoices" and id_ == "1":
            return 200, {}, resources.INVOICE
        return gone

    def _applications(self, query: dict[str, str]) -> Answer:
        if "byAcademicYears" in query and "byApplicantIDs" in query:
            return self._by_applicants(query)
        term = query.get("byAcademicTermID")
        if term is None:  # docs.dreamapply.com api:api_applications: Required
            return 400, {}, {"error": {"code": 400, "message": "a term or year is required"}}
        # The documented expansion is `offers`, plural: `offer` expands nothing.
        asked = query.get("expand", "").split(",") if self.embeds else []
        application = resources.application(expand=asked)
        del application["id"]  # the list is keyed by id
        listed = {"60": application} if term == "4" else {}
        applicants = query.get("byApplicantIDs")  # documented: comma or space separated
        if applicants is not None and "123" not in applicants.replace(",", " ").split():
            listed = {}
        count = self.term_count.get(term, len(listed))
        return 200, {"X-Count": str(count)}, listed

    def _by_applicants(self, query: dict[str, str]) -> Answer:
        """The batch read: every application of these applicants in these years."""
        asked = query.get("expand", "").split(",") if self.embeds else []
        years = query["byAcademicYears"].replace(",", " ").split()
        people = query["byApplicantIDs"].replace(",", " ").split()
        application = resources.application(expand=asked)
        del application["id"]  # the list is keyed by id
        listed = {"60": application} if "123" in people and "2014" in years else {}
        return 200, {"X-Count": str(len(listed))}, listed


@pytest.fixture
def server() -> Iterator[ListServer]:
    listing = ListServer()
    listing.thread.start()
    try:
        yield listing
    finally:
        listing.server.shutdown()
        listing.server.server_close()
        listing.thread.join()


def snapshot(server: ListServer) -> list[SnapshotPage]:
    settings = Settings(
        name="da",
        kind="dreamapply",
        base_url=HttpUrl(server.url),
        api_key=Secret("X", "k"),
        max_requests_per_minute=0,
        snapshot=True,
    )
    source = DreamApplySource(settings)
    try:
        return list(source.snapshot(None))
    finally:
        source.close()


def objects(pages: list[SnapshotPage], entity: str, *, deleted: bool = False) -> dict[str, Any]:
    return {
        obj.entity_id: (obj.data, obj.person_id)
        for page in pages
        if page.entity == entity and page.deleted is deleted
        for obj in page.objects
    }


@pytest.mark.parametrize("embeds", [True, False], ids=["expanded", "per-application"])
def test_the_snapshot_reads_what_the_documents_describe(server: ListServer, embeds: bool) -> None:
    server.embeds = embeds
    pages = snapshot(server)
    assert objects(pages, "applicant") == {"123": (payloads.APPLICANT, "123")}
    [(application, person)] = objects(pages, "application").values()
    assert person == "123"
    for field in _CHILDREN:  # records of their own, or the server's links
        assert not isinstance(application.get(field), dict | list)
    # Each child keyed by its list key, linked to the application it was read
    # under (the vendor's objects have no such link), its person the applicant's.
    link = "/api/applications/60"
    for entity, listed in (
        ("task", resources.TASKS),
        ("reference", resources.REFERENCES),
        ("document", resources.DOCUMENTS),
    ):
        assert objects(pages, entity) == {
            key: ({**value, "application": link}, "123") for key, value in listed.items()
        }
    # Invoices from their list, each linked to its applicant and application.
    [invoice] = [obj for page in pages if page.entity == "invoice" for obj in page.objects]
    assert (invoice.entity_id, invoice.person_id, invoice.parent_id) == ("1", "123", "60")
    offers = objects(pages, "offer")
    assert offers.keys() == resources.OFFERS.keys()
    for key, (data, offer_person) in offers.items():
        type_id = data["type"].rsplit("/", 1)[1]
        assert data["status"] == resources.OFFER_TYPES[type_id]["title"]
        assert (data["application"], offer_person) == (link, "123")
        assert data["priority"] == resources.OFFERS[key]["priority"]
    followed = [r for r in server.requests if re.search(r"/60/\w+$", r[1])]
    assert len(followed) == (0 if embeds else len(_CHILDREN))
    listed_requests = [r for r in server.requests if r[1] == "/api/v9/applications"]
    # Each term: a HEAD for its X-Count, then its applications (never bySince paging).
    assert [(m, q["byAcademicTermID"]) for m, _, q in listed_requests] == [
        ("HEAD", "4"), ("GET", "4"), ("HEAD", "5"), ("GET", "5")
    ]  # fmt: skip
    gets = [q for m, _, q in listed_requests if m == "GET"]
    assert all(q["expand"] == "offers,tasks,references,documents" for q in gets)
    assert not any("bySince" in q for _, _, q in listed_requests)


def test_the_snapshot_asks_for_the_documented_offers_expansion(server: ListServer) -> None:
    """``offers``, plural: a server that ignored ``offer`` cost one request per application."""
    snapshot(server)
    assert not [r for r in server.requests if r[1].endswith("/60/offers")]


def test_purged_entries_in_their_v9_shape(server: ListServer) -> None:
    pages = snapshot(server)
    purged_applicants = objects(pages, "applicant", deleted=True)
    assert purged_applicants.keys() == {"123", "124"}  # the resource ids, not list numbers
    forgotten, person = purged_applicants["123"]
    assert forgotten["forgotten"] is True
    assert person == "123"
    assert purged_applicants["124"][0]["forgotten"] is False
    assert objects(pages, "application", deleted=True).keys() == {"100"}


def test_a_term_above_the_cap_is_read_in_slices_of_applicants(server: ListServer) -> None:
    server.term_count["4"] = 8193  # more than one answer holds with expand
    pages = snapshot(server)
    assert objects(pages, "application").keys() == {"60"}
    assert objects(pages, "offer").keys() == resources.OFFERS.keys()
    sliced = [q for m, p, q in server.requests if p == "/api/v9/applications" and m == "GET"]
    assert sliced[0] == {
        "byAcademicTermID": "4",
        "byApplicantIDs": "123",
        "expand": "offers,tasks,references,documents",
    }


def test_a_slice_still_at_the_cap_fails_naming_the_term(
    server: ListServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dreamapply_snapshot, "APPLICATIONS_CAP", 1)
    with pytest.raises(SnapshotTooLargeError, match="academic term 4: 1 applications of 400"):
        snapshot(server)


def open_source(server: ListServer, *, batch: bool = True) -> DreamApplySource:
    settings = Settings(
        name="da",
        kind="dreamapply",
        base_url=HttpUrl(server.url),
        api_key=Secret("X", "k"),
        max_requests_per_minute=0,
    )
    source = DreamApplySource(settings)
    source._resources.batch = batch
    return source


def refreshed(server: ListServer, refs: list[Ref], *, batch: bool = True) -> list[Refreshed]:
    source = open_source(server, batch=batch)
    try:
        return list(source.refresh(refs))
    finally:
        source.close()


def by_entity(result: Refreshed) -> dict[str, dict[str, tuple[Any, str | None, str | None]]]:
    out: dict[str, dict[str, tuple[Any, str | None, str | None]]] = {}
    for entity, obj in result.records:
        out.setdefault(entity, {})[obj.entity_id] = (obj.data, obj.person_id, obj.parent_id)
    return out


@pytest.mark.parametrize("embeds", [True, False], ids=["expanded", "links"])
def test_an_application_is_read_by_its_url_with_every_child_under_its_own_id(
    server: ListServer, embeds: bool
) -> None:
    server.embeds = embeds
    [result] = refreshed(server, [Ref("application", "60", "123")])
    assert not result.gone
    assert set(result.complete) == {"offer", "task", "reference", "document"}
    found = by_entity(result)
    assert found["application"]["60"][1:] == ("123", None)
    # Two tasks of one application: two records, each its own status.
    assert {k: v[0]["status"] for k, v in found["task"].items()} == {
        key: task["status"] for key, task in resources.TASKS.items()
    }
    assert found["reference"].keys() == resources.REFERENCES.keys()
    assert found["document"].keys() == resources.DOCUMENTS.keys()
    assert found["offer"].keys() == resources.OFFERS.keys()
    assert all(parent == "60" for kind in ("task", "offer") for *_, parent in found[kind].values())
    single = [r for r in server.requests if r[1] == "/api/v9/applications/60"]
    assert [q["expand"] for _, _, q in single] == [
        "offers,tasks,references,documents,flags,courses"
    ]
    followed = [r for r in server.requests if re.search(r"/60/\w+$", r[1])]
    assert len(followed) == (0 if embeds else len(_CHILDREN))


def test_a_resource_that_answers_404_is_gone(server: ListServer) -> None:
    results = refreshed(
        server,
        [Ref("application", "61", "123"), Ref("applicant", "124", "124"), Ref("invoice", "2")],
    )
    assert [r.gone for r in results] == [True, True, True]


def test_an_applicant_and_an_invoice_are_read_by_their_urls(server: ListServer) -> None:
    applicant, invoice = refreshed(server, [Ref("applicant", "123", "123"), Ref("invoice", "1")])
    assert by_entity(applicant) == {"applicant": {"123": (resources.APPLICANT, "123", None)}}
    [(entity, obj)] = invoice.records
    assert (entity, obj.entity_id, obj.data) == ("invoice", "1", resources.INVOICE)
    paths = [p for _, p, _ in server.requests]
    assert paths == ["/api/v9/applicants/123", "/api/v9/invoices/1"]


def test_queued_applications_are_read_in_one_batch_by_their_applicants(
    server: ListServer,
) -> None:
    """No filter by application id exists: the list by years and applicants
    brings them; one it does not list is read alone (and may be gone)."""
    refs = [Ref("application", "60", "123"), *(Ref("application", str(i), "125") for i in (7, 8))]
    results = refreshed(server, refs)
    assert [r.gone for r in results] == [False, True, True]
    assert by_entity(results[0])["task"].keys() == resources.TASKS.keys()
    listed = [q for m, p, q in server.requests if p == "/api/v9/applications"]
    assert listed == [
        {
            "byAcademicYears": "2014",
            "byApplicantIDs": "123,125",
            "expand": "offers,tasks,references,documents",
        }
    ]
    singles = sorted(p for _, p, _ in server.requests if re.fullmatch(r".*/applications/\d+", p))
    assert singles == ["/api/v9/applications/7", "/api/v9/applications/8"]
    # Without batching: one read each.
    server.requests.clear()
    refreshed(server, refs, batch=False)
    reads = [p for _, p, _ in server.requests if re.fullmatch(r".*/applications/\d+", p)]
    assert len(reads) == 3
