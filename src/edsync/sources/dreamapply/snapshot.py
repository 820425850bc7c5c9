"""DreamApply's bootstrap (SPEC 2.1): the current state from the list endpoints.

As the vendor documents them: applicants paged by their own ids
(``bySince``); applications per academic term (``/applications`` requires a
term or year filter and has no id paging, only a hard cap, so each term's
``X-Count`` is checked against it first; a term at the cap is read in slices
of applicants, ``byApplicantIDs``: nothing is truncated silently);
each application's offers, tasks, references and documents, embedded by the
list's ``expand`` (``offers``, plural) when the server does, else one request
per application and collection; then purged resources, a ``pages`` paginator
beside entries keyed by list number.

Offers carry no applicant or application link (Offer.php): the snapshot knows
the application it read them under, and the applicant through it. An offer has
no status field, only a ``type`` link: its status is that type's title, which
is what the journal's event names carry ("Enrolled"); and its record gets the
link to the application it was read under, as the journal's records have it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import structlog

from edsync.errors import FatalError, MalformedPageError
from edsync.http import HttpClient, Reply
from edsync.model import SNAPSHOT_DONE, SnapshotObject, SnapshotPage
from edsync.pages import by_cursor
from edsync.sources.dreamapply.links import ref_id
from edsync.sources.dreamapply.resources import (
    LIST_EXPAND,
    SNAPSHOT_ENTITIES,
    OfferTypes,
    Resources,
    application_records,
    child_records,
    list_items,
)

log = structlog.get_logger("edsync.dreamapply")

LIST_LIMIT = 4096
"""Items a list request asks for (the server allows 32 768): few requests under
the quota, bounded memory per page."""

APPLICATIONS_CAP = 8192
"""What ``/applications`` answers at most with ``expand`` (32 768 without)."""

APPLICANTS_PER_REQUEST = 400
"""Applicants per ``byApplicantIDs`` slice of a term above the cap: a URL of a
few kilobytes, and far fewer applications than the cap."""

APPLICANT_IDS_LIMIT = 32768
"""Applicants a list request asks for when only their ids are wanted."""

OFFERS_PER_PAGE = 100
"""Applications whose collections are read one request each before a commit:
at DreamApply's 180 a minute a page commits about every half minute."""

ENTITIES = SNAPSHOT_ENTITIES


class SnapshotTooLargeError(FatalError):
    """A term holds more applications than one answer can: refuse to truncate."""


