"""The list endpoints' documented shapes (terms, applications per term, offers
embedded or not, offer types, purged resources) through edsync's snapshot, over
a real HTTP server that answers exactly the hand-written payloads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from edsync.model import SnapshotPage
from edsync.settings import HttpUrl, Secret
from edsync.sources.dreamapply import snapshot as dreamapply_snapshot
from edsync.sources.dreamapply.journal import DreamApplySource, Settings
from edsync.sources.dreamapply.snapshot import SnapshotTooLargeError
from tests.contract.dreamapply import payloads

Answer = tuple[int, dict[str, str], Any]


class ListServer:
    """Answers GET/HEAD from ``routes``: path → a function of the query."""

    def __init__(self) -> None:
        self.embeds_offers = True
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
        if path == "/api/applicants":
            since = int(query.get("bySince", "1"))
            applicants = {"123": payloads.APPLICANT} if since <= 123 else {}
            return 200, {"X-Count": str(len(applicants))}, applicants
        if path == "/api/academic-terms":
            return 200, {}, payloads.ACADEMIC_TERMS
        if path == "/api/applications":
            return self._applications(query)
        if path == "/api/applications/321/offers":
            return 200, {}, {"12": payloads.OFFER_FIELDS}
        if path == "/api/applications/offers/types":
            return 200, {}, payloads.OFFER_TYPES
        if path == "/api/purged-resources":
            return 200, {}, payloads.PURGED_RESOURCES
        return 404, {}, {"error": {"code": 404, "message": path}}

    def _applications(self, query: dict[str, str]) -> Answer:
        term = query.get("byAcademicTermID")
        if term is None:  # docs.dreamapply.com api:api_applications: Required
            return 400, {}, {"error": {"code": 400, "message": "a term or year is required"}}
        application = {**payloads.APPLICATION}
        del application["id"]  # the list is keyed by id
        if self.embeds_offers and "offer" in query.get("expand", "").split(","):
            application["offers"] = {"12": payloads.OFFER_FIELDS}
        listed = {"321": application} if term == "4" else {}
        applicants = query.get("byApplicantIDs")  # documented: comma or space separated
        if applicants is not None and "123" not in applicants.replace(",", " ").split():
            listed = {}
        count = self.term_count.get(term, len(listed))
        return 200, {"X-Count": str(count)}, listed


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


@pytest.mark.parametrize("embeds", [True, False], ids=["offers-embedded", "offers-per-application"])
def test_the_snapshot_reads_what_the_documents_describe(server: ListServer, embeds: bool) -> None:
    server.embeds_offers = embeds
    pages = snapshot(server)
    assert objects(pages, "applicant") == {"123": (payloads.APPLICANT, "123")}
    [(application, person)] = objects(pages, "application").values()
    assert person == "123"
    assert "offers" not in application  # offers are records of their own
    # Offer.php has no applicant link: the person is its application's applicant.
    offers = objects(pages, "offer")
    # The vendor's Offer has no application link: the record gets the one it
    # was read under, as a journal event's record has it.
    linked = {**payloads.OFFER_FIELDS, "status": "Conditional"}
    assert offers == {"12": ({**linked, "application": "/api/applications/321"}, "123")}
    per_application = [r for r in server.requests if r[1].endswith("/321/offers")]
    assert len(per_application) == (0 if embeds else 1)
    listed = [r for r in server.requests if r[1] == "/api/applications"]
    # Each term: a HEAD for its X-Count, then its applications (never bySince paging).
    assert [(m, q["byAcademicTermID"]) for m, _, q in listed] == [
        ("HEAD", "4"), ("GET", "4"), ("HEAD", "5"), ("GET", "5")
    ]  # fmt: skip
    assert not any("bySince" in q for _, _, q in listed)


def test_purged_entries_in_their_v9_shape(server: ListServer) -> None:
    pages = snapshot(server)
    purged_applicants = objects(pages, "applicant", deleted=True)
    assert purged_applicants.keys() == {"123", "124"}  # the resource ids, not list numbers
    forgotten, person = purged_applicants["123"]
    assert forgotten["forgotten"] is True
    assert person == "123"
    assert "forgotten" not in purged_applicants["124"][0]
    assert objects(pages, "application", deleted=True).keys() == {"100"}


def test_a_term_above_the_cap_is_read_in_slices_of_applicants(server: ListServer) -> None:
    server.term_count["4"] = 8193  # more than one answer holds with expand
    pages = snapshot(server)
    assert objects(pages, "application").keys() == {"321"}
    assert objects(pages, "offer").keys() == {"12"}
    sliced = [q for m, p, q in server.requests if p == "/api/applications" and m == "GET"]
    assert sliced[0] == {"byAcademicTermID": "4", "byApplicantIDs": "123", "expand": "offer"}


def test_a_slice_still_at_the_cap_fails_naming_the_term(
    server: ListServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dreamapply_snapshot, "APPLICATIONS_CAP", 1)
    with pytest.raises(SnapshotTooLargeError, match="academic term 4: 1 applications of 400"):
        snapshot(server)