class Snapshot:
    def __init__(self, source: str, http: HttpClient, prefix: str) -> None:
        self.source = source
        self.http = http
        self.prefix = prefix
        self.types = OfferTypes(http, prefix, source)
        self.resources = Resources(source, http, prefix)
        self._listed_applicants: list[int] | None = None
        self.invoices_listed = False

    def pages(self, resume: str | None) -> Iterator[SnapshotPage]:
        """From the start, or from a token a page carried: ``applicant:last_id``,
        ``application:term_id:last_id`` or ``purged:pages_done``."""
        stage, after, term = _parse_token(resume)
        if stage == "applicant":
            yield from self._applicants(after)
            stage, after, term = "application", 0, 0
        if stage == "application":
            yield from self._applications(term, after)
            yield from self._invoices()
            stage, after = "purged", 0
        if stage == "purged":
            yield from self._purged(after)

    # -- applicants ---------------------------------------------------------

    def _applicants(self, after: int) -> Iterator[SnapshotPage]:
        for items in self._applicant_pages(after, LIST_LIMIT):
            objects = [SnapshotObject(str(id_), obj, str(id_)) for id_, obj in items]
            yield SnapshotPage("applicant", objects, resume=f"applicant:{items[-1][0]}")

    def _applicant_pages(
        self, after: int, limit: int
    ) -> Iterator[Sequence[tuple[int, dict[str, Any]]]]:
        """``/applicants`` page by page, paged by their own ids (``bySince``)."""
        path = f"{self.prefix}/applicants"

        def read(since: int, size: int) -> list[tuple[int, dict[str, Any]]]:
            params = {"bySince": str(since), "limit": str(size)}
            return self.http.fetch("GET", path, params, self._read_list)

        return by_cursor(read, after + 1, _next_id, limit)

    # -- applications, term by term ---------------------------------------------

    def _applications(self, first_term: int, after: int) -> Iterator[SnapshotPage]:
        path = f"{self.prefix}/academic-terms"
        terms = [id_ for id_, _ in self.http.fetch("GET", path, None, self._read_list)]
        for term in terms:
            if term < first_term:
                continue
            done = after if term == first_term else 0
            items = [item for item in self._term_applications(term) if item[0] > done]
            yield from self._application_pages(term, done, items)

    def _term_applications(self, term: int) -> list[tuple[int, dict[str, Any]]]:
        path = f"{self.prefix}/applications"
        params = {"byAcademicTermID": str(term)}
        count = self._count(path, params)
        if count >= APPLICATIONS_CAP:
            return self._split_by_applicants(term, count)
        items = self.http.fetch("GET", path, {**params, "expand": LIST_EXPAND}, self._read_list)
        if len(items) >= APPLICATIONS_CAP:
            # It grew to the cap between the HEAD and the GET: this may be cut short.
            return self._split_by_applicants(term, len(items))
        return items

    def _split_by_applicants(self, term: int, count: int) -> list[tuple[int, dict[str, Any]]]:
        """A term one answer cannot hold, read in slices of applicants
        (``byApplicantIDs``, a documented filter). An applicant registered since
        the list was read is in the journal after the noted head."""
        log.info("applications_term_split", source=self.source, term=term, count=count)
        path = f"{self.prefix}/applications"
        found: dict[int, dict[str, Any]] = {}
        applicants = self._applicant_ids()
        for start in range(0, len(applicants), APPLICANTS_PER_REQUEST):
            chunk = applicants[start : start + APPLICANTS_PER_REQUEST]
            params = {
                "byAcademicTermID": str(term),
                "byApplicantIDs": ",".join(map(str, chunk)),
                "expand": LIST_EXPAND,
            }
            items = self.http.fetch("GET", path, params, self._read_list)
            if len(items) >= APPLICATIONS_CAP:
                raise self._too_large(term, len(items))
            found.update(items)
        return sorted(found.items())

    def _applicant_ids(self) -> list[int]:
        """Every listed applicant's id, read once per snapshot (ids only: no expand)."""
        if self._listed_applicants is None:
            pages = self._applicant_pages(0, APPLICANT_IDS_LIMIT)
            self._listed_applicants = [id_ for items in pages for id_, _ in items]
        return self._listed_applicants

    def _too_large(self, term: int, count: int) -> SnapshotTooLargeError:
        return SnapshotTooLargeError(
            f"source {self.source!r}: academic term {term}: {count} applications of "
            f"{APPLICANTS_PER_REQUEST} applicants, more than one /applications answer "
            f"holds ({APPLICATIONS_CAP}); the snapshot stops rather than miss some"
        )

    def _count(self, path: str, params: dict[str, str]) -> int:
        reply = self.http.request("HEAD", path, params)
        count = reply.headers.get("X-Count", "")
        if not (count.isascii() and count.isdigit()):
            raise MalformedPageError(f"source {self.source!r}: {path} sent no X-Count")
        return int(count)

    def _application_pages(
        self, term: int, done: int, items: list[tuple[int, dict[str, Any]]]
    ) -> Iterator[SnapshotPage]:
        read = [(id_, *application_records(str(id_), app, self.types)) for id_, app in items]
        embedded = all(not links for _, _, _, links in read)
        size = LIST_LIMIT if embedded else OFFERS_PER_PAGE
        for start in range(0, len(read), size):
            chunk = read[start : start + size]
            # Committed with the page before's token: a run cut short between
            # the pages reads these applications (and their children) again.
            before = f"application:{term}:{done}"
            by_entity: dict[str, list[SnapshotObject]] = {e: [] for e in ENTITIES[1:]}
            for _, records, _, links in chunk:
                for entity, obj in records + self._followed(records[0][1], links):
                    by_entity[entity].append(obj)
            done = chunk[-1][0]
            after = f"application:{term}:{done}"
            for entity, objects in by_entity.items():
                last = entity == ENTITIES[-1]
                yield SnapshotPage(entity, objects, resume=after if last else before)

    def _followed(
        self, application: SnapshotObject, links: dict[str, str]
    ) -> list[tuple[str, SnapshotObject]]:
        """Children of a collection the list sent as a link (it ignored the expansion)."""
        out: list[tuple[str, SnapshotObject]] = []
        app_id = application.entity_id
        for entity, link in links.items():
            # One to another origin fails the read: HttpClient refuses it.
            items = self.http.fetch("GET", link, None, self._read_list_or_gone, expect=(404,))
            if items is None:
                continue  # closed or purged since it was listed: the purged list says so
            pairs = [(str(k), v) for k, v in items]
            out += child_records(entity, pairs, app_id, application.person_id, self.types)
        return out

    # -- invoices ---------------------------------------------------------------

    def _invoices(self) -> Iterator[SnapshotPage]:
        """``GET /invoices`` (help.dreamapply.com/api/api_invoices: keyed by id, no
        cap stated), each linked to its applicant and application. Only once it
        was read are invoices a kind the snapshot marks deleted when absent: a
        server that does not serve the list leaves them to the journal's refresh."""
        path = f"{self.prefix}/invoices"
        items = self.http.fetch("GET", path, None, self._read_list_or_gone, expect=(404,))
        if items is None:
            log.warning("invoices_not_listed", source=self.source, path=path)
            return
        objects = [
            SnapshotObject(
                str(id_), obj, ref_id(obj.get("applicant")), ref_id(obj.get("application"))
            )
            for id_, obj in items
        ]
        self.invoices_listed = True
        yield SnapshotPage("invoice", objects, resume="purged:0")

    # -- purged resources ---------------------------------------------------------

    def _purged(self, pages_done: int) -> Iterator[SnapshotPage]:
        current = pages_done
        for gone, following in self.resources.purged(pages_done):
            current += 1
            by_entity: dict[str, list[SnapshotObject]] = {"applicant": [], "application": []}
            for item in gone:
                data = {"id": item.ref.id, "purged": True, "forgotten": item.forgotten}
                by_entity[item.ref.entity].append(
                    SnapshotObject(item.ref.id, data, item.ref.person_id)
                )
            yield SnapshotPage(
                "applicant", by_entity["applicant"], f"purged:{current - 1}", deleted=True
            )
            resume = SNAPSHOT_DONE if following is None else f"purged:{current}"
            yield SnapshotPage("application", by_entity["application"], resume, deleted=True)

    # -- reading replies ------------------------------------------------------

    def _read_list(self, reply: Reply) -> list[tuple[int, dict[str, Any]]]:
        return list_items(reply.json(f"source {self.source!r}"), self.source)

    def _read_list_or_gone(self, reply: Reply) -> list[tuple[int, dict[str, Any]]] | None:
        return None if reply.status == 404 else self._read_list(reply)


def _next_id(item: tuple[int, dict[str, Any]]) -> int:
    """``bySince`` after a listed item: its id, plus one."""
    return item[0] + 1


def _parse_token(resume: str | None) -> tuple[str, int, int]:
    """(stage, last id done, term) from a resume token."""
    if resume is None:
        return "applicant", 0, 0
    if resume == SNAPSHOT_DONE:
        return SNAPSHOT_DONE, 0, 0
    stage, _, rest = resume.partition(":")
    parts = rest.split(":")
    if stage not in ("applicant", "application", "purged") or not all(
        part.isascii() and part.isdigit() for part in parts
    ):
        raise MalformedPageError(f"cannot resume a DreamApply snapshot at {resume!r}")
    if stage == "application":
        if len(parts) != 2:
            return stage, 0, 0  # an older token paged by id: read the terms from the start
        return stage, int(parts[1]), int(parts[0])
    if len(parts) != 1:
        raise MalformedPageError(f"cannot resume a DreamApply snapshot at {resume!r}")
    return stage, int(parts[0]), 0
